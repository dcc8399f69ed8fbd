//! Admission decisions of the Kubernetes mode (DESIGN §1 flow 3, §5). Pure: the same catalog,
//! plan and policy code as `slipway plan`, with the identity from `request.userInfo` and the
//! sign-offs from `Approval` objects instead of pull-request reviews.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use slipway_crd::promotion_policy::Operation;

use crate::catalog::{Catalog, ObjectKey, Resource, SourceFile};
use crate::diagnostics::Diagnostic;
use crate::plan::{self, KubeIdentity, PlanInputs, Rev};
use crate::policy::approvals::{Review, ReviewUser, SignOffs};
use crate::policy::context::Results;

/// One admission request, reduced to what the decisions read.
#[derive(Clone, Debug)]
pub struct Request {
    /// Kind of the object (`ModelAlias`, …).
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// create / update / delete.
    pub operation: Operation,
    /// `userInfo.username`.
    pub user: String,
    /// `userInfo.groups`.
    pub groups: Vec<String>,
    /// The object as it will be (create, update).
    pub object: Option<Value>,
    /// The object as it is (update, delete).
    pub old_object: Option<Value>,
}

/// The namespace's Slipway objects as the API server has them, as JSON.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    /// Every object of the kinds the catalog reads (models, versions, aliases, evaluations,
    /// deployments, policies).
    pub objects: Vec<Value>,
    /// The `Approval`s.
    pub approvals: Vec<Value>,
}

/// The answer to a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Admitted, with warnings `kubectl` prints.
    Allowed(Vec<String>),
    /// Refused, with the explanation `kubectl` prints.
    Denied(String),
}

/// The fields a request may not change, by kind.
const IMMUTABLE_APPROVAL: &str =
    "Approvals are immutable: delete this one and create a new Approval for the change you mean";

/// The catalog file of one cluster object: YAML, so the loader reads it like a file in git.
pub fn file_of(object: &Value) -> SourceFile {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let kind = object["kind"].as_str().unwrap_or("Unknown").to_string();
    let ns = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or("unnamed")
        .to_string();
    SourceFile {
        path: format!("{kind}/{ns}/{name}.yaml"),
        content: serde_yaml::to_string(&object)
            .unwrap_or_default()
            .into_bytes(),
        id: None,
    }
}

/// Decides a validating admission request.
pub fn validate(req: &Request, cluster: &Cluster, now: DateTime<Utc>) -> Verdict {
    match req.kind.as_str() {
        "Approval" => approval(req),
        "ModelAlias" => alias(req, cluster, now),
        _ => other(req, cluster, now),
    }
}

/// The JSON patch that stamps an `Approval` with its creator (mutating admission): `approver`
/// and `approverGroups` from `userInfo` when the client left them out. A different approver is
/// left alone, for validation to refuse with an explanation.
pub fn stamp(req: &Request) -> Option<Value> {
    if req.kind != "Approval" || req.operation != Operation::Create {
        return None;
    }
    let spec = req.object.as_ref()?.get("spec")?;
    let mut ops = Vec::new();
    if spec.get("approver").is_none_or(Value::is_null) {
        ops.push(json!({"op": "add", "path": "/spec/approver", "value": req.user}));
    }
    if spec
        .get("approverGroups")
        .and_then(Value::as_array)
        .is_none_or(|g| g.is_empty())
        && spec
            .get("approver")
            .and_then(Value::as_str)
            .is_none_or(|a| a == req.user)
    {
        ops.push(json!({"op": "add", "path": "/spec/approverGroups", "value": req.groups}));
    }
    (!ops.is_empty()).then_some(Value::Array(ops))
}

fn who(req: &Request) -> String {
    format!("{} {}/{}", req.kind, req.namespace, req.name)
}

