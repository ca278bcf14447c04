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
#   HYBRID                 the hybrid binary (default: a release build, built if missing)
#   HYBRID_E2E_EC2_ONLY=1  the AWS side only (for emulators such as moto: nothing boots there)
#   AWS_* / --profile      the usual AWS credential chain; AWS_ENDPOINT_URL points at an emulator
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
if [ $# -gt 1 ]; then
  usage >&2
  exit 64
fi
FILE=${1:-examples/e2e-aws/calico.toml}
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

HYBRID=${HYBRID:-target/release/hybrid}
if [ ! -x "$HYBRID" ]; then
  cargo build --release --locked --quiet
fi
OUT=${HYBRID_E2E_OUT:-e2e-aws-results}
mkdir -p "$OUT"
NAME=$(basename "$FILE" .toml)
WORK=$(mktemp -d)
CLUSTER_FILE="$WORK/$NAME.toml"

ADMIN=${HYBRID_E2E_ADMIN_CIDR:-}
if [ -z "$ADMIN" ]; then
  ADMIN="$(curl -fsS --max-time 10 https://checkip.amazonaws.com | tr -d '[:space:]')/32"
fi
case "$ADMIN" in
  *[!0-9./]* | '') echo "e2e-aws: HYBRID_E2E_ADMIN_CIDR is not an IPv4 CIDR: $ADMIN" >&2; exit 64 ;;
esac
sed "/^\[network\]/a admin_cidrs = [\"$ADMIN\"]" "$FILE" >"$CLUSTER_FILE"

MAX=${HYBRID_E2E_MAX_HOURLY:-2.50}
COST=$("$HYBRID" plan "$CLUSTER_FILE" --offline --progress plain 2>/dev/null | sed -n 's/^Estimated cost: \$\([0-9.]*\)\/hour.*/\1/p')
if [ -z "$COST" ] || ! awk -v c="$COST" -v m="$MAX" 'BEGIN { exit !(c <= m) }'; then
  echo "e2e-aws: refusing to run: the estimate \$${COST:-?}/hour exceeds HYBRID_E2E_MAX_HOURLY=\$$MAX" >&2
  exit 2
fi

APPLY_ARGS=(--yes --progress plain)
if [ "${HYBRID_E2E_EC2_ONLY:-}" = 1 ]; then
  APPLY_ARGS+=(--ec2-only)
fi

log() { printf '[%s] e2e-aws: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# The cluster goes whatever happens after this point.
destroyed=0
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ "$destroyed" = 0 ]; then
    log "destroying $NAME"
    if "$HYBRID" destroy "$CLUSTER_FILE" --yes --progress plain; then
      log "destroyed"
    else
      log "DESTROY FAILED: run \`hybrid destroy $FILE --yes\` (or \`hybrid reap\` after the ttl) by hand"
      status=1
    fi
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "$NAME: estimated \$$COST/hour, admin CIDR $ADMIN"
started=$(date +%s)
"$HYBRID" apply "$CLUSTER_FILE" "${APPLY_ARGS[@]}"
applied=$(date +%s)
log "apply finished after $((applied - started))s"
# A test hook: a failure here must still destroy the cluster.
if [ "${HYBRID_E2E_FAIL_AFTER_APPLY:-}" = 1 ]; then
  log "failing on purpose (HYBRID_E2E_FAIL_AFTER_APPLY)"
  exit 1
fi

verify=skipped
if [ "${HYBRID_E2E_EC2_ONLY:-}" != 1 ]; then
  if "$HYBRID" verify "$CLUSTER_FILE"; then verify=passed; else verify=failed; fi
fi
"$HYBRID" status "$CLUSTER_FILE" --output json >"$OUT/$NAME-status.json"
printf '{"file": "%s", "apply_seconds": %d, "verify": "%s", "status": "%s"}\n' \
  "$FILE" "$((applied - started))" "$verify" "$NAME-status.json" >"$OUT/$NAME.json"
log "results in $OUT/$NAME.json (time to Ready per node in $OUT/$NAME-status.json)"
[ "$verify" != failed ]
