//! `slipway validate`, `init`, `crds`, `schema`, `completions`, `man` and `--version`, run as the
//! real binary.

mod support;

use support::{GitRepo, root, slipway};

#[test]
fn the_example_registry_is_valid() {
    let run = slipway(&["validate", "examples/football-frames"], &root());
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("✓ examples/football-frames: 19 objects in 6 files are valid"),
        "{}",
        run.stdout
    );
}

#[test]
fn every_malformed_file_is_rejected_with_its_position_and_never_panics() {
    let corpus = root().join("tests/corpus");
    let mut checked = 0;
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let first =
            String::from_utf8_lossy(bytes.split(|b| *b == b'\n').next().unwrap()).into_owned();
        let expect = first
            .strip_prefix("# expect: ")
            .unwrap_or_else(|| panic!("{name}: no expectation line"));
        let run = slipway(&["validate", "--format", "json", &name], &corpus);
        let out = run.json();
        checked += 1;
        if expect == "none" {
            assert_eq!(run.code, 0, "{name}: {}", run.stdout);
            continue;
        }
        assert_eq!(run.code, 1, "{name}: {}", run.stdout);
        let (category, at) = expect.split_once(' ').unwrap();
        let (line, col) = at.split_once(':').unwrap();
        let (line_n, col_n): (u64, u64) = (line.parse().unwrap(), col.parse().unwrap());
        let errors = out["errors"].as_array().unwrap();
        assert!(
            errors.iter().any(|e| e["category"] == category
                && e["line"] == line_n
                && e["column"] == col_n
                && e["file"] == name.as_str()),
            "{name}: expected {category} at {line}:{col}, got {errors:#?}"
        );
        // The text form names file:line:column too.
        let text = slipway(&["validate", &name], &corpus);
        assert!(
            text.stdout.contains(&format!("{name}:{line}:{col}: ")),
            "{name}: {}",
            text.stdout
        );
    }
    assert!(checked >= 15, "corpus too small: {checked}");
}

#[test]
fn all_files_of_a_folder_are_reported_in_one_run() {
    let run = slipway(&["validate", "--format", "json", "tests/corpus"], &root());
    assert_eq!(run.code, 1);
    let files: std::collections::BTreeSet<String> = run.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"].as_str().unwrap().to_string())
        .collect();
    assert!(files.len() >= 14, "{files:?}");
}

/// Issue 20: a wrong path in CI validated "✓ 0 objects" and passed.
#[test]
fn a_folder_without_slipway_objects_fails_validation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.md"), "# not a registry\n").unwrap();
    std::fs::write(dir.path().join("notes.yaml"), "# only a comment\n").unwrap();
    let run = slipway(&["validate", "."], dir.path());
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "✗ no Slipway objects in . (1 YAML file read): point validate at the registry folder"
        ),
        "{}",
        run.stdout
    );
    let json = slipway(&["validate", "--format", "json", "."], dir.path());
    assert_eq!(json.code, 1);
    assert_eq!(json.json()["valid"], false);
    assert!(
        json.json()["error"]
            .as_str()
            .unwrap()
            .contains("no Slipway objects")
    );
}

#[test]
fn validate_reads_a_git_revision_without_a_checkout() {
    let mut repo = GitRepo::new();
    let good = "apiVersion: slipway.dev/v1alpha1\nkind: Group\nmetadata: {name: g}\nspec: {members: [a]}\n";
    let bad = "apiVersion: slipway.dev/v1alpha1\nkind: Group\nmetadata: {name: g}\nspec: {members: [a], owner: b}\n";
    let first = repo.commit(
        "main",
        None,
        &[("registry/groups.yaml", Some(good))],
        "good",
    );
    repo.commit(
        "broken",
        Some(first),
        &[("registry/groups.yaml", Some(bad))],
        "bad",
    );
    let ok = slipway(&["validate", "--rev", "main", "registry"], repo.path());
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    let broken = slipway(&["validate", "--rev", "broken", "registry"], repo.path());
    assert_eq!(broken.code, 1);
    assert!(
        broken
            .stdout
            .contains("registry/groups.yaml:4:22: Group default/g: spec.owner: unknown field"),
        "{}",
        broken.stdout
    );
}

#[test]
fn the_committed_crds_are_up_to_date() {
    let run = slipway(&["crds"], &root());
    assert_eq!(run.code, 0);
    let committed =
        std::fs::read_to_string(root().join("charts/slipway/crds/slipway.dev.yaml")).unwrap();
    assert!(
        run.stdout == committed,
        "charts/slipway/crds/slipway.dev.yaml is stale; regenerate it with `cargo run -p slipway -- crds > charts/slipway/crds/slipway.dev.yaml`"
    );
    assert_eq!(
        committed.matches("kind: CustomResourceDefinition").count(),
        8
    );
}

