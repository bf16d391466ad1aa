//! The dashboard, in a real browser (Debian's headless Chromium through chromedriver) against
//! a launcher with a token file on the local control plane: login, launch from the generated
//! form, live updates, logs, cancel, templates' errors, and that nothing a caller or a template
//! author writes becomes markup or script. And, without a browser, the login's cookie over HTTP:
//! who may use it, from where, and that `--ui=false` turns it all off.

mod support;

use std::time::Duration;

use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use support::{
    FAKE, FakeLog, GREETING_TEMPLATE, TestApp, TestNamespace, browser::Browser, pod_of_job, put_config_map, wait_until,
};

const TOKEN: &str = "ui-test-token-4f1c";
const USER: &str = "alice";

/// A parameter description and a result that would be markup if they were inserted as HTML.
const IMG_PAYLOAD: &str = "<img src=x onerror=alert(1)>";
const LOG_PAYLOAD: &str = "<script>window.__pwned = 1; alert(2)</script>";

/// The example greeting template, its pods held Pending for 3 s (time to give one a log of its
/// own) and then running for 3 s.
fn slow_greeting() -> String {
    let slowed = GREETING_TEMPLATE.replace(
        "  template:\n    spec:\n",
        "  template:\n    metadata:\n      annotations:\n        fake.job-launcher.dev/start-delay: 3s\n        fake.job-launcher.dev/duration: 3s\n    spec:\n",
    );
    assert_ne!(slowed, GREETING_TEMPLATE, "the greeting example changed shape: adapt slow_greeting()");
    slowed
}

/// A template whose parameter description is markup.
fn notes_template() -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  annotations:
    job-launcher.dev/parameters: |
      - name: note
        pattern: '[a-z]+'
        description: '{IMG_PAYLOAD}'
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        env:
        - name: NOTE
          value: "$(params.note)"
"#
    )
}

/// A template that was never valid.
const BROKEN: &str = r#"apiVersion: batch/v1
kind: Job
spec:
  template:
    spec:
      restartPolicy: Always
      containers:
      - name: main
        image: busybox
"#;

fn token_file(ns: &TestNamespace) -> String {
    let dir = std::env::temp_dir().join(format!("kjl-ui-{}", ns.name));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("tokens");
    std::fs::write(&path, format!("{TOKEN},{USER},1001\nother-token,bob,1002\n")).expect("token file");
    path.to_string_lossy().into_owned()
}

async fn setup(prefix: &str, extra: &[&str]) -> (TestNamespace, TestApp) {
    let ns = TestNamespace::create(prefix).await;
    let (greeting, notes) = (slow_greeting(), notes_template());
    put_config_map(
        &ns.client,
        &ns.name,
        "job-template-cm",
        &[("greeting.yaml", &greeting), ("fake.yaml", FAKE), ("notes.yaml", &notes), ("broken.yaml", BROKEN)],
    )
    .await;
    let tokens = token_file(&ns);
    let mut args = vec!["--auth-token-file", &tokens];
    args.extend_from_slice(extra);
    let app = TestApp::start(&ns.name, &args).await.ready().await;
    (ns, app)
}

/// Launches through the API with the test's token; returns the Job's name.
async fn launch(app: &TestApp, body: Value) -> String {
    let answer = app.http.post(app.url("/v1/jobs")).bearer_auth(TOKEN).json(&body).send().await.expect("POST /v1/jobs");
    assert_eq!(answer.status(), StatusCode::CREATED, "launch {body}");
    answer.json::<Value>().await.expect("JobView")["name"].as_str().expect("name").to_string()
}

/// The page's `fetch` of `path`: its status.
async fn fetch_status(browser: &Browser, path: &str) -> u64 {
    let script = format!("fetch({path:?}).then(r => done(r.status), e => done(String(e)));");
    let status = browser.js_async(&script).await;
    status.as_u64().unwrap_or_else(|| panic!("fetch {path} failed: {status}"))
}

