//! The local control plane behaves like a real cluster for what the launcher relies on: the Job
//! controller, kwok's fake pods, ResourceQuota admission and TTL cleanup.

mod support;

use std::{collections::BTreeMap, time::Duration};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Pod, ResourceQuota},
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, PostParams},
    runtime::watcher,
};
use support::{TestNamespace, wait_until};

const SEED_TEMPLATE: &str = include_str!("../deploy/helm/kube-job-launcher/files/job-template.yaml");

fn seed_job(name: &str) -> Job {
    let mut job: Job = serde_saphyr::from_str(SEED_TEMPLATE).expect("the seed template is a Job");
    job.metadata.name = Some(name.to_string());
    job
}

/// A one-container Job; `annotations` go on its pod template (kwok's fake pods read them).
fn job(name: &str, annotations: &[(&str, &str)]) -> Job {
    let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "annotations": annotations },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{ "name": "main", "image": "busybox" }]
                }
            }
        }
    }))
    .expect("job manifest")
}

fn condition_true(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

async fn wait_for_condition(jobs: &Api<Job>, name: &str, type_: &str, timeout: Duration) -> Job {
    wait_until(timeout, &format!("Job {name} to be {type_}"), || async {
        jobs.get(name).await.is_ok_and(|j| condition_true(&j, type_))
    })
    .await;
    jobs.get(name).await.expect("job exists")
}

async fn pods_of(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("job-name={job}"))).await.expect("list pods").items
}

#[tokio::test]
async fn seed_template_job_runs_on_a_fake_node_and_completes() {
    let ns = TestNamespace::create("seed").await;
    let jobs: Api<Job> = ns.api();
    let pods: Api<Pod> = ns.api();

    let job = seed_job("seed");
    let spec = job.spec.as_ref().expect("spec");
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.ttl_seconds_after_finished, Some(10));
    jobs.create(&PostParams::default(), &job).await.expect("create job");

    let done = wait_for_condition(&jobs, "seed", "Complete", Duration::from_secs(30)).await;
    assert_eq!(done.status.and_then(|s| s.succeeded), Some(1));
    let pods = pods_of(&pods, "seed").await;
    assert_eq!(pods.len(), 1, "one pod for completions: 1");
    let pod = &pods[0];
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    assert!(node.starts_with("kwok-node-"), "pod ran on a fake node, not {node:?}");
    let status = pod.status.as_ref().expect("pod status");
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
}

#[tokio::test]
async fn pod_told_to_exit_3_fails_its_job_with_exit_code_3() {
    let ns = TestNamespace::create("fail").await;
    let jobs: Api<Job> = ns.api();
    let pods: Api<Pod> = ns.api();

    let failing = job("exit3", &[("fake.job-launcher.dev/exit-code", "3")]);
    jobs.create(&PostParams::default(), &failing).await.expect("create job");

    let failed = wait_for_condition(&jobs, "exit3", "Failed", Duration::from_secs(30)).await;
    assert!(!condition_true(&failed, "Complete"));
    let pods = pods_of(&pods, "exit3").await;
    assert_eq!(pods.len(), 1, "backoffLimit 0: no retry pod");
    let status = pods[0].status.as_ref().expect("pod status");
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    let terminated = status
        .container_statuses
        .as_ref()
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .expect("container terminated");
    assert_eq!(terminated.exit_code, 3);
    assert_eq!(terminated.reason.as_deref(), Some("Error"));
}

