//! `make bench`: the launcher's throughput and latency against the apiserver's own ceiling, SQS
//! dispatch, ordered admission, memory and start-up, against the local control plane; and the
//! start order of thirty Jobs under a ResourceQuota against the order under admission.
//!
//! Prints one table, splices it into docs/benchmarks.md and writes it as JSON under
//! target/bench/. Run through `make bench` (or `cargo bench --bench launcher`); started any other
//! way (`cargo test --all-targets` runs it without `--bench`) it only checks its own helpers.
//!
//! Settings (environment): BENCH_RUNS (5), BENCH_HEAVY_RUNS (3: admission, 10,000-Job start-up),
//! BENCH_SQS_RUNS (BENCH_RUNS), BENCH_SCALE (1.0, multiplies every count), BENCH_CONCURRENCIES
//! (1,8,64), BENCH_PHASES
//! (throughput,sqs,admission,resources,order), BENCH_SQS_CONCURRENCY (extra SQS rows at these
//! --sqs-concurrency values, e.g. "8"), BENCH_QUOTA_TIMEOUT_S (900), BENCH_LAUNCHER_LOG (info),
//! BENCH_WRITE_DOCS (1).

mod cluster;
mod phases;
mod process;
mod report;
mod stats;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use report::{Goal, Row};
use serde_json::json;

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
    pub phases: Vec<String>,
    pub quota_timeout: Duration,
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
            sqs_runs: env_or("BENCH_SQS_RUNS", runs).max(1),
            scale,
            concurrencies: std::env::var("BENCH_CONCURRENCIES")
                .unwrap_or_else(|_| "1,8,64".into())
                .split(',')
                .filter_map(|v| v.trim().parse().ok())
                .collect(),
            sqs_messages: scaled(2000, 20),
            sqs_concurrency: std::env::var("BENCH_SQS_CONCURRENCY")
                .unwrap_or_default()
                .split(',')
                .filter_map(|v| v.trim().parse().ok())
                .collect(),
            admission_jobs: scaled(1000, 60),
            admission_cap: 50,
            index_jobs: scaled(10_000, 100),
            phases: std::env::var("BENCH_PHASES")
                .unwrap_or_else(|_| "throughput,sqs,admission,resources,order".into())
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            quota_timeout: Duration::from_secs(env_or("BENCH_QUOTA_TIMEOUT_S", 900u64)),
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
    let server = client.apiserver_version().await?.git_version;
    let revision = revision();
    let date = jiff::Zoned::now();
    let machine = machine();
    eprintln!(
        "bench: {} cores, kube-apiserver {server}, {} runs ({} heavy), scale {}, phases {}",
        machine["cores"],
        s.runs,
        s.heavy_runs,
        s.scale,
        s.phases.join(",")
    );
    cluster::delete_leftovers(&client).await?;

    let mut rows: Vec<Row> = Vec::new();
    let mut raw = serde_json::Map::new();
    let mut cpu_table: Vec<(String, BTreeMap<String, f64>)> = Vec::new();
    let mut ceiling_top: Option<Vec<f64>> = None;

    if s.wants("throughput") {
        let pairs = phases::throughput(&client, &s).await?;
        let mut ceiling_rows = Vec::new();
        let mut http_rows = Vec::new();
        for &c in &s.concurrencies {
            let at: Vec<&phases::Pair> = pairs.iter().filter(|p| p.concurrency == c).collect();
            let f = |g: &dyn Fn(&phases::Pair) -> f64| at.iter().map(|p| g(p)).collect::<Vec<f64>>();
            let ceiling_rate = f(&|p| p.ceiling.load.per_second());
            ceiling_rows.push(Row::new(
                "ceiling: kube-rs → apiserver",
                format!("c={c}: Jobs/s"),
                "",
                ceiling_rate.clone(),
            ));
            ceiling_rows.push(Row::new(
                "ceiling: kube-rs → apiserver",
                format!("c={c}: p50"),
                "ms",
                f(&|p| p.ceiling.p(50.0)),
            ));
            ceiling_rows.push(Row::new(
                "ceiling: kube-rs → apiserver",
                format!("c={c}: p99"),
                "ms",
                f(&|p| p.ceiling.p(99.0)),
            ));
            let top = c == *s.concurrencies.iter().max().unwrap_or(&c);
            if top {
                ceiling_top = Some(ceiling_rate);
                let w = |g: &dyn Fn(&phases::Measured) -> f64| {
                    at.iter().filter_map(|p| p.watched.as_ref().map(g)).collect::<Vec<f64>>()
                };
                ceiling_rows.push(Row::new(
                    "ceiling: kube-rs → apiserver",
                    format!("c={c} with a watch of the Jobs: Jobs/s"),
                    "",
                    w(&|m| m.load.per_second()),
                ));
                ceiling_rows.push(Row::new(
                    "ceiling: kube-rs → apiserver",
                    format!("c={c} with a watch of the Jobs: p99"),
                    "ms",
                    w(&|m| m.p(99.0)),
                ));
            }
            let sec = "HTTP: POST /v1/jobs";
            http_rows.push(Row::new(sec, format!("c={c}: Jobs/s"), "", f(&|p| p.http.load.per_second())));
            let ratio = Row::new(
                sec,
                format!("c={c}: ratio to the ceiling"),
                "%",
                f(&|p| p.http.load.per_second() / p.ceiling.load.per_second()),
            );
            http_rows.push(if top { ratio.goal(Goal::AtLeast(0.9)) } else { ratio });
            if top {
                http_rows.push(Row::new(
                    sec,
                    format!("c={c}: ratio to the ceiling with a watch"),
                    "%",
                    at.iter()
                        .filter_map(|p| Some(p.http.load.per_second() / p.watched.as_ref()?.load.per_second()))
                        .collect(),
                ));
            }
            http_rows.push(Row::new(sec, format!("c={c}: p50"), "ms", f(&|p| p.http.p(50.0))));
            http_rows.push(Row::new(sec, format!("c={c}: p99"), "ms", f(&|p| p.http.p(99.0))));
            http_rows.push(Row::new(
                sec,
                format!("c={c}: added at p50"),
                "ms",
                f(&|p| p.http.p(50.0) - p.ceiling.p(50.0)),
            ));
            let added = Row::new(sec, format!("c={c}: added at p99"), "ms", f(&|p| p.http.p(99.0) - p.ceiling.p(99.0)));
            http_rows.push(if top { added.goal(Goal::AtMost(2.0)) } else { added });
            if top {
                http_rows.push(Row::new(
                    "resources",
                    format!("launcher CPU per 1,000 launches (HTTP, c={c})"),
                    "s",
                    f(&|p| p.http.cpu_per_1000("launcher").unwrap_or(0.0)),
                ));
                http_rows.push(Row::new(
                    "resources",
                    format!("peak RSS (VmHWM) after HTTP at c={c}"),
                    "MiB",
                    f(&|p| p.http.launcher_hwm_mib.unwrap_or(0.0)),
                ));
                // CPU per 1,000 Jobs by process, ceiling against HTTP.
                for (label, pick) in [("ceiling", 0), ("ceiling with a watch", 1), ("HTTP", 2)] {
                    let mut sums: BTreeMap<String, Vec<f64>> = BTreeMap::new();
                    for p in &at {
                        let m = match pick {
                            0 => &p.ceiling,
                            1 => match &p.watched {
                                Some(w) => w,
                                None => continue,
                            },
                            _ => &p.http,
                        };
                        for name in m.cpu.keys() {
                            sums.entry(name.clone()).or_default().push(m.cpu_per_1000(name).unwrap_or(0.0));
                        }
                    }
                    cpu_table.push((
                        format!("{label}, c={c}"),
                        sums.into_iter().map(|(k, v)| (k, stats::median(&v))).collect(),
                    ));
                }
            }
        }
        rows.extend(ceiling_rows);
        rows.extend(http_rows);
        raw.insert(
            "throughput".into(),
            pairs
                .iter()
                .map(|p| {
                    json!({
                        "concurrency": p.concurrency,
                        "ceiling": measured_json(&p.ceiling),
                        "ceiling_with_watch": p.watched.as_ref().map(measured_json),
                        "http": measured_json(&p.http),
                    })
                })
                .collect(),
        );
    }

    if s.wants("sqs") {
        let sqs = phases::sqs_client()?;
        let mut sqs_sets: Vec<(Option<usize>, Vec<phases::SqsRun>)> =
            vec![(None, phases::sqs(&client, &s, &sqs, None, s.sqs_runs).await?)];
        for &c in &s.sqs_concurrency {
            sqs_sets.push((Some(c), phases::sqs(&client, &s, &sqs, Some(c), s.sqs_runs).await?));
        }
        let sec = "SQS dispatch";
        let n = s.sqs_messages;
        let mut sqs_raw = Vec::new();
        for (concurrency, runs) in &sqs_sets {
            let label = concurrency.map(|c| format!(" [--sqs-concurrency {c}]")).unwrap_or_default();
            rows.push(Row::new(
                sec,
                format!("{n} messages waiting → {n} Jobs{label}"),
                "s",
                runs.iter().map(|r| r.took.as_secs_f64()).collect(),
            ));
            let rates: Vec<f64> = runs.iter().map(phases::SqsRun::per_second).collect();
            rows.push(Row::new(sec, format!("Jobs/s{label}"), "", rates.clone()));
            if let Some(top) = &ceiling_top {
                let ceiling = stats::median(top);
                let row = Row::new(
                    sec,
                    format!("ratio to the ceiling (c=64){label}"),
                    "%",
                    rates.iter().map(|r| r / ceiling).collect(),
                );
                rows.push(if concurrency.is_none() { row.goal(Goal::AtLeast(0.8)) } else { row });
            }
            // Where the time goes: the SQS server's CPU against the launcher's, per 1,000 messages.
            for (process, what) in [("launcher", "launcher"), ("sqs", "SQS server (moto)")] {
                rows.push(Row::new(
                    "resources",
                    format!("{what} CPU per 1,000 messages (SQS dispatch){label}"),
                    "s",
                    runs.iter()
                        .map(|r| r.cpu.get(process).copied().unwrap_or(0.0) * 1000.0 / r.messages as f64)
                        .collect(),
                ));
            }
            for r in runs {
                sqs_raw.push(json!({
                    "sqs_concurrency": concurrency,
                    "messages": r.messages,
                    "jobs": r.jobs,
                    "took_s": r.took.as_secs_f64(),
                    "jobs_per_s": r.per_second(),
                    "dead_lettered": r.dead_lettered,
                    "left_in_queue": r.left_in_queue,
                    "cpu_s": r.cpu,
                }));
            }
        }
        raw.insert("sqs".into(), sqs_raw.into());
    }

    if s.wants("admission") {
        let runs = phases::admission(&client, &s).await?;
        let sec = "admission";
        let (n, cap) = (s.admission_jobs, s.admission_cap);
        rows.push(Row::new(
            sec,
            format!("{n} queued, cap {cap}, pods end at once: admissions/s"),
            "",
            runs.iter().map(|r| r.steady_per_second).collect(),
        ));
        rows.push(Row::new(
            sec,
            "a Job finishes → the next admitted: p50",
            "ms",
            runs.iter().map(|r| stats::percentile(&r.lag_ms, 50.0)).collect(),
        ));
        rows.push(Row::new(
            sec,
            "a Job finishes → the next admitted: p99",
            "ms",
            runs.iter().map(|r| stats::percentile(&r.lag_ms, 99.0)).collect(),
        ));
        raw.insert(
            "admission".into(),
            runs.iter()
                .map(|r| {
                    json!({
                        "jobs": r.jobs, "cap": r.cap, "all_s": r.all.as_secs_f64(),
                        "steady_per_s": r.steady_per_second,
                        "lag_p50_ms": stats::percentile(&r.lag_ms, 50.0),
                        "lag_p99_ms": stats::percentile(&r.lag_ms, 99.0),
                    })
                })
                .collect(),
        );
    }

    if s.wants("resources") {
        let r = phases::resources(&client, &s).await?;
        let sec = "resources";
        let k = r.index_jobs;
        let kk = thousands(k);
        let v = |runs: &[phases::StartRun], f: &dyn Fn(&phases::StartRun) -> Option<f64>| -> Vec<f64> {
            runs.iter().filter_map(f).collect()
        };
        rows.push(Row::new(sec, "RSS idle (ready, no Jobs)", "MiB", v(&r.idle, &|x| Some(x.rss_mib))));
        rows.push(Row::new(sec, "of which file-backed (the binary's pages)", "MiB", v(&r.idle, &|x| Some(x.file_mib))));
        rows.push(
            Row::new(sec, format!("RSS with {kk} Jobs in the index"), "MiB", v(&r.indexed, &|x| Some(x.rss_mib)))
                .goal(Goal::AtMost(30.0)),
        );
        rows.push(Row::new(
            sec,
            format!("peak RSS (VmHWM) with {kk} Jobs"),
            "MiB",
            v(&r.indexed, &|x| Some(x.hwm_mib)),
        ));
        rows.push(Row::new(sec, "start → /readyz, no Jobs", "ms", v(&r.idle, &|x| x.startup.ready.map(stats::ms))));
        rows.push(
            Row::new(
                sec,
                "caches synced → /readyz, no Jobs",
                "ms",
                v(&r.idle, &|x| x.startup.ready_after_sync().map(stats::ms)),
            )
            .goal(Goal::AtMost(200.0)),
        );
        rows.push(Row::new(
            sec,
            format!("start → /readyz, {kk} Jobs"),
            "ms",
            v(&r.indexed, &|x| x.startup.ready.map(stats::ms)),
        ));
        rows.push(Row::new(
            sec,
            format!("start → caches synced, {kk} Jobs"),
            "ms",
            v(&r.indexed, &|x| x.startup.synced.map(stats::ms)),
        ));
        rows.push(
            Row::new(
                sec,
                format!("caches synced → /readyz, {kk} Jobs"),
                "ms",
                v(&r.indexed, &|x| x.startup.ready_after_sync().map(stats::ms)),
            )
            .goal(Goal::AtMost(200.0)),
        );
        rows.push(Row::new(sec, format!("start-up CPU with {kk} Jobs"), "s", v(&r.indexed, &|x| Some(x.cpu_s))));
        let hc = r.http_concurrency;
        let sec_http = "HTTP: POST /v1/jobs";
        rows.push(Row::new(
            sec_http,
            format!("c={hc} with {kk} Jobs in the index: Jobs/s"),
            "",
            r.http_indexed.iter().map(|m| m.load.per_second()).collect(),
        ));
        rows.push(Row::new(
            sec_http,
            format!("c={hc} with {kk} Jobs in the index: p99"),
            "ms",
            r.http_indexed.iter().map(|m| m.p(99.0)).collect(),
        ));
        rows.push(Row::new(
            "resources",
            format!("launcher CPU per 1,000 launches (HTTP, c={hc}, {kk} Jobs in the index)"),
            "s",
            r.http_indexed.iter().map(|m| m.cpu_per_1000("launcher").unwrap_or(0.0)).collect(),
        ));
        let start_json = |runs: &[phases::StartRun]| -> serde_json::Value {
            runs.iter()
                .map(|x| {
                    json!({
                        "serving_ms": x.startup.serving.map(stats::ms),
                        "synced_ms": x.startup.synced.map(stats::ms),
                        "ready_ms": x.startup.ready.map(stats::ms),
                        "jobs_listed": x.startup.jobs_listed,
                        "rss_mib": x.rss_mib, "anon_mib": x.anon_mib, "file_mib": x.file_mib,
                        "hwm_mib": x.hwm_mib, "cpu_s": x.cpu_s,
                    })
                })
                .collect()
        };
        raw.insert(
            "resources".into(),
            json!({ "idle": start_json(&r.idle), "indexed": start_json(&r.indexed), "index_jobs": k }),
        );
    }

    // One section after the other, in the order of the issue.
    let order = ["ceiling", "HTTP", "SQS", "admission", "resources"];
    rows.sort_by_key(|r| order.iter().position(|o| r.section.starts_with(o)).unwrap_or(order.len()));

    let mut orders = Vec::new();
    if s.wants("order") {
        eprintln!("[order] thirty Jobs under --max-active 3");
        orders.push(phases::order(&client, false, Duration::from_secs(180)).await?);
        eprintln!(
            "[order] thirty Jobs under a ResourceQuota of 3 pods, no cap (slow: the Job controller backs off up to 60 s)"
        );
        orders.push(phases::order(&client, true, s.quota_timeout).await?);
    }

    // Output.
    let generated_at = date.strftime("%Y-%m-%d %H:%M %Z").to_string();
    let mut md = String::new();
    let binary_note = if process::binary() == env!("CARGO_BIN_EXE_kube-job-launcher") {
        String::new()
    } else {
        format!(" (binary {})", process::binary())
    };
    md.push_str(&format!(
        "Measured {generated_at} on {} cores ({}, {} GiB), launcher at {revision}{}, kube-apiserver {server}, against the local \
control plane (`make dev-up`). Every figure is the median of its runs, with the smallest and largest run as the spread.\n\n",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["memory_gib"],
        binary_note,
    ));
    md.push_str(&report::markdown_table(&rows));
    if !cpu_table.is_empty() {
        md.push_str("\nWhere the CPU goes at the top concurrency (CPU seconds per 1,000 Jobs, medians):\n\n");
        let names: Vec<String> = {
            let mut n: Vec<String> = cpu_table.iter().flat_map(|(_, m)| m.keys().cloned()).collect();
            n.sort();
            n.dedup();
            n.retain(|x| cpu_table.iter().any(|(_, m)| m.get(x).copied().unwrap_or(0.0) >= 0.005));
            n
        };
        md.push_str(&format!("| | {} | total |\n|---|{}---|\n", names.join(" | "), "---|".repeat(names.len())));
        for (label, m) in &cpu_table {
            let cells: Vec<String> = names.iter().map(|n| format!("{:.2}", m.get(n).copied().unwrap_or(0.0))).collect();
            md.push_str(&format!("| {label} | {} | {:.2} |\n", cells.join(" | "), m.values().sum::<f64>()));
        }
    }
    let mut order_text = String::new();
    if !orders.is_empty() {
        let expected = phases::expected_order();
        order_text.push_str("\n#### Start order of thirty Jobs: admission against a ResourceQuota\n\n");
        let mut reversed = expected.clone();
        reversed.reverse();
        order_text.push_str(&format!(
            "Three blockers (priority 100, 3 s), then thirty 1-second Jobs with priorities `[0,5,10][i%3]` (+1 when `i%7==0`), \
submitted in order. The sequences are the thirty Jobs' priorities in the order their first pods appeared (a pod watch); \
an inversion is a pair started lower priority first (at most {}: every pair with different priorities).\n\n",
            stats::priority_inversions(&reversed)
        ));
        order_text
            .push_str("| run | order (priorities) | inversions | last of the thirty started |\n|---|---|---|---|\n");
        order_text.push_str(&format!("| expected | `{}` | 0 | |\n", seq(&expected)));
        for o in &orders {
            order_text.push_str(&format!(
                "| {} | `{}` | {} | {} |\n",
                o.label,
                seq(&o.started),
                stats::priority_inversions(&o.started),
                if o.complete {
                    format!("{:.1} s after the last submission", o.took.as_secs_f64())
                } else {
                    "did not all start in time".into()
                }
            ));
            if !o.admitted.is_empty() && o.admitted != o.started {
                order_text.push_str(&format!(
                    "| {} (unsuspended) | `{}` | {} | |\n",
                    o.label,
                    seq(&o.admitted),
                    stats::priority_inversions(&o.admitted)
                ));
            }
        }
        md.push_str(&order_text);
    }

    if !rows.is_empty() {
        println!("\n{}", report::text_table(&rows));
    }
    if !cpu_table.is_empty() {
        println!("CPU seconds per 1,000 Jobs:");
        for (label, m) in &cpu_table {
            let cells: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
            println!("  {label}: {}", cells.join(", "));
        }
    }
    if !order_text.is_empty() {
        println!("{}", order_text.replace('`', ""));
    }

    let json = json!({
        "date": date.to_string(),
        "machine": machine,
        "kube_apiserver": server,
        "revision": revision,
        "launcher_binary": process::binary(),
        "settings": {
            "runs": s.runs, "heavy_runs": s.heavy_runs, "sqs_runs": s.sqs_runs, "scale": s.scale,
            "concurrencies": s.concurrencies,
            "jobs_per_run": s.concurrencies.iter().map(|c| (c.to_string(), s.jobs_at(*c))).collect::<BTreeMap<_, _>>(),
            "sqs_messages": s.sqs_messages, "admission_jobs": s.admission_jobs, "admission_cap": s.admission_cap,
            "index_jobs": s.index_jobs, "phases": s.phases,
        },
        "rows": report::rows_json(&rows),
        "cpu_per_1000_jobs": cpu_table.iter().map(|(l, m)| (l.clone(), json!(m))).collect::<serde_json::Map<_, _>>(),
        "order": orders.iter().map(|o| json!({
            "label": o.label, "started": o.started, "admitted": o.admitted,
            "inversions": stats::priority_inversions(&o.started), "took_s": o.took.as_secs_f64(), "complete": o.complete,
        })).collect::<Vec<_>>(),
        "raw": raw,
    });
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let text = serde_json::to_string_pretty(&json)?;
    let stamped = dir.join(format!("bench-{}.json", date.strftime("%Y%m%d-%H%M%S")));
    std::fs::write(&stamped, &text)?;
    std::fs::write(dir.join("latest.json"), &text)?;
    eprintln!("wrote {}", stamped.display());
    if env_or("BENCH_WRITE_DOCS", 1u8) == 1 {
        let path = root.join("docs/benchmarks.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
        std::fs::write(&path, report::splice(&doc, &md))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn seq(p: &[i32]) -> String {
    p.iter().map(i32::to_string).collect::<Vec<_>>().join(" ")
}

fn thousands(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) { format!("{},000", n / 1000) } else { n.to_string() }
}

fn measured_json(m: &phases::Measured) -> serde_json::Value {
    json!({
        "jobs": m.load.latencies_ms.len(),
        "errors": m.load.errors,
        "wall_s": m.load.wall.as_secs_f64(),
        "jobs_per_s": m.load.per_second(),
        "p50_ms": m.p(50.0),
        "p90_ms": m.p(90.0),
        "p99_ms": m.p(99.0),
        "max_ms": m.p(100.0),
        "cpu_s": m.cpu,
        "launcher_rss_mib": m.launcher_rss_mib,
        "launcher_hwm_mib": m.launcher_hwm_mib,
    })
}
