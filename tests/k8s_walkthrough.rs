//! The README's Kubernetes walkthrough, run as written against a real API server: every command
//! of its `console` blocks, read out of README.md, in order, with what each prints compared to
//! what the README shows (ages and cluster IPs aside; `…` stands for text left out). The test
//! plays the kubelet and the evaluation Jobs (no nodes run), waiting for what a person would
//! wait for between two commands. It prints what each command printed
//! (`cargo nextest run --no-capture -E 'binary(k8s_walkthrough)'`).

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::apiserver::ApiServer;
use support::k8s_mode::finish_job;
use support::kubelet::Kubelet;
use support::{eventually, root};

/// One command of the walkthrough and what the README shows it printing.
#[derive(Debug)]
struct Step {
    command: String,
    shown: Vec<String>,
}

/// The walkthrough section of the README: its `sh` block (the Helm install, not run here) and
/// its console steps.
fn walkthrough() -> (String, Vec<Step>) {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("### Walkthrough: `kubectl` all the way")
        .expect("the README has the walkthrough");
    let section = &readme[start..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let (mut sh, mut steps) = (String::new(), Vec::<Step>::new());
    let mut block: Option<&str> = None;
    let mut continued = false;
    for line in section.lines() {
        match (block, line) {
            (None, l) if l.starts_with("```") => block = Some(&l[3..]),
            (Some(_), "```") => block = None,
            (Some("sh"), l) => {
                sh.push_str(l);
                sh.push('\n');
            }
            (Some("console"), l) if continued => {
                let step = steps.last_mut().unwrap();
                step.command.push(' ');
                step.command
                    .push_str(l.trim().trim_end_matches('\\').trim_end());
                continued = l.ends_with('\\');
            }
            (Some("console"), l) if l.starts_with("$ ") => {
                continued = l.ends_with('\\');
                steps.push(Step {
                    command: l[2..].trim_end_matches('\\').trim_end().to_string(),
                    shown: Vec::new(),
                });
            }
            (Some("console"), l) => steps.last_mut().unwrap().shown.push(l.to_string()),
            _ => {}
        }
    }
    (sh, steps)
}

/// A line as compared: runs of spaces as one, ages and cluster IPs as placeholders.
fn normal(line: &str) -> String {
    line.split_whitespace()
        .map(|w| {
            let age = w.chars().next().is_some_and(|c| c.is_ascii_digit())
                && w.chars().all(|c| c.is_ascii_digit() || "smhd".contains(c))
                && w.chars().last().is_some_and(|c| "smhd".contains(c));
            let ip = w.starts_with("10.") && w.split('.').count() == 4;
            if age {
                "AGE"
            } else if ip {
                "IP"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `line` is what `shown` shows, where `…` in `shown` stands for any text.
fn line_matches(shown: &str, line: &str) -> bool {
    let parts: Vec<&str> = shown.split('…').collect();
    if parts.len() == 1 {
        return shown == line;
    }
    let mut rest = line;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            let Some(at) = rest.find(p) else {
                return false;
            };
            rest = &rest[at + p.len()..];
        }
    }
    true
}

/// Whether the printed lines are what the README shows: line by line, where a line of just
/// `…` stands for any number of lines.
fn matches(shown: &[String], printed: &[String]) -> bool {
    match shown.split_first() {
        None => printed.is_empty(),
        Some((s, rest)) if s == "…" => (0..=printed.len()).any(|n| matches(rest, &printed[n..])),
        Some((s, rest)) => printed
            .split_first()
            .is_some_and(|(p, more)| line_matches(s, p) && matches(rest, more)),
    }
}

fn jsonpath(api: &ApiServer, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let p = format!("jsonpath={path}");
    args.extend(["-o", &p]);
    api.kubectl(&args, "admin").stdout
}

fn wait_for(api: &ApiServer, what: &[&str], path: &str, want: &str) {
    eventually(Duration::from_secs(90), || {
        (jsonpath(api, what, path) == want).then_some(())
    });
}

/// A shell that runs a README command as a person would: from the repository, with the test
/// API server's kubeconfig and this build's `slipway` first on the PATH.
fn shell(api: &ApiServer, command: &str) -> Command {
    let bin = Path::new(env!("CARGO_BIN_EXE_slipway")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl =
        Path::new(&std::env::var("KUBEBUILDER_ASSETS").unwrap_or_default()).join("kubectl");
    let path = match kubectl.parent() {
        Some(dir) if kubectl.exists() => format!("{}:{path}", dir.display()),
        _ => path,
    };
    let mut c = Command::new("sh");
    c.args(["-c", command])
        .current_dir(root())
        .env("KUBECONFIG", &api.kubeconfig)
        .env("PATH", path);
    c
}

/// A process started in the background, stopped when dropped (also when the test fails).
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let (helm, steps) = walkthrough();
    let commands: Vec<&str> = steps.iter().map(|s| s.command.as_str()).collect();
    assert!(commands.len() >= 20, "{commands:#?}");
    people_are_what_the_chart_renders(&helm);

    let api = ApiServer::start();
    let mut controller: Option<Background> = None;
    let mut kubelet: Option<Kubelet> = None;
    for step in &steps {
        let c = step.command.as_str();
        // What a person waits for before this command.
        if c.starts_with("kubectl apply -f examples/kubernetes/model.yaml") {
            eventually(Duration::from_secs(30), || {
                let (code, _) = support::git_mode::get(9080, "/readyz");
                // Serving, and its certificate in both configurations.
                let published = [
                    "validatingwebhookconfiguration",
                    "mutatingwebhookconfiguration",
                ]
                .iter()
                .all(|kind| {
                    !jsonpath(
                        &api,
                        &[kind, "slipway"],
                        "{.webhooks[0].clientConfig.caBundle}",
                    )
                    .is_empty()
                });
                (code == 200 && published).then_some(())
            });
            kubelet = Some(Kubelet::start(&api.kubeconfig, "default"));
        } else if c == "kubectl get meval,jobs" {
            wait_for(
                &api,
                &["meval", "pitch-frames-7-holdout"],
                "{.status.phase}",
                "Running",
            );
            wait_for(
                &api,
                &["job", "pitch-frames-7-holdout-1"],
                "{.metadata.name}",
                "pitch-frames-7-holdout-1",
            );
        } else if c == "kubectl apply -f examples/kubernetes/policies.yaml" {
            finish_job(
                &api,
                "pitch-frames-7-holdout-1",
                r#"{"metrics": {"macro_f1": 0.842}}"#,
            );
            wait_for(
                &api,
                &["mdeploy", "pitch-frames-api"],
                "{.status.phase} {.status.servingVersion}",
                "Healthy 7",
            );
        } else if c == "kubectl get mver,meval" {
            finish_job(
                &api,
                "pitch-frames-8-holdout-1",
                r#"{"metrics": {"macro_f1": 0.863}}"#,
            );
            wait_for(
                &api,
                &["meval", "pitch-frames-8-holdout"],
                "{.status.verdict}",
                "Passed",
            );
            wait_for(
                &api,
                &["mver", "pitch-frames-8"],
                "{.status.conditions[0].reason}",
                "Evaluated",
            );
        } else if c == "kubectl get rmodel,malias,mdeploy" {
            wait_for(
                &api,
                &["mdeploy", "pitch-frames-api"],
                "{.status.phase} {.status.servingVersion}",
                "Healthy 8",
            );
            wait_for(
                &api,
                &["rmodel", "pitch-frames"],
                "{.status.latestVersion} {.status.aliases.production}",
                "8 8",
            );
        } else if c.starts_with("kubectl get deploy,svc") {
            wait_for(
                &api,
                &["deploy", "-l", "slipway.dev/deployment=pitch-frames-api"],
                "{.items[*].metadata.name}",
                "pitch-frames-api-v8",
            );
        } else if c == "kubectl get malias,mdeploy" {
            wait_for(
                &api,
                &["mdeploy", "pitch-frames-api"],
                "{.status.phase} {.status.servingVersion}",
                "Healthy 7",
            );
        }
        if let Some(background) = c.strip_suffix(" &") {
            let log = std::fs::File::create(api.dir.path().join("controller.log")).unwrap();
            eprintln!("$ {c}");
            controller = Some(Background(
                shell(&api, &format!("exec {background}"))
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .unwrap(),
            ));
            continue;
        }
        let out = shell(&api, c).output().unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("$ {c}\n{printed}");
        let trimmed = |mut lines: Vec<String>| {
            while lines.last().is_some_and(|l| l.is_empty()) {
                lines.pop();
            }
            lines
        };
        let printed = trimmed(printed.lines().map(normal).collect());
        let shown = trimmed(step.shown.iter().map(|l| normal(l)).collect());
        assert!(
            matches(&shown, &printed),
            "`{c}` printed\n{}\nbut the README shows\n{}\n(controller log:\n{})",
            printed.join("\n"),
            shown.join("\n"),
            std::fs::read_to_string(api.dir.path().join("controller.log")).unwrap_or_default()
        );
    }
    // The approvals record the moves they were used for.
    assert!(
        jsonpath(
            &api,
            &["appr", "pitch-frames-production-8"],
            "{.status.usedBy}"
        )
        .starts_with("ModelAlias/default/pitch-frames-production → 8 (generation ")
    );
    let log = std::fs::read_to_string(api.dir.path().join("controller.log")).unwrap_or_default();
    assert!(
        log.contains("which no pod or outside system can reach"),
        "{log}"
    );
    drop(kubelet);
    drop(controller);
}

/// `examples/kubernetes/people.yaml` is what the chart renders of its people's roles with the
/// README's `helm install` role bindings.
fn people_are_what_the_chart_renders(helm: &str) {
    let mut bindings = Vec::new();
    for set in helm.split("--set '").skip(1) {
        let set = &set[..set.find('\'').unwrap()];
        let (key, value) = set.split_once('=').unwrap();
        if let Some(rest) = key.strip_prefix("roleBindings[") {
            let (i, field) = rest.split_once("].").unwrap();
            let i: usize = i.parse().unwrap();
            if bindings.len() <= i {
                bindings.resize(i + 1, serde_json::json!({}));
            }
            bindings[i][field] = value.into();
        }
    }
    assert_eq!(bindings.len(), 3, "{helm}");
    let rendered =
        support::helm::render("slipway", &serde_json::json!({"roleBindings": bindings})).unwrap();
    // Each template's documents follow its `# Source:` line.
    let mut source = "";
    let mut people = Vec::new();
    for doc in rendered.split("\n---") {
        if let Some(l) = doc.lines().find_map(|l| l.strip_prefix("# Source: ")) {
            source = l;
        }
        if source == "slipway/templates/user-roles.yaml" && doc.contains("kind:") {
            people.push(doc.trim());
        }
    }
    let file = std::fs::read_to_string(root().join("examples/kubernetes/people.yaml")).unwrap();
    let written: Vec<&str> = file
        .split("\n---")
        .map(str::trim)
        .filter(|d| d.contains("kind:"))
        .collect();
    assert_eq!(
        written
            .iter()
            .map(|d| strip_comments(d))
            .collect::<Vec<_>>(),
        people.iter().map(|d| strip_comments(d)).collect::<Vec<_>>(),
        "examples/kubernetes/people.yaml is not what the chart renders for the README's bindings"
    );
}

fn strip_comments(doc: &str) -> String {
    doc.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_comparison_allows_what_the_readme_leaves_out_and_nothing_else() {
    let shown = |s: &[&str]| s.iter().map(|l| normal(l)).collect::<Vec<_>>();
    let printed = |s: &[&str]| s.iter().map(|l| normal(l)).collect::<Vec<_>>();
    assert!(matches(
        &shown(&["a   b 3s", "…", "end …"]),
        &printed(&["a b 1m2s", "x", "y", "end of it"])
    ));
    assert!(!matches(&shown(&["a b"]), &printed(&["a b", "extra"])));
    assert!(!matches(&shown(&["end …", "z"]), &printed(&["end", "y"])));
    assert!(line_matches("…denied: X …", "for: f: denied: X and more"));
    assert!(!line_matches("…denied: X", "denied: Y"));
}
