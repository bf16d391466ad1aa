# syntax=docker/dockerfile:1
# The launcher's container image: a release build on Debian (glibc), run from a slim Debian of
# the same release with the build stage's CA certificates, as a numeric non-root user.
#
#   docker build -t kube-job-launcher:0.1.0 .
#
# RUNTIME_IMAGE takes any glibc image of Debian 12 instead; a distroless "cc" image (glibc, libgcc,
# CA certificates, no shell, no package manager) is the smallest, pulled from your own mirror:
#
#   docker build --build-arg RUNTIME_IMAGE=<mirror>/distroless/cc-debian12:nonroot -t kube-job-launcher:0.1.0 .
#
# The chart runs it with a read-only root filesystem; the image's entrypoint is `serve`, the
# chart's args are its flags. See deploy/helm/kube-job-launcher/README.md for kind and minikube.

ARG RUST_VERSION=1.95
# release, or release-small (built for size: a smaller resident set, a little more CPU per launch)
ARG CARGO_PROFILE=release
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM rust:${RUST_VERSION}-bookworm AS build
# aws-lc-sys (the TLS crypto kube, reqwest and the AWS SDK share) can fall back to CMake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY docs ./docs
COPY examples ./examples
COPY deploy/helm/kube-job-launcher/files ./deploy/helm/kube-job-launcher/files
# Cache mounts keep the registry and the build directory between builds (BuildKit); the binary is
# copied out of the cached target directory, which is not part of the layer.
ARG CARGO_PROFILE
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile "${CARGO_PROFILE}" --locked --bin kube-job-launcher \
 && install -D -m 0755 "target/${CARGO_PROFILE}/kube-job-launcher" /out/kube-job-launcher \
 && /out/kube-job-launcher --version

FROM ${RUNTIME_IMAGE}
# For TLS to SQS (the API server's CA comes from the service account).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/kube-job-launcher /usr/local/bin/kube-job-launcher
# Numeric, so the kubelet can check runAsNonRoot against it (65532 is distroless's nonroot).
USER 65532:65532
# 8080: the API (--listen); 9090: /healthz, /readyz, /metrics (--admin-listen).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/kube-job-launcher", "serve"]
