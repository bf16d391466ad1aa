#!/usr/bin/env bash
# Creates the development queues: inputqueue, redriving to inputqueue-dlq after 3 receives.
# create-queue with the same attributes is idempotent, so this is safe to run again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=$AWS_REGION_DEV
aws() { "$LOCAL_DIR/bin/aws" --endpoint-url "http://127.0.0.1:$SQS_PORT" "$@"; }
aws sqs create-queue --queue-name inputqueue-dlq >/dev/null
dlq_url=$(aws sqs get-queue-url --queue-name inputqueue-dlq --query QueueUrl --output text)
dlq_arn=$(aws sqs get-queue-attributes --queue-url "$dlq_url" --attribute-names QueueArn --query Attributes.QueueArn --output text)
aws sqs create-queue --queue-name inputqueue \
  --attributes "{\"RedrivePolicy\":\"{\\\"deadLetterTargetArn\\\":\\\"$dlq_arn\\\",\\\"maxReceiveCount\\\":\\\"3\\\"}\"}" >/dev/null
