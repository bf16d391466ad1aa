//! JobIndex: the launcher's in-memory view of the Jobs it manages and their pods, fed by two
//! label-selected watches. Objects are reduced to compact records as they arrive, so memory grows
//! with the number of Jobs, not with the size of their manifests. Every read (views, lists,
//! admission, metrics) is answered from here, never by an API call.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};
use tokio::sync::watch;

use super::{
    events::JobEvents,
    state::{Finished, JobRecord, PendingNotice, PodRecord},
    view::job_view,
};
use crate::{
    api::{JobState, JobView},
    health::Health,
    keys,
    selector::Selector,
};

/// Objects per page of a (re)list. Smaller than kube's 500: a page of full Jobs is decoded whole
/// before it is reduced to records, and those transient megabytes stay in the allocator.
const LIST_PAGE_SIZE: u32 = 100;

/// The index's contents: plain maps of records.
#[derive(Debug, Default)]
pub struct IndexState {
    /// Boxed: the table keeps spare slots, and a slot is then a pointer, not a whole record.
    pub jobs: HashMap<String, Box<JobRecord>>,
    pods: HashMap<String, PodRecord>,
    pods_by_job: HashMap<String, Vec<String>>,
}

impl IndexState {
    /// The pods of a Job, oldest first.
    pub fn pods_of(&self, job: &str) -> Vec<&PodRecord> {
        let mut pods: Vec<&PodRecord> =
            self.pods_by_job.get(job).into_iter().flatten().filter_map(|name| self.pods.get(name)).collect();
        pods.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.name.cmp(&b.name)));
        pods
    }

    pub fn pod(&self, name: &str) -> Option<&PodRecord> {
        self.pods.get(name)
    }

    pub fn state_of(&self, job: &JobRecord) -> JobState {
        job.state(&self.pods_of(&job.name))
    }

    /// The last view of a Job leaving the index, and its event id: one that had not finished was
    /// cancelled (deleted before its end, by the launcher or anyone).
    fn final_view(&self, namespace: &str, job: &JobRecord) -> (JobView, u64) {
        let pods = self.pods_of(&job.name);
        let mut last = job.clone();
        last.deleting = true;
        (job_view(namespace, &last, &pods), job.event_id(&pods))
    }

    fn insert_pod(&mut self, pod: PodRecord) {
        let by_job = self.pods_by_job.entry(pod.job.clone()).or_default();
        if !by_job.contains(&pod.name) {
            by_job.push(pod.name.clone());
        }
        self.pods.insert(pod.name.clone(), pod);
    }

    /// Forgets the pods of a Job that went.
    fn remove_pods_of(&mut self, job: &str) {
        for pod in self.pods_by_job.remove(job).unwrap_or_default() {
            self.pods.remove(&pod);
        }
    }

    fn remove_pod(&mut self, name: &str) {
        if let Some(pod) = self.pods.remove(name)
            && let Some(by_job) = self.pods_by_job.get_mut(&pod.job)
        {
            by_job.retain(|n| n != name);
            if by_job.is_empty() {
                self.pods_by_job.remove(&pod.job);
            }
        }
    }
}

/// Which Jobs a list returns, and where a page starts.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub template: Option<String>,
    pub state: Option<JobState>,
    pub labels: Vec<(String, String)>,
    /// A label selector (`labelSelector=`); every requirement must match, as must `labels`.
    pub selector: Selector,
    pub requested_by: Option<String>,
    pub limit: usize,
    /// The `continue` token of the previous page.
    pub after: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<JobView>,
    /// The token for the next page, when there is one.
    pub next: Option<String>,
}

/// A page cursor: the sort key of the last item returned, as an opaque token.
fn cursor_token(job: &JobRecord) -> String {
    let nanos = job.created_at.map(|t| t.as_nanosecond()).unwrap_or_default();
    let raw = format!("{nanos}:{}", job.name);
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn parse_cursor(token: &str) -> Option<(i128, String)> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..token.len()).step_by(2).map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok()).collect();
    let raw = String::from_utf8(bytes?).ok()?;
    let (nanos, name) = raw.split_once(':')?;
    Some((nanos.parse().ok()?, name.to_string()))
}

