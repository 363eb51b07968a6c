# syntax=docker/dockerfile:1
#
# Cortex Gateway container image.
#
#   docker build -t cortex-gateway .
#   docker run -p 3213:3213 \
#     -v "$PWD/my-gateway.yaml:/etc/cortex-gateway/gateway.yaml:ro" cortex-gateway
#
# In a container the listener must be 0.0.0.0, not loopback, or nothing outside the container
# can reach it: the image sets HOSTNAME=0.0.0.0, which replaces the host of the configured
# listener (the port stays the file's, or PORT). Because the gateway is then reachable from
# the network, `auth.mode: none` is refused: configure `auth.mode: oauth` (the default) with
# your authorization server (OAUTH_ISSUER). Pass secrets as environment variables
# (`docker run -e CORTEX_TECHNICAL_TOKEN=…` or `--env-file`), never in the image.

# ---- build ----------------------------------------------------------------------------------
FROM rust:1-bookworm AS build

# cmake builds zlib-ng, a dependency of Pingora; the C compiler comes with the rust image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build
COPY . .

# The cache mounts keep the crate registry and compiled dependencies between builds
# (BuildKit); the binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked \
    && install -m 0755 target/release/cortex-gateway /usr/local/bin/cortex-gateway

# ---- runtime --------------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: TLS to https:// backends and to the authorization server.
# curl: the HEALTHCHECK below (the slim image has no HTTP client).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 cortex \
    && useradd --system --uid 10001 --gid cortex --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin cortex

COPY --from=build /usr/local/bin/cortex-gateway /usr/local/bin/cortex-gateway
# The annotated reference configuration; mount your own over gateway.yaml.
COPY conf/ /etc/cortex-gateway/

ENV HOSTNAME=0.0.0.0
# Numeric ids, so that orchestrators can verify runAsNonRoot (10001 = cortex).
USER 10001:10001
EXPOSE 3213

# Liveness: /healthz answers 200 while the process serves requests (PORT, when set,
# moves the listener, so the check follows it).
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${PORT:-3213}/healthz" || exit 1

# SIGTERM (docker stop) drains in-flight requests for server.grace_period before exiting.
ENTRYPOINT ["cortex-gateway"]
CMD ["serve", "--config", "/etc/cortex-gateway/gateway.yaml"]
