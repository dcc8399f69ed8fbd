//! What a reconcile came to, in both homes, and what follows from it: when the object is looked
//! at again, and whether it says it is stalled. The homes only classify what failed (an API
//! status code, a store error) into an [`Outcome`]; every delay and the `Stalled` condition are
//! decided here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use slipway_crd::common::Condition;

use crate::limits;

/// What one reconcile of one object (or one pass of git mode) came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing left to do until something changes (looked at again at the resync).
    Done,
    /// Waiting for something that happens by itself (a Job, an endpoint, a soak): look again
    /// after `after`.
    Waiting {
        /// What it waits for, for logs.
        reason: &'static str,
        /// When to look again.
        after: Duration,
    },
    /// Refused for what it is: only a change of the object (or of the controller's rights)
    /// cures it. Written as `Stalled=True` with the reason; looked at again at the resync.
    Stalled(Stall),
    /// Failed on the way (API server, network, state store, source): back off.
    Transient,
    /// Someone else wrote first: read again and decide again, soon.
    Conflict,
}

/// Why an object is stalled, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    /// The `Stalled` condition's reason.
    pub reason: StallReason,
    /// What was refused and what to do (the condition's message).
    pub message: String,
}

/// The reasons of a `Stalled` condition written for a refused reconcile. A rollout's own stalls
/// (`OutsideBounds`, `SageMakerError`) are written by its step and are not among these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallReason {
    /// The controller lacks the rights (HTTP 401/403): grant them.
    Forbidden,
    /// The API server refused what Slipway wrote as invalid (HTTP 400/404/422 and others).
    Refused,
    /// An object of the name Slipway would write exists and is not Slipway's.
    NotOwned,
    /// What Slipway would write cannot be encoded.
    Unencodable,
    /// The object's finalizer could not be handled.
    Finalizer,
    /// The source's revision is not valid (git mode): the last good one is kept.
    InvalidRevision,
    /// A local model server cannot be set up for the deployment's spec (git mode).
    TargetRefused,
}

impl StallReason {
    /// Every reason, to tell a refused reconcile's stall from a step's own.
    pub const ALL: [StallReason; 7] = [
        StallReason::Forbidden,
        StallReason::Refused,
        StallReason::NotOwned,
        StallReason::Unencodable,
        StallReason::Finalizer,
        StallReason::InvalidRevision,
        StallReason::TargetRefused,
    ];

