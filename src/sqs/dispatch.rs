//! Dispatch mode: each message becomes exactly one Job. The message id is the idempotency key, so
//! a message delivered twice finds the Job its first delivery created.
//!
//! The rules that keep a redrive policy from dead-lettering good messages and keep each message
//! to one Job:
//! - Receive only as many messages as can be launched now: with `--max-queued`, the room left in
//!   the queue; nothing while a launch is failing transiently (the API server is down). Every
//!   receive counts towards the queue's `maxReceiveCount`, and SQS moves a message that exceeds it
//!   to the dead-letter queue inside ReceiveMessage, where the launcher never sees it: so the
//!   only remedy is not to receive what cannot be launched yet.
//! - A message in hand is held, its visibility extended every half timeout, until its Job exists
//!   or it is dead-lettered; it is never released to come back, but on shutdown.
//! - Each message is deleted as soon as its Job exists, on its own: a slow neighbour in the same
//!   receive batch cannot keep it in the queue past its visibility timeout (where it would come
//!   back after its Job was TTL-deleted, and launch again).
//! - With the launcher's own `--sqs-max-receives`, a message received too often is dead-lettered
//!   only if its Job does not exist; if it does, it is deleted.
//!
//! Split into [`Dispatcher::poll_once`] (one receive and its messages, tested directly) and
//! [`Dispatcher::run`] (the loops); the queue is a [`Queue`], SQS in production and in memory in
//! the decision tests.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
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

/// Linux's limit on one environment string (`NAME=value` and its terminating NUL): a raw body
/// longer than this in `MESSAGE_BODY` would make a Job whose container cannot start.
pub const MAX_ENV_STRING: usize = 128 * 1024;

/// The message attribute that names a reply queue for the Job's completion notice.
pub const REPLY_TO_ATTRIBUTE: &str = "job-launcher-reply-to";

/// Most messages one receive asks for (SQS's own limit).
const MAX_BATCH: u64 = 10;

#[derive(Debug, Clone)]
pub struct DispatchSettings {
    pub queue_url: String,
    /// Template for raw bodies; the launcher's default when None.
    pub template: Option<String>,
    pub visibility: Duration,
    pub wait: Duration,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its Job exists; `duplicate` when an earlier delivery had created it.
    Launched { job: String, duplicate: bool },
    /// It can never launch: sent to the dead-letter queue.
    DeadLettered { reason: String },
    /// Given back: on shutdown, at once; a message that can never launch and has no dead-letter
    /// queue, much later.
    Released { reason: String, after: Duration },
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Self::Launched { duplicate: false, .. } => "launched",
            Self::Launched { duplicate: true, .. } => "duplicate",
            Self::DeadLettered { .. } => "dead_lettered",
            Self::Released { .. } => "released",
        }
    }
}

/// The queue operations dispatch needs.
pub trait Queue: Send + Sync {
    /// Up to `max` messages, waiting as the settings say.
    fn receive(&self, max: u64) -> impl Future<Output = Result<Vec<Message>, String>> + Send;
    fn delete(&self, message: &Message) -> impl Future<Output = Result<(), String>> + Send;
    /// Makes the message invisible for `timeout` from now (0: visible at once).
    fn set_visibility(&self, message: &Message, timeout: Duration) -> impl Future<Output = Result<(), String>> + Send;
    fn dead_letter(&self, message: &Message, reason: &str) -> impl Future<Output = Result<(), String>> + Send;
    fn dead_letters(&self) -> &DeadLetter;
}

/// The SQS queue `url`.
pub struct SqsQueue {
    sqs: aws_sdk_sqs::Client,
    url: String,
    visibility: Duration,
    wait: Duration,
    dead_letter: DeadLetter,
}

impl SqsQueue {
    pub fn new(sqs: aws_sdk_sqs::Client, settings: &DispatchSettings, dead_letter: DeadLetter) -> Self {
        Self { sqs, url: settings.queue_url.clone(), visibility: settings.visibility, wait: settings.wait, dead_letter }
    }
}

