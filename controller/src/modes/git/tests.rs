//! The reconciler on a real registry folder, real evaluation subprocesses and a real SQLite file.

use std::cell::Cell;

use chrono::TimeZone;

use super::*;
use crate::decide::catalog::SourceFile;
use crate::decide::files::file_digest;
use crate::edges::store::HistoryFilter;
use slipway_crd::EvaluationStatus;
use slipway_crd::evaluation::{EvaluationPhase, Verdict};

const EVAL: &str = r#"import json, os
score = float(open(os.environ['SLIPWAY_MODEL_URI']).read())
with open('runs.log', 'a') as f:
    f.write(os.environ['SLIPWAY_MODEL_VERSION'] + ' ' + os.environ['SLIPWAY_ROLE'] + '\n')
if score < 0:
    raise SystemExit('model file is corrupt')
json.dump({'metrics': {'f1': score},
           'samples': [{'input': 'frame-1', 'expected': 'goal', 'prediction': 'goal' if score > 0.7 else 'corner'}]},
          open(os.environ['SLIPWAY_RESULTS'], 'w'))
"#;

/// The suite's dataset.
const FRAMES: &str = "frame-1,goal\n";

fn far_future() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap()
}

fn registry(production: &str, scores: &[(&str, f64)]) -> String {
    let yaml = String::from(
        r#"apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {name: m}
spec:
  evaluations:
    - name: eval
      runner: {local: {command: [python3, eval.py]}}
      dataset: {uri: file://frames, digest: "FRAMES"}
      baseline: {alias: production}
      gates: [{metric: f1, op: ">=", value: 0.5}]
  primaryMetric: {suite: eval, metric: f1, maxRegression: 0.01}
---
apiVersion: slipway.dev/v1alpha1
kind: Group
metadata: {name: ml-leads}
spec: {members: [alice]}
"#,
    );
    let mut yaml = yaml.replace("FRAMES", &file_digest(FRAMES.as_bytes()));
    for (v, s) in scores {
        // The digest of the file the fixture writes: what runs is verified against it.
        let digest = file_digest(s.to_string().as_bytes());
        yaml.push_str(&format!(
            "---\napiVersion: slipway.dev/v1alpha1\nkind: ModelVersion\nmetadata: {{name: m-{v}}}\nspec: {{model: m, version: \"{v}\", artifact: {{uri: models/{v}.txt, digest: \"{digest}\"}}}}\n"
        ));
    }
    yaml.push_str(&format!(
        "---\napiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata: {{name: m-production}}\nspec: {{model: m, alias: production, version: \"{production}\"}}\n---\n{}",
        include_str!("../../../../policies/default.yaml")
    ));
    yaml
}

struct Fixture {
    root: tempfile::TempDir,
    state: tempfile::TempDir,
    store: Store,
    clock: Cell<i64>,
}

impl Fixture {
    fn new(scores: &[(&str, f64)]) -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("models")).unwrap();
        std::fs::write(root.path().join("eval.py"), EVAL).unwrap();
        std::fs::write(root.path().join("frames"), FRAMES).unwrap();
        for (v, s) in scores {
            std::fs::write(root.path().join(format!("models/{v}.txt")), s.to_string()).unwrap();
        }
        let state = tempfile::tempdir().unwrap();
        let store = Store::open(state.path()).unwrap();
        Fixture {
            root,
            state,
            store,
            clock: Cell::new(0),
        }
    }

    fn pass(&self, production: &str, scores: &[(&str, f64)]) -> PassReport {
        self.pass_on(registry(production, scores))
    }

    fn pass_on(&self, yaml: String) -> PassReport {
        let files = [SourceFile {
            path: "registry.yaml".into(),
            content: yaml.into_bytes(),
            ..Default::default()
        }];
        let (catalog, diags) = Catalog::from_files(&files);
        assert!(diags.is_empty(), "{diags:#?}");
        let now = || {
            self.clock.set(self.clock.get() + 1);
            Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
                + chrono::Duration::seconds(self.clock.get())
        };
        let r = Reconciler {
            pool: None,
            statuses: Default::default(),
            store: &self.store,
            root: &crate::edges::source::remote::Root::folder(self.root.path()),
            state_dir: self.state.path(),
            revision: "r1".into(),
            now: &now,
            progress: &|_| {},
            allowed: &crate::edges::notify::Allowed::any(),
            results_url: None,
        };
        r.reconcile(&catalog).unwrap()
    }

    fn evaluation(&self, name: &str) -> EvaluationStatus {
        serde_json::from_value(
            self.store
                .status("Evaluation", "default", name)
                .unwrap()
                .unwrap(),
        )
        .unwrap()
    }

    fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.path().join("runs.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn events(&self) -> Vec<String> {
        self.store
            .history(&HistoryFilter::default())
            .unwrap()
            .into_iter()
            .map(|h| format!("{} {}", h.event, h.message))
            .collect()
    }
}

