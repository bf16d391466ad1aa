//! The `scale100k` phase: the launcher with 100,000 Jobs in its namespace (times BENCH_SCALE),
//! created straight through the API server as the launcher renders them and carrying what the
//! index keeps of a real Job: the launcher's labels (with the instance label) and annotations,
//! callers, idempotency keys, team labels; 80 % of them finished (Complete or Failed), and one in
//! ten with a finished pod whose container left a termination message (the Job's result).
//!
//! Measured: RSS at 10,000 and 100,000 Jobs (the slope is the memory per Job); start → /readyz
//! at 100,000 against a bare list of the same Jobs and pods by the bench (same selector, same
//! page size, and a streaming list); `GET /v1/jobs` latencies under filters and a `continue`
//! walk; HTTP launches against raw creates with the 100,000 present, with the API server's CPU
//! per 1,000 of each (what the launcher's watches cost it).

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::TryStreamExt;
use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::watcher,
};
use kube_job_launcher::{keys, launch::Source};
use serde_json::{Value, json};

use crate::{
    BenchResult, Settings,
    cluster::{self, BenchNamespace, GoRuntime, JobFactory, closed_loop},
    phases::{self, Measured, StartRun, note},
    process::Launcher,
    stats::{self, ms},
};

/// Template labels the Jobs are spread over ("idle" is the one the launcher serves; the others
/// are names only, as for Jobs of templates since removed).
const TEMPLATES: [&str; 5] = ["idle", "report", "export", "ingest", "train"];
/// The Jobs name another controller in `spec.managedBy`, so that the Job controller leaves them
/// as the bench wrote them (no status updates of its own for 100,000 Jobs).
const MANAGED_ELSEWHERE: &str = "bench.job-launcher.dev/none";
/// The instance every bench Job carries (the launcher's default).
const INSTANCE: &str = "default";

/// The `GET /v1/jobs` queries timed at scale: what the dashboard and tools ask.
pub const QUERIES: [(&str, &str); 8] = [
    ("", "limit=100"),
    ("state=queued", "state=queued&limit=100"),
    ("state=failed", "state=failed&limit=100"),
    ("template=report", "template=report&limit=100"),
    ("template=report&state=queued", "template=report&state=queued&limit=100"),
    ("requestedBy=user-7", "requestedBy=user-7&limit=100"),
    ("requestedBy=user-7&state=failed", "requestedBy=user-7&state=failed&limit=100"),
    ("label=team=team-3", "label=team%3Dteam-3&limit=100"),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Queued,
    Succeeded,
    Failed,
}

/// What Job `i` is: 20 % queued, 70 % succeeded, 10 % failed; one in ten keeps its pod.
fn kind(i: usize) -> (Kind, bool) {
    let kind = match i % 10 {
        8 | 9 => Kind::Queued,
        0 => Kind::Failed,
        _ => Kind::Succeeded,
    };
    (kind, i % 20 == 1 || i % 20 == 10)
}

/// How the launcher lists at start-up, read from its source: the page size, and whether it asks
/// for a streaming list.
pub fn launcher_list_mode() -> (u32, bool) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/jobs");
    let text: String = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    let page = text
        .lines()
        .find_map(|l| {
            l.split_once("LIST_PAGE_SIZE: u32 =")?.1.trim().trim_end_matches(';').replace('_', "").parse().ok()
        })
        .unwrap_or(500);
    (page, text.contains(".streaming_lists()"))
}

fn population_job(factory: &JobFactory, i: usize) -> BenchResult<Job> {
    let key = i.is_multiple_of(4).then(|| format!("order-{i}"));
    let message = format!("item {i}");
    let mut job = factory.job_as(&[("message", &message)], (i % 7) as i32, &format!("user-{}", (i / 7) % 50), key)?;
    let labels = job.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(keys::TEMPLATE.into(), TEMPLATES[(i / 3) % TEMPLATES.len()].into());
    labels.insert("team".into(), format!("team-{}", i % 20));
    if let Some(spec) = job.spec.as_mut() {
        spec.managed_by = Some(MANAGED_ELSEWHERE.into());
    }
    Ok(job)
}

