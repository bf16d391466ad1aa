//! Shared set-up for the integration tests: a client for the local control plane that
//! `make dev-up` starts, and a namespace per test that goes away when the test ends.
//!
//! These tests need the real cluster. When it is not there they fail with a message that says how
//! to start it; they never skip.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::{path::PathBuf, time::Duration};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, Config,
    api::{DeleteParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};

/// The kubeconfig of the local control plane: `KJL_TEST_KUBECONFIG`, else `.local/kubeconfig`.
/// `KUBECONFIG` is deliberately not used, so a test run never touches a developer's real cluster.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("KJL_TEST_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/kubeconfig"))
}

/// A client for the local control plane. Panics, saying what to do, when it is not running.
pub async fn client() -> Client {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!("no local control plane: cannot read {} ({e}). Start it with `make dev-up`.", path.display())
    });
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("invalid kubeconfig {}: {e}", path.display()));
    let client = Client::try_from(config).expect("a client for the local control plane");
    if let Err(e) = client.apiserver_version().await {
        panic!("the local control plane does not answer ({e}). Start it with `make dev-up`.");
    }
    client
}

/// A namespace of the test's own, deleted (with everything in it) when dropped.
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
}

impl TestNamespace {
    pub async fn create(prefix: &str) -> Self {
        let client = client().await;
        let name = format!("t-{prefix}-{}", random_suffix());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { "kube-job-launcher.test": "true" } }
        }))
        .expect("namespace manifest");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
        // Pods need the namespace's default ServiceAccount, which a controller creates.
        wait_until(Duration::from_secs(30), "default ServiceAccount", || async {
            Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &name)
                .get_opt("default")
                .await
                .ok()
                .flatten()
                .is_some()
        })
        .await;
        Self { name, client }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down: delete from a thread
        // with a runtime and a client of its own.
        let name = self.name.clone();
        let done = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                let client = client().await;
                let _ = Api::<Namespace>::all(client).delete(&name, &DeleteParams::background()).await;
            });
        });
        let _ = done.join();
    }
}

/// Polls `check` until it is true; panics after `timeout` naming what it waited for.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Eight lowercase letters and digits, from the std library's randomly seeded hasher (tests need
/// unique names, not cryptographic randomness).
pub fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default(),
    );
    let mut n = hasher.finish();
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| {
            let c = alphabet[(n % 36) as usize] as char;
            n /= 36;
            c
        })
        .collect()
}

/// The launcher, started in-process on port 0 against the local control plane.
pub struct TestApp {
    pub base: String,
    pub admin: String,
    pub http: reqwest::Client,
    /// The SQS dispatch consumer, when the app was started with a queue in dispatch mode.
    pub dispatcher: Option<std::sync::Arc<kube_job_launcher::sqs::dispatch::Dispatcher>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// Starts the launcher working in `namespace` with the admin client, plus `args`.
    pub async fn start(namespace: &str, args: &[&str]) -> Self {
        Self::start_as(client().await, namespace, args).await
    }

