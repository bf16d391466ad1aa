//! Where an idle status stream's bytes go, counted: every allocation of this test binary goes
//! through a counting allocator, the launcher runs in-process against the local control plane, and
//! 200 `GET /v1/events` streams are opened from plain blocking sockets (which allocate nothing of
//! their own) and left idle. The live heap they add, and its blocks by size, are what each stream
//! costs the launcher.
//!
//! The heap is counted as glibc's malloc lays it out (as in `tests/index_memory.rs`). Most of it
//! is hyper's two HTTP/1 buffers, 8 KiB each; the test fails when a connection holds more than
//! that floor plus a little under 6 KiB, as it did when hyper-util's protocol sniffing made the
//! read buffer double to 16 KiB (30.7 KiB per stream). `cargo test --test stream_memory --
//! --nocapture` prints the breakdown that docs/benchmarks.md quotes.

mod support;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::atomic::{AtomicBool, AtomicIsize, Ordering},
    time::Duration,
};

use support::{app::setup, cluster::wait_until};

struct Counting;

static HEAP: AtomicIsize = AtomicIsize::new(0);
/// While set, blocks are also counted by requested size (below `BY_SIZE`; larger in the last).
static BY_SIZE_ON: AtomicBool = AtomicBool::new(false);
const BY_SIZE: usize = 16_400;
static LIVE_BY_SIZE: [AtomicIsize; BY_SIZE] = [const { AtomicIsize::new(0) }; BY_SIZE];

/// What glibc's malloc takes for a request of `size` bytes.
fn block(size: usize) -> isize {
    ((size + 8).div_ceil(16) * 16).max(32) as isize
}

fn count(size: usize, blocks: isize) {
    HEAP.fetch_add(blocks * block(size), Ordering::Relaxed);
    if BY_SIZE_ON.load(Ordering::Relaxed) {
        LIVE_BY_SIZE[size.min(BY_SIZE - 1)].fetch_add(blocks, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        // SAFETY: a block this allocator gave out, with its layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), -1);
        count(new_size, 1);
        // SAFETY: as for dealloc, and the caller's new size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const STREAMS: usize = 200;
/// hyper's HTTP/1 read and write buffers, 8 KiB each, as blocks.
const HYPER_BUFFERS: isize = 2 * (8192 + 16);
/// Everything else a stream may hold: its connection's task and state, the request's futures,
/// the stream's own state and its subscription (about 4 KiB today).
const ALLOWED_BESIDES_BUFFERS: isize = 6 * 1024 - 512;

/// Opens `/v1/events` on a plain socket and reads the response head.
fn open_stream(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(request).expect("send the request");
    let mut head = [0u8; 1024];
    let n = stream.read(&mut head).expect("read the head");
    let head = &head[..n];
    assert!(head.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(head));
    assert!(head.windows(17).any(|w| w.eq_ignore_ascii_case(b"text/event-stream")), "not a stream");
    stream
}

/// Waits for the heap to hold still (three readings alike, a tenth of a second apart): the
/// launcher's tasks have finished answering the streams' requests.
async fn settled_heap() -> isize {
    let mut readings = Vec::new();
    wait_until(Duration::from_secs(10), "the heap to settle", || {
        readings.push(HEAP.load(Ordering::Relaxed));
        let still = readings.len() >= 3 && readings[readings.len() - 3..].windows(2).all(|w| w[0] == w[1]);
        async move { still }
    })
    .await;
    readings[readings.len() - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_holds_hypers_two_buffers_and_little_else() {
    let (_ns, app) = setup("streammem").await;
    let addr: SocketAddr = app.base.trim_start_matches("http://").parse().expect("the app's address");
    let request = format!("GET /v1/events HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n\r\n");
    let open = move |n: usize| {
        let request = request.clone();
        tokio::task::spawn_blocking(move || (0..n).map(|_| open_stream(addr, request.as_bytes())).collect::<Vec<_>>())
    };
    // A few first: what the first streams set up once (caches, the I/O driver's slab pages) is
    // not any one stream's.
    let warm = open(20).await.expect("open the first streams");
    let before = settled_heap().await;
    BY_SIZE_ON.store(true, Ordering::Relaxed);
    let streams = open(STREAMS).await.expect("open the streams");
    let after = settled_heap().await;
    BY_SIZE_ON.store(false, Ordering::Relaxed);

    let per_stream = (after - before) / STREAMS as isize;
    let mut by_size: Vec<(usize, isize)> = LIVE_BY_SIZE
        .iter()
        .enumerate()
        .map(|(size, live)| (size, live.load(Ordering::Relaxed)))
        .filter(|(_, live)| *live != 0)
        .collect();
    by_size.sort_by_key(|(size, live)| -block(*size) * live);
    println!("heap per idle stream: {per_stream} B; live blocks added, by requested size:");
    for (size, live) in by_size.iter().take(16) {
        let per = *live as f64 / STREAMS as f64;
        println!("  {size:>6} B × {per:.2} per stream = {:.0} B", per * block(*size) as f64);
    }
    let buffers = by_size.iter().find(|(size, _)| *size == 8192).map_or(0, |(_, live)| *live);
    assert_eq!(buffers, 2 * STREAMS as isize, "each stream's connection holds hyper's two 8 KiB buffers");
    assert!(
        per_stream <= HYPER_BUFFERS + ALLOWED_BESIDES_BUFFERS,
        "an idle stream holds {per_stream} B of heap, more than hyper's buffers ({HYPER_BUFFERS} B) and {ALLOWED_BESIDES_BUFFERS} B"
    );
    drop((streams, warm));
    app.stop().await;
}
