//! Recording: the [`EventSink`] every component holds (a bounded queue: a full one drops and counts, never
//! blocks) and the one [`EventWriter`] task that appends what it queues to the segments, fsyncs each batch,
//! rotates segments and applies the retention.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::{Body, Event};
use crate::metrics::EventMetrics;
use crate::segment;

/// The history's folder inside the storage folder.
pub const EVENTS_FOLDER: &str = "events";
/// Events waiting for the writer at most; past it new events are dropped and counted. A storm of 5,000
/// alerts changing state at once fits.
pub const QUEUE_CAPACITY: usize = 8192;
/// Events the writer takes from the queue per append (one write and one fsync).
const BATCH: usize = 512;
/// How long the writer gets at shutdown for what is still queued.
pub const FINAL_FLUSH: Duration = Duration::from_secs(2);
/// How often the retention runs besides at start and after each rotation.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
const FILE_MODE: u32 = 0o600;
const FOLDER_MODE: u32 = 0o700;

/// How long and how much history is kept. The oldest segment goes first, whole: the history can exceed the
/// size bound by at most one segment being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Segments whose newest event is older than this are removed.
    pub max_age: Duration,
    /// The oldest segments are removed while the history is larger than this.
    pub max_bytes: u64,
}

/// 7 days and 64 MiB: a week of a busy fleet's events (a few hundred bytes each), a size any volume has.
impl Default for Retention {
    fn default() -> Retention {
        Retention {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Retention {
    /// A segment holds at most a quarter of the size bound, so removing the oldest never takes most of it.
    fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 4).clamp(4096, SEGMENT_BYTES)
    }
}

pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// One queued event: its time and body; the writer numbers it.
#[derive(Debug)]
struct Record {
    at: i64,
    body: Body,
}

/// Where components record events. Cheap to clone; a disabled sink (the default) records nothing, for
/// components run without a history (tests, tools).
#[derive(Clone, Default)]
pub struct EventSink {
    inner: Option<(mpsc::Sender<Record>, EventMetrics)>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl EventSink {
    /// Records `body` as happening now.
    pub fn record(&self, body: Body) {
        self.record_at(now_millis(), body);
    }

    /// Records `body` as happening at `at` (Unix milliseconds). Never waits: a full queue drops the event and
    /// counts it in `dbwatch_events_dropped_total`.
    pub fn record_at(&self, at: i64, body: Body) {
        let Some((queue, metrics)) = &self.inner else {
            return;
        };
        if queue.try_send(Record { at, body }).is_err() {
            metrics.dropped.inc();
        }
    }

    /// Records a reload: its outcome, what triggered it (`sighup`, `http`) and, when refused, why.
    pub fn reload(&self, success: bool, trigger: &str, error: Option<String>) {
        self.record(Body::Reload {
            success,
            trigger: trigger.to_owned(),
            error,
        });
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }
}

/// The history's segments on disk, as the writer keeps track of them.
#[derive(Debug)]
struct SegmentInfo {
    path: PathBuf,
    bytes: u64,
    /// The newest event's time (`i64::MIN`: none).
    newest: i64,
}

/// The writer's files: closed segments oldest first, the one being written, the next sequence number.
pub(crate) struct Disk {
    dir: PathBuf,
    retention: Retention,
    metrics: EventMetrics,
    closed: Vec<SegmentInfo>,
    current: Option<(File, SegmentInfo)>,
    next_seq: u64,
}

impl Disk {
    /// Reads every segment once: the next sequence number, each segment's size and newest event, and the
    /// damage found (counted; a segment with nothing readable in it is moved aside). Then the retention.
    pub(crate) fn open(
        dir: &Path,
        retention: Retention,
        metrics: EventMetrics,
    ) -> io::Result<Disk> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(FOLDER_MODE)
            .create(dir)?;
        let mut closed = Vec::new();
        let mut last_seq = 0;
        for (first, path) in segment::list(dir)? {
            let bytes = segment::read(&path)?;
            let parsed = segment::parse(&bytes);
            if parsed.torn {
                metrics.skipped_lines.with_label_values(&["torn"]).inc();
                tracing::warn!(file = %path.display(), "the event history's last line was cut by a crash; skipped");
            }
            if parsed.corrupt > 0 {
                metrics
                    .skipped_lines
                    .with_label_values(&["corrupt"])
                    .inc_by(parsed.corrupt as u64);
                tracing::error!(file = %path.display(), lines = parsed.corrupt, "unreadable lines in the event history; skipped, the rest is kept");
            }
            if parsed.events.is_empty() && !bytes.is_empty() {
                quarantine(dir, &path, &metrics);
                continue;
            }
            let newest = parsed
                .events
                .iter()
                .map(|event| event.at)
                .max()
                .unwrap_or(i64::MIN);
            last_seq = parsed
                .events
                .iter()
                .map(|event| event.seq)
                .chain([first.saturating_sub(1), last_seq])
                .max()
                .unwrap_or(last_seq);
            closed.push(SegmentInfo {
                path,
                bytes: bytes.len() as u64,
                newest,
            });
        }
        let mut disk = Disk {
            dir: dir.to_owned(),
            retention,
            metrics,
            closed,
            current: None,
            next_seq: last_seq.saturating_add(1),
        };
        disk.retain(now_millis());
        Ok(disk)
    }

