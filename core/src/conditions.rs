//! Kubernetes-style conditions, built once for both homes: `Ready` and its companions, with the
//! transition time kept while a condition's status does not change (API conventions).

use chrono::{DateTime, Utc};
use slipway_crd::common::Condition;

/// A condition of `type_`, `True` when `ok`; its `lastTransitionTime` is the previous one of the
/// same type while the status stays, else `now`.
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &[Condition],
    now: DateTime<Utc>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time)
        .unwrap_or(now);
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Some(since),
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_time_moves_only_when_the_status_changes() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let t1 = t0 + chrono::Duration::seconds(30);
        let first = condition("Ready", false, "Evaluating", "0 of 1", Some(1), &[], t0);
        let same = condition(
            "Ready",
            false,
            "Evaluating",
            "still",
            Some(2),
            std::slice::from_ref(&first),
            t1,
        );
        assert_eq!(same.last_transition_time, Some(t0));
        assert_eq!(same.observed_generation, Some(2));
        let flipped = condition("Ready", true, "Evaluated", "1 of 1", Some(2), &[same], t1);
        assert_eq!(flipped.last_transition_time, Some(t1));
        assert_eq!(flipped.status, "True");
    }
}
