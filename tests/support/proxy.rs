//! TCP proxies in front of the apiserver: one a test can cut (a network partition), one a test can
//! stall (a half-open connection: open, answering nothing, until released).

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
        client_through(self.port).await
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// A TCP proxy in front of the apiserver that a test can stall: while stalled, connections stay
/// open and nothing moves in either direction (bytes wait where they are), as on a half-open
/// connection; on release everything that waited flows again.
pub struct StallableProxy {
    pub port: u16,
    stalled: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl StallableProxy {
    pub async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (stalled, gate) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (upstream, gate) = (upstream.clone(), gate.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::join!(pump(in_read, out_write, gate.clone()), pump(out_read, in_write, gate));
                });
            }
        });
        Self { port, stalled, task }
    }

    /// From now on nothing moves on any connection, new ones included.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    pub fn release(&self) {
        self.stalled.send_replace(false);
    }

    /// A client for the apiserver that goes through this proxy.
    pub async fn client(&self) -> Client {
        client_through(self.port).await
    }
}

/// Copies `from` to `to`, waiting while `gate` says stalled, before reading and before writing.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gate: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if gate.wait_for(|stalled| !stalled).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if gate.wait_for(|stalled| !stalled).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for StallableProxy {
    fn drop(&mut self) {
        self.release();
        self.task.abort();
    }
}

/// A client for the apiserver through a proxy on `port` of loopback.
async fn client_through(port: u16) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    config.cluster_url = format!("https://127.0.0.1:{port}").parse().expect("proxy url");
    Client::try_from(config).expect("client through the proxy")
}
