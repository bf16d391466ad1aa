//! A Job's pod log, as a byte stream for the HTTP layer.

use std::{pin::Pin, time::Duration};

use bytes::Bytes;
use futures::{
    AsyncReadExt, FutureExt, Stream, StreamExt,
    future::{Fuse, FusedFuture},
};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, api::LogParams};
use tokio::time::Instant;

use crate::{
    error::{Error, Result},
    jobs::JobIndex,
};

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub container: Option<String>,
    pub tail_lines: Option<i64>,
}

/// The log of `pod`, streamed as the API server sends it; with `follow`, until the node ends it
/// or the caller goes away (see [`follow_pod_log`] for nodes that never end it).
pub async fn pod_log(
    client: Client,
    namespace: &str,
    pod: &str,
    options: &LogOptions,
) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + use<>> {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let params = LogParams {
        follow: options.follow,
        container: options.container.clone(),
        tail_lines: options.tail_lines,
        ..LogParams::default()
    };
    let reader = pods.log_stream(pod, &params).await.map_err(|e| match &e {
        // A wrong container name or a pod without a started container: the caller's to fix.
        kube::Error::Api(status) if status.code == 400 => Error::InvalidRequest(status.message.clone()),
        // Deleted since the index saw it (a cancel, TTL cleanup): not the API server's failure.
        kube::Error::Api(status) if status.code == 404 => Error::PodGone(pod.to_string()),
        _ => Error::from_kube(e),
    })?;
    Ok(futures::stream::unfold(Box::pin(reader), |mut reader| async move {
        let mut buf = vec![0u8; 16 * 1024];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), reader))
            }
            Err(e) => Some((Err(e), reader)),
        }
    }))
}

/// How long the followed log of a pod that has finished may stay silent before the launcher ends
/// it. A kubelet ends the stream itself once the container has exited and its log is read to the
/// end, and then this never applies; kwok's fake nodes keep it open for ever, so a follow would
/// never end. A finished container's last lines can trail its status change (and on the fake
/// nodes a test may write them later still), so the stream is not cut when the pod ends but once
/// it has also been silent this long: long beside the milliseconds a node takes to pass on bytes
/// already written, short enough that a follow of a finished pod ends promptly.
pub const FINISHED_POD_IDLE: Duration = Duration::from_secs(2);

/// A followed log of `pod`, ended when its node ends it, or once the index has seen the pod finish
/// (or go) and the stream has then been silent for [`FINISHED_POD_IDLE`].
pub fn follow_pod_log<S>(stream: S, jobs: JobIndex, pod: String) -> impl Stream<Item = S::Item> + Send + use<S>
where
    S: Stream + Send + 'static,
    S::Item: Send,
{
    end_when_idle_after(stream, pod_ended(jobs, pod), FINISHED_POD_IDLE)
}

/// Resolves once `pod` has finished or gone, as the index sees it (or the index has stopped).
pub async fn pod_ended(jobs: JobIndex, pod: String) {
    let mut changes = jobs.subscribe();
    loop {
        if jobs.read(|s| s.pod(&pod).is_none_or(|p| p.is_finished())) {
            return;
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// `stream`, ended early once `ended` has resolved and then no item has come for `idle`: the
/// quiet time counts from `ended` or from the last item after it, whichever is later. Until
/// `ended` resolves, silence of any length never ends it; a stream that ends by itself ends then.
pub fn end_when_idle_after<S, F>(stream: S, ended: F, idle: Duration) -> impl Stream<Item = S::Item> + Send + use<S, F>
where
    S: Stream + Send + 'static,
    S::Item: Send,
    F: Future<Output = ()> + Send + 'static,
{
    struct State<S, F> {
        stream: Pin<Box<S>>,
        ended: Pin<Box<Fuse<F>>>,
        /// When the stream ends unless an item comes first; set once `ended` has resolved.
        quiet_until: Option<Instant>,
    }
    let state = State { stream: Box::pin(stream), ended: Box::pin(ended.fuse()), quiet_until: None };
    futures::stream::unfold(state, move |mut state| async move {
        loop {
            let quiet_until = state.quiet_until;
            tokio::select! {
                // Items already there go out before the quiet time is looked at.
                biased;
                item = state.stream.next() => {
                    let item = item?;
                    if state.quiet_until.is_some() {
                        state.quiet_until = Some(Instant::now() + idle);
                    }
                    return Some((item, state));
                }
                () = &mut state.ended, if !state.ended.is_terminated() => {
                    state.quiet_until = Some(Instant::now() + idle);
                }
                () = tokio::time::sleep_until(quiet_until.unwrap_or_else(Instant::now)), if quiet_until.is_some() => {
                    return None;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pod_deleted_since_the_index_saw_it_is_gone_not_an_api_server_failure() {
        let (client, _) = crate::fake_apiserver::client(Box::new(|_| {
            (404, crate::fake_apiserver::status(404, "NotFound", "pods \"p\" not found"))
        }));
        let options = LogOptions { follow: false, container: None, tail_lines: None };
        let answer = pod_log(client, "ns", "p", &options).await.map(|_| ());
        assert!(matches!(answer, Err(Error::PodGone(ref pod)) if pod == "p"), "{answer:?}");
    }

    /// Runs `end_when_idle_after` over a stream fed by `sends` (pause, item), with `ended` resolving
    /// after `ended_after`; returns each item with the time it arrived, and the time the stream ended
    /// (all from the start, in milliseconds, on tokio's paused clock).
    async fn run(sends: &[(u64, &'static str)], ended_after: u64, keep_open: bool) -> (Vec<(u64, &'static str)>, u64) {
        let start = Instant::now();
        let (tx, rx) = futures::channel::mpsc::unbounded::<&'static str>();
        let sends = sends.to_vec();
        tokio::spawn(async move {
            for (pause, item) in sends {
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let _ = tx.unbounded_send(item);
            }
            if keep_open {
                // A node that never ends the stream: the sender outlives every test.
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
        let ended = tokio::time::sleep(Duration::from_millis(ended_after));
        let stream = end_when_idle_after(rx, ended, Duration::from_secs(2));
        futures::pin_mut!(stream);
        let mut items = Vec::new();
        while let Some(item) = stream.next().await {
            items.push((start.elapsed().as_millis() as u64, item));
        }
        (items, start.elapsed().as_millis() as u64)
    }

    #[tokio::test(start_paused = true)]
    async fn silence_before_the_pod_ends_never_ends_the_stream() {
        let (items, end) = run(&[(0, "a"), (60_000, "b")], 120_000, true).await;
        assert_eq!(items, vec![(0, "a"), (60_000, "b")]);
        // Ended at 120 s; silent since 60 s, but the quiet time counts from the end.
        assert_eq!(end, 122_000);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_after_the_pod_ended_keep_coming_until_the_stream_is_silent() {
        let (items, end) = run(&[(100, "a"), (1_500, "b"), (1_900, "c")], 1_000, true).await;
        assert_eq!(items, vec![(100, "a"), (1_600, "b"), (3_500, "c")]);
        assert_eq!(end, 5_500);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_the_node_ends_ends_at_once() {
        let (items, end) = run(&[(300, "a")], 60_000, false).await;
        assert_eq!((items, end), (vec![(300, "a")], 300));
    }
}
