//! The rollout state machine driven by a fake clock and scripted observations.

use chrono::TimeZone;
use slipway_crd::model_deployment::{Analysis, Step as CanaryStep};

use super::*;

fn canary(auto_rollback: bool) -> Strategy {
    Strategy {
        type_: StrategyType::Canary,
        steps: vec![
            CanaryStep {
                weight: 10,
                pause: Some("5m".into()),
                mirror: None,
            },
            CanaryStep {
                weight: 50,
                pause: Some("10m".into()),
                mirror: None,
            },
        ],
        auto_rollback,
        ..Strategy::default()
    }
}

struct Sim<'a> {
    state: RolloutState,
    now: DateTime<Utc>,
    policy: Policy<'a>,
    log: Vec<Action>,
}

impl<'a> Sim<'a> {
    fn new(strategy: &'a Strategy) -> Self {
        Sim {
            state: RolloutState::default(),
            now: Utc.with_ymd_and_hms(2026, 11, 26, 20, 0, 0).unwrap(),
            policy: Policy {
                strategy,
                progress_deadline: Duration::from_secs(600),
                poll: Duration::from_secs(5),
            },
            log: Vec::new(),
        }
    }

    fn tick(&mut self, desired: Option<&str>, ready: bool, analysis: Judgement) -> Step {
        let step = decide(
            &self.state,
            desired,
            &self.policy,
            &Observation {
                candidate_ready: ready,
                analysis,
                waiting: None,
            },
            self.now,
        );
        self.state = step.state.clone();
        self.log.extend(step.actions.clone());
        step
    }

    fn advance(&mut self, secs: i64) {
        self.now += chrono::Duration::seconds(secs);
    }

    fn events(&self) -> Vec<(EventKind, String)> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::Event { kind, message, .. } => Some((*kind, message.clone())),
                _ => None,
            })
            .collect()
    }

    fn routes(&self) -> Vec<Vec<(String, u32)>> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::Route(w) => Some(w.iter().map(|(k, v)| (k.clone(), *v)).collect()),
                _ => None,
            })
            .collect()
    }

    /// Serves version 7 as stable.
    fn with_stable(mut self) -> Self {
        self.tick(Some("7"), true, Judgement::Pass);
        assert_eq!(self.state.stable.as_deref(), Some("7"));
        self.log.clear();
        self
    }
}

fn w(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn plans_end_at_full_traffic() {
    let weights = |s: &Strategy| {
        strategy_steps(s)
            .iter()
            .map(|p| p.weight)
            .collect::<Vec<_>>()
    };
    assert_eq!(weights(&canary(true)), vec![10, 50, 100]);
    assert_eq!(weights(&Strategy::default()), vec![100]);
    let linear = Strategy {
        type_: StrategyType::Linear,
        step_weight: Some(30),
        interval: Some("2m".into()),
        ..Strategy::default()
    };
    assert_eq!(weights(&linear), vec![30, 60, 90, 100]);
    assert_eq!(strategy_steps(&linear)[0].hold, Duration::from_secs(120));
}

#[test]
fn the_first_version_gets_all_traffic_once_healthy() {
    let strategy = canary(true);
    let mut sim = Sim::new(&strategy);
    let s = sim.tick(Some("7"), false, Judgement::Pass);
    assert_eq!(s.actions[0], Action::Start("7".into()));
    assert_eq!(s.requeue_after, Some(Duration::from_secs(5)));
    assert_eq!(sim.state.phase, DeploymentPhase::Progressing);
    sim.tick(Some("7"), true, Judgement::Pass);
    assert_eq!(sim.state.phase, DeploymentPhase::Healthy);
    assert_eq!(sim.routes(), vec![w(&[("7", 100)])]);
}

#[test]
fn canary_steps_happen_in_order_and_wait_for_their_pauses() {
    let strategy = canary(true);
    let mut sim = Sim::new(&strategy).with_stable();
    sim.tick(Some("8"), false, Judgement::Pass);
    assert_eq!(sim.log[0], Action::Start("8".into()));
    // 10% is applied; its pause counts once 8 is seen ready at it (pods a step adds may still
    // be starting), looked at again at the target's pace.
    let s = sim.tick(Some("8"), true, Judgement::Pass);
    assert_eq!(s.requeue_after, Some(Duration::from_secs(5)));
    assert_eq!(s.state.step_ready, None);
    sim.advance(5);
    let s = sim.tick(Some("8"), true, Judgement::Pass);
    assert_eq!(s.state.step_ready, Some(sim.now));
    assert_eq!(s.requeue_after, Some(Duration::from_secs(300)));
    sim.advance(120);
    assert_eq!(
        sim.tick(Some("8"), true, Judgement::Pass).requeue_after,
        Some(Duration::from_secs(180))
    );
    sim.advance(180);
    sim.tick(Some("8"), true, Judgement::Pass);
    // 50%: its new pods are not ready at the next look; the pause waits for them.
    sim.advance(5);
    let s = sim.tick(Some("8"), false, Judgement::Pass);
    assert_eq!((s.state.step, s.state.step_ready), (1, None));
    sim.advance(60);
    sim.tick(Some("8"), true, Judgement::Pass);
    sim.advance(599);
    let s = sim.tick(Some("8"), true, Judgement::Pass);
    assert_eq!(s.state.step, 1, "the pause counts from readiness");
    sim.advance(1);
    sim.tick(Some("8"), true, Judgement::Pass);
    assert_eq!(
        sim.routes(),
        vec![
            w(&[("7", 90), ("8", 10)]),
            w(&[("7", 50), ("8", 50)]),
            w(&[("8", 100)])
        ]
    );
    assert!(sim.log.contains(&Action::Stop("7".into())));
    assert_eq!(sim.state.stable.as_deref(), Some("8"));
    assert_eq!(sim.state.phase, DeploymentPhase::Healthy);
    let kinds: Vec<EventKind> = sim.events().into_iter().map(|e| e.0).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::RolloutStarted,
            EventKind::StepStarted,
            EventKind::StepStarted,
            EventKind::StepStarted,
            EventKind::RolloutSucceeded
        ]
    );
}

