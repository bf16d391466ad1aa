//! What the API shows of a Job, built from its record and its pods' records.

use super::state::{JobRecord, PodRecord};
use crate::api::{JobView, PodView};

/// The view of `job` with its `pods` (oldest first); the queue position is left for the caller,
/// who knows the queue.
pub fn job_view(namespace: &str, job: &JobRecord, pods: &[&PodRecord]) -> JobView {
    JobView {
        name: job.name.to_string(),
        namespace: namespace.to_string(),
        template: job.template.to_string(),
        source: job.source.to_string(),
        state: job.state(pods),
        priority: job.priority,
        idempotency_key: job.idempotency_key.as_deref().map(String::from),
        requested_by: job.requested_by.as_deref().map(String::from),
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
                termination_message: p.termination_message.clone(),
            })
            .collect(),
        message: job.message(pods),
        result: job.result(pods),
        labels: job.labels.to_map(),
        queue_position: None,
    }
}
