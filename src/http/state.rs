//! What every handler shares: the launcher and the metrics, with the views they derive.

use std::{sync::Arc, time::Duration};

use axum::http::StatusCode;
use prometheus_client::metrics::histogram::Histogram;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    time::Instant,
};

use super::error::AppError;
use crate::{
    admission,
    api::{JobState, JobView, QueueView},
    health::Health,
    launch::Launcher,
    telemetry::Metrics,
};

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    pub launcher: Launcher,
    pub metrics: Metrics,
    pub health: Health,
    pub stream_slots: StreamSlots,
    /// Set when the launcher stops: streams end then.
    pub stop: watch::Receiver<bool>,
}

impl AppState {
    /// A managed Job's view, from the index.
    pub fn job_view(&self, name: &str) -> Option<JobView> {
        self.launcher.jobs().view(name).map(|v| self.with_queue_position(v))
    }

    /// Adds the queue position of a queued Job.
    pub fn with_queue_position(&self, mut view: JobView) -> JobView {
        if view.state == JobState::Queued {
            view.queue_position = self.launcher.jobs().queue_positions().get(view.name.as_str()).copied();
        }
        view
    }

    /// Adds the queue positions of the queued Jobs among `views`, from one ordering of the queue.
    pub fn with_queue_positions(&self, mut views: Vec<JobView>) -> Vec<JobView> {
        if views.iter().any(|v| v.state == JobState::Queued) {
            let positions = self.launcher.jobs().queue_positions();
            for v in &mut views {
                v.queue_position = positions.get(v.name.as_str()).copied();
            }
        }
        views
    }

    /// Queued and active Jobs, in all and per template, with the caps and the leader.
    pub fn queue_view(&self) -> QueueView {
        let launcher = &self.launcher;
        let candidates = launcher.jobs().read(admission::candidates);
        let caps = admission::template_caps(launcher.templates(), launcher.jobs());
        admission::queue_status(&candidates, launcher.settings().caps, &caps, launcher.leadership())
    }

    /// What readiness still waits for; empty when ready.
    pub fn not_ready(&self) -> Vec<String> {
        let mut waiting = Vec::new();
        if !self.launcher.jobs().is_synced() {
            waiting.push("the Job and pod watches to sync".to_string());
        }
        if !self.launcher.templates().is_synced() {
            waiting.push("the template ConfigMaps to load".to_string());
        }
        for (watch, for_how_long) in self.health.failing_watches() {
            waiting.push(format!("the {watch} watch, failing for {}s", for_how_long.as_secs()));
        }
        waiting
    }
}

/// How long a client refused for want of stream slots is asked to wait.
const STREAMS_FULL_RETRY: Duration = Duration::from_secs(5);

/// The slots for streams open at once.
#[derive(Clone)]
pub struct StreamSlots {
    slots: Arc<Semaphore>,
    max: usize,
    delay: Histogram,
}

/// One open stream's slot, and where it records how late its events go out.
pub struct StreamSlot {
    _permit: OwnedSemaphorePermit,
    delay: Histogram,
}

impl StreamSlot {
    /// Records that an event of a change the launcher saw at `seen` leaves now.
    pub fn sent(&self, seen: Instant) {
        self.delay.observe(seen.elapsed().as_secs_f64());
    }
}

impl StreamSlots {
    pub fn new(max: usize, delay: Histogram) -> Self {
        Self { slots: Arc::new(Semaphore::new(max)), max, delay }
    }

    /// How many streams are open now.
    pub fn open(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }

    pub fn take(&self) -> Result<StreamSlot, AppError> {
        let permit = self.slots.clone().try_acquire_owned().map_err(|_| {
            AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too-many-streams",
                "Too many streams",
                "the launcher serves as many streams as --max-streams allows; retry shortly",
            )
            .retry_after(STREAMS_FULL_RETRY)
        })?;
        Ok(StreamSlot { _permit: permit, delay: self.delay.clone() })
    }
}
