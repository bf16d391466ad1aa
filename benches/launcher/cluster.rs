//! The local control plane as the bench uses it: a client, namespaces of its own, templates, Jobs
//! created straight through the apiserver, watches that time events, and process statistics.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::TryStreamExt;
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{ConfigMap, Namespace, Pod, ServiceAccount},
};
use kube::{
    Api, Client, Config,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::watcher,
};
use kube_job_launcher::{
    api::{LaunchRequest, ParamValue, TemplateSource},
    launch::{JobSettings, Origin, Source, naming, prepare},
    template::Template,
};
use serde_json::Value;

use crate::BenchResult;

/// Label on every namespace the bench creates, so that an interrupted run's leftovers are found.
pub const BENCH_LABEL: &str = "kube-job-launcher.bench";

/// Runs pods on kwok's fake nodes; `duration` and `startDelay` steer them.
pub const FAKE: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  labels:
    app: bench
  annotations:
    job-launcher.dev/parameters: |
      - name: message
        default: hello
      - name: exitCode
        default: "0"
        pattern: '[0-9]{1,3}'
      - name: duration
        default: 300ms
      - name: startDelay
        default: 100ms
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations:
        fake.job-launcher.dev/exit-code: "$(params.exitCode)"
        fake.job-launcher.dev/duration: "$(params.duration)"
        fake.job-launcher.dev/start-delay: "$(params.startDelay)"
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "echo $(params.message)"]
"#;

/// The same Job, created suspended: no pods, so a create costs the apiserver what a Job create
/// costs and nothing else (no Job controller, scheduler or kwok work behind it).
pub fn idle_template() -> String {
    FAKE.replace("spec:\n  backoffLimit: 0", "spec:\n  suspend: true\n  backoffLimit: 0")
}

/// The kubeconfig of the local control plane: `KJL_BENCH_KUBECONFIG`, else `.local/kubeconfig`.
/// `KUBECONFIG` is deliberately not used, so the bench never touches a real cluster.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("KJL_BENCH_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/kubeconfig"))
}

/// A kube-rs client with default settings, as the launcher builds its own.
pub async fn client() -> BenchResult<Client> {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path)
        .map_err(|e| format!("no local control plane: cannot read {} ({e}); run `make dev-up`", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let client = Client::try_from(config)?;
    client.apiserver_version().await.map_err(|e| format!("the local control plane does not answer ({e})"))?;
    Ok(client)
}

/// A value from `.local/dev.env` (`export NAME="value"`).
pub fn dev_env(name: &str) -> BenchResult<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/dev.env");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {} ({e})", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("export {name}=")))
        .map(|v| v.trim_matches('"').to_string())
        .ok_or_else(|| format!("{name} is not in {}", path.display()).into())
}

pub fn random_suffix() -> String {
    naming::random_suffix()
}

/// A namespace of the bench's own, with the template ConfigMap in it.
pub struct BenchNamespace {
    pub name: String,
    pub client: Client,
}

impl BenchNamespace {
    pub async fn create(client: &Client, prefix: &str) -> BenchResult<Self> {
        let name = format!("bench-{prefix}-{}", random_suffix());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { BENCH_LABEL: "true" } }
        }))?;
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
        // Pods need the namespace's default ServiceAccount, which a controller creates.
        let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        wait_for(Duration::from_secs(30), "the default ServiceAccount", || async {
            sa.get_opt("default").await.ok().flatten().is_some()
        })
        .await?;
        let this = Self { name, client: client.clone() };
        this.put_templates().await?;
        Ok(this)
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Templates `fake` (pods) and `idle` (suspended) in ConfigMap `job-template-cm`.
    async fn put_templates(&self) -> BenchResult<()> {
        let idle = idle_template();
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "job-template-cm" },
            "data": { "fake.yaml": FAKE, "idle.yaml": idle }
        });
        self.api::<ConfigMap>()
            .patch("job-template-cm", &PatchParams::apply("kube-job-launcher-bench").force(), &Patch::Apply(&cm))
            .await?;
        Ok(())
    }

    /// Deletes the namespace and waits until it is gone, so its Jobs stop costing anything.
    pub async fn delete(self) -> BenchResult<()> {
        delete_namespace(&self.client, &self.name).await
    }
}

pub async fn delete_namespace(client: &Client, name: &str) -> BenchResult<()> {
    delete_namespace_within(client, name, Duration::from_secs(300)).await
}

