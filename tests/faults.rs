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
    args.extend(
        ["--sqs-template", "fake", "--sqs-wait-time", "1s", "--sqs-concurrency", "1", "--watch-failure-bound", "3s"]
            .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = TestApp::start(&ns.name, &args).await.ready().await;
    let readyz = || {
        let (http, url) = (app.http.clone(), format!("{}/readyz", app.admin));
        async move {
            let r = http.get(url).send().await.expect("readyz");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };

    wait_until(Duration::from_secs(60), "the burst to be under way", || async { job_count(&ns).await >= 20 }).await;
    let before = job_count(&ns).await;
    component(&["stop", "kube-apiserver"]).await;
    assert!(before < 200, "the outage must come mid-burst ({before} Jobs before it)");
    // The outage lasts 10 s (a fault, not a wait for a condition); within it, readiness turns
    // false once the watches have failed for the 3 s bound.
    let outage = tokio::time::Instant::now() + Duration::from_secs(10);
    wait_until(Duration::from_secs(9), "readyz to name the failing watch", || async {
        let (status, body) = readyz().await;
        status == 503 && body.contains("failing for")
    })
    .await;
    tokio::time::sleep_until(outage).await;
    component(&["recover"]).await;
    wait_until(Duration::from_secs(60), "readyz to recover", || async { readyz().await.0 == 200 }).await;

    wait_until(Duration::from_secs(120), "every message launched and the queue empty", || async {
        job_count(&ns).await >= 200 && queue.depth_of(&queue.url).await == 0
    })
    .await;
    // Nothing more may arrive: the queue holds no message (visible or in flight), and a message is
    // deleted only after its Job exists, so only a create already on the wire could still land;
    // creates are answered in milliseconds here, and 2 s is far more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(job_count(&ns).await, 200, "each message launched exactly once");
    assert!(queue.dead_letters().await.is_empty(), "a transient outage dead-letters nothing");
    let metrics = app.metrics().await;
    eprintln!("{}", metrics.lines().filter(|l| l.contains("sqs_messages_total")).collect::<Vec<_>>().join("\n"));
}

/// Launches `count` Jobs over HTTP from 8 clients, each retrying its request under the same
/// idempotency key until it succeeds, while `fault` runs. Returns every answer's status and
/// the Job names the 2xx answers gave, by key.
async fn http_burst_through(
    app: &TestApp,
    count: usize,
    fault: impl std::future::Future<Output = ()>,
) -> (Vec<u16>, std::collections::BTreeMap<usize, String>) {
    use std::sync::{Arc, Mutex};
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let names = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients = (0..8).map(|_| {
        let (statuses, names, next) = (statuses.clone(), names.clone(), next.clone());
        let (http, url) = (app.http.clone(), app.url("/v1/jobs"));
        async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= count {
                    return;
                }
                let deadline = std::time::Instant::now() + Duration::from_secs(120);
                loop {
                    assert!(std::time::Instant::now() < deadline, "request {i} never succeeded");
                    let sent = http
                        .post(&url)
                        .header("Idempotency-Key", format!("burst-{i}"))
                        .json(&json!({"template": "parked"}))
                        .timeout(Duration::from_secs(40))
                        .send()
                        .await;
                    let Ok(answer) = sent else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    let status = answer.status().as_u16();
                    statuses.lock().unwrap_or_else(|p| p.into_inner()).push(status);
                    if answer.status().is_success() {
                        let view: serde_json::Value = answer.json().await.expect("JobView");
                        names
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(i, view["name"].as_str().unwrap_or_default().to_string());
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    });
    tokio::join!(futures::future::join_all(clients), fault);
    let statuses = statuses.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let names = names.lock().unwrap_or_else(|p| p.into_inner()).clone();
    (statuses, names)
}

/// Jobs that are created suspended, so a burst of hundreds costs no pods.
const PARKED: &str = "apiVersion: batch/v1\nkind: Job\nspec:\n  suspend: true\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox\n";

async fn assert_burst_outcome(
    ns: &TestNamespace,
    count: usize,
    statuses: &[u16],
    names: &std::collections::BTreeMap<usize, String>,
) {
    let failures: Vec<u16> = statuses.iter().copied().filter(|s| !(200..300).contains(s)).collect();
    eprintln!(
        "{} answers: {} 2xx, failures {:?}",
        statuses.len(),
        statuses.len() - failures.len(),
        failures.iter().collect::<std::collections::BTreeSet<_>>()
    );
    assert!(failures.iter().all(|s| *s == 503), "every failure is a 503 the client can retry: {failures:?}");
    assert!(statuses.iter().all(|s| *s != 500 && *s != 502), "no 5xx but 503");
    assert_eq!(names.len(), count, "every request succeeded in the end");
    let jobs =
        Api::<Job>::namespaced(ns.client.clone(), &ns.name).list(&ListParams::default()).await.expect("list").items;
    let existing: std::collections::BTreeSet<String> = jobs.iter().filter_map(|j| j.metadata.name.clone()).collect();
    assert_eq!(jobs.len(), count, "retries created no duplicates");
    for (i, name) in names {
        assert!(existing.contains(name), "answer {i} names Job {name}, which exists");
    }
}

/// 400 idempotent HTTP launches while `component` is stopped for 5 s and then brought back:
/// every 2xx answer names a Job that exists, every failure is a 503, retries make no duplicates.
async fn http_burst_with_outage_of(component_name: &str) {
    let ns = TestNamespace::create(&format!("fault-{component_name}")).await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("parked.yaml", PARKED)]).await;
    let app = TestApp::start(&ns.name, &["--launch-timeout", "2s"]).await.ready().await;
    let observer = support::JobObserver::start(&ns).await;
    let (statuses, names) = http_burst_through(&app, 400, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        component(&["stop", component_name]).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        component(&["recover"]).await;
    })
    .await;
    assert!(statuses.contains(&503), "the outage was felt: {statuses:?}");
    assert_burst_outcome(&ns, 400, &statuses, &names).await;
    // The other fault tests' observers must outlive such an outage too: their watch goes on.
    let stats =
        observer.wait_for(Duration::from_secs(30), "the observer to see all 400 Jobs", |s| s.present == 400).await;
    eprintln!("the observer's watch met {} errors and caught up", stats.watch_errors.len());
}

