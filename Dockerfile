# syntax=docker/dockerfile:1
# Pillion container image: one `bun build --compile` executable on distroless.
#   docker build -t pillion .
#   docker run --rm -p 8080:8080 -p 9901:9901 pillion
# Mount your own policy over /etc/pillion/pillion.toml (or set PILLION_CONFIG). Listeners must bind
# 0.0.0.0 (not 127.0.0.1) to be reachable from outside the container.

############################ build ############################
FROM node:20-bookworm-slim AS build
WORKDIR /src

# Dependencies first, so this layer is cached until the lockfile changes.
# npm ci runs bun's postinstall, which links the platform bun binary used by the build.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY tsconfig.json ./
# build.mjs runs the executable once through bytecode-order.mjs (loopback only) to order its bytecode.
COPY scripts/build.mjs scripts/bytecode-order.mjs scripts/bench-lib.mjs scripts/
COPY src/ src/
COPY policies/ policies/

# Builds dist/pillion.js and dist/pillion-<os>-<arch> for the platform this stage runs on
# (dist/pillion-linux-x64 on amd64, dist/pillion-linux-arm64 on arm64).
RUN node scripts/build.mjs \
 && mkdir -p /out \
 && cp "dist/pillion-$(node -p 'process.platform + "-" + process.arch')" /out/pillion \
 && /out/pillion version

############################ runtime ############################
# The executable needs only glibc (ldd: libc, libpthread, libdl, libm; no libstdc++/libgcc_s),
# so distroless "base" is enough; it also brings CA certificates and tzdata.
FROM gcr.io/distroless/base-debian12:nonroot

COPY --from=build /out/pillion /pillion
COPY --from=build /src/policies/sidecar.toml /etc/pillion/pillion.toml

USER nonroot
ENV PILLION_CONFIG=/etc/pillion/pillion.toml
# 8080 ingress, 15001 egress, 9901 admin (loopback in the default policy), 9902 probes (/healthz, /readyz, /metrics)
EXPOSE 8080 15001 9901 9902

# distroless has no shell or curl: the binary probes itself (exit 0 on a 2xx answer).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/pillion", "health", "http://127.0.0.1:9901/healthz"]

ENTRYPOINT ["/pillion"]
CMD ["run"]
