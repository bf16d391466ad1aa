//! Ordered admission under a cap. With a cap, Jobs are created suspended and labelled queued; the
//! leader unsuspends them in order (priority high to low, then queue time, then name) while
//! fewer than the cap are active, globally and per template. It reacts to JobIndex events (a Job
//! finishes: the next one starts at once) and resyncs periodically as a safety net.
//!
//! No state lives here that is not in the Jobs themselves, but for the admissions this leader
//! has just made and not yet seen back through the watch; a new leader resumes from the index.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, HashMap, HashSet},
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
    jobs::{JobIndex, JobRecord, index::IndexState},
    keys,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Waiting for admission.
    Queued,
    /// Admitted and not finished: holds a slot.
    Active,
    /// Finished, being deleted, or suspended by someone else: neither.
    Neither,
}

/// Where a Job stands for admission.
pub fn slot_of(job: &JobRecord) -> Slot {
    if job.deleting || job.finished.is_some() {
        Slot::Neither
    } else if job.suspended {
        if job.queued_label { Slot::Queued } else { Slot::Neither }
    } else {
        Slot::Active
    }
}

impl Candidate {
    pub fn from_record(job: &JobRecord) -> Self {
        let state = slot_of(job);
        Self {
            name: job.name.clone(),
            template: job.template.clone(),
            priority: job.priority,
            queued_at: job.queued_at,
            state,
        }
    }
}

/// Admission order: priority high to low, then queue time, then name.
fn order_key(c: &Candidate) -> (Reverse<i32>, Option<Timestamp>, &str) {
    (Reverse(c.priority), c.queued_at, c.name.as_str())
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

/// The queued and active Jobs (finished ones, the bulk of a busy index, are not copied).
pub fn candidates(state: &IndexState) -> Vec<Candidate> {
    state.jobs.values().filter(|j| slot_of(j) != Slot::Neither).map(|j| Candidate::from_record(j)).collect()
}

/// Queued and active Jobs, counted without copying anything.
pub fn counts(state: &IndexState) -> (u64, u64) {
    state.jobs.values().fold((0, 0), |(q, a), j| match slot_of(j) {
        Slot::Queued => (q + 1, a),
        Slot::Active => (q, a + 1),
        Slot::Neither => (q, a),
    })
}

/// Every template's own cap.
pub fn template_caps(templates: &TemplateStore) -> HashMap<String, u32> {
    templates.statuses().into_iter().filter_map(|t| Some((t.name, t.max_active?))).collect()
}

pub fn queue_status(
    candidates: &[Candidate],
    caps: Caps,
    template_caps: &HashMap<String, u32>,
    leader: bool,
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
        leader,
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

/// The admission loop: runs on every replica, acts only while this one leads.
pub struct Admission {
    client: Client,
    namespace: String,
    jobs: JobIndex,
    templates: TemplateStore,
    caps: Caps,
    leader: watch::Receiver<bool>,
    metrics: Metrics,
    resync: Duration,
}

impl Admission {
    pub fn new(
        client: Client,
        jobs: JobIndex,
        templates: TemplateStore,
        caps: Caps,
        leader: watch::Receiver<bool>,
        metrics: Metrics,
        resync: Duration,
    ) -> Self {
        let namespace = jobs.namespace().to_string();
        Self { client, namespace, jobs, templates, caps, leader, metrics, resync }
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut changes = self.jobs.subscribe();
        let mut template_changes = self.templates.subscribe();
        let mut leader = self.leader.clone();
        // Admitted by this leader, not yet seen unsuspended in the index: they hold a slot.
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut resync = tokio::time::interval(self.resync);
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
            if !*self.leader.borrow() || !self.jobs.is_synced() {
                in_flight.clear();
                continue;
            }
            self.admit(&mut in_flight).await;
        }
    }

    /// Admits what the caps allow now, checking leadership before every write.
    async fn admit(&self, in_flight: &mut HashSet<String>) {
        let caps = template_caps(&self.templates);
        let mut all = self.jobs.read(candidates);
        // An in-flight admission counts as active until the index shows it, then leaves the set.
        in_flight.retain(|name| all.iter().any(|c| &c.name == name && c.state == Slot::Queued));
        for c in all.iter_mut().filter(|c| in_flight.contains(&c.name)) {
            c.state = Slot::Active;
        }
        let chosen: Vec<(String, String, Option<Timestamp>)> = plan(&all, self.caps.max_active, &caps)
            .into_iter()
            .filter_map(|name| all.iter().find(|c| c.name == name))
            .map(|c| (c.name.clone(), c.template.clone(), c.queued_at))
            .collect();
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        let patch = serde_json::json!({
            "metadata": { "labels": { keys::QUEUED: null } },
            "spec": { "suspend": false }
        });
        for (name, template, queued_at) in chosen {
            if !*self.leader.borrow() {
                tracing::info!("lost the lease; admission stops");
                return;
            }
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    in_flight.insert(name.clone());
                    let waited =
                        queued_at.map(|t| Timestamp::now().duration_since(t).as_secs_f64().max(0.0)).unwrap_or(0.0);
                    self.metrics.admissions.get_or_create(&TemplateLabels { template }).inc();
                    self.metrics.admission_wait.observe(waited);
                    tracing::info!(job = %name, waited_s = waited, "admitted");
                }
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(error) => {
                    tracing::warn!(job = %name, %error, "cannot admit; retrying on the next change or resync");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(Candidate::from_record(&r).state, Slot::Neither, "suspended by someone else");
        r.queued_label = true;
        assert_eq!(Candidate::from_record(&r).state, Slot::Queued);
        r.deleting = true;
        assert_eq!(Candidate::from_record(&r).state, Slot::Neither, "a cancelled Job leaves the queue");
    }

    #[test]
    fn queue_status_counts_per_template_with_their_caps() {
        let jobs =
            vec![c("a", "x", 0, 0, Slot::Active), c("b", "x", 0, 1, Slot::Queued), c("c", "y", 0, 1, Slot::Queued)];
        let caps = HashMap::from([("x".to_string(), 1), ("z".to_string(), 4)]);
        let s = queue_status(&jobs, Caps { max_active: Some(3), max_queued: Some(10) }, &caps, true);
        assert_eq!((s.queued, s.active, s.max_active, s.leader), (2, 1, Some(3), true));
        let x = s.templates.iter().find(|t| t.template == "x").expect("x");
        assert_eq!((x.queued, x.active, x.max_active), (1, 1, Some(1)));
        assert!(
            s.templates.iter().any(|t| t.template == "z" && t.max_active == Some(4)),
            "a capped template shows even when idle"
        );
    }
}
