//! Exact splits in a cluster through the Gateway API (`traffic.gatewayAPI.httpRoute`): a
//! Service per version with traffic, and the route's backends weighted by the step's
//! percentages — decided by the core ([`rollout::gateway::weighted`]), written here with the
//! route's resourceVersion (a route changed meanwhile is read again at the next reconcile).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use slipway_crd::ModelDeployment;
use slipway_crd::gateway::HTTPRoute;
use slipway_crd::model_deployment::KubernetesTarget;

use super::cache::{DEPLOYMENT_LABEL, VERSION_LABEL};
use super::context::{Context, Error, MANAGER, owner};
use super::deployments::version_deployment_name;
use super::workloads::{not_owned, ours};
use crate::decide::rollout;

/// The route a target's traffic goes through, if it names one.
pub(super) fn route_of(target: &KubernetesTarget) -> Option<&str> {
    target
        .traffic
        .as_ref()
        .and_then(|t| t.gateway_api.as_ref())
        .map(|g| g.http_route.as_str())
}

/// The per-version Services of `md` the watch shows, by version: only those it owns (a
/// Service merely labelled like them is someone else's).
fn owned_services(ctx: &Context, md: &ModelDeployment, ns: &str) -> BTreeMap<String, String> {
    let mut services = ctx.cache.version_services(ns, &md.name_any());
    services.retain(|_, s| {
        ctx.cache
            .service(ns, s)
            .is_some_and(|svc| ours(&svc.metadata, md))
    });
    services
}

/// The route `md` names, if it lets `md` set its weights (the `slipway.dev/deployments`
/// annotation names it) and serves it; why not, as the deployment's stall.
async fn read_route(
    ctx: &Context,
    md: &ModelDeployment,
    route_name: &str,
    services: &BTreeMap<String, String>,
) -> Result<HTTPRoute, Error> {
    let name = md.name_any();
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let api: Api<HTTPRoute> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(r) = api.get_opt(route_name).await? else {
        return Err(Error::Route(format!(
            "HTTPRoute {ns}/{route_name} (spec.target.kubernetes.traffic.gatewayAPI.httpRoute) does not exist: create it with a rule whose backendRefs name Service {name}, or remove traffic.gatewayAPI"
        )));
    };
    if !rollout::gateway::lets(r.metadata.annotations.as_ref(), &name) {
        return Err(Error::Route(format!(
            "HTTPRoute {ns}/{route_name} does not let ModelDeployment {name} set its weights: whoever may edit the route adds the annotation {}: {name}",
            rollout::gateway::OPT_IN
        )));
    }
    if !rollout::gateway::serves(&r.spec.rules, (&name, &ns), services) {
        return Err(Error::Route(format!(
            "HTTPRoute {ns}/{route_name}: no rule of it sends requests to Service {name}: add `backendRefs: [{{name: {name}, port: {}}}]` to the rule that serves this deployment",
            rollout::gateway::SERVICE_PORT
        )));
    }
    Ok(r)
}

/// Before a step is decided: the route a deployment names exists, lets it set its weights and
/// serves it — else the deployment stalls there, and no step is taken without its traffic.
pub(super) async fn check(
    ctx: &Context,
    md: &ModelDeployment,
    target: &KubernetesTarget,
) -> Result<(), Error> {
    let Some(route_name) = route_of(target) else {
        return Ok(());
    };
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let services = owned_services(ctx, md, &ns);
    read_route(ctx, md, route_name, &services).await.map(|_| ())
}

