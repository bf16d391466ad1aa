//! Who may use the API, and when the launcher says it is ready.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use support::{
    SEED_TEMPLATE, TestApp, TestNamespace, launcher_rules, put_config_map, service_account_client, set_role, wait_until,
};

#[tokio::test]
async fn readyz_is_false_until_the_watches_sync_and_true_after() {
    let ns = TestNamespace::create("ready").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("job-template.yaml", SEED_TEMPLATE)]).await;
    // Without the right to read ConfigMaps the template watch cannot sync...
    let client = service_account_client(&ns.name, "launcher", launcher_rules(false)).await;
    let app = TestApp::start_as(client, &ns.name, &[]).await;
    let readyz = format!("{}/readyz", app.admin);
    let healthz = format!("{}/healthz", app.admin);
    let not_ready = || async {
        let answer = app.http.get(&readyz).send().await.expect("readyz");
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE, "never ready without its templates");
        answer.json::<serde_json::Value>().await.expect("problem")["detail"].as_str().unwrap_or_default().to_string()
    };
    // The Job and pod watches may sync; the template watch cannot.
    wait_until(Duration::from_secs(30), "the Job and pod watches to sync", || async {
        !not_ready().await.contains("Job and pod watches")
    })
    .await;
    let detail = not_ready().await;
    assert!(detail.contains("template ConfigMaps"), "{detail}");
    assert_eq!(app.http.get(&healthz).send().await.expect("healthz").status(), StatusCode::OK, "alive all the same");

    // ...and once it may, the watch's retry syncs and the launcher becomes ready.
    set_role(&ns.name, "launcher", launcher_rules(true)).await;
    wait_until(Duration::from_secs(60), "readiness after the grant", || async {
        app.http.get(&readyz).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    let launched = app.http.post(app.url("/v1/jobs")).json(&json!({})).send().await.expect("launch");
    assert_eq!(launched.status(), StatusCode::CREATED, "the Role is enough to launch");
}

#[tokio::test]
async fn the_api_needs_a_token_from_the_file() {
    let ns = TestNamespace::create("auth").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("job-template.yaml", SEED_TEMPLATE)]).await;
    let dir = std::env::temp_dir().join(format!("kjl-tokens-{}", ns.name));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("tokens");
    std::fs::write(&file, "# callers\nteam-a-token\nteam-b-token\n").expect("write tokens");
    let file_arg = file.to_string_lossy().to_string();
    let app = TestApp::start(&ns.name, &["--auth-token-file", &file_arg]).await.ready().await;
    let jobs = app.url("/v1/jobs");

    let anonymous = app.http.get(&jobs).send().await.expect("anonymous");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"kube-job-launcher\"")
    );
    assert_eq!(anonymous.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/problem+json"));
    let wrong = app.http.get(&jobs).bearer_auth("team-c-token").send().await.expect("wrong");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("invalid_token"))
    );
    let launched = app.http.post(&jobs).bearer_auth("team-b-token").json(&json!({})).send().await.expect("launch");
    assert_eq!(launched.status(), StatusCode::CREATED);
    assert_eq!(
        app.http.get(app.url("/openapi.json")).send().await.expect("doc").status(),
        StatusCode::OK,
        "the document is public"
    );
    assert_eq!(
        app.http.get(format!("{}/metrics", app.admin)).send().await.expect("m").status(),
        StatusCode::OK,
        "the admin port has no auth"
    );

    // A token removed from the file stops working without a restart.
    std::fs::write(&file, "team-a-token\n").expect("rewrite tokens");
    wait_until(Duration::from_secs(10), "the revoked token to be refused", || async {
        app.http
            .get(&jobs)
            .bearer_auth("team-b-token")
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::UNAUTHORIZED)
    })
    .await;
    assert_eq!(app.http.get(&jobs).bearer_auth("team-a-token").send().await.expect("a").status(), StatusCode::OK);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_launcher_refuses_to_serve_a_public_address_without_auth() {
    let ns = TestNamespace::create("noauth").await;
    let args = kube_job_launcher::config::ServeArgs::try_parse_flags([
        "--listen",
        "0.0.0.0:0",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .expect("args");
    let clients = kube_job_launcher::app::Clients::shared(ns.client.clone());
    let refused = kube_job_launcher::app::Application::build(args, clients, ns.name.clone()).await;
    let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("without auth") && error.contains("--insecure-no-auth"), "{error}");
}
