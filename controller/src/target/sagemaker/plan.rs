//! Pure decisions of the SageMaker target.
//!
//! SageMaker objects are named after what they hold, so a retried step finds what it created:
//! a Model per (deployment, version, artifact digest), and an EndpointConfig per distinct set
//! of variants (configs are immutable; a change is a new config). Rollouts use SageMaker's
//! deployment guardrails: `UpdateEndpoint` with a blue/green `DeploymentConfig` whose traffic
//! routing follows the strategy and whose auto-rollback alarms are the analysis' `alarms`.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha256};
use slipway_crd::model_deployment::{DeploymentPhase, SageMakerTarget, Strategy, StrategyType};

use crate::rollout::{EventKind, RolloutState};

/// Tag keys that link every AWS object back to Slipway's objects.
pub const TAG_DEPLOYMENT: &str = "slipway.dev/deployment";
/// The namespace of the deployment.
pub const TAG_NAMESPACE: &str = "slipway.dev/namespace";
/// The model.
pub const TAG_MODEL: &str = "slipway.dev/model";
/// The model version a SageMaker Model holds.
pub const TAG_VERSION: &str = "slipway.dev/version";

/// SageMaker names: letters, digits and hyphens, at most 63 characters.
pub fn sanitize(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out.truncate(max);
    out.trim_matches('-').to_string()
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(5)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One model version as the target needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Artifact {
    /// Artifact URI (`ModelDataUrl`).
    pub uri: String,
    /// Artifact digest.
    pub digest: String,
}

/// The SageMaker Model of one version of a deployment: named after what it holds (the
/// artifact's digest and the image), so a new image is a new Model.
pub fn model_name(endpoint: &str, version: &str, digest: &str, image: &str) -> String {
    let hash = short_hash(&[endpoint, version, digest, image]);
    let head = sanitize(&format!("{endpoint}-v{version}"), 63 - 11);
    format!("{head}-{hash}")
}

/// The production variant that serves a version.
pub fn variant_name(version: &str) -> String {
    sanitize(&format!("v{version}"), 63)
}

/// One production variant of the desired endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// Variant name (`v7`).
    pub name: String,
    /// The version it serves.
    pub version: String,
    /// SageMaker Model name.
    pub model: String,
    /// Container image.
    pub image: String,
    /// Artifact URI.
    pub artifact: String,
    /// Instance type.
    pub instance_type: String,
    /// Instance count (kept from the live endpoint when autoscaling changed it).
    pub instance_count: u32,
    /// Relative weight.
    pub weight: f32,
}

/// The endpoint as it should be.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// Endpoint name.
    pub endpoint: String,
    /// EndpointConfig name (unique per set of variants).
    pub config: String,
    /// Variants.
    pub variants: Vec<Variant>,
}

/// The endpoint serving `version` alone. `live_count` is the instance count the live endpoint
/// runs for that version's variant (autoscaling), which wins over the target's.
pub fn desired(
    target: &SageMakerTarget,
    version: &str,
    artifact: &Artifact,
    live_count: Option<u32>,
) -> Desired {
    let variant = Variant {
        name: variant_name(version),
        version: version.to_string(),
        model: model_name(
            &target.endpoint_name,
            version,
            &artifact.digest,
            &target.image,
        ),
        image: target.image.clone(),
        artifact: artifact.uri.clone(),
        instance_type: target.instance_type.clone(),
        instance_count: live_count.unwrap_or(target.instance_count).max(1),
        weight: 1.0,
    };
    let config = config_name(&target.endpoint_name, std::slice::from_ref(&variant));
    Desired {
        endpoint: target.endpoint_name.clone(),
        config,
        variants: vec![variant],
    }
}

/// The EndpointConfig name for a set of variants: the endpoint's name and a hash of what the
/// variants hold.
pub fn config_name(endpoint: &str, variants: &[Variant]) -> String {
    let parts: Vec<String> = variants
        .iter()
        .map(|v| {
            format!(
                "{}|{}|{}|{}|{}|{}",
                v.name, v.model, v.image, v.instance_type, v.instance_count, v.weight
            )
        })
        .collect();
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let hash = short_hash(&refs);
    format!("{}-{hash}", sanitize(endpoint, 63 - 11))
}

