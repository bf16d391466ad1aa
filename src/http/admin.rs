//! The admin port: liveness, readiness and metrics. No auth: keep it off the public network.

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use super::{error::AppError, state::AppState};
use crate::telemetry::StateLabels;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// 200 while the process can do its work; 503 naming why not once a task it needs has ended
/// (the process is then on its way out with a non-zero exit).
async fn healthz(State(state): State<AppState>) -> Response {
    match state.health.broken() {
        None => "ok".into_response(),
        Some(reason) => {
            AppError::new(StatusCode::SERVICE_UNAVAILABLE, "unhealthy", "Unhealthy", reason).into_response()
        }
    }
}

/// 200 once the Job and pod watches have synced and the templates are loaded; 503 naming what is
/// still missing until then.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.health.is_draining() {
        let detail = "shutting down: send requests to another replica";
        return AppError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting-down", "Shutting down", detail)
            .into_response();
    }
    let waiting = state.not_ready();
    if waiting.is_empty() {
        "ready".into_response()
    } else {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            format!("waiting for: {}", waiting.join(", ")),
        )
        .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    // Gauges computed from the index when scraped, not on every event.
    let launcher = &state.launcher;
    for (job_state, count) in launcher.jobs().count_by_state() {
        state.metrics.jobs.get_or_create(&StateLabels { state: job_state.as_str().into() }).set(count as i64);
    }
    let (queued, _) = launcher.jobs().read(crate::admission::counts);
    state.metrics.queue_depth.set(queued as i64);
    state.metrics.leader.set(i64::from(launcher.may_lead()));
    state.metrics.streams_open.set(state.stream_slots.open() as i64);
    let mut response = state.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