#[test]
fn schemas_reject_unknown_fields_for_editors() {
    for kind in ["ModelAlias", "modelaliases", "malias"] {
        let run = slipway(&["schema", kind], &root());
        assert_eq!(run.code, 0);
        let s = run.json();
        assert_eq!(s["properties"]["kind"]["const"], "ModelAlias");
        assert_eq!(s["properties"]["spec"]["additionalProperties"], false);
        assert_eq!(s["required"][0], "apiVersion");
    }
    let run = slipway(&["schema", "Modle"], &root());
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("unknown kind `Modle`"));
}

/// Completions for the usual shells, a manual page, and a version that names the commit.
#[test]
fn the_cli_installs_like_one() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "_slipway()"),
        ("zsh", "#compdef slipway"),
        ("fish", "complete -c slipway"),
    ] {
        let run = slipway(&["completions", shell], dir.path());
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(run.stdout.contains(marker), "{shell}: {}", run.stdout);
        for sub in ["validate", "plan", "controller", "completions"] {
            assert!(run.stdout.contains(sub), "{shell} lacks {sub}");
        }
    }
    // bash reads the script it is given.
    let script = dir.path().join("slipway.bash");
    std::fs::write(
        &script,
        slipway(&["completions", "bash"], dir.path()).stdout,
    )
    .unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let unknown = slipway(&["completions", "tcsh"], dir.path());
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("possible values: bash"),
        "{}",
        unknown.stderr
    );

    let man = slipway(&["man"], dir.path());
    assert_eq!(man.code, 0, "{}", man.stderr);
    assert!(man.stdout.contains(".TH slipway 1"), "{}", man.stdout);
    assert!(man.stdout.contains("validate") && man.stdout.contains("controller"));

    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(root())
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap();
    let version = slipway(&["--version"], dir.path());
    assert_eq!(
        version.stdout.trim(),
        format!("slipway {} ({})", env!("CARGO_PKG_VERSION"), head.trim())
    );
}

