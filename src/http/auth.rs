//! Bearer-token auth from a file in kube-apiserver's static token format,
//! `token,user,uid[,"group1,group2"]` (blank lines and `#` comments ignored; a line with only a
//! token names its caller `token:<first 8 hex of its SHA-256>`), re-read when the file changes.
//! Tokens are kept as SHA-256 digests and compared in constant time, so neither the comparison's
//! timing nor a memory dump gives a token away. Every named caller may do everything: the file
//! says who called, not what they may do.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::Response,
};
use sha2::{Digest, Sha256};

use super::{
    error::AppError,
    kube_auth::{Action, KubernetesAuth, Verdict},
};
use crate::launch::ANONYMOUS;

type TokenDigest = [u8; 32];

/// One accepted token: its digest and the caller it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    digest: TokenDigest,
    pub user: String,
}

#[derive(Clone)]
pub struct TokenFile {
    path: Arc<PathBuf>,
    entries: Arc<RwLock<Vec<TokenEntry>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the token file {path}: {source}")]
pub struct TokenFileError {
    path: String,
    #[source]
    source: std::io::Error,
}

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// The fields of one CSV line: commas separate, double quotes group (`""` is a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields.into_iter().map(|f| f.trim().to_string()).collect()
}

/// The caller of a token whose line names no user.
pub fn unnamed_caller(token: &str) -> String {
    let hex: String = digest(token).iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("token:{hex}")
}

/// The tokens of a file's text: `token[,user[,uid[,"groups"]]]` per line; blank lines and `#`
/// comments skipped.
pub fn parse_tokens(text: &str) -> Vec<TokenEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let fields = csv_fields(line);
            let token = fields.first().filter(|t| !t.is_empty())?;
            let user = fields.get(1).filter(|u| !u.is_empty()).cloned().unwrap_or_else(|| unnamed_caller(token));
            Some(TokenEntry { digest: digest(token), user })
        })
        .collect()
}

/// Equal in time that depends only on the length, which is fixed.
fn constant_time_eq(a: &TokenDigest, b: &TokenDigest) -> bool {
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let file = Self { path: Arc::new(path.to_path_buf()), entries: Arc::default() };
        file.reload()?;
        Ok(file)
    }

    fn reload(&self) -> Result<usize, TokenFileError> {
        let text = std::fs::read_to_string(&*self.path)
            .map_err(|source| TokenFileError { path: self.path.display().to_string(), source })?;
        let entries = parse_tokens(&text);
        let count = entries.len();
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = entries;
        Ok(count)
    }

    /// The caller `token` names, when it is one of the file's.
    pub fn caller(&self, token: &str) -> Option<String> {
        let presented = digest(token);
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        // Look at every token, so timing does not tell which one matched.
        entries
            .iter()
            .fold(None, |found, e| if constant_time_eq(&e.digest, &presented) { Some(e.user.clone()) } else { found })
    }

    /// Re-reads the file whenever its modification time or size changes, until dropped. A file
    /// that cannot be read keeps the tokens last read, with a warning.
    pub async fn watch(self) {
        let stamp =
            |p: &Path| std::fs::metadata(p).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        // Unknown at first, so the first tick reads the file again: it may have changed between
        // load and now.
        let mut last = None;
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            let now = stamp(&self.path);
            if now != last {
                last = now;
                match self.reload() {
                    Ok(count) => tracing::info!(path = %self.path.display(), tokens = count, "auth tokens reloaded"),
                    Err(error) => tracing::warn!(%error, "keeping the tokens last read"),
                }
            }
        }
    }
}

const CHALLENGE: &str = "Bearer realm=\"kube-job-launcher\"";
const CHALLENGE_INVALID: &str = "Bearer realm=\"kube-job-launcher\", error=\"invalid_token\"";

/// How the API decides who may call it.
#[derive(Clone)]
pub enum Authenticator {
    TokenFile(TokenFile),
    Kubernetes(KubernetesAuth),
}

/// Who made a request: the token's user, the Kubernetes username, or `anonymous` without auth.
/// Recorded on the Job and in the log; idempotency keys are scoped to it.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned().unwrap_or_else(|| Caller(ANONYMOUS.to_string())))
    }
}

fn unauthorized(detail: &str, challenge: &'static str) -> AppError {
    let mut e = AppError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", detail);
    e.www_authenticate = Some(challenge);
    e
}

