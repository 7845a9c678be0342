#!/usr/bin/env bash
# Instructions the webhook executes per review, counted by valgrind's callgrind: a repeatable
# A/B measure on a machine whose other load makes wrk figures noisy. User-space instructions
# only (the kernel's share of syscalls and context switches is not counted).
#
#   scripts/instructions-per-review.sh [BIN] [REVIEW] [N]
#   scripts/instructions-per-review.sh target/release/hatrack benches/data/typical-deployment-review.json 300
#
# Starts BIN under callgrind (--lookups off --mode enforce, as scripts/bench-webhook.sh), warms
# it up with 20 reviews on one keep-alive HTTPS/1.1 connection, zeroes the counters, sends N
# reviews on one connection with curl, dumps, and prints total instructions / N.
# CALLGRIND_OUT=FILE keeps the dump (for callgrind_annotate).
set -euo pipefail

cd "$(dirname "$0")/.."
BIN="${1:-target/release/hatrack}"
REVIEW="${2:-benches/data/typical-deployment-review.json}"
N="${3:-300}"
PORT="${PORT:-28443}"
METRICS_PORT="${METRICS_PORT:-29090}"
for tool in valgrind callgrind_control openssl curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing $tool (apt-get install valgrind)" >&2; exit 2; }
done

. scripts/webhook-scratch.sh
python3 -c 'import json,sys; sys.stdout.write(json.dumps(json.load(open(sys.argv[1])), separators=(",",":")))' "$REVIEW" > "$WORK/body.json"

RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
  "$BIN" webhook --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
  --tls-cert "$WORK/tls.crt" --tls-key "$WORK/tls.key" --lookups off --mode enforce \
  --cluster-name bench --cluster-region eu-west-1 --account-id 123456789012 --default-trust pod-identity \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
  if curl -sk --http1.1 "https://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then break; fi
  sleep 0.2
done

# One curl, many URLs: curl reuses the connection, as wrk's keep-alive does.
post() {
  for _ in $(seq 1 "$1"); do
    printf 'url = "https://127.0.0.1:%s/validate/workloads"\noutput = "/dev/null"\n' "$PORT"
  done > "$WORK/urls"
  curl -sk --http1.1 -X POST -H 'Content-Type: application/json' \
    --data-binary @"$WORK/body.json" -K "$WORK/urls" -w '%{http_code}\n'
}
post 20 >/dev/null
callgrind_control --zero "$SERVER_PID" >/dev/null 2>&1
codes="$(post "$N" | sort | uniq -c | tr -s ' ')"
callgrind_control --dump=reviews "$SERVER_PID" >/dev/null 2>&1
sleep 1
dump="$(ls "$WORK"/callgrind.out.* | head -1)"
if [ -n "${CALLGRIND_OUT:-}" ]; then cp "$dump" "$CALLGRIND_OUT"; fi
total="$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")"
echo "$(basename "$REVIEW" .json): $N reviews (HTTP status counts:$codes), $total instructions, $((total / N)) per review"
