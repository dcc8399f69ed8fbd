use super::*;
use slipway_crd::model_deployment::{Analysis, Step as StrategyStep};

fn target() -> SageMakerTarget {
    SageMakerTarget {
        region: Some("eu-west-1".into()),
        endpoint_name: "pitch-frames".into(),
        execution_role_arn: "arn:aws:iam::123456789012:role/sm".into(),
        image: "123.dkr.ecr.eu-west-1.amazonaws.com/server:1".into(),
        instance_type: "ml.m5.large".into(),
        instance_count: 2,
        endpoint_url: None,
        mode: Default::default(),
    }
}

fn artifact(v: &str) -> Artifact {
    Artifact {
        uri: format!("s3://models/{v}/model.tar.gz"),
        digest: format!("sha256:{v}{v}"),
    }
}

fn want(v: &str) -> Option<Desired> {
    Some(desired(&target(), v, &artifact(v), None))
}

/// Version 7 serving alone, healthy.
fn serving_seven() -> RolloutState {
    RolloutState {
        stable: Some("7".into()),
        phase: DeploymentPhase::Healthy,
        last_desired: Some("7".into()),
        traffic: BTreeMap::from([("7".into(), 100)]),
        ..Default::default()
    }
}

fn policy(strategy: &Strategy) -> crate::rollout::Policy<'_> {
    crate::rollout::Policy {
        strategy,
        progress_deadline: Duration::from_secs(1800),
        poll: Duration::from_secs(2),
    }
}

/// The endpoint `t` wants for a split and a shadow, with no live counts.
fn want_split(t: &SageMakerTarget) -> Box<super::steps::WantSplit<'_>> {
    Box::new(move |split, shadow| {
        desired_split(t, split, &|v| Some(artifact(v)), &BTreeMap::new(), shadow)
    })
}

fn live(d: &Desired) -> Live {
    Live {
        status: "InService".into(),
        config: d.config.clone(),
        variants: d
            .variants
            .iter()
            .map(|v| LiveVariant {
                name: v.name.clone(),
                model: v.model.clone(),
                image: v.image.clone(),
                artifact: v.artifact.clone(),
                instance_type: v.instance_type.clone(),
                instance_count: v.instance_count,
                weight: v.weight,
                shadow: v.shadow,
            })
            .collect(),
        owner: Some(("default".into(), "api".into())),
        failure: None,
        pending: None,
    }
}

fn canary() -> Strategy {
    Strategy {
        type_: StrategyType::Canary,
        steps: vec![StrategyStep {
            weight: 25,
            pause: Some("30s".into()),
            mirror: None,
        }],
        analysis: Some(Analysis {
            alarms: vec!["pitch-frames-5xx".into()],
            ..Default::default()
        }),
        auto_rollback: true,
        ..Default::default()
    }
}

