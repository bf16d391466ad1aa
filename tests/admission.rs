//! Ordered admission under a cap, backpressure, and several replicas with one leader.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    FAKE, JobObserver, LauncherProcess, TestApp, TestNamespace, TestQueue, put_config_map, sqs_flags, wait_until,
};

async fn setup(prefix: &str, extra_templates: &[(&str, &str)]) -> TestNamespace {
    let ns = TestNamespace::create(prefix).await;
    let mut templates = vec![("fake.yaml", FAKE)];
    templates.extend_from_slice(extra_templates);
    put_config_map(&ns.client, &ns.name, "job-template-cm", &templates).await;
    ns
}

async fn launch(http: &reqwest::Client, base: &str, body: Value) -> Value {
    let r = http.post(format!("{base}/v1/jobs")).json(&body).send().await.expect("launch");
    assert!(r.status().is_success(), "launch answered {}", r.status());
    r.json().await.expect("JobView")
}

fn name(view: &Value) -> String {
    view["name"].as_str().expect("name").to_string()
}

/// Three blockers fill the cap, then thirty Jobs with mixed priorities queue behind them.
/// Returns the thirty names in submission order with their priorities.
async fn submit_blockers_then_thirty(http: &reqwest::Client, base: &str) -> (Vec<String>, Vec<(String, i32)>) {
    let mut blockers = Vec::new();
    for _ in 0..3 {
        blockers.push(name(
            &launch(http, base, json!({"template": "fake", "priority": 100, "params": {"duration": "3s"}})).await,
        ));
    }
    let mut thirty = Vec::new();
    for i in 0..30 {
        let priority = [0, 5, 10][i % 3] + if i % 7 == 0 { 1 } else { 0 };
        let view =
            launch(http, base, json!({"template": "fake", "priority": priority, "params": {"duration": "1s"}})).await;
        thirty.push((name(&view), priority));
    }
    (blockers, thirty)
}

/// Priority high to low, then submission order.
fn expected_order(submitted: &[(String, i32)]) -> Vec<String> {
    let mut order: Vec<(usize, &(String, i32))> = submitted.iter().enumerate().collect();
    order.sort_by_key(|(i, (_, p))| (std::cmp::Reverse(*p), *i));
    order.into_iter().map(|(_, (n, _))| n.clone()).collect()
}

#[tokio::test]
async fn a_cap_of_three_admits_thirty_jobs_in_priority_then_submission_order() {
    let ns = setup("order", &[]).await;
    let observer = JobObserver::start(&ns).await;
    let app = TestApp::start(&ns.name, &["--max-active", "3"]).await.ready().await;
    let (blockers, thirty) = submit_blockers_then_thirty(&app.http, &app.base).await;

    let queued: Value = app
        .http
        .get(app.url(&format!("/v1/jobs/{}", thirty[0].0)))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(queued["state"], "queued");
    assert!(queued["queuePosition"].is_u64(), "{queued}");
    let queue: Value = app.http.get(app.url("/v1/queue")).send().await.expect("queue").json().await.expect("json");
    assert_eq!((queue["maxActive"].as_u64(), queue["leader"].as_bool()), (Some(3), Some(true)));
    assert!(queue["queued"].as_u64().is_some_and(|q| q >= 25), "{queue}");

    let stats = observer.wait_finished(33, Duration::from_secs(120)).await;
    assert_eq!(stats.max_active, 3, "never more than three active, and the cap was used");
    assert_eq!(stats.started[..3].iter().collect::<std::collections::BTreeSet<_>>(), blockers.iter().collect());
    let started: Vec<String> = stats.started[3..].to_vec();
    let expected = expected_order(&thirty);
    eprintln!(
        "admission order: {:?}",
        started.iter().map(|n| thirty.iter().find(|(t, _)| t == n).map(|(_, p)| *p)).collect::<Vec<_>>()
    );
    assert_eq!(started, expected, "admitted by priority, then submission order");
    let metrics = app.metrics().await;
    assert!(metrics.contains("job_launcher_admissions_total{template=\"fake\"} 33"), "{metrics}");
    assert!(metrics.contains("job_launcher_leader 1"), "{metrics}");
}

