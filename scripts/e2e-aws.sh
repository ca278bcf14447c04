#!/usr/bin/env bash
# The check a maintainer runs on real AWS before a release: create a small
# cluster from a file in examples/e2e-aws/, wait until every node is Ready,
# run `hybrid verify`, record each node's time to Ready and boot timeline as
# JSON, and always destroy the cluster again (on success, failure or Ctrl-C).
#
#   HYBRID_E2E_AWS=1 scripts/e2e-aws.sh [FILE]      (default examples/e2e-aws/calico.toml)
#
# It spends money, so it refuses to run without HYBRID_E2E_AWS=1, without a
# `ttl` in the file (the cluster expires even if this script is killed, and
# `hybrid reap` removes it), or when `hybrid plan`'s estimate exceeds
# HYBRID_E2E_MAX_HOURLY dollars per hour (default 2.50).
#
# Settings (environment):
#   HYBRID_E2E_ADMIN_CIDR  who may reach the API server and SSH/RDP (default: this machine's public IPv4 /32)
#   HYBRID_E2E_OUT         results folder (default: e2e-aws-results/)
#   HYBRID_E2E_IMAGES      auto (default: as the file says) | compare: bring the cluster up on stock images,
#                          destroy it, `hybrid bake` its images, bring it up again on them, and record both
#                          times to Ready per pool (the baked images stay; `hybrid images --prune` removes them)
#   HYBRID_E2E_BAKE_ARGS   extra `hybrid bake` flags in compare mode, e.g. "--subnet S --security-group G"
#                          where the region has no default VPC for the builders
#   HYBRID                 the hybrid binary (default: a release build, built if missing)
#   HYBRID_E2E_EC2_ONLY=1  the AWS side only (for emulators such as moto: nothing boots there)
#   AWS_* / --profile      the usual AWS credential chain; AWS_ENDPOINT_URL points at an emulator
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
if [ $# -gt 1 ]; then
  usage >&2
  exit 64
fi
FILE=${1:-examples/e2e-aws/calico.toml}
IMAGES=${HYBRID_E2E_IMAGES:-auto}
case "$IMAGES" in
  auto | compare) ;;
  *) echo "e2e-aws: HYBRID_E2E_IMAGES must be auto or compare, not: $IMAGES" >&2; exit 64 ;;
esac
if [ "${HYBRID_E2E_AWS:-}" != 1 ]; then
  echo "e2e-aws: refusing to run: this creates real, billed AWS resources; set HYBRID_E2E_AWS=1 to proceed" >&2
  exit 2
fi
if [ ! -f "$FILE" ]; then
  echo "e2e-aws: no such cluster file: $FILE" >&2
  exit 64
fi
if ! grep -Eq '^ttl *= *"[0-9]+[mhd]"' "$FILE"; then
  echo "e2e-aws: refusing to run: $FILE has no ttl, so a killed run could leave the cluster up" >&2
  exit 2
fi
if grep -Eq '^ *image *=' "$FILE" && [ "$IMAGES" = compare ]; then
  echo "e2e-aws: $FILE pins a pool's image; compare mode chooses stock and baked images itself" >&2
  exit 64
fi

HYBRID=${HYBRID:-target/release/hybrid}
if [ ! -x "$HYBRID" ]; then
  cargo build --release --locked --quiet
fi
OUT=${HYBRID_E2E_OUT:-e2e-aws-results}
mkdir -p "$OUT"
NAME=$(basename "$FILE" .toml)
WORK=$(mktemp -d)

ADMIN=${HYBRID_E2E_ADMIN_CIDR:-}
if [ -z "$ADMIN" ]; then
  ADMIN="$(curl -fsS --max-time 10 https://checkip.amazonaws.com | tr -d '[:space:]')/32"
fi
case "$ADMIN" in
  *[!0-9./]* | '') echo "e2e-aws: HYBRID_E2E_ADMIN_CIDR is not an IPv4 CIDR: $ADMIN" >&2; exit 64 ;;
esac

# cluster_file IMAGE: the file with the caller's admin CIDR and, unless
# IMAGE is auto, every pool's `image` set to IMAGE.
cluster_file() {
  local out="$WORK/$1/$NAME.toml"
  mkdir -p "$WORK/$1"
  if [ "$1" = auto ]; then
    sed "/^\[network\]/a admin_cidrs = [\"$ADMIN\"]" "$FILE" >"$out"
  else
    sed -e "/^\[network\]/a admin_cidrs = [\"$ADMIN\"]" -e "/^\[\[pool\]\]/a image = \"$1\"" "$FILE" >"$out"
  fi
  echo "$out"
}

