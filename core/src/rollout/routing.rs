//! Which version one request goes to, beyond the step's weights: an A/B cohort a header or
//! cookie names goes to the candidate, and a sticky key keeps one user on one version for the
//! whole rollout. Pure; the local router asks it per request.

use slipway_crd::model_deployment::Strategy;
use slipway_crd::serving::{RequestKey, RequestMatch};

use super::RolloutState;

/// The request rules of a deployment at this point of its rollout.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Routing {
    /// The version being rolled out (rules send requests only to it).
    pub candidate: Option<String>,
    /// Requests that go to the candidate whatever its weight.
    pub matches: Vec<RequestMatch>,
    /// The key a user's version is hashed from.
    pub sticky_by: Option<RequestKey>,
    /// A shadow step: percent of requests also sent to the candidate (0: none).
    pub mirror: u32,
    /// How a shadow's answers are compared with the serving version's.
    pub compare: super::shadow::Compare,
    /// Standing shadows: versions also sent this percent of requests beside the rollout
    /// ([`super::shadow::standing::versions`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadows: Vec<(String, u32)>,
}

impl Routing {
    /// The rules of `strategy` while `state` rolls out its candidate.
    pub fn of(strategy: &Strategy, state: &RolloutState) -> Routing {
        let step = super::strategy_steps(strategy);
        Routing {
            candidate: state.candidate.clone(),
            matches: strategy.match_.clone(),
            sticky_by: strategy.sticky_by.clone(),
            // Mirrored once the step's weights are applied (the candidate is ready): one still
            // loading would count as disagreeing. A failure frozen in place (no automatic
            // rollback) stops the copies, as it stops a cohort.
            mirror: match (&state.candidate, state.step_started, &state.phase) {
                (_, _, slipway_crd::model_deployment::DeploymentPhase::Failed) => 0,
                (Some(_), Some(_), _) => step.get(state.step).map_or(0, |s| s.mirror),
                _ => 0,
            },
            compare: super::shadow::Compare {
                tolerance: strategy
                    .analysis
                    .as_ref()
                    .and_then(|a| a.agreement_tolerance)
                    .unwrap_or(0.0),
                ignore: strategy
                    .analysis
                    .as_ref()
                    .map(|a| a.agreement_ignore.clone())
                    .unwrap_or_default(),
            },
            shadows: Vec::new(),
        }
    }

    /// These rules, also mirroring to the standing shadows `shadows` (version, percent).
    pub fn with_shadows(mut self, shadows: Vec<(String, u32)>) -> Routing {
        self.shadows = shadows;
        self
    }

    /// Every version requests are mirrored to, with its share (percent): the candidate of a
    /// shadow step, then the standing shadows.
    pub fn mirrored(&self) -> impl Iterator<Item = (&str, u32)> {
        let step = self
            .candidate
            .as_deref()
            .filter(|_| self.mirror > 0)
            .map(|c| (c, self.mirror.min(100)));
        step.into_iter().chain(
            self.shadows
                .iter()
                .map(|(v, m)| (v.as_str(), (*m).min(100))),
        )
    }

    /// Whether every request is split by weight alone.
    pub fn is_plain(&self) -> bool {
        self.matches.is_empty() && self.sticky_by.is_none()
    }
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    /// To this version.
    To(String),
    /// By the weights.
    Weighted,
}

/// The value of a cookie in a `Cookie` header (`a=1; b=2`), quotes taken off.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| {
            let v = v.trim();
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
    })
}

/// The value a request carries under `key`; `header` reads a header by its name (every
/// occurrence joined by `; `, as a client may split its cookies over several).
pub fn read(key: &RequestKey, header: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    match (&key.header, &key.cookie) {
        (Some(h), _) => header(h),
        (None, Some(c)) => header("cookie").and_then(|all| cookie(&all, c).map(str::to_string)),
        (None, None) => None,
    }
}

/// The bucket (0–99) of a sticky key: FNV-1a, 64 bits, of its bytes, modulo 100. Stable across
/// runs, machines and versions of Slipway.
pub fn bucket(key: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % 100) as u32
}

