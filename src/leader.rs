//! Leader election on a coordination.k8s.io Lease, judged by this replica's own monotonic clock.
//!
//! A replica leads until its last successful renew is older than the renew deadline, timed from
//! when that renew's cycle was *sent*: a renew stuck on a half-open connection cannot keep a
//! replica leading, because nothing moves the deadline but a renew that got through. That moment
//! comes before any other replica may take the Lease (they take it only after watching it go
//! unchanged for the whole lease duration, counted from when they saw our renew, which was after
//! we sent it). Every Lease call is bounded well inside the renew deadline. [`Leadership`] is
//! what the rest of the launcher asks, before every write only a leader may make.
//!
//! Expiry of another holder's Lease is judged the way client-go does it, by how long the record
//! has gone unchanged on this replica's own clock, so clock skew between replicas does not matter.
//!
//! Kept rather than a crate: kube-lease-manager and kubert's lease module both judge expiry by
//! wall-clock time against the Lease's renewTime (clock skew between replicas counts), and
//! neither exposes the monotonic deadline admission must check before each write
//! (kube-lease-manager's calls are also unbounded).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{Api, Client, api::PostParams};
use tokio::{sync::watch, time::Instant};

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

impl LeaseSettings {
    /// How often the holder renews, and others look.
    pub fn retry_period(&self) -> Duration {
        (self.duration / 5).max(Duration::from_millis(200))
    }

    /// A holder whose last successful renew is older than this stops leading (before others may
    /// take over).
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// The longest one Lease call may take: well inside the renew deadline, so a stalled call
    /// leaves time for another attempt.
    pub fn call_timeout(&self) -> Duration {
        self.retry_period()
    }

    /// The longest a write made under leadership may be outstanding: started before the renew
    /// deadline, it cannot still be in flight when another replica may take the Lease.
    pub fn write_bound(&self) -> Duration {
        self.duration.saturating_sub(self.renew_deadline())
    }
}

/// Whether this replica leads, and until when, by its own monotonic clock. Cheap to clone.
#[derive(Clone)]
pub struct Leadership {
    until: Arc<Mutex<Option<Instant>>>,
    changes: watch::Receiver<bool>,
    write_bound: Duration,
    identity: Arc<str>,
}

impl Leadership {
    /// A leadership that never leads: for parts built without an elector.
    pub fn never() -> Self {
        let (_, changes) = watch::channel(false);
        Self { until: Arc::default(), changes, write_bound: Duration::ZERO, identity: Arc::from("") }
    }

    /// Until when this replica may act as the leader; None when it does not lead now.
    pub fn valid_until(&self) -> Option<Instant> {
        let until = *self.until.lock().unwrap_or_else(|p| p.into_inner());
        until.filter(|t| Instant::now() < *t)
    }

    pub fn is_leading(&self) -> bool {
        self.valid_until().is_some()
    }

    /// The longest a write made while leading may take (see [`LeaseSettings::write_bound`]).
    pub fn write_bound(&self) -> Duration {
        self.write_bound
    }

    /// This replica's name in the Lease.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// A receiver that sees `true` when leadership is gained and `false` when it is lost.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changes.clone()
    }

    #[cfg(test)]
    pub fn leading_for(duration: Duration, write_bound: Duration) -> Self {
        let (_, changes) = watch::channel(true);
        Self {
            until: Arc::new(Mutex::new(Some(Instant::now() + duration))),
            changes,
            write_bound,
            identity: Arc::from("test"),
        }
    }
}

/// What a replica last saw of the lease, and when.
struct Observed {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    at: Instant,
}

pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    until: Arc<Mutex<Option<Instant>>>,
    changes: watch::Sender<bool>,
}

/// The decision for one look at the lease. Pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Free, or its holder stopped renewing: take it.
    Acquire,
    /// Someone else holds it.
    Follow,
}

pub fn decide(me: &str, holder: Option<&str>, unchanged_for: Duration, lease_duration: Duration) -> Decision {
    match holder {
        Some(h) if h == me => Decision::Renew,
        None | Some("") => Decision::Acquire,
        Some(_) if unchanged_for > lease_duration => Decision::Acquire,
        Some(_) => Decision::Follow,
    }
}

/// Why one look at the lease failed.
#[derive(Debug, thiserror::Error)]
enum LeaseCallError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl LeaderElector {
    /// The elector for the Lease `settings.name` in `namespace`, through `client` (a client of the
    /// Lease's own, so its calls do not queue behind watches and lists), and the leadership it
    /// publishes.
    pub fn new(client: Client, namespace: &str, settings: LeaseSettings) -> (Self, Leadership) {
        let until = Arc::new(Mutex::new(None));
        let (changes, receiver) = watch::channel(false);
        let leadership = Leadership {
            until: until.clone(),
            changes: receiver,
            write_bound: settings.write_bound(),
            identity: Arc::from(settings.identity.as_str()),
        };
        (Self { api: Api::namespaced(client, namespace), settings, until, changes }, leadership)
    }

    fn set_until(&self, until: Option<Instant>) {
        *self.until.lock().unwrap_or_else(|p| p.into_inner()) = until;
        self.publish();
    }

