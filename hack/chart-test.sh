#!/usr/bin/env bash
# The Helm chart's and the Dockerfile's checks (`make chart-test`; `make test` runs them after the
# Rust tests), against the local control plane. Any problem stops the run with a message and a
# non-zero exit.
#
#  0. hack/dockerfile-check.sh --self-test: the Dockerfile read against the repository (no engine
#     here to build it), and each of its checks shown to catch a broken copy.
#  1. helm lint --strict: the chart with its defaults (and tokens: see 2), with every option on
#     (ci/all-on-values.yaml), and the example parent chart deploy/helm/examples/worker-app.
#  2. helm template: those, variants for every mode and new value, and settings that must be
#     refused (the schema's and the chart's own: the shutdown budget, a generated token where
#     lookup cannot run). The rendered flags are compared with the launcher's own `serve --help`;
#     flags listed in hack/chart-flags-pending.txt may be missing from the binary for now.
#  3. kubectl apply --dry-run=server of every render (the `helm test` hook objects included) into
#     a namespace that warns about the "restricted" Pod Security Standard: the apiserver validates
#     every object, and any warning fails the run. helm install --dry-run=server into a namespace
#     that does not exist yet proves the lookup probe (the generated token) with --create-namespace.
#  4. helm install for real (replicaCount=0: no image exists here, and the fake nodes run no
#     containers), helm upgrade (the generated token survives), helm uninstall (nothing left
#     behind but the kept token Secret, which a reinstall adopts with its token).
#  5. The launcher binary, run outside the cluster with the installed Deployment's own args and
#     the chart's ServiceAccount token, in each auth mode the chart renders:
#     token-file + TLS (launch, status, logs, the Job's Events, the dashboard's login cookie, cancel,
#     the instance label, the Lease, the `helm test` script, the metric names the PrometheusRule
#     uses), none (--allowed-hosts) and
#     kubernetes (audience, per-action verbs through the user ClusterRole, its aggregation into
#     edit, the test hook's RBAC).
#
# Usage: hack/chart-test.sh   (LAUNCHER_BIN picks the binary; default target/debug/kube-job-launcher)
set -euo pipefail
set -E
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"

CHART=$ROOT_DIR/deploy/helm/kube-job-launcher
EXAMPLE=$ROOT_DIR/deploy/helm/examples/worker-app
PENDING_FILE=$HACK_DIR/chart-flags-pending.txt
LAUNCHER_BIN=${LAUNCHER_BIN:-target/debug/kube-job-launcher}
BIN=$LOCAL_DIR/bin
RELEASE=chart-rel
FULLNAME=$RELEASE-kube-job-launcher
export KUBECONFIG=$KUBECONFIG_FILE
kubectl() { "$BIN/kubectl" "$@"; }
helm() { "$BIN/helm" "$@"; }

start=$SECONDS
step() { log "chart-test: $*"; }
note() { log "chart-test:   $*"; }
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
python3 -c 'import tomllib' 2>/dev/null || fail "python3 3.11 or later is needed (tomllib reads Cargo.toml)"
command -v openssl >/dev/null || fail "openssl is needed (a TLS certificate for the API)"

ns=chart-$(date +%s)-$RANDOM
work=$(mktemp -d "${TMPDIR:-/tmp}/chart-test.XXXXXX")
# helm keeps its own state under the work directory: the developer's helm set-up is not touched.
export HELM_CONFIG_HOME=$work/helm/config HELM_CACHE_HOME=$work/helm/cache HELM_DATA_HOME=$work/helm/data
launcher_pid=
stop_launcher() {
  if [ -n "$launcher_pid" ] && kill -0 "$launcher_pid" 2>/dev/null; then
    kill -TERM "$launcher_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$launcher_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$launcher_pid" 2>/dev/null || true
    wait "$launcher_pid" 2>/dev/null || true
  fi
  launcher_pid=
}
cleanup() {
  local status=$?
  trap - ERR
  stop_launcher
  if [ "$status" -ne 0 ] && [ -s "$work/launcher.log" ]; then
    echo "--- the launcher's log (last 40 lines) ---" >&2
    tail -40 "$work/launcher.log" >&2
  fi
  # Cluster-scoped objects first (the namespace's deletion does not take them).
  kubectl delete clusterrole "$FULLNAME-$ns-user" "$FULLNAME-$ns-auth" --ignore-not-found >/dev/null 2>&1 || true
  kubectl delete clusterrolebinding "$FULLNAME-$ns-auth" --ignore-not-found >/dev/null 2>&1 || true
  if kubectl get namespace "$ns" >/dev/null 2>&1; then
    kubectl delete namespace "$ns" --wait=true --timeout=90s >/dev/null 2>&1 \
      || log "chart-test: warning: namespace $ns is still being deleted"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- 0. the Dockerfile ----------------------------------------------------------------------------
step "the Dockerfile (hack/dockerfile-check.sh --self-test)"
"$HACK_DIR/dockerfile-check.sh" --self-test >"$work/dockerfile-check.log" 2>&1 \
  || { cat "$work/dockerfile-check.log"; fail "hack/dockerfile-check.sh: the Dockerfile does not agree with the repository"; }
note "$(tail -1 "$work/dockerfile-check.log")"

# --- 1. lint --------------------------------------------------------------------------------------
# The example parent chart refers to the launcher chart as file://../../kube-job-launcher; a copy of
# both keeps `helm dependency update` (which writes charts/ and Chart.lock) out of the repository.
mkdir -p "$work/helm/examples" "$work/out"
cp -r "$CHART" "$work/helm/kube-job-launcher"
cp -r "$EXAMPLE" "$work/helm/examples/worker-app"
rm -rf "$work/helm/examples/worker-app/charts" "$work/helm/examples/worker-app/Chart.lock"
EXAMPLE_COPY=$work/helm/examples/worker-app
helm dependency update "$EXAMPLE_COPY" >"$work/dep.log" 2>&1 || { cat "$work/dep.log"; fail "helm dependency update of the example worker-app chart"; }

# The chart's appVersion is the launcher's version (the image tag's default).
cargo_version=$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["package"]["version"])')
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$CHART/Chart.yaml")
[ "$app_version" = "$cargo_version" ] || fail "Chart.yaml's appVersion ($app_version) is not Cargo.toml's version ($cargo_version)"

lint() {
  local what=$1; shift
  helm lint --strict "$@" >"$work/lint.log" 2>&1 || { cat "$work/lint.log"; fail "helm lint --strict: $what"; }
}
step "helm lint --strict (defaults, ci/*-values.yaml, the example worker-app chart)"
# Plain defaults: lint has no cluster, so the chart refuses to generate a token (helm lint reports a
# template's `fail` as INFO and passes); the message must be the one that says why.
lint "default values" "$CHART"
grep -q "needs Helm's lookup" "$work/lint.log" || { cat "$work/lint.log"; fail "helm lint of the defaults did not stop at the generated token's lookup check"; }
lint "ci/defaults-values.yaml (the defaults with a token)" "$CHART" -f "$CHART/ci/defaults-values.yaml"
lint "ci/all-on-values.yaml" "$CHART" -f "$CHART/ci/all-on-values.yaml"
lint "examples/worker-app" "$EXAMPLE_COPY"