fn finished_status(kind: Kind, now: &str) -> Value {
    let condition = |t: &str, reason: Option<&str>| {
        json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason,
               "message": reason.map(|_| "Job has reached the specified backoff limit")})
    };
    if kind == Kind::Failed {
        let reason = Some("BackoffLimitExceeded");
        json!({"status": {"startTime": now, "failed": 1,
            "conditions": [condition("FailureTarget", reason), condition("Failed", reason)]}})
    } else {
        json!({"status": {"startTime": now, "completionTime": now, "succeeded": 1,
            "conditions": [condition("SuccessCriteriaMet", None), condition("Complete", None)]}})
    }
}

/// A finished pod of `job`, never scheduled (a scheduler name nobody serves), its status written
/// by the bench as a kubelet would. It names its Job as its controller, as the Job controller's
/// pods do: the controller manager matches a pod with no controller against the selector of
/// every Job in its namespace, and 10,000 such pods among 100,000 Jobs kept one of the two cores
/// busy for about a quarter of an hour after the population was made (a goroutine dump showed
/// the Job controller's `addPod` in `GetPodJobs`), through the launch runs.
fn result_pod(job: &Job, i: usize) -> BenchResult<Pod> {
    let name = job.metadata.name.clone().ok_or("a created Job without a name")?;
    let uid = job.metadata.uid.clone().ok_or("a created Job without a uid")?;
    let mut labels = job.metadata.labels.clone().unwrap_or_default();
    labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
    labels.insert("job-name".into(), name.clone());
    let owner = json!({"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                       "controller": true, "blockOwnerDeletion": true});
    Ok(serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-p{i}"), "labels": labels, "ownerReferences": [owner]},
        "spec": {"schedulerName": "bench-none", "restartPolicy": "Never",
                 "containers": [{"name": "main", "image": "busybox"}]}
    }))?)
}

fn pod_status(kind: Kind, now: &str, i: usize) -> Value {
    let (phase, code, reason) =
        if kind == Kind::Failed { ("Failed", 3, "Error") } else { ("Succeeded", 0, "Completed") };
    let message = format!(r#"{{"rows":{i},"output":"s3://bench-results/{i}.parquet"}}"#);
    json!({"status": {"phase": phase, "containerStatuses": [{
        "name": "main", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "reason": reason, "message": message,
                                 "startedAt": now, "finishedAt": now}}}]}})
}

async fn create_one(jobs: &Api<Job>, pods: &Api<Pod>, factory: &JobFactory, i: usize, now: &str) -> BenchResult<()> {
    let created = jobs.create(&PostParams::default(), &population_job(factory, i)?).await?;
    let (kind, with_pod) = kind(i);
    if kind == Kind::Queued {
        return Ok(());
    }
    let name = created.metadata.name.clone().ok_or("a created Job without a name")?;
    jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(finished_status(kind, now))).await?;
    if with_pod {
        let pod = pods.create(&PostParams::default(), &result_pod(&created, i)?).await?;
        let pod_name = pod.metadata.name.ok_or("a created pod without a name")?;
        pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(pod_status(kind, now, i))).await?;
    }
    Ok(())
}

/// Creates Jobs `from..to` of the population (64 at a time): Jobs/s over the wall time.
async fn populate(client: &Client, ns: &str, from: usize, to: usize) -> BenchResult<f64> {
    let factory = Arc::new(JobFactory::with_source("idle", ns, false, Source::Cli)?);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    note(format!("[scale100k] creating Jobs {from}..{to} (80 % finished, 10 % with a result pod)"));
    let run = closed_loop(to - from, 64, move |k| {
        let (jobs, pods, factory, now) = (jobs.clone(), pods.clone(), factory.clone(), now.clone());
        async move { create_one(&jobs, &pods, &factory, from + k, &now).await.map_err(|e| e.to_string()) }
    })
    .await;
    if run.errors > 0 {
        return Err(format!("cannot create the Jobs: {}", run.first_error.unwrap_or_default()).into());
    }
    let rate = run.latencies_ms.len() as f64 / run.wall.as_secs_f64();
    note(format!("  {} Jobs in {:.1} s ({rate:.0}/s)", to - from, run.wall.as_secs_f64()));
    Ok(rate)
}

