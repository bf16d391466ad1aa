//! Completion notices: when a Job that asked for one ends (succeeded, failed or cancelled), its
//! final view goes to a webhook (signed, [`webhook`]) and/or SQS queues.
//!
//! Once per Job across replicas and restarts: only the leader sends; a Job with a notice pending
//! carries the finalizer `job-launcher.dev/notify`, so neither TTL cleanup nor a cancel can remove
//! it first, and a crash between the end of a Job and its notice sends the notice after the
//! restart; delivery is recorded on the Job (`job-launcher.dev/notified`) as the finalizer goes.
//! A crash after sending and before recording sends again: receivers dedupe on the delivery id
//! (the Job's UID). Retries (connection errors, timeouts, 5xx, 408, 429) back off exponentially
//! for up to `--notify-retry-for`, counted from the Job's end; then the notice is given up, and
//! the finalizer goes all the same.

pub mod attempt;
pub mod webhook;

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use tokio::{sync::watch, time::Instant};

pub use attempt::Attempt;

use crate::{
    api::JobView,
    jobs::{JobIndex, JobRecord, job_view},
    keys,
    leader::Leadership,
    telemetry::{Metrics, NoticeLabels},
};

/// Sends notices to SQS queues.
pub trait QueueSender: Send + Sync {
    fn send(&self, queue_url: &str, body: &str) -> impl Future<Output = Attempt> + Send;
}

impl QueueSender for aws_sdk_sqs::Client {
    async fn send(&self, queue_url: &str, body: &str) -> Attempt {
        match self.send_message().queue_url(queue_url).message_body(body).send().await {
            Ok(_) => Attempt::Delivered,
            Err(e) => Attempt::Retry(crate::sqs::describe(&e)),
        }
    }
}

/// A Job's notice while this leader works on it: the targets done, the next try, the attempts.
#[derive(Debug)]
struct Progress {
    done: BTreeSet<String>,
    outcomes: Vec<String>,
    attempts: u32,
    pauses: backon::ExponentialBackoff,
    next_at: Option<Instant>,
    first_at: Option<Timestamp>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            done: BTreeSet::new(),
            outcomes: Vec::new(),
            attempts: 0,
            pauses: crate::retry::notices(),
            next_at: None,
            first_at: None,
        }
    }
}

pub struct Notifier<Q> {
    jobs: JobIndex,
    api: Api<Job>,
    leadership: Leadership,
    webhook: webhook::Webhook,
    queues: Option<Q>,
    retry_for: Duration,
    metrics: Metrics,
}

/// Notices delivered at once at most.
const IN_PARALLEL: usize = 16;

impl<Q: QueueSender> Notifier<Q> {
    pub fn new(
        client: Client,
        jobs: JobIndex,
        leadership: Leadership,
        webhook: webhook::Webhook,
        queues: Option<Q>,
        retry_for: Duration,
        metrics: Metrics,
    ) -> Self {
        let api = Api::namespaced(client, jobs.namespace());
        Self { jobs, api, leadership, webhook, queues, retry_for, metrics }
    }

