//! Who may call the API in Kubernetes auth mode, and the limits that keep hostile or slow
//! clients from holding the launcher.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{SEED_TEMPLATE, TestApp, TestNamespace, put_config_map, service_account_client, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A token for a new ServiceAccount `name` bound to a Role with `rules`.
async fn token_for(namespace: &str, name: &str, rules: Value) -> String {
    // The client is not needed; the helper makes the account, its Role and binding.
    let _ = service_account_client(namespace, name, rules).await;
    let admin = support::client().await;
    let request: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).expect("request");
    kube::Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin, namespace)
        .create_token_request(name, &Default::default(), &request)
        .await
        .expect("token")
        .status
        .and_then(|s| s.token)
        .expect("a token")
}

#[tokio::test]
async fn kubernetes_auth_lets_in_those_rbac_allows_and_records_who_they_are() {
    let ns = TestNamespace::create("kauth").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("job-template.yaml", SEED_TEMPLATE)]).await;
    let allowed = token_for(
        &ns.name,
        "launcher-user",
        json!([{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}]),
    )
    .await;
    let reader = token_for(
        &ns.name,
        "reader",
        json!([{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list"]}]),
    )
    .await;
    let app = TestApp::start(&ns.name, &["--auth", "kubernetes"]).await.ready().await;
    let jobs = app.url("/v1/jobs");

    let anonymous = app.http.post(&jobs).json(&json!({})).send().await.expect("r");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let garbage = app.http.post(&jobs).bearer_auth("not-a-token").json(&json!({})).send().await.expect("r");
    assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);
    let forbidden = app.http.post(&jobs).bearer_auth(&reader).json(&json!({})).send().await.expect("r");
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let problem: Value = forbidden.json().await.expect("problem");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("system:serviceaccount:{}:reader may not create jobs.batch", ns.name)),
        "{detail}"
    );

    let created = app.http.post(&jobs).bearer_auth(&allowed).json(&json!({})).send().await.expect("r");
    assert_eq!(created.status(), StatusCode::CREATED);
    let name = created.json::<Value>().await.expect("view")["name"].as_str().expect("name").to_string();
    let job = kube::Api::<Job>::namespaced(ns.client.clone(), &ns.name).get(&name).await.expect("job");
    let by = job.metadata.annotations.as_ref().and_then(|a| a.get("job-launcher.dev/requested-by")).cloned();
    assert_eq!(by, Some(format!("system:serviceaccount:{}:launcher-user", ns.name)));
}

#[tokio::test]
async fn kubernetes_auth_can_check_a_permission_of_the_teams_own() {
    let ns = TestNamespace::create("kauth-own").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("job-template.yaml", SEED_TEMPLATE)]).await;
    // No CRD is needed: RBAC grants verbs on any resource name.
    let launcher_role = json!([{"apiGroups": ["job-launcher.dev"], "resources": ["launches"], "verbs": ["create"]}]);
    let team = token_for(&ns.name, "team", launcher_role).await;
    let job_creator = token_for(
        &ns.name,
        "job-creator",
        json!([{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}]),
    )
    .await;
    let args = ["--auth", "kubernetes", "--auth-group", "job-launcher.dev", "--auth-resource", "launches"];
    let app = TestApp::start(&ns.name, &args).await.ready().await;
    let launch = |token: String| {
        let (http, url) = (app.http.clone(), app.url("/v1/jobs"));
        async move { http.post(url).bearer_auth(token).json(&json!({})).send().await.expect("r").status() }
    };
    assert_eq!(launch(team).await, StatusCode::CREATED);
    assert_eq!(launch(job_creator).await, StatusCode::FORBIDDEN, "creating Jobs is not the permission asked for");
}

async fn setup(args: &[&str]) -> (TestNamespace, TestApp) {
    let ns = TestNamespace::create("limits").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("job-template.yaml", SEED_TEMPLATE)]).await;
    let app = TestApp::start(&ns.name, args).await.ready().await;
    (ns, app)
}

fn host_port(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn a_client_that_sends_its_headers_a_byte_a_second_is_cut_off() {
    let (_ns, app) = setup(&["--header-read-timeout", "2s"]).await;
    let mut stream = tokio::net::TcpStream::connect(host_port(&app.base)).await.expect("connect");
    let started = Instant::now();
    let head = b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_after = None;
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(n)) => {
                let answer = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
                closed_after = Some(started.elapsed());
                break;
            }
            Err(_) => {}
        }
    }
    let after = closed_after.expect("the server gave up on the slow client");
    assert!(after < Duration::from_secs(5), "cut off after {after:?}, the header timeout is 2s");
}

#[tokio::test]
async fn a_body_sent_too_slowly_gets_408_and_oversized_headers_431() {
    let (_ns, app) = setup(&["--request-timeout", "2s"]).await;
    let mut stream = tokio::net::TcpStream::connect(host_port(&app.base)).await.expect("connect");
    stream
        .write_all(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "answered within the request timeout");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");

    let big = "x".repeat(20 * 1024);
    let r = app.http.get(app.url("/v1/jobs")).header("x-big", big).send().await.expect("r");
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_get_503_with_retry_after() {
    let (_ns, app) = setup(&["--max-concurrent-requests", "2", "--request-timeout", "10s"]).await;
    // Two requests held in progress: their bodies never finish.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(host_port(&app.base)).await.expect("connect");
        s.write_all(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{",
        )
        .await
        .expect("write");
        held.push(s);
    }
    // The held requests take both slots as soon as the server has read their heads.
    let mut r = app.http.get(app.url("/v1/jobs")).send().await.expect("r");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while r.status() != StatusCode::SERVICE_UNAVAILABLE && tokio::time::Instant::now() < deadline {
        r = app.http.get(app.url("/v1/jobs")).send().await.expect("r");
    }
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert_eq!(r.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/problem+json"));
    drop(held);
    wait_until(Duration::from_secs(10), "the slots to come back", || async {
        app.http.get(app.url("/v1/jobs")).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    let metrics = app.metrics().await;
    assert!(metrics.contains("job_launcher_http_rejected_total{outcome=\"overloaded\"} 1"), "{metrics}");
}
