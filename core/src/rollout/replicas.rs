//! How many pods each version runs on a Kubernetes target, whose `Service` spreads requests
//! over the ready pods of every version: the pod counts are the traffic split. A step never
//! sends a version other than the stable one more than its share, at any moment — when the
//! candidate starts, while a step's counts are applied one `Deployment` at a time, and when a
//! share is smaller than one of `replicas` pods (then the stable version runs more pods than
//! `replicas`: 10% with 4 replicas is 1 candidate pod beside 9).

use std::collections::BTreeMap;

/// Pods per version for `weights` on a target of `total` replicas. Each version but the stable
/// one gets its share of `total` rounded down, at least one pod; `stable` (else the version
/// with the largest weight, the first of equals) gets the rest — and more, when a share rounded
/// up to one pod would otherwise be more than that share.
pub fn replicas_for(
    weights: &BTreeMap<String, u32>,
    total: u32,
    stable: Option<&str>,
) -> BTreeMap<String, u32> {
    let total = total.max(1);
    let live: Vec<(&String, u32)> = weights
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(v, w)| (v, *w))
        .collect();
    let absorber = live
        .iter()
        .find(|(v, _)| Some(v.as_str()) == stable)
        .or_else(|| {
            let most = live.iter().map(|(_, w)| *w).max()?;
            live.iter().find(|(_, w)| *w == most)
        })
        .map(|(v, _)| (*v).clone());
    let Some(absorber) = absorber else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    let (mut others, mut needed) = (0u32, 0u32);
    for (v, w) in live.iter().filter(|(v, _)| **v != absorber) {
        let pods = (u64::from(total) * u64::from(*w) / 100).max(1) as u32;
        others += pods;
        // The pods in all for these to be no more than `w` percent.
        needed = needed.max((u64::from(pods) * 100).div_ceil(u64::from(*w)) as u32);
        out.insert((*v).clone(), pods);
    }
    let rest = total.saturating_sub(others).max(1);
    out.insert(absorber, rest.max(needed.saturating_sub(others)));
    out
}

/// The pods each version runs while `candidate` starts beside `weights` (the traffic now), its
/// first share `first` (percent): the candidate's pods of the first step, and the stable
/// version's pods raised to what that step needs when it runs fewer — never lowered before the
/// candidate is ready. The stable version's count comes first in the list: applied in this
/// order, the candidate never has more than its first share.
pub fn starting(
    weights: &BTreeMap<String, u32>,
    candidate: &str,
    first: u32,
    total: u32,
    stable: Option<&str>,
) -> Vec<(String, u32)> {
    let now = replicas_for(weights, total, stable);
    let mut step: BTreeMap<String, u32> = weights
        .iter()
        .filter(|(v, w)| **w > 0 && v.as_str() != candidate)
        .map(|(v, w)| (v.clone(), *w))
        .collect();
    let left: u32 = 100u32.saturating_sub(first.min(100));
    // The first step takes its share from the version that serves most (the stable one).
    if let Some(s) = stable
        .filter(|s| step.contains_key(*s))
        .map(str::to_string)
        .or_else(|| step.keys().next().cloned())
    {
        let others: u32 = step.iter().filter(|(v, _)| **v != s).map(|(_, w)| *w).sum();
        step.insert(s, left.saturating_sub(others));
    }
    step.insert(candidate.to_string(), first);
    let wanted = replicas_for(&step, total, stable);
    let mut out: Vec<(String, u32)> = now
        .iter()
        .filter_map(|(v, pods)| {
            let need = wanted.get(v).copied().unwrap_or(0);
            (need > *pods).then(|| (v.clone(), need))
        })
        .collect();
    out.push((
        candidate.to_string(),
        wanted.get(candidate).copied().unwrap_or(1),
    ));
    out
}

/// Pods for a version that gets copies of `share` percent of the requests and answers none (a
/// shadow): that share of `total`, rounded up, at least one.
pub fn mirror_pods(share: u32, total: u32) -> u32 {
    (u64::from(total.max(1)) * u64::from(share.min(100)))
        .div_ceil(100)
        .max(1) as u32
}

/// `pods` with the versions of `mirrored` (version, percent) that run none given their
/// [`mirror_pods`]: a shadow step's candidate, standing shadows.
pub fn with_mirrors(
    mut pods: BTreeMap<String, u32>,
    mirrored: &[(String, u32)],
    total: u32,
) -> BTreeMap<String, u32> {
    for (v, share) in mirrored {
        let p = pods.entry(v.clone()).or_insert(0);
        if *p == 0 {
            *p = mirror_pods(*share, total);
        }
    }
    pods
}

/// What a deployment's steps cost on a Kubernetes target of `replicas`: the step (its weight)
/// that runs the most pods beyond `replicas` to hold the candidate to its share, and how many
/// pods it runs in all — None when no step needs more than `replicas`.
pub fn surge(d: &slipway_crd::model_deployment::ModelDeploymentSpec) -> Option<(u32, u32, u32)> {
    let replicas = d.target.kubernetes.as_ref()?.replicas.max(1);
    super::strategy_steps(&d.strategy)
        .iter()
        .filter(|s| s.weight < 100)
        .map(|s| {
            let w = BTreeMap::from([
                ("stable".to_string(), 100 - s.weight),
                ("candidate".to_string(), s.weight),
            ]);
            let pods: u32 = replicas_for(&w, replicas, Some("stable")).values().sum();
            (s.weight, replicas, pods)
        })
        .filter(|(_, r, pods)| pods > r)
        .max_by_key(|(_, _, pods)| *pods)
}

