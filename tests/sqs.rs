//! The SQS consumers against the local SQS server and control plane: exactly one Job per message
//! in dispatch mode, dead letters with their reason, and no over-creation in scale mode.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use kube::{Api, api::ListParams, runtime::watcher};
use serde_json::json;
use support::{FAKE, SEED_TEMPLATE, TestApp, TestNamespace, TestQueue, put_config_map, sqs_flags, wait_until};

/// A template with a declared parameter that must be a number, for messages that fail it.
const STRICT: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  annotations:
    job-launcher.dev/parameters: |
      - name: size
        pattern: '[0-9]+'
        default: "1"
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations:
        fake.job-launcher.dev/duration: 200ms
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        args: ["$(params.size)"]
"#;

async fn setup(prefix: &str) -> (TestNamespace, TestQueue) {
    let ns = TestNamespace::create(prefix).await;
    put_config_map(
        &ns.client,
        &ns.name,
        "job-template-cm",
        &[("job-template.yaml", SEED_TEMPLATE), ("fake.yaml", FAKE), ("strict.yaml", STRICT)],
    )
    .await;
    (ns, TestQueue::create(prefix).await)
}

/// A ready launcher consuming `queue`; raw bodies launch `fake` unless `extra` names another.
async fn start(ns: &TestNamespace, queue: &TestQueue, extra: &[&str]) -> TestApp {
    let mut args: Vec<String> = sqs_flags(&queue.url);
    args.extend(["--sqs-wait-time", "1s"].map(String::from));
    if !extra.contains(&"--sqs-template") {
        args.extend(["--sqs-template", "fake"].map(String::from));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestApp::start(&ns.name, &args).await.ready().await
}

async fn jobs(ns: &TestNamespace) -> Vec<Job> {
    Api::<Job>::namespaced(ns.client.clone(), &ns.name).list(&ListParams::default()).await.expect("list jobs").items
}

fn annotation<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

fn env_of<'a>(job: &'a Job, name: &str) -> Option<&'a str> {
    let containers = &job.spec.as_ref()?.template.spec.as_ref()?.containers;
    containers[0].env.as_ref()?.iter().find(|e| e.name == name)?.value.as_deref()
}

/// Waits until `expected` Jobs exist and the queue is empty; returns how long it took.
async fn wait_for_all(ns: &TestNamespace, queue: &TestQueue, expected: usize, timeout: Duration) -> Duration {
    let started = Instant::now();
    wait_until(timeout, &format!("{expected} Jobs and an empty queue"), || async {
        jobs(ns).await.len() >= expected && queue.depth_of(&queue.url).await == 0
    })
    .await;
    started.elapsed()
}

#[tokio::test]
async fn five_hundred_mixed_messages_make_exactly_five_hundred_jobs() {
    let (ns, queue) = setup("sqs500").await;
    let bodies: Vec<String> = (0..500)
        .map(|i| {
            if i % 2 == 0 {
                json!({"template": "fake", "labels": {"n": i.to_string()}, "env": {"MESSAGE_NO": i.to_string()}})
                    .to_string()
            } else {
                json!({"jobId": format!("jobid-{i}"), "title": "jobtitle"}).to_string()
            }
        })
        .collect();
    let ids = queue.send_all(&bodies).await;
    assert_eq!(ids.len(), 500);
    let app = start(&ns, &queue, &["--sqs-concurrency", "4"]).await;
    let took = wait_for_all(&ns, &queue, 500, Duration::from_secs(300)).await;
    eprintln!("500 messages -> 500 Jobs in {took:?}: {:.0} launches/s", 500.0 / took.as_secs_f64());
    // Quiet period: the queue is empty, so only a create already on the wire could still land.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let all = jobs(&ns).await;
    assert_eq!(all.len(), 500, "exactly one Job per message");
    let by_id: BTreeMap<&str, &Job> =
        all.iter().filter_map(|j| Some((annotation(j, "job-launcher.dev/sqs-message-id")?, j))).collect();
    assert_eq!(by_id.len(), 500, "every Job names its own message");
    for (i, (id, body)) in ids.iter().zip(&bodies).enumerate() {
        let job = by_id.get(id.as_str()).unwrap_or_else(|| panic!("no Job for message {i} ({id})"));
        assert_eq!(
            job.metadata.labels.as_ref().and_then(|l| l.get("job-launcher.dev/source")).map(String::as_str),
            Some("sqs")
        );
        if i % 2 == 0 {
            assert_eq!(env_of(job, "MESSAGE_NO"), Some(i.to_string().as_str()), "LaunchRequest message {i}");
        } else {
            assert_eq!(env_of(job, "MESSAGE_BODY"), Some(body.as_str()), "raw message {i}");
            assert_eq!(env_of(job, "MESSAGE_ID"), Some(id.as_str()));
        }
    }
    assert!(queue.dead_letters().await.is_empty());
    let metrics = app.metrics().await;
    assert!(metrics.contains("job_launcher_sqs_messages_total{outcome=\"launched\"} 500"), "{metrics}");
}

