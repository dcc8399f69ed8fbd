//! Which `Approval`s sign off one exact change (DESIGN §5, Kubernetes mode). An alias move is
//! signed off from one version to another, for the candidate's artifact digest as registered,
//! and an approval used by one move counts for no other. Any other change is signed off by the
//! digest of the object's spec before and after it (`delete` for a removal). Pure: admission and
//! the alias reconciler bind approvals with this same code.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use slipway_crd::Approval;
use slipway_crd::approval::ApprovalDecision;

use super::approvals::{Review, ReviewUser, SignOffs};

/// The operator's retry annotation.
const RETRY: &str = slipway_crd::model_deployment::RETRY_ANNOTATION;

/// The retry annotation of an object, if it has one.
pub fn retry_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<&str> {
    meta.annotations.as_ref()?.get(RETRY).map(String::as_str)
}

/// What an approval must name to sign off a change.
#[derive(Clone, Debug, PartialEq)]
pub enum Sign {
    /// An alias move: `spec.fromVersion`, `spec.version` and `spec.artifactDigest`.
    Move {
        /// The version the alias serves now (empty: none).
        from: String,
        /// The version it moves to.
        to: String,
        /// The candidate's artifact digest as registered (empty: none).
        digest: String,
    },
    /// Any other change: `spec.change`.
    Change(String),
}

/// One change of one object, in the terms approvals name.
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    /// Kind of the changed object.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What approvals must name.
    pub sign: Sign,
    /// The move's identity, recorded as `status.usedBy` of the approvals that admitted it; an
    /// approval used by another move does not count.
    pub move_id: Option<String>,
}

impl Subject {
    /// The move's identity from the alias object's metadata.
    pub fn move_id(ns: &str, name: &str, to: &str, generation: i64, uid: &str) -> String {
        format!("ModelAlias/{ns}/{name} → {to} (generation {generation}, uid {uid})")
    }

    /// The move of alias object `name` in `ns` from version `from` (empty: none) to what `a`
    /// asks for, for the candidate's artifact digest as `catalog` registers it; the move's
    /// identity is the object's `generation` and `uid`. Admission and the alias reconciler bind
    /// approvals to this one subject.
    pub fn alias_move(
        catalog: &crate::catalog::Catalog,
        ns: &str,
        name: &str,
        a: &slipway_crd::ModelAlias,
        from: String,
        generation: i64,
        uid: &str,
    ) -> Subject {
        let to = a.spec.version.clone();
        let digest = catalog
            .version(ns, &a.spec.model, &to)
            .map(|v| v.spec.artifact.digest.clone())
            .unwrap_or_default();
        Subject {
            kind: "ModelAlias".into(),
            namespace: ns.to_string(),
            name: name.to_string(),
            move_id: Some(Subject::move_id(ns, name, &to, generation, uid)),
            sign: Sign::Move { from, to, digest },
        }
    }

    /// One line naming the change, e.g. `7 → 8 (artifact sha256:…)`.
    pub fn describe(&self) -> String {
        match &self.sign {
            Sign::Move { from, to, digest } => format!(
                "{} → {to} (artifact {})",
                none_if_empty(from),
                none_if_empty(digest)
            ),
            Sign::Change(c) => format!("change {c}"),
        }
    }
}

fn none_if_empty(s: &str) -> &str {
    if s.is_empty() { "(none)" } else { s }
}

/// The object a change is made to, as it is before the change: which one (`metadata.uid`) and
/// at which state (`metadata.generation`, which every change of its spec raises).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Live {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.generation`.
    pub generation: i64,
}

impl Live {
    /// The uid and generation of an object (JSON), if it has them.
    pub fn of(object: &serde_json::Value) -> Option<Live> {
        let m = &object["metadata"];
        Some(Live {
            uid: m["uid"].as_str()?.to_string(),
            generation: m["generation"].as_i64().unwrap_or(0),
        })
    }
}

/// `spec.change` of a change to any kind but an alias move: the SHA-256 of the spec before
/// (`null` for a new object) and after, as Slipway serializes them — for a change of an object
/// that exists, with the generation it is at, so that an approval signs off the change from
/// that state once (the change raises the generation: the same edit made again later, after a
/// revert, is another change); for a deletion, of the object's uid, generation and spec, so
/// that it removes that object as it is, once.
pub fn change_digest(
    old: Option<&serde_json::Value>,
    new: Option<&serde_json::Value>,
    live: Option<&Live>,
) -> String {
    let mut h = Sha256::new();
    let null = serde_json::Value::Null;
    match (new, live) {
        (None, live) => {
            let live = live.cloned().unwrap_or_default();
            h.update(format!(
                "delete\nuid {}\ngeneration {}\n",
                live.uid, live.generation
            ));
            h.update(old.unwrap_or(&null).to_string());
        }
        (Some(new), live) => {
            if let (Some(live), Some(_)) = (live, old) {
                h.update(format!("generation {}\n", live.generation));
            }
            h.update(old.unwrap_or(&null).to_string());
            h.update(b"\n");
            h.update(new.to_string());
        }
    }
    format!("sha256:{}", crate::hex(&h.finalize()))
}

