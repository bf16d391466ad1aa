#!/usr/bin/env bash
# Writes .local/dev.env, a file to `source` that points kubectl, the aws CLI, the launcher and the
# tests at the local control plane and SQS server.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=$AWS_REGION_DEV
endpoint=http://127.0.0.1:$SQS_PORT
aws() { "$LOCAL_DIR/bin/aws" --endpoint-url "$endpoint" "$@"; }
queue_url=$(aws sqs get-queue-url --queue-name inputqueue --query QueueUrl --output text)
dlq_url=$(aws sqs get-queue-url --queue-name inputqueue-dlq --query QueueUrl --output text)
cat > "$LOCAL_DIR/dev.env" <<ENV
# Written by hack/write-dev-env.sh: the local control plane and SQS server. Source it.
export KUBECONFIG="$KUBECONFIG_FILE"
export AWS_ENDPOINT_URL="$endpoint"
export AWS_REGION="$AWS_REGION_DEV"
export AWS_DEFAULT_REGION="$AWS_REGION_DEV"
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export SQS_QUEUE_URL="$queue_url"
export SQS_DLQ_URL="$dlq_url"
case ":\$PATH:" in *":$LOCAL_DIR/bin:"*) ;; *) export PATH="$LOCAL_DIR/bin:\$PATH" ;; esac
ENV
