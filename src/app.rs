//! The launcher application: built from its configuration (binding its ports, connecting to
//! Kubernetes), then run until a shutdown signal.

use std::{collections::BTreeMap, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use kube::Client;
use tokio::{net::TcpListener, task::JoinSet};

use crate::{
    admission::{Admission, Caps, KubeUnsuspend},
    config::{AuthMode, HttpArgs, KubeArgs, NotifyArgs, ServeArgs, SqsArgs, SqsMode},
    health::Health,
    http::{
        self, AppState, RequestLimits, RouterOptions,
        auth::{Authenticator, TokenFile},
        browser_guard::BrowserGuard,
        kube_auth::{KubernetesAuth, Permission},
        server::ConnectionLimits,
        state::StreamSlots,
        tls::ReloadingCertificate,
    },
    jobs::JobIndex,
    launch::{LaunchSettings, Launcher, NoticePolicy},
    leader::{LeaderElector, LeaseSettings},
    notify::{Notifier, webhook::Webhook},
    sqs::{
        self,
        dead_letter::DeadLetter,
        dispatch::{DispatchSettings, Dispatcher, SqsQueue},
        scale::{ScalePoller, ScaleSettings},
    },
    telemetry::Metrics,
    template::TemplateStore,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot configure a Kubernetes client (kubeconfig or in-cluster): {0}")]
    KubeConfig(#[source] kube::Error),
    #[error("cannot reach the Kubernetes API server: {0}")]
    KubeUnreachable(#[source] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    TokenFile(#[from] http::auth::TokenFileError),
    #[error("--auth token-file needs --auth-token-file")]
    NoTokenFile,
    #[error("SQS: {0}")]
    Sqs(String),
    #[error(
        "refusing to serve the API on {0} without auth: give --auth-token-file, listen on a loopback address, or pass --insecure-no-auth"
    )]
    NoAuth(SocketAddr),
    #[error(transparent)]
    Tls(#[from] http::tls::TlsError),
    #[error("cannot adopt the Jobs made before instances: {0}")]
    Adopt(#[source] kube::Error),
    #[error("{flag}: not a valid regular expression: {reason}")]
    Pattern { flag: &'static str, reason: String },
    #[error("cannot read --notify-secret-file {path}: {source}")]
    NotifySecret { path: String, source: std::io::Error },
    #[error("cannot set up the webhook client: {0}")]
    Webhook(#[source] reqwest::Error),
}

/// The clients the launcher talks to Kubernetes with: one for everything, and one for the Lease
/// alone, with connections of its own, so that leader election never waits behind watches,
/// lists or a stalled connection of the other.
#[derive(Clone)]
pub struct Clients {
    pub api: Client,
    pub lease: Client,
}

impl Clients {
    /// One client for both (tests that do not look at the Lease's traffic).
    pub fn shared(client: Client) -> Self {
        Self { api: client.clone(), lease: client }
    }
}

/// Kubernetes clients (in-cluster config, else KUBECONFIG) and the namespace to work in: the
/// flag's, else the in-cluster or kubeconfig default.
pub async fn kube_clients(args: &KubeArgs) -> Result<(Clients, String), StartError> {
    let config = kube::Config::infer().await.map_err(|e| StartError::KubeConfig(kube::Error::InferConfig(e)))?;
    let namespace = args.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let lease = Client::try_from(config.clone()).map_err(StartError::KubeConfig)?;
    let api = Client::try_from(config).map_err(StartError::KubeConfig)?;
    Ok((Clients { api, lease }, namespace))
}

pub struct Application {
    api_listener: TcpListener,
    admin_listener: TcpListener,
    state: AppState,
    client: Client,
    store: TemplateStore,
    index: JobIndex,
    auth: Option<Authenticator>,
    guard: BrowserGuard,
    tls: Option<Arc<ReloadingCertificate>>,
    router_options: RouterOptions,
    request_limits: RequestLimits,
    connection_limits: ConnectionLimits,
    grace: Duration,
    shutdown_delay: Duration,
    instance: String,
    /// Set when the launcher stops: workers, listeners and streams end.
    stop: tokio::sync::watch::Sender<bool>,
    sqs: Option<SqsWorker>,
    notifier: Notifier<aws_sdk_sqs::Client>,
    elector: LeaderElector,
    admission: Admission,
}

/// The SQS source configured for this process.
enum SqsWorker {
    Dispatch(Arc<Dispatcher>, usize),
    Scale(Box<ScalePoller>),
}

async fn sqs_worker(args: &SqsArgs, launcher: &Launcher, metrics: &Metrics) -> Result<Option<SqsWorker>, StartError> {
    let Some(queue_url) = args.sqs_queue_url.clone() else { return Ok(None) };
    let client = sqs::client(args).await;
    match args.sqs_mode {
        SqsMode::Dispatch => {
            let dead_letter = DeadLetter::resolve(
                &client,
                &queue_url,
                args.sqs_dead_letter_queue_url.as_deref(),
                args.sqs_max_receives,
            )
            .await
            .map_err(StartError::Sqs)?;
            if dead_letter == DeadLetter::None {
                tracing::warn!(queue = %queue_url, "the queue has no redrive policy and no --sqs-dead-letter-queue-url: messages that cannot launch are kept and retried every 15 minutes");
            }
            let settings = DispatchSettings {
                queue_url,
                template: args.sqs_template.clone(),
                visibility: args.sqs_visibility_timeout,
                wait: args.sqs_wait_time,
            };
            let queue = SqsQueue::new(client, &settings, dead_letter);
            let dispatcher = Dispatcher::new(queue, launcher.clone(), settings, metrics.clone());
            Ok(Some(SqsWorker::Dispatch(Arc::new(dispatcher), args.sqs_concurrency)))
        }
        SqsMode::Scale => {
            let mut job_env = BTreeMap::from([("SQS_QUEUE_URL".to_string(), queue_url.clone())]);
            if let Some(region) = client.config().region() {
                job_env.insert("AWS_REGION".into(), region.to_string());
            }
            if let Some(endpoint) = args.sqs_endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()) {
                job_env.insert("AWS_ENDPOINT_URL".into(), endpoint);
            }
            let settings = ScaleSettings {
                queue_url,
                template: args.sqs_template.clone(),
                interval: args.sqs_poll_interval,
                max_per_poll: args.sqs_max_jobs_per_poll,
                start_grace: args.sqs_start_grace,
                job_env,
            };
            Ok(Some(SqsWorker::Scale(Box::new(ScalePoller::new(client, launcher.clone(), settings, metrics.clone())))))
        }
    }
}

/// The caller auth the flags ask for.
fn authenticator(args: &HttpArgs, client: &Client, namespace: &str) -> Result<Option<Authenticator>, StartError> {
    Ok(match (args.auth, &args.auth_token_file) {
        (Some(AuthMode::Kubernetes), _) => Some(Authenticator::Kubernetes(KubernetesAuth::new(
            client.clone(),
            Permission {
                verb_override: args.auth_verb.clone(),
                group: args.auth_group.clone(),
                resource: args.auth_resource.clone(),
                namespace: namespace.to_string(),
                audiences: args.auth_audience.clone().into_iter().collect(),
            },
            args.auth_cache_ttl,
        ))),
        (_, Some(path)) => Some(Authenticator::TokenFile(TokenFile::load(path)?)),
        (Some(AuthMode::TokenFile), None) => return Err(StartError::NoTokenFile),
        (None, None) => None,
    })
}

/// Refuses an API without auth on a public address, and says what is exposed.
fn check_exposure(args: &HttpArgs, auth: Option<&Authenticator>) -> Result<(), StartError> {
    let public = !args.listen.ip().is_loopback();
    match auth {
        None if public && !args.insecure_no_auth => return Err(StartError::NoAuth(args.listen)),
        None => tracing::warn!(listen = %args.listen, "the API has no auth"),
        Some(Authenticator::Kubernetes(_)) if public && args.tls_cert_file.is_none() => tracing::warn!(
            listen = %args.listen,
            "Kubernetes auth without TLS on a public address: callers' tokens cross the network in the clear (give --tls-cert-file and --tls-key-file)"
        ),
        Some(_) => {}
    }
    Ok(())
}

/// The sender of completion notices: always built, so that a Job that asked for one under an
/// earlier configuration still gets its finalizer removed.
async fn notifier(
    args: &ServeArgs,
    client: Client,
    index: &JobIndex,
    launcher: &Launcher,
    metrics: &Metrics,
) -> Result<Notifier<aws_sdk_sqs::Client>, StartError> {
    let secret = match &args.notify.notify_secret_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| StartError::NotifySecret { path: path.display().to_string(), source })?;
            Some(
                text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).as_bytes().to_vec(),
            )
        }
        None => None,
    };
    let webhook = Webhook::new(secret).map_err(StartError::Webhook)?;
    let n = &args.notify;
    let queues = if n.notify_sqs_allow.is_some() || n.notify_sqs_queue_url.is_some() || args.sqs.sqs_queue_url.is_some()
    {
        Some(sqs::client(&args.sqs).await)
    } else {
        None
    };
    Ok(Notifier::new(
        client,
        index.clone(),
        launcher.leadership().clone(),
        webhook,
        queues,
        n.notify_retry_for,
        metrics.clone(),
    ))
}

