#!/usr/bin/env bash
# Load benchmark of `hatrack webhook` over TLS on loopback.
#
# Builds the release binary, generates a throwaway certificate, starts the webhook with
# --lookups off on 127.0.0.1, checks one review is answered, then drives it with wrk
# (installed with apt-get when missing) and prints reviews/s, p50 and p99.
#
#   scripts/bench-webhook.sh                      # typical Deployment, 16 connections, 20 s
#   CONNECTIONS=32 DURATION=30s scripts/bench-webhook.sh
#   REVIEW=benches/data/small-pod-review.json scripts/bench-webhook.sh
#
# Targets on a 2-core machine: >= 25k reviews/s, p99 <= 2 ms at 16 connections.
set -euo pipefail

cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-16}"
THREADS="${THREADS:-2}"
DURATION="${DURATION:-20s}"
PORT="${PORT:-18443}"
METRICS_PORT="${METRICS_PORT:-19090}"
REVIEW="${REVIEW:-benches/data/typical-deployment-review.json}"
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

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" -days 1 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null

# Compact JSON body and the wrk script that posts it.
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",",":")))' "$REVIEW" > "$WORK/body.json"
cat > "$WORK/post.lua" <<EOF
local f = io.open("$WORK/body.json", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
EOF

RUST_LOG=warn "$BIN" webhook --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
  --tls-cert "$WORK/tls.crt" --tls-key "$WORK/tls.key" --lookups off --mode enforce \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 100); do
  if curl -sk "https://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
ANSWER="$(curl -sk -X POST -H 'Content-Type: application/json' --data-binary @"$WORK/body.json" "https://127.0.0.1:$PORT/validate/workloads")"
echo "$ANSWER" | python3 -c 'import json,sys; r=json.load(sys.stdin)["response"]; print("sanity: uid=%s allowed=%s" % (r["uid"], r["allowed"]))' >&2

BYTES=$(wc -c < "$WORK/body.json")
echo "review: $REVIEW ($BYTES bytes), $CONNECTIONS connections, $THREADS wrk threads, $DURATION, $(nproc) cores" >&2
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/post.lua" \
  "https://127.0.0.1:$PORT/validate/workloads" | tee "$WORK/wrk.txt" >&2

python3 - "$WORK/wrk.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if not (rps and p50 and p99):
    print("could not parse wrk output", file=sys.stderr); sys.exit(1)
print(f"reviews/s: {float(rps.group(1)):.0f}")
print(f"p50: {ms(*p50.groups()):.3f} ms")
print(f"p99: {ms(*p99.groups()):.3f} ms")
print(f"non-2xx: {errors.group(1) if errors else 0}")
PY
