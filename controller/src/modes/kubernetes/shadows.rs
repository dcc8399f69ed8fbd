//! Shadows in a cluster: a shadow step's candidate and the standing shadows (`spec.shadows`)
//! run `Deployment`s for their share of copies ([`rollout::replicas::mirror_pods`]) and get the
//! copies through the HTTPRoute's RequestMirror filters ([`rollout::gateway::with_mirrors`]).
//! Which versions, with which shares, is the core's ([`rollout::shadow`]); the gateway answers
//! nobody from them and discards their answers, so a cluster judges a shadow on its metrics.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use slipway_crd::ModelDeployment;
use slipway_crd::model_deployment::KubernetesTarget;

use super::context::{Context, Error};
use super::workloads::{apply_version, observe};
use crate::decide::rollout::{self, RolloutState};

/// Versions with their shares of copies (percent).
pub(super) type Shares = [(String, u32)];

/// The pod label that puts a version's pods behind the deployment's Service `NAME`: `"true"` on
/// the versions that serve, `"false"` on shadows — a shadow answers nobody, not even a client
/// that calls the Service. Written on targets with `traffic.gatewayAPI` (the only ones that
/// run shadows); elsewhere pods keep the labels they always had.
pub const SERVING_LABEL: &str = "slipway.dev/serving";

/// Why `md`'s target cannot run what it asks for copies of requests — the checks `validate`
/// and the admission webhook make, repeated for an object admitted without them.
pub(super) fn refusal(md: &ModelDeployment, target: &KubernetesTarget) -> Option<String> {
    let gateway = super::gateway::route_of(target).is_some();
    let strategy = rollout::routing::problems(&md.spec.strategy, false, gateway, gateway);
    let standing = rollout::shadow::standing::problems(&md.spec.shadows, gateway);
    strategy
        .into_iter()
        .filter(|(field, _)| field.ends_with(".mirror"))
        .chain(standing)
        .map(|(field, why)| format!("{field}: {why}"))
        .next()
}

/// The label [`SERVING_LABEL`] of version `v` at weights `w`, on a target with a route: serving
/// when it has traffic or is not one of the `copied` (a shadow step's candidate, a standing
/// shadow); None without a route.
pub(super) fn serving(
    target: &KubernetesTarget,
    v: &str,
    w: &BTreeMap<String, u32>,
    copied: &Shares,
) -> Option<bool> {
    super::gateway::route_of(target)?;
    Some(w.get(v).is_some_and(|x| *x > 0) || !copied.iter().any(|(c, _)| c == v))
}

/// Whether the Service `NAME` selects serving pods only: on a target with a route, once every
/// version with traffic runs pods labelled serving — after an upgrade the serving versions are
/// labelled first ([`keep`]), and the selector follows once their labelled pods are all
/// available, so that no pod leaves the Service before its labelled twin serves — and from then
/// on (a candidate still starting never puts the shadows back behind it).
pub(super) fn serving_only(
    ctx: &Context,
    md: &ModelDeployment,
    target: &KubernetesTarget,
    (owned, weights): (&BTreeMap<String, Deployment>, &BTreeMap<String, u32>),
) -> bool {
    if super::gateway::route_of(target).is_none() {
        return false;
    }
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let already = ctx.cache.service(&ns, &md.name_any()).is_some_and(|svc| {
        svc.spec
            .and_then(|s| s.selector)
            .is_some_and(|sel| sel.get(SERVING_LABEL).map(String::as_str) == Some("true"))
    });
    already
        || weights.iter().filter(|(_, w)| **w > 0).all(|(v, _)| {
            owned.get(v).is_some_and(|d| {
                let labelled = pod_label(d) == Some("true");
                let rolled = d.status.as_ref().and_then(|s| s.updated_replicas)
                    == d.spec.replicas.or(Some(1));
                labelled && rolled && observe(Some(d)).ready
            })
        })
}

/// A `Deployment`'s pods' [`SERVING_LABEL`].
fn pod_label(d: &Deployment) -> Option<&str> {
    d.spec
        .template
        .metadata
        .as_ref()?
        .labels
        .as_ref()?
        .get(SERVING_LABEL)
        .map(String::as_str)
}

/// The versions the route mirrors to at `state`, with their shares: the candidate of a shadow
/// step once its weights are applied, and the standing shadows whose pods are all available (a
/// server still loading would only fail its copies).
pub(super) fn mirrored(
    md: &ModelDeployment,
    state: &RolloutState,
    standing: &[(String, u32)],
    owned: &BTreeMap<String, Deployment>,
) -> Vec<(String, u32)> {
    let ready = standing
        .iter()
        .filter(|(v, _)| observe(owned.get(v)).ready)
        .cloned()
        .collect();
    rollout::routing::Routing::of(&md.spec.strategy, state)
        .with_shadows(ready)
        .mirrored()
        .map(|(v, m)| (v.to_string(), m))
        .collect()
}

/// Runs each standing shadow's `Deployment` with the pods its share needs, labelled a shadow's
/// (created again when missing, set again when someone changed it); and, on a target with a
/// route, labels serving the pods of each version with traffic that are not yet (a deployment
/// from before shadows), keeping their count — but the versions this reconcile `applied` (as
/// they should be: the watch's `owned` shows them as they were before).
pub(super) async fn keep(
    ctx: &Context,
    md: &ModelDeployment,
    target: &KubernetesTarget,
    (owned, applied): (
        &BTreeMap<String, Deployment>,
        &std::collections::BTreeSet<String>,
    ),
    (standing, weights): (&Shares, &BTreeMap<String, u32>),
) -> Result<(), Error> {
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let uri = |v: &str| {
        ctx.cache
            .artifact(&ns, &md.spec.model, v)
            .map(|(uri, _)| uri)
    };
    let label = |v: &str| serving(target, v, weights, standing);
    for (v, share) in standing {
        let pods = rollout::replicas::mirror_pods(*share, target.replicas);
        if applied.contains(v) {
            continue;
        }
        let d = owned.get(v);
        let have = d.and_then(|d| d.spec.replicas);
        let labelled = d.and_then(pod_label) == Some("false");
        if have != Some(i32::try_from(pods).unwrap_or(i32::MAX)) || !labelled {
            apply_version(ctx, md, target, (v, pods), uri(v), label(v)).await?;
        }
    }
    for (v, _) in weights.iter().filter(|(_, w)| **w > 0) {
        if let Some(d) = owned.get(v)
            && !applied.contains(v)
            && label(v) == Some(true)
            && pod_label(d) != Some("true")
        {
            let pods = u32::try_from(d.spec.replicas.unwrap_or(1)).unwrap_or(1);
            apply_version(ctx, md, target, (v, pods), uri(v), Some(true)).await?;
        }
    }
    Ok(())
}
