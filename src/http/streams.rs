//! Status streams (Server-Sent Events): one Job's view now and at each change until it ends
//! (`/v1/jobs/{name}/events`), and every change of the launcher's Jobs that matches a filter
//! (`/v1/events`), with a coalesced queue event at most once a second and a heartbeat comment
//! every 15 s.
//!
//! Streams are bounded (`--max-streams`; beyond, 503 with Retry-After), end cleanly on shutdown,
//! and a reader too slow to keep up is cut with a final event that says so instead of being
//! buffered without bound. Each stream passes on frames encoded once by the index.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::Response,
};
use bytes::Bytes;
use futures::Stream;
use tokio::sync::{broadcast, watch};

use super::{
    error::AppError,
    extract::{JobName, QueryPairs},
    state::{AppState, StreamSlot},
};
use crate::{
    api::{JobState, JobView, Problem},
    error::Error,
    jobs::events::{StreamEvent, job_frame, sse_frame},
};

/// How often an idle stream sends a comment, so proxies and clients know it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// The Last-Event-ID a reconnecting client sends: the id of the last event it got.
fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
}

fn event_stream(body: impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static) -> Response {
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer (nginx) must pass each event on at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The last frame of a stream: why it ends.
fn end_frame(reason: &str, detail: &str) -> Bytes {
    sse_frame("end", None, &serde_json::json!({"reason": reason, "detail": detail}).to_string())
}

const HEARTBEAT_FRAME: &[u8] = b": heartbeat\n\n";

/// What a stream does next.
enum Next {
    Send(Bytes),
    SendAndEnd(Bytes),
    End,
    Nothing,
}

/// While events keep coming, a stream writes at most once per this long: the events of a burst
/// go out together (up to `BATCH`) instead of one write each. With 1,000 streams open every
/// change costs 1,000 writes (and wakes 1,000 readers), so a burst of changes would otherwise
/// take the launcher's cores from the launches and from the streams themselves. An event after
/// a quiet spell goes out at once; one in a burst waits at most this long.
const PACE: Duration = Duration::from_millis(10);

/// A stream's state between two frames.
struct Loop<S, F> {
    pending: std::collections::VecDeque<Bytes>,
    ended: bool,
    /// When the stream last wrote an event, for `PACE`.
    last_write: Option<tokio::time::Instant>,
    /// When the launcher saw each Job event of the frame being put together: its delay is
    /// recorded when the frame goes out.
    unsent: Vec<tokio::time::Instant>,
    heartbeat: tokio::time::Interval,
    events: broadcast::Receiver<Arc<StreamEvent>>,
    /// Resolves at shutdown. Made once, not per wait: each wait would otherwise join and leave
    /// the shutdown signal's list of waiters, one lock each that every stream shares.
    stop: futures::future::BoxFuture<'static, ()>,
    state: S,
    step: F,
    /// Held while the stream is open: its slot among `--max-streams`.
    slot: StreamSlot,
}

impl<S, F> Loop<S, F>
where
    F: FnMut(&mut S, Result<Arc<StreamEvent>, broadcast::error::RecvError>) -> Next,
{
    /// Lets `step` decide what an event means; a Job event it sends counts in the stream delay
    /// when its frame goes out (`written`).
    fn decide(&mut self, received: Result<Arc<StreamEvent>, broadcast::error::RecvError>) -> Next {
        let seen = match &received {
            Ok(event) => match &**event {
                StreamEvent::Job { seen, .. } => Some(*seen),
                StreamEvent::Queue { .. } => None,
            },
            Err(_) => None,
        };
        let next = (self.step)(&mut self.state, received);
        if let (Some(seen), Next::Send(_) | Next::SendAndEnd(_)) = (seen, &next) {
            self.unsent.push(seen);
        }
        next
    }

    /// Until when the next write waits: the rest of `PACE` after the last write, if any.
    fn paced_until(&self) -> Option<tokio::time::Instant> {
        self.last_write.map(|last| last + PACE).filter(|until| tokio::time::Instant::now() < *until)
    }

    /// The frame being returned goes to the connection in this same poll: its events' delays
    /// end now.
    fn written(&mut self) {
        for seen in self.unsent.drain(..) {
            self.slot.sent(seen);
        }
        self.last_write = Some(tokio::time::Instant::now());
    }
}

/// A stream's loop: sends `first`, then waits for the next event, a heartbeat or the stop, and
/// lets `step` decide what each event means.
fn stream_loop<S, F>(
    first: Vec<Bytes>,
    ends_after_first: bool,
    events: broadcast::Receiver<Arc<StreamEvent>>,
    stop: watch::Receiver<bool>,
    slot: StreamSlot,
    state: S,
    step: F,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static
where
    S: Send + 'static,
    F: FnMut(&mut S, Result<Arc<StreamEvent>, broadcast::error::RecvError>) -> Next + Send + 'static,
{
    let start = Loop {
        pending: first.into(),
        ended: ends_after_first,
        last_write: None,
        unsent: Vec::new(),
        heartbeat: tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT),
        events,
        stop: Box::pin(async move {
            let mut stop = stop;
            // A dropped sender is a shutdown too.
            let _ = stop.wait_for(|s| *s).await;
        }),
        state,
        step,
        slot,
    };
    futures::stream::unfold(start, |mut this| async move {
        if let Some(frame) = this.pending.pop_front() {
            return Some((Ok(frame), this));
        }
        if this.ended {
            return None;
        }
        loop {
            let woken = tokio::select! {
                received = this.events.recv() => Ok(received),
                _ = this.heartbeat.tick() => Err(Next::Send(Bytes::from_static(HEARTBEAT_FRAME))),
                () = &mut this.stop => Err(Next::SendAndEnd(end_frame(
                    "shutdown",
                    "the launcher is shutting down; reconnect to another replica",
                ))),
            };
            // An event is the step's to decide; a heartbeat or the stop decides itself.
            let next = woken.map_or_else(|next| next, |received| this.decide(received));
            match next {
                Next::Send(frame) => {
                    // In a burst: wait out the pace, then send what came meanwhile together.
                    if let Some(until) = this.paced_until() {
                        tokio::time::sleep_until(until).await;
                    }
                    let frame = drain_waiting(&mut this, frame);
                    this.written();
                    return Some((Ok(frame), this));
                }
                Next::SendAndEnd(frame) => {
                    this.ended = true;
                    this.written();
                    return Some((Ok(frame), this));
                }
                Next::End => return None,
                Next::Nothing => {}
            }
        }
    })
}

/// At most this many waiting events join a frame in one write.
const BATCH: usize = 64;

/// Appends the frames of the events already waiting for this stream to `first`, so that a burst
/// of changes costs each stream one wake-up and one write instead of one per event: with 1,000
/// streams open, the per-event cost is what the launcher's CPU goes to. A frame that ends the
/// stream (the last one of a Job, a cut for lagging) is the last in the batch.
fn draining_step<S, F>(this: &mut Loop<S, F>) -> Option<Next>
where
    F: FnMut(&mut S, Result<Arc<StreamEvent>, broadcast::error::RecvError>) -> Next,
{
    use broadcast::error::{RecvError, TryRecvError};
    let received = match this.events.try_recv() {
        Ok(event) => Ok(event),
        Err(TryRecvError::Empty) => return None,
        Err(TryRecvError::Lagged(missed)) => Err(RecvError::Lagged(missed)),
        Err(TryRecvError::Closed) => Err(RecvError::Closed),
    };
    Some(this.decide(received))
}

fn drain_waiting<S, F>(this: &mut Loop<S, F>, first: Bytes) -> Bytes
where
    F: FnMut(&mut S, Result<Arc<StreamEvent>, broadcast::error::RecvError>) -> Next,
{
    let mut batch: Option<bytes::BytesMut> = None;
    for _ in 0..BATCH {
        let Some(next) = draining_step(this) else { break };
        let frame = match next {
            Next::Send(frame) => frame,
            Next::SendAndEnd(frame) => {
                this.ended = true;
                frame
            }
            Next::End => {
                this.ended = true;
                break;
            }
            Next::Nothing => continue,
        };
        batch.get_or_insert_with(|| bytes::BytesMut::from(&first[..])).extend_from_slice(&frame);
        if this.ended {
            break;
        }
    }
    batch.map_or(first, bytes::BytesMut::freeze)
}

/// The events of one Job: its view now, then at each change, until it ends.
///
/// With `Last-Event-ID`, the current view is sent only if it is newer than the last event the
/// client got; a terminal state is never missed, even after the Job left the index (TTL cleanup):
/// its final view is kept for a while. Intermediate states may be skipped.
#[utoipa::path(
    get, path = "/v1/jobs/{name}/events", tag = "jobs",
    params(
        ("name" = String, Path, description = "The Job's name"),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received: only newer views are sent"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `event: job`, `id:` the highest resourceVersion of the Job and its pods, `data:` the JobView; ends after the terminal state (`event: end` when cut short)", body = String, content_type = "text/event-stream"),
        (status = 404, description = "No such Job managed by the launcher", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many streams open", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn job_events(
    State(state): State<AppState>,
    JobName(name): JobName,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let slot = state.stream_slots.take()?;
    let last = last_event_id(&headers).unwrap_or(0);
    // Subscribed before the current view is read, so no change falls between the two.
    let events = state.launcher.jobs().events().subscribe();
    let (view, id) = current_view(&state, &name).await?.ok_or_else(|| Error::JobNotFound(name.clone()))?;
    let terminal = view.state.is_finished();
    let first = if id > last || last == 0 { vec![job_frame(&view, id)] } else { Vec::new() };
    let index = state.launcher.jobs().clone();
    let lookup = state.launcher.jobs().events().clone();
    let step = move |sent: &mut u64, received: Result<Arc<StreamEvent>, broadcast::error::RecvError>| match received {
        Ok(event) => match &*event {
            StreamEvent::Job { view, id, frame, .. } if view.name == name && *id > *sent => {
                *sent = *id;
                if view.state.is_finished() { Next::SendAndEnd(frame.clone()) } else { Next::Send(frame.clone()) }
            }
            _ => Next::Nothing,
        },
        // Fell behind the changes of all Jobs: this one's current view is all it needs.
        Err(broadcast::error::RecvError::Lagged(_)) => {
            let now = index.view_with_id(&name).or_else(|| lookup.tombstone(&name));
            match now {
                Some((view, id)) if id > *sent => {
                    *sent = id;
                    let frame = job_frame(&view, id);
                    if view.state.is_finished() { Next::SendAndEnd(frame) } else { Next::Send(frame) }
                }
                _ => Next::Nothing,
            }
        }
        Err(broadcast::error::RecvError::Closed) => Next::End,
    };
    let sent = id.max(last);
    // A Job that has ended ends its stream after its final view, or at once for a client that has
    // it already.
    Ok(event_stream(stream_loop(first, terminal, events, state.stop.clone(), slot, sent, step)))
}

/// The Job's current view and event id: the index's, else its tombstone, else the API
/// server's (a Job another replica just made).
async fn current_view(state: &AppState, name: &str) -> Result<Option<(JobView, u64)>, AppError> {
    let jobs = state.launcher.jobs();
    let indexed = jobs.view_with_id(name);
    if let Some(found) = indexed.or_else(|| jobs.events().tombstone(name)) {
        return Ok(Some(found));
    }
    Ok(state.launcher.find_with_id(name).await?)
}

/// Which changes a stream of all Jobs passes on.
#[derive(Debug, Clone, Default)]
struct EventFilter {
    template: Option<String>,
    state: Option<JobState>,
    labels: Vec<(String, String)>,
}

impl EventFilter {
    fn matches(&self, view: &JobView) -> bool {
        self.template.as_ref().is_none_or(|t| &view.template == t)
            && self.state.is_none_or(|s| view.state == s)
            && self.labels.iter().all(|(k, v)| view.labels.get(k) == Some(v))
    }
}

/// Every change of the launcher's Jobs that matches the filter, as it happens, for dashboards
/// and tools; `event: queue` (the queue's figures) at most once a second when it changed.
#[utoipa::path(
    get, path = "/v1/events", tag = "jobs",
    params(
        ("template" = Option<String>, Query, description = "Only this template's Jobs"),
        ("state" = Option<JobState>, Query, description = "Only changes into this state"),
        ("label" = Option<Vec<String>>, Query, description = "`key=value`; repeat or separate with commas; all must match"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `event: job` per change (id and data as for one Job), `event: queue` with the QueueView, `: heartbeat` comments every 15 s; `event: end` when cut (too slow a reader, shutdown)", body = String, content_type = "text/event-stream"),
        (status = 400, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many streams open", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn all_events(State(state): State<AppState>, query: QueryPairs) -> Result<Response, AppError> {
    query.only(&["template", "state", "label"])?;
    let filter = EventFilter {
        template: query.get("template").map(String::from),
        state: query.parse::<JobState>("state")?,
        labels: super::jobs::label_pairs(&query)?,
    };
    let slot = state.stream_slots.take()?;
    let events = state.launcher.jobs().events().subscribe();
    Ok(event_stream(stream_loop(Vec::new(), false, events, state.stop.clone(), slot, (), all_jobs_step(filter))))
}

/// What a stream of all Jobs does with each event: passes the changes `filter` matches and the
/// queue's; a reader that fell behind the channel is cut with an `end` event that says so,
/// rather than buffered without bound or left to miss changes unawares.
fn all_jobs_step(
    filter: EventFilter,
) -> impl FnMut(&mut (), Result<Arc<StreamEvent>, broadcast::error::RecvError>) -> Next + Send + 'static {
    move |_, received| match received {
        Ok(event) => match &*event {
            StreamEvent::Job { view, frame, .. } if filter.matches(view) => Next::Send(frame.clone()),
            StreamEvent::Queue { frame } => Next::Send(frame.clone()),
            StreamEvent::Job { .. } => Next::Nothing,
        },
        Err(broadcast::error::RecvError::Lagged(missed)) => Next::SendAndEnd(end_frame(
            "too-slow",
            &format!("this reader fell {missed} events behind and was cut off; list the Jobs again and reconnect"),
        )),
        Err(broadcast::error::RecvError::Closed) => Next::End,
    }
}

/// Once a second, sends the queue's figures to the streams if they changed, until `stop`.
pub async fn publish_queue_changes(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        state.launcher.jobs().events().publish_queue(|| serde_json::to_string(&state.queue_view()).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::histogram::Histogram;

    use super::*;
    use crate::{
        http::state::StreamSlots,
        jobs::{job_view, state::tests::record},
    };

    #[test]
    fn a_filter_matches_template_state_and_every_label() {
        let mut view = job_view("ns", &record("j"), &[]);
        view.labels.insert("team".into(), "a".into());
        let filter = |template: Option<&str>, state: Option<JobState>, labels: &[(&str, &str)]| EventFilter {
            template: template.map(String::from),
            state,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        assert!(filter(None, None, &[]).matches(&view));
        assert!(filter(Some("t"), Some(view.state), &[("team", "a")]).matches(&view));
        assert!(!filter(Some("other"), None, &[]).matches(&view));
        assert!(!filter(None, Some(JobState::Failed), &[]).matches(&view));
        assert!(!filter(None, None, &[("team", "b")]).matches(&view));
    }

    #[tokio::test]
    async fn events_waiting_for_a_stream_go_out_in_one_write_and_an_ending_frame_is_the_last() {
        use futures::StreamExt;
        let (sender, events) = broadcast::channel::<Arc<StreamEvent>>(16);
        let (_stop_tx, stop) = watch::channel(false);
        let slot = slot(Histogram::new([1.0]));
        let frame = |n: u8| Arc::new(StreamEvent::Queue { frame: Bytes::from(vec![b'a' + n; 3]) });
        for n in 0..3 {
            sender.send(frame(n)).expect("send");
        }
        // The third event ends the stream; a fourth is never sent.
        let step = |seen: &mut u8, received: Result<Arc<StreamEvent>, broadcast::error::RecvError>| match received {
            Ok(event) => match &*event {
                StreamEvent::Queue { frame } => {
                    *seen += 1;
                    if *seen == 3 { Next::SendAndEnd(frame.clone()) } else { Next::Send(frame.clone()) }
                }
                StreamEvent::Job { .. } => Next::Nothing,
            },
            Err(_) => Next::End,
        };
        let stream = stream_loop(Vec::new(), false, events, stop, slot, 0u8, step);
        sender.send(frame(3)).expect("send");
        let chunks: Vec<Bytes> = stream.map(|c| c.expect("infallible")).collect().await;
        assert_eq!(chunks, vec![Bytes::from_static(b"aaabbbccc")], "one write, ending after the last");
    }

    fn slot(delay: Histogram) -> StreamSlot {
        StreamSlots::new(1, delay).take().expect("a free slot")
    }

    #[tokio::test(start_paused = true)]
    async fn each_job_event_a_stream_sends_counts_in_the_delay_from_when_the_launcher_saw_it() {
        use futures::StreamExt;
        let (sender, events) = broadcast::channel::<Arc<StreamEvent>>(16);
        let (_stop_tx, stop) = watch::channel(false);
        let delay = Histogram::new([0.05, 1.0]);
        let event = |name: &str, seen| {
            let view = Box::new(job_view("ns", &record(name), &[]));
            Arc::new(StreamEvent::Job { view, id: 1, frame: Bytes::from(format!("{name};")), seen })
        };
        let seen = tokio::time::Instant::now();
        tokio::time::advance(Duration::from_millis(200)).await;
        for name in ["mine", "other", "mine"] {
            sender.send(event(name, seen)).expect("send");
        }
        sender.send(Arc::new(StreamEvent::Queue { frame: Bytes::from_static(b"queue;") })).expect("send");
        drop(sender);
        let step = |_: &mut (), received: Result<Arc<StreamEvent>, broadcast::error::RecvError>| match received {
            Ok(event) => match &*event {
                StreamEvent::Job { view, frame, .. } if view.name == "mine" => Next::Send(frame.clone()),
                StreamEvent::Job { .. } => Next::Nothing,
                StreamEvent::Queue { frame } => Next::Send(frame.clone()),
            },
            Err(_) => Next::End,
        };
        let sent: Vec<Bytes> = stream_loop(Vec::new(), false, events, stop, slot(delay.clone()), (), step)
            .map(|c| c.expect("infallible"))
            .collect()
            .await;
        assert_eq!(sent.concat(), b"mine;mine;queue;");
        assert_eq!(delay.count(), 2, "the two Job events sent, not the one filtered out nor the queue's");
        assert!((delay.sum() - 0.4).abs() < 1e-3, "each 200 ms after the launcher saw it: {}", delay.sum());
    }

    #[tokio::test(start_paused = true)]
    async fn events_in_a_burst_wait_for_the_pace_and_go_out_together_and_count_their_wait() {
        use futures::StreamExt;
        let (sender, events) = broadcast::channel::<Arc<StreamEvent>>(16);
        let (_stop_tx, stop) = watch::channel(false);
        let delay = Histogram::new([0.001, 1.0]);
        let start = tokio::time::Instant::now();
        let event = |name: &str| {
            let view = Box::new(job_view("ns", &record(name), &[]));
            let seen = tokio::time::Instant::now();
            Arc::new(StreamEvent::Job { view, id: 1, frame: Bytes::from(name.to_string()), seen })
        };
        let step = |_: &mut (), received: Result<Arc<StreamEvent>, broadcast::error::RecvError>| match received {
            Ok(event) => match &*event {
                StreamEvent::Job { frame, .. } | StreamEvent::Queue { frame } => Next::Send(frame.clone()),
            },
            Err(_) => Next::End,
        };
        let stream = stream_loop(Vec::new(), false, events, stop, slot(delay.clone()), (), step);
        let written = tokio::spawn(stream.map(move |c| (start.elapsed(), c.expect("infallible"))).collect::<Vec<_>>());
        let ms = Duration::from_millis;
        for (at, name) in [(0, "a"), (1, "b"), (2, "c"), (102, "d")] {
            tokio::time::sleep_until(start + ms(at)).await;
            sender.send(event(name)).expect("send");
        }
        // The stream takes d before it finds the channel closed: a receiver gets what was sent
        // before the sender went.
        drop(sender);
        let written = written.await.expect("the stream ends");
        let expected = [(0, "a"), (PACE.as_millis() as u64, "bc"), (102, "d")].map(|(at, s)| (ms(at), Bytes::from(s)));
        assert_eq!(written, expected, "a at once, b and c together a pace after a, d after a quiet spell at once");
        assert_eq!(delay.count(), 4);
        let waited = (PACE - ms(1)) + (PACE - ms(2));
        assert!((delay.sum() - waited.as_secs_f64()).abs() < 1e-6, "b and c count their wait: {}", delay.sum());
    }

    #[tokio::test]
    async fn a_reader_that_fell_behind_the_channel_is_cut_with_an_end_event_that_says_so() {
        use futures::StreamExt;
        let (sender, events) = broadcast::channel::<Arc<StreamEvent>>(2);
        let (_stop_tx, stop) = watch::channel(false);
        // Four events into a channel of two before the stream reads: it has missed two.
        for n in 0..4u8 {
            sender.send(Arc::new(StreamEvent::Queue { frame: Bytes::from(vec![b'a' + n]) })).expect("send");
        }
        let stream = stream_loop(
            Vec::new(),
            false,
            events,
            stop,
            slot(Histogram::new([1.0])),
            (),
            all_jobs_step(EventFilter::default()),
        );
        // With the sender gone, a stream that did not cut would pass on what it still holds
        // and end: the test fails on what it got instead of waiting.
        drop(sender);
        let chunks: Vec<Bytes> = stream.map(|c| c.expect("infallible")).collect().await;
        let [end] = chunks.as_slice() else { panic!("one frame, the end: {chunks:?}") };
        let text = std::str::from_utf8(end).expect("utf-8");
        assert!(text.starts_with("event: end\ndata: {"), "{text}");
        assert!(text.contains(r#""reason":"too-slow""#) && text.contains("fell 2 events behind"), "{text}");
    }

    #[test]
    fn last_event_id_is_a_number_or_nothing() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers), None);
        headers.insert("last-event-id", HeaderValue::from_static(" 42 "));
        assert_eq!(last_event_id(&headers), Some(42));
        headers.insert("last-event-id", HeaderValue::from_static("x"));
        assert_eq!(last_event_id(&headers), None);
    }
}
