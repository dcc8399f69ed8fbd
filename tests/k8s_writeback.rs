//! A cluster whose objects come from git (as Argo CD or Flux apply them): the ModelAlias names
//! its repository and file; when its deployment rolls back, the controller pushes the branch that
//! moves the alias back to that repository (served over smart HTTP) and opens the pull request
//! on a local server answering GitHub's endpoint — only for a repository the operator lists.

mod support;

use std::time::Duration;

use support::GitRepo;
use support::eventually;
use support::git_http::GitHttp;
use support::http::Receiver;
use support::k8s_mode::{Controller, deployment_status, get, move_alias, serving};
use support::registry::{production, versions};

fn registry() -> String {
    let deployment = r#"---
apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {name: pitch-frames}
spec: {owners: ["group:ml-leads"]}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelDeployment
metadata: {name: pitch-frames-api}
spec:
  model: pitch-frames
  alias: production
  target:
    kubernetes: {image: "registry.example/pitch-frames-server:1.4", replicas: 2, port: 8080}
  strategy:
    type: Canary
    steps: [{weight: 50, pause: 1s}]
    progressDeadline: 5s
"#;
    [
        deployment.to_string(),
        versions("pitch-frames", &["7", "8"], "model.json"),
        production("pitch-frames", "7"),
    ]
    .concat()
}

#[test]
fn a_cluster_rollback_is_pushed_to_the_repository_the_alias_names() {
    // The repository Argo CD applies: the alias without a namespace, at 8 (the promoting commit).
    let mut repo = GitRepo::new();
    let alias = "# production, as Argo CD applies it\napiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata:\n  name: pitch-frames-production\nspec:\n  model: pitch-frames\n  alias: production\n  version: \"8\"\n";
    let promoted = repo.commit(
        "main",
        None,
        &[
            ("clusters/prod/aliases.yaml", Some(alias)),
            ("README.md", Some("registry\n")),
        ],
        "promote 8",
    );
    let server = GitHttp::start(repo.path());
    let url = format!("http://127.0.0.1:{}/cgi-bin/git/.git", server.port);
    let github = Receiver::start(0);
    github.answer_status(
        "201 Created",
        r#"{"number": 12, "html_url": "https://github.com/acme/registry/pull/12"}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "ghp_cluster_token\n").unwrap();

    let api = support::apiserver::ApiServer::start();
    api.install_crds();
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &registry());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let kubelet = support::kubelet::Kubelet::start(&api.kubeconfig, "default");
    let allowed = format!("{url}=acme/registry");
    let _controller = Controller::start_with(
        &api,
        "controller-a",
        &[
            ("SLIPWAY_WRITE_BACK_REPOSITORIES", allowed.as_str()),
            ("SLIPWAY_GITHUB_TOKEN_FILE", token.to_str().unwrap()),
            ("SLIPWAY_GITHUB_API_URL", github.url().as_str()),
        ],
    );
    serving(&api, "7");
    let annotate = api.kubectl(
        &[
            "annotate",
            "malias",
            "pitch-frames-production",
            &format!("slipway.dev/source-repository={url}"),
            "slipway.dev/source-path=clusters/prod/aliases.yaml",
        ],
        "admin",
    );
    assert_eq!(annotate.code, 0, "{}", annotate.stderr);

    // 8 never becomes available: rolled back to 7, and the rollback written back.
    kubelet.failing.lock().unwrap().insert("8".into());
    move_alias(&api, "8");
    let branch = "slipway/rollback/default/pitch-frames-api/8";
    let pushed = eventually(Duration::from_secs(90), || {
        repo.repo
            .find_branch(branch, git2::BranchType::Local)
            .ok()
            .map(|b| b.get().peel_to_commit().unwrap().id())
    });
    let pushed = repo.repo.find_commit(pushed).unwrap();
    assert_eq!(pushed.parent_id(0).unwrap(), promoted);
    let file = pushed
        .tree()
        .unwrap()
        .get_path(std::path::Path::new("clusters/prod/aliases.yaml"))
        .unwrap();
    let text =
        String::from_utf8(repo.repo.find_blob(file.id()).unwrap().content().to_vec()).unwrap();
    assert_eq!(text, alias.replace("version: \"8\"", "version: \"7\""));

    let proposal = eventually(Duration::from_secs(30), || {
        let s = deployment_status(&api);
        s["proposal"]["pullRequest"]
            .as_str()
            .map(|_| s["proposal"].clone())
    });
    assert_eq!(proposal["branch"], branch);
    assert_eq!(proposal["version"], "8");
    assert_eq!(proposal["backTo"], "7");
    assert_eq!(
        proposal["pullRequest"],
        "https://github.com/acme/registry/pull/12"
    );
    let asked = github.requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(github.methods(), ["POST"]);
    let (path, headers, body) = &asked[0];
    assert_eq!(path, "/repos/acme/registry/pulls");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("authorization: bearer ghp_cluster_token"),
        "{headers}"
    );
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["head"], branch);
    assert_eq!(body["base"], "main");
    assert_eq!(
        body["title"],
        "Roll pitch-frames production back to 7 (pitch-frames-api rejected 8)"
    );
    // A Kubernetes event says it, with the link.
    let events = api.kubectl(
        &[
            "get",
            "events",
            "--field-selector",
            "reason=RollbackProposed",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        "admin",
    );
    assert!(
        events
            .stdout
            .contains("https://github.com/acme/registry/pull/12"),
        "{}",
        events.stdout
    );
    // Once: the controller does not push or open it again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(github.requests().len(), 1);
    assert_eq!(
        get(
            &api,
            &["mdeploy", "pitch-frames-api"],
            "{.status.servingVersion}"
        ),
        "7"
    );
}

