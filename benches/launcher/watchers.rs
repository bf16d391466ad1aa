//! The `watchers` phase: 1,000 concurrent `GET /v1/events` streams (times BENCH_SCALE) while
//! 1,000 Jobs are launched over HTTP.
//!
//! The stream clients do not parse JSON: each reads the body as it comes, counts bytes, and finds
//! each event's `id:` line (the highest resourceVersion of the Job and its pods) by a byte scan,
//! stamping it with the moment its chunk arrived. The bench's own watch of the Jobs stamps every
//! resourceVersion it sees; that moment stands in for the launcher's watch seeing the change (the
//! launcher's events carry no time of their own), so the delay is "the bench's watch saw version
//! V → a stream got the event with id V", both clocks in this process. The launched Jobs come from
//! the suspended template, so they have no pods and an event's id is the Job's resourceVersion.
//!
//! The launcher measures the same delay from its own side: `stream_event_delay_seconds`, from its
//! watch delivering a change (or its own create) to a stream passing the event to its
//! connection, per stream; the bench reads that histogram before and after the launches.
//!
//! Also: the launcher's RSS with the streams open and idle against before they opened, and its CPU
//! for the launches with the streams against the same launches with none, per delivered event.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::{Api, Client, runtime::watcher};
use tokio::sync::watch;

use crate::{
    BenchResult, Settings,
    cluster::{self, BenchNamespace, closed_loop},
    phases::{self, note},
    process::Launcher,
};

/// Every resourceVersion of the namespace's Jobs the bench's watch saw, and when.
#[derive(Default)]
struct Versions {
    seen: HashMap<u64, Instant>,
    /// Each Job's latest version, and when the Job was first seen.
    last: HashMap<String, (u64, Instant)>,
}

struct VersionWatch {
    versions: Arc<Mutex<Versions>>,
    task: tokio::task::JoinHandle<()>,
}

impl VersionWatch {
    async fn start(client: &Client, ns: &str) -> BenchResult<Self> {
        let versions = Arc::new(Mutex::new(Versions::default()));
        let (synced, mut is_synced) = watch::channel(false);
        let api: Api<Job> = Api::namespaced(client.clone(), ns);
        let shared = versions.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Ok(Some(event)) = stream.try_next().await {
                let job = match event {
                    watcher::Event::Apply(j) | watcher::Event::InitApply(j) => j,
                    watcher::Event::InitDone => {
                        synced.send_replace(true);
                        continue;
                    }
                    _ => continue,
                };
                let now = Instant::now();
                let rv = job.metadata.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
                let name = job.metadata.name.unwrap_or_default();
                let mut v = shared.lock().unwrap_or_else(|p| p.into_inner());
                v.seen.entry(rv).or_insert(now);
                let first = v.last.get(&name).map_or(now, |(_, t)| *t);
                v.last.insert(name, (rv, first));
            }
        });
        tokio::time::timeout(Duration::from_secs(30), is_synced.wait_for(|s| *s))
            .await
            .map_err(|_| "the bench's watch did not sync")??;
        Ok(Self { versions, task })
    }

    fn count(&self) -> usize {
        self.versions.lock().unwrap_or_else(|p| p.into_inner()).seen.len()
    }
}

impl Drop for VersionWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Finds the lines of an event stream without keeping them: only each line's first bytes.
#[derive(Default)]
struct Scanner {
    head: [u8; 32],
    len: usize,
}

impl Scanner {
    fn feed(&mut self, mut bytes: &[u8], mut line: impl FnMut(&[u8])) {
        // memchr, not a byte loop: the clients scan every byte the launcher sends (about 1 GB in
        // the phase). With a byte loop the scan was the bench's costliest function in a profile,
        // and the bench's CPU competes with the launcher's for the two cores.
        while let Some(pos) = memchr::memchr(b'\n', bytes) {
            self.take(&bytes[..pos]);
            line(&self.head[..self.len]);
            self.len = 0;
            bytes = &bytes[pos + 1..];
        }
        self.take(bytes);
    }

    fn take(&mut self, part: &[u8]) {
        let n = (self.head.len() - self.len).min(part.len());
        self.head[self.len..self.len + n].copy_from_slice(&part[..n]);
        self.len += n;
    }
}

/// What one stream client got.
#[derive(Default)]
struct Outcome {
    ids: Vec<(u64, Instant)>,
    bytes: u64,
    /// An `event: end` frame, or the body ended.
    cut: bool,
}

