#!/usr/bin/env bash
# pebble.sh up|down|status|add-a HOST IP|clear-a HOST|roots: a local ACME test
# CA for the e2e suite: Pebble, resolving through pebble-challtestsrv, which
# serves only DNS (hosts added with add-a; nothing else resolves). Both listen
# on 127.0.0.1 only; Pebble validates HTTP-01 on port 80 and TLS-ALPN-01 on
# 443 of the address add-a gave. Idempotent: `up` on a CA running with the same
# settings only prints the summary. Binaries, config and logs: .cache/pebble.
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
}

active() {
  if has_systemd; then systemctl is-active --quiet "$1"; return; fi
  local pid
  pid=$(cat "$DIR/run/$1.pid" 2>/dev/null) || return 1
  [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$DIR/bin/"* ]] # not a reused pid
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
summary() { printf 'pebble: directory %s ca %s dns %s\n' "$URL" "$CA" "$DNS"; }

mkdir -p "$DIR/bin" "$DIR/run"
case ${1:-} in
up)
  need_curl; build; certs; config
  start "$CHALL" -- "${CHALL_CMD[@]}"
  start "$PEBBLE" "${PEBBLE_ENV[@]}" -- "${PEBBLE_CMD[@]}"
  wait_for "$CHALL" "http://$DNSMGMT/"
  wait_for "$PEBBLE" "$URL"
  summary ;;
down) stop "$PEBBLE"; stop "$CHALL" ;;
status) # exits 1 unless both run
  rc=0
  for u in "$PEBBLE" "$CHALL"; do
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
roots) need_curl; curl -fsS --max-time 5 --cacert "$CA" "https://$MGMT/roots/0" ;;
*) die "usage: $0 up|down|status|add-a HOST IP|clear-a HOST|roots" ;;
esac