/// Deletes namespace `name` and waits up to `timeout` until it is gone.
pub async fn delete_namespace_within(client: &Client, name: &str, timeout: Duration) -> BenchResult<()> {
    let api = Api::<Namespace>::all(client.clone());
    // Deleting the Jobs first, in one call, is quicker than leaving them to the namespace
    // controller; pods go with their Jobs.
    let jobs: Api<Job> = Api::namespaced(client.clone(), name);
    let _ = jobs.delete_collection(&DeleteParams::background(), &ListParams::default()).await;
    let _ = api.delete(name, &DeleteParams::background()).await;
    wait_for(timeout, &format!("namespace {name} to go"), || async { matches!(api.get_opt(name).await, Ok(None)) })
        .await
}

/// Deletes what an interrupted earlier run left behind.
pub async fn delete_leftovers(client: &Client) -> BenchResult<()> {
    let api = Api::<Namespace>::all(client.clone());
    let left = api.list(&ListParams::default().labels(&format!("{BENCH_LABEL}=true"))).await?;
    for ns in left.items {
        if let Some(name) = ns.metadata.name {
            eprintln!("  deleting namespace {name}, left by an earlier run");
            delete_namespace(client, &name).await?;
        }
    }
    Ok(())
}

/// Polls `check` every 20 ms until it is true, or fails after `timeout`.
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut check: F) -> BenchResult<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Job manifests exactly as the launcher renders them, from the launcher's own code: the
/// template parsed and the request prepared as an HTTP launch would be. Only the name changes
/// from one Job to the next.
pub struct JobFactory {
    template: Template,
    namespace: String,
    capped: bool,
    source: Source,
    instance: &'static str,
}

impl JobFactory {
    /// Jobs as HTTP launches of `template` make them; `capped`: queued, as under `--max-active`.
    pub fn new(template: &str, namespace: &str, capped: bool) -> BenchResult<Self> {
        Self::with_source(template, namespace, capped, Source::Http)
    }

    pub fn with_source(template: &str, namespace: &str, capped: bool, source: Source) -> BenchResult<Self> {
        let text = if template == "idle" { idle_template() } else { FAKE.to_string() };
        let from = TemplateSource { config_map: "job-template-cm".into(), key: format!("{template}.yaml") };
        let template = Template::parse(template, from, &text).map_err(|e| format!("template {template}: {e}"))?;
        Ok(Self { template, namespace: namespace.to_string(), capped, source, instance: "default" })
    }

    /// The same Jobs under launcher instance `instance`: a launcher of the default instance
    /// running meanwhile neither watches nor indexes them.
    pub fn of_instance(self, instance: &'static str) -> Self {
        Self { instance, ..self }
    }

    /// A Job of this template with `params` and `priority`, under a fresh random name.
    pub fn job(&self, params: &[(&str, &str)], priority: i32) -> BenchResult<Job> {
        self.job_as(params, priority, "bench", None)
    }

    /// The same, asked for by `caller`, with an idempotency key if given.
    pub fn job_as(
        &self,
        params: &[(&str, &str)],
        priority: i32,
        caller: &str,
        idempotency_key: Option<String>,
    ) -> BenchResult<Job> {
        let request = LaunchRequest {
            template: Some(self.template.name.clone()),
            params: params.iter().map(|(k, v)| (k.to_string(), ParamValue::String(v.to_string()))).collect(),
            priority,
            idempotency_key,
            ..LaunchRequest::default()
        };
        let origin = Origin { request_id: Some(format!("{:016x}", rand_u64())), ..Origin::new(self.source, caller) };
        let notices = kube_job_launcher::launch::NoticePolicy::default();
        let settings = JobSettings {
            namespace: &self.namespace,
            instance: self.instance,
            default_ttl_seconds: 3600,
            globally_capped: self.capped,
            notices: &notices,
        };
        let prepared = prepare(&self.template, &request, &origin, &settings).map_err(|e| e.to_string())?;
        let mut manifest: Value = prepared.manifest;
        manifest["metadata"]["namespace"] = Value::String(self.namespace.clone());
        Ok(serde_json::from_value(manifest)?)
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

/// What one closed-loop run measured: every request's latency and the run's wall time.
#[derive(Debug, Clone, Default)]
pub struct LoadRun {
    pub latencies_ms: Vec<f64>,
    pub wall: Duration,
    pub errors: usize,
    pub first_error: Option<String>,
}

impl LoadRun {
    pub fn per_second(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.wall.as_secs_f64()
    }
}

/// Runs `count` operations on `concurrency` workers, each doing one after another (a closed
/// loop), and times every operation and the whole run.
pub async fn closed_loop<F, Fut>(count: usize, concurrency: usize, op: F) -> LoadRun
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, op) = (next.clone(), op.clone());
            tokio::spawn(async move {
                let mut run = LoadRun::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let t = Instant::now();
                    match op(i).await {
                        Ok(()) => run.latencies_ms.push(t.elapsed().as_secs_f64() * 1e3),
                        Err(e) => {
                            run.errors += 1;
                            run.first_error.get_or_insert(e);
                        }
                    }
                }
                run
            })
        })
        .collect();
    let mut total = LoadRun::default();
    for w in workers {
        if let Ok(run) = w.await {
            total.latencies_ms.extend(run.latencies_ms);
            total.errors += run.errors;
            if total.first_error.is_none() {
                total.first_error = run.first_error;
            }
        }
    }
    total.wall = started.elapsed();
    total
}

