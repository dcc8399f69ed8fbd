//! The rule a policy's windows make of a change ([`crate::catalog::windows`]: when they are
//! open).

use chrono::{DateTime, Utc};
use slipway_crd::promotion_policy::WindowEffect;

use crate::catalog::windows::{Compiled, closing, describe, next_opening};

/// The rule a policy's windows make of a change at `now` (`window`; passed when no window holds
/// it, or when every window that holds it has its `override` met — checked only where approvals
/// are, `approvals`), saying when it opens.
pub fn rule(
    policy: &str,
    windows: &[Compiled],
    now: DateTime<Utc>,
    approvals: Option<(&super::approvals::SignOffs, &super::Members<'_>)>,
) -> super::RuleResult {
    let closed = closing(windows, now);
    // An override is a sign-off given while the window holds the change (one given before —
    // a routine approval of the move by someone the override also names — does not count).
    let overrides: Vec<super::approvals::ApprovalResult> = closed
        .iter()
        .filter_map(|w| Some((w, w.window.override_.as_ref()?)))
        .filter_map(|(w, req)| {
            let (signoffs, members) = approvals?;
            let since = w.holding_since(now);
            let given = super::approvals::SignOffs {
                reviews: signoffs
                    .reviews
                    .iter()
                    .filter(|r| r.submitted_at.is_some_and(|at| at >= since))
                    .cloned()
                    .collect(),
                ..signoffs.clone()
            };
            Some(super::approvals::evaluate(
                policy, req, &given, members, now,
            ))
        })
        .collect();
    let overridden = !closed.is_empty()
        && closed.iter().all(|w| w.window.override_.is_some())
        && overrides.len() == closed.len()
        && overrides.iter().all(|a| a.satisfied() && a.required > 0);
    let message = if closed.is_empty() {
        String::new()
    } else {
        let why: Vec<String> = closed
            .iter()
            .map(|w| {
                let held = match w.window.effect {
                    WindowEffect::Deny => "inside",
                    WindowEffect::Allow => "outside",
                };
                let said = w
                    .window
                    .message
                    .as_deref()
                    .map_or(String::new(), |m| format!(": {}", m.trim_end_matches('.')));
                format!("{held} {}{said}", describe(&w.window))
            })
            .collect();
        let opens = match next_opening(windows, now) {
            Some(t) => format!("next opening {}", t.format("%Y-%m-%d %H:%M UTC")),
            None => "no opening found within 400 days".into(),
        };
        let ways: Vec<String> = closed
            .iter()
            .filter_map(|w| w.window.override_.as_ref())
            .map(|o| {
                let have = overrides
                    .iter()
                    .find(|a| a.name == o.name)
                    .map_or(String::new(), |a| format!(" ({}/{})", a.have, a.required));
                format!("`{}` from {}{have}", o.name, o.from.join(", "))
            })
            .collect();
        let unless = match (overridden, ways.is_empty()) {
            (true, _) => format!("; overridden by {}", ways.join(", ")),
            (false, true) => String::new(),
            (false, false) if approvals.is_none() => format!(
                "; an override ({}) is checked where approvals are (the pull request's plan, admission, a cluster), not here",
                ways.join(", ")
            ),
            (false, false) => format!("; or an override approval {}", ways.join(", ")),
        };
        format!("{}; {opens}{unless}", why.join("; "))
    };
    super::RuleResult {
        policy: policy.to_string(),
        name: "window".into(),
        effect: slipway_crd::promotion_policy::Effect::Deny,
        passed: closed.is_empty() || overridden,
        message,
        values: [("now".to_string(), serde_json::json!(now.to_rfc3339()))].into(),
        expression: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::windows::compile;
    use crate::policy::approvals::{Review, ReviewUser, SignOffs};
    use slipway_crd::promotion_policy::{ApprovalRequirement, Window};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn windows(business_hours: bool) -> Vec<Compiled> {
        let freeze = Window {
            name: "year-end".into(),
            schedule: "0 0 20 12 *".into(),
            duration: "14d".into(),
            effect: WindowEffect::Deny,
            override_: Some(ApprovalRequirement {
                name: "incident-commander".into(),
                required: 1,
                from: vec!["user:carol".into()],
                exclude_author: true,
                expires_after: None,
            }),
            ..Window::default()
        };
        let hours = Window {
            name: "business-hours".into(),
            schedule: "0 9 * * 1-5".into(),
            duration: "8h".into(),
            effect: WindowEffect::Allow,
            ..Window::default()
        };
        let mut all = vec![compile(&freeze).unwrap()];
        if business_hours {
            all.push(compile(&hours).unwrap());
        }
        all
    }

    fn carol(at: &str) -> SignOffs {
        SignOffs {
            reviews: vec![Review {
                user: ReviewUser {
                    login: "carol".into(),
                },
                state: "APPROVED".into(),
                commit_id: Some("head".into()),
                submitted_at: Some(utc(at)),
            }],
            head: Some("head".into()),
            author: Some("dana".into()),
        }
    }

    /// Only a sign-off given while the freeze holds the change overrides it; and overriding a
    /// freeze does not open the allow windows.
    #[test]
    fn an_override_is_a_sign_off_given_during_the_hold_and_overrides_only_its_window() {
        let members = |_: &str| None;
        let now = utc("2026-12-22T10:00:00Z");
        let during = carol("2026-12-21T08:00:00Z");
        let r = rule("p", &windows(false), now, Some((&during, &members)));
        assert!(r.passed, "{}", r.message);
        assert!(
            r.message
                .ends_with("; overridden by `incident-commander` from user:carol (1/1)"),
            "{}",
            r.message
        );
        // Given before the freeze began (a routine approval): not an override.
        let before = carol("2026-12-19T08:00:00Z");
        let r = rule("p", &windows(false), now, Some((&before, &members)));
        assert!(!r.passed, "{}", r.message);
        assert!(r.message.contains("(0/1)"), "{}", r.message);
        // Without approvals to check (git mode's run): held, saying where overrides count.
        let r = rule("p", &windows(false), now, None);
        assert!(
            !r.passed && r.message.contains("is checked where approvals are"),
            "{}",
            r.message
        );
        // Sunday inside the freeze: the override lifts the freeze, not business hours.
        let sunday = utc("2026-12-27T10:00:00Z");
        let r = rule("p", &windows(true), sunday, Some((&during, &members)));
        assert!(!r.passed, "{}", r.message);
        assert!(
            r.message.contains("outside allow window `business-hours`"),
            "{}",
            r.message
        );
    }
}
