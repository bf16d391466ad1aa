//! Completion notices against the local control plane and SQS: a webhook that fails twice then
//! accepts gets exactly one accepted, verifiable delivery per Job; the allow-list refuses other
//! URLs; a launcher killed between a Job's end (TTL 1 s) and its notice sends it after restart,
//! once; two replicas send one notice per Job; an SQS reply queue gets one message per Job.

mod support;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use hmac::{Hmac, KeyInit, Mac};
use k8s_openapi::api::batch::v1::Job;
use kube::{Api, api::ListParams};
use serde_json::{Value, json};
use sha2::Sha256;
use support::{FAKE, LauncherProcess, TestApp, TestNamespace, TestQueue, put_config_map, wait_until};

const SECRET: &str = "s3cret-for-tests";

/// One request the receiver got: delivery id, signature header, body, and what it answered.
#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    signature: String,
    body: String,
    answered: u16,
}

/// A webhook receiver on loopback that answers 503 to the first `failures` attempts of each
/// delivery (or to every attempt while `refusing`), 200 after.
#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Vec<Delivery>>>,
    failures: usize,
    refusing: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    async fn start(failures: usize) -> (Self, String) {
        let receiver = Self { seen: Arc::default(), failures, refusing: Arc::default() };
        let app = Router::new().route("/hook", post(receive)).with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (receiver, url)
    }

    fn accepted(&self) -> Vec<Delivery> {
        self.seen.lock().expect("lock").iter().filter(|d| d.answered == 200).cloned().collect()
    }

    fn attempts(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let id = header("x-job-launcher-delivery");
    let mut seen = receiver.seen.lock().expect("lock");
    let earlier = seen.iter().filter(|d| d.id == id).count();
    let refusing = receiver.refusing.load(std::sync::atomic::Ordering::SeqCst);
    let status = if refusing || earlier < receiver.failures { 503 } else { 200 };
    seen.push(Delivery { id, signature: header("x-job-launcher-signature"), body, answered: status });
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

/// Checks the signature as a receiver would: `t=<seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`,
/// and a fresh `t`.
fn verify(signature: &str, body: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in signature.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = Some(value.to_string()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    let fresh = (jiff::Timestamp::now().as_second() - t).abs() < 300;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    fresh && expected == v1
}

fn secret_file(prefix: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("kjl-{prefix}-{}", support::random_suffix()));
    std::fs::write(&path, format!("{SECRET}\n")).expect("secret");
    path
}

fn notify_flags(secret: &std::path::Path) -> Vec<String> {
    vec![
        "--notify-url-allow".into(),
        r"http://127\.0\.0\.1:\d+/hook".into(),
        "--notify-secret-file".into(),
        secret.display().to_string(),
    ]
}

async fn launch(app_url: &str, body: Value) -> (StatusCode, Value) {
    let r = reqwest::Client::new().post(format!("{app_url}/v1/jobs")).json(&body).send().await.expect("launch");
    let status = r.status();
    (status, r.json().await.unwrap_or_default())
}

/// The fake template cleaned up a second after it ends.
fn short_lived() -> String {
    FAKE.replacen("spec:\n  backoffLimit: 0\n", "spec:\n  backoffLimit: 0\n  ttlSecondsAfterFinished: 1\n", 1)
}

async fn namespace(prefix: &str) -> TestNamespace {
    let ns = TestNamespace::create(prefix).await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("fake.yaml", &short_lived())]).await;
    ns
}

#[tokio::test]
async fn a_webhook_that_fails_twice_gets_one_accepted_signed_delivery_per_job() {
    let ns = namespace("hook").await;
    let (receiver, url) = Receiver::start(2).await;
    let secret = secret_file("hook");
    let flags = notify_flags(&secret);
    let argv: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = TestApp::start(&ns.name, &argv).await.ready().await;
    let mut names = Vec::new();
    for i in 0..3 {
        let body = json!({"template": "fake", "params": {"message": format!("result {i}")}, "notify": {"url": url}});
        let (status, view) = launch(&app.base, body).await;
        assert_eq!(status, StatusCode::CREATED, "{view}");
        names.push(view["name"].as_str().expect("name").to_string());
    }
    wait_until(Duration::from_secs(90), "three accepted deliveries", || async { receiver.accepted().len() >= 3 }).await;
    // The finalizer held each Job past its TTL until its notice was out; then it went.
    let jobs: Api<Job> = ns.api();
    wait_until(Duration::from_secs(30), "the Jobs to be cleaned up after their notices", || async {
        jobs.list(&ListParams::default()).await.is_ok_and(|l| l.items.is_empty())
    })
    .await;
    let accepted = receiver.accepted();
    let by_id: BTreeMap<&str, usize> = accepted.iter().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(d.id.as_str()).or_default() += 1;
        m
    });
    assert_eq!(by_id.len(), 3, "one delivery id per Job: {by_id:?}");
    assert!(by_id.values().all(|n| *n == 1), "exactly one accepted delivery each: {by_id:?}");
    assert_eq!(receiver.attempts(), 9, "two 503s then the 200, per Job");
    for delivery in &accepted {
        assert!(verify(&delivery.signature, &delivery.body), "a signature the receiver verifies: {delivery:?}");
        let view: Value = serde_json::from_str(&delivery.body).expect("a JobView");
        assert_eq!(view["state"], "succeeded");
        assert!(names.contains(&view["name"].as_str().unwrap_or_default().to_string()));
        assert!(view["result"].as_str().is_some_and(|r| r.starts_with("result ")), "the result: {view}");
    }
    let metrics = app.metrics().await;
    assert!(metrics.contains("job_launcher_notices_total{target=\"webhook\",outcome=\"sent\"} 3"), "{metrics}");
    assert!(metrics.contains("job_launcher_notices_total{target=\"webhook\",outcome=\"retried\"} 6"), "{metrics}");
}

