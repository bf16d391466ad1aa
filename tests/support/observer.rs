//! A watch on a namespace's Jobs that records, event by event, what admission did.

use std::time::Duration;

use kube::Api;

use super::cluster::{TestNamespace, wait_until};

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
    /// Every admission as first seen: the Job, the replica that admitted it (its
    /// `admitted-by` annotation), and when the watch saw it.
    pub admissions: Vec<(String, String, std::time::Instant)>,
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
        use kube::runtime::watcher;
        let stats = std::sync::Arc::new(std::sync::Mutex::new(JobStats::default()));
        let api: Api<Job> = namespace.api();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let shared = stats.clone();
        let task = tokio::spawn(async move {
            // name -> (template, suspended, finished)
            let mut jobs: std::collections::BTreeMap<String, (String, bool, bool)> = Default::default();
            let mut instances: std::collections::BTreeMap<String, String> = Default::default();
            let mut ready = Some(ready_tx);
            let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Ok(Some(event)) = stream.try_next().await {
                let (job, deleted) = match event {
                    watcher::Event::Apply(j) | watcher::Event::InitApply(j) => (j, false),
                    watcher::Event::Delete(j) => (j, true),
                    watcher::Event::InitDone => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    watcher::Event::Init => continue,
                };
                let name = job.metadata.name.clone().unwrap_or_default();
                if deleted {
                    jobs.remove(&name);
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
        wait_until(timeout, &format!("{n} Jobs to finish"), || async { self.stats().finished >= n }).await;
        self.stats()
    }
}

impl Drop for JobObserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