/// What a `spec.change` stands for, shown to the approver: the digest and, field by field, what
/// the change does to the spec (every field of a new object; nothing of a deletion).
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeShown {
    /// The `spec.change` an approval of it names.
    pub digest: String,
    /// The fields it changes, old → new.
    pub fields: Vec<crate::plan::FieldChange>,
    /// It deletes the object.
    pub deletion: bool,
}

/// [`change_digest`] of the spec before and after, with the fields it changes.
pub fn shown(
    old: Option<&serde_json::Value>,
    new: Option<&serde_json::Value>,
    live: Option<&Live>,
) -> ChangeShown {
    let empty = serde_json::json!({});
    ChangeShown {
        digest: change_digest(old, new, live),
        // A deletion shows what goes (every field, old → absent).
        fields: crate::plan::diff(old.unwrap_or(&empty), new.unwrap_or(&empty), "spec"),
        deletion: new.is_none(),
    }
}

impl ChangeShown {
    /// This change with the operator's retry annotation going from `before` to `after` (the
    /// `slipway.dev/retry` of a deployment or evaluation, which alters what is served or run
    /// though the spec stays): shown as a field, and signed with the object's
    /// `resourceVersion` — a retry is made once from that exact state, as a spec change is
    /// from its generation. Taking the annotation off changes nothing.
    pub fn with_retry(
        mut self,
        before: Option<&str>,
        after: Option<&str>,
        resource_version: Option<&str>,
    ) -> ChangeShown {
        if after.is_none() || before == after {
            return self;
        }
        let mut h = Sha256::new();
        h.update(format!(
            "{}\nretry {before:?} -> {after:?} at resourceVersion {}",
            self.digest,
            resource_version.unwrap_or_default()
        ));
        self.digest = format!("sha256:{}", crate::hex(&h.finalize()));
        self.fields.push(crate::plan::FieldChange {
            path: format!("metadata.annotations[{RETRY:?}]"),
            old: before.map(|s| serde_json::Value::String(s.into())),
            new: after.map(|s| serde_json::Value::String(s.into())),
            files: Vec::new(),
        });
        self
    }

    /// One line per field (`spec.version: (absent) → "7"`), at most `limit`, then how many more.
    pub fn lines(&self, limit: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if self.deletion {
            out.push("the object's deletion".to_string());
        }
        out.extend(self.fields.iter().take(limit).map(|f| {
            format!(
                "{}: {} → {}",
                f.path,
                crate::plan::show(f.old.as_ref()),
                crate::plan::show(f.new.as_ref())
            )
        }));
        if self.fields.len() > limit {
            out.push(format!("and {} more fields", self.fields.len() - limit));
        }
        if out.is_empty() {
            out.push("no change to the spec".to_string());
        }
        out
    }
}

/// The approvals bound to one change.
#[derive(Clone, Debug, Default)]
pub struct Bound {
    /// The approvals that sign off this change, as reviews of it.
    pub signoffs: SignOffs,
    /// Approver → the groups stamped on their approval.
    pub approvers: BTreeMap<String, Vec<String>>,
    /// Approver → the names of their approvals of this change.
    pub names: BTreeMap<String, Vec<String>>,
    /// Approvals of this object that sign off something else, with why (for denials).
    pub ignored: Vec<String>,
}

