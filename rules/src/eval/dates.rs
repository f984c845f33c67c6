//! Calendar arithmetic in UTC for the date functions (`year()`, `day_of_week()`...) and templates'
//! timestamps, without a time zone database: Prometheus evaluates them in UTC too.

use crate::promql::Func;

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The part `func` names of the instant `unix_seconds`.
pub fn date_part(func: Func, unix_seconds: i64) -> f64 {
    let days = unix_seconds.div_euclid(86_400);
    let seconds_of_day = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let value = match func {
        Func::Year => year,
        Func::Month => i64::from(month),
        Func::DayOfMonth => i64::from(day),
        Func::DaysInMonth => i64::from(days_in_month(year, month)),
        Func::DayOfWeek => (days + 4).rem_euclid(7),
        Func::DayOfYear => {
            let before: u32 = (1..month).map(|earlier| days_in_month(year, earlier)).sum();
            i64::from(before + day)
        }
        Func::Hour => seconds_of_day / 3600,
        Func::Minute => (seconds_of_day % 3600) / 60,
        _ => return f64::NAN,
    };
    value as f64
}
