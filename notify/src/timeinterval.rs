//! Alertmanager's time intervals (its `timeinterval` package): `time_intervals` (and their older name,
//! `mute_time_intervals`) at the top of the routing file, referred to by name from a route's
//! `mute_time_intervals` and `active_time_intervals`.
//!
//! An interval holds `times` (minutes of the day, end exclusive), `weekdays`, `days_of_month` (negative counts
//! from the end of the month), `months` and `years`, each a list of inclusive ranges; a field left out matches
//! always, the fields of one interval must all match, and a named entry matches when any of its intervals
//! does. Instants are taken in the interval's `location` (an IANA zone name; UTC when absent). Matching is a
//! pure function of the instant, so it is tested at fixed instants.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

/// One named entry of `time_intervals`.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedInterval {
    pub name: String,
    pub intervals: Vec<TimeInterval>,
}

impl NamedInterval {
    /// True when `at` falls in any of the entry's intervals.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.intervals.iter().any(|interval| interval.contains(at))
    }
}

/// One interval: every field given must match.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimeInterval {
    pub times: Option<Vec<TimeRange>>,
    pub weekdays: Option<Vec<Range>>,
    pub days_of_month: Option<Vec<Range>>,
    pub months: Option<Vec<Range>>,
    pub years: Option<Vec<Range>>,
    pub location: Option<Tz>,
}

/// Minutes of the day, `start` included, `end` excluded (`24:00` is 1440).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start_minute: u32,
    pub end_minute: u32,
}

/// An inclusive range of weekdays (0 = Sunday), days of the month, months (1 = January) or years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub begin: i32,
    pub end: i32,
}

impl TimeInterval {
    /// Alertmanager's `ContainsTime`.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.location.unwrap_or(Tz::UTC));
        if let Some(times) = &self.times {
            let minute = local.hour() * 60 + local.minute();
            if !times
                .iter()
                .any(|range| minute >= range.start_minute && minute < range.end_minute)
            {
                return false;
            }
        }
        if let Some(days) = &self.days_of_month {
            let in_month = days_in_month(local.year(), local.month());
            let day = i32::try_from(local.day()).unwrap_or(0);
            let any = days.iter().any(|range| {
                let begin = if range.begin < 0 {
                    in_month + range.begin + 1
                } else {
                    range.begin
                };
                let end = if range.end < 0 {
                    in_month + range.end + 1
                } else {
                    range.end
                };
                // A range that starts after this month's last day does not reach into the next month.
                if begin > in_month {
                    return false;
                }
                let begin = begin.clamp(-in_month, in_month);
                let end = end.clamp(-in_month, in_month);
                day >= begin && day <= end
            });
            if !any {
                return false;
            }
        }
        let within = |ranges: &Option<Vec<Range>>, value: i32| {
            ranges.as_ref().is_none_or(|ranges| {
                ranges
                    .iter()
                    .any(|range| value >= range.begin && value <= range.end)
            })
        };
        within(
            &self.months,
            i32::try_from(local.month()).unwrap_or_default(),
        ) && within(
            &self.weekdays,
            i32::try_from(local.weekday().num_days_from_sunday()).unwrap_or_default(),
        ) && within(&self.years, local.year())
    }
}

fn days_in_month(year: i32, month: u32) -> i32 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    chrono::NaiveDate::from_ymd_opt(next_year, next_month, 1)
        .and_then(|first| first.pred_opt())
        .map_or(31, |last| i32::try_from(last.day()).unwrap_or(31))
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
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

/// Reads one entry of `time_intervals`: `{name, time_intervals: [...]}`.
pub fn read_named(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<NamedInterval> {
    let mut fields = Fields::of(reader, node, path)?;
    let name = fields.string(reader, "name");
    if name.is_none() {
        reader.error(node.mark, path, "a time interval needs a name");
    }
    let mut intervals = Vec::new();
    if let Some((list, list_path)) = fields.take("time_intervals") {
        for (index, item) in reader
            .sequence(list, &list_path)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            if let Some(interval) = read_interval(reader, item, &format!("{list_path}[{index}]")) {
                intervals.push(interval);
            }
        }
    }
    fields.finish(reader);
    Some(NamedInterval {
        name: name?,
        intervals,
    })
}

