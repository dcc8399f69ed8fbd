//! Rolling `ModelDeployment`s with a `sagemaker` target out in git mode: the SageMaker planner
//! decides ([`crate::decide::rollout::sagemaker::decide`]), the endpoint calls act, the store
//! records — the state before the calls, so a restarted process finds what it started.

use std::time::Duration;

use serde_json::json;

use super::deploy::min;
use super::{Error, Outcome, Reconciler};
use crate::decide::catalog::{Catalog, Resource};
use crate::decide::rollout::sagemaker::{self as planner, Artifact};
use crate::edges::serving::sagemaker::{self as sm, Endpoints, Location, Owner};

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
            let stalled = |why: &str,
                           healing: Option<&str>,
                           out: &mut Outcome|
             -> Result<(), Error> {
                out.deploy_errors
                    .push(format!("ModelDeployment/{name}: {why}"));
                let status = json!({
                    "model": d.spec.model, "phase": state.phase, "servingVersion": state.stable,
                    "targetVersion": state.candidate, "traffic": state.traffic,
                    "rejectedVersions": state.rejected, "endpoint": t.endpoint_name,
                    "sagemaker": {"endpoint": t.endpoint_name, "region": t.region, "endpointUrl": t.endpoint_url},
                    "healing": healing,
                    "conditions": [{"type": "Stalled", "status": "True", "reason": "SageMakerError", "message": why}],
                });
                self.record(&ns, &name, d, &state, status, &[], out)
            };
            let artifact = |v: &str| {
                catalog.version(&ns, &d.spec.model, v).map(|mv| Artifact {
                    uri: mv.spec.artifact.uri.clone(),
                    digest: mv.spec.artifact.digest.clone(),
                })
            };
            let (live, mut step) = match sm::next_step(
                aws,
                t,
                &d.spec.strategy,
                &state,
                desired.as_deref(),
                &artifact,
                (self.now)(),
            ) {
                Ok(x) => x,
                Err(e) => {
                    // Tried again at the next pass (`--interval`); `--once` ends with the error.
                    stalled(&e.to_string(), None, out)?;
                    continue;
                }
            };
            // A heal SageMaker already refused (the endpoint came back without the config):
            // report it instead of trying again and again.
            let previous = self.store.status("ModelDeployment", &ns, &name)?;
            let healing_before = previous
                .as_ref()
                .and_then(|p| p["healing"].as_str().map(str::to_string));
            let planner::Heal {
                healing: healing_now,
                refused,
            } = planner::heal(&step.calls, healing_before.as_deref(), live.as_ref());
            if refused.is_some() {
                step.calls.clear();
                step.requeue_after = None;
            }
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
                "sagemaker": {"endpoint": t.endpoint_name, "region": t.region, "endpointUrl": t.endpoint_url},
                "endpointStatus": live.as_ref().map(|l| l.status.clone()),
                "endpointConfig": live.as_ref().map(|l| l.config.clone()),
                "drift": step.drift,
                "healing": healing_now,
                "conditions": [sync],
            });
            if let Some(why) = &refused {
                out.deploy_errors
                    .push(format!("ModelDeployment/{name}: {why}"));
                let mut status = status.clone();
                status["healing"] = json!(healing_before);
                status["conditions"] = json!([
                    {"type": "OutOfSync", "status": "True", "reason": "Drift", "message": step.drift.join("; ")},
                    {"type": "Stalled", "status": "True", "reason": "SageMakerError", "message": why},
                ]);
                self.record(&ns, &name, d, &state, status, &[], out)?;
                continue;
            }
            let changed = step.state != state
                || !step.calls.is_empty()
                || !step.drift.is_empty()
                || healing_now != healing_before;
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
                    self.store
                        .apply(&[crate::edges::store::Write::History(h)])?;
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
                        stalled(&e.to_string(), None, out)?;
                        failed = true;
                        break;
                    }
                }
            }
            if !failed {
                requeue = min(requeue, step.requeue_after);
            }
        }
        self.collect_removed(catalog, aws, out)?;
        Ok(requeue)
    }

    /// Deletes the endpoints (and every config and Model made for them) of SageMaker
    /// deployments that are no longer declared, then forgets those deployments. An endpoint
    /// that cannot be deleted now is tried again at the next pass.
    fn collect_removed(
        &self,
        catalog: &Catalog,
        aws: &mut dyn Endpoints,
        out: &mut Outcome,
    ) -> Result<(), Error> {
        for (ns, name, status) in self.store.statuses("ModelDeployment")? {
            let Some(endpoint) = status["sagemaker"]["endpoint"].as_str() else {
                continue;
            };
            let declared = catalog.objects().iter().any(|o| {
                o.key.namespace == ns
                    && o.key.name == name
                    && matches!(&o.resource, Resource::ModelDeployment(d)
                        if d.spec.target.sagemaker.as_ref().is_some_and(|t| t.endpoint_name == endpoint))
            });
            if declared {
                continue;
            }
            let at = Location {
                region: status["sagemaker"]["region"].as_str().map(str::to_string),
                endpoint_url: status["sagemaker"]["endpointUrl"]
                    .as_str()
                    .map(str::to_string),
            };
            match aws.delete(&at, endpoint) {
                Ok(deleted) => {
                    let model = status["model"].as_str().unwrap_or_default().to_string();
                    let mut h = self.history(
                        "EndpointDeleted",
                        &ns,
                        &model,
                        format!("ModelDeployment/{name}"),
                    );
                    h.message = format!(
                        "{name}: removed from the registry; deleted {}",
                        if deleted.is_empty() {
                            "nothing (already gone)".to_string()
                        } else {
                            deleted.join(", ")
                        }
                    );
                    h.data = json!({"deleted": deleted, "endpoint": endpoint});
                    (self.progress)(&h.message);
                    self.store.apply(&[
                        crate::edges::store::Write::History(h),
                        crate::edges::store::Write::ForgetDeployment {
                            namespace: ns.clone(),
                            name: name.clone(),
                        },
                    ])?;
                }
                Err(e) => out.deploy_errors.push(format!(
                    "ModelDeployment/{name}: cannot delete endpoint {endpoint}: {e}"
                )),
            }
        }
        Ok(())
    }
}
