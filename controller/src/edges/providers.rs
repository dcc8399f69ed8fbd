//! Metric providers: sends a metric's request ([`Request`], built by the core) to its provider
//! and reads the answer with the core's readers. A request goes only where the operator's
//! destinations allow, follows no redirect, waits [`TIMEOUT`] at most and reads at most
//! [`MAX_ANSWER`] bytes; no answer is a reading error, which the core judges inconclusive.

use std::time::Duration;

use slipway_crd::common::SecretRef;

use crate::decide::rollout::metrics::{self, Reading, Request};

/// The longest a provider may take to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read.
pub const MAX_ANSWER: u64 = 1 << 20;

/// Measures one metric: `secret` resolves header values, `destination` says whether a request
/// may go to a URL.
pub fn measure(
    request: &Request,
    secret: &dyn Fn(&SecretRef) -> Result<String, String>,
    destination: &dyn Fn(&str) -> Result<(), String>,
) -> Reading {
    if let Request::CloudWatch {
        region,
        window,
        queries,
        returned,
    } = request
    {
        return crate::edges::cloudwatch::measure(
            region.as_deref(),
            *window,
            queries,
            returned,
            destination,
        );
    }
    if let Some(url) = request.url() {
        destination(url)?;
    }
    // One agent for every measurement: its connections are kept alive between them.
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    let agent = AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(TIMEOUT))
            .build()
            .new_agent()
    });
    match request {
        Request::Prometheus { address, query } => {
            let url = format!("{address}/api/v1/query");
            let answer = json(agent.get(&url).query("query", query).call(), &url, true)?;
            metrics::prometheus_result(&answer)
        }
        Request::Http {
            url,
            json_path,
            headers,
        } => {
            let mut r = agent.get(url);
            for (name, value) in headers {
                let value = secret(value).map_err(|e| format!("header {name}: {e}"))?;
                r = r.header(name.as_str(), value.as_str());
            }
            let answer = json(r.call(), url, false)?;
            metrics::json_path(&answer, json_path.as_deref())
        }
        Request::CloudWatch { .. } => Err("a CloudWatch metric is read above".into()),
    }
}

/// The JSON document of an answer. An error answer of Prometheus carries JSON saying what is
/// wrong (`prometheus`); any other is said by its status alone.
fn json(
    answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    url: &str,
    prometheus: bool,
) -> Result<serde_json::Value, String> {
    let mut answer = answer.map_err(|e| match e {
        ureq::Error::Timeout(_) => format!("{url} did not answer within {TIMEOUT:?}"),
        ureq::Error::Io(e) => format!("cannot reach {url}: {}", e.kind()),
        ureq::Error::HostNotFound => format!("cannot reach {url}: host not found"),
        _ => format!("cannot reach {url}: the request failed"),
    })?;
    let code = answer.status().as_u16();
    let text = answer
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(|e| format!("cannot read the answer of {url}: {e}"))?;
    let parsed: Result<serde_json::Value, _> = serde_json::from_str(&text);
    match (code, parsed) {
        (200..=299, Ok(v)) => Ok(v),
        (200..=299, Err(e)) => Err(format!("{url} answered something that is not JSON ({e})")),
        (_, Ok(v)) if prometheus && v.get("error").is_some() => Ok(v),
        (code, _) => Err(format!("{url} answered HTTP {code}")),
    }
}
