//! What a request may not do to any Slipway object's life: give it an owner or a finalizer.

use serde_json::Value;

use super::{Cluster, Request};
use crate::catalog::Resource;
use slipway_crd::promotion_policy::Operation;

/// Kubernetes' controller that deletes what is in a namespace being deleted.
const NAMESPACE_CONTROLLER: &str = "system:serviceaccount:kube-system:namespace-controller";
const GARBAGE_COLLECTOR: &str = "system:serviceaccount:kube-system:generic-garbage-collector";

/// Why a `ModelVersion` may not be deleted now: an alias resolves to it or names it, or a
/// deployment serves it, rolls it out or pins it — deleting it would let its label be
/// registered again with another artifact under what production follows. (A namespace being
/// deleted takes everything.)
pub(super) fn in_use(req: &Request, cluster: &Cluster) -> Option<String> {
    if req.kind != "ModelVersion"
        || req.operation != Operation::Delete
        || req.user == NAMESPACE_CONTROLLER
    {
        return None;
    }
    let old = req.old_object.as_ref()?;
    let (model, label) = (
        old["spec"]["model"].as_str()?,
        old["spec"]["version"].as_str()?,
    );
    let is = |v: Option<&String>| v.is_some_and(|v| v == label);
    let mut users = Vec::new();
    for o in cluster.view.catalog.objects() {
        if o.key.namespace != req.namespace {
            continue;
        }
        match &o.resource {
            Resource::ModelAlias(a) if a.spec.model == model => {
                let resolved = a.status.as_ref().and_then(|s| s.resolved_version.as_ref());
                if is(resolved) || a.spec.version == label {
                    users.push(format!("ModelAlias {} ({})", o.key.name, a.spec.alias));
                }
            }
            Resource::ModelDeployment(d) if d.spec.model == model => {
                let s = d.status.as_ref();
                if is(s.and_then(|s| s.serving_version.as_ref()))
                    || is(s.and_then(|s| s.target_version.as_ref()))
                    || is(d.spec.version.as_ref())
                {
                    users.push(format!("ModelDeployment {}", o.key.name));
                }
            }
            _ => {}
        }
    }
    (!users.is_empty()).then(|| {
        format!(
            "version {label} of {model} is in use by {}: move the aliases and deployments off it \
             first (a label, once deleted, could be registered again with another artifact)",
            users.join(", ")
        )
    })
}

/// Why a `ModelVersion` may not be registered: its label was served before with another
/// artifact (an alias of the model moved to it with that artifact's digest, as its recorded
/// moves say) — a label means one artifact, even after its first version is gone.
pub(super) fn retired(req: &Request, cluster: &Cluster) -> Option<String> {
    if req.kind != "ModelVersion" || req.operation != Operation::Create {
        return None;
    }
    let new = req.object.as_ref()?;
    let (model, label, digest) = (
        new["spec"]["model"].as_str()?,
        new["spec"]["version"].as_str()?,
        new["spec"]["artifact"]["digest"].as_str()?,
    );
    // Deleted before: its model's status records the label's artifact.
    let recorded = cluster
        .view
        .catalog
        .model(&req.namespace, model)
        .and_then(|m| m.status.as_ref())
        .and_then(|s| {
            s.retired_versions
                .iter()
                .find(|r| r.version == label && r.digest != digest)
        });
    if let Some(r) = recorded {
        return Some(format!(
            "version {label} of {model} was registered with artifact {} and deleted \
             (RegisteredModel {model}, status.retiredVersions): a label means one artifact, even \
             after its version is deleted; register {digest} under a new label",
            r.digest
        ));
    }
    cluster.view.catalog.objects().iter().find_map(|o| {
        let Resource::ModelAlias(a) = &o.resource else {
            return None;
        };
        if o.key.namespace != req.namespace || a.spec.model != model {
            return None;
        }
        // The latest move to the label that named another artifact: served if it was made,
        // proposed if it was denied.
        let before =
            a.status.as_ref()?.history.iter().rev().find(|m| {
                m.to == label && m.artifact_digest.as_deref().is_some_and(|d| d != digest)
            })?;
        let how = match before.decision {
            slipway_crd::model_alias::AliasDecision::Allowed => "served",
            slipway_crd::model_alias::AliasDecision::Denied => "proposed",
        };
        Some(format!(
            "version {label} of {model} was {how} with artifact {} (ModelAlias {}): a label \
             means one artifact, even after its version is deleted; register {digest} under a \
             new label",
            before.artifact_digest.as_deref().unwrap_or_default(),
            o.key.name,
        ))
    })
}