    /// The condition's reason, one CamelCase word.
    pub fn as_str(self) -> &'static str {
        match self {
            StallReason::Forbidden => "Forbidden",
            StallReason::Refused => "Refused",
            StallReason::NotOwned => "NotOwned",
            StallReason::Unencodable => "Unencodable",
            StallReason::Finalizer => "Finalizer",
            StallReason::InvalidRevision => "InvalidRevision",
            StallReason::TargetRefused => "TargetRefused",
        }
    }

    /// The reason of this name, if it is one of these.
    pub fn parse(s: &str) -> Option<StallReason> {
        StallReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl Outcome {
    /// When to look again after this outcome, the `failures`-th in a row of the same object
    /// (a transient failure backs off: 1 s doubling up to 5 min); `None` waits for a change
    /// (and the resync).
    pub fn after(&self, failures: u32) -> Option<Duration> {
        match self {
            Outcome::Done | Outcome::Stalled(_) => None,
            Outcome::Waiting { after, .. } => Some(*after),
            Outcome::Transient => Some(limits::backoff(failures)),
            Outcome::Conflict => Some(limits::CONFLICT_RETRY),
        }
    }

    /// [`after`](Self::after), with the resync for a wait on a change.
    pub fn requeue(&self, failures: u32) -> Duration {
        self.after(failures).unwrap_or(limits::RESYNC)
    }

    /// Whether the object is to say it is stalled.
    pub fn stall(&self) -> Option<&Stall> {
        match self {
            Outcome::Stalled(s) => Some(s),
            _ => None,
        }
    }
}

/// The conditions after an outcome, when they change: a stall adds (or updates) `Stalled=True`
/// with its reason; no stall (`None`: the homes pass it for a success, never for an outage or a
/// conflict) removes a `Stalled` condition this module wrote. A step's own `Stalled` (a
/// rollout's `OutsideBounds`, say) is left to its step.
pub fn stall_conditions(
    previous: &[Condition],
    stall: Option<&Stall>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Option<Vec<Condition>> {
    let ours = |c: &Condition| c.type_ == "Stalled" && StallReason::parse(&c.reason).is_some();
    match stall {
        None => previous
            .iter()
            .any(ours)
            .then(|| previous.iter().filter(|c| !ours(c)).cloned().collect()),
        Some(stall) => {
            let next = crate::conditions::condition(
                "Stalled",
                true,
                stall.reason.as_str(),
                &stall.message,
                generation,
                previous,
                now,
            );
            let same = previous.iter().any(|c| {
                c.type_ == next.type_
                    && c.status == next.status
                    && c.reason == next.reason
                    && c.message == next.message
            });
            (!same).then(|| {
                let mut out: Vec<Condition> = previous
                    .iter()
                    .filter(|c| c.type_ != "Stalled")
                    .cloned()
                    .collect();
                out.push(next);
                out
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stall(message: &str) -> Stall {
        Stall {
            reason: StallReason::Forbidden,
            message: message.into(),
        }
    }

    #[test]
    fn outcomes_decide_when_to_look_again() {
        assert_eq!(Outcome::Done.after(1), None);
        assert_eq!(Outcome::Done.requeue(1), limits::RESYNC);
        assert_eq!(Outcome::Stalled(stall("x")).requeue(9), limits::RESYNC);
        let wait = Outcome::Waiting {
            reason: "job",
            after: Duration::from_secs(7),
        };
        assert_eq!(wait.after(4), Some(Duration::from_secs(7)));
        assert_eq!(
            Outcome::Transient.after(1),
            Some(limits::ERROR_BACKOFF_FIRST)
        );
        assert_eq!(
            Outcome::Transient.after(2),
            Some(limits::ERROR_BACKOFF_FIRST * 2)
        );
        assert_eq!(
            Outcome::Transient.after(40),
            Some(limits::ERROR_BACKOFF_MAX)
        );
        assert_eq!(Outcome::Conflict.after(3), Some(limits::CONFLICT_RETRY));
    }

    #[test]
    fn a_stall_is_written_once_then_cleared_and_a_steps_own_stall_is_kept() {
        let t0 = crate::testing::now();
        let t1 = t0 + chrono::Duration::seconds(5);
        let ready = crate::conditions::condition("Ready", true, "Settled", "ok", Some(1), &[], t0);
        let stalled = stall_conditions(
            std::slice::from_ref(&ready),
            Some(&stall("no rights")),
            Some(1),
            t0,
        )
        .expect("a stall is written");
        assert_eq!(stalled.len(), 2);
        let s = stalled.iter().find(|c| c.type_ == "Stalled").unwrap();
        assert_eq!(
            (s.status.as_str(), s.reason.as_str()),
            ("True", "Forbidden")
        );
        // The same stall again writes nothing; a new message does, keeping the transition time.
        assert_eq!(
            stall_conditions(&stalled, Some(&stall("no rights")), Some(1), t1),
            None
        );
        let reworded = stall_conditions(&stalled, Some(&stall("still none")), Some(1), t1).unwrap();
        let s = reworded.iter().find(|c| c.type_ == "Stalled").unwrap();
        assert_eq!(s.last_transition_time, Some(t0));
        // Cleared by any other outcome; nothing to clear writes nothing.
        assert_eq!(
            stall_conditions(&reworded, None, Some(1), t1),
            Some(vec![ready.clone()])
        );
        assert_eq!(
            stall_conditions(std::slice::from_ref(&ready), None, Some(1), t1),
            None
        );
        // A rollout step's own stall is not this module's to clear.
        let bounds =
            crate::conditions::condition("Stalled", true, "OutsideBounds", "no", None, &[], t0);
        assert_eq!(stall_conditions(&[bounds], None, None, t1), None);
    }

    #[test]
    fn reasons_have_one_wire_name_each() {
        for r in StallReason::ALL {
            assert_eq!(StallReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(StallReason::parse("OutsideBounds"), None);
    }
}
