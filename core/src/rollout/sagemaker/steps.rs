//! The step decisions of a SageMaker rollout: `Guardrails` mode (SageMaker shifts traffic) and
//! `Variants` mode (Slipway shifts weights between two production variants).

use super::*;

/// Decides the next step of a deployment on a SageMaker endpoint. `desired_version` is what
/// the alias (or pin) asks for; `want` builds the desired endpoint for a version (counts kept
/// from `live`); `live` is the endpoint now (None: it does not exist).
pub fn decide(
    state: &RolloutState,
    desired_version: Option<&str>,
    want: &dyn Fn(&str) -> Option<Desired>,
    guardrails: &Guardrails,
    live: Option<&Live>,
) -> Step {
    let mut next = state.clone();
    let mut step = Step {
        state: state.clone(),
        calls: Vec::new(),
        events: Vec::new(),
        drift: Vec::new(),
        requeue_after: None,
    };
    let poll = Some(crate::limits::REMOTE_POLL);
    // The alias moved back to a rejected version: it is tried again only after another move.
    if desired_version != state.last_desired.as_deref()
        && let Some(v) = desired_version
    {
        next.rejected.remove(v);
    }
    next.last_desired = desired_version.map(str::to_string);
    let Some(target) = desired_version.or(state.stable.as_deref()) else {
        step.state = next;
        return step;
    };
    let Some(live) = live else {
        // No endpoint: create it for the desired version (or the stable one if the desired
        // version was rejected).
        let version = if next.rejected.contains(target) {
            state.stable.clone().unwrap_or_else(|| target.to_string())
        } else {
            target.to_string()
        };
        if let Some(d) = want(&version) {
            if state.stable.is_some() {
                step.drift
                    .push(format!("endpoint {} does not exist", d.endpoint));
            }
            next.candidate = Some(version.clone());
            next.phase = DeploymentPhase::Progressing;
            next.traffic = BTreeMap::new();
            step.events.push((
                EventKind::RolloutStarted,
                version.clone(),
                format!("creating endpoint {} with config {}", d.endpoint, d.config),
            ));
            step.calls.push(Call::Create(d));
        }
        step.state = next;
        step.requeue_after = poll;
        return step;
    };
    match live.status.as_str() {
        "InService" => {}
        "Failed" => {
            if let Some(c) = next.candidate.take() {
                let why = live
                    .failure
                    .clone()
                    .unwrap_or_else(|| "SageMaker reports the endpoint Failed".into());
                next.rejected.insert(c.clone());
                next.phase = DeploymentPhase::Failed;
                step.events.push((EventKind::RolloutFailed, c, why));
            }
            step.state = next;
            return step;
        }
        _ => {
            // Creating, Updating, RollingBack, SystemUpdating: watch.
            if let (Some(c), Some((_, share))) = (&state.candidate, &live.pending) {
                let percent = (share * 100.0).round() as u32;
                next.traffic = state
                    .stable
                    .iter()
                    .map(|s| (s.clone(), 100 - percent.min(100)))
                    .chain(std::iter::once((c.clone(), percent.min(100))))
                    .filter(|(_, w)| *w > 0)
                    .collect();
            }
            step.state = next;
            step.requeue_after = poll;
            return step;
        }
    }
    let serving = live.versions();
    // A rollout under way has ended: the candidate serves, or SageMaker brought the old config
    // back (a failed or rolled-back update is never a success).
    if let Some(c) = state.candidate.clone() {
        if serving == [c.clone()] {
            next.stable = Some(c.clone());
            next.candidate = None;
            next.phase = DeploymentPhase::Healthy;
            next.traffic = BTreeMap::from([(c.clone(), 100)]);
            step.events.push((
                EventKind::RolloutSucceeded,
                c.clone(),
                format!(
                    "endpoint {} serves version {c} ({})",
                    live_name(want, &c),
                    live.config
                ),
            ));
            step.calls.push(Call::Collect {
                config: live.config.clone(),
                models: live.variants.iter().map(|v| v.model.clone()).collect(),
            });
        } else {
            let why = live.failure.clone().unwrap_or_else(|| {
                format!("SageMaker returned the endpoint to config {}", live.config)
            });
            next.candidate = None;
            next.rejected.insert(c.clone());
            next.phase = DeploymentPhase::RolledBack;
            next.traffic = serving.iter().map(|v| (v.clone(), 100)).take(1).collect();
            step.events.push((
                EventKind::RolledBack,
                c.clone(),
                format!("version {c} was rolled back: {why}"),
            ));
        }
        step.state = next;
        return step;
    }
    // Nothing under way: start a rollout, or heal drift.
    let stable = state.stable.clone().or_else(|| serving.first().cloned());
    if !next.rejected.contains(target) && stable.as_deref() != Some(target) {
        if let Some(d) = want(target) {
            next.candidate = Some(target.to_string());
            next.phase = DeploymentPhase::Progressing;
            next.stable = stable;
            step.events.push((
                EventKind::RolloutStarted,
                target.to_string(),
                format!(
                    "UpdateEndpoint to config {} ({})",
                    d.config,
                    guardrails.describe()
                ),
            ));
            step.calls.push(Call::Update(d, Some(guardrails.clone())));
            step.requeue_after = poll;
        }
        step.state = next;
        return step;
    }
    if let Some(s) = &stable
        && let Some(d) = want(s)
    {
        step.drift = drift(&d, live);
        if !step.drift.is_empty() {
            let weights_only = step.drift.iter().all(|x| x.contains("of traffic"));
            step.calls.push(if weights_only {
                Call::Weights(d)
            } else {
                Call::Update(d, None)
            });
            step.requeue_after = poll;
        }
        next.stable = Some(s.clone());
        if next.phase == DeploymentPhase::Progressing {
            next.phase = DeploymentPhase::Healthy;
        }
        next.traffic = BTreeMap::from([(s.clone(), 100)]);
    }
    step.state = next;
    step
}

