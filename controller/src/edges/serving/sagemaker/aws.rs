//! The SageMaker calls, over the AWS SDK. Credentials, region, endpoint URL and retries come
//! from the standard AWS configuration chain (environment, profiles, `AWS_ENDPOINT_URL` and
//! `AWS_ENDPOINT_URL_SAGEMAKER`); the target's `region` and `endpointUrl` override it.
//! Throttling, 5xx and connection errors are retried with exponential backoff (5 attempts).

use std::collections::HashMap;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_sagemaker::Client;
use aws_sdk_sagemaker::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sagemaker::types::{
    Alarm, AutoRollbackConfig, BlueGreenUpdatePolicy, CapacitySize, CapacitySizeType,
    ContainerDefinition, DeploymentConfig, DesiredWeightAndCapacity, ProductionVariant,
    ProductionVariantInstanceType, Tag, TrafficRoutingConfig, TrafficRoutingConfigType,
};
use slipway_crd::model_deployment::SageMakerTarget;

use super::{Endpoints, Error, Location, Owner};
use crate::decide::rollout;
use crate::decide::rollout::sagemaker::{Call, Desired, Guardrails, Live, LiveVariant, Routing};

/// Turns an SDK error into a target error: AWS's own message for what AWS refused, a hint for
/// what is missing locally (credentials, region), "unavailable" for the rest.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    e: SdkError<E>,
) -> Error {
    match &e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            let code = err.code().unwrap_or("Error");
            let message = err.message().unwrap_or("no message");
            let status = s.raw().status().as_u16();
            if status >= 500 || code.contains("Throttl") {
                Error::Unavailable(format!(
                    "{what}: SageMaker answered {code} (HTTP {status}) after retries: {message}"
                ))
            } else {
                Error::Rejected(format!("{what}: {code}: {message}"))
            }
        }
        _ => {
            // The causes' own words, without the SDK's debug dump.
            let mut parts = vec![e.to_string()];
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                let t = c.to_string();
                if !parts.iter().any(|p| p.contains(&t)) {
                    parts.push(t);
                }
                cause = c.source();
            }
            let text = parts.join(": ");
            let lower = text.to_ascii_lowercase();
            if lower.contains("credential") {
                Error::Rejected(format!(
                    "{what}: no usable AWS credentials ({text}); set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or give the process a role"
                ))
            } else if lower.contains("region") {
                Error::Rejected(format!(
                    "{what}: no AWS region ({text}); set the target's `region` or AWS_REGION"
                ))
            } else {
                Error::Unavailable(format!("{what}: cannot reach SageMaker: {text}"))
            }
        }
    }
}

fn not_found<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    matches!(e, SdkError::ServiceError(s)
        if s.err().message().is_some_and(|m| m.contains("Could not find")))
}

