#!/usr/bin/env bash
# The main job on local endpoints, no AWS account needed: validate and render
# the shipped clusters, plan, apply and re-plan clusters/dev.toml against a
# local EC2 + SSM emulator (moto), then converge its cluster side against a
# local Kubernetes API emulator until every node is Ready, and destroy it.
#
# moto boots nothing, so no kubelet would ever register a node:
# scripts/kubelets.py stands in for them (a Ready Node per running
# instance). Everything hybrid sends, and the waits, are the real ones.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --locked -q
hybrid=target/debug/hybrid

for f in clusters/dev.toml clusters/qa.toml; do
  "$hybrid" validate "$f"
done
out=$(mktemp -d)
"$hybrid" render clusters/dev.toml --out "$out"
echo "rendered user data is in $out"

# shellcheck source=scripts/moto.sh
source scripts/moto.sh
echo; echo "== hybrid plan clusters/dev.toml"
"$hybrid" plan clusters/dev.toml --ec2-only
echo; echo "== hybrid apply clusters/dev.toml --yes --ec2-only"
"$hybrid" apply clusters/dev.toml --yes --ec2-only
echo; echo "== hybrid plan clusters/dev.toml (expect: No changes)"
"$hybrid" plan clusters/dev.toml --detailed-exitcode --ec2-only

# The cluster side: a strict Kubernetes API emulator (loopback, plain HTTP)
# and the kubelet stand-in for the instances moto made.
kport=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
klog=$(mktemp)
.venv/bin/python tests/support/kube_emulator.py "$kport" --kube-version 1.36 >"$klog" 2>&1 &
kube_pid=$!
.venv/bin/python scripts/kubelets.py dev "http://127.0.0.1:$kport" 3 &
kubelets_pid=$!
trap 'kill "$moto_pid" "$kube_pid" "$kubelets_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q ready "$klog" && break; sleep 0.1; done
api=(--api-server "http://127.0.0.1:$kport")
echo; echo "== hybrid apply clusters/dev.toml --yes --api-server (Calico, IPAM, Felix, kube-proxy for Windows, RuntimeClass, labels and taints; waits until every node is Ready)"
"$hybrid" apply clusters/dev.toml --yes "${api[@]}"
echo; echo "== hybrid status clusters/dev.toml"
"$hybrid" status clusters/dev.toml "${api[@]}"
echo; echo "== hybrid plan clusters/dev.toml (expect: No changes, AWS and cluster side)"
"$hybrid" plan clusters/dev.toml --detailed-exitcode "${api[@]}"
echo; echo "== hybrid destroy clusters/dev.toml --yes"
"$hybrid" destroy clusters/dev.toml --yes
echo; echo "demo done: the emulators stop now."