    /// Sends the notices of ended Jobs while this replica leads, until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut changes = self.jobs.subscribe();
        let mut progress: HashMap<String, Progress> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = changes.changed() => {}
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if !self.leadership.is_leading() || !self.jobs.is_synced() {
                progress.clear();
                continue;
            }
            self.notify_once(&mut progress).await;
        }
    }

    /// One pass: every ended Job with a notice pending and due gets an attempt.
    async fn notify_once(&self, progress: &mut HashMap<String, Progress>) {
        let now = Instant::now();
        let pending: Vec<(JobRecord, JobView)> = self.jobs.read(|s| {
            s.with_notice()
                .filter_map(|j| {
                    let pods = s.pods_of(&j.name);
                    let view = job_view(self.jobs.namespace(), j, &pods);
                    view.state.is_finished().then(|| (JobRecord::clone(j), view))
                })
                .collect()
        });
        progress.retain(|name, _| pending.iter().any(|(j, _)| *j.name == **name));
        self.record_oldest(&pending);
        let due: Vec<(JobRecord, JobView)> = pending
            .into_iter()
            .filter(|(j, _)| progress.get(&*j.name).and_then(|p| p.next_at).is_none_or(|at| at <= now))
            .take(IN_PARALLEL)
            .collect();
        let attempts = due.iter().map(|(job, view)| {
            let mut mine = progress.remove(&*job.name).unwrap_or_default();
            async move {
                self.deliver(job, view, &mut mine).await;
                (job.name.to_string(), mine)
            }
        });
        for (name, mine) in futures::future::join_all(attempts).await {
            progress.insert(name, mine);
        }
    }

    fn record_oldest(&self, pending: &[(JobRecord, JobView)]) {
        let now = Timestamp::now();
        let oldest = pending
            .iter()
            .filter_map(|(j, v)| v.finished_at.or(j.created_at))
            .map(|t| now.duration_since(t).as_secs_f64().max(0.0))
            .fold(0.0, f64::max);
        self.metrics.notice_oldest_pending.set(oldest);
    }

    /// One attempt at every target not done yet; when all are done (or given up), the delivery
    /// is recorded and the finalizer removed.
    async fn deliver(&self, job: &JobRecord, view: &JobView, progress: &mut Progress) {
        let Some(notice) = job.notice.as_deref() else { return };
        let body = match serde_json::to_string(view) {
            Ok(body) => body,
            Err(error) => return tracing::error!(job = %job.name, %error, "cannot encode a notice"),
        };
        let first_at = *progress.first_at.get_or_insert_with(Timestamp::now);
        let since = view.finished_at.unwrap_or(first_at);
        let out_of_time = Timestamp::now().duration_since(since).as_secs_f64() > self.retry_for.as_secs_f64();
        let uid = job.uid.as_ref().map_or_else(|| job.name.to_string(), ToString::to_string);
        let mut waiting = false;
        let targets = notice.url.iter().map(|u| ("webhook", u)).chain(notice.sqs.iter().map(|q| ("sqs", q)));
        for (kind, target) in targets {
            if progress.done.contains(target) {
                continue;
            }
            let attempt = match kind {
                "webhook" => self.webhook.post(target, &body, &uid).await,
                _ => match &self.queues {
                    Some(queues) => queues.send(target, &body).await,
                    None => Attempt::Refused("no SQS client: the launcher has no SQS settings".into()),
                },
            };
            let outcome = match &attempt {
                Attempt::Delivered => "sent",
                Attempt::Refused(_) => "refused",
                Attempt::Retry(_) if out_of_time => "given_up",
                Attempt::Retry(_) => "retried",
            };
            self.metrics.notices.get_or_create(&NoticeLabels { target: kind.into(), outcome: outcome.into() }).inc();
            match attempt {
                Attempt::Retry(reason) if !out_of_time => {
                    tracing::info!(job = %job.name, %kind, %reason, attempt = progress.attempts + 1, "notice not delivered yet; retrying");
                    waiting = true;
                }
                other => {
                    let detail = match &other {
                        Attempt::Delivered => String::new(),
                        Attempt::Refused(reason) | Attempt::Retry(reason) => format!(" ({reason})"),
                    };
                    if outcome != "sent" {
                        tracing::warn!(job = %job.name, %kind, outcome, %detail, "notice not delivered");
                    }
                    progress.done.insert(target.clone());
                    progress.outcomes.push(format!("{kind} {outcome}{detail}"));
                }
            }
        }
        if waiting {
            progress.attempts += 1;
            let pause = progress.pauses.next().unwrap_or(Duration::from_secs(300));
            progress.next_at = Some(Instant::now() + pause);
            return;
        }
        self.finish(job, &progress.outcomes.join("; ")).await;
    }

    /// Records the delivery and removes the notice finalizer, in one strategic merge patch that
    /// takes out this finalizer alone (others', added meanwhile, stay).
    async fn finish(&self, job: &JobRecord, outcome: &str) {
        let patch = serde_json::json!({
            "metadata": {
                "$deleteFromPrimitiveList/finalizers": [keys::NOTIFY_FINALIZER],
                "annotations": { keys::NOTIFIED: outcome },
            }
        });
        match self.api.patch(&job.name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => tracing::info!(job = %job.name, outcome, "notice done"),
            Err(error) => tracing::warn!(job = %job.name, %error, "cannot record the notice; trying again"),
        }
    }
}
