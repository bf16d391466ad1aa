//! `/v1/jobs`: launch, get, list, cancel, logs; and the original launcher's `GET /launchjob`.

use axum::{
    Json as JsonBody,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{
    auth::Caller,
    error::AppError,
    extract::{JobName, Json, QueryPairs},
    observe::RequestId,
    state::AppState,
};
use crate::{
    api::{
        DEFAULT_LIST_LIMIT, IDEMPOTENCY_KEY_HEADER, JobKubeEvents, JobList, JobState, JobView, LaunchRequest,
        MAX_LIST_LIMIT, Problem, SOURCE_HEADER,
    },
    error::Error,
    jobs::{index::ListFilter, logs::LogOptions},
    launch::{Launched, Origin, Source},
    selector::{self, Selector},
};

fn origin_from(headers: &HeaderMap, request_id: &RequestId, caller: Caller) -> Result<Origin, AppError> {
    let source = match headers.get(SOURCE_HEADER).map(|v| v.to_str().unwrap_or_default()) {
        None | Some("http") => Source::Http,
        Some("cli") => Source::Cli,
        Some(other) => return Err(AppError::bad_request(format!("{SOURCE_HEADER}: {other:?} is not http or cli"))),
    };
    Ok(Origin { request_id: Some(request_id.0.clone()), ..Origin::new(source, caller.0) })
}

/// Launch a Job from a template.
///
/// With an idempotency key (the `Idempotency-Key` header or `idempotencyKey`), a repeated
/// identical request answers the Job the first one created, with 200.
#[utoipa::path(
    post, path = "/v1/jobs", tag = "jobs",
    request_body = LaunchRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the launch idempotent")),
    responses(
        (status = 201, description = "Job created", body = JobView, headers(("Location" = String, description = "The Job's URL"))),
        (status = 200, description = "An identical earlier request created this Job", body = JobView),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown template", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency key used for another request", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Queue full", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Kubernetes unreachable, or the templates not loaded yet", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn launch(
    State(state): State<AppState>,
    axum::Extension(request_id): axum::Extension<RequestId>,
    caller: Caller,
    headers: HeaderMap,
    Json(mut request): Json<LaunchRequest>,
) -> Result<Response, AppError> {
    if let Some(header_key) = headers.get(IDEMPOTENCY_KEY_HEADER) {
        let header_key =
            header_key.to_str().map_err(|_| AppError::bad_request("Idempotency-Key: not visible ASCII"))?.to_string();
        match &request.idempotency_key {
            Some(body_key) if *body_key != header_key => {
                return Err(AppError::bad_request("the Idempotency-Key header and idempotencyKey differ"));
            }
            _ => request.idempotency_key = Some(header_key),
        }
    }
    let origin = origin_from(&headers, &request_id, caller)?;
    let launched = state.launcher.launch(&request, &origin).await?;
    Ok(launched_response(launched))
}

fn launched_response(launched: Launched) -> Response {
    match launched {
        Launched::Created(view) => {
            let location = format!("/v1/jobs/{}", view.name);
            let mut response = (StatusCode::CREATED, JsonBody(view)).into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, v);
            }
            response
        }
        Launched::Existing(view) => (StatusCode::OK, JsonBody(view)).into_response(),
    }
}

