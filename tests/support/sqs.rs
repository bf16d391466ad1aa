//! The local SQS server: a client, flags that point a launcher at it, and queues of a test's own.

use std::path::PathBuf;

use super::cluster::random_suffix;

/// A value from `.local/dev.env` (`export NAME="value"`), which `make dev-up` writes.
pub fn dev_env(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/dev.env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("no local SQS settings: cannot read {} ({e}). Start it with `make dev-up`.", path.display())
    });
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("export {name}=")))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("{name} is not in {}", path.display()))
}

/// Flags that point a launcher at the local SQS server with its static test credentials.
pub fn sqs_flags(queue_url: &str) -> Vec<String> {
    vec![
        "--sqs-queue-url".into(),
        queue_url.into(),
        "--sqs-endpoint".into(),
        dev_env("AWS_ENDPOINT_URL"),
        "--sqs-region".into(),
        dev_env("AWS_REGION"),
        "--sqs-access-key-id".into(),
        "test".into(),
        "--sqs-secret-access-key".into(),
        "test".into(),
    ]
}

/// A queue of the test's own on the local SQS server, redriving to its own dead-letter queue
/// (after 3 receives, unless said otherwise); both deleted when dropped.
pub struct TestQueue {
    pub sqs: aws_sdk_sqs::Client,
    pub url: String,
    pub dlq_url: String,
}

impl TestQueue {
    pub async fn create(prefix: &str) -> Self {
        Self::with_max_receives(prefix, 3).await
    }

    /// A queue whose redrive policy moves a message received more than `max_receives` times.
    pub async fn with_max_receives(prefix: &str, max_receives: u32) -> Self {
        let sqs = sqs_client().await;
        let name = format!("t-{prefix}-{}", random_suffix());
        let dlq =
            sqs.create_queue().queue_name(format!("{name}-dlq")).send().await.unwrap_or_else(|e| {
                panic!("the local SQS server does not answer ({e:?}). Start it with `make dev-up`.")
            });
        let dlq_url = dlq.queue_url().expect("dlq url").to_string();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("dlq attributes")
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
            .expect("dlq arn");
        let policy =
            serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max_receives.to_string() }).to_string();
        let url = sqs
            .create_queue()
            .queue_name(&name)
            .attributes(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy, policy)
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .expect("queue url")
            .to_string();
        Self { sqs, url, dlq_url }
    }

    /// Sends every body, ten per batch; returns the message ids in order.
    pub async fn send_all(&self, bodies: &[String]) -> Vec<String> {
        let mut ids = Vec::new();
        for (c, chunk) in bodies.chunks(10).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(format!("m{c}-{i}"))
                        .message_body(b)
                        .build()
                        .expect("entry")
                })
                .collect();
            let sent = self
                .sqs
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("send");
            assert!(sent.failed().is_empty(), "{:?}", sent.failed());
            let mut ok: Vec<_> = sent.successful().to_vec();
            ok.sort_by_key(|e| e.id().split('-').nth(1).and_then(|n| n.parse::<usize>().ok()));
            ids.extend(ok.iter().map(|e| e.message_id().to_string()));
        }
        ids
    }

    /// Visible plus in-flight messages of `url`.
    pub async fn depth_of(&self, url: &str) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .expect("queue attributes");
        let attrs = out.attributes().cloned().unwrap_or_default();
        [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
            A::ApproximateNumberOfMessagesDelayed,
        ]
        .iter()
        .map(|k| attrs.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
        .sum()
    }

    /// Every message now in the dead-letter queue (received, then made visible again).
    pub async fn dead_letters(&self) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .message_attribute_names("All")
                .send()
                .await
                .expect("receive dlq");
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            all.extend(batch);
        }
        all
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let (sqs, urls) = (self.sqs.clone(), [self.url.clone(), self.dlq_url.clone()]);
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(async {
                    for url in urls {
                        let _ = sqs.delete_queue().queue_url(url).send().await;
                    }
                });
            }
        })
        .join();
    }
}

/// A client for the local SQS server.
pub async fn sqs_client() -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new(dev_env("AWS_REGION")))
        .endpoint_url(dev_env("AWS_ENDPOINT_URL"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests"))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}