#[tokio::test]
async fn a_message_delivered_twice_makes_one_job() {
    let (ns, queue) = setup("twice").await;
    queue.send_all(&[json!({"jobId": "once"}).to_string()]).await;
    // Consumer one receives the message and launches its Job, but never deletes it (it dies
    // before the delete); the message becomes visible again after its short timeout.
    let first = queue
        .sqs
        .receive_message()
        .queue_url(&queue.url)
        .visibility_timeout(2)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .wait_time_seconds(5)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    assert_eq!(first.len(), 1);
    let app = start(&ns, &queue, &[]).await;
    let dispatcher = app.dispatcher.clone().expect("dispatch mode");
    let outcome = dispatcher.launch_message(&first[0]).await;
    assert!(
        matches!(&outcome, kube_job_launcher::sqs::dispatch::Outcome::Launched { duplicate: false, .. }),
        "{outcome:?}"
    );

    // Consumer two (the app's own loop) receives the second delivery.
    wait_until(Duration::from_secs(20), "the second delivery to be settled", || async {
        queue.depth_of(&queue.url).await == 0
    })
    .await;
    assert_eq!(jobs(&ns).await.len(), 1, "the second delivery found the first one's Job");
    let metrics = app.metrics().await;
    assert!(metrics.contains("job_launcher_sqs_messages_total{outcome=\"duplicate\"} 1"), "{metrics}");
}

#[tokio::test]
async fn messages_that_can_never_launch_go_to_the_dead_letter_queue_with_their_reason() {
    let (ns, queue) = setup("dlq").await;
    let mut bodies: Vec<String> =
        (0..20).map(|i| json!({"template": "fake", "labels": {"n": i.to_string()}}).to_string()).collect();
    let invalid = [
        (json!({"template": "missing"}).to_string(), "no template named \"missing\""),
        (json!({"template": "fake", "labels": {"job-launcher.dev/x": "y"}}).to_string(), "reserved"),
        (json!({"template": "fake", "params": {"nope": 1}}).to_string(), "declares no such parameter"),
        (json!({"template": "strict", "params": {"size": "abc"}}).to_string(), "does not match the pattern"),
        (json!({"template": "fake", "env": {"1BAD": "x"}}).to_string(), "not a valid environment variable name"),
    ];
    for (i, (body, _)) in invalid.iter().enumerate() {
        bodies.insert(i * 4 + 1, body.clone());
    }
    queue.send_all(&bodies).await;
    let _app = start(&ns, &queue, &[]).await;
    wait_for_all(&ns, &queue, 20, Duration::from_secs(180)).await;
    assert_eq!(jobs(&ns).await.len(), 20, "the good messages launched, the invalid ones did not");

    let dead = queue.dead_letters().await;
    assert_eq!(dead.len(), invalid.len(), "each invalid message dead-lettered once");
    for (body, reason) in &invalid {
        let letter =
            dead.iter().find(|m| m.body() == Some(body.as_str())).unwrap_or_else(|| panic!("{body} not dead-lettered"));
        let attributes = letter.message_attributes().cloned().unwrap_or_default();
        let got = attributes.get("job-launcher-reason").and_then(|v| v.string_value()).unwrap_or_default();
        assert!(got.contains(reason), "reason {got:?} should mention {reason:?}");
        assert_eq!(
            attributes.get("job-launcher-source-queue").and_then(|v| v.string_value()),
            Some(queue.url.as_str())
        );
    }
}

