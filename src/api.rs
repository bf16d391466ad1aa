//! The wire types: what travels between the launcher's HTTP API and its clients (the CLI, the
//! dashboard, scripts): requests, views, problems, header names and the API's limits. The server
//! and the CLI both use this module; it depends on nothing else of the crate, so neither side
//! pulls the other in.

use std::{collections::BTreeMap, fmt};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The header the CLI sets, so its Jobs say they came from the CLI.
pub const SOURCE_HEADER: &str = "x-job-launcher-source";
/// The header that makes a launch idempotent (the same as `idempotencyKey`).
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The request id a caller may send and every answer carries.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The content type of every error answer (RFC 9457).
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Request bodies above this get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest idempotency key accepted; it is kept in an annotation.
pub const MAX_KEY_LEN: usize = 256;
/// Page size of a list without `limit`.
pub const DEFAULT_LIST_LIMIT: usize = 100;
/// Largest `limit` of a list.
pub const MAX_LIST_LIMIT: usize = 1000;

/// What a caller asks for. JSON, camelCase; unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LaunchRequest {
    /// The template to launch; the launcher's default template when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Environment variables for the template's first container (or those it names).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Values for the template's declared parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ParamValue>,
    /// Labels for the Job and its pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Higher is admitted first when Jobs queue under a cap.
    #[serde(default)]
    pub priority: i32,
    /// Makes the launch idempotent: the same key and request always name the same Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Where to send the Job's final view when it ends (allowed by the launcher's
    /// `--notify-url-allow` and `--notify-sqs-allow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifyTargets>,
}

/// Where a Job's completion notice goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifyTargets {
    /// A webhook: the final JobView is POSTed, signed (`X-Job-Launcher-Signature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// An SQS queue: the final JobView is sent as a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqs_queue_url: Option<String>,
}

/// The header that carries a webhook notice's signature: `t=<unix seconds>,v1=<hex HMAC-SHA256 of
/// "<t>.<body>">`, keyed by the launcher's `--notify-secret-file`.
pub const SIGNATURE_HEADER: &str = "x-job-launcher-signature";
/// The header that names a notice's delivery: the Job's UID, the same on every retry.
pub const DELIVERY_HEADER: &str = "x-job-launcher-delivery";

/// A parameter's value as a request gives it: a string, a number or a boolean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ParamValue {
    String(String),
    #[schema(value_type = f64)]
    Number(serde_json::Number),
    Bool(bool),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(s) => f.write_str(s),
            Self::Number(n) => write!(f, "{n}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// The lifecycle of a launched Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Suspended by the launcher, waiting for admission.
    Queued,
    /// Admitted; no pod has started yet.
    Pending,
    /// A pod has started, and the Job has not finished (a pod that ended keeps it here until
    /// the Job controller says how the Job ended).
    Running,
    Succeeded,
    Failed,
    /// Deleted before it finished (cancelled through the API, or deleted by anyone).
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] =
        [Self::Queued, Self::Pending, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// A terminal state: nothing changes after it.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| {
            format!("unknown state {s:?} (states: queued, pending, running, succeeded, failed, cancelled)")
        })
    }
}

/// What the API answers about a Job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub name: String,
    pub namespace: String,
    pub template: String,
    /// `http`, `sqs` or `cli`.
    pub source: String,
    pub state: JobState,
    pub priority: i32,
    pub idempotency_key: Option<String>,
    /// Who asked for it: the token's user, the Kubernetes username, `anonymous`, or
    /// `sqs:<queue URL>`.
    #[serde(default)]
    pub requested_by: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
    pub pods: Vec<PodView>,
    pub message: Option<String>,
    /// The termination message of the pod that completed the Job (else of the last one that
    /// failed): Kubernetes' own way for a container to return a small result (at most 4 KiB).
    #[serde(default)]
    pub result: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// For a queued Job, how many queued Jobs are admitted before it (0: next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    pub name: String,
    pub phase: String,
    pub node: Option<String>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    /// The container's termination message (`terminationMessagePath`).
    #[serde(default)]
    pub termination_message: Option<String>,
}

/// A page of Jobs, newest first.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobList {
    pub items: Vec<JobView>,
    /// Pass as `continue` to get the next page; absent on the last page.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// A Kubernetes Event about a Job or one of its pods, as the API server has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeEventView {
    /// The kind of the object it is about: `Job` or `Pod`.
    pub kind: String,
    /// The object's name.
    pub object: String,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
    /// How often it happened (Kubernetes folds repeats into one Event).
    pub count: i32,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub first_seen: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen: Option<Timestamp>,
    /// The component that reported it (e.g. `job-controller`, `default-scheduler`).
    pub source: Option<String>,
}

/// What the API server knows of a Job beyond its view: its annotations and the Kubernetes Events
/// of it and its pods, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobKubeEvents {
    pub name: String,
    pub annotations: BTreeMap<String, String>,
    pub events: Vec<KubeEventView>,
}

/// Where a template came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateSource {
    pub config_map: String,
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParameterView {
    pub name: String,
    pub required: bool,
    pub default: Option<String>,
    pub pattern: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    Valid,
    Invalid,
}

/// What the API shows of a template.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateView {
    pub name: String,
    /// Whether the latest version is valid.
    pub status: Validity,
    /// Why the latest version is invalid.
    pub error: Option<String>,
    /// Whether launches are served (by the latest valid version).
    pub serving: bool,
    /// The declared parameters of the version being served.
    pub parameters: Vec<ParameterView>,
    /// Containers that receive a request's env.
    pub env_containers: Vec<String>,
    /// The template's `job-launcher.dev/allowed-env`: the names a request's env may set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_env: Option<String>,
    /// Without `allowedEnv`: the variables a request may set (those the containers declare with a
    /// literal value).
    #[serde(default)]
    pub settable_env: Vec<String>,
    pub max_active: Option<u32>,
    pub source: TemplateSource,
    /// Risks in the served version, e.g. a parameter without a pattern inside a shell script.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Queue and cap figures, for `GET /v1/queue`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    pub queued: usize,
    pub active: usize,
    pub max_active: Option<u32>,
    pub max_queued: Option<u32>,
    /// Whether this replica holds the admission lease.
    pub leader: bool,
    /// This replica's name in the Lease (and in `job-launcher.dev/admitted-by` on what it admits).
    #[serde(default)]
    pub replica: String,
    pub templates: Vec<TemplateQueue>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateQueue {
    pub template: String,
    pub queued: usize,
    pub active: usize,
    pub max_active: Option<u32>,
}

/// The body of every error answer (RFC 9457 problem details).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URN naming the kind of problem, e.g. `urn:problem:kube-job-launcher:invalid-request`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    /// What went wrong with this request, specifically.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_from_their_names_only() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>(), Ok(s));
        }
        assert!("Running".parse::<JobState>().is_err());
    }

    #[test]
    fn a_launch_request_refuses_unknown_fields() {
        let error = serde_json::from_str::<LaunchRequest>(r#"{"tempalte": "x"}"#).expect_err("unknown field");
        assert!(error.to_string().contains("unknown field `tempalte`"), "{error}");
    }
}
