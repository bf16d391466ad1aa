//! The launcher, run as its own process (the release binary), with the moments of its start-up:
//! spawned, serving, caches synced, ready.

use std::{
    io::BufRead,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use crate::{BenchResult, cluster};

/// The release binary cargo built for this bench, or `BENCH_LAUNCHER_BIN`.
pub fn binary() -> String {
    std::env::var("BENCH_LAUNCHER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_kube-job-launcher").to_string())
}

/// Start-up moments, from the process's own JSON log (timestamps) and the bench's polling.
#[derive(Debug, Clone, Default)]
pub struct Startup {
    /// Process spawned → the "serving" log line.
    pub serving: Option<Duration>,
    /// Process spawned → the last of "index synced" (jobs, pods) and "templates loaded".
    pub synced: Option<Duration>,
    /// Process spawned → /readyz first answered 200.
    pub ready: Option<Duration>,
    /// Jobs the index listed at start-up.
    pub jobs_listed: Option<u64>,
}

impl Startup {
    /// From the caches' sync to readiness.
    pub fn ready_after_sync(&self) -> Option<Duration> {
        Some(self.ready?.saturating_sub(self.synced?))
    }
}

#[derive(Default)]
struct LogState {
    serving: Option<(String, String, SystemTime)>,
    synced_jobs: Option<(SystemTime, u64)>,
    synced_pods: Option<SystemTime>,
    templates: Option<SystemTime>,
    errors: Vec<String>,
}

pub struct Launcher {
    pub child: Child,
    pub pid: u32,
    pub api: String,
    pub admin: String,
    spawned_at: SystemTime,
    spawned: Instant,
    log: Arc<Mutex<LogState>>,
    pub http: reqwest::Client,
}

