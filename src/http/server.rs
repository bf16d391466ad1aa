//! Serving a router over TCP, or TLS, with the limits a public endpoint needs: a deadline for the
//! TLS handshake and the request head (a client sending a byte a second does not hold a
//! connection forever), bounded header sizes, and graceful shutdown of every connection.
//!
//! Each connection speaks HTTP/1.1, or HTTP/2 when TLS negotiated `h2` (ALPN) or a plain-TCP
//! client opens with HTTP/2's preface (prior knowledge). The choice is made before hyper reads a
//! byte, rather than by hyper-util's auto builder: that one reads the first 24 bytes itself and
//! hands them back first, so hyper's HTTP/1 buffer, holding 24 bytes and wanting 8 KiB free,
//! doubled to 16 KiB. Every connection, idle status streams included, kept those 8 KiB
//! (measured: `tests/stream_memory.rs`).

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use futures::future::BoxFuture;
use hyper::{
    body::Incoming,
    server::conn::{http1, http2},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::graceful::{GracefulShutdown, Watcher},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, Interest},
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_rustls::TlsAcceptor;
use tower::{ServiceExt, util::MapRequest};

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time allowed to send a request's head (line and headers).
    pub header_read_timeout: Duration,
    /// Largest request head, in bytes (HTTP/1 buffer; HTTP/2 header list).
    pub max_header_bytes: usize,
    /// An idle HTTP/2 connection is pinged this often, and closed when it does not answer.
    pub keep_alive: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            keep_alive: Duration::from_secs(60),
        }
    }
}

/// HTTP/2's connection preface: what a client with prior knowledge sends first.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

type Service = TowerToHyperService<MapRequest<Router, fn(hyper::Request<Incoming>) -> axum::extract::Request>>;

/// The two protocol builders, configured once from the limits.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    head_deadline: Duration,
}

impl Protocols {
    fn new(limits: ConnectionLimits) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // hyper's smallest buffer is 8 KiB.
            .max_buf_size(limits.max_header_bytes.max(8192));
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(limits.keep_alive)
            .keep_alive_timeout(limits.keep_alive / 3);
        Self { http1, http2, head_deadline: limits.header_read_timeout }
    }
}

/// What an accepted connection is served with.
struct Accepted {
    peer: SocketAddr,
    protocols: Arc<Protocols>,
    service: Service,
    watcher: Watcher,
    /// Turns true when the server stops accepting: a connection still before its protocol is
    /// known (no request begun) is closed then, instead of holding shutdown up until its deadline.
    stopping: watch::Receiver<bool>,
}

impl Accepted {
    /// The connection in the protocol chosen, until it ends or shutdown has drained it. Boxed
    /// each on its own, so that an HTTP/1 connection (every status stream) holds an HTTP/1
    /// connection's state, not room for the larger of the two.
    fn connection<I>(self, io: I, http2: bool) -> BoxFuture<'static, Result<(), hyper::Error>>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self { protocols, service, watcher, .. } = self;
        let io = TokioIo::new(io);
        if http2 {
            Box::pin(watcher.watch(protocols.http2.serve_connection(io, service)))
        } else {
            Box::pin(watcher.watch(protocols.http1.serve_connection(io, service)))
        }
    }

    async fn serve<I>(self, io: I, http2: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        if let Err(error) = self.connection(io, http2).await {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }

    /// Runs what comes before the protocol is known (the preface check, the TLS handshake)
    /// within the head's deadline, and gives up at shutdown.
    async fn before_request<T, E>(&self, step: impl Future<Output = Result<T, E>>) -> Result<T, String>
    where
        E: std::fmt::Display,
    {
        let mut stopping = self.stopping.clone();
        tokio::select! {
            done = tokio::time::timeout(self.protocols.head_deadline, step) => match done {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err("no request within the head's deadline".into()),
            },
            _ = stopping.wait_for(|stopping| *stopping) => Err("shutting down".into()),
        }
    }

    /// A plain-TCP connection: HTTP/2 if it opens with the preface, else HTTP/1.1. (A client
    /// that starts with "P" and stalls has the head's deadline here and again in hyper.)
    async fn serve_plain(self, stream: TcpStream) {
        match self.before_request(opens_with_http2_preface(&stream)).await {
            Ok(http2) => self.serve(stream, http2).await,
            Err(reason) => tracing::debug!(peer = %self.peer, %reason, "connection closed before its request"),
        }
    }

    /// A TLS connection: HTTP/2 if the handshake chose `h2`, else HTTP/1.1. A task of its own
    /// type, so that the handshake's and the TLS stream's state are not in every plain
    /// connection's task.
    async fn serve_tls(self, stream: TcpStream, acceptor: TlsAcceptor) {
        match self.before_request(acceptor.accept(stream)).await {
            Ok(stream) => {
                let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                self.serve(stream, http2).await;
            }
            Err(reason) => tracing::debug!(peer = %self.peer, %reason, "TLS handshake did not complete"),
        }
    }
}

