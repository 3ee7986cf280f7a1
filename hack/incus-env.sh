#!/usr/bin/env bash
# incus-env.sh brings a Debian 12 machine to a ready Incus for incuslb's demo
# and e2e suite: packages, a running incusd, storage, a bridge with an
# explicit subnet and no NAT, the default profile's devices, and two local
# HAProxy images built with debootstrap (cached, so a second run only checks):
# lb-haproxy from Debian 12 bookworm (HAProxy 2.6) and lb-haproxy-30 from
# Debian 13 trixie (HAProxy 3.0).
# Every step tolerates "already done"; run it as often as you like.
set -euo pipefail

BRIDGE=${INCUSLB_BRIDGE:-incusbr0}
BRIDGE_ADDR=${INCUSLB_BRIDGE_ADDR:-10.77.0.1/24}
# A ULA /64 on the bridge: containers take a global-scope IPv6 address by
# SLAAC from the bridge's router advertisements (the pools with family:
# ipv6 or any, and listeners on IPv6, in the e2e suite). No NAT.
BRIDGE_ADDR6=${INCUSLB_BRIDGE_ADDR6:-fd42:77::1/64}
IMAGE_ALIAS=${INCUSLB_IMAGE:-lb-haproxy}
IMAGE_ALIAS_30=${INCUSLB_IMAGE_30:-lb-haproxy-30}
# Bump IMAGE_VERSION whenever build_image changes: an imported image of an
# older version is replaced.
IMAGE_VERSION=4
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE_ROOT=${INCUSLB_CACHE:-$ROOT/.cache/image}

