//! The Jobs and pods as the index's watches decode them: only the fields the records take.
//!
//! A Job as the API server sends it is mostly what the index never reads: its managed fields and
//! its whole pod template. Decoded into `k8s_openapi`'s `Job`, every one of those strings, maps
//! and vectors is allocated and then dropped again when the object is reduced to a record. These
//! types name only what [`job_record`](super::index::job_record) and
//! [`pod_record`](super::index::pod_record) read; serde skips the rest of the JSON without
//! building it. At 100,000 Jobs that is most of the launcher's own share of its start-up.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        batch::v1::{Job, JobStatus},
        core::v1::{Pod, PodStatus},
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time},
};
use serde::Deserialize;

/// Makes a slim type a Kubernetes resource of the same kind as the full one it stands for, so
/// that a watcher lists and watches it at the full type's path.
macro_rules! slim_resource {
    ($slim:ty, $full:ty) => {
        impl k8s_openapi::Resource for $slim {
            const API_VERSION: &'static str = <$full as k8s_openapi::Resource>::API_VERSION;
            const GROUP: &'static str = <$full as k8s_openapi::Resource>::GROUP;
            const KIND: &'static str = <$full as k8s_openapi::Resource>::KIND;
            const VERSION: &'static str = <$full as k8s_openapi::Resource>::VERSION;
            const URL_PATH_SEGMENT: &'static str = <$full as k8s_openapi::Resource>::URL_PATH_SEGMENT;
            type Scope = <$full as k8s_openapi::Resource>::Scope;
        }

        impl k8s_openapi::Metadata for $slim {
            type Ty = ObjectMeta;

            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// The metadata the records read; `managedFields` and the rest are skipped.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SlimMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    finalizers: Option<Vec<String>>,
    owner_references: Option<Vec<OwnerReference>>,
}

impl From<SlimMeta> for ObjectMeta {
    fn from(m: SlimMeta) -> Self {
        ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            creation_timestamp: m.creation_timestamp,
            deletion_timestamp: m.deletion_timestamp,
            labels: m.labels,
            annotations: m.annotations,
            finalizers: m.finalizers,
            owner_references: m.owner_references,
            ..ObjectMeta::default()
        }
    }
}

/// A Job: its metadata, whether it is suspended, its status. The pod template is skipped.
#[derive(Clone, Debug, Default)]
pub struct SlimJob {
    pub metadata: ObjectMeta,
    pub suspend: Option<bool>,
    pub status: Option<JobStatus>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SlimJobSpec {
    suspend: Option<bool>,
}

#[derive(Deserialize)]
struct SlimJobWire {
    #[serde(default)]
    metadata: SlimMeta,
    #[serde(default)]
    spec: Option<SlimJobSpec>,
    #[serde(default)]
    status: Option<JobStatus>,
}

impl<'de> Deserialize<'de> for SlimJob {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = SlimJobWire::deserialize(deserializer)?;
        Ok(Self { metadata: wire.metadata.into(), suspend: wire.spec.and_then(|s| s.suspend), status: wire.status })
    }
}

impl From<&Job> for SlimJob {
    fn from(job: &Job) -> Self {
        Self {
            metadata: job.metadata.clone(),
            suspend: job.spec.as_ref().and_then(|s| s.suspend),
            status: job.status.clone(),
        }
    }
}

slim_resource!(SlimJob, Job);

/// A pod: its metadata, its node, its status. The spec's containers are skipped.
#[derive(Clone, Debug, Default)]
pub struct SlimPod {
    pub metadata: ObjectMeta,
    pub node_name: Option<String>,
    pub status: Option<PodStatus>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SlimPodSpec {
    node_name: Option<String>,
}

#[derive(Deserialize)]
struct SlimPodWire {
    #[serde(default)]
    metadata: SlimMeta,
    #[serde(default)]
    spec: Option<SlimPodSpec>,
    #[serde(default)]
    status: Option<PodStatus>,
}

impl<'de> Deserialize<'de> for SlimPod {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = SlimPodWire::deserialize(deserializer)?;
        Ok(Self { metadata: wire.metadata.into(), node_name: wire.spec.and_then(|s| s.node_name), status: wire.status })
    }
}

impl From<&Pod> for SlimPod {
    fn from(pod: &Pod) -> Self {
        Self {
            metadata: pod.metadata.clone(),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            status: pod.status.clone(),
        }
    }
}

slim_resource!(SlimPod, Pod);

#[cfg(test)]
mod tests {
    use super::*;

    fn job_json() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {
                "name": "t-abc", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"job-launcher.dev/template": "t"},
                "annotations": {"job-launcher.dev/priority": "5"},
                "finalizers": ["job-launcher.dev/notify"],
                "managedFields": [{"manager": "kube-job-launcher", "operation": "Update", "fieldsV1": {"f:spec": {}}}]
            },
            "spec": {"suspend": true, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"active": 1, "ready": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        })
    }

    #[test]
    fn a_slim_job_keeps_everything_the_record_reads() {
        let slim: SlimJob = serde_json::from_value(job_json()).expect("slim");
        let full: Job = serde_json::from_value(job_json()).expect("full");
        assert_eq!(slim.metadata.managed_fields, None, "skipped");
        let mut expected = full.metadata.clone();
        expected.managed_fields = None;
        assert_eq!(slim.metadata, expected);
        assert_eq!(slim.suspend, Some(true));
        assert_eq!(slim.status, full.status);
        let from_full = SlimJob::from(&full);
        assert_eq!((from_full.suspend, from_full.status), (slim.suspend, slim.status));
    }

    #[test]
    fn a_slim_pod_keeps_its_node_and_status() {
        let pod = serde_json::json!({
            "metadata": {"name": "p", "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u"}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"}
        });
        let slim: SlimPod = serde_json::from_value(pod).expect("slim");
        assert_eq!(slim.node_name.as_deref(), Some("n1"));
        assert_eq!(slim.metadata.owner_references.map(|o| o.len()), Some(1));
        assert_eq!(slim.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    }

    #[test]
    fn a_job_without_spec_or_status_still_decodes() {
        let slim: SlimJob = serde_json::from_value(serde_json::json!({"metadata": {"name": "j"}})).expect("slim");
        assert_eq!((slim.metadata.name.as_deref(), slim.suspend, slim.status), (Some("j"), None, None));
    }
}
