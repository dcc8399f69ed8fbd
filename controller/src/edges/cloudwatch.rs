//! The CloudWatch metric provider: a metric's `GetMetricData` queries (built by the core) sent
//! with the AWS configuration chain Slipway runs with, to the CloudWatch API of the metric's
//! region — `AWS_ENDPOINT_URL_CLOUDWATCH` or `AWS_ENDPOINT_URL` when set, else
//! `https://monitoring.REGION.amazonaws.com` — which the operator's destinations must allow
//! like any provider's. The answer is read by the core ([`metrics::cloudwatch_result`]).

use std::time::Duration;

use slipway_crd::analysis::CloudWatchQuery;

use crate::decide::rollout::metrics::{self, Reading};

/// The CloudWatch API a metric of `region` (None: `AWS_REGION`) is read from, and the region.
pub fn endpoint(region: Option<&str>) -> Result<(String, String), String> {
    let region = region
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|r| !r.is_empty())
        .ok_or("no AWS region: set provider.cloudwatch.region, or AWS_REGION where Slipway runs")?;
    let url = ["AWS_ENDPOINT_URL_CLOUDWATCH", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| format!("https://monitoring.{region}.amazonaws.com"));
    Ok((url, region))
}

/// Reads a CloudWatch metric: its queries over the `window` that ends now; `destination` says
/// whether the CloudWatch API may be called.
pub fn measure(
    region: Option<&str>,
    window: Duration,
    queries: &[CloudWatchQuery],
    returned: &str,
    destination: &dyn Fn(&str) -> Result<(), String>,
) -> Reading {
    let (url, region) = endpoint(region)?;
    destination(&url)?;
    let answer = aws::get_metric_data(&url, &region, window, queries)?;
    metrics::cloudwatch_result(&answer, returned)
}

#[cfg(feature = "sagemaker")]
mod aws {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, SystemTime};

    use aws_sdk_cloudwatch::Client;
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
    use slipway_crd::analysis::CloudWatchQuery;

    /// The runtime measurements run on: one for the process, never dropped (a measurement is
    /// asked from git mode's synchronous loop and from the controller's blocking threads).
    fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
        static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
        RUNTIME
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("cloudwatch")
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the CloudWatch runtime: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// One client per (endpoint, region), kept.
    async fn client(url: &str, region: &str) -> Client {
        static CLIENTS: OnceLock<Mutex<HashMap<(String, String), Client>>> = OnceLock::new();
        let clients = CLIENTS.get_or_init(Default::default);
        let key = (url.to_string(), region.to_string());
        if let Some(c) = clients.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return c.clone();
        }
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .region(aws_config::Region::new(region.to_string()))
            .load()
            .await;
        let conf = aws_sdk_cloudwatch::config::Builder::from(&shared)
            .endpoint_url(url)
            .build();
        let c = Client::from_conf(conf);
        clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, c.clone());
        c
    }

    fn query(q: &CloudWatchQuery, returned: bool) -> Result<MetricDataQuery, String> {
        let mut b = MetricDataQuery::builder().id(&q.id).return_data(returned);
        if let Some(e) = &q.expression {
            b = b.expression(e);
        }
        if let Some(s) = &q.metric_stat {
            let mut metric = Metric::builder()
                .namespace(&s.namespace)
                .metric_name(&s.metric_name);
            for (name, value) in &s.dimensions {
                metric = metric.dimensions(Dimension::builder().name(name).value(value).build());
            }
            let stat = MetricStat::builder()
                .metric(metric.build())
                .period(i32::try_from(s.period.unwrap_or(60)).unwrap_or(60))
                .stat(&s.stat)
                .build();
            b = b.metric_stat(stat);
        }
        Ok(b.build())
    }

    /// `GetMetricData` over the window that ends now, as `[{"id", "timestamps", "values"}]`.
    pub fn get_metric_data(
        url: &str,
        region: &str,
        window: Duration,
        queries: &[CloudWatchQuery],
    ) -> Result<serde_json::Value, String> {
        let returned = queries
            .iter()
            .find(|q| q.return_data == Some(true))
            .or(queries.last())
            .map(|q| q.id.clone())
            .unwrap_or_default();
        let built: Vec<MetricDataQuery> = queries
            .iter()
            .map(|q| query(q, q.id == returned))
            .collect::<Result<_, _>>()?;
        let now = SystemTime::now();
        let start = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        // The end a minute ahead: a data point of this very second is in (CloudWatch counts
        // times to the second and excludes the end; a later one has no data yet).
        let end = now + Duration::from_secs(60);
        runtime()?.block_on(async {
            // The configuration chain (credentials) within the measurement's time too.
            let c = tokio::time::timeout(crate::edges::providers::TIMEOUT, client(url, region))
                .await
                .map_err(|_| "the AWS configuration could not be loaded within 10 s".to_string())?;
            let call = c
                .get_metric_data()
                .set_metric_data_queries(Some(built))
                .start_time(DateTime::from(start))
                .end_time(DateTime::from(end))
                .scan_by(ScanBy::TimestampDescending)
                .send();
            let answer = tokio::time::timeout(crate::edges::providers::TIMEOUT, call)
                .await
                .map_err(|_| {
                    format!(
                        "{url} did not answer within {:?}",
                        crate::edges::providers::TIMEOUT
                    )
                })?
                .map_err(|e| {
                    use aws_sdk_cloudwatch::error::{DisplayErrorContext, ProvideErrorMetadata};
                    match e.as_service_error().and_then(|s| s.message().or(s.code())) {
                        Some(why) => format!("CloudWatch refused GetMetricData: {why}"),
                        None => format!(
                            "GetMetricData at {url} failed: {}",
                            crate::decide::limits::cut(&DisplayErrorContext(&e).to_string(), 400)
                        ),
                    }
                })?;
            let results: Vec<serde_json::Value> = answer
                .metric_data_results()
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id().unwrap_or_default(),
                        "timestamps": r.timestamps().iter().map(|t| t.secs()).collect::<Vec<_>>(),
                        "values": r.values(),
                    })
                })
                .collect();
            Ok(serde_json::Value::Array(results))
        })
    }
}

#[cfg(not(feature = "sagemaker"))]
mod aws {
    /// Without the AWS SDK (`--no-default-features`), no CloudWatch metric can be read.
    pub fn get_metric_data(
        _url: &str,
        _region: &str,
        _window: std::time::Duration,
        _queries: &[slipway_crd::analysis::CloudWatchQuery],
    ) -> Result<serde_json::Value, String> {
        Err("this slipway was built without AWS support (feature `sagemaker`)".into())
    }
}
