# Sourced by scripts/bench-webhook.sh and scripts/instructions-per-review.sh: a scratch
# directory with a throwaway P-256 certificate for 127.0.0.1, removed on exit together with the
# server the caller starts and records in SERVER_PID.
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
