//! What the launcher keeps of each Job and pod, and the Job's state derived from it.
//!
//! Pure: plain structs, filled from Kubernetes objects by the index.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::api::JobState;

/// A Job's terminal condition, as its controller reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub succeeded: bool,
    pub at: Option<Timestamp>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// What the launcher keeps of one Job: only what its views, lists, admission and metrics need.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub name: String,
    pub template: String,
    pub source: String,
    pub priority: i32,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub sqs_queue: Option<String>,
    /// Who asked for it (the `requested-by` annotation).
    pub requested_by: Option<String>,
    /// The Job's UID: a Job re-created under the same name is another Job.
    pub uid: Option<String>,
    /// Its template's cap at launch (the `max-active` annotation on the Job).
    pub recorded_cap: Option<u32>,
    /// The object's resourceVersion, as a number (etcd's revision); 0 when it is not one.
    pub resource_version: u64,
    /// A completion notice not yet delivered (the Job carries the notice finalizer).
    pub notice: Option<Box<PendingNotice>>,
    pub created_at: Option<Timestamp>,
    /// When the Job entered the queue (the annotation), else its creation.
    pub queued_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub suspended: bool,
    /// The launcher's queued label: suspended by the launcher, not by someone else.
    pub queued_label: bool,
    pub deleting: bool,
    /// Pods the Job controller counts as active (pending or running).
    pub active: i32,
    pub ready: i32,
    pub finished: Option<Finished>,
    pub labels: Labels,
}

/// A Job's labels, kept as one exact-size slice: a map would cost a tree node per Job, and the
/// index holds thousands of them. Sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.binary_search_by(|(k, _)| k.as_ref().cmp(key)).ok().map(|i| self.0[i].1.as_ref())
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.0.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        // A BTreeMap iterates in key order, so the slice comes out sorted.
        Self(map.into_iter().map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str())).collect())
    }
}

/// A Job's pending completion notice: where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNotice {
    pub url: Option<String>,
    pub sqs: Vec<String>,
}

/// What the launcher keeps of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    pub name: String,
    pub job: String,
    pub phase: String,
    pub node: Option<String>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub created_at: Option<Timestamp>,
    /// When its containers started running, if they have.
    pub running_since: Option<Timestamp>,
    /// The termination message of the container that explains the pod's end.
    pub termination_message: Option<String>,
    pub resource_version: u64,
}

impl PodRecord {
    pub fn is_running(&self) -> bool {
        self.phase == "Running"
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase.as_str(), "Succeeded" | "Failed")
    }
}

