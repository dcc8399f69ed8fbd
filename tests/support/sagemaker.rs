//! The SageMaker target's registry (production alias, a canary guarded by an alarm) in a
//! temporary folder, `slipway run --once` against a moto server, and what the endpoint, its
//! configs and Models look like from boto3.

use std::path::Path;

use std::process::{Command, Stdio};

use super::moto::Moto;
use super::slipway_env;

/// The model, versions 7–9 and a canary SageMaker deployment guarded by an alarm.
pub static REGISTRY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let model = r#"
apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {name: pitch-frames}
spec: {owners: ["group:ml-leads"]}
"#;
    let deployment = r#"---
apiVersion: slipway.dev/v1alpha1
kind: ModelDeployment
metadata: {name: pitch-frames-api}
spec:
  model: pitch-frames
  alias: production
  target:
    sagemaker:
      region: eu-west-1
      endpointName: pitch-frames
      executionRoleArn: arn:aws:iam::123456789012:role/slipway-sagemaker
      image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/pitch-frames-server:1.4
      instanceType: ml.m5.large
      instanceCount: 2
  strategy:
    type: Canary
    steps: [{weight: 25, pause: 2s}]
    analysis: {alarms: [pitch-frames-5xx]}
"#;
    [
        model.to_string(),
        super::registry::versions("pitch-frames", &["7", "8", "9"], "model.tar.gz"),
        deployment.to_string(),
    ]
    .concat()
});

pub fn alias(version: &str) -> String {
    super::registry::production("pitch-frames", version)
}

pub fn setup(version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("registry")).unwrap();
    std::fs::write(dir.path().join("registry/registry.yaml"), &*REGISTRY).unwrap();
    std::fs::write(dir.path().join("registry/alias.yaml"), alias(version)).unwrap();
    dir
}

pub fn run_once(dir: &Path, moto: &Moto) -> super::Run {
    run_once_with(dir, moto, &[])
}

/// `slipway run registry --once --state state` in `dir` with the moto server's credentials and
/// `extra` arguments (e.g. `--allowed-destinations`).
pub fn run_once_with(dir: &Path, moto: &Moto, extra: &[&str]) -> super::Run {
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut args = vec!["run", "registry", "--once", "--state", "state"];
    args.extend_from_slice(extra);
    slipway_env(&args, dir, &env)
}

pub fn endpoint(moto: &Moto) -> serde_json::Value {
    serde_json::from_str(&moto.boto(
        "e = sm.describe_endpoint(EndpointName='pitch-frames')\nc = sm.describe_endpoint_config(EndpointConfigName=e['EndpointConfigName'])\nm = sm.describe_model(ModelName=c['ProductionVariants'][0]['ModelName'])\ntags = sm.list_tags(ResourceArn=m['ModelArn'])['Tags']\nprint(json.dumps({'status': e['EndpointStatus'], 'config': e['EndpointConfigName'], 'variants': [v['VariantName'] for v in c['ProductionVariants']], 'count': e['ProductionVariants'][0].get('CurrentInstanceCount'), 'model': m['ModelName'], 'image': m['PrimaryContainer']['Image'], 'artifact': m['PrimaryContainer']['ModelDataUrl'], 'tags': {t['Key']: t['Value'] for t in tags}, 'failure': e.get('FailureReason')}))",
    ))
    .unwrap()
}

