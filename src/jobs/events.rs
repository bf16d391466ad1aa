//! Changes of the launcher's Jobs, as the events the status streams send: the index publishes
//! each Job's new view once, encoded once as a Server-Sent Events frame, and every stream passes
//! the same bytes on. A Job that leaves the index (TTL cleanup, a cancel) leaves a tombstone, its
//! final view, so that a client reconnecting after it went still learns how it ended.
//!
//! The event id is the highest resourceVersion of the Job and its pods (etcd's revision): a newer
//! view of a Job always has a higher id, on every replica. Intermediate states may be skipped
//! (two changes between two reads make one event); terminal states never are.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use tokio::{sync::broadcast, time::Instant};

use crate::api::JobView;

/// What a stream event carries.
#[derive(Debug)]
pub enum StreamEvent {
    /// A Job's view changed; `seen` is when the launcher learnt of the change (its watch
    /// delivered it, or it made the change itself), the start of the stream's delay.
    Job { view: Box<JobView>, id: u64, frame: Bytes, seen: Instant },
    /// The queue's order or counts changed (coalesced to at most one a second).
    Queue { frame: Bytes },
}

/// Final views kept for Jobs that left the index, at most this many and this long.
const TOMBSTONES: usize = 10_000;
const TOMBSTONE_AGE: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct Tombstones {
    /// The final view and id, and how many burials of the name are in `order` (a keyed Job can be
    /// re-created and deleted again): the entry goes with its last burial.
    by_name: HashMap<String, (JobView, u64, usize)>,
    order: VecDeque<(Instant, String)>,
}

impl Tombstones {
    fn insert(&mut self, view: JobView, id: u64) {
        let name = view.name.clone();
        let burials = self.by_name.get(&name).map_or(0, |e| e.2);
        self.by_name.insert(name.clone(), (view, id, burials + 1));
        self.order.push_back((Instant::now(), name));
        while self.order.len() > TOMBSTONES || self.order.front().is_some_and(|(at, _)| at.elapsed() > TOMBSTONE_AGE) {
            let Some((_, name)) = self.order.pop_front() else { break };
            if let Some(entry) = self.by_name.get_mut(&name) {
                entry.2 -= 1;
                if entry.2 == 0 {
                    self.by_name.remove(&name);
                }
            }
        }
    }
}

/// The Jobs' change events. Cheap to clone.
#[derive(Clone)]
pub struct JobEvents {
    sender: broadcast::Sender<Arc<StreamEvent>>,
    tombstones: Arc<Mutex<Tombstones>>,
    queue_changed: Arc<AtomicBool>,
}

impl JobEvents {
    /// Events buffered for a slow stream before it is cut.
    pub const CAPACITY: usize = 16 * 1024;

    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(Self::CAPACITY).0,
            tombstones: Arc::default(),
            queue_changed: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StreamEvent>> {
        self.sender.subscribe()
    }

    /// Whether any stream listens: views are built and encoded only then.
    pub fn has_listeners(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Publishes a Job's new view, of a change the launcher learnt of at `seen`.
    pub fn publish(&self, view: JobView, id: u64, seen: Instant) {
        let frame = job_frame(&view, id);
        let _ = self.sender.send(Arc::new(StreamEvent::Job { view: Box::new(view), id, frame, seen }));
    }

    /// Publishes the final view of a Job that left the index, and keeps it as a tombstone.
    pub fn bury(&self, view: JobView, id: u64, seen: Instant) {
        self.tombstones.lock().unwrap_or_else(|p| p.into_inner()).insert(view.clone(), id);
        if self.has_listeners() {
            self.publish(view, id, seen);
        }
    }

    /// The final view of a Job that left the index, if it left recently.
    pub fn tombstone(&self, name: &str) -> Option<(JobView, u64)> {
        self.tombstones.lock().unwrap_or_else(|p| p.into_inner()).by_name.get(name).map(|(v, id, _)| (v.clone(), *id))
    }

    /// Notes that the queue changed; [`publish_queue`](Self::publish_queue) sends it.
    pub fn queue_changed(&self) {
        self.queue_changed.store(true, Ordering::Relaxed);
    }

    /// Sends the queue event `data` (JSON) if the queue changed since the last one.
    pub fn publish_queue(&self, data: impl FnOnce() -> String) {
        if self.queue_changed.swap(false, Ordering::Relaxed) && self.has_listeners() {
            let frame = sse_frame("queue", None, &data());
            let _ = self.sender.send(Arc::new(StreamEvent::Queue { frame }));
        }
    }
}

impl Default for JobEvents {
    fn default() -> Self {
        Self::new()
    }
}

/// A Job's view as an SSE frame: `event: job`, its id, its JSON.
pub fn job_frame(view: &JobView, id: u64) -> Bytes {
    sse_frame("job", Some(id), &serde_json::to_string(view).unwrap_or_default())
}

/// One Server-Sent Events frame. `data` is JSON, which holds no raw newline.
pub fn sse_frame(event: &str, id: Option<u64>, data: &str) -> Bytes {
    let mut frame = format!("event: {event}\n");
    if let Some(id) = id {
        frame.push_str(&format!("id: {id}\n"));
    }
    frame.push_str("data: ");
    frame.push_str(data);
    frame.push_str("\n\n");
    Bytes::from(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::JobState,
        jobs::{job_view, state::tests::record},
    };

    fn view(name: &str) -> JobView {
        job_view("ns", &record(name), &[])
    }

    #[test]
    fn a_frame_is_one_sse_event_with_its_id_and_json() {
        let frame = job_frame(&view("j"), 42);
        let text = std::str::from_utf8(&frame).expect("utf-8");
        assert!(text.starts_with("event: job\nid: 42\ndata: {"), "{text}");
        assert!(text.ends_with("}\n\n") && text.matches('\n').count() == 4, "one data line: {text:?}");
    }

    #[test]
    fn a_job_that_left_keeps_its_final_view_for_a_late_reader() {
        let events = JobEvents::new();
        let mut gone = view("j");
        gone.state = JobState::Succeeded;
        events.bury(gone, 7, Instant::now());
        assert_eq!(events.tombstone("j").map(|(v, id)| (v.state, id)), Some((JobState::Succeeded, 7)));
        assert!(events.tombstone("other").is_none());
    }

    #[tokio::test]
    async fn listeners_get_each_view_and_a_coalesced_queue_event() {
        let events = JobEvents::new();
        let mut listener = events.subscribe();
        events.publish(view("a"), 1, Instant::now());
        events.queue_changed();
        events.queue_changed();
        events.publish_queue(|| "{}".into());
        events.publish_queue(|| panic!("nothing changed since"));
        assert!(matches!(&*listener.recv().await.expect("a"), StreamEvent::Job { id: 1, .. }));
        assert!(matches!(&*listener.recv().await.expect("queue"), StreamEvent::Queue { .. }));
        assert!(listener.try_recv().is_err(), "one queue event for two changes");
    }
}