/// A list of the launcher's Jobs and pods by the bench, as the launcher's start-up does it.
#[derive(Debug, Clone, Default)]
pub struct BareList {
    pub took: Duration,
    pub jobs: usize,
    pub pods: usize,
    pub apiserver_cpu_s: f64,
}

async fn paged<K>(api: Api<K>, page: u32) -> BenchResult<usize>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let selector = keys::managed_selector(INSTANCE);
    let (mut count, mut token) = (0, None::<String>);
    loop {
        let mut params = ListParams::default().labels(&selector).limit(page);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let list = api.list(&params).await?;
        count += list.items.len();
        token = list.metadata.continue_.filter(|c| !c.is_empty());
        if token.is_none() {
            return Ok(count);
        }
    }
}

async fn streamed<K>(api: Api<K>) -> BenchResult<usize>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let config = watcher::Config::default().labels(&keys::managed_selector(INSTANCE)).streaming_lists();
    let mut stream = std::pin::pin!(watcher(api, config));
    let mut count = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(120), stream.try_next()).await {
            Ok(Ok(Some(watcher::Event::InitApply(_)))) => count += 1,
            Ok(Ok(Some(watcher::Event::InitDone))) => return Ok(count),
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => return Err("the streaming list ended".into()),
            Ok(Err(e)) => return Err(format!("streaming list: {e}").into()),
            Err(_) => return Err("the streaming list did not finish in 120 s".into()),
        }
    }
}

/// The Jobs and the pods listed at once (as the launcher's two watches do): paged with `page`,
/// or streamed (`sendInitialEvents`) when `page` is None.
async fn bare_list(client: &Client, ns: &str, page: Option<u32>) -> BenchResult<BareList> {
    let (jobs, pods): (Api<Job>, Api<Pod>) = (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns));
    let pids = cluster::control_plane_pids();
    let before = cluster::cpu_snapshot(&pids);
    let started = Instant::now();
    let (jobs, pods) = match page {
        Some(p) => tokio::try_join!(paged(jobs, p), paged(pods, p))?,
        None => tokio::try_join!(streamed(jobs), streamed(pods))?,
    };
    let took = started.elapsed();
    let cpu = cluster::cpu_delta(&before, &cluster::cpu_snapshot(&pids));
    Ok(BareList { took, jobs, pods, apiserver_cpu_s: cpu.get("kube-apiserver").copied().unwrap_or(0.0) })
}

/// One `GET /v1/jobs` query timed `n` times one after another (after a warm-up).
#[derive(Debug, Clone, Default)]
pub struct Reads {
    pub label: &'static str,
    pub latencies_ms: Vec<f64>,
    /// Items on the first page.
    pub items: usize,
}

