#!/usr/bin/env bash
# `make bench`: starts the local control plane and SQS if they are not running (harmless when they
# are; unlike `make test` it leaves them running), builds the launcher and the bench in release
# mode, and runs the bench against them. It prints one table, splices it into docs/benchmarks.md
# and writes it as JSON under target/bench/.
#
# Settings (environment; see benches/launcher/main.rs): BENCH_RUNS (5), BENCH_HEAVY_RUNS (3),
# BENCH_SCALE (1.0: multiplies every count; 0.1 for a quick try), BENCH_PHASES
# (throughput,sqs,admission,resources,order), BENCH_WRITE_DOCS (1; 0 leaves the docs alone),
# BENCH_PROFILE (a profiler command for the launcher under HTTP load, `{pid}` filled in).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"

"$HACK_DIR/dev-up.sh"
# shellcheck source=/dev/null
source "$LOCAL_DIR/dev.env"
log "building the launcher and the bench (release)"
cargo bench --locked --bench launcher --no-run
log "running the bench (about 35 minutes with the defaults; the ResourceQuota run alone takes several)"
cargo bench --locked --bench launcher
