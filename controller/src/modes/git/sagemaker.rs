//! Rolling `ModelDeployment`s with a `sagemaker` target out in git mode: the SageMaker planner
//! decides ([`crate::decide::rollout::sagemaker::decide`]), the endpoint calls act, the store
//! records — the state before the calls, so a restarted process finds what it started.

use crate::decide::events::Event as Happened;
use std::time::Duration;

use serde_json::json;

use super::deploy::min;
use super::{Error, PassReport, Reconciler};
use crate::decide::catalog::{Catalog, Resource};
use crate::decide::rollout::sagemaker::{Artifact, Live, Step, sequence};
use crate::decide::rollout::status::{self, Basis, Endpoint};
use crate::decide::rollout::{self, RolloutState};
use crate::edges::serving::sagemaker::{self as sm, Endpoints, Location, Owner};
use slipway_crd::model_deployment::ModelDeploymentStatus;

impl Reconciler<'_> {
    /// One step for every SageMaker deployment. Returns when to look again.
    pub fn deploy_sagemaker(
        &self,
        catalog: &Catalog,
        aws: &mut dyn Endpoints,
        out: &mut PassReport,
    ) -> Result<Option<Duration>, Error> {
        let mut requeue = None;
        for obj in catalog.objects() {
            let Resource::ModelDeployment(d) = &obj.resource else {
                continue;
            };
            let Some(t) = &d.spec.target.sagemaker else {
                continue;
            };
            let one = One {
                ns: &obj.key.namespace,
                name: &obj.key.name,
                d,
                t,
            };
            requeue = min(requeue, self.sagemaker_one(catalog, &one, aws, out)?);
        }
        self.collect_removed(catalog, aws, out)?;
        Ok(requeue)
    }

    /// One step of one SageMaker deployment: observe the endpoint and decide (the planner), the
    /// sequence's status, news and calls (the step Kubernetes mode takes too), record, call.
    fn sagemaker_one(
        &self,
        catalog: &Catalog,
        one: &One,
        aws: &mut dyn Endpoints,
        out: &mut PassReport,
    ) -> Result<Option<Duration>, Error> {
        let (ns, name, d, t) = (one.ns, one.name, one.d, one.t);
        let desired = match (&d.spec.version, &d.spec.alias) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(a)) => self.resolved_alias(catalog, ns, &d.spec.model, a),
            _ => None,
        };
        let state = self.store.rollout(ns, name)?.state;
        let owner = Owner {
            namespace: ns.to_string(),
            deployment: name.to_string(),
            model: d.spec.model.clone(),
        };
        let previous = self.deployment_status(ns, name)?;
        let basis = Basis {
            spec: &d.spec,
            previous: &previous,
            generation: None,
            now: (self.now)(),
        };
        // In Variants mode the step's metrics judge it beside the alarms (the step Kubernetes
        // mode takes too).
        let measured = if rollout::sagemaker::judged_by_metrics(t) {
            let key = (ns.to_string(), name.to_string());
            self.measure(d, &key, &previous, &state, basis.now)
        } else {
            Vec::new()
        };
        let (_, metrics) =
            rollout::metrics::step_verdict(&d.spec, previous.analysis.as_ref(), &state, &measured);
        let judged = (desired.as_deref(), metrics);
        let looked = self.look(catalog, one, aws, &owner, &state, judged);
        let (live, step) = match looked {
            Ok(x) => x,
            Err(e) => {
                // Looked at again at the next pass (`--interval`); `--once` ends with the error.
                let unseen = Endpoint {
                    target: t,
                    live: None,
                    healing: None,
                    drift: &previous.drift,
                };
                return self.failed(one, &state, &e, &basis, &unseen, out);
            }
        };
        let done = sequence::sequence(&state, step, live.as_ref(), t, &basis, &measured);
        if let Some(why) = &done.stalled {
            self.stalled(one, &state, why, &done.status, out)?;
            return Ok(None);
        }
        if done.write {
            self.record_step(one, &done, out)?;
        }
        match call(aws, one, &owner, &done.calls, self.progress) {
            // The calls did not happen: the state goes back to before this step, so the next
            // pass decides again.
            Some(e) => {
                let before = Endpoint {
                    target: t,
                    live: live.as_ref(),
                    healing: status::healing(&previous),
                    drift: &done.status.drift,
                };
                self.failed(one, &state, &e, &basis, &before, out)
            }
            None => Ok(done.wait),
        }
    }

    /// Observes the deployment's endpoint and asks the planner for the step from `state` toward
    /// the `desired` version, with what its metrics make of the step.
    fn look(
        &self,
        catalog: &Catalog,
        one: &One,
        aws: &mut dyn Endpoints,
        owner: &Owner,
        state: &RolloutState,
        (desired, metrics): (Option<&str>, rollout::Judgement),
    ) -> Result<(Option<Live>, Step), sm::Error> {
        let (ns, d) = (one.ns, one.d);
        let artifact = |v: &str| {
            catalog.version(ns, &d.spec.model, v).map(|mv| Artifact {
                uri: mv.spec.artifact.uri.clone(),
                digest: mv.spec.artifact.digest.clone(),
            })
        };
        sm::next_step(
            aws,
            one.t,
            owner,
            &d.spec.strategy,
            state,
            desired,
            &artifact,
            metrics,
            (self.now)(),
        )
    }

    /// Stalled by `e` (the endpoint could not be looked at, or a call failed): the sequence's
    /// failed status from `basis` and the endpoint as then known, recorded as [`Self::stalled`].
    fn failed(
        &self,
        one: &One,
        state: &RolloutState,
        e: &sm::Error,
        basis: &Basis,
        endpoint: &Endpoint,
        out: &mut PassReport,
    ) -> Result<Option<Duration>, Error> {
        let (status, _) = sequence::failed(state, &e.to_string(), e.failure(), basis, endpoint);
        self.stalled(one, state, &e.to_string(), &status, out)?;
        Ok(None)
    }

    /// Stalled: the state as recorded, the reason in the status and the pass's report.
    fn stalled(
        &self,
        one: &One,
        state: &RolloutState,
        why: &str,
        status: &ModelDeploymentStatus,
        out: &mut PassReport,
    ) -> Result<(), Error> {
        out.deploy_errors
            .push(format!("ModelDeployment/{}: {why}", one.name));
        self.record(one.ns, one.name, one.d, state, None, status, &[], out)
    }

    /// Records a step: the endpoint found changed outside Slipway (once), then the state, the
    /// status and the events.
    fn record_step(
        &self,
        one: &One,
        done: &sequence::Sequenced,
        out: &mut PassReport,
    ) -> Result<(), Error> {
        let (ns, name, d) = (one.ns, one.name, one.d);
        if let Some(message) = &done.drift_news {
            (self.progress)(&format!("{name}: {message}"));
            let mut h = self.history(
                Happened::OutOfSync,
                ns,
                &d.spec.model,
                format!("ModelDeployment/{name}"),
            );
            h.message = format!("{name}: {message}");
            h.data = json!({"drift": done.status.drift});
            self.apply(&[crate::edges::store::Write::History(h)])?;
        }
        self.record(
            ns,
            name,
            d,
            &done.state,
            None,
            &done.status,
            &done.events,
            out,
        )
    }

    /// Deletes the endpoints (and every config and Model made for them) of SageMaker
    /// deployments that are no longer declared, then forgets those deployments. An endpoint
    /// that cannot be deleted now is tried again at the next pass.
    fn collect_removed(
        &self,
        catalog: &Catalog,
        aws: &mut dyn Endpoints,
        out: &mut PassReport,
    ) -> Result<(), Error> {
        let models: std::collections::HashMap<(String, String), String> = self
            .store
            .rollouts()?
            .into_iter()
            .map(|(ns, name, r)| ((ns, name), r.model))
            .collect();
        for (ns, name, status) in self.store.statuses("ModelDeployment")? {
            let Some(endpoint) = serde_json::from_value::<ModelDeploymentStatus>(status)
                .ok()
                .and_then(|s| s.endpoint)
            else {
                continue;
            };
            let declared = catalog.objects().iter().any(|o| {
                o.key.namespace == ns
                    && o.key.name == name
                    && matches!(&o.resource, Resource::ModelDeployment(d)
                        if d.spec.target.sagemaker.as_ref().is_some_and(|t| t.endpoint_name == endpoint.name))
            });
            if declared {
                continue;
            }
            let at = Location {
                region: endpoint.region.clone(),
                endpoint_url: endpoint.endpoint_url.clone(),
            };
            let endpoint = endpoint.name;
            let model = models
                .get(&(ns.clone(), name.clone()))
                .cloned()
                .unwrap_or_default();
            let owner = Owner {
                namespace: ns.clone(),
                deployment: name.clone(),
                model: model.clone(),
            };
            match sm::delete_owned(aws, &at, &endpoint, &owner) {
                Ok(deleted) => {
                    let mut h = self.history(
                        Happened::EndpointDeleted,
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
                    self.apply(&[
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

/// The SageMaker deployment a step is for.
struct One<'a> {
    ns: &'a str,
    name: &'a str,
    d: &'a slipway_crd::ModelDeployment,
    t: &'a slipway_crd::model_deployment::SageMakerTarget,
}

/// Makes the step's calls in order, saying what each did; the error of the first that failed
/// (the rest are not made).
fn call(
    aws: &mut dyn Endpoints,
    one: &One,
    owner: &Owner,
    calls: &[crate::decide::rollout::sagemaker::Call],
    progress: &dyn Fn(&str),
) -> Option<sm::Error> {
    let at = Location::of(one.t);
    for call in calls {
        match aws.apply(&at, one.t, owner, call) {
            Ok(notes) => {
                for n in notes {
                    progress(&format!("{}: {n}", one.name));
                }
            }
            Err(e) => return Some(e),
        }
    }
    None
}
