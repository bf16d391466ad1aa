//! Scale mode, the original launcher's and KEDA's model: the Jobs consume the messages
//! themselves, and the launcher keeps as many Jobs coming as there are messages waiting for one.
//!
//! KEDA's ScaledJob over-creates when pods start slowly, because it does not count Jobs that
//! exist but have not taken their message yet. Here those are subtracted.

use std::{collections::BTreeMap, time::Duration};

use aws_sdk_sqs::types::QueueAttributeName;
use jiff::Timestamp;
use tokio::sync::watch;

use super::describe;
use crate::{
    api::{JobState, LaunchRequest},
    launch::{Launcher, Origin, Source, sqs_caller},
    telemetry::{Metrics, OutcomeLabels},
};

/// How many Jobs to launch now: the visible messages that no Job is about to take, capped by the
/// per-poll limit and by the room admission leaves (None: no cap).
pub fn jobs_to_launch(visible: u64, waiting_jobs: u64, max_per_poll: u64, room: Option<u64>) -> u64 {
    visible.saturating_sub(waiting_jobs).min(max_per_poll).min(room.unwrap_or(u64::MAX))
}

/// Whether a Job is still going to take a message: not started (queued or pending), or running
/// for less than `grace` (a worker takes its message right after it starts).
pub fn is_waiting_for_a_message(
    state: JobState,
    running_since: Option<Timestamp>,
    now: Timestamp,
    grace: Duration,
) -> bool {
    match state {
        JobState::Queued | JobState::Pending => true,
        JobState::Running => {
            running_since.is_none_or(|since| now.duration_since(since).as_secs_f64() < grace.as_secs_f64())
        }
        JobState::Succeeded | JobState::Failed | JobState::Cancelled => false,
    }
}

#[derive(Debug, Clone)]
pub struct ScaleSettings {
    pub queue_url: String,
    pub template: Option<String>,
    pub interval: Duration,
    pub max_per_poll: u32,
    pub start_grace: Duration,
    /// Environment the Jobs need to reach the queue (SQS_QUEUE_URL, AWS_REGION, AWS_ENDPOINT_URL).
    pub job_env: BTreeMap<String, String>,
}

pub struct ScalePoller {
    sqs: aws_sdk_sqs::Client,
    launcher: Launcher,
    settings: ScaleSettings,
    metrics: Metrics,
}

impl ScalePoller {
    pub fn new(sqs: aws_sdk_sqs::Client, launcher: Launcher, settings: ScaleSettings, metrics: Metrics) -> Self {
        Self { sqs, launcher, settings, metrics }
    }

    /// This queue's Jobs that will still take a message.
    fn waiting_jobs(&self) -> u64 {
        let now = Timestamp::now();
        // Only Jobs that hold or wait for an admission slot can still take a message: the index
        // keeps those apart, so a poll does not read every finished Job.
        self.launcher.jobs().read(|s| {
            s.in_slots()
                .map(|(j, _)| j)
                .filter(|j| j.sqs_queue.as_deref() == Some(self.settings.queue_url.as_str()) && !j.deleting)
                .filter(|j| {
                    let pods = s.pods_of(&j.name);
                    let running_since = pods.iter().filter_map(|p| p.running_since).max();
                    is_waiting_for_a_message(j.state(&pods), running_since, now, self.settings.start_grace)
                })
                .count() as u64
        })
    }

    /// Reads the queue's depth and launches what is missing. Returns how many Jobs it launched.
    pub async fn poll_once(&self) -> Result<u64, String> {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.settings.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let visible: u64 = attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let waiting = self.waiting_jobs();
        let want =
            jobs_to_launch(visible, waiting, u64::from(self.settings.max_per_poll), self.launcher.admission_room());
        if want == 0 {
            return Ok(0);
        }
        tracing::info!(queue = %self.settings.queue_url, visible, waiting, launching = want, "scaling");
        let request = LaunchRequest { template: self.settings.template.clone(), ..LaunchRequest::default() };
        let origin = Origin {
            sqs_queue: Some(self.settings.queue_url.clone()),
            launcher_env: self.settings.job_env.clone(),
            ..Origin::new(Source::Sqs, sqs_caller(&self.settings.queue_url))
        };
        let mut launched = 0;
        for _ in 0..want {
            match self.launcher.launch(&request, &origin).await {
                Ok(_) => launched += 1,
                Err(e) => {
                    self.metrics
                        .sqs_scale_launches
                        .get_or_create(&OutcomeLabels { outcome: e.metric_label().into() })
                        .inc();
                    return Err(format!("launched {launched} of {want}: {e}"));
                }
            }
        }
        self.metrics.sqs_scale_launches.get_or_create(&OutcomeLabels { outcome: "created".into() }).inc_by(launched);
        Ok(launched)
    }

    /// Polls every interval until `stop` is set.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        // Until the index has listed the Jobs, those still waiting for a message are unknown and
        // the poll would launch too many.
        if !self.launcher.ready(&stop).await {
            return;
        }
        tracing::info!(queue = %self.settings.queue_url, interval = ?self.settings.interval, "SQS scale poller started");
        let mut ticker = tokio::time::interval(self.settings.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if !self.launcher.may_lead() {
                continue;
            }
            if let Err(e) = self.poll_once().await {
                tracing::warn!(queue = %self.settings.queue_url, error = %e, "scale poll failed");
            }
        }
        tracing::info!(queue = %self.settings.queue_url, "SQS scale poller stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(5);

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn slow_starting_pods_are_not_launched_again() {
        // 20 messages, 20 Jobs whose pods have not started: nothing more.
        assert_eq!(jobs_to_launch(20, 20, 100, None), 0);
        let now = at(100);
        assert!(is_waiting_for_a_message(JobState::Pending, None, now, GRACE));
        assert!(is_waiting_for_a_message(JobState::Queued, None, now, GRACE));
    }

    #[test]
    fn a_just_started_job_has_not_taken_its_message_yet() {
        let now = at(100);
        assert!(is_waiting_for_a_message(JobState::Running, Some(at(98)), now, GRACE));
        assert!(!is_waiting_for_a_message(JobState::Running, Some(at(90)), now, GRACE));
    }

    #[test]
    fn failed_jobs_do_not_count_so_their_returning_message_gets_a_new_job() {
        let now = at(100);
        assert!(!is_waiting_for_a_message(JobState::Failed, Some(at(10)), now, GRACE));
        assert!(!is_waiting_for_a_message(JobState::Succeeded, None, now, GRACE));
        // Its message is visible again, and no Job waits for it.
        assert_eq!(jobs_to_launch(1, 0, 10, None), 1);
    }

    #[test]
    fn in_flight_messages_are_not_visible_and_need_no_job() {
        // 5 messages being worked on (not visible) by 5 running Jobs, 3 new ones waiting.
        assert_eq!(jobs_to_launch(3, 0, 10, None), 3);
    }

    #[test]
    fn a_queue_that_drained_between_polls_launches_nothing() {
        assert_eq!(jobs_to_launch(0, 4, 10, None), 0);
        assert_eq!(jobs_to_launch(2, 4, 10, None), 0);
    }

    #[test]
    fn launches_are_capped_per_poll_and_by_admission() {
        assert_eq!(jobs_to_launch(100, 10, 25, None), 25);
        assert_eq!(jobs_to_launch(100, 10, 25, Some(7)), 7);
        assert_eq!(jobs_to_launch(100, 10, 25, Some(0)), 0);
    }
}
