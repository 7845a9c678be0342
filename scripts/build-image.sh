#!/usr/bin/env bash
# Builds hatrack's OCI image without a Docker daemon (buildah, FROM scratch):
#
#   scripts/build-image.sh [BINARY]          # default: ${CARGO_TARGET_DIR:-target}/debug/hatrack
#
# CI passes the debug binary `cargo test` has already built: it checks the image's layout,
# user and entrypoint, so a release build there would only cost time. Releases pass the
# release binary (see docs/deploy.md, "Image").
#
# Environment:
#   IMAGE       image name and tag (default localhost/hatrack:dev)
#   OCI_LAYOUT  OCI layout directory the image is written to, tagged with IMAGE's tag
#               (default ${CARGO_TARGET_DIR:-target}/image/oci); scripts/check-image.sh reads it
#   KEEP_IMAGE  1: keep IMAGE in buildah's storage afterwards (to `buildah push` it); default 0
#   SOURCE_DATE_EPOCH  timestamp of the image and of every file in it (default 0: reproducible)
#   CA_BUNDLE   CA roots to ship (default /etc/ssl/certs/ca-certificates.crt)
#
# Installs buildah, umoci and ca-certificates from Debian's archive if they are missing (root).
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
binary=${1:-$target_dir/debug/hatrack}
image=${IMAGE:-localhost/hatrack:dev}
tag=${image##*:}
layout=${OCI_LAYOUT:-$target_dir/image/oci}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}

scripts/install-image-tools.sh

loud() {
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    echo "!!! IMAGE BUILD FAILED: $*" >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    exit 1
}

[ -x "$binary" ] || loud "no binary at $binary (cargo build first, or pass its path)"
start=$(date +%s)
work=$(mktemp -d)
ctr=
cleanup() {
    [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "build-image: root fs from $binary"
scripts/image-rootfs.sh "$binary" "$work/rootfs"

ctr=$(buildah from --quiet scratch) || loud "buildah cannot create a container here (buildah from scratch)"
buildah copy --quiet --chown 0:0 "$ctr" "$work/rootfs/" / >/dev/null || loud "buildah copy failed"
version=$("$binary" --version | awk '{print $2}')
buildah config \
    --entrypoint '["/hatrack"]' \
    --cmd '' \
    --user 65532:65532 \
    --workingdir / \
    --os linux \
    --arch amd64 \
    --label org.opencontainers.image.title=hatrack \
    --label org.opencontainers.image.version="$version" \
    --created-by "scripts/build-image.sh: hatrack $version, root fs from scripts/image-rootfs.sh" \
    "$ctr" || loud "buildah config failed"
id=$(buildah commit --quiet --format oci --timestamp "$SOURCE_DATE_EPOCH" --rm "$ctr" "$image") \
    || loud "buildah commit failed"
ctr=

rm -rf "$layout"
mkdir -p "$(dirname "$layout")"
buildah push --quiet "$image" "oci:$layout:$tag" || loud "buildah push to the OCI layout $layout failed"
if [ "${KEEP_IMAGE:-0}" != 1 ]; then
    buildah rmi "$image" >/dev/null
fi
size=$(du -sh "$layout" | cut -f1)
echo "build-image: $image (image id ${id:0:12}) written to OCI layout $layout:$tag ($size), $(($(date +%s) - start)) s"
