//! Go's `time.Time` as templates see it (in UTC): its default printing, `Format` with Go's reference-time
//! layouts, and the accessor methods templates call (`Unix`, `UnixMilli`, `Year`, `IsZero`, ...).

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::value::{Object, Value};

/// Go's zero time, 0001-01-01 00:00:00 UTC, in seconds from the Unix epoch.
pub const GO_ZERO_UNIX: i64 = -62_135_596_800;

/// An instant in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    pub seconds: i64,
    pub nanos: u32,
}

impl Time {
    pub fn from_unix_millis(millis: i64) -> Time {
        Time {
            seconds: millis.div_euclid(1000),
            nanos: (millis.rem_euclid(1000) * 1_000_000) as u32,
        }
    }

    /// Go's zero `time.Time` (an alert that has not ended).
    pub fn zero() -> Time {
        Time {
            seconds: GO_ZERO_UNIX,
            nanos: 0,
        }
    }

    pub fn value(self) -> Value {
        Value::object(self)
    }

    fn civil(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.seconds, self.nanos).unwrap_or_default()
    }

    /// Go's `Time.Format`.
    pub fn format(&self, layout: &str) -> String {
        format(&self.civil(), layout)
    }
}

impl Object for Time {
    fn type_name(&self) -> &str {
        "time.Time"
    }

    fn method(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        let civil = self.civil();
        let no_args = |value: Value| {
            if args.is_empty() {
                Ok(value)
            } else {
                Err(format!(
                    "wrong number of args for {name}: want 0 got {}",
                    args.len()
                ))
            }
        };
        Some(match name {
            "Format" => match args {
                [layout] => match layout.as_str() {
                    Some(layout) => Ok(Value::String(self.format(layout))),
                    None => Err(format!(
                        "wrong type for value; expected string; got {}",
                        layout.type_name()
                    )),
                },
                _ => Err(format!(
                    "wrong number of args for Format: want 1 got {}",
                    args.len()
                )),
            },
            "String" => no_args(Value::String(self.format(DEFAULT_LAYOUT))),
            "Unix" => no_args(Value::Int(self.seconds)),
            "UnixMilli" => no_args(Value::Int(
                self.seconds
                    .saturating_mul(1000)
                    .saturating_add(i64::from(self.nanos / 1_000_000)),
            )),
            "UnixNano" => no_args(Value::Int(
                self.seconds
                    .saturating_mul(1_000_000_000)
                    .saturating_add(i64::from(self.nanos)),
            )),
            // Templates run in UTC: `Local` and `UTC` are the same instant.
            "UTC" | "Local" => no_args(Value::object(*self)),
            "IsZero" => no_args(Value::Bool(self.seconds == GO_ZERO_UNIX && self.nanos == 0)),
            "Year" => no_args(Value::Int(i64::from(civil.year()))),
            "Month" => no_args(Value::String(MONTHS[civil.month0() as usize].to_owned())),
            "Day" => no_args(Value::Int(i64::from(civil.day()))),
            "Hour" => no_args(Value::Int(i64::from(civil.hour()))),
            "Minute" => no_args(Value::Int(i64::from(civil.minute()))),
            "Second" => no_args(Value::Int(i64::from(civil.second()))),
            "Nanosecond" => no_args(Value::Int(i64::from(self.nanos))),
            "YearDay" => no_args(Value::Int(i64::from(civil.ordinal()))),
            "Weekday" => no_args(Value::String(
                DAYS[civil.weekday().num_days_from_sunday() as usize].to_owned(),
            )),
            _ => return None,
        })
    }

    fn display(&self, out: &mut String) {
        out.push_str(&self.format(DEFAULT_LAYOUT));
    }
}

/// What `fmt` prints a `time.Time` with.
pub const DEFAULT_LAYOUT: &str = "2006-01-02 15:04:05.999999999 -0700 MST";

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Go's reference-time layout elements, longest first where one is a prefix of another.
const CHUNKS: &[&str] = &[
    "January",
    "Jan",
    "Monday",
    "Mon",
    "MST",
    "2006",
    "002",
    "__2",
    "_2",
    "01",
    "02",
    "03",
    "04",
    "05",
    "06",
    "15",
    "1",
    "2",
    "3",
    "4",
    "5",
    "PM",
    "pm",
    "-07:00:00",
    "-070000",
    "-07:00",
    "-0700",
    "-07",
    "Z07:00:00",
    "Z070000",
    "Z07:00",
    "Z0700",
    "Z07",
];

