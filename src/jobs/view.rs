//! JobView: what the API answers about a Job.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::state::{JobRecord, JobState, PodRecord};

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
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
    pub pods: Vec<PodView>,
    pub message: Option<String>,
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
}

impl JobView {
    pub fn new(namespace: &str, job: &JobRecord, pods: &[&PodRecord]) -> Self {
        Self {
            name: job.name.clone(),
            namespace: namespace.to_string(),
            template: job.template.clone(),
            source: job.source.clone(),
            state: job.state(pods),
            priority: job.priority,
            idempotency_key: job.idempotency_key.clone(),
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at(),
            pods: pods
                .iter()
                .map(|p| PodView {
                    name: p.name.clone(),
                    phase: p.phase.clone(),
                    node: p.node.clone(),
                    exit_code: p.exit_code,
                    reason: p.reason.clone(),
                })
                .collect(),
            message: job.message(pods),
            labels: job.labels.to_map(),
            queue_position: None,
        }
    }
}
