#!/usr/bin/env bash
# The main job on local endpoints, no AWS account needed: validate and render
# the shipped clusters, then plan, apply and re-plan clusters/dev.toml against
# a local EC2 + SSM emulator (moto).
#
# This exercises the AWS side only: moto creates the VPC, security group,
# secrets and instances, but no instance boots, so no Kubernetes node joins.
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
echo; echo "demo done: the emulator stops now; on AWS, 'hybrid destroy clusters/dev.toml' removes everything."
