//! Rolling `ModelDeployment`s with a local target out: the rollout state machine decides, the
//! local target acts, the store records.

use crate::decide::events::Event as Happened;
use std::time::Duration;

use serde::Deserialize as _;
use serde_json::json;
use slipway_crd::model_deployment::ModelDeploymentStatus;

use super::{Error, PassReport, Reconciler};
use crate::decide::catalog::{Catalog, Resource};
use crate::decide::outcome::{Stall, StallReason, stall_conditions};
use crate::decide::rollout::{self, Action, Judgement};
use crate::edges::serving::local::{Key, LocalTarget, Model};
use crate::edges::store::{DeploymentRecord, Write};

impl Reconciler<'_> {
    /// One rollout step for every local deployment. Returns when to look again (None: all settled).
    pub fn deploy(
        &self,
        catalog: &Catalog,
        target: &mut LocalTarget,
        out: &mut PassReport,
    ) -> Result<Option<Duration>, Error> {
        self.record_restarts(catalog, target)?;
        let mut requeue: Option<Duration> = None;
        let mut declared: Vec<Key> = Vec::new();
        for obj in catalog.objects() {
            let Resource::ModelDeployment(d) = &obj.resource else {
                continue;
            };
            let Some(spec) = &d.spec.target.local else {
                continue;
            };
            let key: Key = (obj.key.namespace.clone(), obj.key.name.clone());
            declared.push(key.clone());
            let ensured = target.ensure(&key, spec);
            if let Ok(Some(adopted)) = &ensured {
                (self.progress)(adopted);
            }
            if let Err(e) = ensured {
                // Its port is taken (or the router stopped): said in its status as a stall, and
                // looked at again on the next pass.
                out.deploy_errors.push(e.to_string());
                self.stall(&key, e.to_string())?;
                continue;
            }
            requeue = min(requeue, self.deploy_one(catalog, d, &key, target, out)?);
        }
        // A deployment removed (or moved to another target) stops serving here.
        target.retire_except(&declared);
        Ok(requeue)
    }

    /// Records the servers the target started again after they stopped.
    fn record_restarts(&self, catalog: &Catalog, target: &mut LocalTarget) -> Result<(), Error> {
        for ((ns, name), version, message) in target.supervise() {
            let model = catalog
                .objects()
                .iter()
                .find_map(|o| match &o.resource {
                    Resource::ModelDeployment(d) if o.key.namespace == ns && o.key.name == name => {
                        Some(d.spec.model.clone())
                    }
                    _ => None,
                })
                .unwrap_or_default();
            let mut h = self.history(
                Happened::ServerRestarted,
                &ns,
                &model,
                format!("ModelDeployment/{name}"),
            );
            h.version = Some(version);
            h.message = message.clone();
            (self.progress)(&message);
            self.apply(&[Write::History(h)])?;
        }
        Ok(())
    }

    /// Writes the deployment's `Stalled` condition (`TargetRefused`) when it says something new;
    /// the next step's status, written when the target accepts it again, has none.
    fn stall(&self, key: &Key, why: String) -> Result<(), Error> {
        let (ns, name) = key;
        let mut status = self.deployment_status(ns, name)?;
        let stall = Stall {
            reason: StallReason::TargetRefused,
            message: why,
        };
        let now = (self.now)();
        if let Some(next) = stall_conditions(&status.conditions, Some(&stall), None, now) {
            // Said once, when it is new (the report of `--once` lists it too).
            (self.progress)(&format!(
                "error: ModelDeployment {ns}/{name}: {}",
                stall.message
            ));
            status.conditions = next;
            self.apply(&[Write::Status {
                kind: "ModelDeployment".into(),
                namespace: ns.clone(),
                name: name.clone(),
                status: serde_json::to_value(&status)?,
            }])?;
        }
        Ok(())
    }

    /// One rollout step of one local deployment: resume what the state says serves, observe,
    /// decide, record, carry out. Returns when to look again.
    fn deploy_one(
        &self,
        catalog: &Catalog,
        d: &slipway_crd::ModelDeployment,
        key: &Key,
        target: &mut LocalTarget,
        out: &mut PassReport,
    ) -> Result<Option<Duration>, Error> {
        let (ns, name) = key;
        let desired = match (&d.spec.version, &d.spec.alias) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(a)) => self.resolved_alias(catalog, ns, &d.spec.model, a),
            _ => None,
        };
        let uri = |v: &str| {
            catalog
                .version(ns, &d.spec.model, v)
                .map(|v| Model {
                    uri: v.spec.artifact.uri.clone(),
                    digest: v.spec.artifact.digest.clone(),
                })
                .unwrap_or_default()
        };
        let state = self.store.rollout(ns, name)?.state;
        resume(key, &state, target, &uri, out);
        let shadows = |state: &rollout::RolloutState| {
            let resolve = |a: &str| self.resolved_alias(catalog, ns, &d.spec.model, a);
            rollout::shadow::standing::versions(&d.spec.shadows, &resolve, state)
        };
        // A shadow is mirrored to once its server answers its health check (like a candidate:
        // one still loading would count as disagreeing).
        let routing = |state: &rollout::RolloutState, target: &mut LocalTarget| {
            let ready = shadows(state)
                .into_iter()
                .filter(|(v, _)| target.running(key, v) && target.ready(key, v))
                .collect();
            rollout::routing::Routing::of(&d.spec.strategy, state).with_shadows(ready)
        };
        let now_routed = routing(&state, target);
        target.set_routing(key, &now_routed);
        // Observe → decide (the step Kubernetes mode takes too).
        let previous = self.deployment_status(ns, name)?;
        let now = (self.now)();
        let measured = self.measure(d, key, &previous, &state, now);
        let input = rollout::step::Input {
            spec: &d.spec,
            previous: &previous,
            state: &state,
            desired: desired.as_deref(),
            generation: None,
            poll: crate::decide::limits::LOCAL_POLL,
            now,
            measured: &measured,
            resolve: &|a| self.resolved_alias(catalog, ns, &d.spec.model, a),
        };
        let look = rollout::step::looked_at(&state, desired.as_deref()).map(|v| {
            let ready = target.ready(key, v);
            rollout::step::Look {
                ready,
                waiting: if ready { None } else { target.waiting(key, v) },
                // The router's window counts only for a candidate under way.
                judgement: match &state.candidate {
                    Some(_) => {
                        rollout::analyze(d.spec.strategy.analysis.as_ref(), &target.window(key, v))
                    }
                    None => Judgement::Pass,
                },
            }
        });
        let outcome = rollout::step::step(&input, look);
        if !outcome.write {
            keep_shadows(key, &state, &shadows(&state), target, &uri, out);
            return Ok(outcome.wait);
        }
        let (step, status) = (outcome.step, outcome.status);
        let events: Vec<(rollout::EventKind, String, String)> = step
            .events()
            .map(|(k, v, m)| (*k, v.to_string(), m.to_string()))
            .collect();
        let address = target.address(key).map(|a| a.to_string());
        let next_routed = routing(&step.state, target);
        target.set_routing(key, &next_routed);
        // Persist first: a restart then resumes from the new state and re-applies it.
        self.record(ns, name, d, &step.state, address, &status, &events, out)?;
        for a in step.actions {
            match a {
                Action::Start(v) => {
                    if let Err(e) = target.start(key, &v, &uri(&v)) {
                        out.deploy_errors.push(e.to_string());
                    }
                }
                Action::Route(w) => target.route(key, &w),
                Action::Stop(v) => target.stop(key, &v),
                Action::Event { .. } => {}
            }
        }
        keep_shadows(key, &step.state, &shadows(&step.state), target, &uri, out);
        Ok(outcome.wait)
    }
}

