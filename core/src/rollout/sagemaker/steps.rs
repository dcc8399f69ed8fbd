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
    // `step.state` is the next state throughout; `state` the one before.
    let mut step = keep(state);
    // The alias moved back to a rejected version: it is tried again only after another move.
    if desired_version != state.last_desired.as_deref()
        && let Some(v) = desired_version
    {
        step.state.rejected.remove(v);
    }
    step.state.last_desired = desired_version.map(str::to_string);
    let Some(target) = desired_version.or(state.stable.as_deref()) else {
        return step;
    };
    let Some(live) = live else {
        create(state, &mut step, target, want);
        return step;
    };
    match live.status.as_str() {
        "InService" => {}
        "Failed" => {
            fail(&mut step, live);
            return step;
        }
        // Creating, Updating, RollingBack, SystemUpdating: watch.
        _ => {
            watch(state, &mut step, live);
            return step;
        }
    }
    if let Some(c) = &state.candidate {
        conclude(&mut step, c, want, live);
    } else {
        start_or_heal(state, &mut step, target, want, guardrails, live);
    }
    step
}

/// A step that keeps `state` and makes no calls; the phases of a decision fill it in.
fn keep(state: &RolloutState) -> Step {
    Step {
        state: state.clone(),
        calls: Vec::new(),
        events: Vec::new(),
        drift: Vec::new(),
        requeue_after: None,
    }
}

/// The call that collects what earlier configs and Models of a live endpoint remain.
fn collect(live: &Live) -> Call {
    Call::Collect {
        config: live.config.clone(),
        models: live.variants.iter().map(|v| v.model.clone()).collect(),
    }
}

/// No endpoint: creates it for the desired version (or the stable one if the desired version
/// was rejected).
fn create(
    state: &RolloutState,
    step: &mut Step,
    target: &str,
    want: &dyn Fn(&str) -> Option<Desired>,
) {
    let version = if step.state.rejected.contains(target) {
        state.stable.clone().unwrap_or_else(|| target.to_string())
    } else {
        target.to_string()
    };
    if let Some(d) = want(&version) {
        if state.stable.is_some() {
            step.drift
                .push(format!("endpoint {} does not exist", d.endpoint));
        }
        step.state.candidate = Some(version.clone());
        step.state.phase = DeploymentPhase::Progressing;
        step.state.traffic = BTreeMap::new();
        step.events.push((
            EventKind::RolloutStarted,
            version.clone(),
            format!("creating endpoint {} with config {}", d.endpoint, d.config),
        ));
        step.calls.push(Call::Create(d));
    }
    step.requeue_after = Some(crate::limits::REMOTE_POLL);
}

/// The endpoint is Failed: the candidate under way (if any) is rejected and the rollout fails.
fn fail(step: &mut Step, live: &Live) {
    if let Some(c) = step.state.candidate.take() {
        let why = live
            .failure
            .clone()
            .unwrap_or_else(|| "SageMaker reports the endpoint Failed".into());
        step.state.rejected.insert(c.clone());
        step.state.phase = DeploymentPhase::Failed;
        step.events.push((EventKind::RolloutFailed, c, why));
    }
}

/// SageMaker is still working on the endpoint: records the share of traffic the candidate has
/// so far, and looks again soon.
fn watch(state: &RolloutState, step: &mut Step, live: &Live) {
    if let (Some(c), Some((_, share))) = (&state.candidate, &live.pending) {
        let percent = (share * 100.0).round() as u32;
        step.state.traffic = state
            .stable
            .iter()
            .map(|s| (s.clone(), 100 - percent.min(100)))
            .chain(std::iter::once((c.clone(), percent.min(100))))
            .filter(|(_, w)| *w > 0)
            .collect();
    }
    step.requeue_after = Some(crate::limits::REMOTE_POLL);
}