async fn read_stream(
    mut response: reqwest::Response,
    mut stop: watch::Receiver<bool>,
    total: Arc<AtomicU64>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut scanner = Scanner::default();
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk,
            _ = stop.wait_for(|s| *s) => return out,
        };
        let Ok(Some(bytes)) = chunk else {
            out.cut = true;
            return out;
        };
        let now = Instant::now();
        out.bytes += bytes.len() as u64;
        let (ids, cut) = (&mut out.ids, &mut out.cut);
        scanner.feed(&bytes, |line| {
            if let Some(id) = line.strip_prefix(b"id: ").and_then(|d| std::str::from_utf8(d).ok()?.parse().ok()) {
                ids.push((id, now));
                total.fetch_add(1, Ordering::Relaxed);
            } else if line == b"event: end" {
                *cut = true;
            }
        });
    }
}

/// A Prometheus histogram as the launcher exports it: cumulative counts by upper bound, the
/// last bound infinite.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// The buckets of metric `name` in a `/metrics` text.
    fn parse(text: &str, name: &str) -> Self {
        let prefix = format!("{name}_bucket{{le=\"");
        let buckets = text
            .lines()
            .filter_map(|line| {
                let (le, rest) = line.strip_prefix(&prefix)?.split_once("\"}")?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((le, rest.trim().parse().ok()?))
            })
            .collect();
        Self { buckets }
    }

    /// The observations made since `earlier`.
    fn since(&self, earlier: &Self) -> Self {
        let before = |le: f64| earlier.buckets.iter().find(|(b, _)| *b == le).map_or(0, |(_, n)| *n);
        Self { buckets: self.buckets.iter().map(|(le, n)| (*le, n.saturating_sub(before(*le)))).collect() }
    }

    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |(_, n)| *n)
    }

    /// The share of observations at most `le` (a bucket's bound).
    pub fn share_within(&self, le: f64) -> f64 {
        let within = self.buckets.iter().find(|(b, _)| *b == le).map_or(0, |(_, n)| *n);
        within as f64 / self.count().max(1) as f64
    }

    /// The `q` quantile (0..1), interpolated within its bucket as Prometheus'
    /// `histogram_quantile` does; the largest finite bound when it falls in the last bucket.
    pub fn quantile(&self, q: f64) -> f64 {
        let rank = q * self.count() as f64;
        let mut lower = (0.0, 0);
        for &(le, n) in &self.buckets {
            if n as f64 >= rank && n > lower.1 {
                if le.is_infinite() {
                    return lower.0;
                }
                return lower.0 + (le - lower.0) * (rank - lower.1 as f64) / (n - lower.1) as f64;
            }
            lower = (le, n);
        }
        lower.0
    }
}

/// The launcher's own stream delay histogram, from its metrics.
async fn read_launcher_delays(launcher: &Launcher) -> BenchResult<Histogram> {
    let text = launcher.http.get(format!("{}/metrics", launcher.admin)).send().await?.text().await?;
    let histogram = Histogram::parse(&text, "job_launcher_stream_event_delay_seconds");
    if histogram.buckets.is_empty() {
        return Err("the launcher's metrics have no job_launcher_stream_event_delay_seconds".into());
    }
    Ok(histogram)
}

/// Everything the phase measured.
#[derive(Debug, Default)]
pub struct Watchers {
    pub streams: usize,
    pub opened: usize,
    pub jobs: usize,
    pub rss_without_mib: f64,
    pub rss_idle_mib: f64,
    /// Launcher CPU seconds for the launches with no stream open, and with the streams open.
    pub baseline_cpu_s: f64,
    pub streamed_cpu_s: f64,
    /// CPU seconds by process (the bench is the stream clients) over the launches with the
    /// streams open, and how long those took (launches until two quiet seconds).
    pub streamed_cpu: BTreeMap<String, f64>,
    pub streamed_s: f64,
    /// Events the streams got in the first pass, and in both.
    pub delivered: u64,
    pub delivered_both: u64,
    pub bytes: u64,
    /// The launched Jobs, each expected in every stream at its latest version.
    pub expected: usize,
    /// Streams that got every launched Job's latest version, and (stream, Job) pairs missing it.
    pub complete: usize,
    pub missing: u64,
    pub cut: usize,
    /// Versions of the launched Jobs the bench's watch saw (intermediate ones may be coalesced).
    pub watch_versions: usize,
    pub min_events: u64,
    pub max_events: u64,
    /// The bench's watch saw a version → a stream got it, every (stream, event) pair.
    pub delays_ms: Vec<f64>,
    /// The launcher's own: its watch saw a change → a stream passed the event on (seconds).
    pub launcher_delays: Histogram,
    /// How the launcher's threads waited for a core over those launches.
    pub streamed_run_queue: cluster::RunQueue,
    /// The same for a second pass of launches with a core kept for the launcher, and that
    /// pass's CPU and wait for a core.
    pub own_core: Option<(Histogram, Pass)>,
    pub unmatched: u64,
}

