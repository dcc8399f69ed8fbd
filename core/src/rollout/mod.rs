//! The rollout state machine (pure): given the persisted state of one deployment, the version
//! its alias wants, what the target observed and the time, decide the next state and the
//! actions for the target to carry out. No I/O and no clock: the same code drives local
//! processes, Kubernetes Deployments and SageMaker endpoints, and is tested with a fake clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use slipway_crd::model_deployment::{DeploymentPhase, OnInconclusive, Strategy, StrategyType};

use crate::duration;

/// One planned step: the candidate's share of traffic and how long to hold it.
#[derive(Clone, Debug, PartialEq)]
pub struct StrategyStep {
    /// Percent of traffic on the candidate.
    pub weight: u32,
    /// How long analysis must pass at this weight before the next step.
    pub hold: Duration,
    /// A shadow step: percent of requests mirrored to the candidate (0: none).
    pub mirror: u32,
}

/// The steps of a strategy; the last step always has weight 100.
pub fn strategy_steps(strategy: &Strategy) -> Vec<StrategyStep> {
    let parse = |d: Option<&String>| {
        d.and_then(|d| duration::parse(d).ok())
            .unwrap_or(Duration::ZERO)
    };
    let mut steps = match strategy.type_ {
        StrategyType::AllAtOnce => Vec::new(),
        StrategyType::Canary => strategy
            .steps
            .iter()
            .filter(|s| (s.weight > 0 || s.mirror.unwrap_or(0) > 0) && s.weight < 100)
            .map(|s| StrategyStep {
                weight: s.weight,
                hold: parse(s.pause.as_ref()),
                mirror: if s.weight == 0 {
                    s.mirror.unwrap_or(0).min(100)
                } else {
                    0
                },
            })
            .collect(),
        StrategyType::Linear => {
            let w = strategy.step_weight.unwrap_or(100).clamp(1, 100);
            let hold = parse(strategy.interval.as_ref());
            (1..)
                .map(|i| i * w)
                .take_while(|x| *x < 100)
                .map(|weight| StrategyStep {
                    weight,
                    hold,
                    mirror: 0,
                })
                .collect()
        }
    };
    steps.push(StrategyStep {
        weight: 100,
        hold: Duration::ZERO,
        mirror: 0,
    });
    steps
}

/// What the rollout of one deployment remembers between decisions (persisted by the store).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutState {
    /// The last healthy version; it serves all traffic when no rollout is under way.
    pub stable: Option<String>,
    /// The version being rolled out.
    pub candidate: Option<String>,
    /// Index of the current step in [`strategy_steps`].
    pub step: usize,
    /// When the current step's weights were applied (None: not applied yet).
    pub step_started: Option<DateTime<Utc>>,
    /// When the candidate was first seen ready at the current step's weights (None: not yet).
    /// A step's pause and its metrics count from here: pods a step scales up that are still
    /// loading do not count toward it.
    #[serde(default)]
    pub step_ready: Option<DateTime<Utc>>,
    /// When the candidate was started.
    pub candidate_started: Option<DateTime<Utc>>,
    /// Phase shown in status.
    pub phase: DeploymentPhase,
    /// Versions rolled back on this deployment; not retried until the alias moves to them again or `retry`.
    pub rejected: BTreeSet<String>,
    /// The version the alias pointed at in the previous decision.
    pub last_desired: Option<String>,
    /// Version → percent, as last routed.
    pub traffic: BTreeMap<String, u32>,
}

/// What the analysis of the current step's window judges (not an evaluation's `Verdict`).
#[derive(Clone, Debug, PartialEq)]
pub enum Judgement {
    /// Thresholds hold.
    Pass,
    /// A threshold is broken; the reason names it.
    Fail(String),
    /// Not enough data yet (e.g. fewer requests than `minRequests`); hold the step.
    Inconclusive(String),
}