#[tokio::test]
async fn a_template_cap_holds_alongside_the_global_cap() {
    let capped = FAKE.replacen("  annotations:\n", "  annotations:\n    job-launcher.dev/max-active: \"1\"\n", 1);
    let ns = setup("tcap", &[("capped.yaml", &capped)]).await;
    let observer = JobObserver::start(&ns).await;
    let app = TestApp::start(&ns.name, &["--max-active", "3"]).await.ready().await;
    for _ in 0..4 {
        launch(&app.http, &app.base, json!({"template": "capped", "params": {"duration": "700ms"}})).await;
        launch(&app.http, &app.base, json!({"template": "fake", "params": {"duration": "700ms"}})).await;
    }
    let stats = observer.wait_finished(8, Duration::from_secs(60)).await;
    assert_eq!(stats.max_active_by_template.get("capped"), Some(&1), "{stats:?}");
    assert!(stats.max_active <= 3, "{stats:?}");
    assert_eq!(
        stats.max_active_by_template.get("fake"),
        Some(&2),
        "the rest of the global cap went to the other template"
    );
    let queue: Value = app.http.get(app.url("/v1/queue")).send().await.expect("queue").json().await.expect("json");
    let capped = queue["templates"].as_array().and_then(|t| t.iter().find(|t| t["template"] == "capped")).cloned();
    assert_eq!(capped.map(|c| c["maxActive"].clone()), Some(json!(1)));
}

#[tokio::test]
async fn cancelling_a_queued_job_takes_it_out_of_the_queue() {
    let ns = setup("qcancel", &[]).await;
    let observer = JobObserver::start(&ns).await;
    let app = TestApp::start(&ns.name, &["--max-active", "1"]).await.ready().await;
    let blocker = name(&launch(&app.http, &app.base, json!({"template": "fake", "params": {"duration": "3s"}})).await);
    wait_until(Duration::from_secs(10), "the blocker to be admitted", || async {
        let q: Value = app.http.get(app.url("/v1/queue")).send().await.expect("q").json().await.expect("json");
        q["active"] == 1
    })
    .await;
    let first = name(&launch(&app.http, &app.base, json!({"template": "fake"})).await);
    let second = name(&launch(&app.http, &app.base, json!({"template": "fake"})).await);
    let view = |n: String| {
        let (http, url) = (app.http.clone(), app.url(&format!("/v1/jobs/{n}")));
        async move { http.get(url).send().await.expect("get").json::<Value>().await.expect("json") }
    };
    assert_eq!(view(second.clone()).await["queuePosition"], 1);

    let cancelled = app.http.delete(app.url(&format!("/v1/jobs/{first}"))).send().await.expect("delete");
    assert_eq!(cancelled.status(), StatusCode::ACCEPTED);
    wait_until(Duration::from_secs(10), "the second to move up", || async {
        view(second.clone()).await["queuePosition"] == 0
    })
    .await;
    let stats = observer.wait_finished(2, Duration::from_secs(30)).await;
    assert_eq!(stats.started, vec![blocker, second], "the cancelled Job never started");
}

#[tokio::test]
async fn beyond_max_queued_http_gets_429_with_retry_after() {
    let ns = setup("maxq", &[]).await;
    let app = TestApp::start(&ns.name, &["--max-active", "1", "--max-queued", "10"]).await.ready().await;
    launch(&app.http, &app.base, json!({"template": "fake", "params": {"duration": "30s"}})).await;
    wait_until(Duration::from_secs(10), "the blocker to be admitted", || async {
        let q: Value = app.http.get(app.url("/v1/queue")).send().await.expect("q").json().await.expect("json");
        q["active"] == 1
    })
    .await;
    for i in 0..10 {
        let r = app
            .http
            .post(app.url("/v1/jobs"))
            .header("Idempotency-Key", format!("k{i}"))
            .json(&json!({"template": "fake"}))
            .send()
            .await
            .expect("r");
        assert_eq!(r.status(), StatusCode::CREATED, "request {i} fits in the queue");
    }
    let full = app.http.post(app.url("/v1/jobs")).json(&json!({"template": "fake"})).send().await.expect("r");
    assert_eq!(full.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(full.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("2"));
    let problem: Value = full.json().await.expect("problem");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("queue holds 10")), "{problem}");
    // A replay of a queued Job still answers with that Job.
    let replay = app
        .http
        .post(app.url("/v1/jobs"))
        .header("Idempotency-Key", "k3")
        .json(&json!({"template": "fake"}))
        .send()
        .await
        .expect("r");
    assert_eq!(replay.status(), StatusCode::OK);
}