/// Why a `ModelVersion` may not be created under its name: in a cluster its name is its model
/// and label ([`slipway_crd::model_version::object_name`]), so two registrations of one label
/// made at once meet at the API server, which admits only one (the webhook decides from a
/// watch, which cannot see the other).
pub(super) fn named(req: &Request) -> Option<String> {
    if req.kind != "ModelVersion" || req.operation != Operation::Create {
        return None;
    }
    let new = req.object.as_ref()?;
    let (model, label) = (
        new["spec"]["model"].as_str()?,
        new["spec"]["version"].as_str()?,
    );
    let wanted = slipway_crd::model_version::object_name(model, label);
    (req.name != wanted).then(|| {
        format!(
            "metadata.name: a ModelVersion is named after its model and label, so that two \
             registrations of one label meet at the API server, which admits only one; name \
             version {label} of {model} `{wanted}`"
        )
    })
}

/// The JSON patch that gives a new `ModelVersion` the controller's retire finalizer as it is
/// created (mutating admission), so that no deletion can come before it (the controller adds
/// it too, to versions made while the webhook was not called).
pub(super) fn held_from_the_start(req: &Request) -> Option<Value> {
    use slipway_crd::model_version::RETIRE_FINALIZER;
    let finalizers = &req.object.as_ref()?["metadata"]["finalizers"];
    match finalizers.as_array() {
        Some(f) if f.iter().any(|f| f == RETIRE_FINALIZER) => None,
        Some(_) => Some(serde_json::json!([
            {"op": "add", "path": "/metadata/finalizers/-", "value": RETIRE_FINALIZER}
        ])),
        None => Some(serde_json::json!([
            {"op": "add", "path": "/metadata/finalizers", "value": [RETIRE_FINALIZER]}
        ])),
    }
}

