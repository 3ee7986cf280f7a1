#!/usr/bin/env bash
# cluster.sh up|down|status: a real 3-member Incus cluster on this machine,
# made of unprivileged system containers of the host's Incus (nested
# Incus), for the cluster e2e suite. Idempotent: `up` on a cluster that is
# up only checks it.
#
# Everything lives in the host Incus project $NEST_PROJECT (default
# incuslb-nest). The host talks to the cluster as the remote $NEST_REMOTE
# of a private incus CLI config ($INCUS_CONF under .cache/nest), so the
# machine's own CLI config is untouched. Nested instances get a macvlan NIC
# on their member's eth0: they take DHCP addresses from the host bridge and
# are reachable from the host and from each other (a member cannot reach
# its own nested instances by IP, a macvlan limit; nothing here needs it).
#
# Needs `make incus-env` first (Incus, the bridge, the LB images).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROJECT=${NEST_PROJECT:-incuslb-nest}
PREFIX=${NEST_PREFIX:-nest-m}
N=${NEST_MEMBERS:-3}
REMOTE=${NEST_REMOTE:-nest1}
BRIDGE=${INCUSLB_BRIDGE:-incusbr0}
DIR=${NEST_DIR:-$ROOT/.cache/nest}
CACHE=$DIR/image-v1 # bump the suffix whenever build_image changes
IMAGES=${NEST_IMAGES:-lb-haproxy}
export INCUS_CONF=${INCUS_CONF:-$DIR/incus-conf}

h() { incus --project "$PROJECT" "$@"; }       # the host's Incus, our project
m() { local n=$1; shift; h exec "$n" -- "$@"; }  # a command in a member
log() { printf 'cluster: %s\n' "$*" >&2; }
addr() { h list "$1" -c 4 -f csv | awk '/eth0/ {print $1; exit}'; }
mirror() { awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null ||
  awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list; }

