//! The built-in dashboard under `/ui/` on the API port: a page shell (HTML, scripts, styles)
//! embedded in the binary and served to anyone, and the login that turns a token into the
//! session cookie the page's `/v1` calls and streams authenticate with. Everything the page shows
//! comes from the `/v1` API, with the caller's rights; the shell itself holds no data.
//!
//! Pages are served with a strict Content-Security-Policy (scripts and styles from this origin
//! only, nothing inline, no other origin, Trusted Types so that no string can become markup),
//! `nosniff`, and an ETag from a hash of the embedded bytes (304 on `If-None-Match`).

mod assets;

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Serialize;

use super::{
    auth::{Authenticator, SessionCookie},
    error::AppError,
    kube_auth::{Action, Verdict},
};

/// What the pages may load and do: this origin only, no inline script or style, no plugins, no
/// framing, and Trusted Types with no policy, so no DOM sink accepts a string as markup.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

#[derive(Clone)]
struct UiState {
    auth: Option<Authenticator>,
    session: SessionCookie,
}

/// The dashboard's routes. `auth` is the API's; `session` the cookie its login sets.
pub fn router<S: Clone + Send + Sync + 'static>(auth: Option<Authenticator>, session: SessionCookie) -> Router<S> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(shell))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/session", get(session_info))
        // Every other path under /ui/ is a page of the dashboard: the shell routes it.
        .route("/ui/{*page}", get(shell))
        .with_state(UiState { auth, session })
}

async fn shell(headers: HeaderMap) -> Response {
    serve(assets::shell(), &headers)
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>, headers: HeaderMap) -> Response {
    match assets::find(&file) {
        Some(asset) => serve(asset, &headers),
        None => with_security_headers(AppError::not_found(format!("no dashboard asset {file:?}")).into_response()),
    }
}

/// Whether `If-None-Match` names `etag` (or `*`); weak and strong forms compare alike.
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

fn serve(asset: &assets::Asset, headers: &HeaderMap) -> Response {
    let mut response = if not_modified(headers, &asset.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = Response::new(Body::from(Bytes::from_static(asset.body)));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        response
    };
    let h = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        h.insert(header::ETAG, etag);
    }
    // Revalidated on every use: a new binary's pages are never mixed with an old one's.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_security_headers(response)
}

fn with_security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    response
}

/// An answer about the session: never cached, never sniffed.
fn session_answer(status: StatusCode, body: impl Serialize, cookie: Option<String>) -> Response {
    let mut response = (status, Json(body)).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Serialize)]
struct SessionView<'a> {
    /// `token-file`, `kubernetes`, or `none` (the API is open, on loopback).
    auth: &'a str,
    /// The caller the session's token names; absent when there is no valid session.
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
}

/// The token in a login form's body (`application/x-www-form-urlencoded`, field `token`).
fn form_token(headers: &HeaderMap, body: &[u8]) -> Result<String, AppError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "the login takes a form: `Content-Type: application/x-www-form-urlencoded` with a field `token`",
        ));
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::bad_request("the form has no `token`"))
}

/// `POST /ui/login`: checks the token as the API checks a bearer token, then keeps it in the
/// session cookie. A token the cluster knows but that may not list is still a login: each call
/// is authorized on its own.
async fn login(State(ui): State<UiState>, headers: HeaderMap, body: Bytes) -> Result<Response, AppError> {
    let Some(auth) = &ui.auth else {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "no-auth",
            "No auth",
            "this launcher has no auth: the dashboard needs no login",
        ));
    };
    let token = form_token(&headers, &body)?;
    let user = match auth.verify(&token, Action::Get).await? {
        Verdict::Allowed { username } | Verdict::Denied { username, .. } => username,
        Verdict::Unauthenticated => {
            tracing::info!("dashboard login refused");
            let mut refused =
                AppError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", "the token is not valid");
            refused.www_authenticate = Some("Bearer realm=\"kube-job-launcher\", error=\"invalid_token\"");
            return Err(refused);
        }
    };
    tracing::info!(caller = %user, "dashboard login");
    let view = SessionView { auth: auth.mode(), user: Some(user) };
    Ok(session_answer(StatusCode::OK, view, Some(ui.session.set(&token))))
}

/// `POST /ui/logout`: removes the session cookie.
async fn logout(State(ui): State<UiState>) -> Response {
    let mode = ui.auth.as_ref().map_or("none", Authenticator::mode);
    session_answer(StatusCode::OK, SessionView { auth: mode, user: None }, Some(ui.session.clear()))
}

