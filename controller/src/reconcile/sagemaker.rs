//! Rolling `ModelDeployment`s with a `sagemaker` target out in git mode: the SageMaker planner
//! decides ([`crate::target::sagemaker::plan::decide`]), the endpoint calls act, the store
//! records — the state before the calls, so a restarted process finds what it started.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::deploy::min;
use super::{Error, Outcome, Reconciler};
use crate::catalog::{Catalog, Resource};
use crate::target::sagemaker::plan::{self, Artifact};
use crate::target::sagemaker::{Endpoints, Location, Owner};

impl Reconciler<'_> {
    /// One step for every SageMaker deployment. Returns when to look again.
    pub fn deploy_sagemaker(
        &self,
        catalog: &Catalog,
        aws: &mut dyn Endpoints,
        out: &mut Outcome,
    ) -> Result<Option<Duration>, Error> {
        let mut requeue = None;
        for obj in catalog.objects() {
            let Resource::ModelDeployment(d) = &obj.resource else {
                continue;
            };
            let Some(t) = &d.spec.target.sagemaker else {
                continue;
            };
            let ns = obj.key.namespace.clone();
            let name = obj.key.name.clone();
            let desired = match (&d.spec.version, &d.spec.alias) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(a)) => self.resolved_alias(catalog, &ns, &d.spec.model, a),
                _ => None,
            };
            let state = self.store.rollout(&ns, &name)?;
            let at = Location::of(t);
            let owner = Owner {
                namespace: ns.clone(),
                deployment: name.clone(),
                model: d.spec.model.clone(),
            };
            let stalled = |why: &str, out: &mut Outcome| -> Result<(), Error> {
                out.deploy_errors
                    .push(format!("ModelDeployment/{name}: {why}"));
                let status = json!({
                    "model": d.spec.model, "phase": state.phase, "servingVersion": state.stable,
                    "targetVersion": state.candidate, "traffic": state.traffic,
                    "rejectedVersions": state.rejected, "endpoint": t.endpoint_name,
                    "conditions": [{"type": "Stalled", "status": "True", "reason": "SageMakerError", "message": why}],
                });
                self.record(&ns, &name, d, &state, status, &[], out)
            };
            let guardrails = match plan::guardrails(&d.spec.strategy) {
                Ok(g) => g,
                Err(e) => {
                    stalled(&e, out)?;
                    continue;
                }
            };
            let live = match aws.live(&at, &t.endpoint_name) {
                Ok(l) => l,
                Err(e) => {
                    // Tried again at the next pass (`--interval`); `--once` ends with the error.
                    stalled(&e.to_string(), out)?;
                    continue;
                }
            };
            let counts: BTreeMap<String, u32> = live
                .iter()
                .flat_map(|l| &l.variants)
                .map(|v| (v.name.clone(), v.instance_count))
                .collect();
            let want = |v: &str| {
                let mv = catalog.version(&ns, &d.spec.model, v)?;
                let artifact = Artifact {
                    uri: mv.spec.artifact.uri.clone(),
                    digest: mv.spec.artifact.digest.clone(),
                };
                let count = counts.get(&plan::variant_name(v)).copied();
                Some(plan::desired(t, v, &artifact, count))
            };
            let step = plan::decide(
                &state,
                desired.as_deref(),
                &want,
                &guardrails,
                live.as_ref(),
            );
            let s = &step.state;
            let sync = if step.drift.is_empty() {
                json!({"type": "OutOfSync", "status": "False", "reason": "InSync",
                       "message": "the endpoint matches the desired state"})
            } else {
                json!({"type": "OutOfSync", "status": "True", "reason": "Drift",
                       "message": step.drift.join("; ")})
            };
            let status = json!({
                "model": d.spec.model,
                "phase": s.phase,
                "servingVersion": s.stable,
                "targetVersion": s.candidate,
                "traffic": s.traffic,
                "currentStep": s.candidate.as_ref().map(|_| s.step),
                "rejectedVersions": s.rejected,
                "endpoint": t.endpoint_name,
                "endpointStatus": live.as_ref().map(|l| l.status.clone()),
                "endpointConfig": live.as_ref().map(|l| l.config.clone()),
                "drift": step.drift,
                "conditions": [sync],
            });
            let changed = step.state != state || !step.calls.is_empty() || !step.drift.is_empty();
            if changed {
                let events: Vec<_> = step.events.clone();
                if !step.drift.is_empty() {
                    let message = format!(
                        "endpoint {} is out of sync: {}",
                        t.endpoint_name,
                        step.drift.join("; ")
                    );
                    (self.progress)(&format!("{name}: {message}"));
                    let mut h = self.history(
                        "OutOfSync",
                        &ns,
                        &d.spec.model,
                        format!("ModelDeployment/{name}"),
                    );
                    h.message = format!("{name}: {message}");
                    h.data = json!({"drift": step.drift});
                    self.store.apply(&[crate::store::Write::History(h)])?;
                }
                self.record(&ns, &name, d, &step.state, status, &events, out)?;
            }
            let mut failed = false;
            for call in &step.calls {
                match aws.apply(&at, t, &owner, call) {
                    Ok(notes) => {
                        for n in notes {
                            (self.progress)(&format!("{name}: {n}"));
                        }
                    }
                    Err(e) => {
                        stalled(&e.to_string(), out)?;
                        failed = true;
                        break;
                    }
                }
            }
            if !failed {
                requeue = min(requeue, step.requeue_after);
            }
        }
        Ok(requeue)
    }
}
