# syntax=docker/dockerfile:1
# hatrack: one static binary for `hatrack controller` and `hatrack webhook`.
#
#   docker build -t ghcr.io/hatrack-dev/hatrack:0.1.0 .
#
# Built on Alpine, whose Rust targets musl and links statically by default (no RUSTFLAGS:
# forcing crt-static on a musl host breaks proc-macro crates); the result runs
# on distroless/static (no libc, no shell) as the numeric non-root user 65532, which the
# chart's runAsNonRoot needs to be able to verify.

FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cache mounts keep the registry and build directory between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin hatrack \
    && cp target/release/hatrack /hatrack

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /hatrack /hatrack
USER 65532:65532
ENTRYPOINT ["/hatrack"]
