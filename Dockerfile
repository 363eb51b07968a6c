# Cortex Gateway container image: the binary, the few shared libraries it links (found with
# ldd), CA certificates, and a non-root user. No shell, no package manager.
#
# From source (needs a registry for the two base images):
#   docker build -t cortex-gateway .
#
# From a binary built on the host (glibc of the host's Debian release; see docs/operations.md):
#   cargo build --release --locked
#   mkdir -p dist && cp "${CARGO_TARGET_DIR:-target}/release/cortex-gateway" dist/
#   docker build --target prebuilt -t cortex-gateway .
#
# Run, with your configuration mounted over the reference one:
#   docker run -p 3213:3213 \
#     -v "$PWD/my-gateway.yaml:/etc/cortex-gateway/gateway.yaml:ro" cortex-gateway
#
# Base images are build arguments, so a mirror or an image made offline (debootstrap +
# `docker import`, as scripts/docker-smoke.sh does) can stand in:
#   BUILDER_IMAGE  a Rust toolchain on Debian (compiles the gateway; source build only)
#   RUNTIME_IMAGE  a Debian image of the same release, from which the runtime files are taken
#
# In a container the listener must be 0.0.0.0, not loopback, or nothing outside the container
# can reach it: the image sets HOSTNAME=0.0.0.0, which replaces the host of the configured
# listener (the port stays the file's, or PORT). Because the gateway is then reachable from
# the network, `auth.mode: none` is refused: configure `auth.mode: oauth` (the default) with
# your authorization server (OAUTH_ISSUER). Pass secrets as environment variables
# (`docker run -e CORTEX_TECHNICAL_TOKEN=…` or `--env-file`), never in the image.
#
# Stage order matters for the legacy (non-BuildKit) builder, which builds every stage up to
# its target: `prebuilt` comes before the source build so that it never needs a toolchain.

ARG BUILDER_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- runtime files: a root file system with only what the gateway needs ---------------------
FROM ${RUNTIME_IMAGE} AS runtime-files

# ca-certificates: TLS to https:// backends and to the authorization server (the gateway reads
# the system roots). Installed only when the base image lacks them (an offline base has them).
RUN set -eu; \
    if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
        apt-get update; \
        apt-get install -y --no-install-recommends ca-certificates; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    mkdir -p /rootfs/etc/ssl/certs /rootfs/etc/cortex-gateway /rootfs/usr/local/bin \
             /rootfs/var/lib/cortex-gateway /rootfs/tmp; \
    chmod 1777 /rootfs/tmp; \
    chown 10001:10001 /rootfs/var/lib/cortex-gateway; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/; \
    printf 'root:x:0:0:root:/root:/usr/sbin/nologin\ncortex:x:10001:10001:Cortex Gateway:/var/lib/cortex-gateway:/usr/sbin/nologin\n' \
        > /rootfs/etc/passwd; \
    printf 'root:x:0:\ncortex:x:10001:\n' > /rootfs/etc/group; \
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' > /rootfs/etc/nsswitch.conf

# Copies the shared libraries a binary links (and the dynamic loader) into /rootfs, at the
# paths the binary looks for them; fails when one is missing from the base image.
RUN printf '%s\n' \
    '#!/bin/sh' \
    'set -eu' \
    'bin="$1"' \
    'if ldd "$bin" | grep "not found"; then echo "missing libraries for $bin" >&2; exit 1; fi' \
    'for lib in $(ldd "$bin" 2>/dev/null | grep -o "/[^ ]*" || true); do' \
    '    cp -L --parents "$lib" /rootfs/' \
    'done' \
    > /usr/local/bin/copy-libs \
    && chmod 0755 /usr/local/bin/copy-libs

# The annotated reference configuration (and examples); mount your own over gateway.yaml.
COPY conf/ /rootfs/etc/cortex-gateway/

# ---- from a host-built binary: `docker build --target prebuilt` ------------------------------
FROM runtime-files AS prebuilt-files
# Path of the binary inside the build context.
ARG BINARY=dist/cortex-gateway
COPY ${BINARY} /rootfs/usr/local/bin/cortex-gateway
RUN chmod 0755 /rootfs/usr/local/bin/cortex-gateway \
    && copy-libs /rootfs/usr/local/bin/cortex-gateway

FROM scratch AS prebuilt
COPY --from=prebuilt-files /rootfs/ /
# Keep in step with the `runtime` stage at the end of this file.
ENV HOSTNAME=0.0.0.0 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# The working directory holds ./data (the SQLite store, generated keys) unless the
# configuration sets data_dir: mount a volume here to keep it.
WORKDIR /var/lib/cortex-gateway
# Numeric ids, so that orchestrators can verify runAsNonRoot (10001 = cortex).
USER 10001:10001
EXPOSE 3213
# Liveness: the gateway asks its own /healthz on the configured listener (PORT included).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["cortex-gateway", "healthcheck", "--config", "/etc/cortex-gateway/gateway.yaml"]
# SIGTERM (docker stop) drains in-flight requests for server.grace_period before exiting.
ENTRYPOINT ["cortex-gateway"]
CMD ["serve", "--config", "/etc/cortex-gateway/gateway.yaml"]

# ---- from source: the default target ---------------------------------------------------------
FROM ${BUILDER_IMAGE} AS build

# cmake builds zlib-ng, a dependency of Pingora; the C compiler comes with the rust image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build
COPY . .

# The cache mounts (BuildKit) keep the crate registry and compiled dependencies between
# builds; the binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked \
    && install -m 0755 target/release/cortex-gateway /usr/local/bin/cortex-gateway

FROM runtime-files AS source-files
COPY --from=build /usr/local/bin/cortex-gateway /rootfs/usr/local/bin/cortex-gateway
RUN copy-libs /rootfs/usr/local/bin/cortex-gateway

FROM scratch AS runtime
COPY --from=source-files /rootfs/ /
# Keep in step with the `prebuilt` stage above.
ENV HOSTNAME=0.0.0.0 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /var/lib/cortex-gateway
USER 10001:10001
EXPOSE 3213
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["cortex-gateway", "healthcheck", "--config", "/etc/cortex-gateway/gateway.yaml"]
ENTRYPOINT ["cortex-gateway"]
CMD ["serve", "--config", "/etc/cortex-gateway/gateway.yaml"]
