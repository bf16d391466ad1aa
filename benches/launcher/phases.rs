//! The measurements. Each phase works in namespaces of its own and deletes them (waiting until
//! they are gone) before the next measurement starts.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::ResourceQuota;
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};
use kube_job_launcher::launch::Source;
use serde_json::{Value, json};

use crate::{
    BenchResult, Settings,
    cluster::{self, BenchNamespace, JobFactory, LoadRun, Observer, closed_loop, create_jobs},
    process::{Launcher, Startup},
    stats::{self, ms},
};

pub fn note(text: impl AsRef<str>) {
    eprintln!("[{}] {}", jiff::Zoned::now().strftime("%H:%M:%S"), text.as_ref());
}

/// One closed-loop measurement with what it cost each process.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub load: LoadRun,
    /// CPU seconds by process during the measurement (control plane, "bench", "launcher").
    pub cpu: BTreeMap<String, f64>,
    pub launcher_rss_mib: Option<f64>,
    pub launcher_hwm_mib: Option<f64>,
}

impl Measured {
    pub fn p(&self, q: f64) -> f64 {
        stats::percentile(&self.load.latencies_ms, q)
    }

    pub fn cpu_per_1000(&self, process: &str) -> Option<f64> {
        let n = self.load.latencies_ms.len();
        (n > 0).then(|| self.cpu.get(process).copied().unwrap_or(0.0) * 1000.0 / n as f64)
    }

    /// The whole machine's CPU seconds over the run: every process measured and the rest.
    fn machine_cpu_s(&self) -> f64 {
        self.cpu.values().sum()
    }

    pub fn machine_cpu_per_1000(&self) -> Option<f64> {
        let n = self.load.latencies_ms.len();
        (n > 0).then(|| self.machine_cpu_s() * 1000.0 / n as f64)
    }

    /// Adds a later segment of the same kind of load: its operations, time and CPU, as if one
    /// run. The launcher's memory is the later segment's. Absorbed into a default (empty)
    /// `Measured`, a segment is that segment.
    pub fn absorb(&mut self, later: Measured) {
        let load = &mut self.load;
        load.latencies_ms.extend(later.load.latencies_ms);
        load.wall += later.load.wall;
        load.errors += later.load.errors;
        load.first_error = load.first_error.take().or(later.load.first_error);
        for (process, seconds) in later.cpu {
            *self.cpu.entry(process).or_default() += seconds;
        }
        self.launcher_rss_mib = later.launcher_rss_mib.or(self.launcher_rss_mib);
        self.launcher_hwm_mib = later.launcher_hwm_mib.or(self.launcher_hwm_mib);
    }

    /// How many cores the machine kept busy over the run, on average.
    pub fn busy_cores(&self) -> f64 {
        self.machine_cpu_s() / self.load.wall.as_secs_f64().max(1e-9)
    }

    pub fn summary(&self) -> String {
        format!(
            "{:.0} Jobs/s, p50 {:.1} ms, p99 {:.1} ms{}",
            self.load.per_second(),
            self.p(50.0),
            self.p(99.0),
            if self.load.errors > 0 {
                format!(", {} errors (first: {})", self.load.errors, self.load.first_error.clone().unwrap_or_default())
            } else {
                String::new()
            }
        )
    }
}

/// Measures `op` with CPU accounting of the control plane, this process and the launcher.
pub async fn measure<F, Fut>(
    pids: &BTreeMap<&'static str, u32>,
    launcher: Option<&Launcher>,
    count: usize,
    concurrency: usize,
    op: F,
) -> Measured
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let mut all = pids.clone();
    all.insert("bench", std::process::id());
    if let Some(l) = launcher {
        all.insert("launcher", l.pid);
    }
    let before = cluster::cpu_snapshot(&all);
    let load = closed_loop(count, concurrency, op).await;
    let after = cluster::cpu_snapshot(&all);
    Measured {
        load,
        cpu: cluster::cpu_delta(&before, &after),
        launcher_rss_mib: launcher.map(Launcher::rss_mib),
        launcher_hwm_mib: launcher.map(Launcher::hwm_mib),
    }
}

