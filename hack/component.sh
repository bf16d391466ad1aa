#!/usr/bin/env bash
# Stops or starts one component of the local control plane, for fault tests:
#   hack/component.sh stop kube-apiserver
#   hack/component.sh start          # starts whatever is not running (dev-up)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$HACK_DIR/procs.sh"
case "${1:-}" in
  stop)
    [ -n "${2:-}" ] || die "usage: $0 stop NAME (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, sqs)"
    proc_stop "$2"
    ;;
  start)
    "$HACK_DIR/dev-up.sh"
    ;;
  *)
    die "usage: $0 stop NAME | start"
    ;;
esac
