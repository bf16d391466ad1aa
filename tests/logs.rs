//! Logs and results of fake pods, end to end: a pod's own log (written by the test, appended to
//! while the pod runs and after it ended) followed through the launcher, and the termination
//! message a pod annotation gives its containers.

mod support;

use std::{collections::BTreeMap, time::Duration};

use futures::{Stream, StreamExt};
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{ContainerStateTerminated, Pod},
};
use kube::{
    Api,
    api::{ListParams, PostParams},
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{FakeLog, TestApp, TestNamespace, pod_of_job, put_config_map, wait_until};

/// A template whose pod stays Pending for 2 s (time for the test to give it a log of its own
/// before it starts) and then runs for 4 s (time to open a follow while it runs).
const SLOW_START: &str = r#"apiVersion: batch/v1
kind: Job
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations:
        fake.job-launcher.dev/start-delay: 2s
        fake.job-launcher.dev/duration: 4s
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
"#;

/// Reads `stream` until `received` is as long as `expected`, then asserts they are equal. Panics
/// when the stream ends or stays silent for 10 s first.
async fn read_until(
    stream: &mut (impl Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    received: &mut Vec<u8>,
    expected: &str,
) {
    while received.len() < expected.len() {
        let so_far = String::from_utf8_lossy(received).into_owned();
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Err(_) => panic!("no bytes within 10s; waiting for {expected:?}, got {so_far:?}"),
            Ok(None) => panic!("the log stream ended; waiting for {expected:?}, got {so_far:?}"),
            Ok(Some(Err(e))) => panic!("the log stream broke ({e}); waiting for {expected:?}, got {so_far:?}"),
            Ok(Some(Ok(chunk))) => received.extend_from_slice(&chunk),
        }
    }
    assert_eq!(String::from_utf8_lossy(received), expected);
}

#[tokio::test]
async fn a_followed_log_delivers_bytes_written_after_the_pod_finished_and_then_ends() {
    let ns = TestNamespace::create("follow").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("job-template.yaml", SLOW_START)]).await;
    let app = TestApp::start(&ns.name, &[]).await.ready().await;
    let created = app.http.post(app.url("/v1/jobs")).json(&json!({})).send().await.expect("POST /v1/jobs");
    assert_eq!(created.status(), StatusCode::CREATED);
    let view: Value = created.json().await.expect("JobView");
    let name = view["name"].as_str().expect("name").to_string();

    // While the pod is Pending (start-delay), it gets a log of its own.
    let pod = pod_of_job(&ns.client, &ns.name, &name).await;
    let log = FakeLog::create(&ns.client, &ns.name, &pod, "before\n").await;
    log.wait_served().await;

    let follow =
        app.http.get(app.url(&format!("/v1/jobs/{name}/logs?follow=true"))).send().await.expect("GET logs?follow");
    assert_eq!(follow.status(), StatusCode::OK);
    let mut stream = follow.bytes_stream();
    let mut received = Vec::new();
    let mut expected = String::from("before\n");
    read_until(&mut stream, &mut received, &expected).await;

    // Appended while the pod runs: it arrives.
    log.append("during ✓\n");
    expected.push_str("during ✓\n");
    read_until(&mut stream, &mut received, &expected).await;

    // The launcher's index sees the pod finish.
    let job_url = app.url(&format!("/v1/jobs/{name}"));
    wait_until(Duration::from_secs(30), "the launcher to see the pod finish", || async {
        let view: Value = app.http.get(&job_url).send().await.expect("GET job").json().await.expect("JobView");
        view["pods"][0]["phase"] == "Succeeded"
    })
    .await;

    // Bytes written after the pod finished still arrive. The four lines span 2.4 s after the
    // launcher saw the pod end (the stream used to be cut 1 s after that); each comes 600 ms
    // after the last bytes, well inside the 2 s of silence the launcher waits for before it ends
    // the stream of a finished pod. The pauses are the scenario (a pod's last lines trailing its
    // end), not a wait for a condition.
    for i in 1..=4 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        log.append(&format!("after {i}\n"));
        expected.push_str(&format!("after {i}\n"));
        read_until(&mut stream, &mut received, &expected).await;
    }
    // A partial line (no newline yet) then its end: both halves arrive as written.
    log.append("partial ");
    log.append("line\n");
    expected.push_str("partial line\n");
    read_until(&mut stream, &mut received, &expected).await;

    // Nothing more is written: kwok never ends a followed log, the launcher does, after 2 s of
    // silence; 15 s leaves room for a slow machine.
    match tokio::time::timeout(Duration::from_secs(15), stream.next()).await {
        Err(_) => panic!("the stream of a finished pod did not end within 15s of silence"),
        Ok(Some(chunk)) => panic!("unexpected bytes after the last line: {chunk:?}"),
        Ok(None) => {}
    }
    assert_eq!(String::from_utf8_lossy(&received), expected);

    // And the whole log, read again without follow, is the file's.
    let whole = app.http.get(app.url(&format!("/v1/jobs/{name}/logs"))).send().await.expect("GET logs");
    assert_eq!(whole.text().await.expect("text"), expected);
}