/// Where one request goes, given the versions routed now with their weights (in routing order)
/// and a reader of its headers:
/// - a request any `match` rule matches goes to the candidate (when it is routed);
/// - a request carrying the sticky key goes to the version whose share of 100 buckets holds the
///   key's bucket — the candidate's share first, so as its weight grows its users stay with it,
///   and once the rollout ends (or rolls back) everyone is on the one version left;
/// - any other request is split by the weights.
///
/// `weights` is walked without copying (the router asks per request).
pub fn choose<'a>(
    routing: &Routing,
    weights: impl Iterator<Item = (&'a str, u32)> + Clone,
    header: &dyn Fn(&str) -> Option<String>,
) -> Route {
    let routed = |v: &str| weights.clone().any(|(w, _)| w == v);
    if let Some(c) = routing.candidate.as_deref().filter(|c| routed(c)) {
        let matched = routing
            .matches
            .iter()
            .any(|m| read(&m.key(), header).is_some_and(|v| v == m.value));
        if matched {
            return Route::To(c.to_string());
        }
    }
    let Some(key) = routing.sticky_by.as_ref() else {
        return Route::Weighted;
    };
    let Some(value) = read(key, header).filter(|v| !v.is_empty()) else {
        return Route::Weighted;
    };
    let total: u32 = weights.clone().map(|(_, w)| w).sum();
    if total == 0 {
        return Route::Weighted;
    }
    let b = bucket(&value) * total / 100;
    let candidate = routing.candidate.as_deref();
    let ordered = weights
        .clone()
        .filter(|(v, _)| Some(*v) == candidate)
        .chain(weights.filter(|(v, _)| Some(*v) != candidate));
    let mut upto = 0;
    for (v, w) in ordered {
        upto += w;
        if b < upto {
            return Route::To(v.to_string());
        }
    }
    Route::Weighted
}

/// What is wrong with a strategy's request rules, by field; `routes_requests` says whether the
/// target routes each request itself (the local router), `matches_headers` whether it can send
/// requests by a header (the local router, an HTTPRoute) — replica ratios and SageMaker variant
/// weights cannot see a request's headers — and `mirrors` whether it can copy requests to a
/// shadow (those two, and a SageMaker endpoint in `Variants` mode).
pub fn problems(
    strategy: &Strategy,
    routes_requests: bool,
    matches_headers: bool,
    mirrors: bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(i) = strategy.steps.iter().position(|s| s.mirror.is_some())
        && !mirrors
    {
        out.push((
            format!("spec.strategy.steps[{i}].mirror"),
            "a shadow step needs a target that mirrors requests: target.local, a kubernetes target with traffic.gatewayAPI, or a sagemaker target in mode: Variants (replica ratios and SageMaker's guardrails do not mirror)".to_string(),
        ));
    }
    if let Some(a) = &strategy.analysis {
        if a.min_agreement.is_some_and(|m| !(0.0..=1.0).contains(&m)) {
            out.push((
                "spec.strategy.analysis.minAgreement".to_string(),
                "a share between 0 and 1".to_string(),
            ));
        }
        if a.agreement_tolerance
            .is_some_and(|t| !t.is_finite() || t < 0.0)
        {
            out.push((
                "spec.strategy.analysis.agreementTolerance".to_string(),
                "a number of 0 or more".to_string(),
            ));
        }
    }
    if strategy.match_.is_empty() && strategy.sticky_by.is_none() {
        return out;
    }
    let fields = [
        ("spec.strategy.match", !strategy.match_.is_empty()),
        ("spec.strategy.stickyBy", strategy.sticky_by.is_some()),
    ];
    for (field, set) in fields {
        let sticky = field.ends_with("stickyBy");
        if set && sticky && !routes_requests && matches_headers {
            out.push((
                field.to_string(),
                "stickyBy needs target.local: an HTTPRoute cannot hash a user's key to a version (use match for a cohort)".to_string(),
            ));
        } else if set && !routes_requests && !matches_headers {
            out.push((
                field.to_string(),
                "match and stickyBy need a target that routes each request: target.local, or match on a kubernetes target with traffic.gatewayAPI (replica ratios and SageMaker variant weights see no headers)".to_string(),
            ));
        }
        // All at once, the candidate has no step with traffic for a rule to send requests to.
        if set && strategy.type_ == slipway_crd::model_deployment::StrategyType::AllAtOnce {
            out.push((
                field.to_string(),
                "match and stickyBy route requests during a rollout's steps: use type Canary or Linear".to_string(),
            ));
        }
    }
    if strategy.match_.len() > 16 {
        out.push((
            "spec.strategy.match".to_string(),
            "at most 16 rules".to_string(),
        ));
    }
    for (i, m) in strategy.match_.iter().enumerate() {
        key_problems(&mut out, &format!("spec.strategy.match[{i}]"), &m.key());
        if let Some(h) = &m.header
            && EVERY_REQUEST.iter().any(|e| e.eq_ignore_ascii_case(h))
        {
            out.push((
                format!("spec.strategy.match[{i}].header"),
                format!("{h} is sent with every request (or carries a secret a route would show): a cohort by it is not a cohort; match a header of your own, e.g. x-cohort"),
            ));
        }
        if m.cookie.is_some() && !routes_requests && matches_headers {
            out.push((
                format!("spec.strategy.match[{i}].cookie"),
                "a cookie cohort needs target.local: through an HTTPRoute it would take a RegularExpression header match, which the Gateway API leaves optional (one gateway without it refuses the whole route); match a header".to_string(),
            ));
        }
        if m.value.is_empty() || m.value.len() > 256 || m.value.chars().any(char::is_control) {
            out.push((
                format!("spec.strategy.match[{i}].value"),
                "a value of 1 to 256 characters, no control characters".to_string(),
            ));
        }
    }
    if let Some(k) = &strategy.sticky_by {
        key_problems(&mut out, "spec.strategy.stickyBy", k);
    }
    out
}