impl Reconciler<'_> {
    /// Measures the deployment's metrics that are due ([`rollout::metrics::due`]) with the
    /// operator's secrets and destinations, and judges each reading.
    pub(super) fn measure(
        &self,
        d: &slipway_crd::ModelDeployment,
        (ns, name): &Key,
        previous: &ModelDeploymentStatus,
        state: &rollout::RolloutState,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(String, slipway_crd::analysis::Measurement)> {
        let due = rollout::metrics::due(&d.spec, previous, state, (ns, name), now);
        let readings: Vec<Vec<rollout::metrics::Reading>> = due
            .iter()
            .map(|q| {
                let ask = |r| {
                    crate::edges::providers::measure(r, &|s| self.allowed.resolve(s), &|url| {
                        self.allowed.destination(url)
                    })
                };
                q.requests.iter().map(ask).collect()
            })
            .collect();
        rollout::metrics::judge_all(&d.spec, &due, &readings, (self.now)())
    }
}

/// Resume: after a restart, bring back what the persisted state says serves, and route to it
/// once its servers answer their health checks (bounded wait).
fn resume(
    key: &Key,
    state: &rollout::RolloutState,
    target: &mut LocalTarget,
    uri: &dyn Fn(&str) -> Model,
    out: &mut PassReport,
) {
    let mut resumed = Vec::new();
    for v in state.traffic.keys().chain(state.candidate.iter()) {
        if !target.running(key, v) {
            match target.start(key, v, &uri(v)) {
                Ok(()) => resumed.push(v.clone()),
                Err(e) => out.deploy_errors.push(e.to_string()),
            }
        }
    }
    let deadline = std::time::Instant::now() + crate::decide::limits::RESUME_WAIT;
    while resumed
        .iter()
        .any(|v| state.traffic.contains_key(v) && !target.ready(key, v))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(crate::decide::limits::LOCAL_POLL / 5);
    }
    let routed: std::collections::BTreeMap<String, u32> = state
        .traffic
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(k, w)| (k.clone(), *w))
        .collect();
    if target.weights(key) != routed {
        target.route(key, &state.traffic);
    }
}