# --- 2. template --------------------------------------------------------------------------------
# render NAME ARGS...: helm template into $work/out/NAME.yaml.
render() {
  local name=$1; shift
  helm template "$RELEASE" "$CHART" --namespace "$ns" "$@" >"$work/out/$name.yaml" 2>"$work/out/$name.err" \
    || { cat "$work/out/$name.err"; fail "helm template ($name) failed"; }
}
# refused WHAT MESSAGE ARGS...: helm template must fail, saying MESSAGE (a grep -E pattern).
refused() {
  local what=$1 message=$2; shift 2
  if helm template "$RELEASE" "$CHART" --namespace "$ns" "$@" >/dev/null 2>"$work/refused.err"; then
    fail "helm template accepted $what; it must refuse it"
  fi
  grep -qE -- "$message" "$work/refused.err" || { cat "$work/refused.err"; fail "helm template refused $what, but without saying '$message'"; }
}
# has FILE PATTERN WHY / hasnt FILE PATTERN WHY: a rendered file does (not) contain a line matching PATTERN.
has() { grep -qE -- "$2" "$work/out/$1.yaml" || fail "$1: $3 (no line matches '$2')"; }
hasnt() { ! grep -qE -- "$2" "$work/out/$1.yaml" || fail "$1: $3 (a line matches '$2')"; }
# doc FILE KIND NAME: one rendered object, as JSON, into $work/doc.json (kubectl converts the YAML).
doc() {
  python3 - "$work/out/$1.yaml" "$2" "$3" >"$work/doc.yaml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
for d in re.split(r"(?m)^---\s*$", text):
    if re.search(r"(?m)^kind: %s$" % re.escape(sys.argv[2]), d) and re.search(r"(?m)^  name: %s$" % re.escape(sys.argv[3]), d):
        print(d); break
PY
  [ -s "$work/doc.yaml" ] || fail "$1: no $2 named $3"
  kubectl create --dry-run=client -o json -f "$work/doc.yaml" >"$work/doc.json" 2>"$work/doc.err" \
    || { cat "$work/doc.err"; fail "$1: the $2 $3 does not parse"; }
}
# jq-like: jget EXPRESSION prints a Python expression over the object `o` from $work/doc.json.
jget() { python3 -c 'import json, sys; o = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$work/doc.json" "$1"; }

step "helm template: defaults, every option on, and a variant for each mode and new value"
render default -f "$CHART/ci/defaults-values.yaml"
render all-on -f "$CHART/ci/all-on-values.yaml"
render auth-none --set auth.mode=none --set resourceQuota.enabled=true --set resourceQuota.resource=pods \
  --set ingress.enabled=true --set 'auth.allowedHosts={launcher.corp.example}' --set templates.example=true
render existing-secrets --set auth.existingSecret=team-tokens --set auth.existingSecretKey=list \
  --set aws.credentials.existingSecret=aws-keys --set aws.region=eu-west-1 --set templates.create=false \
  --set replicaCount=2 --set serviceAccount.create=false --set serviceAccount.name=default
render kube-auth --set auth.mode=kubernetes --set templates.example=true
render kube-legacy --set auth.mode=kubernetes --set auth.kubernetes.verb=use --set auth.kubernetes.audience= \
  --set rbac.userClusterRole.aggregateToEdit=false --set instance=team-a --set replicaCount=2 --set podAntiAffinity=hard \
  --set templates.configMapName= --set 'templates.extraConfigMaps={team-templates}' --set templates.create=false
render tls -f "$CHART/ci/defaults-values.yaml" --set tls.enabled=true --set templates.example=true \
  --set networkPolicy.enabled=true --set 'networkPolicy.apiFrom[0].podSelector.matchLabels.role=caller' \
  --set ingress.enabled=true --set shutdownDelay=1m30s --set shutdownGrace=1m --set terminationGracePeriodSeconds=153
render metrics -f "$CHART/ci/defaults-values.yaml" --set prometheusRule.enabled=true --set serviceMonitor.enabled=true \
  --set sqs.queueUrl=https://sqs.eu-central-1.amazonaws.com/123456789012/inputqueue
helm template worker "$EXAMPLE_COPY" --namespace "$ns" >"$work/out/worker-app.yaml" 2>"$work/out/worker-app.err" \
  || { cat "$work/out/worker-app.err"; fail "helm template of the example worker-app chart failed"; }

# What each render must (not) say. The defaults:
has default '^            - serve$' "the first arg is serve (the image's entrypoint is the bare binary)"
has default '^            - --log-format=json$' "the chart logs JSON by default"
has default '^            - --auth-token-file=/etc/kube-job-launcher/tokens/tokens$' "token-file auth by default"
has default "^            - --instance=$FULLNAME$" "the instance is the release's fullname"
has default "^            - --leader-lease=$FULLNAME-leader$" "the Lease is named after the instance (the fullname)"
has default "^            - --template-configmap=$FULLNAME-templates$" "the created template ConfigMap is named after the release"
has default "^  name: $FULLNAME-templates$" "the template ConfigMap named after the release"
has default "^    resourceNames: \[\"$FULLNAME-leader\"\]$" "the Role's Lease rule follows the Lease's name"
has default '^            - --shutdown-delay=5s$' "a shutdown delay by default"
has default '^data: \{\}$' "no template by default (the busybox example is opt-in)"
hasnt default '"job-template.yaml":|busybox' "the example template is not shipped by default"
has default 'fieldPath: metadata.namespace$' "JOB_LAUNCHER_NAMESPACE from the downward API"
has default '^automountServiceAccountToken: false$' "the ServiceAccount does not automount its token"
has default '^      automountServiceAccountToken: true$' "the launcher's pod mounts its token"
has default '^kind: Pod$' "the helm test hook pod"
hasnt default 'kind: (ClusterRole|PodDisruptionBudget|ResourceQuota|Ingress|NetworkPolicy|ServiceMonitor|PrometheusRule)$' "only the basic objects by default"
hasnt default '--insecure-no-auth|--auth=|--adopt-unlabelled-jobs|--tls-|AWS_|affinity:' "no other auth mode, adoption, TLS, AWS or anti-affinity by default"
doc default Deployment "$FULLNAME"
[ "$(jget 'o["spec"]["template"]["spec"]["containers"][0]["args"][0]')" = serve ] || fail "default: the Deployment's first arg is not serve"
# Every value renders:
for flag in listen admin-listen template-configmap default-template default-ttl-seconds launch-timeout shutdown-grace \
  shutdown-delay instance log log-format auth auth-audience auth-group auth-resource auth-cache-ttl tls-cert-file tls-key-file \
  sqs-queue-url sqs-mode sqs-template sqs-concurrency sqs-dead-letter-queue-url sqs-max-receives sqs-endpoint \
  sqs-poll-interval sqs-max-jobs-per-poll max-active max-queued leader-lease; do
  has all-on "^            - --$flag=" "every setting renders as a flag: --$flag"
done
has all-on '^            - --adopt-unlabelled-jobs$' "upgrade.adoptUnlabelledJobs renders --adopt-unlabelled-jobs"
has all-on '^            - --instance=platform-launcher$' "instance overrides the fullname"
has all-on '^            - --auth=kubernetes$' "auth.mode=kubernetes renders --auth=kubernetes"
has all-on '^            - --auth-audience=chart-rel.launcher.example.com$' "auth.kubernetes.audience through tpl"
hasnt all-on '--auth-verb' "no --auth-verb unless the legacy override is set"
has all-on '^            - --template-configmap=chart-rel-job-templates,team-templates$' "template ConfigMaps by tpl and comma"
has all-on '^            - --leader-lease=chart-rel-admission$' "admission.leaderLease through tpl"
has all-on '^            - --shutdown-delay=1m5s$' "compound durations"
has all-on '^            - --max-queued=1000000$' "whole numbers render as integers"
has all-on '^  "job-template.yaml": \|-$' "templates.example adds the example"
has all-on '^kind: PodDisruptionBudget$' "replicas > 1 adds a PodDisruptionBudget"
has all-on '^    count/pods: "30"$' "the ResourceQuota on count/pods"
has all-on '^            - name: AWS_SECRET_ACCESS_KEY$' "static AWS keys from a Secret"
has all-on '^          envFrom:$' "extraEnvFrom"
has all-on '^          name: wait-for-dns$' "initContainers"
has all-on '^          name: auth-proxy$' "extraContainers"
has all-on '^          lifecycle:$' "lifecycle"
has all-on '^    type: RollingUpdate$' "strategy"
has all-on '^  revisionHistoryLimit: 3$' "revisionHistoryLimit"
has all-on '^    example.com/scrape: "true"$' "service.labels"
has all-on '^        team: platform$' "commonLabels on the pods"
has all-on '^  namespace: monitoring$' "serviceMonitor.namespace / prometheusRule.namespace"
has all-on '^      relabelings:$' "serviceMonitor.relabelings"
has all-on '^      metricRelabelings:$' "serviceMonitor.metricRelabelings"
has all-on "^  name: '?chart-rel-launcher-env'?$" "extraObjects (a map)"
has all-on '^  name: chart-rel-workers-launch$' "extraObjects (a string through tpl)"
has all-on '^        - alert: KubeJobLauncherDown$' "prometheusRule.additionalRules"
has all-on '^        - name: tls$' "tls.enabled mounts the TLS Secret"
has all-on '^            secretName: chart-rel-api-tls$' "tls.secretName through tpl"
has all-on 'requiredDuringScheduling|preferredDuringScheduling' "the given affinity"
has all-on "^  name: launcher-$ns-user$" "the user ClusterRole, named per release and namespace"
has all-on '^    rbac.authorization.k8s.io/aggregate-to-edit: "true"$' "the user ClusterRole aggregates to edit"
has all-on '^    rbac.authorization.k8s.io/aggregate-to-admin: "true"$' "the user ClusterRole aggregates to admin"
doc all-on ClusterRole "launcher-$ns-user"
[ "$(jget 'o["rules"]')" = "[{'apiGroups': ['job-launcher.dev'], 'resources': ['launches'], 'verbs': ['create', 'get', 'list', 'delete']}]" ] \
  || fail "all-on: the user ClusterRole's rules are $(jget 'o["rules"]')"
doc all-on Deployment launcher
[ "$(jget 'o["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]')" = 180 ] || fail "all-on: terminationGracePeriodSeconds"
doc all-on Pod launcher-test
[ "$(jget '[e["value"] for e in o["spec"]["containers"][0]["env"] if e["name"] == "LAUNCHER_API"][0]')" = "https://launcher.$ns.svc:80" ] \
  || fail "all-on: the test pod does not call the API over HTTPS on the Service's port"
[ "$(jget 'o["spec"]["volumes"][1]["projected"]["sources"][0]["serviceAccountToken"]["audience"]')" = chart-rel.launcher.example.com ] \
  || fail "all-on: the test pod's token is not minted for the launcher's audience"
# auth.mode=none: --allowed-hosts carries the Service's names, the ingress hosts and auth.allowedHosts.
has auth-none '^            - --insecure-no-auth$' "auth.mode=none renders --insecure-no-auth"
has auth-none "^            - --allowed-hosts=$FULLNAME,$FULLNAME.$ns,$FULLNAME.$ns.svc,$FULLNAME.$ns.svc.cluster.local,launcher.example.com,launcher.corp.example$" \
  "--allowed-hosts: the Service's names, the ingress host, auth.allowedHosts"
has auth-none '^    pods: "30"$' "resourceQuota.resource=pods"
hasnt auth-none '^kind: Secret$' "no token Secret without token-file auth"
hasnt auth-none 'name: TOKEN_FILE' "the test pod sends no token without auth"
# Existing Secrets; templates.create=false keeps the original launcher's ConfigMap name.
has existing-secrets 'secretName: team-tokens$' "auth.existingSecret is mounted"
has existing-secrets '^              - key: list$' "auth.existingSecretKey is the mounted key"
has existing-secrets '^                  name: aws-keys$' "aws.credentials.existingSecret feeds the AWS env"
has existing-secrets '^            - --template-configmap=job-template-cm$' "templates.create=false reads job-template-cm"
has existing-secrets '^          preferredDuringSchedulingIgnoredDuringExecution:$' "replicaCount > 1 adds a soft pod anti-affinity"
hasnt existing-secrets "^kind: (ConfigMap|ServiceAccount)\$|^  name: $FULLNAME-tokens\$" "nothing created that exists already"
# Kubernetes auth, defaults and legacy settings.
has kube-auth '^            - --auth-audience=chart-rel-kube-job-launcher$' "the audience defaults to the fullname"
has kube-auth '^            - --auth-group=job-launcher.dev$' "the group the user ClusterRole names"
has kube-auth '^            - --auth-resource=launches$' "the resource the user ClusterRole names"
hasnt kube-auth '--auth-verb|--auth-group=batch|--auth-resource=jobs' "no verb override, and callers need nothing on jobs, by default"
doc kube-auth ClusterRole "$FULLNAME-$ns-user"
[ "$(jget 'o["rules"]')" = "[{'apiGroups': ['job-launcher.dev'], 'resources': ['launches'], 'verbs': ['create', 'get', 'list', 'delete']}]" ] \
  || fail "kube-auth: the user ClusterRole's rules are $(jget 'o["rules"]')"
has kube-auth "^  name: $FULLNAME-$ns-user$" "the user ClusterRole by default in kubernetes mode"
has kube-auth "^  name: $FULLNAME-test$" "the test hook's ServiceAccount and Role"
has kube-legacy '^            - --auth-verb=use$' "the legacy verb override"
hasnt kube-legacy '--auth-audience' "audience \"\": no audience"
hasnt kube-legacy 'aggregate-to-' "aggregateToEdit=false"
has kube-legacy '^    verbs: \["create","get","list","delete","use"\]$' "the user ClusterRole grants the legacy verb too"
has kube-legacy '^            - --template-configmap=team-templates$' "configMapName \"\": only extraConfigMaps"
has kube-legacy '^            - --instance=team-a$' "instance"
has kube-legacy '^            - --leader-lease=team-a-leader$' "the Lease is named after the instance"
has kube-legacy '^          requiredDuringSchedulingIgnoredDuringExecution:$' "podAntiAffinity=hard"
# TLS: flags, mount, port names; the admin port and probes stay plain HTTP.
has tls '^            - --tls-cert-file=/etc/kube-job-launcher/tls/tls.crt$' "--tls-cert-file"
has tls '^            - --tls-key-file=/etc/kube-job-launcher/tls/tls.key$' "--tls-key-file"
has tls "^            secretName: $FULLNAME-tls$" "the TLS Secret defaults to <fullname>-tls"
has tls '^    - name: https$' "the API Service port is https"
has tls '^      appProtocol: https$' "the API Service port's appProtocol"
has tls '^                  name: https$' "the ingress backend follows the port's name"
has tls '^        - port: https$' "the NetworkPolicy follows the port's name"
has tls '^              app.kubernetes.io/name: kube-job-launcher-test$' "the NetworkPolicy admits the test pod"
has tls '^          value: "https://' "the test pod calls https"
has tls '^          value: "job-template"$' "the test launches the example when it is on"
doc tls Deployment "$FULLNAME"
[ "$(jget 'o["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"]')" = admin ] || fail "tls: the readiness probe left the admin port"
[ "$(jget '[p["name"] for p in o["spec"]["template"]["spec"]["containers"][0]["ports"]]')" = "['https', 'admin']" ] || fail "tls: the container's ports"
# The PrometheusRule: every alert the README promises, with this release's series.
for alert in NoLeader TemplateInvalid SqsMessagesOld SqsDeadLetters QueueRising LaunchErrors; do
  has metrics "^        - alert: KubeJobLauncher$alert$" "the PrometheusRule alerts on $alert"
done
has metrics "max by \(namespace, service\) \(job_launcher_leader\{namespace=\"$ns\",service=\"$FULLNAME-admin\"\}\) == 0" "no leader"
has metrics 'outcome="dead_lettered"\}\[15m\]\)\) > 0' "dead letters"
has metrics 'deriv\(job_launcher_queue_depth' "queue depth rising"
has metrics 'outcome!~"created\|existing"' "launch errors"
has metrics "^      port: admin$|^    - port: admin$" "the ServiceMonitor scrapes the admin port"
hasnt auth-none 'kind: PrometheusRule' "no PrometheusRule unless asked"
# The example parent chart.
has worker-app '^            - --template-configmap=worker-job-templates$' "the parent chart's template ConfigMap reaches the launcher"
has worker-app '^  "report.yaml": \|-$' "the parent chart's own template file"
has worker-app "^  name: worker-kube-job-launcher-$ns-user$" "the user ClusterRole, from the dependency"
doc worker-app RoleBinding worker-launch
[ "$(jget 'o["roleRef"]["name"]')" = "worker-kube-job-launcher-$ns-user" ] || fail "worker-app: the launch RoleBinding does not bind the launcher's user ClusterRole"

# Refused at render time, each with its own message.
refused "a generated token without lookup (helm template)" "needs Helm's lookup"
refused "an unknown auth.mode (schema)" "auth.mode" --set auth.mode=ldap -f "$CHART/ci/defaults-values.yaml"
refused "a misspelt setting (schema)" "queueURL" --set sqs.queueURL=x -f "$CHART/ci/defaults-values.yaml"
refused "a duration that is not one" "timeout" --set launch.timeout=10parsecs -f "$CHART/ci/defaults-values.yaml"
refused "auth.tokens together with auth.existingSecret" "exclude each other" --set 'auth.tokens={a}' --set auth.existingSecret=s
refused "half a static AWS key pair" "both accessKeyId" --set aws.credentials.accessKeyId=AKIA -f "$CHART/ci/defaults-values.yaml"
refused "a templates.data key that is no template (schema)" "notes.txt" --set 'templates.data.notes\.txt=x' -f "$CHART/ci/defaults-values.yaml"
refused "an instance that is no label value (schema)" "instance" --set instance=-bad- -f "$CHART/ci/defaults-values.yaml"
refused "an instance that cannot name the Lease (schema)" "instance" --set instance=Team_A -f "$CHART/ci/defaults-values.yaml"
refused "shutdownGrace + shutdownDelay at the grace period" "shutdown does not fit in terminationGracePeriodSeconds \(30s\)" \
  --set shutdownGrace=25s -f "$CHART/ci/defaults-values.yaml"
refused "the launcher's default grace (25s) + 5s" "25s, the launcher's default" --set shutdownGrace= -f "$CHART/ci/defaults-values.yaml"
refused "a preStop sleep that eats the budget" "the preStop sleep \(5s\)" --set lifecycle.preStop.sleep.seconds=5 -f "$CHART/ci/defaults-values.yaml"
refused "a compound duration over budget" "1m30s" --set shutdownGrace=1m30s --set terminationGracePeriodSeconds=90 -f "$CHART/ci/defaults-values.yaml"
render budget-edge -f "$CHART/ci/defaults-values.yaml" --set shutdownGrace= --set terminationGracePeriodSeconds=33 # 25+5+2 < 33

# Every flag the chart can render must be one the launcher knows: the chart and the binary are
# built from the same tree and must not drift apart. hack/chart-flags-pending.txt lists flags the
# binary is still gaining; each must be rendered by some check above, and leave the list once the
# binary has it.
"$LAUNCHER_BIN" serve --help >"$work/help.txt" 2>&1 || { cat "$work/help.txt"; fail "$LAUNCHER_BIN serve --help failed"; }
known=$(grep -oE -- '--[a-z0-9-]+' "$work/help.txt" | sort -u)
pending=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$PENDING_FILE" 2>/dev/null | grep -v '^$' | sort -u || true)
# The launcher container's args are the only list items at this indentation (extraContainers' are not).
rendered=$(cat "$work"/out/*.yaml | sed -n 's/^            - "\{0,1\}\(--[a-z0-9-]*\).*/\1/p' | sort -u)
unknown=$(comm -23 <(echo "$rendered") <(echo "$known") | comm -23 - <(echo "$pending"))
[ -z "$unknown" ] || fail "the chart renders flags that $LAUNCHER_BIN serve does not know: $(echo "$unknown" | tr '\n' ' ')"
if [ -n "$pending" ]; then
  landed=$(comm -12 <(echo "$pending") <(echo "$known"))
  [ -z "$landed" ] || fail "$LAUNCHER_BIN serve knows $(echo "$landed" | tr '\n' ' ')now: remove them from ${PENDING_FILE#"$ROOT_DIR"/}"
  unused=$(comm -23 <(echo "$pending") <(echo "$rendered"))
  [ -z "$unused" ] || fail "${PENDING_FILE#"$ROOT_DIR"/} lists $(echo "$unused" | tr '\n' ' ')which no chart check renders"
  note "flags the binary does not have yet (${PENDING_FILE#"$ROOT_DIR"/}): $(echo "$pending" | tr '\n' ' ')"
fi
is_pending() { grep -qx -- "$1" <<<"$pending"; }
# The launcher's defaults the chart relies on: the shutdown check assumes --shutdown-grace's.
python3 - "$work/help.txt" "$(sed -n 's/.*define "kube-job-launcher.defaultShutdownGrace" -}}\([^{]*\){{.*/\1/p' "$CHART/templates/_helpers.tpl")" <<'PY' \
  || fail "the chart's idea of the launcher's default --shutdown-grace is wrong (templates/_helpers.tpl, defaultShutdownGrace)"
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"--shutdown-grace\b.*?\[default: ([^\]]+)\]", text, re.S)
sys.exit(0 if m and m.group(1) == sys.argv[2] else 1)
PY

# --- 3. server-side dry run -----------------------------------------------------------------------
# warn, not enforce: the launcher's own pod (and the test pod) must meet "restricted" (a warning
# fails the dry run), but the example template's Jobs launched below are plain busybox pods.
step "namespace $ns (Pod Security: warn on anything short of restricted)"
kubectl create namespace "$ns" >/dev/null
kubectl label namespace "$ns" pod-security.kubernetes.io/warn=restricted >/dev/null

# The ServiceMonitor's and PrometheusRule's CRDs (Prometheus Operator) are not installed here, and
# installing even a stand-in would change the cluster for everyone sharing it (CRDs are
# cluster-wide) while checking only a schema written here. So they are left out of the dry run
# and checked for their shape above. So are objects for other namespaces (the all-on values put
# them in `monitoring`, which does not exist here).
without_crds() {
  awk 'BEGIN { RS = "\n---\n" } !/\nkind: (ServiceMonitor|PrometheusRule)\n/ { printf "%s\n---\n", $0 }' "$1"
}
# A bare Pod (the helm test hook) is admitted only when its ServiceAccount exists, which a dry run
# of the same file does not make: such ServiceAccounts are made for real first, then removed.
made_service_accounts=()
dry_run() {
  local name=$1 file=$work/out/$1.yaml
  without_crds "$file" >"$work/$name.apply.yaml"
  for account in $(awk 'BEGIN { RS = "\n---\n" } /\nkind: Pod\n/' "$work/$name.apply.yaml" | sed -n 's/^  serviceAccountName: //p'); do
    if ! kubectl get serviceaccount "$account" -n "$ns" >/dev/null 2>&1; then
      kubectl create serviceaccount "$account" -n "$ns" --save-config >/dev/null
      made_service_accounts+=("$account")
    fi
  done
  if ! kubectl apply --dry-run=server -n "$ns" -f "$work/$name.apply.yaml" >"$work/$name.apply.out" 2>"$work/$name.apply.err"; then
    cat "$work/$name.apply.err"
    fail "$name: the apiserver refused the rendered chart (kubectl apply --dry-run=server)"
  fi
  if grep -q . "$work/$name.apply.err"; then
    cat "$work/$name.apply.err"
    fail "$name: the apiserver warned about the rendered chart (Pod Security or a deprecated API)"
  fi
  note "$name: $(wc -l <"$work/$name.apply.out") objects accepted (server dry run)"
}
step "kubectl apply --dry-run=server of every render (the helm test hooks included)"
for name in default all-on auth-none existing-secrets kube-auth kube-legacy tls metrics worker-app; do
  dry_run "$name"
done
for account in "${made_service_accounts[@]}"; do kubectl delete serviceaccount "$account" -n "$ns" >/dev/null; done

step "helm install --dry-run=server --create-namespace: lookup works before the namespace exists"
helm install "$RELEASE" "$CHART" --namespace "$ns-new" --create-namespace --dry-run=server >"$work/out/lookup.yaml" 2>"$work/lookup.err" \
  || { cat "$work/lookup.err"; fail "helm install --dry-run=server into a new namespace refused the generated token (the lookup probe)"; }
has lookup '^    helm.sh/resource-policy: keep$' "the generated token's Secret is kept on uninstall"
has lookup '^  tokens: "' "a generated token"
! kubectl get namespace "$ns-new" >/dev/null 2>&1 || fail "helm install --dry-run=server created the namespace $ns-new"

# --- 4. install ---------------------------------------------------------------------------------
# A TLS Secret for the API, as cert-manager would make it (the launcher below serves with it).
tls_dir=$work/tls-ca
mkdir -p "$tls_dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=$FULLNAME" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:$FULLNAME.$ns.svc" \
  -keyout "$tls_dir/tls.key" -out "$tls_dir/tls.crt" >/dev/null 2>&1 || fail "openssl could not make a certificate"
kubectl create secret tls "$FULLNAME-tls" -n "$ns" --cert="$tls_dir/tls.crt" --key="$tls_dir/tls.key" >/dev/null

install_args=(--namespace "$ns" --set replicaCount=0 --set templates.example=true --set tls.enabled=true
  --set shutdownDelay=1s --wait --timeout 120s)
step "helm install $RELEASE into $ns (replicaCount=0: no launcher image here; the binary runs outside below)"
helm install "$RELEASE" "$CHART" "${install_args[@]}" >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "helm install"; }
token_secret=$FULLNAME-tokens
token_before=$(kubectl get secret "$token_secret" -n "$ns" -o jsonpath='{.data.tokens}')
[ -n "$token_before" ] || fail "the generated token Secret $token_secret is empty"
helm upgrade "$RELEASE" "$CHART" "${install_args[@]}" >"$work/upgrade.log" 2>&1 || { cat "$work/upgrade.log"; fail "helm upgrade"; }
[ "$(kubectl get secret "$token_secret" -n "$ns" -o jsonpath='{.data.tokens}')" = "$token_before" ] \
  || fail "helm upgrade changed the generated API token (it must be kept across upgrades)"
