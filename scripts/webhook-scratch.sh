# Sourced by scripts/bench-webhook.sh, scripts/bench-slow-clients.sh and
# scripts/instructions-per-review.sh: a scratch directory with a throwaway P-256 certificate for
# 127.0.0.1, removed on exit together with the server the caller starts and records in
# SERVER_PID; `start_bench_webhook` starts the benches' webhook that way.
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

# start_bench_webhook LOG_LEVEL [FLAG...]: "$BIN" webhook on 127.0.0.1:$PORT (metrics on
# $METRICS_PORT) with the benches' settings and the extra flags, behind the command prefix in
# the SERVER_PIN array if set (CPU pinning); records SERVER_PID and waits for /healthz.
start_bench_webhook() {
  local level=$1
  shift
  RUST_LOG=$level ${SERVER_PIN[@]+"${SERVER_PIN[@]}"} "$BIN" webhook \
    --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
    --tls-cert "$WORK/tls.crt" --tls-key "$WORK/tls.key" --lookups off --mode enforce \
    --cluster-name bench --cluster-region eu-west-1 --account-id 123456789012 \
    --default-trust pod-identity "$@" >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if curl -sk "https://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
}

# The server's resident and peak memory now, in KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status"; }