/// Runs the servers of the standing shadows `shadows` and stops every other server no longer
/// needed: one neither routed nor rolled out (a shadow taken off the list, or one that became
/// the serving version's twin).
fn keep_shadows(
    key: &Key,
    state: &rollout::RolloutState,
    shadows: &[(String, u32)],
    target: &mut LocalTarget,
    uri: &dyn Fn(&str) -> Model,
    out: &mut PassReport,
) {
    for (v, _) in shadows {
        if !target.running(key, v)
            && let Err(e) = target.start(key, v, &uri(v))
        {
            out.deploy_errors.push(e.to_string());
        }
    }
    let needed = |v: &String| {
        state.traffic.contains_key(v)
            || state.stable.as_ref() == Some(v)
            || state.candidate.as_ref() == Some(v)
            || shadows.iter().any(|(s, _)| s == v)
    };
    for v in target.versions(key) {
        if !needed(&v) {
            target.stop(key, &v);
        }
    }
}

impl Reconciler<'_> {
    /// A deployment's status as last recorded (empty when none, or when it was written in an
    /// older shape that does not read as the CRD's status type).
    pub(super) fn deployment_status(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<ModelDeploymentStatus, Error> {
        Ok(self
            .status("ModelDeployment", ns, name)?
            .and_then(|v| ModelDeploymentStatus::deserialize(&*v).ok())
            .unwrap_or_default())
    }

    /// Records one rollout step: the state, the deployment's status and a history entry per
    /// event (in one transaction).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        &self,
        ns: &str,
        name: &str,
        d: &slipway_crd::ModelDeployment,
        state: &rollout::RolloutState,
        address: Option<String>,
        status: &ModelDeploymentStatus,
        events: &[(rollout::EventKind, String, String)],
        out: &mut PassReport,
    ) -> Result<(), Error> {
        let mut writes = vec![
            Write::Rollout {
                namespace: ns.to_string(),
                name: name.to_string(),
                record: DeploymentRecord {
                    state: state.clone(),
                    model: d.spec.model.clone(),
                    address,
                },
            },
            Write::Status {
                kind: "ModelDeployment".into(),
                namespace: ns.to_string(),
                name: name.to_string(),
                status: serde_json::to_value(status)?,
            },
        ];
        for (kind, version, message) in events {
            let mut h = self.history(
                Happened::Rollout(*kind),
                ns,
                &d.spec.model,
                format!("ModelDeployment/{name}"),
            );
            h.version = Some(version.clone());
            h.alias = d.spec.alias.clone();
            h.message = format!("{name}: {message}");
            h.data = json!({"traffic": state.traffic});
            (self.progress)(&h.message);
            out.rollout_events.push(h.message.clone());
            writes.push(Write::History(h));
        }
        self.apply(&writes)?;
        Ok(())
    }
}

/// The earlier of two optional waits.
pub(super) fn min(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