sa=$(kubectl get serviceaccount -n "$ns" -l "app.kubernetes.io/instance=$RELEASE" -o jsonpath='{.items[0].metadata.name}')
[ "$sa" = "$FULLNAME" ] || fail "the chart created no ServiceAccount $FULLNAME (found '$sa')"
note "installed and upgraded; ServiceAccount $sa; the API token survived the upgrade"

# --- 5. the launcher as the chart's ServiceAccount, with the Deployment's args -------------------
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
lease_name=$FULLNAME-leader
for verb in create get list watch patch delete; do can yes "$verb" jobs.batch; done
for verb in get list watch; do can yes "$verb" pods; done
can yes get pods --subresource=log
can yes watch "configmaps/$FULLNAME-templates"
can yes create events
for verb in get list watch; do can yes "$verb" events; done
can yes patch events.events.k8s.io
can yes create leases.coordination.k8s.io
can yes update "leases.coordination.k8s.io/$lease_name"
can no create secrets
can no get secrets
can no list configmaps
can no get configmaps/job-template-cm
can no create pods
can no delete pods
can no update jobs.batch
can no delete "leases.coordination.k8s.io/$lease_name"
can no update leases.coordination.k8s.io/kube-job-launcher
can no create rolebindings.rbac.authorization.k8s.io
can no create tokenreviews.authentication.k8s.io
[ "$(as_sa auth can-i create jobs.batch -n default 2>/dev/null || true)" = no ] || fail "the ServiceAccount may create Jobs outside its namespace"
if as_sa create secret generic chart-test-forbidden --from-literal=a=b >"$work/secret.out" 2>&1; then
  fail "the chart's ServiceAccount created a Secret; the Role must not allow it"