/// The allow-lists of completion notices, compiled.
fn notice_policy(args: &NotifyArgs) -> Result<NoticePolicy, StartError> {
    let compile = |flag: &'static str, pattern: &Option<String>| {
        pattern
            .as_deref()
            .map(crate::launch::notice_policy::anchored)
            .transpose()
            .map_err(|e| StartError::Pattern { flag, reason: e.to_string() })
    };
    Ok(NoticePolicy {
        url_allow: compile("--notify-url-allow", &args.notify_url_allow)?,
        sqs_allow: compile("--notify-sqs-allow", &args.notify_sqs_allow)?,
        every_job_sqs: args.notify_sqs_queue_url.clone(),
    })
}

/// What every launch needs to know, from the flags.
fn launch_settings(args: &ServeArgs, caps: Caps) -> Result<LaunchSettings, StartError> {
    Ok(LaunchSettings {
        notices: notice_policy(&args.notify)?,
        instance: args.kube.instance.clone(),
        caps,
        default_template: args.templates.default_template.clone(),
        default_ttl_seconds: args.launch.default_ttl_seconds,
        timeout: args.launch.launch_timeout,
    })
}

/// The Lease this replica competes for, under a name of its own.
fn lease_settings(args: &ServeArgs) -> LeaseSettings {
    LeaseSettings {
        name: args.admission.leader_lease.clone(),
        identity: replica_identity(),
        duration: args.admission.leader_lease_duration,
    }
}