#[test]
fn versions_are_evaluated_reported_and_production_is_promoted() {
    let scores = [("1", 0.80), ("2", 0.86)];
    let f = Fixture::new(&scores);
    let first = f.pass("1", &scores);
    assert_eq!(first.registered, vec!["m/1", "m/2"]);
    assert_eq!(first.moved, vec!["m/production: (none) → 1"]);
    // Version 2 waited for production to resolve, then was compared with it; version 1's run was reused.
    assert_eq!(
        first.evaluated,
        vec!["m-1-eval: Passed", "m-2-eval: Passed"]
    );
    assert_eq!(
        f.runs(),
        vec!["1 candidate", "2 candidate"],
        "a content-addressed run was repeated"
    );
    let status = f.evaluation("m-2-eval");
    assert_eq!(status.baseline_version.as_deref(), Some("1"));
    assert_eq!(status.baseline_metrics["f1"], 0.80);
    assert_eq!(status.samples[0].baseline.as_deref(), Some("goal"));
    let html = std::fs::read_to_string(status.report.unwrap()).unwrap();
    assert!(html.contains("<svg"));
    assert!(f.state.path().join("reports/default/m-2-eval.md").is_file());

    let third = f.pass("2", &scores);
    assert_eq!(third.moved, vec!["m/production: 1 → 2"]);
    assert!(
        f.pass("2", &scores) == PassReport::default(),
        "a settled registry does nothing"
    );
    let served = f
        .store
        .alias_at("m", "production", far_future())
        .unwrap()
        .unwrap();
    assert_eq!(served.version.as_deref(), Some("2"));
}

#[test]
fn a_regression_is_held_by_policy_and_recorded_once() {
    let scores = [("1", 0.90), ("2", 0.80)];
    let f = Fixture::new(&scores);
    f.pass("1", &scores);
    let held = f.pass("2", &scores);
    assert_eq!(held.blocked.len(), 1, "{held:?}");
    assert!(
        held.blocked[0].contains("denied by production/no-primary-metric-regression"),
        "{:?}",
        held.blocked
    );
    f.pass("2", &scores);
    let blocked: Vec<String> = f
        .events()
        .into_iter()
        .filter(|e| e.starts_with("PromotionBlocked"))
        .collect();
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    let served = f
        .store
        .alias_at("m", "production", far_future())
        .unwrap()
        .unwrap();
    assert_eq!(served.version.as_deref(), Some("1"));
}

#[test]
fn production_moves_back_to_a_version_it_served_and_not_to_one_it_never_served() {
    let scores = [("1", 0.80), ("2", 0.86), ("3", 0.84)];
    let f = Fixture::new(&scores);
    f.pass("1", &scores);
    assert_eq!(f.pass("2", &scores).moved, vec!["m/production: 1 → 2"]);
    // 3 was compared against 1, not against 2 which production serves now: that result does
    // not count. It is compared again against 2 in the same pass (both runs reused), and the
    // move is decided on that comparison: held, 3 being worse than 2.
    let runs = f.runs().len();
    let held = f.pass("3", &scores);
    assert!(held.moved.is_empty(), "{held:?}");
    assert_eq!(
        held.blocked,
        ["m/production → 3: denied by production/no-primary-metric-regression"]
    );
    assert_eq!(
        f.evaluation("m-3-eval").baseline_version.as_deref(),
        Some("2")
    );
    assert_eq!(f.runs().len(), runs, "a stored run was run again");
    assert!(
        f.events()
            .iter()
            .any(|e| e.starts_with("BaselineMoved") && e.contains("against version 2")),
        "{:?}",
        f.events()
    );
    // 1 was production itself when it was evaluated (no baseline): a rollback to it is not
    // held to that comparison.
    let back = f.pass("1", &scores);
    assert_eq!(back.moved, vec!["m/production: 2 → 1"], "{back:?}");
    let served = f
        .store
        .alias_at("m", "production", far_future())
        .unwrap()
        .unwrap();
    assert_eq!(served.version.as_deref(), Some("1"));
}