fi
grep -qi forbidden "$work/secret.out" || { cat "$work/secret.out"; fail "creating a Secret failed, but not as Forbidden"; }
note "can-i agrees with the Role; creating a Secret is Forbidden"

step "the Lease $lease_name: create and update as the ServiceAccount"
cat <<YAML | as_sa create -f - >/dev/null || fail "the ServiceAccount cannot create its Lease"
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: $lease_name
  namespace: $ns
spec:
  holderIdentity: chart-test
  leaseDurationSeconds: 15
YAML
as_sa get lease "$lease_name" -o yaml >"$work/lease.yaml" || fail "the ServiceAccount cannot get its Lease"
# Give it up again (an empty holder), as a replica that stops does; the launcher takes it below.
sed -i 's/^  holderIdentity: .*/  holderIdentity: ""/' "$work/lease.yaml"
as_sa replace -f "$work/lease.yaml" >/dev/null || fail "the ServiceAccount cannot update its Lease"
[ -z "$(kubectl get lease "$lease_name" -n "$ns" -o jsonpath='{.spec.holderIdentity}')" ] || fail "the Lease update did not land"

# start_launcher WHAT: runs the binary with the installed Deployment's args (minus pending flags),
# its listeners on free loopback ports and the chart's mounts replaced by local copies of the same
# Secrets; waits for /readyz.
live=$work/live
start_launcher() {
  local what=$1
  rm -rf "$live" && mkdir -p "$live/tokens" "$live/tls"
  (umask 077
    kubectl get secret "$token_secret" -n "$ns" -o jsonpath='{.data.tokens}' | base64 -d >"$live/tokens/tokens"
    kubectl get secret "$FULLNAME-tls" -n "$ns" -o jsonpath='{.data.tls\.crt}' | base64 -d >"$live/tls/tls.crt"
    kubectl get secret "$FULLNAME-tls" -n "$ns" -o jsonpath='{.data.tls\.key}' | base64 -d >"$live/tls/tls.key")
  read -r api_port admin_port < <(python3 -c 'import socket
ports = []
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ports.append(s.getsockname()[1]); s.close()
print(*ports)')
  kubectl get deployment "$FULLNAME" -n "$ns" -o jsonpath='{.spec.template.spec.containers[0].args}' >"$work/args.json"
  python3 - "$work/args.json" "$api_port" "$admin_port" "$live" "$pending" >"$work/args.bin" 2>"$work/args.err" <<'PY' \
    || { cat "$work/args.err"; fail "the Deployment's args cannot be run here"; }
import json, sys
args, api, admin, live, pending = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4], set(sys.argv[5].split())
mounts = {"/etc/kube-job-launcher/tokens/": live + "/tokens/", "/etc/kube-job-launcher/tls/": live + "/tls/"}
out = []
for a in args:
    name, eq, value = a.partition("=")
    if name in pending:
        print(f"skipping {a} (pending)", file=sys.stderr); continue
    if name == "--listen": a = f"--listen=127.0.0.1:{api}"
    elif name == "--admin-listen": a = f"--admin-listen=127.0.0.1:{admin}"
    for mounted, local in mounts.items():
        if value.startswith(mounted): a = name + "=" + local + value[len(mounted):]
    if "/etc/kube-job-launcher/" in a:
        sys.exit(f"the Deployment mounts something the test does not know: {a}")
    out.append(a)
sys.stdout.write("\0".join(out) + "\0")
PY
  mapfile -d '' args <"$work/args.bin"
  [ "${args[0]}" = serve ] || fail "the Deployment's first arg is '${args[0]}', not serve"
  # Settings from the caller's environment must not change what is tested.
  while read -r var; do unset "$var"; done < <(compgen -e | grep '^JOB_LAUNCHER_' || true)
  KUBECONFIG=$sa_kubeconfig "$LAUNCHER_BIN" "${args[@]}" --namespace "$ns" >"$work/launcher.log" 2>&1 &
  launcher_pid=$!
  admin=http://127.0.0.1:$admin_port
  local deadline=$((SECONDS + 60))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$admin/readyz")" = 200 ]; do
    kill -0 "$launcher_pid" 2>/dev/null || fail "the launcher ($what) exited before it was ready"
    [ $SECONDS -lt $deadline ] || { curl -s "$admin/readyz" >&2 || true; fail "the launcher ($what) was not ready (GET /readyz) after 60s as the chart's ServiceAccount"; }
    sleep 0.3
  done
  note "$what: ready with the Deployment's args: ${args[*]:1}"
  if grep -q '^skipping' "$work/args.err"; then note "$what: $(sed -n 's/^skipping \(.*\) (pending)$/\1/p' "$work/args.err" | tr '\n' ' ')left out: the binary does not have them yet"; fi
}
stop_launcher_cleanly() {
  # The apiserver's refusals of the launcher's own requests read `... is forbidden: User "<sa>"`.
  if grep -F 'forbidden: User' "$work/launcher.log" | grep -qF "system:serviceaccount:$ns:$sa"; then
    grep "forbidden: User" "$work/launcher.log" | head -10
    fail "the launcher was refused something with the chart's Role (its log says forbidden)"
  fi
  kill -0 "$launcher_pid" 2>/dev/null || fail "the launcher exited during the checks"
  kill -TERM "$launcher_pid"
  wait "$launcher_pid" || fail "the launcher did not stop cleanly on SIGTERM"
  launcher_pid=
}