#[tokio::test]
async fn fault_apiserver_restarted_during_an_http_burst() {
    http_burst_with_outage_of("kube-apiserver").await;
}

#[tokio::test]
async fn fault_etcd_restarted_during_an_http_burst() {
    http_burst_with_outage_of("etcd").await;
}

#[tokio::test]
async fn fault_sqs_server_hung_for_20s_then_back() {
    let ns = TestNamespace::create("fault-sqs").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("fake.yaml", FAKE)]).await;
    let queue = TestQueue::create("fault-sqs").await;
    queue.send_all(&(0..200).map(|i| json!({"jobId": format!("job-{i}")}).to_string()).collect::<Vec<_>>()).await;
    let mut args = sqs_flags(&queue.url);
    args.extend(["--sqs-template", "fake", "--sqs-wait-time", "1s", "--sqs-concurrency", "1"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _app = TestApp::start(&ns.name, &args).await.ready().await;
    wait_until(Duration::from_secs(60), "the burst to be under way", || async { job_count(&ns).await >= 20 }).await;
    component(&["pause", "sqs"]).await;
    let during = job_count(&ns).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    component(&["resume", "sqs"]).await;
    assert!(during < 200, "the outage came mid-burst ({during} Jobs)");
    wait_until(Duration::from_secs(120), "every message launched and the queue empty", || async {
        job_count(&ns).await >= 200 && queue.depth_of(&queue.url).await == 0
    })
    .await;
    // Quiet period, as above: an empty queue leaves only creates already on the wire.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(job_count(&ns).await, 200, "no message lost or launched twice");
    assert!(queue.dead_letters().await.is_empty());
}

#[tokio::test]
async fn fault_the_launchers_watch_is_cut_and_its_status_catches_up() {
    let ns = TestNamespace::create("fault-watch").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("fake.yaml", FAKE)]).await;
    let proxy = support::CuttableProxy::start(support::apiserver_address().await).await;
    let app = TestApp::start_as(proxy.client().await, &ns.name, &[]).await.ready().await;
    let launch = |duration: &'static str| {
        let (http, url) = (app.http.clone(), app.url("/v1/jobs"));
        async move {
            let r = http
                .post(url)
                .json(&json!({"template": "fake", "params": {"duration": duration}}))
                .send()
                .await
                .expect("launch");
            r.json::<serde_json::Value>().await.expect("view")["name"].as_str().expect("name").to_string()
        }
    };
    let finishing = launch("3s").await;
    let deleted = launch("60s").await;
    let state = |name: String| {
        let (http, url) = (app.http.clone(), app.url(&format!("/v1/jobs/{name}")));
        async move {
            let r = http.get(url).send().await.expect("get");
            if r.status() == 404 {
                "gone".to_string()
            } else {
                r.json::<serde_json::Value>().await.expect("view")["state"].as_str().unwrap_or_default().to_string()
            }
        }
    };
    wait_until(Duration::from_secs(20), "both running", || async {
        state(finishing.clone()).await == "running" && state(deleted.clone()).await == "running"
    })
    .await;

    // While the launcher is cut off, one Job finishes and the other is deleted.
    proxy.cut();
    Api::<Job>::namespaced(ns.client.clone(), &ns.name)
        .delete(&deleted, &kube::api::DeleteParams::background())
        .await
        .expect("delete directly");
    // A negative check: the Job finished 5 s ago and the cut-off launcher still shows it running;
    // with its watch connected it would have seen the change in well under a second.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(state(finishing.clone()).await, "running", "cut off, the launcher cannot know yet");
    proxy.restore();

    wait_until(Duration::from_secs(30), "the launcher's status to catch up", || async {
        state(finishing.clone()).await == "succeeded" && state(deleted.clone()).await == "gone"
    })
    .await;
}

