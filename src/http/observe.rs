//! Request ids, request spans, and the per-route request counter.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::HeaderValue,
    middleware::Next,
    response::Response,
};
use tracing::Instrument;

use crate::{
    api::REQUEST_ID_HEADER,
    launch::naming::random_u64,
    telemetry::{HttpLabels, Metrics},
};

/// The id of one request: the caller's `X-Request-Id` when it is sane (at most 64 letters,
/// digits and `-_.:`: it reaches logs and a Job annotation), else a new one. It is logged with
/// every line of the request and recorded on the Job the request creates. Our own rather than
/// tower-http's request-id layer, which passes any incoming value on unchecked.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn request_id_of(request: &Request) -> RequestId {
    let given = request.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).filter(|v| {
        !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    });
    RequestId(given.map(String::from).unwrap_or_else(|| format!("{:016x}", random_u64())))
}

/// Gives each request an id and a span, logs its outcome, and counts it by route and status.
pub async fn observe(State(metrics): State<Metrics>, mut request: Request, next: Next) -> Response {
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
        .get_or_create(&HttpLabels { method: method_label(&method).into(), route, status: status.as_u16().to_string() })
        .inc();
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// A method as a metric label: the standard ones by name, anything else (hyper accepts any token
/// as a method) as `other`, so callers cannot grow the metrics with methods of their own.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_standard_methods_name_a_series() {
        assert_eq!(method_label(&axum::http::Method::POST), "POST");
        let invented = axum::http::Method::from_bytes(b"BREW").expect("a token is a method");
        assert_eq!(method_label(&invented), "other");
    }
}