/// Whether `req` takes the controller's retire finalizer off a `ModelVersion` before its model's
/// status records the label's artifact as retired (the controller takes it off once it has; a
/// model that is gone, or a namespace being deleted, has nothing to record).
fn unretired(req: &Request, cluster: &Cluster) -> Option<String> {
    use slipway_crd::model_version::RETIRE_FINALIZER;
    let (old, new) = (req.old_object.as_ref()?, req.object.as_ref()?);
    let holds = |o: &Value| {
        o["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == RETIRE_FINALIZER))
    };
    // The operator's groups (those that may withdraw any approval) may take it off by hand,
    // when the controller cannot record (its model's status full, say).
    let operator = req.groups.iter().any(|g| cluster.withdrawers.contains(g));
    if req.kind != "ModelVersion"
        || !holds(old)
        || holds(new)
        || req.user == NAMESPACE_CONTROLLER
        || operator
    {
        return None;
    }
    let (model, label, digest) = (
        old["spec"]["model"].as_str()?,
        old["spec"]["version"].as_str()?,
        old["spec"]["artifact"]["digest"].as_str()?,
    );
    let m = cluster.view.catalog.model(&req.namespace, model)?;
    let recorded = m.status.as_ref().is_some_and(|s| {
        s.retired_versions
            .iter()
            .any(|r| r.version == label && r.digest == digest)
    });
    (!recorded).then(|| {
        format!(
            "metadata.finalizers: {RETIRE_FINALIZER} stays until RegisteredModel {model} records \
             version {label}'s artifact as retired (the controller takes it off when the version \
             is deleted); delete the version instead"
        )
    })
}

/// Owner references and finalizers a request adds to a Slipway object are refused: an owner
/// reference hands the object's life to another object (delete that one, and the garbage
/// collector deletes the version production follows — whose label could then be registered
/// again), and a finalizer keeps it from being deleted. The one kind Slipway makes with an owner
/// is an `Evaluation` owned by its `ModelVersion` — that very object, by its uid (an owner that
/// does not exist would have the garbage collector delete the evaluation, and its results be
/// run again); removing either is the garbage collector's work and allowed.
pub(super) fn refusal(req: &Request, cluster: &Cluster) -> Option<String> {
    let listed = |o: Option<&Value>, field: &str| -> Vec<Value> {
        o.and_then(|o| o["metadata"][field].as_array().cloned())
            .unwrap_or_default()
    };
    let (old, new) = (req.old_object.as_ref(), req.object.as_ref());
    let before = listed(old, "ownerReferences");
    let added: Vec<Value> = listed(new, "ownerReferences")
        .into_iter()
        .filter(|r| !before.contains(r))
        .collect();
    let spec = new.map(|o| &o["spec"]);
    let version_uid = spec.and_then(|s| {
        let v = cluster.view.catalog.version(
            &req.namespace,
            s["model"].as_str()?,
            s["version"].as_str()?,
        )?;
        v.metadata.uid.clone()
    });
    let own = |r: &Value| {
        req.kind == "Evaluation"
            && r["kind"] == "ModelVersion"
            && r["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("slipway.dev/"))
            && version_uid.as_deref().is_some_and(|uid| r["uid"] == uid)
    };
    // Nor is an evaluation's reference to its version taken away (but by the garbage
    // collector): the controller would no longer know it for its own.
    let removed = before
        .iter()
        .find(|r| !listed(new, "ownerReferences").contains(r) && r["kind"] == "ModelVersion");
    if let (Some(r), Some(_)) = (removed, new)
        && req.kind == "Evaluation"
        && req.user != GARBAGE_COLLECTOR
        && req.user != NAMESPACE_CONTROLLER
    {
        return Some(format!(
            "metadata.ownerReferences: the reference to ModelVersion {} is how Slipway knows \
             this evaluation for its own; it stays (delete the evaluation instead)",
            r["name"].as_str().unwrap_or("?")
        ));
    }
    if let Some(r) = added.iter().find(|r| !own(r)) {
        return Some(format!(
            "metadata.ownerReferences: an owner reference to {} {} would let its deletion \
             remove this object; Slipway's objects take no owner but the ones Slipway gives them",
            r["kind"].as_str().unwrap_or("?"),
            r["name"].as_str().unwrap_or("?")
        ));
    }
    // The controller's own finalizers are its work to take off: anyone may add them where
    // the controller acts on them.
    let slipways = |f: &Value| match (req.kind.as_str(), f.as_str()) {
        ("ModelVersion", Some(slipway_crd::model_version::RETIRE_FINALIZER)) => true,
        ("ModelDeployment", Some(slipway_crd::model_deployment::SAGEMAKER_FINALIZER)) => {
            spec.is_some_and(|s| s["target"]["sagemaker"].is_object())
        }
        _ => false,
    };
    let before = listed(old, "finalizers");
    if let Some(f) = listed(new, "finalizers")
        .into_iter()
        .find(|f| !before.contains(f) && !slipways(f))
    {
        return Some(format!(
            "metadata.finalizers: adding {f} would keep this object from being deleted; \
             Slipway's objects take no finalizers"
        ));
    }
    unretired(req, cluster)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{cluster, edit};
    use super::super::{Verdict, validate};

    #[test]
    fn nobody_gives_a_slipway_object_an_owner_or_a_finalizer() {
        let c = cluster(&[]);
        let version = c
            .objects
            .iter()
            .find(|o| o["kind"] == "ModelVersion")
            .unwrap()["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        let owned = edit(&c, "ModelVersion", &version, "admin", |v| {
            v["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap",
                "name": "short-lived", "uid": "4b1e"}]);
        });
        let Verdict::Denied(why) = validate(&owned, &c.view(), crate::testing::now()) else {
            panic!("a version was given an owner");
        };
        assert!(
            why.contains("metadata.ownerReferences: an owner reference to ConfigMap short-lived would let its deletion remove this object"),
            "{why}"
        );
        let held = edit(&c, "ModelVersion", &version, "admin", |v| {
            v["metadata"]["finalizers"] = json!(["example.com/keep"]);
        });
        let Verdict::Denied(why) = validate(&held, &c.view(), crate::testing::now()) else {
            panic!("a version was given a finalizer");
        };
        assert!(
            why.contains("metadata.finalizers: adding \"example.com/keep\""),
            "{why}"
        );
        // Removing them (the garbage collector's work) and labels are fine.
        let mut freed = held.clone();
        freed.old_object = held.object.clone();
        freed.object = held.old_object.clone();
        assert!(matches!(
            validate(&freed, &c.view(), crate::testing::now()),
            Verdict::Allowed(_)
        ));
        let labelled = edit(&c, "ModelVersion", &version, "admin", |v| {
            v["metadata"]["labels"] = json!({"reviewed": "yes"});
        });
        assert!(matches!(
            validate(&labelled, &c.view(), crate::testing::now()),
            Verdict::Allowed(_)
        ));
    }

    #[test]
    fn a_version_an_alias_or_deployment_uses_cannot_be_deleted() {
        let c = cluster(&[]);
        let seven = c
            .objects
            .iter()
            .find(|o| o["kind"] == "ModelVersion" && o["spec"]["version"] == "7")
            .unwrap()
            .clone();
        let delete = |user: &str| super::super::Request {
            kind: "ModelVersion".into(),
            namespace: "default".into(),
            name: seven["metadata"]["name"].as_str().unwrap().into(),
            operation: slipway_crd::promotion_policy::Operation::Delete,
            user: user.into(),
            groups: vec!["system:masters".into()],
            object: None,
            old_object: Some(seven.clone()),
        };
        let Verdict::Denied(why) = validate(&delete("admin"), &c.view(), crate::testing::now())
        else {
            panic!("production's version was deleted");
        };
        assert!(
            why.contains("version 7 of pitch-frame-classifier is in use by ModelAlias pitch-frame-classifier-production (production)"),
            "{why}"
        );
        // A namespace being deleted takes everything.
        assert!(
            super::in_use(
                &delete("system:serviceaccount:kube-system:namespace-controller"),
                &c.view()
            )
            .is_none()
        );
    }

    #[test]
    fn a_label_once_moved_to_with_an_artifact_is_never_registered_with_another() {
        let mut objects = cluster(&[]).objects;
        let alias = objects
            .iter_mut()
            .find(|o| o["kind"] == "ModelAlias" && o["spec"]["alias"] == "production")
            .unwrap();
        alias["status"]["history"] = json!([{"to": "9", "artifactDigest": format!("sha256:{}", "9".repeat(64)), "decision": "allowed"}]);
        let c = super::super::tests::Namespace::of(objects, Vec::new());
        let nine = |digest: &str| super::super::Request {
            kind: "ModelVersion".into(),
            namespace: "default".into(),
            name: "pitch-frame-classifier-9".into(),
            operation: slipway_crd::promotion_policy::Operation::Create,
            user: "erin".into(),
            groups: vec![],
            object: Some(
                json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelVersion",
                "metadata": {"name": "pitch-frame-classifier-9", "namespace": "default"},
                "spec": {"model": "pitch-frame-classifier", "version": "9",
                         "artifact": {"uri": "s3://x/9", "digest": digest}}}),
            ),
            old_object: None,
        };
        let other = format!("sha256:{}", "e".repeat(64));
        let Verdict::Denied(why) = validate(&nine(&other), &c.view(), crate::testing::now()) else {
            panic!("label 9 registered again with another artifact");
        };
        assert!(
            why.contains("version 9 of pitch-frame-classifier was served with artifact sha256:999"),
            "{why}"
        );
        let same = format!("sha256:{}", "9".repeat(64));
        assert!(super::retired(&nine(&same), &c.view()).is_none());
    }

    /// A version is named after its model and label (two at once meet at the API server); its
    /// label, once deleted, keeps its artifact; the controller's retire finalizer may be added
    /// but comes off only once the model records the label retired.
    #[test]
    fn a_label_keeps_its_artifact_after_its_version_is_deleted() {
        use slipway_crd::model_version::RETIRE_FINALIZER;
        let mut objects = cluster(&[]).objects;
        let model = objects
            .iter_mut()
            .find(|o| o["kind"] == "RegisteredModel")
            .unwrap();
        model["status"]["retiredVersions"] =
            json!([{"version": "9", "digest": format!("sha256:{}", "9".repeat(64))}]);
        let c = super::super::tests::Namespace::of(objects, Vec::new());
        let create = |name: &str, label: &str, digest: &str| super::super::Request {
            kind: "ModelVersion".into(),
            namespace: "default".into(),
            name: name.into(),
            operation: slipway_crd::promotion_policy::Operation::Create,
            user: "erin".into(),
            groups: vec![],
            object: Some(
                json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelVersion",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"model": "pitch-frame-classifier", "version": label,
                         "artifact": {"uri": "s3://x/9", "digest": digest}}}),
            ),
            old_object: None,
        };
        let other = format!("sha256:{}", "e".repeat(64));
        let why = super::retired(&create("pitch-frame-classifier-9", "9", &other), &c.view())
            .expect("a retired label registered with another artifact");
        assert!(
            why.contains(
                "version 9 of pitch-frame-classifier was registered with artifact sha256:999"
            ) && why.contains("status.retiredVersions"),
            "{why}"
        );
        let same = format!("sha256:{}", "9".repeat(64));
        assert!(
            super::retired(&create("pitch-frame-classifier-9", "9", &same), &c.view()).is_none()
        );
        // Named otherwise: refused, with the name to use.
        let why = super::named(&create("pfc-nine", "9", &same)).unwrap();
        assert!(
            why.contains("name version 9 of pitch-frame-classifier `pitch-frame-classifier-9`"),
            "{why}"
        );
        assert!(super::named(&create("pitch-frame-classifier-9", "9", &same)).is_none());
        assert_eq!(
            slipway_crd::model_version::object_name("Pitch", "1.0+rc_1"),
            "pitch-1.0-rc-1"
        );
        // The retire finalizer: anyone may add it; off only once the label is recorded.
        let eight = c
            .objects
            .iter()
            .find(|o| o["kind"] == "ModelVersion" && o["spec"]["version"] == "8")
            .unwrap()["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        let held = edit(&c, "ModelVersion", &eight, "erin", |v| {
            v["metadata"]["finalizers"] = json!([RETIRE_FINALIZER]);
        });
        assert!(super::refusal(&held, &c.view()).is_none());
        let mut freed = held.clone();
        freed.old_object = held.object.clone();
        freed.object = held.old_object.clone();
        let why = super::refusal(&freed, &c.view()).expect("the retire finalizer was taken off");
        assert!(why.contains("stays until RegisteredModel pitch-frame-classifier records version 8's artifact as retired"), "{why}");
        let digest = c
            .objects
            .iter()
            .find(|o| o["kind"] == "ModelVersion" && o["spec"]["version"] == "8")
            .unwrap()["spec"]["artifact"]["digest"]
            .clone();
        let mut objects = c.objects.clone();
        objects
            .iter_mut()
            .find(|o| o["kind"] == "RegisteredModel")
            .unwrap()["status"]["retiredVersions"] = json!([{"version": "8", "digest": digest}]);
        let recorded = super::super::tests::Namespace::of(objects, Vec::new());
        assert!(super::refusal(&freed, &recorded.view()).is_none());
        // An operator may take it off by hand (when the controller cannot record).
        let mut by_operator = freed.clone();
        by_operator.groups = vec!["system:masters".into()];
        let operators = ["system:masters".to_string()];
        let mut cluster = c.view();
        cluster.withdrawers = &operators;
        assert!(super::refusal(&by_operator, &cluster).is_none());
        assert!(super::refusal(&by_operator, &c.view()).is_some());
        // The mutating webhook holds a new version from the start.
        let new = create("pitch-frame-classifier-9", "9", &same);
        assert_eq!(
            super::held_from_the_start(&new),
            Some(
                json!([{"op": "add", "path": "/metadata/finalizers", "value": [RETIRE_FINALIZER]}])
            )
        );
    }

    #[test]
    fn an_evaluation_is_owned_by_its_own_version_only() {
        let c = cluster(&[]);
        let owned_by = |uid: &str| {
            edit(
                &c,
                "Evaluation",
                "pitch-frame-classifier-8-pitch-frames",
                "erin",
                |e| {
                    e["metadata"]["ownerReferences"] = json!([{"apiVersion": "slipway.dev/v1alpha1",
                    "kind": "ModelVersion", "name": "pitch-frame-classifier-8", "uid": uid}]);
                },
            )
        };
        // An owner that does not exist would have the garbage collector delete it (and its
        // results be run again).
        let Verdict::Denied(why) = validate(&owned_by("bogus"), &c.view(), crate::testing::now())
        else {
            panic!("an evaluation was handed to an owner that is not its version");
        };
        assert!(why.contains("metadata.ownerReferences"), "{why}");
        assert!(matches!(
            validate(
                &owned_by("uid-\"pitch-frame-classifier-8\""),
                &c.view(),
                crate::testing::now()
            ),
            Verdict::Allowed(_)
        ));
    }
}
