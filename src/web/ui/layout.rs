//! What every page shares: the frame (head, style, navigation), escaping, and how times and values read.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Escapes text for an element or a quoted attribute.
pub fn esc(text: &str) -> String {
    dbwatch_notify::html::escape(text)
}

/// The page's CSS: small, readable on a phone (tables scroll sideways inside their box, not the page).
const STYLE: &str = "\
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1f2328;\
background:#fff}header{background:#24292f;color:#fff;padding:.6em 1em;display:flex;flex-wrap:wrap;gap:.3em 1.2em;\
align-items:baseline}header b{font-size:1.15em;margin-right:.5em}header a{color:#d0d7de;text-decoration:none}\
header a.on{color:#fff;font-weight:600;border-bottom:2px solid #fff}main{padding:.8em 1em 2em}\
h1{font-size:1.3em;margin:.2em 0 .6em}h2{font-size:1.1em;margin:1.4em 0 .5em}\
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}table{border-collapse:collapse;min-width:100%}\
th,td{padding:.35em .6em;border-bottom:1px solid #d8dee4;text-align:left;vertical-align:top}\
th{background:#f6f8fa;font-weight:600;white-space:nowrap}td.n{text-align:right;font-variant-numeric:tabular-nums;\
white-space:nowrap}.up,.delivered,.created{color:#1a7f37;font-weight:600}.down,.firing,.dead_lettered{color:#cf222e;\
font-weight:600}.pending,.retry,.expired{color:#9a6700;font-weight:600}.muted{color:#656d76}\
.badge{display:inline-block;padding:0 .45em;border-radius:1em;font-size:.85em;font-weight:600;background:#eaeef2}\
.badge.firing{background:#ffebe9}.badge.pending{background:#fff8c5}.badge.up{background:#dafbe1}\
.badge.down{background:#ffebe9}code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;overflow-wrap:anywhere}time{white-space:nowrap}\
.spark{display:flex;align-items:center;gap:.4em;white-space:nowrap}.spark svg{flex:none}\
form.inline{display:inline}button{font:inherit;padding:.15em .7em;border:1px solid #8c959f;border-radius:6px;\
background:#f6f8fa;cursor:pointer}input,select{font:inherit;padding:.1em .3em;max-width:14em}\
.summary{display:flex;flex-wrap:wrap;gap:.6em 1.6em;margin:.2em 0 .8em}.summary div{font-size:1.05em}\
.filters{display:flex;flex-wrap:wrap;gap:.4em .8em;align-items:center;margin-bottom:.8em}\
.legend{font-size:.85em;color:#656d76}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}\
dt{color:#656d76}dd{margin:0}";

/// The pages, as the navigation names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Fleet,
    Alerts,
    Silences,
    Events,
    None,
}

/// Opens a page: head, style, navigation, `<main>`; `refresh` reloads it every so many seconds.
pub fn open(html: &mut String, title: &str, nav: Nav, refresh: Option<u32>) {
    let refresh = refresh
        .map(|seconds| format!("<meta http-equiv=\"refresh\" content=\"{seconds}\">"))
        .unwrap_or_default();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">{refresh}\
         <title>{title} · dbwatch</title><style>{STYLE}</style></head><body><header><b>dbwatch</b>",
        title = esc(title),
    );
    for (item, href, label) in [
        (Nav::Fleet, "/", "Fleet"),
        (Nav::Alerts, "/alerts", "Alerts"),
        (Nav::Silences, "/silences", "Silences"),
        (Nav::Events, "/events", "Events"),
    ] {
        let class = if item == nav { " class=\"on\"" } else { "" };
        let _ = write!(html, "<a href=\"{href}\"{class}>{label}</a>");
    }
    html.push_str(
        "<a href=\"/events?kind=notification\">Notifications</a><a href=\"/metrics\">/metrics</a></header><main>",
    );
}

pub fn close(html: &mut String) {
    html.push_str("</main></body></html>");
}

/// An HTML response that no cache keeps: every page is the state of now.
pub fn respond(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// A short page saying what went wrong, for a refused or failed form.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let mut html = String::new();
    open(&mut html, title, Nav::None, None);
    let _ = write!(
        html,
        "<h1>{}</h1><p>{}</p><p><a href=\"/alerts\">Back to the alerts</a></p>",
        esc(title),
        esc(text)
    );
    close(&mut html);
    respond(status, html)
}

/// An annotation's URL as a link when it is http(s); as escaped text otherwise (a `javascript:` URL from a
/// rule must never become clickable).
pub fn link(url: &str, text: &str) -> String {
    let lower = url.trim_start().to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        format!(
            "<a href=\"{}\" rel=\"noopener noreferrer\">{}</a>",
            esc(url.trim_start()),
            esc(text)
        )
    } else {
        esc(url)
    }
}

pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

pub fn millis_to_time(millis: i64) -> SystemTime {
    if millis >= 0 {
        UNIX_EPOCH + Duration::from_millis(millis.unsigned_abs())
    } else {
        UNIX_EPOCH
    }
}

/// "3m 5s ago", to the second; "just now" within a second or for a time after `now`.
pub fn ago(time: SystemTime, now: SystemTime) -> String {
    match now.duration_since(time) {
        Ok(elapsed) if elapsed.as_secs() > 0 => format!(
            "{} ago",
            humantime::format_duration(Duration::from_secs(elapsed.as_secs()))
        ),
        _ => "just now".to_owned(),
    }
}

/// `<time>` with the full UTC time on hover and how long ago it was.
pub fn when(time: SystemTime, now: SystemTime) -> String {
    format!(
        "<time datetime=\"{at}\" title=\"{at}\">{ago}</time>",
        at = rfc3339(time),
        ago = ago(time, now)
    )
}

/// How a value of `name` reads: seconds as ms or s, ratios as percentages; NaN as "unknown".
pub fn value(name: &str, value: f64) -> String {
    if value.is_nan() {
        return "unknown".to_owned();
    }
    if name.ends_with("_seconds") {
        if value == 0.0 {
            return "0 s".to_owned();
        }
        if value.abs() < 1.0 {
            return format!("{:.1} ms", value * 1000.0);
        }
        return format!("{value:.1} s");
    }
    if name.ends_with("_ratio") {
        return format!("{:.1} %", value * 100.0);
    }
    number(value)
}

/// A number as people read it: integers whole, others to four significant digits, tiny and huge ones in
/// scientific notation.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{value:.0}");
    }
    let magnitude = value.abs().log10().floor();
    if !(-3.0..6.0).contains(&magnitude) {
        return format!("{value:.3e}");
    }
    let decimals = (3.0 - magnitude).max(0.0) as usize;
    let text = format!("{value:.decimals$}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}