impl JobRecord {
    /// A record that knows only its name: what a Job looks like before anything else is known.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            template: String::new(),
            source: String::new(),
            priority: 0,
            idempotency_key: None,
            request_hash: None,
            sqs_queue: None,
            requested_by: None,
            uid: None,
            recorded_cap: None,
            resource_version: 0,
            notice: None,
            created_at: None,
            queued_at: None,
            started_at: None,
            suspended: false,
            queued_label: false,
            deleting: false,
            active: 0,
            ready: 0,
            finished: None,
            labels: Labels::default(),
        }
    }

    /// The Job's state, from its conditions, its deletion, its suspension and its pods.
    pub fn state(&self, pods: &[&PodRecord]) -> JobState {
        if let Some(finished) = &self.finished {
            return if finished.succeeded { JobState::Succeeded } else { JobState::Failed };
        }
        if self.deleting {
            return JobState::Cancelled;
        }
        if self.suspended {
            return JobState::Queued;
        }
        if self.ready > 0 || pods.iter().any(|p| p.is_running()) { JobState::Running } else { JobState::Pending }
    }

    /// Admitted and not finished: what counts against an admission cap.
    pub fn is_active(&self) -> bool {
        !self.suspended && self.finished.is_none() && !self.deleting
    }

    /// When it finished, if it has.
    pub fn finished_at(&self) -> Option<Timestamp> {
        self.finished.as_ref().and_then(|f| f.at)
    }

    /// The Job's result: the termination message of the pod that completed it, else of the
    /// last pod that failed.
    pub fn result(&self, pods: &[&PodRecord]) -> Option<String> {
        let completed = pods.iter().find(|p| p.phase == "Succeeded" && p.termination_message.is_some());
        let failed = pods.iter().rev().find(|p| p.phase == "Failed" && p.termination_message.is_some());
        completed.or(failed).and_then(|p| p.termination_message.clone())
    }

    /// The stream event id of the Job's current view: the highest resourceVersion among the Job
    /// and its pods, so a newer view always has a higher id.
    pub fn event_id(&self, pods: &[&PodRecord]) -> u64 {
        pods.iter().map(|p| p.resource_version).fold(self.resource_version, u64::max)
    }

    /// A line on why it is in its state: the controller's message, or the failing pod's reason.
    pub fn message(&self, pods: &[&PodRecord]) -> Option<String> {
        if let Some(f) = &self.finished {
            let failing = pods.iter().find(|p| p.exit_code.is_some_and(|c| c != 0));
            return match (f.succeeded, failing) {
                (false, Some(pod)) => Some(format!(
                    "{}; pod {} exited with code {}",
                    f.message.as_deref().or(f.reason.as_deref()).unwrap_or("failed"),
                    pod.name,
                    pod.exit_code.unwrap_or_default()
                )),
                _ => f.message.clone().or_else(|| f.reason.clone()),
            };
        }
        if self.deleting {
            return Some("cancelled: deleted before it finished".into());
        }
        if self.suspended {
            return Some("waiting for admission".into());
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(name: &str) -> JobRecord {
        JobRecord { template: "t".into(), source: "http".into(), ..JobRecord::named(name) }
    }

    pub(crate) fn pod(name: &str, phase: &str, exit_code: Option<i32>) -> PodRecord {
        PodRecord {
            name: name.into(),
            job: "j".into(),
            phase: phase.into(),
            node: Some("kwok-node-0".into()),
            exit_code,
            reason: None,
            created_at: None,
            running_since: None,
            termination_message: None,
            resource_version: 0,
        }
    }

    #[test]
    fn a_new_job_without_pods_is_pending() {
        assert_eq!(record("j").state(&[]), JobState::Pending);
        let p = pod("p", "Pending", None);
        assert_eq!(record("j").state(&[&p]), JobState::Pending);
    }

    #[test]
    fn a_suspended_job_is_queued_and_not_active() {
        let mut r = record("j");
        r.suspended = true;
        assert_eq!(r.state(&[]), JobState::Queued);
        assert!(!r.is_active());
        assert_eq!(r.message(&[]).as_deref(), Some("waiting for admission"));
    }

    #[test]
    fn a_running_pod_or_a_ready_count_makes_it_running() {
        let p = pod("p", "Running", None);
        assert_eq!(record("j").state(&[&p]), JobState::Running);
        let mut r = record("j");
        r.ready = 1;
        assert_eq!(r.state(&[]), JobState::Running, "the Job's status is enough when pods are not known yet");
    }

    #[test]
    fn conditions_decide_success_and_failure_over_everything_else() {
        let mut r = record("j");
        r.suspended = true;
        r.finished = Some(Finished { succeeded: true, at: None, reason: None, message: None });
        assert_eq!(r.state(&[]), JobState::Succeeded);
        assert!(!r.is_active());
        r.finished = Some(Finished {
            succeeded: false,
            at: None,
            reason: Some("BackoffLimitExceeded".into()),
            message: Some("Job has reached the specified backoff limit".into()),
        });
        let p = pod("p", "Failed", Some(3));
        assert_eq!(r.state(&[&p]), JobState::Failed);
        assert_eq!(
            r.message(&[&p]).as_deref(),
            Some("Job has reached the specified backoff limit; pod p exited with code 3")
        );
    }

    #[test]
    fn a_running_job_that_is_being_deleted_no_longer_counts_as_active() {
        let mut r = record("j");
        assert!(r.is_active());
        r.deleting = true;
        assert!(!r.is_active());
    }

    #[test]
    fn a_job_deleted_before_it_finished_is_cancelled_and_a_finished_one_keeps_its_outcome() {
        let mut r = record("j");
        r.deleting = true;
        assert_eq!(r.state(&[]), JobState::Cancelled);
        r.finished = Some(Finished { succeeded: true, at: None, reason: None, message: None });
        assert_eq!(r.state(&[]), JobState::Succeeded, "TTL cleanup of a finished Job is not a cancel");
    }

    #[test]
    fn the_result_is_the_completing_pods_message_else_the_last_failed_ones() {
        let with = |name: &str, phase: &str, message: &str| PodRecord {
            termination_message: Some(message.into()),
            ..pod(name, phase, None)
        };
        let (first, second, ok) =
            (with("a", "Failed", "first"), with("b", "Failed", "second"), with("c", "Succeeded", "42"));
        let r = record("j");
        assert_eq!(r.result(&[&first, &second]).as_deref(), Some("second"));
        assert_eq!(r.result(&[&first, &ok, &second]).as_deref(), Some("42"));
        assert_eq!(r.result(&[]), None);
    }

    #[test]
    fn the_event_id_is_the_highest_resource_version_of_the_job_and_its_pods() {
        let mut r = record("j");
        r.resource_version = 10;
        let p = PodRecord { resource_version: 15, ..pod("p", "Running", None) };
        assert_eq!(r.event_id(&[&p]), 15);
        assert_eq!(r.event_id(&[]), 10);
    }

    #[test]
    fn labels_find_every_key_and_give_back_the_same_map() {
        let map: BTreeMap<String, String> =
            [("zeta", "1"), ("alpha", "2"), ("job-launcher.dev/template", "t"), ("m", "")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let labels = Labels::from(map.clone());
        for (k, v) in &map {
            assert_eq!(labels.get(k), Some(v.as_str()), "{k}");
        }
        assert_eq!(labels.get("beta"), None);
        assert_eq!(labels.to_map(), map);
    }
}
