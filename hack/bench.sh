#!/usr/bin/env bash
# `make bench`: starts the local control plane and SQS if they are not running (harmless when they
# are; unlike `make test` it leaves them running), builds the launcher and the bench in release
# mode, and runs the bench against them. It prints one table, splices it into docs/benchmarks.md
# and writes it as JSON under target/bench/.
#
# Settings (environment; see benches/launcher/main.rs): BENCH_RUNS (5), BENCH_HEAVY_RUNS (3),
# BENCH_SCALE (1.0: multiplies every count; 0.1 for a quick try), BENCH_PHASES
# (throughput,sqs,admission,resources,scale100k,watchers,order), BENCH_WRITE_DOCS (1; 0 leaves the docs alone),
# BENCH_PROFILE (a profiler command for the launcher under HTTP load, `{pid}` filled in).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"

"$HACK_DIR/dev-up.sh"
# shellcheck source=/dev/null
source "$LOCAL_DIR/dev.env"
log "building the launcher and the bench (release)"
cargo bench --locked --bench launcher --no-run
# The watchers phase holds 1,000 streams open: a socket each in the bench and in the launcher.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "running the bench (about 45 minutes with the defaults: the 100,000 Jobs take 16, the ResourceQuota run several)"
cargo bench --locked --bench launcher