/// The ceiling and HTTP at one concurrency, one run of each.
pub struct Pair {
    pub concurrency: usize,
    pub ceiling: Measured,
    /// The ceiling with a watch of the Jobs running (top concurrency only).
    pub watched: Option<Measured>,
    pub http: Measured,
}

/// One ceiling measurement in a namespace of its own: `n` Jobs created at `c`, after a warm-up
/// that opens the connections; with `watch`, while a watch of the Jobs decodes every event.
async fn ceiling_run(
    client: &Client,
    pids: &BTreeMap<&'static str, u32>,
    n: usize,
    c: usize,
    watch: bool,
) -> BenchResult<Measured> {
    let ns = BenchNamespace::create(client, "ceiling").await?;
    let factory = Arc::new(JobFactory::new("idle", &ns.name, false)?);
    let observer = if watch { Some(Observer::start(client, &ns.name, false).await?) } else { None };
    create_jobs(client, &ns.name, factory.clone(), c * 2, c).await;
    let api: Api<k8s_openapi::api::batch::v1::Job> = ns.api();
    let m = measure(pids, None, n, c, move |_| {
        let (api, factory) = (api.clone(), factory.clone());
        async move {
            let job = factory.job(&[], 0).map_err(|e| e.to_string())?;
            api.create(&PostParams::default(), &job).await.map(drop).map_err(|e| e.to_string())
        }
    })
    .await;
    drop(observer);
    ns.delete().await?;
    if m.load.errors > 0 {
        return Err(format!("creates fail: {}", m.load.first_error.clone().unwrap_or_default()).into());
    }
    Ok(m)
}

/// The apiserver's own create rate (kube-rs straight to it) and `POST /v1/jobs` through the
/// launcher, interleaved run by run so that drift hits both alike.
pub async fn throughput(client: &Client, s: &Settings) -> BenchResult<Vec<Pair>> {
    let pids = cluster::control_plane_pids();
    let mut pairs = Vec::new();
    for run in 1..=s.runs {
        for &c in &s.concurrencies {
            let n = s.jobs_at(c);
            // The ceiling: Jobs created straight through the apiserver, as the launcher renders them.
            let ceiling = ceiling_run(client, &pids, n, c, false).await?;
            note(format!("run {run}, c={c}: ceiling {}", ceiling.summary()));
            // At the top concurrency, the same with one watch of the namespace's Jobs decoding every
            // event (what the launcher's index costs the apiserver and a client), in this process.
            let top = s.concurrencies.iter().max() == Some(&c);
            let watched = if top {
                let m = ceiling_run(client, &pids, n, c, true).await?;
                note(format!("run {run}, c={c}: ceiling with a watch {}", m.summary()));
                Some(m)
            } else {
                None
            };

            // HTTP through the launcher.
            let ns = BenchNamespace::create(client, "http").await?;
            let launcher = Launcher::start(&ns.name, &[]).await?;
            launcher.wait_ready(Duration::from_secs(30)).await?;
            let post = post_op(&launcher, r#"{"template":"idle"}"#);
            let warm = closed_loop(c * 2, c, post.clone()).await;
            if warm.errors > 0 {
                return Err(format!("launches fail: {}", warm.first_error.unwrap_or_default()).into());
            }
            let profiler = Profiler::start(&launcher, c);
            let http = measure(&pids, Some(&launcher), n, c, post).await;
            if let Some(p) = profiler {
                p.stop();
            }
            let problems = launcher.logged_problems();
            launcher.stop().await;
            ns.delete().await?;
            note(format!(
                "run {run}, c={c}: HTTP    {} ({:.0} % of the ceiling); launcher {:.2} CPU s per 1,000",
                http.summary(),
                100.0 * http.load.per_second() / ceiling.load.per_second(),
                http.cpu_per_1000("launcher").unwrap_or(0.0)
            ));
            for p in problems.iter().take(3) {
                note(format!("  launcher logged: {p}"));
            }
            pairs.push(Pair { concurrency: c, ceiling, watched, http });
        }
    }
    Ok(pairs)
}

/// A profiler attached to the launcher while it serves HTTP at one concurrency (the throughput
/// phase, and the scale phase's launches with the large population):
/// `BENCH_PROFILE` is its command line, `{pid}` and `{c}` filled in (e.g.
/// `perf record -e cpu-clock -F 999 -g -p {pid} -o target/bench/perf-c{c}.data`), at the
/// concurrencies in `BENCH_PROFILE_C` (default 64). Stopped with SIGINT after the measurement.
pub struct Profiler(std::process::Child);

impl Profiler {
    pub fn start(launcher: &Launcher, concurrency: usize) -> Option<Self> {
        let command = std::env::var("BENCH_PROFILE").ok()?;
        let at = std::env::var("BENCH_PROFILE_C").unwrap_or_else(|_| "64".into());
        if !at.split(',').any(|c| c.trim() == concurrency.to_string()) {
            return None;
        }
        let command = command.replace("{pid}", &launcher.pid.to_string()).replace("{c}", &concurrency.to_string());
        note(format!("  profiling: {command}"));
        let child = std::process::Command::new("sh").args(["-c", &format!("exec {command}")]).spawn().ok()?;
        // Give the profiler a moment to attach.
        std::thread::sleep(Duration::from_millis(500));
        Some(Self(child))
    }

    pub fn stop(mut self) {
        let _ = std::process::Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// `POST /v1/jobs` with `body`; success is 201.
pub fn post_op(
    launcher: &Launcher,
    body: &'static str,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
+ Clone
+ Send
+ Sync
+ 'static {
    let http = launcher.http.clone();
    let url = format!("{}/v1/jobs", launcher.api);
    move |_| {
        let (http, url) = (http.clone(), url.clone());
        Box::pin(async move {
            let r = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status();
            let text = r.bytes().await.map_err(|e| e.to_string())?;
            if status == 201 { Ok(()) } else { Err(format!("{status}: {}", String::from_utf8_lossy(&text))) }
        })
    }
}

/// A client for the local SQS server.
pub fn sqs_client() -> BenchResult<aws_sdk_sqs::Client> {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new(cluster::dev_env("AWS_REGION")?))
        .endpoint_url(cluster::dev_env("AWS_ENDPOINT_URL")?)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "bench"))
        .build();
    Ok(aws_sdk_sqs::Client::from_conf(config))
}