    /// Starts the launcher with a client of the caller's (say, a ServiceAccount's).
    pub async fn start_as(client: Client, namespace: &str, args: &[&str]) -> Self {
        let mut argv = vec!["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
        argv.extend_from_slice(args);
        let serve = kube_job_launcher::config::ServeArgs::try_parse_flags(argv).expect("launcher arguments");
        let app = kube_job_launcher::app::Application::build(serve, client, namespace.to_string())
            .await
            .expect("the launcher starts");
        let dispatcher = app.dispatcher();
        let base = format!("http://{}", app.api_addr());
        let admin = format!("http://{}", app.admin_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self { base, admin, http: reqwest::Client::new(), dispatcher, stop: Some(stop), task: Some(task) }
    }

    /// Waits for /readyz to answer 200.
    pub async fn ready(self) -> Self {
        let url = format!("{}/readyz", self.admin);
        let http = self.http.clone();
        wait_until(Duration::from_secs(30), "the launcher to be ready", || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(&url).send().await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The admin port's /metrics text.
    pub async fn metrics(&self) -> String {
        self.http.get(format!("{}/metrics", self.admin)).send().await.expect("metrics").text().await.expect("text")
    }

    /// Stops the launcher as SIGTERM would, and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Creates or replaces the ConfigMap `name` with `data` (key → text).
pub async fn put_config_map(client: &Client, namespace: &str, name: &str, data: &[(&str, &str)]) {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Patch, PatchParams};
    let data: std::collections::BTreeMap<&str, &str> = data.iter().copied().collect();
    let cm = serde_json::json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": data });
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::apply("kube-job-launcher-tests").force(), &Patch::Apply(&cm))
        .await
        .unwrap_or_else(|e| panic!("apply ConfigMap {name}: {e}"));
}

/// The original launcher's template, as shipped in the chart.
pub const SEED_TEMPLATE: &str = include_str!("../../deploy/helm/kube-job-launcher/files/job-template.yaml");
/// The example template with parameters.
pub const GREETING_TEMPLATE: &str = include_str!("../../examples/greeting.yaml");

/// A client that acts as ServiceAccount `name` in `namespace`, bound to a Role with `rules`
/// (JSON PolicyRules). Made with a TokenRequest, so it is exactly what a pod of that account gets.
pub async fn service_account_client(namespace: &str, name: &str, rules: serde_json::Value) -> Client {
    use k8s_openapi::api::{authentication::v1::TokenRequest, core::v1::ServiceAccount, rbac::v1::RoleBinding};
    let admin = client().await;
    let pp = PostParams::default();
    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).expect("sa");
    Api::<ServiceAccount>::namespaced(admin.clone(), namespace).create(&pp, &sa).await.expect("create ServiceAccount");
    set_role(namespace, name, rules).await;
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
        "subjects": [{ "kind": "ServiceAccount", "name": name, "namespace": namespace }]
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(admin.clone(), namespace).create(&pp, &binding).await.expect("create RoleBinding");
    let request: TokenRequest =
        serde_json::from_value(serde_json::json!({ "spec": { "audiences": [], "expirationSeconds": 3600 } }))
            .expect("token request");
    let token = Api::<ServiceAccount>::namespaced(admin, namespace)
        .create_token_request(name, &pp, &request)
        .await
        .expect("token")
        .status
        .expect("token status")
        .token
        .expect("a token");
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).expect("kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    config.auth_info = kube::config::AuthInfo { token: Some(secrecy::SecretString::from(token)), ..Default::default() };
    Client::try_from(config).expect("service account client")
}

/// Creates or replaces Role `name` with `rules`.
pub async fn set_role(namespace: &str, name: &str, rules: serde_json::Value) {
    use k8s_openapi::api::rbac::v1::Role;
    use kube::api::{Patch, PatchParams};
    let role = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": name }, "rules": rules
    });
    Api::<Role>::namespaced(client().await, namespace)
        .patch(name, &PatchParams::apply("kube-job-launcher-tests").force(), &Patch::Apply(&role))
        .await
        .expect("apply Role");
}

/// A value from `.local/dev.env` (`export NAME="value"`), which `make dev-up` writes.
pub fn dev_env(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/dev.env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("no local SQS settings: cannot read {} ({e}). Start it with `make dev-up`.", path.display())
    });
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("export {name}=")))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("{name} is not in {}", path.display()))
}

/// Flags that point a launcher at the local SQS server with its static test credentials.
pub fn sqs_flags(queue_url: &str) -> Vec<String> {
    vec![
        "--sqs-queue-url".into(),
        queue_url.into(),
        "--sqs-endpoint".into(),
        dev_env("AWS_ENDPOINT_URL"),
        "--sqs-region".into(),
        dev_env("AWS_REGION"),
        "--sqs-access-key-id".into(),
        "test".into(),
        "--sqs-secret-access-key".into(),
        "test".into(),
    ]
}

/// A queue of the test's own on the local SQS server, redriving to its own dead-letter queue
/// after 3 receives; both deleted when dropped.
pub struct TestQueue {
    pub sqs: aws_sdk_sqs::Client,
    pub url: String,
    pub dlq_url: String,
}

impl TestQueue {
    pub async fn create(prefix: &str) -> Self {
        let sqs = sqs_client().await;
        let name = format!("t-{prefix}-{}", random_suffix());
        let dlq =
            sqs.create_queue().queue_name(format!("{name}-dlq")).send().await.unwrap_or_else(|e| {
                panic!("the local SQS server does not answer ({e:?}). Start it with `make dev-up`.")
            });
        let dlq_url = dlq.queue_url().expect("dlq url").to_string();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("dlq attributes")
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
            .expect("dlq arn");
        let policy = serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": "3" }).to_string();
        let url = sqs
            .create_queue()
            .queue_name(&name)
            .attributes(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy, policy)
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .expect("queue url")
            .to_string();
        Self { sqs, url, dlq_url }
    }

