//! Ordered admission under a cap. With a cap, Jobs are created suspended and labelled queued; the
//! leader unsuspends them in order (priority high to low, then queue time, then name) while
//! fewer than the cap are active, globally and per template. It reacts to JobIndex events (a Job
//! finishes: the next one starts at once) and resyncs periodically as a safety net.
//!
//! The cap that applies to a Job never depends on what the template store happens to hold: a
//! template's cap is recorded on each Job at launch, and while a template is not loaded (not yet
//! listed, unreadable, its key or ConfigMap deleted) the cap recorded on its newest Job applies.
//! Admission starts once the templates have loaded, or once they have failed to load for
//! `--watch-failure-bound` (then the recorded caps apply).
//!
//! Leadership is checked by the clock before every unsuspend ([`Leadership::valid_until`]), and
//! each unsuspend is bounded ([`Leadership::write_bound`]) so that it cannot land after the Lease
//! could have passed to another replica.
//!
//! No state lives here that is not in the Jobs themselves, but for the admissions this leader
//! has just made and not yet seen back through the watch; a new leader resumes from the index.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use tokio::sync::watch;

use crate::{
    api::{QueueView, TemplateQueue},
    jobs::{JobIndex, JobRecord, index::IndexState, state::admission_key},
    keys,
    leader::Leadership,
    telemetry::{Metrics, TemplateLabels},
    template::TemplateStore,
};

/// The caps, from flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub max_active: Option<u32>,
    pub max_queued: Option<u32>,
}

/// One Job as admission sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub template: String,
    pub priority: i32,
    pub queued_at: Option<Timestamp>,
    pub state: Slot,
}

pub use crate::jobs::state::{Slot, slot_of};

impl Candidate {
    pub fn from_record(job: &JobRecord, state: Slot) -> Self {
        Self {
            name: job.name.to_string(),
            template: job.template.to_string(),
            priority: job.priority,
            queued_at: job.queued_at,
            state,
        }
    }
}

/// Admission order: priority high to low, then queue time, then name.
fn order_key(c: &Candidate) -> (Reverse<i32>, Option<Timestamp>, &str) {
    admission_key(c.priority, c.queued_at, &c.name)
}

/// The queued Jobs in the order they will be admitted.
pub fn queue_order(candidates: &[Candidate]) -> Vec<&Candidate> {
    let mut queued: Vec<&Candidate> = candidates.iter().filter(|c| c.state == Slot::Queued).collect();
    queued.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    queued
}

/// Which queued Jobs to admit now, in order: each while the global cap and its template's cap
/// have room. A Job whose template is full is passed over; it does not block other templates.
pub fn plan<'a>(
    candidates: &'a [Candidate],
    global: Option<u32>,
    template_caps: &HashMap<String, u32>,
) -> Vec<&'a str> {
    let mut active = candidates.iter().filter(|c| c.state == Slot::Active).count() as u64;
    let mut per_template: HashMap<&str, u64> = HashMap::new();
    for c in candidates.iter().filter(|c| c.state == Slot::Active) {
        *per_template.entry(c.template.as_str()).or_default() += 1;
    }
    let mut admit = Vec::new();
    for c in queue_order(candidates) {
        if global.is_some_and(|cap| active >= u64::from(cap)) {
            break;
        }
        let used = per_template.get(c.template.as_str()).copied().unwrap_or(0);
        if template_caps.get(&c.template).is_some_and(|cap| used >= u64::from(*cap)) {
            continue;
        }
        admit.push(c.name.as_str());
        active += 1;
        *per_template.entry(c.template.as_str()).or_default() += 1;
    }
    admit
}

/// The queued and active Jobs (finished ones, the bulk of a busy index, are not read: the index
/// keeps the set of Jobs in a slot).
pub fn candidates(state: &IndexState) -> Vec<Candidate> {
    state.in_slots().map(|(j, slot)| Candidate::from_record(j, slot)).collect()
}

