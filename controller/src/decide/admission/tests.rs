use super::*;

/// A namespace as the controller's watches hold it.
struct Namespace {
    objects: Vec<Value>,
    view: View,
    approvals: Vec<Approval>,
}

impl Namespace {
    fn of(objects: Vec<Value>, approvals: Vec<Value>) -> Namespace {
        let files: Vec<SourceFile> = objects.iter().map(file_of).collect();
        let (loaded, _) = crate::decide::catalog::load_files(&files);
        let approvals = approvals
            .into_iter()
            .map(|a| serde_json::from_value(a).unwrap())
            .collect();
        Namespace {
            objects,
            view: View::of(loaded),
            approvals,
        }
    }

    fn empty() -> Namespace {
        Namespace::of(Vec::new(), Vec::new())
    }

    fn view(&self) -> Cluster<'_> {
        Cluster {
            view: &self.view,
            approvals: &self.approvals,
        }
    }
}

/// The example registry and the results of version 8, as the API server would hold them.
fn cluster(approvals: &[(&str, &str, &[&str])]) -> Namespace {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut objects = Vec::new();
    for dir in ["examples/football-frames", "examples/promotion-pr/results"] {
        for f in crate::edges::source::dir::read(&root.join(dir)).unwrap() {
            let text = String::from_utf8(f.content).unwrap();
            for (_, doc) in crate::decide::catalog::load::split_documents(&text) {
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
    Namespace::of(objects, approvals)
}

fn alias_object(version: &str) -> Value {
    json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelAlias",
           "metadata": {"name": "pitch-frame-classifier-production", "namespace": "default"},
           "spec": {"model": "pitch-frame-classifier", "alias": "production", "version": version}})
}

fn move_production(user: &str, groups: &[&str], cluster: &Namespace) -> Verdict {
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
    validate(
        &req,
        &cluster.view(),
        "2026-11-26T12:00:00Z".parse().unwrap(),
    )
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
    let Verdict::Denied(why) = move_production("dana", &["ml-engineers", "ml-leads"], &c) else {
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
        &Namespace::empty().view(),
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
        validate(&ok, &Namespace::empty().view(), Utc::now()),
        Verdict::Allowed(vec![])
    );
    let mut claimed = stamped.clone();
    claimed["approverGroups"] = json!(["ml-leads", "platform-admins"]);
    let Verdict::Denied(why) = validate(
        &approval_request("alice", claimed, Operation::Create, None),
        &Namespace::empty().view(),
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
    let Verdict::Denied(why) = validate(&update, &Namespace::empty().view(), Utc::now()) else {
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
    let Verdict::Denied(why) = validate(&req, &c.view(), Utc::now()) else {
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
    assert_eq!(
        validate(&req, &c.view(), Utc::now()),
        Verdict::Allowed(vec![])
    );
}