    /// Sends every body, ten per batch; returns the message ids in order.
    pub async fn send_all(&self, bodies: &[String]) -> Vec<String> {
        let mut ids = Vec::new();
        for (c, chunk) in bodies.chunks(10).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(format!("m{c}-{i}"))
                        .message_body(b)
                        .build()
                        .expect("entry")
                })
                .collect();
            let sent = self
                .sqs
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("send");
            assert!(sent.failed().is_empty(), "{:?}", sent.failed());
            let mut ok: Vec<_> = sent.successful().to_vec();
            ok.sort_by_key(|e| e.id().split('-').nth(1).and_then(|n| n.parse::<usize>().ok()));
            ids.extend(ok.iter().map(|e| e.message_id().to_string()));
        }
        ids
    }

    /// Visible plus in-flight messages of `url`.
    pub async fn depth_of(&self, url: &str) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .expect("queue attributes");
        let attrs = out.attributes().cloned().unwrap_or_default();
        [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
            A::ApproximateNumberOfMessagesDelayed,
        ]
        .iter()
        .map(|k| attrs.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
        .sum()
    }

    /// Every message now in the dead-letter queue (received, then made visible again).
    pub async fn dead_letters(&self) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .message_attribute_names("All")
                .send()
                .await
                .expect("receive dlq");
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            all.extend(batch);
        }
        all
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let (sqs, urls) = (self.sqs.clone(), [self.url.clone(), self.dlq_url.clone()]);
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(async {
                    for url in urls {
                        let _ = sqs.delete_queue().queue_url(url).send().await;
                    }
                });
            }
        })
        .join();
    }
}

