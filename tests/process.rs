//! The binary itself: starts, becomes ready, and on SIGTERM stops accepting and exits 0.

mod support;

use std::time::{Duration, Instant};

use support::{LauncherProcess, SEED_TEMPLATE, TestNamespace, put_config_map};

#[tokio::test]
async fn sigterm_stops_the_launcher_cleanly_with_exit_code_0() {
    let ns = TestNamespace::create("sigterm").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("job-template.yaml", SEED_TEMPLATE)]).await;
    let started = Instant::now();
    let mut launcher = LauncherProcess::start(&ns.name, &[]).await;
    eprintln!("ready {:?} after spawn", started.elapsed());

    launcher.signal("TERM");
    assert_eq!(launcher.wait(Duration::from_secs(10)).await, Some(0), "exit code after SIGTERM");
    let logs: Vec<String> = launcher.logs.try_iter().collect();
    assert!(logs.iter().any(|l| l.contains("SIGTERM received")), "{logs:?}");
    let http = reqwest::Client::new();
    assert!(http.get(format!("{}/readyz", launcher.admin)).send().await.is_err(), "the port is closed");
}

#[test]
fn a_zero_where_it_would_spin_is_refused_at_start_with_a_clear_error() {
    for (flag, value) in [
        ("--admission-resync", "0"),
        ("--sqs-poll-interval", "0s"),
        ("--launch-timeout", "0ms"),
        ("--leader-lease-duration", "0"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-job-launcher"))
            .args(["serve", flag, value])
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && (stderr.contains("more than zero") || stderr.contains("at least")),
            "{stderr}"
        );
    }
}

/// A rollout: after SIGTERM, /readyz turns false while the launcher still serves, and requests
/// routed to it before the endpoints update (here: for two seconds after readiness turned false,
/// as a Service whose endpoints lag would) all get answers; no connection is refused.
#[tokio::test]
async fn on_sigterm_readiness_turns_false_first_and_requests_still_routed_to_it_are_served() {
    let ns = TestNamespace::create("rollout").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("job-template.yaml", SEED_TEMPLATE)]).await;
    let mut launcher = LauncherProcess::start(&ns.name, &["--shutdown-delay".into(), "4s".into()]).await;
    let http = reqwest::Client::new();
    launcher.signal("TERM");
    let readyz = format!("{}/readyz", launcher.admin);
    let mut not_ready_at = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while not_ready_at.is_none() && Instant::now() < deadline {
        match http.get(&readyz).send().await {
            Ok(r) if r.status() == 503 => not_ready_at = Some(Instant::now()),
            Ok(_) => {}
            Err(e) => panic!("the readiness port closed before readiness turned false: {e}"),
        }
    }
    let not_ready_at = not_ready_at.expect("readiness turned false after SIGTERM");
    let templates = format!("{}/v1/templates", launcher.api);
    let mut served = 0;
    while not_ready_at.elapsed() < Duration::from_secs(2) {
        let answer = http.get(&templates).send().await;
        assert!(
            answer.as_ref().is_ok_and(|r| r.status() == 200),
            "a request the endpoints still routed here: {answer:?}"
        );
        served += 1;
    }
    assert!(served > 10, "{served} requests in the lag");
    assert_eq!(launcher.wait(Duration::from_secs(15)).await, Some(0), "then it exits cleanly");
}
