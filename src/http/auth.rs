//! Bearer-token auth from a file: one token per line (blank lines and `#` comments ignored),
//! re-read when the file changes. Tokens are kept as SHA-256 digests and compared in constant
//! time, so neither the comparison's timing nor a memory dump gives a token away.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::Response,
};
use sha2::{Digest, Sha256};

use super::{
    error::AppError,
    kube_auth::{KubernetesAuth, Verdict},
};

type TokenDigest = [u8; 32];

#[derive(Clone)]
pub struct TokenFile {
    path: Arc<PathBuf>,
    digests: Arc<RwLock<Vec<TokenDigest>>>,
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

/// Tokens in a file's text: one per line, trimmed; blank lines and `#` comments skipped.
pub fn parse_tokens(text: &str) -> Vec<TokenDigest> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(digest).collect()
}

/// Equal in time that depends only on the length, which is fixed.
fn constant_time_eq(a: &TokenDigest, b: &TokenDigest) -> bool {
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let file = Self { path: Arc::new(path.to_path_buf()), digests: Arc::default() };
        file.reload()?;
        Ok(file)
    }

    fn reload(&self) -> Result<usize, TokenFileError> {
        let text = std::fs::read_to_string(&*self.path)
            .map_err(|source| TokenFileError { path: self.path.display().to_string(), source })?;
        let digests = parse_tokens(&text);
        let count = digests.len();
        *self.digests.write().unwrap_or_else(|p| p.into_inner()) = digests;
        Ok(count)
    }

    /// Whether `token` is one of the file's.
    pub fn accepts(&self, token: &str) -> bool {
        let presented = digest(token);
        let digests = self.digests.read().unwrap_or_else(|p| p.into_inner());
        // Look at every token, so timing does not tell which one matched.
        digests.iter().fold(false, |found, d| constant_time_eq(d, &presented) | found)
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

/// Who made a request, when the auth mode can tell: recorded on the Job and in the log.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

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
    match &auth {
        Authenticator::TokenFile(tokens) => {
            if !tokens.accepts(&token) {
                return Err(unauthorized("the bearer token is not valid", CHALLENGE_INVALID));
            }
        }
        Authenticator::Kubernetes(kubernetes) => match kubernetes.review(&token).await? {
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
    fn tokens_are_read_one_per_line_without_comments_or_blanks() {
        let digests = parse_tokens("# ops team\n  alpha  \n\nbeta\n#gamma\n");
        assert_eq!(digests, vec![digest("alpha"), digest("beta")]);
    }

    #[test]
    fn only_listed_tokens_are_accepted() {
        let file =
            TokenFile { path: Arc::new(PathBuf::new()), digests: Arc::new(RwLock::new(parse_tokens("alpha\nbeta"))) };
        assert!(file.accepts("alpha"));
        assert!(file.accepts("beta"));
        assert!(!file.accepts("gamma"));
        assert!(!file.accepts("alph"));
        assert!(!file.accepts(""));
        assert!(!file.accepts("# ops team"));
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
        assert!(file.accepts("first"));
        let watcher = tokio::spawn(file.clone().watch());
        std::fs::write(&path, "second-and-longer\n").expect("rewrite");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !file.accepts("second-and-longer") && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        watcher.abort();
        assert!(file.accepts("second-and-longer"));
        assert!(!file.accepts("first"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