/// The order to apply a step's pod counts `next` in, from `now`: the versions that shrink first,
/// then those that grow, so that no version is ever above its new share or its old one.
pub fn apply_order(
    now: &BTreeMap<String, u32>,
    next: &BTreeMap<String, u32>,
) -> Vec<(String, u32)> {
    let mut shrinking = Vec::new();
    let mut growing = Vec::new();
    for (v, pods) in next {
        if now.get(v).is_some_and(|n| *n > *pods) {
            shrinking.push((v.clone(), *pods));
        } else {
            growing.push((v.clone(), *pods));
        }
    }
    shrinking.extend(growing);
    shrinking
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(v, p)| (v.to_string(), *p)).collect()
    }

    #[test]
    fn a_shadow_runs_pods_for_its_share_of_copies_and_a_serving_version_keeps_its_own() {
        assert_eq!(mirror_pods(50, 4), 2);
        assert_eq!(mirror_pods(10, 4), 1);
        assert_eq!(mirror_pods(1, 0), 1);
        assert_eq!(mirror_pods(100, 3), 3);
        let serving = replicas_for(&w(&[("7", 100), ("8", 0)]), 4, Some("7"));
        let mirrored = [("8".to_string(), 50), ("7".to_string(), 20)];
        assert_eq!(
            with_mirrors(serving, &mirrored, 4),
            w(&[("7", 4), ("8", 2)])
        );
    }

    #[test]
    fn pod_counts_follow_the_weights_and_keep_every_version_alive() {
        let s = Some("7");
        assert_eq!(
            replicas_for(&w(&[("7", 90), ("8", 10)]), 10, s),
            w(&[("7", 9), ("8", 1)])
        );
        assert_eq!(
            replicas_for(&w(&[("7", 75), ("8", 25)]), 4, s),
            w(&[("7", 3), ("8", 1)])
        );
        assert_eq!(
            replicas_for(&w(&[("7", 50), ("8", 50)]), 4, s),
            w(&[("7", 2), ("8", 2)])
        );
        // 10% of 3 replicas is less than a pod: the canary runs one, beside 9 of the stable.
        assert_eq!(
            replicas_for(&w(&[("7", 90), ("8", 10)]), 3, s),
            w(&[("7", 9), ("8", 1)])
        );
        // The candidate holding the larger share never gets more than it either.
        assert_eq!(
            replicas_for(&w(&[("7", 30), ("8", 70)]), 2, s),
            w(&[("7", 1), ("8", 1)])
        );
        assert_eq!(replicas_for(&w(&[("8", 100)]), 3, s), w(&[("8", 3)]));
        assert_eq!(
            replicas_for(&w(&[("7", 0), ("8", 100)]), 2, None),
            w(&[("8", 2)])
        );
        assert!(replicas_for(&w(&[]), 2, s).is_empty());
    }

    #[test]
    fn a_step_smaller_than_one_pod_is_said_with_what_it_costs() {
        let spec =
            |weight: u32, replicas: u32| -> slipway_crd::model_deployment::ModelDeploymentSpec {
                serde_json::from_value(serde_json::json!({
                    "model": "m", "alias": "production",
                    "target": {"kubernetes": {"image": "i", "port": 8080, "replicas": replicas}},
                    "strategy": {"type": "Canary", "steps": [{"weight": weight, "pause": "1m"}]}
                }))
                .unwrap()
            };
        assert_eq!(surge(&spec(25, 4)), None);
        assert_eq!(surge(&spec(10, 4)), Some((10, 4, 10)));
        assert_eq!(surge(&spec(1, 1)), Some((1, 1, 100)));
    }

    /// Every moment of a rollout — the candidate started, then each step's counts applied one
    /// `Deployment` at a time — gives the candidate no more than the step's share.
    #[test]
    fn a_candidate_never_has_more_than_its_share_at_any_moment() {
        for total in 1..=12 {
            for steps in [
                vec![25, 50, 100],
                vec![10, 100],
                vec![5, 20, 60, 100],
                vec![50, 100],
            ] {
                let stable = Some("7");
                let mut weights = w(&[("7", 100)]);
                let mut pods = replicas_for(&weights, total, stable);
                let share = |pods: &BTreeMap<String, u32>| {
                    let all: u32 = pods.values().sum();
                    f64::from(pods.get("8").copied().unwrap_or(0)) * 100.0 / f64::from(all)
                };
                for (v, n) in starting(&weights, "8", steps[0], total, stable) {
                    pods.insert(v, n);
                    let s = share(&pods);
                    assert!(
                        s <= f64::from(steps[0]) + 1e-9,
                        "{total} replicas, {steps:?}: {s}% at the start ({pods:?})"
                    );
                }
                for step in &steps {
                    let next = if *step == 100 {
                        w(&[("8", 100)])
                    } else {
                        w(&[("7", 100 - step), ("8", *step)])
                    };
                    let counts = replicas_for(&next, total, stable);
                    for (v, n) in apply_order(&pods, &counts) {
                        pods.insert(v, n);
                        let s = share(&pods);
                        assert!(
                            s <= f64::from(*step) + 1e-9,
                            "{total} replicas, {steps:?}: {s}% during step {step} ({pods:?})"
                        );
                    }
                    if *step == 100 {
                        pods.remove("7");
                    }
                    weights = next;
                }
                assert_eq!(pods, replicas_for(&weights, total, stable));
            }
        }
    }
}
