#!/usr/bin/env bash
# Installs what scripts/build-image.sh and scripts/check-image.sh need from Debian's archive:
# buildah (builds the image, no daemon), umoci (unpacks it for the checks) and ca-certificates
# (the CA roots shipped in it). Idempotent: does nothing when they are present.
set -euo pipefail

missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v umoci >/dev/null || missing+=(umoci)
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
[ ${#missing[@]} -eq 0 ] && exit 0

loud() {
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    echo "!!! CANNOT INSTALL THE IMAGE TOOLS (${missing[*]}): $*" >&2
    echo "!!! The release image cannot be built or checked on this machine." >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    exit 1
}

command -v apt-get >/dev/null || loud "no apt-get (install them with your package manager)"
sudo=
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || loud "not root and no sudo"
    sudo=sudo
fi
echo "install-image-tools: apt-get install ${missing[*]}"
start=$(date +%s)
$sudo apt-get update -qq || loud "apt-get update failed"
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
    || loud "apt-get install failed"
echo "install-image-tools: done in $(($(date +%s) - start)) s"
