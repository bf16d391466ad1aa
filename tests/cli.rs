//! The CLI, end to end: the real binary, run as a process, against a launcher running in-process
//! on the local control plane, in a namespace of each test's own.

mod support;

use std::{path::PathBuf, time::Duration};

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use serde_json::Value;
use support::{GREETING_TEMPLATE, TestApp, setup, wait_until};

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    fn yaml(&self) -> Value {
        serde_saphyr::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not YAML ({e}): {self:?}"))
    }
}

/// Runs `kube-job-launcher ARGS` on a blocking thread, so the in-process launcher keeps serving.
async fn cli(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let shown = args.join(" ");
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_kube-job-launcher"))
            .args(&args)
            .env_remove("JOB_LAUNCHER_SERVER")
            .env_remove("JOB_LAUNCHER_TOKEN")
            .env_remove("JOB_LAUNCHER_TOKEN_FILE")
            .stdin(std::process::Stdio::null())
            .output()
    });
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("`{shown}` did not end within 120s"))
        .expect("the blocking task")
        .expect("the binary runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs a command against `app`.
async fn cli_at(app: &TestApp, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--server", app.base.as_str()]);
    cli(&all).await
}

/// A launch that must succeed; the Job's name.
async fn launch(app: &TestApp, args: &[&str]) -> String {
    let mut all = vec!["launch"];
    all.extend_from_slice(args);
    let run = cli_at(app, &all).await;
    assert_eq!(run.code, 0, "{run:?}");
    let name = run.stdout.trim().to_string();
    assert!(!name.is_empty() && !name.contains(char::is_whitespace), "one name on stdout: {run:?}");
    name
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["name"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// A folder of the test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("kjl-cli-{}", support::random_suffix()));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write");
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn launch_wait_exits_with_the_jobs_outcome_and_jobs_say_they_came_from_the_cli() {
    let (ns, app) = setup("cli-wait").await;

    let ok = cli_at(&app, &["launch", "--template", "fake", "--label", "case=ok", "--wait", "--timeout", "60s"]).await;
    assert_eq!(ok.code, 0, "{ok:?}");
    let name = ok.stdout.split(':').next().unwrap_or_default().trim().to_string();
    assert!(name.starts_with("fake-"), "{ok:?}");
    assert!(ok.stdout.contains("-> succeeded (pod "), "a progress line for the end: {ok:?}");
    assert!(ok.stdout.contains("exited with code 0"), "{ok:?}");

    let got = cli_at(&app, &["get", &name, "-o", "json"]).await;
    assert_eq!(got.code, 0, "{got:?}");
    let view = got.json();
    assert_eq!((view["source"].as_str(), view["state"].as_str()), (Some("cli"), Some("succeeded")), "{view}");
    assert_eq!(view["labels"]["case"], "ok");
    let job = Api::<Job>::namespaced(ns.client.clone(), &ns.name).get(&name).await.expect("the Job");
    assert_eq!(
        job.metadata.labels.as_ref().and_then(|l| l.get("job-launcher.dev/source")).map(String::as_str),
        Some("cli")
    );
    let yaml = cli_at(&app, &["get", &name, "-o", "yaml"]).await;
    assert_eq!(yaml.yaml(), view, "YAML and JSON say the same");
    let table = cli_at(&app, &["get", &name]).await;
    assert!(table.stdout.contains("Name:") && table.stdout.contains("succeeded"), "{table:?}");

    let failed = cli_at(&app, &["launch", "-t", "fake", "--param", "exitCode:=3", "--wait", "--timeout", "60s"]).await;
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stdout.contains("-> failed (pod ") && failed.stdout.contains("exited with code 3"), "{failed:?}");
    assert!(failed.stderr.contains("error: Job fake-") && failed.stderr.contains("exited with code 3"), "{failed:?}");

    // -o json --wait: progress on stderr, the final JobView on stdout.
    let json = cli_at(&app, &["launch", "-t", "fake", "--wait", "-o", "json"]).await;
    assert_eq!(json.code, 0, "{json:?}");
    assert_eq!(json.json()["state"], "succeeded");
    assert!(json.stderr.contains("-> succeeded"), "{json:?}");

    // An idempotency key: the second launch finds the first one's Job.
    let first = cli_at(&app, &["launch", "-t", "fake", "--idempotency-key", "order-1", "-o", "json"]).await;
    let second = cli_at(&app, &["launch", "-t", "fake", "--idempotency-key", "order-1", "-o", "json"]).await;
    assert_eq!((first.code, second.code), (0, 0), "{first:?} {second:?}");
    assert_eq!(first.json()["name"], second.json()["name"]);
    assert_eq!(first.json()["idempotencyKey"], "order-1");
    assert!(second.stderr.contains("an earlier request with this idempotency key created it"), "{second:?}");
}

#[tokio::test]
async fn errors_show_the_problem_and_exit_2() {
    let (_ns, app) = setup("cli-errors").await;

    let unknown = cli_at(&app, &["launch", "--template", "nope"]).await;
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(
        unknown.stderr.contains(
            "error: Unknown template (404): no template named \"nope\" (templates: fake, greeting, job-template)"
        ),
        "{unknown:?}"
    );
    assert!(unknown.stdout.is_empty());

    let missing = cli_at(&app, &["launch", "--template", "greeting"]).await;
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(missing.stderr.contains("(400): params.name: required"), "{missing:?}");

    let no_job = cli_at(&app, &["get", "nope"]).await;
    assert_eq!(no_job.code, 2, "{no_job:?}");
    assert!(no_job.stderr.contains("Job not found (404): no Job named nope"), "{no_job:?}");
    let cancel = cli_at(&app, &["cancel", "nope"]).await;
    assert_eq!(cancel.code, 2, "{cancel:?}");

    let usage = cli_at(&app, &["launch", "--param", "no-equals-sign"]).await;
    assert_eq!(usage.code, 2, "{usage:?}");
    assert!(usage.stderr.contains("want NAME=VALUE"), "{usage:?}");

    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let server = format!("http://127.0.0.1:{port}");
    let refused = cli(&["list", "--server", &server]).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains(&format!("cannot connect to the launcher at {server}")), "{refused:?}");
    assert!(refused.stderr.to_lowercase().contains("refused"), "{refused:?}");
}

#[tokio::test]
async fn list_filters_pages_and_cancel_deletes() {
    let (ns, app) = setup("cli-list").await;
    let mut fakes = Vec::new();
    for team in ["even", "odd", "even"] {
        fakes.push(launch(&app, &["-t", "fake", "-p", "duration=60s", "-l", &format!("team={team}")]).await);
    }
    let seed = launch(&app, &[]).await;
    assert!(seed.starts_with("job-template-"), "the default template: {seed}");

    let by_template = cli_at(&app, &["list", "--template", "fake", "-o", "json"]).await;
    assert_eq!(by_template.code, 0, "{by_template:?}");
    let mut listed = names(&by_template.json());
    listed.sort();
    let mut expected = fakes.clone();
    expected.sort();
    assert_eq!(listed, expected, "the fake Jobs, not the seed one");

    let odd = cli_at(&app, &["list", "--label", "team=odd", "-o", "json"]).await;
    assert_eq!(names(&odd.json()), vec![fakes[1].clone()]);
    let both = cli_at(&app, &["list", "-l", "team=even", "--template", "fake", "-o", "json"]).await;
    assert_eq!(names(&both.json()).len(), 2);

    let paged = cli_at(&app, &["list", "--template", "fake", "--limit", "1", "--all", "-o", "yaml"]).await;
    assert_eq!(paged.code, 0, "{paged:?}");
    let paged = paged.yaml();
    assert_eq!(names(&paged).len(), 3);
    assert!(paged.get("continue").is_none(), "every page was read");
    let one_page = cli_at(&app, &["list", "--template", "fake", "--limit", "1"]).await;
    assert_eq!(one_page.stdout.lines().count(), 2, "a header and one row: {one_page:?}");
    assert!(one_page.stdout.starts_with("NAME "), "{one_page:?}");
    assert!(fakes.iter().any(|f| one_page.stdout.contains(f.as_str())), "{one_page:?}");
    assert!(one_page.stderr.contains("--continue "), "{one_page:?}");

    wait_until(Duration::from_secs(30), "three fake Jobs running", || async {
        let running = cli_at(&app, &["list", "--template", "fake", "--state", "running", "-o", "json"]).await;
        names(&running.json()).len() == 3
    })
    .await;
    let none = cli_at(&app, &["list", "--state", "failed"]).await;
    assert_eq!((none.code, none.stdout.as_str()), (0, ""), "{none:?}");
    assert!(none.stderr.contains("No Jobs found"), "{none:?}");

    let cancelled = cli_at(&app, &["cancel", &fakes[0]]).await;
    assert_eq!(cancelled.code, 0, "{cancelled:?}");
    assert_eq!(cancelled.stdout, format!("{}: cancelled (it was running)\n", fakes[0]));
    let jobs: Api<Job> = ns.api();
    wait_until(Duration::from_secs(30), "the cancelled Job to go", || async {
        jobs.get_opt(&fakes[0]).await.is_ok_and(|j| j.is_none())
    })
    .await;
    wait_until(Duration::from_secs(10), "the launcher to forget it", || async {
        cli_at(&app, &["get", &fakes[0]]).await.code == 2
    })
    .await;
}

#[tokio::test]
async fn logs_follow_waits_for_the_pod_and_ends_with_it() {
    let (_ns, app) = setup("cli-logs").await;
    let name = launch(&app, &["-t", "fake", "-p", "duration=3s"]).await;
    let logs = cli_at(&app, &["logs", &name, "-f"]).await;
    assert_eq!(logs.code, 0, "{logs:?}");
    assert!(logs.stdout.contains("from a fake node"), "{logs:?}");
    let tail = cli_at(&app, &["logs", &name, "--tail", "1"]).await;
    assert_eq!(tail.code, 0, "{tail:?}");
    assert_eq!(tail.stdout, "from a fake node\n");
}

#[tokio::test]
async fn templates_are_listed_and_rendered_online_and_offline() {
    let (_ns, app) = setup("cli-templates").await;

    let all = cli_at(&app, &["templates"]).await;
    assert_eq!(all.code, 0, "{all:?}");
    assert!(all.stdout.starts_with("NAME "), "{all:?}");
    let greeting = all.stdout.lines().find(|l| l.starts_with("greeting ")).expect("a greeting row");
    for part in ["valid", "yes", "name*, times=1", "job-template-cm/greeting.yaml"] {
        assert!(greeting.contains(part), "{part} in {greeting:?}");
    }
    let one = cli_at(&app, &["templates", "greeting", "-o", "json"]).await;
    assert_eq!(one.json()["parameters"][0]["name"], "name");
    let described = cli_at(&app, &["templates", "greeting"]).await;
    assert!(described.stdout.contains("who to greet"), "{described:?}");
    let unknown = cli_at(&app, &["templates", "nope"]).await;
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(unknown.stderr.contains("(404)"), "{unknown:?}");

    let online = cli_at(&app, &["render", "--template", "greeting", "-p", "name=Ada", "-o", "json"]).await;
    assert_eq!(online.code, 0, "{online:?}");
    assert_eq!(online.json()["kind"], "Job");

    // Offline: no server at all.
    let dir = TempDir::new();
    let file = dir.file("greeting.yaml", GREETING_TEMPLATE);
    let rendered =
        cli(&["render", "--file", &file, "--param", "name=Ada", "--param", "times:=2", "--idempotency-key", "k"]).await;
    assert_eq!(rendered.code, 0, "{rendered:?}");
    let manifest = rendered.yaml();
    assert!(manifest["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("k-")), "keyed: {manifest}");
    assert_eq!(manifest["metadata"]["labels"]["job-launcher.dev/template"], "greeting");
    let env = &manifest["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!((env[0]["name"].as_str(), env[0]["value"].as_str()), (Some("NAME"), Some("Ada")), "{env}");
    assert_eq!((env[1]["name"].as_str(), env[1]["value"].as_str()), (Some("TIMES"), Some("2")), "{env}");
    let again =
        cli(&["render", "-f", &file, "-p", "name=Ada", "-p", "times:=2", "--idempotency-key", "k", "-o", "json"]).await;
    assert_eq!(again.json()["metadata"]["name"], manifest["metadata"]["name"], "a keyed name is stable");

    let missing = cli(&["render", "--file", &file]).await;
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(missing.stderr.contains("params.name: required"), "{missing:?}");
    assert!(missing.stdout.is_empty());
    let broken = dir.file("broken.yaml", &GREETING_TEMPLATE.replace("restartPolicy: Never", "restartPolicy: Always"));
    let invalid = cli(&["render", "--file", &broken, "-p", "name=Ada"]).await;
    assert_eq!(invalid.code, 1, "{invalid:?}");
    assert!(invalid.stderr.contains("template broken (broken.yaml) is invalid: restartPolicy"), "{invalid:?}");
    let absent = cli(&["render", "--file", "/nonexistent/job.yaml"]).await;
    assert_eq!(absent.code, 2, "{absent:?}");
}