/// A one-container Job; `annotations` go on its pod template, none at all when empty (so the
/// pod's annotations are nil, which the stages must handle).
fn job(name: &str, annotations: &[(&str, &str)]) -> Job {
    let mut template = json!({
        "spec": { "restartPolicy": "Never", "containers": [{ "name": "main", "image": "busybox" }] }
    });
    if !annotations.is_empty() {
        let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
        template["metadata"] = json!({ "annotations": annotations });
    }
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "backoffLimit": 0, "template": template }
    }))
    .expect("job manifest")
}

/// The pod of Job `job` once it has ended, and its container's terminated state.
async fn ended_pod(pods: &Api<Pod>, job: &str) -> (String, ContainerStateTerminated) {
    let selector = format!("job-name={job}");
    wait_until(Duration::from_secs(30), &format!("the pod of Job {job} to end"), || async {
        pods.list(&ListParams::default().labels(&selector)).await.is_ok_and(|l| {
            l.items.iter().any(|p| {
                p.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|ph| ph == "Succeeded" || ph == "Failed")
            })
        })
    })
    .await;
    let list = pods.list(&ListParams::default().labels(&selector)).await.expect("list pods");
    let status = list.items.into_iter().next().and_then(|p| p.status).expect("pod status");
    let terminated = status
        .container_statuses
        .as_ref()
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .expect("container terminated");
    (status.phase.unwrap_or_default(), terminated)
}

#[tokio::test]
async fn a_termination_message_annotation_is_what_the_fake_containers_end_with() {
    let ns = TestNamespace::create("termmsg").await;
    let jobs: Api<Job> = ns.api();
    let pods: Api<Pod> = ns.api();
    let pp = PostParams::default();
    // Quotes, a newline, markup and template-looking text: all must come through as written.
    let message = "she said \"done\"\nline two: <script>alert('x')</script> & \\ $(HOME) {{ . }}";
    let key = "fake.job-launcher.dev/termination-message";
    jobs.create(&pp, &job("succeeds", &[(key, message)])).await.expect("create job");
    jobs.create(&pp, &job("fails", &[(key, message), ("fake.job-launcher.dev/exit-code", "3")])).await.expect("job");
    jobs.create(&pp, &job("plain", &[])).await.expect("create job");

    let (phase, terminated) = ended_pod(&pods, "succeeds").await;
    assert_eq!((phase.as_str(), terminated.exit_code), ("Succeeded", 0));
    assert_eq!(terminated.message.as_deref(), Some(message));

    let (phase, terminated) = ended_pod(&pods, "fails").await;
    assert_eq!((phase.as_str(), terminated.exit_code, terminated.reason.as_deref()), ("Failed", 3, Some("Error")));
    assert_eq!(terminated.message.as_deref(), Some(message));

    // A pod without annotations still completes, with no message.
    let (phase, terminated) = ended_pod(&pods, "plain").await;
    assert_eq!((phase.as_str(), terminated.reason.as_deref()), ("Succeeded", Some("Completed")));
    assert_eq!(terminated.message, None);
}