#[test]
fn a_repository_the_operator_does_not_list_is_never_written_to() {
    let mut repo = GitRepo::new();
    let alias = "apiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: pitch-frames-production}\nspec: {model: pitch-frames, alias: production, version: \"8\"}\n";
    repo.commit("main", None, &[("aliases.yaml", Some(alias))], "promote 8");
    let server = GitHttp::start(repo.path());
    let url = format!("http://127.0.0.1:{}/cgi-bin/git/.git", server.port);
    let api = support::apiserver::ApiServer::start();
    api.install_crds();
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &registry());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let kubelet = support::kubelet::Kubelet::start(&api.kubeconfig, "default");
    // The operator lists another repository; a promoter names theirs.
    let _controller = Controller::start_with(
        &api,
        "controller-a",
        &[(
            "SLIPWAY_WRITE_BACK_REPOSITORIES",
            "https://github.com/acme/registry.git",
        )],
    );
    serving(&api, "7");
    let annotate = api.kubectl(
        &[
            "annotate",
            "malias",
            "pitch-frames-production",
            &format!("slipway.dev/source-repository={url}"),
            "slipway.dev/source-path=aliases.yaml",
        ],
        "admin",
    );
    assert_eq!(annotate.code, 0, "{}", annotate.stderr);
    kubelet.failing.lock().unwrap().insert("8".into());
    move_alias(&api, "8");
    let proposal = eventually(Duration::from_secs(90), || {
        let s = deployment_status(&api);
        s["proposal"]["error"].as_str().map(str::to_string)
    });
    assert!(
        proposal.contains(
            "is not among the repositories the controller may write to (--write-back-repositories)"
        ),
        "{proposal}"
    );
    assert_eq!(repo.repo.branches(None).unwrap().count(), 1, "only main");
    let events = api.kubectl(
        &[
            "get",
            "events",
            "--field-selector",
            "reason=RollbackProposalFailed",
            "-o",
            "jsonpath={.items[*].type}",
        ],
        "admin",
    );
    assert!(events.stdout.contains("Warning"), "{}", events.stdout);
}
