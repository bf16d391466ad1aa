//! A watch on a namespace's Jobs that records, event by event, what admission did.

use std::time::Duration;

use kube::Api;

use super::cluster::TestNamespace;

/// What a watch on a namespace's Jobs saw: every admission in order and the most Jobs active or
/// queued at any one moment. Observed event by event, not sampled.
#[derive(Debug, Default, Clone)]
pub struct JobStats {
    /// Jobs in the order they were first seen unsuspended.
    pub started: Vec<String>,
    pub max_active: usize,
    pub max_active_by_template: std::collections::BTreeMap<String, usize>,
    pub max_active_by_instance: std::collections::BTreeMap<String, usize>,
    pub max_queued: usize,
    pub finished: usize,
    /// Jobs in the namespace now, as the watch knows them.
    pub present: usize,
    /// Every admission as first seen: the Job, the replica that admitted it (its
    /// `admitted-by` annotation), and when the watch saw it.
    pub admissions: Vec<(String, String, std::time::Instant)>,
    /// Errors the watch met and recovered from (it relists after each); what changed in such a
    /// gap is seen late or, for a Job that started and finished inside it, not at all.
    pub watch_errors: Vec<String>,
}

impl JobStats {
    /// The counts and the admissions by replica, without the Jobs' names.
    pub fn summary(&self) -> String {
        let mut by_replica: std::collections::BTreeMap<&str, usize> = Default::default();
        for (_, by, _) in &self.admissions {
            *by_replica.entry(by.as_str()).or_default() += 1;
        }
        format!(
            "{} present, {} admitted {by_replica:?}, {} finished, active peak {}, queued peak {}, watch errors {:?}",
            self.present,
            self.admissions.len(),
            self.finished,
            self.max_active,
            self.max_queued,
            self.watch_errors
        )
    }
}

/// Watches the Jobs of `namespace` until dropped; `stats()` reads what it saw so far.
pub struct JobObserver {
    stats: std::sync::Arc<std::sync::Mutex<JobStats>>,
    task: tokio::task::JoinHandle<()>,
}

impl JobObserver {
    pub async fn start(namespace: &TestNamespace) -> Self {
        use futures::TryStreamExt;
        use k8s_openapi::api::batch::v1::Job;
        use kube::runtime::{WatchStreamExt, watcher};
        let stats = std::sync::Arc::new(std::sync::Mutex::new(JobStats::default()));
        let api: Api<Job> = namespace.api();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let shared = stats.clone();
        let task = tokio::spawn(async move {
            // name -> (template, suspended, finished)
            let mut jobs: std::collections::BTreeMap<String, (String, bool, bool)> = Default::default();
            let mut instances: std::collections::BTreeMap<String, String> = Default::default();
            let mut relisted: std::collections::BTreeSet<String> = Default::default();
            let mut ready = Some(ready_tx);
            // With a backoff the watcher relists after an error instead of ending, so one
            // transient error (say a 410 after the control plane restarted) does not freeze the
            // stats for the rest of the test.
            let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
            loop {
                let event = match stream.try_next().await {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(error) => {
                        shared.lock().unwrap_or_else(|p| p.into_inner()).watch_errors.push(error.to_string());
                        continue;
                    }
                };
                let (job, deleted) = match event {
                    watcher::Event::Apply(j) => (j, false),
                    watcher::Event::InitApply(j) => {
                        relisted.insert(j.metadata.name.clone().unwrap_or_default());
                        (j, false)
                    }
                    watcher::Event::Delete(j) => (j, true),
                    watcher::Event::Init => {
                        relisted.clear();
                        continue;
                    }
                    watcher::Event::InitDone => {
                        // A relist after an error brings no deletes: Jobs it no longer lists are gone.
                        jobs.retain(|name, _| relisted.contains(name));
                        shared.lock().unwrap_or_else(|p| p.into_inner()).present = jobs.len();
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                };
                let name = job.metadata.name.clone().unwrap_or_default();
                if deleted {
                    jobs.remove(&name);
                    shared.lock().unwrap_or_else(|p| p.into_inner()).present = jobs.len();
                    continue;
                }
                let label =
                    |key: &str| job.metadata.labels.as_ref().and_then(|l| l.get(key)).cloned().unwrap_or_default();
                let template = label("job-launcher.dev/template");
                instances.insert(name.clone(), label("job-launcher.dev/instance"));
                let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
                let finished = job.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
                    cs.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
                });
                let mut stats = shared.lock().unwrap_or_else(|p| p.into_inner());
                if !suspended && !stats.started.contains(&name) {
                    stats.started.push(name.clone());
                    let by = job
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("job-launcher.dev/admitted-by"))
                        .cloned()
                        .unwrap_or_default();
                    stats.admissions.push((name.clone(), by, std::time::Instant::now()));
                }
                if finished && !jobs.get(&name).is_some_and(|j| j.2) {
                    stats.finished += 1;
                }
                jobs.insert(name, (template, suspended, finished));
                stats.present = jobs.len();
                let active: Vec<&(String, bool, bool)> = jobs.values().filter(|(_, s, f)| !s && !f).collect();
                stats.max_active = stats.max_active.max(active.len());
                let mut by_template: std::collections::BTreeMap<String, usize> = Default::default();
                for (t, _, _) in &active {
                    *by_template.entry(t.clone()).or_default() += 1;
                }
                for (t, n) in by_template {
                    let max = stats.max_active_by_template.entry(t).or_default();
                    *max = (*max).max(n);
                }
                let mut by_instance: std::collections::BTreeMap<String, usize> = Default::default();
                for (name, (_, s, f)) in &jobs {
                    if !s && !f {
                        *by_instance.entry(instances.get(name).cloned().unwrap_or_default()).or_default() += 1;
                    }
                }
                for (i, n) in by_instance {
                    let max = stats.max_active_by_instance.entry(i).or_default();
                    *max = (*max).max(n);
                }
                let queued = jobs.values().filter(|(_, s, f)| *s && !f).count();
                stats.max_queued = stats.max_queued.max(queued);
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(10), ready_rx).await;
        Self { stats, task }
    }

    pub fn stats(&self) -> JobStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until `n` Jobs have finished.
    pub async fn wait_finished(&self, n: usize, timeout: Duration) -> JobStats {
        self.wait_for(timeout, &format!("{n} Jobs to finish"), |stats| stats.finished >= n).await
    }

    /// Waits until `check` holds for what the watch saw; on a timeout the panic shows it (who
    /// admitted what, how many finished, the watch's errors), so a failure says where it stuck.
    pub async fn wait_for(&self, timeout: Duration, what: &str, check: impl Fn(&JobStats) -> bool) -> JobStats {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if check(&stats) {
                return stats;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {what}; the watch saw {}", stats.summary());
            }
            // The poll interval of `cluster::wait_until`, which this is with the stats in its
            // panic: a wait for a condition, not a pause before an assertion.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for JobObserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
