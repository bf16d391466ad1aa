//! `make bench`: the launcher's throughput and latency against the apiserver's own ceiling, SQS
//! dispatch, ordered admission, memory and start-up, against the local control plane; 100,000
//! Jobs (memory per Job, start-up against a bare list, reads, launches against raw creates) and
//! 1,000 status streams; and the start order of thirty Jobs under a ResourceQuota against the
//! order under admission.
//!
//! Prints one table, splices it into docs/benchmarks.md and writes it as JSON under
//! target/bench/. Run through `make bench` (or `cargo bench --bench launcher`); started any other
//! way (`cargo test --all-targets` runs it without `--bench`) it only checks its own helpers.
//!
//! Settings (environment): BENCH_RUNS (5), BENCH_HEAVY_RUNS (3: admission, 10,000-Job start-up,
//! the 100,000-Job start-ups and launch runs), BENCH_SQS_RUNS (BENCH_RUNS), BENCH_SCALE (1.0,
//! multiplies every count), BENCH_CONCURRENCIES (1,8,64), BENCH_PHASES
//! (throughput,sqs,admission,resources,scale100k,watchers,order), BENCH_SQS_CONCURRENCY (extra
//! SQS rows at these --sqs-concurrency values, e.g. "8"), BENCH_QUOTA_TIMEOUT_S (900),
//! BENCH_LAUNCHER_LOG (info), BENCH_WRITE_DOCS (1), BENCH_SCALE_HTTP_AS_RAW (0; 1 is a
//! diagnostic run: the scale phase's HTTP segments make raw creates instead),
//! BENCH_SCALE_WITHOUT_LAUNCHER (0; 1 is a diagnostic run: no launcher, raw creates in every
//! segment).

mod cluster;
mod phases;
mod process;
mod report;
mod scale;
mod stats;
mod tables;
mod watchers;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde_json::json;
use tables::Report;

pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub struct Settings {
    pub runs: usize,
    pub heavy_runs: usize,
    pub sqs_runs: usize,
    pub scale: f64,
    pub concurrencies: Vec<usize>,
    pub sqs_messages: usize,
    pub sqs_concurrency: Vec<usize>,
    pub admission_jobs: usize,
    pub admission_cap: usize,
    pub index_jobs: usize,
    /// The `scale100k` phase's two sizes (10,000 and 100,000 at scale 1).
    pub scale_small: usize,
    pub scale_large: usize,
    /// The `watchers` phase: streams open, Jobs launched while they are.
    pub watch_streams: usize,
    pub watch_jobs: usize,
    pub phases: Vec<String>,
    pub quota_timeout: Duration,
    /// A diagnostic: the scale phase runs raw creates in its HTTP segments' places, with the
    /// launcher started and idle as usual, to tell whether the control plane's slow episodes
    /// follow the launches or the run's rhythm. Its launch-ratio rows then compare raw with raw.
    pub scale_http_as_raw: bool,
    /// A diagnostic: the scale phase starts no launcher and makes raw creates in every segment,
    /// to tell whether the slow episodes follow the launcher's start-up (its list of the Jobs).
    pub scale_without_launcher: bool,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

impl Settings {
    fn from_env() -> Self {
        let runs = env_or("BENCH_RUNS", 5usize).max(1);
        let scale = env_or("BENCH_SCALE", 1.0f64);
        let scaled = |n: usize, least: usize| ((n as f64 * scale).round() as usize).max(least);
        Self {
            runs,
            heavy_runs: env_or("BENCH_HEAVY_RUNS", 3usize).max(1),
            // Each SQS run takes 90 s against moto and its spread is a few per cent: three runs.
            sqs_runs: env_or("BENCH_SQS_RUNS", runs.min(3)).max(1),
            scale,
            concurrencies: std::env::var("BENCH_CONCURRENCIES")
                .unwrap_or_else(|_| "1,8,64".into())
                .split(',')
                .filter_map(|v| v.trim().parse().ok())
                .collect(),
            // 1,000 messages: the launcher reaches its steady rate within the first hundred, and
            // moto takes about 70 s per 1,000 to send and serve them (the phase took 10.7 min
            // with 2,000).
            sqs_messages: scaled(1000, 20),
            sqs_concurrency: std::env::var("BENCH_SQS_CONCURRENCY")
                .unwrap_or_default()
                .split(',')
                .filter_map(|v| v.trim().parse().ok())
                .collect(),
            admission_jobs: scaled(1000, 60),
            admission_cap: 50,
            index_jobs: scaled(10_000, 100),
            scale_small: scaled(10_000, 100),
            scale_large: scaled(100_000, 1000),
            watch_streams: scaled(1000, 10),
            watch_jobs: scaled(1000, 10),
            phases: std::env::var("BENCH_PHASES")
                .unwrap_or_else(|_| "throughput,sqs,admission,resources,scale100k,watchers,order".into())
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            quota_timeout: Duration::from_secs(env_or("BENCH_QUOTA_TIMEOUT_S", 900u64)),
            scale_http_as_raw: env_or("BENCH_SCALE_HTTP_AS_RAW", 0u8) == 1,
            scale_without_launcher: env_or("BENCH_SCALE_WITHOUT_LAUNCHER", 0u8) == 1,
        }
    }

    /// Jobs per throughput run: enough for a steady rate and a meaningful p99.
    pub fn jobs_at(&self, concurrency: usize) -> usize {
        let base = match concurrency {
            1 => 300,
            c if c <= 8 => 1000,
            _ => 2000,
        };
        ((base as f64 * self.scale).round() as usize).max(concurrency * 4)
    }

    fn wants(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench binaries without --bench: check the helpers only.
        stats::self_check();
        watchers::self_check();
        cluster::GoRuntime::self_check();
        phases::self_check();
        tables::self_check();
        println!("bench helpers ok; the bench itself runs with `make bench`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    if let Err(e) = runtime.block_on(run(Settings::from_env())) {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}

/// The commit the launcher was built from, marked when src/ had uncommitted changes.
fn revision() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{commit} with uncommitted changes") } else { commit }
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "memory_gib": memory_gib,
        "kernel": kernel,
    })
}

async fn run(s: Settings) -> BenchResult<()> {
    let client = cluster::client().await?;
    let context = Context::gather(&client, &s).await?;
    cluster::delete_leftovers(&client).await?;
    let mut report = Report::default();
    measure(&client, &s, &mut report).await?;
    let md = markdown(&context, &report);
    print_tables(&report);
    write_outputs(&context, &s, &report, &md)
}

/// What the figures were measured on and with.
struct Context {
    server: String,
    revision: String,
    date: jiff::Zoned,
    machine: serde_json::Value,
}

impl Context {
    async fn gather(client: &kube::Client, s: &Settings) -> BenchResult<Self> {
        let server = client.apiserver_version().await?.git_version;
        let machine = machine();
        eprintln!(
            "bench: {} cores, kube-apiserver {server}, {} runs ({} heavy), scale {}, phases {}",
            machine["cores"],
            s.runs,
            s.heavy_runs,
            s.scale,
            s.phases.join(",")
        );
        Ok(Self { server, revision: revision(), date: jiff::Zoned::now(), machine })
    }
}

/// Every phase BENCH_PHASES asks for, in order, each adding its rows to the report.
async fn measure(client: &kube::Client, s: &Settings, report: &mut Report) -> BenchResult<()> {
    let mut phase = PhaseClock::default();
    if s.wants("throughput") {
        report.throughput(&phases::throughput(client, s).await?, s);
        phase.lap(report, "throughput");
    }
    if s.wants("sqs") {
        let sqs = phases::sqs_client()?;
        let mut sets = vec![(None, phases::sqs(client, s, &sqs, None, s.sqs_runs).await?)];
        for &c in &s.sqs_concurrency {
            sets.push((Some(c), phases::sqs(client, s, &sqs, Some(c), s.sqs_runs).await?));
        }
        report.sqs(&sets, s);
        phase.lap(report, "sqs");
    }
    if s.wants("admission") {
        report.admission(&phases::admission(client, s).await?, s);
        phase.lap(report, "admission");
    }
    if s.wants("resources") {
        report.resources(&phases::resources(client, s).await?);
        phase.lap(report, "resources");
    }
    if s.wants("watchers") {
        report.watchers(&watchers::watchers(client, s).await?);
        phase.lap(report, "watchers");
    }
    if s.wants("order") {
        eprintln!("[order] thirty Jobs under --max-active 3");
        report.orders.push(phases::order(client, false, Duration::from_secs(180)).await?);
        eprintln!(
            "[order] thirty Jobs under a ResourceQuota of 3 pods, no cap (slow: the Job controller backs off up to 60 s)"
        );
        report.orders.push(phases::order(client, true, s.quota_timeout).await?);
        phase.lap(report, "order");
    }
    // Last: deleting the 100,000 Jobs keeps the Job controller busy for minutes afterwards, and
    // the start-order runs need it to create their pods at once.
    if s.wants("scale100k") {
        report.scale(&scale::scale100k(client, s).await?);
        phase.lap(report, "scale100k");
    }
    report.sort();
    Ok(())
}

/// How long each phase took, for the run's budget (`make bench` with the defaults: 45 minutes).
struct PhaseClock(std::time::Instant);

impl Default for PhaseClock {
    fn default() -> Self {
        Self(std::time::Instant::now())
    }
}

impl PhaseClock {
    fn lap(&mut self, report: &mut Report, phase: &'static str) {
        let took = self.0.elapsed();
        eprintln!("[{phase}] took {:.1} min", took.as_secs_f64() / 60.0);
        report.phase_seconds.push((phase, took.as_secs_f64()));
        self.0 = std::time::Instant::now();
    }
}

/// The generated part of docs/benchmarks.md.
fn markdown(c: &Context, report: &Report) -> String {
    let generated_at = c.date.strftime("%Y-%m-%d %H:%M %Z").to_string();
    let binary_note = if process::binary() == env!("CARGO_BIN_EXE_kube-job-launcher") {
        String::new()
    } else {
        format!(" (binary {})", process::binary())
    };
    let mut md = format!(
        "Measured {generated_at} on {} cores ({}, {} GiB), launcher at {}{binary_note}, kube-apiserver {}, against the local \
control plane (`make dev-up`). Every figure is the median of its runs, with the smallest and largest run as the spread.\n\n",
        c.machine["cores"],
        c.machine["cpu"].as_str().unwrap_or("?"),
        c.machine["memory_gib"],
        c.revision,
        c.server,
    );
    md.push_str(&report::markdown_table(&report.rows));
    md.push_str(&phase_markdown(&report.phase_seconds));
    md.push_str(&cpu_markdown(&report.cpu_table));
    md.push_str(&order_markdown(&report.orders));
    md
}

/// How long the phases took, in one line.
fn phase_markdown(phases: &[(&str, f64)]) -> String {
    if phases.is_empty() {
        return String::new();
    }
    let each: Vec<String> = phases.iter().map(|(p, secs)| format!("{p} {:.1}", secs / 60.0)).collect();
    let total: f64 = phases.iter().map(|(_, secs)| secs).sum();
    format!("\nThe phases took (minutes): {}; {:.1} in all.\n", each.join(", "), total / 60.0)
}

/// CPU seconds per 1,000 Jobs by process, as a table.
fn cpu_markdown(cpu_table: &[tables::CpuLine]) -> String {
    if cpu_table.is_empty() {
        return String::new();
    }
    let mut names: Vec<String> = cpu_table.iter().flat_map(|(_, m)| m.keys().cloned()).collect();
    names.sort();
    names.dedup();
    names.retain(|x| cpu_table.iter().any(|(_, m)| m.get(x).copied().unwrap_or(0.0) >= 0.005));
    let mut md = String::from("\nWhere the CPU goes at the top concurrency (CPU seconds per 1,000 Jobs, medians):\n\n");
    md.push_str(&format!("| | {} | total |\n|---|{}---|\n", names.join(" | "), "---|".repeat(names.len())));
    for (label, m) in cpu_table {
        let cells: Vec<String> = names.iter().map(|n| format!("{:.2}", m.get(n).copied().unwrap_or(0.0))).collect();
        md.push_str(&format!("| {label} | {} | {:.2} |\n", cells.join(" | "), m.values().sum::<f64>()));
    }
    md
}

/// The start-order runs, as a table against the expected order.
fn order_markdown(orders: &[phases::OrderRun]) -> String {
    if orders.is_empty() {
        return String::new();
    }
    let expected = phases::expected_order();
    let mut reversed = expected.clone();
    reversed.reverse();
    let mut text = String::from("\n#### Start order of thirty Jobs: admission against a ResourceQuota\n\n");
    text.push_str(&format!(
        "Three blockers (priority 100, 3 s), then thirty 1-second Jobs with priorities `[0,5,10][i%3]` (+1 when `i%7==0`), \
submitted in order. The sequences are the thirty Jobs' priorities in the order their first pods appeared (a pod watch); \
an inversion is a pair started lower priority first (at most {}: every pair with different priorities).\n\n",
        stats::priority_inversions(&reversed)
    ));
    text.push_str("| run | order (priorities) | inversions | last of the thirty started |\n|---|---|---|---|\n");
    text.push_str(&format!("| expected | `{}` | 0 | |\n", seq(&expected)));
    for o in orders {
        let last = if o.complete {
            format!("{:.1} s after the last submission", o.took.as_secs_f64())
        } else {
            "did not all start in time".into()
        };
        let inversions = stats::priority_inversions(&o.started);
        text.push_str(&format!("| {} | `{}` | {inversions} | {last} |\n", o.label, seq(&o.started)));
        if !o.admitted.is_empty() && o.admitted != o.started {
            let inversions = stats::priority_inversions(&o.admitted);
            text.push_str(&format!("| {} (unsuspended) | `{}` | {inversions} | |\n", o.label, seq(&o.admitted)));
        }
    }
    text
}

/// The table, the CPU split and the start orders on the terminal.
fn print_tables(report: &Report) {
    if !report.rows.is_empty() {
        println!("\n{}", report::text_table(&report.rows));
    }
    if !report.cpu_table.is_empty() {
        println!("CPU seconds per 1,000 Jobs:");
        for (label, m) in &report.cpu_table {
            let cells: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
            println!("  {label}: {}", cells.join(", "));
        }
    }
    let orders = order_markdown(&report.orders);
    if !orders.is_empty() {
        println!("{}", orders.replace('`', ""));
    }
}

/// target/bench/latest.json (and a dated copy) and, unless BENCH_WRITE_DOCS=0, docs/benchmarks.md.
fn write_outputs(c: &Context, s: &Settings, report: &Report, md: &str) -> BenchResult<()> {
    let json = json!({
        "date": c.date.to_string(),
        "machine": c.machine,
        "kube_apiserver": c.server,
        "revision": c.revision,
        "launcher_binary": process::binary(),
        "settings": settings_json(s),
        "rows": report::rows_json(&report.rows),
        "cpu_per_1000_jobs": report.cpu_table.iter().map(|(l, m)| (l.clone(), json!(m))).collect::<serde_json::Map<_, _>>(),
        "order": report.orders.iter().map(|o| json!({
            "label": o.label, "started": o.started, "admitted": o.admitted,
            "inversions": stats::priority_inversions(&o.started), "took_s": o.took.as_secs_f64(), "complete": o.complete,
        })).collect::<Vec<_>>(),
        "raw": report.raw,
        "phase_seconds": report.phase_seconds.iter().map(|(p, secs)| (p.to_string(), json!(secs))).collect::<serde_json::Map<_, _>>(),
    });
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let text = serde_json::to_string_pretty(&json)?;
    let stamped = dir.join(format!("bench-{}.json", c.date.strftime("%Y%m%d-%H%M%S")));
    std::fs::write(&stamped, &text)?;
    std::fs::write(dir.join("latest.json"), &text)?;
    eprintln!("wrote {}", stamped.display());
    if env_or("BENCH_WRITE_DOCS", 1u8) == 1 {
        let path = root.join("docs/benchmarks.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
        std::fs::write(&path, report::splice(&doc, md))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn settings_json(s: &Settings) -> serde_json::Value {
    json!({
        "runs": s.runs, "heavy_runs": s.heavy_runs, "sqs_runs": s.sqs_runs, "scale": s.scale,
        "concurrencies": s.concurrencies,
        "jobs_per_run": s.concurrencies.iter().map(|c| (c.to_string(), s.jobs_at(*c))).collect::<BTreeMap<_, _>>(),
        "sqs_messages": s.sqs_messages, "admission_jobs": s.admission_jobs, "admission_cap": s.admission_cap,
        "index_jobs": s.index_jobs, "scale_jobs": [s.scale_small, s.scale_large],
        "watch_streams": s.watch_streams, "watch_jobs": s.watch_jobs, "phases": s.phases,
    })
}

fn seq(p: &[i32]) -> String {
    p.iter().map(i32::to_string).collect::<Vec<_>>().join(" ")
}

fn thousands(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) { format!("{},000", n / 1000) } else { n.to_string() }
}
