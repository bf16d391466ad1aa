//! Status streams against the local control plane: one Job followed to its end, resumption with
//! Last-Event-ID on another replica after the Job is gone, the stream of all Jobs with its
//! filter and queue events, the bound on streams, cancel and shutdown, and results.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{FAKE, TestApp, TestNamespace, put_config_map, setup, sse::SseReader, wait_until};

async fn launch(app: &TestApp, body: Value) -> String {
    let r = app.http.post(app.url("/v1/jobs")).json(&body).send().await.expect("launch");
    assert!(r.status().is_success(), "{}", r.status());
    r.json::<Value>().await.expect("view")["name"].as_str().expect("name").to_string()
}

async fn open(app: &TestApp, path: &str, last_event_id: Option<u64>) -> SseReader {
    let mut request = app.http.get(app.url(path));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let response = request.send().await.expect("stream");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/event-stream"));
    SseReader::new(response)
}

#[tokio::test]
async fn a_jobs_stream_follows_it_from_pending_to_succeeded_and_ends() {
    let (_ns, app) = setup("stream").await;
    let name = launch(&app, json!({"template": "fake", "params": {"duration": "1s"}})).await;
    let mut stream = open(&app, &format!("/v1/jobs/{name}/events"), None).await;
    let mut states = Vec::new();
    let mut ids = Vec::new();
    let followed = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(event) = stream.next().await {
            assert_eq!(event.event, "job");
            states.push(event.json()["state"].as_str().unwrap_or_default().to_string());
            ids.push(event.id.expect("an id"));
        }
    })
    .await;
    assert!(followed.is_ok(), "the stream ends after the terminal state: {states:?}");
    assert_eq!(states.last().map(String::as_str), Some("succeeded"), "{states:?}");
    assert!(states.contains(&"running".to_string()), "{states:?}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
}

/// The fake template, cleaned up one second after it finishes.
fn short_lived() -> String {
    FAKE.replacen("spec:\n  backoffLimit: 0\n", "spec:\n  backoffLimit: 0\n  ttlSecondsAfterFinished: 1\n", 1)
}

#[tokio::test]
async fn a_stream_resumed_on_another_replica_after_the_job_is_gone_still_gets_its_end() {
    let ns = TestNamespace::create("resume").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("fake.yaml", &short_lived())]).await;
    let first = TestApp::start(&ns.name, &[]).await.ready().await;
    let second = TestApp::start(&ns.name, &[]).await.ready().await;
    let name = launch(&first, json!({"template": "fake", "params": {"duration": "2s", "message": "done"}})).await;
    let mut stream = open(&first, &format!("/v1/jobs/{name}/events"), None).await;
    let seen = stream.next().await.expect("the current view");
    let last_id = seen.id.expect("an id");
    drop(stream);
    // The connection dropped; the Job ends and TTL cleanup deletes it.
    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> = ns.api();
    wait_until(Duration::from_secs(60), "the Job to be gone", || async {
        jobs.get_opt(&name).await.is_ok_and(|j| j.is_none())
    })
    .await;
    let mut resumed = open(&second, &format!("/v1/jobs/{name}/events"), Some(last_id)).await;
    let end = resumed.next().await.expect("the final view");
    assert_eq!(end.json()["state"], "succeeded", "{}", end.data);
    assert!(end.id.is_some_and(|id| id > last_id));
    assert!(resumed.next().await.is_none(), "and the stream ends");
    // A reader that already has the end gets nothing more than the end of the stream.
    let mut again = open(&second, &format!("/v1/jobs/{name}/events"), end.id).await;
    assert!(tokio::time::timeout(Duration::from_secs(5), again.next()).await.is_ok_and(|e| e.is_none()));
}

#[tokio::test]
async fn the_stream_of_all_jobs_passes_what_matches_and_the_queue_coalesced() {
    let ns = TestNamespace::create("allstream").await;
    let other = FAKE.replace("version: v1", "version: other");
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("fake.yaml", FAKE), ("other.yaml", &other)]).await;
    let app = TestApp::start(&ns.name, &["--max-active", "1"]).await.ready().await;
    let mut stream = open(&app, "/v1/events?template=fake", None).await;
    let mine = launch(&app, json!({"template": "fake", "params": {"duration": "1s"}})).await;
    launch(&app, json!({"template": "other", "params": {"duration": "1s"}})).await;
    let mut job_events = Vec::new();
    let mut queue_events = 0;
    let got = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(event) = stream.next().await {
            match event.event.as_str() {
                "job" => {
                    let view = event.json();
                    assert_eq!(view["template"], "fake", "filtered: {}", event.data);
                    job_events.push(view["state"].as_str().unwrap_or_default().to_string());
                    if view["name"] == mine.as_str() && view["state"] == "succeeded" {
                        return;
                    }
                }
                "queue" => {
                    queue_events += 1;
                    assert!(event.json()["queued"].is_u64(), "{}", event.data);
                }
                other => panic!("unexpected event {other}"),
            }
        }
    })
    .await;
    assert!(got.is_ok(), "the fake Job's end arrived: {job_events:?}");
    assert!(queue_events >= 1, "the queue changed, so a queue event came");
}

#[tokio::test]
async fn streams_are_bounded_and_end_on_shutdown() {
    let (_ns, app) = setup("bounded").await;
    let app = {
        drop(app);
        TestApp::start(&_ns.name, &["--max-streams", "2"]).await.ready().await
    };
    let mut one = open(&app, "/v1/events", None).await;
    let _two = open(&app, "/v1/events", None).await;
    let third = app.http.get(app.url("/v1/events")).send().await.expect("answer");
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(third.headers().get("retry-after").is_some());
    app.stop().await;
    let end = tokio::time::timeout(Duration::from_secs(10), one.next()).await.expect("the stream ends on shutdown");
    assert_eq!(end.map(|e| (e.json()["reason"].clone(), e.event)), Some((json!("shutdown"), "end".to_string())));
}

#[tokio::test]
async fn a_cancelled_jobs_stream_ends_with_cancelled_and_a_result_shows_the_termination_message() {
    let (_ns, app) = setup("cancelstream").await;
    let long = launch(&app, json!({"template": "fake", "params": {"duration": "60s"}})).await;
    let mut stream = open(&app, &format!("/v1/jobs/{long}/events"), None).await;
    stream.next().await.expect("the current view");
    let cancelled = app.http.delete(app.url(&format!("/v1/jobs/{long}"))).send().await.expect("delete");
    assert_eq!(cancelled.status(), StatusCode::ACCEPTED);
    let mut last = None;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("in time") {
        last = Some(event.json()["state"].clone());
    }
    assert_eq!(last, Some(json!("cancelled")));

    let with_result =
        launch(&app, json!({"template": "fake", "params": {"duration": "300ms", "message": "42 widgets"}})).await;
    let mut stream = open(&app, &format!("/v1/jobs/{with_result}/events"), None).await;
    let mut end = Value::Null;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("in time") {
        end = event.json();
    }
    assert_eq!(end["state"], "succeeded");
    assert_eq!(end["result"], "42 widgets", "the pod's termination message: {end}");
    assert_eq!(end["pods"][0]["terminationMessage"], "42 widgets");
}
