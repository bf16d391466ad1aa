//! The one error type of the launcher's core. Every variant has a metric label; the HTTP layer
//! maps variants to statuses, the SQS consumer to "retry later" or "dead-letter".

use std::time::Duration;

use crate::template::RenderError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidRequest(String),

    #[error(transparent)]
    Render(#[from] RenderError),

    #[error("no template named {name:?} (templates: {known})")]
    UnknownTemplate { name: String, known: String },

    #[error("the templates have not loaded yet; retry shortly")]
    TemplatesLoading,

    #[error("template {name:?} is not served: it has never had a valid version ({error})")]
    TemplateInvalid { name: String, error: String },

    #[error("idempotency key {key:?} was already used for a different request, which created Job {job}")]
    KeyReused { key: String, job: String },

    #[error("a Job named {0} exists that the launcher does not manage")]
    NameTaken(String),

    #[error("the queue holds {queued} Jobs, its limit; retry later")]
    QueueFull { queued: usize, retry_after: Duration },

    #[error("no Job named {0} is managed by the launcher")]
    JobNotFound(String),

    #[error("Job {0} was deleted and created again since it was looked at; nothing was cancelled")]
    Recreated(String),

    #[error("Job {0} has no pod yet")]
    NoPod(String),

    #[error("pod {0} is gone (deleted, with its log): the Job was cancelled or cleaned up")]
    PodGone(String),

    #[error("the Kubernetes API server refused the Job: {0}")]
    JobRejected(String),

    #[error("the Kubernetes API server is unavailable: {0}")]
    KubeUnavailable(#[source] kube::Error),

    #[error("the Kubernetes API server answered with an error: {0}")]
    Kube(#[source] kube::Error),
}

impl Error {
    /// The label this error carries in metrics (`outcome` of launches, `reason` of failures).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) | Self::Render(_) => "invalid",
            Self::UnknownTemplate { .. } => "unknown_template",
            Self::TemplatesLoading => "not_ready",
            Self::TemplateInvalid { .. } => "template_invalid",
            Self::KeyReused { .. } => "key_reused",
            Self::NameTaken(_) => "name_taken",
            Self::QueueFull { .. } => "queue_full",
            Self::JobNotFound(_) => "not_found",
            Self::Recreated(_) => "recreated",
            Self::NoPod(_) => "no_pod",
            Self::PodGone(_) => "pod_gone",
            Self::JobRejected(_) => "rejected",
            Self::KubeUnavailable(_) => "unavailable",
            Self::Kube(_) => "kube_error",
        }
    }

    /// Whether trying the same thing again later can succeed: an SQS message with such an error
    /// goes back to the queue; any other goes to the dead-letter queue.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::TemplatesLoading | Self::QueueFull { .. } | Self::KubeUnavailable(_) | Self::Kube(_))
    }

    /// Classifies a Kubernetes client error: transport failures, throttling and server errors are
    /// transient; anything else is final.
    pub fn from_kube(error: kube::Error) -> Self {
        if is_transient_kube_error(&error) { Self::KubeUnavailable(error) } else { Self::Kube(error) }
    }
}

/// Errors worth retrying: no answer at all, 429, 5xx, and the apiserver's own "try again" answers.
pub fn is_transient_kube_error(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            matches!(status.code, 429 | 500 | 502 | 503 | 504)
                || matches!(
                    status.reason.as_str(),
                    "ServerTimeout" | "Timeout" | "TooManyRequests" | "ServiceUnavailable"
                )
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