async fn get_timed(launcher: &Launcher, url: &str) -> BenchResult<(f64, bytes::Bytes)> {
    let started = Instant::now();
    let response = launcher.http.get(url).send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    let took = ms(started.elapsed());
    if status != 200 {
        return Err(format!("GET {url}: {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    Ok((took, body))
}

async fn reads(launcher: &Launcher, label: &'static str, query: &str, n: usize) -> BenchResult<Reads> {
    let url = format!("{}/v1/jobs?{query}", launcher.api);
    let (_, first) = get_timed(launcher, &url).await?;
    let page: Value = serde_json::from_slice(&first)?;
    let items = page["items"].as_array().map_or(0, Vec::len);
    for _ in 0..10 {
        get_timed(launcher, &url).await?;
    }
    let mut latencies_ms = Vec::with_capacity(n);
    for _ in 0..n {
        latencies_ms.push(get_timed(launcher, &url).await?.0);
    }
    Ok(Reads { label, latencies_ms, items })
}

/// A walk through every page of `GET /v1/jobs?limit=100` with `continue`.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    pub took: Duration,
    pub page_ms: Vec<f64>,
    pub items: usize,
    pub distinct: usize,
}

async fn walk(launcher: &Launcher) -> BenchResult<Walk> {
    let mut names = HashSet::new();
    let mut w = Walk::default();
    let mut token: Option<String> = None;
    loop {
        let mut url = format!("{}/v1/jobs?limit=100", launcher.api);
        if let Some(t) = &token {
            url.push_str(&format!("&continue={}", urlencoding(t)));
        }
        let (took, body) = get_timed(launcher, &url).await?;
        w.page_ms.push(took);
        w.took += Duration::from_secs_f64(took / 1e3);
        let page: Value = serde_json::from_slice(&body)?;
        for item in page["items"].as_array().into_iter().flatten() {
            w.items += 1;
            names.insert(item["name"].as_str().unwrap_or_default().to_string());
        }
        token = page["continue"].as_str().filter(|t| !t.is_empty()).map(String::from);
        if token.is_none() || w.page_ms.len() > 100_000 {
            break;
        }
    }
    w.distinct = names.len();
    Ok(w)
}

/// Percent-encodes what a query value must not carry raw.
fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Everything the phase measured.
#[derive(Debug, Default)]
pub struct Scale {
    pub small: usize,
    pub large: usize,
    pub create_rate: Vec<f64>,
    pub at_small: Vec<StartRun>,
    pub at_large: Vec<StartRun>,
    pub page_size: u32,
    pub launcher_streams: bool,
    pub bare_paged: Vec<BareList>,
    pub bare_streamed: Vec<BareList>,
    pub reads: Vec<Reads>,
    pub walk: Walk,
    pub concurrency: usize,
    pub launches_per_run: usize,
    pub raw: Vec<Measured>,
    pub http: Vec<Measured>,
    /// Every segment of every run, by kind.
    pub raw_segments: Vec<Segment>,
    pub http_segments: Vec<Segment>,
    /// The API server's Go runtime over each run's raw segments, each launcher's start-up (its
    /// list of the Jobs) and each run's HTTP segments: where the API server's extra CPU goes.
    pub raw_runtime: Vec<GoRuntime>,
    pub startup_runtime: Vec<GoRuntime>,
    pub http_runtime: Vec<GoRuntime>,
    /// The API server's and etcd's resident set (MiB) at moments of the phase.
    pub control_plane_mib: BTreeMap<String, f64>,
}

/// One segment of launches: its rate, and the API server's CPU per 1,000 over it, which tells a
/// segment that fell in a slow episode of the control plane (about twice the CPU per Job).
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Segment {
    pub per_second: f64,
    pub apiserver_cpu_per_1000: f64,
}

impl Scale {
    /// The bare list the launcher's start-up compares with: streamed if it streams, else paged.
    pub fn bare(&self) -> &[BareList] {
        if self.launcher_streams && !self.bare_streamed.is_empty() { &self.bare_streamed } else { &self.bare_paged }
    }
}

fn record_memory(scale: &mut Scale, moment: &str) {
    let pids = cluster::control_plane_pids();
    for name in ["kube-apiserver", "etcd"] {
        if let Some(pid) = pids.get(name) {
            let rss = cluster::memory_mib(*pid, "VmRSS").unwrap_or(0.0);
            scale.control_plane_mib.insert(format!("{name} RSS {moment}"), rss);
            note(format!("  {name} RSS {moment}: {rss:.0} MiB"));
        }
    }
}

/// The phase: populate, measure at the small size, populate to the large size, measure there.
pub async fn scale100k(client: &Client, s: &Settings) -> BenchResult<Scale> {
    let (page_size, launcher_streams) = launcher_list_mode();
    let mut scale = Scale {
        small: s.scale_small,
        large: s.scale_large,
        page_size,
        launcher_streams,
        concurrency: s.concurrencies.iter().copied().max().unwrap_or(64),
        ..Scale::default()
    };
    record_memory(&mut scale, "before");
    let ns = BenchNamespace::create(client, "scale").await?;
    scale.create_rate.push(populate(client, &ns.name, 0, scale.small).await?);
    note(format!("[scale100k] start-up and memory with {} Jobs", scale.small));
    scale.at_small = phases::starts(&ns.name, s.heavy_runs, scale.small).await?;
    scale.create_rate.push(populate(client, &ns.name, scale.small, scale.large).await?);
    let moment = format!("with {} Jobs", scale.large);
    record_memory(&mut scale, &moment);
    measure_startup(client, s, &ns.name, &mut scale).await?;
    measure_reads(&ns.name, &mut scale).await?;
    measure_launches(client, s, &ns, &mut scale).await?;
    record_memory(&mut scale, "at the end");
    if let Some(pid) = cluster::control_plane_pids().get("kube-apiserver") {
        scale
            .control_plane_mib
            .insert("kube-apiserver peak RSS (VmHWM)".into(), cluster::memory_mib(*pid, "VmHWM").unwrap_or(0.0));
    }
    // Deleting 100,000 Jobs takes the API server minutes: the figures are taken, so the phase
    // waits only a while; a later run's start removes what is left (`delete_leftovers`).
    note("[scale100k] deleting the namespace (100,000 Jobs take a few minutes)");
    if let Err(e) = cluster::delete_namespace_within(client, &ns.name, Duration::from_secs(120)).await {
        note(format!("  still going; left to the API server: {e}"));
    }
    Ok(scale)
}

/// Start-up at the large size, each run after a bare list of the same Jobs (paged and streamed).
async fn measure_startup(client: &Client, s: &Settings, ns: &str, scale: &mut Scale) -> BenchResult<()> {
    note(format!(
        "[scale100k] start-up with {} Jobs against a bare list (page {}, and streamed); the launcher {}",
        scale.large,
        scale.page_size,
        if scale.launcher_streams { "streams" } else { "pages" }
    ));
    for _ in 0..s.heavy_runs {
        let paged = bare_list(client, ns, Some(scale.page_size)).await?;
        note(format!("  bare paged list: {:.0} ms ({} Jobs, {} pods)", ms(paged.took), paged.jobs, paged.pods));
        scale.bare_paged.push(paged);
        match bare_list(client, ns, None).await {
            Ok(streamed) => {
                note(format!("  bare streaming list: {:.0} ms ({} Jobs)", ms(streamed.took), streamed.jobs));
                scale.bare_streamed.push(streamed);
            }
            Err(e) => note(format!("  no streaming list: {e}")),
        }
        scale.at_large.extend(phases::starts(ns, 1, scale.large).await?);
    }
    Ok(())
}

/// Reads at the large size, with one launcher up.
async fn measure_reads(ns: &str, scale: &mut Scale) -> BenchResult<()> {
    let launcher = Launcher::start(ns, &[]).await?;
    launcher.wait_ready(Duration::from_secs(300)).await?;
    for (label, query) in QUERIES {
        let r = reads(&launcher, label, query, 200).await?;
        note(format!(
            "  GET /v1/jobs?{query}: p50 {:.2} ms, p99 {:.2} ms ({} items)",
            stats::percentile(&r.latencies_ms, 50.0),
            stats::percentile(&r.latencies_ms, 99.0),
            r.items
        ));
        scale.reads.push(r);
    }
    scale.walk = walk(&launcher).await?;
    let w = &scale.walk;
    note(format!(
        "  continue walk: {} pages, {} items ({} distinct) in {:.0} ms; per page p99 {:.2} ms",
        w.page_ms.len(),
        w.items,
        w.distinct,
        ms(w.took),
        stats::percentile(&w.page_ms, 99.0)
    ));
    launcher.stop().await;
    Ok(())
}

/// The order of a run's segments: raw and HTTP alternate in pairs that mirror each other
/// (raw, HTTP, HTTP, raw, ...), so that a drift in the control plane's pace over the run, or work
/// of its own that comes and goes (the controller manager's and the API server's, each worth
/// seconds of CPU with 100,000 Jobs), falls on both kinds alike.
const SEGMENT_ORDER: [Launches; 8] = [
    Launches::Raw,
    Launches::Http,
    Launches::Http,
    Launches::Raw,
    Launches::Raw,
    Launches::Http,
    Launches::Http,
    Launches::Raw,
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Launches {
    Raw,
    Http,
}

/// HTTP launches through the launcher against raw creates with the large population present,
/// in segments that alternate (`SEGMENT_ORDER`), each kind's segments read as one run. The
/// launcher is up throughout: during a raw segment it is idle, since the raw Jobs belong to
/// another launcher instance, which its watches do not see. Measured in the 09:12 run of
/// 2026-11-30 the older way (a raw run with the launcher stopped, then the launcher's start-up,
/// then an HTTP run, 2,000 of each), the controller manager's and the API server's CPU per Job
/// doubled from one run to another (raw 2.5 → 5.5 s of the machine's per 1,000), more than the
/// launcher's whole share. The launched Jobs are deleted after each run; the API server's
/// garbage collector is read over each segment and the launcher's start-up.
async fn measure_launches(client: &Client, s: &Settings, ns: &BenchNamespace, scale: &mut Scale) -> BenchResult<()> {
    let c = scale.concurrency;
    let per_segment = (s.jobs_at(c) / 2).max(c * 4);
    let segments_per_kind = SEGMENT_ORDER.iter().filter(|k| **k == Launches::Raw).count();
    scale.launches_per_run = per_segment * segments_per_kind;
    let pids = cluster::control_plane_pids();
    if s.scale_http_as_raw {
        note("  BENCH_SCALE_HTTP_AS_RAW=1: the HTTP segments make raw creates (a diagnostic run)");
    }
    if s.scale_without_launcher {
        note("  BENCH_SCALE_WITHOUT_LAUNCHER=1: no launcher, raw creates in every segment (a diagnostic run)");
    }
    for run in 1..=s.heavy_runs {
        // The previous run's deleted Jobs, or the reads before the first run, can keep the
        // control plane busy for a while after the bench has stopped waiting for them.
        note(format!("  run {run}: {}", cluster::wait_quiet(QUIET_TIMEOUT).await));
        let create = raw_create(ns)?;
        let go_before = GoRuntime::read(client).await?;
        let launcher = if s.scale_without_launcher {
            None
        } else {
            let launcher = Launcher::start(&ns.name, &[]).await?;
            launcher.wait_ready(Duration::from_secs(300)).await?;
            Some(launcher)
        };
        let startup_runtime = GoRuntime::read(client).await?.since(&go_before);
        let post = launcher.as_ref().map(|l| phases::post_op(l, r#"{"template":"idle"}"#));
        closed_loop(c * 2, c, create.clone()).await;
        if let Some(post) = &post {
            closed_loop(c * 2, c, post.clone()).await;
        }
        let profiler = launcher.as_ref().and_then(|l| phases::Profiler::start(l, c));
        // Each kind's segments, absorbed into one run (a default `Measured` is an empty run).
        let (mut raw, mut http) = (Measured::default(), Measured::default());
        let (mut raw_runtime, mut http_runtime) = (GoRuntime::default(), GoRuntime::default());
        for kind in SEGMENT_ORDER {
            // Each segment starts from a quiet machine too, not on the last one's tail.
            let quiet = cluster::wait_quiet(SEGMENT_QUIET_TIMEOUT).await;
            if !quiet.quiet {
                note(format!("    {quiet}"));
            }
            let go_before = GoRuntime::read(client).await?;
            let (measured, total, runtime, segments) = match kind {
                Launches::Raw => (
                    phases::measure(&pids, None, per_segment, c, create.clone()).await,
                    &mut raw,
                    &mut raw_runtime,
                    &mut scale.raw_segments,
                ),
                Launches::Http => {
                    let measured = match &post {
                        Some(post) if !s.scale_http_as_raw => {
                            phases::measure(&pids, launcher.as_ref(), per_segment, c, post.clone()).await
                        }
                        _ => phases::measure(&pids, launcher.as_ref(), per_segment, c, create.clone()).await,
                    };
                    (measured, &mut http, &mut http_runtime, &mut scale.http_segments)
                }
            };
            let cpu = |process: &str| measured.cpu_per_1000(process).unwrap_or(0.0);
            segments.push(Segment {
                per_second: measured.load.per_second(),
                apiserver_cpu_per_1000: cpu("kube-apiserver"),
            });
            let segment_runtime = GoRuntime::read(client).await?.since(&go_before);
            *runtime = runtime.plus(&segment_runtime);
            note(format!(
                "    {kind:?}: {}; CPU s per 1,000: API server {:.2}, controller manager {:.2}, etcd {:.2}, \
                 launcher {:.2}; API server GC cycles {:.0}",
                measured.summary(),
                cpu("kube-apiserver"),
                cpu("kube-controller-manager"),
                cpu("etcd"),
                cpu("launcher"),
                segment_runtime.gc_cycles
            ));
            total.absorb(measured);
        }
        if let Some(p) = profiler {
            p.stop();
        }
        if let Some(launcher) = launcher {
            launcher.stop().await;
        }
        let n = scale.launches_per_run;
        note(format!("  run {run}: raw creates c={c} with {} Jobs: {}", scale.large, raw.summary()));
        note(format!(
            "  run {run}: HTTP c={c} with {} Jobs: {} ({:.0} % of raw)",
            scale.large,
            http.summary(),
            100.0 * http.load.per_second() / raw.load.per_second()
        ));
        note(format!("    API server over the launcher's start-up: {}", runtime_summary(&startup_runtime)));
        note(format!("    API server per 1,000 raw: {}", runtime_summary(&raw_runtime.per_1000(n))));
        note(format!("    API server per 1,000 HTTP: {}", runtime_summary(&http_runtime.per_1000(n))));
        delete_launched(ns).await?;
        if raw.load.errors > 0 || http.load.errors > 0 {
            return Err(format!("launches failed: {:?} {:?}", raw.load.first_error, http.load.first_error).into());
        }
        scale.raw.push(raw);
        scale.http.push(http);
        scale.raw_runtime.push(raw_runtime);
        scale.startup_runtime.push(startup_runtime);
        scale.http_runtime.push(http_runtime);
    }
    Ok(())
}

/// How long a launch run, and each of its segments, waits for the machine to go quiet.
const QUIET_TIMEOUT: Duration = Duration::from_secs(120);
const SEGMENT_QUIET_TIMEOUT: Duration = Duration::from_secs(30);

/// The launcher instance the raw creates' Jobs belong to.
const RAW_INSTANCE: &str = "bench-raw";

/// One raw create of the bench's `idle` Job, as the launcher would render it (source `http`, so
/// that `delete_launched` removes it) for another launcher instance than the one under test.
fn raw_create(
    ns: &BenchNamespace,
) -> BenchResult<
    impl Fn(usize) -> futures::future::BoxFuture<'static, Result<(), String>> + Clone + Send + Sync + 'static,
> {
    let factory = Arc::new(JobFactory::new("idle", &ns.name, false)?.of_instance(RAW_INSTANCE));
    let api: Api<Job> = ns.api();
    Ok(move |_| {
        let (api, factory) = (api.clone(), factory.clone());
        Box::pin(async move {
            let job = factory.job(&[], 0).map_err(|e| e.to_string())?;
            api.create(&PostParams::default(), &job).await.map(drop).map_err(|e| e.to_string())
        }) as futures::future::BoxFuture<'static, Result<(), String>>
    })
}

/// What the API server allocated and collected over a run.
fn runtime_summary(r: &GoRuntime) -> String {
    format!("{:.0} MiB allocated, {:.1} GC cycles", r.allocated_mib, r.gc_cycles)
}

/// Deletes the Jobs launched by a measurement (source `http`; the population's are `cli`).
async fn delete_launched(ns: &BenchNamespace) -> BenchResult<()> {
    let jobs: Api<Job> = ns.api();
    let launched = ListParams::default().labels(&format!("{}=http", keys::SOURCE));
    jobs.delete_collection(&DeleteParams::background(), &launched).await?;
    cluster::wait_for(Duration::from_secs(300), "the launched Jobs to go", || async {
        jobs.list_metadata(&launched.clone().limit(1)).await.is_ok_and(|l| l.items.is_empty())
    })
    .await
}