/// Creates `count` Jobs of `factory` straight through the apiserver with kube-rs.
pub async fn create_jobs(
    client: &Client,
    ns: &str,
    factory: Arc<JobFactory>,
    count: usize,
    concurrency: usize,
) -> LoadRun {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    closed_loop(count, concurrency, move |_| {
        let (api, factory) = (api.clone(), factory.clone());
        async move {
            let job = factory.job(&[], 0).map_err(|e| e.to_string())?;
            api.create(&PostParams::default(), &job).await.map(drop).map_err(|e| e.to_string())
        }
    })
    .await
}

/// Waits until `count` Jobs of `ns` carry the Job controller's `Suspended` condition: the
/// controller has caught up with them, and no more updates (watch events) are on their way.
pub async fn wait_settled(client: &Client, ns: &str, count: usize, timeout: Duration) -> BenchResult<()> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let mut settled = std::collections::HashSet::new();
    let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()));
    let deadline = tokio::time::Instant::now() + timeout;
    while settled.len() < count {
        let event = tokio::time::timeout_at(deadline, stream.try_next())
            .await
            .map_err(|_| format!("only {} of {count} Jobs settled after {timeout:?}", settled.len()))??;
        let job = match event {
            Some(watcher::Event::Apply(j) | watcher::Event::InitApply(j)) => j,
            Some(_) => continue,
            None => break,
        };
        let suspended = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Suspended" && c.status == "True"));
        if suspended && let Some(name) = job.metadata.name {
            settled.insert(name);
        }
    }
    Ok(())
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// How the threads of `pid` alive now have waited for a core, from `/proc/PID/task/*/schedstat`
/// (time on a core, time runnable on a run queue, in ns; then how many times they were run).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunQueue {
    /// Seconds runnable but waiting for a core, summed over the threads.
    pub waited_s: f64,
    /// Times a thread was put on a core.
    pub runs: u64,
}

impl RunQueue {
    pub fn read(pid: u32) -> Option<Self> {
        let mut total = Self::default();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            // A thread that ended in between has no file any more.
            let Ok(stat) = std::fs::read_to_string(task.ok()?.path().join("schedstat")) else { continue };
            let fields: Vec<u64> = stat.split_whitespace().filter_map(|f| f.parse().ok()).collect();
            total.waited_s += *fields.get(1)? as f64 / 1e9;
            total.runs += *fields.get(2)?;
        }
        Some(total)
    }

    pub fn since(self, before: Self) -> Self {
        Self { waited_s: self.waited_s - before.waited_s, runs: self.runs.saturating_sub(before.runs) }
    }

    /// The mean wait for a core each time a thread was run, in µs.
    pub fn mean_wait_us(&self) -> f64 {
        self.waited_s * 1e6 / self.runs.max(1) as f64
    }
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A `/proc/PID/status` figure in MiB (`VmRSS`, `VmHWM`).
pub fn memory_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:")))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The local control plane's processes, from `.local/run/NAME.pid`, for CPU accounting.
pub fn control_plane_pids() -> BTreeMap<&'static str, u32> {
    let run = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/run");
    ["kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok", "sqs"]
        .into_iter()
        .filter_map(|name| {
            let pid = std::fs::read_to_string(run.join(format!("{name}.pid"))).ok()?.trim().parse().ok()?;
            Some((name, pid))
        })
        .collect()
}