#[test]
fn failed_analysis_rolls_back_and_is_not_retried_while_the_alias_stays() {
    let strategy = canary(true);
    let mut sim = Sim::new(&strategy).with_stable();
    sim.tick(Some("8"), true, Judgement::Pass);
    sim.advance(60);
    sim.tick(
        Some("8"),
        true,
        Judgement::Fail("error ratio 0.400 above 0.01".into()),
    );
    assert_eq!(sim.state.phase, DeploymentPhase::RolledBack);
    assert_eq!(sim.routes().last(), Some(&w(&[("7", 100)])));
    assert!(sim.log.contains(&Action::Stop("8".into())));
    assert!(sim.state.rejected.contains("8"));
    let (kind, message) = sim.events().last().cloned().unwrap();
    assert_eq!(kind, EventKind::RolledBack);
    assert!(
        message.contains("analysis failed at 10%: error ratio 0.400 above 0.01"),
        "{message}"
    );
    sim.log.clear();
    for _ in 0..3 {
        sim.advance(600);
        let s = sim.tick(Some("8"), true, Judgement::Pass);
        assert!(s.actions.is_empty(), "retried: {:?}", s.actions);
    }
    assert_eq!(sim.state.phase, DeploymentPhase::RolledBack);
}

#[test]
fn moving_the_alias_again_or_retry_gives_a_rejected_version_another_chance() {
    let strategy = canary(true);
    let mut sim = Sim::new(&strategy).with_stable();
    sim.tick(Some("8"), true, Judgement::Fail("bad".into()));
    assert!(sim.state.rejected.contains("8"));
    sim.tick(Some("7"), true, Judgement::Pass);
    sim.log.clear();
    sim.tick(Some("8"), true, Judgement::Pass);
    assert_eq!(sim.log[0], Action::Start("8".into()));

    let mut sim = Sim::new(&strategy).with_stable();
    sim.tick(Some("8"), true, Judgement::Fail("bad".into()));
    assert_eq!(
        request_retry(&sim.state, "default/api", Some("9")).unwrap_err(),
        "default/api has versions 8 rejected; nothing to retry for version 9"
    );
    let retried = request_retry(&sim.state, "default/api", None).unwrap();
    assert_eq!(
        retried.events().collect::<Vec<_>>(),
        [(
            &EventKind::RetryRequested,
            "8",
            "version 8 may be rolled out again"
        )]
    );
    sim.state = retried.state;
    assert_eq!(
        request_retry(&sim.state, "default/api", None).unwrap_err(),
        "default/api has no version rejected; nothing to retry"
    );
    sim.log.clear();
    sim.tick(Some("8"), true, Judgement::Pass);
    assert_eq!(sim.log[0], Action::Start("8".into()));
}