fn tags(owner: &Owner, version: Option<&str>) -> Vec<Tag> {
    let mut out = vec![
        (rollout::sagemaker::TAG_NAMESPACE, owner.namespace.as_str()),
        (
            rollout::sagemaker::TAG_DEPLOYMENT,
            owner.deployment.as_str(),
        ),
        (rollout::sagemaker::TAG_MODEL, owner.model.as_str()),
    ];
    if let Some(v) = version {
        out.push((rollout::sagemaker::TAG_VERSION, v));
    }
    out.into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn deployment_config(g: &Guardrails) -> DeploymentConfig {
    let percent = |p: u32| {
        CapacitySize::builder()
            .r#type(CapacitySizeType::CapacityPercent)
            .value(p as i32)
            .build()
    };
    let routing = match &g.routing {
        Routing::AllAtOnce => {
            TrafficRoutingConfig::builder().r#type(TrafficRoutingConfigType::AllAtOnce)
        }
        Routing::Canary { percent: p } => TrafficRoutingConfig::builder()
            .r#type(TrafficRoutingConfigType::Canary)
            .canary_size(percent(*p)),
        Routing::Linear { percent: p } => TrafficRoutingConfig::builder()
            .r#type(TrafficRoutingConfigType::Linear)
            .linear_step_size(percent(*p)),
    }
    .wait_interval_in_seconds(g.wait.as_secs() as i32)
    .build();
    let mut config = DeploymentConfig::builder().blue_green_update_policy(
        BlueGreenUpdatePolicy::builder()
            .traffic_routing_configuration(routing)
            .termination_wait_in_seconds(g.termination_wait.as_secs() as i32)
            .maximum_execution_timeout_in_seconds(g.max_execution.as_secs() as i32)
            .build(),
    );
    if !g.alarms.is_empty() {
        let mut rollback = AutoRollbackConfig::builder();
        for a in &g.alarms {
            rollback = rollback.alarms(Alarm::builder().alarm_name(a).build());
        }
        config = config.auto_rollback_configuration(rollback.build());
    }
    config.build()
}

/// SageMaker clients per (region, endpoint URL), driven by a private runtime (the git-mode
/// reconciler is synchronous).
pub struct SageMaker {
    runtime: Runtime,
    clients: HashMap<(Option<String>, Option<String>), (Client, aws_sdk_cloudwatch::Client)>,
}

/// The private runtime, shut down without waiting when dropped: the controller drops its
/// SageMaker client inside its own async runtime at shutdown, where dropping a runtime the
/// blocking way panics (every SIGTERM did).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        match &self.0 {
            Some(rt) => rt.block_on(f),
            None => unreachable!("the runtime is taken only when dropped"),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl SageMaker {
    /// A client factory; no call is made yet.
    pub fn new() -> std::io::Result<SageMaker> {
        Ok(SageMaker {
            runtime: Runtime(Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?,
            )),
            clients: HashMap::new(),
        })
    }

    fn client(&mut self, at: &Location) -> Client {
        self.clients_for(at).0
    }

    fn clients_for(&mut self, at: &Location) -> (Client, aws_sdk_cloudwatch::Client) {
        let key = (at.region.clone(), at.endpoint_url.clone());
        if let Some(c) = self.clients.get(&key) {
            return c.clone();
        }
        let shared = self.runtime.block_on(async {
            use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
            let http = aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https();
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .http_client(http)
                .retry_config(RetryConfig::standard().with_max_attempts(5));
            if let Some(r) = &at.region {
                loader = loader.region(aws_config::Region::new(r.clone()));
            }
            loader.load().await
        });
        let mut conf = aws_sdk_sagemaker::config::Builder::from(&shared);
        if let Some(url) = &at.endpoint_url {
            conf = conf.endpoint_url(url);
        }
        let client = Client::from_conf(conf.build());
        // CloudWatch from the chain alone (`AWS_ENDPOINT_URL_CLOUDWATCH`): the target's
        // endpoint URL is SageMaker's.
        let alarms = aws_sdk_cloudwatch::Client::new(&shared);
        self.clients.insert(key, (client.clone(), alarms.clone()));
        (client, alarms)
    }
}

async fn live(c: &Client, endpoint: &str) -> Result<Option<Live>, Error> {
    let e = match c.describe_endpoint().endpoint_name(endpoint).send().await {
        Ok(e) => e,
        Err(e) if not_found(&e) => return Ok(None),
        Err(e) => return Err(classify(&format!("DescribeEndpoint {endpoint}"), e)),
    };
    let config = e.endpoint_config_name().unwrap_or_default().to_string();
    let cfg = c
        .describe_endpoint_config()
        .endpoint_config_name(&config)
        .send()
        .await
        .map_err(|err| classify(&format!("DescribeEndpointConfig {config}"), err))?;
    let mut variants = Vec::new();
    for v in cfg.production_variants() {
        variants.push(live_variant(c, v, e.production_variants()).await?);
    }
    for v in cfg.shadow_production_variants() {
        let mut shadow = live_variant(c, v, e.shadow_production_variants()).await?;
        shadow.shadow = true;
        variants.push(shadow);
    }
    let pending = e.pending_deployment_summary().map(|p| {
        let share = p
            .production_variants()
            .iter()
            .filter_map(|v| v.current_weight())
            .fold(0.0_f32, f32::max);
        (
            p.endpoint_config_name().unwrap_or_default().to_string(),
            share,
        )
    });
    let owner = owner_tags(c, endpoint, e.endpoint_arn().unwrap_or_default()).await?;
    Ok(Some(Live {
        status: e
            .endpoint_status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        config,
        variants,
        failure: e.failure_reason().map(str::to_string),
        pending,
        owner,
    }))
}

