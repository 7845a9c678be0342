# syntax=docker/dockerfile:1
# hatrack: one binary for `hatrack controller` and `hatrack webhook`, FROM scratch.
#
#   docker build -t ghcr.io/your-org/hatrack:0.1.0 .
#
# The same image as scripts/build-image.sh (buildah, no daemon; what CI builds and checks, and
# what docs/deploy.md recommends for releases): both lay out the root fs with
# scripts/image-rootfs.sh — /hatrack, the glibc shared libraries `ldd` lists and the loader,
# /etc/ssl/certs/ca-certificates.crt, /etc/passwd and /etc/group (nonroot 65532),
# /etc/nsswitch.conf, /etc/hosts; no shell — and set the same user and entrypoint.
# scripts/check-image.sh builds this file's last stage with buildah from the checked image's
# root fs and requires the identical layer and config; the build stage below is not run in CI
# (no Docker daemon there).
#
# glibc, not musl: the build stage is Debian 12 (glibc 2.36, whose libc.so.6 holds the `files`
# and `dns` name services, so DNS needs no libnss_*.so), the same system as the machines that
# run scripts/build-image.sh. See docs/deploy.md, "Image".

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Every workspace member's manifest must be there for cargo to load the workspace: the core
# crate, the test-only evaluator and the tests' harness (only the first is built).
COPY crates ./crates
COPY tests/support ./tests/support
COPY benches ./benches
# Cache mounts keep the registry and build directory between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin hatrack \
    && cp target/release/hatrack /hatrack
COPY scripts/image-rootfs.sh /usr/local/bin/image-rootfs.sh
RUN SOURCE_DATE_EPOCH=0 image-rootfs.sh /hatrack /rootfs

FROM scratch
COPY --from=build /rootfs/ /
USER 65532:65532
ENTRYPOINT ["/hatrack"]
