//! Promotion windows and freezes (`PromotionPolicy.spec.windows`): when the changes a policy
//! matches may be made. Each window opens on a cron schedule in a time zone and stays open for
//! a duration; `allow` windows are the only times changes may be made (when a policy has any),
//! `deny` windows are freezes. Pure: the decision time is the caller's. What a policy decides of
//! them is [`crate::policy::windows`]'s.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use slipway_crd::promotion_policy::{Window, WindowEffect};

/// How far ahead the next opening is looked for: a policy that stays closed longer says so.
const HORIZON_DAYS: i64 = 400;

/// What each field of a schedule holds, for messages.
const FIELDS: &str =
    "minute 0-59, hour 0-23, day of month 1-31, month 1-12, day of week 0-7 or MON-SUN";

/// A window ready to be asked about times.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The window as written.
    pub window: Window,
    cron: croner::Cron,
    length: chrono::Duration,
    tz: chrono_tz::Tz,
}

/// Compiles a window; what does not read, by field (`schedule`, `duration`, `timeZone`).
pub fn compile(w: &Window) -> Result<Compiled, Vec<(&'static str, String)>> {
    let mut errors = Vec::new();
    let fields = w.schedule.split_whitespace().count();
    let cron = if fields == 5 {
        croner::Cron::from_str(&w.schedule)
            .map_err(|e| {
                errors.push((
                    "schedule",
                    format!("`{}` is not a cron schedule ({FIELDS}): {e}", w.schedule),
                ))
            })
            .ok()
    } else {
        errors.push((
            "schedule",
            format!(
                "`{}` has {fields} field(s); write five ({FIELDS}), e.g. `0 9 * * 1-5` (macros such as `@daily` and seconds are not read)",
                w.schedule
            ),
        ));
        None
    };
    // A schedule that never fires (30 February) would make a freeze that never applies.
    let reference = DateTime::<Utc>::from_timestamp(946_684_800, 0).unwrap_or_default();
    let cron = cron.filter(|c| {
        let fires = c.find_next_occurrence(&reference, false).is_ok();
        if !fires {
            errors.push(("schedule", format!("`{}` never fires", w.schedule)));
        }
        fires
    });
    let length = match crate::duration::parse(&w.duration) {
        Ok(d) if d < std::time::Duration::from_secs(60) => {
            errors.push((
                "duration",
                format!(
                    "`{}` is under a minute; a window is open at least 1m",
                    w.duration
                ),
            ));
            None
        }
        Ok(d) if d > std::time::Duration::from_secs(366 * 86_400) => {
            errors.push((
                "duration",
                format!(
                    "`{}` is over a year; a window is open at most 366d",
                    w.duration
                ),
            ));
            None
        }
        Ok(d) => chrono::Duration::from_std(d).ok(),
        Err(e) => {
            errors.push(("duration", e));
            None
        }
    };
    let zone = w.time_zone.as_deref().unwrap_or("UTC");
    let tz = chrono_tz::Tz::from_str(zone)
        .map_err(|_| {
            errors.push((
                "timeZone",
                format!("`{zone}` is not a time zone; write an IANA name such as `Europe/Berlin` or `UTC`"),
            ))
        })
        .ok();
    match (cron, length, tz) {
        (Some(cron), Some(length), Some(tz)) if errors.is_empty() => Ok(Compiled {
            window: w.clone(),
            cron,
            length,
            tz,
        }),
        _ => Err(errors),
    }
}

impl Compiled {
    /// When the opening that covers `t` began, if one does: the first start after `t - length`
    /// that is not after `t` (openings are `[start, start + length)`).
    fn covering(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let from = t.checked_sub_signed(self.length)?.with_timezone(&self.tz);
        let start = self.cron.find_next_occurrence(&from, false).ok()?;
        let start = start.with_timezone(&Utc);
        (start <= t).then_some(start)
    }

    /// Whether `t` lies in one of its openings.
    pub fn covers(&self, t: DateTime<Utc>) -> bool {
        self.covering(t).is_some()
    }

    /// When the opening that covers `t` ends.
    fn end_of(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.covering(t)?.checked_add_signed(self.length)
    }

    /// The first start at or after `t`.
    fn next_start(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = self
            .cron
            .find_next_occurrence(&t.with_timezone(&self.tz), true)
            .ok()?;
        Some(start.with_timezone(&Utc))
    }

    /// Since when it has held a change at `t` (which it holds): a freeze since its opening that
    /// covers `t` began, an allow window since its last opening ended (a year back at most).
    pub fn holding_since(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let year_back = t - chrono::Duration::days(366);
        let since = if self.allows() {
            self.cron
                .find_previous_occurrence(&t.with_timezone(&self.tz), true)
                .ok()
                .and_then(|start| start.with_timezone(&Utc).checked_add_signed(self.length))
        } else {
            self.covering(t)
        };
        since.unwrap_or(year_back).max(year_back)
    }

    /// Whether it is an allow window.
    pub fn allows(&self) -> bool {
        self.window.effect == WindowEffect::Allow
    }
}

/// The windows that keep a change from being made at `t`: the freezes that cover it, and — when
/// the policy has allow windows and none covers it — those (empty: it may be made). Each one
/// holds the change on its own: overriding a freeze does not open the allow windows.
pub fn closing(windows: &[Compiled], t: DateTime<Utc>) -> Vec<&Compiled> {
    let mut closed: Vec<&Compiled> = windows
        .iter()
        .filter(|w| !w.allows() && w.covers(t))
        .collect();
    let allow: Vec<&Compiled> = windows.iter().filter(|w| w.allows()).collect();
    if !allow.is_empty() && !allow.iter().any(|w| w.covers(t)) {
        closed.extend(allow);
    }
    closed
}

/// The first time at or after `now` when no window keeps a change from being made (None: none
/// found within 400 days, or within 20,000 steps past freezes and closed times).
pub fn next_opening(windows: &[Compiled], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let horizon = now + chrono::Duration::days(HORIZON_DAYS);
    let mut t = now;
    // Each step passes a freeze or reaches an allow window's start; a schedule that opens and
    // closes every minute for a year is still a bounded walk.
    for _ in 0..20_000 {
        if t > horizon {
            break;
        }
        let closed = closing(windows, t);
        if closed.is_empty() {
            return Some(t);
        }
        // Past every freeze that covers it; else to the next start of an allow window.
        t = if closed.iter().any(|w| !w.allows()) {
            closed
                .iter()
                .filter(|w| !w.allows())
                .filter_map(|w| w.end_of(t))
                .max()?
        } else {
            closed.iter().filter_map(|w| w.next_start(t)).min()?
        };
    }
    None
}

/// How people read a window: `deny year-end-freeze (0 0 20 12 * for 14d, Europe/Berlin)`.
pub fn describe(w: &Window) -> String {
    let effect = match w.effect {
        WindowEffect::Allow => "allow",
        WindowEffect::Deny => "deny",
    };
    format!(
        "{effect} window `{}` ({} for {}, {})",
        w.name,
        w.schedule,
        w.duration,
        w.time_zone.as_deref().unwrap_or("UTC")
    )
}

#[cfg(test)]
#[path = "windows_tests.rs"]
mod tests;
