//! A plan's view of soaks: the candidate's serving record from the inputs' alias histories,
//! and what a denied move still waits for.

use chrono::{DateTime, Utc};

use super::PlanInputs;
use crate::catalog::Catalog;
use crate::policy::{Decision, DecisionInput, Members};
use crate::promotion::stages::{self, Histories, Record};

impl PlanInputs {
    /// The serving record of `version` (artifact `digest`) of `model` in `ns` as of `at`.
    pub(super) fn record(
        &self,
        (ns, model): (&str, &str),
        version: &str,
        digest: &str,
        at: DateTime<Utc>,
    ) -> Record {
        let empty = Histories::new();
        let histories = self
            .histories
            .get(&(ns.to_string(), model.to_string()))
            .unwrap_or(&empty);
        Record::of(histories, version, digest, at)
    }
}

/// What `model`'s soak still asks of the move to `to` in `decision`, and when the move is
/// allowed by waiting alone ([`stages::explain`]): decided again as of then.
#[allow(clippy::too_many_arguments)]
pub(super) fn explain(
    decision: &mut Decision,
    base: &Catalog,
    inputs: &PlanInputs,
    input: &DecisionInput,
    members: &Members<'_>,
    (ns, model): (&str, &str),
    (to, digest): (&str, &str),
    record: &Record,
) {
    let Some(m) = base.model(ns, model) else {
        return;
    };
    let at = |t| {
        let later = stages::as_of(input, t, &inputs.record((ns, model), to, digest, t));
        base.policies
            .decide(&later, &inputs.signoffs, members)
            .allowed
    };
    let soak = stages::explain(decision, m, record, to, inputs.now);
    let change = &input.change;
    decision.opens_at = stages::opening(decision, &base.policies, change, inputs.now, soak, &at);
}
