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
# Two keys: the control plane (etcd, kubernetes, kwok) and helm (used only by the chart checks), so
# moving the helm pin rebuilds helm alone and moving a control plane pin never rebuilds helm.
TOOLS_RECIPE=1
CONTROL_PLANE_MODULES="etcd kubernetes kwok"
tools_key() {
  (cd "$HACK_DIR" && echo "$TOOLS_RECIPE" && grep -v '^HELM_VERSION=' versions.env \
    && for f in go.mod go.sum tools.go; do for m in $CONTROL_PLANE_MODULES; do cat "tools/$m/$f"; done; done) \
    | sha256sum | cut -c1-16
}
helm_key() {
  (cd "$HACK_DIR" && echo "$TOOLS_RECIPE" && grep '^HELM_VERSION=' versions.env && cat tools/helm/go.mod tools/helm/go.sum tools/helm/tools.go) \
    | sha256sum | cut -c1-16
}
TOOLS_CACHE_ROOT=${KJL_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-job-launcher}
TOOLS_BIN=$TOOLS_CACHE_ROOT/$(tools_key)/bin
HELM_BIN=$TOOLS_CACHE_ROOT/helm-$(helm_key)/bin

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
