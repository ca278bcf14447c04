#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set-up, then every test (unit
# tests, and the one integration binary against real parsers, linters and
# a local EC2 + SSM emulator). Ends with one "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
log=$(mktemp)
status=0
# Doc tests are left out: there are none, and their empty summary would be
# the last line of the run.
cargo test --locked --lib --bins --tests 2>&1 | tee "$log" || status=$?
totals=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i + 1) ~ /^passed/) p += $i; if ($(i + 1) ~ /^failed/) f += $i } } END { printf "%d passed, %d failed", p, f }' "$log")
rm -f "$log"
echo
echo "tests: $totals"
exit "$status"