/// Nothing ran: no alert is open, the payloads' flags are unset, no element came from them.
async fn nothing_ran(browser: &Browser) {
    assert!(browser.client.get_alert_text().await.is_err(), "an alert is open: a caller's string ran as script");
    let ran = browser
        .js("return { pwned: window.__pwned === undefined ? null : window.__pwned, imgs: document.querySelectorAll('img').length, scripts: [...document.scripts].map(s => s.src) };", vec![])
        .await;
    assert_eq!(ran["pwned"], Value::Null, "a log line ran as script");
    assert_eq!(ran["imgs"], json!(0), "markup from a caller's string became an element");
    let scripts = ran["scripts"].as_array().map(Vec::len).unwrap_or_default();
    assert_eq!(scripts, 1, "only the dashboard's own module script: {}", ran["scripts"]);
}

#[tokio::test]
async fn the_dashboard_launches_follows_reads_logs_and_cancels_in_a_real_browser() {
    let (ns, app) = setup("ui", &["--max-active", "1"]).await;
    let browser = Browser::start().await;

    // Before login: the shell loads, asks for a token, and the API refuses the page.
    browser.goto(&app.url("/ui/")).await;
    browser.wait_for("#login-form").await;
    assert_eq!(fetch_status(&browser, "/v1/jobs").await, 401, "a /v1 request before login");
    assert_eq!(fetch_status(&browser, "/v1/templates").await, 401);
    browser.screenshot("login").await;

    // A wrong token is refused; the right one, typed and sent with Enter, logs in.
    browser.type_into("#login-token", "not-a-token\n").await;
    browser.wait_text("#login-error", "not valid").await;
    browser.type_into("#login-token", &format!("{TOKEN}\n")).await;
    browser.wait_text("#session-user", USER).await;
    browser.wait_text("main h1", "Jobs").await;
    // A flag that a reload would lose: every step below happens in this one page load.
    browser.js("window.__sameLoad = true;", vec![]).await;
    assert_eq!(fetch_status(&browser, "/v1/jobs").await, 200, "the session cookie authenticates");
    let cookies = browser.js("return document.cookie;", vec![]).await;
    assert_eq!(cookies, json!(""), "the session cookie is HttpOnly: the page's scripts never see the token");

    // Templates: an invalid one shows its error; a description holding markup is text.
    browser.click("nav a[data-nav=templates]").await;
    browser.wait_text("article[data-template=broken] .template-error", "restartPolicy").await;
    browser.wait_text("article[data-template=broken]", "invalid").await;
    let description = browser.wait_text("article[data-template=notes] td.description", "onerror").await;
    assert_eq!(description, IMG_PAYLOAD, "the description is shown as its text");
    nothing_ran(&browser).await;
    browser.screenshot("templates").await;

    // The launch form, generated from greeting's parameters, checks them in the page.
    browser.click("article[data-template=greeting] a.button").await;
    browser.wait_for("#launch-form input[data-param=name]").await;
    browser.click("#launch").await;
    browser.wait_text("#launch-problem", "name is required").await;
    browser.type_into("input[data-param=name]", "Ada!").await;
    browser.click("#launch").await;
    browser.wait_text("#launch-problem", "must match").await;
    assert_eq!(browser.path().await, "/ui/templates/greeting", "nothing was launched");
    browser.type_into("input[data-param=name]", "Ada").await;
    browser.type_into("input[data-param=times]", "2").await;
    browser.click("#preview").await;
    let manifest = browser.wait_text("#manifest-preview", "\"Ada\"").await;
    assert!(manifest.contains("\"kind\": \"Job\""), "{manifest}");
    browser.js("document.getElementById('launch-form').scrollIntoView();", vec![]).await;
    browser.screenshot("launch").await;
    browser.click("#launch").await;

    // After the launch: the new Job's page, live from pending to succeeded.
    browser.wait_until("the new Job's page", || async { browser.path().await.starts_with("/ui/jobs/") }).await;
    let greeting = browser.path().await.trim_start_matches("/ui/jobs/").to_string();
    browser.wait_text("h1.job-name", &greeting).await;
    browser.wait_text("#job-summary", USER).await;
    let pod = pod_of_job(&ns.client, &ns.name, &greeting).await;
    let log = FakeLog::create(&ns.client, &ns.name, &pod, &format!("Hello, Ada\n{LOG_PAYLOAD}\nHello, Ada\n")).await;
    log.wait_served().await;
    browser.wait_attr("#job-state", "data-state", "succeeded").await;
    browser.js("document.getElementById('log-section').scrollIntoView();", vec![]).await;
    let text = browser.wait_text("#job-log", "Hello, Ada\n<script>").await;
    assert_eq!(text, format!("Hello, Ada\n{LOG_PAYLOAD}\nHello, Ada\n"), "the log, as text");
    let children = browser.js("return document.getElementById('job-log').children.length;", vec![]).await;
    assert_eq!(children, json!(0), "the log holds text only");
    browser.wait_text("#job-timeline", "Finished: succeeded").await;
    browser.wait_text("#job-timeline", "Became succeeded").await;
    browser.wait_text("#job-pods", "kwok-node-").await;
    browser.wait_text("#job-events", "SuccessfulCreate").await;
    browser.wait_text("#job-annotations", "job-launcher.dev/requested-by").await;
    browser.wait_text("#job-labels", "job-launcher.dev/template").await;
    // The Job ended while its log was followed: the page says the log is whole once it is.
    browser.wait_text("#log-status", "End of the log").await;
    nothing_ran(&browser).await;
    browser.js("window.scrollTo(0, 0);", vec![]).await;
    browser.screenshot("job").await;

    // The Jobs page: the greeting Job; then Jobs launched elsewhere appear and change, live.
    browser.click("nav a[data-nav=jobs]").await;
    browser.wait_attr(&format!("tr[data-job='{greeting}']"), "data-state", "succeeded").await;
    browser.wait_attr("#live-status", "data-status", "live").await;
    let failing = launch(&app, json!({"template": "fake", "params": {"message": IMG_PAYLOAD, "exitCode": 3}})).await;
    browser.wait_attr(&format!("tr[data-job='{failing}']"), "data-state", "failed").await;
    let result = browser.wait_text(&format!("tr[data-job='{failing}'] td[data-label=Result]"), "onerror").await;
    assert_eq!(result, IMG_PAYLOAD, "a result is shown as its text");
    browser.wait_text(&format!("tr[data-job='{failing}'] td[data-label='Exit codes']"), "3").await;
    let blocker = launch(&app, json!({"template": "fake", "params": {"duration": "10m", "message": "blocking"}})).await;
    browser.wait_attr(&format!("tr[data-job='{blocker}']"), "data-state", "running").await;
    let queued = launch(&app, json!({"template": "fake", "labels": {"team": "ui"}})).await;
    browser.wait_attr(&format!("tr[data-job='{queued}']"), "data-state", "queued").await;
    browser.wait_text(&format!("tr[data-job='{queued}'] td[data-label=Queue]"), "#1").await;
    let order =
        browser.js("return [...document.querySelectorAll('#jobs-body tr')].map(r => r.dataset.job);", vec![]).await;
    assert_eq!(order, json!([queued, blocker, failing, greeting]), "newest first");
    nothing_ran(&browser).await;
    browser.screenshot("jobs").await;

    // Opened from the list, the finished greeting Job shows its whole log.
    browser.click(&format!("a[href='/ui/jobs/{greeting}']")).await;
    browser.wait_attr("#job-state", "data-state", "succeeded").await;
    browser.wait_text("#log-status", "End of the log").await;
    assert_eq!(browser.text("#job-log").await.unwrap_or_default(), format!("Hello, Ada\n{LOG_PAYLOAD}\nHello, Ada\n"));
    nothing_ran(&browser).await;
    browser.click("nav a[data-nav=jobs]").await;
    browser.wait_attr(&format!("tr[data-job='{queued}']"), "data-state", "queued").await;

    // Filters: by state, server-side, and the address keeps them.
    browser.click("#filter-state").await;
    browser
        .client
        .find(fantoccini::Locator::Css("#filter-state"))
        .await
        .expect("state filter")
        .select_by_value("failed")
        .await
        .expect("select failed");
    browser.click(".filters button[type=submit]").await;
    browser
        .wait_until("only the failed Job listed", || async {
            browser.js("return [...document.querySelectorAll('#jobs-body tr')].map(r => r.dataset.job);", vec![]).await
                == json!([failing])
        })
        .await;
    assert_eq!(browser.path().await, "/ui/jobs?state=failed");

    // A running Job's log follows live only while it is on screen.
    browser.click("nav a[data-nav=jobs]").await;
    browser.click(&format!("a[href='/ui/jobs/{blocker}']")).await;
    browser.wait_attr("#job-state", "data-state", "running").await;
    browser.wait_text("#log-status", "Following the log live").await;
    browser.wait_text("#job-log", "from a fake node").await;
    browser.client.set_window_size(1280, 400).await.expect("a short window");
    browser.js("window.scrollTo(0, document.body.scrollHeight);", vec![]).await;
    browser.wait_text("#log-status", "Paused while the log is not on screen").await;
    browser.js("document.getElementById('log-section').scrollIntoView();", vec![]).await;
    browser.wait_text("#log-status", "Following the log live").await;
    browser.client.set_window_size(1280, 900).await.expect("wide window");

    // The queue: the cap, this replica leading, the queued Job in admission order.
    browser.click("nav a[data-nav=queue]").await;
    browser.wait_text("#queue-facts", "1 (cap: 1)").await;
    browser.wait_text("#leader", "this replica leads").await;
    browser.wait_text("#queue-table", &queued).await;
    browser.wait_text("#queue-templates tr[data-template=fake]", "1").await;
    browser.screenshot("queue").await;

    // Cancel the queued Job from its page, after confirming.
    browser.click(&format!("#queue-table a[href='/ui/jobs/{queued}']")).await;
    browser.wait_attr("#job-state", "data-state", "queued").await;
    browser.wait_text("#job-labels", "team").await;
    let dialog_open = || async { browser.js("return document.getElementById('cancel-dialog').open;", vec![]).await };
    // From the keyboard: Escape keeps the Job.
    browser.click("#cancel-job").await;
    browser.wait_until("the confirmation", || async { dialog_open().await == json!(true) }).await;
    let focused = browser.client.active_element().await.expect("the focused element");
    assert_eq!(focused.text().await.expect("its text"), "Keep it", "the safe choice has the focus");
    focused.send_keys("\u{e00c}").await.expect("Escape");
    browser.wait_until("the confirmation to close", || async { dialog_open().await == json!(false) }).await;
    assert_eq!(browser.attr("#job-state", "data-state").await.as_deref(), Some("queued"), "Escape cancelled nothing");
    browser.click("#cancel-job").await;
    browser.wait_until("the confirmation", || async { dialog_open().await == json!(true) }).await;
    browser.screenshot("cancel").await;
    browser.click("#confirm-cancel").await;
    browser.wait_attr("#job-state", "data-state", "cancelled").await;
    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> = ns.api();
    wait_until(Duration::from_secs(30), "the cancelled Job to be gone", || async {
        jobs.get_opt(&queued).await.is_ok_and(|j| j.is_none())
    })
    .await;
    browser.click("nav a[data-nav=queue]").await;
    browser.wait_for("#queue-empty").await;

    // A narrow window: everything fits its width.
    browser.client.set_window_size(390, 844).await.expect("narrow window");
    browser.click("nav a[data-nav=jobs]").await;
    browser.wait_attr(&format!("tr[data-job='{greeting}']"), "data-state", "succeeded").await;
    let fits = browser.js("return document.documentElement.scrollWidth <= window.innerWidth;", vec![]).await;
    browser.screenshot("jobs-narrow").await;
    assert_eq!(fits, json!(true), "the Jobs page fits a narrow window");
    browser.client.set_window_size(1280, 900).await.expect("wide window");

    // One page load all along, and every request it made stayed on its origin.
    assert_eq!(browser.js("return window.__sameLoad === true;", vec![]).await, json!(true), "the page never reloaded");
    let requests = browser
        .js("return performance.getEntries().filter(e => e.name.startsWith('http')).map(e => e.name);", vec![])
        .await;
    let requests: Vec<String> =
        requests.as_array().expect("entries").iter().filter_map(|v| v.as_str().map(String::from)).collect();
    assert!(requests.iter().any(|r| r.contains("/v1/events")), "the requests are recorded: {requests:?}");
    let origin = app.base.clone();
    let foreign: Vec<&String> = requests.iter().filter(|r| !r.starts_with(&format!("{origin}/"))).collect();
    assert!(foreign.is_empty(), "requests outside the page's origin: {foreign:?}");
    nothing_ran(&browser).await;

    // Logout ends the session.
    browser.click("#logout").await;
    browser.wait_for("#login-form").await;
    assert_eq!(fetch_status(&browser, "/v1/jobs").await, 401, "after logout");
    browser.close().await;
    let _ = app.http.delete(app.url(&format!("/v1/jobs/{blocker}"))).bearer_auth(TOKEN).send().await;
}