/// Newest first; the name breaks ties so the order is total and pages do not overlap.
fn sort_key(job: &JobRecord) -> (std::cmp::Reverse<i128>, &str) {
    (std::cmp::Reverse(job.created_at.map(|t| t.as_nanosecond()).unwrap_or_default()), job.name.as_str())
}

struct Inner {
    namespace: String,
    state: RwLock<IndexState>,
    /// Bumped on every change, so admission and waiters can react to events.
    changes: watch::Sender<u64>,
    jobs_synced: watch::Sender<bool>,
    pods_synced: watch::Sender<bool>,
    events: JobEvents,
}

#[derive(Clone)]
pub struct JobIndex {
    inner: Arc<Inner>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid continue token")]
pub struct BadCursor;

impl JobIndex {
    pub fn new(namespace: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                namespace: namespace.to_string(),
                state: RwLock::new(IndexState::default()),
                changes: watch::Sender::new(0),
                jobs_synced: watch::Sender::new(false),
                pods_synced: watch::Sender::new(false),
                events: JobEvents::new(),
            }),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// True once both watches have listed everything.
    pub fn is_synced(&self) -> bool {
        *self.inner.jobs_synced.borrow() && *self.inner.pods_synced.borrow()
    }

    /// Resolves once both watches have listed everything.
    pub async fn synced(&self) {
        let _ = self.inner.jobs_synced.subscribe().wait_for(|synced| *synced).await;
        let _ = self.inner.pods_synced.subscribe().wait_for(|synced| *synced).await;
    }