impl Launcher {
    /// Starts `kube-job-launcher serve` for `namespace` with `args` and waits until it serves.
    pub async fn start(namespace: &str, args: &[String]) -> BenchResult<Self> {
        let log_filter = std::env::var("BENCH_LAUNCHER_LOG").unwrap_or_else(|_| "info".into());
        let spawned_at = SystemTime::now();
        let spawned = Instant::now();
        let mut command = command();
        let mut child = command
            .args(["serve", "--namespace", namespace, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--log-format", "json", "--log", &log_filter])
            .args(args)
            .env("KUBECONFIG", cluster::kubeconfig_path())
            .env_remove("JOB_LAUNCHER_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary()))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let log = Arc::new(Mutex::new(LogState::default()));
        let shared = log.clone();
        std::thread::spawn(move || read_log(stdout, &shared));
        let deadline = Instant::now() + Duration::from_secs(30);
        let (api, admin) = loop {
            if let Some((api, admin, _)) = log.lock().unwrap_or_else(|p| p.into_inner()).serving.clone() {
                break (api, admin);
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the launcher exited at start-up: {status}").into());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("the launcher did not log \"serving\" within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        if own_session() && session_of(pid) != Some(pid) {
            let _ = child.kill();
            return Err(format!("the launcher (pid {pid}) is not in a session of its own").into());
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self { child, pid, api, admin, spawned_at, spawned, log, http })
    }

    /// Polls /readyz every 2 ms until it answers 200; the time from spawn to then.
    pub async fn wait_ready(&self, timeout: Duration) -> BenchResult<Duration> {
        let url = format!("{}/readyz", self.admin);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = self.http.get(&url).send().await
                && r.status() == 200
            {
                return Ok(self.spawned.elapsed());
            }
            if Instant::now() > deadline {
                return Err(format!("the launcher was not ready within {timeout:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The start-up moments, once ready (the log lines are read a moment later than written).
    pub async fn startup(&self, ready: Duration) -> Startup {
        let since = |t: SystemTime| t.duration_since(self.spawned_at).ok();
        for _ in 0..100 {
            let complete = {
                let s = self.log.lock().unwrap_or_else(|p| p.into_inner());
                s.synced_jobs.is_some() && s.synced_pods.is_some() && s.templates.is_some()
            };
            if complete {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let s = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let synced = [s.synced_jobs.map(|j| j.0), s.synced_pods, s.templates].into_iter().collect::<Option<Vec<_>>>();
        Startup {
            serving: s.serving.as_ref().and_then(|x| since(x.2)),
            synced: synced.and_then(|v| v.into_iter().max()).and_then(since),
            ready: Some(ready),
            jobs_listed: s.synced_jobs.map(|j| j.1),
        }
    }

    /// The instant the process was spawned.
    pub fn spawned(&self) -> Instant {
        self.spawned
    }

    /// Warnings and errors the launcher logged.
    pub fn logged_problems(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).errors.clone()
    }

    pub fn cpu_seconds(&self) -> f64 {
        cluster::cpu_seconds(self.pid).unwrap_or(0.0)
    }

    pub fn rss_mib(&self) -> f64 {
        cluster::memory_mib(self.pid, "VmRSS").unwrap_or(0.0)
    }

    pub fn hwm_mib(&self) -> f64 {
        cluster::memory_mib(self.pid, "VmHWM").unwrap_or(0.0)
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub async fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the launcher runs in a session of its own (the default), as `hack/procs.sh` runs
/// every process of the local control plane, rather than in the bench's.
///
/// The kernel's autogroup scheduling (on where `/proc/sys/kernel/sched_autogroup_enabled` is 1,
/// as here) shares the cores fairly between sessions before it shares them between threads. In
/// the bench's session the launcher shared one session's share with the bench's load clients
/// and its 1,000 stream readers, while the API server, etcd and the controller manager had one
/// each; in a cluster it has a container's CPU share of its own. `BENCH_LAUNCHER_SESSION=bench`
/// runs it the old way, to measure the difference (docs/benchmarks.md).
pub fn own_session() -> bool {
    std::env::var("BENCH_LAUNCHER_SESSION").map_or(true, |v| v != "bench")
}

/// The command that runs the launcher: the binary, or BENCH_LAUNCHER_WRAP around it, under
/// `setsid` unless [`own_session`] says otherwise. (`setsid` execs in place, keeping the pid the
/// bench reads `/proc` with: a child spawned here is not a process group leader.)
fn command() -> Command {
    // BENCH_LAUNCHER_ENV: `NAME=value` pairs (space-separated) for the launcher only, e.g.
    // allocator settings. BENCH_LAUNCHER_WRAP: a command to run it under (a profiler); the
    // figures that read /proc then describe the wrapper, so use it for profiles only.
    let mut program: Vec<String> =
        std::env::var("BENCH_LAUNCHER_WRAP").unwrap_or_default().split_whitespace().map(String::from).collect();
    program.push(binary());
    if own_session() {
        program.insert(0, "setsid".into());
    }
    let mut command = Command::new(&program[0]);
    command.args(&program[1..]);
    for pair in std::env::var("BENCH_LAUNCHER_ENV").unwrap_or_default().split_whitespace() {
        if let Some((k, v)) = pair.split_once('=') {
            command.env(k, v);
        }
    }
    command
}

/// The session id of process `pid` (the sixth field of `/proc/<pid>/stat`, counted after the
/// command name, which may hold spaces).
fn session_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(3)?.parse().ok()
}

/// Reads the launcher's JSON log until it closes: the start-up moments and what went wrong.
fn read_log(stdout: std::process::ChildStdout, shared: &Mutex<LogState>) {
    for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        let at = entry["timestamp"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(SystemTime::from)
            .unwrap_or_else(SystemTime::now);
        let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
        match entry["message"].as_str().unwrap_or_default() {
            "serving" => {
                let addr = |k: &str| format!("http://{}", entry[k].as_str().unwrap_or_default());
                s.serving = Some((addr("api"), addr("admin"), at));
            }
            "index synced" if entry["what"] == "jobs" => {
                s.synced_jobs.get_or_insert((at, entry["count"].as_u64().unwrap_or(0)));
            }
            "index synced" if entry["what"] == "pods" => {
                s.synced_pods.get_or_insert(at);
            }
            "templates loaded" => {
                s.templates.get_or_insert(at);
            }
            _ => {}
        }
        // The bench runs the API without auth on loopback on purpose: that warning is noise.
        let expected = entry["message"] == "the API has no auth";
        if matches!(entry["level"].as_str(), Some("ERROR" | "WARN")) && !expected && s.errors.len() < 20 {
            s.errors.push(line);
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