struct Queue {
    sqs: aws_sdk_sqs::Client,
    url: String,
    dlq_url: String,
}

impl Queue {
    async fn create(sqs: &aws_sdk_sqs::Client) -> BenchResult<Self> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let name = format!("bench-{}", cluster::random_suffix());
        let dlq = sqs.create_queue().queue_name(format!("{name}-dlq")).send().await?;
        let dlq_url = dlq.queue_url().ok_or("no dlq url")?.to_string();
        let attrs = sqs.get_queue_attributes().queue_url(&dlq_url).attribute_names(A::QueueArn).send().await?;
        let arn = attrs.attributes().and_then(|a| a.get(&A::QueueArn).cloned()).ok_or("no dlq arn")?;
        let policy = json!({ "deadLetterTargetArn": arn, "maxReceiveCount": "3" }).to_string();
        let url = sqs
            .create_queue()
            .queue_name(&name)
            .attributes(A::RedrivePolicy, policy)
            .send()
            .await?
            .queue_url()
            .ok_or("no queue url")?
            .to_string();
        Ok(Self { sqs: sqs.clone(), url, dlq_url })
    }

    /// Sends `bodies` in batches of ten, several batches at once.
    async fn load(&self, bodies: Vec<String>) -> BenchResult<()> {
        let count = bodies.len();
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        use futures::StreamExt;
        let batches: Vec<Vec<(usize, String)>> =
            bodies.into_iter().enumerate().collect::<Vec<_>>().chunks(10).map(<[(usize, String)]>::to_vec).collect();
        let results: Vec<BenchResult<usize>> = futures::stream::iter(batches)
            .map(|batch| async move {
                let entries = batch
                    .iter()
                    .map(|(i, body)| {
                        SendMessageBatchRequestEntry::builder().id(format!("m{i}")).message_body(body).build()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = self.sqs.send_message_batch().queue_url(&self.url).set_entries(Some(entries)).send().await?;
                Ok(out.successful().len())
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut sent = 0;
        for r in results {
            sent += r?;
        }
        if sent != count {
            return Err(format!("sent {sent} of {count} messages").into());
        }
        Ok(())
    }

    /// Visible, in-flight and delayed messages of `url`.
    async fn depth(&self, url: &str) -> BenchResult<u64> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await?;
        let attrs = out.attributes().cloned().unwrap_or_default();
        Ok(attrs.values().filter_map(|v| v.parse::<u64>().ok()).sum())
    }

    async fn delete(self) {
        for url in [&self.url, &self.dlq_url] {
            let _ = self.sqs.delete_queue().queue_url(url).send().await;
        }
    }
}

/// Message bodies like the original launcher's.
fn bodies(count: usize) -> impl Iterator<Item = String> {
    (0..count).map(|i| json!({"jobId": format!("jobid-{i}"), "title": "jobtitle"}).to_string())
}

#[derive(Debug, Clone, Default)]
pub struct SqsRun {
    /// The messages can be consumed → the N-th Job exists.
    pub took: Duration,
    pub messages: usize,
    pub jobs: usize,
    pub dead_lettered: u64,
    pub left_in_queue: u64,
    pub cpu: BTreeMap<String, f64>,
}

impl SqsRun {
    pub fn per_second(&self) -> f64 {
        self.messages as f64 / self.took.as_secs_f64()
    }
}

/// SQS dispatch against the local SQS server: `count` messages loaded first, then the launcher
/// started; the time from its start until `count` Jobs exist.
pub async fn sqs(
    client: &Client,
    s: &Settings,
    sqs: &aws_sdk_sqs::Client,
    concurrency: Option<usize>,
    runs: usize,
) -> BenchResult<Vec<SqsRun>> {
    let mut out = Vec::new();
    for run in 1..=runs {
        let r = sqs_run(client, s.sqs_messages, sqs, concurrency).await?;
        note(format!(
            "run {run}: SQS{} {} messages → {} Jobs in {:.2} s ({:.0} Jobs/s); {} left; CPU s: {}",
            concurrency.map(|c| format!(" (--sqs-concurrency {c})")).unwrap_or_default(),
            r.messages,
            r.jobs,
            r.took.as_secs_f64(),
            r.per_second(),
            r.left_in_queue,
            r.cpu.iter().map(|(k, v)| format!("{k} {v:.1}")).collect::<Vec<_>>().join(", ")
        ));
        out.push(r);
    }
    Ok(out)
}

/// One SQS run in a namespace and on a queue of its own: `n` messages, then the launcher.
async fn sqs_run(
    client: &Client,
    n: usize,
    sqs: &aws_sdk_sqs::Client,
    concurrency: Option<usize>,
) -> BenchResult<SqsRun> {
    let queue = Queue::create(sqs).await?;
    queue.load(bodies(n).collect()).await?;
    let ns = BenchNamespace::create(client, "sqs").await?;
    let observer = Observer::start(client, &ns.name, false).await?;
    let args = sqs_args(&queue, concurrency)?;
    let mut pids = cluster::control_plane_pids();
    pids.insert("bench", std::process::id());
    let before = cluster::cpu_snapshot(&pids);
    let launcher = Launcher::start(&ns.name, &args).await?;
    pids.insert("launcher", launcher.pid);
    let took = nth_job(&observer, n, launcher.spawned()).await;
    let cpu = cluster::cpu_delta(&before, &cluster::cpu_snapshot(&pids));
    // Every message deleted once its Job exists; none dead-lettered.
    let (left, dead_lettered) = drained(&queue).await;
    // A quiet moment before counting: a Job made twice would be created at once after the
    // message's first, and the observer's watch delivers within milliseconds on loopback;
    // 300 ms is many times that.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let jobs = observer.created();
    let problems = launcher.logged_problems();
    launcher.stop().await;
    drop(observer);
    queue.delete().await;
    ns.delete().await?;
    for p in problems.iter().take(3) {
        note(format!("  launcher logged: {p}"));
    }
    let took = took.map_err(|f| format!("SQS dispatch: {f}"))?;
    if jobs != n || dead_lettered > 0 {
        return Err(format!("SQS dispatch: {n} messages gave {jobs} Jobs, {dead_lettered} dead letters").into());
    }
    Ok(SqsRun { took, messages: n, jobs, dead_lettered, left_in_queue: left, cpu })
}

/// The launcher's flags for consuming `queue` on the local SQS server.
fn sqs_args(queue: &Queue, concurrency: Option<usize>) -> BenchResult<Vec<String>> {
    let endpoint = cluster::dev_env("AWS_ENDPOINT_URL")?;
    let region = cluster::dev_env("AWS_REGION")?;
    let mut args: Vec<String> = [
        "--sqs-queue-url",
        &queue.url,
        "--sqs-endpoint",
        &endpoint,
        "--sqs-region",
        &region,
        "--sqs-access-key-id",
        "test",
        "--sqs-secret-access-key",
        "test",
        "--sqs-template",
        "idle",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    if let Some(c) = concurrency {
        args.extend(["--sqs-concurrency".to_string(), c.to_string()]);
    }
    Ok(args)
}

/// From `started` until the `n`-th Job exists, as the watch saw it (at most 900 s).
async fn nth_job(observer: &Observer, n: usize, started: Instant) -> Result<Duration, String> {
    cluster::wait_for(Duration::from_secs(900), &format!("the {n}th Job"), || async { observer.created() >= n })
        .await
        .map_err(|e| format!("{e} (only {} of {n})", observer.created()))?;
    let done = observer.read(|s| {
        let mut times: Vec<Instant> = s.created.values().copied().collect();
        times.sort();
        times.get(n.saturating_sub(1)).copied()
    });
    Ok(done.map(|d| d.saturating_duration_since(started)).unwrap_or_default())
}

/// Waits (at most 60 s) until the queue is empty: the messages left in it, and dead-lettered.
async fn drained(queue: &Queue) -> (u64, u64) {
    let empty = || async { queue.depth(&queue.url).await.unwrap_or(0) == 0 };
    // A queue still holding messages after 60 s is reported by the count below, not as an error.
    let _ = cluster::wait_for(Duration::from_secs(60), "the queue to drain", empty).await;
    let left = queue.depth(&queue.url).await.unwrap_or(0);
    (left, queue.depth(&queue.dlq_url).await.unwrap_or(0))
}

#[derive(Debug, Clone, Default)]
pub struct AdmissionRun {
    pub jobs: usize,
    pub cap: usize,
    /// First admission → last.
    pub all: Duration,
    /// Admissions per second once the cap is full: from the cap-th admission to the last.
    pub steady_per_second: f64,
    /// A Job finishing → the admission that fills its slot, as the bench's watch sees both.
    pub lag_ms: Vec<f64>,
}

/// `jobs` queued Jobs under a cap, pods ending at once: admissions per second.
pub async fn admission(client: &Client, s: &Settings) -> BenchResult<Vec<AdmissionRun>> {
    let mut runs = Vec::new();
    let (n, cap) = (s.admission_jobs, s.admission_cap);
    for run in 1..=s.heavy_runs {
        let ns = BenchNamespace::create(client, "admission").await?;
        // Queued exactly as the launcher queues them (suspended, labelled, with a queue time),
        // created before it starts, so that all of them wait when it does.
        let factory = JobFactory::new("fake", &ns.name, true)?;
        let api: Api<k8s_openapi::api::batch::v1::Job> = ns.api();
        let factory = Arc::new(factory);
        let created = closed_loop(n, 32, move |_| {
            let (api, factory) = (api.clone(), factory.clone());
            async move {
                let job = factory.job(&[("duration", "0s"), ("startDelay", "0s")], 0).map_err(|e| e.to_string())?;
                api.create(&PostParams::default(), &job).await.map(drop).map_err(|e| e.to_string())
            }
        })
        .await;
        if created.errors > 0 {
            return Err(format!("cannot queue Jobs: {}", created.first_error.unwrap_or_default()).into());
        }
        cluster::wait_settled(client, &ns.name, n, Duration::from_secs(600)).await?;
        let observer = Observer::start(client, &ns.name, false).await?;
        let launcher = Launcher::start(&ns.name, &["--max-active".into(), cap.to_string()]).await?;
        let deadline = Instant::now() + Duration::from_secs(900);
        while observer.read(|s| s.admitted.len()) < n {
            if Instant::now() > deadline {
                return Err(format!("only {} of {n} admitted after 900 s", observer.read(|s| s.admitted.len())).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = observer.read(|seen| {
            let admitted: Vec<Instant> = seen.admitted.iter().map(|(_, t)| *t).collect();
            let finished: Vec<Instant> = seen.finished.iter().map(|(_, t)| *t).collect();
            let all = admitted[n - 1].duration_since(admitted[0]);
            let steady = admitted[n - 1].duration_since(admitted[cap - 1]);
            let lag_ms = (cap..n)
                .filter_map(|i| {
                    let f = finished.get(i - cap)?;
                    admitted[i].checked_duration_since(*f).map(ms)
                })
                .collect();
            AdmissionRun { jobs: n, cap, all, steady_per_second: (n - cap) as f64 / steady.as_secs_f64(), lag_ms }
        });
        launcher.stop().await;
        drop(observer);
        ns.delete().await?;
        note(format!(
            "run {run}: admission {n} Jobs under a cap of {cap}: {:.1} admissions/s once full ({:.1} s in all); finish → next admission p50 {:.0} ms, p99 {:.0} ms",
            r.steady_per_second,
            r.all.as_secs_f64(),
            stats::percentile(&r.lag_ms, 50.0),
            stats::percentile(&r.lag_ms, 99.0)
        ));
        runs.push(r);
    }
    Ok(runs)
}

#[derive(Debug, Clone, Default)]
pub struct StartRun {
    pub startup: Startup,
    pub rss_mib: f64,
    /// Of the RSS: anonymous memory (the heap), and file-backed pages (the binary's code).
    pub anon_mib: f64,
    pub file_mib: f64,
    pub hwm_mib: f64,
    /// CPU seconds from spawn until the RSS was read.
    pub cpu_s: f64,
}

/// The launcher started `runs` times in `ns`: start-up moments and memory once settled.
pub async fn starts(ns: &str, runs: usize, expect_jobs: usize) -> BenchResult<Vec<StartRun>> {
    let mut out = Vec::new();
    for _ in 0..runs {
        let launcher = Launcher::start(ns, &[]).await?;
        let ready = launcher.wait_ready(Duration::from_secs(300)).await?;
        let startup = launcher.startup(ready).await;
        // Let the start-up's garbage settle before reading the resident set.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let r = StartRun {
            startup,
            rss_mib: launcher.rss_mib(),
            anon_mib: cluster::memory_mib(launcher.pid, "RssAnon").unwrap_or(0.0),
            file_mib: cluster::memory_mib(launcher.pid, "RssFile").unwrap_or(0.0),
            hwm_mib: launcher.hwm_mib(),
            cpu_s: launcher.cpu_seconds(),
        };
        launcher.stop().await;
        if r.startup.jobs_listed.is_some_and(|n| n as usize != expect_jobs) {
            note(format!("  the index listed {:?} Jobs, expected {expect_jobs}", r.startup.jobs_listed));
        }
        note(format!(
            "  {expect_jobs} Jobs: serving {:.0} ms, synced {:.0} ms, ready {:.0} ms after start; RSS {:.1} MiB (anon {:.1}, file {:.1}, peak {:.1}); {:.2} CPU s",
            r.startup.serving.map(ms).unwrap_or(f64::NAN),
            r.startup.synced.map(ms).unwrap_or(f64::NAN),
            r.startup.ready.map(ms).unwrap_or(f64::NAN),
            r.rss_mib,
            r.anon_mib,
            r.file_mib,
            r.hwm_mib,
            r.cpu_s
        ));
        out.push(r);
    }
    Ok(out)
}

pub struct Resources {
    pub idle: Vec<StartRun>,
    pub indexed: Vec<StartRun>,
    pub index_jobs: usize,
    /// HTTP launches at the top concurrency with `index_jobs` Jobs already in the index.
    pub http_indexed: Vec<Measured>,
    pub http_concurrency: usize,
}

/// Memory and start-up, with no Jobs and with `index_jobs` existing Jobs.
pub async fn resources(client: &Client, s: &Settings) -> BenchResult<Resources> {
    let ns = BenchNamespace::create(client, "idle").await?;
    note("start-up and memory with no Jobs");
    let idle = starts(&ns.name, s.runs, 0).await?;
    ns.delete().await?;

    let ns = BenchNamespace::create(client, "index").await?;
    note(format!("creating {} suspended Jobs with the launcher's labels", s.index_jobs));
    // Marked as launched from the CLI, so that the HTTP launches measured below can be told apart.
    let factory = Arc::new(JobFactory::with_source("idle", &ns.name, false, Source::Cli)?);
    let created = create_jobs(client, &ns.name, factory, s.index_jobs, 64).await;
    if created.errors > 0 {
        return Err(format!("cannot create the Jobs: {}", created.first_error.unwrap_or_default()).into());
    }
    // The Job controller marks each suspended Job (a status update, so a watch event); start the
    // launcher once it is done, so that start-up is measured without that stream of updates.
    cluster::wait_settled(client, &ns.name, s.index_jobs, Duration::from_secs(600)).await?;
    note(format!("start-up and memory with {} Jobs", s.index_jobs));
    let indexed = starts(&ns.name, s.heavy_runs, s.index_jobs).await?;

    // What a launch costs when the index is large: the same HTTP load as the throughput phase's
    // top concurrency, with the Jobs above in the index; its own Jobs deleted after each run.
    let c = s.concurrencies.iter().copied().max().unwrap_or(64);
    let pids = cluster::control_plane_pids();
    let mut http_indexed = Vec::new();
    for _ in 0..s.heavy_runs {
        let launcher = Launcher::start(&ns.name, &[]).await?;
        launcher.wait_ready(Duration::from_secs(120)).await?;
        let post = post_op(&launcher, r#"{"template":"idle"}"#);
        closed_loop(c * 2, c, post.clone()).await;
        let m = measure(&pids, Some(&launcher), s.jobs_at(c), c, post).await;
        launcher.stop().await;
        note(format!(
            "  HTTP c={c} with {} Jobs in the index: {}; launcher {:.2} CPU s per 1,000",
            s.index_jobs,
            m.summary(),
            m.cpu_per_1000("launcher").unwrap_or(0.0)
        ));
        http_indexed.push(m);
        let jobs: Api<k8s_openapi::api::batch::v1::Job> = ns.api();
        let launched = ListParams::default().labels("job-launcher.dev/source=http");
        jobs.delete_collection(&DeleteParams::background(), &launched).await?;
        cluster::wait_for(Duration::from_secs(300), "the launched Jobs to go", || async {
            jobs.list_metadata(&launched.clone().limit(1)).await.is_ok_and(|l| l.items.is_empty())
        })
        .await?;
    }
    ns.delete().await?;
    Ok(Resources { idle, indexed, index_jobs: s.index_jobs, http_indexed, http_concurrency: c })
}

#[derive(Debug, Clone, Default)]
pub struct OrderRun {
    pub label: String,
    /// The thirty Jobs' priorities in the order they started.
    pub started: Vec<i32>,
    /// With admission: the order the launcher unsuspended them.
    pub admitted: Vec<i32>,
    /// Last submission → the last of the thirty started.
    pub took: Duration,
    pub complete: bool,
}

/// The thirty-Job scenario: three blockers (priority 100, 3 s), then thirty 1-second Jobs with
/// mixed priorities, submitted in order; under `--max-active 3`, or under a ResourceQuota of
/// three pods and no cap in the launcher.
pub async fn order(client: &Client, with_quota: bool, timeout: Duration) -> BenchResult<OrderRun> {
    let ns = BenchNamespace::create(client, if with_quota { "quota" } else { "order" }).await?;
    if with_quota {
        let quota: ResourceQuota = serde_json::from_value(json!({
            "metadata": { "name": "pods" },
            "spec": { "hard": { "pods": "3" }, "scopes": ["NotTerminating"] }
        }))?;
        let api: Api<ResourceQuota> = ns.api();
        api.create(&PostParams::default(), &quota).await?;
        // Until the quota controller has computed its usage, admission refuses every pod.
        cluster::wait_for(Duration::from_secs(60), "the ResourceQuota's status", || async {
            api.get("pods").await.ok().and_then(|q| q.status?.hard).is_some_and(|h| h.contains_key("pods"))
        })
        .await?;
    }
    let observer = Observer::start(client, &ns.name, true).await?;
    let args: Vec<String> = if with_quota { vec![] } else { vec!["--max-active".into(), "3".into()] };
    let launcher = Launcher::start(&ns.name, &args).await?;
    launcher.wait_ready(Duration::from_secs(30)).await?;
    let launch = |body: Value| {
        let (http, url) = (launcher.http.clone(), format!("{}/v1/jobs", launcher.api));
        async move {
            let r = http.post(url).json(&body).send().await?;
            if r.status() != 201 {
                return Err(format!("launch answered {}", r.status()).into());
            }
            let view: Value = r.json().await?;
            BenchResult::Ok(view["name"].as_str().unwrap_or_default().to_string())
        }
    };
    for _ in 0..3 {
        launch(json!({"template": "fake", "priority": 100, "params": {"duration": "3s"}})).await?;
    }
    let mut thirty: HashMap<String, i32> = HashMap::new();
    for i in 0..30 {
        let priority = [0, 5, 10][i % 3] + i32::from(i % 7 == 0);
        let name = launch(json!({"template": "fake", "priority": priority, "params": {"duration": "1s"}})).await?;
        thirty.insert(name, priority);
    }
    let submitted = Instant::now();
    let started_all =
        |seen: &cluster::Seen| seen.first_pods.iter().filter(|(j, _)| thirty.contains_key(j)).count() >= 30;
    let deadline = submitted + timeout;
    let mut last_report = Instant::now();
    while !observer.read(started_all) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if last_report.elapsed() > Duration::from_secs(30) {
            last_report = Instant::now();
            let n = observer.read(|s| s.first_pods.iter().filter(|(j, _)| thirty.contains_key(j)).count());
            note(format!("  {n} of 30 started after {:.0} s", submitted.elapsed().as_secs_f64()));
        }
    }
    let r = observer.read(|seen| {
        let pick = |list: &[(String, Instant)]| -> Vec<(i32, Instant)> {
            list.iter().filter_map(|(j, t)| Some((*thirty.get(j)?, *t))).collect()
        };
        let started = pick(&seen.first_pods);
        OrderRun {
            label: if with_quota { "ResourceQuota pods: 3, no cap".into() } else { "--max-active 3".into() },
            complete: started.len() == 30,
            took: started.last().map(|(_, t)| t.duration_since(submitted)).unwrap_or_default(),
            started: started.into_iter().map(|(p, _)| p).collect(),
            // Without a cap nothing is suspended: the unsuspend order is only the launcher's.
            admitted: if with_quota { Vec::new() } else { pick(&seen.admitted).into_iter().map(|(p, _)| p).collect() },
        }
    });
    launcher.stop().await;
    drop(observer);
    ns.delete().await?;
    Ok(r)
}

/// The order the thirty should start in: priority high to low, then submission.
pub fn expected_order() -> Vec<i32> {
    let mut p: Vec<(usize, i32)> = (0..30).map(|i| (i, [0, 5, 10][i % 3] + i32::from(i % 7 == 0))).collect();
    p.sort_by_key(|(i, p)| (std::cmp::Reverse(*p), *i));
    p.into_iter().map(|(_, p)| p).collect()
}

/// A quick check of `Measured::absorb`, run with the helpers: segments add up to one run.
pub fn self_check() {
    let segment = |latencies: &[f64], wall_s: u64, cpu: &[(&str, f64)], error: Option<&str>| Measured {
        load: LoadRun {
            latencies_ms: latencies.to_vec(),
            wall: Duration::from_secs(wall_s),
            errors: usize::from(error.is_some()),
            first_error: error.map(String::from),
        },
        cpu: cpu.iter().map(|(p, s)| (p.to_string(), *s)).collect(),
        launcher_rss_mib: None,
        launcher_hwm_mib: None,
    };
    let mut run = Measured::default();
    run.absorb(segment(&[10.0, 20.0], 1, &[("kube-apiserver", 1.0)], None));
    run.absorb(segment(&[30.0], 2, &[("kube-apiserver", 0.5), ("launcher", 1.0)], Some("refused")));
    assert_eq!(run.load.latencies_ms, [10.0, 20.0, 30.0]);
    assert_eq!(run.load.wall, Duration::from_secs(3));
    assert_eq!((run.load.errors, run.load.first_error.as_deref()), (1, Some("refused")));
    assert_eq!(run.load.per_second(), 1.0);
    assert_eq!(run.cpu_per_1000("kube-apiserver"), Some(500.0));
    assert_eq!(run.cpu_per_1000("launcher"), Some(1000.0 / 3.0));
}
