//! The launcher started in-process on port 0 against the local control plane, and the templates
//! the tests launch.

use std::time::Duration;

use kube::Client;

use super::cluster::{TestNamespace, client, put_config_map, wait_until};

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
        Self::start_with(kube_job_launcher::app::Clients::shared(client), namespace, args).await
    }

    /// Starts the launcher with clients of the caller's (say, a Lease client through a proxy).
    pub async fn start_with(clients: kube_job_launcher::app::Clients, namespace: &str, args: &[&str]) -> Self {
        let mut argv = vec!["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
        argv.extend_from_slice(args);
        let serve = kube_job_launcher::config::ServeArgs::try_parse_flags(argv).expect("launcher arguments");
        let app = kube_job_launcher::app::Application::build(serve, clients, namespace.to_string())
            .await
            .expect("the launcher starts");
        let dispatcher = app.dispatcher();
        let base = format!("http://{}", app.api_addr());
        let admin = format!("http://{}", app.admin_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let ended = app
                .run_until_stopped(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = ended {
                panic!("the launcher stopped: {error}");
            }
        });
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

/// The original launcher's template, as shipped in the chart.
pub const SEED_TEMPLATE: &str = include_str!("../../deploy/helm/kube-job-launcher/files/job-template.yaml");
/// The example template with parameters.
pub const GREETING_TEMPLATE: &str = include_str!("../../examples/greeting.yaml");

/// A template whose pods kwok ends as the parameters say (`message` becomes their termination
/// message too).
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
    job-launcher.dev/allowed-env: 'MESSAGE_[A-Z_]+'
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations:
        fake.job-launcher.dev/exit-code: "$(params.exitCode)"
        fake.job-launcher.dev/duration: "$(params.duration)"
        fake.job-launcher.dev/termination-message: "$(params.message)"
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "echo $(params.message)"]
"#;
