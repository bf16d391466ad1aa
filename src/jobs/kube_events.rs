//! The Kubernetes Events of a Job and its pods, read from the API server when asked (the index
//! keeps no Events and no annotations): what the Job controller, the scheduler and the kubelet
//! said about them, for the dashboard's Job page and for anyone finding out why a Job is stuck.

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Event, Pod},
};
use kube::{Api, Client, api::ListParams};

use super::remote::is_managed_by;
use crate::{
    api::{JobKubeEvents, KubeEventView},
    error::{Error, Result},
};

/// The pods whose Events are read: the newest this many (a Job retrying without end has more).
pub const MAX_PODS: usize = 10;

/// The field selector of one object's Events: by kind, name and (when known) UID, so that an
/// earlier object of the same name does not lend its Events.
pub fn involved(kind: &str, name: &str, uid: Option<&str>) -> String {
    let mut selector = format!("involvedObject.kind={kind},involvedObject.name={name}");
    if let Some(uid) = uid {
        selector.push_str(&format!(",involvedObject.uid={uid}"));
    }
    selector
}

/// One Event as the API shows it.
pub fn event_view(event: &Event) -> KubeEventView {
    let first = event.first_timestamp.as_ref().map(|t| t.0).or_else(|| event.event_time.as_ref().map(|t| t.0));
    let last = event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.series.as_ref().and_then(|s| s.last_observed_time.as_ref()).map(|t| t.0))
        .or(first)
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let source = event
        .reporting_component
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| event.source.as_ref().and_then(|s| s.component.clone()))
        .filter(|c| !c.is_empty());
    let count = event.series.as_ref().and_then(|s| s.count).or(event.count).unwrap_or(1);
    KubeEventView {
        kind: event.involved_object.kind.clone().unwrap_or_default(),
        object: event.involved_object.name.clone().unwrap_or_default(),
        type_: event.type_.clone(),
        reason: event.reason.clone(),
        message: event.message.clone(),
        count,
        first_seen: first,
        last_seen: last,
        source,
    }
}

/// The annotations of Job `name` and the Events of it and its newest pods, oldest first; `None`
/// when this launcher instance manages no such Job.
pub async fn job_kube_events(
    client: &Client,
    namespace: &str,
    instance: &str,
    name: &str,
) -> Result<Option<JobKubeEvents>> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let job = match jobs.get_opt(name).await.map_err(Error::from_kube)? {
        Some(job) if is_managed_by(&job, instance) => job,
        _ => return Ok(None),
    };
    let uid = job.metadata.uid.as_deref();
    let selector = match uid {
        Some(uid) => format!("batch.kubernetes.io/controller-uid={uid}"),
        None => format!("batch.kubernetes.io/job-name={name}"),
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut pods = pods.list(&ListParams::default().labels(&selector)).await.map_err(Error::from_kube)?.items;
    pods.sort_by(|a, b| b.metadata.creation_timestamp.cmp(&a.metadata.creation_timestamp));
    pods.truncate(MAX_PODS);
    let mut selectors = vec![involved("Job", name, uid)];
    selectors.extend(
        pods.iter()
            .filter_map(|p| p.metadata.name.as_deref().map(|pod| involved("Pod", pod, p.metadata.uid.as_deref()))),
    );
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let lists = futures::future::try_join_all(selectors.iter().map(|fields| {
        let (events, params) = (events.clone(), ListParams::default().fields(fields));
        async move { events.list(&params).await }
    }))
    .await
    .map_err(Error::from_kube)?;
    let mut views: Vec<KubeEventView> = lists.iter().flat_map(|l| l.items.iter().map(event_view)).collect();
    views.sort_by(|a, b| (a.last_seen, &a.kind, &a.object).cmp(&(b.last_seen, &b.kind, &b.object)));
    Ok(Some(JobKubeEvents {
        name: name.to_string(),
        annotations: job.metadata.annotations.unwrap_or_default().into_iter().collect(),
        events: views,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_selected_by_kind_name_and_uid() {
        assert_eq!(involved("Job", "j", None), "involvedObject.kind=Job,involvedObject.name=j");
        assert_eq!(
            involved("Pod", "p", Some("u-1")),
            "involvedObject.kind=Pod,involvedObject.name=p,involvedObject.uid=u-1"
        );
    }

    #[test]
    fn an_event_shows_its_object_reason_count_times_and_reporter() {
        let event: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j.1", "creationTimestamp": "2026-01-01T00:00:09Z"},
            "involvedObject": {"kind": "Job", "name": "j"},
            "type": "Normal", "reason": "SuccessfulCreate", "message": "Created pod: j-abc",
            "count": 2,
            "firstTimestamp": "2026-01-01T00:00:01Z", "lastTimestamp": "2026-01-01T00:00:05Z",
            "source": {"component": "job-controller"}
        }))
        .expect("an Event");
        let view = event_view(&event);
        assert_eq!((view.kind.as_str(), view.object.as_str()), ("Job", "j"));
        assert_eq!(view.reason.as_deref(), Some("SuccessfulCreate"));
        assert_eq!(view.count, 2);
        assert_eq!(view.source.as_deref(), Some("job-controller"));
        assert_eq!(view.first_seen.map(|t| t.to_string()).as_deref(), Some("2026-01-01T00:00:01Z"));
        assert_eq!(view.last_seen.map(|t| t.to_string()).as_deref(), Some("2026-01-01T00:00:05Z"));

        let newer: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p.1", "creationTimestamp": "2026-01-01T00:00:09Z"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "eventTime": "2026-01-01T00:00:02.000000Z", "reportingComponent": "default-scheduler",
            "reason": "Scheduled"
        }))
        .expect("an events.k8s.io-style Event");
        let view = event_view(&newer);
        assert_eq!(view.count, 1);
        assert_eq!(view.source.as_deref(), Some("default-scheduler"));
        assert_eq!(view.last_seen, view.first_seen, "without a last time, the event time");
    }
}