log() { printf 'incus-env: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "must run as root (it installs packages and starts incusd)"; exit 1; }

# mirror prints the Debian mirror URI this machine's apt already uses, so the
# backports source and debootstrap use the same one.
mirror() {
  local f=/etc/apt/sources.list.d/debian.sources
  if [ -f "$f" ]; then
    awk '/^URIs:/ {print $2; exit}' "$f"
  elif [ -f /etc/apt/sources.list ]; then
    awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list
  fi
}

keyring() {
  local f=/etc/apt/sources.list.d/debian.sources k=""
  [ -f "$f" ] && k=$(awk '/^Signed-By:/ {print $2; exit}' "$f")
  echo "${k:-/usr/share/keyrings/debian-archive-keyring.gpg}"
}

install_packages() {
  local pkgs=() updated=0
  command -v haproxy >/dev/null || pkgs+=(haproxy)
  command -v debootstrap >/dev/null || pkgs+=(debootstrap)
  command -v openssl >/dev/null || pkgs+=(openssl)
  if ! command -v incus >/dev/null; then
    local src=/etc/apt/sources.list.d/incuslb-backports.sources
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      log "adding the bookworm-backports source"
      printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
        "$(mirror)" "$(keyring)" >"$src"
    fi
    apt-get update -qq; updated=1
    log "installing incus from bookworm-backports"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports incus >/dev/null
  fi
  if [ ${#pkgs[@]} -gt 0 ]; then
    [ $updated -eq 1 ] || apt-get update -qq
    log "installing ${pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
}

# raise_inotify_limits: every unprivileged container maps to the same host
# uid, and each systemd in them takes a few inotify instances. The kernel's
# default of 128 instances per uid runs out at about 20 containers; past
# that a new container's systemd never finishes booting (its path units
# fail, no DHCP, jobs wait forever), which the e2e suite, with some 25
# containers up at once, ran into. These are the values Incus's production
# setup guide recommends. Idempotent; persisted in /etc/sysctl.d.
raise_inotify_limits() {
  local conf=/etc/sysctl.d/60-incuslb-inotify.conf k v
  local want='fs.inotify.max_user_instances = 1048576
fs.inotify.max_user_watches = 1048576
fs.inotify.max_queued_events = 1048576'
  if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
    log "raising the inotify limits ($conf)"
    printf '%s\n' "$want" >"$conf"
  fi
  while read -r k _ v; do
    [ "$(cat "/proc/sys/${k//.//}")" = "$v" ] || echo "$v" >"/proc/sys/${k//.//}"
  done <<<"$want"
}

start_incusd() {
  local info
  if info=$(incus info 2>/dev/null); then
    INCUS_VERSION=$(awk '/^  server_version:/ {print $2; exit}' <<<"$info")
    return
  fi
  log "starting incusd"
  mkdir -p /var/log/incus
  getent group incus-admin >/dev/null || groupadd --system incus-admin
  setsid /usr/libexec/incus/incusd --group incus-admin --logfile /var/log/incus/incusd.log \
    </dev/null >/dev/null 2>&1 &
  # A daemon with many instances to auto-start (a machine that stopped in
  # the middle of a suite) has been seen to take more than a minute.
  if ! incus admin waitready --timeout 300; then
    log "incusd did not become ready in 300 s; the end of its log:"
    tail -30 /var/log/incus/incusd.log >&2 || true
    exit 1
  fi
  INCUS_VERSION=$(incus info | awk '/^  server_version:/ {print $2; exit}')
}

init_incus() {
  incus storage show default >/dev/null 2>&1 || incus storage create default dir
  if ! incus network show "$BRIDGE" >/dev/null 2>&1; then
    log "creating bridge $BRIDGE ($BRIDGE_ADDR, $BRIDGE_ADDR6, no NAT)"
    incus network create "$BRIDGE" ipv4.address="$BRIDGE_ADDR" ipv4.nat=false \
      ipv6.address="$BRIDGE_ADDR6" ipv6.nat=false
  fi
  # A bridge made before IPv6 was wanted (ipv6.address=none) gets it now;
  # a change restarts the bridge's dnsmasq for a moment, nothing more.
  # Stateless (SLAAC) addresses: the kernel in each container takes one
  # within a second or two of the first router advertisement.
  local k v kv
  for kv in "ipv6.address=$BRIDGE_ADDR6" ipv6.nat=false ipv6.dhcp.stateful=false; do
    k=${kv%%=*} v=${kv#*=}
    [ "$(incus network get "$BRIDGE" "$k")" = "$v" ] || { log "setting $BRIDGE $k=$v"; incus network set "$BRIDGE" "$k=$v"; }
  done
  # DHCP hands out .2-.199; .200 and up are for the tests' static addresses
  # (a member at an address another instance had before).
  local ranges="${BRIDGE_ADDR%.*}.2-${BRIDGE_ADDR%.*}.199"
  [ "$(incus network get "$BRIDGE" ipv4.dhcp.ranges)" = "$ranges" ] || incus network set "$BRIDGE" ipv4.dhcp.ranges="$ranges"
  local devs
  devs=$(incus profile device list default 2>/dev/null || true)
  grep -qx root <<<"$devs" || incus profile device add default root disk pool=default path=/ >/dev/null
  grep -qx eth0 <<<"$devs" || incus profile device add default eth0 nic network="$BRIDGE" name=eth0 >/dev/null
}

# build_image ALIAS SUITE DESCRIPTION imports a Debian SUITE minbase image
# with HAProxy under ALIAS, built once with debootstrap and cached under
# $CACHE_ROOT/SUITE-vIMAGE_VERSION/. The image's description names its
# version, so one `incus image list` tells whether both images are current.
build_image() {
  local alias=$1 suite=$2
  local desc="$3 from $suite (incuslb image v$IMAGE_VERSION)"
  local cache=$CACHE_ROOT/$suite-v$IMAGE_VERSION
  grep -qxF "$alias,$desc" <<<"$IMAGES" && return
  if awk -F, -v a="$alias" '$1 == a {f = 1} END {exit !f}' <<<"$IMAGES"; then
    log "replacing image $alias (not version $IMAGE_VERSION of $suite)"
    # Instances made from it keep running: they have their own copy.
    incus image delete "$alias"
  fi
  mkdir -p "$cache"
  if [ ! -f "$cache/rootfs.tar.gz" ]; then
    local work; work=$(mktemp -d)
    # shellcheck disable=SC2064 # expand $work now: it is local
    trap "rm -rf '$work'; trap - RETURN" RETURN
    log "building image $alias from $suite with debootstrap (two to three minutes)"
    # Only HAProxy, keepalived (the LB pairs of spec.highAvailability; it
    # brings no daemon that runs without a config), what it takes to boot (systemd-sysv) and to get a DHCP
    # address, and the CA store. No procps: Debian's haproxy.service reloads
    # with /bin/kill, but incuslb reloads through HAProxy's master CLI
    # (`reload` on /run/haproxy-master.sock), which needs nothing else.
    # iproute2 still comes in: ifupdown and isc-dhcp-client depend on it.
    # Trixie still has isc-dhcp-client (its ifupdown now recommends
    # dhcpcd-base first; dhclient is what this image uses and was tested).
    debootstrap --variant=minbase \
      --include=haproxy,keepalived,ca-certificates,ifupdown,isc-dhcp-client,systemd-sysv \
      "$suite" "$work/rootfs" "$(mirror)" >"$work/debootstrap.log" 2>&1 \
      || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    # minbase has no udev, so systemd-networkd never configures eth0; ifupdown
    # (with dhclient) does.
    printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n' >"$work/rootfs/etc/network/interfaces"
    : >"$work/rootfs/etc/machine-id"
    rm -f "$work/rootfs/var/lib/dbus/machine-id"
    apt_clean "$work/rootfs"
    tar -C "$work/rootfs" --numeric-owner -czf "$cache/rootfs.tar.gz.tmp" . && mv "$cache/rootfs.tar.gz.tmp" "$cache/rootfs.tar.gz"
  fi
  if [ ! -f "$cache/meta.tar.gz" ]; then
    local meta; meta=$(mktemp -d)
    mkdir -p "$meta/templates"
    cat >"$meta/metadata.yaml" <<META
architecture: x86_64
creation_date: $(date +%s)
properties:
  description: $desc
  os: debian
  release: $suite
  incuslb_image: "$IMAGE_VERSION"
templates:
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
META
    echo '{{ container.name }}' >"$meta/templates/hostname.tpl"
    tar -C "$meta" -czf "$cache/meta.tar.gz.tmp" . && mv "$cache/meta.tar.gz.tmp" "$cache/meta.tar.gz"
    rm -rf "$meta"
  fi
  log "importing image $alias"
  # The fingerprint of a split image is the SHA-256 of metadata then rootfs.
  # If that image is already there without this alias, only alias it.
  local fp; fp=$(cat "$cache/meta.tar.gz" "$cache/rootfs.tar.gz" | sha256sum | cut -d' ' -f1)
  if incus image info "$fp" >/dev/null 2>&1; then
    incus image alias create "$alias" "$fp"
  else
    incus image import "$cache/meta.tar.gz" "$cache/rootfs.tar.gz" --alias "$alias" >/dev/null
  fi
}

apt_clean() { rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*; }

install_packages
raise_inotify_limits
start_incusd
init_incus
IMAGES=$(incus image list -f csv -c ld)
build_image "$IMAGE_ALIAS" bookworm "Debian 12 minbase with HAProxy 2.6"
build_image "$IMAGE_ALIAS_30" trixie "Debian 13 minbase with HAProxy 3.0"
log "ready: incus $INCUS_VERSION, bridge $BRIDGE, images $IMAGE_ALIAS $IMAGE_ALIAS_30"
