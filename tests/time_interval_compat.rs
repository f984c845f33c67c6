//! Time intervals mute and activate routes as in Alertmanager: the same routing file, given to a real
//! Alertmanager 0.25 (Debian's `prometheus-alertmanager`, installed by `deploy/local/fleet up tools`) and to
//! dbwatch, holds the same routes at the same instant.
//!
//! Alertmanager reads the wall clock, so the instant is now and the intervals are built around it: times that
//! contain it and times that do not, in UTC and in zones with whole, negative and half-hour offsets (Lord
//! Howe's DST is 30 minutes); today's and tomorrow's weekday; today's day of the month counted from either
//! end and another day; this month and another; this year and another; a times-and-weekdays pair. Each
//! interval is used once as a route's `mute_time_intervals` and once as its `active_time_intervals`.
//! Boundaries are at least 20 minutes from now, so the run is not sensitive to its own duration.
//!
//! Alertmanager's verdict: each route has its own webhook receiver, served by this test; once every route's
//! group has been flushed twice (its log says so, naming the group), a route that was not held has been
//! notified during its first flush. dbwatch's verdict is `NotifyConfig::muted_at` for the same route.

#[path = "support/amtool.rs"]
mod amtool;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Duration as Span, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// `HH:MM` of a time of day, rounded down to the minute.
fn hhmm(time: NaiveTime) -> String {
    format!("{:02}:{:02}", time.hour(), time.minute())
}

fn location(zone: Option<Tz>) -> String {
    zone.map_or_else(String::new, |zone| {
        format!("\n        location: {}", zone.name())
    })
}

/// The intervals around `now`, each as a `time_intervals` entry body (one interval) and a name.
fn intervals(now: DateTime<Utc>) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let zones: [Option<Tz>; 4] = [
        None,
        Some(chrono_tz::Asia::Tokyo),
        Some(chrono_tz::America::New_York),
        Some(chrono_tz::Australia::Lord_Howe),
    ];
    for (index, zone) in zones.iter().enumerate() {
        let local = match zone {
            Some(zone) => zone.from_utc_datetime(&now.naive_utc()).naive_local(),
            None => now.naive_utc(),
        };
        let minutes = i64::from(local.hour() * 60 + local.minute());
        let at = |minute: i64| {
            if minute >= 24 * 60 {
                "24:00".to_owned()
            } else {
                hhmm(
                    NaiveTime::from_hms_opt((minute / 60) as u32, (minute % 60) as u32, 0)
                        .expect("time"),
                )
            }
        };
        let inside = format!(
            "times: [{{start_time: '{}', end_time: '{}'}}]",
            at((minutes - 20).max(0)),
            at((minutes + 21).min(24 * 60))
        );
        let outside = if minutes >= 60 {
            format!(
                "times: [{{start_time: '00:00', end_time: '{}'}}]",
                at(minutes - 40)
            )
        } else {
            format!(
                "times: [{{start_time: '{}', end_time: '24:00'}}]",
                at(minutes + 40)
            )
        };
        found.push((
            format!("times-in-{index}"),
            format!("{inside}{}", location(*zone)),
        ));
        found.push((
            format!("times-out-{index}"),
            format!("{outside}{}", location(*zone)),
        ));
        if index < 2 {
            let today = local.weekday().num_days_from_monday() as usize;
            found.push((
                format!("weekday-today-{index}"),
                format!("weekdays: ['{}']{}", WEEKDAYS[today], location(*zone)),
            ));
            found.push((
                format!("weekday-tomorrow-{index}"),
                // Alertmanager counts weeks from Sunday, so a range must not wrap past it: one day.
                format!(
                    "weekdays: ['{}']{}",
                    WEEKDAYS[(today + 1) % 7],
                    location(*zone)
                ),
            ));
            found.push((
                format!("times-and-weekday-{index}"),
                format!(
                    "{inside}\n        weekdays: ['{}']{}",
                    WEEKDAYS[today],
                    location(*zone)
                ),
            ));
        }
    }
    let today = now.date_naive();
    let next_month = if today.month() == 12 {
        chrono::NaiveDate::from_ymd_opt(today.year() + 1, 1, 1)
    } else {
        chrono::NaiveDate::from_ymd_opt(today.year(), today.month() + 1, 1)
    }
    .expect("date");
    let days_in_month = i64::from((next_month - Span::days(1)).day());
    let day = i64::from(today.day());
    let from_end = day - days_in_month - 1;
    let other_day = if day > 15 { day - 10 } else { day + 10 };
    found.push(("day".to_owned(), format!("days_of_month: ['{day}']")));
    found.push((
        "day-from-end".to_owned(),
        format!("days_of_month: ['{from_end}']"),
    ));
    found.push((
        "day-range".to_owned(),
        format!("days_of_month: ['1:{}']", day.max(2)),
    ));
    found.push((
        "other-day".to_owned(),
        format!("days_of_month: ['{other_day}']"),
    ));
    let month = today.month0() as usize;
    found.push(("month".to_owned(), format!("months: ['{}']", MONTHS[month])));
    found.push((
        "other-month".to_owned(),
        format!("months: ['{}']", (month + 6) % 12 + 1),
    ));
    found.push((
        "year".to_owned(),
        format!("years: ['{}:{}']", today.year(), today.year() + 1),
    ));
    found.push((
        "other-year".to_owned(),
        format!("years: ['{}']", today.year() - 3),
    ));
    found
}