impl Watchers {
    pub fn kib_per_idle_stream(&self) -> f64 {
        (self.rss_idle_mib - self.rss_without_mib) * 1024.0 / self.opened.max(1) as f64
    }

    /// The streams' share of the launcher's CPU per delivered event, in µs.
    pub fn cpu_us_per_event(&self) -> f64 {
        (self.streamed_cpu_s - self.baseline_cpu_s).max(0.0) * 1e6 / self.delivered.max(1) as f64
    }

    pub fn gross_cpu_us_per_event(&self) -> f64 {
        self.streamed_cpu_s * 1e6 / self.delivered.max(1) as f64
    }
}

/// One pass of launches: CPU seconds by process over it, and how the launcher's threads waited
/// for a core.
#[derive(Debug, Default)]
pub struct Pass {
    pub cpu: BTreeMap<String, f64>,
    pub launcher_run_queue: cluster::RunQueue,
}

/// Launches `n` Jobs over HTTP (8 at a time) and waits until the bench's watch and the streams
/// have been quiet for two seconds.
async fn launch_and_settle(
    launcher: &Launcher,
    n: usize,
    versions: &VersionWatch,
    total: &AtomicU64,
) -> BenchResult<Pass> {
    let mut pids = cluster::control_plane_pids();
    pids.insert("launcher", launcher.pid);
    pids.insert("bench", std::process::id());
    let queued_before = cluster::RunQueue::read(launcher.pid).unwrap_or_default();
    let before = cluster::cpu_snapshot(&pids);
    let run = closed_loop(n, 8, phases::post_op(launcher, r#"{"template":"idle"}"#)).await;
    if run.errors > 0 {
        return Err(format!("launches fail: {}", run.first_error.unwrap_or_default()).into());
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (versions.count(), total.load(Ordering::Relaxed));
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(2) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = (versions.count(), total.load(Ordering::Relaxed));
        if now != last {
            (last, quiet_since) = (now, Instant::now());
        }
    }
    // The two quiet seconds cost the launcher nothing measurable (heartbeats are 15 s apart).
    let cpu = cluster::cpu_delta(&before, &cluster::cpu_snapshot(&pids));
    let queued = cluster::RunQueue::read(launcher.pid).unwrap_or_default().since(queued_before);
    Ok(Pass { cpu, launcher_run_queue: queued })
}

/// Opens `n` streams (32 handshakes at a time); those that answered 200.
async fn open_streams(launcher: &Launcher, n: usize) -> BenchResult<Vec<reqwest::Response>> {
    let http = reqwest::Client::builder().tcp_nodelay(true).pool_max_idle_per_host(0).build()?;
    let url = format!("{}/v1/events", launcher.api);
    let opened: Vec<Result<reqwest::Response, String>> = futures::stream::iter(0..n)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http.get(&url).send().await.map_err(|e| e.to_string())?;
                if r.status() == 200 { Ok(r) } else { Err(format!("GET /v1/events: {}", r.status())) }
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let failed: Vec<&String> = opened.iter().filter_map(|r| r.as_ref().err()).collect();
    if let Some(first) = failed.first() {
        note(format!("  {} of {n} streams did not open (first: {first})", failed.len()));
    }
    Ok(opened.into_iter().filter_map(Result::ok).collect())
}

pub async fn watchers(client: &Client, s: &Settings) -> BenchResult<Watchers> {
    let (streams, jobs) = (s.watch_streams, s.watch_jobs);
    let ns = BenchNamespace::create(client, "watchers").await?;
    // The phase before may have left the control plane work (a namespace's pods going).
    note(format!("[watchers] {}", cluster::wait_quiet(Duration::from_secs(120)).await));
    let versions = VersionWatch::start(client, &ns.name).await?;
    let args = ["--max-streams".to_string(), (streams + 64).to_string()];
    let launcher = Launcher::start(&ns.name, &args).await?;
    launcher.wait_ready(Duration::from_secs(60)).await?;
    let total = Arc::new(AtomicU64::new(0));
    note(format!("[watchers] {jobs} launches with no stream open"));
    let baseline = launch_and_settle(&launcher, jobs, &versions, &total).await?;
    let rss_without_mib = launcher.rss_mib();
    note(format!("[watchers] opening {streams} streams"));
    let (stop, stopped) = watch::channel(false);
    let readers: Vec<_> = open_streams(&launcher, streams)
        .await?
        .into_iter()
        .map(|r| tokio::spawn(read_stream(r, stopped.clone(), total.clone())))
        .collect();
    // Every stream is open (answered) above; its first bytes and the connection's buffers
    // settle at once. Two seconds lets the allocator's per-thread caches settle too, so the
    // RSS is that of idle streams, not of the burst of opening them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle_mib = launcher.rss_mib();
    let launched_from = Instant::now();
    note(format!("[watchers] {jobs} launches with {} streams open", readers.len()));
    let streamed_started = Instant::now();
    let delays_before = read_launcher_delays(&launcher).await?;
    let streamed = launch_and_settle(&launcher, jobs, &versions, &total).await?;
    let streamed_s = streamed_started.elapsed().as_secs_f64();
    let launcher_delays = read_launcher_delays(&launcher).await?.since(&delays_before);
    let first_pass_until = Instant::now();
    // The same again with a core kept for the launcher: what of its delay is waiting for a core
    // the other processes hold.
    let own_core = match OwnCore::give(launcher.pid) {
        Ok(pinned) => {
            note(format!("[watchers] {jobs} more launches, the launcher alone on core {LAUNCHER_CORE}"));
            let before = read_launcher_delays(&launcher).await?;
            let pass = launch_and_settle(&launcher, jobs, &versions, &total).await;
            drop(pinned);
            Some((read_launcher_delays(&launcher).await?.since(&before), pass?))
        }
        Err(e) => {
            note(format!("  not run with a core kept for the launcher: {e}"));
            None
        }
    };
    stop.send_replace(true);
    let mut outcomes = Vec::new();
    for r in readers {
        outcomes.push(r.await?);
    }
    let problems = launcher.logged_problems();
    launcher.stop().await;
    for p in problems.iter().take(3) {
        note(format!("  launcher logged: {p}"));
    }
    let mut w = Watchers {
        streams,
        opened: outcomes.len(),
        jobs,
        rss_without_mib,
        rss_idle_mib,
        baseline_cpu_s: baseline.cpu.get("launcher").copied().unwrap_or(0.0),
        streamed_cpu_s: streamed.cpu.get("launcher").copied().unwrap_or(0.0),
        streamed_run_queue: streamed.launcher_run_queue,
        streamed_cpu: streamed.cpu,
        streamed_s,
        launcher_delays,
        own_core,
        ..Watchers::default()
    };
    tally(&mut w, &versions, (launched_from, first_pass_until), &outcomes);
    drop(versions);
    ns.delete().await?;
    Ok(w)
}

/// The core the second pass keeps for the launcher; every other process of the run gets the
/// others.
pub const LAUNCHER_CORE: usize = 1;

/// While alive, the launcher's threads run on `LAUNCHER_CORE` only and every thread of the
/// control plane and of the bench on the other cores; dropped, every process may use every core
/// again. (Threads made later inherit the affinity of the thread that makes them.)
struct OwnCore {
    pids: Vec<u32>,
    all: String,
}

impl OwnCore {
    fn give(launcher: u32) -> BenchResult<Self> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        if cores <= LAUNCHER_CORE {
            return Err(format!("the machine has {cores} core(s)").into());
        }
        let others: Vec<u32> = cluster::control_plane_pids().into_values().chain([std::process::id()]).collect();
        let all = format!("0-{}", cores - 1);
        let rest = (0..cores).filter(|c| *c != LAUNCHER_CORE).map(|c| c.to_string()).collect::<Vec<_>>().join(",");
        let pinned = Self { pids: others.iter().copied().chain([launcher]).collect(), all };
        // On an error `pinned` is dropped, which gives every process every core again.
        pin(&others, &rest)?;
        pin(&[launcher], &LAUNCHER_CORE.to_string())?;
        Ok(pinned)
    }
}

impl Drop for OwnCore {
    fn drop(&mut self) {
        if let Err(e) = pin(&self.pids, &self.all) {
            note(format!("  could not give the processes every core again: {e}"));
        }
    }
}

/// Sets the CPU affinity of every thread of each of `pids` to `cpus` (a `taskset` list).
fn pin(pids: &[u32], cpus: &str) -> BenchResult<()> {
    for pid in pids {
        let out = std::process::Command::new("taskset").args(["-a", "-p", "-c", cpus, &pid.to_string()]).output()?;
        if !out.status.success() {
            return Err(format!("taskset {pid}: {}", String::from_utf8_lossy(&out.stderr).trim()).into());
        }
    }
    Ok(())
}

/// Checks every stream against the launched Jobs' latest versions, and collects the delays of
/// the first pass (`from..until`).
fn tally(w: &mut Watchers, versions: &VersionWatch, (launched_from, until): (Instant, Instant), outcomes: &[Outcome]) {
    let v = versions.versions.lock().unwrap_or_else(|p| p.into_inner());
    let expected: HashSet<u64> =
        v.last.values().filter(|(_, first)| *first >= launched_from).map(|(rv, _)| *rv).collect();
    let launched_versions = v.seen.values().filter(|t| **t >= launched_from).count();
    w.expected = expected.len();
    w.watch_versions = launched_versions;
    w.min_events = u64::MAX;
    for o in outcomes {
        let got: HashSet<u64> = o.ids.iter().map(|(id, _)| *id).collect();
        let missing = expected.difference(&got).count() as u64;
        w.missing += missing;
        w.complete += usize::from(missing == 0);
        w.cut += usize::from(o.cut);
        // Events of the first pass (the figures per event are of that pass); both passes'
        // events for the bytes per event.
        let first_pass = o.ids.iter().filter(|(_, at)| *at < until).count() as u64;
        w.delivered += first_pass;
        w.delivered_both += o.ids.len() as u64;
        w.bytes += o.bytes;
        w.min_events = w.min_events.min(first_pass);
        w.max_events = w.max_events.max(first_pass);
        for (id, at) in &o.ids {
            match v.seen.get(id) {
                Some(seen) if *seen >= launched_from && *seen < until => w.delays_ms.push(signed_ms(*seen, *at)),
                Some(_) => {}
                None => w.unmatched += 1,
            }
        }
    }
    if outcomes.is_empty() {
        w.min_events = 0;
    }
}

/// `to - from` in milliseconds, negative when `to` came first.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(from.duration_since(to).as_secs_f64() * 1e3),
    }
}

