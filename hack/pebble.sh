#!/usr/bin/env bash
# pebble.sh up|down|status|add-a HOST IP|clear-a HOST|roots [dns]: local ACME
# test CAs for the e2e suite, all on 127.0.0.1 only:
# - Pebble (:14000), resolving through pebble-challtestsrv (:8053), which
#   serves only DNS (hosts added with add-a; nothing else resolves); Pebble
#   validates HTTP-01 on port 80 and TLS-ALPN-01 on 443 of the address add-a
#   gave.
# - for DNS-01: Debian's bind9 (named, :8054), authoritative for the zone
#   dns01.e2e.test and taking RFC 2136 updates signed with the TSIG key in
#   .cache/pebble/bind/tsig.key, and a second Pebble (:14001) that resolves
#   through it. `roots dns` prints that one's issuing root.
# Idempotent: `up` on CAs running with the same settings only prints the
# summary. Binaries, config and logs: .cache/pebble.
# Pebble keeps all in memory: each (re)start makes a new issuing root (see
# `roots`); a challtestsrv restart forgets the hosts.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
DIR=$root/.cache/pebble
MOD=github.com/letsencrypt/pebble/v2 VERSION=v2.10.1
ACME=127.0.0.1:14000 MGMT=127.0.0.1:15000 DNS=127.0.0.1:8053 DNSMGMT=127.0.0.1:8055
URL=https://$ACME/dir
CA=$DIR/pebble.minica.pem # CA of Pebble's own HTTPS endpoints, not of what it issues
PEBBLE=incuslb-pebble CHALL=incuslb-challtestsrv
# No artificial validation delays, no injected bad nonces, no authz reuse
# (default 50 %): every order runs its challenges, so runs are deterministic.
PEBBLE_ENV=(PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0)
PEBBLE_CMD=("$DIR/bin/pebble" -config "$DIR/pebble-config.json" -dnsserver "$DNS")
# An empty address turns a challenge server off (they default to :5001, :5002,
# :5003, :8443). Empty defaults: challtestsrv answers any name with 127.0.0.1
# and ::1 otherwise, and Pebble dials the first address, AAAA answers first.
CHALL_CMD=("$DIR/bin/pebble-challtestsrv" -http01= -https01= -tlsalpn01= -doh=
  -dnsserver "$DNS" -management "$DNSMGMT" -defaultIPv4= -defaultIPv6=)
# DNS-01: bind9 and the Pebble that resolves through it.
BIND=$DIR/bind NAMED_ADDR=127.0.0.1 NAMED_PORT=8054 ZONE=dns01.e2e.test
ACME_DNS=127.0.0.1:14001 MGMT_DNS=127.0.0.1:15001
NAMED=incuslb-named PEBBLE_DNS=incuslb-pebble-dns
NAMED_CMD=(/usr/sbin/named -f -u bind -c "$BIND/named.conf")
PEBBLE_DNS_CMD=("$DIR/bin/pebble" -config "$DIR/pebble-dns-config.json" -dnsserver "$NAMED_ADDR:$NAMED_PORT")

