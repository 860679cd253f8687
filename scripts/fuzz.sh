#!/usr/bin/env bash
# Fuzzes every cargo-fuzz crate: the HJ 212 parser (hj212/fuzz), the device protocol (wire/fuzz)
# and the portal's JSON and query inputs (portal/fuzz). Each target runs SECONDS (default 20) and
# prints its executions; a finding fails.
#
#   bash scripts/fuzz.sh [SECONDS] [CRATE...]     e.g. bash scripts/fuzz.sh 600 wire
#
# cargo-fuzz needs nightly-only compiler flags (sanitizers); RUSTC_BOOTSTRAP=1 lets the one stable
# toolchain accept them, so no nightly has to be installed. Findings land in
# <crate>/fuzz/artifacts/<target>/ (git-ignored); the corpus grows in <crate>/fuzz/corpus/.
set -euo pipefail

seconds="${1:-20}"
shift || true
crates=("$@")
if [ ${#crates[@]} -eq 0 ]; then
    crates=(hj212 wire portal)
fi
root="$(cd "$(dirname "$0")/.." && pwd)"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1

status=0
for crate in "${crates[@]}"; do
    # cargo fuzz finds the fuzz/ directory of the crate it is run in.
    cd "$root/$crate"
    # Its own target dir: sanitizer builds must not invalidate the workspace's.
    export CARGO_TARGET_DIR="$root/$crate/fuzz/target"
    for target in $(cargo fuzz list); do
        mkdir -p "fuzz/corpus/$target"
        log="$(mktemp)"
        echo "fuzz: $crate/$target for ${seconds}s"
        # -rss_limit_mb guards against a leak or an unbounded buffer.
        if cargo fuzz run "$target" "fuzz/corpus/$target" -- \
            -max_total_time="$seconds" -rss_limit_mb=1024 -print_final_stats=1 >"$log" 2>&1; then
            runs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1)"
            rate="$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}' | tail -1)"
            cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -1)"
            echo "fuzz: $crate/$target ok, ${runs:-?} executions in ${seconds}s (${rate:-?}/s, ${cov:-cov: ?})"
        else
            status=1
            tail -40 "$log"
            echo "fuzz: $crate/$target FAILED (reproducer in $crate/fuzz/artifacts/$target/)"
        fi
        rm -f "$log"
    done
done
exit $status
