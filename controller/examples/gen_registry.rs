//! Writes a synthetic registry for benchmarks: 100 models, 10,000 versions, 2,000 aliases,
//! 500 deployments, 50 policies and a few groups, one document per file (so that
//! check-jsonschema, which reads one document per file, can validate the same files).
//!
//! `cargo run --release --example gen_registry -- DIR [--promote N] [--runnable]`: with
//! `--promote N`, only rewrites N `production` aliases to point at the model's newest version (the
//! pull request side). With `--runnable`, the registry is one `slipway run` can reconcile on this
//! machine: each evaluation suite runs a shell one-liner that writes fixed metrics, and there are
//! no deployments (500 local deployments would start 1,000 model servers; the router is measured
//! on its own). With `--runnable --no-evaluations`, models have no evaluation suites either: what is
//! left is registering versions and moving aliases under policy, the work MLflow's registry does.

use std::fmt::Write as _;
use std::path::Path;

const MODELS: usize = 100;
const VERSIONS_PER_MODEL: usize = 100;
const ALIASES_PER_MODEL: usize = 20;
const DEPLOYMENTS_PER_MODEL: usize = 5;
const POLICIES: usize = 50;

fn write(dir: &Path, sub: &str, name: &str, body: &str) {
    let folder = dir.join(sub);
    std::fs::create_dir_all(&folder).expect("create folder");
    std::fs::write(folder.join(format!("{name}.yaml")), body).expect("write file");
}

fn alias_body(m: usize, a: usize, version: usize) -> String {
    let alias = if a == 0 {
        "production".to_string()
    } else {
        format!("channel-{a}")
    };
    format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata:\n  name: model-{m}-{alias}\nspec:\n  model: model-{m}\n  alias: {alias}\n  version: \"{version}\"\n"
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: gen_registry DIR [--promote N]");
        std::process::exit(1);
    };
    let dir = Path::new(dir);
    let runnable = args.iter().any(|a| a == "--runnable");
    let suites = !args.iter().any(|a| a == "--no-evaluations");
    let command = if runnable {
        r#"["sh", "-c", "printf '{\"metrics\": {\"f1\": 0.9, \"accuracy\": 0.9}}' > \"$SLIPWAY_RESULTS\""]"#.to_string()
    } else {
        String::new()
    };
    if let Some(n) = args
        .iter()
        .position(|a| a == "--promote")
        .and_then(|i| args.get(i + 1))
    {
        let n: usize = n.parse().expect("--promote N");
        for m in 0..n.min(MODELS) {
            write(
                dir,
                "aliases",
                &format!("model-{m}-0"),
                &alias_body(m, 0, VERSIONS_PER_MODEL),
            );
        }
        return;
    }
    write(
        dir,
        "groups",
        "ml-leads",
        "apiVersion: slipway.dev/v1alpha1\nkind: Group\nmetadata:\n  name: ml-leads\nspec:\n  members: [alice, bob, carol]\n",
    );
    for m in 0..MODELS {
        write(
            dir,
            "models",
            &format!("model-{m}"),
            &format!(
                r#"apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata:
  name: model-{m}
spec:
  description: Synthetic model {m}.
  owners: ["group:ml-leads"]
{suites}"#,
                suites = if suites {
                    format!(
                        r#"  evaluations:
    - name: holdout
      runner:
        local:
          command: {command}
      dataset:
        uri: s3://bench/datasets/{m}/
        digest: sha256:{m:064x}
      baseline:
        alias: production
      gates:
        - {{metric: f1, op: ">=", value: 0.8}}
        - {{metric: f1, op: ">=", value: -0.01, relativeTo: baseline}}
  primaryMetric: {{suite: holdout, metric: f1, maxRegression: 0.005}}
"#,
                        command = if runnable {
                            command.clone()
                        } else {
                            format!(r#"["python3", "evaluate.py", "--model", "{m}"]"#)
                        }
                    )
                } else {
                    String::new()
                }
            ),
        );
        for v in 1..=VERSIONS_PER_MODEL {
            write(
                dir,
                "versions",
                &format!("model-{m}-{v}"),
                &format!(
                    r#"apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata:
  name: model-{m}-{v}
  labels:
    team: team-{team}
spec:
  model: model-{m}
  version: "{v}"
  description: Version {v} of synthetic model {m}.
  artifact:
    uri: s3://bench/models/{m}/{v}/model.onnx
    digest: sha256:{digest:064x}
    format: onnx
  source:
    run: https://tracking.example/runs/{m}-{v}
    commit: "{digest:040x}"
    dataset:
      uri: s3://bench/train/{m}/{v}/
      digest: sha256:{digest:064x}
  metrics:
    f1: 0.{f1}
    accuracy: 0.{acc}
"#,
                    team = m % 7,
                    digest = m * 1000 + v,
                    f1 = 800 + v,
                    acc = 850 + v
                ),
            );
        }
        for a in 0..ALIASES_PER_MODEL {
            write(
                dir,
                "aliases",
                &format!("model-{m}-{a}"),
                &alias_body(m, a, VERSIONS_PER_MODEL - 1 - a),
            );
        }
        for d in 0..DEPLOYMENTS_PER_MODEL * usize::from(!runnable) {
            let alias = if d == 0 {
                "production".to_string()
            } else {
                format!("channel-{d}")
            };
            let mut body = format!(
                "apiVersion: slipway.dev/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: model-{m}-{d}\nspec:\n  model: model-{m}\n  alias: {alias}\n  target:\n    local:\n      command: [python3, serve.py]\n      port: {}\n      healthPath: /healthz\n",
                20000 + m * 10 + d
            );
            let _ = write!(
                body,
                "  strategy:\n    type: Canary\n    steps:\n      - {{weight: 10, pause: 5m}}\n      - {{weight: 50, pause: 10m}}\n    analysis:\n      maxErrorRatio: 0.01\n      maxLatencyMs: 80\n      latencyPercentile: 99\n"
            );
            write(dir, "deployments", &format!("model-{m}-{d}"), &body);
        }
    }
    for p in 0..POLICIES {
        let alias = if p == 0 {
            "production".to_string()
        } else {
            format!("channel-{p}")
        };
        write(
            dir,
            "policies",
            &format!("policy-{p}"),
            &format!(
                r#"apiVersion: slipway.dev/v1alpha1
kind: PromotionPolicy
metadata:
  name: policy-{p}
spec:
  match:
    kinds: [ModelAlias]
    aliases: [{alias}]
  rules:
    - name: evaluations-passed
      expression: model.evaluations.all(s, candidate.evaluations[s].verdict == "Passed")
    - name: no-regression
      expression: >-
        current == null || candidate.evaluations[model.primaryMetric.suite].metrics[model.primaryMetric.metric] >=
        candidate.evaluations[model.primaryMetric.suite].baselineMetrics[model.primaryMetric.metric] - model.primaryMetric.maxRegression
  approvals:
    - name: lead
      required: 1
      from: ["group:ml-leads"]
"#
            ),
        );
    }
}
