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
    crate::hex(&h.finalize()[..5])
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
    /// Relative weight; a shadow's is its share of copies, relative to the production
    /// variants' total.
    pub weight: f32,
    /// A shadow variant (`ShadowProductionVariants`): it gets copies of requests and answers
    /// nobody.
    pub shadow: bool,
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
        shadow: false,
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
            let shadow = if v.shadow { "|shadow" } else { "" };
            format!(
                "{}|{}|{}|{}|{}|{}{shadow}",
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

/// Whether an endpoint's rollouts are judged by the analysis' `metrics`: in `Variants` mode,
/// where Slipway moves the weights step by step (under guardrails SageMaker shifts the traffic
/// itself and only its alarms can stop it).
pub fn judged_by_metrics(t: &slipway_crd::model_deployment::SageMakerTarget) -> bool {
    t.mode == slipway_crd::model_deployment::SageMakerMode::Variants
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
    /// A shadow variant (the config's `ShadowProductionVariants`).
    pub shadow: bool,
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
    /// The deployment its ownership tags name (namespace, name); None: it has none.
    pub owner: Option<(String, String)>,
}

/// Whether deployment `ns`/`name` may touch `live`: only an endpoint its ownership tags give to
/// that deployment. One made by another deployment (another namespace's, say) or by hand is
/// never touched — the error says whose it is and what to do.
pub fn owned_by(live: &Live, ns: &str, name: &str) -> Result<(), String> {
    match &live.owner {
        Some((o_ns, o_name)) if o_ns == ns && o_name == name => Ok(()),
        Some((o_ns, o_name)) => Err(format!(
            "the endpoint belongs to ModelDeployment {o_ns}/{o_name} (its {TAG_NAMESPACE} and \
             {TAG_DEPLOYMENT} tags); Slipway leaves it alone: give this deployment another \
             endpointName"
        )),
        None => Err(format!(
            "the endpoint was not made by Slipway (it has no {TAG_DEPLOYMENT} tag); Slipway \
             leaves it alone: give this deployment another endpointName, or hand the endpoint \
             over by tagging it {TAG_NAMESPACE}={ns} and {TAG_DEPLOYMENT}={name}"
        )),
    }
}

impl Live {
    /// The versions its production variants serve, by Slipway's variant naming.
    pub fn versions(&self) -> Vec<String> {
        self.variants
            .iter()
            .filter(|v| !v.shadow)
            .filter_map(|v| v.name.strip_prefix('v').map(str::to_string))
            .collect()
    }

    /// Whether its config has a shadow variant.
    pub fn shadowed(&self) -> bool {
        self.variants.iter().any(|v| v.shadow)
    }
}

/// What differs between the desired and the live endpoint (empty: in sync): the production
/// variants field by field, and whether the shadow runs (a config is immutable and named after
/// what it holds: the desired config in service runs the desired shadow).
pub fn drift(desired: &Desired, live: &Live) -> Vec<String> {
    let mut out = Vec::new();
    let shadow = desired.variants.iter().find(|v| v.shadow);
    match shadow {
        Some(s) if live.config != desired.config => out.push(format!(
            "shadow variant {} (version {}) is not running",
            s.name, s.version
        )),
        None if live.shadowed() => out.push("a shadow variant should not exist".to_string()),
        _ => {}
    }
    let want: BTreeMap<&str, &Variant> = desired
        .variants
        .iter()
        .filter(|v| !v.shadow)
        .map(|v| (v.name.as_str(), v))
        .collect();
    let have: BTreeMap<&str, &LiveVariant> = live
        .variants
        .iter()
        .filter(|v| !v.shadow)
        .map(|v| (v.name.as_str(), v))
        .collect();
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
        let total: f32 = want.values().map(|v| v.weight).sum();
        let live_total: f32 = have.values().map(|v| v.weight).sum();
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

/// Where healing drift stands after a step: the config being healed to (the step's new heal,
/// or the one SageMaker is still working on), and — when SageMaker refused the same heal before
/// (the endpoint is back in service without it) — why, so it is reported once instead of retried
/// forever. Both homes decide with this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heal {
    /// The config being healed to.
    pub healing: Option<String>,
    /// Why the heal is given up (the caller drops the step's calls and reports it as stalled).
    pub refused: Option<String>,
}

/// Decides [`Heal`] from the step's calls, the heal recorded before, and the live endpoint.
pub fn heal(calls: &[Call], healing_before: Option<&str>, live: Option<&Live>) -> Heal {
    let heal_config = calls.iter().find_map(|c| match c {
        Call::Update(d, None) | Call::Weights(d) => Some(d.config.clone()),
        _ => None,
    });
    let in_service = live.is_some_and(|l| l.status == "InService");
    let healing = heal_config.clone().or_else(|| {
        healing_before
            .map(str::to_string)
            .filter(|_| live.is_some() && !in_service)
    });
    let refused = match (&heal_config, healing_before, live) {
        (Some(c), Some(before), Some(l)) if c == before && in_service => Some(format!(
            "SageMaker did not take the healing update to {c}: {}; fix the target or the endpoint",
            l.failure
                .as_deref()
                .unwrap_or("the endpoint returned to its previous config")
        )),
        _ => None,
    };
    Heal { healing, refused }
}

pub mod sequence;
mod steps;
pub use steps::{decide, decide_variants, desired_split};

#[cfg(test)]
mod tests;
