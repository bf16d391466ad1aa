//! Upgrades: Jobs made before instances existed carry no `job-launcher.dev/instance` label, and a
//! launcher sees only its instance's Jobs. With `--adopt-unlabelled-jobs` (for a release alone in
//! its namespace) the launcher labels them, and their pods, at start: queued ones are not
//! stranded, and running ones still count against the cap.

use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde::de::DeserializeOwned;

use crate::keys;

/// The selector of the launcher's objects that carry no instance.
pub fn unlabelled_selector() -> String {
    format!("{}={},!{}", keys::MANAGED_BY, keys::MANAGED_BY_VALUE, keys::INSTANCE)
}

/// Labels every unlabelled Job and pod of the launcher's in `namespace` with `instance`.
/// Returns how many Jobs and pods it labelled.
pub async fn adopt_unlabelled(client: &Client, namespace: &str, instance: &str) -> Result<(usize, usize), kube::Error> {
    let jobs = label_all::<Job>(Api::namespaced(client.clone(), namespace), instance).await?;
    let pods = label_all::<Pod>(Api::namespaced(client.clone(), namespace), instance).await?;
    if jobs + pods > 0 {
        tracing::info!(jobs, pods, %instance, "adopted Jobs made before instances");
    }
    Ok((jobs, pods))
}

async fn label_all<K>(api: Api<K>, instance: &str) -> Result<usize, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({ "metadata": { "labels": { keys::INSTANCE: instance } } });
    let mut labelled = 0;
    for object in api.list(&ListParams::default().labels(&unlabelled_selector())).await? {
        match api.patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => labelled += 1,
            // Gone meanwhile (TTL, cancel): nothing to adopt.
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(labelled)
}
