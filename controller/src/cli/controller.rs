//! `slipway controller`: Kubernetes mode — the admission webhook over TLS, health endpoints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::modes::kubernetes::cache::Cache;
use crate::modes::kubernetes::{cluster::ClusterReader, tls, webhook};

/// Log formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `slipway controller`.
#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Serve /healthz and /readyz on this address.
    #[arg(long, default_value = "0.0.0.0:8080", env = "SLIPWAY_LISTEN", value_parser = super::socket_addr)]
    pub listen: SocketAddr,
    /// Serve the admission webhook (`/validate`, `/mutate`) over TLS on this address.
    #[arg(long, env = "SLIPWAY_WEBHOOK_LISTEN", value_parser = super::socket_addr)]
    pub webhook_listen: Option<SocketAddr>,
    /// The webhook's certificate (PEM); without it a self-signed one is generated at start.
    #[arg(long, env = "SLIPWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The webhook's private key (PEM).
    #[arg(long, env = "SLIPWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Names the generated certificate is valid for (repeatable), e.g. the Service's
    /// `slipway.slipway.svc`; default `localhost` and `127.0.0.1`.
    #[arg(
        long = "webhook-host",
        env = "SLIPWAY_WEBHOOK_HOSTS",
        value_delimiter = ','
    )]
    pub webhook_hosts: Vec<String>,
    /// Keep the generated certificate in this Secret (of the pod's namespace), so that every
    /// replica serves the same one: the first writes it, the others read it.
    #[arg(long, env = "SLIPWAY_WEBHOOK_SECRET")]
    pub webhook_secret: Option<String>,
    /// Validating and mutating webhook configurations (same name) whose `caBundle` the
    /// controller sets to its certificate at start.
    #[arg(long, env = "SLIPWAY_WEBHOOK_CONFIG")]
    pub webhook_config: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SLIPWAY_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SLIPWAY_NAMESPACE")]
    pub namespace: Option<String>,
    /// Namespace of the leader-election Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "slipway-controller")]
    pub lease_name: String,
    /// The URL external (`webhook`-runner) evaluations post results to and reports are linked
    /// from (this process's `--listen` as they reach it, e.g. `http://slipway.slipway.svc:8080`);
    /// default `http://` + `--listen`.
    #[arg(long, env = "SLIPWAY_RESULTS_URL")]
    pub results_url: Option<String>,
    /// Serve the webhook only; run no controllers.
    #[arg(long)]
    pub webhook_only: bool,
    /// Hosts that requests built from objects (notifications, `webhook` runners; they carry
    /// secrets and results tokens) may go to: `hooks.slack.com`, `*.example.com`, or `*`.
    /// None: no such request is sent.
    #[arg(long, env = "SLIPWAY_ALLOWED_DESTINATIONS", value_delimiter = ',')]
    pub allowed_destinations: Vec<String>,
    /// Images evaluation Jobs and model Deployments may run: exact, a prefix ending in `*`, `*`.
    #[arg(long, env = "SLIPWAY_ALLOWED_IMAGES", value_delimiter = ',')]
    pub allowed_images: Vec<String>,
    /// Service accounts evaluation Jobs may name (none named: the namespace's default).
    #[arg(long, env = "SLIPWAY_ALLOWED_SERVICE_ACCOUNTS", value_delimiter = ',')]
    pub allowed_service_accounts: Vec<String>,
    /// The most CPU a container may request or be limited to (a quantity: `4`, `500m`).
    #[arg(long, env = "SLIPWAY_MAX_CPU")]
    pub max_cpu: Option<String>,
    /// The most memory a container may request or be limited to (a quantity: `16Gi`).
    #[arg(long, env = "SLIPWAY_MAX_MEMORY")]
    pub max_memory: Option<String>,
    /// SageMaker API addresses a deployment's `endpointUrl` may name (origins, https).
    #[arg(long, env = "SLIPWAY_ALLOWED_ENDPOINT_URLS", value_delimiter = ',')]
    pub allowed_endpoint_urls: Vec<String>,
    /// Execution roles a SageMaker deployment may pass: ARNs, or a prefix ending in `*`.
    #[arg(long, env = "SLIPWAY_ALLOWED_EXECUTION_ROLES", value_delimiter = ',')]
    pub allowed_execution_roles: Vec<String>,
    /// Resources beyond cpu, memory and ephemeral-storage containers may ask for
    /// (`nvidia.com/gpu`): exact, or a prefix ending in `*`.
    #[arg(
        long,
        env = "SLIPWAY_ALLOWED_EXTENDED_RESOURCES",
        value_delimiter = ','
    )]
    pub allowed_extended_resources: Vec<String>,
    /// The longest an evaluation attempt may run (a suite's `timeout`), e.g. `24h`.
    #[arg(long, env = "SLIPWAY_MAX_TIMEOUT", default_value = "24h")]
    pub max_timeout: String,
    /// Groups whose members may withdraw (delete) anyone's Approval; otherwise only its approver.
    #[arg(
        long,
        env = "SLIPWAY_APPROVAL_WITHDRAWERS",
        value_delimiter = ',',
        default_value = "system:masters"
    )]
    pub approval_withdrawers: Vec<String>,
    /// SageMaker instance types deployments may use: exact, or a prefix ending in `*`.
    #[arg(long, env = "SLIPWAY_ALLOWED_INSTANCE_TYPES", value_delimiter = ',')]
    pub allowed_instance_types: Vec<String>,
    /// The most instances a SageMaker deployment may ask for.
    #[arg(long, env = "SLIPWAY_MAX_INSTANCE_COUNT", default_value = "4")]
    pub max_instance_count: Option<u32>,
    /// Taint keys model-server pods may tolerate: exact, or a prefix ending in `*`.
    #[arg(long, env = "SLIPWAY_ALLOWED_TOLERATIONS", value_delimiter = ',')]
    pub allowed_tolerations: Vec<String>,
    /// Git repositories a rollback may be written back to (`URL`, or `URL=OWNER/NAME` for where
    /// its pull request is opened; a github.com URL names its own), as ModelAliases name them
    /// in `slipway.dev/source-repository`. None: rollbacks are not written back.
    #[arg(long, env = "SLIPWAY_WRITE_BACK_REPOSITORIES", value_delimiter = ',')]
    pub write_back_repositories: Vec<String>,
    /// Where written-back rollbacks open their pull requests.
    #[command(flatten)]
    pub github: super::GitHubArgs,
    /// The namespace whose policies govern every namespace without policies of its own.
    #[arg(long, env = "SLIPWAY_POLICY_NAMESPACE", default_value = "default")]
    pub policy_namespace: String,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(super::colour(std::io::IsTerminal::is_terminal(
            &std::io::stderr(),
        )))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Sets `caBundle` of every webhook (named in `hooks`) of configuration `name`, if it exists.
