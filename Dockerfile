# Build: docker build -t drawbridge .   Run: docker run -p 8080:8080 drawbridge
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p drawbridge && strip target/release/drawbridge

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 drawbridge
COPY --from=build /src/target/release/drawbridge /usr/local/bin/drawbridge
COPY config /etc/drawbridge
ENV DRAWBRIDGE_CONFIG=/etc/drawbridge/default.toml DRAWBRIDGE_LISTEN=0.0.0.0:8080
USER drawbridge
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/drawbridge"]
