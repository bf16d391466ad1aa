//! From measurements to the table's rows and the raw JSON: one method per phase, run in the order
//! of `run`, each adding its rows (with targets) and its raw figures to the report.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::{
    Settings,
    cluster::GoRuntime,
    phases::{self, Measured, Pair, StartRun},
    report::{Goal, Row},
    scale::{Scale, Segment},
    stats::{self, ms},
    thousands,
    watchers::Watchers,
};

/// CPU seconds per 1,000 Jobs by process, for one kind of run.
pub type CpuLine = (String, BTreeMap<String, f64>);

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub raw: serde_json::Map<String, Value>,
    pub cpu_table: Vec<CpuLine>,
    /// The ceiling's Jobs/s at the top concurrency, run by run (the SQS ratio's reference).
    pub ceiling_top: Option<Vec<f64>>,
    pub orders: Vec<phases::OrderRun>,
    /// Each phase and how long it took, in seconds.
    pub phase_seconds: Vec<(&'static str, f64)>,
}

/// One section after the other, in the order of the issues.
const SECTIONS: [&str; 7] = ["ceiling", "HTTP", "SQS", "admission", "resources", "scale", "watchers"];

impl Report {
    pub fn sort(&mut self) {
        self.rows.sort_by_key(|r| SECTIONS.iter().position(|o| r.section.starts_with(o)).unwrap_or(SECTIONS.len()));
    }

    pub fn throughput(&mut self, pairs: &[Pair], s: &Settings) {
        let top = s.concurrencies.iter().copied().max();
        let mut http_rows = Vec::new();
        for &c in &s.concurrencies {
            let at: Vec<&Pair> = pairs.iter().filter(|p| p.concurrency == c).collect();
            let is_top = Some(c) == top;
            self.rows.extend(ceiling_rows(&at, c, is_top));
            http_rows.extend(http_rows_at(&at, c, is_top));
            if is_top {
                self.ceiling_top = Some(at.iter().map(|p| p.ceiling.load.per_second()).collect());
                http_rows.extend(http_resource_rows(&at, c));
                self.cpu_table.extend(cpu_lines(&at, c));
            }
        }
        self.rows.extend(http_rows);
        let raw = pairs
            .iter()
            .map(|p| {
                json!({
                    "concurrency": p.concurrency,
                    "ceiling": measured_json(&p.ceiling),
                    "ceiling_with_watch": p.watched.as_ref().map(measured_json),
                    "http": measured_json(&p.http),
                })
            })
            .collect();
        self.raw.insert("throughput".into(), raw);
    }
}

/// The values of one figure across runs.
fn each<T>(runs: &[T], f: impl Fn(&T) -> f64) -> Vec<f64> {
    runs.iter().map(f).collect()
}

fn ceiling_rows(at: &[&Pair], c: usize, top: bool) -> Vec<Row> {
    let sec = "ceiling: kube-rs → apiserver";
    let mut rows = vec![
        Row::new(sec, format!("c={c}: Jobs/s"), "", each(at, |p| p.ceiling.load.per_second())),
        Row::new(sec, format!("c={c}: p50"), "ms", each(at, |p| p.ceiling.p(50.0))),
        Row::new(sec, format!("c={c}: p99"), "ms", each(at, |p| p.ceiling.p(99.0))),
    ];
    if top {
        let watched: Vec<&Measured> = at.iter().filter_map(|p| p.watched.as_ref()).collect();
        let label = format!("c={c} with a watch of the Jobs");
        rows.push(Row::new(sec, format!("{label}: Jobs/s"), "", each(&watched, |m| m.load.per_second())));
        rows.push(Row::new(sec, format!("{label}: p99"), "ms", each(&watched, |m| m.p(99.0))));
    }
    rows
}

fn http_rows_at(at: &[&Pair], c: usize, top: bool) -> Vec<Row> {
    let sec = "HTTP: POST /v1/jobs";
    let mut rows = vec![Row::new(sec, format!("c={c}: Jobs/s"), "", each(at, |p| p.http.load.per_second()))];
    let ratio = Row::new(
        sec,
        format!("c={c}: ratio to the ceiling"),
        "%",
        each(at, |p| p.http.load.per_second() / p.ceiling.load.per_second()),
    );
    rows.push(if top { ratio.goal(Goal::AtLeast(0.9)) } else { ratio });
    if top {
        let with_watch: Vec<f64> =
            at.iter().filter_map(|p| Some(p.http.load.per_second() / p.watched.as_ref()?.load.per_second())).collect();
        rows.push(Row::new(sec, format!("c={c}: ratio to the ceiling with a watch"), "%", with_watch));
    }
    rows.push(Row::new(sec, format!("c={c}: p50"), "ms", each(at, |p| p.http.p(50.0))));
    rows.push(Row::new(sec, format!("c={c}: p99"), "ms", each(at, |p| p.http.p(99.0))));
    rows.push(Row::new(sec, format!("c={c}: added at p50"), "ms", each(at, |p| p.http.p(50.0) - p.ceiling.p(50.0))));
    let added = Row::new(sec, format!("c={c}: added at p99"), "ms", each(at, |p| p.http.p(99.0) - p.ceiling.p(99.0)));
    rows.push(if top { added.goal(Goal::AtMost(2.0)) } else { added });
    rows
}

