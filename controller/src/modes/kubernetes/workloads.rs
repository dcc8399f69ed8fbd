//! The workload objects a Kubernetes rollout writes: the deployment's `Service` and each
//! version's `Deployment` (applied, deleted, and what it shows), and whether an object is the
//! deployment's to touch.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use slipway_crd::ModelDeployment;

use super::cache::{DEPLOYMENT_LABEL, VERSION_LABEL};
use super::context::{Context, Error, MANAGER, owner};
use super::deployments::version_deployment_name;
use crate::decide::rollout::{self, Judgement};

/// Whether `meta` is of an object `md` owns (an owner reference to its uid).
pub(super) fn ours(meta: &kube::api::ObjectMeta, md: &ModelDeployment) -> bool {
    let Some(uid) = md.metadata.uid.as_deref() else {
        return false;
    };
    meta.owner_references.iter().flatten().any(|o| o.uid == uid)
}

/// The refusal to write over `kind` `ns/name`, which exists and is not `md`'s.
pub(super) fn not_owned(kind: &str, ns: &str, name: &str, md: &ModelDeployment) -> Error {
    Error::NotOwned(format!(
        "{kind} {ns}/{name} exists and is not ModelDeployment {}'s (no owner reference to it): \
         Slipway leaves it alone; rename the ModelDeployment or remove that {kind}",
        md.name_any()
    ))
}

/// Deletes a Deployment of `md`; one that is already gone is fine, one that is not `md`'s is
/// left alone (deleted only with its uid as read, so a replacement is not deleted either).
pub(super) async fn delete(
    api: &Api<Deployment>,
    name: &str,
    md: &ModelDeployment,
) -> Result<(), Error> {
    let Some(d) = api.get_opt(name).await? else {
        return Ok(());
    };
    if !ours(&d.metadata, md) {
        tracing::warn!(deployment = %name, "not deleting a Deployment that is not this ModelDeployment's");
        return Ok(());
    }
    let params = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: d.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The deployment's Service `NAME`: port 80 to the model servers' port, selecting its pods —
/// only those labelled serving ([`super::shadows::SERVING_LABEL`]) when `serving_only`.
pub(super) async fn ensure_service(
    ctx: &Context,
    md: &ModelDeployment,
    target: &slipway_crd::model_deployment::KubernetesTarget,
    serving_only: bool,
) -> Result<(), Error> {
    let name = md.name_any();
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let mut selector =
        std::collections::BTreeMap::from([(DEPLOYMENT_LABEL.to_string(), name.clone())]);
    if serving_only {
        selector.insert(
            super::shadows::SERVING_LABEL.to_string(),
            "true".to_string(),
        );
    }
    // Written once, and again only when it is missing or differs (the watch shows it).
    if ctx.cache.service(&ns, &name).is_some_and(|s| {
        let spec = s.spec.unwrap_or_default();
        spec.selector.unwrap_or_default() == selector
            && spec.ports.unwrap_or_default().iter().any(|p| {
                p.port == 80
                    && p.target_port
                        == Some(
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(
                                target.port as i32,
                            ),
                        )
            })
    }) {
        return Ok(());
    }
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(existing) = api.get_opt(&name).await?
        && !ours(&existing.metadata, md)
    {
        return Err(not_owned("Service", &ns, &name, md));
    }
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "ownerReferences": owner(md),
                     "labels": {DEPLOYMENT_LABEL: name, "app.kubernetes.io/managed-by": "slipway"}},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": target.port, "protocol": "TCP"}],
        }
    });
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&service),
    )
    .await?;
    Ok(())
}