#[tokio::test]
async fn a_url_outside_the_allow_list_is_a_400_naming_the_flag() {
    let ns = namespace("hookdeny").await;
    let secret = secret_file("hookdeny");
    let flags = notify_flags(&secret);
    let argv: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = TestApp::start(&ns.name, &argv).await.ready().await;
    let (status, problem) =
        launch(&app.base, json!({"template": "fake", "notify": {"url": "http://evil.example/hook"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("--notify-url-allow")), "{problem}");
    let (status, problem) =
        launch(&app.base, json!({"template": "fake", "notify": {"sqsQueueUrl": "http://127.0.0.1/q"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("--notify-sqs-allow")), "{problem}");
    assert!(ns.api::<Job>().list(&ListParams::default()).await.expect("list").items.is_empty());
}

#[tokio::test]
async fn a_launcher_killed_before_a_notice_goes_out_sends_it_after_restart_once() {
    let ns = namespace("hookkill").await;
    let (receiver, url) = Receiver::start(0).await;
    receiver.refusing.store(true, std::sync::atomic::Ordering::SeqCst);
    let secret = secret_file("hookkill");
    let flags = notify_flags(&secret);
    let mut first = LauncherProcess::start(&ns.name, &flags).await;
    let (status, view) = launch(&first.api, json!({"template": "fake", "notify": {"url": url}})).await;
    assert_eq!(status, StatusCode::CREATED);
    let name = view["name"].as_str().expect("name").to_string();
    let jobs: Api<Job> = ns.api();
    // The Job ends, its TTL of 1 s passes, and the notice is still refused.
    wait_until(Duration::from_secs(60), "the Job's end and an attempt at its notice", || async {
        receiver.attempts() >= 1
            && jobs.get_opt(&name).await.ok().flatten().is_some_and(|j| j.metadata.deletion_timestamp.is_some())
    })
    .await;
    first.signal("KILL");
    first.wait(Duration::from_secs(10)).await;
    assert!(jobs.get_opt(&name).await.expect("get").is_some(), "the finalizer keeps the Job for its notice");
    receiver.refusing.store(false, std::sync::atomic::Ordering::SeqCst);
    let _second = LauncherProcess::start(&ns.name, &flags).await;
    wait_until(Duration::from_secs(60), "the notice after the restart", || async { !receiver.accepted().is_empty() })
        .await;
    wait_until(Duration::from_secs(30), "the Job to go once its notice is out", || async {
        jobs.get_opt(&name).await.is_ok_and(|j| j.is_none())
    })
    .await;
    assert_eq!(receiver.accepted().len(), 1, "exactly once");
}

#[tokio::test]
async fn two_replicas_send_one_notice_per_job() {
    let ns = namespace("hooktwo").await;
    let (receiver, url) = Receiver::start(0).await;
    let secret = secret_file("hooktwo");
    let flags = notify_flags(&secret);
    let argv: Vec<&str> = flags.iter().map(String::as_str).collect();
    let one = TestApp::start(&ns.name, &argv).await.ready().await;
    let two = TestApp::start(&ns.name, &argv).await.ready().await;
    for i in 0..6 {
        let app = if i % 2 == 0 { &one } else { &two };
        let (status, _) = launch(&app.base, json!({"template": "fake", "notify": {"url": url}})).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let jobs: Api<Job> = ns.api();
    wait_until(Duration::from_secs(90), "every notice out and every Job gone", || async {
        receiver.accepted().len() >= 6 && jobs.list(&ListParams::default()).await.is_ok_and(|l| l.items.is_empty())
    })
    .await;
    // The Jobs are gone: no replica holds a notice any more, so none can come late.
    assert_eq!(receiver.accepted().len(), 6, "one notice per Job across two replicas");
}

#[tokio::test]
async fn an_sqs_reply_queue_gets_one_message_per_job() {
    let ns = namespace("reply").await;
    let replies = TestQueue::create("reply").await;
    let mut flags = support::sqs_flags(&replies.url);
    // The launcher's SQS settings, without consuming: the reply queue is only written to.
    flags.drain(..2);
    flags.extend(["--notify-sqs-allow".into(), format!("{}.*", regex_escape(&replies.url))]);
    let argv: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = TestApp::start(&ns.name, &argv).await.ready().await;
    for i in 0..3 {
        let body =
            json!({"template": "fake", "params": {"message": format!("r{i}")}, "notify": {"sqsQueueUrl": replies.url}});
        assert_eq!(launch(&app.base, body).await.0, StatusCode::CREATED);
    }
    wait_until(Duration::from_secs(90), "three replies", || async { replies.depth_of(&replies.url).await >= 3 }).await;
    let jobs: Api<Job> = ns.api();
    wait_until(Duration::from_secs(30), "the Jobs to go once their notices are out", || async {
        jobs.list(&ListParams::default()).await.is_ok_and(|l| l.items.is_empty())
    })
    .await;
    let received = replies
        .sqs
        .receive_message()
        .queue_url(&replies.url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    let mut results: Vec<String> = received
        .iter()
        .filter_map(|m| serde_json::from_str::<Value>(m.body()?).ok())
        .map(|v| v["result"].as_str().unwrap_or_default().to_string())
        .collect();
    results.sort();
    assert_eq!(results, vec!["r0", "r1", "r2"], "one message per Job, each its own");
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '/' || c == ':' { c.to_string() } else { format!("\\{c}") })
        .collect()
}
