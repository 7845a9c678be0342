#!/usr/bin/env bash
# The benchmark run of issue 6: builds in release mode, runs every benchmark on this machine
# and writes BENCHMARKS.md (the machine, the command, each figure and how it was measured).
# Not part of the test suite and not in CI; takes about 35 minutes on 2 cores.
#
#   scripts/bench.sh                  # everything, writes BENCHMARKS.md
#   OUT=/tmp/b.md scripts/bench.sh    # write elsewhere
#   PARTS="webhook detect" scripts/bench.sh   # a subset: webhook detect peers controller controller-real fuzz slow-clients secret-cache
#   FUZZ_SECONDS=600 scripts/bench.sh         # cargo-fuzz time budget (default 300 s)
#
# Needs: wrk (apt-get, installed by scripts/bench-webhook.sh when missing), moto in .venv
# (scripts/install-test-deps.sh, run here), python3, openssl, curl. Load goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-BENCHMARKS.md}"
PARTS="${PARTS:-webhook detect peers controller controller-real fuzz slow-clients secret-cache}"
LOGDIR="$(mktemp -d)"
START=$(date +%s)
has() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

echo "==> release build (bins and benches)" >&2
cargo build --release --bins --benches >&2
if has controller || has controller-real || has secret-cache; then scripts/install-test-deps.sh >&2; fi

section() { # title, log file
  { echo; echo "$1"; echo; cat "$2"; } >> "$LOGDIR/body.md"
}
: > "$LOGDIR/body.md"

if has webhook; then
  echo "==> webhook load (wrk, TLS, loopback)" >&2
  if scripts/bench-webhook.sh > "$LOGDIR/webhook.md"; then :; else echo "(bench-webhook.sh failed: exit $?)" >> "$LOGDIR/webhook.md"; fi
  section "## Webhook: throughput and latency over TLS, wrk and the webhook sharing all cores (scripts/bench-webhook.sh)" "$LOGDIR/webhook.md"
  if [ "$(nproc)" -ge 2 ]; then
    if CPU_SPLIT=1 scripts/bench-webhook.sh > "$LOGDIR/webhook-split.md"; then :; else echo "(CPU_SPLIT=1 bench-webhook.sh failed: exit $?)" >> "$LOGDIR/webhook-split.md"; fi
    section "## Webhook: the same with one core each (CPU_SPLIT=1 scripts/bench-webhook.sh: webhook on one core with one worker, wrk on the other)" "$LOGDIR/webhook-split.md"
  fi
fi

if has detect; then
  echo "==> rules vs parse (criterion, benches/detect.rs)" >&2
  cargo bench --bench detect -- --warm-up-time 1 --measurement-time 3 > "$LOGDIR/detect.txt" 2>&1 || echo "(detect bench failed)" >> "$LOGDIR/detect.txt"
  { echo '```text'; sed -n '/^Summary/,$p' "$LOGDIR/detect.txt"; echo '```'; } > "$LOGDIR/detect.md"
  section "## Rules vs the parse floor (cargo bench --bench detect -- --warm-up-time 1 --measurement-time 3)" "$LOGDIR/detect.md"
fi

if has peers; then
  echo "==> hatrack vs Rego (regorus) vs CEL (benches/peers.rs)" >&2
  cargo bench --bench peers > "$LOGDIR/peers.md" 2> "$LOGDIR/peers.err" || { echo "(peers bench failed)"; tail -20 "$LOGDIR/peers.err"; } >> "$LOGDIR/peers.md"
  section "## Peers on the same corpus and reviews (cargo bench --bench peers)" "$LOGDIR/peers.md"
fi

if has controller; then
  echo "==> controller at scale and under throttling (benches/controller.rs)" >&2
  # Two runs. (a) 1,000 bindings with a 20 s resync: creation, then one resync window with no
  # changes. (b) A 1-hour resync, so creation counts and the 10,000-binding hold are not mixed
  # with resyncs (10,000 bindings re-read every 20 s would outrun moto on 2 cores), then the
  # throttling run.
  CONTROLLER_PHASES=scale CONTROLLER_HOLD=1000 \
    cargo bench --bench controller > "$LOGDIR/controller-a.md" 2> "$LOGDIR/controller-a.err" || { echo "(controller bench failed)"; tail -20 "$LOGDIR/controller-a.err"; } >> "$LOGDIR/controller-a.md"
  section "## Controller, run a: creation and a resync window (CONTROLLER_PHASES=scale CONTROLLER_HOLD=1000 cargo bench --bench controller)" "$LOGDIR/controller-a.md"
  CONTROLLER_PHASES=scale,throttling CONTROLLER_RESYNC=3600 CONTROLLER_RESYNC_WINDOW=0 CONTROLLER_HOLD=10000 CONTROLLER_HOLD_SECONDS="${CONTROLLER_HOLD_SECONDS:-900}" \
    cargo bench --bench controller > "$LOGDIR/controller-b.md" 2> "$LOGDIR/controller-b.err" || { echo "(controller bench failed)"; tail -20 "$LOGDIR/controller-b.err"; } >> "$LOGDIR/controller-b.md"
  section "## Controller, run b: creation without resyncs, 10,000 held, throttling (CONTROLLER_RESYNC=3600 CONTROLLER_RESYNC_WINDOW=0 CONTROLLER_HOLD=10000 cargo bench --bench controller)" "$LOGDIR/controller-b.md"
fi

