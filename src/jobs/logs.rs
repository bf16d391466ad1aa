//! A Job's pod log, as a byte stream for the HTTP layer.

use bytes::Bytes;
use futures::{AsyncReadExt, Stream};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, api::LogParams};

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

/// The log of `pod`, streamed as the API server sends it; with `follow`, until the container ends
/// or the caller goes away.
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

/// Resolves a moment after `pod` has finished or gone, as the index sees it: the end of a
/// followed log, for nodes that keep the stream open after the container exits.
pub async fn pod_ended(jobs: JobIndex, pod: String) {
    let mut changes = jobs.subscribe();
    loop {
        let ended = jobs.read(|s| s.pod(&pod).is_none_or(|p| p.is_finished()));
        if ended {
            // The last lines can trail the status change.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            return;
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}