/// One variant of the endpoint's config as it runs: its Model's image and artifact, and the
/// instances and weight of its summary among `summaries` (else the config's).
async fn live_variant(
    c: &Client,
    v: &ProductionVariant,
    summaries: &[aws_sdk_sagemaker::types::ProductionVariantSummary],
) -> Result<LiveVariant, Error> {
    let name = v.variant_name().unwrap_or_default().to_string();
    let summary = summaries
        .iter()
        .find(|s| s.variant_name() == Some(name.as_str()));
    let model = v.model_name().unwrap_or_default().to_string();
    let (image, artifact) = match c.describe_model().model_name(&model).send().await {
        Ok(m) => m
            .primary_container()
            .map(|p| {
                (
                    p.image().unwrap_or_default().to_string(),
                    p.model_data_url().unwrap_or_default().to_string(),
                )
            })
            .unwrap_or_default(),
        Err(err) if not_found(&err) => (String::new(), String::new()),
        Err(err) => return Err(classify(&format!("DescribeModel {model}"), err)),
    };
    Ok(LiveVariant {
        name,
        model,
        image,
        artifact,
        instance_type: v
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        instance_count: summary
            .and_then(|s| s.current_instance_count())
            .or(v.initial_instance_count())
            .unwrap_or(0)
            .max(0) as u32,
        weight: summary
            .and_then(|s| s.current_weight())
            .or(v.initial_variant_weight())
            .unwrap_or(0.0),
        shadow: false,
    })
}

/// Whose the endpoint at `arn` is: the namespace and deployment of its ownership tags.
async fn owner_tags(
    c: &Client,
    endpoint: &str,
    arn: &str,
) -> Result<Option<(String, String)>, Error> {
    // Whose it is: its ownership tags.
    let tags = c
        .list_tags()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|err| classify(&format!("ListTags {endpoint}"), err))?;
    let tag = |key: &str| {
        tags.tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    Ok(tag(rollout::sagemaker::TAG_NAMESPACE).zip(tag(rollout::sagemaker::TAG_DEPLOYMENT)))
}

/// Creates the Models and the config of `d` unless they exist (names follow content).
async fn prepare(
    c: &Client,
    target: &SageMakerTarget,
    owner: &Owner,
    d: &Desired,
) -> Result<(), Error> {
    for v in &d.variants {
        match c.describe_model().model_name(&v.model).send().await {
            Ok(_) => continue,
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(classify(&format!("DescribeModel {}", v.model), e)),
        }
        let mut req = c
            .create_model()
            .model_name(&v.model)
            .execution_role_arn(&target.execution_role_arn)
            .primary_container(
                ContainerDefinition::builder()
                    .image(&v.image)
                    .model_data_url(&v.artifact)
                    .build(),
            );
        for t in tags(owner, Some(&v.version)) {
            req = req.tags(t);
        }
        req.send()
            .await
            .map_err(|e| classify(&format!("CreateModel {}", v.model), e))?;
    }
    match c
        .describe_endpoint_config()
        .endpoint_config_name(&d.config)
        .send()
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(classify(&format!("DescribeEndpointConfig {}", d.config), e)),
    }
    let mut req = c.create_endpoint_config().endpoint_config_name(&d.config);
    for v in &d.variants {
        let variant = ProductionVariant::builder()
            .variant_name(&v.name)
            .model_name(&v.model)
            .instance_type(ProductionVariantInstanceType::from(
                v.instance_type.as_str(),
            ))
            .initial_instance_count(v.instance_count as i32)
            .initial_variant_weight(v.weight)
            .build();
        req = if v.shadow {
            req.shadow_production_variants(variant)
        } else {
            req.production_variants(variant)
        };
    }
    for t in tags(owner, None) {
        req = req.tags(t);
    }
    req.send()
        .await
        .map_err(|e| classify(&format!("CreateEndpointConfig {}", d.config), e))?;
    Ok(())
}

/// Deletes this deployment's configs and Models except `keep` (by the endpoint's name prefix
/// and Slipway's naming); returns what was deleted.
async fn collect(c: &Client, endpoint: &str, keep: &[String]) -> Result<Vec<String>, Error> {
    let prefix = format!("{}-", rollout::sagemaker::sanitize(endpoint, 63 - 11));
    let mut deleted = Vec::new();
    let configs = c
        .list_endpoint_configs()
        .name_contains(&prefix)
        .max_results(100)
        .send()
        .await
        .map_err(|e| classify("ListEndpointConfigs", e))?;
    for s in configs.endpoint_configs() {
        let name = s.endpoint_config_name().unwrap_or_default();
        if name.starts_with(&prefix) && !keep.iter().any(|k| k == name) {
            c.delete_endpoint_config()
                .endpoint_config_name(name)
                .send()
                .await
                .map_err(|e| classify(&format!("DeleteEndpointConfig {name}"), e))?;
            deleted.push(format!("EndpointConfig {name}"));
        }
    }
    let models = c
        .list_models()
        .name_contains(&prefix)
        .max_results(100)
        .send()
        .await
        .map_err(|e| classify("ListModels", e))?;
    for m in models.models() {
        let name = m.model_name().unwrap_or_default();
        if name.starts_with(&format!("{prefix}v")) && !keep.iter().any(|k| k == name) {
            c.delete_model()
                .model_name(name)
                .send()
                .await
                .map_err(|e| classify(&format!("DeleteModel {name}"), e))?;
            deleted.push(format!("Model {name}"));
        }
    }
    Ok(deleted)
}

