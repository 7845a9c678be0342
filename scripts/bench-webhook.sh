#!/usr/bin/env bash
# Load benchmark of `hatrack webhook` over TLS on loopback, with wrk.
#
# Builds the release binary, generates a throwaway certificate, starts the webhook with
# --lookups off on 127.0.0.1, checks each review is answered (allowed), then drives it with
# wrk (installed with apt-get when missing) for every review × connection count, sampling the
# webhook's RSS from /proc during each run. Prints a markdown table: reviews/s, p50, p99,
# p99.9 (from wrk's latency histogram, through a lua `done` hook), max, non-2xx, RSS.
#
#   scripts/bench-webhook.sh                                    # 3 reviews × 1,16,64 conns, 10 s each
#   CONNECTIONS="16" DURATION=20s scripts/bench-webhook.sh
#   REVIEWS="benches/data/small-pod-review.json" scripts/bench-webhook.sh
#   CPU_SPLIT=1 scripts/bench-webhook.sh                        # one core each, see below
#
# Goal on a 2-core machine: >= 25k reviews/s and p99 <= 2 ms at 16 connections for the
# typical Deployment. By default wrk (2 threads) and the webhook (one tokio worker per core)
# share all cores, so each steals the other's CPU time and latency tails include waiting for a
# core. CPU_SPLIT=1 keeps them apart: the webhook pinned to the last core with one worker
# (TOKIO_WORKER_THREADS=1), wrk pinned to the other cores with one thread — the load generator
# then measures the webhook instead of competing with it, as an API server on its own node
# would.
set -euo pipefail

cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-1 16 64}"
DURATION="${DURATION:-10s}"
PORT="${PORT:-18443}"
METRICS_PORT="${METRICS_PORT:-19090}"
REVIEWS="${REVIEWS:-benches/data/small-pod-review.json benches/data/typical-deployment-review.json benches/data/large-deployment-review.json}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (apt-get)..." >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq wrk >/dev/null
fi
for tool in openssl curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing $tool" >&2; exit 2; }
done

echo "building release binary..." >&2
cargo build --release --bin hatrack >&2
BIN="$TARGET_DIR/release/hatrack"

. scripts/webhook-scratch.sh

# The cluster flags are required since the webhook also validates IAMRoleBindings; they play
# no part in workload reviews.
CPU_SPLIT="${CPU_SPLIT:-0}"
NCPU="$(nproc)"
if [ "$CPU_SPLIT" = 1 ]; then
  [ "$NCPU" -ge 2 ] || { echo "CPU_SPLIT=1 needs at least 2 cores" >&2; exit 2; }
  command -v taskset >/dev/null 2>&1 || { echo "missing taskset (util-linux)" >&2; exit 2; }
  SERVER_PIN=(env TOKIO_WORKER_THREADS=1 taskset -c "$((NCPU - 1))")
  WRK_PIN=(taskset -c "0-$((NCPU - 2))")
else
  SERVER_PIN=()
  WRK_PIN=()
fi

start_bench_webhook warn

# The webhook's CPU time so far (user + system), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
IDLE_RSS=$(rss_kib)

echo "| review | bytes | connections | reviews/s | p50 | p99 | p99.9 | max | non-2xx | webhook CPU per review | webhook RSS (max sampled) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for REVIEW in $REVIEWS; do
  name="$(basename "$REVIEW" .json)"
  # Compact JSON body and the wrk script that posts it and prints exact percentiles.
  python3 -c 'import json,sys; sys.stdout.write(json.dumps(json.load(open(sys.argv[1])), separators=(",",":")))' "$REVIEW" > "$WORK/body.json"
  cat > "$WORK/post.lua" <<EOF
local f = io.open("$WORK/body.json", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d p50=%d p99=%d p999=%d max=%d status_errors=%d other_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
EOF
  ANSWER="$(curl -sk -X POST -H 'Content-Type: application/json' --data-binary @"$WORK/body.json" "https://127.0.0.1:$PORT/validate/workloads")"
  echo "$ANSWER" | python3 -c 'import json,sys; r=json.load(sys.stdin)["response"]; assert r["allowed"], r; print("sanity: %s uid=%s allowed=%s" % (sys.argv[1], r["uid"], r["allowed"]))' "$name" >&2
  BYTES=$(wc -c < "$WORK/body.json")
  for C in $CONNECTIONS; do
    if [ "$CPU_SPLIT" = 1 ]; then THREADS=$(( NCPU - 1 < C ? NCPU - 1 : C )); else THREADS=$(( C < 2 ? C : 2 )); fi
    MAXRSS=0
    CPU0=$(cpu_ticks)
    "${WRK_PIN[@]}" wrk -t"$THREADS" -c"$C" -d"$DURATION" -s "$WORK/post.lua" \
      "https://127.0.0.1:$PORT/validate/workloads" > "$WORK/wrk.txt" 2>&1 &
    WRK_PID=$!
    while kill -0 "$WRK_PID" 2>/dev/null; do
      r=$(rss_kib); [ "${r:-0}" -gt "$MAXRSS" ] && MAXRSS=$r
      sleep 0.5
    done
    wait "$WRK_PID"
    CPU_TICKS=$(( $(cpu_ticks) - CPU0 ))
    cat "$WORK/wrk.txt" >&2
    python3 - "$WORK/wrk.txt" "$name" "$BYTES" "$C" "$MAXRSS" "$CPU_TICKS" "$(getconf CLK_TCK)" <<'PY'
import re, sys
text, name, size, conns, rss = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
cpu_seconds = int(sys.argv[6]) / int(sys.argv[7])
m = re.search(r"RESULT (.*)", text)
if not m:
    print(f"| {name} | {size} | {conns} | wrk failed | | | | | | | |"); sys.exit(0)
v = {k: int(x) for k, x in (kv.split("=") for kv in m.group(1).split())}
rps = v["requests"] / (v["duration_us"] / 1e6)
ms = lambda us: f"{us / 1000:.3f} ms"
cpu = f"{cpu_seconds * 1e6 / v['requests']:.1f} µs" if v["requests"] else "-"
print(f"| {name} | {size} | {conns} | {rps:,.0f} | {ms(v['p50'])} | {ms(v['p99'])} | {ms(v['p999'])} | {ms(v['max'])} | {v['status_errors'] + v['other_errors']} | {cpu} | {rss / 1024:.1f} MiB |")
PY
  done
done
echo
echo "Webhook RSS idle before the runs: $(awk "BEGIN {printf \"%.1f\", $IDLE_RSS/1024}") MiB; peak over all runs (VmHWM): $(awk "BEGIN {printf \"%.1f\", $(hwm_kib)/1024}") MiB."
if [ "$CPU_SPLIT" = 1 ]; then
  echo "wrk: $DURATION per row, keep-alive HTTPS/1.1 to 127.0.0.1:$PORT/validate/workloads; CPU_SPLIT=1: webhook pinned to core $((NCPU - 1)) with one tokio worker, wrk pinned to core(s) 0-$((NCPU - 2)) with min($((NCPU - 1)), connections) thread(s)."
else
  echo "wrk: $DURATION per row, threads = min(2, connections), keep-alive HTTPS/1.1 to 127.0.0.1:$PORT/validate/workloads; $NCPU cores shared by wrk and the webhook."
fi