/// Queued and active Jobs: the index counts them as they change, so the launch path's
/// backpressure checks do not read every Job.
pub fn counts(state: &IndexState) -> (u64, u64) {
    state.slot_counts()
}

/// The cap each template had at its newest Job's launch, as recorded on that Job (None: it had
/// none). Finished Jobs count too (the newest may have finished): the index finds each
/// template's newest Job without reading the others.
pub fn recorded_caps(state: &IndexState) -> HashMap<String, Option<u32>> {
    state.newest_per_template().into_iter().map(|(template, job)| (template.to_string(), job.recorded_cap)).collect()
}

/// Each template's cap: the store's while it serves the template, else the one recorded on the
/// template's newest Job. `served` holds every template the store serves, with its cap.
pub fn effective_caps(
    served: &HashMap<String, Option<u32>>,
    recorded: &HashMap<String, Option<u32>>,
) -> HashMap<String, u32> {
    let mut caps: HashMap<String, u32> = recorded
        .iter()
        .filter(|(template, _)| !served.contains_key(*template))
        .filter_map(|(template, cap)| Some((template.clone(), (*cap)?)))
        .collect();
    caps.extend(served.iter().filter_map(|(template, cap)| Some((template.clone(), (*cap)?))));
    caps
}

/// The templates the store serves, with their own caps.
pub fn served_caps(templates: &TemplateStore) -> HashMap<String, Option<u32>> {
    templates.statuses().into_iter().filter(|t| t.serving).map(|t| (t.name, t.max_active)).collect()
}

/// Every template's cap as admission applies it now (for `GET /v1/queue` too).
pub fn template_caps(templates: &TemplateStore, jobs: &JobIndex) -> HashMap<String, u32> {
    effective_caps(&served_caps(templates), &jobs.read(recorded_caps))
}

pub fn queue_status(
    candidates: &[Candidate],
    caps: Caps,
    template_caps: &HashMap<String, u32>,
    leadership: &Leadership,
) -> QueueView {
    let mut by_template: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for c in candidates {
        let entry = by_template.entry(c.template.as_str()).or_default();
        match c.state {
            Slot::Queued => entry.0 += 1,
            Slot::Active => entry.1 += 1,
            Slot::Neither => {}
        }
    }
    for name in template_caps.keys() {
        by_template.entry(name.as_str()).or_default();
    }
    QueueView {
        queued: by_template.values().map(|v| v.0).sum(),
        active: by_template.values().map(|v| v.1).sum(),
        max_active: caps.max_active,
        max_queued: caps.max_queued,
        leader: leadership.is_leading(),
        replica: leadership.identity().to_string(),
        templates: by_template
            .into_iter()
            .filter(|(name, (q, a))| *q + *a > 0 || template_caps.contains_key(*name))
            .map(|(name, (queued, active))| TemplateQueue {
                template: name.to_string(),
                queued,
                active,
                max_active: template_caps.get(name).copied(),
            })
            .collect(),
    }
}

/// How long admission waits after an index event for more to arrive before it acts.
const COALESCE: Duration = Duration::from_millis(20);

/// How long an unsuspend this leader sent counts as active without the index showing it: long
/// enough for the watch to deliver it, short enough that a call that never landed frees its slot.
const IN_FLIGHT_TTL: Duration = Duration::from_secs(30);

/// What became of one unsuspend call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsuspended {
    Done,
    /// The Job is gone (cancelled, TTL).
    Gone,
    /// Refused: it did not land.
    Failed(String),
    /// No answer within the bound: it may still land.
    Unknown,
}

/// The one write admission makes: unsuspend a queued Job, within `bound`.
pub trait Unsuspend: Send + Sync {
    fn unsuspend(&self, job: &str, admitted_by: &str, bound: Duration) -> impl Future<Output = Unsuspended> + Send;
}

/// Unsuspends through the Kubernetes API: the queued label goes, the admitting replica and time
/// are recorded, `spec.suspend` turns false, in one merge patch.
pub struct KubeUnsuspend {
    api: Api<Job>,
}

impl KubeUnsuspend {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self { api: Api::namespaced(client, namespace) }
    }
}

