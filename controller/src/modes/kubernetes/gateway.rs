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
use crate::decide::rollout;

/// The route a target's traffic goes through, if it names one.
pub(super) fn route_of(target: &KubernetesTarget) -> Option<&str> {
    target
        .traffic
        .as_ref()
        .and_then(|t| t.gateway_api.as_ref())
        .map(|g| g.http_route.as_str())
}

/// Makes the route send `weights` (version → percent) of its requests for `md` to each
/// version's Service.
pub(super) async fn route(
    ctx: &Context,
    md: &ModelDeployment,
    target: &KubernetesTarget,
    weights: &BTreeMap<String, u32>,
) -> Result<(), Error> {
    let Some(route_name) = route_of(target) else {
        return Ok(());
    };
    if weights.values().all(|w| *w == 0) {
        return Ok(());
    }
    let name = md.name_any();
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    // The versions' Services: those routed now, and those of earlier versions the route may
    // still name (they leave it).
    let mut services = ctx.cache.version_services(&ns, &name);
    for v in weights.keys() {
        services.insert(v.clone(), version_deployment_name(&name, v));
    }
    for (v, service) in &services {
        if weights.get(v).is_some_and(|w| *w > 0) {
            version_service(ctx, md, target, v, service).await?;
        }
    }
    let api: Api<HTTPRoute> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(mut r) = api.get_opt(route_name).await? else {
        return Err(Error::Route(format!(
            "HTTPRoute {ns}/{route_name} (spec.target.kubernetes.traffic.gatewayAPI.httpRoute) does not exist: create it with a rule whose backendRefs name Service {name}, or remove traffic.gatewayAPI"
        )));
    };
    let rules = rollout::gateway::weighted(&r.spec.rules, &name, &services, weights)
        .map_err(|why| Error::Route(format!("HTTPRoute {ns}/{route_name}: {why}")))?;
    if rules == r.spec.rules {
        return Ok(());
    }
    r.spec.rules = rules;
    api.replace(route_name, &PostParams::default(), &r).await?;
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
        && !existing
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == md.metadata.uid.as_ref())
    {
        return Err(Error::NotOwned(format!(
            "Service {ns}/{service} exists and is not ModelDeployment {name}'s (no owner reference to it): Slipway leaves it alone; rename the ModelDeployment or remove that Service"
        )));
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

/// Deletes version `v`'s Service, if the deployment routes through the Gateway API and it is
/// `md`'s (a version that stopped serving).
pub(super) async fn forget(ctx: &Context, md: &ModelDeployment, v: &str) -> Result<(), Error> {
    let name = md.name_any();
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let service = version_deployment_name(&name, v);
    let Some(existing) = ctx.cache.service(&ns, &service) else {
        return Ok(());
    };
    if !existing
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == md.metadata.uid.as_ref())
    {
        return Ok(());
    }
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    match api.delete(&service, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
