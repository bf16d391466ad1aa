//! The HTTP API, end to end: the launcher runs in-process against the local control plane, in a
//! namespace of each test's own.

mod support;

use std::{collections::BTreeSet, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use kube::{Api, api::ListParams};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{FAKE, SEED_TEMPLATE, TestApp, put_config_map, setup, wait_until};

const PROBLEM: &str = "application/problem+json";

async fn post(app: &TestApp, body: Value) -> reqwest::Response {
    app.http.post(app.url("/v1/jobs")).json(&body).send().await.expect("POST /v1/jobs")
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

/// Asserts a problem+json answer with `status` whose detail contains `detail`.
async fn assert_problem(response: reqwest::Response, status: u16, detail: &str) {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert_eq!(content_type, PROBLEM);
    let body = json_of(response).await;
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().is_some_and(|t| t.starts_with("urn:problem:kube-job-launcher:")), "{body}");
    let got = body["detail"].as_str().unwrap_or_default();
    assert!(got.contains(detail), "detail {got:?} should contain {detail:?}");
}

async fn wait_for_state(app: &TestApp, name: &str, state: &str) -> Value {
    let url = app.url(&format!("/v1/jobs/{name}"));
    let mut last = Value::Null;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        last = json_of(app.http.get(&url).send().await.expect("GET job")).await;
        if last["state"] == state {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Job {name} did not reach {state}; last seen {last}");
}

#[tokio::test]
async fn a_launched_job_is_followed_to_succeeded_and_to_failed_with_its_exit_code() {
    let (_ns, app) = setup("states").await;

    let created = post(&app, json!({"template": "fake"})).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers().get("location").and_then(|v| v.to_str().ok()).map(String::from);
    let view = json_of(created).await;
    let name = view["name"].as_str().expect("name").to_string();
    assert_eq!(location, Some(format!("/v1/jobs/{name}")));
    assert!(name.starts_with("fake-") && name.len() <= 63);
    assert_eq!((view["template"].as_str(), view["source"].as_str()), (Some("fake"), Some("http")));

    let done = wait_for_state(&app, &name, "succeeded").await;
    assert_eq!(done["pods"][0]["exitCode"], 0);
    assert!(done["pods"][0]["node"].as_str().is_some_and(|n| n.starts_with("kwok-node-")));
    assert!(done["startedAt"].is_string() && done["finishedAt"].is_string());

    let failing = json_of(post(&app, json!({"template": "fake", "params": {"exitCode": 3}})).await).await;
    let name = failing["name"].as_str().expect("name");
    let failed = wait_for_state(&app, name, "failed").await;
    assert_eq!(failed["pods"][0]["exitCode"], 3);
    assert_eq!(failed["pods"][0]["phase"], "Failed");
    assert!(failed["message"].as_str().is_some_and(|m| m.contains("exited with code 3")), "{failed}");
}

#[tokio::test]
async fn fifty_concurrent_identical_requests_with_one_key_make_exactly_one_job() {
    let (ns, app) = setup("idem").await;
    let body = json!({"template": "fake", "params": {"duration": "5s"}, "labels": {"batch": "fifty"}});
    let answers = futures::future::join_all(
        (0..50).map(|_| app.http.post(app.url("/v1/jobs")).header("Idempotency-Key", "order-42").json(&body).send()),
    )
    .await;
    let mut names = BTreeSet::new();
    let mut created = 0;
    for answer in answers {
        let answer = answer.expect("answer");
        match answer.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            other => panic!("unexpected status {other}"),
        }
        names.insert(json_of(answer).await["name"].as_str().expect("name").to_string());
    }
    assert_eq!(created, 1, "one request created the Job; the others found it");
    assert_eq!(names.len(), 1, "every answer names the same Job: {names:?}");
    let jobs: Api<Job> = ns.api();
    let listed = jobs.list(&ListParams::default().labels("batch=fifty")).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].metadata.name.as_ref(), names.first());

    // The same key with a different request is a conflict, not a second Job.
    let reused = app
        .http
        .post(app.url("/v1/jobs"))
        .header("Idempotency-Key", "order-42")
        .json(&json!({"template": "fake", "params": {"duration": "6s"}}))
        .send()
        .await
        .expect("answer");
    assert_problem(reused, 409, "order-42").await;
}

