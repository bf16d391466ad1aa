//! Dispatch mode: each message becomes exactly one Job. A message is deleted only after its Job
//! exists; the message id is the idempotency key, so a message delivered twice finds the Job its
//! first delivery created. Split into [`Dispatcher::poll_once`] (one receive and its messages,
//! tested directly) and [`Dispatcher::run`] (the loops).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use tokio::{sync::watch, time::Instant};

use super::{
    dead_letter::DeadLetter,
    describe,
    message::{self, Body},
};
use crate::{
    api::LaunchRequest,
    error::Error,
    launch::{Launched, Launcher, Origin, Source, sqs_caller},
    telemetry::{Metrics, OutcomeLabels},
};

#[derive(Debug, Clone)]
pub struct DispatchSettings {
    pub queue_url: String,
    /// Template for raw bodies; the launcher's default when None.
    pub template: Option<String>,
    pub visibility: Duration,
    pub wait: Duration,
    /// How long a message is held while its launch keeps failing transiently, before it is
    /// released to come back later.
    pub max_hold: Duration,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its Job exists; `duplicate` when an earlier delivery had created it.
    Launched { job: String, duplicate: bool },
    /// It can never launch: sent to the dead-letter queue.
    DeadLettered { reason: String },
    /// Not now: left to come back after `after`.
    Released { reason: String, after: Duration },
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Self::Launched { duplicate: false, .. } => "launched",
            Self::Launched { duplicate: true, .. } => "duplicate",
            Self::DeadLettered { .. } => "dead_lettered",
            Self::Released { .. } => "failed",
        }
    }
}

pub struct Dispatcher {
    sqs: aws_sdk_sqs::Client,
    launcher: Launcher,
    settings: DispatchSettings,
    dead_letter: DeadLetter,
    metrics: Metrics,
}

#[derive(Debug, thiserror::Error)]
#[error("receiving from {queue} failed: {reason}")]
pub struct ReceiveError {
    queue: String,
    reason: String,
}