    /// Publishes a change of leadership (gained, lost, or expired), with a log line.
    fn publish(&self) {
        let leading = self.until.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|t| Instant::now() < t);
        let was = self.changes.send_replace(leading);
        if was != leading {
            tracing::info!(lease = %self.settings.name, identity = %self.settings.identity, leading, "leadership changed");
        }
    }

    /// Campaigns and renews until `stop` is set; then, if leading, releases the lease so another
    /// replica takes over at once.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut observed: Option<Observed> = None;
        loop {
            let sent = Instant::now();
            let timeout = self.settings.call_timeout();
            let outcome = match tokio::time::timeout(timeout, self.try_once(&mut observed)).await {
                Ok(result) => result.map_err(LeaseCallError::from),
                Err(_) => Err(LeaseCallError::Timeout(timeout)),
            };
            match outcome {
                Ok(true) => self.set_until(Some(sent + self.settings.renew_deadline())),
                Ok(false) => self.set_until(None),
                // The deadline of the last renew that got through still stands; it expires by
                // itself.
                Err(error) => tracing::warn!(lease = %self.settings.name, %error, "lease update failed"),
            }
            let next = Instant::now() + self.settings.retry_period();
            let until = *self.until.lock().unwrap_or_else(|p| p.into_inner());
            // Wake at the deadline too, so the loss of leadership is published when it happens.
            let wake = until.filter(|t| *t > Instant::now()).map_or(next, |t| t.min(next));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            self.publish();
        }
        let was_leading = self.until.lock().unwrap_or_else(|p| p.into_inner()).take().is_some();
        self.publish();
        if was_leading {
            let timeout = self.settings.call_timeout();
            if tokio::time::timeout(timeout, self.release()).await.is_err() {
                tracing::warn!(lease = %self.settings.name, "cannot release the lease in time; it expires instead");
            }
        }
    }

    /// One look at the lease: renew, acquire, or follow. Returns whether we lead.
    async fn try_once(&self, observed: &mut Option<Observed>) -> Result<bool, kube::Error> {
        let me = &self.settings.identity;
        let Some(current) = self.api.get_opt(&self.settings.name).await? else {
            let lease = self.lease(None, 0);
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone();
        let renew_time = spec.renew_time.as_ref().map(|t| t.0);
        let changed = observed.as_ref().is_none_or(|o| o.holder != holder || o.renew_time != renew_time);
        if changed {
            *observed = Some(Observed { holder: holder.clone(), renew_time, at: Instant::now() });
        }
        let unchanged_for = observed.as_ref().map(|o| o.at.elapsed()).unwrap_or_default();
        let duration =
            spec.lease_duration_seconds.map(|s| Duration::from_secs(s.max(1) as u64)).unwrap_or(self.settings.duration);
        match decide(me, holder.as_deref(), unchanged_for, duration) {
            Decision::Follow => Ok(false),
            decision => {
                let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(decision == Decision::Acquire);
                let mut lease = self.lease(spec.acquire_time.filter(|_| decision == Decision::Renew), transitions);
                // Optimistic concurrency: the replace fails if someone else wrote in between.
                lease.metadata.resource_version = current.metadata.resource_version.clone();
                match self.api.replace(&self.settings.name, &PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn lease(&self, acquired: Option<MicroTime>, transitions: i32) -> Lease {
        let now = MicroTime(Timestamp::now());
        Lease {
            metadata: ObjectMeta { name: Some(self.settings.name.clone()), ..ObjectMeta::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.settings.identity.clone()),
                lease_duration_seconds: Some(self.settings.duration.as_secs().max(1) as i32),
                acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
                renew_time: Some(now),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }

    /// Gives the lease up: empties the holder, so the next replica to look takes it.
    async fn release(&self) {
        let Ok(Some(mut current)) = self.api.get_opt(&self.settings.name).await else { return };
        let Some(spec) = current.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        match self.api.replace(&self.settings.name, &PostParams::default(), &current).await {
            Ok(_) => tracing::info!(lease = %self.settings.name, "lease released"),
            Err(error) => {
                tracing::warn!(lease = %self.settings.name, %error, "cannot release the lease; it expires instead")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn the_holder_renews_and_others_follow_until_it_expires() {
        assert_eq!(decide("a", Some("a"), Duration::from_secs(100), D), Decision::Renew);
        assert_eq!(decide("b", Some("a"), Duration::from_secs(3), D), Decision::Follow);
        assert_eq!(decide("b", Some("a"), Duration::from_secs(16), D), Decision::Acquire);
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        assert_eq!(decide("b", None, Duration::ZERO, D), Decision::Acquire);
        assert_eq!(decide("b", Some(""), Duration::ZERO, D), Decision::Acquire);
    }

    #[test]
    fn timings_keep_the_holder_stepping_down_before_others_take_over() {
        let s = LeaseSettings { name: "l".into(), identity: "a".into(), duration: D };
        assert!(s.renew_deadline() < s.duration);
        assert!(s.retry_period() * 2 < s.renew_deadline(), "several renewal attempts fit in the deadline");
        assert!(s.call_timeout() * 3 <= s.renew_deadline(), "a stalled call leaves room for others");
        assert_eq!(s.renew_deadline() + s.write_bound(), s.duration, "a write started in time ends before a takeover");
    }

    #[tokio::test(start_paused = true)]
    async fn leadership_ends_at_its_deadline_by_the_clock_alone() {
        let leadership = Leadership::leading_for(Duration::from_secs(10), Duration::from_secs(5));
        assert!(leadership.is_leading());
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(leadership.is_leading());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!leadership.is_leading(), "no renew got through: no leadership, whatever anyone was told");
        assert!(!Leadership::never().is_leading());
    }
}