    /// A receiver that sees a new value after every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Runs `f` with the index's contents under its read lock.
    pub fn read<R>(&self, f: impl FnOnce(&IndexState) -> R) -> R {
        let guard = self.inner.state.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&guard)
    }

    fn write<R>(&self, f: impl FnOnce(&mut IndexState) -> R) -> R {
        let result = {
            let mut guard = self.inner.state.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        };
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
        result
    }

    pub fn view(&self, name: &str) -> Option<JobView> {
        self.read(|s| s.jobs.get(name).map(|job| job_view(&self.inner.namespace, job, &s.pods_of(name))))
    }

    pub fn record(&self, name: &str) -> Option<JobRecord> {
        self.read(|s| s.jobs.get(name).map(|job| JobRecord::clone(job)))
    }

    pub fn list(&self, filter: &ListFilter) -> Result<Page, BadCursor> {
        let after = filter.after.as_deref().map(|t| parse_cursor(t).ok_or(BadCursor)).transpose()?;
        self.read(|s| {
            let mut matching: Vec<&JobRecord> = s
                .jobs
                .values()
                .map(|j| &**j)
                .filter(|j| filter.template.as_ref().is_none_or(|t| &j.template == t))
                .filter(|j| filter.labels.iter().all(|(k, v)| j.labels.get(k) == Some(v.as_str())))
                .filter(|j| filter.selector.matches(|k| j.labels.get(k)))
                .filter(|j| filter.requested_by.as_ref().is_none_or(|by| j.requested_by.as_ref() == Some(by)))
                .filter(|j| filter.state.is_none_or(|st| s.state_of(j) == st))
                .filter(|j| {
                    after.as_ref().is_none_or(|(nanos, name)| sort_key(j) > (std::cmp::Reverse(*nanos), name.as_str()))
                })
                .collect();
            matching.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
            let limit = filter.limit.max(1);
            let next = (matching.len() > limit).then(|| cursor_token(matching[limit - 1]));
            let items = matching
                .into_iter()
                .take(limit)
                .map(|j| job_view(&self.inner.namespace, j, &s.pods_of(&j.name)))
                .collect();
            Ok(Page { items, next })
        })
    }

    /// Number of Jobs in each state.
    pub fn count_by_state(&self) -> Vec<(JobState, usize)> {
        self.read(|s| {
            let mut counts: HashMap<JobState, usize> = HashMap::new();
            for job in s.jobs.values() {
                *counts.entry(s.state_of(job)).or_default() += 1;
            }
            JobState::ALL.iter().map(|st| (*st, counts.get(st).copied().unwrap_or(0))).collect()
        })
    }

    /// Records a Job this process just created (or found), so that a read right after the
    /// create sees it even before the watch delivers it. A record of the same Job (same UID) the
    /// watch already has is left alone: it is at least as new; a record of an earlier Job of the
    /// same name (a keyed relaunch after TTL cleanup) is replaced.
    pub fn observe_created(&self, job: &Job) {
        if let Some(record) = job_record(job) {
            self.change(|s| match s.jobs.get(&record.name) {
                Some(known) if known.uid == record.uid => Touched::default(),
                _ => {
                    let name = record.name.clone();
                    s.jobs.insert(name.clone(), Box::new(record));
                    Touched { jobs: vec![name], queue: true, ..Touched::default() }
                }
            });
        }
    }

    /// Puts a record as a watch event would: for tests of the decisions made from the index.
    #[cfg(test)]
    pub fn put(&self, record: JobRecord) {
        self.write(|s| {
            s.jobs.insert(record.name.clone(), Box::new(record));
        });
    }

    /// Marks both watches synced: for tests of the decisions made from the index.
    #[cfg(test)]
    pub fn mark_synced(&self) {
        self.inner.jobs_synced.send_replace(true);
        self.inner.pods_synced.send_replace(true);
    }

    /// Feeds the index from the API server until the future is dropped. Watch errors are logged
    /// and retried with backoff; a relist replaces the index's contents atomically.
    /// Feeds the index with the Jobs and pods of launcher instance `instance`.
    pub async fn run(self, client: Client, instance: String, health: Health) {
        let selector = keys::managed_selector(&instance);
        let jobs: Api<Job> = Api::namespaced(client.clone(), &self.inner.namespace);
        let pods: Api<Pod> = Api::namespaced(client, &self.inner.namespace);
        let config = watcher::Config::default().labels(&selector).page_size(LIST_PAGE_SIZE);
        let job_feed = self.clone().feed(
            "jobs",
            &health,
            watcher(jobs, config.clone())
                .default_backoff()
                .map_ok(|e| map_event(e, |job| job_record(&job).map(Box::new))),
            &self.inner.jobs_synced,
            |s, batch, first| {
                let fresh: HashMap<String, Box<JobRecord>> =
                    batch.into_iter().flatten().map(|j| (j.name.clone(), j)).collect();
                let mut touched = Touched::default();
                if !first {
                    for (name, job) in &fresh {
                        if s.jobs.get(name).is_none_or(|old| old.resource_version != job.resource_version) {
                            touched.jobs.push(name.clone());
                        }
                    }
                    for (name, old) in &s.jobs {
                        if !fresh.contains_key(name) {
                            touched.buried.push(s.final_view(&self.inner.namespace, old));
                        }
                    }
                }
                let gone: Vec<String> = s.jobs.keys().filter(|name| !fresh.contains_key(*name)).cloned().collect();
                for name in gone {
                    s.remove_pods_of(&name);
                }
                s.jobs = fresh;
                touched.queue = true;
                touched
            },
            |s, record| {
                let Some(r) = record else { return Touched::default() };
                let name = r.name.clone();
                s.jobs.insert(name.clone(), r);
                Touched { jobs: vec![name], queue: true, ..Touched::default() }
            },
            |s, record| {
                let Some(r) = record else { return Touched::default() };
                let buried = s.final_view(&self.inner.namespace, &r);
                s.jobs.remove(&r.name);
                s.remove_pods_of(&r.name);
                Touched { buried: vec![buried], queue: true, ..Touched::default() }
            },
        );
        let pod_feed = self.clone().feed(
            "pods",
            &health,
            watcher(pods, config).default_backoff().map_ok(|e| map_event(e, |pod| pod_record(&pod))),
            &self.inner.pods_synced,
            |s, batch, first| {
                let mut touched = Touched::default();
                let fresh: Vec<PodRecord> = batch.into_iter().flatten().collect();
                if !first {
                    for pod in &fresh {
                        if s.pods.get(&pod.name).is_none_or(|old| old.resource_version != pod.resource_version) {
                            touched.jobs.push(pod.job.clone());
                        }
                    }
                }
                s.pods.clear();
                s.pods_by_job.clear();
                fresh.into_iter().for_each(|p| s.insert_pod(p));
                touched
            },
            |s, record| {
                let Some(p) = record else { return Touched::default() };
                let job = p.job.clone();
                s.insert_pod(p);
                Touched { jobs: vec![job], ..Touched::default() }
            },
            |s, record| {
                let Some(p) = record else { return Touched::default() };
                // A finished Job's pods are kept until the Job goes (TTL cleanup deletes the pods
                // first): its view, its result and its notice still describe them.
                if s.jobs.get(&p.job).is_some_and(|j| j.finished.is_some()) {
                    return Touched::default();
                }
                s.remove_pod(&p.name);
                Touched { jobs: vec![p.job], ..Touched::default() }
            },
        );
        tokio::join!(job_feed, pod_feed);
    }

    /// Applies one watch stream's events. `replace` swaps in a complete relist (told whether it is
    /// the first); `apply` and `delete` handle single changes. Each says what it touched, for the
    /// change events.
    #[allow(clippy::too_many_arguments)]
    async fn feed<R>(
        self,
        what: &'static str,
        health: &Health,
        stream: impl futures::Stream<Item = Result<watcher::Event<R>, watcher::Error>>,
        synced: &watch::Sender<bool>,
        replace: impl Fn(&mut IndexState, Vec<R>, bool) -> Touched,
        apply: impl Fn(&mut IndexState, R) -> Touched,
        delete: impl Fn(&mut IndexState, R) -> Touched,
    ) {
        let mut stream = std::pin::pin!(stream);
        let mut buffer: Vec<R> = Vec::new();
        let mut failing = false;
        loop {
            let event = stream.next().await;
            match (&event, failing) {
                (Some(Err(_)), false) => {
                    failing = true;
                    health.watch_failed(what);
                }
                (Some(Ok(_)), true) => {
                    failing = false;
                    health.watch_recovered(what);
                }
                _ => {}
            }
            match event {
                Some(Ok(watcher::Event::Init)) => buffer.clear(),
                Some(Ok(watcher::Event::InitApply(r))) => buffer.push(r),
                Some(Ok(watcher::Event::InitDone)) => {
                    let batch = std::mem::take(&mut buffer);
                    let count = batch.len();
                    let first = !*synced.borrow();
                    self.change(|s| replace(s, batch, first));
                    // The relist's pages and the replaced records are garbage now.
                    crate::memory::release_free_memory();
                    if first {
                        tracing::info!(%what, count, "index synced");
                    }
                    synced.send_replace(true);
                }
                Some(Ok(watcher::Event::Apply(r))) => self.change(|s| apply(s, r)),
                Some(Ok(watcher::Event::Delete(r))) => self.change(|s| delete(s, r)),
                Some(Err(error)) => tracing::warn!(%what, %error, "watch failed; retrying"),
                None => return,
            }
        }
    }

    /// Applies a change, then publishes the new views of the Jobs it touched (when a stream
    /// listens) and the final views of those it removed (always: a late reader may ask).
    fn change(&self, f: impl FnOnce(&mut IndexState) -> Touched) {
        let touched = self.write(f);
        let events = &self.inner.events;
        for (view, id) in touched.buried {
            events.bury(view, id);
        }
        if touched.queue {
            events.queue_changed();
        }
        if !touched.jobs.is_empty() && events.has_listeners() {
            let views: Vec<(JobView, u64)> = self.read(|s| {
                touched
                    .jobs
                    .iter()
                    .filter_map(|name| {
                        let job = s.jobs.get(name)?;
                        let pods = s.pods_of(name);
                        Some((job_view(&self.inner.namespace, job, &pods), job.event_id(&pods)))
                    })
                    .collect()
            });
            for (view, id) in views {
                events.publish(view, id);
            }
        }
    }

    /// The change events of this index's Jobs.
    pub fn events(&self) -> &JobEvents {
        &self.inner.events
    }
}

