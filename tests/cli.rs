//! The CLI, end to end: the real binary, run as a process, against a launcher running in-process
//! on the local control plane, in a namespace of each test's own.

mod support;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use serde_json::Value;
use support::{FAKE, GREETING_TEMPLATE, SEED_TEMPLATE, TestApp, TestNamespace, put_config_map, setup, wait_until};

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
    cli_with(args, &[]).await
}

/// Runs `kube-job-launcher ARGS` with these environment variables, and none of the developer's:
/// no JOB_LAUNCHER_* settings, and a config folder that does not exist (unless `envs` name one).
async fn cli_with(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let envs: Vec<(String, String)> = envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let shown = args.join(" ");
    let run = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kube-job-launcher"));
        command.args(&args);
        for name in [
            "JOB_LAUNCHER_SERVER",
            "JOB_LAUNCHER_TOKEN",
            "JOB_LAUNCHER_TOKEN_FILE",
            "JOB_LAUNCHER_CA_FILE",
            "JOB_LAUNCHER_CONTEXT",
            "JOB_LAUNCHER_CONFIG",
        ] {
            command.env_remove(name);
        }
        command.env("XDG_CONFIG_HOME", "/nonexistent/kjl-cli-test-config");
        command.envs(envs).stdin(std::process::Stdio::null()).output()
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

/// The lines of a `-o name` answer, sorted.
fn sorted_lines(run: &Run) -> Vec<String> {
    assert_eq!(run.code, 0, "{run:?}");
    let mut lines: Vec<String> = run.stdout.lines().map(String::from).collect();
    lines.sort();
    lines
}

fn sorted(names: &[&String]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    names.sort();
    names
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
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).expect("folder");
        }
        std::fs::write(&path, text).expect("write");
        path.to_string_lossy().into_owned()
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
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

    // The notice flags reach the server, which admits no webhook unless told which.
    let hook = ["launch", "--template", "greeting", "--param", "name=Ada", "--notify-url", "https://hooks.example/x"];
    let notify = cli_at(&app, &hook).await;
    assert_eq!(notify.code, 2, "{notify:?}");
    assert!(notify.stderr.contains("--notify-url-allow"), "{notify:?}");

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

    // kubectl's selectors, evaluated by the server. The seed Job has no team label.
    let selected = |selector: &'static str| {
        let app = &app;
        async move { cli_at(app, &["list", "-l", selector, "-o", "name"]).await }
    };
    assert_eq!(
        sorted_lines(&selected("team!=even").await),
        sorted(&[&fakes[1], &seed]),
        "!= keeps Jobs without the label"
    );
    assert_eq!(sorted_lines(&selected("team in (odd,blue)").await), sorted(&[&fakes[1]]));
    assert_eq!(sorted_lines(&selected("team notin (odd), !team").await), sorted(&[&seed]));
    assert_eq!(sorted_lines(&selected("team,team!=odd").await), sorted(&[&fakes[0], &fakes[2]]));
    let two = cli_at(&app, &["list", "-l", "team", "--selector", "team in (even)", "-o", "name"]).await;
    assert_eq!(sorted_lines(&two), sorted(&[&fakes[0], &fakes[2]]), "repeated selectors must all match");
    let malformed = cli_at(&app, &["list", "-l", "team in odd"]).await;
    assert_eq!(malformed.code, 2, "{malformed:?}");
    assert!(malformed.stderr.contains("\"odd\" at character 9: want '(' after 'in'"), "{malformed:?}");

    // Global flags before or after the command, in any order.
    let before = cli(&["--server", &app.base, "-o", "json", "list", "--template", "fake"]).await;
    let after = cli(&["list", "--template", "fake", "-o", "json", "--server", &app.base]).await;
    let mixed = cli(&["-o", "json", "list", "--server", &app.base, "--template", "fake"]).await;
    for run in [&before, &after, &mixed] {
        assert_eq!(run.code, 0, "{run:?}");
        let mut listed = names(&run.json());
        listed.sort();
        assert_eq!(listed, sorted(&fakes.iter().collect::<Vec<_>>()), "{run:?}");
    }

    // -o name, --no-headers, -o wide.
    let named = cli_at(&app, &["list", "--template", "fake", "-o", "name"]).await;
    assert_eq!(sorted_lines(&named), sorted(&fakes.iter().collect::<Vec<_>>()), "just the names: {named:?}");
    let bare = cli_at(&app, &["--no-headers", "list", "--template", "fake"]).await;
    assert_eq!(bare.code, 0, "{bare:?}");
    assert_eq!(bare.stdout.lines().count(), 3, "three rows and no header: {bare:?}");
    assert!(bare.stdout.lines().all(|l| fakes.iter().any(|f| l.starts_with(&format!("{f} ")))), "{bare:?}");
    let wide = cli_at(&app, &["list", "-o", "wide", "-l", "team=odd"]).await;
    let header = wide.stdout.lines().next().unwrap_or_default();
    assert!(header.starts_with("NAME ") && header.contains("REQUESTED BY") && header.ends_with("LABELS"), "{wide:?}");
    let row = wide.stdout.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with(&fakes[1]) && row.contains("anonymous") && row.contains("team=odd"), "{wide:?}");
    let templates = cli_at(&app, &["templates", "-o", "name"]).await;
    assert_eq!(templates.stdout, "fake\ngreeting\njob-template\n", "{templates:?}");

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
    let unfit = cli_at(&app, &["render", "--template", "greeting"]).await;
    assert_eq!(unfit.code, 1, "a request that does not fit: exit 1, as offline: {unfit:?}");
    assert!(unfit.stderr.contains("(400): params.name: required"), "{unfit:?}");
    let named =
        cli_at(&app, &["render", "--template", "greeting", "-p", "name=Ada", "--idempotency-key", "k", "-o", "name"])
            .await;
    assert!(named.code == 0 && named.stdout.starts_with("k-") && named.stdout.lines().count() == 1, "{named:?}");
    let unknown_template = cli_at(&app, &["render", "--template", "nope"]).await;
    assert_eq!(unknown_template.code, 2, "{unknown_template:?}");

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