#[tokio::test]
async fn beyond_max_queued_sqs_messages_wait_in_the_queue_and_all_launch() {
    let ns = setup("maxq-sqs", &[]).await;
    let queue = TestQueue::create("maxq").await;
    let observer = JobObserver::start(&ns).await;
    queue
        .send_all(
            &(0..30)
                .map(|i| {
                    json!({"template": "fake", "labels": {"n": i.to_string()}, "params": {"duration": "300ms"}})
                        .to_string()
                })
                .collect::<Vec<_>>(),
        )
        .await;
    let mut args = sqs_flags(&queue.url);
    args.extend(
        ["--max-active", "2", "--max-queued", "5", "--sqs-wait-time", "1s", "--sqs-concurrency", "3"].map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _app = TestApp::start(&ns.name, &args).await.ready().await;
    let stats = observer.wait_finished(30, Duration::from_secs(120)).await;
    assert!(stats.max_queued <= 5, "never more than five queued: {stats:?}");
    assert!(stats.max_active <= 2, "{stats:?}");
    assert_eq!(stats.started.len(), 30, "every message launched, once");
    wait_until(Duration::from_secs(10), "the queue to be empty", || async { queue.depth_of(&queue.url).await == 0 })
        .await;
    assert!(queue.dead_letters().await.is_empty(), "none lost to the dead-letter queue");
}

/// Two launcher processes on one Lease: both accept launches, one admits. The leader killed with
/// SIGKILL, the other takes over within the lease duration and admission goes on under the cap.
#[tokio::test]
async fn a_second_replica_takes_over_admission_when_the_leader_is_killed() {
    let ns = setup("leader", &[]).await;
    let observer = JobObserver::start(&ns).await;
    let args: Vec<String> = ["--max-active", "3", "--leader-lease-duration", "4s"].map(String::from).to_vec();
    let a = LauncherProcess::start(&ns.name, &args).await;
    let b = LauncherProcess::start(&ns.name, &args).await;
    let http = reqwest::Client::new();
    let leads = |p: &LauncherProcess| {
        let (http, url) = (http.clone(), format!("{}/v1/queue", p.api));
        async move { http.get(url).send().await.ok()?.json::<Value>().await.ok()?["leader"].as_bool() }
    };
    wait_until(Duration::from_secs(15), "one leader", || async {
        leads(&a).await == Some(true) || leads(&b).await == Some(true)
    })
    .await;
    let (leader, follower) = if leads(&a).await == Some(true) { (a, b) } else { (b, a) };
    assert_eq!(leads(&follower).await, Some(false), "only one leads");

    for i in 0..16 {
        let target = if i % 2 == 0 { &leader.api } else { &follower.api };
        launch(&http, target, json!({"template": "fake", "params": {"duration": "1500ms"}})).await;
    }
    observer.wait_for(Duration::from_secs(30), "a few admissions", |stats| stats.started.len() >= 4).await;
    leader.signal("KILL");
    let killed_at = std::time::Instant::now();
    drop(leader);
    wait_until(Duration::from_secs(15), "the follower to take over", || async { leads(&follower).await == Some(true) })
        .await;
    let took_over = killed_at.elapsed();
    eprintln!("took over {took_over:?} after SIGKILL");
    assert!(took_over < Duration::from_secs(4) + Duration::from_secs(3), "within the lease duration (and one retry)");

    let stats = observer.wait_finished(16, Duration::from_secs(90)).await;
    assert!(stats.max_active <= 3, "never more than three active, across the handover: {stats:?}");
    assert_eq!(stats.started.len(), 16);
}

/// The fake template with a cap of 2 of its own.
fn capped_at_two() -> String {
    FAKE.replacen("  annotations:\n", "  annotations:\n    job-launcher.dev/max-active: \"2\"\n", 1)
}

/// Launches 50 Jobs of `capped` that run 2 s each, through `app`, and waits until two run.
async fn fifty_under_a_cap_of_two(app: &TestApp) {
    for _ in 0..50 {
        launch(&app.http, &app.base, json!({"template": "capped", "params": {"duration": "2s"}})).await;
    }
    wait_until(Duration::from_secs(20), "two of them to be admitted", || async {
        let q: Value = app.http.get(app.url("/v1/queue")).send().await.expect("q").json().await.expect("json");
        q["active"] == 2
    })
    .await;
}

#[tokio::test]
async fn a_template_cap_holds_when_the_next_leader_cannot_read_the_templates() {
    let capped = capped_at_two();
    let ns = setup("capnoread", &[("capped.yaml", &capped)]).await;
    let observer = JobObserver::start(&ns).await;
    let first = TestApp::start(&ns.name, &[]).await.ready().await;
    fifty_under_a_cap_of_two(&first).await;
    first.stop().await;
    // The next leader may not read ConfigMaps: its template store never loads.
    let blind = support::service_account_client(&ns.name, "blind", support::launcher_rules(false)).await;
    let _next = TestApp::start_as(blind, &ns.name, &["--watch-failure-bound", "2s"]).await;
    let before = observer.stats().finished;
    let stats = observer.wait_finished(before + 6, Duration::from_secs(60)).await;
    assert_eq!(
        stats.max_active_by_template.get("capped"),
        Some(&2),
        "the cap recorded on the Jobs held without the template: {stats:?}"
    );
}

#[tokio::test]
async fn a_template_cap_holds_while_its_config_map_is_deleted_and_recreated() {
    let capped = capped_at_two();
    let ns = setup("capdelete", &[("capped.yaml", &capped)]).await;
    let observer = JobObserver::start(&ns).await;
    let app = TestApp::start(&ns.name, &[]).await.ready().await;
    fifty_under_a_cap_of_two(&app).await;
    let config_maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = ns.api();
    config_maps.delete("job-template-cm", &Default::default()).await.expect("delete the ConfigMap");
    wait_until(Duration::from_secs(10), "the template to be gone from the store", || async {
        app.http.get(app.url("/v1/templates/capped")).send().await.is_ok_and(|r| r.status() == StatusCode::NOT_FOUND)
    })
    .await;
    let before = observer.stats().finished;
    observer.wait_finished(before + 4, Duration::from_secs(60)).await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("fake.yaml", FAKE), ("capped.yaml", &capped)]).await;
    let stats = observer.wait_finished(before + 8, Duration::from_secs(60)).await;
    assert_eq!(stats.max_active_by_template.get("capped"), Some(&2), "{stats:?}");
}

