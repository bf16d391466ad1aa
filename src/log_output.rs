//! Where log lines go: to stdout in batches, not one write per line.
//!
//! Every launch logs one line (`launch`, the audit trail of who launched what). Written with one
//! `write` each, that line was a large part of the launcher's CPU per launch: in `make bench`'s
//! throughput phase at c=64 (2026-11-30, alternating runs) the launcher spent 0.26–0.29 s per
//! 1,000 launches with the line filtered out against 0.32–0.36 with it, while filtering out the
//! request's span changed nothing. Batching the lines as below brought it from 0.32–0.39 s
//! (median 0.34) to 0.24–0.34 (0.295), lower in each of three rounds. Most of a line's cost is
//! the write and the wake-up of whoever reads the pipe (the container runtime, the bench), not
//! the formatting. tracing-appender's non-blocking writer would not help: its thread still
//! writes each line as it comes, with one more wake-up.
//!
//! So info and debug lines are held for at most [`FLUSH_INTERVAL`] and go out together. A
//! warning or an error goes out at once, with everything held before it, and so does all that
//! is held when the process stops ([`FlushOnDrop`]). Lines keep their order, and their
//! timestamps are taken when they are logged, not when they are written.

use std::{
    io::{self, Write},
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long an info line may wait for others to go out with.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// Held bytes beyond which the line that crosses it writes them all at once.
const HELD_LIMIT: usize = 64 * 1024;

struct Held<W> {
    bytes: Vec<u8>,
    sink: W,
    stopped: bool,
}

impl<W: Write> Held<W> {
    fn write_out(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        // A log line that cannot be written has nowhere else to be reported.
        let _ = self.sink.write_all(&self.bytes).and_then(|()| self.sink.flush());
        self.bytes.clear();
    }
}

struct Shared<W> {
    held: Mutex<Held<W>>,
    /// Signalled when the first line is held after a write-out, so the flusher sleeps while
    /// nothing is logged.
    not_empty: Condvar,
}

impl<W> Shared<W> {
    fn lock(&self) -> MutexGuard<'_, Held<W>> {
        // A panic while holding the lock leaves bytes and a sink that are still usable.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The log's writer for `tracing_subscriber::fmt`: each line is held or written out according to
/// its level.
pub struct BatchedLines<W> {
    shared: Arc<Shared<W>>,
}

/// Writes out what is held, and stops the flusher, when dropped: keep it alive while logging.
pub struct FlushOnDrop<W: Write> {
    shared: Arc<Shared<W>>,
    flusher: Option<JoinHandle<()>>,
}

impl<W: Write + Send + 'static> BatchedLines<W> {
    /// Starts the flusher thread that writes held lines out `interval` after the first of them.
    /// Without that thread (it could not be started) every line is written at once.
    pub fn start(sink: W, interval: Duration) -> (Self, FlushOnDrop<W>) {
        let shared = Arc::new(Shared {
            held: Mutex::new(Held { bytes: Vec::new(), sink, stopped: false }),
            not_empty: Condvar::new(),
        });
        let flusher_shared = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || flush_loop(&flusher_shared, interval))
            .ok();
        if flusher.is_none() {
            shared.lock().stopped = true;
        }
        (Self { shared: shared.clone() }, FlushOnDrop { shared, flusher })
    }
}