#[tokio::test]
async fn completion_scripts_and_flags_that_belong_to_the_cli() {
    let bash = cli(&["completion", "bash"]).await;
    assert_eq!(bash.code, 0, "{bash:?}");
    assert!(bash.stdout.contains("complete ") && bash.stdout.contains("kube-job-launcher"), "a bash script");
    for command in ["serve", "launch", "get", "list", "cancel", "logs", "templates", "render", "config", "completion"] {
        assert!(bash.stdout.contains(command), "{command} is completed");
    }
    for flag in ["--selector", "--no-headers", "--ca-file", "--context", "use-context"] {
        assert!(bash.stdout.contains(flag), "{flag} is completed");
    }
    for shell in ["zsh", "fish"] {
        let script = cli(&["completion", shell]).await;
        assert_eq!(script.code, 0, "{script:?}");
        assert!(script.stdout.contains("launch") && script.stdout.contains("no-headers"), "{shell}: {script:?}");
    }
    assert_eq!(cli(&["completion", "tcsh"]).await.code, 2);

    // serve takes none of the CLI's flags, rather than ignoring them.
    let serve = cli(&["serve", "--token", "x"]).await;
    assert_eq!(serve.code, 2, "{serve:?}");
    assert!(serve.stderr.contains("--token is a flag of the CLI commands"), "{serve:?}");
    let help = cli(&["list", "--help"]).await;
    assert!(help.stdout.contains("Examples:\n  # The newest 100 Jobs"), "{help:?}");
}