fn http_resource_rows(at: &[&Pair], c: usize) -> Vec<Row> {
    vec![
        Row::new(
            "resources",
            format!("launcher CPU per 1,000 launches (HTTP, c={c})"),
            "s",
            each(at, |p| p.http.cpu_per_1000("launcher").unwrap_or(0.0)),
        ),
        Row::new(
            "resources",
            format!("peak RSS (VmHWM) after HTTP at c={c}"),
            "MiB",
            each(at, |p| p.http.launcher_hwm_mib.unwrap_or(0.0)),
        ),
    ]
}

/// CPU per 1,000 Jobs by process: the ceiling, the ceiling with a watch, and HTTP (medians).
fn cpu_lines(at: &[&Pair], c: usize) -> Vec<CpuLine> {
    type Pick = fn(&Pair) -> Option<&Measured>;
    let kinds: [(&str, Pick); 3] = [
        ("ceiling", |p| Some(&p.ceiling)),
        ("ceiling with a watch", |p| p.watched.as_ref()),
        ("HTTP", |p| Some(&p.http)),
    ];
    kinds
        .iter()
        .map(|(label, pick)| {
            let mut sums: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for m in at.iter().filter_map(|p| pick(p)) {
                for name in m.cpu.keys() {
                    sums.entry(name.clone()).or_default().push(m.cpu_per_1000(name).unwrap_or(0.0));
                }
            }
            (format!("{label}, c={c}"), sums.into_iter().map(|(k, v)| (k, stats::median(&v))).collect())
        })
        .collect()
}

