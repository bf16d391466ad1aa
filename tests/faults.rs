//! Faults of the things around the launcher: it keeps its promises (no request or message lost
//! or launched twice) while they fail. These stop parts of the shared local control plane, so
//! `make test` runs them on their own, one at a time, after the other tests; every test here is
//! named `fault_…` so the main run can leave them out.

mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::{Api, api::ListParams};
use serde_json::json;
use support::{FAKE, TestApp, TestNamespace, TestQueue, component, put_config_map, sqs_flags, wait_until};

async fn job_count(ns: &TestNamespace) -> usize {
    Api::<Job>::namespaced(ns.client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or(0)
}

#[tokio::test]
async fn fault_apiserver_stopped_for_10s_during_an_sqs_burst() {
    let ns = TestNamespace::create("fault-api").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("fake.yaml", FAKE)]).await;
    let queue = TestQueue::create("fault-api").await;
    let bodies: Vec<String> = (0..200).map(|i| json!({"jobId": format!("job-{i}")}).to_string()).collect();
    queue.send_all(&bodies).await;
    let mut args = sqs_flags(&queue.url);
    args.extend(["--sqs-template", "fake", "--sqs-wait-time", "1s", "--sqs-concurrency", "1"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = TestApp::start(&ns.name, &args).await.ready().await;

    wait_until(Duration::from_secs(60), "the burst to be under way", || async { job_count(&ns).await >= 20 }).await;
    let before = job_count(&ns).await;
    component(&["stop", "kube-apiserver"]).await;
    assert!(before < 200, "the outage must come mid-burst ({before} Jobs before it)");
    tokio::time::sleep(Duration::from_secs(10)).await;
    component(&["start"]).await;

    wait_until(Duration::from_secs(120), "every message launched and the queue empty", || async {
        job_count(&ns).await >= 200 && queue.depth_of(&queue.url).await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(job_count(&ns).await, 200, "each message launched exactly once");
    assert!(queue.dead_letters().await.is_empty(), "a transient outage dead-letters nothing");
    let metrics = app.metrics().await;
    eprintln!("{}", metrics.lines().filter(|l| l.contains("sqs_messages_total")).collect::<Vec<_>>().join("\n"));
}
