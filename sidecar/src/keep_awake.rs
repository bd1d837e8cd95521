//! Keep-awake windows: the hours a rule's apps must not sleep
//! (`keep_awake: ["Mon-Fri 08:30-19:00 Europe/Paris"]`), and how far ahead a
//! sleeping app is woken before one opens (`prewarm`).
//!
//! A window is `DAYS HH:MM-HH:MM ZONE`:
//! - `DAYS`: a day (`Mon`), a range (`Mon-Fri`, `Fri-Mon` wraps round the
//!   week), a comma list of those (`Mon,Wed,Fri-Sat`), or `Daily`/`*`;
//! - the times are local wall-clock times in `ZONE`; an end before the start
//!   spans midnight (`Fri 22:00-02:00` ends on Saturday at 02:00); `24:00`
//!   is the end of the day; equal times are refused;
//! - `ZONE` is an IANA name (`Europe/Paris`, `UTC`), whose daylight-saving
//!   rules come from `chrono-tz`: no date arithmetic is written here.
//!
//! On a daylight-saving change, a local time that does not exist (skipped by
//! the spring change) is read as the first instant after the gap, and one
//! that exists twice (the autumn change) as its first occurrence.
//!
//! Everything is a pure function of the instant it is given (milliseconds
//! since the Unix epoch, as the registry stores time).

use std::fmt;

use chrono::{
    DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;
use thiserror::Error;

/// Why a window's text is refused (its message goes into the config error).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WindowError {
    #[error("expected DAYS HH:MM-HH:MM ZONE")]
    Shape,
    #[error("{0:?} is not a day (Mon..Sun), a range (Mon-Fri) nor Daily")]
    Day(String),
    #[error("{0:?} is not a time range HH:MM-HH:MM")]
    Times(String),
    #[error("the window starts and ends at the same time")]
    Empty,
    #[error("{0:?} is not an IANA time zone")]
    Zone(String),
}

/// One parsed window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Days the window opens on, Monday first.
    days: [bool; 7],
    start: NaiveTime,
    /// `None`: the end of the day (`24:00`).
    end: Option<NaiveTime>,
    zone: Tz,
    text: String,
}

/// One occurrence of a window, in milliseconds since the Unix epoch
/// (`start_ms < end_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interval {
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Interval {
    pub fn contains(&self, now_ms: u64) -> bool {
        self.start_ms <= now_ms && now_ms < self.end_ms
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day_index(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    DAY_NAMES.iter().position(|d| lower == *d)
}

fn parse_days(text: &str) -> Result<[bool; 7], WindowError> {
    let mut days = [false; 7];
    if text.eq_ignore_ascii_case("daily") || text == "*" {
        return Ok([true; 7]);
    }
    for part in text.split(',') {
        let bad = || WindowError::Day(part.to_owned());
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (
                    day_index(from).ok_or_else(bad)?,
                    day_index(to).ok_or_else(bad)?,
                );
                let mut d = from;
                loop {
                    days[d] = true;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day_index(part).ok_or_else(bad)?] = true,
        }
    }
    Ok(days)
}

/// `HH:MM`, two digits each; `24:00` only when `end` (then `None`).
fn parse_time(text: &str, end: bool) -> Option<Option<NaiveTime>> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    if end && h == 24 && m == 0 {
        return Some(None);
    }
    NaiveTime::from_hms_opt(h, m, 0).map(Some)
}