/// Reads one interval; every problem is reported with its path, the interval is then left out.
pub fn read_interval(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<TimeInterval> {
    let mut fields = Fields::of(reader, node, path)?;
    let before = reader.errors.len();
    let mut interval = TimeInterval::default();
    if let Some((list, list_path)) = fields.take("times") {
        let mut times = Vec::new();
        for (index, item) in reader
            .sequence(list, &list_path)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let item_path = format!("{list_path}[{index}]");
            let Some(mut range) = Fields::of(reader, item, &item_path) else {
                continue;
            };
            let start = range.scalar(reader, "start_time");
            let end = range.scalar(reader, "end_time");
            range.finish(reader);
            let (Some(start), Some(end)) = (start, end) else {
                reader.error(
                    item.mark,
                    &item_path,
                    "both start_time and end_time must be provided",
                );
                continue;
            };
            match (minute_of_day(&start), minute_of_day(&end)) {
                (Some(start_minute), Some(end_minute)) if start_minute < end_minute => {
                    times.push(TimeRange {
                        start_minute,
                        end_minute,
                    })
                }
                (Some(_), Some(_)) => reader.error(
                    item.mark,
                    &item_path,
                    format!("start_time {start:?} must be before end_time {end:?}"),
                ),
                (None, _) => reader.error(
                    item.mark,
                    &format!("{item_path}.start_time"),
                    format!("expected HH:MM between 00:00 and 24:00, found {start:?}"),
                ),
                (_, None) => reader.error(
                    item.mark,
                    &format!("{item_path}.end_time"),
                    format!("expected HH:MM between 00:00 and 24:00, found {end:?}"),
                ),
            }
        }
        interval.times = Some(times);
    }
    interval.weekdays = read_ranges(
        reader,
        &mut fields,
        "weekdays",
        &|text| named_or_number(text, &WEEKDAYS, 0, Some(6)),
        &|range| (range.begin > range.end).then(|| "start day cannot be after end day".to_owned()),
    );
    interval.days_of_month = read_ranges(
        reader,
        &mut fields,
        "days_of_month",
        &|text| {
            text.parse::<i32>()
                .ok()
                .filter(|day| *day != 0 && (-31..=31).contains(day))
        },
        &|range| {
            if range.begin < 0 && range.end > 0 {
                return Some("end day must be negative if start day is negative".to_owned());
            }
            // As Alertmanager compares them: negative days as if the month had 30.
            let true_begin = if range.begin < 0 {
                30 + range.begin
            } else {
                range.begin
            };
            let true_end = if range.end < 0 {
                30 + range.end
            } else {
                range.end
            };
            (true_begin > true_end).then(|| "end day must be greater than start day".to_owned())
        },
    );
    interval.months = read_ranges(
        reader,
        &mut fields,
        "months",
        &|text| named_or_number(text, &MONTHS, 1, Some(12)),
        &|range| (range.begin > range.end).then(|| "end month is before start month".to_owned()),
    );
    interval.years = read_ranges(
        reader,
        &mut fields,
        "years",
        &|text| text.parse::<i32>().ok().filter(|year| *year > 0),
        &|range| {
            (range.begin > range.end).then(|| "end year cannot be before start year".to_owned())
        },
    );
    if let Some((location_node, location_path)) = fields.take("location") {
        if let Some(name) = reader.string(location_node, &location_path) {
            match name.parse::<Tz>() {
                Ok(zone) => interval.location = Some(zone),
                Err(_) if name == "Local" => reader.error(
                    location_node.mark,
                    &location_path,
                    "location Local is not supported by dbwatch: name the zone (e.g. Europe/Berlin), so that \
                     muting does not depend on the host's clock setting",
                ),
                Err(_) => reader.error(
                    location_node.mark,
                    &location_path,
                    format!("unknown time zone {name:?}"),
                ),
            }
        }
    }
    fields.finish(reader);
    (reader.errors.len() == before).then_some(interval)
}

