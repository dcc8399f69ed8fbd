//! Admission decisions of the Kubernetes mode (DESIGN §1 flow 3, §5). Pure: the same catalog,
//! plan and policy code as `slipway plan`, with the identity from `request.userInfo` and the
//! sign-offs from `Approval` objects instead of pull-request reviews.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use slipway_crd::Approval;
use slipway_crd::promotion_policy::Operation;

use crate::catalog::{Catalog, Object, ObjectKey, Resource, SourceFile, View, cluster_path, load};
use crate::diagnostics::Diagnostic;
use crate::plan::{self, KubeIdentity, PlanInputs, Rev};
use crate::policy::binding::{self, Sign, Subject};

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
    /// The operator's bounds on what objects may make the controller do.
    pub bounds: &'a crate::bounds::Bounds,
    /// Groups whose members may withdraw anyone's `Approval` (besides its approver).
    pub withdrawers: &'a [String],
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
        // JSON is YAML: the loader reads it as it reads any document.
        content: serde_json::to_vec(&object).unwrap_or_default(),
        id: None,
        from_api_server: true,
    }
}

/// Decides a validating admission request.
pub fn validate(req: &Request, cluster: &Cluster, now: DateTime<Utc>) -> Verdict {
    if let Some(why) = lifecycle::refusal(req, cluster)
        .or_else(|| lifecycle::in_use(req, cluster))
        .or_else(|| lifecycle::retired(req, cluster))
        .or_else(|| lifecycle::named(req))
    {
        return Verdict::Denied(format!("{}: {why}", who(req)));
    }
    match req.kind.as_str() {
        "Approval" => approvals::approval(req, cluster),
        _ => change(req, cluster, now),
    }
}