#[test]
fn a_strategy_sets_its_own_progress_deadline() {
    let mut strategy = canary(true);
    let default = Duration::from_secs(600);
    let poll = Duration::from_secs(5);
    assert_eq!(
        Policy::new(&strategy, default, poll).progress_deadline,
        default
    );
    strategy.progress_deadline = Some("45s".into());
    let policy = Policy::new(&strategy, default, poll);
    assert_eq!(policy.progress_deadline, Duration::from_secs(45));
    let mut sim = Sim::new(&strategy).with_stable();
    sim.policy = policy;
    sim.tick(Some("8"), false, Judgement::Pass);
    sim.advance(46);
    sim.tick(Some("8"), false, Judgement::Pass);
    assert_eq!(sim.state.phase, DeploymentPhase::RolledBack);
    assert!(sim.events().last().unwrap().1.contains("within 45s"));
}

#[test]
fn a_candidate_that_never_becomes_healthy_is_rolled_back_after_the_deadline() {
    let strategy = canary(true);
    let mut sim = Sim::new(&strategy).with_stable();
    sim.tick(Some("8"), false, Judgement::Pass);
    sim.advance(599);
    sim.tick(Some("8"), false, Judgement::Pass);
    assert_eq!(sim.state.phase, DeploymentPhase::Progressing);
    sim.advance(2);
    // What the target says it waits for is the cause the failure names.
    let step = decide(
        &sim.state,
        Some("8"),
        &sim.policy,
        &Observation {
            candidate_ready: false,
            analysis: Judgement::Pass,
            waiting: Some("api-v8: 0/1 replicas available; pod api-v8-x: CrashLoopBackOff".into()),
        },
        sim.now,
    );
    assert_eq!(step.state.phase, DeploymentPhase::RolledBack);
    let (_, _, message) = step.events().last().unwrap();
    assert!(
        message.starts_with(
            "version 8 did not become healthy within 600s (still waiting for api-v8: 0/1 replicas available; pod api-v8-x: CrashLoopBackOff); all traffic is back on version 7"
        ),
        "{message}"
    );
    sim.tick(Some("8"), false, Judgement::Pass);
    assert_eq!(sim.state.phase, DeploymentPhase::RolledBack);
    assert!(
        sim.events()
            .last()
            .unwrap()
            .1
            .contains("did not become healthy within 600s")
    );
}

#[test]
fn a_candidate_the_target_reports_as_failing_is_rolled_back_without_waiting() {
    let strategy = canary(true);
    let mut sim = Sim::new(&strategy).with_stable();
    sim.tick(Some("8"), false, Judgement::Pass);
    sim.advance(10);
    sim.tick(
        Some("8"),
        false,
        Judgement::Fail("pitch-frames-api-v8 is not progressing (ProgressDeadlineExceeded)".into()),
    );
    assert_eq!(sim.state.phase, DeploymentPhase::RolledBack);
    assert!(sim.state.rejected.contains("8"));
    let (_, message) = sim.events().last().unwrap().clone();
    assert!(
        message.contains("version 8 cannot become healthy: pitch-frames-api-v8 is not progressing"),
        "{message}"
    );
    // Its target keeps it (without traffic) for people to inspect, until the next try.
    assert_eq!(sim.state.kept_for_inspection(), Some("8"));
    sim.tick(Some("8"), false, Judgement::Pass);
    assert_eq!(sim.state.kept_for_inspection(), Some("8"));
    sim.tick(Some("9"), true, Judgement::Pass);
    assert_eq!(sim.state.kept_for_inspection(), None);
}

#[test]
fn an_alias_move_during_a_rollout_supersedes_the_candidate() {
    let strategy = canary(true);
    let mut sim = Sim::new(&strategy).with_stable();
    sim.tick(Some("8"), true, Judgement::Pass);
    sim.advance(30);
    sim.tick(Some("9"), true, Judgement::Pass);
    assert!(sim.log.contains(&Action::Stop("8".into())));
    assert_eq!(sim.state.candidate.as_deref(), Some("9"));
    assert_eq!(sim.routes().last(), Some(&w(&[("7", 90), ("9", 10)])));
    assert!(
        sim.events()
            .iter()
            .any(|e| e.0 == EventKind::RolloutSuperseded)
    );
}

#[test]
fn inconclusive_analysis_holds_the_step() {
    let strategy = canary(true);
    let mut sim = Sim::new(&strategy).with_stable();
    sim.tick(Some("8"), true, Judgement::Pass);
    sim.advance(5);
    sim.tick(Some("8"), true, Judgement::Pass);
    sim.advance(301);
    let s = sim.tick(
        Some("8"),
        true,
        Judgement::Inconclusive("12 of 200 requests".into()),
    );
    assert_eq!(s.requeue_after, Some(Duration::from_secs(5)));
    assert_eq!(sim.state.traffic.get("8"), Some(&10));
}

