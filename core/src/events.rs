//! The one vocabulary of what happens. Every history entry (git mode), Kubernetes event,
//! notification and the `slipway_events_total{event}` metric names what happened with one of
//! these, by its wire name ([`Event::as_str`]); whether people hear of it as a warning is
//! decided here too, once.

use slipway_crd::model_deployment::RolloutEventKind;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A `ModelVersion` was registered.
    VersionRegistered,
    /// An evaluation attempt started as a Kubernetes Job.
    JobStarted,
    /// An evaluation attempt was sent to an external system (`webhook` runner).
    Dispatched,
    /// An evaluation attempt started as a local process.
    Started,
    /// An evaluation took earlier results with the same content address.
    Reused,
    /// An evaluation attempt failed; another one follows.
    Retrying,
    /// An evaluation failed for good.
    EvaluationFailed,
    /// An evaluation finished with a verdict.
    EvaluationCompleted,
    /// An alias moved to a version.
    AliasMoved,
    /// An alias move was held back (policy, approvals, evaluations).
    PromotionBlocked,
    /// A rollout's events.
    Rollout(RolloutEventKind),
    /// A local server that had stopped was started again.
    ServerRestarted,
    /// A SageMaker endpoint was found changed outside Slipway.
    OutOfSync,
    /// A SageMaker call failed.
    SageMakerError,
    /// A deployment's SageMaker endpoint was deleted with it.
    EndpointDeleted,
    /// A deployment's SageMaker endpoint could not be deleted.
    EndpointNotDeleted,
    /// An object outside the operator's bounds was not acted on.
    OutsideBounds,
    /// An operator's retry named nothing that can be retried.
    NothingToRetry,
    /// A notification was delivered.
    NotificationDelivered,
    /// A notification could not be delivered.
    NotificationFailed,
    /// A source revision was not applied (it is not valid).
    RevisionRejected,
    /// A reconcile was refused for what the object is (rights, an invalid write, a name taken):
    /// the object's `Stalled` condition says why.
    Stalled,
    /// An `Approval` (a sign-off or a rejection) was withdrawn: deleted by its approver or an
    /// operator.
    ApprovalWithdrawn,
    /// An evaluation is compared again, against the version its suite's baseline resolves to
    /// now, because a move waits on it.
    BaselineMoved,
}

impl Event {
    /// Every event, for metrics that list each one from the start.
    pub const ALL: [Event; 33] = [
        Event::VersionRegistered,
        Event::JobStarted,
        Event::Dispatched,
        Event::Started,
        Event::Reused,
        Event::Retrying,
        Event::EvaluationFailed,
        Event::EvaluationCompleted,
        Event::AliasMoved,
        Event::PromotionBlocked,
        Event::Rollout(RolloutEventKind::RolloutStarted),
        Event::Rollout(RolloutEventKind::StepStarted),
        Event::Rollout(RolloutEventKind::RolloutSucceeded),
        Event::Rollout(RolloutEventKind::RolledBack),
        Event::Rollout(RolloutEventKind::RolloutFailed),
        Event::Rollout(RolloutEventKind::RolloutSuperseded),
        Event::Rollout(RolloutEventKind::RetryRequested),
        Event::Rollout(RolloutEventKind::AnalysisMeasured),
        Event::Rollout(RolloutEventKind::RollbackProposed),
        Event::Rollout(RolloutEventKind::RollbackProposalFailed),
        Event::ServerRestarted,
        Event::OutOfSync,
        Event::SageMakerError,
        Event::EndpointDeleted,
        Event::EndpointNotDeleted,
        Event::OutsideBounds,
        Event::NothingToRetry,
        Event::NotificationDelivered,
        Event::NotificationFailed,
        Event::RevisionRejected,
        Event::Stalled,
        Event::ApprovalWithdrawn,
        Event::BaselineMoved,
    ];

    /// The wire name: history, event reasons, notification events, metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::VersionRegistered => "VersionRegistered",
            Event::JobStarted => "JobStarted",
            Event::Dispatched => "Dispatched",
            Event::Started => "Started",
            Event::Reused => "Reused",
            Event::Retrying => "Retrying",
            Event::EvaluationFailed => "EvaluationFailed",
            Event::EvaluationCompleted => "EvaluationCompleted",
            Event::AliasMoved => "AliasMoved",
            Event::PromotionBlocked => "PromotionBlocked",
            Event::Rollout(kind) => kind.as_str(),
            Event::ServerRestarted => "ServerRestarted",
            Event::OutOfSync => "OutOfSync",
            Event::SageMakerError => "SageMakerError",
            Event::EndpointDeleted => "EndpointDeleted",
            Event::EndpointNotDeleted => "EndpointNotDeleted",
            Event::OutsideBounds => "OutsideBounds",
            Event::NothingToRetry => "NothingToRetry",
            Event::NotificationDelivered => "NotificationDelivered",
            Event::NotificationFailed => "NotificationFailed",
            Event::RevisionRejected => "RevisionRejected",
            Event::Stalled => "Stalled",
            Event::ApprovalWithdrawn => "ApprovalWithdrawn",
            Event::BaselineMoved => "BaselineMoved",
        }
    }

    /// The event of a wire name.
    pub fn parse(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// Whether a history entry records it (and `slipway_events_total` counts it, in both homes).
    /// An evaluation attempt's own steps — started, reused, retrying, failed — are Kubernetes
    /// events on the `Evaluation` and progress lines in git mode (its outcome is recorded as
    /// `EvaluationCompleted`); a refused retry is the answer to the operator who asked, and what
    /// only a cluster has (operator bounds, a SageMaker call that failed, an endpoint left behind)
    /// is a Kubernetes event there.
    pub fn in_history(self) -> bool {
        !matches!(
            self,
            Event::JobStarted
                | Event::Dispatched
                | Event::Started
                | Event::Reused
                | Event::Retrying
                | Event::EvaluationFailed
                | Event::NothingToRetry
                | Event::Stalled
                | Event::OutsideBounds
                | Event::SageMakerError
                | Event::EndpointNotDeleted
                | Event::ApprovalWithdrawn
        )
    }

    /// Whether people hear of it as a warning (something did not go as asked).
    pub fn is_warning(self) -> bool {
        match self {
            Event::Rollout(kind) => kind.is_warning(),
            Event::EvaluationFailed
            | Event::PromotionBlocked
            | Event::OutOfSync
            | Event::SageMakerError
            | Event::EndpointNotDeleted
            | Event::OutsideBounds
            | Event::NothingToRetry
            | Event::NotificationFailed
            | Event::RevisionRejected
            | Event::Stalled => true,
            _ => false,
        }
    }
}

impl From<RolloutEventKind> for Event {
    fn from(kind: RolloutEventKind) -> Event {
        Event::Rollout(kind)
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_has_one_wire_name_that_reads_back() {
        let mut names: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
        for e in Event::ALL {
            assert_eq!(Event::parse(e.as_str()), Some(e));
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Event::ALL.len(), "two events share a name");
        assert_eq!(Event::parse("Nope"), None);
        assert!(Event::Rollout(RolloutEventKind::RolledBack).is_warning());
        assert!(!Event::AliasMoved.is_warning());
    }
}
