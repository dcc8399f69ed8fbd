//! Fixtures for unit tests: catalogs from small YAML snippets.

use crate::catalog::{Catalog, SourceFile};

/// A catalog from one YAML stream; panics on any diagnostic, so fixtures stay valid.
pub fn catalog(yaml: &str) -> Catalog {
    let (cat, diags) = Catalog::from_files(&[SourceFile {
        path: "fixture.yaml".into(),
        content: yaml.as_bytes().to_vec(),
        ..Default::default()
    }]);
    assert!(diags.is_empty(), "fixture is invalid: {diags:#?}");
    cat
}

/// The diagnostics of one YAML stream.
pub fn diagnostics(yaml: &str) -> Vec<crate::diagnostics::Diagnostic> {
    Catalog::from_files(&[SourceFile {
        path: "f.yaml".into(),
        content: yaml.as_bytes().to_vec(),
        ..Default::default()
    }])
    .1
}

/// A small registry: model `m` with suite `eval`, versions 1 and 2, production → 1, group leads, default policies.
pub fn registry(production: &str) -> String {
    format!(
        r#"apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {{name: m}}
spec:
  evaluations:
    - name: eval
      runner: {{local: {{command: [python3, e.py]}}}}
      dataset: {{uri: file://d, digest: "sha256:00"}}
      baseline: {{alias: production}}
  primaryMetric: {{suite: eval, metric: f1, maxRegression: 0.01}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {{name: m-1}}
spec: {{model: m, version: "1", artifact: {{uri: file://1, digest: "sha256:01"}}}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {{name: m-2}}
spec: {{model: m, version: "2", artifact: {{uri: file://2, digest: "sha256:02"}}}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelAlias
metadata: {{name: m-production}}
spec: {{model: m, alias: production, version: "{production}"}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: api}}
spec:
  model: m
  alias: production
  target: {{local: {{command: [python3, serve.py], port: 9000}}}}
  strategy: {{type: Canary, steps: [{{weight: 20, pause: 1m}}]}}
---
apiVersion: slipway.dev/v1alpha1
kind: Group
metadata: {{name: ml-leads}}
spec: {{members: [alice, bob, dana]}}
---
{}"#,
        include_str!("../../policies/default.yaml")
    )
}

/// An Evaluation result document for version `version` of model `m`.
pub fn result(
    version: &str,
    verdict: &str,
    f1: f64,
    baseline_f1: f64,
    baseline_version: &str,
) -> String {
    format!(
        r#"apiVersion: slipway.dev/v1alpha1
kind: Evaluation
metadata: {{name: m-{version}-eval}}
spec:
  model: m
  version: "{version}"
  suite: eval
  baseline: {{alias: production}}
  dataset: {{uri: file://d, digest: "sha256:00"}}
  runner: {{local: {{command: [python3, e.py]}}}}
status:
  phase: Succeeded
  verdict: {verdict}
  metrics: {{f1: {f1}}}
  baselineMetrics: {{f1: {baseline_f1}}}
  baselineVersion: "{baseline_version}"
  completedAt: 2026-11-20T10:00:00Z
"#
    )
}

/// The fixed "now" of every unit test that involves time: two days after the fixtures' approvals
/// (2026-11-26) and results, so approval lifetimes and ages never depend on the real calendar.
/// `scripts/test.sh` runs the unit tests again with the clock a year ahead to keep it so.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default()
}

/// Every YAML file under a folder (sorted, hidden folders skipped), as a source would give them.
pub fn read_folder(root: &std::path::Path) -> Vec<SourceFile> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if p.is_dir() && !hidden {
                stack.push(p);
            } else if crate::catalog::load::is_yaml(&p.to_string_lossy()) {
                found.push(p);
            }
        }
    }
    found.sort();
    found
        .into_iter()
        .map(|p| SourceFile {
            content: std::fs::read(&p).unwrap(),
            path: p.to_string_lossy().into_owned(),
            ..Default::default()
        })
        .collect()
}
