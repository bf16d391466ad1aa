#!/usr/bin/env bash
# The Helm chart's checks (`make chart-test`; `make test` runs them after the Rust tests), against
# the local control plane. Any problem stops the run with a message and a non-zero exit.
#
#  1. helm lint --strict: the chart with its defaults and with every option on
#     (ci/all-on-values.yaml), and the example parent chart deploy/helm/examples/worker-app.
#  2. helm template: those, a few more variants, and settings that must be refused; the rendered
#     flags are compared with the launcher's own `serve --help`.
#  3. kubectl apply --dry-run=server of every render into a fresh namespace that warns about the
#     "restricted" Pod Security Standard: the apiserver validates every object, and any warning
#     (a Pod Security violation, a deprecated API) fails the run.
#  4. helm install for real (replicaCount=0: no image exists here), helm upgrade, helm uninstall.
#  5. The launcher binary, run outside the cluster as the chart's ServiceAccount (a token from
#     `kubectl create token`): the chart's Role must be enough to launch, read status and logs,
#     cancel, watch the templates (readyz) and hold the Lease, and must refuse anything else.
#
# Usage: hack/chart-test.sh   (LAUNCHER_BIN picks the binary; default target/debug/kube-job-launcher)
set -euo pipefail
set -E
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"

CHART=$ROOT_DIR/deploy/helm/kube-job-launcher
EXAMPLE=$ROOT_DIR/deploy/helm/examples/worker-app
LAUNCHER_BIN=${LAUNCHER_BIN:-target/debug/kube-job-launcher}
BIN=$LOCAL_DIR/bin
RELEASE=chart-rel
export KUBECONFIG=$KUBECONFIG_FILE
kubectl() { "$BIN/kubectl" "$@"; }
helm() { "$BIN/helm" "$@"; }

start=$SECONDS
step() { log "chart-test: $*"; }
fail() {
  printf '\n[%s] chart-test FAILED: %s\n\n' "$(date +%H:%M:%S)" "$*" >&2
  exit 1
}
trap 'fail "command failed (exit $?) at hack/chart-test.sh:$LINENO: $BASH_COMMAND"' ERR

# --- preflight ----------------------------------------------------------------------------------
[ -x "$BIN/helm" ] || fail "no helm in ${BIN#"$ROOT_DIR"/}: run \`make dev-up\` (or hack/build-tools.sh), which builds it"
[ -x "$BIN/kubectl" ] || fail "no kubectl in ${BIN#"$ROOT_DIR"/}: run \`make dev-up\`"
kubectl get --raw=/readyz >/dev/null 2>&1 || fail "the local control plane does not answer: run \`make dev-up\`"
[ -x "$LAUNCHER_BIN" ] || fail "no launcher binary at $LAUNCHER_BIN: run \`cargo build\` (or set LAUNCHER_BIN)"
command -v python3 >/dev/null || fail "python3 is needed (JSON and free ports)"