#[tokio::test]
async fn a_template_update_serves_the_next_launch_and_an_invalid_one_keeps_the_last_valid() {
    let (ns, app) = setup("update").await;
    let render = || async {
        let r = app.http.post(app.url("/v1/templates/fake/render")).json(&json!({})).send().await.expect("render");
        json_of(r).await
    };
    assert_eq!(render().await["metadata"]["labels"]["version"], "v1");

    let v2 = FAKE.replace("version: v1", "version: v2");
    put_config_map(
        &ns.client,
        &ns.name,
        "job-template-cm",
        &[("job-template.yaml", SEED_TEMPLATE), ("fake.yaml", &v2)],
    )
    .await;
    wait_until(Duration::from_secs(10), "the launcher to see v2", || async {
        render().await["metadata"]["labels"]["version"] == "v2"
    })
    .await;
    let job = json_of(post(&app, json!({"template": "fake"})).await).await;
    assert_eq!(job["labels"]["version"], "v2");
    let templates = json_of(app.http.get(app.url("/v1/templates")).send().await.expect("templates")).await;
    let names: Vec<&str> = templates.as_array().expect("list").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, vec!["fake", "job-template"], "greeting.yaml was removed from the ConfigMap");

    let broken = v2.replace("restartPolicy: Never", "restartPolicy: Always");
    put_config_map(
        &ns.client,
        &ns.name,
        "job-template-cm",
        &[("job-template.yaml", SEED_TEMPLATE), ("fake.yaml", &broken)],
    )
    .await;
    let status_url = app.url("/v1/templates/fake");
    wait_until(Duration::from_secs(10), "the invalid version to be reported", || async {
        json_of(app.http.get(&status_url).send().await.expect("status")).await["status"] == "invalid"
    })
    .await;
    let status = json_of(app.http.get(&status_url).send().await.expect("status")).await;
    assert_eq!(status["serving"], true);
    assert!(status["error"].as_str().is_some_and(|e| e.contains("restartPolicy")), "{status}");
    let still = post(&app, json!({"template": "fake"})).await;
    assert_eq!(still.status(), StatusCode::CREATED);
    assert_eq!(json_of(still).await["labels"]["version"], "v2", "the last valid version keeps serving");

    // Reported as a Kubernetes Event on the ConfigMap and in the metrics too.
    let events: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    wait_until(Duration::from_secs(10), "an InvalidTemplate Event", || async {
        events.list(&ListParams::default()).await.is_ok_and(|l| {
            l.items.iter().any(|e| {
                e.reason.as_deref() == Some("InvalidTemplate")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("job-template-cm")
            })
        })
    })
    .await;
    let metrics =
        app.http.get(format!("{}/metrics", app.admin)).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("job_launcher_template_valid{template=\"fake\"} 0"), "{metrics}");
    assert!(metrics.contains("job_launcher_template_reloads_total{outcome=\"invalid\"} 1"), "{metrics}");
}

#[tokio::test]
async fn a_parameter_value_holding_yaml_json_quotes_and_newlines_lands_verbatim() {
    let (ns, app) = setup("verbatim").await;
    let nasty =
        "a: b\n- c\n{\"x\": [1, {\"y\": null}]}\n'single' \"double\" $(params.duration) ---\n...\n  indented: true";
    let view = json_of(post(&app, json!({"template": "fake", "params": {"message": nasty}})).await).await;
    let jobs: Api<Job> = ns.api();
    let job = jobs.get(view["name"].as_str().expect("name")).await.expect("the Job exists");
    let containers = &job.spec.expect("spec").template.spec.expect("pod spec").containers;
    assert_eq!(containers.len(), 1);
    let command = containers[0].command.clone().unwrap_or_default();
    assert_eq!(command.len(), 3, "{command:?}");
    // What the process gets once Kubernetes has expanded $(VAR): the value as sent.
    assert_eq!(
        support::expansion::expand_with(&command[2], &[("params.duration", "EXPANDED")]),
        format!("echo {nasty}")
    );
}

#[tokio::test]
async fn env_and_labels_reach_the_job_and_the_request_id_is_recorded() {
    let (ns, app) = setup("env").await;
    let answer = app
        .http
        .post(app.url("/v1/jobs"))
        .header("x-request-id", "test-request-7")
        .json(&json!({"template": "greeting", "params": {"name": "Ada"}, "env": {"GREETING_STYLE": "loud"}, "labels": {"team": "data"}}))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("test-request-7"));
    let view = json_of(answer).await;
    let job = Api::<Job>::namespaced(ns.client.clone(), &ns.name)
        .get(view["name"].as_str().expect("name"))
        .await
        .expect("job");
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("job-launcher.dev/request-id").map(String::as_str), Some("test-request-7"));
    assert_eq!(job.metadata.labels.as_ref().and_then(|l| l.get("team")).map(String::as_str), Some("data"));
    let env = job
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default();
    let styles: Vec<_> = env.iter().filter(|e| e.name == "GREETING_STYLE").collect();
    assert_eq!(styles.len(), 1, "overridden, not duplicated");
    assert_eq!(styles[0].value.as_deref(), Some("loud"));

    let refused = post(&app, json!({"template": "greeting", "params": {"name": "Ada"}, "env": {"PATH": "/tmp"}})).await;
    assert_problem(refused, 400, "env.PATH: the template does not let callers set this variable").await;
}

