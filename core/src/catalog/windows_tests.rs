use super::*;

fn window(name: &str, effect: WindowEffect, schedule: &str, duration: &str, tz: &str) -> Compiled {
    compile(&Window {
        name: name.into(),
        schedule: schedule.into(),
        duration: duration.into(),
        time_zone: Some(tz.into()),
        effect,
        message: None,
        override_: None,
    })
    .unwrap()
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn business_hours() -> Compiled {
    window(
        "business-hours",
        WindowEffect::Allow,
        "0 9 * * 1-5",
        "8h",
        "Europe/Berlin",
    )
}

#[test]
fn an_allow_window_opens_on_its_schedule_in_its_time_zone() {
    let w = [business_hours()];
    // Monday 2026-12-07: 11:00 in Berlin is open, 18:00 is not; it opens again Tuesday 09:00
    // (08:00 UTC in winter).
    assert!(closing(&w, utc("2026-12-07T10:00:00Z")).is_empty());
    assert_eq!(closing(&w, utc("2026-12-07T17:00:00Z")).len(), 1);
    assert_eq!(
        next_opening(&w, utc("2026-12-07T17:00:00Z")),
        Some(utc("2026-12-08T08:00:00Z"))
    );
    // The end is not in the window: 17:00 Berlin sharp is closed.
    assert!(!w[0].covers(utc("2026-12-07T16:00:00Z")));
    assert!(w[0].covers(utc("2026-12-07T15:59:59Z")));
    // Friday evening: Monday morning.
    assert_eq!(
        next_opening(&w, utc("2026-12-11T18:00:00Z")),
        Some(utc("2026-12-14T08:00:00Z"))
    );
    // Summer time: 09:00 in Berlin is 07:00 UTC.
    assert_eq!(
        next_opening(&w, utc("2026-07-06T06:00:00Z")),
        Some(utc("2026-07-06T07:00:00Z"))
    );
    // Open now: now.
    let now = utc("2026-12-07T10:00:00Z");
    assert_eq!(next_opening(&w, now), Some(now));
}

#[test]
fn a_freeze_closes_even_an_allow_window_and_opens_at_the_first_allowed_time_after_it() {
    let freeze = window("year-end", WindowEffect::Deny, "0 0 20 12 *", "14d", "UTC");
    let w = [business_hours(), freeze];
    // Tuesday 2026-12-22, 10:00 UTC: inside business hours, inside the freeze.
    let during = utc("2026-12-22T10:00:00Z");
    let closed = closing(&w, during);
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].window.name, "year-end");
    // The freeze ends Sunday 2027-01-03 00:00 UTC; business hours open Monday.
    assert_eq!(next_opening(&w, during), Some(utc("2027-01-04T08:00:00Z")));
    // A freeze alone: its end.
    let alone = [window(
        "year-end",
        WindowEffect::Deny,
        "0 0 20 12 *",
        "14d",
        "UTC",
    )];
    assert_eq!(
        next_opening(&alone, during),
        Some(utc("2027-01-03T00:00:00Z"))
    );
    assert!(closing(&alone, utc("2026-12-19T23:59:00Z")).is_empty());
}

#[test]
fn what_does_not_read_is_named_by_field() {
    let bad = Window {
        name: "w".into(),
        schedule: "0 9 * *".into(),
        duration: "0s".into(),
        time_zone: Some("Mars/Olympus".into()),
        effect: WindowEffect::Allow,
        message: None,
        override_: None,
    };
    let errors = compile(&bad).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|(f, _)| *f).collect();
    assert_eq!(fields, ["schedule", "duration", "timeZone"], "{errors:?}");
    assert!(
        errors[0].1.contains("has 4 field(s); write five"),
        "{errors:?}"
    );
    let bad = Window {
        schedule: "61 9 * * *".into(),
        duration: "1h".into(),
        time_zone: None,
        ..bad
    };
    let errors = compile(&bad).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .1
            .starts_with("`61 9 * * *` is not a cron schedule"),
        "{errors:?}"
    );
}

#[test]
fn a_policy_closed_for_longer_than_the_horizon_has_no_next_opening() {
    // Only open on 29 February: the next is in 2028, past the 400 days looked at.
    let leap = [window(
        "leap",
        WindowEffect::Allow,
        "0 0 29 2 *",
        "1h",
        "UTC",
    )];
    assert_eq!(next_opening(&leap, utc("2026-12-07T10:00:00Z")), None);
    assert_eq!(
        next_opening(&leap, utc("2027-06-01T00:00:00Z")),
        Some(utc("2028-02-29T00:00:00Z"))
    );
    // A schedule that never fires does not read.
    let never = Window {
        name: "never".into(),
        schedule: "0 0 30 2 *".into(),
        duration: "1h".into(),
        ..Window::default()
    };
    let errors = compile(&never).unwrap_err();
    assert_eq!(
        errors,
        [("schedule", "`0 0 30 2 *` never fires".to_string())]
    );
}

#[test]
fn outside_business_hours_in_a_freeze_both_hold_the_change() {
    let freeze = window("year-end", WindowEffect::Deny, "0 0 20 12 *", "14d", "UTC");
    let w = [business_hours(), freeze];
    // Sunday 2026-12-27: inside the freeze and outside business hours — each holds it.
    let names: Vec<&str> = closing(&w, utc("2026-12-27T10:00:00Z"))
        .iter()
        .map(|c| c.window.name.as_str())
        .collect();
    assert_eq!(names, ["year-end", "business-hours"]);
}