/// A rollout under way has ended: the candidate `c` serves, or SageMaker brought the old config
/// back (a failed or rolled-back update is never a success).
fn conclude(step: &mut Step, c: &str, want: &dyn Fn(&str) -> Option<Desired>, live: &Live) {
    let serving = live.versions();
    if serving == [c] {
        step.state.stable = Some(c.to_string());
        step.state.candidate = None;
        step.state.phase = DeploymentPhase::Healthy;
        step.state.traffic = BTreeMap::from([(c.to_string(), 100)]);
        step.events.push((
            EventKind::RolloutSucceeded,
            c.to_string(),
            format!(
                "endpoint {} serves version {c} ({})",
                live_name(want, c),
                live.config
            ),
        ));
        step.calls.push(collect(live));
    } else {
        let why = live.failure.clone().unwrap_or_else(|| {
            format!("SageMaker returned the endpoint to config {}", live.config)
        });
        step.state.candidate = None;
        step.state.rejected.insert(c.to_string());
        step.state.phase = DeploymentPhase::RolledBack;
        step.state.traffic = serving.iter().map(|v| (v.clone(), 100)).take(1).collect();
        step.events.push((
            EventKind::RolledBack,
            c.to_string(),
            format!("version {c} was rolled back: {why}"),
        ));
    }
}

/// Nothing under way: starts a rollout to `target` (unless it was rejected or already is the
/// stable version), or else heals drift from the stable version.
fn start_or_heal(
    state: &RolloutState,
    step: &mut Step,
    target: &str,
    want: &dyn Fn(&str) -> Option<Desired>,
    guardrails: &Guardrails,
    live: &Live,
) {
    let stable = state
        .stable
        .clone()
        .or_else(|| live.versions().first().cloned());
    if !step.state.rejected.contains(target) && stable.as_deref() != Some(target) {
        if let Some(d) = want(target) {
            step.state.candidate = Some(target.to_string());
            step.state.phase = DeploymentPhase::Progressing;
            step.state.stable = stable;
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
            step.requeue_after = Some(crate::limits::REMOTE_POLL);
        }
        return;
    }
    if let Some(s) = &stable
        && let Some(d) = want(s)
    {
        heal_drift(step, s, d, live);
    }
}

/// The stable version `s` should be serving as `d`: any drift of the live endpoint becomes a
/// call (new weights when only weights drifted, else an update), and the state records `s` as
/// serving all traffic.
fn heal_drift(step: &mut Step, s: &str, d: Desired, live: &Live) {
    step.drift = drift(&d, live);
    if !step.drift.is_empty() {
        let weights_only = step.drift.iter().all(|x| x.contains("of traffic"));
        step.calls.push(if weights_only {
            Call::Weights(d)
        } else {
            Call::Update(d, None)
        });
        step.requeue_after = Some(crate::limits::REMOTE_POLL);
    }
    step.state.stable = Some(s.to_string());
    if step.state.phase == DeploymentPhase::Progressing {
        step.state.phase = DeploymentPhase::Healthy;
    }
    step.state.traffic = BTreeMap::from([(s.to_string(), 100)]);
}

/// The endpoint for a traffic split (version → percent) in `Variants` mode: one production
/// variant per version, its weight the percent (a version being started may take 0%) — but
/// the `shadow` (version, percent of requests copied), when it has no traffic: a shadow variant
/// whose weight is that share of the production variants' total, on that share of the
/// instances. `artifact` gives a version's artifact; `counts` the live instance counts of the
/// production variants by name.
pub fn desired_split(
    target: &SageMakerTarget,
    split: &BTreeMap<String, u32>,
    artifact: &dyn Fn(&str) -> Option<Artifact>,
    counts: &BTreeMap<String, u32>,
    shadow: Option<(&str, u32)>,
) -> Option<Desired> {
    // SageMaker takes a shadow variant beside one production variant only: beside more (a
    // variant left at 0%), the candidate stays a production variant until they are gone.
    let others = split
        .keys()
        .filter(|v| shadow.is_none_or(|(s, _)| s != v.as_str()));
    let shadow = shadow
        .filter(|(v, _)| split.get(*v).copied().unwrap_or(0) == 0)
        .filter(|_| others.count() == 1);
    let production: u32 = split.values().sum();
    let mut variants = Vec::new();
    let all = split
        .iter()
        .filter(|(v, _)| shadow.is_none_or(|(s, _)| s != v.as_str()))
        .map(|(v, p)| (v.as_str(), *p, false))
        .chain(shadow.map(|(v, m)| (v, production * m.min(100) / 100, true)));
    for (version, percent, is_shadow) in all {
        let a = artifact(version)?;
        let name = variant_name(version);
        let count = counts
            .get(&name)
            .or_else(|| counts.values().max())
            .copied()
            .unwrap_or(target.instance_count)
            .max(1);
        // A shadow gets its share of the requests: its share of the instances, at least one.
        let count = match shadow.filter(|_| is_shadow) {
            Some((_, m)) => crate::rollout::replicas::mirror_pods(m, count),
            None => count,
        };
        variants.push(Variant {
            model: model_name(&target.endpoint_name, version, &a.digest, &target.image),
            name,
            version: version.to_string(),
            image: target.image.clone(),
            artifact: a.uri,
            instance_type: target.instance_type.clone(),
            instance_count: count,
            weight: percent as f32,
            shadow: is_shadow,
        });
    }
    let config = config_name(&target.endpoint_name, &variants);
    Some(Desired {
        endpoint: target.endpoint_name.clone(),
        config,
        variants,
    })
}

