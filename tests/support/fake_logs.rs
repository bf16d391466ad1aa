//! Fake nodes' logs per pod: a log file of a pod's own, which a test writes and appends to while
//! the pod runs and after it has finished.
//!
//! kwok serves a pod the file named by a `Logs` object (kwok.x-k8s.io/v1alpha1, the CRD
//! hack/dev-up.sh applies) whose name is the pod's; every other pod gets the `ClusterLogs` default.
//! kwok re-reads the file for each request and a followed log delivers appended lines within
//! milliseconds, also after the pod has finished (and never ends by itself). The file must exist
//! before the `Logs` object does (kwok answers 400 otherwise), and a follow opened before kwok saw
//! the object stays on the default log: create it while the pod is still Pending (give the pod a
//! `fake.job-launcher.dev/start-delay`), and [`FakeLog::wait_served`] before following.

use std::{io::Write, path::PathBuf, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, LogParams, PostParams},
};

use super::cluster::wait_until;

/// Waits for the pod of Job `job` to exist and returns its name (the newest, if there are more).
pub async fn pod_of_job(client: &Client, namespace: &str, job: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("job-name={job}");
    let mut name = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while name.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "timed out after 30s waiting for a pod of Job {job}");
        let list = pods.list(&ListParams::default().labels(&selector)).await.expect("list pods");
        name = list
            .items
            .iter()
            .max_by_key(|p| p.metadata.creation_timestamp.clone())
            .and_then(|p| p.metadata.name.clone());
        if name.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    name.unwrap_or_default()
}

/// A pod's own log on a fake node: a file of CRI log lines under the worktree's `.local`, and the
/// `Logs` object that points kwok at it. The file is removed when this is dropped; the object
/// goes with the test's namespace.
pub struct FakeLog {
    client: Client,
    namespace: String,
    pub pod: String,
    path: PathBuf,
    /// What the log says so far, as a reader sees it.
    text: std::sync::Mutex<String>,
}

impl FakeLog {
    /// Gives `pod` (of every container) a log of its own that starts with `text`.
    pub async fn create(client: &Client, namespace: &str, pod: &str, text: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/fake-logs").join(namespace);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join(format!("{pod}.log"));
        // The file first: kwok refuses a Logs object whose file is missing.
        std::fs::write(&path, cri_lines(text)).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "Logs"), "logs");
        let logs: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Logs",
            "metadata": { "name": pod },
            "spec": { "logs": [{ "logsFile": path.to_string_lossy() }] }
        }))
        .expect("Logs object");
        Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
            .create(&PostParams::default(), &logs)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot create kwok's Logs object for pod {pod} ({e}); is the Logs CRD there? Run `make dev-up`."
                )
            });
        Self {
            client: client.clone(),
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            path,
            text: std::sync::Mutex::new(text.to_string()),
        }
    }

    /// Appends `text` to the log: each complete line as a full CRI line, a trailing piece without
    /// a newline as a partial one (so a reader gets exactly `text`'s bytes).
    pub fn append(&self, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.path.display()));
        file.write_all(cri_lines(text).as_bytes()).unwrap_or_else(|e| panic!("append to {}: {e}", self.path.display()));
        self.text.lock().unwrap_or_else(|p| p.into_inner()).push_str(text);
    }

    /// Waits until the pod's container has started and kwok serves it this file (a plain read of
    /// its log through the apiserver gives what was written so far): from then on a follow reads
    /// this file, not the default log.
    pub async fn wait_served(&self) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let expected = self.text.lock().unwrap_or_else(|p| p.into_inner()).clone();
        wait_until(Duration::from_secs(30), &format!("kwok to serve pod {}'s own log", self.pod), || async {
            pods.logs(&self.pod, &LogParams::default()).await.is_ok_and(|log| log == expected)
        })
        .await;
    }
}

impl Drop for FakeLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        // The namespace's directory too, once it is empty (another log of the test may remain).
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// `text` as CRI log lines on stdout, stamped now: `F` for a line that ends with a newline, `P`
/// for a trailing piece that does not.
pub fn cri_lines(text: &str) -> String {
    let now = jiff::Timestamp::now();
    text.split_inclusive('\n')
        .map(|line| match line.strip_suffix('\n') {
            Some(full) => format!("{now:.9} stdout F {full}\n"),
            None => format!("{now:.9} stdout P {line}\n"),
        })
        .collect()
}