/// Applies version `version`'s `Deployment` with `replicas` pods serving `uri`; `serving` (on
/// targets with shadows) labels its pods as serving or a shadow's.
pub(super) async fn apply_version(
    ctx: &Context,
    md: &ModelDeployment,
    target: &slipway_crd::model_deployment::KubernetesTarget,
    (version, replicas): (&str, u32),
    uri: Option<String>,
    serving: Option<bool>,
) -> Result<(), Error> {
    let name = md.name_any();
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let deployment = version_deployment_name(&name, version);
    let mut env: Vec<Value> = vec![
        json!({"name": "MODEL_VERSION", "value": version}),
        json!({"name": "MODEL_NAME", "value": md.spec.model}),
        json!({"name": "PORT", "value": target.port.to_string()}),
    ];
    if let Some(uri) = uri {
        env.push(json!({"name": "MODEL_URI", "value": uri}));
    }
    env.extend(
        target
            .env
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v})),
    );
    let labels = json!({DEPLOYMENT_LABEL: name, VERSION_LABEL: version, "app.kubernetes.io/managed-by": "slipway"});
    let mut pod_labels = labels.clone();
    if let Some(serving) = serving {
        pod_labels[super::shadows::SERVING_LABEL] = json!(serving.to_string());
    }
    let mut container = json!({
        "name": "model-server",
        "image": target.image,
        "ports": [{"name": "http", "containerPort": target.port, "protocol": "TCP"}],
        "env": env,
    });
    // Limited to the operator's bounds where no limit is written.
    let resources = ctx.bounds.limited(target.resources.as_ref());
    if resources != Default::default() {
        container["resources"] = serde_json::to_value(resources)?;
    }
    if !target.command.is_empty() {
        container["command"] = json!(target.command);
    }
    if !target.args.is_empty() {
        container["args"] = json!(target.args);
    }
    // Not ready (no traffic, and no rollout step counted) until its health path answers.
    if let Some(r) = &target.readiness {
        container["readinessProbe"] = json!({
            "httpGet": {"path": r.path, "port": target.port},
            "initialDelaySeconds": r.initial_delay_seconds.unwrap_or(0),
            "periodSeconds": r.period_seconds.unwrap_or(5),
            "failureThreshold": r.failure_threshold.unwrap_or(3),
        });
    }
    // A model server needs no API access: no service-account token in its pods.
    let mut pod = json!({"containers": [container], "automountServiceAccountToken": false});
    if !target.node_selector.is_empty() {
        pod["nodeSelector"] = json!(target.node_selector);
    }
    if !target.tolerations.is_empty() {
        pod["tolerations"] = serde_json::to_value(&target.tolerations)?;
    }
    if !target.image_pull_secrets.is_empty() {
        pod["imagePullSecrets"] = target
            .image_pull_secrets
            .iter()
            .map(|name| json!({"name": name}))
            .collect();
    }
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(existing) = api.get_opt(&deployment).await?
        && !ours(&existing.metadata, md)
    {
        return Err(not_owned("Deployment", &ns, &deployment, md));
    }
    let object = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": deployment, "ownerReferences": owner(md), "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {DEPLOYMENT_LABEL: name, VERSION_LABEL: version}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": pod,
            },
        }
    });
    api.patch(
        &deployment,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await?;
    Ok(())
}

/// What keeps version `version`'s pods of `deployment` from running, as their statuses say
/// (`pod NAME: CrashLoopBackOff (…), last exit code 1`), for a rollout that waits on them or
/// fails; None when no pod says (or pods cannot be read).
pub(super) async fn pod_trouble(
    ctx: &Context,
    ns: &str,
    deployment: &str,
    version: &str,
) -> Option<String> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("{DEPLOYMENT_LABEL}={deployment},{VERSION_LABEL}={version}");
    let pods = api
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .ok()?;
    pods.items.iter().find_map(trouble_of)
}