/// A Job the launcher manages.
#[utoipa::path(
    get, path = "/v1/jobs/{name}", tag = "jobs",
    params(("name" = String, Path, description = "The Job's name")),
    responses(
        (status = 200, body = JobView),
        (status = 404, description = "No such Job managed by the launcher", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_job(State(state): State<AppState>, JobName(name): JobName) -> Result<JsonBody<JobView>, AppError> {
    match state.launcher.find(&name).await? {
        Some(view) => Ok(JsonBody(state.with_queue_position(view))),
        None => Err(Error::JobNotFound(name).into()),
    }
}

/// The Jobs the launcher manages, newest first, a page at a time.
#[utoipa::path(
    get, path = "/v1/jobs", tag = "jobs",
    params(
        ("template" = Option<String>, Query, description = "Only this template's Jobs"),
        ("state" = Option<JobState>, Query, description = "Only Jobs in this state"),
        ("label" = Option<Vec<String>>, Query, description = "`key=value`; repeat or separate with commas; all must match"),
        ("labelSelector" = Option<String>, Query, description = "A Kubernetes label selector, as `kubectl get -l` takes it: comma-separated `key=value`, `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key` (exists), `!key` (does not exist); all must match, and so must `label`. Repeated, every one must match. A malformed selector is a 400 that says what is wrong"),
        ("requestedBy" = Option<String>, Query, description = "Only Jobs this caller asked for"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000, default 100"),
        ("continue" = Option<String>, Query, description = "The previous page's `continue` token"),
    ),
    responses(
        (status = 200, body = JobList),
        (status = 400, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_jobs(State(state): State<AppState>, query: QueryPairs) -> Result<JsonBody<JobList>, AppError> {
    query.only(&["template", "state", "label", "labelSelector", "requestedBy", "limit", "continue"])?;
    let limit = query.parse::<usize>("limit")?.unwrap_or(DEFAULT_LIST_LIMIT);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(AppError::bad_request(format!("limit={limit}: between 1 and {MAX_LIST_LIMIT}")));
    }
    let labels = label_pairs(&query)?;
    let mut selector = Selector::everything();
    for text in query.all("labelSelector") {
        let parsed = selector::parse(text).map_err(|e| AppError::bad_request(format!("labelSelector: {e}")))?;
        selector = selector.and(parsed);
    }
    let filter = ListFilter {
        template: query.get("template").map(String::from),
        state: query.parse::<JobState>("state")?,
        labels,
        selector,
        requested_by: query.get("requestedBy").map(String::from),
        limit,
        after: query.get("continue").map(String::from),
    };
    let page = state
        .launcher
        .jobs()
        .list(&filter)
        .map_err(|_| AppError::bad_request("continue: not a token this server gave out"))?;
    let items = state.with_queue_positions(page.items);
    Ok(JsonBody(JobList { items, continue_token: page.next }))
}

/// The `label=key=value` filters of a query (repeated, or separated with commas).
pub fn label_pairs(query: &QueryPairs) -> Result<Vec<(String, String)>, AppError> {
    let mut labels = Vec::new();
    for selector in query.all("label").flat_map(|v| v.split(',')).filter(|s| !s.is_empty()) {
        let (k, v) = selector
            .split_once('=')
            .ok_or_else(|| AppError::bad_request(format!("label={selector:?}: want key=value")))?;
        labels.push((k.to_string(), v.to_string()));
    }
    Ok(labels)
}

/// Cancel a Job: deletes it and its pods (a queued Job leaves the queue).
#[utoipa::path(
    delete, path = "/v1/jobs/{name}", tag = "jobs",
    params(("name" = String, Path, description = "The Job's name")),
    responses(
        (status = 202, description = "Deletion started; the Job as last seen", body = JobView),
        (status = 404, description = "No such Job managed by the launcher", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The Job was re-created since it was looked at; nothing was cancelled", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Kubernetes unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_job(State(state): State<AppState>, JobName(name): JobName) -> Result<Response, AppError> {
    let view = state.launcher.cancel(&name).await?;
    Ok((StatusCode::ACCEPTED, JsonBody(state.with_queue_position(view))).into_response())
}

/// The log of the Job's newest pod, as text; streamed while it runs with `follow=true`.
#[utoipa::path(
    get, path = "/v1/jobs/{name}/logs", tag = "jobs",
    params(
        ("name" = String, Path, description = "The Job's name"),
        ("follow" = Option<bool>, Query, description = "Stream until the container ends"),
        ("container" = Option<String>, Query, description = "The container, when the pod has several"),
        ("tailLines" = Option<i64>, Query, description = "Only the last N lines"),
    ),
    responses(
        (status = 200, description = "The log", body = String, content_type = "text/plain"),
        (status = 404, description = "No such Job managed by the launcher, or its pod is gone (cancelled or cleaned up)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The Job has no pod yet", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn job_logs(
    State(state): State<AppState>,
    JobName(name): JobName,
    query: QueryPairs,
) -> Result<Response, AppError> {
    query.only(&["follow", "container", "tailLines"])?;
    let tail_lines = query.parse::<i64>("tailLines")?;
    if tail_lines.is_some_and(|n| n < 0) {
        return Err(AppError::bad_request("tailLines: zero or more"));
    }
    let mut options =
        LogOptions { follow: query.flag("follow")?, container: query.get("container").map(String::from), tail_lines };
    let jobs = state.launcher.jobs();
    let pod = jobs.read(|s| s.job(&name).map(|_| s.pods_of(&name).last().map(|p| (p.name.clone(), p.is_finished()))));
    let (pod, finished) = match pod {
        None => return Err(Error::JobNotFound(name).into()),
        Some(None) => return Err(Error::NoPod(name).into()),
        Some(Some(pod)) => pod,
    };
    // A finished pod's log is complete: nothing to follow.
    options.follow &= !finished;
    let stream =
        crate::jobs::logs::pod_log(state.launcher.client().clone(), state.launcher.namespace(), &pod, &options).await?;
    let body = if options.follow {
        // Ends when the node ends it, or (fake nodes never do) once the pod has ended and the
        // stream has gone quiet: bytes written after the pod ended still come through.
        Body::from_stream(crate::jobs::logs::follow_pod_log(stream, jobs.clone(), pod))
    } else {
        Body::from_stream(stream)
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    Ok(response)
}

/// The Kubernetes Events of a Job and its pods, and the Job's annotations, from the API server.
#[utoipa::path(
    get, path = "/v1/jobs/{name}/k8s-events", tag = "jobs",
    params(("name" = String, Path, description = "The Job's name")),
    responses(
        (status = 200, description = "The Events of the Job and its newest pods (at most 10), oldest first, and the Job's annotations", body = JobKubeEvents),
        (status = 404, description = "No such Job managed by the launcher (a cancelled or cleaned-up Job has none)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Kubernetes unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn job_kube_events(
    State(state): State<AppState>,
    JobName(name): JobName,
) -> Result<JsonBody<JobKubeEvents>, AppError> {
    let launcher = &state.launcher;
    let read = crate::jobs::kube_events::job_kube_events(
        launcher.client(),
        launcher.namespace(),
        &launcher.settings().instance,
        &name,
    );
    match tokio::time::timeout(launcher.settings().timeout, read).await {
        Ok(Ok(Some(events))) => Ok(JsonBody(events)),
        Ok(Ok(None)) => Err(Error::JobNotFound(name).into()),
        Ok(Err(error)) => Err(error.into()),
        Err(_) => Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "kubernetes-unavailable",
            "Kubernetes unavailable",
            "the Kubernetes API server did not answer in time",
        )
        .retry_after(std::time::Duration::from_secs(1))),
    }
}

/// The original launcher's route: launches the default template.
#[utoipa::path(
    get, path = "/launchjob", tag = "compatibility",
    responses(
        (status = 200, description = "`Job launched: <name>`", body = String, content_type = "text/plain"),
        (status = 404, description = "The default template is not served", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Kubernetes unreachable, or the templates not loaded yet", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn launch_job_legacy(
    State(state): State<AppState>,
    axum::Extension(request_id): axum::Extension<RequestId>,
    caller: Caller,
) -> Result<String, AppError> {
    let origin = Origin { request_id: Some(request_id.0), ..Origin::new(Source::Http, caller.0) };
    let launched = state.launcher.launch(&LaunchRequest::default(), &origin).await?;
    Ok(format!("Job launched: {}", launched.view().name))
}