/// `HH:MM` with two-digit hours, `00:00` to `24:00`.
fn minute_of_day(text: &str) -> Option<u32> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: u32 = hours.parse().ok()?;
    let minutes: u32 = minutes.parse().ok()?;
    match (hours, minutes) {
        (24, 0) => Some(1440),
        (0..=23, 0..=59) => Some(hours * 60 + minutes),
        _ => None,
    }
}

/// A lowercase name of `names` (its index plus `first`), or a number within `first..=last`.
fn named_or_number(text: &str, names: &[&str], first: i32, last: Option<i32>) -> Option<i32> {
    let lower = text.to_ascii_lowercase();
    if let Some(index) = names.iter().position(|name| *name == lower) {
        return i32::try_from(index).ok().map(|index| index + first);
    }
    let number: i32 = text.parse().ok()?;
    (number >= first && last.is_none_or(|last| number <= last)).then_some(number)
}

/// A list of `begin:end` or single values under `key`, each end parsed by `parse`; a range `problem` objects
/// to is reported.
fn read_ranges(
    reader: &mut Reader<'_>,
    fields: &mut Fields<'_>,
    key: &'static str,
    parse: &dyn Fn(&str) -> Option<i32>,
    problem: &dyn Fn(&Range) -> Option<String>,
) -> Option<Vec<Range>> {
    let (list, list_path) = fields.take(key)?;
    let mut ranges = Vec::new();
    for (index, item) in reader
        .sequence(list, &list_path)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let item_path = format!("{list_path}[{index}]");
        let Some(text) = reader.scalar(item, &item_path) else {
            continue;
        };
        // A leading '-' is a negative day of the month, not a range separator; ':' separates.
        let (begin, end) = match text.split_once(':') {
            Some((begin, end)) => (begin.trim(), end.trim()),
            None => (text.trim(), text.trim()),
        };
        match (parse(begin), parse(end)) {
            (Some(begin), Some(end)) => {
                let range = Range { begin, end };
                match problem(&range) {
                    Some(message) => reader.error(item.mark, &item_path, message),
                    None => ranges.push(range),
                }
            }
            _ => reader.error(
                item.mark,
                &item_path,
                format!("invalid {key} range {text:?}"),
            ),
        }
    }
    Some(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn interval(yaml: &str) -> TimeInterval {
        let node = dbwatch_yaml::node::parse(yaml).expect("yaml");
        let env = |_: &str| None;
        let mut reader = Reader::new(&env);
        let interval = read_interval(&mut reader, &node, "i");
        assert!(reader.errors.is_empty(), "{:?}", reader.errors);
        interval.expect("an interval")
    }

    fn errors(yaml: &str) -> Vec<String> {
        let node = dbwatch_yaml::node::parse(yaml).expect("yaml");
        let env = |_: &str| None;
        let mut reader = Reader::new(&env);
        let _ = read_interval(&mut reader, &node, "i");
        reader
            .errors
            .iter()
            .map(|error| format!("{}: {}", error.path, error.message))
            .collect()
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("a valid instant")
    }

    #[test]
    fn times_are_minutes_with_an_exclusive_end() {
        let night = interval("times: [{start_time: '22:00', end_time: '24:00'}, {start_time: '00:00', end_time: '06:30'}]");
        assert!(night.contains(at(2024, 3, 5, 22, 0)));
        assert!(night.contains(at(2024, 3, 5, 23, 59)));
        assert!(night.contains(at(2024, 3, 5, 6, 29)));
        assert!(!night.contains(at(2024, 3, 5, 6, 30)));
        assert!(!night.contains(at(2024, 3, 5, 21, 59)));
    }

    #[test]
    fn weekdays_months_and_years_are_inclusive_ranges_of_names_or_numbers() {
        let office = interval(
            "weekdays: ['Monday:friday']\nmonths: ['january:march', '12']\nyears: ['2024:2025']",
        );
        // 2024-03-04 is a Monday, 2024-03-09 a Saturday.
        assert!(office.contains(at(2024, 3, 4, 12, 0)));
        assert!(office.contains(at(2024, 3, 8, 12, 0)));
        assert!(!office.contains(at(2024, 3, 9, 12, 0)));
        assert!(!office.contains(at(2024, 4, 4, 12, 0)));
        assert!(office.contains(at(2025, 12, 1, 12, 0)));
        assert!(!office.contains(at(2026, 1, 5, 12, 0)));
    }

    #[test]
    fn negative_days_count_from_the_end_of_each_month() {
        let last_three = interval("days_of_month: ['-3:-1']");
        assert!(last_three.contains(at(2024, 2, 27, 0, 0)));
        assert!(last_three.contains(at(2024, 2, 29, 0, 0)));
        assert!(!last_three.contains(at(2024, 2, 26, 0, 0)));
        assert!(last_three.contains(at(2023, 2, 26, 0, 0)));
        assert!(last_three.contains(at(2024, 1, 31, 0, 0)));
        assert!(!last_three.contains(at(2024, 1, 28, 0, 0)));
        // A range starting past the month's end does not spill over.
        let thirtieth = interval("days_of_month: ['30:31']");
        assert!(!thirtieth.contains(at(2023, 2, 28, 0, 0)));
        assert!(thirtieth.contains(at(2024, 4, 30, 0, 0)));
        let first_week = interval("days_of_month: ['1:7', '-1']");
        assert!(first_week.contains(at(2024, 5, 7, 0, 0)));
        assert!(!first_week.contains(at(2024, 5, 8, 0, 0)));
        assert!(first_week.contains(at(2024, 5, 31, 0, 0)));
    }

    #[test]
    fn the_location_shifts_the_clock() {
        // 08:00 in Sydney (UTC+11 in January) is 21:00 UTC the day before.
        let morning = interval(
            "times: [{start_time: '08:00', end_time: '09:00'}]\nweekdays: ['monday']\nlocation: Australia/Sydney",
        );
        // 2024-01-14 is a Sunday in UTC, 2024-01-15 a Monday in Sydney.
        assert!(morning.contains(at(2024, 1, 14, 21, 30)));
        assert!(!morning.contains(at(2024, 1, 15, 8, 30)));
    }

    #[test]
    fn invalid_intervals_are_refused_with_their_path() {
        let found = errors(
            "times: [{start_time: '9:00', end_time: '17:00'}, {start_time: '18:00', end_time: '17:00'}]\nweekdays: ['friday:monday', 'someday']\ndays_of_month: ['0', '-1:5', '10:2']\nmonths: ['13']\nlocation: Mars/Olympus",
        );
        let expected = [
            "i.times[0].start_time: expected HH:MM between 00:00 and 24:00, found \"9:00\"",
            "i.times[1]: start_time \"18:00\" must be before end_time \"17:00\"",
            "i.weekdays[1]: invalid weekdays range \"someday\"",
            "i.weekdays[0]: start day cannot be after end day",
            "i.days_of_month[0]: invalid days_of_month range \"0\"",
            "i.days_of_month[1]: end day must be negative if start day is negative",
            "i.days_of_month[2]: end day must be greater than start day",
            "i.months[0]: invalid months range \"13\"",
            "i.location: unknown time zone \"Mars/Olympus\"",
        ];
        for wanted in expected {
            assert!(
                found.iter().any(|error| error == wanted),
                "{wanted} not in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }
}
