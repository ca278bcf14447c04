#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set-up, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --locked