log() { printf 'pebble: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
has_systemd() { [ -d /run/systemd/system ]; }
export PATH=$PATH:/usr/local/go/bin
gocmd() { (cd / && go "$@"); } # from /: never read nor touch the repo's go.mod
need_curl() {
  command -v curl >/dev/null && return
  log "installing curl"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
}

build() {
  local b
  for b in pebble pebble-challtestsrv; do
    [[ $(gocmd version -m "$DIR/bin/$b" 2>/dev/null) == *"$MOD"[[:space:]]"$VERSION"* ]] && continue
    log "building pebble $VERSION (about 20 s)"
    GOBIN=$DIR/bin gocmd install "$MOD/cmd/pebble@$VERSION" "$MOD/cmd/pebble-challtestsrv@$VERSION"
    return
  done
}

# certs: Pebble's HTTPS key pair (for localhost and 127.0.0.1) and its CA, copied
# from the module source so that a cleaned module cache does not matter.
certs() {
  [ -s "$CA" ] && [ -s "$DIR/cert.pem" ] && [ -s "$DIR/key.pem" ] && return
  local src
  src=$(gocmd mod download -json "$MOD@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src/test/certs" ] || die "no module source for $MOD@$VERSION"
  install -m 0644 "$src/test/certs/localhost/cert.pem" "$DIR/cert.pem"
  install -m 0600 "$src/test/certs/localhost/key.pem" "$DIR/key.pem"
  install -m 0644 "$src/test/certs/pebble.minica.pem" "$CA"
}

config() { # rewritten only when it changes, so start() sees a change by its hash
  local new
  new=$(cat <<EOF
{"pebble": {
  "listenAddress": "$ACME", "managementListenAddress": "$MGMT",
  "certificate": "$DIR/cert.pem", "privateKey": "$DIR/key.pem",
  "httpPort": 80, "tlsPort": 443, "keyAlgorithm": "ecdsa",
  "retryAfter": {"authz": 1, "order": 1},
  "profiles": {
    "default": {"description": "90 days", "validityPeriod": 7776000},
    "shortlived": {"description": "6 days", "validityPeriod": 518400}}}}
EOF
)
  [ "$(cat "$DIR/pebble-config.json" 2>/dev/null)" = "$new" ] || printf '%s\n' "$new" >"$DIR/pebble-config.json"
  new=${new/$ACME/$ACME_DNS}
  new=${new/$MGMT/$MGMT_DNS}
  [ "$(cat "$DIR/pebble-dns-config.json" 2>/dev/null)" = "$new" ] || printf '%s\n' "$new" >"$DIR/pebble-dns-config.json"
}

# bind9: Debian's package, installed without starting its own service (it
# would take port 53 beside Incus's dnsmasq), and a config of our own.
bind9() {
  if [ ! -x /usr/sbin/named ]; then
    log "installing bind9"
    local policy=/usr/sbin/policy-rc.d made=
    [ -e $policy ] || { printf '#!/bin/sh\nexit 101\n' >$policy; chmod +x $policy; made=1; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bind9 bind9-dnsutils >/dev/null
    [ -z "$made" ] || rm -f $policy
    if has_systemd; then systemctl disable --now named >/dev/null 2>&1 || true; fi
  fi
  mkdir -p "$BIND"
  [ -s "$BIND/tsig.key" ] || printf 'key "incuslb-e2e" {\n\talgorithm hmac-sha256;\n\tsecret "%s";\n};\n' \
    "$(head -c 32 /dev/urandom | base64)" >"$BIND/tsig.key"
  chmod 0640 "$BIND/tsig.key"
  local conf
  conf=$(cat <<EOF
options {
  directory "$BIND";
  pid-file "$BIND/named.pid";
  listen-on port $NAMED_PORT { $NAMED_ADDR; };
  listen-on-v6 { none; };
  recursion no;
  allow-query { 127.0.0.1; };
  dnssec-validation no;
};
include "$BIND/tsig.key";
zone "$ZONE" {
  type primary;
  file "$BIND/$ZONE.zone";
  update-policy { grant incuslb-e2e zonesub TXT; };
};
EOF
)
  [ "$(cat "$BIND/named.conf" 2>/dev/null)" = "$conf" ] || printf '%s\n' "$conf" >"$BIND/named.conf"
  # The zone starts empty of TXT records at each start (the journal goes).
  if ! active "$NAMED"; then
    rm -f "$BIND/$ZONE.zone.jnl"
    printf '$TTL 60\n@ IN SOA ns.%s. hostmaster.%s. 1 60 60 600 60\n@ IN NS ns.%s.\nns IN A 127.0.0.1\n' \
      "$ZONE" "$ZONE" "$ZONE" >"$BIND/$ZONE.zone"
  fi
  chown -R bind:bind "$BIND"
}

wait_dns() { # until named answers the zone's SOA
  for _ in $(seq 100); do
    [ -n "$(dig +short +time=1 +tries=1 -p "$NAMED_PORT" @"$NAMED_ADDR" SOA "$ZONE" 2>/dev/null)" ] && return
    active "$NAMED" || break
    sleep 0.2
  done
  log "$NAMED does not answer for $ZONE; the end of $DIR/$NAMED.log:"
  tail -15 "$DIR/$NAMED.log" >&2 || true
  exit 1
}

active() {
  if has_systemd; then systemctl is-active --quiet "$1"; return; fi
  local pid
  pid=$(cat "$DIR/run/$1.pid" 2>/dev/null) || return 1
  local exe
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ $exe == "$DIR/bin/"* || $exe == /usr/sbin/named ]] # not a reused pid
}

