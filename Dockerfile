# syntax=docker/dockerfile:1
# The launcher's container image: a release build on Debian (glibc), run from a slim Debian of
# the same release with the build stage's CA certificates, as a numeric non-root user.
#
#   docker build -t kube-job-launcher:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg SOURCE_URL="$(git remote get-url origin)" .
#
# The entrypoint is the bare binary, so the one image is the server and the CLI:
#
#   docker run IMAGE serve --namespace ...        (the Helm chart passes `serve` as its first arg)
#   docker run IMAGE launch --server https://launcher.example.com --template greeting --wait
#
# Build arguments (hack/dockerfile-check.sh checks that this list and the ARGs agree):
#   BUILD_IMAGE    the build stage's image: Rust on Debian 12 (glibc), at least Cargo.toml's
#                  rust-version
#   RUNTIME_IMAGE  the image the binary runs in: any glibc image of Debian 12, e.g. a distroless
#                  "cc" image (glibc, libgcc, CA certificates, no shell, no package manager) from
#                  your mirror: <mirror>/distroless/cc-debian12:nonroot
#   CARGO_PROFILE  release, or release-small (built for size: a smaller resident set, a little
#                  more CPU per launch; docs/benchmarks.md)
#   VERSION        org.opencontainers.image.version (default: Cargo.toml's version)
#   REVISION       org.opencontainers.image.revision: the commit built (default: empty)
#   SOURCE_URL     org.opencontainers.image.source: the repository's URL (default: empty)
#   LICENSES       org.opencontainers.image.licenses, an SPDX expression (default: Cargo.toml's)
#
# Pinning the base images by digest makes a build repeatable (a tag moves; a digest does not).
# Look the digest up, then pass it with the tag, which stays as documentation:
#
#   docker buildx imagetools inspect rust:1.95-bookworm --format '{{json .Manifest.Digest}}'
#   docker build --build-arg BUILD_IMAGE=rust:1.95-bookworm@sha256:<digest> \
#                --build-arg RUNTIME_IMAGE=debian:bookworm-slim@sha256:<digest> ...
#
# (`crane digest IMAGE` or `skopeo inspect docker://IMAGE` answer the same; Renovate and
# Dependabot keep such pins current.)
#
# Caching: the dependencies are built in a layer of their own from Cargo.toml and Cargo.lock only,
# with empty stand-ins for the crate's targets, so a change to the sources rebuilds the crate and
# not its few hundred dependencies. That is plain layer caching: it works with the classic
# builder, with `--cache-from` of a registry, and in CI without BuildKit's cache exporters. The
# BuildKit cache mounts (crate downloads only, sharing=locked so parallel builds take turns) are
# a bonus where BuildKit keeps them.
#
# The chart runs the image with a read-only root filesystem. See
# deploy/helm/kube-job-launcher/README.md for kind and minikube.

ARG BUILD_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
# aws-lc-sys (the TLS crypto kube, reqwest and the AWS SDK share) can fall back to CMake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
ARG CARGO_PROFILE=release

# 1. Dependencies: the manifest and lock file, and a stand-in for each target Cargo.toml declares
#    (the binary, the library, the bench; hack/dockerfile-check.sh keeps this list in step with
#    Cargo.toml), so that cargo resolves and builds exactly the dependencies of the real build.
COPY Cargo.toml Cargo.lock ./
RUN for stub in src/main.rs src/lib.rs benches/launcher/main.rs; do \
      mkdir -p "$(dirname "$stub")" && echo 'fn main() {}' > "$stub"; \
    done
RUN --mount=type=cache,target=/usr/local/cargo/registry/cache,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git/db,sharing=locked \
    cargo build --profile "${CARGO_PROFILE}" --locked --bin kube-job-launcher

# 2. The crate: its sources and the files they include (include_str!). COPY keeps the files'
#    modification times, which can be older than the stand-ins' build: touch the crate roots so
#    that cargo rebuilds the crate itself.
COPY src ./src
COPY docs ./docs
COPY examples ./examples
COPY deploy/helm/kube-job-launcher/files ./deploy/helm/kube-job-launcher/files
RUN --mount=type=cache,target=/usr/local/cargo/registry/cache,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git/db,sharing=locked \
    touch src/main.rs src/lib.rs \
 && cargo build --profile "${CARGO_PROFILE}" --locked --bin kube-job-launcher \
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
# The labels last: a new revision changes nothing above.
ARG RUNTIME_IMAGE
ARG VERSION=0.1.0
ARG REVISION=
ARG SOURCE_URL=
ARG LICENSES=Apache-2.0
LABEL org.opencontainers.image.title="kube-job-launcher" \
      org.opencontainers.image.description="Turns HTTP requests and SQS messages into Kubernetes Jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="${LICENSES}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"
ENTRYPOINT ["/usr/local/bin/kube-job-launcher"]
# `docker run IMAGE` alone prints the commands; `docker run IMAGE serve ...` runs the server.
CMD ["--help"]
