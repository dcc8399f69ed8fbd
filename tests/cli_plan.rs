//! `slipway plan` on real git repositories built with git2: a `main` history and a PR branch.

mod support;

use git2::Oid;
use serde_json::Value;
use support::{GitRepo, Run, folder, root, slipway};

/// A repository whose `main` holds the example registry under `registry/`.
struct Pr {
    repo: GitRepo,
    main: Oid,
}

impl Pr {
    fn new() -> Self {
        let mut repo = GitRepo::new();
        let files = folder("examples/football-frames");
        let main = repo.commit_under(
            "main",
            None,
            "registry",
            &files,
            "Register versions 7 and 8",
        );
        Pr { repo, main }
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(root().join("examples/football-frames").join(name)).unwrap()
    }

    /// Commits a change to `registry/NAME` on branch `pr`.
    fn change(&mut self, parent: Oid, name: &str, content: &str) -> Oid {
        let path = format!("registry/{name}");
        self.repo
            .commit("pr", Some(parent), &[(&path, Some(content))], "change")
    }

    fn promote(&mut self) -> Oid {
        let aliases = self
            .file("aliases.yaml")
            .replacen("version: \"7\"", "version: \"8\"", 1);
        self.change(self.main, "aliases.yaml", &aliases)
    }

    fn reviews(&self, reviews: &[(&str, &str, Oid)]) -> std::path::PathBuf {
        let list: Vec<Value> = reviews
            .iter()
            .enumerate()
            .map(|(i, (user, state, commit))| {
                serde_json::json!({
                    "id": i, "user": {"login": user, "type": "User"}, "state": state,
                    "commit_id": commit.to_string(), "submitted_at": (chrono::Utc::now() - chrono::Duration::hours(1) + chrono::Duration::minutes(i as i64)).to_rfc3339(),
                    "body": "", "html_url": "https://github.com/x/y/pull/1#review"
                })
            })
            .collect();
        let path = self.repo.path().join("reviews.json");
        std::fs::write(&path, serde_json::to_string(&list).unwrap()).unwrap();
        path
    }

    /// `plan --format FORMAT` as dana, with these results and reviews.
    fn plan_with(&self, results: &std::path::Path, reviews: &std::path::Path, format: &str) -> Run {
        slipway(
            &[
                "plan",
                "--base",
                "main",
                "--head",
                "pr",
                "--path",
                "registry",
                "--author",
                "dana",
                "--format",
                format,
                "--results",
                results.to_str().unwrap(),
                "--reviews",
                reviews.to_str().unwrap(),
            ],
            self.repo.path(),
        )
    }

    fn plan(&self, extra: &[&str]) -> Run {
        let results = root().join("examples/promotion-pr/results");
        let mut args = vec![
            "plan", "--base", "main", "--head", "pr", "--path", "registry", "--author", "dana",
        ];
        if !extra.contains(&"--format") {
            args.extend(["--format", "json"]);
        }
        let results = results.to_string_lossy().into_owned();
        if !extra.contains(&"--no-results") {
            args.extend(["--results", results.as_str()]);
        }
        args.extend(extra.iter().filter(|a| **a != "--no-results"));
        slipway(&args, self.repo.path())
    }
}

