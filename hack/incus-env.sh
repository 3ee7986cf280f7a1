#!/usr/bin/env bash
# incus-env.sh brings a Debian 12 machine to a ready Incus for incuslb's demo
# and e2e suite: packages, a running incusd, storage, a bridge with an
# explicit subnet and no NAT, the default profile's devices, and a local
# HAProxy image built with debootstrap (cached, so a second run only checks).
# Every step tolerates "already done"; run it as often as you like.
set -euo pipefail

BRIDGE=${INCUSLB_BRIDGE:-incusbr0}
BRIDGE_ADDR=${INCUSLB_BRIDGE_ADDR:-10.77.0.1/24}
IMAGE_ALIAS=${INCUSLB_IMAGE:-lb-haproxy}
# Bump IMAGE_VERSION whenever build_image changes: an imported image of an
# older version is replaced.
IMAGE_VERSION=2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${INCUSLB_CACHE:-$ROOT/.cache/image}/v$IMAGE_VERSION

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

start_incusd() {
  if incus info >/dev/null 2>&1; then return; fi
  log "starting incusd"
  mkdir -p /var/log/incus
  getent group incus-admin >/dev/null || groupadd --system incus-admin
  setsid /usr/libexec/incus/incusd --group incus-admin --logfile /var/log/incus/incusd.log \
    </dev/null >/dev/null 2>&1 &
  incus admin waitready --timeout 60
}

init_incus() {
  incus storage show default >/dev/null 2>&1 || incus storage create default dir
  if ! incus network show "$BRIDGE" >/dev/null 2>&1; then
    log "creating bridge $BRIDGE ($BRIDGE_ADDR, no NAT)"
    incus network create "$BRIDGE" ipv4.address="$BRIDGE_ADDR" ipv4.nat=false ipv6.address=none
  fi
  local devs
  devs=$(incus profile device list default 2>/dev/null || true)
  grep -qx root <<<"$devs" || incus profile device add default root disk pool=default path=/ >/dev/null
  grep -qx eth0 <<<"$devs" || incus profile device add default eth0 nic network="$BRIDGE" name=eth0 >/dev/null
}

build_image() {
  if incus image info "$IMAGE_ALIAS" >/dev/null 2>&1; then
    [ "$(incus image get-property "$IMAGE_ALIAS" incuslb_image 2>/dev/null)" = "$IMAGE_VERSION" ] && return
    log "replacing image $IMAGE_ALIAS (not version $IMAGE_VERSION)"
    incus image alias delete "$IMAGE_ALIAS"
  fi
  mkdir -p "$CACHE"
  if [ ! -f "$CACHE/rootfs.tar.gz" ] || [ ! -f "$CACHE/meta.tar.gz" ]; then
    local work; work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    log "building image $IMAGE_ALIAS with debootstrap (about a minute)"
    debootstrap --variant=minbase \
      --include=haproxy,procps,ca-certificates,iproute2,ifupdown,isc-dhcp-client,systemd-sysv \
      bookworm "$work/rootfs" "$(mirror)" >"$work/debootstrap.log" 2>&1 \
      || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    # procps gives /bin/kill, which Debian's haproxy.service uses to reload.
    # minbase has no udev, so systemd-networkd never configures eth0; ifupdown does.
    printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n' >"$work/rootfs/etc/network/interfaces"
    : >"$work/rootfs/etc/machine-id"
    rm -f "$work/rootfs/var/lib/dbus/machine-id"
    apt_clean "$work/rootfs"
    mkdir -p "$work/meta/templates"
    cat >"$work/meta/metadata.yaml" <<META
architecture: x86_64
creation_date: $(date +%s)
properties:
  description: Debian 12 minbase with HAProxy (built by incuslb hack/incus-env.sh)
  os: debian
  release: bookworm
  incuslb_image: "$IMAGE_VERSION"
templates:
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
META
    echo '{{ container.name }}' >"$work/meta/templates/hostname.tpl"
    tar -C "$work/meta" -czf "$CACHE/meta.tar.gz.tmp" . && mv "$CACHE/meta.tar.gz.tmp" "$CACHE/meta.tar.gz"
    tar -C "$work/rootfs" --numeric-owner -czf "$CACHE/rootfs.tar.gz.tmp" . && mv "$CACHE/rootfs.tar.gz.tmp" "$CACHE/rootfs.tar.gz"
  fi
  log "importing image $IMAGE_ALIAS"
  incus image import "$CACHE/meta.tar.gz" "$CACHE/rootfs.tar.gz" --alias "$IMAGE_ALIAS" >/dev/null
}

apt_clean() { rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*; }

install_packages
start_incusd
init_incus
build_image
log "ready: incus $(incus version | awk '/Server/ {print $3}'), bridge $BRIDGE, image $IMAGE_ALIAS"