fn flush_loop<W: Write>(shared: &Shared<W>, interval: Duration) {
    let mut held = shared.lock();
    loop {
        while held.bytes.is_empty() && !held.stopped {
            held = shared.not_empty.wait(held).unwrap_or_else(PoisonError::into_inner);
        }
        // Waits out the interval on the condition rather than asleep, so that stopping (which
        // writes out what is held itself) does not wait for it.
        let due = Instant::now() + interval;
        while !held.stopped && Instant::now() < due {
            let left = due.saturating_duration_since(Instant::now());
            held = shared.not_empty.wait_timeout(held, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        if held.stopped {
            return;
        }
        held.write_out();
    }
}

impl<W: Write> Drop for FlushOnDrop<W> {
    fn drop(&mut self) {
        {
            let mut held = self.shared.lock();
            held.stopped = true;
            held.write_out();
        }
        self.shared.not_empty.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

/// One log line on its way: `fmt` formats a whole line, then writes it in one call.
pub struct LineWriter<'a, W> {
    shared: &'a Shared<W>,
    at_once: bool,
}

impl<W: Write> Write for LineWriter<'_, W> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut held = self.shared.lock();
        let was_empty = held.bytes.is_empty();
        held.bytes.extend_from_slice(line);
        if self.at_once || held.stopped || held.bytes.len() >= HELD_LIMIT {
            held.write_out();
        } else if was_empty {
            self.shared.not_empty.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for BatchedLines<W> {
    type Writer = LineWriter<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { shared: &self.shared, at_once: false }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        // Levels compare by verbosity: WARN and ERROR are the ones at most as verbose as WARN.
        LineWriter { shared: &self.shared, at_once: *meta.level() <= Level::WARN }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that records each write it gets.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<String>>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("writes").push(String::from_utf8_lossy(buf).into_owned());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Writes {
        fn taken(&self) -> Vec<String> {
            self.0.lock().expect("writes").clone()
        }
    }

    /// Batched lines that go to a recording sink, written out `interval` after the first held.
    fn started(interval: Duration) -> (Writes, BatchedLines<Writes>, FlushOnDrop<Writes>) {
        let sink = Writes::default();
        let (lines, guard) = BatchedLines::start(sink.clone(), interval);
        (sink, lines, guard)
    }

    /// Runs `body` with a subscriber that writes plain lines (` INFO text`) through `lines`.
    fn logged(lines: BatchedLines<Writes>, body: impl FnOnce()) {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(lines)
            .with_max_level(Level::DEBUG)
            .without_time()
            .with_target(false)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, body);
    }

    /// Waits up to five seconds for `done`.
    fn wait_until(done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            std::thread::yield_now();
        }
        done()
    }

    #[test]
    fn info_and_debug_lines_are_held_and_go_out_together_in_order() {
        let (sink, lines, guard) = started(Duration::from_secs(60));
        logged(lines, || {
            tracing::info!("one");
            tracing::debug!("two");
            assert!(sink.taken().is_empty(), "held, not written: {:?}", sink.taken());
            drop(guard);
        });
        assert_eq!(sink.taken(), [" INFO one\nDEBUG two\n"], "one write, in order");
    }

    #[test]
    fn the_flusher_writes_held_lines_out_after_the_interval() {
        let (sink, lines, _guard) = started(Duration::from_millis(10));
        logged(lines, || {
            tracing::info!("one");
            tracing::info!("two");
        });
        assert!(wait_until(|| sink.taken().concat() == " INFO one\n INFO two\n"), "{:?}", sink.taken());
    }

    #[test]
    fn a_warning_or_an_error_goes_out_at_once_after_the_lines_held_before_it() {
        let (sink, lines, _guard) = started(Duration::from_secs(60));
        logged(lines, || {
            tracing::info!("launch");
            tracing::warn!("warned");
            assert_eq!(sink.taken(), [" INFO launch\n WARN warned\n"]);
            tracing::error!("failed");
            assert_eq!(sink.taken(), [" INFO launch\n WARN warned\n", "ERROR failed\n"]);
        });
    }

    #[test]
    fn what_is_held_goes_out_when_the_guard_drops_and_later_lines_at_once() {
        let (sink, lines, guard) = started(Duration::from_secs(60));
        logged(lines, || {
            tracing::info!("stopping");
            drop(guard);
            assert_eq!(sink.taken(), [" INFO stopping\n"]);
            tracing::info!("after");
            assert_eq!(sink.taken(), [" INFO stopping\n", " INFO after\n"], "nothing is held once stopped");
        });
    }

    #[test]
    fn a_lot_held_goes_out_without_waiting_for_the_interval() {
        let (sink, lines, _guard) = started(Duration::from_secs(60));
        // " INFO " and a newline around 1,017 bytes: 1 KiB a line.
        let text = "x".repeat(1017);
        logged(lines, || {
            for _ in 0..HELD_LIMIT / 1024 - 1 {
                tracing::info!("{text}");
            }
            assert!(sink.taken().is_empty());
            tracing::info!("{text}");
            assert_eq!(sink.taken().iter().map(String::len).collect::<Vec<_>>(), [HELD_LIMIT]);
        });
    }
}