#[tokio::test]
async fn fault_a_deleted_template_config_map_is_reported_missing_until_it_returns() {
    let ns = TestNamespace::create("fault-cm").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("fake.yaml", FAKE)]).await;
    let app = TestApp::start(&ns.name, &[]).await.ready().await;
    let launch = || {
        let (http, url) = (app.http.clone(), app.url("/v1/jobs"));
        async move { http.post(url).json(&json!({"template": "fake"})).send().await.expect("launch").status().as_u16() }
    };
    assert_eq!(launch().await, 201);
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(ns.client.clone(), &ns.name)
        .delete("job-template-cm", &Default::default())
        .await
        .expect("delete the ConfigMap");
    wait_until(Duration::from_secs(10), "launches to answer 404", || async { launch().await == 404 }).await;
    let templates: serde_json::Value =
        app.http.get(app.url("/v1/templates")).send().await.expect("t").json().await.expect("json");
    assert_eq!(templates, json!([]), "no templates while the ConfigMap is gone");
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("fake.yaml", FAKE)]).await;
    wait_until(Duration::from_secs(10), "launches to work again", || async { launch().await == 201 }).await;
}

/// The leader's Lease traffic stalls (the connection stays open and answers nothing) while a
/// second replica is ready to take over; later the stall is released. The stalled replica stops
/// admitting within the renew deadline of its last renew, by its own clock; the other takes
/// over; a watch never sees more Jobs active than the cap.
#[tokio::test]
async fn fault_leader_hang_hands_over_without_two_leaders() {
    use kube_job_launcher::app::Clients;
    let ns = TestNamespace::create("fault-leader").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("fake.yaml", FAKE)]).await;
    let observer = support::JobObserver::start(&ns).await;
    let proxy = support::StallableProxy::start(support::apiserver_address().await).await;
    // A 6 s lease: renewed every 1.2 s, its holder stops two thirds in (4 s), others take over
    // after 6 s without a change.
    let args = ["--max-active", "2", "--leader-lease-duration", "6s", "--admission-resync", "1s"];
    let clients = Clients { api: support::client().await, lease: proxy.client().await };
    let stalled = TestApp::start_with(clients, &ns.name, &args).await.ready().await;
    let queue = |app: &TestApp| {
        let (http, url) = (app.http.clone(), app.url("/v1/queue"));
        async move { http.get(url).send().await.expect("queue").json::<serde_json::Value>().await.expect("json") }
    };
    wait_until(Duration::from_secs(20), "the first replica to lead", || async {
        queue(&stalled).await["leader"] == true
    })
    .await;
    let stalled_replica = queue(&stalled).await["replica"].as_str().expect("replica").to_string();
    let other = TestApp::start(&ns.name, &args).await.ready().await;
    for _ in 0..40 {
        let r = other
            .http
            .post(other.url("/v1/jobs"))
            .json(&json!({"template": "fake", "params": {"duration": "1s"}}))
            .send()
            .await
            .expect("launch");
        assert_eq!(r.status(), 201);
    }
    observer
        .wait_for(Duration::from_secs(60), "a few admissions by the first leader", |stats| {
            stats.admissions.iter().filter(|(_, by, _)| *by == stalled_replica).count() >= 4
        })
        .await;

    proxy.stall();
    let stall_started = std::time::Instant::now();
    wait_until(Duration::from_secs(6), "the stalled replica to stop leading (renew deadline 4 s)", || async {
        queue(&stalled).await["leader"] == false
    })
    .await;
    wait_until(Duration::from_secs(20), "the other replica to take over", || async {
        queue(&other).await["leader"] == true
    })
    .await;
    let other_replica = queue(&other).await["replica"].as_str().expect("replica").to_string();
    observer
        .wait_for(Duration::from_secs(30), "admissions by the new leader", |stats| {
            stats.admissions.iter().filter(|(_, by, _)| *by == other_replica).count() >= 4
        })
        .await;
    proxy.release();

    let stats = observer.wait_finished(40, Duration::from_secs(120)).await;
    assert!(stats.max_active <= 2, "never more than the cap active: {stats:?}");
    // Seen by the watch at most a second after it was made; the stalled replica's last renew was
    // sent before the stall, so it may admit nothing later than 4 s after the stall began.
    let deadline = stall_started + Duration::from_secs(5);
    let late: Vec<_> = stats.admissions.iter().filter(|(_, by, at)| *by == stalled_replica && *at > deadline).collect();
    assert!(late.is_empty(), "the stalled replica admitted after its leadership expired: {late:?}");
    let by_other = stats.admissions.iter().filter(|(_, by, _)| *by == other_replica).count();
    eprintln!(
        "leader hang: {} admitted ({} by the stalled leader before its deadline, {by_other} by the next), active peak {}",
        stats.admissions.len(),
        stats.admissions.len() - by_other,
        stats.max_active
    );
}