/// The API port's certificate, when it serves TLS.
fn tls_certificate(args: &HttpArgs) -> Result<Option<Arc<ReloadingCertificate>>, StartError> {
    Ok(match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => Some(ReloadingCertificate::load(cert, key)?),
        _ => None,
    })
}

fn connection_limits(args: &HttpArgs) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: args.header_read_timeout,
        max_header_bytes: args.max_header_bytes,
        ..ConnectionLimits::default()
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
}

/// A name for this replica in the Lease: the pod's name and a random suffix.
fn replica_identity() -> String {
    format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "kube-job-launcher".into()),
        crate::launch::naming::random_suffix()
    )
}

impl Application {
    /// Binds both ports and checks that Kubernetes answers. Nothing runs until
    /// [`run_until_stopped`](Self::run_until_stopped).
    pub async fn build(args: ServeArgs, clients: Clients, namespace: String) -> Result<Self, StartError> {
        let client = clients.api;
        let auth = authenticator(&args.http, &client, &namespace)?;
        check_exposure(&args.http, auth.as_ref())?;
        let tls = tls_certificate(&args.http)?;
        let guard = BrowserGuard::new(auth.is_none(), args.http.allowed_hosts.clone(), tls.is_some());
        let version = client.apiserver_version().await.map_err(StartError::KubeUnreachable)?;
        tracing::info!(server = %version.git_version, %namespace, instance = %args.kube.instance, "connected to Kubernetes");
        if args.kube.adopt_unlabelled_jobs {
            crate::jobs::adopt::adopt_unlabelled(&client, &namespace, &args.kube.instance)
                .await
                .map_err(StartError::Adopt)?;
        }
        let api_listener = bind(args.http.listen).await?;
        let admin_listener = bind(args.http.admin_listen).await?;

        let metrics = Metrics::new();
        let store = TemplateStore::new(&namespace, args.templates.config_maps.clone(), metrics.clone());
        let index = JobIndex::new(&namespace);
        let caps = Caps { max_active: args.admission.max_active, max_queued: args.admission.max_queued };
        let settings = launch_settings(&args, caps)?;
        let (elector, leader) = LeaderElector::new(clients.lease, &namespace, lease_settings(&args));
        let launcher = Launcher::new(
            client.clone(),
            &namespace,
            store.clone(),
            index.clone(),
            settings,
            metrics.clone(),
            leader.clone(),
        );
        let admission = Admission::new(
            KubeUnsuspend::new(client.clone(), &namespace),
            index.clone(),
            store.clone(),
            caps,
            leader,
            metrics.clone(),
            args.admission.admission_resync,
            args.kube.watch_failure_bound,
        );
        let sqs_source = sqs_worker(&args.sqs, &launcher, &metrics).await?;
        let notifier = notifier(&args, client.clone(), &index, &launcher, &metrics).await?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        Ok(Self {
            api_listener,
            admin_listener,
            state: AppState {
                launcher,
                stream_slots: StreamSlots::new(args.http.max_streams, metrics.stream_delay.clone()),
                metrics,
                health: Health::new(args.kube.watch_failure_bound),
                stop: stop_rx,
            },
            stop: stop_tx,
            client,
            store,
            index,
            auth,
            guard,
            router_options: RouterOptions { ui: args.http.ui, tls: tls.is_some() },
            tls,
            request_limits: RequestLimits {
                max_concurrent: args.http.max_concurrent_requests,
                timeout: args.http.request_timeout,
            },
            connection_limits: connection_limits(&args.http),
            grace: args.http.shutdown_grace,
            shutdown_delay: args.http.shutdown_delay,
            instance: args.kube.instance.clone(),
            sqs: sqs_source,
            notifier,
            elector,
            admission,
        })
    }