/// A client for the local SQS server.
pub async fn sqs_client() -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new(dev_env("AWS_REGION")))
        .endpoint_url(dev_env("AWS_ENDPOINT_URL"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests"))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// A template whose pods kwok ends as the parameters say.
pub const FAKE: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  labels:
    version: v1
  annotations:
    job-launcher.dev/parameters: |
      - name: message
        default: hello
      - name: exitCode
        default: "0"
        pattern: '[0-9]{1,3}'
      - name: duration
        default: 300ms
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations:
        fake.job-launcher.dev/exit-code: "$(params.exitCode)"
        fake.job-launcher.dev/duration: "$(params.duration)"
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "echo $(params.message)"]
"#;

/// The launcher binary, run as a process of its own (for signals: SIGTERM, SIGKILL).
pub struct LauncherProcess {
    pub child: std::process::Child,
    pub admin: String,
    pub api: String,
    /// The process's log lines (JSON), as they come.
    pub logs: std::sync::mpsc::Receiver<String>,
}

impl LauncherProcess {
    /// Starts `kube-job-launcher serve` for `namespace` with `args`, and waits until it is ready.
    pub async fn start(namespace: &str, args: &[String]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kube-job-launcher"))
            .args(["serve", "--namespace", namespace, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(args)
            .env("KUBECONFIG", kubeconfig_path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, logs) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (api, admin) = loop {
            let line = logs.recv_timeout(Duration::from_secs(30)).expect("a serving log line within 30s");
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if entry["message"] == "serving" {
                let addr = |k: &str| format!("http://{}", entry[k].as_str().unwrap_or_default());
                break (addr("api"), addr("admin"));
            }
        };
        let process = Self { child, admin, api, logs };
        let readyz = format!("{}/readyz", process.admin);
        let http = reqwest::Client::new();
        wait_until(Duration::from_secs(30), "the launcher process to be ready", || async {
            http.get(&readyz).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        process
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the process.
    pub fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} failed");
    }

    /// Waits for the process to exit, at most `timeout`; returns its exit code (None: a signal).
    pub async fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(std::time::Instant::now() < deadline, "the launcher did not exit within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for LauncherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `hack/component.sh` with `args` (stop NAME | start), failing loudly if it fails.
pub async fn component(args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hack/component.sh");
    let out = tokio::process::Command::new(script).args(args).output().await.expect("hack/component.sh runs");
    assert!(
        out.status.success(),
        "hack/component.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a watch on a namespace's Jobs saw: every admission in order and the most Jobs active or
/// queued at any one moment. Observed event by event, not sampled.
#[derive(Debug, Default, Clone)]
pub struct JobStats {
    /// Jobs in the order they were first seen unsuspended.
    pub started: Vec<String>,
    pub max_active: usize,
    pub max_active_by_template: std::collections::BTreeMap<String, usize>,
    pub max_queued: usize,
    pub finished: usize,
}

/// Watches the Jobs of `namespace` until dropped; `stats()` reads what it saw so far.
pub struct JobObserver {
    stats: std::sync::Arc<std::sync::Mutex<JobStats>>,
    task: tokio::task::JoinHandle<()>,
}

impl JobObserver {
    pub async fn start(namespace: &TestNamespace) -> Self {
        use futures::TryStreamExt;
        use k8s_openapi::api::batch::v1::Job;
        use kube::runtime::watcher;
        let stats = std::sync::Arc::new(std::sync::Mutex::new(JobStats::default()));
        let api: Api<Job> = namespace.api();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let shared = stats.clone();
        let task = tokio::spawn(async move {
            // name -> (template, suspended, finished)
            let mut jobs: std::collections::BTreeMap<String, (String, bool, bool)> = Default::default();
            let mut ready = Some(ready_tx);
            let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Ok(Some(event)) = stream.try_next().await {
                let (job, deleted) = match event {
                    watcher::Event::Apply(j) | watcher::Event::InitApply(j) => (j, false),
                    watcher::Event::Delete(j) => (j, true),
                    watcher::Event::InitDone => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    watcher::Event::Init => continue,
                };
                let name = job.metadata.name.clone().unwrap_or_default();
                if deleted {
                    jobs.remove(&name);
                    continue;
                }
                let template = job
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("job-launcher.dev/template"))
                    .cloned()
                    .unwrap_or_default();
                let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
                let finished = job.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
                    cs.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
                });
                let mut stats = shared.lock().unwrap_or_else(|p| p.into_inner());
                if !suspended && !stats.started.contains(&name) {
                    stats.started.push(name.clone());
                }
                if finished && !jobs.get(&name).is_some_and(|j| j.2) {
                    stats.finished += 1;
                }
                jobs.insert(name, (template, suspended, finished));
                let active: Vec<&(String, bool, bool)> = jobs.values().filter(|(_, s, f)| !s && !f).collect();
                stats.max_active = stats.max_active.max(active.len());
                let mut by_template: std::collections::BTreeMap<String, usize> = Default::default();
                for (t, _, _) in &active {
                    *by_template.entry(t.clone()).or_default() += 1;
                }
                for (t, n) in by_template {
                    let max = stats.max_active_by_template.entry(t).or_default();
                    *max = (*max).max(n);
                }
                let queued = jobs.values().filter(|(_, s, f)| *s && !f).count();
                stats.max_queued = stats.max_queued.max(queued);
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(10), ready_rx).await;
        Self { stats, task }
    }

    pub fn stats(&self) -> JobStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until `n` Jobs have finished.
    pub async fn wait_finished(&self, n: usize, timeout: Duration) -> JobStats {
        wait_until(timeout, &format!("{n} Jobs to finish"), || async { self.stats().finished >= n }).await;
        self.stats()
    }
}

impl Drop for JobObserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP proxy in front of the apiserver whose connections a test can cut: what a network
/// partition does to the launcher's watches.
pub struct CuttableProxy {
    pub port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    pub async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (open2, conns2) = (open.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !open2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let handle = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns2.lock().unwrap_or_else(|p| p.into_inner()).push(handle.abort_handle());
            }
        });
        Self { port, open, connections, task }
    }

    /// Drops every open connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.connections.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            c.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// A client for the apiserver that goes through this proxy.
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("kubeconfig");
        let mut config =
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
        config.cluster_url = format!("https://127.0.0.1:{}", self.port).parse().expect("proxy url");
        Client::try_from(config).expect("client through the proxy")
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// The apiserver's host:port, from the test kubeconfig.
pub async fn apiserver_address() -> String {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    let uri = config.cluster_url;
    format!("{}:{}", uri.host().unwrap_or("127.0.0.1"), uri.port_u16().unwrap_or(443))
}

/// A namespace with the seed, greeting and fake templates, and a ready launcher serving it.
pub async fn setup(prefix: &str) -> (TestNamespace, TestApp) {
    let ns = TestNamespace::create(prefix).await;
    put_config_map(
        &ns.client,
        &ns.name,
        "job-template-cm",
        &[("job-template.yaml", SEED_TEMPLATE), ("greeting.yaml", GREETING_TEMPLATE), ("fake.yaml", FAKE)],
    )
    .await;
    let app = TestApp::start(&ns.name, &[]).await.ready().await;
    (ns, app)
}
