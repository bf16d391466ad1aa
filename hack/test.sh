#!/usr/bin/env bash
# `make test`: starts the local control plane and SQS (stopping them again at the end if this run
# started them), then checks formatting and lints, then runs every test.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$HACK_DIR/procs.sh"
cd "$ROOT_DIR"

was_up=true
for name in etcd kube-apiserver kube-controller-manager kube-scheduler kwok sqs; do
  proc_running "$name" || was_up=false
done
if ! $was_up; then
  trap '"$HACK_DIR/dev-down.sh"' EXIT
fi
"$HACK_DIR/dev-up.sh"
# shellcheck source=/dev/null
source "$LOCAL_DIR/dev.env"
"$HACK_DIR/browser.sh" # Debian's Chromium and chromedriver, for the dashboard's browser test (tests/ui.rs)

log "cargo fmt --check"
cargo fmt --all -- --check
log "import circles"
python3 "$HACK_DIR/import-cycles.py"
log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
log "cargo test"
# Fault tests stop parts of the shared control plane: they run after the others, one at a time.
cargo test --locked --all-targets -- --test-threads="${TEST_THREADS:-3}" --skip fault_
log "generated requests against a live launcher (schemathesis)"
ST_EXAMPLES="${ST_EXAMPLES:-20}" "$HACK_DIR/schemathesis.sh"
if [ -x "$HACK_DIR/chart-test.sh" ]; then
  log "Helm chart checks"
  "$HACK_DIR/chart-test.sh"
fi
log "cargo test: fault tests, one at a time"
cargo test --locked --test faults -- --test-threads=1
log "all tests passed"