/// The login and its cookie, over plain HTTP: what the browser test relies on, and what a
/// browser on another site must not do with it.
#[tokio::test]
async fn the_login_cookie_authenticates_same_origin_requests_only() {
    let (_ns, app) = setup("ui-cookie", &[]).await;
    let http = reqwest::Client::new();
    let own_origin = app.base.clone();
    let login = |token: &str, site: &'static str| {
        http.post(app.url("/ui/login"))
            .header("sec-fetch-site", site)
            .header(
                header::ORIGIN,
                if site == "same-origin" { own_origin.clone() } else { "http://evil.example".into() },
            )
            .form(&[("token", token)])
            .send()
    };
    // Another site cannot log a browser in (login CSRF), nor with a wrong token anyone.
    assert_eq!(login(TOKEN, "cross-site").await.expect("login").status(), StatusCode::FORBIDDEN);
    assert_eq!(login("wrong", "same-origin").await.expect("login").status(), StatusCode::UNAUTHORIZED);
    let answer = login(TOKEN, "same-origin").await.expect("login");
    assert_eq!(answer.status(), StatusCode::OK);
    let set_cookie =
        answer.headers().get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_string();
    assert_eq!(answer.json::<Value>().await.expect("session")["user"], json!(USER));

    // The cookie stands in for the bearer token...
    let jobs = http.get(app.url("/v1/jobs")).header(header::COOKIE, &cookie).send().await.expect("list");
    assert_eq!(jobs.status(), StatusCode::OK);
    let same_origin = http
        .post(app.url("/v1/jobs"))
        .header(header::COOKIE, &cookie)
        .header("sec-fetch-site", "same-origin")
        .header(header::ORIGIN, &own_origin)
        .json(&json!({"template": "fake"}))
        .send()
        .await
        .expect("launch");
    assert_eq!(same_origin.status(), StatusCode::CREATED, "a launch from the dashboard's own page");
    let view: Value = same_origin.json().await.expect("JobView");
    assert_eq!(view["requestedBy"], json!(USER), "the cookie's token names the caller");
    // ...but not for a state-changing request from another site or page.
    for (site, origin) in [("cross-site", "http://evil.example"), ("same-site", "http://127.0.0.1:1")] {
        let refused = http
            .post(app.url("/v1/jobs"))
            .header(header::COOKIE, &cookie)
            .header("sec-fetch-site", site)
            .header(header::ORIGIN, origin)
            .json(&json!({"template": "fake"}))
            .send()
            .await
            .expect("launch");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{site} launch with the cookie");
    }
    let name = view["name"].as_str().expect("name").to_string();
    let cancel = http
        .delete(app.url(&format!("/v1/jobs/{name}")))
        .header(header::COOKIE, &cookie)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("cancel");
    assert_eq!(cancel.status(), StatusCode::FORBIDDEN, "a cross-site cancel with the cookie");
    // A broken Authorization header is not rescued by the cookie.
    let broken =
        http.get(app.url("/v1/jobs")).header(header::COOKIE, &cookie).header(header::AUTHORIZATION, "Basic x").send();
    assert_eq!(broken.await.expect("list").status(), StatusCode::UNAUTHORIZED);
    // The stream takes the cookie too (an EventSource can send nothing else).
    let stream = http.get(app.url("/v1/events")).header(header::COOKIE, &cookie).send().await.expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    drop(stream);

    // The Kubernetes Events of the Job and its pod, and its annotations, from the API server.
    wait_until(Duration::from_secs(30), "the Job's and its pod's Events", || async {
        let answer = http.get(app.url(&format!("/v1/jobs/{name}/k8s-events"))).bearer_auth(TOKEN).send().await;
        let Ok(answer) = answer else { return false };
        let Ok(events) = answer.json::<Value>().await else { return false };
        let kinds: Vec<&str> =
            events["events"].as_array().into_iter().flatten().filter_map(|e| e["kind"].as_str()).collect();
        events["annotations"]["job-launcher.dev/requested-by"] == json!(USER)
            && kinds.contains(&"Job")
            && kinds.contains(&"Pod")
    })
    .await;
    let unknown = http.get(app.url("/v1/jobs/no-such-job/k8s-events")).bearer_auth(TOKEN).send().await.expect("events");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let anonymous = http.get(app.url(&format!("/v1/jobs/{name}/k8s-events"))).send().await.expect("events");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Logout clears the cookie.
    let out = http
        .post(app.url("/ui/logout"))
        .header("sec-fetch-site", "same-origin")
        .header(header::ORIGIN, &own_origin)
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), StatusCode::OK);
    let cleared = out.headers().get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(cleared.starts_with("kjl-session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    let cross_site_logout = http.post(app.url("/ui/logout")).header("sec-fetch-site", "cross-site").send().await;
    assert_eq!(
        cross_site_logout.expect("logout").status(),
        StatusCode::FORBIDDEN,
        "another site cannot log a browser out"
    );
}

#[tokio::test]
async fn ui_false_turns_the_dashboard_and_its_cookie_off() {
    let (_ns, app) = setup("ui-off", &["--ui=false"]).await;
    let http = reqwest::Client::new();
    for path in ["/ui/", "/ui/assets/app.js", "/ui/session"] {
        assert_eq!(http.get(app.url(path)).send().await.expect("get").status(), StatusCode::NOT_FOUND, "{path}");
    }
    let login = http.post(app.url("/ui/login")).form(&[("token", TOKEN)]).send().await.expect("login");
    assert_eq!(login.status(), StatusCode::NOT_FOUND);
    let with_cookie = http.get(app.url("/v1/jobs")).header(header::COOKIE, format!("kjl-session={TOKEN}")).send();
    assert_eq!(
        with_cookie.await.expect("list").status(),
        StatusCode::UNAUTHORIZED,
        "without the dashboard a cookie is nothing"
    );
    let bearer = http.get(app.url("/v1/jobs")).bearer_auth(TOKEN).send().await.expect("list");
    assert_eq!(bearer.status(), StatusCode::OK);
}
