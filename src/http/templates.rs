//! `/v1/templates`: what templates exist, whether they are valid, and dry-run rendering.

use axum::{Json as JsonBody, extract::State};
use serde_json::Value;

use super::{
    auth::Caller,
    error::AppError,
    extract::{Json, Path},
    observe::RequestId,
    state::AppState,
};
use crate::{
    api::{LaunchRequest, Problem, TemplateView},
    error::Error,
    launch::{Origin, Source},
    template::TemplateLookup,
};

/// Every template, valid or not.
#[utoipa::path(
    get, path = "/v1/templates", tag = "templates",
    responses((status = 200, body = Vec<TemplateView>))
)]
pub async fn list_templates(State(state): State<AppState>) -> JsonBody<Vec<TemplateView>> {
    JsonBody(state.launcher.templates().statuses())
}

/// One template: its status, error, parameters and source.
#[utoipa::path(
    get, path = "/v1/templates/{name}", tag = "templates",
    params(("name" = String, Path, description = "The template's name")),
    responses(
        (status = 200, body = TemplateView),
        (status = 404, description = "No such template", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<JsonBody<TemplateView>, AppError> {
    match state.launcher.templates().status(&name) {
        Some(status) => Ok(JsonBody(status)),
        None => match state.launcher.templates().lookup(&name) {
            TemplateLookup::Missing(known) => Err(Error::UnknownTemplate {
                name,
                known: if known.is_empty() { "none".into() } else { known.join(", ") },
            }
            .into()),
            _ => Err(AppError::not_found(format!("no template named {name:?}"))),
        },
    }
}

/// The Job manifest a LaunchRequest would create from this template. Nothing is created.
#[utoipa::path(
    post, path = "/v1/templates/{name}/render", tag = "templates",
    params(("name" = String, Path, description = "The template's name")),
    request_body = LaunchRequest,
    responses(
        (status = 200, description = "The Job manifest", body = Object),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown template", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The templates not loaded yet", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn render_template(
    State(state): State<AppState>,
    axum::Extension(request_id): axum::Extension<RequestId>,
    caller: Caller,
    Path(name): Path<String>,
    Json(mut request): Json<LaunchRequest>,
) -> Result<JsonBody<Value>, AppError> {
    match &request.template {
        Some(other) if *other != name => {
            return Err(AppError::bad_request(format!("template: {other:?} differs from the path's {name:?}")));
        }
        _ => request.template = Some(name),
    }
    let origin = Origin { request_id: Some(request_id.0), ..Origin::new(Source::Http, caller.0) };
    let prepared = state.launcher.prepare(&request, &origin)?;
    Ok(JsonBody(prepared.manifest))
}