impl Dispatcher {
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        launcher: Launcher,
        settings: DispatchSettings,
        dead_letter: DeadLetter,
        metrics: Metrics,
    ) -> Self {
        Self { sqs, launcher, settings, dead_letter, metrics }
    }

    fn count(&self, outcome: &str) {
        self.metrics.sqs_messages.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
    }

    /// Receives one batch (up to 10) and settles every message in it: launched and deleted,
    /// dead-lettered, or released. Returns the outcomes, in the batch's order. Once `stop` is set,
    /// received messages are released at once instead.
    pub async fn poll_once(&self, stop: &watch::Receiver<bool>) -> Result<Vec<Outcome>, ReceiveError> {
        let receive = self
            .sqs
            .receive_message()
            .queue_url(&self.settings.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(self.settings.wait.as_secs().min(20) as i32)
            .visibility_timeout(self.settings.visibility.as_secs().max(1) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send();
        let mut stop_signal = stop.clone();
        // A long poll that is still waiting when the launcher stops is abandoned: it has most
        // likely found nothing, and anything it did find comes back after the visibility timeout.
        let received = tokio::select! {
            r = receive => r.map_err(|e| ReceiveError { queue: self.settings.queue_url.clone(), reason: describe(&e) })?,
            _ = stop_signal.wait_for(|s| *s) => return Ok(Vec::new()),
        };
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.metrics
            .sqs_messages
            .get_or_create(&OutcomeLabels { outcome: "received".into() })
            .inc_by(messages.len() as u64);
        self.record_age(&messages);

        if *stop.borrow() {
            for m in &messages {
                self.release(m, Duration::ZERO).await;
            }
            return Ok(messages
                .iter()
                .map(|_| Outcome::Released { reason: "shutting down".into(), after: Duration::ZERO })
                .collect());
        }

        let outcomes = futures::future::join_all(messages.iter().map(|m| self.settle(m, stop))).await;
        let done: Vec<&Message> = messages
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| matches!(o, Outcome::Launched { .. } | Outcome::DeadLettered { .. }))
            .map(|(m, _)| m)
            .collect();
        self.delete(&done).await;
        for (m, o) in messages.iter().zip(&outcomes) {
            self.count(o.label());
            if let Outcome::Released { after, .. } = o {
                self.release(m, *after).await;
            }
        }
        Ok(outcomes)
    }

    fn record_age(&self, messages: &[Message]) {
        let now = jiff::Timestamp::now().as_millisecond();
        let oldest = messages
            .iter()
            .filter_map(|m| m.attributes()?.get(&MessageSystemAttributeName::SentTimestamp)?.parse::<i64>().ok())
            .min();
        if let Some(sent) = oldest {
            self.metrics.sqs_oldest_message_age.set((now - sent).max(0) as f64 / 1000.0);
        }
    }

    /// Launches one message's Job without deleting or releasing the message: what one delivery
    /// does before its delete. For tests and tools; the loops use [`poll_once`](Self::poll_once).
    pub async fn launch_message(&self, message: &Message) -> Outcome {
        let (_keep, never) = watch::channel(false);
        self.settle(message, &never).await
    }

    /// Launches one message's Job, holding the message (its visibility extended) while the
    /// launch keeps failing transiently, up to `max_hold`.
    async fn settle(&self, message: &Message, stop: &watch::Receiver<bool>) -> Outcome {
        let id = message.message_id().unwrap_or_default().to_string();
        let receives: u32 = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        if let DeadLetter::Explicit { max_receives, .. } = &self.dead_letter
            && receives > *max_receives
        {
            return self.dead_letter(message, &format!("received {receives} times without launching")).await;
        }
        let (request, launcher_env) = match self.request_for(message) {
            Ok(r) => r,
            Err(e) => return self.dead_letter(message, &e.to_string()).await,
        };
        let origin = Origin {
            sqs_message_id: Some(id.clone()),
            sqs_queue: Some(self.settings.queue_url.clone()),
            launcher_env,
            ..Origin::new(Source::Sqs, sqs_caller(&self.settings.queue_url))
        };
        let held_until = Instant::now() + self.settings.max_hold;
        let mut pause = Duration::from_millis(200);
        loop {
            match self.with_visibility_kept(message, self.launcher.launch(&request, &origin)).await {
                Ok(Launched::Created(v)) => return Outcome::Launched { job: v.name, duplicate: false },
                Ok(Launched::Existing(v)) => return Outcome::Launched { job: v.name, duplicate: true },
                Err(e) if e.is_transient() => {
                    if *stop.borrow() || Instant::now() + pause >= held_until {
                        let after = backoff_for(receives);
                        tracing::warn!(message_id = %id, error = %e, retry_in = ?after, "cannot launch now; the message will come back");
                        return Outcome::Released {
                            reason: e.to_string(),
                            after: if *stop.borrow() { Duration::ZERO } else { after },
                        };
                    }
                    tracing::debug!(message_id = %id, error = %e, "launch failed transiently; retrying");
                    let mut stop = stop.clone();
                    tokio::select! {
                        _ = self.with_visibility_kept(message, tokio::time::sleep(pause)) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => return self.dead_letter(message, &e.to_string()).await,
            }
        }
    }

    /// The message's LaunchRequest, and the variables the launcher sets for it; an error here
    /// means it can never launch.
    fn request_for(&self, message: &Message) -> Result<(LaunchRequest, BTreeMap<String, String>), Error> {
        let id = message.message_id().unwrap_or_default();
        let text = message.body().unwrap_or_default();
        match message::decode(text) {
            Body::Request(mut request) => {
                request.idempotency_key.get_or_insert_with(|| id.to_string());
                Ok((request, BTreeMap::new()))
            }
            Body::Raw { text, fields } => {
                let template =
                    self.settings.template.clone().unwrap_or_else(|| self.launcher.settings().default_template.clone());
                let probe = LaunchRequest { template: Some(template.clone()), ..LaunchRequest::default() };
                let declared: Vec<String> =
                    self.launcher.template_for(&probe)?.parameters.iter().map(|p| p.name.clone()).collect();
                Ok(message::raw_request(&template, id, &text, &fields, &declared))
            }
        }
    }

    /// Runs `work`, extending the message's visibility every half timeout while it runs, so a
    /// slow launch does not let the message reappear for another consumer.
    async fn with_visibility_kept<T>(&self, message: &Message, work: impl Future<Output = T>) -> T {
        let every = (self.settings.visibility / 2).max(Duration::from_millis(500));
        let mut work = std::pin::pin!(work);
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = ticker.tick() => {
                    let Some(handle) = message.receipt_handle() else { continue };
                    let extended = self
                        .sqs
                        .change_message_visibility()
                        .queue_url(&self.settings.queue_url)
                        .receipt_handle(handle)
                        .visibility_timeout(self.settings.visibility.as_secs().max(1) as i32)
                        .send()
                        .await;
                    if let Err(e) = extended {
                        tracing::warn!(message_id = message.message_id(), error = %describe(&e), "cannot extend the message's visibility");
                    }
                }
            }
        }
    }

    async fn dead_letter(&self, message: &Message, reason: &str) -> Outcome {
        let id = message.message_id().unwrap_or_default();
        match self.dead_letter.send(&self.sqs, &self.settings.queue_url, message, reason).await {
            Ok(()) => {
                tracing::warn!(message_id = %id, %reason, "message cannot launch; sent to the dead-letter queue");
                Outcome::DeadLettered { reason: reason.to_string() }
            }
            Err(e) => {
                // Without a dead-letter queue the message is kept, out of the way, so it is never
                // silently dropped; an operator sees it in the log and the metrics.
                let after = if self.dead_letter == DeadLetter::None {
                    Duration::from_secs(15 * 60)
                } else {
                    Duration::from_secs(30)
                };
                tracing::error!(message_id = %id, %reason, dead_letter_error = %e, retry_in = ?after, "message cannot launch and cannot be dead-lettered");
                Outcome::Released { reason: reason.to_string(), after }
            }
        }
    }

    async fn delete(&self, messages: &[&Message]) {
        for chunk in messages.chunks(10) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle()?)
                        .build()
                        .ok()
                })
                .collect();
            if entries.is_empty() {
                continue;
            }
            match self
                .sqs
                .delete_message_batch()
                .queue_url(&self.settings.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                // A message whose delete failed comes back; its Job exists, so it is only deleted then.
                Ok(out) => {
                    for failed in out.failed() {
                        tracing::warn!(
                            entry = failed.id(),
                            code = failed.code(),
                            "cannot delete a launched message; it will come back and be recognised"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %describe(&e), "cannot delete launched messages; they will come back and be recognised")
                }
            }
        }
    }

    /// Makes the message visible again after `after` (0: at once, for another consumer).
    async fn release(&self, message: &Message, after: Duration) {
        let Some(handle) = message.receipt_handle() else { return };
        let released = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.settings.queue_url)
            .receipt_handle(handle)
            .visibility_timeout(after.as_secs().min(43_200) as i32)
            .send()
            .await;
        if let Err(e) = released {
            tracing::warn!(message_id = message.message_id(), error = %describe(&e), "cannot release the message; it comes back after its visibility timeout");
        }
    }

    /// Runs `concurrency` receive loops until `stop` is set, then returns once each has settled
    /// its batch.
    pub async fn run(self: Arc<Self>, concurrency: usize, stop: watch::Receiver<bool>) {
        // A message received before the templates are loaded could only be held or guessed at.
        if !self.launcher.ready(&stop).await {
            return;
        }
        tracing::info!(queue = %self.settings.queue_url, concurrency, dead_letter = ?self.dead_letter, "SQS dispatch consumer started");
        let loops = (0..concurrency.max(1)).map(|_| {
            let this = self.clone();
            let stop = stop.clone();
            async move { this.receive_loop(stop).await }
        });
        futures::future::join_all(loops).await;
        tracing::info!(queue = %self.settings.queue_url, "SQS dispatch consumer stopped");
    }

    async fn receive_loop(&self, stop: watch::Receiver<bool>) {
        let mut failures = 0u32;
        while !*stop.borrow() {
            if let Some(pause) = self.launcher.backpressure() {
                // The queue of Jobs is full: leave messages in SQS, untouched, until there is room.
                self.pause(&stop, pause).await;
                continue;
            }
            match self.poll_once(&stop).await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    let pause = backoff_for(failures);
                    tracing::warn!(error = %e, retry_in = ?pause, "SQS receive failed");
                    self.pause(&stop, pause).await;
                }
            }
        }
    }

    async fn pause(&self, stop: &watch::Receiver<bool>, pause: Duration) {
        let mut stop = stop.clone();
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
}

/// Backoff after the n-th failure: 1, 2, 4, ... seconds, at most a minute.
fn backoff_for(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff_for(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff_for(0).as_secs(), 1);
    }
}