#[test]
fn init_scaffolds_a_registry_that_validates_and_plans_and_overwrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("registry-repo");
    let run = slipway(
        &[
            "init",
            "registry-repo",
            "--model",
            "fraud-scorer",
            "--leads",
            "alice,bob",
        ],
        dir.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for file in [
        "registry/model.yaml",
        "registry/versions.yaml",
        "registry/aliases.yaml",
        "registry/groups.yaml",
        "registry/policies.yaml",
        ".github/workflows/slipway-plan.yml",
    ] {
        assert!(
            run.stdout
                .contains(&format!("created registry-repo/{file}")),
            "{}",
            run.stdout
        );
    }
    // Not in a git repository: one is made, and the state folder is ignored.
    assert!(
        run.stdout
            .contains("initialized a git repository in registry-repo (branch main)"),
        "{}",
        run.stdout
    );
    let git = git2::Repository::open(&repo).unwrap();
    assert_eq!(
        git.find_reference("HEAD")
            .unwrap()
            .symbolic_target()
            .unwrap(),
        Some("refs/heads/main")
    );
    assert!(git.is_path_ignored(".slipway/state.db").unwrap());
    assert!(!git.is_path_ignored("registry/model.yaml").unwrap());
    assert!(run.stdout.contains("$SLIPWAY_RESULTS"), "{}", run.stdout);
    // Inside a repository already: none is made, and an existing .gitignore is added to.
    let inner = repo.join("second");
    std::fs::create_dir(&inner).unwrap();
    std::fs::write(inner.join(".gitignore"), "target/").unwrap();
    let again = slipway(&["init", "second"], &repo);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(!again.stdout.contains("initialized"), "{}", again.stdout);
    // …and says that GitHub runs workflows only from the repository's root.
    assert!(
        again
            .stdout
            .contains("note: second is inside the git repository at")
            && again.stdout.contains("set its `path:` to second/registry"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("updated second/.gitignore"),
        "{}",
        again.stdout
    );
    assert_eq!(
        std::fs::read_to_string(inner.join(".gitignore")).unwrap(),
        "target/\n# `slipway run`'s state (SQLite, reports, evaluation runs)\n/.slipway/\n"
    );
    std::fs::remove_dir_all(&inner).unwrap();
    let validate = slipway(&["validate", "registry-repo/registry"], dir.path());
    assert_eq!(validate.code, 0, "{}{}", validate.stdout, validate.stderr);
    assert!(
        validate.stdout.contains("14 objects in 5 files are valid"),
        "{}",
        validate.stdout
    );
    let groups = std::fs::read_to_string(repo.join("registry/groups.yaml")).unwrap();
    assert!(groups.contains(r#"members: ["alice", "bob"]"#), "{groups}");
    // The policies are the default set, and the workflow is the README's.
    assert_eq!(
        std::fs::read_to_string(repo.join("registry/policies.yaml")).unwrap(),
        std::fs::read_to_string(root().join("policies/default.yaml")).unwrap()
    );
    let workflow =
        std::fs::read_to_string(repo.join(".github/workflows/slipway-plan.yml")).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```yaml\n{workflow}```")),
        "README's workflow differs from `slipway init`'s:\n{workflow}"
    );
    assert!(
        workflow.contains("uses: slipway-dev/slipway@v1"),
        "{workflow}"
    );

    // A pull request promoting a second version is judged by the scaffold's policies.
    let mut git = GitRepo::new();
    let files: Vec<(String, String)> = ["model", "versions", "aliases", "groups", "policies"]
        .iter()
        .map(|f| {
            let name = format!("{f}.yaml");
            let content = std::fs::read_to_string(repo.join("registry").join(&name)).unwrap();
            (name, content)
        })
        .collect();
    let main = git.commit_under("main", None, "registry", &files, "slipway init");
    let versions = files[1].1.clone()
        + "---\n"
        + &files[1]
            .1
            .replace("fraud-scorer-1", "fraud-scorer-2")
            .replace("version: \"1\"", "version: \"2\"");
    let aliases = files[2].1.replace("version: \"1\"", "version: \"2\"");
    git.commit(
        "pr",
        Some(main),
        &[
            ("registry/versions.yaml", Some(&versions)),
            ("registry/aliases.yaml", Some(&aliases)),
        ],
        "promote 2",
    );
    let plan = slipway(
        &[
            "plan", "--base", "main", "--head", "pr", "--path", "registry", "--author", "alice",
        ],
        git.path(),
    );
    assert_eq!(plan.code, 3, "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains("candidate-evaluations-passed"),
        "{}",
        plan.stdout
    );

    // Again into the same folder: refused, and nothing changes.
    let before = std::fs::read_to_string(repo.join("registry/model.yaml")).unwrap();
    let again = slipway(&["init", "registry-repo", "--model", "other"], dir.path());
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already exist"), "{}", again.stderr);
    assert!(
        again.stderr.contains("nothing was written"),
        "{}",
        again.stderr
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("registry/model.yaml")).unwrap(),
        before
    );
    // A name that is not a DNS label: the errors, and no files.
    let bad = slipway(&["init", "bad", "--model", "Fraud Scorer"], dir.path());
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("registry/model.yaml:"),
        "{}",
        bad.stderr
    );
    assert!(bad.stderr.contains("nothing was written"), "{}", bad.stderr);
    assert!(!dir.path().join("bad").exists());
    // Names YAML would read as numbers or null are still names; nobody as lead is refused.
    let numeric = slipway(
        &["init", "numeric", "--model", "123", "--leads", "1234"],
        dir.path(),
    );
    assert_eq!(numeric.code, 0, "{}", numeric.stderr);
    assert!(
        numeric.stdout.contains("with one lead"),
        "{}",
        numeric.stdout
    );
    let validate = slipway(&["validate", "numeric/registry"], dir.path());
    assert_eq!(validate.code, 0, "{}{}", validate.stdout, validate.stderr);
    let nobody = slipway(&["init", "nobody", "--leads", ""], dir.path());
    assert_eq!(nobody.code, 1);
    assert!(
        nobody.stderr.contains("--leads names nobody"),
        "{}",
        nobody.stderr
    );
    assert!(!dir.path().join("nobody").exists());
}