pub fn counts(moto: &Moto) -> (usize, usize) {
    let out = moto.boto(
        "print(len(sm.list_endpoint_configs()['EndpointConfigs']), len(sm.list_models()['Models']))",
    );
    let (a, b) = out.split_once(' ').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

pub fn history(dir: &Path) -> String {
    let run = super::slipway(&["history", "pitch-frames", "--state", "state"], dir);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
}

/// A real API server holding `registry` with production at version 7, and `slipway
/// controller` on it with the moto server's credentials; its log goes to `log`.
pub fn cluster_with_controller(
    moto: &Moto,
    log: Stdio,
    registry: &str,
) -> (super::apiserver::ApiServer, std::process::Child) {
    let api = super::apiserver::ApiServer::start();
    api.install_crds();
    let run = api.kubectl_stdin(
        &["apply", "-f", "-"],
        "admin",
        &format!("{registry}\n{}", alias("7")),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let env = moto.env();
    let controller = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .envs(super::OPEN_BOUNDS)
        .args(["controller", "--listen"])
        .arg(format!("127.0.0.1:{}", super::free_port()))
        .env("KUBECONFIG", &api.kubeconfig)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    (api, controller)
}

/// The analysis that judges a variant by its 5xx count in CloudWatch (`strategy:` lines).
pub const ERRORS_METRIC: &str = "    analysis:\n      metrics:\n        - name: errors\n          interval: 1s\n          successCondition: \"result < 1\"\n          provider:\n            cloudwatch:\n              region: eu-west-1\n              queries:\n                - id: errors\n                  metricStat:\n                    namespace: AWS/SageMaker\n                    metricName: Invocation5XXErrors\n                    stat: Sum\n                    period: 60\n                    dimensions:\n                      EndpointName: pitch-frames\n                      VariantName: \"v{{version}}\"\n";

/// [`REGISTRY`] in `Variants` mode with `steps` (YAML lines, or None: its own canary step),
/// judged by [`ERRORS_METRIC`] instead of an alarm.
pub fn variants_judged_by_errors(steps: Option<&str>) -> String {
    let strategy = format!(
        "{}{ERRORS_METRIC}",
        steps.unwrap_or("    steps: [{weight: 25, pause: 2s}]\n")
    );
    let registry = REGISTRY
        .replace(
            "      instanceCount: 2\n",
            "      instanceCount: 2\n      mode: Variants\n",
        )
        .replace(
            "    steps: [{weight: 25, pause: 2s}]\n    analysis: {alarms: [pitch-frames-5xx]}\n",
            &strategy,
        );
    assert!(registry.contains("mode: Variants") && registry.contains("Invocation5XXErrors"));
    registry
}

/// What SageMaker would report of version `version`'s variant: `errors` 5xx answers just now.
pub fn put_errors(moto: &Moto, version: &str, errors: f64) {
    let variant = format!("v{version}");
    let dims = [
        ("EndpointName", "pitch-frames"),
        ("VariantName", variant.as_str()),
    ];
    moto.put_metric("AWS/SageMaker", "Invocation5XXErrors", &dims, errors);
}

/// [`cluster_with_controller`] with the controller's log kept in a temporary folder: what the
/// deployment shows, what the controller said, and its clean stop.
pub struct Cluster {
    pub api: super::apiserver::ApiServer,
    controller: std::process::Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(moto: &Moto, registry: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("controller.log");
        let file = std::fs::File::create(&log).unwrap();
        let (api, controller) = cluster_with_controller(moto, file.into(), registry);
        Cluster {
            api,
            controller,
            log,
            _dir: dir,
        }
    }

    /// `jsonpath` of the deployment `pitch-frames-api`.
    pub fn get(&self, jsonpath: &str) -> String {
        super::k8s_mode::get(&self.api, &["mdeploy", "pitch-frames-api"], jsonpath)
    }

    /// What the controller logged so far.
    pub fn said(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the deployment's `{servingVersion} {phase}` reads `want`.
    pub fn until(&self, want: &str, within: std::time::Duration) {
        super::eventually(within, || {
            (self.get("{.status.servingVersion} {.status.phase}") == want).then_some(())
        });
    }

    /// Moves the production alias to `version`.
    pub fn move_alias(&self, version: &str) {
        let run = self
            .api
            .kubectl_stdin(&["apply", "-f", "-"], "admin", &alias(version));
        assert_eq!(run.code, 0, "{}", run.stderr);
    }

    /// Stops the controller with SIGTERM; it must exit cleanly.
    pub fn stop(mut self) {
        super::git_mode::signal(self.controller.id(), "-TERM");
        let controller = &mut self.controller;
        let status = super::eventually(std::time::Duration::from_secs(20), || {
            controller.try_wait().unwrap()
        });
        assert!(status.success(), "{status:?}\n{}", self.said());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.controller.kill();
        let _ = self.controller.wait();
    }
}