async fn set_ca<K>(
    api: Api<K>,
    name: &str,
    bundle: &str,
    hooks: impl Fn(K) -> Vec<String>,
) -> anyhow::Result<bool>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(cfg) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let hooks: Vec<serde_json::Value> = hooks(cfg)
        .into_iter()
        .map(|w| serde_json::json!({"name": w, "clientConfig": {"caBundle": bundle}}))
        .collect();
    // A strategic merge patch merges webhooks by name.
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Strategic(serde_json::json!({"webhooks": hooks})),
    )
    .await?;
    Ok(true)
}

/// Keeps `caBundle` of the configurations named `name` on this certificate for as long as the
/// controller runs: a configuration replaced (a Helm upgrade, `kubectl apply` of its manifest)
/// loses it, and the API server then fails every admission call on TLS. Both kinds are
/// watched, and a webhook whose bundle is not this certificate gets it again (as
/// cert-manager's cainjector does).
fn keep_ca(client: kube::Client, name: &str, ca: &str) {
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca);
    // Each webhook's name and caBundle, for either kind (their webhook types differ).
    macro_rules! bundles {
        ($kind:ty) => {
            |c: &$kind| {
                c.webhooks
                    .iter()
                    .flatten()
                    .map(|w| {
                        (
                            w.name.clone(),
                            w.client_config.ca_bundle.as_ref().map(|b| b.0.clone()),
                        )
                    })
                    .collect()
            }
        };
    }
    tokio::spawn(keep_ca_of(
        Api::<ValidatingWebhookConfiguration>::all(client.clone()),
        name.to_string(),
        ca.to_string(),
        bundle.clone(),
        bundles!(ValidatingWebhookConfiguration),
    ));
    tokio::spawn(keep_ca_of(
        Api::<MutatingWebhookConfiguration>::all(client),
        name.to_string(),
        ca.to_string(),
        bundle,
        bundles!(MutatingWebhookConfiguration),
    ));
}

