//! Admission decisions of the Kubernetes mode (DESIGN §1 flow 3, §5). Pure: the same catalog,
//! plan and policy code as `slipway plan`, with the identity from `request.userInfo` and the
//! sign-offs from `Approval` objects instead of pull-request reviews.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use slipway_crd::Approval;
use slipway_crd::approval::ApprovalDecision;
use slipway_crd::promotion_policy::Operation;

use crate::decide::catalog::{Catalog, Object, ObjectKey, SourceFile, View, cluster_path, load};
use crate::decide::diagnostics::Diagnostic;
use crate::decide::plan::{self, KubeIdentity, PlanInputs, Rev};
use crate::decide::policy::approvals::{Review, ReviewUser, SignOffs};
use crate::decide::policy::context::Results;

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

/// The namespace's Slipway objects as the API server has them (from the controller's watches:
/// built once per change of the namespace, not per request).
#[derive(Clone, Copy, Debug)]
pub struct Cluster<'a> {
    /// The namespace's models, versions, aliases, evaluations, deployments and policies, and the
    /// evaluation results among them.
    pub view: &'a View,
    /// The namespace's `Approval`s.
    pub approvals: &'a [Approval],
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
        from_api_server: true,
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

/// The requested object (as it is, or as it will be) as a catalog object, or the problems that
/// keep it from being one.
fn parse(object: &Value) -> Result<Object, Vec<Diagnostic>> {
    let file = file_of(object);
    let (mut objects, diags) = load::load_files(std::slice::from_ref(&file));
    match objects.pop() {
        Some(o) if diags.is_empty() => Ok(o),
        _ => Err(diags),
    }
}

/// The namespace before the request (with the object as the request says it is) and after it,
/// and the problems of the requested object as it will be.
fn revisions(
    req: &Request,
    cluster: &Cluster,
    key: &ObjectKey,
) -> (Catalog, Catalog, Vec<Diagnostic>) {
    let old = req.old_object.as_ref().and_then(|o| parse(o).ok());
    let (base, _) = cluster.view.catalog.amended([(key.clone(), old)]);
    let (new, mut own) = match req.object.as_ref().map(parse) {
        Some(Ok(o)) => (Some(o), Vec::new()),
        Some(Err(d)) => (None, d),
        None => (None, Vec::new()),
    };
    let (head, mut more) = base.amended([(key.clone(), new)]);
    own.append(&mut more);
    (base, head, own)
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
    for a in cluster.approvals {
        let spec = &a.spec;
        let ns = spec
            .target
            .namespace
            .as_deref()
            .or(a.metadata.namespace.as_deref())
            .unwrap_or("default");
        if spec.target.kind != "ModelAlias"
            || spec.target.name != req.name
            || ns != req.namespace
            || spec.version != version
        {
            continue;
        }
        let Some(user) = spec.approver.as_deref() else {
            continue;
        };
        approvers.insert(user.to_string(), spec.approver_groups.clone());
        reviews.push(Review {
            user: ReviewUser {
                login: user.to_string(),
            },
            state: if spec.decision == ApprovalDecision::Reject {
                "CHANGES_REQUESTED".into()
            } else {
                "APPROVED".into()
            },
            commit_id: Some(fingerprint.clone()),
            submitted_at: a
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| t.0.to_string().parse().ok()),
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
    let Some(key) = key(req) else {
        return Verdict::Allowed(Vec::new());
    };
    let (base, head, own) = revisions(req, cluster, &key);
    // Problems of the requested object itself refuse it; other objects' problems are not this
    // request's to fix.
    let own: Vec<String> = own.iter().map(describe).collect();
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
    // An alias request changes no evaluation: the namespace's results of its model stand.
    let model = req
        .object
        .as_ref()
        .or(req.old_object.as_ref())
        .and_then(|o| o["spec"]["model"].as_str())
        .unwrap_or_default();
    let results = cluster.view.results.of_model(&req.namespace, model);
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
    let Some(key) = key(req).filter(|_| req.operation != Operation::Delete) else {
        return Verdict::Allowed(Vec::new());
    };
    let (base, head, own) = revisions(req, cluster, &key);
    let path = cluster_path(&key);
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for d in &own {
        // In Kubernetes mode `group:NAME` names the authenticator's groups, not `Group` objects.
        if req.kind == "PromotionPolicy"
            && d.category == crate::decide::diagnostics::Category::BrokenReference
            && d.field.contains(".from[")
        {
            continue;
        }
        if d.category == crate::decide::diagnostics::Category::BrokenReference {
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
mod tests;
