//! The HTTP API (axum): routes, problem+json errors, auth, request ids, metrics and the OpenAPI
//! document generated from the handlers.

pub mod admin;
pub mod auth;
pub mod error;
pub mod extract;
pub mod jobs;
pub mod kube_auth;
pub mod queue;
pub mod server;
pub mod templates;

use std::time::Instant;

use axum::{
    Json as JsonBody, Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderValue, StatusCode},
    middleware::{self, Next},
    response::Response,
    routing::get,
};
use tracing::Instrument;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use std::collections::HashMap;

use crate::{
    admission,
    jobs::{JobState, JobView},
    launch::{Launcher, naming::random_u64},
    telemetry::{HttpLabels, Metrics},
};
use error::AppError;

/// Request bodies above this get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    pub launcher: Launcher,
    pub metrics: Metrics,
}

impl AppState {
    /// A managed Job's view, from the index.
    pub fn job_view(&self, name: &str) -> Option<JobView> {
        self.launcher.jobs().view(name).map(|v| self.with_queue_position(v))
    }

    /// Adds the queue position of a queued Job.
    pub fn with_queue_position(&self, mut view: JobView) -> JobView {
        if view.state == JobState::Queued {
            view.queue_position = self.queue_positions().get(&view.name).copied();
        }
        view
    }

    /// Adds the queue positions of the queued Jobs among `views`, from one ordering of the queue.
    pub fn with_queue_positions(&self, mut views: Vec<JobView>) -> Vec<JobView> {
        if views.iter().any(|v| v.state == JobState::Queued) {
            let positions = self.queue_positions();
            for v in &mut views {
                v.queue_position = positions.get(&v.name).copied();
            }
        }
        views
    }

    /// Every queued Job's place in the admission order (0: next).
    fn queue_positions(&self) -> HashMap<String, usize> {
        self.launcher.jobs().read(|s| {
            let candidates = admission::candidates(s);
            admission::queue_order(&candidates).iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect()
        })
    }

    /// What readiness still waits for; empty when ready.
    pub fn not_ready(&self) -> Vec<&'static str> {
        let mut waiting = Vec::new();
        if !self.launcher.jobs().is_synced() {
            waiting.push("the Job and pod watches to sync");
        }
        if !self.launcher.templates().is_synced() {
            waiting.push("the template ConfigMaps to load");
        }
        waiting
    }
}

/// The id of one request: the caller's `X-Request-Id` when it is sane, else a new one. It is
/// logged with every line of the request and recorded on the Job the request creates.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const REQUEST_ID_HEADER: &str = "x-request-id";

fn request_id_of(request: &Request) -> RequestId {
    let given = request.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).filter(|v| {
        !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    });
    RequestId(given.map(String::from).unwrap_or_else(|| format!("{:016x}", random_u64())))
}

/// Gives each request an id and a span, logs its outcome, and counts it by route and status.
async fn observe(State(metrics): State<Metrics>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id_of(&request);
    let method = request.method().clone();
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!("request", request_id = %id.0, %method, path = %request.uri().path());
    request.extensions_mut().insert(id.clone());
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.in_scope(|| {
        tracing::debug!(status = status.as_u16(), elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "answered");
    });
    metrics
        .http_requests
        .get_or_create(&HttpLabels { method: method.to_string(), route, status: status.as_u16().to_string() })
        .inc();
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

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
    components(schemas(error::Problem)),
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

/// The API router. With `auth`, every route but `/openapi.json` needs a bearer token.
pub fn api_router(state: AppState, auth: Option<auth::Authenticator>) -> Router {
    let (mut router, document) = api_routes().split_for_parts();
    if let Some(auth) = auth {
        router = router.route_layer(middleware::from_fn_with_state(auth, auth::require_auth));
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
        .layer(middleware::from_fn_with_state(metrics, observe))
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
        assert!(committed == generated, "docs/openapi.json is out of date: run `make openapi` and commit the result");
    }
}