/// A long queue under a redrive policy: maxReceiveCount 2, visibility 5 s, one Job active and one
/// queued at most, Jobs that run 40 s, eight messages. Messages wait minutes for room; none may
/// be dead-lettered (each receive counts towards the policy) or launched twice.
#[tokio::test]
async fn fault_long_queue_under_a_redrive_policy() {
    let ns = TestNamespace::create("fault-redrive").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("fake.yaml", FAKE)]).await;
    let observer = support::JobObserver::start(&ns).await;
    let queue = TestQueue::with_max_receives("fault-redrive", 2).await;
    let bodies: Vec<String> = (0..8)
        .map(|i| json!({"template": "fake", "params": {"duration": "40s"}, "labels": {"n": i.to_string()}}).to_string())
        .collect();
    let ids = queue.send_all(&bodies).await;
    let mut args = sqs_flags(&queue.url);
    args.extend(
        ["--max-active", "1", "--max-queued", "1", "--sqs-visibility-timeout", "5s", "--sqs-wait-time", "1s"]
            .map(String::from),
    );
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let _app = TestApp::start(&ns.name, &argv).await.ready().await;
    wait_until(Duration::from_secs(480), "all eight messages launched and the queue empty", || async {
        job_count(&ns).await >= 8 && queue.depth_of(&queue.url).await == 0
    })
    .await;
    let dead = queue.dead_letters().await;
    let jobs =
        Api::<Job>::namespaced(ns.client.clone(), &ns.name).list(&ListParams::default()).await.expect("jobs").items;
    let mut launched: Vec<String> = jobs
        .iter()
        .filter_map(|j| j.metadata.annotations.as_ref()?.get("job-launcher.dev/sqs-message-id").cloned())
        .collect();
    launched.sort();
    let mut expected = ids.clone();
    expected.sort();
    let stats = observer.stats();
    eprintln!(
        "long queue under a redrive policy: {} launched, {} admitted so far, active peak {}, {} dead-lettered, {} duplicated",
        jobs.len(),
        stats.started.len(),
        stats.max_active,
        dead.len(),
        jobs.len() - launched.iter().collect::<std::collections::BTreeSet<_>>().len()
    );
    assert!(dead.is_empty(), "good messages dead-lettered: {dead:?}");
    assert_eq!(launched, expected, "one Job per message, none twice");
    assert!(stats.max_active <= 1, "{stats:?}");
}