# request METHOD PATH [BODY]: prints the status; the body is in $work/body. $api, $curl_opts and
# $bearer (a token, or empty) say where and how.
request() {
  local method=$1 path=$2 body=${3:-}
  local opts=("${curl_opts[@]}")
  [ -z "$bearer" ] || opts+=(-H "Authorization: Bearer $bearer")
  [ -z "$body" ] || opts+=(-H 'content-type: application/json' -d "$body")
  curl -sS -o "$work/body" -w '%{http_code}' -X "$method" "${opts[@]}" "$api$path"
}
json() { python3 -c 'import json, sys; v = json.load(open(sys.argv[1])); print(v.get(sys.argv[2]) or "")' "$work/body" "$1"; }
expect() { # expect CODE WHAT: the last request's status was CODE
  [ "$code" = "$1" ] || { cat "$work/body"; echo; fail "$2 answered $code, expected $1"; }
}

step "the launcher ($LAUNCHER_BIN): token-file auth and TLS, as the chart configures them"
start_launcher "token-file + TLS"
api=https://127.0.0.1:$api_port
curl_opts=(--cacert "$live/tls/tls.crt")
bearer=
code=$(request GET /v1/templates); expect 401 "GET /v1/templates without a token"
bearer=$(grep -v '^#' "$live/tokens/tokens" | head -1 | cut -d, -f1)
code=$(request POST /v1/jobs '{}'); expect 201 "POST /v1/jobs (the example is the default template) over TLS"
job=$(json name)
[ -n "$job" ] || fail "POST /v1/jobs answered no Job name"
note "launched $job over https with the chart's generated token"
if ! is_pending --instance; then
  [ "$(kubectl get job "$job" -n "$ns" -o jsonpath='{.metadata.labels.job-launcher\.dev/instance}')" = "$FULLNAME" ] \
    || fail "$job does not carry job-launcher.dev/instance=$FULLNAME"
  note "$job carries job-launcher.dev/instance=$FULLNAME"