# raise_kernel_limits: the limits every container on a host shares. Each
# nested member runs systemd and incusd (inotify instances) and its own
# containers take kernel keys: 200 keys per host uid by default, about 10
# per container. Persisted in /etc/sysctl.d where the machine allows it.
raise_kernel_limits() {
  local conf=/etc/sysctl.d/61-incuslb-cluster.conf k v
  local want='kernel.keys.maxkeys = 2000
kernel.keys.maxbytes = 2000000'
  [ "$(cat "$conf" 2>/dev/null)" = "$want" ] || printf '%s\n' "$want" >"$conf"
  while read -r k _ v; do
    if [ "$(cat "/proc/sys/${k//.//}")" -lt "$v" ] && ! echo "$v" >"/proc/sys/${k//.//}" 2>/dev/null; then
      log "cannot raise $k to $v here (read-only /proc/sys?): nested members may fail to start their containers; raise it on the host"
    fi
  done <<<"$want"
}

# build_image: Debian 12 minbase with incus-base from bookworm-backports,
# in a chroot, cached as tarballs (about 4-5 minutes the first time).
build_image() {
  [ -f "$CACHE/rootfs.tar.gz" ] && [ -f "$CACHE/meta.tar.gz" ] && return
  mkdir -p "$CACHE"
  local work R
  work=$(mktemp -d "$DIR/build.XXXXXX")
  R=$work/rootfs
  # shellcheck disable=SC2064 # expand now
  trap "for m in '$R/dev/pts' '$R/dev' '$R/sys' '$R/proc'; do mountpoint -q \"\$m\" && umount -l \"\$m\"; done; rm -rf '$work'" EXIT
  log "building the member image with debootstrap and incus-base (4-5 minutes)"
  debootstrap --variant=minbase \
    --include=systemd-sysv,ifupdown,isc-dhcp-client,iproute2,procps,ca-certificates \
    bookworm "$R" "$(mirror)" >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$(mirror)" >"$R/etc/apt/sources.list.d/backports.sources"
  printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"; chmod +x "$R/usr/sbin/policy-rc.d"
  mount -t proc proc "$R/proc"
  mount --rbind /sys "$R/sys"; mount --make-rslave "$R/sys"
  mount --bind /dev "$R/dev"; mount --bind /dev/pts "$R/dev/pts"
  chroot "$R" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive chroot "$R" apt-get install -y -qq --no-install-recommends \
    -t bookworm-backports incus-base incus-client dnsmasq-base >"$work/apt.log" 2>&1 || { tail -40 "$work/apt.log" >&2; exit 1; }
  for m in "$R/dev/pts" "$R/dev" "$R/sys" "$R/proc"; do umount -l "$m"; done
  rm -f "$R/usr/sbin/policy-rc.d" "$R/etc/apt/sources.list.d/backports.sources"
  # minbase has no udev: ifupdown brings eth0 up with DHCP.
  printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n' >"$R/etc/network/interfaces"
  : >"$R/etc/machine-id"; rm -f "$R/var/lib/dbus/machine-id"
  rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*
  # lxcfs needs /dev/fuse, which an unprivileged container lacks.
  rm -f "$R/etc/systemd/system/multi-user.target.wants/lxcfs.service"
  # A member is itself in a user namespace of 2e8 ids: Debian's default
  # root:1000000:1000000000 overflows it (newuidmap EPERM).
  echo root:1000000:100000000 >"$R/etc/subuid"; echo root:1000000:100000000 >"$R/etc/subgid"
  # Fewer inotify instances per member: no getty, no logind.
  for u in console-getty.service getty@.service systemd-logind.service; do ln -sf /dev/null "$R/etc/systemd/system/$u"; done
  mkdir -p "$work/meta/templates"
  printf 'architecture: x86_64\ncreation_date: %s\nproperties:\n  description: Debian 12 minbase with incus-base (incuslb nested cluster member)\n  os: debian\n  release: bookworm\ntemplates:\n  /etc/hostname:\n    when: [create, copy]\n    template: hostname.tpl\n' \
    "$(date +%s)" >"$work/meta/metadata.yaml"
  echo '{{ container.name }}' >"$work/meta/templates/hostname.tpl"
  tar -C "$work/meta" -czf "$CACHE/meta.tar.gz.tmp" . && mv "$CACHE/meta.tar.gz.tmp" "$CACHE/meta.tar.gz"
  tar -C "$R" --numeric-owner -czf "$CACHE/rootfs.tar.gz.tmp" . && mv "$CACHE/rootfs.tar.gz.tmp" "$CACHE/rootfs.tar.gz"
  trap - EXIT
  rm -rf "$work"
}

up() {
  mkdir -p "$DIR"
  raise_kernel_limits
  incus project show "$PROJECT" >/dev/null 2>&1 || incus project create "$PROJECT" \
    -c features.images=true -c features.profiles=true -c features.storage.volumes=true >/dev/null
  if ! h image info nest-incus >/dev/null 2>&1; then
    build_image
    h image import "$CACHE/meta.tar.gz" "$CACHE/rootfs.tar.gz" --alias nest-incus >/dev/null
  fi
  # The member profile: unprivileged + nesting. raw.lxc makes LXC mount each
  # cgroup v1 hierarchy itself (this host mounts cpu and cpuacct apart, and
  # nested LXC failed with "Failed to open 9/cpuacct" without it).
  # idmap.isolated gives each member host uids of its own (its own kernel
  # keys quota).
  if ! h profile show member >/dev/null 2>&1; then
    h profile create member >/dev/null
    h profile device add member root disk pool=default path=/ >/dev/null
    h profile device add member eth0 nic network="$BRIDGE" name=eth0 >/dev/null
    h profile set member security.nesting=true \
      security.syscalls.intercept.mknod=true security.syscalls.intercept.setxattr=true \
      security.idmap.isolated=true security.idmap.size=200000000 \
      raw.lxc='lxc.mount.auto = cgroup:mixed:force'
  fi
  # Created one at a time (Incus 6.0.4 gave two isolated containers created
  # in parallel the same id range), started together.
  local i n
  for i in $(seq 1 "$N"); do
    n=$PREFIX$i
    h info "$n" >/dev/null 2>&1 || h init nest-incus "$n" -p member -q
  done
  local stopped=()
  for i in $(seq 1 "$N"); do
    n=$PREFIX$i
    h list "$n" -c s -f csv | grep -q RUNNING || stopped+=("$n")
  done
  [ ${#stopped[@]} -eq 0 ] || h start "${stopped[@]}"
  declare -gA A
  for i in $(seq 1 "$N"); do
    n=$PREFIX$i
    for _ in $(seq 1 120); do A[$n]=$(addr "$n"); [ -n "${A[$n]}" ] && break; sleep 0.5; done
    [ -n "${A[$n]}" ] || { log "$n has no address"; exit 1; }
  done
  # Every member's incusd at once: a clustered incusd waits for a quorum of
  # its peers, and Debian's socket-activated incus.service exits when it
  # has been idle with no instance (seen after a suite deleted its own),
  # so a member's daemon may be down while the member runs.
  for i in $(seq 1 "$N"); do
    m "$PREFIX$i" systemctl start --no-block incus.service >/dev/null 2>&1 || true
  done
  for i in $(seq 1 "$N"); do
    n=$PREFIX$i
    # waitready itself, or the exec into the member, can fail at once while
    # the daemon is still coming up (seen once in a full make test): retry.
    ok=
    for _ in $(seq 1 36); do
      if m "$n" incus admin waitready --timeout 10 >/dev/null 2>&1; then ok=1; break; fi
      m "$n" systemctl start --no-block incus.service >/dev/null 2>&1 || true
      sleep 5
    done
    [ -n "$ok" ] || { log "$n: incusd not ready after 3 minutes"; m "$n" journalctl -u incus -n 10 --no-pager >&2 || true; exit 1; }
  done
  local m1=${PREFIX}1
  if ! m "$m1" incus cluster list >/dev/null 2>&1; then
    log "bootstrapping the cluster on $m1"
    m "$m1" incus admin init --preseed <<EOF
config:
  core.https_address: ${A[$m1]}:8443
storage_pools:
- name: default
  driver: dir
profiles:
- name: default
  devices:
    root: {path: /, pool: default, type: disk}
    eth0: {name: eth0, nictype: macvlan, parent: eth0, type: nic}
cluster:
  server_name: $m1
  enabled: true
EOF
  fi
  for i in $(seq 2 "$N"); do
    n=$PREFIX$i
    m "$m1" incus cluster show "$n" >/dev/null 2>&1 && continue
    log "joining $n"
    local tok; tok=$(m "$m1" incus cluster add "$n" --quiet)
    m "$n" incus admin init --preseed <<EOF
cluster:
  enabled: true
  server_name: $n
  server_address: ${A[$n]}:8443
  cluster_token: $tok
  member_config:
  - {entity: storage-pool, name: default, key: source, value: ""}
EOF
  done
  mkdir -p "$INCUS_CONF"
  if ! incus info "$REMOTE:" >/dev/null 2>&1; then
    incus remote remove "$REMOTE" >/dev/null 2>&1 || true
    incus remote add "$REMOTE" "https://${A[$m1]}:8443" --accept-certificate </dev/null >/dev/null 2>&1 ||
      incus remote add "$REMOTE" "$(m "$m1" incus config trust add "incuslb-host-$(date +%s)" --quiet)" >/dev/null
  fi
  # The LB images, from the host's store (relay: the client streams them;
  # pull mode needs the host listening on the network). A cluster copy of
  # an older build is replaced.
  local img want have
  for img in $IMAGES; do
    want=$(incus image info "local:$img" | awk '/^Fingerprint:/ {print $2}')
    have=$(incus image info "$REMOTE:$img" 2>/dev/null | awk '/^Fingerprint:/ {print $2}' || true)
    [ "$want" = "$have" ] && continue
    [ -z "$have" ] || incus image delete "$REMOTE:$have"
    incus image copy "local:$img" "$REMOTE:" --alias "$img" --quiet --mode relay
  done
  # Members restarted together report OFFLINE until their first heartbeats.
  for _ in $(seq 1 120); do
    [ "$(incus cluster list "$REMOTE:" -c s -f csv 2>/dev/null | grep -c ONLINE)" = "$N" ] && break
    sleep 1
  done
  log "up: $(incus cluster list "$REMOTE:" -c ns -f csv | tr '\n' ' ')(INCUS_CONF=$INCUS_CONF, remote $REMOTE)"
}

status() {
  incus cluster list "$REMOTE:" -c nus -f csv 2>/dev/null || echo "no cluster at remote $REMOTE"
  incus list "$REMOTE:" -c nsL4 -f csv 2>/dev/null || true
  echo "use: export INCUS_CONF=$INCUS_CONF; incus list $REMOTE:   (incuslb: --remote $REMOTE)"
}

down() {
  local n
  for n in $(h list -c n -f csv 2>/dev/null); do h delete -f "$n"; done
  for n in $(h image list -c f -f csv 2>/dev/null); do h image delete "$n"; done
  h profile delete member >/dev/null 2>&1 || true
  incus project delete "$PROJECT" >/dev/null 2>&1 || true
  rm -rf "$INCUS_CONF"
  log "removed project $PROJECT, its members and images, and $INCUS_CONF"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