stop() {
  if has_systemd; then
    systemctl stop "$1" 2>/dev/null || true
  elif active "$1"; then
    local pid
    pid=$(cat "$DIR/run/$1.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do active "$1" || break; sleep 0.1; done
    ! active "$1" || kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/run/$1.pid" "$DIR/run/$1.spec"
}

# listening HOST:PORT: something accepts TCP connections there.
listening() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# claim UNIT HOST:PORT...: before UNIT starts, its addresses must be free
# (or its own): a CA left running by another checkout would answer in its
# place, and `down` would not stop it.
claim() {
  local unit=$1 a
  shift
  active "$unit" && return
  for a in "$@"; do
    ! listening "$a" || die "$a is taken by a process that is not $unit of $DIR (another checkout's? ss -ltnp 'sport = :${a##*:}' names it); stop it first"
  done
}

# start UNIT ENVVAR... -- CMD...: run CMD as UNIT unless it already runs with the
# same environment, command and files it names (binary, config); else restart.
start() {
  local unit=$1 env=() spec a
  shift
  while [ "$1" != -- ]; do env+=("$1"); shift; done
  shift
  spec="${env[*]} $*"
  for a in "$@"; do [ ! -f "$a" ] || spec+=" $(sha256sum <"$a" | cut -c1-64)"; done
  if active "$unit"; then
    [ "$(cat "$DIR/run/$unit.spec" 2>/dev/null)" = "$spec" ] && return
    log "$unit: settings changed, restarting"
    stop "$unit"
  fi
  if has_systemd; then
    systemctl reset-failed "$unit" 2>/dev/null || true
    systemd-run --quiet --collect --unit "$unit" "${env[@]/#/--setenv=}" \
      --property="StandardOutput=append:$DIR/$unit.log" --property="StandardError=append:$DIR/$unit.log" "$@"
  else # no systemd as init (a plain container): a session of its own
    ( ((${#env[@]} == 0)) || export "${env[@]}"; exec setsid "$@" </dev/null >>"$DIR/$unit.log" 2>&1) &
    echo $! >"$DIR/run/$unit.pid"
  fi
  printf '%s\n' "$spec" >"$DIR/run/$unit.spec"
}

wait_for() { # UNIT URL: until URL answers (any HTTP status) or UNIT dies
  for _ in $(seq 150); do
    curl -so /dev/null --max-time 2 --cacert "$CA" "$2" && return
    active "$1" || break
    sleep 0.2
  done
  log "$1 does not answer on $2; the end of $DIR/$1.log:"
  tail -15 "$DIR/$1.log" >&2 || true
  exit 1
}

post() { curl -fsS --max-time 5 -X POST -d "$2" "http://$DNSMGMT/$1"; }
summary() {
  printf 'pebble: directory %s ca %s dns %s\n' "$URL" "$CA" "$DNS"
  printf 'pebble: dns-01 directory https://%s/dir, bind9 %s:%s (zone %s, key %s)\n' "$ACME_DNS" "$NAMED_ADDR" "$NAMED_PORT" "$ZONE" "$BIND/tsig.key"
}

mkdir -p "$DIR/bin" "$DIR/run"
case ${1:-} in
up)
  need_curl; build; certs; config
  claim "$CHALL" "$DNSMGMT" "$DNS"
  claim "$PEBBLE" "$ACME" "$MGMT"
  claim "$NAMED" "$NAMED_ADDR:$NAMED_PORT"
  claim "$PEBBLE_DNS" "$ACME_DNS" "$MGMT_DNS"
  start "$CHALL" -- "${CHALL_CMD[@]}"
  start "$PEBBLE" "${PEBBLE_ENV[@]}" -- "${PEBBLE_CMD[@]}"
  bind9
  start "$NAMED" -- "${NAMED_CMD[@]}"
  start "$PEBBLE_DNS" "${PEBBLE_ENV[@]}" -- "${PEBBLE_DNS_CMD[@]}"
  wait_for "$CHALL" "http://$DNSMGMT/"
  wait_for "$PEBBLE" "$URL"
  wait_dns
  wait_for "$PEBBLE_DNS" "https://$ACME_DNS/dir"
  summary ;;
down)
  stop "$PEBBLE"; stop "$CHALL"; stop "$PEBBLE_DNS"; stop "$NAMED"
  for a in "$ACME" "$MGMT" "$DNSMGMT" "$DNS" "$ACME_DNS" "$MGMT_DNS" "$NAMED_ADDR:$NAMED_PORT"; do
    ! listening "$a" || die "$a still answers after down: a process that is not ours holds it (ss -ltnp 'sport = :${a##*:}' names it)"
  done ;;
status) # exits 1 unless all run
  rc=0
  for u in "$PEBBLE" "$CHALL" "$NAMED" "$PEBBLE_DNS"; do
    if active "$u"; then log "$u active"; else log "$u inactive"; rc=1; fi
  done
  summary; exit $rc ;;
add-a) # challtestsrv appends to a host's addresses and matches names
  # case-sensitively: clear first so that add-a replaces; lower-case as Pebble.
  { [ $# -eq 3 ] && [[ $3 =~ ^[0-9]+(\.[0-9]+){3}$ ]]; } || die "usage: $0 add-a HOST IPV4"
  need_curl
  post clear-a "{\"host\":\"${2,,}\"}"
  post add-a "{\"host\":\"${2,,}\",\"addresses\":[\"$3\"]}" ;;
clear-a)
  [ $# -eq 2 ] || die "usage: $0 clear-a HOST"
  need_curl; post clear-a "{\"host\":\"${2,,}\"}" ;;
roots) need_curl
  m=$MGMT; [ "${2:-}" != dns ] || m=$MGMT_DNS
  curl -fsS --max-time 5 --cacert "$CA" "https://$m/roots/0" ;;
*) die "usage: $0 up|down|status|add-a HOST IP|clear-a HOST|roots [dns]" ;;
esac