/// Binds the approvals of the namespace to `subject`, the change `author` asks for.
pub fn bind(subject: &Subject, approvals: &[Approval], author: Option<&str>) -> Bound {
    let fingerprint = format!(
        "{}/{}/{}: {}",
        subject.kind,
        subject.namespace,
        subject.name,
        subject.describe()
    );
    let mut bound = Bound::default();
    for a in approvals {
        let spec = &a.spec;
        let ns = target_namespace(a);
        let (Some(user), Some(name)) = (spec.approver.as_deref(), a.metadata.name.as_deref())
        else {
            continue;
        };
        if spec.target.kind != subject.kind
            || spec.target.name != subject.name
            || ns != subject.namespace
        {
            continue;
        }
        let Some(signs) = signs_off(subject, a, user, name) else {
            continue;
        };
        let used = a
            .status
            .as_ref()
            .and_then(|s| s.used_by.as_deref())
            .filter(|u| Some(*u) != subject.move_id.as_deref())
            .map(|u| format!("approval {name} by {user} was used by {u}"));
        if let Some(why) = signs.err().or(used) {
            bound.ignored.push(why);
            continue;
        }
        bound
            .approvers
            .insert(user.to_string(), spec.approver_groups.clone());
        bound
            .names
            .entry(user.to_string())
            .or_default()
            .push(name.to_string());
        bound.signoffs.reviews.push(review(a, user, &fingerprint));
    }
    bound.signoffs.head = Some(fingerprint);
    bound.signoffs.author = author.map(str::to_string);
    bound
}

/// Whether approval `name` by `user` of the subject's object signs off this change: None when
/// it signs off another change (another move, or a move where this is another change: not this
/// change's business), else `Ok` when it names exactly this change or `Err` with why not.
fn signs_off(
    subject: &Subject,
    a: &Approval,
    user: &str,
    name: &str,
) -> Option<Result<(), String>> {
    let spec = &a.spec;
    match &subject.sign {
        Sign::Move { from, to, digest } => {
            let (f, d) = (
                spec.from_version.as_deref().unwrap_or_default(),
                spec.artifact_digest.as_deref().unwrap_or_default(),
            );
            if spec.version != *to || spec.change.is_some() {
                // An approval of another move: not this change's business.
                return None;
            }
            if f != from || d != digest {
                return Some(Err(format!(
                    "approval {name} by {user} signs off {} → {} (artifact {}), not this move",
                    none_if_empty(f),
                    spec.version,
                    none_if_empty(d)
                )));
            }
            Some(Ok(()))
        }
        Sign::Change(c) => match spec.change.as_deref() {
            None => None,
            Some(x) if x == c => Some(Ok(())),
            Some(x) => Some(Err(format!(
                "approval {name} by {user} signs off change {x}, not this one"
            ))),
        },
    }
}

/// Approval `a` by `user` as a review of the change `fingerprint` names: a rejection requests
/// changes, anything else approves; given when the approval was created.
fn review(a: &Approval, user: &str, fingerprint: &str) -> Review {
    Review {
        user: ReviewUser {
            login: user.to_string(),
        },
        state: if a.spec.decision == ApprovalDecision::Reject {
            "CHANGES_REQUESTED".into()
        } else {
            "APPROVED".into()
        },
        commit_id: Some(fingerprint.to_string()),
        submitted_at: a
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| t.0.to_string().parse().ok()),
    }
}