    /// The SQS dispatch consumer, when this process runs one.
    pub fn dispatcher(&self) -> Option<Arc<Dispatcher>> {
        match &self.sqs {
            Some(SqsWorker::Dispatch(d, _)) => Some(d.clone()),
            _ => None,
        }
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` resolves, or until a task the launcher cannot run without ends
    /// (a watch, admission, the Lease, an SQS consumer, a listener): then `/healthz` fails and the
    /// result is an error, for the process to exit non-zero. On shutdown, `/readyz` turns false
    /// first; after `--shutdown-delay` the listeners close, and in-flight work has
    /// `--shutdown-grace` to finish.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), TaskEnded> {
        let health = self.state.health.clone();
        let tls = match &self.tls {
            Some(certificate) => match certificate.server_config() {
                Ok(config) => Some(tokio_rustls::TlsAcceptor::from(config)),
                Err(error) => return Err(TaskEnded(format!("cannot serve TLS: {error}"))),
            },
            None => None,
        };
        let (api_addr, admin_addr) = (self.api_addr(), self.admin_addr());
        let (stop_tx, stop_rx) = (self.stop, self.state.stop.clone());
        let stopped = || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let mut tasks = Supervised::default();
        // Watches and reloaders: they run until the process stops.
        tasks.spawn("template watch", self.store.clone().run(self.client.clone(), health.clone()));
        tasks.spawn(
            "Job and pod watches",
            self.index.clone().run(self.client.clone(), self.instance.clone(), health.clone()),
        );
        if let Some(Authenticator::TokenFile(tokens)) = self.auth.clone() {
            tasks.spawn("token file reloader", tokens.watch());
        }
        if let Some(certificate) = &self.tls {
            tasks.spawn("TLS certificate reloader", certificate.clone().watch());
        }
        // Workers that finish their in-flight work on shutdown, within the grace period. The
        // elector releases the lease then, so another replica takes over at once.
        tasks.spawn_worker("leader election", self.elector.run(stop_rx.clone()));
        tasks.spawn_worker("admission", self.admission.run(stop_rx.clone()));
        tasks.spawn_worker("queue events", http::streams::publish_queue_changes(self.state.clone(), stop_rx.clone()));
        tasks.spawn_worker("completion notices", self.notifier.run(stop_rx.clone()));
        match self.sqs {
            Some(SqsWorker::Dispatch(dispatcher, concurrency)) => {
                tasks.spawn_worker("SQS dispatch", dispatcher.run(concurrency, stop_rx.clone()));
            }
            Some(SqsWorker::Scale(poller)) => tasks.spawn_worker("SQS scale poller", poller.run(stop_rx.clone())),
            None => {}
        }
        let api_router = http::with_limits(
            http::api_router(self.state.clone(), self.auth.clone(), self.guard.clone(), self.router_options),
            self.request_limits,
            self.state.metrics.clone(),
        );
        let limits = self.connection_limits;
        tasks.spawn_worker("API listener", http::server::serve(self.api_listener, api_router, limits, tls, stopped()));
        let admin_router = http::admin::router(self.state.clone());
        tasks.spawn_worker(
            "admin listener",
            http::server::serve(self.admin_listener, admin_router, limits, None, stopped()),
        );
        let worker_threads = tokio::runtime::Handle::current().metrics().num_workers();
        tracing::info!(api = %api_addr, admin = %admin_addr, worker_threads, "serving");

        let mut shutdown = std::pin::pin!(shutdown);
        let outcome = tokio::select! {
            ended = tasks.next_unexpected_end() => Err(ended),
            () = &mut shutdown => Ok(()),
        };
        match &outcome {
            Ok(()) => {
                health.start_draining();
                tracing::info!(delay = ?self.shutdown_delay, grace = ?self.grace, "shutting down: readiness off; listeners close after the delay, then in-flight work has the grace period");
                tokio::time::sleep(self.shutdown_delay).await;
            }
            Err(TaskEnded(reason)) => {
                tracing::error!(%reason, "a task the launcher needs ended; stopping");
                health.break_with(reason.clone());
                health.start_draining();
            }
        }
        let _ = stop_tx.send(true);
        if tokio::time::timeout(self.grace, tasks.workers_done()).await.is_err() {
            tracing::warn!("in-flight work did not finish within the grace period");
        }
        tasks.abort_all().await;
        tracing::info!("stopped");
        outcome
    }
}

/// A task the launcher needs ended (or panicked) while it was not stopping.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TaskEnded(pub String);

/// The launcher's tasks, by name: watches that run until the process stops, and workers that
/// finish on the stop signal. Any that ends before the stop is an error.
#[derive(Default)]
struct Supervised {
    watches: JoinSet<&'static str>,
    workers: JoinSet<&'static str>,
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
}

impl Supervised {
    fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let handle = self.watches.spawn(named(name, task));
        self.names.insert(handle.id(), name);
    }

    fn spawn_worker(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let handle = self.workers.spawn(named(name, task));
        self.names.insert(handle.id(), name);
    }

    /// Resolves when a task ends, which before the stop is never expected: says which and how.
    async fn next_unexpected_end(&mut self) -> TaskEnded {
        let ended = tokio::select! {
            Some(ended) = self.watches.join_next() => ended,
            Some(ended) = self.workers.join_next() => ended,
            else => return std::future::pending().await,
        };
        match ended {
            Ok(name) => TaskEnded(format!("{name} ended unexpectedly")),
            Err(error) => {
                let name = self.names.get(&error.id()).copied().unwrap_or("a task");
                let how = if error.is_panic() { "panicked" } else { "was cancelled" };
                TaskEnded(format!("{name} {how}"))
            }
        }
    }

    /// Resolves once every worker has finished (after the stop signal).
    async fn workers_done(&mut self) {
        while self.workers.join_next().await.is_some() {}
    }

    async fn abort_all(&mut self) {
        self.workers.shutdown().await;
        self.watches.shutdown().await;
    }
}

async fn named(name: &'static str, task: impl Future<Output = ()>) -> &'static str {
    task.await;
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_ends_or_panics_before_the_stop_is_named() {
        let mut tasks = Supervised::default();
        tasks.spawn("a watch", std::future::pending());
        tasks.spawn_worker("admission", async {});
        assert_eq!(tasks.next_unexpected_end().await.0, "admission ended unexpectedly");

        let mut tasks = Supervised::default();
        tasks.spawn("Job and pod watches", async { panic!("bug") });
        assert_eq!(tasks.next_unexpected_end().await.0, "Job and pod watches panicked");
    }

    #[tokio::test]
    async fn workers_are_awaited_on_the_stop_and_watches_aborted() {
        let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
        let mut tasks = Supervised::default();
        tasks.spawn("watch", std::future::pending());
        tasks.spawn_worker("worker", async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        stop_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), tasks.workers_done()).await.expect("the worker finishes");
        tasks.abort_all().await;
        assert!(tasks.watches.is_empty());
    }
}