fn alias_change(out: &Value) -> &Value {
    out["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "ModelAlias")
        .expect("an alias change")
}

#[test]
fn a_promotion_without_a_lead_approval_exits_3_and_says_who_can_approve() {
    let mut pr = Pr::new();
    let head = pr.promote();
    let reviews = pr.reviews(&[("erin", "APPROVED", head), ("dana", "APPROVED", head)]);
    let run = pr.plan(&["--reviews", reviews.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    let out = run.json();
    assert_eq!(out["head"], head.to_string());
    assert_eq!(out["base"], pr.main.to_string());
    let c = alias_change(&out);
    assert_eq!(
        (c["action"].as_str(), c["from"].as_str(), c["to"].as_str()),
        (Some("update"), Some("7"), Some("8"))
    );
    assert_eq!(c["alias"], "production");
    assert_eq!(c["decision"]["allowed"], false);
    let approval = &c["decision"]["approvals"][0];
    assert_eq!(approval["have"], 0);
    assert_eq!(approval["eligible"], serde_json::json!(["alice", "bob"]));
    let ignored = approval["ignored"].as_array().unwrap();
    assert!(ignored.contains(
        &serde_json::json!({"user": "dana", "reason": "author of the change cannot approve it"})
    ));
    assert!(ignored.contains(
        &serde_json::json!({"user": "erin", "reason": "not eligible: not in group:ml-leads"})
    ));
    assert!(
        c["decision"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["passed"] == true)
    );
    assert_eq!(
        out["summary"],
        serde_json::json!({"create": 0, "update": 1, "delete": 0, "denied": 1})
    );
}

#[test]
fn a_lead_approval_on_the_head_commit_allows_the_promotion() {
    let mut pr = Pr::new();
    let head = pr.promote();
    let reviews = pr.reviews(&[("alice", "APPROVED", head)]);
    let run = pr.plan(&["--reviews", reviews.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    let c = &run.json()["changes"][0];
    assert_eq!(c["decision"]["allowed"], true);
    let rules = c["decision"]["rules"].as_array().unwrap();
    let regression = rules
        .iter()
        .find(|r| r["name"] == "no-primary-metric-regression")
        .unwrap();
    assert_eq!(
        regression["values"]["candidate.evaluations[\"pitch-frames\"].metrics[\"macro_f1\"]"],
        0.874
    );
}

#[test]
fn an_approval_of_an_older_push_is_stale() {
    let mut pr = Pr::new();
    let first = pr.promote();
    let dep = pr
        .file("deployments.yaml")
        .replacen("weight: 10", "weight: 5", 1);
    let head = pr.change(first, "deployments.yaml", &dep);
    let reviews = pr.reviews(&[("alice", "APPROVED", first)]);
    let run = pr.plan(&["--reviews", reviews.to_str().unwrap()]);
    assert_eq!(run.code, 3);
    let reason = alias_change(&run.json())["decision"]["approvals"][0]["ignored"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.starts_with("stale: approved commit"), "{reason}");
    assert!(reason.contains(&head.to_string()[..7]));
}

#[test]
fn a_missing_evaluation_result_denies_naming_the_evaluation() {
    let mut pr = Pr::new();
    let head = pr.promote();
    let reviews = pr.reviews(&[("alice", "APPROVED", head)]);
    let run = pr.plan(&["--no-results", "--reviews", reviews.to_str().unwrap()]);
    assert_eq!(run.code, 3);
    let rules = alias_change(&run.json())["decision"]["rules"]
        .as_array()
        .unwrap()
        .clone();
    let first = &rules[0];
    assert_eq!(first["passed"], false);
    assert!(
        first["message"].as_str().unwrap().contains(
            "evaluation `pitch-frames` of pitch-frame-classifier version 8 has no result"
        ),
        "{first}"
    );
}

#[test]
fn a_pull_request_cannot_weaken_the_policy_it_is_judged_by() {
    let mut pr = Pr::new();
    let promoted = pr.promote();
    let weaker = pr
        .file("policies.yaml")
        .replace("required: 1", "required: 0")
        .replace("excludeAuthor: true", "excludeAuthor: false");
    let head = pr.change(promoted, "policies.yaml", &weaker);
    let reviews = pr.reviews(&[("dana", "APPROVED", head)]);
    let run = pr.plan(&["--reviews", reviews.to_str().unwrap()]);
    // The head's policy is invalid (required: 0) and the base's still applies: the author's own approval does not count.
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("spec.approvals[0].required: must be at least 1"),
        "{}",
        run.stderr
    );
    let c = alias_change(&run.json()).clone();
    assert_eq!(c["decision"]["allowed"], false);

    let weaker = pr
        .file("policies.yaml")
        .replace("excludeAuthor: true", "excludeAuthor: false");
    let head = pr.change(promoted, "policies.yaml", &weaker);
    let reviews = pr.reviews(&[("dana", "APPROVED", head)]);
    let run = pr.plan(&["--reviews", reviews.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{}", run.stdout);
}

#[test]
fn a_branch_without_changes_exits_0() {
    let mut pr = Pr::new();
    let main = pr.main;
    pr.repo.commit(
        "pr",
        Some(main),
        &[("README.md", Some("docs only"))],
        "docs",
    );
    let run = pr.plan(&[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json()["changes"], serde_json::json!([]));
}

#[test]
fn changing_a_registered_artifact_is_an_error() {
    let mut pr = Pr::new();
    let versions = pr
        .file("versions.yaml")
        .replacen("/8/model.onnx", "/8/model-v2.onnx", 1);
    pr.change(pr.main, "versions.yaml", &versions);
    let run = pr.plan(&["--format", "text"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("error: registry/versions.yaml:")
            && run.stdout.contains("spec.artifact.uri: ModelVersion fields model, version, artifact, source and signature are immutable"),
        "{}",
        run.stdout
    );
}

#[test]
fn an_invalid_head_names_the_file_and_line() {
    let mut pr = Pr::new();
    let aliases = pr
        .file("aliases.yaml")
        .replacen("version: \"7\"", "version: \"9\"", 1);
    pr.change(pr.main, "aliases.yaml", &aliases);
    let run = pr.plan(&["--format", "markdown"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("registry/aliases.yaml:8:12: ModelAlias default/pitch-frame-classifier-production: spec.version: model `pitch-frame-classifier` has no version `9`"), "{}", run.stderr);
    assert!(run.stdout.starts_with("<!-- slipway:plan -->"));
    assert!(run.stdout.contains("The plan has errors"));
}

#[test]
fn the_markdown_comment_explains_the_decision() {
    let mut pr = Pr::new();
    let head = pr.promote();
    let reviews = pr.reviews(&[("bob", "CHANGES_REQUESTED", head)]);
    let run = pr.plan(&[
        "--format",
        "markdown",
        "--reviews",
        reviews.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 3);
    let md = &run.stdout;
    assert!(
        md.starts_with("<!-- slipway:plan -->\n## Slipway plan: `main`"),
        "{md}"
    );
    assert!(md.contains("| Rule | Result | Why | Values read |"));
    assert!(
        md.contains("- Not counted for `ml-lead`: **bob** — latest review is CHANGES_REQUESTED"),
        "{md}"
    );
    assert!(md.contains("Rolls out **default/pitch-frames-api**"));
}

#[test]
fn usage_errors_exit_1_not_2() {
    let run = slipway(&["plan"], &root());
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--base"), "{}", run.stderr);
}

#[test]
fn unknown_revisions_and_bad_reviews_are_clear_errors() {
    let pr = Pr::new();
    let run = slipway(
        &["plan", "--base", "mian", "--head", "main"],
        pr.repo.path(),
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("revision `mian` not found"),
        "{}",
        run.stderr
    );
    // libgit2's words once, not again as a cause.
    assert_eq!(
        run.stderr.matches("revspec 'mian' not found").count(),
        1,
        "{}",
        run.stderr
    );
    let bad = pr.repo.path().join("bad.json");
    std::fs::write(&bad, r#"[{"user": "alice", "state": "APPROVED"}]"#).unwrap();
    let run = slipway(
        &[
            "plan",
            "--base",
            "main",
            "--head",
            "main",
            "--reviews",
            bad.to_str().unwrap(),
        ],
        pr.repo.path(),
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("--reviews at `[0].user`"),
        "{}",
        run.stderr
    );
    let outside = tempfile::tempdir().unwrap();
    let run = slipway(&["plan", "--base", "main"], outside.path());
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("is not inside a git repository"),
        "{}",
        run.stderr
    );
}

/// Results a pull request writes into the registry are its author's word: they never count.
/// Results from `--results` count only when they run the suite as the model declares it.
#[test]
fn results_count_only_from_results_and_only_when_they_run_the_models_suite() {
    let results =
        std::fs::read_to_string(root().join("examples/promotion-pr/results/pitch-frames-8.yaml"))
            .unwrap();
    let mut pr = Pr::new();
    let head = pr.promote();
    // The PR carries version 8's "results" itself (as a registry file) and asks for no others.
    let head = pr.change(head, "results.yaml", &results);
    let reviews = pr.reviews(&[("alice", "APPROVED", head)]);
    let run = pr.plan(&["--no-results", "--reviews", reviews.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    let c = alias_change(&run.json()).clone();
    let rule = &c["decision"]["rules"][0];
    assert_eq!(rule["name"], "candidate-evaluations-passed");
    assert!(
        rule["message"].as_str().unwrap().contains(
            "evaluation `pitch-frames` of pitch-frame-classifier version 8 has no result"
        ),
        "{rule}"
    );
    // The same results from --results count (the lead's approval is on the head).
    let run = pr.plan(&["--reviews", reviews.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);

    // Results of a run with the author's own, looser gate do not count, and such an
    // Evaluation in the registry is refused.
    let dir = tempfile::tempdir().unwrap();
    let loose = results.replace("value: 0.80}", "value: 0.0}");
    assert_ne!(loose, results);
    std::fs::write(dir.path().join("loose.yaml"), &loose).unwrap();
    let mut pr = Pr::new();
    pr.promote();
    let reviews = pr.reviews(&[]);
    let run = slipway(
        &[
            "plan",
            "--base",
            "main",
            "--head",
            "pr",
            "--path",
            "registry",
            "--author",
            "dana",
            "--format",
            "json",
            "--results",
            dir.path().to_str().unwrap(),
            "--reviews",
            reviews.to_str().unwrap(),
        ],
        pr.repo.path(),
    );
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert!(
        alias_change(&run.json())["decision"]["rules"][0]["message"]
            .as_str()
            .unwrap()
            .contains("has no result"),
        "{}",
        run.stdout
    );
    let registry = tempfile::tempdir().unwrap();
    for (name, content) in folder("examples/football-frames") {
        std::fs::write(registry.path().join(name), content).unwrap();
    }
    std::fs::write(registry.path().join("loose.yaml"), &loose).unwrap();
    let run = slipway(&["validate", "."], registry.path());
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("its gates differ from suite `pitch-frames` of model pitch-frame-classifier"),
        "{}{}",
        run.stdout,
        run.stderr
    );
}

/// A results folder with version 7's own evaluation: compared against 6, its predecessor.
fn results_of_seven(pr: &Pr) -> std::path::PathBuf {
    let dir = pr.repo.path().join("results-7");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("pitch-frames-7.yaml"),
        support::evaluation_of_seven(),
    )
    .unwrap();
    dir
}

#[test]
fn moving_production_back_to_a_version_main_served_is_a_rollback_still_approved_by_a_lead() {
    let mut pr = Pr::new();
    let seven = pr.file("aliases.yaml");
    let eight = seven.replacen("version: \"7\"", "version: \"8\"", 1);
    // Main promoted 8; the incident's pull request moves production back to 7.
    let main = pr.repo.commit(
        "main",
        Some(pr.main),
        &[("registry/aliases.yaml", Some(&eight))],
        "Promote 8",
    );
    let back = pr.change(main, "aliases.yaml", &seven);
    let results = results_of_seven(&pr);
    let plan = |reviews: &[(&str, &str, Oid)], format: &str| {
        pr.plan_with(&results, &pr.reviews(reviews), format)
    };
    let run = plan(&[("alice", "APPROVED", back)], "json");
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    let out = run.json();
    let c = alias_change(&out);
    assert_eq!(
        (c["from"].as_str(), c["to"].as_str()),
        (Some("8"), Some("7"))
    );
    assert_eq!(c["rollback"], true);
    assert_eq!(c["decision"]["allowed"], true);
    let text = plan(&[("alice", "APPROVED", back)], "text");
    assert!(
        text.stdout
            .contains("production: 8 → 7 (rollback: production served 7 before)"),
        "{}",
        text.stdout
    );
    // Without a lead's approval it still waits for one.
    let run = plan(&[], "json");
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        alias_change(&run.json())["decision"]["approvals"][0]["have"],
        0
    );
}

#[test]
fn moving_production_to_a_version_main_never_served_is_held_to_its_comparison() {
    // Main has served only 8: a move to 7 compared against 6 is no rollback.
    let mut repo = GitRepo::new();
    let files: Vec<(String, String)> = folder("examples/football-frames")
        .into_iter()
        .map(|(p, c)| {
            let c = if p == "aliases.yaml" {
                c.replacen("version: \"7\"", "version: \"8\"", 1)
            } else {
                c
            };
            (p, c)
        })
        .collect();
    let main = repo.commit_under("main", None, "registry", &files, "Register, serve 8");
    let mut pr = Pr { repo, main };
    let seven = pr.file("aliases.yaml");
    let head = pr.change(main, "aliases.yaml", &seven);
    let results = results_of_seven(&pr);
    let reviews = pr.reviews(&[("alice", "APPROVED", head)]);
    let run = pr.plan_with(&results, &reviews, "json");
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    let out = run.json();
    let c = alias_change(&out);
    assert!(c.get("rollback").is_none());
    let denied: Vec<&str> = c["decision"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["passed"] == false)
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(denied, ["baseline-is-current-production"]);
}

#[test]
fn a_version_label_registered_again_with_another_artifact_is_not_what_served() {
    let mut pr = Pr::new();
    let seven = pr.file("aliases.yaml");
    let eight = seven.replacen("version: \"7\"", "version: \"8\"", 1);
    let main = pr.repo.commit(
        "main",
        Some(pr.main),
        &[("registry/aliases.yaml", Some(&eight))],
        "Promote 8",
    );
    // Pushed straight to main: version 7 registered again, another artifact under its label.
    let versions = pr.file("versions.yaml").replacen(
        "sha256:0f3e9b7a2c4d6e8f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d1e3f5a7b9c0d2e4f",
        "sha256:eeee9b7a2c4d6e8f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d1e3f5a7b9c0d2e4f",
        1,
    );
    let main = pr.repo.commit(
        "main",
        Some(main),
        &[("registry/versions.yaml", Some(&versions))],
        "Re-register 7",
    );
    let back = pr.change(main, "aliases.yaml", &seven);
    let results = results_of_seven(&pr);
    let reviews = pr.reviews(&[("alice", "APPROVED", back)]);
    let run = pr.plan_with(&results, &reviews, "json");
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    let out = run.json();
    let c = alias_change(&out);
    assert!(c.get("rollback").is_none(), "{c}");
    assert!(
        c["decision"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "baseline-is-current-production" && r["passed"] == false),
        "{c}"
    );
}

#[test]
fn plan_warns_without_an_author_reads_gh_reviews_and_refuses_a_state_folder_as_results() {
    let mut pr = Pr::new();
    let head = pr.promote();
    let results = root().join("examples/promotion-pr/results");
    let results = results.to_str().unwrap();
    // `gh pr view N --json reviews`, as gh prints it.
    let gh = serde_json::json!({"reviews": [
        {"id": "PRR_1", "author": {"login": "alice"}, "authorAssociation": "MEMBER", "body": "",
         "submittedAt": (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339(),
         "includesCreatedEdit": false, "reactionGroups": [], "state": "APPROVED",
         "commit": {"oid": head.to_string()}},
        {"id": "PRR_2", "author": {"login": "bob"}, "authorAssociation": "MEMBER", "body": "",
         "submittedAt": (chrono::Utc::now() - chrono::Duration::minutes(4)).to_rfc3339(),
         "includesCreatedEdit": false, "reactionGroups": [], "state": "APPROVED",
         "commit": {"oid": ""}},
    ]});
    let reviews = pr.repo.path().join("gh-reviews.json");
    std::fs::write(&reviews, gh.to_string()).unwrap();
    let plan = |extra: &[&str]| {
        let mut args = vec![
            "plan",
            "--base",
            "main",
            "--head",
            "pr",
            "--path",
            "registry",
            "--results",
            results,
            "--reviews",
            reviews.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        slipway(&args, pr.repo.path())
    };
    let run = plan(&["--format", "json", "--author", "dana"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    let out = run.json();
    let approval = &alias_change(&out)["decision"]["approvals"][0];
    assert_eq!(approval["have"], 1, "{approval}");
    assert!(alias_change(&out).get("warnings").is_none());
    // Without --author: allowed as before, but said that excludeAuthor excluded no one.
    let run = plan(&["--format", "json"]);
    let out = run.json();
    let warnings = alias_change(&out)["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().starts_with(
                "production/ml-lead: no --author given, so `excludeAuthor` cannot keep"
            )),
        "{warnings:?}"
    );
    let text = plan(&[]);
    assert!(text.stdout.contains("no --author given"), "{}", text.stdout);
    // A state folder of `slipway run` is not a results folder: said, not silently empty.
    let state = pr.repo.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("state.db"), b"").unwrap();
    let run = slipway(
        &[
            "plan",
            "--base",
            "main",
            "--head",
            "pr",
            "--path",
            "registry",
            "--results",
            state.to_str().unwrap(),
        ],
        pr.repo.path(),
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("is the state folder of `slipway run`, not a folder of results"),
        "{}",
        run.stderr
    );
}

/// The plans `examples/promote.sh` prints, as the README and examples/README.md show them.
#[test]
fn the_readmes_show_what_promote_sh_prints() {
    let run = |format: &str| {
        let out = std::process::Command::new("bash")
            .arg(root().join("examples/promote.sh"))
            .arg(format)
            .env("SLIPWAY", env!("CARGO_BIN_EXE_slipway"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (text, markdown) = (run("text"), run("markdown"));
    let mut blocks = 0;
    for readme in ["README.md", "examples/README.md"] {
        let s = std::fs::read_to_string(root().join(readme)).unwrap();
        for (fence, printed) in [
            ("```console\n### Round", &text),
            ("````markdown\n", &markdown),
        ] {
            for block in s.split(fence).skip(1) {
                let end = if fence.starts_with("````") {
                    "````"
                } else {
                    "```"
                };
                let body = &block[..block.find(end).unwrap()];
                let body = if fence.ends_with("Round") {
                    format!("### Round{body}")
                } else {
                    body.to_string()
                };
                assert!(
                    printed.contains(&body),
                    "{readme} shows a plan promote.sh does not print:\n{body}\n--- it prints:\n{printed}"
                );
                blocks += 1;
            }
        }
    }
    assert!(blocks >= 4, "{blocks}");
}

/// The example's recorded result carries the content address Slipway computes for it (else
/// `slipway plan --results` would not count it).
#[test]
fn the_example_result_is_recorded_under_its_content_address() {
    let text =
        std::fs::read_to_string(root().join("examples/promotion-pr/results/pitch-frames-8.yaml"))
            .unwrap();
    let doc = slipway_core::catalog::yaml::read(&text).unwrap();
    assert_eq!(
        doc["status"]["cacheKey"],
        support::example_key("8").as_str()
    );
}

/// A soak read from main's history: staging has named 8 since main's first commit (its file's
/// history dates the move), and the model asks for a day there; at 3 hours the promotion is
/// denied with what is left and when it ends, a day later that rule passes. Main's history where
/// staging moved back from 8 (a rollback) never lets 8 through.
#[test]
fn a_soak_is_read_from_the_staging_alias_history_on_main() {
    let mut pr = Pr::new();
    let staged_at = chrono::DateTime::from_timestamp(1_764_000_060, 0).unwrap();
    let model = pr.file("model.yaml").replacen(
        "  evaluations:\n",
        "  soak: {alias: staging, duration: 24h}\n  evaluations:\n",
        1,
    );
    let main = pr.repo.commit(
        "main",
        Some(pr.main),
        &[("registry/model.yaml", Some(&model))],
        "Soak a day in staging",
    );
    let aliases = pr
        .file("aliases.yaml")
        .replacen("version: \"7\"", "version: \"8\"", 1);
    pr.change(main, "aliases.yaml", &aliases);
    let soak_rule = |pr: &Pr, at: chrono::DateTime<chrono::Utc>| -> Value {
        let run = pr.plan(&["--now", &at.to_rfc3339()]);
        assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
        let out = run.json();
        alias_change(&out)["decision"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "soaked-in-staging")
            .cloned()
            .unwrap()
    };
    let early = soak_rule(&pr, staged_at + chrono::Duration::hours(3));
    assert_eq!(early["passed"], false, "{early}");
    let message = early["message"].as_str().unwrap();
    assert!(
        message
            .ends_with("version 8 served in staging for 3h of 24h; earliest 2025-11-25 16:01 UTC"),
        "{message}"
    );
    let text = pr.plan(&[
        "--now",
        &(staged_at + chrono::Duration::hours(3)).to_rfc3339(),
        "--format",
        "text",
    ]);
    assert!(
        text.stdout.contains("earliest 2025-11-25 16:01 UTC"),
        "{}",
        text.stdout
    );
    let later = soak_rule(&pr, staged_at + chrono::Duration::hours(25));
    assert_eq!(later["passed"], true, "{later}");

    // Staging on 7, then 8, then back to 7 (a rollback of 8), then on 8 again: never soaked.
    let eight = pr.file("aliases.yaml");
    let seven = pr
        .file("aliases.yaml")
        .replacen("version: \"8\"", "version: \"7\"", 1);
    let mut at = main;
    for (content, why) in [(&seven, "Staging on 7"), (&eight, "Staging on 8")] {
        at = pr.repo.commit(
            "main",
            Some(at),
            &[("registry/aliases.yaml", Some(content))],
            why,
        );
    }
    let back = pr.repo.commit(
        "main",
        Some(at),
        &[("registry/aliases.yaml", Some(&seven))],
        "Staging back to 7",
    );
    let again = pr.repo.commit(
        "main",
        Some(back),
        &[("registry/aliases.yaml", Some(&eight))],
        "Staging on 8 again",
    );
    pr.change(again, "aliases.yaml", &aliases);
    let rolled = soak_rule(&pr, staged_at + chrono::Duration::days(5));
    assert_eq!(rolled["passed"], false, "{rolled}");
    assert!(
        rolled["message"]
            .as_str()
            .unwrap()
            .contains("was rolled back there"),
        "{rolled}"
    );
}

/// Windows on main's production policy: a promotion asked for during the year-end freeze is
/// refused with the next opening (Monday 09:00 Berlin, after the freeze); an incident
/// commander's review overrides it; outside the freeze, in business hours, the window passes.
#[test]
fn a_promotion_during_a_freeze_is_refused_with_the_next_opening_unless_overridden() {
    let mut pr = Pr::new();
    let windows = r#"  windows:
    - name: business-hours
      effect: allow
      schedule: "0 9 * * 1-5"
      duration: 8h
      timeZone: Europe/Berlin
    - name: year-end-freeze
      effect: deny
      schedule: "0 0 20 12 *"
      duration: 14d
      message: Year-end traffic.
      override: {name: incident-commander, from: ["user:carol"]}
"#;
    let policies =
        pr.file("policies.yaml")
            .replacen("  approvals:\n", &format!("{windows}  approvals:\n"), 1);
    let main = pr.repo.commit(
        "main",
        Some(pr.main),
        &[("registry/policies.yaml", Some(&policies))],
        "Windows",
    );
    let aliases = pr
        .file("aliases.yaml")
        .replacen("version: \"7\"", "version: \"8\"", 1);
    let head = pr.change(main, "aliases.yaml", &aliases);
    let results = root().join("examples/promotion-pr/results");
    // Reviews at fixed times: alice's approval the day before the freeze, carol's override in it.
    let window_rule = |reviews: &[(&str, &str, Oid)], now: &str| -> (i32, Value) {
        let list: Vec<Value> = reviews
            .iter()
            .map(|(user, state, commit)| {
                let at = if *user == "carol" {
                    "2026-12-21T09:00:00Z"
                } else {
                    "2026-12-19T09:00:00Z"
                };
                serde_json::json!({"user": {"login": user}, "state": state,
                                   "commit_id": commit.to_string(), "submitted_at": at})
            })
            .collect();
        let path = pr.repo.path().join("window-reviews.json");
        std::fs::write(&path, serde_json::to_string(&list).unwrap()).unwrap();
        let run = slipway(
            &[
                "plan",
                "--base",
                "main",
                "--head",
                "pr",
                "--path",
                "registry",
                "--author",
                "dana",
                "--format",
                "json",
                "--results",
                results.to_str().unwrap(),
                "--reviews",
                path.to_str().unwrap(),
                "--now",
                now,
            ],
            pr.repo.path(),
        );
        let out = run.json();
        let rule = alias_change(&out)["decision"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "window")
            .cloned()
            .unwrap_or_else(|| panic!("{}{}", run.stdout, run.stderr));
        (run.code, rule)
    };
    // Tuesday 2026-12-22, 11:00 in Berlin: business hours, inside the freeze.
    let (code, rule) = window_rule(&[("alice", "APPROVED", head)], "2026-12-22T10:00:00Z");
    assert_eq!(code, 3, "{rule}");
    assert_eq!(rule["passed"], false, "{rule}");
    let message = rule["message"].as_str().unwrap();
    assert!(
        message.starts_with("inside deny window `year-end-freeze` (0 0 20 12 * for 14d, UTC): Year-end traffic; next opening 2027-01-04 08:00 UTC; or an override approval `incident-commander` from user:carol (0/1)"),
        "{message}"
    );
    // carol, the incident commander, overrides it.
    let (code, rule) = window_rule(
        &[("alice", "APPROVED", head), ("carol", "APPROVED", head)],
        "2026-12-22T10:00:00Z",
    );
    assert_eq!((code, &rule["passed"]), (2, &Value::Bool(true)), "{rule}");
    // After the freeze, on a Monday at 10:00 in Berlin: open.
    let (code, rule) = window_rule(&[("alice", "APPROVED", head)], "2027-01-04T09:00:00Z");
    assert_eq!((code, &rule["passed"]), (2, &Value::Bool(true)), "{rule}");
    // Saturday: outside business hours, opening on Monday.
    let (code, rule) = window_rule(&[("alice", "APPROVED", head)], "2027-01-09T09:00:00Z");
    assert_eq!(code, 3);
    assert!(
        rule["message"]
            .as_str()
            .unwrap()
            .contains("outside allow window `business-hours` (0 9 * * 1-5 for 8h, Europe/Berlin); next opening 2027-01-11 08:00 UTC"),
        "{rule}"
    );
}

/// Version 8 of the example adds an optional input to 7's signature: the plan lists it,
/// compatible (and 7 takes what 8 takes, so a move back is compatible too). A version 9 that retypes an input and drops an output is denied by
/// `production/compatible-signature`, naming both fields, and a pull request cannot rewrite 7's
/// signature to make it pass.
#[test]
fn a_promotion_shows_the_signature_difference_and_a_breaking_one_is_denied() {
    let mut pr = Pr::new();
    pr.promote();
    let out = pr.plan(&[]).json();
    let change = alias_change(&out);
    assert_eq!(
        change["signature"],
        serde_json::json!([
            {"side": "input", "field": "floodlit", "change": "added", "optional": true, "breaks": false},
        ])
    );
    let rule = |c: &Value| -> Value {
        c["decision"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "compatible-signature")
            .cloned()
            .expect("the rule")
    };
    assert_eq!(rule(change)["passed"], true);

    // Version 9: `frame` becomes float32, `probabilities` goes.
    let versions = pr.file("versions.yaml");
    let nine = support::registry::example_nine(
        &versions,
        &[
            ("{name: frame, type: uint8", "{name: frame, type: float32"),
            (
                "      - {name: probabilities, type: float32, shape: [-1, 5]}\n",
                "",
            ),
        ],
    );
    let main = pr.main;
    let with_nine = pr.change(main, "versions.yaml", &format!("{versions}---\n{nine}"));
    let aliases = pr
        .file("aliases.yaml")
        .replacen("version: \"7\"", "version: \"9\"", 1);
    pr.change(with_nine, "aliases.yaml", &aliases);
    let run = pr.plan(&[]);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    let out = run.json();
    let r = rule(alias_change(&out));
    assert_eq!(r["passed"], false);
    let message = r["message"].as_str().unwrap();
    assert!(
        message.ends_with("(input `frame` retyped uint8 → float32 (breaks callers); output `probabilities` removed (breaks callers))"),
        "{message}"
    );
    let text = pr.plan(&["--format", "text"]).stdout;
    assert!(
        text.contains("      signature: input `frame` retyped uint8 → float32 (breaks callers)\n"),
        "{text}"
    );
    let markdown = pr.plan(&["--format", "markdown"]).stdout;
    assert!(
        markdown.contains("- Signature: :x: output `probabilities` removed (breaks callers)"),
        "{markdown}"
    );

    // Rewriting production's signature in the same pull request is an error, not a way through.
    let loosened = versions.replacen(
        "      - {name: probabilities, type: float32, shape: [-1, 5]}\n",
        "",
        1,
    );
    pr.change(main, "versions.yaml", &loosened);
    let run = pr.plan(&[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("spec.signature.outputs")
            && run
                .stderr
                .contains("artifact, source and signature are immutable"),
        "{}{}",
        run.stdout,
        run.stderr
    );
}
