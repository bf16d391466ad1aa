//! Leader election on a coordination.k8s.io Lease. Leadership is published on a watch channel,
//! which admission reads before every write; a replica that loses the lease (another holder, or
//! no successful renewal within the renew deadline) stops at once.
//!
//! Expiry is judged the way client-go does it, by how long the record has gone unchanged on this
//! replica's own clock, so clock skew between replicas does not matter.

use std::time::Duration;

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

    /// A holder that has not renewed for this long steps down (before others may take over).
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
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
    leader: watch::Sender<bool>,
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

impl LeaderElector {
    pub fn new(client: Client, namespace: &str, settings: LeaseSettings) -> (Self, watch::Receiver<bool>) {
        let (leader, rx) = watch::channel(false);
        (Self { api: Api::namespaced(client, namespace), settings, leader }, rx)
    }

    fn set_leader(&self, leading: bool) {
        let was = self.leader.send_replace(leading);
        if was != leading {
            tracing::info!(lease = %self.settings.name, identity = %self.settings.identity, leading, "leadership changed");
        }
    }

    /// Campaigns and renews until `stop` is set; then, if leading, releases the lease so another
    /// replica takes over at once.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut observed: Option<Observed> = None;
        let mut last_renewal: Option<Instant> = None;
        loop {
            match self.try_once(&mut observed).await {
                Ok(leading) => {
                    if leading {
                        last_renewal = Some(Instant::now());
                    }
                    self.set_leader(leading);
                }
                Err(error) => {
                    tracing::warn!(lease = %self.settings.name, %error, "lease update failed");
                    // Step down once the renew deadline has passed without a renewal.
                    if last_renewal.is_none_or(|t| t.elapsed() > self.settings.renew_deadline()) {
                        self.set_leader(false);
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.settings.retry_period()) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        if *self.leader.borrow() {
            self.set_leader(false);
            self.release().await;
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
    }
}
