#!/usr/bin/env bash
# The main job on local endpoints, no AWS account needed: check the shipped
# cluster files.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --locked -q
for f in clusters/dev.toml clusters/qa.toml; do
  target/debug/hybrid validate "$f"
done
out=$(mktemp -d)
target/debug/hybrid render clusters/dev.toml --out "$out"
echo "rendered user data is in $out"