/// Traffic routing of a blue/green update.
#[derive(Clone, Debug, PartialEq)]
pub enum Routing {
    /// Everything at once, then bake.
    AllAtOnce,
    /// A canary of `percent` of capacity, bake, then the rest.
    Canary {
        /// Canary size, percent of capacity.
        percent: u32,
    },
    /// `percent` more every interval.
    Linear {
        /// Step size, percent of capacity.
        percent: u32,
    },
}

/// SageMaker deployment guardrails for one update.
#[derive(Clone, Debug, PartialEq)]
pub struct Guardrails {
    /// How traffic moves.
    pub routing: Routing,
    /// Bake time after each traffic shift (`WaitIntervalInSeconds`).
    pub wait: Duration,
    /// Time the old fleet is kept after all traffic moved (`TerminationWaitInSeconds`).
    pub termination_wait: Duration,
    /// Upper bound of the whole update (`MaximumExecutionTimeoutInSeconds`, 600–14400).
    pub max_execution: Duration,
    /// CloudWatch alarms that roll the update back.
    pub alarms: Vec<String>,
}

impl Guardrails {
    /// One line for plans and history.
    pub fn describe(&self) -> String {
        let routing = match &self.routing {
            Routing::AllAtOnce => "all at once".to_string(),
            Routing::Canary { percent } => format!("canary {percent}% of capacity"),
            Routing::Linear { percent } => format!("linear {percent}% of capacity per step"),
        };
        let alarms = if self.alarms.is_empty() {
            "no rollback alarms".to_string()
        } else {
            format!("rollback on alarms {}", self.alarms.join(", "))
        };
        format!(
            "blue/green, {routing}, bake {}s, {alarms}",
            self.wait.as_secs()
        )
    }
}

fn seconds(field: &str, text: Option<&str>) -> Result<Duration, String> {
    match text {
        None => Ok(Duration::ZERO),
        Some(t) => crate::duration::parse(t).map_err(|e| format!("{field}: {e}")),
    }
}

/// Maps a strategy onto SageMaker's guardrails. SageMaker shifts a canary once and then
/// everything, so a canary strategy has one step (or a last step of 100).
pub fn guardrails(strategy: &Strategy) -> Result<Guardrails, String> {
    let (routing, wait) = match strategy.type_ {
        StrategyType::AllAtOnce => (
            Routing::AllAtOnce,
            seconds(
                "strategy.steps[0].pause",
                strategy.steps.first().and_then(|s| s.pause.as_deref()),
            )?,
        ),
        StrategyType::Canary => {
            let steps: Vec<_> = strategy.steps.iter().filter(|s| s.weight < 100).collect();
            let [first] = steps.as_slice() else {
                return Err(format!(
                    "strategy.steps: SageMaker's guardrails shift one canary and then all traffic, \
                     but {} steps below 100% are given; keep one canary step",
                    steps.len()
                ));
            };
            if first.weight == 0 {
                return Err("strategy.steps[0].weight: a canary needs more than 0%".into());
            }
            (
                Routing::Canary {
                    percent: first.weight,
                },
                seconds("strategy.steps[0].pause", first.pause.as_deref())?,
            )
        }
        StrategyType::Linear => {
            let percent = strategy.step_weight.unwrap_or(0);
            if !(1..=100).contains(&percent) {
                return Err("strategy.stepWeight: give a step between 1 and 100 percent".into());
            }
            (
                Routing::Linear { percent },
                seconds("strategy.interval", strategy.interval.as_deref())?,
            )
        }
    };
    let shifts = match &routing {
        Routing::AllAtOnce | Routing::Canary { .. } => 2,
        Routing::Linear { percent } => 100_u64.div_ceil(u64::from(*percent)),
    };
    let total = wait.as_secs() * shifts + 1800;
    Ok(Guardrails {
        routing,
        wait,
        termination_wait: Duration::ZERO,
        max_execution: Duration::from_secs(total.clamp(600, 14_400)),
        alarms: strategy
            .analysis
            .as_ref()
            .map(|a| a.alarms.clone())
            .unwrap_or_default(),
    })
}

