//! Label and annotation keys: the template configuration this project reads, and what it writes
//! on every Job it creates.

pub const PREFIX: &str = "job-launcher.dev/";

// Template annotations (configuration; not copied onto Jobs).
pub const PARAMETERS: &str = "job-launcher.dev/parameters";
pub const ENV_CONTAINERS: &str = "job-launcher.dev/env-containers";
pub const ALLOWED_ENV: &str = "job-launcher.dev/allowed-env";
pub const MAX_ACTIVE: &str = "job-launcher.dev/max-active";

// Labels on Jobs and their pods.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "kube-job-launcher";
/// The launcher instance that made the Job: each instance sees only its own Jobs.
pub const INSTANCE: &str = "job-launcher.dev/instance";
pub const TEMPLATE: &str = "job-launcher.dev/template";
pub const SOURCE: &str = "job-launcher.dev/source";
/// Set while a Job waits, suspended, for admission.
pub const QUEUED: &str = "job-launcher.dev/queued";

// Annotations on Jobs.
pub const IDEMPOTENCY_KEY: &str = "job-launcher.dev/idempotency-key";
pub const REQUEST_HASH: &str = "job-launcher.dev/request-hash";
pub const REQUEST_ID: &str = "job-launcher.dev/request-id";
pub const SQS_MESSAGE_ID: &str = "job-launcher.dev/sqs-message-id";
pub const SQS_QUEUE: &str = "job-launcher.dev/sqs-queue";
pub const PRIORITY: &str = "job-launcher.dev/priority";
pub const QUEUED_AT: &str = "job-launcher.dev/queued-at";
pub const REQUESTED_BY: &str = "job-launcher.dev/requested-by";
/// A Job whose completion notice is pending carries this finalizer: TTL cleanup (or a cancel)
/// cannot remove it before the notice is delivered or given up.
pub const NOTIFY_FINALIZER: &str = "job-launcher.dev/notify";
/// Where the notice goes (annotations on the Job), and what became of it.
pub const NOTIFY_URL: &str = "job-launcher.dev/notify-url";
pub const NOTIFY_SQS: &str = "job-launcher.dev/notify-sqs";
pub const NOTIFIED: &str = "job-launcher.dev/notified";
/// The replica that admitted the Job, and when.
pub const ADMITTED_BY: &str = "job-launcher.dev/admitted-by";
pub const ADMITTED_AT: &str = "job-launcher.dev/admitted-at";
// The template's cap at launch is recorded on the Job under the template's own key, MAX_ACTIVE:
// admission applies it while the template is not loaded.

/// The label selector for everything one launcher instance manages.
pub fn managed_selector(instance: &str) -> String {
    format!("{MANAGED_BY}={MANAGED_BY_VALUE},{INSTANCE}={instance}")
}