/// The original launcher's cap: a ResourceQuota `count/pods` scoped NotTerminating. `count/pods`
/// counts pod objects in any phase, so a finished pod holds its slot until the Job's TTL removes
/// it; the third Job's pod is refused by quota admission until then, and the Job controller
/// retries it with backoff.
#[tokio::test]
async fn count_pods_quota_of_two_holds_a_third_job_until_one_finishes() {
    let ns = TestNamespace::create("quota").await;
    let jobs: Api<Job> = ns.api();
    let pods: Api<Pod> = ns.api();
    let quotas: Api<ResourceQuota> = ns.api();

    let quota: ResourceQuota = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "pods" },
        "spec": { "hard": { "count/pods": "2" }, "scopes": ["NotTerminating"] }
    }))
    .expect("quota manifest");
    quotas.create(&PostParams::default(), &quota).await.expect("create quota");
    // Quota admission refuses every pod until the quota controller has computed the usage.
    wait_until(Duration::from_secs(30), "quota status", || async {
        quotas
            .get("pods")
            .await
            .is_ok_and(|q| q.status.and_then(|s| s.used).is_some_and(|u| u.contains_key("count/pods")))
    })
    .await;

    // Follow every pod event, so the bound is checked at every moment rather than sampled.
    let watch = tokio::spawn({
        let pods = pods.clone();
        async move {
            let mut phases: BTreeMap<String, String> = BTreeMap::new();
            let mut finished: Vec<String> = Vec::new();
            let mut jobs_with_pods: Vec<String> = Vec::new();
            let mut max_existing = 0;
            let mut third_waited_for_a_finish = None;
            let mut stream = watcher(pods, watcher::Config::default()).boxed();
            while let Some(event) = stream.try_next().await.expect("pod watch") {
                let (pod, deleted) = match event {
                    watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => (pod, false),
                    watcher::Event::Delete(pod) => (pod, true),
                    watcher::Event::Init | watcher::Event::InitDone => continue,
                };
                let name = pod.metadata.name.clone().unwrap_or_default();
                let job = pod.labels().get("job-name").cloned().unwrap_or_default();
                if deleted {
                    phases.remove(&name);
                    continue;
                }
                let phase = pod.status.and_then(|s| s.phase).unwrap_or_else(|| "Pending".into());
                // Whichever Job's pod comes third (the Job controller picks no order).
                if !jobs_with_pods.contains(&job) {
                    if jobs_with_pods.len() == 2 {
                        third_waited_for_a_finish = Some(!finished.is_empty());
                    }
                    jobs_with_pods.push(job.clone());
                }
                if phase == "Succeeded" && !finished.contains(&job) {
                    finished.push(job.clone());
                }
                phases.insert(name, phase);
                max_existing = max_existing.max(phases.len());
                if finished.len() == 3 {
                    return (max_existing, third_waited_for_a_finish);
                }
            }
            panic!("pod watch ended");
        }
    });

    for name in ["q1", "q2", "q3"] {
        let mut j = job(name, &[("fake.job-launcher.dev/duration", "2s")]);
        if let Some(spec) = j.spec.as_mut() {
            spec.ttl_seconds_after_finished = Some(1);
        }
        jobs.create(&PostParams::default(), &j).await.expect("create job");
    }
    // The quota admits two pods while both run (the watch below checks that there are never more).
    wait_until(Duration::from_secs(30), "two pods under the quota", || async {
        pods.list(&ListParams::default()).await.is_ok_and(|l| l.items.len() == 2)
    })
    .await;

    let (max_existing, third_waited) = tokio::time::timeout(Duration::from_secs(120), watch)
        .await
        .expect("all three Jobs finish within 120s")
        .expect("watch task");
    assert_eq!(max_existing, 2, "never more than two pods under count/pods: 2");
    assert_eq!(third_waited, Some(true), "the third pod came only after one of the first two finished");
}

#[tokio::test]
async fn ttl_controller_deletes_a_finished_job_and_its_pods() {
    let ns = TestNamespace::create("ttl").await;
    let jobs: Api<Job> = ns.api();
    let pods: Api<Pod> = ns.api();

    let mut short = job("short", &[("fake.job-launcher.dev/duration", "200ms")]);
    if let Some(spec) = short.spec.as_mut() {
        spec.ttl_seconds_after_finished = Some(1);
    }
    jobs.create(&PostParams::default(), &short).await.expect("create job");
    wait_until(Duration::from_secs(30), "the Job's pod to succeed", || async {
        pods_of(&pods, "short")
            .await
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
    })
    .await;

    wait_until(Duration::from_secs(60), "the TTL controller to delete the Job", || async {
        matches!(jobs.get_opt("short").await, Ok(None))
    })
    .await;
    wait_until(Duration::from_secs(60), "garbage collection of the Job's pods", || async {
        pods_of(&pods, "short").await.is_empty()
    })
    .await;
}