fn approval(req: &Request) -> Verdict {
    match req.operation {
        Operation::Delete => Verdict::Allowed(Vec::new()),
        Operation::Update => {
            let spec = |o: &Option<Value>| o.as_ref().map(|o| o["spec"].clone());
            if spec(&req.object) != spec(&req.old_object) {
                Verdict::Denied(format!("{}: {IMMUTABLE_APPROVAL}.", who(req)))
            } else {
                Verdict::Allowed(Vec::new())
            }
        }
        Operation::Create => {
            let spec = req
                .object
                .as_ref()
                .map(|o| o["spec"].clone())
                .unwrap_or_default();
            let mut problems = Vec::new();
            match spec["approver"].as_str() {
                Some(a) if a == req.user => {}
                Some(a) => problems.push(format!(
                    "spec.approver is {a:?} but the request comes from {:?}: an Approval records \
                     who created it; leave spec.approver out (Slipway stamps it) or set it to \
                     your own user name",
                    req.user
                )),
                None => problems.push(format!(
                    "spec.approver is missing: set it to your user name ({:?}), or install \
                     Slipway's mutating webhook, which stamps it",
                    req.user
                )),
            }
            let claimed: Vec<&str> = spec["approverGroups"]
                .as_array()
                .map(|g| g.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let foreign: Vec<&str> = claimed
                .into_iter()
                .filter(|g| !req.groups.iter().any(|x| x == g))
                .collect();
            if !foreign.is_empty() {
                problems.push(format!(
                    "spec.approverGroups claims {} that {:?} is not in; leave the field out \
                     (Slipway stamps your groups)",
                    foreign.join(", "),
                    req.user
                ));
            }
            if spec["target"]["kind"].as_str() != Some("ModelAlias") {
                problems.push(format!(
                    "spec.target.kind is {}; approvals sign off alias moves: use ModelAlias",
                    spec["target"]["kind"]
                ));
            }
            if problems.is_empty() {
                Verdict::Allowed(Vec::new())
            } else {
                Verdict::Denied(format!("{}: {}.", who(req), problems.join("; ")))
            }
        }
    }
}

/// A diagnostic without its synthetic file position: "kind ns/name: field: message".
fn describe(d: &Diagnostic) -> String {
    let mut out = String::new();
    if !d.field.is_empty() {
        out.push_str(&format!("{}: ", d.field));
    }
    out.push_str(&d.message);
    out
}

/// The cluster's files without the requested object, and with it as it will be.
fn revisions(req: &Request, cluster: &Cluster) -> (Vec<SourceFile>, Vec<SourceFile>, String) {
    let path = format!("{}/{}/{}.yaml", req.kind, req.namespace, req.name);
    let mut base: Vec<SourceFile> = cluster
        .objects
        .iter()
        .map(file_of)
        .filter(|f| f.path != path)
        .collect();
    if let Some(old) = &req.old_object {
        base.push(file_of(old));
    }
    let mut head: Vec<SourceFile> = base.iter().filter(|f| f.path != path).cloned().collect();
    if let Some(new) = &req.object {
        head.push(file_of(new));
    }
    (base, head, path)
}

fn key(req: &Request) -> Option<ObjectKey> {
    Some(ObjectKey {
        kind: slipway_crd::Kind::parse(&req.kind)?,
        namespace: req.namespace.clone(),
        name: req.name.clone(),
    })
}

/// Sign-offs for moving alias `name` to `version`: the approvals that name exactly that change.
fn signoffs(
    req: &Request,
    cluster: &Cluster,
    version: &str,
) -> (SignOffs, BTreeMap<String, Vec<String>>) {
    let fingerprint = format!("ModelAlias/{}/{} → {version}", req.namespace, req.name);
    let mut reviews = Vec::new();
    let mut approvers = BTreeMap::new();
    for a in &cluster.approvals {
        let spec = &a["spec"];
        let ns = spec["target"]["namespace"]
            .as_str()
            .or(a["metadata"]["namespace"].as_str())
            .unwrap_or("default");
        if spec["target"]["kind"] != "ModelAlias"
            || spec["target"]["name"].as_str() != Some(req.name.as_str())
            || ns != req.namespace
            || spec["version"].as_str() != Some(version)
        {
            continue;
        }
        let Some(user) = spec["approver"].as_str() else {
            continue;
        };
        let groups: Vec<String> = spec["approverGroups"]
            .as_array()
            .map(|g| {
                g.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        approvers.insert(user.to_string(), groups);
        reviews.push(Review {
            user: ReviewUser {
                login: user.to_string(),
            },
            state: if spec["decision"] == "reject" {
                "CHANGES_REQUESTED".into()
            } else {
                "APPROVED".into()
            },
            commit_id: Some(fingerprint.clone()),
            submitted_at: a["metadata"]["creationTimestamp"]
                .as_str()
                .and_then(|t| t.parse().ok()),
        });
    }
    (
        SignOffs {
            reviews,
            head: Some(fingerprint),
            author: Some(req.user.clone()),
        },
        approvers,
    )
}

fn alias(req: &Request, cluster: &Cluster, now: DateTime<Utc>) -> Verdict {
    let (base_files, head_files, path) = revisions(req, cluster);
    let ((base, _), (head, head_diags)) = Catalog::from_revisions(&base_files, &head_files);
    // Problems of the requested object itself refuse it; other objects' problems are not this
    // request's to fix.
    let own: Vec<String> = head_diags
        .iter()
        .filter(|d| d.file == path)
        .map(describe)
        .collect();
    if !own.is_empty() && req.operation != Operation::Delete {
        return Verdict::Denied(format!("{}: {}.", who(req), own.join("; ")));
    }
    let version = req
        .object
        .as_ref()
        .and_then(|o| o["spec"]["version"].as_str())
        .unwrap_or_default()
        .to_string();
    let (signoffs, approvers) = signoffs(req, cluster, &version);
    let mut results = Results::default();
    results.add(head.objects().iter().filter_map(|o| match &o.resource {
        Resource::Evaluation(e) => Some(e),
        _ => None,
    }));
    let inputs = PlanInputs {
        base: Rev {
            name: "cluster".into(),
            commit: "cluster".into(),
        },
        head: Rev {
            name: "request".into(),
            commit: "request".into(),
        },
        results,
        signoffs,
        now,
        kubernetes: Some(KubeIdentity {
            groups: req.groups.clone(),
            approvers,
        }),
    };
    let plan = plan::plan(&base, &head, &inputs);
    let Some(key) = key(req) else {
        return Verdict::Allowed(Vec::new());
    };
    let Some(change) = plan.changes.iter().find(|c| {
        c.kind == key.kind.as_str() && c.namespace == key.namespace && c.name == key.name
    }) else {
        // Nothing Slipway decides changed (e.g. labels only).
        return Verdict::Allowed(Vec::new());
    };
    let warnings: Vec<String> = change
        .decision
        .rules
        .iter()
        .filter(|r| !r.passed && r.effect == slipway_crd::promotion_policy::Effect::Warn)
        .map(|r| format!("policy {}, rule {}: {}", r.policy, r.name, r.message))
        .collect();
    if change.decision.allowed {
        return Verdict::Allowed(warnings);
    }
    Verdict::Denied(denial(req, change))
}

/// A denial in the manner of Kyverno: the object and change, then each policy / rule that
/// refused it with its message and the values it read, then what to do.
fn denial(req: &Request, change: &plan::Change) -> String {
    let model = change.model.as_deref().unwrap_or("?");
    let alias = change.alias.as_deref().unwrap_or("?");
    let what = match (&change.from, &change.to) {
        (Some(f), Some(t)) => format!("moving {model}/{alias} from {f} to {t}"),
        (None, Some(t)) => format!("pointing {model}/{alias} at {t}"),
        (Some(f), None) => format!("removing {model}/{alias} (now {f})"),
        (None, None) => format!("changing {model}/{alias}"),
    };
    let mut out = format!(
        "{}: {what} (requested by {}) is not allowed:",
        who(req),
        req.user
    );
    for r in change.decision.denying_rules() {
        out.push_str(&format!(
            "\n  policy {}, rule {}: {}",
            r.policy,
            r.name,
            r.message.trim()
        ));
        if !r.values.is_empty() {
            let read: Vec<String> = r.values.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            out.push_str(&format!(" (read: {})", read.join(", ")));
        }
    }
    for a in change.decision.missing_approvals() {
        out.push_str(&format!(
            "\n  policy {}, approval {}: has {} of {} required approvals",
            a.policy, a.name, a.have, a.required
        ));
        for i in &a.ignored {
            out.push_str(&format!("; {} does not count ({})", i.user, i.reason));
        }
        out.push_str(&format!(
            ". To approve, someone in {} other than {} creates an Approval with spec.target \
             {{kind: ModelAlias, name: {}}}, spec.version {:?} and spec.decision approve \
             (Slipway records who created it), then re-apply this change",
            a.from.join(" or "),
            req.user,
            req.name,
            change.to.as_deref().unwrap_or_default()
        ));
    }
    out
}

/// Every other kind: the object's own problems refuse it (including changing a `ModelVersion`'s
/// artifact or lineage); broken references are warnings, since `kubectl apply` of a folder
/// creates objects in file order.
fn other(req: &Request, cluster: &Cluster, now: DateTime<Utc>) -> Verdict {
    if req.operation == Operation::Delete || key(req).is_none() {
        return Verdict::Allowed(Vec::new());
    }
    let (base_files, head_files, path) = revisions(req, cluster);
    let ((base, _), (head, head_diags)) = Catalog::from_revisions(&base_files, &head_files);
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for d in head_diags.iter().filter(|d| d.file == path) {
        // In Kubernetes mode `group:NAME` names the authenticator's groups, not `Group` objects.
        if req.kind == "PromotionPolicy"
            && d.category == crate::diagnostics::Category::BrokenReference
            && d.field.contains(".from[")
        {
            continue;
        }
        if d.category == crate::diagnostics::Category::BrokenReference {
            warnings.push(format!("{}: {}", who(req), describe(d)));
        } else {
            errors.push(describe(d));
        }
    }
    if req.kind == "ModelVersion" && req.operation == Operation::Update {
        let inputs = PlanInputs {
            base: Rev {
                name: "cluster".into(),
                commit: "cluster".into(),
            },
            head: Rev {
                name: "request".into(),
                commit: "request".into(),
            },
            results: Results::default(),
            signoffs: SignOffs::default(),
            now,
            kubernetes: Some(KubeIdentity::default()),
        };
        let plan = plan::plan(&base, &head, &inputs);
        errors.extend(plan.errors.iter().filter(|d| d.file == path).map(describe));
    }
    if errors.is_empty() {
        Verdict::Allowed(warnings)
    } else {
        Verdict::Denied(format!("{}: {}.", who(req), errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example registry and the results of version 8, as the API server would hold them.
    fn cluster(approvals: &[(&str, &str, &[&str])]) -> Cluster {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut objects = Vec::new();
        for dir in ["examples/football-frames", "examples/promotion-pr/results"] {
            for f in crate::source::dir::read(&root.join(dir)).unwrap() {
                let text = String::from_utf8(f.content).unwrap();
                for (_, doc) in crate::catalog::load::split_documents(&text) {
                    let mut v: Value = serde_yaml::from_str(doc).unwrap();
                    if v.is_null() || v["kind"] == "Group" {
                        continue;
                    }
                    v["metadata"]["namespace"] = "default".into();
                    objects.push(v);
                }
            }
        }
        let approvals = approvals
            .iter()
            .enumerate()
            .map(|(i, (user, version, groups))| {
                json!({
                    "apiVersion": "slipway.dev/v1alpha1", "kind": "Approval",
                    "metadata": {"name": format!("a{i}"), "namespace": "default",
                                 "creationTimestamp": format!("2026-11-26T10:0{i}:00Z")},
                    "spec": {"target": {"kind": "ModelAlias", "name": "pitch-frame-classifier-production"},
                             "version": version, "decision": "approve",
                             "approver": user, "approverGroups": groups}
                })
            })
            .collect();
        Cluster { objects, approvals }
    }

    fn alias_object(version: &str) -> Value {
        json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelAlias",
               "metadata": {"name": "pitch-frame-classifier-production", "namespace": "default"},
               "spec": {"model": "pitch-frame-classifier", "alias": "production", "version": version}})
    }

    fn move_production(user: &str, groups: &[&str], cluster: &Cluster) -> Verdict {
        let req = Request {
            kind: "ModelAlias".into(),
            namespace: "default".into(),
            name: "pitch-frame-classifier-production".into(),
            operation: Operation::Update,
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            object: Some(alias_object("8")),
            old_object: Some(alias_object("7")),
        };
        validate(&req, cluster, "2026-11-26T12:00:00Z".parse().unwrap())
    }

    #[test]
    fn a_move_without_a_leads_approval_is_denied_with_who_can_approve() {
        let Verdict::Denied(why) = move_production("erin", &["ml-engineers"], &cluster(&[])) else {
            panic!("allowed");
        };
        assert!(why.starts_with("ModelAlias default/pitch-frame-classifier-production: moving pitch-frame-classifier/production from 7 to 8 (requested by erin) is not allowed"), "{why}");
        assert!(why.contains("approval ml-lead: has 0 of 1"), "{why}");
        assert!(
            why.contains("someone in group:ml-leads other than erin creates an Approval"),
            "{why}"
        );
    }

    #[test]
    fn a_leads_approval_of_that_exact_version_lets_the_move_through() {
        let c = cluster(&[("alice", "8", &["ml-leads"])]);
        assert_eq!(
            move_production("erin", &["ml-engineers"], &c),
            Verdict::Allowed(vec![])
        );
        // An approval of another version, or by someone outside the group, does not count.
        let c = cluster(&[
            ("alice", "9", &["ml-leads"]),
            ("bob", "8", &["ml-engineers"]),
        ]);
        let Verdict::Denied(why) = move_production("erin", &["ml-engineers"], &c) else {
            panic!("allowed");
        };
        assert!(why.contains("bob does not count (not eligible"), "{why}");
    }

    #[test]
    fn the_author_cannot_approve_their_own_move() {
        let c = cluster(&[("dana", "8", &["ml-engineers", "ml-leads"])]);
        let Verdict::Denied(why) = move_production("dana", &["ml-engineers", "ml-leads"], &c)
        else {
            panic!("allowed");
        };
        assert!(
            why.contains("dana does not count (author of the change cannot approve it)"),
            "{why}"
        );
    }

    fn approval_request(user: &str, spec: Value, op: Operation, old: Option<Value>) -> Request {
        Request {
            kind: "Approval".into(),
            namespace: "default".into(),
            name: "ok-8".into(),
            operation: op,
            user: user.into(),
            groups: vec!["ml-leads".into(), "system:authenticated".into()],
            object: Some(json!({"kind": "Approval", "spec": spec})),
            old_object: old,
        }
    }

    #[test]
    fn approvals_are_stamped_with_their_creator_and_cannot_be_forged_or_changed() {
        let spec = json!({"target": {"kind": "ModelAlias", "name": "x"}, "version": "8", "decision": "approve"});
        let req = approval_request("alice", spec.clone(), Operation::Create, None);
        let patch = stamp(&req).unwrap();
        assert_eq!(
            patch[0],
            json!({"op": "add", "path": "/spec/approver", "value": "alice"})
        );
        assert_eq!(
            patch[1]["value"],
            json!(["ml-leads", "system:authenticated"])
        );

        let mut forged = spec.clone();
        forged["approver"] = "dana".into();
        let Verdict::Denied(why) = validate(
            &approval_request("alice", forged, Operation::Create, None),
            &Cluster::default(),
            Utc::now(),
        ) else {
            panic!("a forged approver was admitted");
        };
        assert!(
            why.contains("spec.approver is \"dana\" but the request comes from \"alice\""),
            "{why}"
        );

        let mut stamped = spec.clone();
        stamped["approver"] = "alice".into();
        stamped["approverGroups"] = json!(["ml-leads"]);
        let ok = approval_request("alice", stamped.clone(), Operation::Create, None);
        assert_eq!(
            validate(&ok, &Cluster::default(), Utc::now()),
            Verdict::Allowed(vec![])
        );
        let mut claimed = stamped.clone();
        claimed["approverGroups"] = json!(["ml-leads", "platform-admins"]);
        let Verdict::Denied(why) = validate(
            &approval_request("alice", claimed, Operation::Create, None),
            &Cluster::default(),
            Utc::now(),
        ) else {
            panic!("a foreign group was admitted");
        };
        assert!(why.contains("claims platform-admins"), "{why}");

        let mut changed = stamped.clone();
        changed["version"] = "9".into();
        let update = approval_request(
            "alice",
            changed,
            Operation::Update,
            Some(json!({"spec": stamped})),
        );
        let Verdict::Denied(why) = validate(&update, &Cluster::default(), Utc::now()) else {
            panic!("an approval was changed");
        };
        assert!(why.contains("immutable"), "{why}");
    }

    #[test]
    fn a_versions_artifact_cannot_change() {
        let c = cluster(&[]);
        let old = c
            .objects
            .iter()
            .find(|o| o["kind"] == "ModelVersion" && o["spec"]["version"] == "8")
            .unwrap()
            .clone();
        let mut new = old.clone();
        new["spec"]["artifact"]["uri"] = "s3://elsewhere/model.onnx".into();
        let req = Request {
            kind: "ModelVersion".into(),
            namespace: "default".into(),
            name: old["metadata"]["name"].as_str().unwrap().into(),
            operation: Operation::Update,
            user: "erin".into(),
            groups: vec![],
            object: Some(new),
            old_object: Some(old.clone()),
        };
        let Verdict::Denied(why) = validate(&req, &c, Utc::now()) else {
            panic!("allowed");
        };
        assert!(why.contains("spec.artifact.uri: ModelVersion fields model, version, artifact and source are immutable"), "{why}");
        // Labels may change.
        let mut labelled = old.clone();
        labelled["metadata"]["labels"] = json!({"team": "vision"});
        let req = Request {
            object: Some(labelled),
            ..req
        };
        assert_eq!(validate(&req, &c, Utc::now()), Verdict::Allowed(vec![]));
    }
}