/// What the target observed about the candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The candidate's servers are up and pass their health check.
    pub candidate_ready: bool,
    /// Analysis of the candidate's traffic since the current step began.
    pub analysis: Judgement,
    /// While it is not ready: what it waits for, as the target says (`pitch-frames-api-v8: 0/1
    /// replicas available; pod …: CrashLoopBackOff`) — the cause a failure at the deadline names.
    pub waiting: Option<String>,
}

/// Something that happened, for status, history and notifications: the API's enum, so the
/// status, the history, events and notifications say the same names.
pub use slipway_crd::model_deployment::RolloutEventKind as EventKind;

/// An action for the deployment target.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Make sure this version's servers run.
    Start(String),
    /// Route traffic by these weights (version → percent, summing to 100).
    Route(BTreeMap<String, u32>),
    /// Stop this version's servers.
    Stop(String),
    /// Record and announce an event.
    Event {
        /// What happened.
        kind: EventKind,
        /// The version concerned.
        version: String,
        /// Explanation.
        message: String,
    },
}

/// The outcome of one decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The state to persist (before carrying out the actions, so a restart resumes here).
    pub state: RolloutState,
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// When to decide again at the latest (None: only on change).
    pub requeue_after: Option<Duration>,
}

impl Step {
    /// The step's events (kind, version, message), in order: what its history records.
    pub fn events(&self) -> impl Iterator<Item = (&EventKind, &str, &str)> {
        self.actions.iter().filter_map(|a| match a {
            Action::Event {
                kind,
                version,
                message,
            } => Some((kind, version.as_str(), message.as_str())),
            _ => None,
        })
    }
}

impl RolloutState {
    /// The version that was just rolled back and that its target keeps, without traffic, for
    /// people to inspect until the next try (a Kubernetes `Deployment` scaled to 0 instead of
    /// deleted): the one the alias still asks for while it is rejected. A retry, or the alias
    /// moving on, ends it.
    pub fn kept_for_inspection(&self) -> Option<&str> {
        let v = self.last_desired.as_deref()?;
        (self.phase == DeploymentPhase::RolledBack && self.rejected.contains(v)).then_some(v)
    }
}

/// Appends a step's events to a `ModelDeployment`'s rollout history (each with the traffic
/// after the step), keeping the newest [`crate::limits::ROLLOUT_HISTORY`] entries.
pub fn record<'a>(
    history: &mut Vec<slipway_crd::model_deployment::RolloutEvent>,
    traffic: &BTreeMap<String, u32>,
    events: impl IntoIterator<Item = (&'a EventKind, &'a str, &'a str)>,
    now: DateTime<Utc>,
) {
    for (kind, version, message) in events {
        history.push(slipway_crd::model_deployment::RolloutEvent {
            at: Some(now),
            event: *kind,
            traffic: traffic.clone(),
            message: Some(format!("{version}: {message}")),
        });
    }
    let excess = history.len().saturating_sub(crate::limits::ROLLOUT_HISTORY);
    history.drain(..excess);
}

/// Fixed inputs of a deployment's rollouts.
#[derive(Clone, Debug)]
pub struct Policy<'a> {
    /// The strategy.
    pub strategy: &'a Strategy,
    /// How long a new version may take to become healthy before it counts as failed.
    pub progress_deadline: Duration,
    /// How often to look again while waiting.
    pub poll: Duration,
}

impl<'a> Policy<'a> {
    /// A strategy's policy: its own `progressDeadline` when it sets one, else the target's
    /// `default_deadline`.
    pub fn new(strategy: &'a Strategy, default_deadline: Duration, poll: Duration) -> Self {
        let progress_deadline = strategy
            .progress_deadline
            .as_deref()
            .and_then(|d| duration::parse(d).ok())
            .unwrap_or(default_deadline);
        Policy {
            strategy,
            progress_deadline,
            poll,
        }
    }
}

struct Machine<'a> {
    s: RolloutState,
    actions: Vec<Action>,
    requeue: Option<Duration>,
    now: DateTime<Utc>,
    policy: &'a Policy<'a>,
}