/// A webhook's name and the `caBundle` it holds.
type HookBundle = (String, Option<Vec<u8>>);

/// Watches configuration `name` of one kind and sets `bundle` (base64 of `ca`) again on its
/// webhooks whenever one of them holds another (by `hooks`: each webhook's name and bundle).
async fn keep_ca_of<K>(
    api: Api<K>,
    name: String,
    ca: String,
    bundle: String,
    hooks: fn(&K) -> Vec<HookBundle>,
) where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default,
{
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api.clone(), config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let cfg = match event {
            Ok(cfg) => cfg,
            Err(e) => {
                tracing::warn!(configuration = %name, error = %e, "cannot watch the webhook configuration (the controller needs list and watch on it)");
                continue;
            }
        };
        let webhooks = hooks(&cfg);
        // Only a bundle that is gone is set again: one that holds another certificate is
        // someone's (another replica's, cert-manager's), and overwriting it would start a
        // tug of war.
        if webhooks
            .iter()
            .all(|(_, b)| b.as_ref().is_some_and(|b| !b.is_empty()))
        {
            if webhooks
                .iter()
                .any(|(_, b)| b.as_deref() != Some(ca.as_bytes()))
            {
                tracing::warn!(configuration = %name, "a webhook's caBundle is another certificate than this replica serves; left as it is (give every replica the same --webhook-secret)");
            }
            continue;
        }
        let names: Vec<String> = webhooks.into_iter().map(|(n, _)| n).collect();
        match set_ca(api.clone(), &name, &bundle, |_| names.clone()).await {
            Ok(_) => {
                tracing::info!(configuration = %name, kind = %K::kind(&Default::default()), "webhook caBundle set again (the configuration was replaced)")
            }
            Err(e) => {
                tracing::warn!(configuration = %name, error = %e, "cannot set the webhook caBundle again")
            }
        }
    }
}

/// Sets `caBundle` of every webhook in the configurations named `name`.
async fn publish_ca(client: kube::Client, name: &str, ca: &str) -> anyhow::Result<()> {
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca);
    let validating = set_ca(
        Api::<ValidatingWebhookConfiguration>::all(client.clone()),
        name,
        &bundle,
        |c| c.webhooks.into_iter().flatten().map(|w| w.name).collect(),
    )
    .await?;
    let mutating = set_ca(
        Api::<MutatingWebhookConfiguration>::all(client),
        name,
        &bundle,
        |c| c.webhooks.into_iter().flatten().map(|w| w.name).collect(),
    )
    .await?;
    let found = validating || mutating;
    if !found {
        anyhow::bail!(
            "--webhook-config {name}: no ValidatingWebhookConfiguration or MutatingWebhookConfiguration of that name; install the Helm chart or create them first"
        );
    }
    Ok(())
}