MAX=${HYBRID_E2E_MAX_HOURLY:-2.50}
COST=$("$HYBRID" plan "$(cluster_file auto)" --offline --progress plain 2>/dev/null | sed -n 's/^Estimated cost: \$\([0-9.]*\)\/hour.*/\1/p')
if [ -z "$COST" ] || ! awk -v c="$COST" -v m="$MAX" 'BEGIN { exit !(c <= m) }'; then
  echo "e2e-aws: refusing to run: the estimate \$${COST:-?}/hour exceeds HYBRID_E2E_MAX_HOURLY=\$$MAX" >&2
  exit 2
fi

APPLY_ARGS=(--yes --progress plain)
if [ "${HYBRID_E2E_EC2_ONLY:-}" = 1 ]; then
  APPLY_ARGS+=(--ec2-only)
fi

log() { printf '[%s] e2e-aws: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# The cluster that is up, if any: it goes whatever happens.
UP=
destroy() {
  log "destroying $NAME"
  if "$HYBRID" destroy "$UP" --yes --progress plain; then
    log "destroyed"
    UP=
  else
    log "DESTROY FAILED: run \`hybrid destroy $FILE --yes\` (or \`hybrid reap\` after the ttl) by hand"
    return 1
  fi
}
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$UP" ]; then
    destroy || status=1
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_once IMAGE RESULT: apply, verify, record status as RESULT-status.json
# and a line of RESULT.run.json, destroy. A failed verify is recorded and
# fails the script at the end, after every run.
VERIFY_FAILED=0
run_once() {
  local file started applied verify
  file=$(cluster_file "$1")
  log "$NAME ($1 images): estimated \$$COST/hour, admin CIDR $ADMIN"
  started=$(date +%s)
  UP=$file
  "$HYBRID" apply "$file" "${APPLY_ARGS[@]}"
  applied=$(date +%s)
  log "apply finished after $((applied - started))s"
  # A test hook: a failure here must still destroy the cluster.
  if [ "${HYBRID_E2E_FAIL_AFTER_APPLY:-}" = 1 ]; then
    log "failing on purpose (HYBRID_E2E_FAIL_AFTER_APPLY)"
    exit 1
  fi
  verify=skipped
  if [ "${HYBRID_E2E_EC2_ONLY:-}" != 1 ]; then
    if "$HYBRID" verify "$file"; then verify=passed; else verify=failed; VERIFY_FAILED=1; fi
  fi
  "$HYBRID" status "$file" --output json >"$OUT/$2-status.json"
  printf '{"images": "%s", "apply_seconds": %d, "verify": "%s", "status": "%s"}\n' \
    "$1" "$((applied - started))" "$verify" "$2-status.json" >"$WORK/$2.run.json"
  destroy
}

if [ "$IMAGES" = auto ]; then
  run_once auto "$NAME"
  RUNS=("$WORK/$NAME.run.json")
else
  run_once stock "$NAME-stock"
  log "baking the images $NAME's pools boot"
  read -r -a BAKE_ARGS <<<"${HYBRID_E2E_BAKE_ARGS:-}"
  baking=$(date +%s)
  "$HYBRID" bake "$(cluster_file auto)" --yes "${BAKE_ARGS[@]}"
  log "bake finished after $(($(date +%s) - baking))s"
  run_once baked "$NAME-baked"
  RUNS=("$WORK/$NAME-stock.run.json" "$WORK/$NAME-baked.run.json")
fi

# One summary: each run, and per pool the slowest node's time to Ready
# (null where no node became Ready, as with HYBRID_E2E_EC2_ONLY).
python3 - "$FILE" "$OUT" "${RUNS[@]}" >"$OUT/$NAME.json" <<'PY'
import json, sys
file, out, runs = sys.argv[1], sys.argv[2], [json.load(open(p)) for p in sys.argv[3:]]
for run in runs:
    nodes = json.load(open(f"{out}/{run['status']}"))["nodes"]
    ready = {}
    for n in nodes:
        t = n.get("time_to_ready_s")
        ready.setdefault(n["pool"], None)
        if t is not None:
            ready[n["pool"]] = max(t, ready[n["pool"]] or 0)
    run["slowest_ready_s_by_pool"] = ready
summary = {"file": file, "runs": runs}
if len(runs) == 1:
    summary.update({k: runs[0][k] for k in ("apply_seconds", "verify", "status")})
json.dump(summary, sys.stdout, indent=2)
print()
PY
log "results in $OUT/$NAME.json (time to Ready per node in $OUT/$NAME*-status.json)"
[ "$VERIFY_FAILED" = 0 ]