#[test]
fn without_auto_rollback_a_failure_freezes_traffic() {
    let strategy = canary(false);
    let mut sim = Sim::new(&strategy).with_stable();
    sim.tick(Some("8"), true, Judgement::Pass);
    sim.tick(Some("8"), true, Judgement::Fail("latency".into()));
    assert_eq!(sim.state.phase, DeploymentPhase::Failed);
    assert_eq!(sim.state.traffic.get("8"), Some(&10));
    sim.log.clear();
    sim.advance(3600);
    assert!(
        sim.tick(Some("8"), true, Judgement::Pass)
            .actions
            .is_empty()
    );
}

#[test]
fn a_restart_resumes_from_the_persisted_state_without_repeating_steps() {
    let strategy = canary(true);
    let mut sim = Sim::new(&strategy).with_stable();
    sim.tick(Some("8"), true, Judgement::Pass);
    let persisted = serde_json::to_string(&sim.state).unwrap();
    let restored: RolloutState = serde_json::from_str(&persisted).unwrap();
    assert_eq!(restored, sim.state);
    sim.state = restored;
    sim.log.clear();
    sim.advance(10);
    let s = sim.tick(Some("8"), true, Judgement::Pass);
    assert!(s.actions.is_empty(), "{:?}", s.actions);
}

/// A step without enough data holds; still without it at the progress deadline (from the
/// step's start) it is inconclusive: rolled back by default, held with `onInconclusive: Hold`.
#[test]
fn a_step_still_inconclusive_at_its_deadline_is_never_a_pass() {
    let thin = || Judgement::Inconclusive("3 of 20 requests observed".into());
    let mut strategy = canary(true);
    strategy.analysis = Some(Analysis {
        max_error_ratio: Some(0.05),
        ..Analysis::default()
    });
    let mut sim = Sim::new(&strategy);
    sim.tick(Some("7"), true, Judgement::Pass);
    sim.tick(Some("8"), true, thin());
    sim.advance(5);
    sim.tick(Some("8"), true, thin());
    // Past the step's pause (5m) but before the deadline (10m): it holds at 10%.
    sim.advance(400);
    let s = sim.tick(Some("8"), true, thin());
    assert_eq!(s.state.step, 0);
    assert_eq!(s.state.traffic.get("8"), Some(&10));
    assert_eq!(s.requeue_after, Some(Duration::from_secs(5)));
    sim.advance(200);
    let s = sim.tick(Some("8"), true, thin());
    assert_eq!(s.state.phase, DeploymentPhase::RolledBack);
    assert_eq!(s.state.traffic, BTreeMap::from([("7".to_string(), 100)]));
    let (kind, message) = sim.events().pop().unwrap();
    assert_eq!(kind, EventKind::RolledBack);
    assert!(
        message.starts_with("analysis inconclusive at 10% after 10m: 3 of 20 requests observed"),
        "{message}"
    );

    let mut held = canary(true);
    held.analysis = Some(Analysis {
        max_error_ratio: Some(0.05),
        on_inconclusive: slipway_crd::model_deployment::OnInconclusive::Hold,
        ..Analysis::default()
    });
    let mut sim = Sim::new(&held);
    sim.tick(Some("7"), true, Judgement::Pass);
    sim.tick(Some("8"), true, thin());
    sim.advance(5);
    sim.tick(Some("8"), true, thin());
    sim.advance(3600);
    let s = sim.tick(Some("8"), true, thin());
    assert_eq!(s.state.phase, DeploymentPhase::Progressing);
    assert_eq!(s.state.traffic.get("8"), Some(&10));
    // Data arrives: the step passes and the rollout goes on.
    let s = sim.tick(Some("8"), true, Judgement::Pass);
    assert_eq!(s.state.traffic.get("8"), Some(&50));
}