/// What a pod's status says keeps it from running, if anything.
pub(super) fn trouble_of(pod: &Pod) -> Option<String> {
    let name = pod.name_any();
    let status = pod.status.as_ref()?;
    let said = |reason: Option<&String>, message: Option<&String>| -> String {
        let reason = reason.map(String::as_str).unwrap_or("Unknown");
        // A termination message is the pod's own text: one line, without control characters.
        let message = message.map(|m| {
            m.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
        });
        match message.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
            // A termination message may be long (a results file, a traceback): its start.
            Some(m) if m.chars().count() > 200 => {
                format!("{reason} ({}…)", m.chars().take(200).collect::<String>())
            }
            Some(m) => format!("{reason} ({m})"),
            None => reason.to_string(),
        }
    };
    for c in status.container_statuses.iter().flatten() {
        let state = c.state.as_ref();
        let last_exit = c
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| format!(", last exit code {}", t.exit_code))
            .unwrap_or_default();
        if let Some(w) = state.and_then(|s| s.waiting.as_ref())
            && !matches!(
                w.reason.as_deref(),
                None | Some("ContainerCreating" | "PodInitializing")
            )
        {
            return Some(format!(
                "pod {name}: {}{last_exit}",
                said(w.reason.as_ref(), w.message.as_ref())
            ));
        }
        if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
            return Some(format!(
                "pod {name}: terminated, {}, exit code {}",
                said(t.reason.as_ref(), t.message.as_ref()),
                t.exit_code
            ));
        }
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| {
            format!(
                "pod {name}: not scheduled, {}",
                said(c.reason.as_ref(), c.message.as_ref())
            )
        })
}

/// What a version's `Deployment` shows: ready when every replica is available; failing when
/// it stopped progressing or cannot create pods.
pub(super) fn observe(d: Option<&Deployment>) -> rollout::step::Look {
    let (ready, judgement) = health(d);
    // What a version that is not ready waits for, in the words `kubectl get deploy` uses.
    let waiting = d.map(|d| {
        let want = d.spec.replicas.unwrap_or(1);
        let have = d
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        format!("{}: {have}/{want} replicas available", d.name_any())
    });
    rollout::step::Look {
        ready,
        judgement,
        waiting: waiting.or_else(|| Some("its Deployment to be created".into())),
    }
}

fn health(d: Option<&Deployment>) -> (bool, Judgement) {
    let Some(d) = d else {
        return (false, Judgement::Inconclusive("no Deployment yet".into()));
    };
    let spec_replicas = d.spec.replicas.unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let current = status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    let ready =
        current && spec_replicas > 0 && status.available_replicas.unwrap_or(0) >= spec_replicas;
    for c in status.conditions.unwrap_or_default() {
        if c.type_.as_deref() == Some("Progressing") && c.status.as_deref() == Some("False") {
            return (
                false,
                Judgement::Fail(format!(
                    "{} is not progressing ({}: {})",
                    d.name_any(),
                    c.reason.unwrap_or_default(),
                    c.message.unwrap_or_default()
                )),
            );
        }
        if c.type_.as_deref() == Some("ReplicaFailure") && c.status.as_deref() == Some("True") {
            return (
                false,
                Judgement::Fail(format!(
                    "{} cannot create pods ({})",
                    d.name_any(),
                    c.message.unwrap_or_default()
                )),
            );
        }
    }
    (ready, Judgement::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "api-v9-x"}, "status": status})).unwrap()
    }

    #[test]
    fn a_pods_trouble_is_its_waiting_reason_its_exit_or_its_scheduling() {
        let crashing = pod(json!({"containerStatuses": [{
            "name": "model-server", "image": "i", "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}));
        assert_eq!(
            trouble_of(&crashing).as_deref(),
            Some(
                "pod api-v9-x: CrashLoopBackOff (back-off 40s restarting failed container), last exit code 1"
            )
        );
        let pulling = pod(json!({"containerStatuses": [{
            "name": "model-server", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}));
        assert_eq!(
            trouble_of(&pulling).as_deref(),
            Some("pod api-v9-x: ImagePullBackOff")
        );
        let creating = pod(json!({"containerStatuses": [{
            "name": "model-server", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(trouble_of(&creating), None);
        let pending = pod(
            json!({"conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient memory."}]}),
        );
        assert_eq!(
            trouble_of(&pending).as_deref(),
            Some(
                "pod api-v9-x: not scheduled, Unschedulable (0/3 nodes are available: 3 Insufficient memory.)"
            )
        );
        assert_eq!(trouble_of(&pod(json!({}))), None);
    }
}