/// The endpoint for a traffic split (version → percent) in `Variants` mode: one production
/// variant per version, its weight the percent (a version being started may take 0%).
/// `artifact` gives a version's artifact; `counts` the live instance counts by variant name.
pub fn desired_split(
    target: &SageMakerTarget,
    split: &BTreeMap<String, u32>,
    artifact: &dyn Fn(&str) -> Option<Artifact>,
    counts: &BTreeMap<String, u32>,
) -> Option<Desired> {
    let mut variants = Vec::new();
    for (version, percent) in split {
        let a = artifact(version)?;
        let name = variant_name(version);
        let count = counts
            .get(&name)
            .or_else(|| counts.values().max())
            .copied()
            .unwrap_or(target.instance_count)
            .max(1);
        variants.push(Variant {
            model: model_name(&target.endpoint_name, version, &a.digest, &target.image),
            name,
            version: version.clone(),
            image: target.image.clone(),
            artifact: a.uri,
            instance_type: target.instance_type.clone(),
            instance_count: count,
            weight: *percent as f32,
        });
    }
    let config = config_name(&target.endpoint_name, &variants);
    Some(Desired {
        endpoint: target.endpoint_name.clone(),
        config,
        variants,
    })
}

/// The split a live endpoint serves, in percent by version.
fn live_split(live: &Live) -> BTreeMap<String, u32> {
    let total: f32 = live.variants.iter().map(|v| v.weight).sum();
    live.variants
        .iter()
        .filter_map(|v| {
            let version = v.name.strip_prefix('v')?.to_string();
            let percent = if total > 0.0 {
                (v.weight / total * 100.0).round() as u32
            } else {
                0
            };
            Some((version, percent))
        })
        .collect()
}