/// Busy CPU seconds of the whole machine so far (every core, from `/proc/stat`).
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    let busy: f64 = fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Some(busy / clock_ticks())
}

/// Below this many busy cores over a window, the machine counts as quiet.
const QUIET_CORES: f64 = 0.25;
/// The windows `wait_quiet` reads the machine's CPU over, and how many in a row must be quiet.
const QUIET_WINDOW: Duration = Duration::from_millis(500);
const QUIET_WINDOWS: usize = 2;

/// Waits until the whole machine has been quiet (under `QUIET_CORES` busy) for `QUIET_WINDOWS`
/// windows in a row, so that a measurement does not carry the control plane's work on what the
/// bench did before it (deleted Jobs and pods, a namespace going, a large list); at most
/// `timeout`.
pub async fn wait_quiet(timeout: Duration) -> Quiet {
    let started = Instant::now();
    let mut quiet_in_a_row = 0;
    let mut before = machine_busy_seconds();
    while started.elapsed() < timeout {
        tokio::time::sleep(QUIET_WINDOW).await;
        let now = machine_busy_seconds();
        let busy_cores = match (before, now) {
            (Some(b), Some(n)) => (n - b) / QUIET_WINDOW.as_secs_f64(),
            _ => return Quiet { waited: started.elapsed(), quiet: false },
        };
        before = now;
        quiet_in_a_row = if busy_cores < QUIET_CORES { quiet_in_a_row + 1 } else { 0 };
        if quiet_in_a_row == QUIET_WINDOWS {
            return Quiet { waited: started.elapsed(), quiet: true };
        }
    }
    Quiet { waited: started.elapsed(), quiet: false }
}

/// What `wait_quiet` found: how long it waited, and whether the machine went quiet.
pub struct Quiet {
    pub waited: Duration,
    pub quiet: bool,
}

impl std::fmt::Display for Quiet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.quiet { "quiet" } else { "still busy" };
        write!(f, "the machine was {state} after {:.1} s", self.waited.as_secs_f64())
    }
}

/// CPU seconds of every process in `pids`, and of the machine as a whole (`machine`).
pub fn cpu_snapshot(pids: &BTreeMap<&'static str, u32>) -> BTreeMap<&'static str, f64> {
    let mut out: BTreeMap<&'static str, f64> = pids.iter().filter_map(|(n, p)| Some((*n, cpu_seconds(*p)?))).collect();
    if let Some(busy) = machine_busy_seconds() {
        out.insert("machine", busy);
    }
    out
}

/// CPU seconds used between two snapshots, by process (one missing before started in between,
/// from 0); `other` is what the rest of the machine
/// used (other engineers' builds, say): a run where it is large was disturbed.
pub fn cpu_delta(before: &BTreeMap<&'static str, f64>, after: &BTreeMap<&'static str, f64>) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> =
        after.iter().map(|(n, a)| (n.to_string(), a - before.get(n).copied().unwrap_or(0.0))).collect();
    if let Some(machine) = out.remove("machine") {
        let known: f64 = out.values().sum();
        out.insert("other".into(), (machine - known).max(0.0));
    }
    out
}

/// The API server's Go runtime as its `/metrics` reports it: what it allocates and how often it
/// collects, beside the process's CPU that `/proc` gives. Counters; `since` makes a run's share.
/// (Its `go_cpu_classes_*` estimates are left out: the runtime updates them only at the end of a
/// GC cycle, so over a run with no cycle they read zero.)
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct GoRuntime {
    pub allocated_mib: f64,
    pub gc_cycles: f64,
}

impl GoRuntime {
    const ALLOCATED: &str = "go_gc_heap_allocs_bytes_total";
    const CYCLES: &str = "go_gc_cycles_total_gc_cycles_total";

    /// From the text of a `/metrics` page; a figure it lacks is an error, not a zero.
    pub fn parse(text: &str) -> BenchResult<Self> {
        let value = |name: &str| -> BenchResult<f64> {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .ok_or_else(|| format!("the API server's /metrics has no {name}").into())
        };
        Ok(Self { allocated_mib: value(Self::ALLOCATED)? / (1024.0 * 1024.0), gc_cycles: value(Self::CYCLES)? })
    }

    pub async fn read(client: &Client) -> BenchResult<Self> {
        let request = http::Request::get("/metrics").body(Vec::new())?;
        Self::parse(&client.request_text(request).await?)
    }