fn format(time: &DateTime<Utc>, layout: &str) -> String {
    let mut out = String::with_capacity(layout.len() + 10);
    let bytes = layout.as_bytes();
    let mut index = 0;
    while index < layout.len() {
        let rest = &layout[index..];
        // Fractional seconds: `.000`/`,000` (fixed) or `.999` (trailing zeros dropped), not followed by a digit.
        if matches!(bytes[index], b'.' | b',')
            && index + 1 < bytes.len()
            && matches!(bytes[index + 1], b'0' | b'9')
        {
            let digit = bytes[index + 1];
            let mut end = index + 1;
            while end < bytes.len() && bytes[end] == digit {
                end += 1;
            }
            if !(end < bytes.len() && bytes[end].is_ascii_digit()) {
                let count = (end - index - 1).min(9);
                let nanos = format!("{:09}", time.nanosecond() % 1_000_000_000);
                let digits = &nanos[..count];
                if digit == b'0' {
                    out.push(bytes[index] as char);
                    out.push_str(digits);
                } else {
                    let trimmed = digits.trim_end_matches('0');
                    if !trimmed.is_empty() {
                        out.push(bytes[index] as char);
                        out.push_str(trimmed);
                    }
                }
                index = end;
                continue;
            }
        }
        let chunk = CHUNKS.iter().find(|chunk| {
            rest.starts_with(**chunk)
                // `Jan`/`Mon` are not elements inside a lowercase word (`Monday` aside): Go's `startsWithLowerCase`.
                && !(matches!(**chunk, "Jan" | "Mon")
                    && rest[chunk.len()..].starts_with(|c: char| c.is_ascii_lowercase()))
        });
        let Some(chunk) = chunk else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            index += c.len_utf8();
            continue;
        };
        let hour12 = match time.hour() % 12 {
            0 => 12,
            hour => hour,
        };
        match *chunk {
            "January" => out.push_str(MONTHS[time.month0() as usize]),
            "Jan" => out.push_str(&MONTHS[time.month0() as usize][..3]),
            "Monday" => out.push_str(DAYS[time.weekday().num_days_from_sunday() as usize]),
            "Mon" => out.push_str(&DAYS[time.weekday().num_days_from_sunday() as usize][..3]),
            "MST" => out.push_str("UTC"),
            "2006" => out.push_str(&format!("{:04}", time.year())),
            "06" => out.push_str(&format!("{:02}", time.year().rem_euclid(100))),
            "002" => out.push_str(&format!("{:03}", time.ordinal())),
            "__2" => out.push_str(&format!("{:>3}", time.ordinal())),
            "_2" => out.push_str(&format!("{:>2}", time.day())),
            "01" => out.push_str(&format!("{:02}", time.month())),
            "02" => out.push_str(&format!("{:02}", time.day())),
            "03" => out.push_str(&format!("{hour12:02}")),
            "04" => out.push_str(&format!("{:02}", time.minute())),
            "05" => out.push_str(&format!("{:02}", time.second())),
            "15" => out.push_str(&format!("{:02}", time.hour())),
            "1" => out.push_str(&time.month().to_string()),
            "2" => out.push_str(&time.day().to_string()),
            "3" => out.push_str(&hour12.to_string()),
            "4" => out.push_str(&time.minute().to_string()),
            "5" => out.push_str(&time.second().to_string()),
            "PM" => out.push_str(if time.hour() >= 12 { "PM" } else { "AM" }),
            "pm" => out.push_str(if time.hour() >= 12 { "pm" } else { "am" }),
            "-07:00:00" => out.push_str("+00:00:00"),
            "-070000" => out.push_str("+000000"),
            "-07:00" => out.push_str("+00:00"),
            "-0700" => out.push_str("+0000"),
            "-07" => out.push_str("+00"),
            // The `Z` forms print `Z` for UTC.
            _ => out.push('Z'),
        }
        index += chunk.len();
    }
    out
}
