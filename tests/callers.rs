//! What a caller controls, and nothing more, against the local control plane: the env interface a
//! template declares, values that reach the container verbatim through Kubernetes' own `$(VAR)`
//! expansion, idempotency keys scoped per caller, named callers, per-action Kubernetes auth,
//! cross-site browser requests, reserved labels, bounded metrics and TLS.

mod support;

use std::{collections::BTreeMap, path::Path, time::Duration};

use k8s_openapi::api::batch::v1::Job;
use kube::{Api, api::ListParams};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    FAKE, GREETING_TEMPLATE, SEED_TEMPLATE, TestApp, TestNamespace, expansion::expand_with, put_config_map,
    service_account_client, setup, wait_until,
};

async fn post(app: &TestApp, body: Value) -> reqwest::Response {
    app.http.post(app.url("/v1/jobs")).json(&body).send().await.expect("answer")
}

async fn problem_detail(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    (status, body["detail"].as_str().unwrap_or_default().to_string())
}

async fn jobs_in(ns: &TestNamespace) -> Vec<Job> {
    Api::<Job>::namespaced(ns.client.clone(), &ns.name).list(&ListParams::default()).await.expect("list").items
}

#[tokio::test]
async fn an_env_name_outside_the_templates_interface_is_a_400_and_no_job_exists() {
    let (ns, app) = setup("envif").await;
    // The original template declares no variables: a caller may set none.
    for env in [json!({"LD_PRELOAD": "evil.so"}), json!({"BASH_ENV": "$(SECRET_TOKEN)"})] {
        let name = env.as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_default();
        let (status, detail) = problem_detail(post(&app, json!({"env": env})).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{detail}");
        assert!(detail.contains(&format!("env.{name}")) && detail.contains("allows none"), "{detail}");
    }
    // The greeting template allows GREETING_* only; its NAME comes from a parameter.
    let (status, detail) = problem_detail(
        post(&app, json!({"template": "greeting", "params": {"name": "Ada"}, "env": {"NAME": "x"}})).await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(detail.contains("names matching \"GREETING_[A-Z_]+\""), "{detail}");
    assert!(jobs_in(&ns).await.is_empty(), "a refused request makes no Job");
}

/// A template that puts a value with no pattern where Kubernetes expands `$(VAR)`, next to a
/// secret-like variable a leak would print.
const EXPANDS: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  annotations:
    job-launcher.dev/parameters: |
      - name: v
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        args: ["$(params.v)", "[$(params.v)]"]
        env:
        - name: DB_PASSWORD
          value: hunter2
        - name: V
          value: "$(params.v)"
"#;

#[tokio::test]
async fn values_reach_the_container_verbatim_after_kubernetes_expansion() {
    let ns = TestNamespace::create("expand").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("expands.yaml", EXPANDS)]).await;
    let app = TestApp::start(&ns.name, &[]).await.ready().await;
    // Values built from the pieces expansion reacts to, in a fixed pseudo-random order.
    let pieces = ["$(", "$$", "$", ")", "DB_PASSWORD", "V", "(", " ", "x", "é"];
    let mut state = 0x2545_f491_u64;
    let mut values = vec!["$(DB_PASSWORD)".to_string(), "$$".to_string(), "a$".to_string(), "$(V)$$(V)".to_string()];
    for _ in 0..12 {
        let value: String = (0..8)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                pieces[(state >> 33) as usize % pieces.len()]
            })
            .collect();
        values.push(value);
    }
    let jobs: Api<Job> = ns.api();
    for value in values {
        let answer = post(&app, json!({"template": "expands", "params": {"v": value}})).await;
        assert_eq!(answer.status(), StatusCode::CREATED, "{value:?}");
        let name = answer.json::<Value>().await.expect("view")["name"].as_str().expect("name").to_string();
        let job = jobs.get(&name).await.expect("the Job, read back from the API server");
        let container = &job.spec.and_then(|s| s.template.spec).expect("pod spec").containers[0];
        let env: Vec<(String, String)> =
            container.env.iter().flatten().map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())).collect();
        let defined: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let args = container.args.clone().unwrap_or_default();
        assert_eq!(expand_with(&args[0], &defined), value, "args[0]");
        assert_eq!(expand_with(&args[1], &defined), format!("[{value}]"), "args[1]");
        let v = env.iter().find(|(n, _)| n == "V").map(|(_, v)| v.clone()).unwrap_or_default();
        assert_eq!(expand_with(&v, &defined), value, "env V");
    }
}