impl Window {
    /// Parses `DAYS HH:MM-HH:MM ZONE` (see the module's docs).
    pub fn parse(text: &str) -> Result<Self, WindowError> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [days, times, zone] = parts.as_slice() else {
            return Err(WindowError::Shape);
        };
        let days = parse_days(days)?;
        let bad_times = || WindowError::Times((*times).to_owned());
        let (start, end) = times.split_once('-').ok_or_else(bad_times)?;
        let start = parse_time(start, false).flatten().ok_or_else(bad_times)?;
        let end = parse_time(end, true).ok_or_else(bad_times)?;
        if end == Some(start) {
            return Err(WindowError::Empty);
        }
        let zone: Tz = zone
            .parse()
            .map_err(|_| WindowError::Zone((*zone).to_owned()))?;
        Ok(Self {
            days,
            start,
            end,
            zone,
            text: text.to_owned(),
        })
    }

    /// The instant of local `at` in the window's zone (see the module's
    /// docs for the daylight-saving changes).
    fn instant(&self, at: NaiveDateTime) -> Option<DateTime<Utc>> {
        let local = self.zone.from_local_datetime(&at);
        if let Some(t) = local.earliest() {
            return Some(t.with_timezone(&Utc));
        }
        // In a spring gap: the first local minute after it, found by walking
        // the wall clock (gaps are at most a few hours).
        (1..=240).find_map(|minutes| {
            let later = at.checked_add_signed(TimeDelta::minutes(minutes))?;
            self.zone
                .from_local_datetime(&later)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
        })
    }

    /// The occurrence that opens on local date `day`, if the window opens
    /// that day.
    fn occurrence(&self, day: NaiveDate) -> Option<Interval> {
        if !self.days[day.weekday().num_days_from_monday() as usize] {
            return None;
        }
        let start = self.instant(day.and_time(self.start))?;
        let end = match self.end {
            Some(end) if end > self.start => self.instant(day.and_time(end))?,
            Some(end) => self.instant(day.checked_add_days(Days::new(1))?.and_time(end))?,
            None => self.instant(day.checked_add_days(Days::new(1))?.and_time(NaiveTime::MIN))?,
        };
        let start_ms = u64::try_from(start.timestamp_millis()).ok()?;
        let end_ms = u64::try_from(end.timestamp_millis()).ok()?;
        (start_ms < end_ms).then_some(Interval { start_ms, end_ms })
    }

    /// The occurrence that contains `now_ms`, else the next one to open.
    pub fn current_or_next(&self, now_ms: u64) -> Option<Interval> {
        let now = DateTime::<Utc>::from_timestamp_millis(i64::try_from(now_ms).ok()?)?;
        let today = now.with_timezone(&self.zone).date_naive();
        // Yesterday's occurrence may span midnight; a week ahead covers every day.
        let first = today.checked_sub_days(Days::new(1))?;
        (0..=8)
            .filter_map(|offset| first.checked_add_days(Days::new(offset)))
            .filter_map(|day| self.occurrence(day))
            .find(|interval| now_ms < interval.end_ms)
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Parses every window of a resolved rule. Texts were checked when the
/// rules were loaded, so one that does not parse is skipped.
pub fn parse_all(texts: &[String]) -> Vec<Window> {
    texts.iter().filter_map(|t| Window::parse(t).ok()).collect()
}

/// The earliest occurrence, across `windows`, that contains `now_ms` or
/// opens after it.
pub fn next_interval(windows: &[Window], now_ms: u64) -> Option<Interval> {
    windows
        .iter()
        .filter_map(|w| w.current_or_next(now_ms))
        .min_by_key(|i| (i.start_ms, i.end_ms))
}

/// Whether `now_ms` is inside one of `windows`: the app must not be paused.
pub fn is_inside(windows: &[Window], now_ms: u64) -> bool {
    windows
        .iter()
        .filter_map(|w| w.current_or_next(now_ms))
        .any(|i| i.contains(now_ms))
}

/// Whether a sleeping app with these windows should be woken at `now_ms`:
/// a window opens within `prewarm_minutes`, or is open. Never without
/// `prewarm`.
pub fn prewarm_due(windows: &[Window], prewarm_minutes: u64, now_ms: u64) -> bool {
    let ahead = prewarm_minutes.saturating_mul(60_000);
    prewarm_minutes > 0
        && windows
            .iter()
            .filter_map(|w| w.current_or_next(now_ms))
            .any(|i| i.start_ms.saturating_sub(ahead) <= now_ms)
}

/// The next keep-awake occurrence of a resolved rule, as the admin API
/// and `check-config` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NextWindow {
    /// RFC 3339, UTC.
    pub start: String,
    /// RFC 3339, UTC.
    pub end: String,
    /// Whether it is open now (the app is not paused until `end`).
    pub open: bool,
    /// Milliseconds since the Unix epoch, for arithmetic.
    #[serde(skip)]
    pub interval: Interval,
}

/// The occurrence of `texts` that contains `now_ms`, else the next one;
/// `None` without windows.
pub fn next_window(texts: &[String], now_ms: u64) -> Option<NextWindow> {
    let interval = next_interval(&parse_all(texts), now_ms)?;
    Some(NextWindow {
        start: rfc3339(interval.start_ms),
        end: rfc3339(interval.end_ms),
        open: interval.contains(now_ms),
        interval,
    })
}

/// One line for `check-config`: the next window of an app whose rules give
/// `texts` and `prewarm_minutes`, or `None` without windows.
pub fn describe(texts: &[String], prewarm_minutes: u64, now_ms: u64) -> Option<String> {
    let next = next_window(texts, now_ms)?;
    let prewarm = if prewarm_minutes > 0 {
        format!(", woken {prewarm_minutes} min before")
    } else {
        String::new()
    };
    Some(if next.open {
        format!("kept awake now, until {}{prewarm}", next.end)
    } else {
        format!(
            "next keep-awake window {} to {}{prewarm}",
            next.start, next.end
        )
    })
}

/// An instant as RFC 3339 (UTC), for the admin API and `check-config`.
pub fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
