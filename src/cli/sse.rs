//! Reading a Server-Sent Events stream: bytes in, events out, however the bytes are split.

/// One event: its name, id and data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub event: String,
    pub id: Option<u64>,
    pub data: String,
}

/// Collects bytes until whole frames (ended by a blank line) can be read; comments (heartbeats)
/// are skipped. Works on bytes, so a character split across chunks is read whole.
#[derive(Debug, Default)]
pub struct Parser {
    buffer: Vec<u8>,
}

impl Parser {
    /// The events that `chunk` completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&frame);
            let mut event = Event::default();
            let mut fields = false;
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event.event = v.trim_start().to_string();
                    fields = true;
                } else if let Some(v) = line.strip_prefix("id:") {
                    event.id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    fields = true;
                }
            }
            if fields {
                events.push(event);
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_come_out_whole_and_comments_are_skipped() {
        let stream = ": heartbeat\n\nevent: job\nid: 7\ndata: {\"name\":\"é\"}\n\nevent: end\ndata: {}\n\n".as_bytes();
        for split in 1..stream.len() {
            let mut parser = Parser::default();
            let mut events = parser.feed(&stream[..split]);
            events.extend(parser.feed(&stream[split..]));
            assert_eq!(
                events,
                vec![
                    Event { event: "job".into(), id: Some(7), data: "{\"name\":\"é\"}".into() },
                    Event { event: "end".into(), id: None, data: "{}".into() },
                ],
                "split at {split}"
            );
        }
    }
}
