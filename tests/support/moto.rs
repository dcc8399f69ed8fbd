//! A moto server (SageMaker + CloudWatch) on 127.0.0.1 with Slipway's UpdateEndpoint plugin
//! (`moto_sagemaker.py`), killed on drop; and boto3 to look at it as an AWS user would.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The interpreter with moto and boto3 (`scripts/moto-python.sh`).
pub fn python() -> String {
    std::env::var("SLIPWAY_MOTO_PYTHON").unwrap_or_else(|_| {
        let out = Command::new(super::root().join("scripts/moto-python.sh"))
            .output()
            .expect("run scripts/moto-python.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// A running moto server.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    python: String,
}

impl Moto {
    pub fn start() -> Moto {
        let python = python();
        let port = super::free_port();
        let child = Command::new(&python)
            .arg(super::root().join("tests/support/moto_sagemaker.py"))
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let url = format!("http://127.0.0.1:{port}");
        super::eventually(Duration::from_secs(30), || {
            (super::http::request("GET", &format!("{url}/moto-api/"), &[], "").0 == 200)
                .then_some(())
        });
        Moto { child, url, python }
    }

    /// Runs Python with `sm` (SageMaker) and `cw` (CloudWatch) boto3 clients bound to this
    /// server in eu-west-1; returns stdout.
    /// Puts one data point of `metric` in CloudWatch `namespace` with `dimensions`, stamped now.
    pub fn put_metric(
        &self,
        namespace: &str,
        metric: &str,
        dimensions: &[(&str, &str)],
        value: f64,
    ) {
        let dims: Vec<String> = dimensions
            .iter()
            .map(|(k, v)| format!("{{'Name': '{k}', 'Value': '{v}'}}"))
            .collect();
        self.boto(&format!(
            "import datetime\ncw.put_metric_data(Namespace='{namespace}', MetricData=[{{'MetricName': '{metric}', 'Dimensions': [{}], 'Value': {value}, 'Timestamp': datetime.datetime.now(datetime.timezone.utc)}}])",
            dims.join(", ")
        ));
    }

    pub fn boto(&self, code: &str) -> String {
        let script = format!(
            "import boto3, json\nkw = dict(region_name='eu-west-1', endpoint_url='{}', aws_access_key_id='test', aws_secret_access_key='test')\nsm = boto3.client('sagemaker', **kw)\ncw = boto3.client('cloudwatch', **kw)\n{code}\n",
            self.url
        );
        let out = Command::new(&self.python)
            .args(["-c", &script])
            .output()
            .expect("run boto3");
        assert!(
            out.status.success(),
            "boto3 failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The environment a slipway process needs to talk to this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_REGION", "eu-west-1".into()),
            ("AWS_ENDPOINT_URL_SAGEMAKER", self.url.clone()),
            ("AWS_ENDPOINT_URL_CLOUDWATCH", self.url.clone()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
