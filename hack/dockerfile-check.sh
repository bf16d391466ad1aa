#!/usr/bin/env bash
# The Dockerfile cannot be built here (no container engine), so it is read instead: every COPY
# source exists and is in the build context, every ARG it uses is declared, the header documents
# exactly the declared build arguments, the dependency layer's stand-ins are Cargo.toml's targets,
# and its defaults agree with Cargo.toml. With --self-test (hack/chart-test.sh uses it) each of
# those checks must also catch a deliberately broken copy. See hack/dockerfile_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 hack/dockerfile_check.py "$@" .
