#!/usr/bin/env bash
# Benchmarks (results go into the issue notes, never into timed tests):
#  1. render: all user data for a 1,000-node cluster (cargo bench).
#  2. AWS side against moto: apply a 200-node cluster (several pools) from
#     nothing, then a no-op plan; wall time, API calls by operation, peak RSS.
#     A 20-node no-op plan shows describe calls do not grow with nodes.
#  3. critical path: per shipped pool, downloads, bytes, reboots and image
#     pulls between boot and Ready, on a stock and on a baked image.
#  4. far from the region: a 24-node cluster's apply from nothing and no-op
#     plan through a proxy that adds 200 ms to every AWS call (a team in
#     Seoul, clusters in us-east-1); wall time, round trips (wall / 200 ms)
#     and the call count.
# `scripts/bench.sh far` runs only the last; HYBRID_BIN=PATH benches another
# build of hybrid (an older commit's, for a before/after).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
only=${1:-all}
if [ "$only" != far ]; then
  cargo bench --locked -q --bench render
  cargo bench --locked -q --bench critical_path
fi
[ -n "${HYBRID_BIN:-}" ] || cargo build --locked -q --release
hybrid=${HYBRID_BIN:-target/release/hybrid}
work=$(mktemp -d)

cluster() { # name linux1 linux2 win2022 win2019
  cat >"$work/$1.toml" <<TOML
[cluster]
name = "$1"
region = "us-east-1"
kubernetes_version = "1.35"  # the newest minor that still runs Windows Server 2019
[network]
vpc_cidr = "10.60.0.0/16"
subnet_cidr = "10.60.0.0/22"
[control_plane]
instance_type = "m6i.2xlarge"
[[pool]]
name = "game-a"
os = "linux"
instance_type = "c6i.xlarge"
count = $2
[[pool]]
name = "game-b"
os = "al2023"
instance_type = "c6i.2xlarge"
count = $3
[[pool]]
name = "tools-2022"
os = "windows-2022"
instance_type = "m6i.xlarge"
count = $4
[[pool]]
name = "tools-2019"
os = "windows-2019"
instance_type = "m5.xlarge"
count = $5
TOML
  echo "$work/$1.toml"
}

# Runs a command and prints its wall time and peak RSS (from the kernel's
# accounting of the child) after its own output.
measure() {
  .venv/bin/python - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
r = subprocess.run(sys.argv[1:])
wall = time.monotonic() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"  wall {wall:.2f} s, peak RSS {rss / 1024:.1f} MiB, exit {r.returncode}", file=sys.stderr)
sys.exit(r.returncode)
PY
}

# shellcheck source=scripts/moto.sh
source scripts/moto.sh
if [ "$only" != far ]; then
  big=$(cluster bench200 80 59 40 20)
  small=$(cluster bench20 8 5 4 2)
  echo; echo "== apply, 200 nodes, from nothing"
  measure "$hybrid" apply "$big" --yes --ec2-only --api-stats >/dev/null
  echo; echo "== no-op plan, 200 nodes"
  measure "$hybrid" plan "$big" --detailed-exitcode --ec2-only --api-stats >/dev/null
  echo; echo "== no-op plan, 20 nodes (after applying them)"
  "$hybrid" apply "$small" --yes --ec2-only >/dev/null 2>&1
  measure "$hybrid" plan "$small" --detailed-exitcode --ec2-only --api-stats >/dev/null
fi

# Through the fault proxy with a fixed delay per call and no faults, beside
# the same run straight to moto: round trips are wall time / 200 ms, and
# (far - near) / 200 ms is what the delay alone costs (moto's own time,
# which real AWS does not have in that measure, taken out).
timed() { # label cmd...
  local label=$1
  shift
  .venv/bin/python - "$label" "$@" <<'PY'
import re, subprocess, sys, time
label, cmd = sys.argv[1], sys.argv[2:]
t = time.monotonic()
r = subprocess.run(cmd, capture_output=True, text=True)
wall = time.monotonic() - t
calls = re.search(r"AWS API calls: (\d+)", r.stderr)
print(f"{label} {wall:.3f} {calls.group(1) if calls else '?'} {r.returncode}")
if r.returncode not in (0, 2):
    print(r.stderr[-2000:], file=sys.stderr)
    sys.exit(r.returncode)
PY
}
far_port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/python tests/support/fault_proxy.py "$far_port" "$AWS_ENDPOINT_URL" 1 0 0.2 >/dev/null 2>&1 &
far_pid=$!
# shellcheck disable=SC2154 # moto_pid comes from scripts/moto.sh
trap 'kill "$far_pid" "$moto_pid" 2>/dev/null || true' EXIT
sleep 1
near=$(cluster bench24n 10 6 6 2)
far=$(cluster bench24 10 6 6 2)
echo; echo "== 24 nodes, 200 ms per AWS call (beside the same run at 0 ms)"
{
  timed "near-apply" "$hybrid" apply "$near" --yes --ec2-only --offline --api-stats
  timed "near-plan" "$hybrid" plan "$near" --detailed-exitcode --ec2-only --api-stats
  AWS_ENDPOINT_URL="http://127.0.0.1:$far_port" timed "far-apply" "$hybrid" apply "$far" --yes --ec2-only --offline --api-stats
  AWS_ENDPOINT_URL="http://127.0.0.1:$far_port" timed "far-plan" "$hybrid" plan "$far" --detailed-exitcode --ec2-only --api-stats
} >"$work/far.txt"
.venv/bin/python - "$work/far.txt" <<'PY'
import sys
runs = {label: (float(wall), calls, code) for label, wall, calls, code in (l.split() for l in open(sys.argv[1]))}
for what, name in (("apply", "apply from nothing"), ("plan", "no-op plan")):
    far, near = runs[f"far-{what}"], runs[f"near-{what}"]
    print(f"  {name}: wall {far[0]:.2f} s, {far[0] / 0.2:.1f} round trips of 200 ms "
          f"({(far[0] - near[0]) / 0.2:.1f} from the delay alone; {near[0]:.2f} s at 0 ms), {far[1]} calls, exit {far[2]}", file=sys.stderr)
PY
