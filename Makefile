# kube-job-launcher: the commands a developer and CI use. `make help` lists them.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

NAMESPACE ?= default
LAUNCHER_ARGS ?=

.PHONY: help
help: ## List the targets
	@awk -F':.*## ' '/^[a-z-]+:.*## /{printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: dev-up ## Start the local control plane and SQS, load the example templates, run the launcher
	@source .local/dev.env && \
	  kubectl create configmap job-template-cm -n $(NAMESPACE) \
	    --from-file=job-template.yaml=deploy/helm/kube-job-launcher/files/job-template.yaml \
	    --from-file=greeting.yaml=examples/greeting.yaml \
	    --dry-run=client -o yaml | kubectl apply -f - >/dev/null && \
	  cargo build --release --locked && \
	  exec target/release/kube-job-launcher serve --namespace $(NAMESPACE) \
	    --listen 127.0.0.1:8080 --admin-listen 127.0.0.1:9090 \
	    $${SQS_QUEUE_URL:+--sqs-queue-url "$$SQS_QUEUE_URL"} $(LAUNCHER_ARGS)

.PHONY: test
test: ## Start what is missing, then fmt, clippy and every test (stops what it started)
	@hack/test.sh

.PHONY: bench
bench: ## Throughput, latency, memory and start-up against the apiserver's own ceiling; writes docs/benchmarks.md
	@hack/bench.sh

.PHONY: dev-up
dev-up: ## Build (first time only) and start etcd, kube-apiserver, controllers, kwok nodes and SQS
	@hack/dev-up.sh

.PHONY: dev-down
dev-down: ## Stop every process dev-up started
	@hack/dev-down.sh

.PHONY: dev-clean
dev-clean: dev-down ## Stop, then delete the local cluster's data (keeps built binaries)
	@rm -rf .local/etcd .local/logs .local/run .local/pki .local/kubeconfig .local/dev.env .local/kwok

.PHONY: tools
tools: ## Build the control plane binaries only
	@hack/build-tools.sh

.PHONY: build
build: ## Build the launcher (release)
	cargo build --release --locked

.PHONY: lint
lint: ## cargo fmt --check, import circles and clippy
	cargo fmt --all -- --check
	python3 hack/import-cycles.py
	cargo clippy --all-targets --locked -- -D warnings

.PHONY: docs
docs: ## Regenerate docs/openapi.json and docs/configuration.md from the code
	cargo run --quiet --locked -- openapi > docs/openapi.json
	cargo run --quiet --locked -- config-reference > docs/configuration.md

.PHONY: fuzz
fuzz: dev-up ## Long hostile-input runs: the in-process fuzzer and schemathesis with large budgets
	FUZZ_ITERATIONS=$${FUZZ_ITERATIONS:-200000} cargo test --release --locked --test fuzz -- --nocapture
	cargo build --locked
	ST_EXAMPLES=$${ST_EXAMPLES:-300} hack/schemathesis.sh

.PHONY: chart-test
chart-test: dev-up ## Helm chart checks: lint, render, server dry run, install, the Role proven with the launcher
	cargo build --locked
	@hack/chart-test.sh

.PHONY: screenshots
screenshots: dev-up ## Run the dashboard's browser test and refresh docs/dashboard.png from its screenshot
	@hack/browser.sh
	source .local/dev.env && cargo test --locked --test ui the_dashboard_launches_follows_reads_logs_and_cancels
	cp "$${CARGO_TARGET_DIR:-target}/ui-screenshots/jobs.png" docs/dashboard.png

.PHONY: test-faults
test-faults: dev-up ## Only the fault tests (they stop parts of the local control plane)
	source .local/dev.env && cargo test --locked --test faults -- --test-threads=1
