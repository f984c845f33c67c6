//! Reading the history: filters (time range, alert name, target, kinds), newest or oldest first, a page at a
//! time. Reads the segment files directly (on the caller's thread: call it from the blocking pool), so a
//! query never waits for the writer nor the writer for a query; a line the writer is halfway through is
//! simply not there yet.

use std::io;
use std::path::{Path, PathBuf};

use crate::event::{Event, Kind};
use crate::log::EVENTS_FOLDER;
use crate::segment;

/// Events per page when the query does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// Events per page at most.
pub const MAX_LIMIT: usize = 1000;
/// Bytes of segments one query reads at most; past it the page ends early with a cursor to go on from, so a
/// filter that matches nothing in a large history still answers promptly.
pub const SCAN_BUDGET_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Newest first; the cursor is the sequence number to go on below.
    #[default]
    Backward,
    /// Oldest first; the cursor is the sequence number to go on above.
    Forward,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Unix milliseconds, inclusive.
    pub since: Option<i64>,
    /// Unix milliseconds, inclusive.
    pub until: Option<i64>,
    pub alertname: Option<String>,
    pub target: Option<String>,
    /// Empty: every kind.
    pub kinds: Vec<Kind>,
    pub limit: usize,
    pub cursor: Option<u64>,
    pub direction: Direction,
}

impl Query {
    fn matches(&self, event: &Event) -> bool {
        self.since.is_none_or(|since| event.at >= since)
            && self.until.is_none_or(|until| event.at <= until)
            && (self.kinds.is_empty() || self.kinds.contains(&event.body.kind()))
            && self
                .alertname
                .as_deref()
                .is_none_or(|name| event.body.is_about_alert(name))
            && self
                .target
                .as_deref()
                .is_none_or(|target| event.body.is_about_target(target))
    }

    fn beyond_cursor(&self, seq: u64) -> bool {
        match (self.direction, self.cursor) {
            (_, None) => true,
            (Direction::Backward, Some(cursor)) => seq < cursor,
            (Direction::Forward, Some(cursor)) => seq > cursor,
        }
    }
}

/// One page of events and where the next one starts (`None`: nothing further).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub events: Vec<Event>,
    pub next: Option<u64>,
}

/// A read handle on the history in `storage/events`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventLog {
    dir: PathBuf,
}

impl EventLog {
    pub fn new(storage: &Path) -> EventLog {
        EventLog {
            dir: storage.join(EVENTS_FOLDER),
        }
    }

    /// The page of events `query` asks for. Blocking file IO: call it from the blocking pool.
    pub fn query(&self, query: &Query) -> io::Result<Page> {
        let limit = match query.limit {
            0 => DEFAULT_LIMIT,
            limit => limit.min(MAX_LIMIT),
        };
        let mut segments = segment::list(&self.dir)?;
        if query.direction == Direction::Backward {
            segments.reverse();
        }
        let mut page = Page::default();
        let mut scanned = 0usize;
        // The last sequence number looked at, for a page cut short by the scan budget.
        let mut last_seen: Option<u64> = None;
        for (index, (first, path)) in segments.iter().enumerate() {
            // Backward, a segment holds the numbers from its first up to the next one's first.
            let skip = match (query.direction, query.cursor) {
                (Direction::Backward, Some(cursor)) => *first >= cursor,
                (Direction::Forward, Some(cursor)) => segments
                    .get(index + 1)
                    .is_some_and(|(next, _)| next.saturating_sub(1) <= cursor),
                (_, None) => false,
            };
            if skip {
                continue;
            }
            if scanned >= SCAN_BUDGET_BYTES {
                page.next = last_seen;
                return Ok(page);
            }
            let bytes = match segment::read(path) {
                Ok(bytes) => bytes,
                // Removed by the retention since the listing.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            scanned += bytes.len();
            let mut events = segment::parse(&bytes).events;
            if query.direction == Direction::Backward {
                events.reverse();
            }
            for event in events {
                if !query.beyond_cursor(event.seq) {
                    continue;
                }
                last_seen = Some(event.seq);
                if !query.matches(&event) {
                    continue;
                }
                page.events.push(event);
                if page.events.len() == limit {
                    page.next = last_seen;
                    return Ok(page);
                }
            }
        }
        Ok(page)
    }
}