impl Unsuspend for KubeUnsuspend {
    async fn unsuspend(&self, job: &str, admitted_by: &str, bound: Duration) -> Unsuspended {
        let patch = serde_json::json!({
            "metadata": {
                "labels": { keys::QUEUED: null },
                "annotations": { keys::ADMITTED_BY: admitted_by, keys::ADMITTED_AT: Timestamp::now().to_string() },
            },
            "spec": { "suspend": false }
        });
        match tokio::time::timeout(bound, self.api.patch(job, &PatchParams::default(), &Patch::Merge(&patch))).await {
            Ok(Ok(_)) => Unsuspended::Done,
            Ok(Err(kube::Error::Api(s))) if s.is_not_found() => Unsuspended::Gone,
            Ok(Err(error)) => Unsuspended::Failed(error.to_string()),
            Err(_) => Unsuspended::Unknown,
        }
    }
}

/// Unsuspends this leader has sent and the index does not show yet: they hold a slot.
#[derive(Debug, Default)]
pub struct InFlight(HashMap<String, tokio::time::Instant>);

impl InFlight {
    /// Forgets admissions the index now shows (no longer queued), and those too old to be in
    /// flight still.
    fn settle(&mut self, candidates: &[Candidate]) {
        if self.0.is_empty() {
            return;
        }
        // A set, not a scan per entry: with a large queue and a large cap both are in the
        // thousands.
        let queued: std::collections::HashSet<&str> =
            candidates.iter().filter(|c| c.state == Slot::Queued).map(|c| c.name.as_str()).collect();
        self.0.retain(|name, sent| sent.elapsed() < IN_FLIGHT_TTL && queued.contains(name.as_str()));
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// The admission loop: runs on every replica, acts only while this one leads.
pub struct Admission<U = KubeUnsuspend> {
    unsuspend: U,
    jobs: JobIndex,
    templates: TemplateStore,
    caps: Caps,
    leadership: Leadership,
    metrics: Metrics,
    resync: Duration,
    /// How long admission waits for the templates before the caps recorded on Jobs apply.
    templates_bound: Duration,
}

impl<U: Unsuspend> Admission<U> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        unsuspend: U,
        jobs: JobIndex,
        templates: TemplateStore,
        caps: Caps,
        leadership: Leadership,
        metrics: Metrics,
        resync: Duration,
        templates_bound: Duration,
    ) -> Self {
        Self { unsuspend, jobs, templates, caps, leadership, metrics, resync, templates_bound }
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut changes = self.jobs.subscribe();
        let mut template_changes = self.templates.subscribe();
        let mut leader = self.leadership.subscribe();
        let mut in_flight = InFlight::default();
        let mut resync = tokio::time::interval(self.resync);
        let started = tokio::time::Instant::now();
        loop {
            let index_changed = tokio::select! {
                r = changes.changed() => if r.is_err() { break } else { true },
                r = template_changes.changed() => if r.is_err() { break } else { false },
                r = leader.changed() => if r.is_err() { break } else { false },
                _ = resync.tick() => false,
                _ = stop.wait_for(|s| *s) => break,
            };
            if index_changed {
                // A burst of events (a thousand Jobs launched) makes one pass, not a thousand:
                // each pass reads the whole index.
                tokio::time::sleep(COALESCE).await;
                changes.mark_unchanged();
            }
            let templates_settled = self.templates.is_synced() || started.elapsed() >= self.templates_bound;
            if !self.leadership.is_leading() || !self.jobs.is_synced() || !templates_settled {
                in_flight.clear();
                continue;
            }
            self.admit_once(&mut in_flight).await;
        }
    }

