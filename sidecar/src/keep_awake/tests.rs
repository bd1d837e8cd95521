//! Windows at fixed instants, across Europe/Paris's 2026 daylight-saving
//! changes (29 March: 02:00 -> 03:00; 25 October: 03:00 -> 02:00).

use chrono::{TimeZone, Utc};

use super::*;

/// `y-m-d h:m` UTC in milliseconds.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> u64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .unwrap()
        .timestamp_millis() as u64
}

fn window(text: &str) -> Window {
    Window::parse(text).unwrap()
}

fn interval(start: u64, end: u64) -> Option<Interval> {
    Some(Interval {
        start_ms: start,
        end_ms: end,
    })
}

#[test]
fn office_hours_follow_paris_time_across_the_spring_change() {
    let w = window("Mon-Fri 08:30-19:00 Europe/Paris");
    // Friday 27 March, winter time (UTC+1): 07:30Z-18:00Z.
    let friday = interval(utc(2026, 3, 27, 7, 30), utc(2026, 3, 27, 18, 0));
    assert_eq!(w.current_or_next(utc(2026, 3, 27, 6, 0)), friday);
    assert_eq!(w.current_or_next(utc(2026, 3, 27, 12, 0)), friday);
    assert!(is_inside(std::slice::from_ref(&w), utc(2026, 3, 27, 12, 0)));
    assert!(
        !is_inside(std::slice::from_ref(&w), utc(2026, 3, 27, 18, 0)),
        "the end is outside"
    );
    // Over the weekend (the clocks change on Sunday) the next one is
    // Monday 30 March, summer time (UTC+2): 06:30Z-17:00Z.
    let monday = interval(utc(2026, 3, 30, 6, 30), utc(2026, 3, 30, 17, 0));
    assert_eq!(w.current_or_next(utc(2026, 3, 27, 18, 0)), monday);
    assert_eq!(w.current_or_next(utc(2026, 3, 28, 12, 0)), monday);
    assert!(!is_inside(&[w], utc(2026, 3, 29, 7, 0)), "not on Sunday");
}

#[test]
fn a_window_in_the_spring_gap_opens_when_the_gap_ends() {
    // 02:30 does not exist on 29 March: the window opens at 03:00 CEST (01:00Z).
    let w = window("Sun 02:30-04:00 Europe/Paris");
    assert_eq!(
        w.current_or_next(utc(2026, 3, 28, 12, 0)),
        interval(utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 2, 0))
    );
    // 01:30 CET to 03:30 CEST: one hour of real time.
    let w = window("Sun 01:30-03:30 Europe/Paris");
    assert_eq!(
        w.current_or_next(utc(2026, 3, 28, 12, 0)),
        interval(utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30))
    );
}

#[test]
fn the_autumn_change_takes_the_first_of_the_repeated_hour() {
    // 02:30 happens twice on 25 October: first in CEST (00:30Z); 03:30 CET is 02:30Z.
    let w = window("Sun 02:30-03:30 Europe/Paris");
    assert_eq!(
        w.current_or_next(utc(2026, 10, 24, 12, 0)),
        interval(utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2, 30))
    );
}

#[test]
fn a_window_may_span_midnight() {
    // Friday 22:00 to Saturday 02:00, Paris winter time.
    let w = window("Fri 22:00-02:00 Europe/Paris");
    let night = interval(utc(2026, 1, 9, 21, 0), utc(2026, 1, 10, 1, 0));
    assert_eq!(w.current_or_next(utc(2026, 1, 9, 12, 0)), night);
    // Saturday 00:30 local: inside Friday's occurrence.
    assert_eq!(w.current_or_next(utc(2026, 1, 9, 23, 30)), night);
    assert!(is_inside(std::slice::from_ref(&w), utc(2026, 1, 9, 23, 30)));
    assert!(!is_inside(&[w], utc(2026, 1, 10, 1, 0)));
    // 24:00 is the end of the day; a range may wrap round the week.
    let w = window("Sat-Sun 20:00-24:00 UTC");
    assert_eq!(
        w.current_or_next(utc(2026, 1, 5, 0, 0)),
        interval(utc(2026, 1, 10, 20, 0), utc(2026, 1, 11, 0, 0))
    );
    let w = window("Fri-Mon 10:00-11:00 UTC");
    // Tuesday 6 January 2026: next is Friday 9.
    assert_eq!(
        w.current_or_next(utc(2026, 1, 6, 12, 0)),
        interval(utc(2026, 1, 9, 10, 0), utc(2026, 1, 9, 11, 0))
    );
}

