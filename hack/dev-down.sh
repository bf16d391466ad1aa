#!/usr/bin/env bash
# Stops every process `make dev-up` started, by pid, in the reverse order. Data stays in .local/
# (`make dev-clean` removes it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$HACK_DIR/procs.sh"
for name in sqs kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  proc_stop "$name"
done
