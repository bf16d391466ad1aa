//! Where the index's bytes go, counted: every allocation of this test binary goes through a
//! counting allocator, and 20,000 Jobs shaped like the bench's 100,000 (the launcher's labels and
//! annotations, five templates, fifty callers, a quarter with an idempotency key, 80 % finished)
//! are put in a JobIndex. No cluster: the Jobs are built in memory and handed to the index as the
//! launcher hands it the Jobs it creates.
//!
//! The heap is counted as glibc's malloc lays it out (each block: the request plus an 8-byte
//! header, rounded up to 16, at least 32 bytes), so the figure is what the resident set pays, bar
//! fragmentation. `cargo test --test index_memory -- --nocapture` prints the breakdown that
//! docs/benchmarks.md ("Where the bytes go") quotes.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::BTreeMap,
    sync::atomic::{AtomicIsize, Ordering},
};

use k8s_openapi::api::batch::v1::Job;
use kube_job_launcher::jobs::{JobIndex, index::job_record};

struct Counting;

static HEAP: AtomicIsize = AtomicIsize::new(0);

/// What glibc's malloc takes for a request of `size` bytes.
fn block(size: usize) -> isize {
    ((size + 8).div_ceil(16) * 16).max(32) as isize
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(block(layout.size()), Ordering::Relaxed);
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.fetch_sub(block(layout.size()), Ordering::Relaxed);
        // SAFETY: a block this allocator gave out, with its layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP.fetch_add(block(new_size) - block(layout.size()), Ordering::Relaxed);
        // SAFETY: as for dealloc, and the caller's new size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const JOBS: usize = 20_000;

/// A pseudo-random hex string of `n` bytes from `seed`, like the launcher's hashes and ids.
fn hex(seed: u64, n: usize) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{:02x}", x as u8)
        })
        .collect()
}

/// Job `i` as the bench creates it (benches/launcher/scale.rs) and the API server returns it.
fn job(i: usize) -> Job {
    let template = format!("report-{}", i % 5);
    let labels: BTreeMap<&str, String> = BTreeMap::from([
        ("app.kubernetes.io/managed-by", "kube-job-launcher".into()),
        ("job-launcher.dev/instance", "default".into()),
        ("job-launcher.dev/template", template.clone()),
        ("job-launcher.dev/source", "http".into()),
        ("team", format!("team-{}", i % 7)),
    ]);
    let mut annotations: BTreeMap<&str, String> = BTreeMap::from([
        ("job-launcher.dev/request-hash", hex(i as u64, 16)),
        ("job-launcher.dev/priority", "0".into()),
        ("job-launcher.dev/request-id", hex(i as u64 + 7, 8)),
        ("job-launcher.dev/requested-by", format!("caller-{}@example.com", i % 50)),
    ]);
    if i.is_multiple_of(4) {
        annotations.insert("job-launcher.dev/idempotency-key", format!("key-{}", hex(i as u64 + 3, 8)));
    }
    let created = format!("2026-11-{:02}T{:02}:{:02}:{:02}Z", 1 + i / 86_400 % 28, i / 3600 % 24, i / 60 % 60, i % 60);
    let status = match i % 10 {
        0..=6 => serde_json::json!({
            "startTime": created, "completionTime": created, "succeeded": 1,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"}
            ]
        }),
        7 => serde_json::json!({
            "startTime": created, "failed": 1,
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastTransitionTime": created}]
        }),
        _ => serde_json::json!({}),
    };
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": format!("{template}-{}", hex(i as u64 + 11, 5)),
            "namespace": "bench",
            "uid": format!("{}-{}-{}-{}-{}", hex(i as u64, 4), hex(i as u64 + 1, 2), hex(i as u64 + 2, 2), hex(i as u64 + 3, 2), hex(i as u64 + 4, 6)),
            "resourceVersion": format!("{}", 1_000_000 + i),
            "creationTimestamp": created,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"suspend": i % 10 == 9, "template": {"spec": {"containers": []}}},
        "status": status,
    }))
    .expect("a Job")
}

#[test]
fn an_indexed_job_costs_about_half_a_kib_of_heap() {
    let jobs: Vec<Job> = (0..JOBS).map(job).collect();
    // Warm up what is made once (the interned strings, the index's tables).
    let index = JobIndex::new("bench");
    let start = HEAP.load(Ordering::Relaxed);
    for job in &jobs {
        index.observe_created(&job.into());
    }
    let total = HEAP.load(Ordering::Relaxed) - start;
    let per_job = total as f64 / JOBS as f64;
    assert_eq!(index.read(|s| s.len()), JOBS);

    // The records alone, as the index holds them (boxed), without the index's maps.
    let start = HEAP.load(Ordering::Relaxed);
    let records: Vec<Box<_>> = jobs.iter().filter_map(job_record).map(Box::new).collect();
    let records_only = (HEAP.load(Ordering::Relaxed) - start) as f64 / JOBS as f64 - 8.0;
    drop(records);

    println!("heap per indexed Job, as glibc lays it out: {per_job:.0} bytes");
    println!("  record (boxed) and its own strings: {records_only:.0}");
    println!("  the index's maps and kept order: {:.0}", per_job - records_only);
    println!("  size_of::<JobRecord>() = {}", std::mem::size_of::<kube_job_launcher::jobs::JobRecord>());
    // 0.75 KiB of RSS per Job is the target; the heap must leave room for the allocator's slack.
    assert!(per_job < 576.0, "{per_job:.0} bytes per Job");
}
