//! Standing shadows (`spec.shadows`): versions that get a copy of a share of live requests for
//! as long as a deployment lists them, answer nobody, and are compared with the serving version
//! like a shadow step's candidate — with no time limit and several at once. Which versions they
//! are at a point of the rollout, and what is wrong with a list of them, are decided here; the
//! local target runs their servers and its router mirrors to them.

use slipway_crd::serving::Shadow;

use crate::rollout::RolloutState;

/// The most standing shadows one deployment may list: each costs a server and a copy of its
/// share of requests.
pub const MAX: usize = 5;

/// The versions a deployment mirrors to beside its rollout, with their shares (percent), in the
/// order listed: each listed version, an alias as `resolve` reads it. Left out: a version that
/// serves or is being rolled out (it answers requests of its own), an alias that names no
/// version, and a version listed before (its first share counts).
pub fn versions(
    shadows: &[Shadow],
    resolve: &dyn Fn(&str) -> Option<String>,
    state: &RolloutState,
) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for s in shadows {
        let version = match (&s.version, &s.alias) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(a)) => resolve(a),
            (None, None) => None,
        };
        let Some(v) = version else { continue };
        let busy = state.traffic.get(&v).is_some_and(|w| *w > 0)
            || state.candidate.as_deref() == Some(v.as_str())
            || state.stable.as_deref() == Some(v.as_str());
        if busy || s.mirror == 0 || out.iter().any(|(o, _)| *o == v) {
            continue;
        }
        out.push((v, s.mirror.min(100)));
    }
    out
}

/// What is wrong with a deployment's standing shadows, by field; `mirrors` says whether its
/// target mirrors requests (the local router, an HTTPRoute).
pub fn problems(shadows: &[Shadow], mirrors: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if shadows.is_empty() {
        return out;
    }
    if !mirrors {
        out.push((
            "spec.shadows".to_string(),
            "standing shadows need a target that mirrors requests: target.local, or a kubernetes target with traffic.gatewayAPI (replica ratios do not mirror, and a SageMaker config takes one shadow variant, which a shadow step uses; judge those versions with a canary's metrics instead)".to_string(),
        ));
    }
    if shadows.len() > MAX {
        out.push((
            "spec.shadows".to_string(),
            format!(
                "{} shadows listed; at most {MAX} (each runs a server and gets a copy of its share of requests)",
                shadows.len()
            ),
        ));
    }
    for (i, s) in shadows.iter().enumerate() {
        let at = |f: &str| format!("spec.shadows[{i}]{f}");
        match (&s.version, &s.alias) {
            (Some(_), Some(_)) => {
                out.push((at(""), "set one of version and alias, not both".to_string()))
            }
            (None, None) => out.push((
                at(""),
                "set version (a version to mirror to) or alias (one that follows an alias)"
                    .to_string(),
            )),
            _ => {}
        }
        if !(1..=100).contains(&s.mirror) {
            out.push((
                at(".mirror"),
                format!("{} is not a percent of requests from 1 to 100", s.mirror),
            ));
        }
        let same = |o: &Shadow| {
            (o.version.is_some() && o.version == s.version)
                || (o.alias.is_some() && o.alias == s.alias)
        };
        if let Some(j) = shadows[..i].iter().position(same) {
            out.push((
                at(""),
                format!("listed already as spec.shadows[{j}]; list each version or alias once"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn shadow(version: Option<&str>, alias: Option<&str>, mirror: u32) -> Shadow {
        Shadow {
            version: version.map(str::to_string),
            alias: alias.map(str::to_string),
            mirror,
        }
    }

    #[test]
    fn standing_shadows_leave_out_what_serves_what_rolls_out_and_what_is_listed_twice() {
        let state = RolloutState {
            stable: Some("1".into()),
            candidate: Some("2".into()),
            traffic: BTreeMap::from([("1".into(), 80), ("2".into(), 20)]),
            ..Default::default()
        };
        let resolve = |a: &str| match a {
            "challenger" => Some("3".to_string()),
            "nobody" => None,
            _ => Some("1".to_string()),
        };
        let listed = [
            shadow(Some("1"), None, 10),
            shadow(Some("2"), None, 10),
            shadow(None, Some("challenger"), 25),
            shadow(Some("3"), None, 50),
            shadow(None, Some("nobody"), 10),
            shadow(None, Some("production"), 10),
            shadow(Some("4"), None, 150),
        ];
        assert_eq!(
            versions(&listed, &resolve, &state),
            vec![("3".to_string(), 25), ("4".to_string(), 100)]
        );
        // Once version 2 is promoted and 1 retired, a shadow of 1 runs again.
        let after = RolloutState {
            stable: Some("2".into()),
            traffic: BTreeMap::from([("2".into(), 100)]),
            ..Default::default()
        };
        assert_eq!(
            versions(&listed[..1], &resolve, &after),
            vec![("1".to_string(), 10)]
        );
    }

    #[test]
    fn a_list_of_standing_shadows_is_checked_field_by_field() {
        let fields = |list: &[Shadow], local: bool| -> Vec<String> {
            problems(list, local).into_iter().map(|(f, _)| f).collect()
        };
        assert!(fields(&[], false).is_empty());
        assert!(fields(&[shadow(Some("3"), None, 10)], true).is_empty());
        assert_eq!(
            fields(&[shadow(Some("3"), None, 10)], false),
            ["spec.shadows"]
        );
        assert_eq!(
            fields(
                &[
                    shadow(Some("3"), Some("a"), 10),
                    shadow(None, None, 0),
                    shadow(Some("3"), None, 101),
                ],
                true
            ),
            [
                "spec.shadows[0]",
                "spec.shadows[1]",
                "spec.shadows[1].mirror",
                "spec.shadows[2].mirror",
                "spec.shadows[2]",
            ]
        );
        let many: Vec<Shadow> = (0..6)
            .map(|i| shadow(Some(&i.to_string()), None, 1))
            .collect();
        assert_eq!(fields(&many, true), ["spec.shadows"]);
    }
}
