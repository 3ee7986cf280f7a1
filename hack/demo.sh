#!/usr/bin/env bash
# demo.sh: the local demo. Brings up Incus (hack/incus-env.sh), starts two
# api and two stream backends labelled user.role=api / user.role=stream in
# the incuslb-demo project, applies specs/examples/demo.yaml, and sends a few
# requests through the load balancer. Idempotent; `make demo-clean` removes it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PROJECT=incuslb-demo
WORK=$ROOT/.cache/demo
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

bash hack/incus-env.sh
mkdir -p "$WORK" bin
go build -o bin/incuslb ./cmd/incuslb
CGO_ENABLED=0 go build -o "$WORK/testserver" ./e2e/testserver
printf '[Unit]\nDescription=incuslb demo backend\nAfter=network.target\n\n[Service]\nExecStart=/usr/local/bin/testserver\nRestart=always\n\n[Install]\nWantedBy=multi-user.target\n' >"$WORK/testserver.service"

incus project show "$PROJECT" >/dev/null 2>&1 ||
  incus project create "$PROJECT" -c features.images=false -c features.profiles=false >/dev/null

in_demo() { incus --project "$PROJECT" "$@"; }
backend() { # name role: a container running testserver, set up until it answers
  if ! in_demo info "$1" >/dev/null 2>&1; then
    echo "launching backend $1 (user.role=$2)"
    in_demo launch lb-haproxy "$1" -c user.role="$2" >/dev/null
  fi
  for _ in 1 2 3; do
    if in_demo exec "$1" -- systemctl is-active --quiet testserver 2>/dev/null; then return 0; fi
    in_demo exec "$1" -- systemctl is-system-running --wait >/dev/null 2>&1 || true
    in_demo --quiet file push --uid 0 --gid 0 --mode 0755 "$WORK/testserver" "$1/usr/local/bin/testserver" &&
      in_demo --quiet file push --uid 0 --gid 0 --mode 0644 "$WORK/testserver.service" "$1/etc/systemd/system/testserver.service" &&
      in_demo exec "$1" -- systemctl daemon-reload &&
      in_demo exec "$1" -- systemctl enable --now testserver >/dev/null 2>&1 || sleep 1
  done
  in_demo exec "$1" -- systemctl is-active --quiet testserver || { echo "backend $1: testserver does not run" >&2; return 1; }
}
say "backends"
pids=()
for b in demo-api-1:api demo-api-2:api demo-stream-1:stream demo-stream-2:stream; do
  backend "${b%%:*}" "${b##*:}" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

say "incuslb apply -f specs/examples/demo.yaml"
bin/incuslb apply -f specs/examples/demo.yaml

LB=$(incus --project "$PROJECT" list demo-lb -c 4 --format csv | awk '{print $1; exit}')
say "waiting for the health checks (rise 2 x 2s)"
for _ in $(seq 1 40); do
  n=$(bin/incuslb status demo -o json | grep -c '"state": "UP"' || true)
  [ "$n" -ge 4 ] && break
  sleep 0.5
done

say "traffic through the load balancer at $LB"
echo "api_pool, round-robin without a cookie:"
for _ in 1 2 3 4; do curl -s --max-time 5 "http://$LB/api/v1/items"; done
echo "api_pool, pinned by the VEZA_SERVERID cookie:"
jar=$(mktemp)
for _ in 1 2 3; do curl -s --max-time 5 -b "$jar" -c "$jar" "http://$LB/api/v1/items"; done
rm -f "$jar"
echo "stream_pool, the same URI always lands on the same backend:"
for t in 7 7 7 12 12 31; do curl -s --max-time 5 "http://$LB/stream/track-$t"; done

say "incuslb status demo"
bin/incuslb status demo
echo
echo "Try: incus --project $PROJECT stop --force demo-api-1, then bin/incuslb status demo."
echo "Remove everything with: make demo-clean"