#[tokio::test]
async fn a_cancelled_job_keeps_its_slot_until_its_pods_are_gone() {
    // Its pods carry a finalizer of the test's: they stay, terminating, until the test lets them go.
    let held = FAKE.replacen(
        "    metadata:\n      annotations:\n",
        "    metadata:\n      finalizers: [\"test.job-launcher.dev/hold\"]\n      annotations:\n",
        1,
    );
    let ns = setup("cancelslot", &[("held.yaml", &held)]).await;
    let app = TestApp::start(&ns.name, &["--max-active", "1"]).await.ready().await;
    let state = |n: String| {
        let (http, url) = (app.http.clone(), app.url(&format!("/v1/jobs/{n}")));
        async move { http.get(url).send().await.expect("get").json::<Value>().await.expect("json")["state"].clone() }
    };
    let running = name(&launch(&app.http, &app.base, json!({"template": "held", "params": {"duration": "60s"}})).await);
    wait_until(Duration::from_secs(20), "the held Job to run", || async { state(running.clone()).await == "running" })
        .await;
    let next = name(&launch(&app.http, &app.base, json!({"template": "fake"})).await);
    let cancelled = app.http.delete(app.url(&format!("/v1/jobs/{running}"))).send().await.expect("delete");
    assert_eq!(cancelled.status(), StatusCode::ACCEPTED);
    // Its pod is terminating, not gone: admission reacts to an index change within milliseconds,
    // so three seconds without the next Job starting means it is waiting for the slot.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(state(next.clone()).await, "queued", "the cancelled Job's pod still holds the slot");

    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = ns.api();
    let pod = pods
        .list(&kube::api::ListParams::default().labels(&format!("job-name={running}")))
        .await
        .expect("pods")
        .items
        .into_iter()
        .next()
        .expect("the held pod");
    let release = json!({"metadata": {"finalizers": null}});
    let pod_name = pod.metadata.name.expect("pod name");
    pods.patch(&pod_name, &Default::default(), &kube::api::Patch::Merge(&release)).await.expect("release the pod");
    wait_until(Duration::from_secs(30), "the next Job to be admitted", || async {
        state(next.clone()).await != "queued"
    })
    .await;
}