#[tokio::test]
async fn the_original_launchers_message_sent_with_the_aws_cli_launches_one_job() {
    let (ns, queue) = setup("awscli").await;
    let _app = start(&ns, &queue, &["--sqs-template", "job-template"]).await;
    let body = r#"{"jobId":"jobid-123","title":"jobtitle"}"#;
    let aws = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/bin/aws");
    let sent = tokio::process::Command::new(&aws)
        .args(["sqs", "send-message", "--queue-url", &queue.url, "--message-body", body])
        .env("AWS_ENDPOINT_URL", support::dev_env("AWS_ENDPOINT_URL"))
        .env("AWS_DEFAULT_REGION", support::dev_env("AWS_REGION"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .await
        .expect("the aws CLI runs");
    assert!(sent.status.success(), "aws sqs send-message: {}", String::from_utf8_lossy(&sent.stderr));
    let id = serde_json::from_slice::<serde_json::Value>(&sent.stdout).expect("JSON")["MessageId"]
        .as_str()
        .map(String::from);
    wait_for_all(&ns, &queue, 1, Duration::from_secs(90)).await;
    let all = jobs(&ns).await;
    assert_eq!(all.len(), 1);
    assert_eq!(env_of(&all[0], "MESSAGE_BODY"), Some(body));
    assert_eq!(env_of(&all[0], "MESSAGE_ID"), id.as_deref());
    assert!(all[0].metadata.name.as_deref().is_some_and(|n| n.starts_with("k-")), "named after the message id");
}

/// Scale mode with pods that take 5 s to start: Jobs exist but have not taken their message, and
/// must not be launched again. The test plays the workers: each pod that starts takes a message.
#[tokio::test]
async fn scale_mode_with_slow_starting_pods_launches_one_job_per_message_not_more() {
    let (ns, queue) = setup("scale").await;
    // Pods take 5 s to start, then run 10 s: a worker takes its message within that time even on a
    // loaded machine. A Job that ends without taking one rightly gets its message a new Job, which
    // this test would count as one too many.
    let slow = FAKE
        .replace(
            "fake.job-launcher.dev/duration: \"$(params.duration)\"",
            "fake.job-launcher.dev/duration: \"$(params.duration)\"\n        fake.job-launcher.dev/start-delay: 5s",
        )
        .replace("default: 300ms", "default: 10s");
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("slow.yaml", &slow)]).await;
    queue.send_all(&(0..20).map(|i| format!("work item {i}")).collect::<Vec<_>>()).await;

    // Workers: every pod that starts running receives and deletes one message, each on its own
    // task as real workers would (one after another, the last would start after its pod ended).
    let pods: Api<Pod> = ns.api();
    let worker_queue = (queue.sqs.clone(), queue.url.clone());
    let workers = tokio::spawn(async move {
        use futures::TryStreamExt;
        let (sqs, url) = worker_queue;
        let mut seen = BTreeSet::new();
        let mut stream =
            std::pin::pin!(kube::runtime::WatchStreamExt::applied_objects(watcher(pods, watcher::Config::default())));
        while let Ok(Some(pod)) = stream.try_next().await {
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let name = pod.metadata.name.clone().unwrap_or_default();
            if running && seen.insert(name) {
                let (sqs, url) = (sqs.clone(), url.clone());
                tokio::spawn(async move { take_one_message(&sqs, &url).await });
            }
        }
    });
    let mut args = sqs_flags(&queue.url);
    args.extend(
        [
            "--sqs-mode",
            "scale",
            "--sqs-template",
            "slow",
            "--sqs-poll-interval",
            "500ms",
            "--sqs-max-jobs-per-poll",
            "50",
            "--sqs-start-grace",
            "30s",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _app = TestApp::start(&ns.name, &args).await.ready().await;
    wait_until(Duration::from_secs(180), "the workers to drain the queue", || async {
        queue.depth_of(&queue.url).await == 0
    })
    .await;
    // A few more polls with the queue empty: nothing more may come. Scale mode polls every 500 ms
    // here, so 3 s gives it six chances to launch a Job too many.
    tokio::time::sleep(Duration::from_secs(3)).await;
    workers.abort();
    let all = jobs(&ns).await;
    assert_eq!(all.len(), 20, "one Job per message, though pods took 5 s to start");
    for job in &all {
        assert_eq!(env_of(job, "SQS_QUEUE_URL"), Some(queue.url.as_str()));
        assert!(env_of(job, "AWS_REGION").is_some());
        assert!(env_of(job, "AWS_ENDPOINT_URL").is_some());
    }
}

/// The launcher process killed with SIGKILL halfway through a burst, then started again: every
/// message launches exactly once. Messages it held come back after their visibility timeout.
#[tokio::test]
async fn sigkill_halfway_through_a_burst_then_restart_launches_each_message_once() {
    let (ns, queue) = setup("sigkill").await;
    let bodies: Vec<String> = (0..300).map(|i| json!({"jobId": format!("job-{i}")}).to_string()).collect();
    queue.send_all(&bodies).await;
    let mut args = sqs_flags(&queue.url);
    args.extend(
        ["--sqs-template", "fake", "--sqs-visibility-timeout", "3s", "--sqs-wait-time", "1s"].map(String::from),
    );

    let first = support::LauncherProcess::start(&ns.name, &args).await;
    wait_until(Duration::from_secs(60), "about half the Jobs", || async { jobs(&ns).await.len() >= 150 }).await;
    first.signal("KILL");
    drop(first);
    let at_kill = jobs(&ns).await.len();
    assert!(at_kill < 300, "killed before the end ({at_kill} Jobs)");

    let _second = support::LauncherProcess::start(&ns.name, &args).await;
    wait_for_all(&ns, &queue, 300, Duration::from_secs(240)).await;
    // Quiet period: the queue is empty (visible and in flight), so only a create already on the
    // wire could still land; those take milliseconds, and the killed process's are long gone.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(jobs(&ns).await.len(), 300, "exactly one Job per message");
    assert_eq!(queue.depth_of(&queue.url).await, 0, "no message left");
    assert!(queue.dead_letters().await.is_empty(), "none dead-lettered");
}

/// SIGTERM during a burst: the launcher stops taking messages, settles what it holds, exits 0
/// within its grace period; a new launcher finishes the rest, and nothing is launched twice.
#[tokio::test]
async fn sigterm_during_a_burst_exits_in_grace_and_loses_nothing() {
    let (ns, queue) = setup("sigterm").await;
    let bodies: Vec<String> = (0..200).map(|i| json!({"jobId": format!("job-{i}")}).to_string()).collect();
    queue.send_all(&bodies).await;
    let mut args = sqs_flags(&queue.url);
    args.extend(["--sqs-template", "fake", "--shutdown-grace", "10s", "--sqs-wait-time", "20s"].map(String::from));

    let mut first = support::LauncherProcess::start(&ns.name, &args).await;
    wait_until(Duration::from_secs(60), "some Jobs", || async { jobs(&ns).await.len() >= 50 }).await;
    let signalled = Instant::now();
    first.signal("TERM");
    assert_eq!(first.wait(Duration::from_secs(12)).await, Some(0), "exit 0 within the grace period");
    assert!(signalled.elapsed() < Duration::from_secs(10));
    let at_stop = jobs(&ns).await.len();

    let _second = support::LauncherProcess::start(&ns.name, &args).await;
    wait_for_all(&ns, &queue, 200, Duration::from_secs(180)).await;
    // Quiet period, as above.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(jobs(&ns).await.len(), 200, "exactly one Job per message ({at_stop} before the restart)");
    assert!(queue.dead_letters().await.is_empty());
}

/// A worker's first step: receive one message and delete it, retrying until one comes.
async fn take_one_message(sqs: &aws_sdk_sqs::Client, url: &str) {
    for _ in 0..10 {
        let got = sqs.receive_message().queue_url(url).max_number_of_messages(1).wait_time_seconds(1).send().await;
        if let Some(m) = got.ok().and_then(|o| o.messages).and_then(|m| m.into_iter().next()) {
            let handle = m.receipt_handle().unwrap_or_default();
            let _ = sqs.delete_message().queue_url(url).receipt_handle(handle).send().await;
            return;
        }
    }
}