    pub fn since(&self, before: &Self) -> Self {
        Self { allocated_mib: self.allocated_mib - before.allocated_mib, gc_cycles: self.gc_cycles - before.gc_cycles }
    }

    /// Both spans' figures together.
    pub fn plus(&self, other: &Self) -> Self {
        Self { allocated_mib: self.allocated_mib + other.allocated_mib, gc_cycles: self.gc_cycles + other.gc_cycles }
    }

    /// The figures per 1,000 of `n` operations.
    pub fn per_1000(&self, n: usize) -> Self {
        let f = 1000.0 / n.max(1) as f64;
        Self { allocated_mib: self.allocated_mib * f, gc_cycles: self.gc_cycles * f }
    }

    /// `parse` reads the figures by their exact names (not a longer name that starts alike), and
    /// refuses a page that lacks one.
    pub fn self_check() {
        let page = "go_gc_heap_allocs_bytes_total_x 9\n\
                    go_gc_heap_allocs_bytes_total 1.048576e+08\n\
                    go_gc_cycles_total_gc_cycles_total 7\n";
        let r = Self::parse(page).expect("a full page parses");
        assert_eq!((r.allocated_mib, r.gc_cycles), (100.0, 7.0));
        assert!(Self::parse("go_gc_cycles_total_gc_cycles_total 7\n").is_err());
    }
}

/// What a watch of a namespace's Jobs and pods saw, with the time of each event.
#[derive(Debug, Default)]
pub struct Seen {
    /// Jobs by name: when first seen, when first seen unsuspended, when first seen finished.
    pub created: HashMap<String, Instant>,
    pub admitted: Vec<(String, Instant)>,
    pub finished: Vec<(String, Instant)>,
    /// The Job of each pod, in the order the pods appeared, with the time.
    pub first_pods: Vec<(String, Instant)>,
}

/// Watches the Jobs (and, with `pods`, the pods) of `ns` until dropped.
pub struct Observer {
    pub seen: Arc<Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Observer {
    pub async fn start(client: &Client, ns: &str, pods: bool) -> BenchResult<Self> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut tasks = Vec::new();
        let (tx, rx) = tokio::sync::mpsc::channel::<()>(2);
        {
            let (api, seen, tx) = (Api::<Job>::namespaced(client.clone(), ns), seen.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                let config = watcher::Config::default();
                let mut stream = std::pin::pin!(watcher(api, config));
                let mut admitted = std::collections::HashSet::new();
                let mut finished = std::collections::HashSet::new();
                while let Ok(Some(event)) = stream.try_next().await {
                    let job = match event {
                        watcher::Event::Apply(j) | watcher::Event::InitApply(j) => j,
                        watcher::Event::InitDone => {
                            let _ = tx.send(()).await;
                            continue;
                        }
                        _ => continue,
                    };
                    let now = Instant::now();
                    let name = job.metadata.name.clone().unwrap_or_default();
                    let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
                    let done = job.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
                        cs.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
                    });
                    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                    s.created.entry(name.clone()).or_insert(now);
                    if !suspended && admitted.insert(name.clone()) {
                        s.admitted.push((name.clone(), now));
                    }
                    if done && finished.insert(name.clone()) {
                        s.finished.push((name, now));
                    }
                }
            }));
        }
        if pods {
            let (api, seen, tx) = (Api::<Pod>::namespaced(client.clone(), ns), seen.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()));
                let mut jobs_with_pods = std::collections::HashSet::new();
                while let Ok(Some(event)) = stream.try_next().await {
                    let pod = match event {
                        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => p,
                        watcher::Event::InitDone => {
                            let _ = tx.send(()).await;
                            continue;
                        }
                        _ => continue,
                    };
                    let job = pod.metadata.labels.as_ref().and_then(|l| l.get("batch.kubernetes.io/job-name")).cloned();
                    if let Some(job) = job
                        && jobs_with_pods.insert(job.clone())
                    {
                        seen.lock().unwrap_or_else(|p| p.into_inner()).first_pods.push((job, Instant::now()));
                    }
                }
            }));
        }
        drop(tx);
        let mut rx = rx;
        for _ in 0..tasks.len() {
            tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.map_err(|_| "a watch did not sync")?;
        }
        Ok(Self { seen, tasks })
    }

    pub fn read<R>(&self, f: impl FnOnce(&Seen) -> R) -> R {
        f(&self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn created(&self) -> usize {
        self.read(|s| s.created.len())
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
