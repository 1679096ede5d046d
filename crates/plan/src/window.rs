//! Maintenance windows.

use drover_api::validate::parse_clock;
use drover_api::{MaintenanceWindow, Weekday};
use jiff::civil::Weekday as CivilWeekday;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

fn civil(d: Weekday) -> CivilWeekday {
    match d {
        Weekday::Monday => CivilWeekday::Monday,
        Weekday::Tuesday => CivilWeekday::Tuesday,
        Weekday::Wednesday => CivilWeekday::Wednesday,
        Weekday::Thursday => CivilWeekday::Thursday,
        Weekday::Friday => CivilWeekday::Friday,
        Weekday::Saturday => CivilWeekday::Saturday,
        Weekday::Sunday => CivilWeekday::Sunday,
    }
}

fn opens_on(w: &MaintenanceWindow, day: CivilWeekday) -> bool {
    w.days.is_empty() || w.days.iter().any(|d| civil(*d) == day)
}

/// Whether `w` is open at `now`. A window whose end is before its start
/// crosses midnight and belongs to the day it opens on.
pub fn is_open(w: &MaintenanceWindow, now: Timestamp) -> bool {
    let (Some(start), Some(end), Ok(tz)) = (parse_clock(&w.start), parse_clock(&w.end), TimeZone::get(&w.time_zone))
    else {
        return false;
    };
    let local = now.to_zoned(tz);
    let minute = local.hour() as u32 * 60 + local.minute() as u32;
    let today = local.weekday();
    if start < end {
        opens_on(w, today) && (start..end).contains(&minute)
    } else {
        (minute >= start && opens_on(w, today)) || (minute < end && opens_on(w, today.previous()))
    }
}

/// Whether any window is open (no windows: always).
pub fn any_open(windows: &[MaintenanceWindow], now: Timestamp) -> bool {
    windows.is_empty() || windows.iter().any(|w| is_open(w, now))
}

/// The next time a window opens after `now`, searched minute-exactly over
/// the next eight days; None if none does (invalid windows).
pub fn next_opening(windows: &[MaintenanceWindow], now: Timestamp) -> Option<Timestamp> {
    let mut best: Option<Timestamp> = None;
    for w in windows {
        let (Some(start), Ok(tz)) = (parse_clock(&w.start), TimeZone::get(&w.time_zone)) else {
            continue;
        };
        let local = now.to_zoned(tz);
        for days_ahead in 0..=8i64 {
            let Ok(day) = local.date().checked_add(days_ahead.days()) else {
                continue;
            };
            if !opens_on(w, day.weekday()) {
                continue;
            }
            let Ok(at) = day
                .at((start / 60) as i8, (start % 60) as i8, 0, 0)
                .to_zoned(local.time_zone().clone())
            else {
                continue;
            };
            let at = at.timestamp();
            if at > now {
                best = Some(best.map_or(at, |b| b.min(at)));
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[Weekday], start: &str, end: &str, tz: &str) -> MaintenanceWindow {
        MaintenanceWindow {
            days: days.to_vec(),
            start: start.into(),
            end: end.into(),
            time_zone: tz.into(),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn daytime_window() {
        // 2026-11-23 is a Monday.
        let w = window(&[Weekday::Monday], "09:00", "17:00", "UTC");
        assert!(is_open(&w, at("2026-11-23T09:00:00Z")));
        assert!(is_open(&w, at("2026-11-23T16:59:00Z")));
        assert!(!is_open(&w, at("2026-11-23T17:00:00Z")));
        assert!(!is_open(&w, at("2026-11-24T10:00:00Z")), "Tuesday is not a window day");
    }

    #[test]
    fn window_across_midnight_belongs_to_its_opening_day() {
        let w = window(&[Weekday::Saturday], "22:00", "04:00", "UTC");
        assert!(is_open(&w, at("2026-11-28T23:00:00Z")), "Saturday night");
        assert!(is_open(&w, at("2026-11-29T03:59:00Z")), "early Sunday, same window");
        assert!(!is_open(&w, at("2026-11-29T22:30:00Z")), "Sunday night is not a window");
    }

    #[test]
    fn time_zone_is_honoured() {
        // 02:00 in Berlin (UTC+1 in November) is 01:00 UTC.
        let w = window(&[], "02:00", "03:00", "Europe/Berlin");
        assert!(is_open(&w, at("2026-11-23T01:30:00Z")));
        assert!(!is_open(&w, at("2026-11-23T02:30:00Z")));
    }

    #[test]
    fn next_opening_is_found() {
        let w = window(&[Weekday::Wednesday], "01:00", "02:00", "UTC");
        assert_eq!(
            next_opening(&[w], at("2026-11-23T12:00:00Z")),
            Some(at("2026-11-25T01:00:00Z"))
        );
        assert!(any_open(&[], at("2026-11-23T12:00:00Z")));
    }
}