impl Queue for SqsQueue {
    async fn receive(&self, max: u64) -> Result<Vec<Message>, String> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(self.wait.as_secs().min(20) as i32)
            .visibility_timeout(self.visibility.as_secs().max(1) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok(received.messages.unwrap_or_default())
    }

    async fn delete(&self, message: &Message) -> Result<(), String> {
        let handle = message.receipt_handle().ok_or("the message has no receipt handle")?;
        self.sqs
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(handle)
            .send()
            .await
            .map(drop)
            .map_err(|e| describe(&e))
    }

    async fn set_visibility(&self, message: &Message, timeout: Duration) -> Result<(), String> {
        let handle = message.receipt_handle().ok_or("the message has no receipt handle")?;
        self.sqs
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(handle)
            .visibility_timeout(timeout.as_secs().min(43_200) as i32)
            .send()
            .await
            .map(drop)
            .map_err(|e| describe(&e))
    }

    async fn dead_letter(&self, message: &Message, reason: &str) -> Result<(), String> {
        self.dead_letter.send(&self.sqs, &self.url, message, reason).await
    }

    fn dead_letters(&self) -> &DeadLetter {
        &self.dead_letter
    }
}

pub struct Dispatcher<Q = SqsQueue> {
    queue: Q,
    launcher: Launcher,
    settings: DispatchSettings,
    metrics: Metrics,
    /// Messages received and not yet deleted, dead-lettered or released.
    in_hand: AtomicUsize,
    /// Messages whose launch is failing transiently right now: while any is, nothing more is
    /// received.
    failing: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
#[error("receiving from {queue} failed: {reason}")]
pub struct ReceiveError {
    queue: String,
    reason: String,
}

/// Counts a message in a counter while it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<Q: Queue> Dispatcher<Q> {
    pub fn new(queue: Q, launcher: Launcher, settings: DispatchSettings, metrics: Metrics) -> Self {
        Self { queue, launcher, settings, metrics, in_hand: AtomicUsize::new(0), failing: AtomicUsize::new(0) }
    }

    fn count(&self, outcome: &str) {
        self.metrics.sqs_messages.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
    }

    /// How many messages to receive now: none while a launch fails transiently; with a queue
    /// limit, the room it leaves less the messages in hand; else a batch.
    pub fn room(&self) -> u64 {
        if self.failing.load(Ordering::SeqCst) > 0 {
            return 0;
        }
        match self.launcher.launch_room() {
            Some(room) => room.saturating_sub(self.in_hand.load(Ordering::SeqCst) as u64).min(MAX_BATCH),
            None => MAX_BATCH,
        }
    }

