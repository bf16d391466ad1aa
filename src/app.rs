//! The launcher application: built from its configuration (binding its ports, connecting to
//! Kubernetes), then run until a shutdown signal.

use std::{collections::BTreeMap, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use kube::Client;
use tokio::{net::TcpListener, task::JoinSet};

use crate::{
    admission::{Admission, Caps, KubeUnsuspend},
    config::{AuthMode, HttpArgs, KubeArgs, ServeArgs, SqsArgs, SqsMode},
    http::{
        self, AppState, RequestLimits,
        auth::{Authenticator, TokenFile},
        browser_guard::BrowserGuard,
        kube_auth::{KubernetesAuth, Permission},
        server::ConnectionLimits,
        tls::ReloadingCertificate,
    },
    jobs::JobIndex,
    launch::{LaunchSettings, Launcher},
    leader::{LeaderElector, LeaseSettings},
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
    request_limits: RequestLimits,
    connection_limits: ConnectionLimits,
    grace: Duration,
    sqs: Option<SqsWorker>,
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
        let tls = match (&args.http.tls_cert_file, &args.http.tls_key_file) {
            (Some(cert), Some(key)) => Some(ReloadingCertificate::load(cert, key)?),
            _ => None,
        };
        let guard = BrowserGuard::new(auth.is_none(), args.http.allowed_hosts.clone(), tls.is_some());
        let version = client.apiserver_version().await.map_err(StartError::KubeUnreachable)?;
        tracing::info!(server = %version.git_version, %namespace, instance = %args.kube.instance, "connected to Kubernetes");
        let api_listener = bind(args.http.listen).await?;
        let admin_listener = bind(args.http.admin_listen).await?;

        let metrics = Metrics::new();
        let store = TemplateStore::new(&namespace, args.templates.config_maps.clone(), metrics.clone());
        let index = JobIndex::new(&namespace);
        let caps = Caps { max_active: args.admission.max_active, max_queued: args.admission.max_queued };
        let settings = LaunchSettings {
            instance: args.kube.instance.clone(),
            caps,
            default_template: args.templates.default_template.clone(),
            default_ttl_seconds: args.launch.default_ttl_seconds,
            timeout: args.launch.launch_timeout,
        };
        let lease = LeaseSettings {
            name: args.admission.leader_lease.clone(),
            identity: replica_identity(),
            duration: args.admission.leader_lease_duration,
        };
        let (elector, leader) = LeaderElector::new(clients.lease, &namespace, lease);
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
        Ok(Self {
            api_listener,
            admin_listener,
            state: AppState { launcher, metrics },
            client,
            store,
            index,
            auth,
            guard,
            tls,
            request_limits: RequestLimits {
                max_concurrent: args.http.max_concurrent_requests,
                timeout: args.http.request_timeout,
            },
            connection_limits: ConnectionLimits {
                header_read_timeout: args.http.header_read_timeout,
                max_header_bytes: args.http.max_header_bytes,
                ..ConnectionLimits::default()
            },
            grace: args.http.shutdown_grace,
            sqs: sqs_source,
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

    /// Serves until `shutdown` resolves; then stops accepting, lets in-flight requests finish
    /// within the grace period, and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let mut background = JoinSet::new();
        background.spawn(self.store.clone().run(self.client.clone()));
        background.spawn(self.index.clone().run(self.client.clone()));
        if let Some(Authenticator::TokenFile(tokens)) = self.auth.clone() {
            background.spawn(tokens.watch());
        }
        let tls = match &self.tls {
            Some(certificate) => {
                background.spawn(certificate.clone().watch());
                match certificate.server_config() {
                    Ok(config) => Some(tokio_rustls::TlsAcceptor::from(config)),
                    Err(error) => {
                        tracing::error!(%error, "cannot serve TLS");
                        return;
                    }
                }
            }
            None => None,
        };

        let (api_addr, admin_addr) = (self.api_addr(), self.admin_addr());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // Workers that must finish their in-flight work on shutdown, within the grace period.
        let mut workers = JoinSet::new();
        // The elector releases the lease on shutdown, so another replica takes over at once.
        workers.spawn(self.elector.run(stop_rx.clone()));
        workers.spawn(self.admission.run(stop_rx.clone()));
        match self.sqs {
            Some(SqsWorker::Dispatch(dispatcher, concurrency)) => {
                workers.spawn(dispatcher.run(concurrency, stop_rx.clone()));
            }
            Some(SqsWorker::Scale(poller)) => {
                workers.spawn(poller.run(stop_rx.clone()));
            }
            None => {}
        }
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let api_router = http::with_limits(
            http::api_router(self.state.clone(), self.auth.clone(), self.guard.clone()),
            self.request_limits,
            self.state.metrics.clone(),
        );
        let api = http::server::serve(self.api_listener, api_router, self.connection_limits, tls, stopped());
        let admin = http::server::serve(
            self.admin_listener,
            http::admin::router(self.state.clone()),
            self.connection_limits,
            None,
            stopped(),
        );
        tracing::info!(api = %api_addr, admin = %admin_addr, "serving");
        let servers = async move {
            tokio::join!(api, admin, async { while workers.join_next().await.is_some() {} });
        };
        let mut servers = std::pin::pin!(servers);
        tokio::select! {
            () = &mut servers => {}
            () = shutdown => {
                tracing::info!(grace = ?self.grace, "shutting down: no new connections or messages; finishing in-flight work");
                let _ = stop_tx.send(true);
                if tokio::time::timeout(self.grace, &mut servers).await.is_err() {
                    tracing::warn!("in-flight requests did not finish within the grace period");
                }
            }
        }
        background.shutdown().await;
        tracing::info!("stopped");
    }
}
