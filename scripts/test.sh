#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set-up, `cargo fmt --check` and
# clippy with warnings as errors, then every test (unit tests, and the one
# integration binary against real parsers, linters, a local EC2 + SSM
# emulator and a strict Kubernetes API emulator), then the demo. Ends with
# one "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Habits first: formatting and lints fail the run like a failing test.
cargo fmt --check
cargo clippy --locked --all-targets --quiet -- -D warnings
log=$(mktemp)
status=0
# Doc tests are left out: there are none, and their empty summary would be
# the last line of the run. The benchmarks run once (debug build, no timing
# asserted) so that one whose input no longer validates fails here, not on
# the day someone measures.
cargo test --locked --lib --bins --tests --benches 2>&1 | tee "$log" || status=$?
# The README's other command, the demo, must work as written.
scripts/demo.sh >"$log.demo" 2>&1 || { status=1; echo "demo failed:"; tail -n 40 "$log.demo"; }
echo "demo: $(tail -n 1 "$log.demo")"
rm -f "$log.demo"
totals=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i + 1) ~ /^passed/) p += $i; if ($(i + 1) ~ /^failed/) f += $i } } END { printf "%d passed, %d failed", p, f }' "$log")
rm -f "$log"
echo
echo "tests: $totals"
exit "$status"
