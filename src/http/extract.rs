//! Extractors whose rejections are problem+json answers with a specific detail.

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    http::{StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;

use super::error::AppError;

/// A JSON body: 415 without a JSON content type, 413 over the body limit, 400 with the serde
/// error (unknown field, wrong type, with its line and column) otherwise.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> AppError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "the body must be JSON, sent with `Content-Type: application/json`",
        ),
        JsonRejection::JsonDataError(e) => {
            AppError::bad_request(format!("the body does not fit the schema: {}", e.body_text()))
        }
        JsonRejection::JsonSyntaxError(e) => {
            AppError::bad_request(format!("the body is not valid JSON: {}", e.body_text()))
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!("the body is larger than the limit of {} bytes", crate::api::MAX_BODY_BYTES),
        ),
        other => AppError::bad_request(other.body_text()),
    }
}

/// A path parameter, with a problem answer when it does not parse.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Self(v))
            .map_err(|e| AppError::bad_request(e.body_text()))
    }
}

/// The query string as (key, value) pairs, repeated keys kept, percent-decoded.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        Ok(Self(form_urlencoded::parse(query.as_bytes()).into_owned().collect()))
    }
}

impl QueryPairs {
    /// Refuses parameters a route does not know, naming them.
    pub fn only(&self, known: &[&str]) -> Result<(), AppError> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((k, _)) => {
                Err(AppError::bad_request(format!("unknown query parameter {k:?} (known: {})", known.join(", "))))
            }
            None => Ok(()),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A parameter parsed with `FromStr`; 400 naming it when it does not parse.
    pub fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, AppError>
    where
        T::Err: std::fmt::Display,
    {
        self.get(key)
            .map(|v| v.parse::<T>().map_err(|e| AppError::bad_request(format!("query parameter {key}={v:?}: {e}"))))
            .transpose()
    }

    /// A boolean flag: `true`/`false`/`1`/`0`, or present without a value.
    pub fn flag(&self, key: &str) -> Result<bool, AppError> {
        match self.get(key) {
            None => Ok(false),
            Some("" | "true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(AppError::bad_request(format!("query parameter {key}={v:?}: want true or false"))),
        }
    }
}

/// The `{name}` of a Job's route. A name Kubernetes would refuse (RFC 1123 subdomain: at most
/// 253 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit)
/// names no Job: 404 at once, so that no such string reaches an API server request path.
pub struct JobName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for JobName {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(name) = Path::<String>::from_request_parts(parts, state).await?;
        if is_object_name(&name) {
            Ok(Self(name))
        } else {
            Err(crate::error::Error::JobNotFound(crate::template::render::quote_prefix(&name)).into())
        }
    }
}

/// Whether `name` is a valid Kubernetes object name (RFC 1123 subdomain).
pub fn is_object_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 253
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || *b == b'-' || *b == b'.')
}

#[cfg(test)]
mod tests {
    use super::is_object_name;

    #[test]
    fn only_names_kubernetes_accepts_are_job_names() {
        for good in ["a", "greeting-x7k2p", "k-abc123", "a.b-c", &"a".repeat(253)] {
            assert!(is_object_name(good), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a b", "é", "a/b", "a\r\n", &"a".repeat(254), ".a"] {
            assert!(!is_object_name(bad), "{bad:?}");
        }
    }
}
