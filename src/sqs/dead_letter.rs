//! Where messages that can never launch go: the queue's own dead-letter queue (from its redrive
//! policy), or the one given with `--sqs-dead-letter-queue-url`. The launcher moves such a
//! message itself, adding the reason as a message attribute, rather than letting it bounce until
//! SQS's redrive moves it without one.

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};

use super::describe;

pub const REASON_ATTRIBUTE: &str = "job-launcher-reason";
pub const SOURCE_QUEUE_ATTRIBUTE: &str = "job-launcher-source-queue";
pub const MESSAGE_ID_ATTRIBUTE: &str = "job-launcher-message-id";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetter {
    /// The queue's redrive policy names this queue.
    Redrive { url: String },
    /// Given on the command line; also takes messages received more than `max_receives` times.
    Explicit { url: String, max_receives: u32 },
    /// Nowhere: such messages are logged and released for much later.
    None,
}

impl DeadLetter {
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::Redrive { url } | Self::Explicit { url, .. } => Some(url),
            Self::None => None,
        }
    }

    /// Finds the dead-letter queue: the flag's, else the one in the queue's redrive policy.
    pub async fn resolve(
        sqs: &aws_sdk_sqs::Client,
        queue_url: &str,
        explicit: Option<&str>,
        max_receives: u32,
    ) -> Result<Self, String> {
        if let Some(url) = explicit {
            return Ok(Self::Explicit { url: url.to_string(), max_receives });
        }
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| format!("cannot read the queue's attributes: {}", describe(&e)))?;
        let Some(policy) = attributes.attributes().and_then(|a| a.get(&QueueAttributeName::RedrivePolicy)) else {
            return Ok(Self::None);
        };
        let arn = redrive_target(policy).ok_or_else(|| format!("cannot read the redrive policy {policy:?}"))?;
        let (account, name) = arn_account_and_name(&arn).ok_or_else(|| format!("not an SQS queue ARN: {arn}"))?;
        let url = sqs
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| format!("cannot find the dead-letter queue {arn}: {}", describe(&e)))?
            .queue_url()
            .map(String::from)
            .ok_or_else(|| format!("no URL for the dead-letter queue {arn}"))?;
        Ok(Self::Redrive { url })
    }

    /// Sends a copy of the message, with the reason, to the dead-letter queue.
    pub async fn send(
        &self,
        sqs: &aws_sdk_sqs::Client,
        source_queue: &str,
        message: &aws_sdk_sqs::types::Message,
        reason: &str,
    ) -> Result<(), String> {
        let Some(url) = self.url() else { return Err("no dead-letter queue is configured".into()) };
        let string = |v: &str| MessageAttributeValue::builder().data_type("String").string_value(v).build();
        let mut request = sqs.send_message().queue_url(url).message_body(message.body().unwrap_or_default());
        // SQS allows ten attributes: keep the message's own where there is room beside ours.
        if let Some(own) = message.message_attributes() {
            for (name, value) in own.iter().take(7) {
                request = request.message_attributes(name, value.clone());
            }
        }
        for (name, value) in [
            // Attribute values are limited in size with the message; a reason is short.
            (REASON_ATTRIBUTE, reason.chars().take(1024).collect::<String>()),
            (SOURCE_QUEUE_ATTRIBUTE, source_queue.to_string()),
            (MESSAGE_ID_ATTRIBUTE, message.message_id().unwrap_or_default().to_string()),
        ] {
            let value = string(&value).map_err(|e| e.to_string())?;
            request = request.message_attributes(name, value);
        }
        request.send().await.map(drop).map_err(|e| describe(&e))
    }
}

/// The deadLetterTargetArn of a redrive policy.
pub fn redrive_target(policy: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(policy).ok()?;
    value.get("deadLetterTargetArn")?.as_str().map(String::from)
}

/// `arn:aws:sqs:<region>:<account>:<name>` → (account, name).
pub fn arn_account_and_name(arn: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "sqs", _, account, name] if !name.is_empty() => Some((account, name)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policies_name_their_target() {
        let policy =
            r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-central-1:123456789012:inputqueue-dlq","maxReceiveCount":"3"}"#;
        let arn = redrive_target(policy).expect("arn");
        assert_eq!(arn_account_and_name(&arn), Some(("123456789012", "inputqueue-dlq")));
        assert_eq!(redrive_target("{}"), None);
        assert_eq!(redrive_target("not json"), None);
        assert_eq!(arn_account_and_name("arn:aws:sns:eu-central-1:1:topic"), None);
    }
}
