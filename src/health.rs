//! The process's health, as the admin port reports it: which watches have been failing and since
//! when (readiness turns false once one has failed for longer than `--watch-failure-bound`),
//! whether the process is draining for shutdown (readiness false first, so load balancers stop
//! sending), and whether a task it cannot run without has ended (liveness false, and the
//! process exits non-zero).

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

struct Inner {
    failing: Mutex<BTreeMap<String, Instant>>,
    bound: Duration,
    draining: AtomicBool,
    broken: Mutex<Option<String>>,
}

/// Shared by the watches, the supervisor and the admin port. Cheap to clone.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

impl Health {
    pub fn new(watch_failure_bound: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                failing: Mutex::default(),
                bound: watch_failure_bound,
                draining: AtomicBool::new(false),
                broken: Mutex::default(),
            }),
        }
    }

    /// Records that watch `name` failed (its first failure in a row starts the clock).
    pub fn watch_failed(&self, name: &str) {
        self.inner
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_insert_with(Instant::now);
    }

    /// Records that watch `name` works again.
    pub fn watch_recovered(&self, name: &str) {
        self.inner.failing.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    /// Watches that have been failing for longer than the bound, with how long.
    pub fn failing_watches(&self) -> Vec<(String, Duration)> {
        let failing = self.inner.failing.lock().unwrap_or_else(|p| p.into_inner());
        failing
            .iter()
            .map(|(name, since)| (name.clone(), since.elapsed()))
            .filter(|(_, for_how_long)| *for_how_long > self.inner.bound)
            .collect()
    }

    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Records that the process cannot go on (a task it needs ended), and why.
    pub fn break_with(&self, reason: String) {
        self.inner.broken.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(reason);
    }

    pub fn broken(&self) -> Option<String> {
        self.inner.broken.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_watch_counts_as_failing_only_past_the_bound_and_until_it_recovers() {
        let health = Health::new(Duration::from_secs(30));
        health.watch_failed("jobs");
        tokio::time::sleep(Duration::from_secs(20)).await;
        health.watch_failed("jobs");
        assert!(health.failing_watches().is_empty(), "20 s is within the bound; a repeat does not restart the clock");
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(health.failing_watches().iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), vec!["jobs"]);
        health.watch_recovered("jobs");
        assert!(health.failing_watches().is_empty());
    }

    #[test]
    fn the_first_reason_to_stop_is_kept() {
        let health = Health::new(Duration::from_secs(1));
        assert_eq!(health.broken(), None);
        health.break_with("admission ended".into());
        health.break_with("later".into());
        assert_eq!(health.broken().as_deref(), Some("admission ended"));
    }
}
