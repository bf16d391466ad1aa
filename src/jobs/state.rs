//! What the launcher keeps of each Job and pod, and the Job's state derived from it.
//!
//! Pure: plain structs, filled from Kubernetes objects by the index.

use std::{cmp::Reverse, collections::BTreeMap, sync::Arc};

use jiff::Timestamp;

use super::intern::{self, LabelSet};
use crate::api::JobState;

/// A Job's terminal condition, as its controller reports it. Boxed in the record: most Jobs in a
/// large index have finished, but each finished Job pays for it only once, and a running one not
/// at all. The reason and message are the controller's few fixed sentences: shared copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub succeeded: bool,
    pub at: Option<Timestamp>,
    pub reason: Option<Arc<str>>,
    pub message: Option<Arc<str>>,
}

/// A Job's UID or request hash: 16 bytes for the forms the API server and the launcher give out
/// (a UUID; 32 lowercase hex digits), the text for anything else. Each gives its text back
/// exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id16 {
    Uuid([u8; 16]),
    Hex([u8; 16]),
    Other(Box<str>),
}

/// The places of the dashes in a UUID's canonical form.
const UUID_DASHES: [usize; 4] = [8, 13, 18, 23];

impl Id16 {
    pub fn parse(text: &str) -> Self {
        let bytes = text.as_bytes();
        if bytes.len() == 36 && UUID_DASHES.iter().all(|&i| bytes[i] == b'-') {
            let digits = bytes.iter().enumerate().filter(|(i, _)| !UUID_DASHES.contains(i)).map(|(_, b)| *b);
            if let Some(id) = Self::hex(digits) {
                return Self::Uuid(id);
            }
        } else if bytes.len() == 32
            && let Some(id) = Self::hex(bytes.iter().copied())
        {
            return Self::Hex(id);
        }
        Self::Other(text.into())
    }

    /// 16 bytes from 32 lowercase hex digits (the only case that gives the same text back).
    fn hex(mut digits: impl Iterator<Item = u8>) -> Option<[u8; 16]> {
        let mut out = [0u8; 16];
        for byte in &mut out {
            let mut value = 0u8;
            for _ in 0..2 {
                let d = digits.next()?;
                value = value * 16
                    + match d {
                        b'0'..=b'9' => d - b'0',
                        b'a'..=b'f' => d - b'a' + 10,
                        _ => return None,
                    };
            }
            *byte = value;
        }
        digits.next().is_none().then_some(out)
    }

    /// Whether this is the id `text` spells.
    pub fn is(&self, text: &str) -> bool {
        *self == Self::parse(text)
    }
}

impl std::fmt::Display for Id16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (bytes, dashes) = match self {
            Self::Other(text) => return f.write_str(text),
            Self::Uuid(bytes) => (bytes, true),
            Self::Hex(bytes) => (bytes, false),
        };
        for (i, b) in bytes.iter().enumerate() {
            if dashes && matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What the launcher keeps of one Job: only what its views, lists, admission and metrics need.
///
/// Sized for an index of 100,000 Jobs: strings that repeat from Job to Job are shared copies
/// (`Arc<str>` from [`intern`]), the name is one `Arc<str>` shared with the index's maps, the
/// UID is 16 bytes, and rare parts (a finished Job's condition, a pending notice) are boxed.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub name: Arc<str>,
    pub template: Arc<str>,
    pub source: Arc<str>,
    pub priority: i32,
    pub idempotency_key: Option<Box<str>>,
    pub request_hash: Option<Id16>,
    pub sqs_queue: Option<Arc<str>>,
    /// Who asked for it (the `requested-by` annotation).
    pub requested_by: Option<Arc<str>>,
    /// The Job's UID: a Job re-created under the same name is another Job.
    pub uid: Option<Id16>,
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
    pub finished: Option<Box<Finished>>,
    pub labels: Labels,
}

/// A Job's labels, sorted by key, as one shared slice: the Jobs of a template mostly carry the
/// same label set (the launcher's own labels), and all of them share one copy of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels(LabelSet);

impl Default for Labels {
    fn default() -> Self {
        Self(intern::labels(std::iter::empty()))
    }
}

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
        Self::from(&map)
    }
}

