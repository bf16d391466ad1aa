//! Kubernetes auth: a caller presents a token the cluster accepts (its service-account token,
//! say); a TokenReview says who it is (only tokens minted for `--auth-audience`, when set) and a
//! SubjectAccessReview whether that identity may do what the request does, per action: `create`,
//! `get`, `list` or `delete` on the virtual resource `launches` in group `job-launcher.dev` in the
//! launcher's namespace. No CRD exists for it, so the permission grants nothing else: whoever may
//! launch may not create Jobs directly, skipping templates, caps and the queue. Per action, not
//! per owner. Answers are cached briefly, in a bounded cache keyed by the token's SHA-256 and the
//! verb.

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

/// What a request does, for Kubernetes auth's per-action check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Launch: `POST /v1/jobs`, `GET /launchjob`.
    Create,
    /// Read one thing: a Job, its log, its Kubernetes Events, a template, a render.
    Get,
    /// Read many: lists, the queue, the event streams.
    List,
    /// Cancel.
    Delete,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Get => "get",
            Self::List => "list",
            Self::Delete => "delete",
        }
    }

    /// The action of a route (its matched path) and method.
    pub fn of(method: &axum::http::Method, route: &str) -> Self {
        use axum::http::Method;
        match (method, route) {
            (&Method::DELETE, _) => Self::Delete,
            (&Method::POST, "/v1/jobs") | (_, "/launchjob") => Self::Create,
            (_, "/v1/jobs" | "/v1/templates" | "/v1/queue" | "/v1/events" | "/v1/jobs/{name}/events") => Self::List,
            _ => Self::Get,
        }
    }
}

/// What the launcher's actions need permission for: a verb per action on `resource` in `group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// One verb for every action instead of one per action: the older, coarser check, for teams
    /// that grant a single verb.
    pub verb_override: Option<String>,
    pub group: String,
    pub resource: String,
    pub namespace: String,
    /// TokenReview audiences: the cluster accepts only tokens minted for one of them.
    pub audiences: Vec<String>,
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

/// Verdicts by the SHA-256 of their token and the verb asked, with when they were asked.
type VerdictCache = HashMap<([u8; 32], &'static str), (Verdict, Instant)>;

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

    /// Who the token belongs to and whether they may do `action`; an error when the cluster
    /// cannot be asked.
    pub async fn review(&self, token: &str, action: Action) -> Result<Verdict, Error> {
        let key: ([u8; 32], &'static str) = (Sha256::digest(token.as_bytes()).into(), action.verb());
        if let Some((verdict, at)) = self.lock().get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(verdict.clone());
        }
        let verdict = self.ask(token, action).await?;
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

    async fn ask(&self, token: &str, action: Action) -> Result<Verdict, Error> {
        let p = &self.permission;
        let audiences = (!p.audiences.is_empty()).then(|| p.audiences.clone());
        let review =
            TokenReview { spec: TokenReviewSpec { token: token.to_string(), audiences }, ..TokenReview::default() };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(Error::from_kube)?;
        let Some(status) = reviewed.status.filter(|s| s.authenticated == Some(true)) else {
            return Ok(Verdict::Unauthenticated);
        };
        let user = status.user.unwrap_or_default();
        let username = user.username.clone().unwrap_or_default();
        let verb = p.verb_override.clone().unwrap_or_else(|| action.verb().to_string());
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.clone()),
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
            let mut reason = format!("{username} may not {verb} {}{group} in namespace {}", p.resource, p.namespace);
            if let Some(why) = status.reason.filter(|r| !r.is_empty()) {
                reason.push_str(&format!(" ({why})"));
            }
            Verdict::Denied { username, reason }
        })
    }
}