/// One live production variant.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct LiveVariant {
    /// Variant name.
    pub name: String,
    /// SageMaker Model it runs.
    pub model: String,
    /// The model's image.
    pub image: String,
    /// The model's artifact.
    pub artifact: String,
    /// Instance type.
    pub instance_type: String,
    /// Current instance count.
    pub instance_count: u32,
    /// Current weight.
    pub weight: f32,
}

/// The live endpoint, as DescribeEndpoint (and its config and models) show it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Live {
    /// `Creating`, `Updating`, `RollingBack`, `InService`, `Failed`, …
    pub status: String,
    /// The config it runs.
    pub config: String,
    /// Its variants.
    pub variants: Vec<LiveVariant>,
    /// Why the last update or creation failed.
    pub failure: Option<String>,
    /// During an update: the config being deployed and the share of traffic on it (0–1).
    pub pending: Option<(String, f32)>,
}

impl Live {
    /// The version a variant serves, by Slipway's variant naming.
    pub fn versions(&self) -> Vec<String> {
        self.variants
            .iter()
            .filter_map(|v| v.name.strip_prefix('v').map(str::to_string))
            .collect()
    }
}

/// What differs between the desired and the live endpoint (empty: in sync).
pub fn drift(desired: &Desired, live: &Live) -> Vec<String> {
    let mut out = Vec::new();
    let want: BTreeMap<&str, &Variant> = desired
        .variants
        .iter()
        .map(|v| (v.name.as_str(), v))
        .collect();
    let have: BTreeMap<&str, &LiveVariant> =
        live.variants.iter().map(|v| (v.name.as_str(), v)).collect();
    for (name, w) in &want {
        let Some(h) = have.get(name) else {
            out.push(format!("variant {name} (version {}) is missing", w.version));
            continue;
        };
        let mut field = |what: &str, want: &str, have: &str| {
            if want != have {
                out.push(format!(
                    "variant {name}: {what} is {have}, should be {want}"
                ));
            }
        };
        field("model", &w.model, &h.model);
        field("image", &w.image, &h.image);
        field("artifact", &w.artifact, &h.artifact);
        field("instance type", &w.instance_type, &h.instance_type);
        let total: f32 = desired.variants.iter().map(|v| v.weight).sum();
        let live_total: f32 = live.variants.iter().map(|v| v.weight).sum();
        let share = |w: f32, t: f32| if t > 0.0 { w / t } else { 0.0 };
        if (share(w.weight, total) - share(h.weight, live_total)).abs() > 0.005 {
            out.push(format!(
                "variant {name}: takes {:.0}% of traffic, should take {:.0}%",
                share(h.weight, live_total) * 100.0,
                share(w.weight, total) * 100.0
            ));
        }
    }
    for name in have.keys() {
        if !want.contains_key(name) {
            out.push(format!("variant {name} should not exist"));
        }
    }
    out
}

/// What to do to the endpoint.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// Create Models and config, then the endpoint.
    Create(Desired),
    /// Create Models and config, then UpdateEndpoint with these guardrails (None: heal with
    /// SageMaker's default rolling update).
    Update(Desired, Option<Guardrails>),
    /// Weights only: UpdateEndpointWeightsAndCapacities (no new config).
    Weights(Desired),
    /// Delete superseded configs and Models, keeping these.
    Collect {
        /// The config in service.
        config: String,
        /// Models it uses.
        models: Vec<String>,
    },
}

/// One decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The state to record (before the calls are made).
    pub state: RolloutState,
    /// Calls to make.
    pub calls: Vec<Call>,
    /// Events for history, status and notifications: (kind, version, message).
    pub events: Vec<(EventKind, String, String)>,
    /// Differences between desired and live (reported as `OutOfSync`).
    pub drift: Vec<String>,
    /// When to look again (None: at the normal resync).
    pub requeue_after: Option<Duration>,
}

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
    let poll = Some(Duration::from_secs(2));
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
    analysis: crate::rollout::Verdict,
    now: chrono::DateTime<chrono::Utc>,
) -> Step {
    use crate::rollout::{Action, Observation};
    let poll = Some(Duration::from_secs(2));
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
            crate::rollout::Verdict::Pass
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
            } => step
                .events
                .push((kind.clone(), version.clone(), message.clone())),
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

#[cfg(test)]
mod tests;