/// `GET /ui/session`: whether the API needs a login, and whom this browser's session names.
async fn session_info(State(ui): State<UiState>, headers: HeaderMap) -> Result<Response, AppError> {
    let Some(auth) = &ui.auth else {
        return Ok(session_answer(StatusCode::OK, SessionView { auth: "none", user: None }, None));
    };
    let user = match ui.session.token(&headers) {
        Some(token) => match auth.verify(&token, Action::Get).await? {
            Verdict::Allowed { username } | Verdict::Denied { username, .. } => Some(username),
            Verdict::Unauthenticated => None,
        },
        None => None,
    };
    Ok(session_answer(StatusCode::OK, SessionView { auth: auth.mode(), user }, None))
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::http::auth::{TokenFile, parse_tokens};

    fn app(auth: bool) -> Router {
        let auth = auth.then(|| Authenticator::TokenFile(TokenFile::from_entries(parse_tokens("sesame,alice,1"))));
        router(auth, SessionCookie::new(false))
    }

    async fn call(router: &Router, request: Request<Body>) -> Response {
        router.clone().oneshot(request).await.expect("the router answers")
    }

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).expect("request")
    }

    fn login_form(token: &str) -> Request<Body> {
        Request::post("/ui/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}")))
            .expect("request")
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    #[tokio::test]
    async fn pages_have_a_strict_policy_and_revalidate_by_etag() {
        let router = app(true);
        for path in ["/ui/", "/ui/jobs/some-job", "/ui/assets/app.js", "/ui/assets/app.css"] {
            let response = call(&router, get(path)).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let csp = header_of(&response, header::CONTENT_SECURITY_POLICY);
            assert!(csp.starts_with("default-src 'self'") && !csp.contains("unsafe"), "{path}: {csp}");
            assert_eq!(header_of(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            let etag = header_of(&response, header::ETAG).to_string();
            assert!(etag.starts_with('"') && etag.len() > 10, "{path}: {etag}");
            let again =
                Request::get(path).header(header::IF_NONE_MATCH, format!("W/{etag}, \"x\"")).body(Body::empty());
            let cached = call(&router, again.expect("request")).await;
            assert_eq!(cached.status(), StatusCode::NOT_MODIFIED, "{path}");
            assert_eq!(header_of(&cached, header::ETAG), etag);
            let stale = Request::get(path).header(header::IF_NONE_MATCH, "\"old\"").body(Body::empty());
            assert_eq!(call(&router, stale.expect("request")).await.status(), StatusCode::OK);
        }
        let shell = call(&router, get("/ui/")).await;
        assert!(header_of(&shell, header::CONTENT_TYPE).starts_with("text/html"));
        let script = call(&router, get("/ui/assets/app.js")).await;
        assert!(header_of(&script, header::CONTENT_TYPE).starts_with("text/javascript"));
        assert_eq!(call(&router, get("/ui/assets/nope.js")).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(call(&router, get("/ui")).await.status(), StatusCode::PERMANENT_REDIRECT);
    }

    #[test]
    fn every_asset_the_shell_and_scripts_name_is_embedded() {
        let shell = std::str::from_utf8(assets::shell().body).expect("utf-8");
        assert!(!shell.contains("style=") && !shell.contains("<script>"), "nothing inline in the shell");
        for asset in assets::all() {
            let text = std::str::from_utf8(asset.body).expect("utf-8");
            for (i, _) in text.match_indices("/ui/assets/") {
                let name: String = text[i + "/ui/assets/".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                    .collect();
                assert!(
                    name.is_empty() || assets::find(&name).is_some(),
                    "{} names /ui/assets/{name}, which is not embedded",
                    asset.name
                );
            }
            assert!(
                !text.contains("innerHTML") && !text.contains("outerHTML"),
                "{}: no markup from strings",
                asset.name
            );
            assert!(!text.contains("insertAdjacentHTML") && !text.contains("document.write"), "{}", asset.name);
        }
    }

    #[tokio::test]
    async fn login_checks_the_token_and_sets_a_strict_httponly_cookie() {
        let router = app(true);
        let refused = call(&router, login_form("wrong")).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(refused.headers().get(header::SET_COOKIE).is_none());

        let accepted = call(&router, login_form("sesame")).await;
        assert_eq!(accepted.status(), StatusCode::OK);
        assert_eq!(header_of(&accepted, header::SET_COOKIE), "kjl-session=sesame; Path=/; HttpOnly; SameSite=Strict");
        assert_eq!(header_of(&accepted, header::CACHE_CONTROL), "no-store");

        let json = Request::post("/ui/login").header(header::CONTENT_TYPE, "application/json").body(Body::from("{}"));
        assert_eq!(call(&router, json.expect("request")).await.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let session = Request::get("/ui/session").header(header::COOKIE, "kjl-session=sesame").body(Body::empty());
        let session = call(&router, session.expect("request")).await;
        let body = axum::body::to_bytes(session.into_body(), 1024).await.expect("body");
        assert_eq!(&body[..], br#"{"auth":"token-file","user":"alice"}"#);

        let out = call(&router, Request::post("/ui/logout").body(Body::empty()).expect("request")).await;
        assert!(header_of(&out, header::SET_COOKIE).starts_with("kjl-session=; Max-Age=0;"));

        let open = app(false);
        assert_eq!(call(&open, login_form("sesame")).await.status(), StatusCode::CONFLICT);
    }
}