fi
deadline=$((SECONDS + 60))
while :; do
  code=$(request GET "/v1/jobs/$job"); expect 200 "GET /v1/jobs/$job"
  state=$(json state)
  [ "$state" = succeeded ] && break
  [ "$state" = failed ] && { cat "$work/body"; echo; fail "$job failed"; }
  [ $SECONDS -lt $deadline ] || { cat "$work/body"; echo; fail "$job is still '$state' after 60s"; }
  sleep 0.5
done
code=$(request GET "/v1/jobs/$job/logs"); expect 200 "GET /v1/jobs/$job/logs"
[ "$(cat "$work/body")" = "$(printf 'Hello\nfrom a fake node')" ] || { cat "$work/body"; fail "GET /v1/jobs/$job/logs is not the fake pod's log"; }
code=$(request GET "/v1/jobs/$job/k8s-events"); expect 200 "GET /v1/jobs/$job/k8s-events (the Role reads Events)"
grep -q '"reason":"SuccessfulCreate"' "$work/body" || { cat "$work/body"; fail "GET /v1/jobs/$job/k8s-events has not the Job controller's SuccessfulCreate"; }
# The dashboard over TLS: its login's cookie is Secure, under a __Host- name, and stands in for the token.
curl -sS -o /dev/null -D "$work/login.headers" "${curl_opts[@]}" -H "Origin: $api" -H 'Sec-Fetch-Site: same-origin' \
  --data-urlencode "token=$bearer" "$api/ui/login"