pub fn measured_json(m: &Measured) -> Value {
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

impl Report {
    pub fn sqs(&mut self, sets: &[(Option<usize>, Vec<phases::SqsRun>)], s: &Settings) {
        let sec = "SQS dispatch";
        let n = s.sqs_messages;
        let mut sqs_raw = Vec::new();
        for (concurrency, runs) in sets {
            let label = concurrency.map(|c| format!(" [--sqs-concurrency {c}]")).unwrap_or_default();
            self.rows.push(Row::new(
                sec,
                format!("{n} messages waiting → {n} Jobs{label}"),
                "s",
                each(runs, |r| r.took.as_secs_f64()),
            ));
            let rates = each(runs, phases::SqsRun::per_second);
            self.rows.push(Row::new(sec, format!("Jobs/s{label}"), "", rates.clone()));
            if let Some(top) = &self.ceiling_top {
                let ceiling = stats::median(top);
                let row =
                    Row::new(sec, format!("ratio to the ceiling (c=64){label}"), "%", each(&rates, |r| r / ceiling));
                self.rows.push(if concurrency.is_none() { row.goal(Goal::AtLeast(0.8)) } else { row });
            }
            // Where the time goes: the SQS server's CPU against the launcher's, per 1,000 messages.
            for (process, what) in [("launcher", "launcher"), ("sqs", "SQS server (moto)")] {
                self.rows.push(Row::new(
                    "resources",
                    format!("{what} CPU per 1,000 messages (SQS dispatch){label}"),
                    "s",
                    each(runs, |r| r.cpu.get(process).copied().unwrap_or(0.0) * 1000.0 / r.messages as f64),
                ));
            }
            sqs_raw.extend(runs.iter().map(|r| {
                json!({
                    "sqs_concurrency": concurrency, "messages": r.messages, "jobs": r.jobs,
                    "took_s": r.took.as_secs_f64(), "jobs_per_s": r.per_second(),
                    "dead_lettered": r.dead_lettered, "left_in_queue": r.left_in_queue, "cpu_s": r.cpu,
                })
            }));
        }
        self.raw.insert("sqs".into(), sqs_raw.into());
    }

    pub fn admission(&mut self, runs: &[phases::AdmissionRun], s: &Settings) {
        let sec = "admission";
        let (n, cap) = (s.admission_jobs, s.admission_cap);
        let lag = |q: f64| each(runs, |r| stats::percentile(&r.lag_ms, q));
        self.rows.push(Row::new(
            sec,
            format!("{n} queued, cap {cap}, pods end at once: admissions/s"),
            "",
            each(runs, |r| r.steady_per_second),
        ));
        self.rows.push(Row::new(sec, "a Job finishes → the next admitted: p50", "ms", lag(50.0)));
        self.rows.push(Row::new(sec, "a Job finishes → the next admitted: p99", "ms", lag(99.0)));
        let raw = runs
            .iter()
            .map(|r| {
                json!({
                    "jobs": r.jobs, "cap": r.cap, "all_s": r.all.as_secs_f64(),
                    "steady_per_s": r.steady_per_second,
                    "lag_p50_ms": stats::percentile(&r.lag_ms, 50.0),
                    "lag_p99_ms": stats::percentile(&r.lag_ms, 99.0),
                })
            })
            .collect();
        self.raw.insert("admission".into(), raw);
    }

    pub fn resources(&mut self, r: &phases::Resources) {
        self.rows.extend(start_rows(r));
        let (hc, kk) = (r.http_concurrency, thousands(r.index_jobs));
        let sec_http = "HTTP: POST /v1/jobs";
        let label = format!("c={hc} with {kk} Jobs in the index");
        self.rows.push(Row::new(
            sec_http,
            format!("{label}: Jobs/s"),
            "",
            each(&r.http_indexed, |m| m.load.per_second()),
        ));
        self.rows.push(Row::new(sec_http, format!("{label}: p99"), "ms", each(&r.http_indexed, |m| m.p(99.0))));
        self.rows.push(Row::new(
            "resources",
            format!("launcher CPU per 1,000 launches (HTTP, c={hc}, {kk} Jobs in the index)"),
            "s",
            each(&r.http_indexed, |m| m.cpu_per_1000("launcher").unwrap_or(0.0)),
        ));
        self.raw.insert(
            "resources".into(),
            json!({ "idle": starts_json(&r.idle), "indexed": starts_json(&r.indexed), "index_jobs": r.index_jobs }),
        );
    }
}

fn start_rows(r: &phases::Resources) -> Vec<Row> {
    let (sec, kk) = ("resources", thousands(r.index_jobs));
    let opt =
        |runs: &[StartRun], f: &dyn Fn(&StartRun) -> Option<f64>| -> Vec<f64> { runs.iter().filter_map(f).collect() };
    let after_sync = |x: &StartRun| x.startup.ready_after_sync().map(ms);
    vec![
        Row::new(sec, "RSS idle (ready, no Jobs)", "MiB", each(&r.idle, |x| x.rss_mib)),
        Row::new(sec, "of which file-backed (the binary's pages)", "MiB", each(&r.idle, |x| x.file_mib)),
        Row::new(sec, format!("RSS with {kk} Jobs in the index"), "MiB", each(&r.indexed, |x| x.rss_mib))
            .goal(Goal::AtMost(30.0)),
        Row::new(sec, format!("peak RSS (VmHWM) with {kk} Jobs"), "MiB", each(&r.indexed, |x| x.hwm_mib)),
        Row::new(sec, "start → /readyz, no Jobs", "ms", opt(&r.idle, &|x| x.startup.ready.map(ms))),
        Row::new(sec, "caches synced → /readyz, no Jobs", "ms", opt(&r.idle, &after_sync)).goal(Goal::AtMost(200.0)),
        Row::new(sec, format!("start → /readyz, {kk} Jobs"), "ms", opt(&r.indexed, &|x| x.startup.ready.map(ms))),
        Row::new(
            sec,
            format!("start → caches synced, {kk} Jobs"),
            "ms",
            opt(&r.indexed, &|x| x.startup.synced.map(ms)),
        ),
        Row::new(sec, format!("caches synced → /readyz, {kk} Jobs"), "ms", opt(&r.indexed, &after_sync))
            .goal(Goal::AtMost(200.0)),
        Row::new(sec, format!("start-up CPU with {kk} Jobs"), "s", each(&r.indexed, |x| x.cpu_s)),
    ]
}

pub fn starts_json(runs: &[StartRun]) -> Value {
    runs.iter()
        .map(|x| {
            json!({
                "serving_ms": x.startup.serving.map(ms),
                "synced_ms": x.startup.synced.map(ms),
                "ready_ms": x.startup.ready.map(ms),
                "jobs_listed": x.startup.jobs_listed,
                "rss_mib": x.rss_mib, "anon_mib": x.anon_mib, "file_mib": x.file_mib,
                "hwm_mib": x.hwm_mib, "cpu_s": x.cpu_s,
            })
        })
        .collect()
}

impl Report {
    pub fn scale(&mut self, sc: &Scale) {
        self.rows.extend(scale_memory_rows(sc));
        self.rows.extend(scale_startup_rows(sc));
        self.rows.extend(scale_read_rows(sc));
        self.rows.extend(scale_launch_rows(sc));
        let bare = |l: &[crate::scale::BareList]| -> Value {
            l.iter()
                .map(
                    |b| json!({"ms": ms(b.took), "jobs": b.jobs, "pods": b.pods, "apiserver_cpu_s": b.apiserver_cpu_s}),
                )
                .collect()
        };
        let reads: serde_json::Map<String, Value> = sc
            .reads
            .iter()
            .map(|r| {
                let p = |q| stats::percentile(&r.latencies_ms, q);
                (
                    r.label.to_string(),
                    json!({"p50_ms": p(50.0), "p99_ms": p(99.0), "max_ms": p(100.0), "first_page_items": r.items}),
                )
            })
            .collect();
        self.raw.insert(
            "scale100k".into(),
            json!({
                "jobs_small": sc.small, "jobs_large": sc.large, "create_per_s": sc.create_rate,
                "at_small": starts_json(&sc.at_small), "at_large": starts_json(&sc.at_large),
                "page_size": sc.page_size, "launcher_streams": sc.launcher_streams,
                "bare_paged": bare(&sc.bare_paged), "bare_streamed": bare(&sc.bare_streamed),
                "reads": reads,
                "walk": {"pages": sc.walk.page_ms.len(), "items": sc.walk.items, "distinct": sc.walk.distinct,
                         "total_ms": ms(sc.walk.took), "page_p50_ms": stats::percentile(&sc.walk.page_ms, 50.0),
                         "page_p99_ms": stats::percentile(&sc.walk.page_ms, 99.0)},
                "raw_creates": sc.raw.iter().map(measured_json).collect::<Vec<_>>(),
                "segments": {"raw": sc.raw_segments, "http": sc.http_segments},
                "http": sc.http.iter().map(measured_json).collect::<Vec<_>>(),
                "apiserver_go_runtime": {"raw": sc.raw_runtime, "startup": sc.startup_runtime, "http": sc.http_runtime},
                "control_plane_mib": sc.control_plane_mib,
            }),
        );
    }
}

fn scale_memory_rows(sc: &Scale) -> Vec<Row> {
    let (sec, small, large) = ("scale", thousands(sc.small), thousands(sc.large));
    let slopes: Vec<f64> = sc
        .at_small
        .iter()
        .zip(&sc.at_large)
        .map(|(a, b)| (b.rss_mib - a.rss_mib) * 1024.0 / (sc.large - sc.small) as f64)
        .collect();
    let mut rows = vec![
        Row::new(
            sec,
            "Jobs (with status and pods) created straight through the API server: Jobs/s",
            "",
            sc.create_rate.clone(),
        ),
        Row::new(sec, format!("launcher RSS with {small} Jobs"), "MiB", each(&sc.at_small, |x| x.rss_mib))
            .goal(Goal::AtMost(30.0)),
        Row::new(sec, format!("launcher RSS with {large} Jobs"), "MiB", each(&sc.at_large, |x| x.rss_mib)),
        Row::new(sec, format!("of which anonymous (heap), {large} Jobs"), "MiB", each(&sc.at_large, |x| x.anon_mib)),
        Row::new(sec, format!("peak RSS (VmHWM), {large} Jobs"), "MiB", each(&sc.at_large, |x| x.hwm_mib)),
        Row::new(sec, format!("RSS per Job (slope {small} → {large})"), "KiB", slopes).goal(Goal::AtMost(0.75)),
    ];
    for (what, mib) in &sc.control_plane_mib {
        rows.push(Row::new(sec, what.clone(), "MiB", vec![*mib]));
    }
    rows
}

fn scale_startup_rows(sc: &Scale) -> Vec<Row> {
    let (sec, large) = ("scale", thousands(sc.large));
    let ready: Vec<f64> = sc.at_large.iter().filter_map(|x| x.startup.ready.map(ms)).collect();
    let bare: Vec<f64> = each(sc.bare(), |b| ms(b.took));
    let share: Vec<f64> = ready.iter().zip(&bare).map(|(r, b)| r - b).collect();
    let mode =
        if sc.launcher_streams { "streaming list".to_string() } else { format!("paged list, page {}", sc.page_size) };
    let share_row =
        Row::new(sec, format!("launcher's share: start → /readyz minus the bare list ({mode})"), "ms", share);
    let mut rows = vec![
        Row::new(sec, format!("start → /readyz, {large} Jobs"), "ms", ready).goal(Goal::AtMost(5000.0)),
        Row::new(
            sec,
            format!("start → caches synced, {large} Jobs"),
            "ms",
            sc.at_large.iter().filter_map(|x| x.startup.synced.map(ms)).collect(),
        ),
        Row::new(
            sec,
            format!("bare list of the same Jobs and pods, page {}", sc.page_size),
            "ms",
            each(&sc.bare_paged, |b| ms(b.took)),
        ),
        Row::new(
            sec,
            "bare streaming list (sendInitialEvents) of the same",
            "ms",
            each(&sc.bare_streamed, |b| ms(b.took)),
        ),
        // The launcher's own share has a target only when the API server alone takes over 5 s.
        if stats::median(&bare) > 5000.0 { share_row.goal(Goal::AtMost(1000.0)) } else { share_row },
        Row::new(sec, format!("launcher start-up CPU, {large} Jobs"), "s", each(&sc.at_large, |x| x.cpu_s)),
        Row::new(sec, "API server CPU for one bare paged list", "s", each(&sc.bare_paged, |b| b.apiserver_cpu_s)),
    ];
    rows.retain(|r| !r.runs.is_empty());
    rows
}

fn scale_read_rows(sc: &Scale) -> Vec<Row> {
    let (sec, large) = ("scale", thousands(sc.large));
    let mut rows = Vec::new();
    for r in &sc.reads {
        let p = |q| vec![stats::percentile(&r.latencies_ms, q)];
        let filter = if r.label.is_empty() { String::new() } else { format!("{}&", r.label) };
        let what = format!("GET /v1/jobs?{filter}limit=100, {large} Jobs");
        rows.push(Row::new(sec, format!("{what}: p50"), "ms", p(50.0)));
        rows.push(Row::new(sec, format!("{what}: p99"), "ms", p(99.0)).goal(Goal::AtMost(10.0)));
    }
    let w = &sc.walk;
    rows.push(Row::new(sec, "continue walk through every page (limit=100): pages", "", vec![w.page_ms.len() as f64]));
    rows.push(
        Row::new(
            sec,
            "continue walk: distinct Jobs seen, of the population",
            "%",
            vec![w.distinct as f64 / sc.large as f64],
        )
        .goal(Goal::AtLeast(1.0)),
    );
    rows.push(Row::new(sec, "continue walk: total", "ms", vec![ms(w.took)]));
    rows.push(
        Row::new(sec, "continue walk: per page p99", "ms", vec![stats::percentile(&w.page_ms, 99.0)])
            .goal(Goal::AtMost(10.0)),
    );
    rows
}

/// The median HTTP segment's rate over the median raw segment's, of every run: an episode that
/// slows the control plane for a few seconds spoils a segment or two, not the figure.
fn median_segment_ratio(sc: &Scale) -> Option<f64> {
    let rates = |segments: &[Segment]| segments.iter().map(|s| s.per_second).collect::<Vec<_>>();
    let raw = stats::median(&rates(&sc.raw_segments));
    (raw > 0.0 && !sc.http_segments.is_empty()).then(|| stats::median(&rates(&sc.http_segments)) / raw)
}

/// A segment is in a slow episode of the control plane when the API server spent more than this
/// times the lower quartile of every segment's CPU per 1,000 (raw and HTTP together). Episodes
/// about double it; the launcher's own watches add a few per cent. The quartile, not the median,
/// so that the reading holds while episodes cover up to three quarters of the segments.
const EPISODE_CPU_FACTOR: f64 = 1.5;

/// The segments of each kind outside the control plane's slow episodes, and how many fell in one.
fn calm_segments(sc: &Scale) -> (Vec<f64>, Vec<f64>, usize, usize) {
    let cpu: Vec<f64> = sc.raw_segments.iter().chain(&sc.http_segments).map(|s| s.apiserver_cpu_per_1000).collect();
    let limit = EPISODE_CPU_FACTOR * stats::percentile(&cpu, 25.0);
    let split = |segments: &[Segment]| {
        let calm: Vec<f64> =
            segments.iter().filter(|s| s.apiserver_cpu_per_1000 <= limit).map(|s| s.per_second).collect();
        let slowed = segments.len() - calm.len();
        (calm, slowed)
    };
    let ((raw, raw_slowed), (http, http_slowed)) = (split(&sc.raw_segments), split(&sc.http_segments));
    (raw, http, raw_slowed, http_slowed)
}

/// The mean HTTP segment rate over the mean raw one, both outside the control plane's slow
/// episodes: the launcher's share with the episodes set aside. It hides a cost of the launcher's
/// only if the launcher caused the episodes, so the table gives how many segments of each kind
/// fell in one beside it.
fn calm_segment_ratio(sc: &Scale) -> Option<f64> {
    let (raw, http, _, _) = calm_segments(sc);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    (!raw.is_empty() && !http.is_empty()).then(|| mean(&http) / mean(&raw))
}

fn scale_launch_rows(sc: &Scale) -> Vec<Row> {
    let (sec, large, c) = ("scale", thousands(sc.large), sc.concurrency);
    let n = sc.launches_per_run;
    let pairs: Vec<(&Measured, &Measured)> = sc.raw.iter().zip(&sc.http).collect();
    let rate_ratio = |(r, h): &(&Measured, &Measured)| h.load.per_second() / r.load.per_second();
    let apiserver = |m: &Measured| m.cpu_per_1000("kube-apiserver").unwrap_or(0.0);
    let etcd = |m: &Measured| m.cpu_per_1000("etcd").unwrap_or(0.0);
    let machine = |m: &Measured| m.machine_cpu_per_1000().unwrap_or(0.0);
    let mut rows = vec![
        Row::new(
            sec,
            format!("raw creates c={c} with {large} Jobs present: Jobs/s"),
            "",
            each(&sc.raw, |m| m.load.per_second()),
        ),
        Row::new(
            sec,
            format!("HTTP launches c={c} with {large} Jobs indexed: Jobs/s"),
            "",
            each(&sc.http, |m| m.load.per_second()),
        ),
        Row::new(sec, "HTTP launches: ratio to raw creates", "%", each(&pairs, rate_ratio)).goal(Goal::AtLeast(0.9)),
        Row::new(sec, format!("HTTP launches c={c}: p99"), "ms", each(&sc.http, |m| m.p(99.0))),
        Row::new(
            sec,
            "launcher CPU per 1,000 launches",
            "s",
            each(&sc.http, |m| m.cpu_per_1000("launcher").unwrap_or(0.0)),
        ),
        Row::new(sec, "API server CPU per 1,000 raw creates", "s", each(&sc.raw, apiserver)),
        Row::new(sec, "API server CPU per 1,000 HTTP launches", "s", each(&sc.http, apiserver)),
        Row::new(
            sec,
            "API server CPU per 1,000: extra with the launcher (its watches)",
            "s",
            each(&pairs, |(r, h)| apiserver(h) - apiserver(r)),
        ),
        Row::new(sec, "etcd CPU per 1,000: extra with the launcher", "s", each(&pairs, |(r, h)| etcd(h) - etcd(r))),
        Row::new(
            sec,
            "API server allocated per 1,000 raw creates",
            "MiB",
            per_1000(&sc.raw_runtime, n, |g| g.allocated_mib),
        ),
        Row::new(
            sec,
            "API server allocated per 1,000 HTTP launches",
            "MiB",
            per_1000(&sc.http_runtime, n, |g| g.allocated_mib),
        ),
        Row::new(sec, "API server GC cycles in a raw run", "", each(&sc.raw_runtime, |g| g.gc_cycles)),
        Row::new(sec, "API server GC cycles in an HTTP run", "", each(&sc.http_runtime, |g| g.gc_cycles)),
        Row::new(
            sec,
            format!("API server allocated over a launcher's start-up (its list of {large} Jobs)"),
            "MiB",
            each(&sc.startup_runtime, |g| g.allocated_mib),
        ),
        Row::new(sec, "busy cores over a raw run (of the machine's)", "", each(&sc.raw, Measured::busy_cores)),
        Row::new(sec, "busy cores over an HTTP run", "", each(&sc.http, Measured::busy_cores)),
        Row::new(sec, "machine CPU per 1,000 raw creates (every process)", "s", each(&sc.raw, machine)),
        Row::new(sec, "machine CPU per 1,000 HTTP launches (every process)", "s", each(&sc.http, machine)),
        Row::new(
            sec,
            "ratio the machine's CPU per Job allows (raw's CPU per Job over HTTP's)",
            "%",
            each(&pairs, |(r, h)| machine(r) / machine(h)),
        ),
    ];
    if let Some(ratio) = median_segment_ratio(sc) {
        rows.insert(
            3,
            Row::new(
                sec,
                "HTTP launches: ratio of the median segment rates, all runs together (control-plane episodes weigh less)",
                "%",
                vec![ratio],
            ),
        );
    }
    if let Some(ratio) = calm_segment_ratio(sc) {
        let (_, _, raw_slowed, http_slowed) = calm_segments(sc);
        let calm_rows = [
            Row::new(
                sec,
                "HTTP launches: ratio in the segments outside the control plane's slow episodes (API server CPU per 1,000 \
                 over 1.5× the segments' lower quartile)",
                "%",
                vec![ratio],
            ),
            Row::new(
                sec,
                format!("raw segments in a slow episode (of {})", sc.raw_segments.len()),
                "count",
                vec![raw_slowed as f64],
            ),
            Row::new(
                sec,
                format!("HTTP segments in a slow episode (of {})", sc.http_segments.len()),
                "count",
                vec![http_slowed as f64],
            ),
        ];
        rows.splice(4..4, calm_rows);
    }
    rows
}

/// A Go runtime figure of each run, per 1,000 of the run's `n` operations.
fn per_1000(runs: &[GoRuntime], n: usize, figure: impl Fn(&GoRuntime) -> f64) -> Vec<f64> {
    runs.iter().map(|g| figure(&g.per_1000(n))).collect()
}

impl Report {
    pub fn watchers(&mut self, w: &Watchers) {
        let sec = "watchers";
        let n = w.opened;
        let d = |q| vec![stats::percentile(&w.delays_ms, q)];
        let one = |v: f64| vec![v];
        let ld = &w.launcher_delays;
        self.rows.extend([
            Row::new(sec, format!("streams open (of {})", w.streams), "", one(n as f64)),
            Row::new(
                sec,
                format!(
                    "{} Jobs launched with the streams open: streams that got every Job's latest version",
                    w.expected
                ),
                "%",
                one(w.complete as f64 / w.streams.max(1) as f64),
            )
            .goal(Goal::AtLeast(1.0)),
            Row::new(sec, "(stream, Job) pairs missing the latest version", "", one(w.missing as f64))
                .goal(Goal::AtMost(0.0)),
            Row::new(sec, "streams cut (`event: end`) or closed", "", one(w.cut as f64)).goal(Goal::AtMost(0.0)),
            Row::new(sec, "Job versions the bench's watch saw (launched Jobs)", "", one(w.watch_versions as f64)),
            Row::new(sec, "events per stream: fewest", "", one(w.min_events as f64)),
            Row::new(sec, "events per stream: most", "", one(w.max_events as f64)),
            Row::new(sec, "events delivered, all streams", "", one(w.delivered as f64)),
            Row::new(sec, "bytes per event", "B", one(w.bytes as f64 / w.delivered_both.max(1) as f64)),
            Row::new(
                sec,
                "launcher's watch saw the change → stream sent it (its metric): events",
                "",
                one(ld.count() as f64),
            ),
            Row::new(sec, "launcher's watch saw the change → stream sent it: p50", "ms", one(ld.quantile(0.5) * 1e3)),
            Row::new(sec, "launcher's watch saw the change → stream sent it: p99", "ms", one(ld.quantile(0.99) * 1e3))
                .goal(Goal::AtMost(50.0)),
            Row::new(
                sec,
                "launcher's watch saw the change → stream sent it: within 50 ms",
                "%",
                one(ld.share_within(0.05)),
            ),
            Row::new(sec, "bench's watch saw the version → stream client read it: p50", "ms", d(50.0)),
            Row::new(sec, "bench's watch saw the version → stream client read it: p99", "ms", d(99.0)),
            Row::new(sec, "bench's watch saw the version → stream client read it: max", "ms", d(100.0)),
            Row::new(sec, "launcher RSS per idle stream", "KiB", one(w.kib_per_idle_stream())).goal(Goal::AtMost(16.0)),
            Row::new(sec, "launcher CPU per delivered event (the streams' share)", "µs", one(w.cpu_us_per_event()))
                .goal(Goal::AtMost(5.0)),
            Row::new(
                sec,
                "launcher CPU per delivered event (all, with the launches)",
                "µs",
                one(w.gross_cpu_us_per_event()),
            ),
            Row::new(sec, "launches with the streams open: until quiet", "s", one(w.streamed_s)),
            Row::new(
                sec,
                "launcher's threads waiting for a core, over those launches",
                "s",
                one(w.streamed_run_queue.waited_s),
            ),
            Row::new(
                sec,
                "launcher's threads: mean wait for a core per run",
                "µs",
                one(w.streamed_run_queue.mean_wait_us()),
            ),
        ]);
        if let Some((delays, pass)) = &w.own_core {
            let label = |what: &str| format!("again, the launcher alone on a core: {what}");
            self.rows.extend([
                Row::new(sec, label("launcher's delay p50"), "ms", one(delays.quantile(0.5) * 1e3)),
                Row::new(sec, label("launcher's delay p99"), "ms", one(delays.quantile(0.99) * 1e3)),
                Row::new(sec, label("launcher's delay within 50 ms"), "%", one(delays.share_within(0.05))),
                Row::new(sec, label("launcher CPU"), "s", one(pass.cpu.get("launcher").copied().unwrap_or(0.0))),
                Row::new(
                    sec,
                    label("launcher's threads waiting for a core"),
                    "s",
                    one(pass.launcher_run_queue.waited_s),
                ),
                Row::new(sec, label("mean wait for a core per run"), "µs", one(pass.launcher_run_queue.mean_wait_us())),
            ]);
        }
        // Where the machine's two cores went meanwhile (the bench is the stream clients).
        for (process, cpu) in w.streamed_cpu.iter().filter(|(_, c)| **c >= 0.05) {
            self.rows.push(Row::new(
                sec,
                format!("CPU over the launches with the streams open: {process}"),
                "s",
                one(*cpu),
            ));
        }
        self.raw.insert(
            "watchers".into(),
            json!({
                "streams": w.streams, "opened": w.opened, "jobs": w.jobs,
                "rss_without_mib": w.rss_without_mib, "rss_idle_mib": w.rss_idle_mib,
                "launcher_cpu_s_without_streams": w.baseline_cpu_s, "launcher_cpu_s_with_streams": w.streamed_cpu_s,
                "delivered": w.delivered, "bytes": w.bytes, "expected_jobs": w.expected, "complete_streams": w.complete,
                "missing_pairs": w.missing, "cut": w.cut, "watch_versions": w.watch_versions, "unmatched_ids": w.unmatched,
                "delay_p50_ms": stats::percentile(&w.delays_ms, 50.0), "delay_p99_ms": stats::percentile(&w.delays_ms, 99.0),
                "delay_max_ms": stats::percentile(&w.delays_ms, 100.0),
                "launcher_delay_buckets": ld.buckets.iter().map(|(le, n)| json!([if le.is_finite() { json!(le) } else { json!("+Inf") }, n])).collect::<Vec<_>>(),
                "launcher_delay_p50_ms": ld.quantile(0.5) * 1e3, "launcher_delay_p99_ms": ld.quantile(0.99) * 1e3,
                "own_core": w.own_core.as_ref().map(|(d, pass)| json!({
                    "launcher_core": crate::watchers::LAUNCHER_CORE, "delay_p50_ms": d.quantile(0.5) * 1e3,
                    "delay_p99_ms": d.quantile(0.99) * 1e3, "within_50ms": d.share_within(0.05), "cpu_s": pass.cpu,
                    "launcher_waited_s": pass.launcher_run_queue.waited_s, "launcher_runs": pass.launcher_run_queue.runs,
                })),
                "streamed_s": w.streamed_s, "streamed_cpu_s": w.streamed_cpu, "launcher_waited_s": w.streamed_run_queue.waited_s, "launcher_runs": w.streamed_run_queue.runs,
            }),
        );
    }
}

/// A quick check of the median-segment ratio, run with the helpers: an episode that slows two
/// segments of one kind does not move it, and no segments give no figure.
pub fn self_check() {
    let at =
        |rates: &[f64]| rates.iter().map(|&per_second| Segment { per_second, apiserver_cpu_per_1000: 1.2 }).collect();
    let scale =
        |raw: &[f64], http: &[f64]| Scale { raw_segments: at(raw), http_segments: at(http), ..Scale::default() };
    let calm = median_segment_ratio(&scale(&[700.0, 720.0, 710.0, 690.0], &[600.0, 610.0, 620.0, 590.0]));
    let episode = median_segment_ratio(&scale(&[700.0, 300.0, 710.0, 320.0, 720.0], &[600.0, 610.0, 620.0, 590.0]));
    assert_eq!(calm, Some(605.0 / 705.0));
    assert_eq!(episode, Some(605.0 / 700.0), "two slowed raw segments of five leave the median a calm one");
    assert_eq!(median_segment_ratio(&scale(&[], &[600.0])), None);
    assert_eq!(median_segment_ratio(&scale(&[700.0], &[])), None);

    // The calm-segment ratio sets aside the segments whose API server CPU per Job doubled, of
    // either kind, and counts them.
    let segment = |per_second: f64, apiserver_cpu_per_1000: f64| Segment { per_second, apiserver_cpu_per_1000 };
    let mixed = Scale {
        raw_segments: vec![segment(800.0, 1.0), segment(400.0, 2.2), segment(780.0, 1.1), segment(820.0, 1.0)],
        http_segments: vec![segment(720.0, 1.1), segment(350.0, 2.5), segment(300.0, 2.4), segment(740.0, 1.0)],
        ..Scale::default()
    };
    assert_eq!(calm_segments(&mixed), (vec![800.0, 780.0, 820.0], vec![720.0, 740.0], 1, 2));
    assert_eq!(calm_segment_ratio(&mixed), Some(730.0 / 800.0));
    assert_eq!(calm_segment_ratio(&scale(&[700.0], &[])), None, "no HTTP segment, no figure");
}