    /// Receives what there is room for and settles every message received: launched and deleted,
    /// or dead-lettered. Returns the outcomes, in the batch's order. Once `stop` is set, received
    /// messages are released at once instead.
    pub async fn poll_once(&self, stop: &watch::Receiver<bool>) -> Result<Vec<Outcome>, ReceiveError> {
        let room = self.room();
        if room == 0 {
            return Ok(Vec::new());
        }
        let mut stop_signal = stop.clone();
        // A long poll that is still waiting when the launcher stops is abandoned: it has most
        // likely found nothing, and anything it did find comes back after the visibility timeout.
        let messages = tokio::select! {
            r = self.queue.receive(room) => r.map_err(|reason| ReceiveError { queue: self.settings.queue_url.clone(), reason })?,
            _ = stop_signal.wait_for(|s| *s) => return Ok(Vec::new()),
        };
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.metrics
            .sqs_messages
            .get_or_create(&OutcomeLabels { outcome: "received".into() })
            .inc_by(messages.len() as u64);
        self.record_age(&messages);
        let outcomes = futures::future::join_all(messages.iter().map(|m| self.handle(m, stop))).await;
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

    /// One message from receipt to its end: settled, then deleted or given back, its visibility
    /// extended the whole time.
    async fn handle(&self, message: &Message, stop: &watch::Receiver<bool>) -> Outcome {
        let _in_hand = Counted::new(&self.in_hand);
        let outcome = self
            .with_visibility_kept(message, async {
                let outcome = if *stop.borrow() {
                    Outcome::Released { reason: "shutting down".into(), after: Duration::ZERO }
                } else {
                    self.settle(message, stop).await
                };
                self.finish(message, &outcome).await;
                outcome
            })
            .await;
        self.count(outcome.label());
        outcome
    }

    /// Deletes a message whose Job exists or that went to the dead-letter queue; gives one back.
    async fn finish(&self, message: &Message, outcome: &Outcome) {
        let id = message.message_id().unwrap_or_default();
        match outcome {
            Outcome::Launched { .. } | Outcome::DeadLettered { .. } => {
                if let Err(error) = self.queue.delete(message).await {
                    // It comes back; its Job exists (or its copy is in the dead-letter queue), so
                    // it is recognised and deleted then.
                    tracing::warn!(message_id = %id, %error, "cannot delete a settled message; it will come back and be recognised");
                }
            }
            Outcome::Released { after, .. } => {
                if let Err(error) = self.queue.set_visibility(message, *after).await {
                    tracing::warn!(message_id = %id, %error, "cannot release the message; it comes back after its visibility timeout");
                }
            }
        }
    }

    /// Launches one message's Job without deleting or releasing the message: what one delivery
    /// does before its delete. For tests and tools; the loops use [`poll_once`](Self::poll_once).
    pub async fn launch_message(&self, message: &Message) -> Outcome {
        let (_keep, never) = watch::channel(false);
        self.settle(message, &never).await
    }

    /// Launches one message's Job, holding the message while the launch keeps failing
    /// transiently, until it launches or `stop` is set.
    async fn settle(&self, message: &Message, stop: &watch::Receiver<bool>) -> Outcome {
        let id = message.message_id().unwrap_or_default().to_string();
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
        let receives: u32 = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let over_receives =
            matches!(self.queue.dead_letters(), DeadLetter::Explicit { max_receives, .. } if receives > *max_receives);
        let mut pauses = crate::retry::held_message();
        let mut failing: Option<Counted<'_>> = None;
        loop {
            let attempt = if over_receives {
                // Received too often: dead-letter it, unless its Job exists after all.
                match self.launcher.existing_job(&request, &origin).await {
                    Ok(Some(job)) => Ok(Launched::Existing(self.launcher.jobs().view(&job).unwrap_or_else(|| {
                        crate::jobs::job_view(self.launcher.namespace(), &crate::jobs::JobRecord::named(&job), &[])
                    }))),
                    Ok(None) => {
                        return self
                            .dead_letter(message, &format!("received {receives} times without launching"))
                            .await;
                    }
                    Err(e) => Err(e),
                }
            } else {
                self.launcher.launch(&request, &origin).await
            };
            match attempt {
                Ok(Launched::Created(v)) => return Outcome::Launched { job: v.name, duplicate: false },
                Ok(Launched::Existing(v)) => return Outcome::Launched { job: v.name, duplicate: true },
                Err(e) if e.is_transient() => {
                    if *stop.borrow() {
                        return Outcome::Released { reason: e.to_string(), after: Duration::ZERO };
                    }
                    if failing.is_none() {
                        tracing::warn!(message_id = %id, error = %e, "cannot launch now; holding the message until it can");
                        failing = Some(Counted::new(&self.failing));
                    }
                    let pause = pauses.next().unwrap_or(Duration::from_secs(5));
                    let wait = match &e {
                        Error::QueueFull { retry_after, .. } => *retry_after,
                        _ => pause,
                    };
                    let mut stop = stop.clone();
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                }
                Err(e) => return self.dead_letter(message, &e.to_string()).await,
            }
        }
    }

    /// The message's LaunchRequest, and the variables the launcher sets for it; an error here
    /// means it can never launch. A `job-launcher-reply-to` attribute names the queue the Job's
    /// completion notice goes to (unless the request names one).
    fn request_for(&self, message: &Message) -> Result<(LaunchRequest, BTreeMap<String, String>), Error> {
        let (mut request, env) = self.request_of_body(message)?;
        let reply_to =
            message.message_attributes().and_then(|a| a.get(REPLY_TO_ATTRIBUTE)).and_then(|v| v.string_value());
        if let Some(queue) = reply_to {
            let notify = request.notify.get_or_insert_with(Default::default);
            notify.sqs_queue_url.get_or_insert_with(|| queue.to_string());
        }
        Ok((request, env))
    }

    fn request_of_body(&self, message: &Message) -> Result<(LaunchRequest, BTreeMap<String, String>), Error> {
        let id = message.message_id().unwrap_or_default();
        let text = message.body().unwrap_or_default();
        match message::decode(text) {
            Body::Request(mut request) => {
                request.idempotency_key.get_or_insert_with(|| id.to_string());
                Ok((request, BTreeMap::new()))
            }
            Body::Raw { text, fields } => {
                let env_string = message::MESSAGE_BODY_ENV.len() + 1 + text.len() + 1;
                if env_string > MAX_ENV_STRING {
                    return Err(Error::InvalidRequest(format!(
                        "the body is {} bytes: as {} it would exceed the {} KiB Linux allows one environment variable, and the Job's container could not start; send a LaunchRequest whose parameters carry the data, or a reference to it",
                        text.len(),
                        message::MESSAGE_BODY_ENV,
                        MAX_ENV_STRING / 1024
                    )));
                }
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
    /// held or slow message does not reappear for another consumer.
    async fn with_visibility_kept<T>(&self, message: &Message, work: impl Future<Output = T>) -> T {
        let every = (self.settings.visibility / 2).max(Duration::from_millis(500));
        let mut work = std::pin::pin!(work);
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = ticker.tick() => {
                    if let Err(error) = self.queue.set_visibility(message, self.settings.visibility).await {
                        tracing::warn!(message_id = message.message_id(), %error, "cannot extend the message's visibility");
                    }
                }
            }
        }
    }

    async fn dead_letter(&self, message: &Message, reason: &str) -> Outcome {
        let id = message.message_id().unwrap_or_default();
        match self.queue.dead_letter(message, reason).await {
            Ok(()) => {
                tracing::warn!(message_id = %id, %reason, "message cannot launch; sent to the dead-letter queue");
                Outcome::DeadLettered { reason: reason.to_string() }
            }
            Err(e) => {
                // Without a dead-letter queue the message is kept, out of the way, so it is never
                // silently dropped; an operator sees it in the log and the metrics.
                let after = if *self.queue.dead_letters() == DeadLetter::None {
                    Duration::from_secs(15 * 60)
                } else {
                    Duration::from_secs(30)
                };
                tracing::error!(message_id = %id, %reason, dead_letter_error = %e, retry_in = ?after, "message cannot launch and cannot be dead-lettered");
                Outcome::Released { reason: reason.to_string(), after }
            }
        }
    }

    /// Runs `concurrency` receive loops until `stop` is set, then returns once each has settled
    /// what it holds.
    pub async fn run(self: Arc<Self>, concurrency: usize, stop: watch::Receiver<bool>) {
        // A message received before the templates are loaded could only be held or guessed at.
        if !self.launcher.ready(&stop).await {
            return;
        }
        tracing::info!(queue = %self.settings.queue_url, concurrency, dead_letter = ?self.queue.dead_letters(), "SQS dispatch consumer started");
        let loops = (0..concurrency.max(1)).map(|_| {
            let this = self.clone();
            let stop = stop.clone();
            async move { this.receive_loop(stop).await }
        });
        futures::future::join_all(loops).await;
        tracing::info!(queue = %self.settings.queue_url, "SQS dispatch consumer stopped");
    }

    async fn receive_loop(&self, stop: watch::Receiver<bool>) {
        let mut pauses = crate::retry::receive_failures();
        let mut changes = self.launcher.jobs().subscribe();
        while !*stop.borrow() {
            if self.room() == 0 {
                // No room: messages wait in SQS, untouched (not received, so not counted towards
                // the redrive policy), until a Job leaves the queue or a held launch gets through.
                let mut stop = stop.clone();
                tokio::select! {
                    _ = changes.changed() => {}
                    // Room can also come from elsewhere (a held launch's retry getting through,
                    // another process's Job ending before our watch tells): look again soon.
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
                continue;
            }
            match self.poll_once(&stop).await {
                Ok(_) => pauses = crate::retry::receive_failures(),
                Err(e) => {
                    let pause = pauses.next().unwrap_or(Duration::from_secs(60));
                    tracing::warn!(error = %e, retry_in = ?pause, "SQS receive failed");
                    let mut stop = stop.clone();
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64},
    };

    use super::*;
    use crate::{
        admission::Caps,
        fake_apiserver::{self, Received},
    };

    const SEED: &str = include_str!("../../deploy/helm/kube-job-launcher/files/job-template.yaml");

    /// A queue in memory: what a receive hands out, and every call made.
    #[derive(Default)]
    struct MemoryQueue {
        waiting: Mutex<Vec<Message>>,
        received_asks: Mutex<Vec<u64>>,
        deleted: Mutex<Vec<String>>,
        visibility: Mutex<Vec<(String, Duration)>>,
        dead: Mutex<Vec<(String, String)>>,
        policy: DeadLetter,
    }

    impl MemoryQueue {
        fn with(messages: Vec<Message>, policy: DeadLetter) -> Self {
            Self { waiting: Mutex::new(messages), policy, ..Self::default() }
        }

        fn deleted(&self) -> Vec<String> {
            self.deleted.lock().expect("lock").clone()
        }

        fn releases(&self) -> Vec<String> {
            let v = self.visibility.lock().expect("lock");
            v.iter().filter(|(_, t)| *t == Duration::ZERO).map(|(id, _)| id.clone()).collect()
        }
    }

    impl Default for DeadLetter {
        fn default() -> Self {
            DeadLetter::Redrive { url: "dlq".into() }
        }
    }

    impl Queue for MemoryQueue {
        async fn receive(&self, max: u64) -> Result<Vec<Message>, String> {
            self.received_asks.lock().expect("lock").push(max);
            let mut waiting = self.waiting.lock().expect("lock");
            let n = (max as usize).min(waiting.len());
            Ok(waiting.drain(..n).collect())
        }
        async fn delete(&self, m: &Message) -> Result<(), String> {
            self.deleted.lock().expect("lock").push(m.message_id().unwrap_or_default().to_string());
            Ok(())
        }
        async fn set_visibility(&self, m: &Message, timeout: Duration) -> Result<(), String> {
            self.visibility.lock().expect("lock").push((m.message_id().unwrap_or_default().to_string(), timeout));
            Ok(())
        }
        async fn dead_letter(&self, m: &Message, reason: &str) -> Result<(), String> {
            self.dead.lock().expect("lock").push((m.message_id().unwrap_or_default().to_string(), reason.to_string()));
            Ok(())
        }
        fn dead_letters(&self) -> &DeadLetter {
            &self.policy
        }
    }

    fn message(id: &str, body: &str, receives: u32) -> Message {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("rh-{id}"))
            .body(body)
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, receives.to_string())
            .build()
    }

    fn dispatcher(
        queue: MemoryQueue,
        answer: fake_apiserver::Answer,
        caps: Caps,
    ) -> (Dispatcher<MemoryQueue>, Arc<Mutex<Vec<Received>>>) {
        let (launcher, log) = fake_apiserver::launcher(answer, caps, &[("t.yaml", SEED)]);
        let settings = DispatchSettings {
            queue_url: "q".into(),
            template: None,
            visibility: Duration::from_secs(4),
            wait: Duration::ZERO,
        };
        (Dispatcher::new(queue, launcher, settings, Metrics::new()), log)
    }

    /// A stop signal that is never given (its sender lives as long as the test).
    fn running() -> watch::Receiver<bool> {
        let (sender, receiver) = watch::channel(false);
        Box::leak(Box::new(sender));
        receiver
    }

    /// Which message a create is for: its MESSAGE_ID variable.
    fn message_id_of(r: &Received) -> String {
        let env = r.body.pointer("/spec/template/spec/containers/0/env").and_then(|e| e.as_array()).cloned();
        env.into_iter()
            .flatten()
            .find(|e| e["name"] == "MESSAGE_ID")
            .and_then(|e| e["value"].as_str().map(String::from))
            .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn each_message_is_deleted_as_soon_as_its_job_exists_whatever_its_neighbours_do() {
        let slow_ok = Arc::new(AtomicBool::new(false));
        let flag = slow_ok.clone();
        let batch = vec![message("fast-1", "a", 1), message("slow", "b", 1), message("fast-2", "c", 1)];
        let (dispatcher, _) = dispatcher(
            MemoryQueue::with(batch, DeadLetter::default()),
            Box::new(move |r| {
                if message_id_of(r) == "slow" && !flag.load(Ordering::SeqCst) {
                    (503, fake_apiserver::status(503, "ServiceUnavailable", "etcd is slow"))
                } else {
                    fake_apiserver::created(r)
                }
            }),
            Caps::default(),
        );
        let stop = running();
        let polled = dispatcher.poll_once(&stop);
        let mut polled = std::pin::pin!(polled);
        // A minute of paused time: the slow message is held (its visibility extended), the fast
        // ones are long deleted.
        tokio::select! {
            _ = &mut polled => panic!("the slow message cannot be settled yet"),
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        assert_eq!(dispatcher.queue.deleted(), vec!["fast-1", "fast-2"], "deleted on their own, not with the batch");
        let extended = dispatcher.queue.visibility.lock().expect("lock").iter().filter(|(id, _)| id == "slow").count();
        assert!(extended >= 25, "held and kept invisible (every 2 s for a minute): {extended}");
        assert!(dispatcher.queue.releases().is_empty(), "never released while held");
        assert_eq!(dispatcher.room(), 0, "nothing more is received while a launch fails");
        slow_ok.store(true, Ordering::SeqCst);
        let outcomes = polled.await.expect("settled");
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Launched { duplicate: false, .. })), "{outcomes:?}");
        assert_eq!(dispatcher.queue.deleted().len(), 3);
    }

    #[tokio::test]
    async fn only_as_many_messages_are_received_as_the_queue_has_room_for() {
        let (dispatcher, _) = dispatcher(
            MemoryQueue::with(vec![message("m1", "a", 1)], DeadLetter::default()),
            Box::new(fake_apiserver::created),
            Caps { max_active: Some(1), max_queued: Some(1) },
        );
        assert_eq!(dispatcher.room(), 1);
        dispatcher.poll_once(&running()).await.expect("poll");
        assert_eq!(dispatcher.queue.received_asks.lock().expect("lock").clone(), vec![1], "asked for one, not ten");
        // Its Job waits in the queue (the index saw the create): no room, no receive at all.
        assert_eq!(dispatcher.room(), 0);
        assert!(dispatcher.poll_once(&running()).await.expect("poll").is_empty());
        assert_eq!(dispatcher.queue.received_asks.lock().expect("lock").len(), 1, "not received: not counted");
    }

    #[tokio::test]
    async fn a_message_that_can_never_launch_is_dead_lettered_with_its_reason_and_no_job() {
        let creates = Arc::new(AtomicU64::new(0));
        let counted = creates.clone();
        let huge = "x".repeat(MAX_ENV_STRING);
        let batch = vec![message("bad", r#"{"template": "nope"}"#, 1), message("huge", &huge, 1)];
        let (dispatcher, _) = dispatcher(
            MemoryQueue::with(batch, DeadLetter::default()),
            Box::new(move |r| {
                counted.fetch_add(1, Ordering::SeqCst);
                fake_apiserver::created(r)
            }),
            Caps::default(),
        );
        let outcomes = dispatcher.poll_once(&running()).await.expect("poll");
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::DeadLettered { .. })), "{outcomes:?}");
        let dead = dispatcher.queue.dead.lock().expect("lock").clone();
        assert!(dead[0].1.contains("no template named \"nope\""), "{dead:?}");
        assert!(dead[1].1.contains("128 KiB") && dead[1].1.contains("environment variable"), "{dead:?}");
        assert_eq!(creates.load(Ordering::SeqCst), 0, "no Job was made");
        assert_eq!(dispatcher.queue.deleted(), vec!["bad", "huge"], "and they leave the queue");
    }

    #[tokio::test]
    async fn a_message_received_too_often_is_deleted_if_its_job_exists_and_dead_lettered_if_not() {
        let policy = DeadLetter::Explicit { url: "dlq".into(), max_receives: 3 };
        let batch = vec![message("launched", "a", 4), message("never", "b", 4)];
        let (dispatcher, _) = dispatcher(
            MemoryQueue::with(batch, policy),
            Box::new(|r| {
                let launched =
                    r.path.ends_with(&crate::launch::naming::keyed_name("ns", "default", "sqs:q", "launched"));
                match (r.method.as_str(), launched) {
                    ("GET", true) => (
                        200,
                        serde_json::json!({
                            "metadata": {"name": "x", "labels": {
                                crate::keys::MANAGED_BY: crate::keys::MANAGED_BY_VALUE, crate::keys::INSTANCE: "default"}},
                            "spec": {"template": {}},
                        }),
                    ),
                    ("GET", false) => (404, fake_apiserver::status(404, "NotFound", "no such Job")),
                    _ => fake_apiserver::created(r),
                }
            }),
            Caps::default(),
        );
        let outcomes = dispatcher.poll_once(&running()).await.expect("poll");
        assert!(matches!(&outcomes[0], Outcome::Launched { duplicate: true, .. }), "{outcomes:?}");
        assert!(
            matches!(&outcomes[1], Outcome::DeadLettered { reason } if reason.contains("received 4 times")),
            "{outcomes:?}"
        );
        assert_eq!(dispatcher.queue.dead.lock().expect("lock").len(), 1, "only the one whose Job does not exist");
    }

    #[tokio::test]
    async fn on_shutdown_a_held_message_is_released_at_once() {
        let (dispatcher, _) = dispatcher(
            MemoryQueue::with(vec![message("held", "a", 1)], DeadLetter::default()),
            Box::new(|_| (503, fake_apiserver::status(503, "ServiceUnavailable", "down"))),
            Caps::default(),
        );
        let (stop_tx, stop) = watch::channel(false);
        let polled = dispatcher.poll_once(&stop);
        let mut polled = std::pin::pin!(polled);
        tokio::select! {
            _ = &mut polled => panic!("held while the API server is down"),
            () = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
        stop_tx.send_replace(true);
        let outcomes = polled.await.expect("settled");
        assert!(matches!(&outcomes[0], Outcome::Released { after, .. } if after.is_zero()), "{outcomes:?}");
        assert_eq!(dispatcher.queue.releases(), vec!["held"]);
        assert!(dispatcher.queue.deleted().is_empty());
    }
}