#[test]
fn init_failing_part_way_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    // An immutable `.github` (even root cannot create in it): the registry files are written
    // first, then the workflow's folder cannot be made.
    let github = dir.path().join("repo/.github");
    std::fs::create_dir_all(&github).unwrap();
    let chattr = |flag: &str| {
        let status = std::process::Command::new("chattr")
            .arg(flag)
            .arg(&github)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "chattr {flag} (the tests run as root on ext4)"
        );
    };
    chattr("+i");
    let run = slipway(&["init", "repo"], dir.path());
    chattr("-i");
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("cannot create"), "{}", run.stderr);
    assert!(
        run.stderr.contains("nothing was left behind"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(!dir.path().join("repo/registry").exists());
    assert!(github.exists(), "what was there before stays");
}

#[test]
fn a_repository_owned_by_another_user_is_named_with_the_fix() {
    let mut repo = GitRepo::new();
    repo.commit(
        "main",
        None,
        &[("registry/groups.yaml", Some("kind: Group\n"))],
        "one",
    );
    let chown = std::process::Command::new("chown")
        .args(["-R", "65532:65532"])
        .arg(repo.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let run = slipway(&["validate", "registry", "--rev", "main"], repo.path());
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let top = repo.path().canonicalize().unwrap();
    assert!(
        run.stderr.contains(&format!(
            "is owned by another user, so git will not read it; if you trust it, run `git config --global --add safe.directory {}",
            top.display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn a_file_named_on_its_own_is_checked_against_the_folder_it_is_in() {
    // The alias refers to the model and versions in the files beside it: no false broken
    // references, and only this file's objects are counted.
    let run = slipway(
        &["validate", "examples/football-frames/aliases.yaml"],
        &root(),
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "✓ examples/football-frames/aliases.yaml: 2 objects in 1 file are valid (references looked up in examples/football-frames)"
        ),
        "{}",
        run.stdout
    );
    // A reference that is broken there is reported, saying where it was looked up; problems
    // of the other files are not this file's.
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry");
    std::fs::create_dir(&reg).unwrap();
    for f in ["model.yaml", "versions.yaml", "aliases.yaml"] {
        std::fs::copy(root().join("examples/football-frames").join(f), reg.join(f)).unwrap();
    }
    let aliases = std::fs::read_to_string(reg.join("aliases.yaml")).unwrap();
    std::fs::write(
        reg.join("aliases.yaml"),
        aliases.replacen("version: \"7\"", "version: \"70\"", 1),
    )
    .unwrap();
    // Version 70 is there but does not load (a typo): the alias's reference to it is still this
    // file's problem when the file is checked on its own.
    std::fs::write(
        reg.join("broken.yaml"),
        "apiVersion: slipway.dev/v1alpha1\nkind: ModelVersion\nmetadata: {name: pfc-70}\nspec: {model: pitch-frame-classifier, version: \"70\", artefact: {uri: x, digest: y}}\n",
    )
    .unwrap();
    let run = slipway(
        &["validate", "--format", "json", "registry/aliases.yaml"],
        dir.path(),
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
    let out = run.json();
    assert_eq!(out["referencesFrom"], "registry");
    let errors = out["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["file"], "registry/aliases.yaml");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("has no version `70`")
            && errors[0]["message"]
                .as_str()
                .unwrap()
                .ends_with("(references are looked up in registry; validate the whole registry folder to look them up there)"),
        "{errors:#?}"
    );
}

#[test]
fn change_shows_what_an_approval_of_a_manifest_signs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let deployments =
        std::fs::read_to_string(root().join("examples/football-frames/deployments.yaml")).unwrap();
    let production = deployments.split("\n---\n").next().unwrap().to_string();
    std::fs::write(d.join("before.yaml"), &production).unwrap();
    let pinned = production.replace("  alias: production\n", "  version: \"7\"\n");
    std::fs::write(d.join("pinned.yaml"), &pinned).unwrap();

    let run = slipway(&["change", "pinned.yaml", "--before", "before.yaml"], d);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // A manifest is not the object as the cluster has it: the digest the cluster asks for also
    // names the object's generation, and the output says so.
    assert!(
        run.stdout
            .contains("(the --before manifest does not name the object's uid and generation"),
        "{}",
        run.stdout
    );
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with("  ("))
        .collect();
    assert_eq!(lines[0], "ModelDeployment default/pitch-frames-api");
    let digest = lines[1].strip_prefix("  spec.change: sha256:").unwrap();
    assert_eq!(digest.len(), 64, "{}", run.stdout);
    assert_eq!(
        &lines[2..],
        [
            r#"    spec.alias: "production" → (absent)"#,
            r#"    spec.version: (absent) → "7""#
        ]
    );
    // The same in JSON; the same digest every time; another change, another digest.
    let json = slipway(
        &[
            "change",
            "pinned.yaml",
            "--before",
            "before.yaml",
            "--format",
            "json",
        ],
        d,
    );
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v[0]["change"], format!("sha256:{digest}"));
    assert_eq!(v[0]["fields"][1]["path"], "spec.version");
    assert_eq!(v[0]["fields"][1]["new"], "7");
    std::fs::write(
        d.join("pinned-8.yaml"),
        pinned.replace("version: \"7\"", "version: \"8\""),
    )
    .unwrap();
    let other = slipway(&["change", "pinned-8.yaml", "--before", "before.yaml"], d);
    assert!(!other.stdout.contains(digest), "{}", other.stdout);
    // A deletion signs that object as it is: a manifest saved from the cluster names it.
    let live = production.replacen(
        "metadata:\n",
        "metadata:\n  uid: 0b7c3e2a-1111-4222-8333-944455556666\n  generation: 3\n",
        1,
    );
    std::fs::write(d.join("live.yaml"), &live).unwrap();
    let gone = slipway(&["change", "live.yaml", "--delete"], d);
    assert_eq!(gone.code, 0, "{}", gone.stderr);
    assert!(
        gone.stdout.contains("  spec.change: sha256:")
            && gone
                .stdout
                .contains("    the object's deletion\n    spec.alias: \"production\" → (absent)\n"),
        "{}",
        gone.stdout
    );
    let later = live.replace("generation: 3", "generation: 4");
    std::fs::write(d.join("later.yaml"), later).unwrap();
    let changed = slipway(&["change", "later.yaml", "--delete"], d);
    assert_ne!(changed.stdout.lines().nth(1), gone.stdout.lines().nth(1));
    // Without the object's identity, there is nothing to sign.
    let unknown = slipway(
        &[
            "change",
            "before.yaml",
            "--delete",
            "--before",
            "before.yaml",
        ],
        d,
    );
    assert_eq!(unknown.code, 1, "{}", unknown.stdout);
    assert!(
        unknown
            .stderr
            .contains("a deletion is signed for the object as it is"),
        "{}",
        unknown.stderr
    );
    let aliases =
        std::fs::read_to_string(root().join("examples/football-frames/aliases.yaml")).unwrap();
    std::fs::write(d.join("aliases.yaml"), &aliases).unwrap();
    std::fs::write(
        d.join("moved.yaml"),
        aliases.replacen("version: \"7\"", "version: \"8\"", 1),
    )
    .unwrap();
    let moved = slipway(&["change", "moved.yaml", "--before", "aliases.yaml"], d);
    assert_eq!(moved.code, 0, "{}", moved.stderr);
    assert!(
        moved.stdout.contains("an alias move, pitch-frame-classifier/production: 7 → 8; an approval names spec.version \"8\""),
        "{}",
        moved.stdout
    );
    assert!(
        moved
            .stdout
            .contains("no move: pitch-frame-classifier/staging stays on 8"),
        "{}",
        moved.stdout
    );
    // An object the other file does not have is said to be new.
    let new = slipway(&["change", "pinned.yaml", "--before", "aliases.yaml"], d);
    assert!(
        new.stdout
            .contains("  (a new object: aliases.yaml has none of that name)\n"),
        "{}",
        new.stdout
    );
    // Other kinds of a bundle are skipped with a note; one object twice is refused.
    let bundle = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\n{pinned}");
    std::fs::write(d.join("bundle.yaml"), &bundle).unwrap();
    let run = slipway(&["change", "bundle.yaml", "--before", "before.yaml"], d);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("ConfigMap") && run.stderr.contains("skipped"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains(digest), "{}", run.stdout);
    std::fs::write(d.join("twice.yaml"), format!("{pinned}\n---\n{pinned}")).unwrap();
    let run = slipway(&["change", "twice.yaml", "--before", "before.yaml"], d);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("is in twice.yaml twice"),
        "{}",
        run.stderr
    );
    // The README's example prints what the README shows.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let command = "slipway change examples/kubernetes/promote/deployment-6-replicas.yaml --before examples/kubernetes/deployment.yaml";
    let shown = readme.split(&format!("$ {command}\n")).nth(1).unwrap();
    let shown = &shown[..shown.find("```").unwrap()];
    let args: Vec<&str> = command.split(' ').skip(1).collect();
    assert_eq!(slipway(&args, &root()).stdout, shown);
    // A manifest that does not load says where; nothing is printed.
    std::fs::write(d.join("broken.yaml"), pinned.replace("model:", "modle:")).unwrap();
    let broken = slipway(&["change", "broken.yaml", "--before", "before.yaml"], d);
    assert_eq!(broken.code, 1);
    assert!(broken.stderr.contains("broken.yaml:6"), "{}", broken.stderr);
    assert_eq!(broken.stdout, "");
}