    /// One pass: admits what the caps allow now, checking leadership before every write. Returns
    /// the Jobs it unsuspended.
    pub async fn admit_once(&self, in_flight: &mut InFlight) -> Vec<String> {
        let caps = template_caps(&self.templates, &self.jobs);
        let mut all = self.jobs.read(candidates);
        // An in-flight admission counts as active until the index shows it, then leaves the set.
        in_flight.settle(&all);
        for c in all.iter_mut().filter(|c| in_flight.contains(&c.name)) {
            c.state = Slot::Active;
        }
        let by_name: HashMap<&str, &Candidate> = all.iter().map(|c| (c.name.as_str(), c)).collect();
        let chosen: Vec<(String, String, Option<Timestamp>)> = plan(&all, self.caps.max_active, &caps)
            .into_iter()
            .filter_map(|name| by_name.get(name))
            .map(|c| (c.name.clone(), c.template.clone(), c.queued_at))
            .collect();
        let mut admitted = Vec::new();
        for (name, template, queued_at) in chosen {
            // The Lease may have passed by the clock since the last look: a write now could land
            // beside another leader's.
            if self.leadership.valid_until().is_none() {
                tracing::info!("leadership expired; admission stops");
                break;
            }
            let bound = self.leadership.write_bound();
            match self.unsuspend.unsuspend(&name, self.leadership.identity(), bound).await {
                Unsuspended::Done => {
                    in_flight.0.insert(name.clone(), tokio::time::Instant::now());
                    let waited =
                        queued_at.map(|t| Timestamp::now().duration_since(t).as_secs_f64().max(0.0)).unwrap_or(0.0);
                    self.metrics.admissions.get_or_create(&TemplateLabels { template }).inc();
                    self.metrics.admission_wait.observe(waited);
                    tracing::info!(job = %name, waited_s = waited, "admitted");
                    admitted.push(name);
                }
                Unsuspended::Gone => {}
                Unsuspended::Unknown => {
                    // It may still land: its slot stays taken until the index says or the entry
                    // ages out.
                    in_flight.0.insert(name.clone(), tokio::time::Instant::now());
                    tracing::warn!(job = %name, ?bound, "no answer to an admission in time; retrying on the next change or resync");
                    break;
                }
                Unsuspended::Failed(error) => {
                    tracing::warn!(job = %name, %error, "cannot admit; retrying on the next change or resync");
                    break;
                }
            }
        }
        admitted
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::jobs::state::tests::record;

    /// Unsuspends in memory: records the calls, answers as told, and changes nothing in the index
    /// (as a watch that has not delivered yet).
    #[derive(Default)]
    struct Recorded {
        calls: Mutex<Vec<String>>,
        answer: Mutex<Option<Unsuspended>>,
    }

    impl Unsuspend for Recorded {
        async fn unsuspend(&self, job: &str, _: &str, _: Duration) -> Unsuspended {
            self.calls.lock().expect("lock").push(job.to_string());
            self.answer.lock().expect("lock").clone().unwrap_or(Unsuspended::Done)
        }
    }

    fn queued(name: &str, template: &str, created: i64, cap: Option<u32>) -> JobRecord {
        let mut r = record(name);
        r.template = template.into();
        r.suspended = true;
        r.queued_label = true;
        r.created_at = Timestamp::from_second(created).ok();
        r.queued_at = r.created_at;
        r.recorded_cap = cap;
        r
    }

    fn admission(jobs: &JobIndex, store: TemplateStore, caps: Caps, leading: bool) -> Admission<Recorded> {
        let leadership = if leading {
            Leadership::leading_for(Duration::from_secs(3600), Duration::from_secs(5))
        } else {
            Leadership::never()
        };
        Admission::new(
            Recorded::default(),
            jobs.clone(),
            store,
            caps,
            leadership,
            Metrics::new(),
            Duration::from_secs(10),
            Duration::from_secs(30),
        )
    }

    fn empty_store() -> TemplateStore {
        TemplateStore::new("ns", vec!["job-template-cm".into()], Metrics::new())
    }

    const CAPPED: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  annotations:\n    job-launcher.dev/max-active: \"3\"\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n";

    #[tokio::test]
    async fn a_template_the_store_does_not_hold_keeps_the_cap_recorded_on_its_newest_job() {
        let jobs = JobIndex::new("ns");
        for i in 0..10 {
            // The older Jobs recorded another cap: the newest one's applies.
            jobs.put(queued(&format!("q{i}"), "t", 100 + i, Some(if i == 9 { 2 } else { 7 })));
        }
        let admission = admission(&jobs, empty_store(), Caps::default(), true);
        let admitted = admission.admit_once(&mut InFlight::default()).await;
        assert_eq!(admitted, vec!["q0", "q1"], "the newest Job's recorded cap of 2, not 'uncapped'");
    }

    #[tokio::test]
    async fn a_loaded_template_s_own_cap_wins_over_the_recorded_one() {
        let jobs = JobIndex::new("ns");
        for i in 0..10 {
            jobs.put(queued(&format!("q{i}"), "t", 100 + i, Some(1)));
        }
        let store = empty_store();
        store.apply_config_map("job-template-cm", &BTreeMap::from([("t.yaml".to_string(), CAPPED.to_string())]));
        let admitted = admission(&jobs, store, Caps::default(), true).admit_once(&mut InFlight::default()).await;
        assert_eq!(admitted.len(), 3, "the template's current cap of 3");
    }

    #[tokio::test]
    async fn an_admission_the_index_does_not_show_yet_holds_its_slot() {
        let jobs = JobIndex::new("ns");
        for i in 0..5 {
            jobs.put(queued(&format!("q{i}"), "t", 100 + i, None));
        }
        let admission = admission(&jobs, empty_store(), Caps { max_active: Some(2), max_queued: None }, true);
        let mut in_flight = InFlight::default();
        assert_eq!(admission.admit_once(&mut in_flight).await, vec!["q0", "q1"]);
        assert!(admission.admit_once(&mut in_flight).await.is_empty(), "q0 and q1 are in flight: the cap is full");
        // The watch shows q0 running: still two active, nothing more.
        let mut running = queued("q0", "t", 100, None);
        running.suspended = false;
        running.queued_label = false;
        jobs.put(running.clone());
        assert!(admission.admit_once(&mut in_flight).await.is_empty());
        assert_eq!(in_flight.len(), 1, "q0 left the in-flight set once the index showed it");
        // q0 finishes: one slot.
        running.finished =
            Some(Box::new(crate::jobs::state::Finished { succeeded: true, at: None, reason: None, message: None }));
        jobs.put(running);
        assert_eq!(admission.admit_once(&mut in_flight).await, vec!["q2"]);
    }

    #[tokio::test]
    async fn an_unsuspend_without_an_answer_holds_its_slot_and_stops_the_pass() {
        let jobs = JobIndex::new("ns");
        for i in 0..5 {
            jobs.put(queued(&format!("q{i}"), "t", 100 + i, None));
        }
        let admission = admission(&jobs, empty_store(), Caps { max_active: Some(2), max_queued: None }, true);
        *admission.unsuspend.answer.lock().expect("lock") = Some(Unsuspended::Unknown);
        let mut in_flight = InFlight::default();
        assert!(admission.admit_once(&mut in_flight).await.is_empty());
        assert_eq!(admission.unsuspend.calls.lock().expect("lock").clone(), vec!["q0"], "stopped after one");
        assert!(in_flight.contains("q0"), "it may still land: it holds a slot");
    }

    #[tokio::test]
    async fn a_replica_whose_leadership_expired_writes_nothing() {
        let jobs = JobIndex::new("ns");
        jobs.put(queued("q0", "t", 100, None));
        let admission = admission(&jobs, empty_store(), Caps { max_active: Some(2), max_queued: None }, false);
        assert!(admission.admit_once(&mut InFlight::default()).await.is_empty());
        assert!(admission.unsuspend.calls.lock().expect("lock").is_empty(), "not one call");
    }

    fn c(name: &str, template: &str, priority: i32, queued_at: i64, state: Slot) -> Candidate {
        Candidate {
            name: name.into(),
            template: template.into(),
            priority,
            queued_at: Timestamp::from_second(queued_at).ok(),
            state,
        }
    }

    #[test]
    fn admits_by_priority_then_queue_time_then_name_up_to_the_cap() {
        let jobs = vec![
            c("old-low", "t", 0, 1, Slot::Queued),
            c("new-high", "t", 5, 9, Slot::Queued),
            c("old-high", "t", 5, 2, Slot::Queued),
            c("b-tie", "t", 1, 3, Slot::Queued),
            c("a-tie", "t", 1, 3, Slot::Queued),
            c("running", "t", 0, 0, Slot::Active),
        ];
        assert_eq!(plan(&jobs, Some(4), &HashMap::new()), vec!["old-high", "new-high", "a-tie"]);
        assert_eq!(plan(&jobs, None, &HashMap::new()).len(), 5, "no global cap: everything queued goes");
        let order: Vec<&str> = queue_order(&jobs).iter().map(|c| c.name.as_str()).collect();
        assert_eq!(order, vec!["old-high", "new-high", "a-tie", "b-tie", "old-low"]);
    }

    #[test]
    fn a_full_cap_admits_nothing_and_finished_jobs_hold_no_slot() {
        let jobs = vec![
            c("a", "t", 0, 1, Slot::Active),
            c("b", "t", 0, 2, Slot::Active),
            c("done", "t", 0, 0, Slot::Neither),
            c("q", "t", 9, 3, Slot::Queued),
        ];
        assert!(plan(&jobs, Some(2), &HashMap::new()).is_empty());
        assert_eq!(plan(&jobs, Some(3), &HashMap::new()), vec!["q"]);
    }

    #[test]
    fn a_full_template_is_passed_over_without_blocking_others() {
        let jobs = vec![
            c("x-active", "x", 0, 0, Slot::Active),
            c("x-next", "x", 9, 1, Slot::Queued),
            c("y-next", "y", 0, 2, Slot::Queued),
            c("y-later", "y", 0, 3, Slot::Queued),
        ];
        let caps = HashMap::from([("x".to_string(), 1)]);
        assert_eq!(plan(&jobs, Some(3), &caps), vec!["y-next", "y-later"], "x is at its cap of 1");
        assert_eq!(plan(&jobs, Some(2), &caps), vec!["y-next"], "the global cap still holds");
    }

    #[test]
    fn only_the_launchers_queued_jobs_are_candidates() {
        let mut r = crate::jobs::state::tests::record("j");
        r.suspended = true;
        assert_eq!(slot_of(&r, false), Slot::Neither, "suspended by someone else");
        r.queued_label = true;
        assert_eq!(slot_of(&r, false), Slot::Queued);
        r.deleting = true;
        assert_eq!(slot_of(&r, false), Slot::Neither, "a cancelled Job leaves the queue");
        let mut running = crate::jobs::state::tests::record("r");
        running.deleting = true;
        assert_eq!(slot_of(&running, true), Slot::Active, "cancelled, its pods still going: it holds its slot");
        assert_eq!(slot_of(&running, false), Slot::Neither, "its pods gone (kept for its notice): it holds none");
    }

    #[test]
    fn queue_status_counts_per_template_with_their_caps() {
        let jobs =
            vec![c("a", "x", 0, 0, Slot::Active), c("b", "x", 0, 1, Slot::Queued), c("c", "y", 0, 1, Slot::Queued)];
        let caps = HashMap::from([("x".to_string(), 1), ("z".to_string(), 4)]);
        let leadership = Leadership::leading_for(Duration::from_secs(60), Duration::from_secs(5));
        let s = queue_status(&jobs, Caps { max_active: Some(3), max_queued: Some(10) }, &caps, &leadership);
        assert_eq!((s.queued, s.active, s.max_active, s.leader), (2, 1, Some(3), true));
        let x = s.templates.iter().find(|t| t.template == "x").expect("x");
        assert_eq!((x.queued, x.active, x.max_active), (1, 1, Some(1)));
        assert!(
            s.templates.iter().any(|t| t.template == "z" && t.max_active == Some(4)),
            "a capped template shows even when idle"
        );
    }
}
