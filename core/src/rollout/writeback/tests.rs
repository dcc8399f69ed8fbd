use super::*;
use crate::testing::{catalog, now, registry};
use slipway_crd::model_deployment::{RollbackProposal, RolloutEvent, RolloutEventKind};

fn rolled_back() -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        phase: Some(DeploymentPhase::RolledBack),
        serving_version: Some("1".into()),
        rejected_versions: vec!["2".into()],
        history: vec![RolloutEvent {
            event: RolloutEventKind::RolledBack,
            traffic: [("1".to_string(), 100)].into(),
            message: Some("2: analysis failed at 20%: metric error-ratio failed".into()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn deployment(cat: &Catalog) -> ModelDeployment {
    cat.objects()
        .iter()
        .find_map(|o| match &o.resource {
            Resource::ModelDeployment(d) => Some((**d).clone()),
            _ => None,
        })
        .unwrap()
}

#[test]
fn a_rollback_is_wanted_while_the_source_asks_for_the_rejected_version() {
    let s = rolled_back();
    let w = wanted(&s, Some("2"), now()).unwrap();
    assert_eq!((w.version.as_str(), w.back_to.as_str()), ("2", "1"));
    assert_eq!(w.why, "analysis failed at 20%: metric error-ratio failed");
    // The source moved on (or back): nothing to propose.
    assert_eq!(wanted(&s, Some("1"), now()), None);
    assert_eq!(wanted(&s, Some("3"), now()), None);
    // Proposed already.
    let mut done = s.clone();
    done.proposal = Some(RollbackProposal {
        version: "2".into(),
        back_to: "1".into(),
        ..Default::default()
    });
    assert_eq!(wanted(&done, Some("2"), now()), None);
    // One that failed is tried again five minutes later, not before.
    let mut failed = done.clone();
    let p = failed.proposal.as_mut().unwrap();
    p.error = Some("cannot push".into());
    p.at = Some(now() - chrono::TimeDelta::minutes(4));
    assert_eq!(wanted(&failed, Some("2"), now()), None);
    failed.proposal.as_mut().unwrap().at = Some(now() - RETRY_AFTER);
    assert!(wanted(&failed, Some("2"), now()).is_some());
    // A rollout that did not roll back.
    let mut healthy = s.clone();
    healthy.phase = Some(DeploymentPhase::Healthy);
    assert_eq!(wanted(&healthy, Some("2"), now()), None);
}

#[test]
fn the_proposal_moves_only_the_alias_version_in_its_file() {
    let text = registry("2");
    let cat = catalog(&text);
    let d = deployment(&cat);
    assert_eq!(asked(&cat, "default", &d).as_deref(), Some("2"));
    let w = wanted(&rolled_back(), Some("2"), now()).unwrap();
    let p = propose(
        &cat,
        ("default", "default"),
        &d,
        &w,
        &|_| Some(text.clone()),
        Some("http://slipway:8080/ui/default/m"),
    )
    .unwrap();
    assert_eq!(p.file, "fixture.yaml");
    assert_eq!(p.object, "ModelAlias default/m-production");
    assert_eq!(p.branch, "slipway/rollback/default/api/2");
    assert_eq!(p.content, registry("1"));
    assert_eq!(p.title(), "Roll m production back to 1 (api rejected 2)");
    assert!(p.body().contains("analysis failed at 20%"), "{}", p.body());
    assert!(p.body().contains("fixture.yaml:25"), "{}", p.body());
    assert!(
        p.body()
            .contains("Report: http://slipway:8080/ui/default/m")
    );

    // Block style, single-quoted, with a comment: only the value changes.
    let block = "apiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata:\n  name: m-production\nspec:\n  model: m\n  alias: production\n  version: '2'   # promoted by the PR of 3 May\n";
    let rest = text.replace(
        "kind: ModelAlias\nmetadata: {name: m-production}\nspec: {model: m, alias: production, version: \"2\"}\n---\n",
        "kind: Group\nmetadata: {name: nobody}\nspec: {members: [x]}\n---\n",
    );
    let both = format!("{rest}\n---\n{block}");
    let cat = catalog(&both);
    let p = propose(
        &cat,
        ("default", "default"),
        &d,
        &w,
        &|_| Some(both.clone()),
        None,
    )
    .unwrap();
    assert_eq!(
        p.content,
        both.replace("  version: '2'   #", "  version: \"1\"   #")
    );
}

#[test]
fn a_file_it_cannot_edit_safely_is_refused() {
    // The version comes from an anchor: the text at its place is not `2`.
    let text = registry("2").replace(
        "spec: {model: m, alias: production, version: \"2\"}",
        "spec: {model: m, alias: production, version: &v \"2\"}",
    );
    let cat = catalog(&text);
    let d = deployment(&cat);
    let w = wanted(&rolled_back(), Some("2"), now()).unwrap();
    let e = propose(
        &cat,
        ("default", "default"),
        &d,
        &w,
        &|_| Some(text.clone()),
        None,
    )
    .unwrap_err();
    assert!(
        e.contains("fixture.yaml:25: spec.version of ModelAlias default/m-production"),
        "{e}"
    );
    // No alias in the registry.
    let mut other = d.clone();
    other.spec.alias = Some("staging".into());
    let e = propose(
        &cat,
        ("default", "default"),
        &other,
        &w,
        &|_| Some(text.clone()),
        None,
    )
    .unwrap_err();
    assert_eq!(e, "no ModelAlias staging of model m in the registry");
}

#[test]
fn branch_names_are_refs_git_accepts() {
    assert_eq!(ref_safe("v1.2+build"), "v1.2-build");
    assert_eq!(ref_safe("..x..lock"), "x");
    assert_eq!(ref_safe("..x..y"), "x.y");
    assert_eq!(ref_safe("a.lock"), "a");
    assert_eq!(ref_safe("a.lock.lock"), "a");
    assert_eq!(ref_safe("-"), "x");
    assert_eq!(ref_safe("ü/../x"), "x");
    assert_eq!(ref_safe("a/b"), "a-b");
}

#[test]
fn what_was_done_is_recorded_with_its_event() {
    let text = registry("2");
    let cat = catalog(&text);
    let d = deployment(&cat);
    let previous = rolled_back();
    let w = wanted(&previous, Some("2"), now()).unwrap();
    let p = propose(
        &cat,
        ("default", "default"),
        &d,
        &w,
        &|_| Some(text.clone()),
        None,
    )
    .unwrap();
    let pushed = |pr: Option<&str>, refused: Option<&str>| Done::Pushed {
        commit: "0123456789abcdef".into(),
        pull_request: pr.map(str::to_string),
        refused: refused.map(str::to_string),
    };
    let said = |r: (
        ModelDeploymentStatus,
        Option<(super::super::EventKind, String)>,
    )| {
        let (s, news) = r;
        let (kind, m) = news.expect("news");
        (s, kind, m)
    };
    let (s, kind, m) = said(recorded(
        &previous,
        &w,
        Ok(&p),
        &pushed(Some("https://gh/pull/1"), None),
        now(),
    ));
    assert_eq!(kind, super::super::EventKind::RollbackProposed);
    assert!(m.ends_with("; pull request https://gh/pull/1"), "{m}");
    assert!(
        m.contains("branch slipway/rollback/default/api/2 (0123456789ab)"),
        "{m}"
    );
    let record = s.proposal.unwrap();
    assert_eq!(record.pull_request.as_deref(), Some("https://gh/pull/1"));
    assert_eq!(record.error, None);
    assert_eq!(s.history.len(), 2);
    assert_eq!(
        s.history[1].message.as_deref(),
        Some(format!("2: {m}").as_str())
    );
    // No token: the branch alone, and what to do with it.
    let (_, _, m) = said(recorded(&previous, &w, Ok(&p), &pushed(None, None), now()));
    assert!(
        m.ends_with("open a pull request from it to undo the version in the source"),
        "{m}"
    );
    // GitHub refused: said, and not tried again (the branch is there).
    let (s, kind, m) = said(recorded(
        &previous,
        &w,
        Ok(&p),
        &pushed(None, Some("HTTP 403")),
        now(),
    ));
    assert_eq!(kind, super::super::EventKind::RollbackProposed);
    assert!(
        m.ends_with("the pull request could not be opened: HTTP 403"),
        "{m}"
    );
    assert_eq!(wanted(&s, Some("2"), now() + RETRY_AFTER * 2), None);
    // Nothing pushed: a warning, tried again later, backing off, said once.
    let (s, kind, m) = said(recorded(
        &previous,
        &w,
        Ok(&p),
        &Done::Failed("refused".into()),
        now(),
    ));
    assert_eq!(kind, super::super::EventKind::RollbackProposalFailed);
    assert!(m.contains("tried again in 5 minutes"), "{m}");
    assert!(wanted(&s, Some("2"), now() + RETRY_AFTER).is_some());
    let later = now() + RETRY_AFTER;
    let (again, news) = recorded(&s, &w, Ok(&p), &Done::Failed("refused".into()), later);
    assert_eq!(news, None, "a second failure is not news");
    assert_eq!(again.history.len(), s.history.len());
    assert_eq!(again.proposal.as_ref().unwrap().attempts, 2);
    assert!(wanted(&again, Some("2"), later + RETRY_AFTER).is_none());
    assert!(wanted(&again, Some("2"), later + RETRY_AFTER * 2).is_some());
    assert_eq!(retry_after(30), chrono::TimeDelta::days(1));
    let (s, kind, m) = said(recorded(
        &previous,
        &w,
        Err("cannot read aliases.yaml"),
        &Done::Failed(String::new()),
        now(),
    ));
    assert_eq!(kind, super::super::EventKind::RollbackProposalFailed);
    assert!(m.contains("(cannot read aliases.yaml)"), "{m}");
    assert_eq!(
        s.proposal.unwrap().error.as_deref(),
        Some("cannot read aliases.yaml")
    );
}

#[test]
fn a_cluster_file_without_namespaces_is_read_in_the_namespace_it_reads_as() {
    let text = registry("2");
    let file = file_catalog("deploy/aliases.yaml", &text);
    let d = deployment(&file);
    assert_eq!(
        namespace_in(&file, "ml", &d, "api").as_deref(),
        Some("default")
    );
    // A file that names another namespace holds another team's alias: never this one's.
    let theirs = text.replace(
        "metadata: {name: m-production}",
        "metadata: {name: m-production, namespace: team-b}",
    );
    assert_ne!(theirs, text);
    assert_eq!(
        namespace_in(&file_catalog("a.yaml", &theirs), "ml", &d, "api"),
        None
    );
    assert_eq!(
        namespace_in(&file_catalog("a.yaml", &theirs), "team-b", &d, "api").as_deref(),
        Some("team-b")
    );
    let w = wanted(&rolled_back(), Some("2"), now()).unwrap();
    let read = |path: &str| (path == "deploy/aliases.yaml").then(|| text.clone());
    let p = propose(&file, ("ml", "default"), &d, &w, &read, None).unwrap();
    assert_eq!(p.branch, "slipway/rollback/ml/api/2");
    assert_eq!(p.file, "deploy/aliases.yaml");
    assert_eq!(p.content, registry("1"));
    assert!(p.body().contains("ModelDeployment ml/api"), "{}", p.body());
    // Two objects that could be it: none is chosen.
    let twice = format!(
        "{text}\n---\napiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata: {{name: other, namespace: team}}\nspec: {{model: m, alias: production, version: \"2\"}}\n"
    );
    assert_eq!(
        namespace_in(&file_catalog("a.yaml", &twice), "team", &d, "api"),
        None
    );
}