impl From<&BTreeMap<String, String>> for Labels {
    fn from(map: &BTreeMap<String, String>) -> Self {
        // A BTreeMap iterates in key order, so the slice comes out sorted.
        Self(intern::labels(map.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
    }
}

/// Where a Job stands for admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Waiting for admission.
    Queued,
    /// Admitted and not finished: holds a slot.
    Active,
    /// Finished, being deleted, or suspended by someone else: neither.
    Neither,
}

/// Where a Job stands for admission. A running Job being deleted (cancelled) keeps its slot while
/// it has pods that have not ended (`live_pods`): the launcher deletes in the foreground, so the
/// pods go first; a Job kept only for its completion notice holds no slot.
pub fn slot_of(job: &JobRecord, live_pods: bool) -> Slot {
    if job.finished.is_some() {
        Slot::Neither
    } else if job.suspended {
        if job.queued_label && !job.deleting { Slot::Queued } else { Slot::Neither }
    } else if job.deleting && !live_pods {
        Slot::Neither
    } else {
        Slot::Active
    }
}

/// Admission order: priority high to low, then queue time, then name.
pub fn admission_key(
    priority: i32,
    queued_at: Option<Timestamp>,
    name: &str,
) -> (Reverse<i32>, Option<Timestamp>, &str) {
    (Reverse(priority), queued_at, name)
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

    /// Running or ended: the Job has run. A Job whose pod ended stays `running` until the Job
    /// controller marks it finished, rather than going back to `pending` for that moment.
    pub fn has_started(&self) -> bool {
        self.is_running() || self.is_finished()
    }
}

impl JobRecord {
    /// A record that knows only its name: what a Job looks like before anything else is known.
    pub fn named(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            template: intern::string(""),
            source: intern::string(""),
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
        self.state_given(pods.iter().any(|p| p.has_started()))
    }

    /// The Job's state, given whether any of its pods has started ([`PodRecord::has_started`]):
    /// what the index computes without collecting the pods.
    pub fn state_given(&self, pod_started: bool) -> JobState {
        if let Some(finished) = &self.finished {
            return if finished.succeeded { JobState::Succeeded } else { JobState::Failed };
        }
        if self.deleting {
            return JobState::Cancelled;
        }
        if self.suspended {
            return JobState::Queued;
        }
        if self.ready > 0 || pod_started { JobState::Running } else { JobState::Pending }
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
                _ => f.message.as_deref().or(f.reason.as_deref()).map(String::from),
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
    fn a_job_whose_pod_ended_stays_running_until_the_controller_finishes_it() {
        // Seen live: running -> pending -> succeeded, because the pod's end arrives before the
        // Job's Complete condition.
        for phase in ["Succeeded", "Failed"] {
            let p = pod("p", phase, None);
            assert_eq!(record("j").state(&[&p]), JobState::Running, "{phase}");
        }
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
        r.finished = Some(Box::new(Finished { succeeded: true, at: None, reason: None, message: None }));
        assert_eq!(r.state(&[]), JobState::Succeeded);
        assert!(!r.is_active());
        r.finished = Some(Box::new(Finished {
            succeeded: false,
            at: None,
            reason: Some("BackoffLimitExceeded".into()),
            message: Some("Job has reached the specified backoff limit".into()),
        }));
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
        r.finished = Some(Box::new(Finished { succeeded: true, at: None, reason: None, message: None }));
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
    fn uuids_and_hashes_are_kept_in_16_bytes_and_give_the_same_text_back_and_anything_else_stays_text() {
        let uuid = "0b7f7a2e-5c1d-4b8e-9f3a-1c2d3e4f5a6b";
        assert!(matches!(Id16::parse(uuid), Id16::Uuid(_)));
        let hash = "0b7f7a2e5c1d4b8e9f3a1c2d3e4f5a6b";
        assert!(matches!(Id16::parse(hash), Id16::Hex(_)));
        for text in [uuid, hash] {
            assert_eq!(Id16::parse(text).to_string(), text);
            assert!(Id16::parse(text).is(text));
        }
        assert!(!Id16::parse(uuid).is(hash), "the same digits, another text");
        for other in [
            "u",
            "uid-1",
            "0B7F7A2E-5C1D-4B8E-9F3A-1C2D3E4F5A6B",
            "0b7f7a2e-5c1d-4b8e-9f3a-1c2d3e4f5a6",
            "0b7f7a2e5c1d4b8e9f3a1c2d3e4f5a6",
            "0b7f7a2e5c1d4b8e9f3a1c2d3e4f5a6g",
            "",
        ] {
            assert_eq!(Id16::parse(other), Id16::Other(other.into()), "{other}");
            assert_eq!(Id16::parse(other).to_string(), other);
        }
    }

    #[test]
    fn a_record_stays_small() {
        // The index holds one per Job: 100,000 of them must fit in 0.75 KiB each, with their
        // heap blocks and the index's own entries (docs/benchmarks.md, "Where the bytes go").
        assert!(std::mem::size_of::<JobRecord>() <= 280, "{}", std::mem::size_of::<JobRecord>());
        assert!(std::mem::size_of::<Option<Id16>>() <= 24);
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
