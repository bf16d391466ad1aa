//! The binary itself: starts, becomes ready, and on SIGTERM stops accepting and exits 0.

mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{SEED_TEMPLATE, TestNamespace, kubeconfig_path, put_config_map, wait_until};

#[tokio::test]
async fn sigterm_stops_the_launcher_cleanly_with_exit_code_0() {
    let ns = TestNamespace::create("sigterm").await;
    put_config_map(&ns.client, &ns.name, "job-template-cm", &[("job-template.yaml", SEED_TEMPLATE)]).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-job-launcher"))
        .args(["serve", "--namespace", &ns.name, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--log-format", "json"])
        .env("KUBECONFIG", kubeconfig_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    // The admin address is only known from the "serving" log line.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let admin = loop {
        let line = rx.recv_timeout(Duration::from_secs(20)).expect("a serving log line within 20s");
        let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if entry["message"] == "serving" {
            break entry["admin"].as_str().expect("admin address").to_string();
        }
    };
    let http = reqwest::Client::new();
    let readyz = format!("http://{admin}/readyz");
    wait_until(Duration::from_secs(20), "readiness", || async {
        http.get(&readyz).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let ready_after = started.elapsed();

    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the launcher did not exit within 10s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "exit code after SIGTERM");
    let logs: Vec<String> = rx.try_iter().collect();
    assert!(logs.iter().any(|l| l.contains("SIGTERM received")), "{logs:?}");
    assert!(http.get(&readyz).send().await.is_err(), "the port is closed");
    eprintln!("ready {ready_after:?} after spawn");
}