/// The JSON patch that stamps an `Approval` (mutating admission): `approver` and
/// `approverGroups` from `userInfo` when the client left them out, and for an alias move the
/// move it signs off — `fromVersion` (the version the alias serves now) and `artifactDigest`
/// (the candidate's, as registered) — when left out. A different approver is left alone, for
/// validation to refuse with an explanation.
pub fn stamp(req: &Request, cluster: &Cluster) -> Option<Value> {
    if req.kind == "ModelVersion" && req.operation == Operation::Create {
        return lifecycle::held_from_the_start(req);
    }
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
    let version = spec["version"].as_str().unwrap_or_default();
    if spec["target"]["kind"] == "ModelAlias" && !version.is_empty() && spec["change"].is_null() {
        let key = ObjectKey {
            kind: slipway_crd::Kind::ModelAlias,
            namespace: spec["target"]["namespace"]
                .as_str()
                .unwrap_or(&req.namespace)
                .to_string(),
            name: spec["target"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        };
        let alias = match cluster.view.catalog.get(&key).map(|o| &o.resource) {
            Some(Resource::ModelAlias(a)) => Some(a),
            _ => None,
        };
        if spec["fromVersion"].is_null() {
            let from = alias
                .and_then(|a| a.status.as_ref())
                .and_then(|s| s.resolved_version.clone())
                .unwrap_or_default();
            ops.push(json!({"op": "add", "path": "/spec/fromVersion", "value": from}));
        }
        let digest = alias.and_then(|a| {
            cluster
                .view
                .catalog
                .version(&key.namespace, &a.spec.model, version)
        });
        if spec["artifactDigest"].is_null()
            && let Some(v) = digest
        {
            ops.push(json!({"op": "add", "path": "/spec/artifactDigest", "value": v.spec.artifact.digest}));
        }
    }
    (!ops.is_empty()).then_some(Value::Array(ops))
}

fn who(req: &Request) -> String {
    format!("{} {}/{}", req.kind, req.namespace, req.name)
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
/// keep it from being one (`slipway change` reads the cluster's objects the same way).
pub fn parse(object: &Value) -> Result<Object, Vec<Diagnostic>> {
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

/// The change `req` asks for, in the terms approvals name.
fn subject(req: &Request, key: &ObjectKey, base: &Catalog, head: &Catalog) -> Subject {
    if let (Some(Resource::ModelAlias(a)), Some(o)) =
        (head.get(key).map(|o| &o.resource), req.object.as_ref())
    {
        // The move from what the alias serves now (its status, as the reconciler sees it).
        let from = req
            .old_object
            .as_ref()
            .and_then(|o| o["status"]["resolvedVersion"].as_str())
            .unwrap_or_default()
            .to_string();
        return Subject::alias_move(
            head,
            &key.namespace,
            &key.name,
            a,
            from,
            o["metadata"]["generation"].as_i64().unwrap_or(0),
            o["metadata"]["uid"].as_str().unwrap_or_default(),
        );
    }
    Subject {
        kind: key.kind.as_str().to_string(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        sign: Sign::Change(spec_change(req, key, base, head).digest),
        move_id: None,
    }
}

/// The object's spec change from `base` to `head`, as approvals sign it and approvers are shown
/// it (`slipway change` shows the same).
fn spec_change(
    req: &Request,
    key: &ObjectKey,
    base: &Catalog,
    head: &Catalog,
) -> binding::ChangeShown {
    let spec = |cat: &Catalog| cat.get(key).map(|o| o.resource.spec_json());
    let retry = |cat: &Catalog| {
        cat.get(key)
            .and_then(|o| binding::retry_of(o.resource.meta()).map(str::to_string))
    };
    let live = req.old_object.as_ref().and_then(binding::Live::of);
    binding::shown(spec(base).as_ref(), spec(head).as_ref(), live.as_ref()).with_retry(
        retry(base).as_deref(),
        retry(head).as_deref(),
        req.old_object
            .as_ref()
            .and_then(|o| o["metadata"]["resourceVersion"].as_str()),
    )
}

/// Every kind but `Approval`: the object's own problems refuse it (including changing a
/// `ModelVersion`'s artifact or lineage); then the policies matching the change decide it, with
/// the same plan code as `slipway plan` and the approvals bound to exactly this change. Broken
/// references of kinds other than aliases are warnings, since `kubectl apply` of a folder creates
/// objects in file order.
fn change(req: &Request, cluster: &Cluster, now: DateTime<Utc>) -> Verdict {
    let Some(key) = key(req) else {
        return Verdict::Allowed(Vec::new());
    };
    let (base, head, own) = revisions(req, cluster, &key);
    let (errors, mut warnings) = own_problems(req, cluster, &key, &head, &own);
    if !errors.is_empty() {
        return Verdict::Denied(format!("{}: {}.", who(req), errors.join("; ")));
    }
    let subject = subject(req, &key, &base, &head);
    let bound = binding::bind(&subject, cluster.approvals, Some(&req.user));
    let inputs = plan_inputs(req, cluster, &key, &base, &head, &bound, now);
    let plan = plan::plan(&base, &head, &inputs);
    let path = cluster_path(&key);
    let errors: Vec<String> = plan
        .errors
        .iter()
        .filter(|d| d.file == path)
        .map(describe)
        .collect();
    if !errors.is_empty() {
        return Verdict::Denied(format!("{}: {}.", who(req), errors.join("; ")));
    }
    let Some(change) = plan.changes.iter().find(|c| {
        c.kind == key.kind.as_str() && c.namespace == key.namespace && c.name == key.name
    }) else {
        // Nothing Slipway decides changed (e.g. labels only).
        return Verdict::Allowed(warnings);
    };
    warnings.extend(
        change
            .decision
            .rules
            .iter()
            .filter(|r| !r.passed && r.effect == slipway_crd::promotion_policy::Effect::Warn)
            .map(|r| format!("policy {}, rule {}: {}", r.policy, r.name, r.message)),
    );
    if change.decision.allowed {
        return Verdict::Allowed(warnings);
    }
    // Denied only until a time (a soak that ends): admitted, and the alias reconciler holds
    // the move until then and makes it (as `slipway plan` lets such a pull request merge).
    if let Some(t) = change.decision.opens_at.filter(|_| change.decision.held()) {
        let by: Vec<String> = change
            .decision
            .denying_rules()
            .map(|r| format!("{}/{}", r.policy, r.name))
            .collect();
        warnings.push(format!(
            "{}: held until {} by {}; the controller makes the move then",
            who(req),
            t.format("%Y-%m-%d %H:%M UTC"),
            by.join(", ")
        ));
        return Verdict::Allowed(warnings);
    }
    let shown = spec_change(req, &key, &base, &head);
    Verdict::Denied(denial(req, change, &subject, &shown, &bound.ignored))
}

/// The requested object's own problems, as (errors, warnings): broken references of kinds other
/// than aliases warn, other problems and refusals by the operator's bounds are errors. A
/// deletion has none.
fn own_problems(
    req: &Request,
    cluster: &Cluster,
    key: &ObjectKey,
    head: &Catalog,
    own: &[Diagnostic],
) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for d in own.iter().filter(|_| req.operation != Operation::Delete) {
        // In Kubernetes mode `group:NAME` names the authenticator's groups, not `Group` objects.
        let broken = d.category == crate::diagnostics::Category::BrokenReference;
        if req.kind == "PromotionPolicy" && broken && d.field.contains(".from[") {
            continue;
        }
        if broken && req.kind != "ModelAlias" {
            warnings.push(format!("{}: {}", who(req), describe(d)));
        } else {
            errors.push(describe(d));
        }
    }
    // What the object would make the controller do stays within the operator's bounds.
    if let Some(o) = head.get(key).filter(|_| req.operation != Operation::Delete) {
        errors.extend(cluster.bounds.refusal(&o.resource));
    }
    (errors, warnings)
}

/// What the plan of a request reads: the cluster before and the request after, the results of
/// the namespace's model, the approvals bound to the change, and the requester's groups.
fn plan_inputs(
    req: &Request,
    cluster: &Cluster,
    key: &ObjectKey,
    base: &Catalog,
    head: &Catalog,
    bound: &binding::Bound,
    now: DateTime<Utc>,
) -> PlanInputs {
    // A request changes no evaluation: the namespace's results of its model stand.
    let model = head
        .get(key)
        .or_else(|| base.get(key))
        .and_then(|o| o.resource.model())
        .unwrap_or_default();
    PlanInputs {
        base: Rev {
            name: "cluster".into(),
            commit: "cluster".into(),
        },
        head: Rev {
            name: "request".into(),
            commit: "request".into(),
        },
        results: cluster.view.results.of_model(&req.namespace, model),
        signoffs: bound.signoffs.clone(),
        now,
        kubernetes: Some(KubeIdentity {
            groups: req.groups.clone(),
            approvers: bound.approvers.clone(),
        }),
        // An alias's recorded moves (its status, which only the controller writes) say which
        // versions it served: a move back to one is a rollback.
        served: req
            .old_object
            .as_ref()
            .filter(|_| key.kind == slipway_crd::Kind::ModelAlias)
            .and_then(|o| serde_json::from_value(o["status"]["history"].clone()).ok())
            .map(|h: Vec<slipway_crd::model_alias::AliasMove>| {
                [(key.clone(), crate::promotion::served(&h))].into()
            })
            .unwrap_or_default(),
        histories: [(
            (req.namespace.clone(), model.to_string()),
            crate::promotion::stages::cluster_histories(base, &req.namespace, model),
        )]
        .into(),
        files: None,
    }
}

/// A denial in the manner of Kyverno: the object and change, then each policy / rule that
/// refused it with its message and the values it read, then what to do.
fn denial(
    req: &Request,
    change: &plan::Change,
    subject: &Subject,
    shown: &binding::ChangeShown,
    ignored: &[String],
) -> String {
    let model = change.model.as_deref().unwrap_or("?");
    let alias = change.alias.as_deref().unwrap_or("?");
    let what = match (change.kind.as_str(), &change.from, &change.to) {
        ("ModelAlias", Some(f), Some(t)) => format!("moving {model}/{alias} from {f} to {t}"),
        ("ModelAlias", None, Some(t)) => format!("pointing {model}/{alias} at {t}"),
        ("ModelAlias", Some(f), None) => format!("removing {model}/{alias} (now {f})"),
        _ => match change.action {
            Operation::Create => "creating it".to_string(),
            Operation::Delete => "deleting it".to_string(),
            Operation::Update => {
                let mut fields: Vec<&str> = change.fields.iter().map(|f| f.path.as_str()).collect();
                if fields.len() > 5 {
                    fields.truncate(5);
                    fields.push("…");
                }
                format!("changing {}", fields.join(", "))
            }
        },
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
    let how = match &subject.sign {
        Sign::Move { to, .. } => format!(
            "spec.version {to:?} and spec.decision approve (Slipway records who created it and \
             the move it signs off: {})",
            subject.describe()
        ),
        Sign::Change(c) => format!(
            "spec.change {c:?} and spec.decision approve (Slipway records who created it; the \
             change it signs: {}; `slipway change` shows the same from the manifest)",
            shown.lines(usize::MAX).join("; ")
        ),
    };
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
             {{kind: {}, name: {}}}, {how}, then re-apply this change",
            a.from.join(" or "),
            req.user,
            change.kind,
            req.name,
        ));
    }
    for i in ignored {
        out.push_str(&format!("\n  {i}"));
    }
    out
}

mod approvals;
mod lifecycle;
#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "soak_tests.rs"]
mod soak_tests;
