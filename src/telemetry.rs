//! Logging set-up and the Prometheus metrics every part of the launcher reports to.

use std::io::Stdout;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::{
    config::{LogArgs, LogFormat},
    log_output::{BatchedLines, FLUSH_INTERVAL, FlushOnDrop},
};

/// Installs the global tracing subscriber, writing to stdout in batches ([`crate::log_output`]).
/// An invalid filter falls back to `info` with a warning rather than stopping the process. Keep
/// the returned guard until the process ends: dropping it writes out the lines still held.
pub fn init_logging(args: &LogArgs) -> FlushOnDrop<Stdout> {
    let (filter, filter_error) = match EnvFilter::try_new(&args.log_filter) {
        Ok(filter) => (filter, None),
        Err(error) => (EnvFilter::new("info"), Some(error)),
    };
    let (lines, guard) = BatchedLines::start(std::io::stdout(), FLUSH_INTERVAL);
    let registry = tracing_subscriber::registry().with(filter);
    // A second initialisation (tests start several applications in one process) is harmless.
    let _ = match args.log_format {
        LogFormat::Text => registry.with(fmt::layer().with_writer(lines)).try_init(),
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true).with_writer(lines)).try_init(),
    };
    if let Some(error) = filter_error {
        tracing::warn!(filter = %args.log_filter, %error, "invalid log filter; using `info`");
    }
    guard
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaunchLabels {
    pub source: String,
    pub template: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TemplateLabels {
    pub template: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NoticeLabels {
    /// `webhook` or `sqs`.
    pub target: String,
    /// `sent`, `retried`, `refused` or `given_up`.
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

/// Every metric the launcher exports, registered once. Cheap to clone: the metrics are shared.
#[derive(Clone)]
pub struct Metrics {
    registry: std::sync::Arc<Registry>,
    pub launches: Family<LaunchLabels, Counter>,
    pub launch_duration: Family<SourceLabels, Histogram>,
    pub jobs: Family<StateLabels, Gauge>,
    pub template_reloads: Family<OutcomeLabels, Counter>,
    pub template_valid: Family<TemplateLabels, Gauge>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_rejected: Family<OutcomeLabels, Counter>,
    pub sqs_messages: Family<OutcomeLabels, Counter>,
    pub sqs_oldest_message_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub sqs_scale_launches: Family<OutcomeLabels, Counter>,
    pub queue_depth: Gauge,
    /// Status streams open now (of `--max-streams`).
    pub streams_open: Gauge,
    /// A Job's change seen by the launcher → a stream handing its event to the connection.
    pub stream_delay: Histogram,
    pub admissions: Family<TemplateLabels, Counter>,
    pub admission_wait: Histogram,
    pub leader: Gauge,
    pub notices: Family<NoticeLabels, Counter>,
    pub notice_oldest_pending: Gauge<f64, std::sync::atomic::AtomicU64>,
}

fn latency_buckets() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("job_launcher");
        let launches = Family::<LaunchLabels, Counter>::default();
        registry.register("launches", "Launch attempts by source, template and outcome", launches.clone());
        let launch_duration =
            Family::<SourceLabels, Histogram>::new_with_constructor(latency_buckets as fn() -> Histogram);
        registry.register(
            "launch_duration_seconds",
            "Time from a launch request to its Job existing",
            launch_duration.clone(),
        );
        let jobs = Family::<StateLabels, Gauge>::default();
        registry.register("jobs", "Jobs managed by the launcher, by state", jobs.clone());
        let template_reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "template_reloads",
            "Template changes seen, by outcome (valid, invalid, removed)",
            template_reloads.clone(),
        );
        let template_valid = Family::<TemplateLabels, Gauge>::default();
        registry.register(
            "template_valid",
            "1 when a template's latest version is valid, 0 when it is not",
            template_valid.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by method, route and status", http_requests.clone());
        let sqs_messages = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "sqs_messages",
            "SQS messages by outcome: received, launched, duplicate (its Job existed), dead_lettered, failed (released to come back)",
            sqs_messages.clone(),
        );
        let sqs_oldest_message_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "sqs_oldest_message_age_seconds",
            "Age of the oldest message in the latest received batch",
            sqs_oldest_message_age.clone(),
        );
        let sqs_scale_launches = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "sqs_scale_launches",
            "Jobs launched by the scale poller, by outcome",
            sqs_scale_launches.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "Jobs queued for admission", queue_depth.clone());
        let streams_open = Gauge::default();
        registry.register("streams_open", "Status streams (Server-Sent Events) open now", streams_open.clone());
        // Fine around 50 ms, the figure the bench holds the streams to.
        let stream_delay =
            Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        registry.register(
            "stream_event_delay_seconds",
            "Time from the launcher seeing a Job's change (its watch, or its own write) to a stream passing the event to its connection, per stream",
            stream_delay.clone(),
        );
        let admissions = Family::<TemplateLabels, Counter>::default();
        registry.register("admissions", "Queued Jobs admitted (unsuspended), by template", admissions.clone());
        let admission_wait = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.01, 2.0, 16));
        registry.register(
            "admission_wait_seconds",
            "Time a Job waited in the queue before admission",
            admission_wait.clone(),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the admission lease", leader.clone());
        let notices = Family::<NoticeLabels, Counter>::default();
        registry.register("notices", "Completion notice attempts, by target and outcome", notices.clone());
        let notice_oldest_pending = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "notice_oldest_pending_seconds",
            "Age of the oldest ended Job whose notice is not delivered yet (0: none)",
            notice_oldest_pending.clone(),
        );
        let http_rejected = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "http_rejected",
            "API requests refused before routing: overloaded (503) or timeout (408)",
            http_rejected.clone(),
        );
        Self {
            registry: std::sync::Arc::new(registry),
            http_rejected,
            queue_depth,
            streams_open,
            stream_delay,
            admissions,
            admission_wait,
            leader,
            notices,
            notice_oldest_pending,
            sqs_messages,
            sqs_oldest_message_age,
            sqs_scale_launches,
            launches,
            launch_duration,
            jobs,
            template_reloads,
            template_valid,
            http_requests,
        }
    }

    /// The metrics in Prometheus's text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