#[test]
fn one_step_writes_only_what_changed_and_a_frozen_failure_waits_for_a_change() {
    let spec: slipway_crd::model_deployment::ModelDeploymentSpec =
        serde_json::from_value(serde_json::json!({
            "model": "m", "alias": "production",
            "target": {"kubernetes": {"image": "serve:1", "replicas": 4, "port": 8080}},
            "strategy": {"type": "Canary", "steps": [{"weight": 25, "pause": "1m"}], "autoRollback": false}
        }))
        .unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 26, 20, 0, 0).unwrap();
    let healthy = |ready| step::Look {
        ready,
        judgement: Judgement::Pass,
        waiting: (!ready).then(|| "pitch-frames-api-v8: 0/1 replicas available".to_string()),
    };
    let stable = RolloutState {
        stable: Some("7".into()),
        phase: DeploymentPhase::Healthy,
        last_desired: Some("7".into()),
        traffic: [("7".to_string(), 100)].into(),
        ..Default::default()
    };
    let previous = slipway_crd::model_deployment::ModelDeploymentStatus::default();
    fn input<'a>(
        spec: &'a slipway_crd::model_deployment::ModelDeploymentSpec,
        state: &'a RolloutState,
        previous: &'a slipway_crd::model_deployment::ModelDeploymentStatus,
        desired: &'a str,
        now: DateTime<Utc>,
    ) -> step::Input<'a> {
        step::Input {
            spec,
            previous,
            state,
            desired: Some(desired),
            generation: Some(1),
            poll: Duration::from_secs(2),
            now,
            measured: &[],
            resolve: &|_| None,
        }
    }
    // Settled on 7: the first look writes the status (a new generation), the next one nothing.
    let first = step::step(
        &input(&spec, &stable, &previous, "7", t0),
        Some(healthy(true)),
    );
    assert!(first.write);
    assert_eq!(first.wait, None);
    let written = first.status.clone();
    let again = step::step(
        &input(&spec, &stable, &written, "7", t0),
        Some(healthy(true)),
    );
    assert!(!again.write, "{again:?}");
    // 8 starts: a candidate under way is looked at again at the target's pace.
    let start = step::step(
        &input(&spec, &stable, &written, "8", t0),
        Some(healthy(false)),
    );
    // While it is not ready, its Ready condition says what it waits for.
    let waiting = step::step(
        &input(&spec, &start.step.state, &start.status, "8", t0),
        Some(healthy(false)),
    );
    assert!(
        waiting.status.conditions[0]
            .message
            .ends_with("; waiting for pitch-frames-api-v8: 0/1 replicas available"),
        "{:?}",
        waiting.status.conditions
    );
    assert_eq!(start.step.state.candidate.as_deref(), Some("8"));
    assert!(start.wait.is_some());
    // The target says 8 cannot progress; without auto-rollback the rollout freezes where it is
    // and waits for a change instead of being polled.
    let running = start.step.state.clone();
    let failing = step::Look {
        ready: false,
        judgement: Judgement::Fail("pitch-frames-api-v8 is not progressing".into()),
        waiting: None,
    };
    let frozen = step::step(&input(&spec, &running, &written, "8", t0), Some(failing));
    assert_eq!(frozen.step.state.phase, DeploymentPhase::Failed);
    assert_eq!(frozen.step.state.candidate.as_deref(), Some("8"));
    assert_eq!(frozen.wait, None, "{frozen:?}");
}

#[test]
fn a_shadow_step_mirrors_before_any_traffic_and_a_disagreeing_shadow_is_rolled_back() {
    let mut strategy = canary(true);
    strategy.steps.insert(
        0,
        CanaryStep {
            weight: 0,
            pause: Some("1h".into()),
            mirror: Some(50),
        },
    );
    let steps = strategy_steps(&strategy);
    assert_eq!((steps[0].weight, steps[0].mirror), (0, 50));
    let mut sim = Sim::new(&strategy).with_stable();
    sim.tick(Some("8"), false, Judgement::Pass);
    sim.tick(Some("8"), true, Judgement::Pass);
    sim.advance(5);
    sim.tick(Some("8"), true, Judgement::Pass);
    // The shadow holds its hour with no traffic on 8, then the canary's first step.
    sim.advance(3600);
    sim.tick(Some("8"), true, Judgement::Pass);
    assert_eq!(
        sim.routes(),
        vec![w(&[("7", 100), ("8", 0)]), w(&[("7", 90), ("8", 10)])]
    );
    let events = sim.events();
    assert!(
        events.iter().any(|(k, m)| *k == EventKind::StepStarted
            && m == "50% of requests mirrored to 8 (a shadow: it answers no one)"),
        "{events:?}"
    );
    // 9 disagrees in its shadow: rolled back before it answered anyone.
    sim.advance(10_000);
    sim.tick(Some("9"), true, Judgement::Pass);
    sim.advance(5);
    let s = sim.tick(
        Some("9"),
        true,
        Judgement::Fail("agreement with the serving version 0.500 below 0.9".into()),
    );
    assert!(s.state.rejected.contains("9"));
    let events = sim.events();
    let (_, rolled) = events.last().unwrap();
    assert!(
        rolled.starts_with("analysis failed at the shadow step (50% mirrored): agreement"),
        "{rolled}"
    );
}