fn routing_file(intervals: &[(String, String)], port: u16) -> (String, Vec<String>) {
    let mut routes = String::new();
    let mut receivers = String::new();
    let mut names = Vec::new();
    for (name, _) in intervals {
        for mode in ["mute", "active"] {
            let case = format!("{mode}-{name}");
            routes.push_str(&format!(
                "    - matchers: ['case=\"{case}\"']\n      receiver: {case}\n      {mode}_time_intervals: [{name}]\n"
            ));
            receivers.push_str(&format!(
                "  - name: {case}\n    webhook_configs: [{{url: 'http://127.0.0.1:{port}/{case}'}}]\n"
            ));
            names.push(case);
        }
    }
    let mut text = format!(
        "route:\n  receiver: default\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n  routes:\n{routes}time_intervals:\n"
    );
    for (name, body) in intervals {
        text.push_str(&format!(
            "  - name: {name}\n    time_intervals:\n      - {body}\n"
        ));
    }
    text.push_str(&format!(
        "receivers:\n  - name: default\n    webhook_configs: [{{url: 'http://127.0.0.1:{port}/default'}}]\n{receivers}"
    ));
    (text, names)
}

/// A webhook receiver that records the paths it was posted to and answers 200.
fn serve_webhooks(listener: TcpListener, hits: Arc<Mutex<BTreeSet<String>>>) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let hits = Arc::clone(&hits);
            std::thread::spawn(move || answer(stream, &hits));
        }
    });
}

fn answer(stream: TcpStream, hits: &Mutex<BTreeSet<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    let _ = reader.read_exact(&mut body);
    if let Some(path) = request_line.split_whitespace().nth(1) {
        hits.lock()
            .expect("hits")
            .insert(path.trim_start_matches('/').to_owned());
    }
    let _ =
        (&stream).write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

fn http(port: u16, method: &str, path: &str, body: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

struct Alertmanager(Child);

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_alertmanager(config: &Path, dir: &Path, port: u16, log: &Path) -> Alertmanager {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|error| {
            panic!("prometheus-alertmanager is required (Debian package, installed by `make test`): {error}")
        });
    Alertmanager(child)
}

#[test]
fn routes_are_held_in_the_same_time_intervals_as_in_alertmanager() {
    let now = Utc::now();
    let intervals = intervals(now);
    let listener = TcpListener::bind("127.0.0.1:0").expect("webhook listener");
    let webhook_port = listener.local_addr().expect("address").port();
    let hits = Arc::new(Mutex::new(BTreeSet::new()));
    serve_webhooks(listener, Arc::clone(&hits));

    let (text, cases) = routing_file(&intervals, webhook_port);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("routing.yml");
    std::fs::write(&file, &text).expect("write the routing file");
    amtool::check(&file).unwrap_or_else(|output| panic!("amtool refuses it:\n{output}\n{text}"));
    // amtool routes each case to its own receiver (time intervals are not its business: it has no clock).
    for case in [&cases[0], &cases[cases.len() - 1]] {
        assert_eq!(
            amtool::receivers(&file, &[("case", case.as_str())]),
            vec![case.to_string()]
        );
    }
    let config =
        dbwatch_notify::load_file(&file).unwrap_or_else(|errors| panic!("{errors}\n{text}"));

    let held_by_dbwatch: BTreeSet<String> = config
        .route
        .routes
        .iter()
        .filter(|route| config.muted_at(route, now))
        .map(|route| route.receiver.clone())
        .collect();

    let am_port = free_port();
    let log = dir.path().join("alertmanager.log");
    let _alertmanager = start_alertmanager(&file, dir.path(), am_port, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http(am_port, "GET", "/-/ready", "")
        .is_some_and(|answer| answer.starts_with("HTTP/1.1 200"))
    {
        assert!(Instant::now() < deadline, "Alertmanager never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let alerts: Vec<String> = cases
        .iter()
        .map(|case| format!("{{\"labels\":{{\"alertname\":\"interval\",\"case\":\"{case}\"}}}}"))
        .collect();
    let posted = http(
        am_port,
        "POST",
        "/api/v2/alerts",
        &format!("[{}]", alerts.join(",")),
    )
    .expect("post alerts");
    assert!(posted.starts_with("HTTP/1.1 200"), "{posted}");

    // Every group flushed twice: its first flush, held or not, is over.
    loop {
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let pending: Vec<&String> = cases
            .iter()
            .filter(|case| {
                let group = format!("aggrGroup=\"{{}}/{{case=\\\"{case}\\\"}}:{{}}\" msg=flushing");
                logged.matches(&group).count() < 2
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "groups never flushed twice: {pending:?}\n{logged}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let notified = hits.lock().expect("hits").clone();
    let held_by_alertmanager: BTreeSet<String> = cases
        .iter()
        .filter(|case| !notified.contains(*case))
        .cloned()
        .collect();

    assert_eq!(
        held_by_dbwatch, held_by_alertmanager,
        "at {now}, for the intervals:\n{text}"
    );
    // Both verdicts occur in each mode, or the comparison shows little.
    for mode in ["mute-", "active-"] {
        let held = held_by_dbwatch
            .iter()
            .filter(|case| case.starts_with(mode))
            .count();
        let all = cases.iter().filter(|case| case.starts_with(mode)).count();
        assert!(held > 0 && held < all, "{mode}: {held} of {all} held");
    }
    eprintln!(
        "{} routes over {} intervals: {} held, {} notified, the same in Alertmanager and dbwatch",
        cases.len(),
        intervals.len(),
        held_by_dbwatch.len(),
        cases.len() - held_by_dbwatch.len()
    );
}
