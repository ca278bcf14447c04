#!/usr/bin/env bash
# Benchmarks (results go into the issue notes, never into timed tests):
#  1. render: all user data for a 1,000-node cluster (cargo bench).
#  2. AWS side against moto: apply a 200-node cluster (several pools) from
#     nothing, then a no-op plan; wall time, API calls by operation, peak RSS.
#     A 20-node no-op plan shows describe calls do not grow with nodes.
#  3. critical path: per shipped pool, downloads, bytes, reboots and image
#     pulls between boot and Ready, on a stock and on a baked image.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo bench --locked -q --bench render
cargo bench --locked -q --bench critical_path
cargo build --locked -q --release
hybrid=target/release/hybrid
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
big=$(cluster bench200 80 59 40 20)
small=$(cluster bench20 8 5 4 2)
echo; echo "== apply, 200 nodes, from nothing"
measure "$hybrid" apply "$big" --yes --ec2-only --api-stats >/dev/null
echo; echo "== no-op plan, 200 nodes"
measure "$hybrid" plan "$big" --detailed-exitcode --ec2-only --api-stats >/dev/null
echo; echo "== no-op plan, 20 nodes (after applying them)"
"$hybrid" apply "$small" --yes --ec2-only >/dev/null 2>&1
measure "$hybrid" plan "$small" --detailed-exitcode --ec2-only --api-stats >/dev/null
