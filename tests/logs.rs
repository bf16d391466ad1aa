//! Logs and results of fake pods, end to end: the termination message a pod annotation gives its
//! containers.

mod support;

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{ContainerStateTerminated, Pod},
};
use kube::{
    Api,
    api::{ListParams, PostParams},
};
use serde_json::json;
use support::{TestNamespace, wait_until};

/// A one-container Job; `annotations` go on its pod template, none at all when empty (so the
/// pod's annotations are nil, which the stages must handle).
fn job(name: &str, annotations: &[(&str, &str)]) -> Job {
    let mut template = json!({
        "spec": { "restartPolicy": "Never", "containers": [{ "name": "main", "image": "busybox" }] }
    });
    if !annotations.is_empty() {
        let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
        template["metadata"] = json!({ "annotations": annotations });
    }
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "backoffLimit": 0, "template": template }
    }))
    .expect("job manifest")
}

/// The pod of Job `job` once it has ended, and its container's terminated state.
async fn ended_pod(pods: &Api<Pod>, job: &str) -> (String, ContainerStateTerminated) {
    let selector = format!("job-name={job}");
    wait_until(Duration::from_secs(30), &format!("the pod of Job {job} to end"), || async {
        pods.list(&ListParams::default().labels(&selector)).await.is_ok_and(|l| {
            l.items.iter().any(|p| {
                p.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|ph| ph == "Succeeded" || ph == "Failed")
            })
        })
    })
    .await;
    let list = pods.list(&ListParams::default().labels(&selector)).await.expect("list pods");
    let status = list.items.into_iter().next().and_then(|p| p.status).expect("pod status");
    let terminated = status
        .container_statuses
        .as_ref()
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .expect("container terminated");
    (status.phase.unwrap_or_default(), terminated)
}

#[tokio::test]
async fn a_termination_message_annotation_is_what_the_fake_containers_end_with() {
    let ns = TestNamespace::create("termmsg").await;
    let jobs: Api<Job> = ns.api();
    let pods: Api<Pod> = ns.api();
    let pp = PostParams::default();
    // Quotes, a newline, markup and template-looking text: all must come through as written.
    let message = "she said \"done\"\nline two: <script>alert('x')</script> & \\ $(HOME) {{ . }}";
    let key = "fake.job-launcher.dev/termination-message";
    jobs.create(&pp, &job("succeeds", &[(key, message)])).await.expect("create job");
    jobs.create(&pp, &job("fails", &[(key, message), ("fake.job-launcher.dev/exit-code", "3")])).await.expect("job");
    jobs.create(&pp, &job("plain", &[])).await.expect("create job");

    let (phase, terminated) = ended_pod(&pods, "succeeds").await;
    assert_eq!((phase.as_str(), terminated.exit_code), ("Succeeded", 0));
    assert_eq!(terminated.message.as_deref(), Some(message));

    let (phase, terminated) = ended_pod(&pods, "fails").await;
    assert_eq!((phase.as_str(), terminated.exit_code, terminated.reason.as_deref()), ("Failed", 3, Some("Error")));
    assert_eq!(terminated.message.as_deref(), Some(message));

    // A pod without annotations still completes, with no message.
    let (phase, terminated) = ended_pod(&pods, "plain").await;
    assert_eq!((phase.as_str(), terminated.reason.as_deref()), ("Succeeded", Some("Completed")));
    assert_eq!(terminated.message, None);
}
