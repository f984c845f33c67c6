//! One endpoint's bounded queue. Producers (poll tasks, the rules engine) push and never wait: the lock is held
//! for a copy of `Arc`s, and a full queue makes room by dropping its oldest entries, which it counts. The
//! endpoint's sender takes batches from the front.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

use crate::encode::Entry;

#[derive(Debug)]
pub struct Queue {
    entries: Mutex<VecDeque<Entry>>,
    capacity: usize,
    /// Woken when a push makes a batch's worth queued.
    filled: Notify,
    batch: usize,
}

impl Queue {
    pub fn new(capacity: usize, batch: usize) -> Queue {
        Queue {
            entries: Mutex::new(VecDeque::new()),
            capacity,
            filled: Notify::new(),
            batch,
        }
    }

    /// Appends `entries`; returns how many old ones were dropped to make room.
    pub fn push(&self, entries: &[Entry]) -> usize {
        if entries.is_empty() {
            return 0;
        }
        let mut queue = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        // More than the capacity in one push keeps its newest part.
        let kept = &entries[entries.len().saturating_sub(self.capacity)..];
        let overflow = (queue.len() + kept.len()).saturating_sub(self.capacity);
        queue.drain(..overflow);
        queue.extend(kept.iter().cloned());
        let full = queue.len() >= self.batch;
        drop(queue);
        if full {
            self.filled.notify_one();
        }
        overflow + (entries.len() - kept.len())
    }

    /// Up to `max` entries from the front.
    pub fn take(&self, max: usize) -> Vec<Entry> {
        let mut queue = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let count = max.min(queue.len());
        queue.drain(..count).collect()
    }

    /// Resolves once a batch's worth is queued (at once when a push already said so).
    pub async fn filled(&self) {
        self.filled.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(range: std::ops::Range<i64>) -> Vec<Entry> {
        range
            .map(|t| Entry {
                bytes: Vec::new().into(),
                timestamp_ms: t,
            })
            .collect()
    }

    fn times(entries: &[Entry]) -> Vec<i64> {
        entries.iter().map(|entry| entry.timestamp_ms).collect()
    }

    #[test]
    fn a_full_queue_drops_its_oldest_and_counts_them() {
        let queue = Queue::new(5, 2);
        assert_eq!(queue.push(&entries(0..3)), 0);
        assert_eq!(queue.push(&entries(3..7)), 2);

        assert_eq!(times(&queue.take(2)), [2, 3]);
        // One push larger than the capacity keeps its newest part.
        assert_eq!(queue.push(&entries(10..20)), 3 + 5);
        assert_eq!(times(&queue.take(100)), [15, 16, 17, 18, 19]);
        assert!(queue.take(1).is_empty());
    }
}