    /// Numbers and appends `records`, one write and one fsync per segment they go to, starting a segment
    /// when there is none or the current one is full.
    fn append(&mut self, records: Vec<Record>) -> io::Result<usize> {
        let segment_bytes = self.retention.segment_bytes();
        let mut pending = Vec::with_capacity(records.len() * 256);
        let mut newest = i64::MIN;
        let mut written = 0;
        let mut line = Vec::with_capacity(512);
        for mut record in records {
            record.body.bound();
            let event = Event {
                seq: self.next_seq,
                at: record.at,
                body: record.body,
            };
            line.clear();
            serde_json::to_writer(&mut line, &event).map_err(io::Error::other)?;
            line.push(b'\n');
            let current = self.current.as_ref().map_or(0, |(_, info)| info.bytes);
            let used = current + pending.len() as u64;
            if used > 0 && used + line.len() as u64 > segment_bytes {
                self.write_out(&mut pending, newest)?;
                newest = i64::MIN;
                self.rotate();
            }
            if self.current.is_none() {
                self.start_segment(event.seq)?;
            }
            // Spent even if the write fails: a half-written batch may be on disk, and a number must never
            // name two events.
            self.next_seq += 1;
            pending.extend_from_slice(&line);
            newest = newest.max(event.at);
            written += 1;
        }
        self.write_out(&mut pending, newest)?;
        self.update_gauges();
        Ok(written)
    }

    fn start_segment(&mut self, first: u64) -> io::Result<()> {
        let path = self.dir.join(segment::name(first));
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)?;
        segment::sync_folder(&self.dir)?;
        self.current = Some((
            file,
            SegmentInfo {
                path,
                bytes: 0,
                newest: i64::MIN,
            },
        ));
        Ok(())
    }

    /// Writes and fsyncs `pending` to the current segment.
    fn write_out(&mut self, pending: &mut Vec<u8>, newest: i64) -> io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let Some((file, info)) = &mut self.current else {
            return Err(io::Error::other("no segment to write to"));
        };
        let written = file.write_all(pending).and_then(|()| file.sync_data());
        if let Err(error) = written {
            pending.clear();
            // Whatever part reached the file is at most a torn line at its end: start a new segment, so
            // nothing is ever appended after it.
            self.rotate();
            return Err(error);
        }
        info.bytes += pending.len() as u64;
        info.newest = info.newest.max(newest);
        pending.clear();
        Ok(())
    }

    fn rotate(&mut self) {
        if let Some((_, info)) = self.current.take() {
            self.closed.push(info);
            self.retain(now_millis());
        }
    }

    /// Removes the oldest closed segments while they are past the age or the history is past the size.
    pub(crate) fn retain(&mut self, now: i64) {
        let max_age = i64::try_from(self.retention.max_age.as_millis()).unwrap_or(i64::MAX);
        let oldest_kept = now.saturating_sub(max_age);
        let mut removed_any = false;
        while let Some(oldest) = self.closed.first() {
            let reason = if oldest.newest < oldest_kept {
                "age"
            } else if self.total_bytes() > self.retention.max_bytes {
                "size"
            } else {
                break;
            };
            let oldest = self.closed.remove(0);
            match std::fs::remove_file(&oldest.path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    // Put back: its bytes still count, and the next run tries again.
                    tracing::warn!(file = %oldest.path.display(), error = %error, "cannot remove an old segment of the event history");
                    self.closed.insert(0, oldest);
                    break;
                }
            }
            self.metrics
                .removed_segments
                .with_label_values(&[reason])
                .inc();
            removed_any = true;
        }
        if removed_any {
            let _ = segment::sync_folder(&self.dir);
        }
        self.update_gauges();
    }

    fn total_bytes(&self) -> u64 {
        self.closed
            .iter()
            .chain(self.current.as_ref().map(|(_, info)| info))
            .map(|info| info.bytes)
            .sum()
    }

    fn update_gauges(&self) {
        let segments = self.closed.len() + usize::from(self.current.is_some());
        self.metrics
            .segments
            .set(i64::try_from(segments).unwrap_or(i64::MAX));
        self.metrics
            .bytes
            .set(i64::try_from(self.total_bytes()).unwrap_or(i64::MAX));
    }
}

