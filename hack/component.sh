#!/usr/bin/env bash
# Stops or starts one component of the local control plane, for fault tests:
#   hack/component.sh stop kube-apiserver
#   hack/component.sh start          # starts whatever is not running (dev-up)
#   hack/component.sh recover        # start, then restart the controllers (after an apiserver/etcd fault)
#   hack/component.sh pause sqs      # SIGSTOP: the server hangs, keeping its state; resume: SIGCONT
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
  recover)
    # After the apiserver or etcd came back: the controllers' informers can stay behind the
    # restarted apiserver ("read version is not as new as written version"), so they are
    # restarted too, leaving the cluster as healthy as before the fault.
    "$HACK_DIR/dev-up.sh" >/dev/null
    for name in kwok kube-scheduler kube-controller-manager; do proc_stop "$name"; done
    "$HACK_DIR/dev-up.sh"
    ;;
  pause | resume)
    # A process that stops answering without going away (its port still accepts connections):
    # what a hung server or a partition looks like, with its state kept.
    [ -n "${2:-}" ] || die "usage: $0 $1 NAME"
    proc_running "$2" || die "$2 is not running"
    kill "-$([ "$1" = pause ] && echo STOP || echo CONT)" "$(cat "$RUN_DIR/$2.pid")"
    log "$1d $2"
    ;;
  *)
    die "usage: $0 stop NAME | start | recover | pause NAME | resume NAME"
    ;;
esac