session=$(tr -d '\r' <"$work/login.headers" | sed -n 's/^set-cookie: \(__Host-kjl-session=[^;]*\);.*; Secure$/\1/Ip')
[ -n "$session" ] || { cat "$work/login.headers"; fail "POST /ui/login over TLS set no Secure __Host- session cookie"; }
saved_bearer=$bearer; saved_opts=("${curl_opts[@]}"); bearer=; curl_opts+=(-b "$session")
code=$(request GET "/v1/jobs/$job"); expect 200 "GET /v1/jobs/$job with the dashboard's session cookie"
bearer=$saved_bearer; curl_opts=("${saved_opts[@]}")
note "Events of $job; the dashboard's login over TLS sets a Secure __Host- cookie that authenticates"
code=$(request DELETE "/v1/jobs/$job"); expect 202 "DELETE /v1/jobs/$job"
deadline=$((SECONDS + 30))
while kubectl get job "$job" -n "$ns" >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || fail "$job still exists 30s after DELETE"
  sleep 0.3
done
note "status $state, logs, cancel"
deadline=$((SECONDS + 30))
until holder=$(kubectl get lease "$lease_name" -n "$ns" -o jsonpath='{.spec.holderIdentity}') && [ -n "$holder" ]; do
  [ $SECONDS -lt $deadline ] || fail "the launcher did not take the released Lease $lease_name within 30s"
  sleep 0.3
done
note "the launcher holds the Lease $lease_name ($holder)"

# The `helm test` script, as rendered into the hook pod, against this launcher: the pod's own
# environment with the URLs and the token file pointed here (the fake nodes run no containers,
# so `helm test` itself cannot run here).
run_helm_test_script() { # run_helm_test_script WHAT ENV...
  local what=$1; shift
  helm get hooks "$RELEASE" -n "$ns" >"$work/hooks.yaml"
  kubectl create --dry-run=client -o json -f "$work/hooks.yaml" >"$work/hooks.json" 2>/dev/null || fail "helm get hooks does not parse"
  python3 - "$work/hooks.json" "$work/helm-test" <<'PY' || fail "no helm test pod in the release's hooks"
import json, sys
# kubectl prints one JSON object per document.
text, items, i = open(sys.argv[1]).read(), [], 0
decoder = json.JSONDecoder()
while i < len(text):
    if text[i].isspace():
        i += 1; continue
    obj, i = decoder.raw_decode(text, i)
    items += obj.get("items", [obj])
pod = next(i for i in items if i["kind"] == "Pod")
c = pod["spec"]["containers"][0]
open(sys.argv[2] + ".sh", "w").write(c["args"][0])
with open(sys.argv[2] + ".env", "w") as f:
    for e in c.get("env", []):
        f.write(f"{e['name']}={e.get('value', '')}\n")
PY
  local env_args=()
  while IFS= read -r line; do env_args+=("$line"); done <"$work/helm-test.env"
  if ! env -i PATH="$PATH" TMPDIR="$work" "${env_args[@]}" TIMEOUT_SECONDS=60 "$@" sh -ec "$(cat "$work/helm-test.sh")" >"$work/helm-test.log" 2>&1; then
    cat "$work/helm-test.log"
    fail "the helm test script failed against the live launcher ($what)"
  fi
  grep -q '^PASS$' "$work/helm-test.log" || { cat "$work/helm-test.log"; fail "the helm test script did not pass ($what)"; }
  note "the helm test script passed ($what): $(grep -c . "$work/helm-test.log") lines, $(grep -o 'launched [a-z0-9-]*' "$work/helm-test.log" || echo 'no launch')"
}
run_helm_test_script "token-file + TLS" LAUNCHER_API="$api" LAUNCHER_ADMIN="$admin" TOKEN_FILE="$live/tokens/tokens"

# Every metric the PrometheusRule uses is one the launcher registers (src/telemetry.rs, prefix
# job_launcher_; a family without samples yet is not in /metrics), and where /metrics shows it,
# `_total` names exactly its counters.
curl -s "$admin/metrics" >"$work/metrics.txt"
registered=$(python3 -c 'import re, sys; print("\n".join(sorted("job_launcher_" + n for n in re.findall(r"\.register\(\s*\"([a-z_]+)\"", open(sys.argv[1]).read()))))' src/telemetry.rs)
[ -n "$registered" ] || fail "no metric registrations found in src/telemetry.rs"
seen=0
for metric in $(grep -oE 'job_launcher_[a-z_]+' "$work/out/metrics.yaml" | sort -u); do
  family=${metric%_total}
  grep -qx "$family" <<<"$registered" || fail "the PrometheusRule uses $metric, which src/telemetry.rs does not register"
  if type=$(sed -n "s/^# TYPE $family \([a-z]*\)$/\1/p" "$work/metrics.txt") && [ -n "$type" ]; then
    seen=$((seen + 1))
    { [ "$type" = counter ] && [ "$metric" != "$family" ]; } || { [ "$type" != counter ] && [ "$metric" = "$family" ]; } \
      || fail "the PrometheusRule uses $metric, but /metrics has $family as a $type"
  fi
done
note "every metric the PrometheusRule uses is registered ($seen of them seen in /metrics with the right type)"
stop_launcher_cleanly

step "auth.mode=none: --allowed-hosts from the chart"
helm upgrade "$RELEASE" "$CHART" "${install_args[@]}" --set auth.mode=none --set tls.enabled=false >"$work/upgrade.log" 2>&1 \
  || { cat "$work/upgrade.log"; fail "helm upgrade to auth.mode=none"; }
start_launcher "auth none"
api=http://127.0.0.1:$api_port
curl_opts=()
bearer=
for host in "$FULLNAME" "$FULLNAME.$ns.svc" "$FULLNAME.$ns.svc.cluster.local:8080"; do
  curl_opts=(-H "Host: $host")
  code=$(request GET /v1/templates); expect 200 "GET /v1/templates with Host: $host"