/// Moves a segment with nothing readable aside to `<name>.corrupt-<UTC time>`, as the storage folder's
/// quarantine does for state files, and counts it.
fn quarantine(dir: &Path, path: &Path, metrics: &EventMetrics) {
    metrics.quarantined_segments.inc();
    let stamp = chrono::DateTime::<chrono::Utc>::from(SystemTime::now()).format("%Y%m%dT%H%M%SZ");
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = format!("{name}.corrupt-{stamp}");
    let mut aside = dir.join(&base);
    let mut n = 1u32;
    while aside.symlink_metadata().is_ok() {
        aside = dir.join(format!("{base}-{n}"));
        n += 1;
    }
    match std::fs::rename(path, &aside).and_then(|()| segment::sync_folder(dir)) {
        Ok(()) => {
            tracing::error!(file = %path.display(), kept_as = %aside.display(), "a segment of the event history has no readable event; moved aside")
        }
        Err(error) => {
            tracing::error!(file = %path.display(), error = %error, "a segment of the event history has no readable event and cannot be moved aside")
        }
    }
}

/// The task that owns the history's files. Spawn [`EventWriter::run`] under the daemon's tracker.
pub struct EventWriter {
    queue: mpsc::Receiver<Record>,
    dir: PathBuf,
    retention: Retention,
    metrics: EventMetrics,
}

/// Opens the history in `storage/events`: the sink to record into, the writer task to spawn.
pub fn channel(
    storage: &Path,
    retention: Retention,
    metrics: EventMetrics,
) -> (EventSink, EventWriter) {
    let (sender, queue) = mpsc::channel(QUEUE_CAPACITY);
    let sink = EventSink {
        inner: Some((sender, metrics.clone())),
    };
    let writer = EventWriter {
        queue,
        dir: storage.join(EVENTS_FOLDER),
        retention,
        metrics,
    };
    (sink, writer)
}

impl EventWriter {
    /// Appends queued events until `shutdown`, then what is still queued within [`FINAL_FLUSH`]. File work
    /// runs on the blocking pool; the queue keeps filling (and dropping when full) meanwhile, so no recorder
    /// ever waits for a disk.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let (dir, retention, metrics) = (self.dir.clone(), self.retention, self.metrics.clone());
        let opened =
            tokio::task::spawn_blocking(move || Disk::open(&dir, retention, metrics)).await;
        let mut disk = match opened {
            Ok(Ok(disk)) => disk,
            Ok(Err(error)) => {
                tracing::error!(folder = %self.dir.display(), error = %error, "cannot open the event history; events are not recorded");
                self.queue.close();
                return;
            }
            Err(error) => {
                tracing::error!(error = %error, "opening the event history failed; events are not recorded");
                self.queue.close();
                return;
            }
        };
        let mut retention = tokio::time::interval(RETENTION_EVERY);
        retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                received = self.queue.recv_many(&mut batch, BATCH) => {
                    if received == 0 {
                        // Every sink is gone: nothing more can come.
                        return;
                    }
                }
                _ = retention.tick() => {
                    disk = match self.blocking(disk, |disk| disk.retain(now_millis())).await {
                        Some(disk) => disk,
                        None => return,
                    };
                    continue;
                }
            }
            let records = std::mem::take(&mut batch);
            disk = match self.write(disk, records).await {
                Some(disk) => disk,
                None => return,
            };
        }
        // What was queued before the signal, within a bound: an event recorded during shutdown is as
        // valuable as any, but the daemon's deadline is not ours to take.
        self.queue.close();
        let mut rest = Vec::new();
        while let Ok(record) = self.queue.try_recv() {
            rest.push(record);
        }
        if rest.is_empty() {
            return;
        }
        let left = rest.len();
        if tokio::time::timeout(FINAL_FLUSH, self.write(disk, rest))
            .await
            .is_err()
        {
            tracing::warn!(
                events = left,
                "the event history's last write did not finish in time"
            );
        }
    }

    async fn write(&self, disk: Disk, records: Vec<Record>) -> Option<Disk> {
        let count = records.len();
        let metrics = self.metrics.clone();
        self.blocking(disk, move |disk| match disk.append(records) {
            Ok(written) => metrics.written.inc_by(written as u64),
            Err(error) => {
                metrics.write_failures.inc();
                tracing::error!(error = %error, events = count, "cannot append to the event history; those events are lost");
            }
        })
        .await
    }

    /// Runs `work` on the disk on the blocking pool and hands the disk back; `None` if the work panicked,
    /// which ends the writer (logged; later events are dropped and counted).
    async fn blocking(
        &self,
        mut disk: Disk,
        work: impl FnOnce(&mut Disk) + Send + 'static,
    ) -> Option<Disk> {
        match tokio::task::spawn_blocking(move || {
            work(&mut disk);
            disk
        })
        .await
        {
            Ok(disk) => Some(disk),
            Err(error) => {
                tracing::error!(error = %error, "the event history's writer failed; events are no longer recorded");
                None
            }
        }
    }
}
