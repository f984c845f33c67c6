//! The fault-injection suite: the real dbwatch binary against misbehaving peers, files and disks.
//!
//! Every scenario runs the binary built by cargo (`CARGO_BIN_EXE_dbwatch`) against a private copy of the local
//! receivers (`deploy/local/receivers/http_receivers.py` from this checkout, started on free ports, so its
//! fault answers are the ones this suite needs) and the fleet's PostgreSQL and PgBouncer
//! (`eval "$(deploy/local/fleet env)"`). Each scenario asserts, as far as it applies: no panic (no
//! "panicked" in the daemon's stderr), no notification lost, no duplicate PagerDuty incident (one dedup_key per
//! alert group, one incident per alert episode), no false resolve (no resolve while the fault is still on),
//! the healthy targets' polls on schedule (within 100 ms, from the daemon's own per-poll timestamps) and the
//! daemon still ready.
//!
//! 1. `receivers_that_misbehave_cannot_kill_or_wedge_the_notifier`: PagerDuty receivers answering 429 with a
//!    huge `Retry-After` (9300000000000000000, u64::MAX, a year, a far-future HTTP date) or a malformed one, a
//!    10 MB body, a hang, a connection reset mid-answer, and an https receiver whose TLS handshake never
//!    completes. A later alert's notification still arrives; retried faults are delivered; a huge
//!    `Retry-After` leaves its notification queued within the 1 h cap or dead-lettered.
//! 2. `corrupt_and_truncated_state_files_are_kept_aside_and_never_resolve_a_broken_database`: alerts.json,
//!    notifications.json and silences.json truncated or garbled at seeded random offsets while a page fires:
//!    the daemon starts, keeps the bad file as `<name>.corrupt-*`, counts it, sends no resolve while the
//!    database is still broken, and resolves once it is fixed.
//! 3. `a_full_storage_folder_costs_writes_not_notifications` and
//!    `a_read_only_storage_folder_fails_at_start_with_one_line`: a small tmpfs filled up while alerts fire and
//!    resolve (write failures counted, notifications still go out, no temp file left behind, the daemon ready);
//!    a read-only one at start (exit 1 with the storage contract's one line).
//! 4. `sigkill_in_a_loop_loses_no_page_and_never_resolves_a_broken_database`: 50 SIGKILLs of the real daemon,
//!    each after a random 0.3–2.5 s of life, while a target behind a TCP proxy the test opens and closes goes
//!    down and up (`for: 0s`, 1 s polls and evaluations). The receivers answer after 300 ms, so kills land
//!    with notifications queued, being written and in flight. Each flip is caused by the receivers' record
//!    (fault on once the previous resolve reached PagerDuty and the webhook, off once this episode's trigger
//!    did). At the end: every episode's trigger delivered, every resolve after its trigger and after the fix,
//!    no resolve between an episode's trigger and its fix, one PagerDuty dedup key, one incident per episode.
//!    Duplicates (at-least-once re-sends) are counted and printed, not refused.
//! 5. `a_silent_and_a_one_byte_per_second_database_do_not_delay_the_healthy_targets`: a PostgreSQL target that
//!    accepts TCP and never answers and one that answers one byte per second, beside the fleet's PostgreSQL
//!    and PgBouncer, whose polls stay within 100 ms of their schedule.
//!
//! The scenarios take turns (one lock), so that timing measurements see one daemon's load at a time; random
//! choices come from one seeded generator per scenario, printed, and replayed with `DBWATCH_FAULTS_SEED=<n>`.
//! Run alone: `cargo test --all-features --test faults -- --nocapture` (the figures are printed);
//! `DBWATCH_FAULTS_RECEIVERS=hang,big` runs only those receiver faults in scenario 1.
//!
//! Needs: the fleet's PostgreSQL and PgBouncer, python3 (the receivers use only its standard library), and
//! root for `mount -t tmpfs` (scenario 3; the mounts are unmounted on drop, however the test ends).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[path = "support/exposition.rs"]
mod exposition;
use exposition::{find_series, parse};
#[path = "support/fleet.rs"]
mod fleet;
use fleet::{env, free_port, host_port};