#[test]
fn the_earliest_window_wins_and_prewarm_looks_ahead() {
    let windows = parse_all(&[
        "Mon-Fri 08:30-19:00 Europe/Paris".to_owned(),
        "Daily 07:00-07:30 UTC".to_owned(),
    ]);
    assert_eq!(windows.len(), 2);
    // Friday 9 January 2026, 06:00Z: the UTC window opens first.
    let now = utc(2026, 1, 9, 6, 0);
    assert_eq!(
        next_interval(&windows, now),
        interval(utc(2026, 1, 9, 7, 0), utc(2026, 1, 9, 7, 30))
    );
    assert!(!prewarm_due(&windows, 5, now));
    assert!(
        !prewarm_due(&windows, 0, utc(2026, 1, 9, 7, 10)),
        "no prewarm, no wake"
    );
    assert!(prewarm_due(&windows, 5, utc(2026, 1, 9, 6, 55)));
    assert!(
        prewarm_due(&windows, 5, utc(2026, 1, 9, 7, 10)),
        "open: still due"
    );
    assert_eq!(next_interval(&[], now), None);
    assert_eq!(rfc3339(utc(2026, 1, 9, 7, 0)), "2026-01-09T07:00:00Z");
}

#[test]
fn malformed_windows_say_why() {
    for (text, error) in [
        ("Mon-Fri 08:30-19:00", WindowError::Shape),
        (
            "Mon-Fry 08:30-19:00 UTC",
            WindowError::Day("Mon-Fry".into()),
        ),
        (
            "Mon 8:30-19:00 UTC",
            WindowError::Times("8:30-19:00".into()),
        ),
        (
            "Mon 08:30-25:00 UTC",
            WindowError::Times("08:30-25:00".into()),
        ),
        (
            "Mon 24:00-08:00 UTC",
            WindowError::Times("24:00-08:00".into()),
        ),
        ("Mon 08:30-08:30 UTC", WindowError::Empty),
        (
            "Mon 08:30-19:00 Europe/Parus",
            WindowError::Zone("Europe/Parus".into()),
        ),
    ] {
        assert_eq!(Window::parse(text), Err(error), "{text}");
    }
    assert!(Window::parse("mon,wed,fri 00:00-24:00 America/New_York").is_ok());
    assert!(Window::parse("* 09:00-10:00 UTC").is_ok());
}

#[test]
fn check_config_and_the_admin_api_describe_the_next_window() {
    let texts = ["Mon-Fri 08:30-19:00 Europe/Paris".to_owned()];
    let saturday = utc(2026, 3, 28, 12, 0);
    assert_eq!(
        describe(&texts, 5, saturday).as_deref(),
        Some("next keep-awake window 2026-03-30T06:30:00Z to 2026-03-30T17:00:00Z, woken 5 min before")
    );
    assert_eq!(
        describe(&texts, 0, utc(2026, 3, 30, 7, 0)).as_deref(),
        Some("kept awake now, until 2026-03-30T17:00:00Z")
    );
    let next = next_window(&texts, saturday).unwrap();
    assert_eq!(
        serde_json::to_value(&next).unwrap(),
        serde_json::json!({ "start": "2026-03-30T06:30:00Z", "end": "2026-03-30T17:00:00Z", "open": false })
    );
    assert_eq!(describe(&[], 5, saturday), None);
}
