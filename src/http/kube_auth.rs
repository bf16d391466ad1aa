//! Kubernetes auth: a caller presents a token the cluster accepts (its service-account token,
//! say); a TokenReview says who it is and a SubjectAccessReview whether that identity may
//! launch (by default: `create` `jobs` in group `batch` in the launcher's namespace; a team can
//! point it at a resource of its own and grant it with an RBAC rule). Answers are cached briefly,
//! in a bounded cache keyed by the token's SHA-256.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec},
    authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
};
use kube::{Api, Client, api::PostParams};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::error::Error;

/// What a launch needs permission for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: String,
}

/// The answer for one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed {
        username: String,
    },
    Denied {
        username: String,
        reason: String,
    },
    /// The cluster does not accept the token.
    Unauthenticated,
}

/// Verdicts by the SHA-256 of their token, with when they were asked.
type VerdictCache = HashMap<[u8; 32], (Verdict, Instant)>;

/// Entries kept at most; when full, expired entries go first, then the oldest.
pub const MAX_CACHE_ENTRIES: usize = 10_000;

#[derive(Clone)]
pub struct KubernetesAuth {
    client: Client,
    permission: Arc<Permission>,
    ttl: Duration,
    cache: Arc<Mutex<VerdictCache>>,
}

impl KubernetesAuth {
    pub fn new(client: Client, permission: Permission, ttl: Duration) -> Self {
        Self { client, permission: Arc::new(permission), ttl, cache: Arc::default() }
    }

    pub fn permission(&self) -> &Permission {
        &self.permission
    }

    /// Who the token belongs to and whether they may launch; an error when the cluster cannot
    /// be asked.
    pub async fn review(&self, token: &str) -> Result<Verdict, Error> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((verdict, at)) = self.lock().get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(verdict.clone());
        }
        let verdict = self.ask(token).await?;
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHE_ENTRIES {
            let ttl = self.ttl;
            cache.retain(|_, (_, at)| at.elapsed() < ttl);
            if cache.len() >= MAX_CACHE_ENTRIES
                && let Some(oldest) = cache.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k)
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(key, (verdict.clone(), Instant::now()));
        Ok(verdict)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VerdictCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn ask(&self, token: &str) -> Result<Verdict, Error> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: token.to_string(), audiences: None },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(Error::from_kube)?;
        let Some(status) = reviewed.status.filter(|s| s.authenticated == Some(true)) else {
            return Ok(Verdict::Unauthenticated);
        };
        let user = status.user.unwrap_or_default();
        let username = user.username.clone().unwrap_or_default();
        let p = &self.permission;
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(p.verb.clone()),
                    group: Some(p.group.clone()),
                    resource: Some(p.resource.clone()),
                    namespace: Some(p.namespace.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answered = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await
            .map_err(Error::from_kube)?;
        let status = answered.status.unwrap_or_default();
        Ok(if status.allowed {
            Verdict::Allowed { username }
        } else {
            let group = if p.group.is_empty() { String::new() } else { format!(".{}", p.group) };
            let mut reason =
                format!("{username} may not {} {}{group} in namespace {}", p.verb, p.resource, p.namespace);
            if let Some(why) = status.reason.filter(|r| !r.is_empty()) {
                reason.push_str(&format!(" ({why})"));
            }
            Verdict::Denied { username, reason }
        })
    }
}
