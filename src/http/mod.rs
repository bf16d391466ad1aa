//! The HTTP API (axum): routes, problem+json errors, auth, request ids, metrics and the OpenAPI
//! document generated from the handlers.

pub mod admin;
pub mod auth;
pub mod browser_guard;
pub mod error;
pub mod extract;
pub mod jobs;
pub mod kube_auth;
pub mod observe;
pub mod queue;
pub mod server;
pub mod state;
pub mod streams;
pub mod templates;
pub mod tls;
pub mod ui;

use axum::{
    Json as JsonBody, Router,
    extract::DefaultBodyLimit,
    http::StatusCode,
    middleware::{self},
    routing::get,
};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    api::{MAX_BODY_BYTES, Problem},
    telemetry::Metrics,
};
use error::AppError;
pub use observe::RequestId;
pub use state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kube-job-launcher",
        description = "Turns requests into Kubernetes Jobs built from templates kept in ConfigMaps: exactly one Job per request, with status, logs and cancel. Errors are RFC 9457 problem+json."
    ),
    tags(
        (name = "jobs", description = "Launch Jobs and follow them"),
        (name = "templates", description = "The Job templates and dry-run rendering"),
        (name = "compatibility", description = "The original Spring Boot launcher's route"),
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token from the launcher's --auth-token-file"))
                    .build(),
            ),
        );
    }
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(jobs::launch, jobs::list_jobs))
        .routes(routes!(jobs::get_job, jobs::cancel_job))
        .routes(routes!(jobs::job_logs))
        .routes(routes!(jobs::job_kube_events))
        .routes(routes!(streams::job_events))
        .routes(routes!(streams::all_events))
        .routes(routes!(templates::list_templates))
        .routes(routes!(templates::get_template))
        .routes(routes!(templates::render_template))
        .routes(routes!(queue::queue))
        .routes(routes!(jobs::launch_job_legacy))
}

/// The OpenAPI document of the API, as served at `/openapi.json` and kept in `docs/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// How the API router is put together besides its auth and guard.
#[derive(Debug, Clone, Copy)]
pub struct RouterOptions {
    /// Serve the dashboard under `/ui/`.
    pub ui: bool,
    /// The API serves TLS: the dashboard's session cookie is `Secure`.
    pub tls: bool,
}

/// The API router. With `auth`, every route but `/openapi.json` and the dashboard's shell needs a
/// bearer token (or, with the dashboard on, its session cookie); `guard` refuses cross-site
/// browser requests and foreign Host headers, the dashboard's login and logout included.
pub fn api_router(
    state: AppState,
    auth: Option<auth::Authenticator>,
    guard: browser_guard::BrowserGuard,
    options: RouterOptions,
) -> Router {
    let (mut router, document) = api_routes().split_for_parts();
    let session = auth::SessionCookie::new(options.tls);
    if let Some(auth) = auth.clone() {
        let layer = auth::AuthLayer { authenticator: auth, session: options.ui.then_some(session) };
        router = router.route_layer(middleware::from_fn_with_state(layer, auth::require_auth));
    }
    if options.ui {
        // Added after the auth layer: the shell is public, and the login checks tokens itself.
        router = router.merge(ui::router(auth, session));
    }
    let metrics = state.metrics.clone();
    router
        .route("/openapi.json", get(move || async move { JsonBody(document) }))
        .fallback(|| async { AppError::not_found("no such route; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            AppError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not answer that method; see /openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .layer(middleware::from_fn_with_state(guard, browser_guard::guard))
        .layer(middleware::from_fn_with_state(metrics, observe::observe))
}

/// Limits on the requests the API takes at once and how long each may take.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_concurrent: usize,
    pub timeout: std::time::Duration,
}

/// Wraps the whole API (not each route, so the limit is global) in a concurrency limit that
/// sheds what it cannot take at once with 503 + Retry-After, and a request deadline (408).
pub fn with_limits(router: Router, limits: RequestLimits, metrics: Metrics) -> Router {
    let service = tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(move |error: tower::BoxError| {
            let metrics = metrics.clone();
            async move { limit_error(&metrics, &error) }
        }))
        .load_shed()
        .concurrency_limit(limits.max_concurrent.max(1))
        .timeout(limits.timeout)
        .service(router);
    Router::new().fallback_service(service)
}

fn limit_error(metrics: &Metrics, error: &tower::BoxError) -> AppError {
    let (reason, answer) = if error.is::<tower::load_shed::error::Overloaded>() {
        (
            "overloaded",
            AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Too many requests in progress",
                "the launcher is at its limit of requests in progress; retry shortly",
            )
            .retry_after(std::time::Duration::from_secs(1)),
        )
    } else if error.is::<tower::timeout::error::Elapsed>() {
        (
            "timeout",
            AppError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request timeout",
                "the request did not complete within the server's request timeout",
            ),
        )
    } else {
        ("error", AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", error.to_string()))
    };
    metrics.http_rejected.get_or_create(&crate::telemetry::OutcomeLabels { outcome: reason.into() }).inc();
    answer
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_openapi_document_matches_the_code() {
        let committed: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/openapi.json")).expect("docs/openapi.json is JSON");
        let generated = serde_json::to_value(super::openapi()).expect("the document encodes");
        assert!(committed == generated, "docs/openapi.json is out of date: run `make docs` and commit the result");
    }
}
