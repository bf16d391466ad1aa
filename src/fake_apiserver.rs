//! A fake Kubernetes API server for the middle tier of tests: a kube `Client` whose requests a
//! test answers in memory, so that the decisions inside the I/O code (create, exists, 409, retry,
//! cancel) are tested in milliseconds. It tests decisions only: every behaviour is also proven
//! against the live control plane (`tests/`).

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::Value;

/// One request as the fake server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub body: Value,
}

/// The answers, by request: a status and a JSON body.
pub type Answer = Box<dyn Fn(&Received) -> (u16, Value) + Send + Sync>;

/// A client whose every request `answer` answers; the requests are kept in the returned log.
pub fn client(answer: Answer) -> (kube::Client, Arc<Mutex<Vec<Received>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(answer);
    let seen = log.clone();
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let (answer, seen) = (answer.clone(), seen.clone());
        async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let received = Received {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (status, json) = answer(&received);
            seen.lock().unwrap_or_else(|p| p.into_inner()).push(received);
            let response = http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(Bytes::from(json.to_string())))
                .unwrap_or_else(|_| http::Response::new(Body::empty()));
            Ok::<_, Infallible>(response)
        }
    });
    (kube::Client::new(service, "ns"), log)
}

/// A Kubernetes `Status` error body.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "code": code, "reason": reason, "message": message,
    })
}

/// A launcher serving `templates` (ConfigMap key, text) with `caps`, whose API server is the fake
/// one `answer` runs; its template store and Job index count as loaded.
pub fn launcher(
    answer: Answer,
    caps: crate::admission::Caps,
    templates: &[(&str, &str)],
) -> (crate::launch::Launcher, Arc<Mutex<Vec<Received>>>) {
    use crate::{
        jobs::JobIndex,
        launch::{LaunchSettings, Launcher},
        leader::Leadership,
        telemetry::Metrics,
        template::TemplateStore,
    };
    let (client, log) = client(answer);
    let metrics = Metrics::new();
    let store = TemplateStore::new("ns", vec!["job-template-cm".into()], metrics.clone());
    let data = templates.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    store.apply_config_map("job-template-cm", &data);
    store.mark_synced("job-template-cm");
    let index = JobIndex::new("ns");
    index.mark_synced();
    let settings = LaunchSettings {
        notices: crate::launch::NoticePolicy::default(),
        instance: "default".into(),
        caps,
        default_template: "t".into(),
        default_ttl_seconds: 3600,
        timeout: std::time::Duration::from_secs(2),
    };
    (Launcher::new(client, "ns", store, index, settings, metrics, Leadership::never()), log)
}

/// What the API server answers to a create that lands: the Job sent, with a UID.
pub fn created(request: &Received) -> (u16, Value) {
    let mut job = request.body.clone();
    job["metadata"]["uid"] = Value::from(format!("uid-{}", job["metadata"]["name"].as_str().unwrap_or_default()));
    (201, job)
}
