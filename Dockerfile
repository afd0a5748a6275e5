# syntax=docker/dockerfile:1.7
#
# drawbridge as a small, locked-down image.
#
#   docker build -t drawbridge .                     # full build (needs crates.io)
#   docker run -p 8080:8080 drawbridge
#
# Stages: `chef` (Rust and cargo-chef), `planner` (the dependency recipe), `build` (dependencies in
# their own layer, cached until Cargo.toml or Cargo.lock change; then the crate itself), and the
# runtime (distroless cc: glibc and libgcc, no shell, no package manager).
#
# `--target prebuilt` packages an already built binary from dist/drawbridge instead of compiling
# (scripts/container-build.sh does this; it also works where the Rust image cannot be pulled).
# RUNTIME_BASE may name another image with glibc, e.g. debian:bookworm-slim.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only. With fat LTO they are most of the build; this layer survives source edits.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo chef cook --release --locked --package drawbridge --recipe-path recipe.json
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo build --release --locked --package drawbridge \
    && install -D --strip --mode 0555 target/release/drawbridge /out/drawbridge

# Everything the runtime needs but the binary.
FROM ${RUNTIME_BASE} AS runtime-base
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="drawbridge" \
      org.opencontainers.image.description="Horizontally scaled, stateless WebSocket gateway for collaborative whiteboards" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="${SOURCE}"
COPY config/default.toml /etc/drawbridge/drawbridge.toml
ENV DRAWBRIDGE_CONFIG=/etc/drawbridge/drawbridge.toml \
    DRAWBRIDGE_LISTEN=0.0.0.0:8080
# Numeric, so Kubernetes can verify runAsNonRoot; 65532 is distroless's "nonroot".
USER 65532:65532
EXPOSE 8080
# Exec form: the runtime has no shell. The server answers /healthz as soon as it listens.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/drawbridge", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/drawbridge"]
CMD ["serve"]

FROM runtime-base AS prebuilt
COPY --chmod=0555 dist/drawbridge /usr/local/bin/drawbridge

FROM runtime-base AS runtime
COPY --from=build /out/drawbridge /usr/local/bin/drawbridge
