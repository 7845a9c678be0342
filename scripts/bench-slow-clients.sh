#!/usr/bin/env bash
# The webhook under slow, hostile clients (issue 13): SLOW connections (default 1,000) each
# send a body one byte short of the limit and then stall (scripts/slow-clients.py, reconnecting
# whenever the webhook cuts them off), while wrk sends honest reviews on 4 keep-alive
# connections. Prints a markdown table: honest reviews/s and p99 without and with the attack,
# the webhook's RSS (idle, peak sampled every 0.2 s, VmHWM) against the chart's memory limit,
# and what the slow clients got.
#
#   scripts/bench-slow-clients.sh
#   SLOW=200 DURATION=20 scripts/bench-slow-clients.sh
#   BIN=/path/to/old/hatrack ATTACK_BODY=8388607 scripts/bench-slow-clients.sh   # a build without limits
#   EXTRA_ARGS="--request-timeout=20s --tls-handshake-timeout=20s" scripts/bench-slow-clients.sh
#
# Release build; the webhook runs with its defaults (as the chart runs it) and --lookups off.
set -euo pipefail
cd "$(dirname "$0")/.."

SLOW="${SLOW:-1000}"
DURATION="${DURATION:-15}"
PORT="${PORT:-18543}"
METRICS_PORT="${METRICS_PORT:-19190}"
REVIEW="${REVIEW:-benches/data/typical-deployment-review.json}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
# The chart's webhook memory limit (values.yaml: webhook.resources.limits.memory).
LIMIT_MIB="${LIMIT_MIB:-256}"

command -v wrk >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null; }
for tool in openssl curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing $tool" >&2; exit 2; }
done
if [ -z "${BIN:-}" ]; then
  echo "building release binary..." >&2
  cargo build --release --bin hatrack >&2
  BIN="$TARGET_DIR/release/hatrack"
fi
# One byte short of the default --max-body-bytes (the documented derivation).
ATTACK_BODY="${ATTACK_BODY:-6553599}"

. scripts/webhook-scratch.sh
ulimit -n 65536 2>/dev/null || true

# EXTRA_ARGS is split into flags on purpose.
# shellcheck disable=SC2086
start_bench_webhook error ${EXTRA_ARGS:-}

mib() { awk "BEGIN {printf \"%.1f\", $1/1024}"; }

python3 -c 'import json,sys; sys.stdout.write(json.dumps(json.load(open(sys.argv[1])), separators=(",",":")))' "$REVIEW" > "$WORK/body.json"
cat > "$WORK/post.lua" <<EOF
local f = io.open("$WORK/body.json", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d p50=%d p99=%d max=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
EOF
honest() { # seconds -> "reviews/s|p50|p99|max|errors"
  wrk -t2 -c4 -d"$1"s --timeout 10s -s "$WORK/post.lua" "https://127.0.0.1:$PORT/validate/workloads" > "$WORK/wrk.txt" 2>&1 || true
  python3 - "$WORK/wrk.txt" <<'PY'
import re, sys
m = re.search(r"RESULT (.*)", open(sys.argv[1]).read())
if not m:
    print("wrk failed||||"); sys.exit(0)
v = {k: int(x) for k, x in (kv.split("=") for kv in m.group(1).split())}
ms = lambda us: f"{us / 1000:.2f} ms"
print(f"{v['requests'] / (v['duration_us'] / 1e6):,.0f}|{ms(v['p50'])}|{ms(v['p99'])}|{ms(v['max'])}|{v['errors']}")
PY
}

IDLE=$(rss_kib)
QUIET="$(honest 10)"

# The attack: SLOW connections (the first ones spread over 5 s) for DURATION + 5 s; honest
# load during the last DURATION s.
python3 scripts/slow-clients.py 127.0.0.1 "$PORT" "$SLOW" "$ATTACK_BODY" "$((DURATION + 5))" 5 > "$WORK/slow.json" 2>"$WORK/slow.err" &
SLOW_PID=$!
PEAK=0
# RSS and the webhook's established connections (server side), every 0.2 s.
( while kill -0 "$SLOW_PID" 2>/dev/null; do
    r=$(rss_kib); c=$(ss -Htn state established "( sport = :$PORT )" | wc -l)
    echo "${r:-0} $c"; sleep 0.2
  done ) > "$WORK/rss.txt" &
SAMPLER=$!
sleep 5
UNDER="$(honest "$DURATION")"
wait "$SLOW_PID" || true
wait "$SAMPLER" || true
PEAK=$(awk '$1 > m {m = $1} END {print m + 0}' "$WORK/rss.txt")
CONNS_PEAK=$(awk '$2 > m {m = $2} END {print m + 0}' "$WORK/rss.txt")
HWM=$(hwm_kib)
ALIVE=yes; kill -0 "$SERVER_PID" 2>/dev/null || ALIVE="no (died)"

echo "| honest load (wrk, 4 connections) | reviews/s | p50 | p99 | max | errors |"
echo "|---|---|---|---|---|---|"
echo "| alone | ${QUIET//|/ | } |"
echo "| with $SLOW slow clients | ${UNDER//|/ | } |"
echo
echo "| webhook RSS | MiB |"
echo "|---|---|"
echo "| idle | $(mib "$IDLE") |"
echo "| peak sampled during the attack | $(mib "$PEAK") |"
echo "| VmHWM (peak of the whole run) | $(mib "$HWM") |"
echo "| chart memory limit | $LIMIT_MIB |"
echo
echo "Most established connections to the webhook at once (ss, sampled): $CONNS_PEAK."
echo
echo "Slow clients ($SLOW connections, Content-Length $ATTACK_BODY, body minus one byte then idle, reconnecting): $(cat "$WORK/slow.json" 2>/dev/null || echo 'no report')."
echo "Webhook alive at the end: $ALIVE. Binary: $BIN${EXTRA_ARGS:+, extra flags: $EXTRA_ARGS}. $(nproc) cores shared by the webhook, wrk and the slow clients."