/// Headers a cohort may not be matched by: sent with (nearly) every request, or carrying a
/// secret that a route or the status would show.
const EVERY_REQUEST: [&str; 9] = [
    "host",
    "content-type",
    "content-length",
    "accept",
    "accept-encoding",
    "user-agent",
    "connection",
    "cookie",
    "authorization",
];

fn key_problems(out: &mut Vec<(String, String)>, at: &str, key: &RequestKey) {
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match (&key.header, &key.cookie) {
        (Some(h), None) if token(h) => {}
        (None, Some(c)) if token(c) => {}
        (Some(h), None) => out.push((
            format!("{at}.header"),
            format!("{h:?} is not a header name (letters, digits and !#$%&'*+-.^_`|~)"),
        )),
        (None, Some(c)) => out.push((
            format!("{at}.cookie"),
            format!("{c:?} is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)"),
        )),
        _ => out.push((
            at.to_string(),
            "set exactly one of header and cookie".to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        move |name| map.get(&name.to_ascii_lowercase()).cloned()
    }

    fn rules(matches: Vec<RequestMatch>, sticky: Option<RequestKey>) -> Routing {
        Routing {
            candidate: Some("8".into()),
            matches,
            sticky_by: sticky,
            ..Routing::default()
        }
    }

    /// [`super::choose`] over owned weights.
    fn choose(
        r: &Routing,
        weights: &[(String, u32)],
        header: &dyn Fn(&str) -> Option<String>,
    ) -> Route {
        super::choose(r, weights.iter().map(|(v, w)| (v.as_str(), *w)), header)
    }

    fn split(candidate: u32) -> Vec<(String, u32)> {
        vec![("7".into(), 100 - candidate), ("8".into(), candidate)]
    }

    #[test]
    fn a_cohort_goes_to_the_candidate_whatever_its_weight() {
        let r = rules(
            vec![
                RequestMatch {
                    header: Some("x-cohort".into()),
                    value: "beta".into(),
                    ..Default::default()
                },
                RequestMatch {
                    cookie: Some("tester".into()),
                    value: "yes".into(),
                    ..Default::default()
                },
            ],
            None,
        );
        let beta = headers(&[("X-Cohort", "beta")]);
        assert_eq!(choose(&r, &split(1), &beta), Route::To("8".into()));
        let cookie = headers(&[("cookie", "a=1; tester=\"yes\"")]);
        assert_eq!(choose(&r, &split(1), &cookie), Route::To("8".into()));
        // Another value, or no header: by weight.
        let other = headers(&[("x-cohort", "beta2"), ("cookie", "tester=no")]);
        assert_eq!(choose(&r, &split(1), &other), Route::Weighted);
        // Once the rollout ended (or rolled back), no candidate: by weight.
        let done = Routing {
            candidate: None,
            ..r.clone()
        };
        assert_eq!(choose(&done, &[("8".into(), 100)], &beta), Route::Weighted);
        // A candidate not routed (not started, or taken out) is never chosen.
        assert_eq!(choose(&r, &[("7".into(), 100)], &beta), Route::Weighted);
    }

    #[test]
    fn a_sticky_user_stays_on_the_candidate_as_its_weight_grows() {
        let r = rules(
            vec![],
            Some(RequestKey {
                header: Some("x-user".into()),
                cookie: None,
            }),
        );
        let users: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
        let on = |w: u32| -> Vec<bool> {
            users
                .iter()
                .map(|u| {
                    let h = headers(&[("x-user", u.as_str())]);
                    match choose(&r, &split(w), &h) {
                        Route::To(v) => v == "8",
                        Route::Weighted => panic!("a keyed request is never split by weight"),
                    }
                })
                .collect()
        };
        let (at10, at50) = (on(10), on(50));
        // The same user, asked twice, gets the same version.
        assert_eq!(on(10), at10);
        // Everyone on the candidate at 10% is still on it at 50%.
        assert!(at10.iter().zip(&at50).all(|(a, b)| !a || *b));
        // The shares follow the weights (2000 users: within a few percent).
        let share = |v: &[bool]| v.iter().filter(|x| **x).count() as f64 / v.len() as f64;
        assert!((share(&at10) - 0.10).abs() < 0.03, "{}", share(&at10));
        assert!((share(&at50) - 0.50).abs() < 0.04, "{}", share(&at50));
        // Without the key (or an empty one): by weight.
        assert_eq!(choose(&r, &split(10), &headers(&[])), Route::Weighted);
        assert_eq!(
            choose(&r, &split(10), &headers(&[("x-user", "")])),
            Route::Weighted
        );
        // The bucket is FNV-1a: fixed across runs and releases.
        assert_eq!(bucket(""), (0xcbf2_9ce4_8422_2325u64 % 100) as u32);
        assert_eq!(bucket("a"), (0xaf63_dc4c_8601_ec8cu64 % 100) as u32);
    }

    #[test]
    fn cookies_are_read_by_name() {
        assert_eq!(cookie("a=1; session=abc; b=2", "session"), Some("abc"));
        assert_eq!(cookie("session=\"q\"", "session"), Some("q"));
        assert_eq!(cookie("xsession=1", "session"), None);
        assert_eq!(cookie("", "session"), None);
    }

    #[test]
    fn rules_are_checked_by_field() {
        let mut s = Strategy {
            type_: slipway_crd::model_deployment::StrategyType::Canary,
            match_: vec![
                RequestMatch {
                    header: Some("x cohort".into()),
                    value: "beta".into(),
                    ..Default::default()
                },
                RequestMatch {
                    header: Some("a".into()),
                    cookie: Some("b".into()),
                    value: String::new(),
                },
            ],
            sticky_by: Some(RequestKey::default()),
            ..Default::default()
        };
        let found = problems(&s, true, true, true);
        let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.strategy.match[0].header",
                "spec.strategy.match[1]",
                "spec.strategy.match[1].value",
                "spec.strategy.stickyBy"
            ],
            "{found:?}"
        );
        s.match_.clear();
        s.sticky_by = Some(RequestKey {
            cookie: Some("session".into()),
            header: None,
        });
        assert!(problems(&s, true, true, true).is_empty());
        let elsewhere = problems(&s, false, false, false);
        assert_eq!(elsewhere[0].0, "spec.strategy.stickyBy");
        assert!(elsewhere[0].1.contains("target.local"), "{elsewhere:?}");
        // Both rules on a kubernetes target: both named; either one all at once: refused.
        s.match_ = vec![RequestMatch {
            header: Some("x-cohort".into()),
            value: "beta".into(),
            ..Default::default()
        }];
        let both: Vec<String> = problems(&s, false, false, false)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(both, ["spec.strategy.match", "spec.strategy.stickyBy"]);
        // Through an HTTPRoute a cohort is matched by its header; no key is hashed.
        let routed = problems(&s, false, true, true);
        assert_eq!(routed.len(), 1, "{routed:?}");
        assert_eq!(routed[0].0, "spec.strategy.stickyBy");
        assert!(routed[0].1.contains("cannot hash"), "{routed:?}");
        // A cookie there, or a header every request carries anywhere: refused.
        s.sticky_by = None;
        s.match_.push(RequestMatch {
            cookie: Some("plan".into()),
            value: "b".into(),
            ..Default::default()
        });
        s.match_.push(RequestMatch {
            header: Some("Content-Type".into()),
            value: "application/json".into(),
            ..Default::default()
        });
        let refused: Vec<String> = problems(&s, false, true, true)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            refused,
            [
                "spec.strategy.match[1].cookie",
                "spec.strategy.match[2].header"
            ]
        );
        assert_eq!(problems(&s, true, true, true).len(), 1);
        s.match_.truncate(1);
        s.sticky_by = Some(RequestKey {
            cookie: Some("session".into()),
            header: None,
        });
        s.type_ = slipway_crd::model_deployment::StrategyType::AllAtOnce;
        let at_once = problems(&s, true, true, true);
        assert_eq!(at_once.len(), 2, "{at_once:?}");
        assert!(
            at_once[0].1.contains("use type Canary or Linear"),
            "{at_once:?}"
        );
    }

    #[test]
    fn a_shadow_step_needs_the_router_or_a_route_to_mirror() {
        let s: Strategy = serde_json::from_value(serde_json::json!({
            "type": "Canary", "steps": [{"weight": 0, "mirror": 50}, {"weight": 10}]
        }))
        .unwrap();
        assert!(problems(&s, true, true, true).is_empty());
        assert!(
            problems(&s, false, true, true).is_empty(),
            "through an HTTPRoute"
        );
        assert!(
            problems(&s, false, false, true).is_empty(),
            "a SageMaker shadow variant"
        );
        let replicas = problems(&s, false, false, false);
        assert_eq!(replicas[0].0, "spec.strategy.steps[0].mirror");
        assert!(replicas[0].1.contains("traffic.gatewayAPI"), "{replicas:?}");
    }
}
