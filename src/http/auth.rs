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
    http::{HeaderMap, StatusCode, header},
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
    /// A token file's entries without a file (tests).
    #[cfg(test)]
    pub fn from_entries(entries: Vec<TokenEntry>) -> Self {
        Self { path: Arc::new(PathBuf::new()), entries: Arc::new(RwLock::new(entries)) }
    }

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

/// The dashboard's session cookie: it carries the caller's token, set by `POST /ui/login` after
/// the token passed the same check a bearer token does, so that the page's requests and its
/// EventSource streams (which cannot send an Authorization header) authenticate. HttpOnly (the
/// page's scripts never see it), SameSite=Strict (another site's requests never carry it), and
/// Secure with a `__Host-` name when the API serves TLS. Cookie-authenticated requests carry no
/// Authorization header, so the browser guard's cross-site checks apply to every one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCookie {
    secure: bool,
}

impl SessionCookie {
    pub fn new(tls: bool) -> Self {
        Self { secure: tls }
    }

    pub fn name(self) -> &'static str {
        if self.secure { "__Host-kjl-session" } else { "kjl-session" }
    }

    fn attributes(self) -> &'static str {
        if self.secure { "Path=/; HttpOnly; SameSite=Strict; Secure" } else { "Path=/; HttpOnly; SameSite=Strict" }
    }

    /// The `Set-Cookie` value that keeps `token` for this browser session.
    pub fn set(self, token: &str) -> String {
        let value: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
        format!("{}={value}; {}", self.name(), self.attributes())
    }

    /// The `Set-Cookie` value that removes it.
    pub fn clear(self) -> String {
        format!("{}=; Max-Age=0; {}", self.name(), self.attributes())
    }

    /// The token a request's cookie carries, if any.
    pub fn token(self, headers: &HeaderMap) -> Option<String> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.name())
            .and_then(|(_, value)| {
                // The value was written with `byte_serialize`; `parse` undoes it (`+` is a space).
                form_urlencoded::parse(format!("t={value}").as_bytes()).next().map(|(_, t)| t.into_owned())
            })
            .filter(|t| !t.is_empty())
    }
}

/// What the auth middleware needs: how tokens are checked, and the dashboard's session cookie
/// when the dashboard is on (without it, cookies authenticate nothing).
#[derive(Clone)]
pub struct AuthLayer {
    pub authenticator: Authenticator,
    pub session: Option<SessionCookie>,
}

/// Where a request's token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// `Authorization: Bearer <token>`: it wins over a cookie, and when it is there but not a
    /// bearer token the request has none (a cookie does not stand in for a broken header).
    Bearer(String),
    Cookie(String),
    None,
}

/// The token a request presents: its bearer token, else its session cookie.
pub fn presented_token(headers: &HeaderMap, session: Option<SessionCookie>) -> Presented {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let bearer = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        return bearer.map_or(Presented::None, |t| Presented::Bearer(t.to_string()));
    }
    match session.and_then(|s| s.token(headers)) {
        Some(token) => Presented::Cookie(token),
        None => Presented::None,
    }
}

impl Authenticator {
    /// Who `token` belongs to and whether they may do `action`: the check of every request, and
    /// of the dashboard's login.
    pub async fn verify(&self, token: &str, action: Action) -> Result<Verdict, AppError> {
        match self {
            Self::TokenFile(tokens) => Ok(match tokens.caller(token) {
                Some(username) => Verdict::Allowed { username },
                None => Verdict::Unauthenticated,
            }),
            Self::Kubernetes(kubernetes) => Ok(kubernetes.review(token, action).await?),
        }
    }

    /// The mode's name, as the dashboard shows it.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::TokenFile(_) => "token-file",
            Self::Kubernetes(_) => "kubernetes",
        }
    }
}

/// Middleware: 401 with `WWW-Authenticate` without an accepted bearer token (or dashboard
/// session cookie); 403 when the token's identity may not do what the request does (Kubernetes
/// mode).
pub async fn require_auth(
    State(layer): State<AuthLayer>,
    mut request: Request,
    next: Next,
) -> Result<Response, AppError> {
    let token = match presented_token(request.headers(), layer.session) {
        Presented::Bearer(token) | Presented::Cookie(token) => token,
        Presented::None => {
            return Err(unauthorized("this API needs a bearer token: `Authorization: Bearer <token>`", CHALLENGE));
        }
    };
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let action = Action::of(request.method(), &route);
    match layer.authenticator.verify(&token, action).await? {
        Verdict::Allowed { username } => {
            if matches!(layer.authenticator, Authenticator::Kubernetes(_)) {
                tracing::info!(caller = %username, "authenticated");
            }
            request.extensions_mut().insert(Caller(username));
        }
        Verdict::Denied { username, reason } => {
            tracing::info!(caller = %username, %reason, "forbidden");
            return Err(AppError::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", reason));
        }
        Verdict::Unauthenticated => {
            let detail = match layer.authenticator {
                Authenticator::TokenFile(_) => "the bearer token is not valid",
                Authenticator::Kubernetes(_) => "the cluster does not accept this token",
            };
            return Err(unauthorized(detail, CHALLENGE_INVALID));
        }
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
            (Method::GET, "/v1/jobs/{name}/k8s-events", Action::Get),
        ];
        for (method, route, action) in cases {
            assert_eq!(Action::of(&method, route), action, "{method} {route}");
        }
    }

    #[test]
    fn a_bearer_token_wins_over_the_session_cookie_and_a_broken_header_is_no_token() {
        use axum::http::HeaderValue;
        let session = SessionCookie::new(false);
        let headers = |pairs: &[(header::HeaderName, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(k.clone(), HeaderValue::from_str(v).expect("header"));
            }
            h
        };
        let cookie = format!("other=1; {}", session.set("t,o k;e\"n").split(';').next().unwrap_or_default());
        assert_eq!(
            presented_token(&headers(&[(header::COOKIE, &cookie)]), Some(session)),
            Presented::Cookie("t,o k;e\"n".into()),
            "the token survives the cookie's encoding"
        );
        assert_eq!(presented_token(&headers(&[(header::COOKIE, &cookie)]), None), Presented::None, "dashboard off");
        assert_eq!(
            presented_token(
                &headers(&[(header::AUTHORIZATION, "Bearer abc"), (header::COOKIE, &cookie)]),
                Some(session)
            ),
            Presented::Bearer("abc".into())
        );
        assert_eq!(
            presented_token(
                &headers(&[(header::AUTHORIZATION, "Basic abc"), (header::COOKIE, &cookie)]),
                Some(session)
            ),
            Presented::None,
            "a cookie does not stand in for a broken Authorization header"
        );
        assert_eq!(presented_token(&headers(&[(header::COOKIE, "kjl-session=")]), Some(session)), Presented::None);
        assert_eq!(
            presented_token(&headers(&[(header::COOKIE, "kjl-session=abc")]), Some(SessionCookie::new(true))),
            Presented::None,
            "with TLS only the __Host- cookie counts"
        );
    }

    #[test]
    fn the_session_cookie_is_httponly_strict_and_secure_with_tls() {
        let plain = SessionCookie::new(false).set("abc");
        assert_eq!(plain, "kjl-session=abc; Path=/; HttpOnly; SameSite=Strict");
        let tls = SessionCookie::new(true).set("abc");
        assert_eq!(tls, "__Host-kjl-session=abc; Path=/; HttpOnly; SameSite=Strict; Secure");
        assert!(SessionCookie::new(true).clear().starts_with("__Host-kjl-session=; Max-Age=0; Path=/; HttpOnly"));
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
