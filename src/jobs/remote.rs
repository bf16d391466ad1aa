//! What the launcher asks the API server about its Jobs when its index cannot answer alone: a Job
//! another replica has just created (the index has not seen it yet), and cancelling, which must
//! delete exactly the Job the caller saw.

use k8s_openapi::api::batch::v1::Job;
use kube::{
    Api,
    api::{DeleteParams, Preconditions, PropagationPolicy},
};

use super::{JobRecord, index::job_record};
use crate::{
    error::{Error, Result},
    keys,
};

/// Whether `job` is one this launcher instance manages: the launcher's label and its instance's.
pub fn is_managed_by(job: &Job, instance: &str) -> bool {
    let labels = job.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    label(keys::MANAGED_BY) == Some(keys::MANAGED_BY_VALUE) && label(keys::INSTANCE) == Some(instance)
}

/// The record of Job `name` as the API server has it, if this instance manages it.
pub async fn fetch(api: &Api<Job>, name: &str, instance: &str) -> Result<Option<JobRecord>> {
    match api.get_opt(name).await {
        Ok(Some(job)) if is_managed_by(&job, instance) => Ok(job_record(&job)),
        Ok(_) => Ok(None),
        Err(e) => Err(Error::from_kube(e)),
    }
}

/// How a cancel deletes: in the foreground, so the Job goes only after its pods (a cancelled Job
/// keeps its admission slot until then), and only if it is still the Job with `uid` (a stale
/// cancel must not delete a keyed Job re-created under the same name).
pub fn cancel_params(uid: Option<&str>) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: uid.map(|uid| Preconditions { uid: Some(uid.to_string()), resource_version: None }),
        ..DeleteParams::default()
    }
}

/// Deletes the Job `record` describes. A Job re-created under its name since is left alone.
pub async fn cancel(api: &Api<Job>, record: &JobRecord) -> Result<()> {
    let uid = record.uid.as_ref().map(ToString::to_string);
    match api.delete(&record.name, &cancel_params(uid.as_deref())).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Err(Error::JobNotFound(record.name.to_string())),
        Err(kube::Error::Api(status)) if status.code == 409 => Err(Error::Recreated(record.name.to_string())),
        Err(e) => Err(Error::from_kube(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_deletes_in_the_foreground_and_only_the_job_seen() {
        let params = cancel_params(Some("uid-1"));
        assert_eq!(params.propagation_policy, Some(PropagationPolicy::Foreground));
        assert_eq!(params.preconditions.and_then(|p| p.uid).as_deref(), Some("uid-1"));
    }

    fn record(uid: &str) -> JobRecord {
        JobRecord { uid: Some(crate::jobs::state::Id16::parse(uid)), ..JobRecord::named("k-1") }
    }

    #[tokio::test]
    async fn a_cancel_sends_the_uid_it_saw_and_a_conflict_cancels_nothing() {
        let (client, log) =
            crate::fake_apiserver::client(Box::new(|r| match r.body["preconditions"]["uid"].as_str() {
                Some("old") => (
                    409,
                    crate::fake_apiserver::status(
                        409,
                        "Conflict",
                        "Precondition failed: UID in precondition: old, UID in object meta: new",
                    ),
                ),
                _ => (200, serde_json::json!({"kind": "Status", "status": "Success"})),
            }));
        let api: Api<Job> = Api::namespaced(client, "ns");
        let stale = cancel(&api, &record("old")).await.expect_err("a stale cancel");
        assert!(matches!(stale, Error::Recreated(ref n) if n == "k-1"), "{stale:?}");
        cancel(&api, &record("new")).await.expect("the Job seen is the Job there");
        let log = log.lock().expect("log");
        assert_eq!(log[1].method, "DELETE");
        assert_eq!(log[1].path, "/apis/batch/v1/namespaces/ns/jobs/k-1");
        assert_eq!(log[1].body["propagationPolicy"], "Foreground");
    }

    #[tokio::test]
    async fn a_job_already_gone_is_not_found() {
        let (client, _) =
            crate::fake_apiserver::client(Box::new(|_| (404, crate::fake_apiserver::status(404, "NotFound", "gone"))));
        let api: Api<Job> = Api::namespaced(client, "ns");
        assert!(matches!(cancel(&api, &record("u")).await, Err(Error::JobNotFound(_))));
    }

    #[test]
    fn only_the_launchers_own_instances_jobs_are_managed() {
        let job = |labels: serde_json::Value| -> Job {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "j", "labels": labels}})).expect("job")
        };
        let ours = serde_json::json!({keys::MANAGED_BY: keys::MANAGED_BY_VALUE, keys::INSTANCE: "a"});
        assert!(is_managed_by(&job(ours.clone()), "a"));
        assert!(!is_managed_by(&job(ours), "b"), "another instance's");
        assert!(!is_managed_by(&job(serde_json::json!({keys::MANAGED_BY: keys::MANAGED_BY_VALUE})), "a"));
        assert!(!is_managed_by(&job(serde_json::json!({})), "a"), "not the launcher's");
    }
}
