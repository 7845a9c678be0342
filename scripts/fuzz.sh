#!/usr/bin/env bash
# cargo-fuzz (libFuzzer, AddressSanitizer) run of fuzz/fuzz_targets/review.rs for a bounded
# time, seeded with the bench reviews and every tests/corpus workload as an AdmissionReview
# (fuzz/seeds.py) and the dictionary fuzz/review.dict. Not part of the test suite.
#
#   scripts/fuzz.sh                    # 300 s
#   FUZZ_SECONDS=60 scripts/fuzz.sh
#
# Needs a nightly toolchain (cargo-fuzz is installed when missing) and python3 with PyYAML.
# The first build compiles every dependency with sanitizer flags in fuzz/target (its own
# workspace and Cargo.lock): tens of minutes on 2 cores. Prints a Markdown summary on stdout.
# Exit: 0 no crash, 1 a crash (its input in fuzz/artifacts/review/), 3 no nightly toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-300}"
if ! rustup run nightly rustc --version > /dev/null 2>&1; then
  echo "no nightly toolchain: cargo-fuzz cannot run here" >&2
  exit 3
fi
command -v cargo-fuzz > /dev/null || cargo install cargo-fuzz --locked >&2

CORPUS="$PWD/fuzz/corpus/review"
SEEDS=$(python3 fuzz/seeds.py "$CORPUS" | cut -d' ' -f1)
# The corpus is kept between runs: seeds plus what earlier runs added.
CORPUS_FILES=$(find "$CORPUS" -type f | wc -l)
cargo +nightly fuzz build review >&2

LOG=$(mktemp)
rc=0
cargo +nightly fuzz run review "$CORPUS" -- \
  -max_total_time="$FUZZ_SECONDS" -timeout=10 -dict="$PWD/fuzz/review.dict" \
  -print_final_stats=1 > "$LOG" 2>&1 || rc=$?

final_stat() { sed -n "s/^stat::$1: *//p" "$LOG" | tail -1; }
# The last status line: "#N  REDUCE cov: C ft: F corp: U/S ...".
last=$(grep -E '^#[0-9]+.*cov: ' "$LOG" | tail -1 || true)
cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\)\/\([^ ]*\).*/\1 \2 \3 \4/p' <<< "$last")
read -r edges features units size <<< "${cov:-? ? ? ?}"
crashes=$(find fuzz/artifacts/review -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'slow-unit-*' \) 2> /dev/null | wc -l)

echo "- cargo-fuzz (libFuzzer + AddressSanitizer, $(rustup run nightly rustc --version)): \`cargo +nightly fuzz run review fuzz/corpus/review -- -max_total_time=$FUZZ_SECONDS -timeout=10 -dict=fuzz/review.dict\`, $SEEDS seeds (fuzz/seeds.py), $CORPUS_FILES files in fuzz/corpus/review at the start"
# "Done N runs in T second(s)" is only printed when the time budget ran out.
took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$LOG" | tail -1)
echo "- executions: $(final_stat number_of_executed_units) in ${took:-?} s, $(final_stat average_exec_per_sec) exec/s, peak RSS $(final_stat peak_rss_mb) MB"
echo "- coverage at the end: cov: $edges (edges), ft: $features (features), corpus: $units inputs ($size); new units this run: $(final_stat new_units_added)"
if [ "$rc" -ne 0 ]; then
  echo "- libFuzzer stopped with exit $rc: **crash** (inputs in fuzz/artifacts/review/: $crashes); the report:"
  echo
  echo '```text'
  grep -E -A12 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$LOG" | head -40
  echo '```'
  rm -f "$LOG"
  exit 1
fi
echo "- crashes: **0** (files in fuzz/artifacts/review/ from any run: $crashes)"
rm -f "$LOG"