#[tokio::test]
async fn a_config_files_contexts_give_server_and_token_and_flags_win() {
    let ns = TestNamespace::create("cli-config").await;
    put_config_map(
        &ns.client,
        &ns.name,
        "job-template-cm",
        &[("job-template.yaml", SEED_TEMPLATE), ("fake.yaml", FAKE)],
    )
    .await;
    let dir = TempDir::new();
    let tokens = dir.file("tokens", "s3cret,ada,1\n");
    let app = TestApp::start(&ns.name, &["--auth-token-file", &tokens]).await.ready().await;
    let dead = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
    );
    // Where XDG_CONFIG_HOME says; the token file relative to the config file's folder.
    dir.file("xdg/kube-job-launcher/ada.token", "s3cret\n");
    let config = format!(
        "# the test's launchers\n\
         current-context: nowhere\n\
         contexts:\n\
         \x20 - name: nowhere\n\
         \x20   server: {dead}\n\
         \x20 - name: test\n\
         \x20   server: {base}\n\
         \x20   token-file: ada.token\n\
         \x20 - name: inline\n\
         \x20   server: {base}\n\
         \x20   token: s3cret\n",
        base = app.base
    );
    let config_path = dir.file("xdg/kube-job-launcher/config", &config);
    let xdg = dir.path("xdg");
    let env = [("XDG_CONFIG_HOME", xdg.as_str())];

    let refused = cli_with(&["list"], &env).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains(&format!("cannot connect to the launcher at {dead}")),
        "current-context: {refused:?}"
    );

    let launched = cli_with(&["--context", "test", "launch", "-t", "fake", "-l", "via=context"], &env).await;
    assert_eq!(launched.code, 0, "{launched:?}");
    let name = launched.stdout.trim().to_string();
    let got = cli_with(&["get", &name, "--context", "test", "-o", "json"], &env).await;
    assert_eq!(got.code, 0, "{got:?}");
    assert_eq!(
        (got.json()["requestedBy"].as_str(), got.json()["labels"]["via"].as_str()),
        (Some("ada"), Some("context"))
    );
    let by_env = cli_with(&["list", "-o", "name"], &[env[0], ("JOB_LAUNCHER_CONTEXT", "inline")]).await;
    assert_eq!(sorted_lines(&by_env), vec![name.clone()], "JOB_LAUNCHER_CONTEXT picks the context");

    // A flag wins over the environment, which wins over the context.
    let wrong_token = cli_with(&["list", "--context", "test", "--token", "nope"], &env).await;
    assert_eq!(wrong_token.code, 2, "{wrong_token:?}");
    assert!(wrong_token.stderr.contains("(401)"), "{wrong_token:?}");
    let env_server = cli_with(&["list", "--context", "test"], &[env[0], ("JOB_LAUNCHER_SERVER", dead.as_str())]).await;
    assert!(env_server.stderr.contains(&format!("at {dead}")), "{env_server:?}");
    let flag_server =
        cli_with(&["list", "--context", "nowhere", "--server", &app.base, "--token", "s3cret", "-o", "name"], &env)
            .await;
    assert_eq!(sorted_lines(&flag_server), vec![name.clone()]);
    let no_such = cli_with(&["--context", "prod", "list"], &env).await;
    assert_eq!(no_such.code, 2);
    assert!(
        no_such.stderr.contains("--context \"prod\": no such context in ")
            && no_such.stderr.contains("(contexts: nowhere, test, inline)"),
        "{no_such:?}"
    );

    // config use-context rewrites the one line and keeps the rest.
    let switched = cli_with(&["config", "use-context", "test"], &env).await;
    assert_eq!((switched.code, switched.stdout.as_str()), (0, "Switched to context \"test\".\n"), "{switched:?}");
    let text = std::fs::read_to_string(&config_path).expect("the config file");
    assert_eq!(text, config.replace("current-context: nowhere", "current-context: test"));
    assert_eq!(cli_with(&["config", "current-context"], &env).await.stdout, "test\n");
    let listed = cli_with(&["list", "-o", "name"], &env).await;
    assert_eq!(sorted_lines(&listed), vec![name.clone()], "the new current context");
    let contexts = cli_with(&["config", "get-contexts"], &env).await;
    assert!(contexts.stdout.lines().any(|l| l.starts_with("*") && l.contains(" test ")), "{contexts:?}");
    let view = cli_with(&["config", "view"], &env).await;
    assert!(view.stdout.contains("token: REDACTED") && !view.stdout.contains("s3cret"), "{view:?}");
    assert_eq!(cli_with(&["config", "use-context", "prod"], &env).await.code, 2);

    // A malformed file is a clear error; a missing default one is none at all.
    dir.file("xdg/kube-job-launcher/config", "contexts:\n  - name: x\n    sever: y\n");
    let malformed = cli_with(&["list"], &env).await;
    assert_eq!(malformed.code, 2, "{malformed:?}");
    assert!(malformed.stderr.contains(&format!("error: the config file {config_path} is invalid: ")), "{malformed:?}");
    assert!(malformed.stderr.contains("sever"), "names the unknown field: {malformed:?}");
    let offline = cli_with(&["render", "--file", "/nonexistent.yaml"], &env).await;
    assert!(!offline.stderr.contains("config file"), "render --file needs no config: {offline:?}");
    let none = cli(&["list", "--server", &app.base]).await;
    assert_eq!(none.code, 2, "no config, no token: {none:?}");
    assert!(none.stderr.contains("(401)") && none.stderr.contains("hint:"), "{none:?}");
}

