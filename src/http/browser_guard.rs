//! What keeps a browser from being used against the launcher: a web page the user opens must not
//! launch or cancel Jobs through the user's loopback launcher or dashboard session (cross-site
//! requests), and must not read it through a hostname of its own that resolves to loopback (DNS
//! rebinding).
//!
//! - A state-changing request (any method but GET, HEAD and OPTIONS, and the original launcher's
//!   `GET /launchjob`) that carries no bearer token is refused unless `Sec-Fetch-Site` is absent,
//!   `same-origin` or `none`, and any `Origin` it carries is the launcher's own. A page on another
//!   port of localhost is same-site but not same-origin; an `<img>` sends no Origin but does send
//!   `Sec-Fetch-Site: cross-site`. A bearer token is never sent by a browser on its own, so
//!   requests with one are not a browser's doing.
//! - Without auth, a `Host` that is neither a loopback name or address nor one of
//!   `--allowed-hosts` is refused.
//!
//! CLI and curl send neither header and keep working.

use std::{net::IpAddr, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::Response,
};

use super::error::AppError;

#[derive(Debug, Clone)]
pub struct BrowserGuard {
    /// Without auth: refuse Host headers that are not loopback or allowed.
    check_host: bool,
    allowed_hosts: Arc<Vec<String>>,
    /// The API's scheme, for its own origin.
    scheme: &'static str,
}

impl BrowserGuard {
    pub fn new(check_host: bool, allowed_hosts: Vec<String>, tls: bool) -> Self {
        let allowed_hosts = allowed_hosts.into_iter().map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty());
        Self {
            check_host,
            allowed_hosts: Arc::new(allowed_hosts.collect()),
            scheme: if tls { "https" } else { "http" },
        }
    }

    /// Why a request must be refused, if it must.
    pub fn refusal(
        &self,
        method: &Method,
        path: &str,
        headers: &axum::http::HeaderMap,
        authority: Option<&str>,
    ) -> Option<String> {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).or(authority).unwrap_or_default();
        if self.check_host && !self.host_allowed(host) {
            return Some(format!(
                "Host {host:?} is not this launcher's: without auth it answers only loopback names and --allowed-hosts"
            ));
        }
        let state_changing = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || path == "/launchjob";
        if !state_changing || headers.contains_key(header::AUTHORIZATION) {
            return None;
        }
        let site = headers.get("sec-fetch-site").map(|v| v.to_str().unwrap_or("?"));
        if let Some(site) = site.filter(|s| !matches!(*s, "same-origin" | "none")) {
            return Some(format!("a {site} request from a browser may not change anything here (Sec-Fetch-Site)"));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let own = format!("{}://{host}", self.scheme);
            let origin = origin.to_str().unwrap_or("?");
            if !origin.eq_ignore_ascii_case(&own) {
                return Some(format!("a request from the page at {origin:?} may not change anything here (Origin)"));
            }
        }
        None
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        is_loopback_name(&name) || self.allowed_hosts.contains(&name)
    }
}

/// A Host header without its port (`[::1]:8080` → `::1`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn is_loopback_name(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Middleware: 403 problem for a refused request.
pub async fn guard(State(guard): State<BrowserGuard>, request: Request, next: Next) -> Result<Response, AppError> {
    let authority = request.uri().authority().map(|a| a.as_str().to_string());
    if let Some(detail) = guard.refusal(request.method(), request.uri().path(), request.headers(), authority.as_deref())
    {
        tracing::info!(%detail, "browser request refused");
        return Err(AppError::new(StatusCode::FORBIDDEN, "cross-site-refused", "Refused", detail));
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (axum::http::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn cli_and_same_origin_requests_pass_cross_site_ones_do_not() {
        let g = BrowserGuard::new(true, vec![], false);
        let post = Method::POST;
        let ok = |h: &[(&'static str, &'static str)]| g.refusal(&post, "/v1/jobs", &headers(h), None);
        assert_eq!(ok(&[("host", "127.0.0.1:8080")]), None, "curl");
        assert_eq!(
            ok(&[("host", "localhost:8080"), ("sec-fetch-site", "same-origin"), ("origin", "http://localhost:8080")]),
            None
        );
        assert_eq!(ok(&[("host", "localhost:8080"), ("sec-fetch-site", "none")]), None, "typed into the address bar");
        assert!(ok(&[("host", "localhost:8080"), ("sec-fetch-site", "cross-site")]).is_some());
        assert!(
            ok(&[("host", "localhost:8080"), ("sec-fetch-site", "same-site"), ("origin", "http://localhost:3000")])
                .is_some()
        );
        assert!(ok(&[("host", "localhost:8080"), ("origin", "http://localhost:3000")]).is_some(), "another port");
        assert!(ok(&[("host", "localhost:8080"), ("origin", "null")]).is_some());
        assert_eq!(
            ok(&[("host", "localhost:8080"), ("sec-fetch-site", "cross-site"), ("authorization", "Bearer t")]),
            None,
            "a bearer token is not a browser's doing"
        );
    }

    #[test]
    fn the_original_launchers_get_route_counts_as_state_changing() {
        let g = BrowserGuard::new(true, vec![], false);
        let img = headers(&[("host", "localhost:8080"), ("sec-fetch-site", "cross-site")]);
        assert!(g.refusal(&Method::GET, "/launchjob", &img, None).is_some(), "an <img> on another site");
        assert_eq!(g.refusal(&Method::GET, "/v1/jobs", &img, None), None, "reads are not refused for the site");
    }

    #[test]
    fn without_auth_only_loopback_and_allowed_hosts_are_answered() {
        let g = BrowserGuard::new(true, vec!["launcher.team.svc".into()], false);
        for host in
            ["localhost:8080", "127.0.0.1", "[::1]:8080", "app.localhost", "launcher.team.svc:8080", "LOCALHOST"]
        {
            assert_eq!(g.refusal(&Method::GET, "/v1/jobs", &headers(&[("host", host)]), None), None, "{host}");
        }
        for host in ["evil.example:8080", "10.0.0.1", "localhost.evil.example"] {
            assert!(g.refusal(&Method::GET, "/v1/jobs", &headers(&[("host", host)]), None).is_some(), "{host}");
        }
        let with_auth = BrowserGuard::new(false, vec![], true);
        assert_eq!(with_auth.refusal(&Method::GET, "/v1/jobs", &headers(&[("host", "evil.example")]), None), None);
    }
}