#[test]
fn names_are_valid_sagemaker_names_and_follow_content() {
    let m = model_name(&"x".repeat(80), "7.1_rc", "sha256:abc", "img:1");
    assert!(m.len() <= 63 && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    assert_eq!(
        model_name("ep", "7", "sha256:a", "img:1"),
        model_name("ep", "7", "sha256:a", "img:1")
    );
    assert_ne!(
        model_name("ep", "7", "sha256:a", "img:1"),
        model_name("ep", "7", "sha256:b", "img:1")
    );
    assert_ne!(
        model_name("ep", "7", "sha256:a", "img:1"),
        model_name("ep", "7", "sha256:a", "img:2"),
        "a new image is a new Model"
    );
    let a = want("7").unwrap();
    let mut more = target();
    more.instance_count = 3;
    let b = desired(&more, "7", &artifact("7"), None);
    assert_ne!(
        a.config, b.config,
        "a different count is a different config"
    );
    // A live, autoscaled count is kept.
    let kept = desired(&more, "7", &artifact("7"), Some(5));
    assert_eq!(kept.variants[0].instance_count, 5);
}

#[test]
fn strategies_map_onto_guardrails() {
    let g = guardrails(&canary()).unwrap();
    assert_eq!(g.routing, Routing::Canary { percent: 25 });
    assert_eq!(g.wait, Duration::from_secs(30));
    assert_eq!(g.alarms, ["pitch-frames-5xx"]);
    assert!(g.max_execution >= Duration::from_secs(600));
    let linear = Strategy {
        type_: StrategyType::Linear,
        step_weight: Some(20),
        interval: Some("1m".into()),
        ..Default::default()
    };
    let g = guardrails(&linear).unwrap();
    assert_eq!(g.routing, Routing::Linear { percent: 20 });
    assert_eq!(g.wait, Duration::from_secs(60));
    assert_eq!(
        guardrails(&Strategy::default()).unwrap().routing,
        Routing::AllAtOnce
    );
    let mut two = canary();
    two.steps.push(StrategyStep {
        weight: 50,
        pause: None,
        mirror: None,
    });
    let e = guardrails(&two).unwrap_err();
    assert!(e.contains("one canary"), "{e}");
    let bad = Strategy {
        type_: StrategyType::Linear,
        ..Default::default()
    };
    assert!(guardrails(&bad).unwrap_err().contains("stepWeight"));
}

#[test]
fn the_first_deployment_creates_the_endpoint() {
    let g = guardrails(&canary()).unwrap();
    let s = decide(&RolloutState::default(), Some("7"), &want, &g, None);
    assert!(matches!(&s.calls[..], [Call::Create(d)] if d.variants[0].version == "7"));
    assert_eq!(s.state.candidate.as_deref(), Some("7"));
    assert_eq!(s.events[0].0, EventKind::RolloutStarted);
    // Created and in service: healthy, and superseded objects are collected.
    let d = want("7").unwrap();
    let s = decide(&s.state, Some("7"), &want, &g, Some(&live(&d)));
    assert_eq!(s.state.stable.as_deref(), Some("7"));
    assert_eq!(s.state.phase, DeploymentPhase::Healthy);
    assert_eq!(s.events[0].0, EventKind::RolloutSucceeded);
    assert!(matches!(&s.calls[..], [Call::Collect { config, .. }] if *config == d.config));
}

#[test]
fn an_alias_move_updates_with_guardrails_and_a_returned_endpoint_is_a_rollback() {
    let g = guardrails(&canary()).unwrap();
    let seven = want("7").unwrap();
    let state = serving_seven();
    let s = decide(&state, Some("8"), &want, &g, Some(&live(&seven)));
    let [Call::Update(d, Some(used))] = &s.calls[..] else {
        panic!("{:?}", s.calls)
    };
    assert_eq!(d.variants[0].version, "8");
    assert_eq!(used, &g);
    assert_eq!(s.state.candidate.as_deref(), Some("8"));
    // Updating: the canary's share shows as traffic.
    let mut updating = live(&seven);
    updating.status = "Updating".into();
    updating.pending = Some((d.config.clone(), 0.25));
    let s2 = decide(&s.state, Some("8"), &want, &g, Some(&updating));
    assert_eq!(
        s2.state.traffic,
        BTreeMap::from([("7".into(), 75), ("8".into(), 25)])
    );
    assert!(s2.calls.is_empty());
    // Back in service on the old config, with a reason: rolled back, never a success.
    let mut back = live(&seven);
    back.failure = Some("Alarm pitch-frames-5xx is in ALARM state".into());
    let s3 = decide(&s2.state, Some("8"), &want, &g, Some(&back));
    assert_eq!(s3.state.phase, DeploymentPhase::RolledBack);
    assert!(s3.state.rejected.contains("8"));
    assert_eq!(s3.state.stable.as_deref(), Some("7"));
    assert_eq!(s3.events[0].0, EventKind::RolledBack);
    assert!(s3.events[0].2.contains("ALARM"));
    // Not retried while the alias stays on 8.
    let s4 = decide(&s3.state, Some("8"), &want, &g, Some(&back));
    assert!(s4.calls.is_empty() && s4.events.is_empty(), "{s4:?}");
    // Moving away and back to 8 tries it again.
    let s5 = decide(&s4.state, Some("7"), &want, &g, Some(&back));
    let s6 = decide(&s5.state, Some("8"), &want, &g, Some(&back));
    assert!(matches!(&s6.calls[..], [Call::Update(..)]));
}

#[test]
fn drift_is_reported_and_healed() {
    let g = guardrails(&canary()).unwrap();
    let seven = want("7").unwrap();
    let state = RolloutState {
        stable: Some("7".into()),
        phase: DeploymentPhase::Healthy,
        last_desired: Some("7".into()),
        ..Default::default()
    };
    assert!(
        decide(&state, Some("7"), &want, &g, Some(&live(&seven)))
            .calls
            .is_empty()
    );
    // A hand-edited image.
    let mut edited = live(&seven);
    edited.variants[0].image = "someone/else:2".into();
    let s = decide(&state, Some("7"), &want, &g, Some(&edited));
    assert_eq!(s.drift.len(), 1, "{:?}", s.drift);
    assert!(
        s.drift[0].contains("image is someone/else:2"),
        "{:?}",
        s.drift
    );
    assert!(matches!(&s.calls[..], [Call::Update(_, None)]));
    // An extra variant taking traffic: a weight-only difference is healed without a config.
    let mut extra = live(&seven);
    extra.variants.push(LiveVariant {
        name: "debug".into(),
        weight: 1.0,
        ..Default::default()
    });
    let s = decide(&state, Some("7"), &want, &g, Some(&extra));
    assert!(s.drift.iter().any(|d| d.contains("should not exist")));
    assert!(matches!(&s.calls[..], [Call::Update(_, None)]));
    let mut weights = live(&seven);
    weights.variants[0].weight = 0.0;
    let s = decide(&state, Some("7"), &want, &g, Some(&weights));
    assert!(matches!(&s.calls[..], [Call::Weights(_)]), "{:?}", s.calls);
    // A deleted endpoint is recreated and reported.
    let s = decide(&state, Some("7"), &want, &g, None);
    assert!(s.drift[0].contains("does not exist"));
    assert!(matches!(&s.calls[..], [Call::Create(_)]));
}

#[test]
fn variants_mode_starts_a_variant_then_moves_weights_without_new_configs() {
    let strategy = Strategy {
        type_: StrategyType::Canary,
        steps: vec![
            StrategyStep {
                weight: 25,
                pause: Some("1m".into()),
                mirror: None,
            },
            StrategyStep {
                weight: 50,
                pause: Some("1m".into()),
                mirror: None,
            },
        ],
        auto_rollback: true,
        ..Default::default()
    };
    let policy = policy(&strategy);
    let t = target();
    let want = want_split(&t);
    let now = crate::testing::now();
    let pass = crate::rollout::Judgement::Pass;
    let state = serving_seven();
    let seven = want(&BTreeMap::from([("7".into(), 100)]), None).unwrap();
    // The move to 8: a config with both variants, 8 at weight 0.
    let s = decide_variants(
        &state,
        Some("8"),
        &policy,
        &want,
        Some(&live(&seven)),
        pass.clone(),
        now,
    );
    let [Call::Update(d, None)] = &s.calls[..] else {
        panic!("{:?}", s.calls)
    };
    let weights: Vec<(String, f32)> = d
        .variants
        .iter()
        .map(|v| (v.name.clone(), v.weight))
        .collect();
    assert_eq!(
        weights,
        [("v7".to_string(), 100.0), ("v8".to_string(), 0.0)]
    );
    // Both variants in service: the first step is a weight change only.
    let both = live(d);
    let s2 = decide_variants(
        &s.state,
        Some("8"),
        &policy,
        &want,
        Some(&both),
        pass.clone(),
        now,
    );
    let [Call::Weights(w)] = &s2.calls[..] else {
        panic!("{:?}", s2.calls)
    };
    let weights: Vec<f32> = w.variants.iter().map(|v| v.weight).collect();
    assert_eq!(weights, [75.0, 25.0]);
    // An alarm during the step: all traffic back to 7 and 8's variant removed (a new config).
    let stepped = live(w);
    let fail = crate::rollout::Judgement::Fail("alarm pitch-frames-5xx is in ALARM".into());
    let s3 = decide_variants(
        &s2.state,
        Some("8"),
        &policy,
        &want,
        Some(&stepped),
        fail,
        now,
    );
    assert!(s3.state.rejected.contains("8"), "{:?}", s3.state);
    let [Call::Update(back, None)] = &s3.calls[..] else {
        panic!("{:?}", s3.calls)
    };
    assert_eq!(back.variants.len(), 1);
    assert_eq!(back.variants[0].name, "v7");
    assert!(
        s3.events
            .iter()
            .any(|(k, _, _)| *k == EventKind::RolledBack)
    );
}

#[test]
fn a_heal_sagemaker_refused_is_given_up_once_and_one_in_progress_is_remembered() {
    let d = want("7").unwrap();
    let heal = [Call::Update(d.clone(), None)];
    let mut l = live(&d);
    l.config = "old-config".into();
    // A new heal: remembered, not refused.
    let first = heal_of(&heal, None, Some(&l));
    assert_eq!(first.healing.as_deref(), Some(d.config.as_str()));
    assert_eq!(first.refused, None);
    // SageMaker still updating: the heal stays remembered without a new call.
    l.status = "Updating".into();
    let during = heal_of(&[], Some(&d.config), Some(&l));
    assert_eq!(during.healing.as_deref(), Some(d.config.as_str()));
    // Back in service without it, and the step asks for the same heal again: refused, with why.
    l.status = "InService".into();
    l.failure = Some("capacity error".into());
    let again = heal_of(&heal, Some(&d.config), Some(&l));
    assert!(
        again
            .refused
            .as_deref()
            .is_some_and(|w| w.contains("capacity error")),
        "{again:?}"
    );
}

fn heal_of(calls: &[Call], before: Option<&String>, l: Option<&Live>) -> super::Heal {
    super::heal(calls, before.map(String::as_str), l)
}

#[test]
fn an_endpoint_of_another_deployment_or_made_by_hand_is_not_ours() {
    let mut l = Live {
        owner: Some(("team-a".into(), "api".into())),
        ..Default::default()
    };
    assert_eq!(owned_by(&l, "team-a", "api"), Ok(()));
    let theirs = owned_by(&l, "team-b", "api").unwrap_err();
    assert!(
        theirs.contains("belongs to ModelDeployment team-a/api"),
        "{theirs}"
    );
    l.owner = None;
    let hand = owned_by(&l, "team-a", "api").unwrap_err();
    assert!(
        hand.contains("tagging it slipway.dev/namespace=team-a and slipway.dev/deployment=api"),
        "{hand}"
    );
}

#[test]
fn after_a_decision_both_homes_stall_a_refused_heal_once_and_look_again_by_what_failed() {
    use crate::limits::{RESYNC, SAGEMAKER_RETRY};
    use crate::rollout::status::{Basis, Endpoint};
    let t = target();
    let d = want("7").unwrap();
    let spec = slipway_crd::model_deployment::ModelDeploymentSpec::default();
    let mut l = live(&d);
    l.config = "old-config".into();
    l.failure = Some("capacity error".into());
    let recorded = RolloutState {
        stable: Some("7".into()),
        phase: DeploymentPhase::Healthy,
        traffic: BTreeMap::from([("7".into(), 100)]),
        ..Default::default()
    };
    let heal = || Step {
        state: recorded.clone(),
        calls: vec![Call::Update(d.clone(), None)],
        events: Vec::new(),
        drift: vec!["config differs".into()],
        requeue_after: None,
    };
    let previous = slipway_crd::model_deployment::ModelDeploymentStatus::default();
    let basis = Basis {
        spec: &spec,
        previous: &previous,
        generation: None,
        now: crate::testing::now(),
    };
    // A first heal: its calls go out, the drift is news; the step names no time (the homes'
    // resync looks again).
    let first = sequence::sequence(&recorded, heal(), Some(&l), &t, &basis, &[]);
    assert_eq!(first.calls.len(), 1);
    assert!(first.write && first.drift_news.is_some());
    assert_eq!((first.stalled.as_deref(), first.wait), (None, None));
    // The endpoint came back in service without it: the same heal is refused once, no calls.
    let healed = first.status.clone();
    let basis = Basis {
        previous: &healed,
        ..basis
    };
    let again = sequence::sequence(&recorded, heal(), Some(&l), &t, &basis, &[]);
    assert!(again.calls.is_empty());
    assert!(
        again
            .stalled
            .as_deref()
            .is_some_and(|w| w.contains("capacity error")),
        "{again:?}"
    );
    assert_eq!(again.wait, None);
    // A refusal waits for a change; an outage is tried again soon.
    let unseen = Endpoint {
        target: &t,
        live: None,
        healing: None,
        drift: &[],
    };
    let rejected = sequence::failed(
        &recorded,
        "no role",
        sequence::Failure::Rejected,
        &basis,
        &unseen,
    );
    let outage = sequence::failed(
        &recorded,
        "503",
        sequence::Failure::Unavailable,
        &basis,
        &unseen,
    );
    assert_eq!((rejected.1, outage.1), (RESYNC, SAGEMAKER_RETRY));
    assert!(
        rejected
            .0
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True")
    );
}

#[test]
fn a_shadow_step_runs_the_candidate_as_a_shadow_variant_on_its_share_of_instances() {
    let step = |weight: u32, mirror: Option<u32>| StrategyStep {
        weight,
        pause: Some("1m".into()),
        mirror,
    };
    let strategy = Strategy {
        type_: StrategyType::Canary,
        steps: vec![step(0, Some(50)), step(50, None)],
        auto_rollback: true,
        ..Default::default()
    };
    let policy = policy(&strategy);
    let mut t = target();
    t.instance_count = 4;
    let want = want_split(&t);
    let now = crate::testing::now();
    let pass = crate::rollout::Judgement::Pass;
    let state = serving_seven();
    let seven = want(&BTreeMap::from([("7".into(), 100)]), None).unwrap();
    let decide = |s: &RolloutState, live: &Live, j: crate::rollout::Judgement, at| {
        decide_variants(s, Some("8"), &policy, &want, Some(live), j, at)
    };
    // The move: 7 alone in production, 8 a shadow copying 50% on half the instances.
    let s1 = decide(&state, &live(&seven), pass.clone(), now);
    let [Call::Update(d, None)] = &s1.calls[..] else {
        panic!("{:?}", s1.calls)
    };
    let shown: Vec<(&str, f32, u32, bool)> = d
        .variants
        .iter()
        .map(|v| (v.name.as_str(), v.weight, v.instance_count, v.shadow))
        .collect();
    assert_eq!(shown, [("v7", 100.0, 4, false), ("v8", 50.0, 2, true)]);
    // In service (as SageMaker lists it, or only by its config's name): the step starts, with
    // no call — the shadow is already what the step wants.
    let listed = live(d);
    let mut unlisted = listed.clone();
    unlisted.variants.retain(|v| !v.shadow);
    for l in [&listed, &unlisted] {
        let s2 = decide(&s1.state, l, pass.clone(), now);
        assert!(s2.state.step_started.is_some(), "{:?}", s2.state);
        assert!(s2.calls.is_empty(), "{:?}", s2.calls);
        assert!(s2.drift.is_empty(), "{:?}", s2.drift);
    }
    let s2 = decide(&s1.state, &listed, pass.clone(), now);
    // Held while it passes (its pause counts once it is seen ready); after its pause, 8 is a
    // production variant (a new config).
    let ready = decide(&s2.state, &listed, pass.clone(), now);
    assert!(ready.calls.is_empty(), "{:?}", ready.calls);
    let later = now + chrono::Duration::minutes(2);
    let s3 = decide(&ready.state, &listed, pass.clone(), later);
    let [Call::Update(next, None)] = &s3.calls[..] else {
        panic!("{:?} {:?}", s3.calls, s3.state)
    };
    assert!(next.variants.iter().all(|v| !v.shadow), "{next:?}");
    assert_eq!(next.variants.len(), 2);
    // A failure of the shadow instead: a config with 7 alone, 8 rejected.
    let fail = crate::rollout::Judgement::Fail("errors".into());
    let back = decide(&s2.state, &listed, fail, now);
    assert!(back.state.rejected.contains("8"), "{:?}", back.state);
    let [Call::Update(alone, None)] = &back.calls[..] else {
        panic!("{:?}", back.calls)
    };
    assert_eq!(alone.config, seven.config);
    assert!(drift(alone, &listed).iter().any(|d| d.contains("shadow")));
}