/// The namespace of what an approval signs off: its target's, else the approval's own.
pub fn target_namespace(a: &Approval) -> &str {
    a.spec
        .target
        .namespace
        .as_deref()
        .or(a.metadata.namespace.as_deref())
        .unwrap_or("default")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn approval(name: &str, spec: serde_json::Value, used_by: Option<&str>) -> Approval {
        serde_json::from_value(json!({
            "apiVersion": "slipway.dev/v1alpha1", "kind": "Approval",
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2026-11-30T10:00:00Z"},
            "spec": spec,
            "status": {"usedBy": used_by},
        }))
        .unwrap()
    }

    fn production(to: &str, from: &str, digest: &str, generation: i64) -> Subject {
        Subject {
            kind: "ModelAlias".into(),
            namespace: "ns".into(),
            name: "m-production".into(),
            sign: Sign::Move {
                from: from.into(),
                to: to.into(),
                digest: digest.into(),
            },
            move_id: Some(Subject::move_id("ns", "m-production", to, generation, "u1")),
        }
    }

    #[test]
    fn an_approval_signs_off_one_move_from_one_version_for_one_artifact_once() {
        let alice = approval(
            "alice-8",
            json!({"target": {"kind": "ModelAlias", "name": "m-production"}, "version": "8",
                   "fromVersion": "7", "artifactDigest": "sha256:aa", "decision": "approve",
                   "approver": "alice", "approverGroups": ["leads"]}),
            None,
        );
        let counted = |s: &Subject, a: &Approval| bind(s, std::slice::from_ref(a), Some("erin"));
        let b = counted(&production("8", "7", "sha256:aa", 3), &alice);
        assert_eq!(b.signoffs.reviews.len(), 1);
        assert_eq!(b.names["alice"], vec!["alice-8"]);
        // From another version, or for a re-registered artifact: not signed off, and said why.
        for s in [
            production("8", "9", "sha256:aa", 3),
            production("8", "7", "sha256:bb", 3),
        ] {
            let b = counted(&s, &alice);
            assert!(b.signoffs.reviews.is_empty());
            assert_eq!(
                b.ignored,
                vec![
                    "approval alice-8 by alice signs off 7 → 8 (artifact sha256:aa), not this move"
                ]
            );
        }
        // Another version's move does not mention it at all.
        assert!(
            counted(&production("9", "7", "sha256:aa", 3), &alice)
                .ignored
                .is_empty()
        );
        // Once used by the move at generation 3, it counts for that move only.
        let mut used = alice.clone();
        used.status.as_mut().unwrap().used_by =
            Some(Subject::move_id("ns", "m-production", "8", 3, "u1"));
        assert_eq!(
            counted(&production("8", "7", "sha256:aa", 3), &used)
                .signoffs
                .reviews
                .len(),
            1
        );
        let again = counted(&production("8", "7", "sha256:aa", 5), &used);
        assert!(again.signoffs.reviews.is_empty());
        assert!(
            again.ignored[0].contains("was used by ModelAlias/ns/m-production → 8 (generation 3")
        );
    }

    #[test]
    fn other_changes_are_signed_off_by_the_digest_of_the_spec_before_and_after() {
        let old = json!({"model": "m", "alias": "production"});
        let new = json!({"model": "m", "version": "3"});
        let at = |uid: &str, generation| Live {
            uid: uid.into(),
            generation,
        };
        let digest = change_digest(Some(&old), Some(&new), Some(&at("u1", 3)));
        assert!(digest.starts_with("sha256:") && digest.len() == 71);
        assert_ne!(digest, change_digest(None, Some(&new), None));
        // The same edit from a later state of the object (after a revert) is another change.
        assert_ne!(
            digest,
            change_digest(Some(&old), Some(&new), Some(&at("u1", 5)))
        );
        // A deletion names the object (its uid) as it is (generation and spec).
        let delete = change_digest(Some(&old), None, Some(&at("u1", 3)));
        assert!(delete.starts_with("sha256:"));
        assert_ne!(delete, change_digest(Some(&old), None, Some(&at("u2", 3))));
        assert_ne!(delete, change_digest(Some(&old), None, Some(&at("u1", 4))));
        assert_ne!(delete, change_digest(Some(&new), None, Some(&at("u1", 3))));
        let subject = Subject {
            kind: "ModelDeployment".into(),
            namespace: "ns".into(),
            name: "api".into(),
            sign: Sign::Change(digest.clone()),
            move_id: None,
        };
        let a = |change: &str| {
            approval(
                "a",
                json!({"target": {"kind": "ModelDeployment", "name": "api"}, "change": change,
                       "decision": "approve", "approver": "alice"}),
                None,
            )
        };
        assert_eq!(
            bind(&subject, &[a(&digest)], None).signoffs.reviews.len(),
            1
        );
        let other = bind(&subject, &[a("sha256:00")], None);
        assert!(other.signoffs.reviews.is_empty());
        assert_eq!(
            other.ignored,
            vec!["approval a by alice signs off change sha256:00, not this one"]
        );
    }
}

#[cfg(test)]
mod shown_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_change_is_shown_field_by_field_with_its_digest() {
        let old = json!({"model": "m", "alias": "production", "strategy": {"steps": [25, 100]}});
        let new = json!({"model": "m", "version": "7", "strategy": {"steps": [50, 100]}});
        let s = shown(Some(&old), Some(&new), None);
        assert_eq!(s.digest, change_digest(Some(&old), Some(&new), None));
        assert_eq!(
            s.lines(8),
            [
                r#"spec.alias: "production" → (absent)"#,
                "spec.strategy.steps[0]: 25 → 50",
                r#"spec.version: (absent) → "7""#,
            ]
        );
        assert_eq!(s.lines(1)[1], "and 2 more fields");
        // A new object: every field; a deletion: nothing but that.
        let created = shown(None, Some(&new), None);
        assert_eq!(
            created.lines(8),
            [
                r#"spec.model: (absent) → "m""#,
                r#"spec.strategy: (absent) → {"steps":[50,100]}"#,
                r#"spec.version: (absent) → "7""#,
            ]
        );
        assert_eq!(
            shown(Some(&old), None, None).lines(1),
            [
                "the object's deletion",
                r#"spec.alias: "production" → (absent)"#,
                "and 2 more fields"
            ]
        );
        assert_eq!(
            shown(Some(&old), Some(&old), None).lines(8),
            ["no change to the spec"]
        );
    }
}