#[tokio::test]
async fn one_key_with_two_templates_makes_one_job_and_a_409_also_across_two_launchers() {
    let (ns, first) = setup("keyscope").await;
    let greeting = json!({"template": "greeting", "params": {"name": "Ada"}, "idempotencyKey": "order-1"});
    let fake = json!({"template": "fake", "idempotencyKey": "order-1"});
    assert_eq!(post(&first, greeting.clone()).await.status(), StatusCode::CREATED);
    assert_eq!(post(&first, greeting).await.status(), StatusCode::OK, "a replay");
    let (status, detail) = problem_detail(post(&first, fake).await).await;
    assert_eq!(status, StatusCode::CONFLICT, "{detail}");
    assert!(detail.contains("order-1"), "{detail}");
    assert_eq!(jobs_in(&ns).await.len(), 1);

    // Two launchers take the same key at once, one request per template: one Job, one 409.
    let second = TestApp::start(&ns.name, &[]).await.ready().await;
    for i in 0..8 {
        let key = format!("race-{i}");
        let a = json!({"template": "greeting", "params": {"name": "Ada"}, "idempotencyKey": key});
        let b = json!({"template": "fake", "idempotencyKey": key});
        let (one, two) = tokio::join!(post(&first, a), post(&second, b));
        let mut statuses = [one.status(), two.status()];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT], "{key}");
    }
    assert_eq!(jobs_in(&ns).await.len(), 9, "one Job per key");
}

const TOKENS: &str = "# who may call\ntok-alice,alice,1001,\"team-a\"\ntok-bob,bob,1002\ntok-nameless\n";

#[tokio::test]
async fn named_callers_are_recorded_and_keys_are_scoped_to_them() {
    let ns = TestNamespace::create("callers").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("job-template.yaml", SEED_TEMPLATE)]).await;
    let dir = tempdir("callers");
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, TOKENS).expect("write tokens");
    let app = TestApp::start(&ns.name, &["--auth-token-file", tokens.to_str().expect("path")]).await.ready().await;
    let launch = |token: &'static str, key: &'static str| {
        let (http, url) = (app.http.clone(), app.url("/v1/jobs"));
        async move {
            let answer =
                http.post(url).bearer_auth(token).json(&json!({"idempotencyKey": key})).send().await.expect("r");
            let status = answer.status();
            (status, answer.json::<Value>().await.expect("view"))
        }
    };
    let (status, alices) = launch("tok-alice", "k-1").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(alices["requestedBy"], "alice");
    let (status, replay) = launch("tok-alice", "k-1").await;
    assert_eq!((status, &replay["name"]), (StatusCode::OK, &alices["name"]), "alice's replay");
    let (status, bobs) = launch("tok-bob", "k-1").await;
    assert_eq!(status, StatusCode::CREATED, "bob's key is bob's own");
    assert_ne!(bobs["name"], alices["name"], "bob never gets alice's Job");
    assert_eq!(bobs["requestedBy"], "bob");
    let (_, nameless) = launch("tok-nameless", "k-1").await;
    let by = nameless["requestedBy"].as_str().unwrap_or_default();
    assert!(by.starts_with("token:") && by.len() == "token:".len() + 8, "{by}");

    let job = Api::<Job>::namespaced(ns.client.clone(), &ns.name)
        .get(alices["name"].as_str().expect("name"))
        .await
        .expect("job");
    let annotation = job.metadata.annotations.and_then(|a| a.get("job-launcher.dev/requested-by").cloned());
    assert_eq!(annotation.as_deref(), Some("alice"));
    let listed: Value = app
        .http
        .get(app.url("/v1/jobs?requestedBy=alice"))
        .bearer_auth("tok-bob")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let names: Vec<&Value> = listed["items"].as_array().expect("items").iter().map(|v| &v["name"]).collect();
    assert_eq!(names, vec![&alices["name"]], "the list filters by caller");
}

/// A token for ServiceAccount `name`, bound to a Role with `rules`, for `audiences` (empty: the
/// API server's own).
async fn token_for(namespace: &str, name: &str, rules: Value, audiences: &[&str]) -> String {
    let _ = service_account_client(namespace, name, rules).await;
    let request: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": audiences, "expirationSeconds": 3600}})).expect("request");
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(support::client().await, namespace)
        .create_token_request(name, &Default::default(), &request)
        .await
        .expect("token")
        .status
        .and_then(|s| s.token)
        .expect("a token")
}