done
curl_opts=(-H "Host: attacker.example")
code=$(request GET /v1/templates)
[ "$code" = 403 ] || fail "GET /v1/templates with a foreign Host answered $code, expected 403"
note "the Service's names are answered, a foreign Host is refused"
stop_launcher_cleanly

step "auth.mode=kubernetes: audience, per-action verbs, the user ClusterRole and its aggregation"
helm upgrade "$RELEASE" "$CHART" "${install_args[@]}" --set auth.mode=kubernetes >"$work/upgrade.log" 2>&1 \
  || { cat "$work/upgrade.log"; fail "helm upgrade to auth.mode=kubernetes"; }
user_role=$FULLNAME-$ns-user
kubectl get clusterrole "$user_role" >/dev/null || fail "no user ClusterRole $user_role"
kubectl create serviceaccount caller -n "$ns" >/dev/null
kubectl create serviceaccount editor -n "$ns" >/dev/null
kubectl create serviceaccount stranger -n "$ns" >/dev/null
kubectl create rolebinding caller-launches -n "$ns" --clusterrole="$user_role" --serviceaccount="$ns:caller" >/dev/null
kubectl create rolebinding editor-edit -n "$ns" --clusterrole=edit --serviceaccount="$ns:editor" >/dev/null
# allowed WHO VERB GROUP RESOURCE: "true" or "false", from a SubjectAccessReview as the launcher
# asks it (`kubectl auth can-i` cannot name a resource that discovery does not list).
allowed() {
  kubectl create -o jsonpath='{.status.allowed}' -f - <<JSON 2>/dev/null || echo error
{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
 "spec": {"user": "system:serviceaccount:$ns:$1",
          "groups": ["system:serviceaccounts", "system:serviceaccounts:$ns", "system:authenticated"],
          "resourceAttributes": {"namespace": "$ns", "verb": "$2", "group": "$3", "resource": "$4"}}}
JSON
}
can_as() { # can_as WHO WANT VERB GROUP RESOURCE
  local got
  got=$(allowed "$1" "$3" "$4" "$5")
  [ "$got" = "$2" ] || fail "a SubjectAccessReview of $3 $5 in group '$4' as $1 says '$got', expected '$2'"
}
# RBAC's authorizer sees a new RoleBinding through its informers: give it a moment.
deadline=$((SECONDS + 15))
until [ "$(allowed caller create job-launcher.dev launches)" = true ] || [ $SECONDS -ge $deadline ]; do sleep 0.3; done
for verb in create get list delete; do can_as caller true "$verb" job-launcher.dev launches; done
can_as caller false update job-launcher.dev launches
can_as caller false create batch jobs
can_as stranger false get job-launcher.dev launches
# The clusterrole-aggregation controller copies the rules into edit (and admin) shortly.
deadline=$((SECONDS + 30))
until [ "$(allowed editor create job-launcher.dev launches)" = true ]; do
  [ $SECONDS -lt $deadline ] || fail "the user ClusterRole was not aggregated into edit within 30s"
  sleep 0.5
done
kubectl get clusterrole admin -o jsonpath='{.rules[*].resources}' | grep -q launches || fail "the user ClusterRole was not aggregated into admin"
note "RoleBinding to $user_role grants create/get/list/delete on launches, nothing on jobs; edit and admin have them by aggregation"

start_launcher "kubernetes auth"
api=https://127.0.0.1:$api_port
curl_opts=(--cacert "$live/tls/tls.crt")
audience=$FULLNAME
if is_pending --auth-audience; then
  audience=
  bearer=$(kubectl create token caller -n "$ns" --duration=10m)
else
  bearer=$(kubectl create token caller -n "$ns" --duration=10m)   # the apiserver's audience: refused
  code=$(request GET /v1/templates); expect 401 "GET /v1/templates with a token not minted for the audience $audience"
  bearer=$(kubectl create token caller -n "$ns" --duration=10m --audience "$audience")
fi
code=$(request GET /v1/templates); expect 200 "GET /v1/templates as caller"
code=$(request POST /v1/jobs '{}'); expect 201 "POST /v1/jobs as caller"
job=$(json name)
code=$(request DELETE "/v1/jobs/$job"); expect 202 "DELETE /v1/jobs/$job as caller"
bearer=$(kubectl create token stranger -n "$ns" --duration=10m ${audience:+--audience "$audience"})
code=$(request GET /v1/templates); expect 403 "GET /v1/templates as a ServiceAccount without the ClusterRole"
note "a token for the audience $audience: caller may launch, get, list and cancel; stranger gets 403"
# The test hook's own ServiceAccount, Role and RoleBinding (made here as `helm test` would), then
# the test script with a token for the audience, as the hook pod's projected volume mints it.
helm get hooks "$RELEASE" -n "$ns" >"$work/hooks.yaml"
awk 'BEGIN { RS = "\n---\n" } !/\nkind: Pod\n/ { printf "%s\n---\n", $0 }' "$work/hooks.yaml" | kubectl apply -n "$ns" -f - >/dev/null
(umask 077; kubectl create token "$FULLNAME-test" -n "$ns" --duration=10m ${audience:+--audience "$audience"} >"$work/test-token")
run_helm_test_script "kubernetes auth + TLS" LAUNCHER_API="$api" LAUNCHER_ADMIN="$admin" TOKEN_FILE="$work/test-token"
# What `helm test` deletes after a success (hook-delete-policy hook-succeeded).
awk 'BEGIN { RS = "\n---\n" } !/\nkind: Pod\n/ { printf "%s\n---\n", $0 }' "$work/hooks.yaml" | kubectl delete -n "$ns" -f - >/dev/null
stop_launcher_cleanly

step "helm uninstall $RELEASE: nothing left but the kept token Secret; a reinstall adopts it"
helm uninstall "$RELEASE" --namespace "$ns" --wait --timeout 60s >"$work/uninstall.log" 2>&1 \
  || { cat "$work/uninstall.log"; fail "helm uninstall"; }
left=$(kubectl get serviceaccount,role,rolebinding,service,deployment,configmap,secret -n "$ns" \
  -l "app.kubernetes.io/instance=$RELEASE" -o name)
[ "$left" = "secret/$token_secret" ] || fail "helm uninstall left behind '$(echo "$left" | tr '\n' ' ')', expected only secret/$token_secret (helm.sh/resource-policy: keep)"
left=$(kubectl get clusterrole,clusterrolebinding -l "app.kubernetes.io/instance=$RELEASE" -o name | grep -- "-$ns-" || true)
[ -z "$left" ] || fail "helm uninstall left cluster-scoped objects behind: $left"
helm install "$RELEASE" "$CHART" "${install_args[@]}" >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "helm install again over the kept token Secret"; }
[ "$(kubectl get secret "$token_secret" -n "$ns" -o jsonpath='{.data.tokens}')" = "$token_before" ] \
  || fail "a reinstall changed the kept API token"
helm uninstall "$RELEASE" --namespace "$ns" --wait --timeout 60s >"$work/uninstall.log" 2>&1 || { cat "$work/uninstall.log"; fail "helm uninstall"; }
kubectl delete secret "$token_secret" -n "$ns" >/dev/null
note "uninstall kept $token_secret alone; the reinstall kept its token"

step "passed in $((SECONDS - start))s"
