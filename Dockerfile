# syntax=docker/dockerfile:1
# Container image of the orgs gRPC server.
#   docker build -t orgs:0.1.0 .
#   docker run --rm -p 50051:50051 -p 9090:9090 -e ORGS_AUTH_HS256_SECRET="$(openssl rand -base64 48)" orgs:0.1.0

# ---- build: release binary. protox compiles the protos in build.rs, so no protoc is
# needed; TLS is rustls, so no OpenSSL.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and target/ between builds (BuildKit);
# the binary is copied out of the cached target/ into the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin orgs \
 && install -D -m 0755 target/release/orgs /out/orgs \
 && mkdir -p /out/data

# ---- runtime: glibc + libgcc only, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="orgs" \
      org.opencontainers.image.description="gRPC service for B2B organizations, memberships, invitations, verified domains and billing" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=build /out/orgs /usr/local/bin/orgs
# Writable directory for the SQLite database (the chart mounts a volume here); also the
# working directory, so the default relative SQLite URL lands in it.
COPY --from=build --chown=10001:10001 /out/data /data
WORKDIR /data
# Numeric non-root user, matching runAsUser/runAsGroup 10001 in the Helm chart.
USER 10001:10001
ENV ORGS_LISTEN_ADDR=0.0.0.0:50051 \
    ORGS_METRICS_LISTEN_ADDR=0.0.0.0:9090
# 50051: gRPC (and grpc.health.v1 for probes); 9090: Prometheus /metrics.
EXPOSE 50051 9090
# No HEALTHCHECK: the image has no client to run one; Kubernetes probes the server with
# native gRPC probes (grpc.health.v1.Health) instead.
# checkov:skip=CKV_DOCKER_2:health is checked by Kubernetes gRPC probes; the distroless image has no client to run a HEALTHCHECK
ENTRYPOINT ["/usr/local/bin/orgs"]
CMD ["serve"]