/// Makes the route send `weights` (version → percent) of its requests for `md` to each
/// version's Service, the strategy's A/B cohort (`match`) to the `candidate`'s while it has
/// traffic, and copies of `mirrors` (version, percent) of them to each shadow's.
pub(super) async fn route(
    ctx: &Context,
    md: &ModelDeployment,
    target: &KubernetesTarget,
    weights: &BTreeMap<String, u32>,
    candidate: Option<&str>,
    mirrors: &[(String, u32)],
) -> Result<(), Error> {
    let Some(route_name) = route_of(target) else {
        return Ok(());
    };
    if weights.values().all(|w| *w == 0) {
        return Ok(());
    }
    let name = md.name_any();
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    // The versions' Services: those of versions with traffic (made sure to be ours), and the
    // ones it owns that the route may still name (they leave it).
    let mut services = owned_services(ctx, md, &ns);
    let live = weights.iter().filter(|(_, w)| **w > 0).map(|(v, _)| v);
    for v in live.chain(mirrors.iter().map(|(v, _)| v)) {
        let service = version_deployment_name(&name, v);
        version_service(ctx, md, target, v, &service).await?;
        services.insert(v.clone(), service);
    }
    let mut r = read_route(ctx, md, route_name, &services).await?;
    let who = (name.as_str(), ns.as_str());
    // The cohort rules come out before the weights are set, and back in after.
    let plain = rollout::gateway::with_cohorts(r.spec.rules.clone(), who, &services, &[], None);
    let rules = rollout::gateway::weighted(&plain, who, &services, weights)
        .map_err(|why| Error::Route(format!("HTTPRoute {ns}/{route_name}: {why}")))?;
    let cohort_to = candidate
        .filter(|c| weights.get(*c).is_some_and(|w| *w > 0))
        .and_then(|c| services.get(c))
        .map(String::as_str);
    let rules =
        rollout::gateway::with_cohorts(rules, who, &services, &md.spec.strategy.match_, cohort_to);
    let copies: Vec<(String, u32)> = mirrors
        .iter()
        .filter_map(|(v, m)| Some((services.get(v)?.clone(), *m)))
        .collect();
    let rules = rollout::gateway::with_mirrors(rules, who, &services, &copies);
    if rules == r.spec.rules {
        return Ok(());
    }
    r.spec.rules = rules;
    let api: Api<HTTPRoute> = Api::namespaced(ctx.client.clone(), &ns);
    let mut stored = api.replace(route_name, &PostParams::default(), &r).await?;
    // A route whose CRD predates percentage mirroring drops the share, and its gateway would
    // copy every request: the copies are taken out again, and the deployment stalls saying so.
    let lost = rollout::gateway::lost_percent(&stored.spec.rules, &ns, &copies);
    if !lost.is_empty() {
        stored.spec.rules = rollout::gateway::with_mirrors(stored.spec.rules, who, &services, &[]);
        api.replace(route_name, &PostParams::default(), &stored)
            .await?;
        return Err(Error::Route(format!(
            "HTTPRoute {ns}/{route_name} does not keep requestMirror.percent (its CRD predates percentage mirroring, Gateway API GEP-3171), so its gateway would copy every request to {}: upgrade the Gateway API CRDs, or mirror 100%",
            lost.join(", ")
        )));
    }
    Ok(())
}

/// Version `v`'s Service `service` (port 80 to the model server's port, its pods only), unless
/// the watch shows it already.
async fn version_service(
    ctx: &Context,
    md: &ModelDeployment,
    target: &KubernetesTarget,
    v: &str,
    service: &str,
) -> Result<(), Error> {
    let name = md.name_any();
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    if ctx.cache.service(&ns, service).is_some_and(|s| {
        s.spec
            .and_then(|s| s.selector)
            .is_some_and(|sel| sel.get(VERSION_LABEL).map(String::as_str) == Some(v))
    }) {
        return Ok(());
    }
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(existing) = api.get_opt(service).await?
        && !ours(&existing.metadata, md)
    {
        return Err(not_owned("Service", &ns, service, md));
    }
    let labels = json!({DEPLOYMENT_LABEL: name, VERSION_LABEL: v, "app.kubernetes.io/managed-by": "slipway"});
    let body = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": service, "ownerReferences": owner(md), "labels": labels},
        "spec": {
            "selector": {DEPLOYMENT_LABEL: name, VERSION_LABEL: v},
            "ports": [{"name": "http", "port": rollout::gateway::SERVICE_PORT, "targetPort": target.port, "protocol": "TCP"}],
        }
    });
    api.patch(
        service,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Deletes version `v`'s Service (a version that stopped serving), if it is `md`'s and the
/// route `md` names does not still send requests to it.
pub(super) async fn forget(
    ctx: &Context,
    md: &ModelDeployment,
    target: &KubernetesTarget,
    v: &str,
) -> Result<(), Error> {
    let name = md.name_any();
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let service = version_deployment_name(&name, v);
    if let Some(route_name) = route_of(target) {
        let api: Api<HTTPRoute> = Api::namespaced(ctx.client.clone(), &ns);
        let named = api
            .get_opt(route_name)
            .await?
            .is_some_and(|r| rollout::gateway::names(&r.spec.rules, &service, &ns));
        if named {
            return Ok(());
        }
    }
    let Some(existing) = ctx.cache.service(&ns, &service) else {
        return Ok(());
    };
    if !ours(&existing.metadata, md) {
        return Ok(());
    }
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    match api.delete(&service, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