pub fn run(args: ControllerArgs) -> anyhow::Result<i32> {
    init_logs(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: ControllerArgs) -> anyhow::Result<i32> {
    // Bad bounds flags are refused before anything starts.
    let bounds = Arc::new(args.bounds()?);
    let write_back = crate::modes::kubernetes::writeback::Settings::of_flags(
        &args.write_back_repositories,
        args.github.token()?,
    )?;
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the Kubernetes API: {e}; set KUBECONFIG or run inside a cluster"
        )
    })?;
    let metrics = Arc::new(crate::modes::kubernetes::metrics::Metrics::default());
    let (home, results_url) = serve_http(&args, &client, &metrics).await?;
    let mut warnings = crate::modes::kubernetes::setup::warnings(
        args.webhook_listen.is_some(),
        &bounds,
        &results_url,
    );
    warnings.extend(
        crate::modes::kubernetes::service_accounts::missing_at_start(
            &client,
            args.namespace.as_deref(),
            &bounds.named_service_accounts(),
        )
        .await,
    );
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let _ = home.warnings.set(warnings);

    // One watch per kind for this replica: the webhook decides from it at once, the controllers
    // when this replica leads.
    let cache = Cache::start(&client, args.namespace.as_deref(), &args.policy_namespace);
    let _ = home.cache.set(cache.clone());
    let mut webhook_task = None;
    if let Some(addr) = args.webhook_listen {
        let task = serve_webhook(&args, addr, &client, &cache, &metrics, &bounds).await?;
        webhook_task = Some(task);
    }

    let stop_rx = until_stopped();
    if !args.webhook_only {
        lead(
            client,
            cache,
            &args,
            bounds,
            results_url,
            metrics.clone(),
            write_back,
            stop_rx.clone(),
        )
        .await;
    } else {
        let mut rx = stop_rx.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
    tracing::info!("stopped");
    if let Some(t) = webhook_task {
        t.abort();
    }
    Ok(0)
}

/// Serves the health endpoints, metrics, the results API and reports in the background;
/// returns the home they serve and the results API's address as users reach it.
async fn serve_http(
    args: &ControllerArgs,
    client: &kube::Client,
    metrics: &Arc<crate::modes::kubernetes::metrics::Metrics>,
) -> anyhow::Result<(Arc<crate::modes::kubernetes::http::ClusterHome>, String)> {
    let home = Arc::new(crate::modes::kubernetes::http::ClusterHome {
        client: client.clone(),
        metrics: metrics.clone(),
        reports_url: Default::default(),
        cache: Default::default(),
        warnings: Default::default(),
    });
    let listener = crate::edges::http::bind(args.listen).await?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "serving /healthz, /readyz, /metrics, the results API and reports");
    let results_url = args
        .results_url
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    // Reports are linked from the results API's address as users reach it.
    let _ = home
        .reports_url
        .set(results_url.trim_end_matches('/').to_string());
    let router = crate::edges::http::router(home.clone());
    tokio::spawn(crate::edges::http::serve::serve(listener, router, None));
    Ok((home, results_url))
}

/// Serves the admission webhook over TLS on `addr` and publishes its CA when asked to; returns
/// the serving task.
async fn serve_webhook(
    args: &ControllerArgs,
    addr: SocketAddr,
    client: &kube::Client,
    cache: &Arc<Cache>,
    metrics: &Arc<crate::modes::kubernetes::metrics::Metrics>,
    bounds: &Arc<crate::decide::bounds::Bounds>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let pem = webhook_certificate(args, client).await?;
    let config = tls::server_config(&pem)?;
    let hook = Arc::new(webhook::Webhook {
        cache: cache.clone(),
        watched: args.namespace.clone(),
        reader: ClusterReader::new(client.clone(), &args.policy_namespace),
        metrics: metrics.clone(),
        bounds: bounds.clone(),
        withdrawers: args.approval_withdrawers.clone(),
    });
    let (bound, task) = webhook::serve_tls(addr, config, webhook::router(hook))
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot listen on {addr}: {e}; pass another --webhook-listen")
        })?;
    tracing::info!(address = %bound, "serving the admission webhook (/validate, /mutate) over TLS");
    if let Some(name) = &args.webhook_config {
        publish_ca(client.clone(), name, &pem.cert).await?;
        tracing::info!(configuration = %name, "webhook caBundle set");
        keep_ca(client.clone(), name, &pem.cert);
    }
    Ok(task)
}

