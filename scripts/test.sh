#!/usr/bin/env bash
# The whole test suite from a fresh clone: installs its own test dependencies, then runs
# formatting, lints and every test (unit, moto IAM, API stand-in controller, CLI, chart).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
export HATRACK_MOTO_SERVER="$PWD/.venv/bin/moto_server"
export HATRACK_HELM="$PWD/.tools/helm"
export HATRACK_KUBERNETES_VALIDATE="$PWD/.venv/bin/kubernetes-validate"

echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "==> cargo test"
# Benchmarks are compiled by clippy above but not run here: they are measurements
# (scripts/bench.sh), not tests.
cargo test --locked --lib --bins --tests

echo "==> release image: scripts/build-image.sh (buildah, no Docker daemon) + scripts/check-image.sh"
# The layout, user, entrypoint and DNS are checked with the debug binary cargo test built
# above; releases pass target/release/hatrack (README, "Image").
scripts/build-image.sh "${CARGO_TARGET_DIR:-target}/debug/hatrack"
scripts/check-image.sh