/// Decides the next step in `Variants` mode: the rollout state machine shared with the other
/// targets ([`crate::rollout::decide`]) moves the weights; its actions become a new config when
/// the set of variants changes (a version starts or stops) and
/// `UpdateEndpointWeightsAndCapacities` when only weights change. `want` builds the endpoint for
/// a split; `analysis` is the verdict of the rollback alarms.
pub fn decide_variants(
    state: &RolloutState,
    desired_version: Option<&str>,
    policy: &crate::rollout::Policy<'_>,
    want: &dyn Fn(&BTreeMap<String, u32>) -> Option<Desired>,
    live: Option<&Live>,
    analysis: crate::rollout::Judgement,
    now: chrono::DateTime<chrono::Utc>,
) -> Step {
    use crate::rollout::{Action, Observation};
    let poll = Some(crate::limits::REMOTE_POLL);
    let mut step = Step {
        state: state.clone(),
        calls: Vec::new(),
        events: Vec::new(),
        drift: Vec::new(),
        requeue_after: None,
    };
    let Some(live) = live else {
        // No endpoint yet: create it serving the desired (or stable) version alone.
        let Some(v) = desired_version.or(state.stable.as_deref()) else {
            return step;
        };
        if let Some(d) = want(&BTreeMap::from([(v.to_string(), 100)])) {
            if state.stable.is_some() {
                step.drift
                    .push(format!("endpoint {} does not exist", d.endpoint));
            }
            step.state.stable = Some(v.to_string());
            step.state.candidate = None;
            step.state.traffic = BTreeMap::from([(v.to_string(), 100)]);
            step.state.phase = DeploymentPhase::Progressing;
            step.state.last_desired = desired_version.map(str::to_string);
            step.events.push((
                EventKind::RolloutStarted,
                v.to_string(),
                format!("creating endpoint {} with config {}", d.endpoint, d.config),
            ));
            step.calls.push(Call::Create(d));
            step.requeue_after = poll;
        }
        return step;
    };
    if live.status != "InService" {
        step.requeue_after = poll;
        return step;
    }
    let serving = live_split(live);
    // A first endpoint that came up: its version is the stable one.
    if state.stable.is_none() && state.candidate.is_none() && serving.len() == 1 {
        step.state.stable = serving.keys().next().cloned();
        step.state.phase = DeploymentPhase::Healthy;
        step.state.traffic = serving.clone();
        if let Some(v) = &step.state.stable {
            step.events.push((
                EventKind::RolloutSucceeded,
                v.clone(),
                format!(
                    "endpoint {} serves version {v} ({})",
                    live_name_of(live),
                    live.config
                ),
            ));
        }
        step.calls.push(Call::Collect {
            config: live.config.clone(),
            models: live.variants.iter().map(|v| v.model.clone()).collect(),
        });
        return step;
    }
    let candidate_ready = state
        .candidate
        .as_ref()
        .or(desired_version.map(str::to_string).as_ref())
        .is_some_and(|c| serving.contains_key(c));
    let observation = Observation {
        candidate_ready,
        analysis: if state.candidate.is_some() {
            analysis
        } else {
            crate::rollout::Judgement::Pass
        },
    };
    let r = crate::rollout::decide(state, desired_version, policy, &observation, now);
    let mut split = serving.clone();
    for a in &r.actions {
        match a {
            Action::Start(v) => {
                split.entry(v.clone()).or_insert(0);
            }
            Action::Route(w) => {
                let started: Vec<String> = split
                    .iter()
                    .filter(|(v, _)| !w.contains_key(*v))
                    .map(|(v, _)| v.clone())
                    .collect();
                split = w.clone();
                // A version routed nothing keeps its variant until it is stopped.
                for v in started {
                    split.entry(v).or_insert(0);
                }
            }
            Action::Stop(v) => {
                split.remove(v);
            }
            Action::Event {
                kind,
                version,
                message,
            } => step.events.push((*kind, version.clone(), message.clone())),
        }
    }
    step.state = r.state;
    step.requeue_after = r.requeue_after.or(if step.state.candidate.is_some() {
        poll
    } else {
        None
    });
    if split.is_empty() {
        return step;
    }
    let Some(d) = want(&split) else {
        return step;
    };
    let same_variants = {
        let mut a: Vec<(&str, &str)> = d
            .variants
            .iter()
            .map(|v| (v.name.as_str(), v.model.as_str()))
            .collect();
        let mut b: Vec<(&str, &str)> = live
            .variants
            .iter()
            .map(|v| (v.name.as_str(), v.model.as_str()))
            .collect();
        a.sort();
        b.sort();
        a == b
    };
    let differences = drift(&d, live);
    if !same_variants {
        step.calls.push(Call::Update(d, None));
        step.requeue_after = step.requeue_after.or(poll);
    } else if !differences.is_empty() {
        step.calls.push(Call::Weights(d.clone()));
    }
    if r.actions.is_empty() && !differences.is_empty() {
        // Nothing was decided, yet the endpoint differs from what the state says: drift.
        step.drift = differences;
    }
    // Settled and in sync: what earlier configs and Models remain is collected (idempotent).
    if step.state.candidate.is_none() && step.calls.is_empty() && r.actions.is_empty() {
        step.calls.push(Call::Collect {
            config: live.config.clone(),
            models: live.variants.iter().map(|v| v.model.clone()).collect(),
        });
    }
    step
}

fn live_name_of(live: &Live) -> String {
    live.config
        .rsplit_once('-')
        .map(|(head, _)| head.to_string())
        .unwrap_or_default()
}

fn live_name(want: &dyn Fn(&str) -> Option<Desired>, version: &str) -> String {
    want(version).map(|d| d.endpoint).unwrap_or_default()
}
