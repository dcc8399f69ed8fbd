//! Admission of `Approval`s: who created one is stamped and cannot be forged, it names exactly
//! one change, and what it names is there (else it says what is not).

use serde_json::Value;

use super::{Cluster, IMMUTABLE_APPROVAL, Request, Verdict, who};
use crate::catalog::{ObjectKey, Resource};
use slipway_crd::promotion_policy::Operation;

/// An alias approval whose move cannot be stamped: why (the alias or the version it names is not
/// there), and whether it signs off a move to the version the alias serves already (a warning).
fn alias_target(
    spec: &Value,
    req: &Request,
    cluster: &Cluster,
) -> (Option<String>, Option<String>) {
    let version = spec["version"].as_str().unwrap_or_default();
    if spec["target"]["kind"] != "ModelAlias" || version.is_empty() || !spec["change"].is_null() {
        return (None, None);
    }
    let ns = spec["target"]["namespace"]
        .as_str()
        .unwrap_or(&req.namespace);
    let name = spec["target"]["name"].as_str().unwrap_or_default();
    let key = ObjectKey {
        kind: slipway_crd::Kind::ModelAlias,
        namespace: ns.to_string(),
        name: name.to_string(),
    };
    let Some(Resource::ModelAlias(a)) = cluster.view.catalog.get(&key).map(|o| &o.resource) else {
        return (
            Some(format!(
                "ModelAlias {ns}/{name} does not exist, so Slipway cannot stamp the move: check spec.target.name (`kubectl get malias -n {ns}`), or — for an alias not created yet — set spec.fromVersion to \"\" and spec.artifactDigest to the digest of version {version}"
            )),
            None,
        );
    };
    if cluster
        .view
        .catalog
        .version(ns, &a.spec.model, version)
        .is_none()
    {
        let known = cluster.view.catalog.version_labels(ns, &a.spec.model);
        return (
            Some(format!(
                "model `{}` has no version `{version}` (versions: {}), so there is no artifact to approve: register the version first, or fix spec.version",
                a.spec.model,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )),
            None,
        );
    }
    let served = a
        .status
        .as_ref()
        .and_then(|s| s.resolved_version.as_deref());
    let warning = (served == Some(version)).then(|| {
        format!(
            "ModelAlias {ns}/{name} serves version {version} already: this approval signs off a move that needs none"
        )
    });
    (None, warning)
}

