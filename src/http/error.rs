//! RFC 9457 problem details: every error the API answers is an `application/problem+json` body
//! with a specific `detail`.

use std::time::Duration;

use crate::{
    api::{PROBLEM_CONTENT_TYPE, Problem},
    error::Error,
};
use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// An error answer: a status, a problem kind and a detail, plus headers some statuses need.
#[derive(Debug, Clone)]
pub struct AppError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub retry_after: Option<Duration>,
    pub www_authenticate: Option<&'static str>,
}

impl AppError {
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self { status, kind, title, detail: detail.into(), retry_after: None, www_authenticate: None }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-request", "Invalid request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_: format!("urn:problem:kube-job-launcher:{}", self.kind),
            title: self.title.to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.problem())).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        if let Some(after) = self.retry_after {
            let seconds = after.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        if let Some(challenge) = self.www_authenticate {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

impl From<Error> for AppError {
    fn from(error: Error) -> Self {
        let detail = error.to_string();
        match &error {
            Error::InvalidRequest(_) | Error::Render(_) => Self::bad_request(detail),
            Error::JobRejected(_) => {
                Self::new(StatusCode::BAD_REQUEST, "job-rejected", "The Kubernetes API server refused the Job", detail)
            }
            Error::UnknownTemplate { .. } => {
                Self::new(StatusCode::NOT_FOUND, "unknown-template", "Unknown template", detail)
            }
            Error::TemplatesLoading => Self::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready", detail)
                .retry_after(Duration::from_secs(1)),
            Error::TemplateInvalid { .. } => {
                Self::new(StatusCode::NOT_FOUND, "template-not-served", "Template not served", detail)
            }
            Error::JobNotFound(_) => Self::new(StatusCode::NOT_FOUND, "job-not-found", "Job not found", detail),
            Error::Recreated(_) => Self::new(StatusCode::CONFLICT, "job-recreated", "Job re-created", detail),
            Error::KeyReused { .. } => {
                Self::new(StatusCode::CONFLICT, "idempotency-key-reused", "Idempotency key reused", detail)
            }
            Error::NameTaken(_) => Self::new(StatusCode::CONFLICT, "name-taken", "Job name taken", detail),
            Error::NoPod(_) => Self::new(StatusCode::CONFLICT, "no-pod", "The Job has no pod yet", detail),
            Error::PodGone(_) => Self::new(StatusCode::NOT_FOUND, "pod-gone", "The Job's pod is gone", detail),
            Error::QueueFull { retry_after, .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "queue-full", "Queue full", detail).retry_after(*retry_after)
            }
            Error::KubeUnavailable(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "kubernetes-unavailable", "Kubernetes unavailable", detail)
                    .retry_after(Duration::from_secs(1))
            }
            Error::Kube(_) => Self::new(StatusCode::BAD_GATEWAY, "kubernetes-error", "Kubernetes API error", detail),
        }
    }
}