if has controller-real; then
  echo "==> controller on a real kube-apiserver (CONTROLLER_API=real benches/controller.rs)" >&2
  # The same two runs against etcd + kube-apiserver built by scripts/install-test-deps.sh; the
  # controller acts as its own ServiceAccount and the API server's audit log counts its
  # requests. Each phase runs in a process (and an API server) of its own.
  CONTROLLER_API=real CONTROLLER_PHASES=scale CONTROLLER_HOLD=1000 \
    cargo bench --bench controller > "$LOGDIR/controller-real-a.md" 2> "$LOGDIR/controller-real-a.err" || { echo "(controller bench failed)"; tail -20 "$LOGDIR/controller-real-a.err"; } >> "$LOGDIR/controller-real-a.md"
  section "## Controller on kube-apiserver, run a: 1,000 bindings and a resync window (CONTROLLER_API=real CONTROLLER_PHASES=scale CONTROLLER_HOLD=1000 cargo bench --bench controller)" "$LOGDIR/controller-real-a.md"
  CONTROLLER_API=real CONTROLLER_PHASES=scale CONTROLLER_RESYNC=3600 CONTROLLER_RESYNC_WINDOW=0 CONTROLLER_HOLD=10000 CONTROLLER_HOLD_SECONDS="${CONTROLLER_HOLD_SECONDS:-900}" \
    cargo bench --bench controller > "$LOGDIR/controller-real-b.md" 2> "$LOGDIR/controller-real-b.err" || { echo "(controller bench failed)"; tail -20 "$LOGDIR/controller-real-b.err"; } >> "$LOGDIR/controller-real-b.md"
  section "## Controller on kube-apiserver, run b: creation without resyncs, 10,000 held (CONTROLLER_API=real CONTROLLER_PHASES=scale CONTROLLER_RESYNC=3600 CONTROLLER_RESYNC_WINDOW=0 CONTROLLER_HOLD=10000 cargo bench --bench controller)" "$LOGDIR/controller-real-b.md"
fi

if has slow-clients; then
  echo "==> webhook under 1,000 slow clients (scripts/bench-slow-clients.sh)" >&2
  scripts/bench-slow-clients.sh > "$LOGDIR/slow.md" 2> "$LOGDIR/slow.err" || { echo "(bench-slow-clients.sh failed)"; tail -20 "$LOGDIR/slow.err"; } >> "$LOGDIR/slow.md"
  section "## Slow clients: RSS and honest latency under 1,000 slow connections (scripts/bench-slow-clients.sh)" "$LOGDIR/slow.md"
fi

if has secret-cache; then
  echo "==> Secret cache memory at startup, real kube-apiserver (tests/real_secret_cache.rs)" >&2
  cargo test --release --test real_secret_cache -- --ignored --nocapture --test-threads 1 > "$LOGDIR/secrets.out" 2> "$LOGDIR/secrets.err" || { echo "(real_secret_cache failed)"; tail -20 "$LOGDIR/secrets.err"; } >> "$LOGDIR/secrets.out"
  grep '^|' "$LOGDIR/secrets.out" > "$LOGDIR/secrets.md" || cp "$LOGDIR/secrets.out" "$LOGDIR/secrets.md"
  section "## Secret cache: webhook peak RSS at startup with 200 Secrets of 1 MiB (cargo test --release --test real_secret_cache -- --ignored)" "$LOGDIR/secrets.md"
fi

if has fuzz; then
  # cargo-fuzz (coverage-guided) where a nightly toolchain is installed; otherwise, or when its
  # build fails, the same harness as a bounded random-mutation loop on stable.
  fuzz_rc=3
  if rustup run nightly rustc --version > /dev/null 2>&1; then
    echo "==> cargo-fuzz run of the review target (scripts/fuzz.sh, ${FUZZ_SECONDS:-300} s)" >&2
    scripts/fuzz.sh > "$LOGDIR/fuzz.md" 2> "$LOGDIR/fuzz.err" && fuzz_rc=0 || fuzz_rc=$?
  fi
  case "$fuzz_rc" in
    0) section "## Fuzzing the review path (scripts/fuzz.sh: cargo-fuzz, libFuzzer)" "$LOGDIR/fuzz.md" ;;
    1) section "## Fuzzing the review path (scripts/fuzz.sh: cargo-fuzz, libFuzzer): CRASH" "$LOGDIR/fuzz.md" ;;
    *)
      if [ "$fuzz_rc" -ne 3 ]; then
        { echo "(scripts/fuzz.sh failed: exit $fuzz_rc)"; tail -20 "$LOGDIR/fuzz.err"; } > "$LOGDIR/fuzz-failed.md"
        section "## cargo-fuzz did not run" "$LOGDIR/fuzz-failed.md"
      fi
      echo "==> bounded fuzz loop of the cargo-fuzz harness (benches/fuzz_review.rs)" >&2
      cargo bench --bench fuzz_review > "$LOGDIR/fuzz.md" 2> "$LOGDIR/fuzz.err" || { echo "(fuzz loop failed)"; tail -20 "$LOGDIR/fuzz.err"; } >> "$LOGDIR/fuzz.md"
      section "## Fuzzing the review path (cargo bench --bench fuzz_review)" "$LOGDIR/fuzz.md"
      ;;
  esac
fi

END=$(date +%s)
{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh\` (parts: $PARTS) on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src benches bench scripts Cargo.toml || echo ' + uncommitted changes'); the run took $(( (END - START) / 60 )) min $(( (END - START) % 60 )) s including the build."
  echo "Not part of the test suite or CI. Method notes for each part are in [the end of this file](#how-each-figure-is-measured)."
  echo
  echo "Machine: $(nproc) cores ($(awk -F: '/model name/ {gsub(/^ +/, "", $2); print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr), $(rustc --version), load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)."
  cat "$LOGDIR/body.md"
  echo
  cat bench/METHOD.md
} > "$OUT"
rm -rf "$LOGDIR"
echo "wrote $OUT in $(( END - START )) s" >&2
