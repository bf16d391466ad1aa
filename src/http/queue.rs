//! `/v1/queue`: how many Jobs wait and run, per template, against the caps.

use axum::{Json, extract::State};

use super::state::AppState;
use crate::api::QueueView;

/// Queued and active Jobs, in all and per template, with the caps.
#[utoipa::path(get, path = "/v1/queue", tag = "jobs", responses((status = 200, body = QueueView)))]
pub async fn queue(State(state): State<AppState>) -> Json<QueueView> {
    Json(state.queue_view())
}