/// What one change of the index touched: Jobs whose view may have changed, the final views of
/// Jobs it removed, and whether the queue may have changed.
#[derive(Default)]
struct Touched {
    jobs: Vec<String>,
    buried: Vec<(JobView, u64)>,
    queue: bool,
}

/// Reduces a watch event's object to a record as soon as it arrives.
fn map_event<K, R>(event: watcher::Event<K>, f: impl Fn(K) -> R) -> watcher::Event<R> {
    match event {
        watcher::Event::Apply(k) => watcher::Event::Apply(f(k)),
        watcher::Event::Delete(k) => watcher::Event::Delete(f(k)),
        watcher::Event::InitApply(k) => watcher::Event::InitApply(f(k)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

fn parse_time(value: Option<&String>) -> Option<Timestamp> {
    value.and_then(|v| v.parse().ok())
}

/// The record of a Job; None for an object without a name (never seen in practice).
pub fn job_record(job: &Job) -> Option<JobRecord> {
    let meta = &job.metadata;
    let name = meta.name.clone()?;
    let labels = meta.labels.clone().unwrap_or_default();
    let annotations = meta.annotations.as_ref();
    let annotation = |key: &str| annotations.and_then(|a| a.get(key)).cloned();
    let status = job.status.as_ref();
    let finished = status.and_then(|s| s.conditions.as_ref()).and_then(|conditions| {
        conditions.iter().filter(|c| c.status == "True").find_map(|c| {
            let succeeded = match c.type_.as_str() {
                "Complete" => true,
                "Failed" => false,
                _ => return None,
            };
            Some(Finished {
                succeeded,
                at: status
                    .and_then(|s| s.completion_time.as_ref())
                    .map(|t| t.0)
                    .or_else(|| c.last_transition_time.as_ref().map(|t| t.0)),
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
        })
    });
    let created_at = meta.creation_timestamp.as_ref().map(|t| t.0);
    Some(JobRecord {
        template: labels.get(keys::TEMPLATE).cloned().unwrap_or_default(),
        source: labels.get(keys::SOURCE).cloned().unwrap_or_default(),
        priority: annotation(keys::PRIORITY).and_then(|p| p.parse().ok()).unwrap_or(0),
        idempotency_key: annotation(keys::IDEMPOTENCY_KEY),
        request_hash: annotation(keys::REQUEST_HASH),
        sqs_queue: annotation(keys::SQS_QUEUE),
        requested_by: annotation(keys::REQUESTED_BY),
        uid: meta.uid.clone(),
        recorded_cap: annotation(keys::MAX_ACTIVE).and_then(|c| c.parse().ok()),
        resource_version: resource_version(meta.resource_version.as_deref()),
        notice: pending_notice(job),
        created_at,
        queued_at: parse_time(annotations.and_then(|a| a.get(keys::QUEUED_AT))).or(created_at),
        started_at: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        suspended: job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false),
        queued_label: labels.get(keys::QUEUED).is_some_and(|v| v == "true"),
        deleting: meta.deletion_timestamp.is_some(),
        active: status.and_then(|s| s.active).unwrap_or(0),
        ready: status.and_then(|s| s.ready).unwrap_or(0),
        finished,
        labels: labels.into(),
        name,
    })
}

/// The record of a pod; None for a pod that names no Job.
pub fn pod_record(pod: &Pod) -> Option<PodRecord> {
    let meta = &pod.metadata;
    let labels = meta.labels.as_ref();
    let job = labels
        .and_then(|l| l.get("batch.kubernetes.io/job-name").or_else(|| l.get("job-name")))
        .cloned()
        .or_else(|| meta.owner_references.as_ref()?.iter().find(|o| o.kind == "Job").map(|o| o.name.clone()))?;
    let status = pod.status.as_ref();
    let containers = status.and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    // The first container that ended badly explains the pod best; else the first that ended.
    let terminated: Vec<_> = containers.iter().filter_map(|c| c.state.as_ref()?.terminated.as_ref()).collect();
    let ended = terminated.iter().find(|t| t.exit_code != 0).or(terminated.first());
    let waiting = containers.iter().find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    let message = ended.and_then(|t| t.message.clone()).or_else(|| terminated.iter().find_map(|t| t.message.clone()));
    Some(PodRecord {
        name: meta.name.clone()?,
        job,
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into()),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        exit_code: ended.map(|t| t.exit_code),
        reason: ended.and_then(|t| t.reason.clone()).or(waiting).or_else(|| status.and_then(|s| s.reason.clone())),
        created_at: meta.creation_timestamp.as_ref().map(|t| t.0),
        running_since: containers
            .iter()
            .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
            .map(|t| t.0)
            .min()
            .or_else(|| {
                status
                    .filter(|s| s.phase.as_deref() == Some("Running"))
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
            }),
        termination_message: message,
        resource_version: resource_version(meta.resource_version.as_deref()),
    })
}

/// The Job's pending notice, when it carries the notice finalizer.
fn pending_notice(job: &Job) -> Option<Box<PendingNotice>> {
    let finalizers = job.metadata.finalizers.as_deref().unwrap_or_default();
    if !finalizers.iter().any(|f| f == keys::NOTIFY_FINALIZER) {
        return None;
    }
    let annotation = |key: &str| job.metadata.annotations.as_ref().and_then(|a| a.get(key)).cloned();
    Some(Box::new(PendingNotice {
        url: annotation(keys::NOTIFY_URL),
        sqs: annotation(keys::NOTIFY_SQS).map(|q| q.split_whitespace().map(String::from).collect()).unwrap_or_default(),
    }))
}

/// A resourceVersion as a number: etcd's revision, which grows with every write. Kubernetes
/// calls it opaque; an apiserver on etcd makes it this number. 0 when it is not one.
pub fn resource_version(value: Option<&str>) -> u64 {
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::state::tests::record;

    fn index_with(jobs: Vec<JobRecord>) -> JobIndex {
        let index = JobIndex::new("ns");
        index.write(|s| s.jobs = jobs.into_iter().map(|j| (j.name.clone(), Box::new(j))).collect());
        index
    }

    fn at(seconds: i64) -> Option<Timestamp> {
        Timestamp::from_second(seconds).ok()
    }

    fn created(name: &str, uid: &str, succeeded: bool) -> Job {
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "uid": uid, "labels": {keys::TEMPLATE: "t"}},
            "spec": {"template": {}},
        }))
        .expect("job");
        if succeeded {
            job.status = serde_json::from_value(serde_json::json!({
                "conditions": [{"type": "Complete", "status": "True"}]
            }))
            .ok();
        }
        job
    }

    #[test]
    fn a_job_created_again_under_its_name_replaces_the_old_record_and_the_same_job_does_not() {
        let index = JobIndex::new("ns");
        index.observe_created(&created("k-1", "old", true));
        assert_eq!(index.view("k-1").map(|v| v.state), Some(JobState::Succeeded));
        index.observe_created(&created("k-1", "new", false));
        assert_eq!(index.record("k-1").and_then(|r| r.uid).as_deref(), Some("new"), "another Job: replaced");
        assert_eq!(index.view("k-1").map(|v| v.state), Some(JobState::Pending));
        index.observe_created(&created("k-1", "new", true));
        assert_eq!(index.view("k-1").map(|v| v.state), Some(JobState::Pending), "the watch's record stays");
    }

    #[test]
    fn lists_newest_first_in_pages_that_neither_overlap_nor_skip() {
        let jobs: Vec<JobRecord> = (0..7)
            .map(|i| {
                let mut r = record(&format!("j{i}"));
                // Two Jobs per second: the name breaks the tie.
                r.created_at = at(1_000 + i / 2);
                r
            })
            .collect();
        let index = index_with(jobs);
        let mut seen = Vec::new();
        let mut filter = ListFilter { limit: 3, ..Default::default() };
        loop {
            let page = index.list(&filter).expect("list");
            seen.extend(page.items.iter().map(|v| v.name.clone()));
            match page.next {
                Some(token) => filter.after = Some(token),
                None => break,
            }
        }
        assert_eq!(seen, vec!["j6", "j4", "j5", "j2", "j3", "j0", "j1"]);
    }

    #[test]
    fn filters_by_template_state_and_labels() {
        let mut a = record("a");
        a.template = "x".into();
        a.labels = std::collections::BTreeMap::from([("team".to_string(), "data".to_string())]).into();
        let mut b = record("b");
        b.template = "y".into();
        b.suspended = true;
        let index = index_with(vec![a, b]);
        let names = |f: ListFilter| {
            index
                .list(&ListFilter { limit: 10, ..f })
                .expect("list")
                .items
                .into_iter()
                .map(|v| v.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(ListFilter { template: Some("x".into()), ..Default::default() }), vec!["a"]);
        assert_eq!(names(ListFilter { state: Some(JobState::Queued), ..Default::default() }), vec!["b"]);
        assert_eq!(names(ListFilter { labels: vec![("team".into(), "data".into())], ..Default::default() }), vec!["a"]);
        assert!(names(ListFilter { labels: vec![("team".into(), "ops".into())], ..Default::default() }).is_empty());
        let selected = |text: &str| {
            let selector = crate::selector::parse(text).expect("a selector");
            names(ListFilter { selector, ..Default::default() })
        };
        assert_eq!(selected("team!=data"), vec!["b"], "no label at all is not data");
        assert_eq!(selected("team in (ops,data)"), vec!["a"]);
        assert_eq!(selected("!team"), vec!["b"]);
        assert_eq!(selected("team notin (ops)"), vec!["a", "b"]);
        let both = ListFilter {
            labels: vec![("team".into(), "data".into())],
            selector: crate::selector::parse("team!=data").expect("a selector"),
            ..Default::default()
        };
        assert!(names(both).is_empty(), "label= and labelSelector= must both match");
    }

    #[test]
    fn a_garbled_continue_token_is_refused() {
        let index = index_with(vec![record("a")]);
        for token in ["zz", "abc", "6869"] {
            let filter = ListFilter { limit: 1, after: Some(token.into()), ..Default::default() };
            assert!(index.list(&filter).is_err(), "{token}");
        }
    }

    #[test]
    fn pods_are_grouped_by_job_and_removed_cleanly() {
        let index = index_with(vec![record("j")]);
        let mut p = crate::jobs::state::tests::pod("p1", "Running", None);
        p.job = "j".into();
        index.write(|s| s.insert_pod(p.clone()));
        assert_eq!(index.view("j").map(|v| (v.state, v.pods.len())), Some((JobState::Running, 1)));
        index.write(|s| s.remove_pod("p1"));
        assert_eq!(index.view("j").map(|v| (v.state, v.pods.len())), Some((JobState::Pending, 0)));
        assert!(index.read(|s| s.pods_by_job.is_empty()));
    }

    #[test]
    fn job_records_carry_the_launchers_labels_and_annotations() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "t-abc", "uid": "u", "resourceVersion": "7",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": { keys::TEMPLATE: "t", keys::SOURCE: "sqs", keys::QUEUED: "true" },
                "annotations": { keys::PRIORITY: "5", keys::IDEMPOTENCY_KEY: "k", keys::QUEUED_AT: "2026-01-01T00:00:01.5Z" }
            },
            "spec": { "suspend": true, "template": { "spec": { "containers": [] } } },
            "status": { "conditions": [{ "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": "2026-01-01T00:01:00Z" }] }
        }))
        .expect("job");
        let r = job_record(&job).expect("record");
        assert_eq!((r.template.as_str(), r.source.as_str(), r.priority), ("t", "sqs", 5));
        assert_eq!(r.idempotency_key.as_deref(), Some("k"));
        assert!(r.suspended && r.queued_label);
        assert_eq!(r.queued_at, "2026-01-01T00:00:01.5Z".parse().ok());
        assert_eq!(r.finished.as_ref().map(|f| f.succeeded), Some(false));
        assert_eq!(r.finished_at(), "2026-01-01T00:01:00Z".parse().ok());
    }

    #[test]
    fn pod_records_take_the_failing_containers_exit_code() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "labels": { "batch.kubernetes.io/job-name": "j" } },
            "spec": { "nodeName": "n1", "containers": [] },
            "status": { "phase": "Failed", "containerStatuses": [
                { "name": "a", "image": "i", "ready": false, "restartCount": 0, "state": { "terminated": { "exitCode": 0, "reason": "Completed" } } },
                { "name": "b", "image": "i", "ready": false, "restartCount": 0, "state": { "terminated": { "exitCode": 3, "reason": "Error" } } }
            ] }
        }))
        .expect("pod");
        let r = pod_record(&pod).expect("record");
        assert_eq!(
            (r.job.as_str(), r.phase.as_str(), r.exit_code, r.reason.as_deref(), r.node.as_deref()),
            ("j", "Failed", Some(3), Some("Error"), Some("n1"))
        );
    }
}