/// Middleware: 401 with `WWW-Authenticate` without an accepted bearer token; 403 when the
/// token's identity may not launch (Kubernetes mode).
pub async fn require_auth(
    State(auth): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Result<Response, AppError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .map(String::from);
    let Some(token) = presented.filter(|t| !t.is_empty()) else {
        return Err(unauthorized("this API needs a bearer token: `Authorization: Bearer <token>`", CHALLENGE));
    };
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let action = Action::of(request.method(), &route);
    match &auth {
        Authenticator::TokenFile(tokens) => {
            let Some(user) = tokens.caller(&token) else {
                return Err(unauthorized("the bearer token is not valid", CHALLENGE_INVALID));
            };
            request.extensions_mut().insert(Caller(user));
        }
        Authenticator::Kubernetes(kubernetes) => match kubernetes.review(&token, action).await? {
            Verdict::Allowed { username } => {
                tracing::info!(caller = %username, "authenticated");
                request.extensions_mut().insert(Caller(username));
            }
            Verdict::Denied { username, reason } => {
                tracing::info!(caller = %username, %reason, "forbidden");
                return Err(AppError::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", reason));
            }
            Verdict::Unauthenticated => {
                return Err(unauthorized("the cluster does not accept this token", CHALLENGE_INVALID));
            }
        },
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_in_the_apiservers_static_token_format() {
        let entries = parse_tokens(
            "# ops team\n  alpha,alice,1001,\"ops,admins\"  \n\nbeta\n#gamma\n\"quoted,token\",bob,1002\ndelta,,1003\n",
        );
        let users: Vec<&str> = entries.iter().map(|e| e.user.as_str()).collect();
        assert_eq!(users, vec!["alice", unnamed_caller("beta").as_str(), "bob", unnamed_caller("delta").as_str()]);
        assert_eq!(entries[2].digest, digest("quoted,token"), "a quoted token may hold a comma");
        let unnamed = unnamed_caller("beta");
        assert!(unnamed.starts_with("token:") && unnamed.len() == "token:".len() + 8, "{unnamed}");
        assert_ne!(unnamed, unnamed_caller("gamma"));
    }

    #[test]
    fn only_listed_tokens_are_accepted_and_name_their_caller() {
        let file = TokenFile {
            path: Arc::new(PathBuf::new()),
            entries: Arc::new(RwLock::new(parse_tokens("alpha,alice,1\nbeta,bob,2"))),
        };
        assert_eq!(file.caller("alpha").as_deref(), Some("alice"));
        assert_eq!(file.caller("beta").as_deref(), Some("bob"));
        for refused in ["gamma", "alph", "", "# ops team", "alpha,alice,1"] {
            assert_eq!(file.caller(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn routes_map_to_the_action_kubernetes_auth_checks() {
        use axum::http::Method;
        let cases = [
            (Method::POST, "/v1/jobs", Action::Create),
            (Method::GET, "/launchjob", Action::Create),
            (Method::GET, "/v1/jobs/{name}", Action::Get),
            (Method::GET, "/v1/jobs/{name}/logs", Action::Get),
            (Method::GET, "/v1/templates/{name}", Action::Get),
            (Method::POST, "/v1/templates/{name}/render", Action::Get),
            (Method::GET, "/v1/jobs", Action::List),
            (Method::GET, "/v1/templates", Action::List),
            (Method::GET, "/v1/queue", Action::List),
            (Method::GET, "/v1/events", Action::List),
            (Method::GET, "/v1/jobs/{name}/events", Action::List),
            (Method::DELETE, "/v1/jobs/{name}", Action::Delete),
        ];
        for (method, route, action) in cases {
            assert_eq!(Action::of(&method, route), action, "{method} {route}");
        }
    }

    #[test]
    fn constant_time_comparison_agrees_with_equality() {
        let a = digest("a");
        assert!(constant_time_eq(&a, &digest("a")));
        assert!(!constant_time_eq(&a, &digest("b")));
    }

    #[tokio::test]
    async fn a_changed_file_is_read_again() {
        let dir = std::env::temp_dir().join(format!("kjl-auth-{}", crate::launch::naming::random_suffix()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("tokens");
        std::fs::write(&path, "first\n").expect("write");
        let file = TokenFile::load(&path).expect("load");
        assert!(file.caller("first").is_some());
        let watcher = tokio::spawn(file.clone().watch());
        std::fs::write(&path, "second-and-longer\n").expect("rewrite");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while file.caller("second-and-longer").is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        watcher.abort();
        assert!(file.caller("second-and-longer").is_some());
        assert!(file.caller("first").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
