#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# etcd, kwok) and helm (for the chart checks) from the pinned wrapper modules in hack/tools/, into
# the per-user cache, and links them into .local/bin. Does nothing for a binary that is already cached.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

mkdir -p "$TOOLS_BIN" "$HELM_BIN" "$LOCAL_DIR/bin"

# The cache directory of a module's binaries: helm has a key of its own (see hack/lib.sh).
bin_dir() { if [ "$1" = helm ]; then echo "$HELM_BIN"; else echo "$TOOLS_BIN"; fi; }

# go build -v names each package as it compiles; count them so a long build shows it is moving.
build() {
  local module_dir=$1 out=$2 pkg=$3 ldflags=${4:-} dest
  dest=$(bin_dir "$module_dir")
  if [ -x "$dest/$out" ]; then
    return 0
  fi
  log "building $out from $pkg (first time only; cached in $dest)"
  local start=$SECONDS tmp
  tmp=$(mktemp -d "$dest/.build-XXXXXX")
  # -p 2: the generated OpenAPI package alone needs several GB to compile; more parallel
  # compiles at once can exhaust a small machine's memory.
  (cd "$HACK_DIR/tools/$module_dir" && go build -p 2 -v -trimpath -ldflags "-s -w $ldflags" -o "$tmp/$out" "$pkg") 2>&1 \
    | awk -v name="$out" -v start="$(date +%s)" '
        /^#|\.go:[0-9]+|^go: / { print; fflush(); next }
        { n++; if (n % 200 == 0) { printf "  %s: %d packages compiled, %ds\n", name, n, systime() - start; fflush() } }
        END { printf "  %s: %d packages compiled\n", name, n }'
  [ "${PIPESTATUS[0]}" -eq 0 ] && [ -x "$tmp/$out" ] || { rm -rf "$tmp"; die "building $out failed"; }
  mv "$tmp/$out" "$dest/$out"
  rmdir "$tmp"
  log "built $out in $((SECONDS - start))s"
}

kube_ldflags() {
  local v=$KUBERNETES_VERSION minor
  minor=$(echo "$v" | cut -d. -f2)
  local p=k8s.io/component-base/version
  echo "-X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
}

# helm's version, and the Kubernetes version its `template` and `lint` assume, as its own Makefile
# stamps them (the latter from the client-go its module resolved: v0.N.x is Kubernetes 1.N).
helm_ldflags() {
  local client_go minor
  client_go=$(sed -n 's#^\s*k8s.io/client-go \(v[0-9.]*\).*#\1#p' "$HACK_DIR/tools/helm/go.mod")
  minor=$(echo "$client_go" | cut -d. -f2)
  echo "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
    "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
}

total_start=$SECONDS
build etcd etcd go.etcd.io/etcd/server/v3
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
build kubernetes kubectl k8s.io/kubernetes/cmd/kubectl "$(kube_ldflags)"
build kubernetes kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$(kube_ldflags)"
build kubernetes kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$(kube_ldflags)"
build kubernetes kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$(kube_ldflags)"
build helm helm helm.sh/helm/v3/cmd/helm "$(helm_ldflags)"

for b in etcd kwok kubectl kube-scheduler kube-controller-manager kube-apiserver; do
  ln -sfn "$TOOLS_BIN/$b" "$LOCAL_DIR/bin/$b"
done
ln -sfn "$HELM_BIN/helm" "$LOCAL_DIR/bin/helm"
[ $((SECONDS - total_start)) -gt 5 ] && log "control plane binaries ready in $((SECONDS - total_start))s"
exit 0