/// A quick check of the scanner and the histogram, run with the helpers.
pub fn self_check() {
    let metrics = |counts: [u64; 4]| {
        format!(
            "# TYPE m histogram\nm_sum 1.0\nm_count {}\nm_bucket{{le=\"0.01\"}} {}\nm_bucket{{le=\"0.05\"}} {}\n\
             m_bucket{{le=\"1.0\"}} {}\nm_bucket{{le=\"+Inf\"}} {}\nother_bucket{{le=\"0.01\"}} 9\n",
            counts[3], counts[0], counts[1], counts[2], counts[3]
        )
    };
    let before = Histogram::parse(&metrics([1, 1, 1, 1]), "m");
    let after = Histogram::parse(&metrics([51, 91, 101, 101]), "m").since(&before);
    assert_eq!(after.buckets, [(0.01, 50), (0.05, 90), (1.0, 100), (f64::INFINITY, 100)]);
    assert_eq!(after.count(), 100);
    assert_eq!(after.share_within(0.05), 0.9);
    assert!((after.quantile(0.5) - 0.01).abs() < 1e-9);
    assert!((after.quantile(0.7) - 0.03).abs() < 1e-9, "{}", after.quantile(0.7));
    assert!((after.quantile(0.99) - 0.905).abs() < 1e-9, "{}", after.quantile(0.99));

    let mut s = Scanner::default();
    let mut ids = Vec::new();
    let mut ends = 0;
    let text = b"event: job\nid: 42\ndata: {\"x\":1}\n\n: heartbeat\n\nevent: job\nid: 7";
    for part in [&text[..13], &text[13..40], &text[40..]] {
        s.feed(part, |l| {
            if let Some(id) = l.strip_prefix(b"id: ") {
                ids.push(String::from_utf8_lossy(id).to_string());
            }
            ends += usize::from(l == b"event: end");
        });
    }
    s.feed(b"3\n\nevent: end\n", |l| {
        if let Some(id) = l.strip_prefix(b"id: ") {
            ids.push(String::from_utf8_lossy(id).to_string());
        }
        ends += usize::from(l == b"event: end");
    });
    assert_eq!(ids, ["42", "73"]);
    assert_eq!(ends, 1);
}