impl Endpoints for SageMaker {
    fn live(&mut self, at: &Location, endpoint: &str) -> Result<Option<Live>, Error> {
        let c = self.client(at);
        self.runtime.block_on(live(&c, endpoint))
    }

    fn apply(
        &mut self,
        at: &Location,
        target: &SageMakerTarget,
        owner: &Owner,
        call: &Call,
    ) -> Result<Vec<String>, Error> {
        let c = self.client(at);
        self.runtime.block_on(async {
            match call {
                Call::Create(d) => {
                    prepare(&c, target, owner, d).await?;
                    let mut req = c
                        .create_endpoint()
                        .endpoint_name(&d.endpoint)
                        .endpoint_config_name(&d.config);
                    for t in tags(owner, None) {
                        req = req.tags(t);
                    }
                    req.send()
                        .await
                        .map_err(|e| classify(&format!("CreateEndpoint {}", d.endpoint), e))?;
                    Ok(vec![format!(
                        "created endpoint {} ({})",
                        d.endpoint, d.config
                    )])
                }
                Call::Update(d, guardrails) => {
                    prepare(&c, target, owner, d).await?;
                    let mut req = c
                        .update_endpoint()
                        .endpoint_name(&d.endpoint)
                        .endpoint_config_name(&d.config);
                    if let Some(g) = guardrails {
                        req = req.deployment_config(deployment_config(g));
                    }
                    req.send()
                        .await
                        .map_err(|e| classify(&format!("UpdateEndpoint {}", d.endpoint), e))?;
                    Ok(vec![format!(
                        "updating endpoint {} to {}",
                        d.endpoint, d.config
                    )])
                }
                Call::Weights(d) => {
                    let mut req = c
                        .update_endpoint_weights_and_capacities()
                        .endpoint_name(&d.endpoint);
                    // A shadow's share is its config's (a new config changes it).
                    for v in d.variants.iter().filter(|v| !v.shadow) {
                        req = req.desired_weights_and_capacities(
                            DesiredWeightAndCapacity::builder()
                                .variant_name(&v.name)
                                .desired_weight(v.weight)
                                .desired_instance_count(v.instance_count as i32)
                                .build(),
                        );
                    }
                    req.send().await.map_err(|e| {
                        classify(
                            &format!("UpdateEndpointWeightsAndCapacities {}", d.endpoint),
                            e,
                        )
                    })?;
                    Ok(vec![format!("set the weights of endpoint {}", d.endpoint)])
                }
                Call::Collect { config, models } => {
                    let mut keep = models.clone();
                    keep.push(config.clone());
                    collect(&c, &target.endpoint_name, &keep).await
                }
            }
        })
    }

    fn alarms(&mut self, at: &Location, names: &[String]) -> Result<Vec<(String, String)>, Error> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let (_, cw) = self.clients_for(at);
        self.runtime.block_on(async {
            let out = cw
                .describe_alarms()
                .set_alarm_names(Some(names.to_vec()))
                .send()
                .await
                .map_err(|e| classify("DescribeAlarms", e))?;
            Ok(out
                .metric_alarms()
                .iter()
                .map(|a| {
                    (
                        a.alarm_name().unwrap_or_default().to_string(),
                        a.state_value()
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect())
        })
    }

    fn delete(&mut self, at: &Location, endpoint: &str) -> Result<Vec<String>, Error> {
        let c = self.client(at);
        self.runtime.block_on(async {
            let mut deleted = Vec::new();
            match c.delete_endpoint().endpoint_name(endpoint).send().await {
                Ok(_) => deleted.push(format!("Endpoint {endpoint}")),
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(classify(&format!("DeleteEndpoint {endpoint}"), e)),
            }
            deleted.extend(collect(&c, endpoint, &[]).await?);
            Ok(deleted)
        })
    }
}