/// The rules of the ClusterRole the chart ships for teams to bind (aggregated to `edit`),
/// rendered by helm from deploy/helm.
fn chart_user_rules() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join(".local/bin/helm"))
        .args(["template", "rel", "deploy/helm/kube-job-launcher", "--set", "auth.mode=kubernetes"])
        .current_dir(root)
        .output()
        .expect("helm runs (make dev-up builds it)");
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for doc in text.split("\n---") {
        let Ok(object) = serde_saphyr::from_str::<Value>(doc) else { continue };
        let aggregated = object.pointer("/metadata/labels/rbac.authorization.k8s.io~1aggregate-to-edit").is_some();
        if object["kind"] == "ClusterRole" && aggregated {
            return object["rules"].clone();
        }
    }
    panic!("the chart renders no ClusterRole aggregated to edit:\n{text}");
}

#[tokio::test]
async fn kubernetes_auth_checks_a_permission_per_action_on_launches() {
    let ns = TestNamespace::create("peraction").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("job-template.yaml", SEED_TEMPLATE)]).await;
    let launches =
        |verbs: &[&str]| json!([{"apiGroups": ["job-launcher.dev"], "resources": ["launches"], "verbs": verbs}]);
    let audience = "kube-job-launcher-tests";
    let launcher_only = token_for(&ns.name, "launcher-only", launches(&["create"]), &[audience]).await;
    let team = token_for(&ns.name, "team", chart_user_rules(), &[audience]).await;
    let job_creator = token_for(
        &ns.name,
        "job-creator",
        json!([{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "delete"]}]),
        &[audience],
    )
    .await;
    let wrong_audience = token_for(&ns.name, "elsewhere", launches(&["create"]), &[]).await;
    let app = TestApp::start(&ns.name, &["--auth", "kubernetes", "--auth-audience", audience]).await.ready().await;
    let call = |method: reqwest::Method, path: String, token: String| {
        let request = app.http.request(method.clone(), app.url(&path)).bearer_auth(token);
        let request = if method == reqwest::Method::POST { request.json(&json!({})) } else { request };
        async move { request.send().await.expect("answer") }
    };
    use reqwest::Method;

    let created = call(Method::POST, "/v1/jobs".into(), launcher_only.clone()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let name = created.json::<Value>().await.expect("view")["name"].as_str().expect("name").to_string();
    for (method, path, verb) in [
        (Method::GET, format!("/v1/jobs/{name}"), "get"),
        (Method::GET, "/v1/jobs".to_string(), "list"),
        (Method::GET, "/v1/queue".to_string(), "list"),
        (Method::DELETE, format!("/v1/jobs/{name}"), "delete"),
    ] {
        let (status, detail) = problem_detail(call(method.clone(), path.clone(), launcher_only.clone()).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {detail}");
        assert!(detail.contains(&format!("may not {verb} launches.job-launcher.dev")), "{detail}");
    }
    let (status, detail) = problem_detail(call(Method::POST, "/v1/jobs".into(), job_creator).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "creating Jobs directly is not the permission asked for: {detail}");
    let refused = call(Method::POST, "/v1/jobs".into(), wrong_audience).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "a token minted for another audience");

    // The chart's user role does all four.
    let launched = call(Method::POST, "/v1/jobs".into(), team.clone()).await;
    assert_eq!(launched.status(), StatusCode::CREATED);
    let own = launched.json::<Value>().await.expect("view")["name"].as_str().expect("name").to_string();
    assert_eq!(call(Method::GET, format!("/v1/jobs/{own}"), team.clone()).await.status(), StatusCode::OK);
    assert_eq!(call(Method::GET, "/v1/jobs".into(), team.clone()).await.status(), StatusCode::OK);
    assert_eq!(call(Method::DELETE, format!("/v1/jobs/{name}"), team).await.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn browsers_cannot_use_a_launcher_without_auth_across_sites_or_through_foreign_hosts() {
    let (ns, app) = setup("xsite").await;
    let port = app.base.rsplit(':').next().unwrap_or_default().to_string();
    let launch = |headers: Vec<(&'static str, String)>| {
        let mut request = app.http.post(app.url("/v1/jobs")).json(&json!({}));
        for (k, v) in headers {
            request = request.header(k, v);
        }
        async move { request.send().await.expect("answer").status() }
    };
    assert_eq!(launch(vec![("sec-fetch-site", "cross-site".into())]).await, StatusCode::FORBIDDEN, "a cross-site form");
    assert_eq!(
        launch(vec![("sec-fetch-site", "same-site".into()), ("origin", "http://localhost:3000".into())]).await,
        StatusCode::FORBIDDEN,
        "a page on another port of localhost"
    );
    assert_eq!(launch(vec![("origin", "http://evil.example".into())]).await, StatusCode::FORBIDDEN);
    let img = app.http.get(app.url("/launchjob")).header("sec-fetch-site", "cross-site").send().await.expect("r");
    assert_eq!(img.status(), StatusCode::FORBIDDEN, "an <img> pointing at /launchjob");
    let rebound = app.http.get(app.url("/v1/jobs")).header("host", format!("evil.example:{port}")).send().await;
    assert_eq!(rebound.expect("r").status(), StatusCode::FORBIDDEN, "DNS rebinding: a foreign Host");
    assert!(jobs_in(&ns).await.is_empty(), "nothing was launched");

    assert_eq!(launch(vec![]).await, StatusCode::CREATED, "curl and the CLI send neither header");
    let own = vec![("sec-fetch-site", "same-origin".into()), ("origin", app.base.clone())];
    assert_eq!(launch(own).await, StatusCode::CREATED, "the launcher's own pages");
}

#[tokio::test]
async fn a_caller_cannot_set_labels_the_launchers_service_selects_on() {
    let (ns, app) = setup("labels").await;
    for key in ["app.kubernetes.io/name", "app.kubernetes.io/instance", "job-launcher.dev/instance"] {
        let (status, detail) = problem_detail(post(&app, json!({"labels": {key: "kube-job-launcher"}})).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}");
        assert!(detail.contains(key) && detail.contains("reserved"), "{detail}");
    }
    assert!(jobs_in(&ns).await.is_empty());
}

/// Series of `metric` in a /metrics text.
fn series(text: &str, metric: &str) -> usize {
    text.lines().filter(|l| l.starts_with(&format!("{metric}{{"))).count()
}

#[tokio::test]
async fn metrics_stay_bounded_whatever_names_and_methods_callers_send() {
    let (_ns, app) = setup("bounded").await;
    // One unknown template and one invented method first: the series they may add.
    assert_eq!(post(&app, json!({"template": "no-such-0"})).await.status(), StatusCode::NOT_FOUND);
    let brew = reqwest::Method::from_bytes(b"BREW0").expect("method");
    let _ = app.http.request(brew, app.url("/v1/jobs")).send().await.expect("r");
    let before = app.metrics().await;
    let counted =
        |text: &str| (series(text, "job_launcher_launches_total"), series(text, "job_launcher_http_requests_total"));
    for i in 1..300 {
        let _ = post(&app, json!({"template": format!("no-such-{i}")})).await;
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).expect("method");
        let _ = app.http.request(method, app.url("/v1/jobs")).send().await.expect("r");
    }
    let after = app.metrics().await;
    assert_eq!(counted(&after), counted(&before), "no new series:\n{after}");
    assert!(after.contains("template=\"unknown\",outcome=\"unknown_template\"} 300"), "{after}");
    assert!(after.contains("method=\"other\""), "{after}");
}

fn tempdir(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kjl-{prefix}-{}", support::random_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA named `ca` and a certificate for localhost it signed, `<name>.crt` / `<name>.key`.
fn make_certificate(dir: &Path, ca: &str, name: &str) {
    if !dir.join(format!("{ca}.crt")).exists() {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                &format!("/CN={ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// Lays out `dir/mount` as the kubelet mounts a Secret: `..<version>/tls.{crt,key}`, a `..data`
/// symlink to the version, and `tls.crt`/`tls.key` symlinks through `..data`.
fn mount_secret_version(dir: &Path, version: &str, cert: &str) {
    let mount = dir.join("mount");
    let versioned = mount.join(format!("..{version}"));
    std::fs::create_dir_all(&versioned).expect("version dir");
    std::fs::copy(dir.join(format!("{cert}.crt")), versioned.join("tls.crt")).expect("crt");
    std::fs::copy(dir.join(format!("{cert}.key")), versioned.join("tls.key")).expect("key");
    // The kubelet's swap: a new link beside the old, renamed over it in one step.
    let tmp = mount.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("link");
    std::fs::rename(&tmp, mount.join("..data")).expect("swap ..data");
    for file in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(mount.join(file)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{file}"), mount.join(file)).expect("file link");
        }
    }
}

fn client_trusting(dir: &Path, ca: &str) -> reqwest::Client {
    trusting(reqwest::Client::builder(), dir, ca).build().expect("client")
}

fn trusting(client: reqwest::ClientBuilder, dir: &Path, ca: &str) -> reqwest::ClientBuilder {
    let pem = std::fs::read(dir.join(format!("{ca}.crt"))).expect("ca");
    client.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a CA certificate"))
}

#[tokio::test]
async fn tls_serves_with_a_test_ca_and_picks_up_a_certificate_renewed_by_a_symlink_swap() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ns = TestNamespace::create("tls").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("job-template.yaml", SEED_TEMPLATE)]).await;
    let dir = tempdir("tls");
    make_certificate(&dir, "ca-one", "first");
    make_certificate(&dir, "ca-two", "second");
    mount_secret_version(&dir, "2026_11_29_first", "first");
    let (cert, key) = (dir.join("mount/tls.crt"), dir.join("mount/tls.key"));
    let args = ["--tls-cert-file", cert.to_str().expect("path"), "--tls-key-file", key.to_str().expect("path")];
    let app = TestApp::start(&ns.name, &args).await.ready().await;
    let port = app.base.rsplit(':').next().unwrap_or_default().to_string();
    let url = format!("https://localhost:{port}/v1/templates");

    let templates = client_trusting(&dir, "ca-one").get(&url).send().await.expect("TLS with the first CA");
    assert_eq!((templates.status(), templates.version()), (StatusCode::OK, reqwest::Version::HTTP_2), "h2 by ALPN");
    let http1 = trusting(reqwest::Client::builder().http1_only(), &dir, "ca-one").build().expect("client");
    let templates = http1.get(&url).send().await.expect("TLS, HTTP/1.1 only");
    assert_eq!((templates.status(), templates.version()), (StatusCode::OK, reqwest::Version::HTTP_11));
    assert!(client_trusting(&dir, "ca-two").get(&url).send().await.is_err(), "not yet the second certificate");
    assert!(reqwest::get(url.replace("https", "http")).await.is_err_or_not_ok(), "no plain HTTP on a TLS port");

    mount_secret_version(&dir, "2026_11_30_second", "second");
    wait_until(Duration::from_secs(15), "the renewed certificate to be served", || async {
        client_trusting(&dir, "ca-two").get(&url).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    assert!(client_trusting(&dir, "ca-one").get(&url).send().await.is_err(), "the old certificate is gone");
    let _ = std::fs::remove_dir_all(&dir);
}

trait ErrOrNotOk {
    fn is_err_or_not_ok(&self) -> bool;
}

impl ErrOrNotOk for reqwest::Result<reqwest::Response> {
    fn is_err_or_not_ok(&self) -> bool {
        self.as_ref().map_or(true, |r| !r.status().is_success())
    }
}

#[tokio::test]
async fn a_raw_sqs_body_reaches_message_body_verbatim() {
    let ns = TestNamespace::create("rawbody").await;
    put_config_map(
        &ns.client,
        &ns.name,
        "job-template-cm",
        &[("job-template.yaml", SEED_TEMPLATE), ("fake.yaml", FAKE)],
    )
    .await;
    let queue = support::TestQueue::create("rawbody").await;
    let mut args: Vec<String> = support::sqs_flags(&queue.url);
    args.extend(["--sqs-template".to_string(), "job-template".to_string()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let _app = TestApp::start(&ns.name, &argv).await.ready().await;
    let body = r#"{"jobId":"$$(SECRET)","cost":"$5","note":"a$$b"}"#.to_string();
    let ids = queue.send_all(std::slice::from_ref(&body)).await;
    let jobs: Api<Job> = ns.api();
    wait_until(Duration::from_secs(60), "the message's Job", || async {
        jobs.list(&ListParams::default()).await.is_ok_and(|l| !l.items.is_empty())
    })
    .await;
    let job = jobs.list(&ListParams::default()).await.expect("list").items.remove(0);
    let env: BTreeMap<String, String> = job
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    let defined: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(expand_with(&env["MESSAGE_BODY"], &defined), body, "the body as sent");
    assert_eq!(expand_with(&env["MESSAGE_ID"], &defined), ids[0]);
}

#[tokio::test]
async fn a_template_with_an_unchecked_parameter_in_a_shell_script_says_so() {
    let ns = TestNamespace::create("warn").await;
    put_config_map(
        &ns.client,
        &ns.name,
        "job-template-cm",
        &[("fake.yaml", FAKE), ("greeting.yaml", GREETING_TEMPLATE)],
    )
    .await;
    let app = TestApp::start(&ns.name, &[]).await.ready().await;
    let fake: Value = app.http.get(app.url("/v1/templates/fake")).send().await.expect("r").json().await.expect("json");
    let warnings = fake["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        warnings.iter().any(|w| w.as_str().is_some_and(|w| w.contains("parameter message") && w.contains("shell"))),
        "{fake}"
    );
    let greeting: Value =
        app.http.get(app.url("/v1/templates/greeting")).send().await.expect("r").json().await.expect("json");
    assert_eq!(greeting["warnings"], json!([]), "the example passes values through env");
}
