//! The launcher binary run as a process of its own, for signals (SIGTERM, SIGKILL).

use std::time::Duration;

use super::cluster::{kubeconfig_path, wait_until};

/// The launcher binary, run as a process of its own (for signals: SIGTERM, SIGKILL).
pub struct LauncherProcess {
    pub child: std::process::Child,
    pub admin: String,
    pub api: String,
    /// The process's log lines (JSON), as they come.
    pub logs: std::sync::mpsc::Receiver<String>,
}

impl LauncherProcess {
    /// Starts `kube-job-launcher serve` for `namespace` with `args`, and waits until it is ready.
    pub async fn start(namespace: &str, args: &[String]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kube-job-launcher"))
            .args(["serve", "--namespace", namespace, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(args)
            .env("KUBECONFIG", kubeconfig_path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, logs) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (api, admin) = loop {
            let line = logs.recv_timeout(Duration::from_secs(30)).expect("a serving log line within 30s");
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if entry["message"] == "serving" {
                let addr = |k: &str| format!("http://{}", entry[k].as_str().unwrap_or_default());
                break (addr("api"), addr("admin"));
            }
        };
        let process = Self { child, admin, api, logs };
        let readyz = format!("{}/readyz", process.admin);
        let http = reqwest::Client::new();
        wait_until(Duration::from_secs(30), "the launcher process to be ready", || async {
            http.get(&readyz).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        process
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the process.
    pub fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} failed");
    }

    /// Waits for the process to exit, at most `timeout`; returns its exit code (None: a signal).
    pub async fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(std::time::Instant::now() < deadline, "the launcher did not exit within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for LauncherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
