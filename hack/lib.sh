# Shared settings for the hack/ scripts. Sourced, not run.
# shellcheck shell=bash
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(cd "$HACK_DIR/.." && pwd)
LOCAL_DIR=${LOCAL_DIR:-$ROOT_DIR/.local}
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"

# Built binaries live in a per-user cache keyed by a hash of everything that decides their content,
# so a fresh clone on the same machine reuses them and a changed pin rebuilds. Bump the recipe
# number when hack/build-tools.sh changes how a binary is built.
TOOLS_RECIPE=1
tools_key() {
  (cd "$HACK_DIR" && echo "$TOOLS_RECIPE" && cat versions.env tools/*/go.mod tools/*/go.sum tools/*/tools.go) \
    | sha256sum | cut -c1-16
}
TOOLS_CACHE_ROOT=${KJL_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-job-launcher}
TOOLS_BIN=$TOOLS_CACHE_ROOT/$(tools_key)/bin

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[%s] error: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# Ports of the local control plane and SQS server, all on 127.0.0.1. Override them to run two
# clusters side by side (say, a fresh clone's `make test` beside a developer's `make run`).
ETCD_PORT=${ETCD_PORT:-2379}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-2380}
APISERVER_PORT=${APISERVER_PORT:-6443}
KCM_PORT=${KCM_PORT:-10257}
SCHEDULER_PORT=${SCHEDULER_PORT:-10259}
KWOK_PORT=${KWOK_PORT:-10247}
SQS_PORT=${SQS_PORT:-4566}
KWOK_NODES=${KWOK_NODES:-4}
AWS_REGION_DEV=eu-central-1

PKI_DIR=$LOCAL_DIR/pki
RUN_DIR=$LOCAL_DIR/run
LOG_DIR=$LOCAL_DIR/logs
KUBECONFIG_FILE=$LOCAL_DIR/kubeconfig
VENV_DIR=$LOCAL_DIR/venv