/// Runs openssl in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn https_servers_are_checked_against_the_ca_file_or_not_at_all() {
    let ns = TestNamespace::create("cli-tls").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("job-template.yaml", SEED_TEMPLATE)]).await;
    let dir = TempDir::new();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &dir.0,
        &[&["req", "-x509"][..], &ec, &["-days", "1", "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.crt"]]
            .concat(),
    );
    openssl(
        &dir.0,
        &[&["req"][..], &ec, &["-subj", "/CN=localhost", "-keyout", "tls.key", "-out", "tls.csr"]].concat(),
    );
    dir.file("tls.ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    openssl(
        &dir.0,
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "tls.ext",
            "-out",
            "tls.crt",
        ],
    );
    let (cert, key, ca) = (dir.path("tls.crt"), dir.path("tls.key"), dir.path("ca.crt"));
    let app = TestApp::start(&ns.name, &["--tls-cert-file", &cert, "--tls-key-file", &key]).await.ready().await;
    let port = app.base.rsplit(':').next().unwrap_or_default().to_string();
    let server = format!("https://localhost:{port}");

    let untrusted = cli(&["templates", "-o", "name", "--server", &server]).await;
    assert_eq!(untrusted.code, 2, "{untrusted:?}");
    assert!(
        untrusted.stderr.contains(&format!(
            "the launcher at {server} presented a certificate that the system's trust store does not accept"
        )) && untrusted.stderr.contains("--ca-file"),
        "{untrusted:?}"
    );
    let trusted = cli(&["--ca-file", &ca, "templates", "-o", "name", "--server", &server]).await;
    assert_eq!((trusted.code, trusted.stdout.as_str()), (0, "job-template\n"), "{trusted:?}");
    let by_ip =
        cli(&["templates", "-o", "name", "--server", &format!("https://127.0.0.1:{port}"), "--ca-file", &ca]).await;
    assert_eq!(by_ip.code, 0, "the certificate names 127.0.0.1 too: {by_ip:?}");
    let insecure = cli(&["templates", "--insecure-skip-tls-verify", "-o", "name", "--server", &server]).await;
    assert_eq!((insecure.code, insecure.stdout.as_str()), (0, "job-template\n"), "{insecure:?}");
    let by_env =
        cli_with(&["templates", "-o", "name", "--server", &server], &[("JOB_LAUNCHER_CA_FILE", ca.as_str())]).await;
    assert_eq!(by_env.code, 0, "{by_env:?}");

    // A context's ca-file, relative to the config file.
    dir.file("xdg/kube-job-launcher/launcher-ca.pem", &std::fs::read_to_string(&ca).expect("ca"));
    dir.file(
        "xdg/kube-job-launcher/config",
        &format!(
            "current-context: tls\ncontexts:\n  - name: tls\n    server: {server}\n    ca-file: launcher-ca.pem\n"
        ),
    );
    let xdg = dir.path("xdg");
    let context = cli_with(&["templates", "-o", "name"], &[("XDG_CONFIG_HOME", xdg.as_str())]).await;
    assert_eq!((context.code, context.stdout.as_str()), (0, "job-template\n"), "{context:?}");
}

#[tokio::test]
async fn watch_follows_a_job_through_its_stream_prints_its_result_and_exits_with_its_outcome() {
    let (_ns, app) = setup("cli-watch").await;
    let launch = |params: Value| {
        let (http, url) = (app.http.clone(), app.url("/v1/jobs"));
        async move {
            let r = http.post(url).json(&serde_json::json!({"template": "fake", "params": params})).send().await;
            r.expect("launch").json::<Value>().await.expect("view")["name"].as_str().expect("name").to_string()
        }
    };
    let ok = launch(serde_json::json!({"duration": "1s", "message": "7 rows"})).await;
    let watched = cli_at(&app, &["watch", &ok, "--timeout", "60s"]).await;
    assert_eq!(watched.code, 0, "{watched:?}");
    assert!(watched.stdout.contains("-> succeeded"), "each change as it happens: {watched:?}");
    assert!(watched.stdout.contains("result: 7 rows"), "the result: {watched:?}");

    let failing = launch(serde_json::json!({"duration": "1s", "exitCode": "3", "message": "bad input"})).await;
    let failed = cli_at(&app, &["watch", &failing, "-o", "json"]).await;
    assert_eq!(failed.code, 1, "{failed:?}");
    assert_eq!(failed.json()["state"], "failed");
    assert_eq!(failed.json()["result"], "bad input", "the failed pod's message is the result");

    let long = launch(serde_json::json!({"duration": "60s"})).await;
    let cancel = async {
        // Cancelled while the watch runs: once its stream is open.
        wait_until(Duration::from_secs(30), "the watch's stream to open", || async {
            app.metrics().await.lines().any(|l| l == "job_launcher_streams_open 1")
        })
        .await;
        app.http.delete(app.url(&format!("/v1/jobs/{long}"))).send().await.expect("cancel").status()
    };
    let args = ["watch", long.as_str(), "--timeout", "60s"];
    let (cancelled, status) = tokio::join!(cli_at(&app, &args), cancel);
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    assert_eq!(cancelled.code, 1, "{cancelled:?}");
    assert!(cancelled.stderr.contains("cancelled"), "{cancelled:?}");

    let missing = cli_at(&app, &["watch", "no-such-job", "--timeout", "20s"]).await;
    assert_eq!(missing.code, 1, "{missing:?}");
}