/// Whether a plain-TCP client opens with HTTP/2's preface, looked at with `peek` so that hyper
/// reads the request whole. The first bytes decide at once for HTTP/1 (no method starts the
/// preface's way past "P") and for a preface sent in one piece, as clients send it. Only a client
/// that sent part of the preface is waited for, until more bytes come or it closes (the caller
/// bounds the wait).
async fn opens_with_http2_preface(stream: &TcpStream) -> io::Result<bool> {
    let mut first = [0u8; HTTP2_PREFACE.len()];
    let mut seen = 0;
    loop {
        // Returns at once while bytes are waiting: peeking does not take them.
        let n = stream.peek(&mut first).await?;
        if n == 0 || first[..n] != HTTP2_PREFACE[..n] {
            return Ok(false);
        }
        if n == HTTP2_PREFACE.len() {
            return Ok(true);
        }
        if n > seen {
            // Part of the preface. The readiness these bytes raised would end the wait below at
            // once: forget it, then peek again for bytes that came in the meantime.
            seen = n;
            let _ = stream.try_io(Interest::READABLE, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
            continue;
        }
        if stream.ready(Interest::READABLE).await?.is_read_closed() {
            return Ok(false);
        }
    }
}

/// Accepts connections until `shutdown` resolves, then stops accepting and waits for the open
/// connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let protocols = Arc::new(Protocols::new(limits));
    let (stop_accepting, stopping) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let to_axum: fn(hyper::Request<Incoming>) -> axum::extract::Request = |r| r.map(axum::body::Body::new);
        let service = TowerToHyperService::new(router.clone().map_request(to_axum));
        let accepted = Accepted {
            peer,
            protocols: protocols.clone(),
            service,
            watcher: graceful.watcher(),
            stopping: stopping.clone(),
        };
        // The protocol check and the TLS handshake run in the connection's own task, within the
        // head's deadline, so a client that stalls them holds neither the accept loop nor the
        // connection.
        match &tls {
            None => tokio::spawn(accepted.serve_plain(stream)),
            Some(acceptor) => tokio::spawn(accepted.serve_tls(stream, acceptor.clone())),
        };
    }
    drop(listener);
    stop_accepting.send_replace(true);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    #[tokio::test]
    async fn an_http1_request_is_not_taken_for_the_preface_and_stays_unread() {
        let (mut client, server) = pair().await;
        client.write_all(b"PUT /v1/jobs HTTP/1.1\r\n\r\n").await.expect("write");
        assert!(!opens_with_http2_preface(&server).await.expect("peek"));
        let mut all = [0u8; 64];
        let n = server.peek(&mut all).await.expect("peek");
        assert_eq!(&all[..n], b"PUT /v1/jobs HTTP/1.1\r\n\r\n", "the request is left for hyper to read");
    }

    #[tokio::test]
    async fn part_of_the_preface_decides_nothing_and_the_rest_decides_http2() {
        let (mut client, server) = pair().await;
        client.write_all(&HTTP2_PREFACE[..3]).await.expect("write");
        let mut seen = [0u8; 3];
        assert_eq!(server.peek(&mut seen).await.expect("peek"), 3, "the three bytes have arrived");
        // The check is bounded by the caller's deadline: here it must run out, undecided.
        let undecided = tokio::time::timeout(Duration::from_millis(100), opens_with_http2_preface(&server)).await;
        assert!(undecided.is_err(), "three bytes of the preface decided {undecided:?}");
        client.write_all(&HTTP2_PREFACE[3..]).await.expect("write");
        assert!(opens_with_http2_preface(&server).await.expect("peek"));
    }

    #[tokio::test]
    async fn part_of_the_preface_and_then_a_close_is_left_to_http1_at_once() {
        let (mut client, server) = pair().await;
        client.write_all(&HTTP2_PREFACE[..3]).await.expect("write");
        client.shutdown().await.expect("close the sending side");
        let decided = tokio::time::timeout(Duration::from_secs(5), opens_with_http2_preface(&server)).await;
        assert!(!decided.expect("decided without waiting for more").expect("peek"));
    }

    #[tokio::test]
    async fn a_client_that_closes_at_once_is_left_to_http1() {
        let (client, server) = pair().await;
        drop(client);
        assert!(!opens_with_http2_preface(&server).await.expect("peek"));
    }
}