#[test]
fn a_crashing_evaluation_fails_and_blocks_the_promotion() {
    let scores = [("1", 0.90), ("2", -1.0)];
    let f = Fixture::new(&scores);
    f.pass("1", &scores);
    let out = f.pass("2", &scores);
    let status = f.evaluation("m-2-eval");
    assert_eq!(
        (status.phase, status.verdict),
        (EvaluationPhase::Failed, Some(Verdict::Failed))
    );
    // Retried back to back within the pass, then failed for good: one decision, not three.
    assert_eq!(status.attempts, crate::decide::limits::EVALUATION_ATTEMPTS);
    assert!(
        status.conditions[0]
            .message
            .contains("evaluation failed after 3 attempt(s): candidate run failed"),
        "{:?}",
        status.conditions
    );
    assert!(
        status.conditions[0]
            .message
            .contains("model file is corrupt"),
        "{:?}",
        status.conditions
    );
    assert!(
        out.blocked
            .iter()
            .any(|b| b.contains("candidate-evaluations-passed")),
        "{out:?}"
    );
}

#[test]
fn an_evaluation_git_mode_cannot_run_fails_once_and_stands() {
    let scores = [("1", 0.8)];
    let f = Fixture::new(&scores);
    let yaml = registry("1", &scores).replace(
        "runner: {local: {command: [python3, eval.py]}}",
        "runner: {kubernetes: {image: eval:1}}",
    );
    assert!(yaml.contains("eval:1"), "the fixture changed shape");
    let first = f.pass_on(yaml.clone());
    assert_eq!(first.evaluated, vec!["m-1-eval: Failed"]);
    let s = f.evaluation("m-1-eval");
    assert_eq!((s.phase, s.attempts), (EvaluationPhase::Failed, 0));
    assert!(
        s.conditions[0].message.starts_with(
            "evaluation cannot run: the kubernetes runner does not run in git mode yet"
        ),
        "{s:?}"
    );
    // Later passes neither fail it again nor record or announce it again.
    for _ in 0..3 {
        assert!(f.pass_on(yaml.clone()).evaluated.is_empty());
    }
    let completed = f
        .events()
        .iter()
        .filter(|e| e.starts_with("EvaluationCompleted"))
        .count();
    assert_eq!(completed, 1, "{:#?}", f.events());
}

/// The results API takes an attempt's results only while that attempt is waiting for them: not
/// between attempts (the last one failed, the next not dispatched yet), as in a cluster.
#[test]
fn results_posted_between_attempts_are_refused() {
    let f = Fixture::new(&[("1", 0.8)]);
    let token = "attempt-token-0123456789abcdef";
    let record = serde_json::json!({
        "tokenHash": crate::edges::http::token::hash(token), "candidateKey": "sha256:c",
        "baselineKey": null, "model": "m", "suite": "eval", "version": "1", "delivery": "sent",
    });
    let running = crate::decide::evaluation::lifecycle::running(
        &crate::decide::evaluation::lifecycle::Attempt {
            key: "sha256:c".into(),
            baseline_key: None,
            baseline_version: None,
            number: 1,
            round: 0,
        },
        "asked ci.example to run eval on m version 1".into(),
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap(),
    );
    let between = crate::decide::evaluation::lifecycle::failed_attempt(
        &running,
        "no results within the suite's timeout (60s)",
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 1, 1).unwrap(),
    );
    let write = |status: &EvaluationStatus| {
        f.store
            .apply(&[
                crate::edges::store::Write::Status {
                    kind: super::external::DISPATCH.into(),
                    namespace: "default".into(),
                    name: "m-1-eval".into(),
                    status: record.clone(),
                },
                crate::edges::store::Write::Status {
                    kind: "Evaluation".into(),
                    namespace: "default".into(),
                    name: "m-1-eval".into(),
                    status: serde_json::to_value(status).unwrap(),
                },
            ])
            .unwrap();
    };
    let body = br#"{"candidate": {"metrics": {"f1": 0.9}}}"#;
    write(&between);
    let refused = super::external::accept(&f.store, "default", "m-1-eval", Some(token), body);
    assert!(
        matches!(&refused, Err((409, m)) if m.contains("between attempts")),
        "{refused:?}"
    );
    // While the attempt waits, the same results are taken.
    write(&running);
    let taken = super::external::accept(&f.store, "default", "m-1-eval", Some(token), body);
    assert_eq!(taken, Ok(()));
}