const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";
/// The schedule bound the issue sets for healthy targets while others misbehave.
const SCHEDULE_BOUND: Duration = Duration::from_millis(100);
/// The `Retry-After` cap the notifier contract fixes (`MAX_RETRY_AFTER`).
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// One scenario at a time: the schedule measurements must not see another scenario's daemons.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// A name no other test run uses: buckets in the receivers, files.
fn unique(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!(
        "faults-{what}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------------------
// Randomness: SplitMix64, seeded and printed, so a failing run can be replayed exactly.

struct Rng(u64);

impl Rng {
    fn seeded(scenario: &str) -> Rng {
        let seed = std::env::var("DBWATCH_FAULTS_SEED")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .expect("clock after 1970")
                    .as_nanos() as u64
            });
        println!("{scenario}: seed {seed} (replay with DBWATCH_FAULTS_SEED={seed})");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..high` (`high > low`).
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

// ---------------------------------------------------------------------------------------------------------
// The receivers: a private instance of deploy/local/receivers/http_receivers.py.

struct Receivers {
    base: String,
    /// A port that accepts TCP and never answers: an https receiver there never completes its handshake.
    stall_port: u16,
    client: reqwest::Client,
    process: Child,
}

impl Drop for Receivers {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Receivers {
    async fn start() -> Receivers {
        let port = free_port();
        let stall_port = free_port();
        let process = Command::new("python3")
            .arg(repo().join("deploy/local/receivers/http_receivers.py"))
            .args(["--port", &port.to_string()])
            .args(["--stall-port", &stall_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("python3 runs the local receivers: {error}"));
        let receivers = Receivers {
            base: format!("http://127.0.0.1:{port}"),
            stall_port,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
            process,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let health = receivers
                .client
                .get(format!("{}/_health", receivers.base))
                .send()
                .await;
            if health.is_ok_and(|response| response.status().is_success()) {
                return receivers;
            }
            assert!(
                Instant::now() < deadline,
                "the local receivers did not start on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn script(&self, bucket: &str, script: &[&str], default: &str) {
        let response = self
            .client
            .put(format!("{}/_control/{bucket}", self.base))
            .body(json!({"script": script, "default": default}).to_string())
            .send()
            .await
            .expect("the receivers answer");
        assert!(response.status().is_success());
    }

    fn pagerduty(&self, bucket: &str) -> String {
        format!("{}/pagerduty/{bucket}/v2/enqueue", self.base)
    }

    fn webhook(&self, bucket: &str) -> String {
        format!("{}/webhook/{bucket}", self.base)
    }

    /// Everything the bucket received, in arrival order.
    async fn requests(&self, bucket: &str) -> Vec<Value> {
        let response = self
            .client
            .get(format!("{}/_requests/{bucket}", self.base))
            .send()
            .await
            .expect("the receivers answer");
        serde_json::from_str(&response.text().await.expect("a body")).expect("a JSON list")
    }
}

/// Polls the bucket until `done` holds (20 s at most), and returns what it received.
async fn wait_requests(
    receivers: &Receivers,
    bucket: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let requests = receivers.requests(bucket).await;
        if done(&requests) {
            return requests;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within 20 s; received: {requests:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The requests a receiver accepted ("ok", or "ok" after a delay), which is what reached the on-call.
fn accepted(requests: &[Value]) -> Vec<&Value> {
    requests
        .iter()
        .filter(|request| {
            request["answer"]
                .as_str()
                .is_some_and(|answer| answer == "ok" || answer.starts_with("slow:"))
        })
        .collect()
}

fn at(request: &Value) -> f64 {
    request["at"].as_f64().unwrap_or(0.0)
}

/// Trigger or resolve, from a PagerDuty event or an Alertmanager webhook body.
fn is_resolve(request: &Value) -> bool {
    request["body"]["event_action"] == "resolve" || request["body"]["status"] == "resolved"
}

fn is_trigger(request: &Value) -> bool {
    request["body"]["event_action"] == "trigger" || request["body"]["status"] == "firing"
}

// ---------------------------------------------------------------------------------------------------------
// The daemon.

struct Daemon {
    child: Child,
    base: String,
    stderr: PathBuf,
    client: reqwest::Client,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts dbwatch on `dir/dbwatch.yml` with `storage` as its storage folder; stderr is appended to
    /// `dir/dbwatch.stderr` (a file, so a chatty daemon never blocks on a full pipe).
    fn start(dir: &Path, storage: &Path) -> Daemon {
        let stderr = dir.join("dbwatch.stderr");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr)
            .expect("stderr file");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_dbwatch"))
            .arg("--config.file")
            .arg(dir.join("dbwatch.yml"))
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--storage.path")
            .arg(storage)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dbwatch");
        Daemon {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stderr,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
        }
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The last lines of stderr, for failure messages.
    fn stderr_tail(&self) -> String {
        let text = self.stderr_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Fails the test with the daemon's stderr if it exited.
    fn assert_running(&mut self, doing: &str) {
        if let Some(status) = self.exited() {
            panic!(
                "dbwatch exited ({status}) while {doing}; stderr:\n{}",
                self.stderr_tail()
            );
        }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    async fn is_ready(&self) -> bool {
        matches!(self.get("/-/ready").await, Some((200, _)))
    }

    async fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            self.assert_running("starting");
            if self.is_ready().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dbwatch not ready within {within:?}; /-/ready: {:?}; stderr:\n{}",
                self.get("/-/ready").await,
                self.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn metrics(&self) -> HashMap<String, f64> {
        match self.get("/metrics").await {
            Some((200, body)) => parse(&body),
            _ => HashMap::new(),
        }
    }

    /// A counter summed over every series of `name` whose labels include all of `labels`.
    async fn counter(&self, name: &str, labels: &[&str]) -> f64 {
        let prefix = format!("{name}{{");
        // 0.0 + each value: an empty sum would read as -0.
        self.metrics()
            .await
            .iter()
            .filter(|(series, _)| {
                (series.starts_with(&prefix) || series.as_str() == name)
                    && labels.iter().all(|label| series.contains(label))
            })
            .fold(0.0, |sum, (_, value)| sum + value)
    }

    /// SIGKILL: no shutdown path runs.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then a clean exit within the daemon's 10 s shutdown deadline.
    async fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(12);
        loop {
            if let Some(status) = self.exited() {
                assert!(
                    status.success(),
                    "dbwatch exited with {status} after SIGTERM; stderr:\n{}",
                    self.stderr_tail()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dbwatch did not stop within 12 s of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The end-of-scenario checks every scenario shares: still running, ready, no panic.
    async fn assert_healthy(&mut self) {
        self.assert_running("the scenario ran");
        assert!(
            self.is_ready().await,
            "dbwatch is no longer ready: {:?}; stderr:\n{}",
            self.get("/-/ready").await,
            self.stderr_tail()
        );
        assert_no_panic(&self.stderr_text());
    }
}

fn assert_no_panic(stderr: &str) {
    let panics: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("panicked"))
        .collect();
    assert!(
        panics.is_empty(),
        "dbwatch panicked:\n{}",
        panics.join("\n")
    );
}

fn panics_in(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|line| line.contains("panicked"))
        .count()
}

/// `connection:` for one of the fleet's PostgreSQL-protocol servers, or a local port.
fn pg_connection(host: &str, port: &str) -> String {
    format!("{{host: {host}, port: {port}, user: dbwatch, password: dbwatch}}")
}

fn fleet_connection(variable: &str) -> String {
    let (host, port) = host_port(&env(variable));
    pg_connection(&host, &port)
}

fn fleet_address(variable: &str) -> String {
    let (host, port) = host_port(&env(variable));
    format!("{host}:{port}")
}

// ---------------------------------------------------------------------------------------------------------
// Network faults the test controls.

/// A TCP proxy to a real server that the test opens (forwards) and closes (cuts every connection and refuses
/// new ones), so a target's `db_up` flips when the test says.
struct Proxy {
    port: u16,
    up: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: String, up: bool) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (sender, receiver) = tokio::sync::watch::channel(up);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*receiver.borrow() {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let mut down = receiver.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { port, up: sender }
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// A database that accepts TCP connections and never says a word.
async fn silent_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    port
}

/// A database that answers one byte per second: a refused SSL request, then PostgreSQL ParameterStatus
/// messages forever, so a client always waits for one more byte. Counts the bytes it wrote.
async fn dribbling_server(written: Arc<AtomicUsize>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let written = written.clone();
            tokio::spawn(async move {
                let mut stream: Vec<u8> = b"N".to_vec();
                // 'S', length 8, "a\0b\0", repeated: a valid message stream that never ends.
                let parameter = [b'S', 0, 0, 0, 8, b'a', 0, b'b', 0];
                let mut sink = [0u8; 1024];
                let mut next = 0usize;
                loop {
                    // Drain whatever the client sent, without waiting for it.
                    let _ = tokio::time::timeout(Duration::from_millis(1), socket.read(&mut sink))
                        .await;
                    let byte = if next < stream.len() {
                        stream[next]
                    } else {
                        stream.extend_from_slice(&parameter);
                        stream[next]
                    };
                    next += 1;
                    if socket.write_all(&[byte]).await.is_err() {
                        return;
                    }
                    written.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
    });
    port
}

// ---------------------------------------------------------------------------------------------------------
// Poll schedule, from the daemon's own per-poll gauges: the poll started at
// `dbwatch_last_success_timestamp_seconds - dbwatch_poll_duration_seconds`; polls run on a fixed-rate ticker,
// so every start should sit on one grid of the interval.

#[derive(Default)]
struct PollClock {
    /// Per target: the poll starts seen (Unix seconds), in order.
    starts: BTreeMap<String, Vec<f64>>,
    last: HashMap<String, f64>,
}

#[derive(Debug)]
struct Schedule {
    polls: usize,
    /// Grid slots with no poll, or with two.
    irregular: usize,
    /// The spread of the start offsets against the interval's grid: the worst delay of one poll relative to
    /// the best one.
    worst: Duration,
    /// When the latest poll started (Unix seconds), to find what the daemon was doing then.
    latest_at: f64,
}

impl PollClock {
    fn observe(&mut self, metrics: &HashMap<String, f64>, targets: &[&str]) {
        for target in targets {
            let label = format!("target=\"{target}\"");
            let Some(success) =
                find_series(metrics, "dbwatch_last_success_timestamp_seconds", &[&label])
            else {
                continue;
            };
            let Some(duration) = find_series(metrics, "dbwatch_poll_duration_seconds", &[&label])
            else {
                continue;
            };
            if success <= 0.0 || self.last.get(*target) == Some(&success) {
                continue;
            }
            self.last.insert((*target).to_owned(), success);
            self.starts
                .entry((*target).to_owned())
                .or_default()
                .push(success - duration);
        }
    }

    fn schedule(&self, target: &str, interval: Duration) -> Schedule {
        let starts = self.starts.get(target).cloned().unwrap_or_default();
        let period = interval.as_secs_f64();
        let Some(first) = starts.first().copied() else {
            return Schedule {
                polls: 0,
                irregular: 0,
                worst: Duration::ZERO,
                latest_at: 0.0,
            };
        };
        let mut slots = BTreeSet::new();
        let mut irregular = 0;
        let (mut low, mut high) = (f64::MAX, f64::MIN);
        let mut latest_at = first;
        for start in &starts {
            let slot = ((start - first) / period).round();
            if !slots.insert(slot as i64) {
                irregular += 1;
            }
            let offset = start - first - slot * period;
            low = low.min(offset);
            if offset > high {
                high = offset;
                latest_at = *start;
            }
        }
        let span = slots.last().copied().unwrap_or(0) - slots.first().copied().unwrap_or(0) + 1;
        irregular += usize::try_from(span)
            .unwrap_or(0)
            .saturating_sub(slots.len());
        Schedule {
            polls: starts.len(),
            irregular,
            worst: Duration::from_secs_f64((high - low).max(0.0)),
            latest_at,
        }
    }
}

/// Samples the daemon's /metrics every 50 ms in the background until `stop`, for the given targets.
fn watch_polls(
    base: String,
    targets: &[&str],
    stop: CancellationToken,
) -> tokio::task::JoinHandle<PollClock> {
    let targets: Vec<String> = targets.iter().map(|t| (*t).to_owned()).collect();
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("http client");
        let mut clock = PollClock::default();
        let names: Vec<&str> = targets.iter().map(String::as_str).collect();
        loop {
            if let Ok(response) = client.get(format!("{base}/metrics")).send().await {
                if let Ok(body) = response.text().await {
                    clock.observe(&parse(&body), &names);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.cancelled() => return clock,
            }
        }
    })
}

/// Asserts each healthy target polled on its grid (no missed or doubled slot, spread within the bound) and
/// returns the worst spread.
fn assert_on_schedule(
    clock: &PollClock,
    targets: &[&str],
    interval: Duration,
    at_least: usize,
) -> Duration {
    let mut worst = Duration::ZERO;
    for target in targets {
        let schedule = clock.schedule(target, interval);
        println!("  {target}: {schedule:?}");
        assert!(
            schedule.polls >= at_least,
            "{target}: {} polls seen, expected at least {at_least}: {schedule:?}",
            schedule.polls
        );
        assert_eq!(
            schedule.irregular, 0,
            "{target}: polls missed or doubled on the {interval:?} grid: {schedule:?}"
        );
        assert!(
            schedule.worst <= SCHEDULE_BOUND,
            "{target}: a poll started {:?} off its schedule (bound {SCHEDULE_BOUND:?}), the latest at Unix time {:.3}: {schedule:?}",
            schedule.worst,
            schedule.latest_at
        );
        worst = worst.max(schedule.worst);
    }
    worst
}

// ---------------------------------------------------------------------------------------------------------
// State files.

/// Every outbox entry in a notifications.json, wherever its format keeps the list.
fn outbox_entries(state: &Value) -> Vec<Value> {
    match state {
        Value::Object(map) => {
            if let Some(Value::Array(entries)) = map.get("outbox") {
                return entries.clone();
            }
            map.values().flat_map(outbox_entries).collect()
        }
        _ => Vec::new(),
    }
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Names in `dir` starting with `prefix`.
fn names_with_prefix(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

// =========================================================================================================
// 1. Receivers that misbehave.

#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    /// Retried after a backoff, then delivered: both alerts arrive at this receiver.
    Delivered,
    /// A huge Retry-After: each notification delivered, dead-lettered, or queued no later than the 1 h cap.
    CappedOrDeadLettered,
    /// Never answers: retried (not wedged), kept in the outbox (not lost).
    Retried,
}

struct ReceiverFault {
    name: &'static str,
    script: &'static [&'static str],
    expect: Expect,
}

const RECEIVER_FAULTS: &[ReceiverFault] = &[
    ReceiverFault {
        name: "huge",
        script: &["429:9300000000000000000"],
        expect: Expect::CappedOrDeadLettered,
    },
    ReceiverFault {
        name: "u64max",
        script: &["429:18446744073709551615"],
        expect: Expect::CappedOrDeadLettered,
    },
    ReceiverFault {
        name: "year",
        script: &["429:31536000"],
        expect: Expect::CappedOrDeadLettered,
    },
    ReceiverFault {
        name: "date",
        script: &["429:Fri, 31 Dec 9999 23:59:59 GMT"],
        expect: Expect::CappedOrDeadLettered,
    },
    ReceiverFault {
        name: "malformed",
        script: &["429:soon", "429:-1", "429:1e30"],
        expect: Expect::Delivered,
    },
    ReceiverFault {
        name: "big",
        script: &["big"],
        expect: Expect::Delivered,
    },
    ReceiverFault {
        name: "hang",
        script: &["hang"],
        expect: Expect::Delivered,
    },
    ReceiverFault {
        name: "reset",
        script: &["reset"],
        expect: Expect::Delivered,
    },
    ReceiverFault {
        name: "tls",
        script: &[],
        expect: Expect::Retried,
    },
];

/// `first` fires at once; `later` (for: 14 s) after every first notification met its fault — the hang costs
/// the 10 s delivery timeout — so its notification proves the notifier still works.
const LATER_FOR: &str = "14s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_that_misbehave_cannot_kill_or_wedge_the_notifier() {
    let _turn = SERIAL.lock().await;
    let receivers = Receivers::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let control = unique("control");
    receivers.script(&control, &[], "ok").await;

    let mut rules = String::from("groups:\n  - name: faults\n    interval: 1s\n    rules:\n");
    let mut routes = String::new();
    let mut receiver_list = format!(
        "  - name: control\n    webhook_configs: [{{url: '{}', send_resolved: true}}]\n",
        receivers.webhook(&control)
    );
    let mut buckets = BTreeMap::new();
    // DBWATCH_FAULTS_RECEIVERS=big,hang,... runs only those faults (to look at one at a time).
    let only = std::env::var("DBWATCH_FAULTS_RECEIVERS").ok();
    let faults: Vec<&ReceiverFault> = RECEIVER_FAULTS
        .iter()
        .filter(|fault| {
            only.as_deref()
                .is_none_or(|only| only.split(',').any(|name| name == fault.name))
        })
        .collect();
    for fault in &faults {
        let bucket = unique(fault.name);
        receivers.script(&bucket, fault.script, "ok").await;
        let url = if fault.expect == Expect::Retried {
            format!("https://127.0.0.1:{}/v2/enqueue", receivers.stall_port)
        } else {
            receivers.pagerduty(&bucket)
        };
        buckets.insert(fault.name, bucket);
        rules.push_str(&format!(
            "      - alert: first\n        expr: 'db_up{{target=\"dead\"}} == 0'\n        labels: {{fault: {name}, severity: critical}}\n      - alert: later\n        expr: 'db_up{{target=\"dead\"}} == 0'\n        for: {LATER_FOR}\n        labels: {{fault: {name}, severity: critical}}\n",
            name = fault.name
        ));
        routes.push_str(&format!(
            "    - receiver: f-{name}\n      matchers: ['fault=\"{name}\"']\n",
            name = fault.name
        ));
        receiver_list.push_str(&format!(
            "  - name: f-{name}\n    pagerduty_configs: [{{routing_key: {ROUTING_KEY}, url: '{url}', send_resolved: true}}]\n",
            name = fault.name
        ));
    }
    std::fs::write(dir.path().join("rules.yml"), rules).expect("write rules");
    std::fs::write(
        dir.path().join("routing.yml"),
        format!(
            "route:\n  receiver: control\n  group_by: [alertname, fault]\n  group_wait: 0s\n  group_interval: 1s\n  routes:\n    - receiver: control\n      matchers: [alertname=later]\n      continue: true\n{routes}receivers:\n{receiver_list}"
        ),
    )
    .expect("write routing");
    std::fs::write(
        dir.path().join("dbwatch.yml"),
        format!(
            "global:\n  interval: 1s\n  timeout: 900ms\nrule_files: [rules.yml]\nalerting:\n  config_file: routing.yml\ntargets:\n  - name: dead\n    type: postgres\n    connection: {{host: 127.0.0.1, port: 1, user: dbwatch, password: x}}\n  - name: pg-primary\n    type: postgres\n    connection: {}\n",
            fleet_connection("DBWATCH_PG_PRIMARY_URL")
        ),
    )
    .expect("write config");

    let storage = dir.path().join("data");
    let mut daemon = Daemon::start(dir.path(), &storage);
    daemon.wait_ready(Duration::from_secs(30)).await;
    let stop = CancellationToken::new();
    let clock = watch_polls(daemon.base.clone(), &["pg-primary"], stop.clone());

    // A later alert's notification arrives for every fault: the notifier outlived every answer.
    let names: BTreeSet<&str> = faults.iter().map(|f| f.name).collect();
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let requests = receivers.requests(&control).await;
        let arrived: BTreeSet<&str> = accepted(&requests)
            .iter()
            .filter(|r| is_trigger(r) && r["body"]["groupLabels"]["alertname"] == "later")
            .filter_map(|r| r["body"]["groupLabels"]["fault"].as_str())
            .collect();
        if arrived == names {
            break;
        }
        if Instant::now() >= deadline || daemon.exited().is_some() {
            let missing: Vec<&&str> = names.difference(&arrived).collect();
            panic!(
                "the later alert's notification never arrived after the faults {missing:?} (daemon exited: {:?}); dbwatch's panics: {:?}; stderr:\n{}",
                daemon.exited(),
                daemon.stderr_text().lines().filter(|line| line.contains("panicked") || line.contains("overflow")).collect::<Vec<_>>(),
                daemon.stderr_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Each faulted receiver: retried and delivered, or held within the cap, or retried without wedging.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pending: Vec<&ReceiverFault> = faults.clone();
    let mut last_problem = BTreeMap::new();
    while !pending.is_empty() {
        let state = read_json(&storage.join("notifications.json")).unwrap_or(Value::Null);
        let outbox = outbox_entries(&state);
        let now_ms = unix_now() * 1000.0;
        let mut still = Vec::new();
        for fault in pending {
            let receiver = format!("f-{}", fault.name);
            let requests = receivers.requests(&buckets[fault.name]).await;
            let delivered: BTreeSet<String> = accepted(&requests)
                .iter()
                .filter_map(|r| r["body"]["payload"]["summary"].as_str())
                .filter_map(|summary| summary.split_whitespace().nth(1).map(str::to_owned))
                .collect();
            let queued: Vec<&Value> = outbox
                .iter()
                .filter(|entry| entry["receiver"] == receiver.as_str())
                .collect();
            let dead = daemon
                .counter(
                    "dbwatch_notifications_dead_letter_total",
                    &[&format!("receiver=\"{receiver}\"")],
                )
                .await;
            let problem = match fault.expect {
                Expect::Delivered => (delivered.len() < 2).then(|| {
                    format!(
                        "delivered {delivered:?} of [first, later]; {} requests: {:?}",
                        requests.len(),
                        requests
                            .iter()
                            .map(|r| r["answer"].clone())
                            .collect::<Vec<_>>()
                    )
                }),
                Expect::CappedOrDeadLettered => {
                    let beyond: Vec<f64> = queued
                        .iter()
                        .filter_map(|entry| entry["not_before"].as_f64())
                        .filter(|not_before| {
                            *not_before > now_ms + (RETRY_AFTER_CAP.as_secs_f64() + 60.0) * 1000.0
                        })
                        .map(|not_before| (not_before - now_ms) / 1000.0)
                        .collect();
                    let accounted = delivered.len() + queued.len() + dead as usize;
                    if !beyond.is_empty() {
                        Some(format!(
                            "queued to retry in {beyond:?} s, past the {RETRY_AFTER_CAP:?} Retry-After cap"
                        ))
                    } else if accounted < 2 {
                        Some(format!(
                            "only {accounted} of 2 notifications accounted for (delivered {delivered:?}, queued {}, dead-lettered {dead}): one was lost",
                            queued.len()
                        ))
                    } else {
                        None
                    }
                }
                Expect::Retried => {
                    let retried = daemon
                        .counter(
                            "dbwatch_notifications_total",
                            &[&format!("receiver=\"{receiver}\""), "outcome=\"retried\""],
                        )
                        .await;
                    if retried < 1.0 {
                        Some(format!("no attempt ended (retried = {retried}): the TLS stall wedged the destination"))
                    } else if queued.len() + (dead as usize) < 2 {
                        Some(format!(
                            "{} queued and {dead} dead-lettered of 2: a notification was lost",
                            queued.len()
                        ))
                    } else {
                        None
                    }
                }
            };
            if let Some(problem) = problem {
                last_problem.insert(fault.name, problem);
                still.push(fault);
            } else {
                last_problem.remove(fault.name);
                println!(
                    "  {}: {} requests, delivered {delivered:?}, queued {}, dead-lettered {dead}",
                    fault.name,
                    requests.len(),
                    queued.len()
                );
            }
        }
        pending = still;
        if !pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "faulted receivers not settled: {last_problem:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // PagerDuty: one dedup key per alert group, never a resolve (the target never came back).
    for fault in &faults {
        let requests = receivers.requests(&buckets[fault.name]).await;
        let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for request in &requests {
            let summary = request["body"]["payload"]["summary"].as_str().unwrap_or("");
            let alert = summary.split_whitespace().nth(1).unwrap_or("?").to_owned();
            if let Some(key) = request["body"]["dedup_key"].as_str() {
                keys.entry(alert).or_default().insert(key.to_owned());
            }
            assert!(
                !is_resolve(request),
                "{}: a resolve while the target is still down: {request}",
                fault.name
            );
        }
        for (alert, keys) in &keys {
            assert_eq!(
                keys.len(),
                1,
                "{}: {alert} under several dedup keys",
                fault.name
            );
        }
    }
    let control_requests = receivers.requests(&control).await;
    assert!(
        !control_requests.iter().any(is_resolve),
        "a resolve while the target is still down: {control_requests:#?}"
    );

    stop.cancel();
    let clock = clock.await.expect("poll watcher");
    let worst = assert_on_schedule(&clock, &["pg-primary"], Duration::from_secs(1), 15);
    println!("receiver faults: healthy target's worst poll delay {worst:?}");
    daemon.assert_healthy().await;
    daemon.stop().await;
}

// =========================================================================================================
// 2. Corrupt and truncated state files.

#[derive(Clone, Copy, Debug)]
enum Damage {
    Truncate,
    Garble,
}

/// Damages `bytes` so they no longer parse: truncated inside the document, or control bytes (never valid in
/// JSON outside whitespace, and a NUL always) written over random offsets. Says what it did.
fn damage(bytes: &mut Vec<u8>, how: Damage, rng: &mut Rng) -> String {
    let end = bytes
        .iter()
        .rposition(|byte| !byte.is_ascii_whitespace())
        .unwrap_or(0);
    match how {
        Damage::Truncate => {
            let at = rng.range(1, end.max(2) as u64) as usize;
            bytes.truncate(at);
            format!("truncated to {at} of {} bytes", end + 1)
        }
        Damage::Garble => {
            let count = rng.range(1, 9) as usize;
            let mut offsets = Vec::new();
            for i in 0..count {
                let at = rng.range(0, end.max(1) as u64) as usize;
                bytes[at] = if i == 0 { 0 } else { rng.range(0, 0x20) as u8 };
                offsets.push(at);
            }
            format!(
                "control bytes written at offsets {offsets:?} of {}",
                end + 1
            )
        }
    }
}

struct CorruptionCase {
    file: &'static str,
    damage: Damage,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_truncated_state_files_are_kept_aside_and_never_resolve_a_broken_database() {
    let _turn = SERIAL.lock().await;
    let receivers = Arc::new(Receivers::start().await);
    let mut rng = Rng::seeded("state files");
    let mut failures = Vec::new();
    for damage in [Damage::Truncate, Damage::Garble] {
        // The three files at once, each in its own daemon: a third of the time.
        let mut cases = tokio::task::JoinSet::new();
        for file in ["alerts.json", "notifications.json", "silences.json"] {
            let case = CorruptionCase { file, damage };
            let seed = rng.next();
            cases.spawn(corruption_case(receivers.clone(), case, Rng(seed)));
        }
        while let Some(joined) = cases.join_next().await {
            match joined {
                Ok(Ok(report)) => println!("{report}"),
                Ok(Err(failure)) => failures.push(failure),
                Err(error) => failures.push(format!("a case panicked: {error}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// One file damaged while its page fires. Errors are returned, not panicked, so the three parallel cases all
/// report.
async fn corruption_case(
    receivers: Arc<Receivers>,
    case: CorruptionCase,
    mut rng: Rng,
) -> Result<String, String> {
    let name = format!("{} {:?}", case.file, case.damage);
    let dir = tempfile::tempdir().map_err(|e| format!("{name}: temp dir: {e}"))?;
    let storage = dir.path().join("data");
    let bucket = unique("state");
    receivers.script(&bucket, &[], "ok").await;
    let proxy = Proxy::start(fleet_address("DBWATCH_PG_PRIMARY_URL"), false).await;
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: availability\n    interval: 1s\n    rules:\n      - alert: billing_down\n        expr: 'db_up{target=\"billing\"} == 0'\n        for: 2s\n        labels: {severity: critical}\n",
    )
    .map_err(|e| format!("{name}: {e}"))?;
    std::fs::write(
        dir.path().join("routing.yml"),
        format!(
            "route:\n  receiver: page\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: page\n    pagerduty_configs: [{{routing_key: {ROUTING_KEY}, url: '{}', send_resolved: true}}]\n    webhook_configs: [{{url: '{}', send_resolved: true}}]\n",
            receivers.pagerduty(&bucket),
            receivers.webhook(&bucket)
        ),
    )
    .map_err(|e| format!("{name}: {e}"))?;
    std::fs::write(
        dir.path().join("dbwatch.yml"),
        format!(
            "global:\n  interval: 1s\n  timeout: 900ms\nrule_files: [rules.yml]\nalerting:\n  config_file: routing.yml\ntargets:\n  - name: billing\n    type: postgres\n    connection: {}\n  - name: pg-primary\n    type: postgres\n    connection: {}\n",
            pg_connection("127.0.0.1", &proxy.port.to_string()),
            fleet_connection("DBWATCH_PG_PRIMARY_URL")
        ),
    )
    .map_err(|e| format!("{name}: {e}"))?;
    // A silence that matches nothing, so silences.json exists (written in the format dbwatch saves).
    std::fs::create_dir_all(&storage).map_err(|e| format!("{name}: {e}"))?;
    let now_ms = (unix_now() * 1000.0) as i64;
    std::fs::write(
        storage.join("silences.json"),
        json!([{
            "id": "00000000-0000-4000-8000-000000000001",
            "matchers": [{"name": "alertname", "value": "nothing_matches", "isRegex": false, "isEqual": true}],
            "starts_at": now_ms - 60_000, "ends_at": now_ms + 86_400_000, "updated_at": now_ms - 60_000,
            "created_by": "faults", "comment": "exists so that silences.json can be damaged"
        }])
        .to_string(),
    )
    .map_err(|e| format!("{name}: {e}"))?;

    // The page fires and is delivered.
    let mut first = Daemon::start(dir.path(), &storage);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = first.exited() {
            return Err(format!(
                "{name}: dbwatch exited ({status}) before the page; stderr:\n{}",
                first.stderr_tail()
            ));
        }
        // The silences file is written by hand in the format dbwatch saved at ea1424d; if a later format
        // refuses it, say so instead of waiting.
        let refused = names_with_prefix(&storage, "silences.json.corrupt-");
        if !refused.is_empty() {
            return Err(format!(
                "{name}: the first daemon refused the test's hand-written silences.json ({refused:?}): update the format in corruption_case"
            ));
        }
        let requests = receivers.requests(&bucket).await;
        let triggers = accepted(&requests).iter().filter(|r| is_trigger(r)).count();
        let saved = std::fs::read(storage.join(case.file)).unwrap_or_default();
        // Both integrations told, and the file holds the firing page (alerts.json and notifications.json
        // are written after the transition and the send).
        if triggers >= 2
            && String::from_utf8_lossy(&saved).contains(if case.file == "silences.json" {
                "nothing_matches"
            } else {
                "billing"
            })
        {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{name}: the page was not delivered and saved within 30 s: {requests:?}; stderr:\n{}",
                first.stderr_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dedup_key = accepted(&receivers.requests(&bucket).await)
        .iter()
        .find_map(|r| r["body"]["dedup_key"].as_str().map(str::to_owned))
        .unwrap_or_default();
    first.kill();

    // The crash left the file damaged.
    let path = storage.join(case.file);
    let mut bytes =
        std::fs::read(&path).map_err(|e| format!("{name}: read {}: {e}", path.display()))?;
    let what = damage(&mut bytes, case.damage, &mut rng);
    std::fs::write(&path, &bytes).map_err(|e| format!("{name}: {e}"))?;
    let restarted_at = unix_now();

    let mut second = Daemon::start(dir.path(), &storage);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = second.exited() {
            return Err(format!(
                "{name} ({what}): dbwatch refused to start ({status}); stderr:\n{}",
                second.stderr_tail()
            ));
        }
        if second.is_ready().await {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!("{name} ({what}): not ready within 20 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stop = CancellationToken::new();
    let clock = watch_polls(second.base.clone(), &["pg-primary"], stop.clone());

    // The bad file kept aside, and counted. These are recorded rather than returned at once, so that a
    // failing run also tells whether the daemon lied to the receivers.
    let mut problems = Vec::new();
    let aside_prefix = format!("{}.corrupt-", case.file);
    let deadline = Instant::now() + Duration::from_secs(5);
    let aside = loop {
        let aside = names_with_prefix(&storage, &aside_prefix);
        if !aside.is_empty() || Instant::now() >= deadline {
            break aside;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    match aside.first() {
        None => problems.push(format!(
            "no {aside_prefix}* kept in the storage folder (it holds {:?})",
            names_with_prefix(&storage, "")
        )),
        Some(kept) if std::fs::read(storage.join(kept)).unwrap_or_default() != bytes => {
            problems.push(format!("{kept} does not hold the damaged bytes"))
        }
        Some(_) => {}
    }
    let corruptions = second
        .counter(
            "dbwatch_state_file_corruptions_total",
            &[&format!("file=\"{}\"", case.file)],
        )
        .await;
    if corruptions < 1.0 {
        problems.push(format!(
            "dbwatch_state_file_corruptions_total{{file=\"{}\"}} is {corruptions}",
            case.file
        ));
    }

    // The database is still broken: the engine fires the page again (after its for: 2s if alerts.json was
    // lost), and through all that the receivers get no resolve.
    let firing = [r#"alertname="billing_down""#, r#"alertstate="firing""#];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut fired_again_at = None;
    loop {
        let requests = receivers.requests(&bucket).await;
        if let Some(resolve) = requests
            .iter()
            .find(|r| is_resolve(r) && at(r) >= restarted_at)
        {
            problems.push(format!(
                "a resolve while the database is still down: {resolve}"
            ));
            break;
        }
        if fired_again_at.is_none()
            && find_series(&second.metrics().await, "ALERTS", &firing) == Some(1.0)
        {
            fired_again_at = Some(Instant::now());
        }
        // Three notifier ticks and a group interval past the engine's firing view.
        if fired_again_at.is_some_and(|t| t.elapsed() >= Duration::from_secs(3)) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{name} ({what}): the page did not show firing again within 20 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Fixed: the resolve arrives, on the incident's key.
    proxy.set_up(true);
    let cleared_at = unix_now();
    let deadline = Instant::now() + Duration::from_secs(20);
    let requests = loop {
        let requests = receivers.requests(&bucket).await;
        let resolves = accepted(&requests)
            .iter()
            .filter(|r| is_resolve(r) && at(r) >= cleared_at)
            .count();
        if resolves >= 2 {
            break requests;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{name} ({what}): no resolve at both integrations within 20 s of the fix: {requests:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let keys: BTreeSet<&str> = requests
        .iter()
        .filter_map(|r| r["body"]["dedup_key"].as_str())
        .collect();
    if keys.len() != 1 || !keys.contains(dedup_key.as_str()) {
        return Err(format!(
            "{name}: PagerDuty events under {keys:?}, expected only {dedup_key}"
        ));
    }
    let repeats = accepted(&requests)
        .iter()
        .filter(|r| is_trigger(r) && at(r) >= restarted_at)
        .count();
    stop.cancel();
    let clock = clock.await.map_err(|e| format!("{name}: {e}"))?;
    let schedule = clock.schedule("pg-primary", Duration::from_secs(1));
    if schedule.irregular > 0 || schedule.worst > SCHEDULE_BOUND {
        return Err(format!(
            "{name}: pg-primary off schedule while recovering: {schedule:?}"
        ));
    }
    if !second.is_ready().await {
        return Err(format!("{name}: no longer ready"));
    }
    let panics = panics_in(&second.stderr_text());
    if panics > 0 {
        return Err(format!(
            "{name}: {panics} panics:\n{}",
            second.stderr_tail()
        ));
    }
    second.stop().await;
    if !problems.is_empty() {
        return Err(format!("{name} ({what}):\n  {}", problems.join("\n  ")));
    }
    Ok(format!(
        "{name} ({what}): started, kept {:?}, no false resolve, {repeats} \"still firing\" repeats, resolved once fixed; pg-primary worst delay {:?}",
        aside, schedule.worst
    ))
}

// =========================================================================================================
// 3. A full and a read-only storage folder.

/// A tmpfs mounted for the test, unmounted (lazily, so a daemon still inside cannot block it) on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "mount -t tmpfs needs root (the fault suite runs as root in the dev container): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Tmpfs {
            path: path.to_owned(),
        }
    }

    fn remount_read_only(&self) {
        let output = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.path)
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "remount read-only: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the file system holding `dir` until a write fails; returns the bytes written.
fn fill(dir: &Path) -> u64 {
    let mut file = std::fs::File::create(dir.join("filler")).expect("filler file");
    let chunk = vec![0u8; 4096];
    let mut written = 0;
    while file.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    // A partial last chunk and whatever the page cache held.
    let _ = file.sync_all();
    while file.write_all(&chunk[..1]).is_ok() {
        written += 1;
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_storage_folder_costs_writes_not_notifications() {
    let _turn = SERIAL.lock().await;
    let receivers = Receivers::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mount = Tmpfs::mount(&dir.path().join("mnt"), "1m");
    let storage = mount.path.join("data");
    let bucket = unique("full");
    receivers.script(&bucket, &[], "ok").await;
    let proxy = Proxy::start(fleet_address("DBWATCH_PG_PRIMARY_URL"), true).await;
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: availability\n    interval: 1s\n    rules:\n      - alert: target_down\n        expr: 'db_up{target=~\"dead|flappy\"} == 0'\n        labels: {severity: critical}\n",
    )
    .expect("write rules");
    std::fs::write(
        dir.path().join("routing.yml"),
        format!(
            "route:\n  receiver: page\n  group_by: [alertname, target]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: page\n    pagerduty_configs: [{{routing_key: {ROUTING_KEY}, url: '{}', send_resolved: true}}]\n    webhook_configs: [{{url: '{}', send_resolved: true}}]\n",
            receivers.pagerduty(&bucket),
            receivers.webhook(&bucket)
        ),
    )
    .expect("write routing");
    std::fs::write(
        dir.path().join("dbwatch.yml"),
        format!(
            "global:\n  interval: 1s\n  timeout: 900ms\nrule_files: [rules.yml]\nalerting:\n  config_file: routing.yml\ntargets:\n  - name: dead\n    type: postgres\n    connection: {{host: 127.0.0.1, port: 1, user: dbwatch, password: x}}\n  - name: flappy\n    type: postgres\n    connection: {}\n  - name: pg-primary\n    type: postgres\n    connection: {}\n",
            pg_connection("127.0.0.1", &proxy.port.to_string()),
            fleet_connection("DBWATCH_PG_PRIMARY_URL")
        ),
    )
    .expect("write config");

    let mut daemon = Daemon::start(dir.path(), &storage);
    daemon.wait_ready(Duration::from_secs(30)).await;
    let stop = CancellationToken::new();
    let clock = watch_polls(daemon.base.clone(), &["pg-primary"], stop.clone());
    let for_target = |requests: &[Value], target: &str, resolve: bool| -> usize {
        accepted(requests)
            .iter()
            .filter(|r| {
                if resolve {
                    is_resolve(r)
                } else {
                    is_trigger(r)
                }
            })
            .filter(|r| {
                r["body"]["payload"]["source"] == target
                    || r["body"]["groupLabels"]["target"] == target
                    || (resolve && r["body"]["dedup_key"].is_string())
            })
            .count()
    };
    wait_requests(&receivers, &bucket, "the dead target's page", |r| {
        for_target(r, "dead", false) >= 2
    })
    .await;

    // The disk fills up; then a second target goes down and comes back.
    let filled = fill(&mount.path);
    println!("full storage: filled the 1 MiB tmpfs with {filled} bytes");
    let before = daemon
        .counter("dbwatch_notification_state_write_failures_total", &[])
        .await;
    proxy.set_up(false);
    wait_requests(
        &receivers,
        &bucket,
        "the second page while the disk is full",
        |r| for_target(r, "flappy", false) >= 2,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let notifier = daemon
            .counter("dbwatch_notification_state_write_failures_total", &[])
            .await;
        let rules = daemon
            .counter("dbwatch_rule_state_write_failures_total", &[])
            .await;
        if notifier > before && rules >= 1.0 {
            println!("full storage: write failures counted: notifier {notifier}, rules {rules}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "write failures on a full disk not counted: dbwatch_notification_state_write_failures_total {notifier} (was {before}), dbwatch_rule_state_write_failures_total {rules}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resolving_from = unix_now();
    proxy.set_up(true);
    let requests = wait_requests(
        &receivers,
        &bucket,
        "the resolve while the disk is full",
        |r| {
            accepted(r)
                .iter()
                .filter(|q| is_resolve(q) && at(q) >= resolving_from)
                .count()
                >= 2
        },
    )
    .await;
    // The dead target never resolved.
    let dead_key = accepted(&requests)
        .iter()
        .find(|r| r["body"]["payload"]["source"] == "dead")
        .and_then(|r| r["body"]["dedup_key"].as_str().map(str::to_owned));
    assert!(
        !requests.iter().any(|r| is_resolve(r)
            && (r["body"]["dedup_key"].as_str() == dead_key.as_deref()
                || r["body"]["groupLabels"]["target"] == "dead")),
        "the dead target was resolved: {requests:#?}"
    );
    // A failed write leaves no temp file behind to eat the space freed later.
    let leftovers: Vec<String> = names_with_prefix(&storage, "")
        .into_iter()
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left in the full storage folder: {leftovers:?}"
    );

    stop.cancel();
    let clock = clock.await.expect("poll watcher");
    let worst = assert_on_schedule(&clock, &["pg-primary"], Duration::from_secs(1), 3);
    println!("full storage: healthy target's worst poll delay {worst:?}");
    daemon.assert_healthy().await;

    // Space back: the next change is saved again (the target goes down once more and the notifier's log and
    // the alert state on disk say so).
    std::fs::remove_file(mount.path.join("filler")).expect("remove filler");
    proxy.set_up(false);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let notified = read_json(&storage.join("notifications.json")).is_some_and(|state| {
            outbox_entries(&state).is_empty() && state.to_string().contains("flappy")
        });
        let alerting = std::fs::read_to_string(storage.join("alerts.json"))
            .is_ok_and(|text| text.contains("flappy"));
        if notified && alerting {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the state was not saved once space was back: notifications.json holds flappy's page: {notified}, alerts.json: {alerting}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_storage_folder_fails_at_start_with_one_line() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mount = Tmpfs::mount(&dir.path().join("ro"), "1m");
    mount.remount_read_only();
    std::fs::write(
        dir.path().join("dbwatch.yml"),
        "targets:\n  - name: dead\n    type: postgres\n    connection: {host: 127.0.0.1, port: 1, user: dbwatch, password: x}\n",
    )
    .expect("write config");
    for (storage, reason) in [
        (mount.path.clone(), "is not writable: "),
        (mount.path.join("data"), "cannot be created: "),
    ] {
        let mut daemon = Daemon::start(dir.path(), &storage);
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = daemon.exited() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "dbwatch kept running for 5 s with the read-only storage folder {}; stderr:\n{}",
                storage.display(),
                daemon.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let stderr = daemon.stderr_text();
        std::fs::remove_file(&daemon.stderr).expect("reset stderr");
        let prefix = format!("dbwatch: storage folder {}: {reason}", storage.display());
        assert_eq!(status.code(), Some(1), "exit status; stderr:\n{stderr}");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with(&prefix),
            "expected one line starting {prefix:?}, got:\n{stderr}"
        );
    }
}

// =========================================================================================================
// 4. SIGKILL in a loop.

const KILLS: usize = 50;

struct Episode {
    /// When the test cut the target (fault on) and restored it (fault off), Unix seconds.
    on: f64,
    off: Option<f64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_a_loop_loses_no_page_and_never_resolves_a_broken_database() {
    let _turn = SERIAL.lock().await;
    let receivers = Receivers::start().await;
    let mut rng = Rng::seeded("sigkill loop");
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = dir.path().join("data");
    let pd = unique("kill-pd");
    let hook = unique("kill-hook");
    // Each answer takes 300 ms, so that kills land while notifications are queued and in flight.
    receivers.script(&pd, &[], "slow:0.3").await;
    receivers.script(&hook, &[], "slow:0.3").await;
    let proxy = Proxy::start(fleet_address("DBWATCH_PG_PRIMARY_URL"), true).await;
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: availability\n    interval: 1s\n    rules:\n      - alert: flappy_down\n        expr: 'db_up{target=\"flappy\"} == 0'\n        for: 0s\n        labels: {severity: critical}\n",
    )
    .expect("write rules");
    std::fs::write(
        dir.path().join("routing.yml"),
        format!(
            "route:\n  receiver: page\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: page\n    pagerduty_configs: [{{routing_key: {ROUTING_KEY}, url: '{}', send_resolved: true}}]\n    webhook_configs: [{{url: '{}', send_resolved: true}}]\n",
            receivers.pagerduty(&pd),
            receivers.webhook(&hook)
        ),
    )
    .expect("write routing");
    std::fs::write(
        dir.path().join("dbwatch.yml"),
        format!(
            "global:\n  interval: 1s\n  timeout: 900ms\nrule_files: [rules.yml]\nalerting:\n  config_file: routing.yml\ntargets:\n  - name: flappy\n    type: postgres\n    connection: {}\n",
            pg_connection("127.0.0.1", &proxy.port.to_string())
        ),
    )
    .expect("write config");

    let mut episodes: Vec<Episode> = Vec::new();
    // Moves the fault on once the previous episode's resolve reached both integrations, and off once this
    // episode's trigger did: every flip is caused by the receivers' record, never by a timer.
    let drive = |episodes: &mut Vec<Episode>, pd: &[Value], hook: &[Value]| {
        let seen = |requests: &[Value], trigger: bool, since: f64| {
            accepted(requests).iter().any(|r| {
                at(r) >= since
                    && if trigger {
                        is_trigger(r)
                    } else {
                        is_resolve(r)
                    }
            })
        };
        match episodes.last_mut() {
            Some(episode) if episode.off.is_none() => {
                if seen(pd, true, episode.on) && seen(hook, true, episode.on) {
                    proxy.set_up(true);
                    episode.off = Some(unix_now());
                }
            }
            last => {
                let resolved = last.is_none_or(|episode| {
                    let off = episode.off.unwrap_or(f64::MAX);
                    seen(pd, false, off) && seen(hook, false, off)
                });
                if resolved {
                    proxy.set_up(false);
                    episodes.push(Episode {
                        on: unix_now(),
                        off: None,
                    });
                }
            }
        }
    };

    let started = Instant::now();
    let budget = Duration::from_secs(110);
    let mut kills = 0;
    let mut kills_with_queued = 0;
    while kills < KILLS {
        assert!(
            started.elapsed() < budget,
            "only {kills} kills in {budget:?}"
        );
        let mut daemon = Daemon::start(dir.path(), &storage);
        let life = Duration::from_millis(rng.range(300, 2500));
        let until = Instant::now() + life;
        while Instant::now() < until {
            daemon.assert_running("waiting to be killed");
            let (pd_requests, hook_requests) = (
                receivers.requests(&pd).await,
                receivers.requests(&hook).await,
            );
            drive(&mut episodes, &pd_requests, &hook_requests);
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let queued = read_json(&storage.join("notifications.json"))
            .is_some_and(|state| !outbox_entries(&state).is_empty());
        daemon.kill();
        kills += 1;
        kills_with_queued += usize::from(queued);
    }

    // The last run is left alone until the current episode is over and told.
    let mut daemon = Daemon::start(dir.path(), &storage);
    daemon.wait_ready(Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (pd_requests, hook_requests) = (
            receivers.requests(&pd).await,
            receivers.requests(&hook).await,
        );
        let last_done = episodes.last().is_some_and(|episode| {
            episode.off.is_some_and(|off| {
                [&pd_requests, &hook_requests].iter().all(|requests| {
                    accepted(requests)
                        .iter()
                        .any(|r| is_resolve(r) && at(r) >= off)
                })
            })
        });
        if last_done {
            break;
        }
        // Only close the open episode: no new one starts once the kills are done.
        if episodes.last().is_some_and(|episode| episode.off.is_none()) {
            drive(&mut episodes, &pd_requests, &hook_requests);
        }
        daemon.assert_running("finishing the last episode");
        assert!(
            Instant::now() < deadline,
            "the last episode was not told within 30 s after the kills"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anything still queued goes out now; then compare.
    tokio::time::sleep(Duration::from_secs(2)).await;
    daemon.assert_healthy().await;
    daemon.stop().await;

    let stderr = std::fs::read_to_string(dir.path().join("dbwatch.stderr")).unwrap_or_default();
    let panics = panics_in(&stderr);
    let pd_requests = receivers.requests(&pd).await;
    let hook_requests = receivers.requests(&hook).await;
    let mut figures = Vec::new();
    let mut false_resolves = Vec::new();
    let mut lost = Vec::new();
    let (mut sent, mut expected, mut duplicates) = (0, 0, 0);
    for (integration, requests) in [("pagerduty", &pd_requests), ("webhook", &hook_requests)] {
        let delivered = accepted(requests);
        sent += delivered.len();
        for (i, episode) in episodes.iter().enumerate() {
            let next_on = episodes.get(i + 1).map_or(f64::MAX, |next| next.on);
            let off = episode.off.unwrap_or(f64::MAX);
            let in_episode: Vec<&&Value> = delivered
                .iter()
                .filter(|r| at(r) >= episode.on && at(r) < next_on)
                .collect();
            let triggers: Vec<f64> = in_episode
                .iter()
                .filter(|r| is_trigger(r))
                .map(|r| at(r))
                .collect();
            let first_trigger = triggers.first().copied().unwrap_or(f64::MAX);
            let resolves: Vec<f64> = in_episode
                .iter()
                .filter(|r| is_resolve(r))
                .map(|r| at(r))
                .collect();
            expected += 2;
            if triggers.is_empty() {
                lost.push(format!("{integration}: episode {i}'s trigger"));
            }
            // A resolve before this episode's first trigger re-sends the previous episode's (at least once);
            // one after it and before the fix is false.
            for resolve in &resolves {
                if *resolve >= first_trigger && *resolve < off {
                    false_resolves.push(format!(
                        "{integration}: episode {i} resolved at {resolve:.3} while the fault was on ({:.3}..{off:.3})",
                        episode.on
                    ));
                }
            }
            let told = resolves
                .iter()
                .filter(|r| **r >= off && **r >= first_trigger)
                .count();
            if told == 0 {
                lost.push(format!("{integration}: episode {i}'s resolve"));
            }
            duplicates += triggers.len().saturating_sub(1) + resolves.len().saturating_sub(1);
        }
    }
    // PagerDuty: one dedup key for the group; one incident per episode (a trigger opens one only when none
    // is open).
    let keys: BTreeSet<&str> = pd_requests
        .iter()
        .filter_map(|r| r["body"]["dedup_key"].as_str())
        .collect();
    let mut open = false;
    let mut incidents = 0;
    for request in accepted(&pd_requests) {
        if is_trigger(request) && !open {
            incidents += 1;
            open = true;
        } else if is_resolve(request) {
            open = false;
        }
    }
    figures.push(format!(
        "kills {kills} ({kills_with_queued} with notifications queued), episodes {}, notifications sent {sent} / expected {expected}, duplicates {duplicates}, false resolves {}, lost {}, PagerDuty dedup keys {} and incidents {incidents}, panics {panics}",
        episodes.len(),
        false_resolves.len(),
        lost.len(),
        keys.len()
    ));
    println!("sigkill loop (real daemon): {}", figures.join("; "));
    assert!(
        episodes.len() >= 3,
        "only {} episodes: the loop is too slow to mean anything",
        episodes.len()
    );
    assert!(lost.is_empty(), "notifications lost: {lost:#?}");
    assert!(
        false_resolves.is_empty(),
        "false resolves: {false_resolves:#?}"
    );
    assert_eq!(keys.len(), 1, "PagerDuty dedup keys: {keys:?}");
    assert_eq!(incidents, episodes.len(), "PagerDuty incidents vs episodes");
    assert_eq!(panics, 0, "panics in:\n{stderr}");
}

// =========================================================================================================
// 5. A silent and a dribbling database beside healthy ones.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_and_a_one_byte_per_second_database_do_not_delay_the_healthy_targets() {
    let _turn = SERIAL.lock().await;
    let silent = silent_server().await;
    let dribbled = Arc::new(AtomicUsize::new(0));
    let dribbling = dribbling_server(dribbled.clone()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("dbwatch.yml"),
        format!(
            "global:\n  interval: 1s\n  timeout: 900ms\ntargets:\n  - name: pg-primary\n    type: postgres\n    connection: {}\n  - name: pgbouncer\n    type: pgbouncer\n    connection: {}\n  - name: silent\n    type: postgres\n    connection: {}\n  - name: dribbling\n    type: postgres\n    connection: {}\n",
            fleet_connection("DBWATCH_PG_PRIMARY_URL"),
            fleet_connection("DBWATCH_PGBOUNCER_URL"),
            pg_connection("127.0.0.1", &silent.to_string()),
            pg_connection("127.0.0.1", &dribbling.to_string()),
        ),
    )
    .expect("write config");
    let mut daemon = Daemon::start(dir.path(), &dir.path().join("data"));
    daemon.wait_ready(Duration::from_secs(30)).await;
    let healthy = ["pg-primary", "pgbouncer"];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = daemon.metrics().await;
        let up = healthy.iter().all(|target| {
            find_series(&metrics, "db_up", &[&format!("target=\"{target}\"")]) == Some(1.0)
        });
        if up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the healthy targets never came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stop = CancellationToken::new();
    let clock = watch_polls(daemon.base.clone(), &healthy, stop.clone());
    let errors_before = daemon
        .counter("dbwatch_poll_errors_total", &["target=\"silent\""])
        .await
        + daemon
            .counter("dbwatch_poll_errors_total", &["target=\"dribbling\""])
            .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    stop.cancel();
    let clock = clock.await.expect("poll watcher");
    let metrics = daemon.metrics().await;
    for target in ["silent", "dribbling"] {
        assert_eq!(
            find_series(&metrics, "db_up", &[&format!("target=\"{target}\"")]),
            Some(0.0),
            "{target}"
        );
    }
    let errors_after = daemon
        .counter("dbwatch_poll_errors_total", &["target=\"silent\""])
        .await
        + daemon
            .counter("dbwatch_poll_errors_total", &["target=\"dribbling\""])
            .await;
    assert!(
        errors_after - errors_before >= 8.0,
        "the misbehaving targets failed {} polls in 12 s",
        errors_after - errors_before
    );
    assert!(
        dribbled.load(Ordering::Relaxed) >= 3,
        "the dribbling server wrote only {} bytes: the scenario did not happen",
        dribbled.load(Ordering::Relaxed)
    );
    let worst = assert_on_schedule(&clock, &healthy, Duration::from_secs(1), 10);
    println!(
        "silent and dribbling databases: healthy targets' worst poll delay {worst:?} over 12 s"
    );
    daemon.assert_healthy().await;
    daemon.stop().await;
}