/// Builds the endpoint for a split (version → percent) and a shadow (version, percent
/// copied): [`desired_split`] with the target's artifacts and counts.
pub type WantSplit<'a> =
    dyn Fn(&BTreeMap<String, u32>, Option<(&str, u32)>) -> Option<Desired> + 'a;

/// The split a live endpoint's production variants serve, in percent by version.
fn live_split(live: &Live) -> BTreeMap<String, u32> {
    let production = || live.variants.iter().filter(|v| !v.shadow);
    let total: f32 = production().map(|v| v.weight).sum();
    production()
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
/// `UpdateEndpointWeightsAndCapacities` when only weights change. A shadow step's candidate is
/// a shadow variant beside them. `want` builds the endpoint for a split and a shadow
/// ([`desired_split`]); `analysis` is the verdict of the rollback alarms.
pub fn decide_variants(
    state: &RolloutState,
    desired_version: Option<&str>,
    policy: &crate::rollout::Policy<'_>,
    want: &WantSplit,
    live: Option<&Live>,
    analysis: crate::rollout::Judgement,
    now: chrono::DateTime<chrono::Utc>,
) -> Step {
    use crate::rollout::Action;
    let poll = Some(crate::limits::REMOTE_POLL);
    let mut step = keep(state);
    let Some(live) = live else {
        create_serving_one(state, &mut step, desired_version, want);
        return step;
    };
    if live.status != "InService" {
        step.requeue_after = poll;
        return step;
    }
    let serving = live_split(live);
    // A first endpoint that came up: its version is the stable one.
    if state.stable.is_none() && state.candidate.is_none() && serving.len() == 1 {
        adopt_first(&mut step, live, &serving);
        return step;
    }
    // A shadow step's candidate is ready once the config with its shadow variant serves.
    let shadow_now = shadow_of(state, policy.strategy).and_then(|(c, m)| {
        let mut split = serving.clone();
        split.entry(c.clone()).or_insert(0);
        let d = want(&split, Some((&c, m)))?;
        let listed = live
            .variants
            .iter()
            .any(|v| v.shadow && v.name == variant_name(&c));
        (listed || d.config == live.config).then_some(c)
    });
    let observation = observe(state, desired_version, &serving, shadow_now, analysis);
    let r = crate::rollout::decide(state, desired_version, policy, &observation, now);
    for a in &r.actions {
        if let Action::Event {
            kind,
            version,
            message,
        } = a
        {
            step.events.push((*kind, version.clone(), message.clone()));
        }
    }
    let split = split_after(&serving, &r.actions);
    step.state = r.state;
    step.requeue_after = r.requeue_after.or(if step.state.candidate.is_some() {
        poll
    } else {
        None
    });
    let shadow = shadow_of(&step.state, policy.strategy);
    if !split.is_empty()
        && let Some(d) = want(&split, shadow.as_ref().map(|(c, m)| (c.as_str(), *m)))
    {
        act(&mut step, d, live, r.actions.is_empty());
    }
    step
}

/// No endpoint yet: creates it serving the desired (or stable) version alone.
fn create_serving_one(
    state: &RolloutState,
    step: &mut Step,
    desired_version: Option<&str>,
    want: &WantSplit,
) {
    let Some(v) = desired_version.or(state.stable.as_deref()) else {
        return;
    };
    if let Some(d) = want(&BTreeMap::from([(v.to_string(), 100)]), None) {
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
        step.requeue_after = Some(crate::limits::REMOTE_POLL);
    }
}

/// A first endpoint came up serving one version: that version is the stable one, and what
/// earlier configs remain is collected.
fn adopt_first(step: &mut Step, live: &Live, serving: &BTreeMap<String, u32>) {
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
    step.calls.push(collect(live));
}

/// The candidate of a shadow step at `state`, with its share of copies (percent).
fn shadow_of(state: &RolloutState, strategy: &Strategy) -> Option<(String, u32)> {
    // A failure frozen in place (no automatic rollback) stops the copies.
    let c = state
        .candidate
        .as_ref()
        .filter(|_| state.phase != DeploymentPhase::Failed)?;
    let mirror = crate::rollout::strategy_steps(strategy)
        .get(state.step)?
        .mirror;
    (mirror > 0 && state.traffic.get(c).copied().unwrap_or(0) == 0).then(|| (c.clone(), mirror))
}

/// What the shared state machine observes: whether the candidate (or else the desired version)
/// has a variant serving — a production one, or `shadowing` (the candidate whose shadow
/// variant runs) — and the alarms' verdict while a candidate is under way (a pass otherwise).
fn observe(
    state: &RolloutState,
    desired_version: Option<&str>,
    serving: &BTreeMap<String, u32>,
    shadowing: Option<String>,
    analysis: crate::rollout::Judgement,
) -> crate::rollout::Observation {
    let candidate_ready = state
        .candidate
        .as_deref()
        .or(desired_version)
        .is_some_and(|c| serving.contains_key(c) || shadowing.as_deref() == Some(c));
    crate::rollout::Observation {
        candidate_ready,
        waiting: None,
        analysis: if state.candidate.is_some() {
            analysis
        } else {
            crate::rollout::Judgement::Pass
        },
    }
}

/// The split (version → percent) after the decided actions: a started version joins at 0%, a
/// route sets the weights (a version routed nothing keeps its variant until it is stopped), a
/// stopped version leaves.
fn split_after(
    serving: &BTreeMap<String, u32>,
    actions: &[crate::rollout::Action],
) -> BTreeMap<String, u32> {
    use crate::rollout::Action;
    let mut split = serving.clone();
    for a in actions {
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
            Action::Event { .. } => {}
        }
    }
    split
}

