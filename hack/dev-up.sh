#!/usr/bin/env bash
# Starts the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok with fake nodes) and an SQS server, all on 127.0.0.1, and writes .local/kubeconfig and
# .local/dev.env. Harmless to run again: what is running is left alone, and it returns as soon as
# everything answers.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$HACK_DIR/procs.sh"

started_any=false
mkdir -p "$RUN_DIR" "$LOG_DIR"

"$HACK_DIR/build-tools.sh"
"$HACK_DIR/pki.sh"
"$HACK_DIR/sqs-venv.sh"

BIN=$LOCAL_DIR/bin
write_kubeconfig() {
  local file=$1 tmp
  tmp=$(mktemp "$file.XXXXXX")
  KUBECONFIG=$tmp "$BIN/kubectl" config set-cluster local --server="https://127.0.0.1:$APISERVER_PORT" \
    --certificate-authority="$PKI_DIR/ca.crt" --embed-certs >/dev/null
  KUBECONFIG=$tmp "$BIN/kubectl" config set-credentials admin --client-certificate="$PKI_DIR/admin.crt" \
    --client-key="$PKI_DIR/admin.key" --embed-certs >/dev/null
  KUBECONFIG=$tmp "$BIN/kubectl" config set-context local --cluster=local --user=admin >/dev/null
  KUBECONFIG=$tmp "$BIN/kubectl" config use-context local >/dev/null
  chmod 600 "$tmp"
  mv "$tmp" "$file"
}
[ -f "$KUBECONFIG_FILE" ] || write_kubeconfig "$KUBECONFIG_FILE"
export KUBECONFIG=$KUBECONFIG_FILE
kubectl() { "$BIN/kubectl" "$@"; }

# etcd: throwaway local data, so fsync is skipped; it only slows every write down.
if ! proc_running etcd; then
  proc_start etcd "$BIN/etcd" --name=local --data-dir="$LOCAL_DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="local=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls="" \
    --unsafe-no-fsync --quota-backend-bytes=$((4 * 1024 * 1024 * 1024)) --log-level=warn
  started_any=true
fi
wait_for "etcd" 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

# The advertise address is loopback, which the default endpoint reconciler refuses; no pod here
# reaches the API through the kubernetes Service (kwok's pods run nothing), so it is turned off.
if ! proc_running kube-apiserver; then
  proc_start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --tls-cert-file="$PKI_DIR/apiserver.crt" --tls-private-key-file="$PKI_DIR/apiserver.key" \
    --client-ca-file="$PKI_DIR/ca.crt" \
    --kubelet-client-certificate="$PKI_DIR/admin.crt" --kubelet-client-key="$PKI_DIR/admin.key" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-key-file="$PKI_DIR/sa.pub" --service-account-signing-key-file="$PKI_DIR/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --authorization-mode=RBAC \
    --service-cluster-ip-range=10.96.0.0/16 \
    --endpoint-reconciler-type=none \
    --profiling=false
  started_any=true
fi
wait_for "kube-apiserver" 90 kubectl get --raw=/readyz

if ! proc_running kube-controller-manager; then
  proc_start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$KUBECONFIG_FILE" \
    --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --leader-elect=false \
    --controllers='*' \
    --service-account-private-key-file="$PKI_DIR/sa.key" --root-ca-file="$PKI_DIR/ca.crt" \
    --kube-api-qps=200 --kube-api-burst=400 \
    --profiling=false
  started_any=true
fi

if ! proc_running kube-scheduler; then
  cat > "$LOCAL_DIR/kube-scheduler.yaml" <<YAML
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $KUBECONFIG_FILE
  qps: 200
  burst: 400
leaderElection:
  leaderElect: false
YAML
  proc_start kube-scheduler "$BIN/kube-scheduler" --config="$LOCAL_DIR/kube-scheduler.yaml" \
    --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --profiling=false
  started_any=true
fi

# kwok's Logs CRD: a Logs object named after a pod gives that one pod a log file of its own (tests
# write and append to it); kwok watches these objects only if the CRD is there when it starts.
kubectl apply -f "$HACK_DIR/kwok/logs-crd.yaml" >/dev/null
wait_for "the kwok Logs CRD" 30 kubectl wait --for=condition=Established crd/logs.kwok.x-k8s.io --timeout=2s

if ! proc_running kwok; then
  mkdir -p "$LOCAL_DIR/kwok/home"
  # Every fake container's log: CRI log lines, served by kwok as the kubelet's log endpoint. A pod
  # with a Logs object of its own (see hack/kwok/logs-crd.yaml) reads that object's file instead.
  printf '%s stdout F Hello\n%s stdout F from a fake node\n' "2026-01-01T00:00:00.000000000Z" "2026-01-01T00:00:00.100000000Z" \
    > "$LOCAL_DIR/kwok/container.log"
  {
    cat <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
# Options given here replace kwok's defaults wholesale, so every parallelism is spelled out.
options:
  podPlayStageParallelism: 16
  nodePlayStageParallelism: 4
  nodeLeaseParallelism: 4
  podsOnNodeSyncParallelism: 2
  enablePodsOnNodeSyncListPager: true
  enableDebuggingHandlers: true
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: every-container
spec:
  logs:
  - logsFile: $LOCAL_DIR/kwok/container.log
---
YAML
    cat "$HACK_DIR/kwok/stages.yaml"
  } > "$LOCAL_DIR/kwok/kwok.yaml"
  # HOME is isolated so kwok reads no ~/.kwok of the developer's.
  HOME=$LOCAL_DIR/kwok/home proc_start kwok "$BIN/kwok" \
    --kubeconfig="$KUBECONFIG_FILE" --config="$LOCAL_DIR/kwok/kwok.yaml" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip=127.0.0.1 --node-port="$KWOK_PORT" --server-address="127.0.0.1:$KWOK_PORT" \
    --tls-cert-file="$PKI_DIR/kwok.crt" --tls-private-key-file="$PKI_DIR/kwok.key" \
    --cidr=10.244.0.0/16 --node-lease-duration-seconds=40 \
    --enable-crds=Logs
  started_any=true
fi

for i in $(seq 0 $((KWOK_NODES - 1))); do
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
YAML
done

if ! proc_running sqs; then
  proc_start sqs "$VENV_DIR/bin/moto_server" -H 127.0.0.1 -p "$SQS_PORT"
  started_any=true
fi

wait_for "$KWOK_NODES fake nodes Ready" 60 kubectl wait --for=condition=Ready node -l type=kwok --timeout=2s
wait_for "the default ServiceAccount" 60 kubectl get serviceaccount default -n default
wait_for "the SQS server" 30 curl -fsS -o /dev/null "http://127.0.0.1:$SQS_PORT/moto-api/"

"$HACK_DIR/sqs-queues.sh"
"$HACK_DIR/write-dev-env.sh"

$started_any && log "local control plane and SQS are up; source .local/dev.env to use them" || true