#[tokio::test]
async fn two_instances_in_one_namespace_each_hold_their_own_cap_and_lease() {
    let ns = setup("instances", &[]).await;
    let observer = JobObserver::start(&ns).await;
    let a = TestApp::start(&ns.name, &["--instance", "team-a", "--leader-lease", "team-a-leader", "--max-active", "1"])
        .await
        .ready()
        .await;
    let b = TestApp::start(&ns.name, &["--instance", "team-b", "--leader-lease", "team-b-leader", "--max-active", "3"])
        .await
        .ready()
        .await;
    let queue = |app: &TestApp| {
        let (http, url) = (app.http.clone(), app.url("/v1/queue"));
        async move { http.get(url).send().await.expect("queue").json::<Value>().await.expect("json") }
    };
    wait_until(Duration::from_secs(20), "both to lead their own Lease", || async {
        queue(&a).await["leader"] == true && queue(&b).await["leader"] == true
    })
    .await;
    let (mut of_a, mut of_b) = (Vec::new(), Vec::new());
    for _ in 0..6 {
        let body = json!({"template": "fake", "params": {"duration": "1s"}});
        of_a.push(name(&launch(&a.http, &a.base, body.clone()).await));
        of_b.push(name(&launch(&b.http, &b.base, body).await));
    }
    let stats = observer.wait_finished(12, Duration::from_secs(90)).await;
    assert_eq!(stats.max_active_by_instance.get("team-a"), Some(&1), "{stats:?}");
    assert_eq!(stats.max_active_by_instance.get("team-b"), Some(&3), "{stats:?}");
    let (replica_a, replica_b) = (queue(&a).await["replica"].clone(), queue(&b).await["replica"].clone());
    for (job, by, _) in &stats.admissions {
        let expected = if of_a.contains(job) { &replica_a } else { &replica_b };
        assert_eq!(Some(by.as_str()), expected.as_str(), "{job} admitted by its own instance's leader");
    }
    let listed: Value = a.http.get(a.url("/v1/jobs?limit=100")).send().await.expect("list").json().await.expect("json");
    let names: Vec<String> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|j| j["name"].as_str().map(String::from))
        .collect();
    assert_eq!(names.len(), 6, "an instance sees only its own Jobs");
    assert!(names.iter().all(|n| of_a.contains(n)));
    let foreign = a.http.get(a.url(&format!("/v1/jobs/{}", of_b[0]))).send().await.expect("get");
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND, "not even through the API server fallback");
}

/// Jobs as a launcher made them before instances existed: no instance label.
async fn create_unlabelled_job(ns: &TestNamespace, name: &str, queued: bool) {
    use kube_job_launcher::{api::LaunchRequest, launch, template::Template};
    let template = Template::parse(
        "fake",
        kube_job_launcher::api::TemplateSource { config_map: "job-template-cm".into(), key: "fake.yaml".into() },
        FAKE,
    )
    .expect("template");
    let request = LaunchRequest {
        params: [("duration".to_string(), kube_job_launcher::api::ParamValue::String("2s".into()))].into(),
        ..LaunchRequest::default()
    };
    let origin = launch::Origin::new(launch::Source::Http, "anonymous");
    let notices = launch::NoticePolicy::default();
    let settings = launch::JobSettings {
        namespace: &ns.name,
        instance: "x",
        default_ttl_seconds: 3600,
        globally_capped: queued,
        notices: &notices,
    };
    let mut manifest = launch::prepare(&template, &request, &origin, &settings).expect("prepared").manifest;
    manifest["metadata"]["name"] = json!(name);
    for labels in ["/metadata/labels", "/spec/template/metadata/labels"] {
        if let Some(map) = manifest.pointer_mut(labels).and_then(Value::as_object_mut) {
            map.remove("job-launcher.dev/instance");
        }
    }
    let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(manifest).expect("a Job");
    ns.api::<k8s_openapi::api::batch::v1::Job>().create(&Default::default(), &job).await.expect("create");
}

#[tokio::test]
async fn an_upgrade_adopts_the_jobs_made_before_instances() {
    let ns = setup("adopt", &[]).await;
    let observer = JobObserver::start(&ns).await;
    create_unlabelled_job(&ns, "old-running", false).await;
    for i in 0..3 {
        create_unlabelled_job(&ns, &format!("old-queued-{i}"), true).await;
    }
    let app = TestApp::start(&ns.name, &["--max-active", "1", "--adopt-unlabelled-jobs"]).await.ready().await;
    let stats = observer.wait_finished(4, Duration::from_secs(90)).await;
    assert_eq!(stats.max_active, 1, "the running old Job counted against the cap: {stats:?}");
    assert_eq!(stats.started[1..], ["old-queued-0", "old-queued-1", "old-queued-2"], "none stranded, in order");
    let listed: Value = app.http.get(app.url("/v1/jobs")).send().await.expect("list").json().await.expect("json");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(4), "all four are the launcher's now");
}