/// Whether the desired endpoint has the same production variants (names and Models) as the
/// live one, so that only weights can differ, and the same shadow: none on either side, or the
/// desired config in service (configs are immutable and named after what they hold).
fn same_variants(d: &Desired, live: &Live) -> bool {
    let mut a: Vec<(&str, &str)> = d
        .variants
        .iter()
        .filter(|v| !v.shadow)
        .map(|v| (v.name.as_str(), v.model.as_str()))
        .collect();
    let mut b: Vec<(&str, &str)> = live
        .variants
        .iter()
        .filter(|v| !v.shadow)
        .map(|v| (v.name.as_str(), v.model.as_str()))
        .collect();
    a.sort();
    b.sort();
    let shadow = if d.variants.iter().any(|v| v.shadow) {
        d.config == live.config
    } else {
        !live.shadowed()
    };
    a == b && shadow
}

/// Brings the live endpoint to `d`: a new config when the set of variants changes, new weights
/// when only weights differ. When nothing was decided, a difference is drift; when settled and
/// in sync, what earlier configs and Models remain is collected (idempotent).
fn act(step: &mut Step, d: Desired, live: &Live, decided_nothing: bool) {
    let differences = drift(&d, live);
    if !same_variants(&d, live) {
        step.calls.push(Call::Update(d, None));
        step.requeue_after = step.requeue_after.or(Some(crate::limits::REMOTE_POLL));
    } else if !differences.is_empty() {
        step.calls.push(Call::Weights(d));
    }
    if decided_nothing && !differences.is_empty() {
        // Nothing was decided, yet the endpoint differs from what the state says: drift.
        step.drift = differences;
    }
    // Settled and in sync: what earlier configs and Models remain is collected (idempotent).
    if step.state.candidate.is_none() && step.calls.is_empty() && decided_nothing {
        step.calls.push(collect(live));
    }
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