impl Machine<'_> {
    fn event(&mut self, kind: EventKind, version: &str, message: impl Into<String>) {
        self.actions.push(Action::Event {
            kind,
            version: version.to_string(),
            message: message.into(),
        });
    }

    fn route(&mut self, weights: BTreeMap<String, u32>) {
        if self.s.traffic != weights {
            self.s.traffic = weights.clone();
            self.actions.push(Action::Route(weights));
        }
    }

    fn route_all_to(&mut self, version: &str) {
        self.route(BTreeMap::from([(version.to_string(), 100)]));
    }

    fn wait(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    fn elapsed(&self, since: Option<DateTime<Utc>>) -> Duration {
        since
            .and_then(|t| (self.now - t).to_std().ok())
            .unwrap_or(Duration::ZERO)
    }

    /// Withdraws the candidate: traffic back to stable, candidate stopped.
    fn withdraw(&mut self) -> Option<String> {
        let old = self.s.candidate.take()?;
        if let Some(stable) = self.s.stable.clone() {
            self.route_all_to(&stable);
        } else {
            self.route(BTreeMap::new());
        }
        self.actions.push(Action::Stop(old.clone()));
        self.s.step = 0;
        self.s.step_started = None;
        self.s.step_ready = None;
        self.s.candidate_started = None;
        Some(old)
    }

    fn fail(&mut self, candidate: &str, why: String) {
        self.s.rejected.insert(candidate.to_string());
        if self.policy.strategy.auto_rollback {
            self.withdraw();
            self.s.phase = DeploymentPhase::RolledBack;
            let back = match &self.s.stable {
                Some(s) => format!("all traffic is back on version {s}"),
                None => "no version serves".to_string(),
            };
            self.event(
                EventKind::RolledBack,
                candidate,
                format!("{why}; {back}. Version {candidate} is not retried until the alias moves to it again or a retry is requested"),
            );
        } else {
            self.s.phase = DeploymentPhase::Failed;
            self.event(
                EventKind::RolloutFailed,
                candidate,
                format!(
                    "{why}; autoRollback is off, so traffic stays as it is until an operator acts"
                ),
            );
        }
    }

    /// Decides the rollout toward the `desired` version, given what is observed of the
    /// candidate.
    fn run(&mut self, desired: Option<&str>, obs: &Observation) {
        if desired.map(str::to_string) != self.s.last_desired {
            // The alias moved: a version it moves (back) to gets a fresh chance.
            if let Some(d) = desired {
                self.s.rejected.remove(d);
            }
            self.s.last_desired = desired.map(str::to_string);
        }
        let Some(d) = desired else {
            self.serve_nothing();
            return;
        };
        if self.s.rejected.contains(d) {
            self.keep_rejected(d);
            return;
        }
        if self.s.stable.as_deref() == Some(d) {
            self.back_to_stable(d);
            return;
        }
        if self.s.candidate.as_deref() != Some(d) {
            self.start(d);
        }
        if !obs.candidate_ready {
            self.not_ready(d, &obs.analysis, obs.waiting.as_deref());
            return;
        }
        let Some(stable) = self.s.stable.clone() else {
            // First version of this deployment: nothing to compare with or fall back to.
            self.route_all_to(d);
            self.finish(d);
            return;
        };
        self.step_through(d, &stable, &obs.analysis);
    }

    /// No version is desired: the candidate and the stable version stop and nothing is routed.
    fn serve_nothing(&mut self) {
        self.withdraw();
        if let Some(stable) = self.s.stable.take() {
            self.actions.push(Action::Stop(stable));
        }
        self.route(BTreeMap::new());
        // Not "Healthy" with nothing to serve (its Ready condition says NothingToServe): it
        // waits for a version.
        self.s.phase = DeploymentPhase::Progressing;
    }

    /// The desired version `d` was rejected: a failed rollout of it stays frozen until an
    /// operator acts; otherwise it is withdrawn if it is the candidate, and the rollout counts as
    /// rolled back.
    fn keep_rejected(&mut self, d: &str) {
        if self.s.phase == DeploymentPhase::Failed && self.s.candidate.as_deref() == Some(d) {
            return; // frozen until an operator acts
        }
        if self.s.candidate.as_deref() == Some(d) {
            self.withdraw();
        }
        self.s.phase = DeploymentPhase::RolledBack;
    }

    /// The alias moved back to the stable version `d`: a candidate under way is superseded and
    /// all traffic goes to `d`.
    fn back_to_stable(&mut self, d: &str) {
        if let Some(old) = self.withdraw() {
            self.event(
                EventKind::RolloutSuperseded,
                &old,
                format!("the alias moved back to {d}"),
            );
        }
        // The stable version's servers are kept running by the target (it resumes what `traffic` names).
        self.route_all_to(d);
        self.s.phase = DeploymentPhase::Healthy;
    }

    /// `d` becomes the candidate: a candidate under way is superseded, and `d` is started.
    fn start(&mut self, d: &str) {
        if let Some(old) = self.withdraw() {
            self.event(
                EventKind::RolloutSuperseded,
                &old,
                format!("the alias moved on to {d}"),
            );
        }
        self.s.candidate = Some(d.to_string());
        self.s.candidate_started = Some(self.now);
        self.s.phase = DeploymentPhase::Progressing;
        self.actions.push(Action::Start(d.to_string()));
        let from = self
            .s
            .stable
            .as_deref()
            .map(|s| format!(" from {s}"))
            .unwrap_or_default();
        self.event(
            EventKind::RolloutStarted,
            d,
            format!("rolling out {d}{from}"),
        );
    }

    /// The candidate `d` is not ready yet: it fails when the target says it cannot become
    /// healthy or the progress deadline has passed; otherwise the machine waits.
    fn not_ready(&mut self, d: &str, analysis: &Judgement, waiting: Option<&str>) {
        // The step counts again from when it is ready.
        self.s.step_ready = None;
        // The deadline runs from the step's start (a step that scales pods up waits for them),
        // or the candidate's before its first step.
        let since = self.s.step_started.or(self.s.candidate_started);
        if let Judgement::Fail(why) = analysis {
            // The target already knows the version cannot become healthy (e.g. a Kubernetes
            // Deployment past its progress deadline): no need to wait for ours.
            self.fail(d, format!("version {d} cannot become healthy: {why}"));
        } else if self.elapsed(since) > self.policy.progress_deadline {
            let deadline = self.policy.progress_deadline;
            let cause = waiting
                .map(|w| format!(" (still waiting for {w})"))
                .unwrap_or_default();
            self.fail(
                d,
                format!("version {d} did not become healthy within {deadline:?}{cause}"),
            );
        } else {
            self.wait(self.policy.poll);
        }
    }

    /// Moves the ready candidate `d` through the strategy's steps beside `stable`: each step
    /// routes its weight, holds while the analysis passes, and fails on a failed analysis; the
    /// last step stops `stable` and finishes.
    fn step_through(&mut self, d: &str, stable: &str, analysis: &Judgement) {
        let steps = strategy_steps(self.policy.strategy);
        // Whether this decision moved to the current step (its analysis starts from scratch).
        let mut advanced = false;
        loop {
            let step = &steps[self.s.step.min(steps.len() - 1)];
            // Ready at the step's weights (seen after they were applied): the step counts.
            if self.s.step_started.is_some() && self.s.step_ready.is_none() && !advanced {
                self.s.step_ready = Some(self.now);
            }
            if self.s.step_started.is_none() {
                let weights = if step.weight >= 100 {
                    BTreeMap::from([(d.to_string(), 100)])
                } else {
                    BTreeMap::from([
                        (d.to_string(), step.weight),
                        (stable.to_string(), 100 - step.weight),
                    ])
                };
                self.route(weights);
                self.s.step_started = Some(self.now);
                self.s.step_ready = None;
                let what = if step.mirror > 0 {
                    format!(
                        "{}% of requests mirrored to {d} (a shadow: it answers no one)",
                        step.mirror
                    )
                } else {
                    format!("{}% of traffic on {d}", step.weight)
                };
                self.event(EventKind::StepStarted, d, what);
            }
            // Weights just applied (a step whose pods may still be starting): look again at
            // the target's pace; the step counts once the candidate is seen ready at them.
            // A failure seen before is a failure all the same.
            if self.s.step_ready.is_none() && step.weight < 100 {
                match analysis {
                    Judgement::Fail(why) if !advanced => {
                        self.fail(d, format!("analysis failed at {}: {why}", step.label()));
                    }
                    _ => self.wait(self.policy.poll),
                }
                return;
            }
            match analysis {
                Judgement::Fail(why) => {
                    self.fail(d, format!("analysis failed at {}: {why}", step.label()));
                    return;
                }
                Judgement::Inconclusive(_) | Judgement::Pass
                    if self.elapsed(self.s.step_ready) < step.hold =>
                {
                    self.wait(step.hold - self.elapsed(self.s.step_ready));
                    return;
                }
                Judgement::Inconclusive(why)
                    if self.elapsed(self.s.step_started) >= self.policy.progress_deadline =>
                {
                    self.inconclusive(d, &step.label(), why);
                    return;
                }
                Judgement::Inconclusive(_) => {
                    self.wait(self.policy.poll);
                    return;
                }
                Judgement::Pass if step.weight >= 100 => {
                    self.actions.push(Action::Stop(stable.to_string()));
                    self.finish(d);
                    return;
                }
                Judgement::Pass => {
                    self.s.step += 1;
                    self.s.step_started = None;
                    self.s.step_ready = None;
                    advanced = true;
                }
            }
        }
    }

    /// A step whose analysis is still inconclusive at the progress deadline (counted from the
    /// step's start): never a pass — a failed analysis, or with `onInconclusive: Hold` the
    /// step keeps its weights and looks again.
    fn inconclusive(&mut self, d: &str, at: &str, why: &str) {
        let hold = self
            .policy
            .strategy
            .analysis
            .as_ref()
            .is_some_and(|a| a.on_inconclusive == OnInconclusive::Hold);
        if hold {
            self.wait(self.policy.poll);
        } else {
            let deadline = crate::duration::format(self.policy.progress_deadline);
            self.fail(
                d,
                format!("analysis inconclusive at {at} after {deadline}: {why}"),
            );
        }
    }

    fn finish(&mut self, d: &str) {
        self.s.stable = Some(d.to_string());
        self.s.candidate = None;
        self.s.step = 0;
        self.s.step_started = None;
        self.s.step_ready = None;
        self.s.candidate_started = None;
        self.s.phase = DeploymentPhase::Healthy;
        self.event(
            EventKind::RolloutSucceeded,
            d,
            format!("all traffic on {d}"),
        );
    }
}

/// Decides the next step of a deployment's rollout.
pub fn decide(
    state: &RolloutState,
    desired: Option<&str>,
    policy: &Policy<'_>,
    observation: &Observation,
    now: DateTime<Utc>,
) -> Step {
    let mut m = Machine {
        s: state.clone(),
        actions: Vec::new(),
        requeue: None,
        now,
        policy,
    };
    m.run(desired, observation);
    Step {
        state: m.s,
        actions: m.actions,
        requeue_after: m.requeue,
    }
}

pub mod analysis;
pub mod gateway;
pub mod metrics;
pub mod replicas;
mod retry;
pub mod routing;
pub mod sagemaker;
pub mod shadow;
pub mod status;
pub mod step;
pub mod writeback;

pub use analysis::{Window, analyze};
pub use retry::request_retry;

#[cfg(test)]
mod tests;