/// The webhook's certificate: the given files, else the one shared in the named Secret, else a
/// self-signed one for the webhook's hosts.
async fn webhook_certificate(
    args: &ControllerArgs,
    client: &kube::Client,
) -> anyhow::Result<tls::Pem> {
    Ok(match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => tls::read(c, k)?,
        _ => {
            let mut hosts = args.webhook_hosts.clone();
            if hosts.is_empty() {
                hosts = vec!["localhost".into(), "127.0.0.1".into()];
            }
            match &args.webhook_secret {
                Some(secret) => tls::shared(client, &args.lease_namespace, secret, &hosts).await?,
                None => tls::self_signed(&hosts)?,
            }
        }
    })
}

/// Watches for SIGTERM and Ctrl-C in the background; the receiver turns true on either.
fn until_stopped() -> tokio::sync::watch::Receiver<bool> {
    // Until SIGTERM or Ctrl-C.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
        let _ = stop_tx.send(true);
    });
    stop_rx
}

/// This replica's name in the Lease and in events.
fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        format!("{host}-{}", std::process::id())
    })
}

/// Runs the controllers while this replica holds the Lease, until `stop`.
#[allow(clippy::too_many_arguments)]
async fn lead(
    client: kube::Client,
    cache: Arc<Cache>,
    args: &ControllerArgs,
    bounds: Arc<crate::decide::bounds::Bounds>,
    results_url: String,
    metrics: Arc<crate::modes::kubernetes::metrics::Metrics>,
    write_back: Option<Arc<crate::modes::kubernetes::writeback::Settings>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use crate::modes::kubernetes::lease::{DURATION, Elector, RENEW};
    let me = identity();
    let elector = Elector::new(client.clone(), &args.lease_namespace, &args.lease_name, &me);
    let mut running: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )> = None;
    let mut last_held = std::time::Instant::now() - DURATION;
    loop {
        let held = match elector.try_hold().await {
            Ok(true) => {
                last_held = std::time::Instant::now();
                true
            }
            Ok(false) => false,
            // Keep acting through brief API errors, but stop well before the lease can expire.
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the leader lease");
                last_held.elapsed() < DURATION.saturating_sub(RENEW * 2)
            }
        };
        match (held, running.is_some()) {
            (true, false) => {
                tracing::info!(identity = %me, lease = %args.lease_name, "acquired leadership; starting controllers");
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(crate::modes::kubernetes::wiring::run(
                    client.clone(),
                    cache.clone(),
                    args.namespace.clone(),
                    me.clone(),
                    bounds.clone(),
                    results_url.clone(),
                    metrics.clone(),
                    write_back.clone(),
                    async move {
                        let _ = rx.await;
                    },
                ));
                running = Some((tx, task));
                metrics.leader.set(1);
            }
            (false, true) => {
                tracing::warn!(identity = %me, "lost leadership; stopping controllers");
                metrics.leader.set(0);
                if let Some((tx, task)) = running.take() {
                    let _ = tx.send(());
                    let _ = task.await;
                }
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(RENEW) => {}
            _ = stop.wait_for(|s| *s) => {
                if let Some((tx, task)) = running.take() {
                    let _ = tx.send(());
                    let _ = task.await;
                    elector.release().await;
                    tracing::info!(identity = %me, "released leadership");
                }
                return;
            }
        }
    }
}