#[tokio::test]
async fn bad_requests_get_specific_problems() {
    let (ns, app) = setup("problems").await;
    let url = app.url("/v1/jobs");

    let r = app.http.post(&url).header("content-type", "application/json").body("{not json").send().await.expect("r");
    assert_problem(r, 400, "not valid JSON").await;
    assert_problem(post(&app, json!({"template": "fake", "colour": "red"})).await, 400, "unknown field `colour`").await;
    assert_problem(post(&app, json!({"priority": "high"})).await, 400, "priority").await;
    let r = app.http.post(&url).body("{}").send().await.expect("r");
    assert_problem(r, 415, "Content-Type: application/json").await;
    let huge = json!({"template": "fake", "params": {"message": "x".repeat(70 * 1024)}});
    assert_problem(post(&app, huge).await, 413, "larger than the limit of 65536 bytes").await;
    assert_problem(
        post(&app, json!({"template": "nope"})).await,
        404,
        "no template named \"nope\" (templates: fake, greeting, job-template)",
    )
    .await;
    assert_problem(post(&app, json!({"template": "greeting"})).await, 400, "params.name: required").await;
    assert_problem(
        post(&app, json!({"template": "greeting", "params": {"name": "Ada", "times": 0}})).await,
        400,
        "does not match the pattern",
    )
    .await;
    assert_problem(
        post(&app, json!({"template": "fake", "labels": {"job-launcher.dev/x": "y"}})).await,
        400,
        "reserved",
    )
    .await;
    assert_problem(post(&app, json!({"template": "fake", "idempotencyKey": ""})).await, 400, "idempotencyKey").await;

    for path in ["/v1/jobs/nope", "/v1/jobs/nope/logs"] {
        assert_problem(app.http.get(app.url(path)).send().await.expect("r"), 404, "no Job named nope").await;
    }
    assert_problem(app.http.delete(app.url("/v1/jobs/nope")).send().await.expect("r"), 404, "no Job named nope").await;
    // Names Kubernetes would refuse name no Job: 404, and they never reach an API server request
    // (schemathesis found a 502 from the fallback reads: "invalid uri character").
    for name in ["%C3%A2T%5C%F2%A4%98%BD%C3%8B%0D%C3%90", "Nope", "a_b", "-a"] {
        for path in [format!("/v1/jobs/{name}"), format!("/v1/jobs/{name}/logs"), format!("/v1/jobs/{name}/k8s-events")]
        {
            assert_problem(app.http.get(app.url(&path)).send().await.expect("r"), 404, "no Job named").await;
        }
        let delete = app.http.delete(app.url(&format!("/v1/jobs/{name}"))).send().await.expect("r");
        assert_problem(delete, 404, "no Job named").await;
    }
    assert_problem(app.http.get(app.url("/v1/templates/nope")).send().await.expect("r"), 404, "no template named")
        .await;
    assert_problem(app.http.get(app.url("/v1/jobs?state=done")).send().await.expect("r"), 400, "unknown state").await;
    assert_problem(app.http.get(app.url("/v1/jobs?limit=0")).send().await.expect("r"), 400, "limit").await;
    assert_problem(app.http.get(app.url("/v1/jobs?continue=zz")).send().await.expect("r"), 400, "continue").await;
    assert_problem(
        app.http.get(app.url("/v1/jobs?sort=name")).send().await.expect("r"),
        400,
        "unknown query parameter \"sort\"",
    )
    .await;
    assert_problem(app.http.get(app.url("/v1/nothing")).send().await.expect("r"), 404, "no such route").await;
    assert_problem(app.http.put(app.url("/v1/jobs")).send().await.expect("r"), 405, "method").await;

    // A Job in the namespace that the launcher did not create is not its to show or cancel.
    let foreign: Job = serde_json::from_value(json!({
        "metadata": {"name": "foreign"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .expect("job");
    let jobs = Api::<Job>::namespaced(ns.client.clone(), &ns.name);
    jobs.create(&Default::default(), &foreign).await.expect("create");
    // A managed Job created after it: once the launcher's watch shows this one, it has seen every
    // earlier change in the namespace (a watch delivers in order), the foreign Job's included.
    let mut marker = foreign.clone();
    marker.metadata.name = Some("managed-marker".into());
    marker.metadata.labels = Some(
        [
            ("app.kubernetes.io/managed-by".to_string(), "kube-job-launcher".to_string()),
            ("job-launcher.dev/instance".to_string(), "default".to_string()),
        ]
        .into(),
    );
    jobs.create(&Default::default(), &marker).await.expect("create marker");
    wait_until(Duration::from_secs(30), "the launcher to see the marker", || async {
        app.http.get(app.url("/v1/jobs/managed-marker")).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    assert_problem(app.http.get(app.url("/v1/jobs/foreign")).send().await.expect("r"), 404, "no Job named foreign")
        .await;
}

#[tokio::test]
async fn render_templates_launchjob_and_openapi_answer() {
    let (ns, app) = setup("routes").await;
    let rendered = app
        .http
        .post(app.url("/v1/templates/greeting/render"))
        .json(&json!({"params": {"name": "Ada", "times": 2}, "idempotencyKey": "k1"}))
        .send()
        .await
        .expect("render");
    assert_eq!(rendered.status(), StatusCode::OK);
    let manifest = json_of(rendered).await;
    assert_eq!(manifest["kind"], "Job");
    assert!(manifest["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("k-")), "keyed");
    let env = &manifest["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env[0], json!({"name": "NAME", "value": "Ada"}));
    assert_eq!(env[1], json!({"name": "TIMES", "value": "2"}));
    let jobs: Api<Job> = ns.api();
    assert!(jobs.list(&ListParams::default()).await.expect("list").items.is_empty(), "render creates nothing");
    let missing = app.http.post(app.url("/v1/templates/greeting/render")).json(&json!({})).send().await.expect("r");
    assert_problem(missing, 400, "params.name: required").await;

    let template = json_of(app.http.get(app.url("/v1/templates/greeting")).send().await.expect("t")).await;
    assert_eq!(template["status"], "valid");
    assert_eq!(template["source"], json!({"configMap": "job-template-cm", "key": "greeting.yaml"}));
    assert_eq!(template["parameters"][0]["name"], "name");
    assert_eq!(template["parameters"][0]["required"], true);
    assert_eq!(template["parameters"][1]["default"], "1");

    let legacy = app.http.get(app.url("/launchjob")).send().await.expect("launchjob");
    assert_eq!(legacy.status(), StatusCode::OK);
    let text = legacy.text().await.expect("text");
    let name = text.strip_prefix("Job launched: ").expect("the original launcher's answer");
    assert!(name.starts_with("job-template-"));
    assert!(jobs.get_opt(name).await.expect("get").is_some(), "the Job exists");

    let doc = json_of(app.http.get(app.url("/openapi.json")).send().await.expect("openapi")).await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in [
        "/v1/jobs",
        "/v1/jobs/{name}",
        "/v1/jobs/{name}/logs",
        "/v1/templates",
        "/v1/templates/{name}/render",
        "/launchjob",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
}

#[tokio::test]
async fn lists_filter_and_page_newest_first() {
    let (_ns, app) = setup("list").await;
    let mut launched = Vec::new();
    for i in 0..5 {
        let team = if i % 2 == 0 { "even" } else { "odd" };
        let view = json_of(
            post(&app, json!({"template": "fake", "labels": {"team": team}, "params": {"duration": "30s"}})).await,
        )
        .await;
        launched.push(view["name"].as_str().expect("name").to_string());
    }
    launched.push(json_of(post(&app, json!({})).await).await["name"].as_str().expect("name").to_string());

    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut url = app.url("/v1/jobs?limit=2&template=fake");
        if let Some(token) = &next {
            url.push_str(&format!("&continue={token}"));
        }
        let page = json_of(app.http.get(&url).send().await.expect("page")).await;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|v| v["name"].as_str().unwrap_or_default().to_string()));
        match page["continue"].as_str() {
            Some(token) => next = Some(token.to_string()),
            None => break,
        }
    }
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>(),
        launched[..5].iter().collect::<BTreeSet<_>>(),
        "every fake Job once"
    );
    assert_eq!(seen.len(), 5);

    let odd = json_of(app.http.get(app.url("/v1/jobs?label=team=odd")).send().await.expect("odd")).await;
    assert_eq!(odd["items"].as_array().map(Vec::len), Some(2));
    // A label selector, as kubectl's -l: the seed Job has no team label, so != keeps it.
    let listed = |query: &'static str| {
        let url = app.url(&format!("/v1/jobs?{query}"));
        let http = app.http.clone();
        async move {
            let list = json_of(http.get(url).send().await.expect("list")).await;
            list["items"].as_array().map(|items| items.iter().map(|i| i["name"].to_string()).collect::<BTreeSet<_>>())
        }
    };
    let quoted = |names: &[String]| Some(names.iter().map(|n| format!("{n:?}")).collect::<BTreeSet<_>>());
    let not_odd = [&launched[0], &launched[2], &launched[4], &launched[5]].map(String::clone);
    assert_eq!(listed("labelSelector=team!%3Dodd").await, quoted(&not_odd));
    assert_eq!(
        listed("labelSelector=team%20in%20(odd,blue)").await,
        quoted(&[launched[1].clone(), launched[3].clone()])
    );
    assert_eq!(listed("labelSelector=!team").await, quoted(&launched[5..]));
    assert_eq!(listed("labelSelector=team&label=team=even").await, quoted(&[0, 2, 4].map(|i| launched[i].clone())));
    assert_eq!(listed("labelSelector=team&labelSelector=team!%3Deven").await, listed("label=team=odd").await);
    let malformed = app.http.get(app.url("/v1/jobs?labelSelector=team%20in%20odd")).send().await.expect("r");
    assert_problem(
        malformed,
        400,
        "labelSelector: invalid label selector \"team in odd\": \"odd\" at character 9: want '('",
    )
    .await;
    let by_template = json_of(app.http.get(app.url("/v1/jobs?template=job-template")).send().await.expect("t")).await;
    assert_eq!(by_template["items"][0]["name"].as_str(), launched.last().map(String::as_str));
    wait_until(Duration::from_secs(20), "fake Jobs to run", || async {
        let running =
            json_of(app.http.get(app.url("/v1/jobs?template=fake&state=running")).send().await.expect("r")).await;
        running["items"].as_array().is_some_and(|i| i.len() == 5)
    })
    .await;
}

#[tokio::test]
async fn logs_come_from_the_pod_and_stream_with_follow() {
    let (_ns, app) = setup("logs").await;
    let view = json_of(post(&app, json!({"template": "fake", "params": {"duration": "20s"}})).await).await;
    let name = view["name"].as_str().expect("name");
    wait_for_state(&app, name, "running").await;

    let logs = app.http.get(app.url(&format!("/v1/jobs/{name}/logs"))).send().await.expect("logs");
    assert_eq!(logs.status(), StatusCode::OK);
    assert!(
        logs.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("text/plain"))
    );
    assert_eq!(logs.text().await.expect("text"), "Hello\nfrom a fake node\n");

    let tail = app.http.get(app.url(&format!("/v1/jobs/{name}/logs?tailLines=1"))).send().await.expect("tail");
    assert_eq!(tail.text().await.expect("text"), "from a fake node\n");

    // Streamed: the first bytes arrive while the pod still runs, before the stream ends.
    let follow = app.http.get(app.url(&format!("/v1/jobs/{name}/logs?follow=true"))).send().await.expect("follow");
    assert_eq!(follow.status(), StatusCode::OK);
    let mut stream = follow.bytes_stream();
    let mut received = Vec::new();
    while !String::from_utf8_lossy(&received).contains("from a fake node") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("a chunk within 10s");
        received.extend_from_slice(&chunk.expect("stream open").expect("chunk"));
    }
    drop(stream);

    let bad = app.http.get(app.url(&format!("/v1/jobs/{name}/logs?container=nope"))).send().await.expect("r");
    assert_problem(bad, 400, "nope").await;
}

#[tokio::test]
async fn cancel_deletes_the_job_and_its_pods() {
    let (ns, app) = setup("cancel").await;
    let view = json_of(post(&app, json!({"template": "fake", "params": {"duration": "60s"}})).await).await;
    let name = view["name"].as_str().expect("name").to_string();
    wait_for_state(&app, &name, "running").await;

    let cancelled = app.http.delete(app.url(&format!("/v1/jobs/{name}"))).send().await.expect("delete");
    assert_eq!(cancelled.status(), StatusCode::ACCEPTED);
    assert_eq!(json_of(cancelled).await["name"], name.as_str());

    let jobs: Api<Job> = ns.api();
    let pods: Api<Pod> = ns.api();
    wait_until(Duration::from_secs(30), "the Job and its pods to go", || async {
        let job_gone = jobs.get_opt(&name).await.is_ok_and(|j| j.is_none());
        let pods_gone = pods
            .list(&ListParams::default().labels(&format!("job-name={name}")))
            .await
            .is_ok_and(|l| l.items.is_empty());
        job_gone && pods_gone
    })
    .await;
    wait_until(Duration::from_secs(10), "the API to forget it", || async {
        app.http.get(app.url(&format!("/v1/jobs/{name}"))).send().await.is_ok_and(|r| r.status() == 404)
    })
    .await;
}

#[tokio::test]
async fn metrics_count_launches_and_jobs_by_state() {
    let (_ns, app) = setup("metrics").await;
    post(&app, json!({"template": "fake"})).await;
    post(&app, json!({"template": "nope"})).await;
    let metrics = app.http.get(format!("{}/metrics", app.admin)).send().await.expect("metrics");
    assert!(
        metrics
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.contains("openmetrics-text"))
    );
    let text = metrics.text().await.expect("text");
    for expected in [
        "job_launcher_launches_total{source=\"http\",template=\"fake\",outcome=\"created\"} 1",
        "job_launcher_launches_total{source=\"http\",template=\"unknown\",outcome=\"unknown_template\"} 1",
        "job_launcher_launch_duration_seconds_count{source=\"http\"} 1",
        "job_launcher_template_reloads_total{outcome=\"valid\"} 3",
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("job_launcher_jobs{state=\"")), "{text}");
    assert!(
        text.contains("job_launcher_http_requests_total{method=\"POST\",route=\"/v1/jobs\",status=\"201\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_job_made_through_one_replica_is_at_once_readable_and_cancellable_through_another() {
    let (ns, first) = setup("replicas").await;
    let second = TestApp::start(&ns.name, &[]).await.ready().await;
    for i in 0..10 {
        let view = json_of(post(&first, json!({"template": "fake", "params": {"duration": "30s"}})).await).await;
        let name = view["name"].as_str().expect("name");
        let read = second.http.get(second.url(&format!("/v1/jobs/{name}"))).send().await.expect("get");
        assert_eq!(read.status(), StatusCode::OK, "read {i} through the other replica, before its watch may show it");
        let cancel = second.http.delete(second.url(&format!("/v1/jobs/{name}"))).send().await.expect("delete");
        assert_eq!(cancel.status(), StatusCode::ACCEPTED, "cancel {i}");
    }
    // A Job the launcher does not manage is not found through the fallback either.
    let foreign: Job = serde_json::from_value(json!({
        "metadata": {"name": "not-ours"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .expect("job");
    Api::<Job>::namespaced(ns.client.clone(), &ns.name).create(&Default::default(), &foreign).await.expect("create");
    assert_problem(second.http.get(second.url("/v1/jobs/not-ours")).send().await.expect("r"), 404, "not-ours").await;
    assert_problem(second.http.delete(second.url("/v1/jobs/not-ours")).send().await.expect("r"), 404, "not-ours").await;
}

#[tokio::test]
async fn a_keyed_relaunch_after_ttl_cleanup_answers_the_new_job_not_the_old_one() {
    let (ns, app) = setup("relaunch").await;
    let body = json!({"template": "fake", "idempotencyKey": "again", "params": {"duration": "100ms"}});
    let first = json_of(post(&app, body.clone()).await).await;
    let name = first["name"].as_str().expect("name").to_string();
    let jobs: Api<Job> = ns.api();
    wait_until(Duration::from_secs(30), "the Job to finish", || async {
        jobs.get_opt(&name).await.ok().flatten().and_then(|j| j.status).and_then(|s| s.succeeded).unwrap_or(0) == 1
    })
    .await;
    // TTL cleanup, as the controller would do it; then the same key again at once.
    jobs.delete(&name, &kube::api::DeleteParams::background()).await.expect("delete");
    wait_until(Duration::from_secs(30), "the Job to be gone", || async {
        jobs.get_opt(&name).await.is_ok_and(|j| j.is_none())
    })
    .await;
    let again = post(&app, body).await;
    assert_eq!(again.status(), StatusCode::CREATED, "the window is the Job's lifetime");
    let again = json_of(again).await;
    assert_eq!(again["name"], name);
    assert_ne!(again["state"], "succeeded", "the new Job's view, not the old record: {again}");
}
