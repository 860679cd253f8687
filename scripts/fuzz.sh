#!/usr/bin/env bash
# Fuzzes the HJ 212 parser (hj212/fuzz): each target runs SECONDS (default 20); a finding fails.
#
#   bash scripts/fuzz.sh [SECONDS]
#
# cargo-fuzz needs nightly-only compiler flags (sanitizers); RUSTC_BOOTSTRAP=1 lets the one stable
# toolchain accept them, so no nightly has to be installed. Findings land in
# hj212/fuzz/artifacts/<target>/ (git-ignored); the corpus grows in hj212/fuzz/corpus/.
set -euo pipefail

seconds="${1:-20}"
root="$(cd "$(dirname "$0")/.." && pwd)"
# cargo fuzz finds the fuzz/ directory of the crate it is run in.
cd "$root/hj212"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1
# Its own target dir: sanitizer builds must not invalidate the workspace's.
export CARGO_TARGET_DIR="$root/hj212/fuzz/target"

status=0
for target in framer packet; do
    mkdir -p "fuzz/corpus/$target"
    log="$(mktemp)"
    echo "fuzz: $target for ${seconds}s"
    # -rss_limit_mb guards against a leak the bounded framer should not have.
    if cargo fuzz run "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -print_final_stats=1 >"$log" 2>&1; then
        runs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1)"
        echo "fuzz: $target ok, ${runs:-?} executions in ${seconds}s"
    else
        status=1
        tail -40 "$log"
        echo "fuzz: $target FAILED (reproducer in hj212/fuzz/artifacts/$target/)"
    fi
    rm -f "$log"
done
exit $status