/// What is wrong with the change an approval's spec names; `unstamped` says why the move's
/// fields could not be stamped, when the alias or version is not there.
fn signs_one_change(spec: &Value, unstamped: Option<&str>) -> Vec<String> {
    let kind = spec["target"]["kind"].as_str().unwrap_or_default();
    let version = spec["version"].as_str().unwrap_or_default();
    let change = spec["change"].as_str();
    let mut problems = Vec::new();
    if !slipway_crd::Kind::ALL
        .iter()
        .any(|k| k.as_str() == kind && *k != slipway_crd::Kind::Approval)
    {
        problems.push(format!(
            "spec.target.kind is {:?}; name the kind of the object whose change you sign off \
             (ModelAlias, ModelDeployment, RegisteredModel, …)",
            kind
        ));
        return problems;
    }
    let is_digest = |c: &str| {
        c == "delete"
            || c.strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    match (kind, version.is_empty(), change) {
        ("ModelAlias", false, None) => {
            for (field, what) in [
                (
                    "fromVersion",
                    "the version the alias serves now (\"\" for a new alias)",
                ),
                (
                    "artifactDigest",
                    "the artifact digest of the version it moves to",
                ),
            ] {
                if spec[field].is_null() && unstamped.is_none() {
                    problems.push(format!(
                        "spec.{field} is missing: set it to {what}, or install Slipway's \
                         mutating webhook, which stamps it"
                    ));
                }
            }
            if let (Some(why), true) = (
                unstamped,
                spec["fromVersion"].is_null() || spec["artifactDigest"].is_null(),
            ) {
                problems.push(why.to_string());
            }
        }
        (_, true, Some(c)) if is_digest(c) => {}
        (_, true, Some(c)) => problems.push(format!(
            "spec.change is {c:?}; copy the change from the denial (`sha256:` and 64 hex \
             digits, or `delete`)"
        )),
        ("ModelAlias", true, None) => problems.push(
            "spec.version is missing: name the version the alias moves to (or set spec.change \
             to `delete` to approve removing it)"
                .to_string(),
        ),
        (_, _, None) => problems.push(format!(
            "spec.change is missing: an approval of a {kind} names the change the denial shows \
             (`sha256:…`, or `delete`)"
        )),
        (_, false, Some(_)) => problems.push(
            "set spec.version (an alias move) or spec.change (any other change), not both"
                .to_string(),
        ),
    }
    problems
}

/// Kubernetes' own controllers that delete what is in a namespace being deleted, or what lost
/// its owner.
const SYSTEM_DELETERS: [&str; 2] = [
    "system:serviceaccount:kube-system:namespace-controller",
    "system:serviceaccount:kube-system:generic-garbage-collector",
];

/// Deleting an `Approval` withdraws a signature or a veto: only its approver may (a lead cannot
/// remove another lead's rejection), or someone in a group the operator names
/// (`--approval-withdrawers`), or Kubernetes' own controllers.
fn withdrawal(req: &Request, cluster: &Cluster) -> Verdict {
    let spec = req
        .old_object
        .as_ref()
        .map(|o| o["spec"].clone())
        .unwrap_or_default();
    let approver = spec["approver"].as_str().unwrap_or_default();
    let allowed = approver == req.user
        || SYSTEM_DELETERS.contains(&req.user.as_str())
        || req.groups.iter().any(|g| cluster.withdrawers.contains(g));
    if allowed {
        return Verdict::Allowed(Vec::new());
    }
    let what = match spec["decision"].as_str() {
        Some("reject") => "a rejection is its author's veto",
        _ => "an approval is its author's signature",
    };
    let admins = if cluster.withdrawers.is_empty() {
        String::new()
    } else {
        format!(
            ", or someone in {} (the operator's --approval-withdrawers)",
            cluster.withdrawers.join(", ")
        )
    };
    Verdict::Denied(format!(
        "{}: only its approver, {approver:?}, withdraws it ({what}); ask them{admins}",
        who(req)
    ))
}

pub(super) fn approval(req: &Request, cluster: &Cluster) -> Verdict {
    match req.operation {
        Operation::Delete => withdrawal(req, cluster),
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
            let (unstamped, warning) = alias_target(&spec, req, cluster);
            problems.extend(signs_one_change(&spec, unstamped.as_deref()));
            if problems.is_empty() {
                Verdict::Allowed(warning.into_iter().collect())
            } else {
                Verdict::Denied(format!("{}: {}.", who(req), problems.join("; ")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::cluster;
    use super::super::{Cluster, Request, Verdict, validate};
    use slipway_crd::promotion_policy::Operation;

    fn withdraw(user: &str, groups: &[&str], decision: &str) -> Request {
        let approval = json!({
            "apiVersion": "slipway.dev/v1alpha1", "kind": "Approval",
            "metadata": {"name": "alice-rejects-8", "namespace": "default"},
            "spec": {"target": {"kind": "ModelAlias", "name": "pitch-frame-classifier-production"},
                     "version": "8", "decision": decision, "approver": "alice",
                     "approverGroups": ["ml-leads"]},
        });
        Request {
            kind: "Approval".into(),
            namespace: "default".into(),
            name: "alice-rejects-8".into(),
            operation: Operation::Delete,
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            object: None,
            old_object: Some(approval),
        }
    }

    #[test]
    fn only_its_approver_withdraws_an_approval_or_a_veto() {
        let c = cluster(&[]);
        let admins = ["system:masters".to_string()];
        let view = Cluster {
            withdrawers: &admins,
            ..c.view()
        };
        let now = crate::testing::now();
        let Verdict::Denied(why) =
            validate(&withdraw("carol", &["ml-leads"], "reject"), &view, now)
        else {
            panic!("another lead withdrew alice's rejection");
        };
        assert_eq!(
            why,
            "Approval default/alice-rejects-8: only its approver, \"alice\", withdraws it (a rejection is its author's veto); ask them, or someone in system:masters (the operator's --approval-withdrawers)"
        );
        let Verdict::Denied(why) =
            validate(&withdraw("carol", &["ml-leads"], "approve"), &c.view(), now)
        else {
            panic!("another lead withdrew alice's approval");
        };
        assert!(
            why.ends_with("(an approval is its author's signature); ask them"),
            "{why}"
        );
        for (user, groups) in [
            ("alice", &["ml-leads"][..]),
            ("root", &["system:masters"][..]),
            (
                "system:serviceaccount:kube-system:namespace-controller",
                &[][..],
            ),
        ] {
            assert_eq!(
                validate(&withdraw(user, groups, "reject"), &view, now),
                Verdict::Allowed(vec![]),
                "{user}"
            );
        }
    }
}