ns=chart-$(date +%s)-$RANDOM
work=$(mktemp -d "${TMPDIR:-/tmp}/chart-test.XXXXXX")
# helm keeps its own state under the work directory: the developer's helm set-up is not touched.
export HELM_CONFIG_HOME=$work/helm/config HELM_CACHE_HOME=$work/helm/cache HELM_DATA_HOME=$work/helm/data
launcher_pid=
cleanup() {
  local status=$?
  trap - ERR
  if [ -n "$launcher_pid" ] && kill -0 "$launcher_pid" 2>/dev/null; then
    kill -TERM "$launcher_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$launcher_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$launcher_pid" 2>/dev/null || true
    wait "$launcher_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -s "$work/launcher.log" ]; then
    echo "--- the launcher's log (last 40 lines) ---" >&2
    tail -40 "$work/launcher.log" >&2
  fi
  if kubectl get namespace "$ns" >/dev/null 2>&1; then
    kubectl delete namespace "$ns" --wait=true --timeout=90s >/dev/null 2>&1 \
      || log "chart-test: warning: namespace $ns is still being deleted"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- 1. lint --------------------------------------------------------------------------------------
# The example parent chart refers to the launcher chart as file://../../kube-job-launcher; a copy of
# both keeps `helm dependency update` (which writes charts/ and Chart.lock) out of the repository.
mkdir -p "$work/helm/examples" "$work/out"
cp -r "$CHART" "$work/helm/kube-job-launcher"
cp -r "$EXAMPLE" "$work/helm/examples/worker-app"
rm -rf "$work/helm/examples/worker-app/charts" "$work/helm/examples/worker-app/Chart.lock"
EXAMPLE_COPY=$work/helm/examples/worker-app
helm dependency update "$EXAMPLE_COPY" >"$work/dep.log" 2>&1 || { cat "$work/dep.log"; fail "helm dependency update of the example worker-app chart"; }

lint() {
  local what=$1; shift
  helm lint --strict "$@" >"$work/lint.log" 2>&1 || { cat "$work/lint.log"; fail "helm lint --strict: $what"; }
}
step "helm lint --strict (defaults, ci/all-on-values.yaml, the example worker-app chart)"
lint "default values" "$CHART"
lint "ci/all-on-values.yaml" "$CHART" -f "$CHART/ci/all-on-values.yaml"
lint "examples/worker-app" "$EXAMPLE_COPY"

# --- 2. template --------------------------------------------------------------------------------
# render NAME ARGS...: helm template into $work/out/NAME.yaml.
render() {
  local name=$1; shift
  helm template "$RELEASE" "$CHART" --namespace "$ns" "$@" >"$work/out/$name.yaml" 2>"$work/out/$name.err" \
    || { cat "$work/out/$name.err"; fail "helm template ($name) failed"; }
}
# refused WHAT ARGS...: helm template must fail (bad settings are stopped at render time).
refused() {
  local what=$1; shift
  if helm template "$RELEASE" "$CHART" "$@" >/dev/null 2>"$work/refused.err"; then
    fail "helm template accepted $what; it must refuse it"
  fi
}
# has FILE PATTERN WHY / hasnt FILE PATTERN WHY: a rendered file does (not) contain a line matching PATTERN.
has() { grep -qE -- "$2" "$work/out/$1.yaml" || fail "$1: $3 (no line matches '$2')"; }
hasnt() { ! grep -qE -- "$2" "$work/out/$1.yaml" || fail "$1: $3 (a line matches '$2')"; }

step "helm template: defaults, every option on, and variants"
render default
render all-on -f "$CHART/ci/all-on-values.yaml"
render auth-none --set auth.mode=none --set resourceQuota.enabled=true --set resourceQuota.resource=pods
render existing-secrets --set auth.existingSecret=team-tokens --set auth.existingSecretKey=list \
  --set aws.credentials.existingSecret=aws-keys --set aws.region=eu-west-1 --set templates.create=false \
  --set replicaCount=2 --set serviceAccount.create=false --set serviceAccount.name=default
helm template worker "$EXAMPLE_COPY" --namespace "$ns" >"$work/out/worker-app.yaml" 2>"$work/out/worker-app.err" \
  || { cat "$work/out/worker-app.err"; fail "helm template of the example worker-app chart failed"; }

# What each render must (not) say.
has default '^            - --log-format=json$' "the chart logs JSON by default"
has default '^            - --auth-token-file=/etc/kube-job-launcher/tokens/tokens$' "token-file auth by default"
has default '^  tokens: "' "a generated token Secret when no tokens are given"
has default '^  name: job-template-cm$' "the template ConfigMap job-template-cm"
has default '"job-template.yaml": \|-$' "the template ConfigMap's key job-template.yaml"
has default 'fieldPath: metadata.namespace$' "JOB_LAUNCHER_NAMESPACE from the downward API"
hasnt default 'kind: (ClusterRole|PodDisruptionBudget|ResourceQuota|Ingress|NetworkPolicy|ServiceMonitor)$' "only the basic objects by default"
hasnt default '--insecure-no-auth|--auth=|AWS_' "no other auth mode, no AWS settings by default"
for flag in listen admin-listen template-configmap default-template default-ttl-seconds launch-timeout shutdown-grace \
  log log-format auth sqs-queue-url sqs-mode sqs-template sqs-concurrency sqs-dead-letter-queue-url sqs-max-receives \
  sqs-endpoint sqs-poll-interval sqs-max-jobs-per-poll max-active max-queued leader-lease; do
  has all-on "^            - --$flag=" "every setting renders as a flag: --$flag"
done
has all-on '^            - --auth=kubernetes$' "auth.mode=kubernetes renders --auth=kubernetes"
has all-on '^            - --template-configmap=chart-rel-job-templates,team-templates$' "template ConfigMaps by tpl and comma"
has all-on '^            - --max-queued=1000000$' "whole numbers render as integers"
has all-on '^kind: ClusterRole$' "auth.mode=kubernetes adds the review ClusterRole"
has all-on '^kind: PodDisruptionBudget$' "replicas > 1 adds a PodDisruptionBudget"
has all-on '^    count/pods: "30"$' "the ResourceQuota on count/pods"
has all-on '^            - name: AWS_SECRET_ACCESS_KEY$' "static AWS keys from a Secret"
has auth-none '^            - --insecure-no-auth$' "auth.mode=none renders --insecure-no-auth"
has auth-none '^    pods: "30"$' "resourceQuota.resource=pods"
hasnt auth-none '^kind: Secret$' "no token Secret without token-file auth"
has existing-secrets 'secretName: team-tokens$' "auth.existingSecret is mounted"
has existing-secrets '^              - key: list$' "auth.existingSecretKey is the mounted key"
has existing-secrets '^                  name: aws-keys$' "aws.credentials.existingSecret feeds the AWS env"
hasnt existing-secrets '^kind: (ConfigMap|ServiceAccount)$|^  name: chart-rel-kube-job-launcher-tokens$' "nothing created that exists already"
has worker-app '^            - --template-configmap=worker-job-templates$' "the parent chart's template ConfigMap reaches the launcher"
has worker-app '^  "report.yaml": \|-$' "the parent chart's own template file"

refused "an unknown auth.mode (schema)" --set auth.mode=ldap
refused "a misspelt setting (schema)" --set sqs.queueURL=x
refused "a duration that is not one" --set launch.timeout=10parsecs
refused "auth.tokens together with auth.existingSecret" --set 'auth.tokens={a}' --set auth.existingSecret=s
refused "half a static AWS key pair" --set aws.credentials.accessKeyId=AKIA

# Every flag the chart can render must be one the launcher knows: the chart and the binary are
# built from the same tree and must not drift apart.
"$LAUNCHER_BIN" serve --help >"$work/help.txt" 2>&1 || { cat "$work/help.txt"; fail "$LAUNCHER_BIN serve --help failed"; }
known=$(grep -oE -- '--[a-z0-9-]+' "$work/help.txt" | sort -u)
rendered=$(cat "$work"/out/*.yaml | sed -n 's/^ *- "\{0,1\}\(--[a-z0-9-]*\).*/\1/p' | sort -u)
unknown=$(comm -23 <(echo "$rendered") <(echo "$known"))
[ -z "$unknown" ] || fail "the chart renders flags that $LAUNCHER_BIN serve does not know: $(echo "$unknown" | tr '\n' ' ')"

# --- 3. server-side dry run -----------------------------------------------------------------------
# warn, not enforce: the launcher's own pod must meet "restricted" (a warning fails the dry run),
# but the example template's Jobs launched below are plain busybox pods.
step "namespace $ns (Pod Security: warn on anything short of restricted)"
kubectl create namespace "$ns" >/dev/null
kubectl label namespace "$ns" pod-security.kubernetes.io/warn=restricted >/dev/null

# The ServiceMonitor's CRD (Prometheus Operator) is not installed here, and installing even a
# stand-in would change the cluster for everyone sharing it (CRDs are cluster-wide) while checking
# only a schema written here. So it is left out of the dry run and checked for its shape instead.
without_servicemonitors() {
  awk 'BEGIN { RS = "\n---\n" } !/\nkind: ServiceMonitor\n/ { printf "%s\n---\n", $0 }' "$1"
}
dry_run() {
  local name=$1 file=$work/out/$1.yaml
  if grep -q '^kind: ServiceMonitor$' "$file"; then
    log "chart-test:   $name: the ServiceMonitor is left out of the dry run (no monitoring.coreos.com CRD here; not installed on a shared cluster)"
    if ! grep -q '^    - port: admin$' "$file" || ! grep -q '^      path: /metrics$' "$file"; then
      fail "$name: the ServiceMonitor does not scrape /metrics on the admin port"
    fi
  fi
  without_servicemonitors "$file" >"$work/$name.apply.yaml"
  if ! kubectl apply --dry-run=server -n "$ns" -f "$work/$name.apply.yaml" >"$work/$name.apply.out" 2>"$work/$name.apply.err"; then
    cat "$work/$name.apply.err"
    fail "$name: the apiserver refused the rendered chart (kubectl apply --dry-run=server)"
  fi
  if grep -q . "$work/$name.apply.err"; then
    cat "$work/$name.apply.err"
    fail "$name: the apiserver warned about the rendered chart (Pod Security or a deprecated API)"
  fi
  log "chart-test:   $name: $(wc -l <"$work/$name.apply.out") objects accepted (server dry run)"
}
step "kubectl apply --dry-run=server of every render"
for name in default all-on auth-none existing-secrets worker-app; do
  dry_run "$name"
done

# --- 4. install ---------------------------------------------------------------------------------
step "helm install $RELEASE into $ns (replicaCount=0: no launcher image here; the binary runs outside below)"
helm install "$RELEASE" "$CHART" --namespace "$ns" --set replicaCount=0 --wait --timeout 120s >"$work/install.log" 2>&1 \
  || { cat "$work/install.log"; fail "helm install"; }
token_secret=$RELEASE-kube-job-launcher-tokens
token_before=$(kubectl get secret "$token_secret" -n "$ns" -o jsonpath='{.data.tokens}')
[ -n "$token_before" ] || fail "the generated token Secret $token_secret is empty"
helm upgrade "$RELEASE" "$CHART" --namespace "$ns" --set replicaCount=0 --wait --timeout 120s >"$work/upgrade.log" 2>&1 \
  || { cat "$work/upgrade.log"; fail "helm upgrade"; }
[ "$(kubectl get secret "$token_secret" -n "$ns" -o jsonpath='{.data.tokens}')" = "$token_before" ] \
  || fail "helm upgrade changed the generated API token (it must be kept across upgrades)"
sa=$(kubectl get serviceaccount -n "$ns" -l "app.kubernetes.io/instance=$RELEASE" -o jsonpath='{.items[0].metadata.name}')
[ -n "$sa" ] || fail "the chart created no ServiceAccount"
log "chart-test:   installed and upgraded; ServiceAccount $sa; the API token survived the upgrade"

# --- 5. the launcher as the chart's ServiceAccount --------------------------------------------------
sa_kubeconfig=$work/sa.kubeconfig
server=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
ca_data=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
token=$(kubectl create token "$sa" -n "$ns" --duration=30m)
(
  umask 077
  cat >"$sa_kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster:
      server: $server
      certificate-authority-data: $ca_data
users:
  - name: $sa
    user:
      token: $token
contexts:
  - name: $sa
    context: {cluster: local, user: $sa, namespace: $ns}
current-context: $sa
YAML
)
as_sa() { KUBECONFIG=$sa_kubeconfig "$BIN/kubectl" "$@"; }
whoami=$(as_sa auth whoami -o jsonpath='{.status.userInfo.username}')
[ "$whoami" = "system:serviceaccount:$ns:$sa" ] || fail "the token kubeconfig authenticates as '$whoami', not the chart's ServiceAccount"

step "RBAC as $whoami: what the Role grants, and nothing else"
can() {
  local want=$1; shift
  local got
  got=$(as_sa auth can-i "$@" -n "$ns" 2>/dev/null || true)
  [ "$got" = "$want" ] || fail "kubectl auth can-i $* as the chart's ServiceAccount says '$got', expected '$want'"
}
for verb in create get list watch patch delete; do can yes "$verb" jobs.batch; done
for verb in get list watch; do can yes "$verb" pods; done
can yes get pods --subresource=log
can yes watch configmaps/job-template-cm
can yes create events
can yes patch events.events.k8s.io
can yes create leases.coordination.k8s.io
can yes update leases.coordination.k8s.io/kube-job-launcher
can no create secrets
can no get secrets
can no list configmaps
can no get configmaps/some-other-configmap
can no create pods
can no delete pods
can no update jobs.batch
can no delete leases.coordination.k8s.io/kube-job-launcher
can no update leases.coordination.k8s.io/another-lease
can no create rolebindings.rbac.authorization.k8s.io
can no create tokenreviews.authentication.k8s.io
[ "$(as_sa auth can-i create jobs.batch -n default 2>/dev/null || true)" = no ] || fail "the ServiceAccount may create Jobs outside its namespace"
if as_sa create secret generic chart-test-forbidden --from-literal=a=b >"$work/secret.out" 2>&1; then
  fail "the chart's ServiceAccount created a Secret; the Role must not allow it"
fi
grep -qi forbidden "$work/secret.out" || { cat "$work/secret.out"; fail "creating a Secret failed, but not as Forbidden"; }
log "chart-test:   can-i agrees with the Role; creating a Secret is Forbidden"

step "the Lease kube-job-launcher: create and update as the ServiceAccount"
lease() {
  cat <<YAML
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: kube-job-launcher
  namespace: $ns
spec:
  holderIdentity: "$1"
  leaseDurationSeconds: 15
YAML
}
lease chart-test | as_sa create -f - >/dev/null || fail "the ServiceAccount cannot create its Lease"
as_sa get lease kube-job-launcher -o yaml >"$work/lease.yaml" || fail "the ServiceAccount cannot get its Lease"
# Give it up again (an empty holder), as a replica that stops does; the launcher takes it below.
sed -i 's/^  holderIdentity: .*/  holderIdentity: ""/' "$work/lease.yaml"
as_sa replace -f "$work/lease.yaml" >/dev/null || fail "the ServiceAccount cannot update its Lease"
[ -z "$(kubectl get lease kube-job-launcher -n "$ns" -o jsonpath='{.spec.holderIdentity}')" ] || fail "the Lease update did not land"

step "the launcher ($LAUNCHER_BIN) with the ServiceAccount's token"
read -r api_port admin_port < <(python3 -c 'import socket
ports = []
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ports.append(s.getsockname()[1]); s.close()
print(*ports)')
# Settings from the caller's environment must not change what is tested.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^JOB_LAUNCHER_' || true)
KUBECONFIG=$sa_kubeconfig "$LAUNCHER_BIN" serve --namespace "$ns" \
  --listen "127.0.0.1:$api_port" --admin-listen "127.0.0.1:$admin_port" >"$work/launcher.log" 2>&1 &
launcher_pid=$!
api=http://127.0.0.1:$api_port
admin=http://127.0.0.1:$admin_port
deadline=$((SECONDS + 60))
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$admin/readyz")" = 200 ]; do
  kill -0 "$launcher_pid" 2>/dev/null || fail "the launcher exited before it was ready"
  [ $SECONDS -lt $deadline ] || { curl -s "$admin/readyz" >&2 || true; fail "the launcher was not ready (GET /readyz) after 60s as the chart's ServiceAccount"; }
  sleep 0.3
done
log "chart-test:   ready: the template ConfigMap and the Job and pod watches synced"

# request METHOD PATH [BODY]: prints the status; the body is in $work/body.
request() {
  local method=$1 path=$2 body=${3:-}
  if [ -n "$body" ]; then
    curl -sS -o "$work/body" -w '%{http_code}' -X "$method" -H 'content-type: application/json' "$api$path" -d "$body"
  else
    curl -sS -o "$work/body" -w '%{http_code}' -X "$method" "$api$path"
  fi
}
json() { python3 -c 'import json, sys; v = json.load(open(sys.argv[1])); print(v.get(sys.argv[2]) or "")' "$work/body" "$1"; }

code=$(request POST /v1/jobs '{}')
[ "$code" = 201 ] || { cat "$work/body"; echo; fail "POST /v1/jobs answered $code, expected 201"; }
job=$(json name)
[ -n "$job" ] || fail "POST /v1/jobs answered no Job name"
log "chart-test:   launched $job"
deadline=$((SECONDS + 60))
state=
while :; do
  code=$(request GET "/v1/jobs/$job")
  [ "$code" = 200 ] || { cat "$work/body"; echo; fail "GET /v1/jobs/$job answered $code"; }
  state=$(json state)
  [ "$state" = succeeded ] && break
  [ "$state" = failed ] && { cat "$work/body"; echo; fail "$job failed"; }
  [ $SECONDS -lt $deadline ] || { cat "$work/body"; echo; fail "$job is still '$state' after 60s"; }
  sleep 0.5
done
log "chart-test:   status: $job $state"
code=$(request GET "/v1/jobs/$job/logs")
[ "$code" = 200 ] || { cat "$work/body"; echo; fail "GET /v1/jobs/$job/logs answered $code"; }
[ "$(cat "$work/body")" = "$(printf 'Hello\nfrom a fake node')" ] \
  || { cat "$work/body"; fail "GET /v1/jobs/$job/logs is not the fake pod's log"; }
log "chart-test:   logs: the pod's log came back"
code=$(request DELETE "/v1/jobs/$job")
[ "$code" = 202 ] || { cat "$work/body"; echo; fail "DELETE /v1/jobs/$job answered $code, expected 202"; }
deadline=$((SECONDS + 30))
while kubectl get job "$job" -n "$ns" >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || fail "$job still exists 30s after DELETE"
  sleep 0.3
done
log "chart-test:   cancel: $job is gone"

deadline=$((SECONDS + 30))
until holder=$(kubectl get lease kube-job-launcher -n "$ns" -o jsonpath='{.spec.holderIdentity}') && [ -n "$holder" ]; do
  [ $SECONDS -lt $deadline ] || fail "the launcher did not take the released Lease within 30s"
  sleep 0.3
done
log "chart-test:   the launcher holds the Lease ($holder)"

if grep -qi 'forbidden' "$work/launcher.log"; then
  grep -i forbidden "$work/launcher.log" | head -10
  fail "the launcher was refused something with the chart's Role (its log says forbidden)"
fi
kill -0 "$launcher_pid" 2>/dev/null || fail "the launcher exited during the checks"
kill -TERM "$launcher_pid"
wait "$launcher_pid" || fail "the launcher did not stop cleanly on SIGTERM"
launcher_pid=

step "helm uninstall $RELEASE"
helm uninstall "$RELEASE" --namespace "$ns" --wait --timeout 60s >"$work/uninstall.log" 2>&1 \
  || { cat "$work/uninstall.log"; fail "helm uninstall"; }
left=$(kubectl get serviceaccount,role,rolebinding,service,deployment,configmap,secret -n "$ns" \
  -l "app.kubernetes.io/instance=$RELEASE" -o name)
[ -z "$left" ] || fail "helm uninstall left objects behind: $left"

step "passed in $((SECONDS - start))s"
