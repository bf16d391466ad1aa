//! The launcher application: built from its configuration, then run until stopped.

use kube::Client;

use crate::config::ServeArgs;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot configure a Kubernetes client (kubeconfig or in-cluster): {0}")]
    KubeConfig(#[source] kube::Error),
    #[error("cannot reach the Kubernetes API server: {0}")]
    KubeUnreachable(#[source] kube::Error),
}

pub struct Application {
    client: Client,
    namespace: String,
}

impl Application {
    /// Connects to Kubernetes; fails when the API server cannot be reached.
    pub async fn build(args: ServeArgs) -> Result<Self, StartError> {
        let config = kube::Config::infer()
            .await
            .map_err(|e| StartError::KubeConfig(kube::Error::InferConfig(e)))?;
        let namespace = args.kube.namespace.unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(StartError::KubeConfig)?;
        let version = client.apiserver_version().await.map_err(StartError::KubeUnreachable)?;
        tracing::info!(
            server = %version.git_version,
            %namespace,
            "connected to Kubernetes"
        );
        Ok(Self { client, namespace })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs until `shutdown` resolves.
    pub async fn run_until_stopped(self, shutdown: impl std::future::Future<Output = ()>) {
        shutdown.await;
        tracing::info!("stopped");
    }
}
