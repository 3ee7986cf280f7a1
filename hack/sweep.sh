#!/usr/bin/env bash
# sweep.sh deletes what an interrupted e2e or bench run left behind: the
# Incus projects it names incuslb-e2e-<hex> and incuslb-bench-<hex>, their
# instances, their host-side sockets under /run/incuslb, and their leader
# lease profiles (incuslb-lease-incuslb-e2e-<hex>...). Those names
# belong to the suite and the harness only; nothing else is touched. Run it
# before a suite, never beside one (make e2e and make bench do).
set -euo pipefail

log() { printf 'sweep: %s\n' "$*" >&2; }

incus info >/dev/null 2>&1 || { log "incusd is not running; nothing to sweep"; exit 0; }

projects=$(incus project list -f csv -c n | sed 's/ (current)$//' |
  grep -E '^incuslb-(e2e|bench)-[0-9a-f]{6}$' || true)
for p in $projects; do
  log "deleting leftover project $p"
  for i in $(incus list --project "$p" -f csv -c n); do
    incus delete --project "$p" --force "$i" >/dev/null 2>&1 || log "could not delete $p/$i"
  done
  incus project delete "$p" >/dev/null 2>&1 || log "could not delete project $p"
  rm -f /run/incuslb/"$p"_*.sock
  rm -rf /run/incuslb-e2e-run-"$p"
done

for p in $(incus profile list --project default -f csv -c n |
  grep -E '^incuslb-lease-incuslb-(e2e|bench)-[0-9a-f]{6}(-[a-z]+)?$' || true); do
  log "deleting leftover lease profile $p"
  incus profile delete --project default "$p" >/dev/null 2>&1 || log "could not delete profile $p"
done
