//! A TCP proxy in front of the apiserver that a test can cut: a network partition.

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

use super::cluster::kubeconfig_path;

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
