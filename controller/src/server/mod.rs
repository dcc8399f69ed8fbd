//! The HTTP server of `slipway run --listen`: health, readiness, Prometheus metrics, a read API
//! over the state store, and the evaluation reports.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::json;

use crate::store::{HistoryFilter, Store};

mod ui;

/// Label set of counters by one string label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByKind {
    /// The category, event or result.
    pub kind: String,
}

/// The metrics `slipway run` keeps.
pub struct Metrics {
    registry: Registry,
    /// Reconcile passes.
    pub reconciles: Counter,
    /// Failures by category (`invalid-revision`, `fetch`, `store-io`, …).
    pub failures: Family<ByKind, Counter>,
    /// Evaluation durations (seconds).
    pub evaluation_seconds: Histogram,
    /// Rollout events by kind.
    pub rollout_events: Family<ByKind, Counter>,
    /// Notification deliveries by result (`delivered`, `failed`).
    pub notifications: Family<ByKind, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("slipway");
        let reconciles = Counter::default();
        let failures = Family::<ByKind, Counter>::default();
        let evaluation_seconds = Histogram::new(exponential_buckets(0.1, 2.0, 14));
        let rollout_events = Family::<ByKind, Counter>::default();
        let notifications = Family::<ByKind, Counter>::default();
        registry.register("reconciles", "Reconcile passes", reconciles.clone());
        registry.register("failures", "Failures by category", failures.clone());
        registry.register(
            "evaluation_duration_seconds",
            "Evaluation run time",
            evaluation_seconds.clone(),
        );
        registry.register(
            "rollout_events",
            "Rollout steps, successes and rollbacks",
            rollout_events.clone(),
        );
        registry.register(
            "notification_deliveries",
            "Notification deliveries by result",
            notifications.clone(),
        );
        Metrics {
            registry,
            reconciles,
            failures,
            evaluation_seconds,
            rollout_events,
            notifications,
        }
    }
}

impl Metrics {
    /// Counts what a batch of history entries says happened.
    pub fn observe(&self, entries: &[crate::store::HistoryEntry]) {
        for e in entries {
            match e.event.as_str() {
                "EvaluationCompleted" => {
                    if let Some(secs) = e.data.get("seconds").and_then(|v| v.as_f64()) {
                        self.evaluation_seconds.observe(secs);
                    }
                }
                "RolloutStarted" | "StepStarted" | "RolloutSucceeded" | "RolledBack"
                | "RolloutFailed" | "RolloutSuperseded" | "ServerRestarted" => {
                    self.rollout_events
                        .get_or_create(&ByKind {
                            kind: e.event.clone(),
                        })
                        .inc();
                }
                "NotificationDelivered" => {
                    self.notifications
                        .get_or_create(&ByKind {
                            kind: "delivered".into(),
                        })
                        .inc();
                }
                "NotificationFailed" => {
                    self.notifications
                        .get_or_create(&ByKind {
                            kind: "failed".into(),
                        })
                        .inc();
                }
                _ => {}
            }
        }
    }

    /// Counts a failure.
    pub fn fail(&self, kind: &str) {
        self.failures
            .get_or_create(&ByKind { kind: kind.into() })
            .inc();
    }
}

/// What `/readyz` reports.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Readiness {
    /// The revision in force.
    pub revision: Option<String>,
    /// A newer revision that was rejected, and why.
    pub rejected: Option<String>,
    /// Errors of the rejected revision.
    pub errors: Vec<String>,
}

/// Shared with the reconciler loop.
pub struct Shared {
    /// The store.
    pub store: Arc<Store>,
    /// Metrics.
    pub metrics: Metrics,
    /// Readiness.
    pub ready: Mutex<Readiness>,
    /// The state folder (reports live under it).
    pub state_dir: std::path::PathBuf,
    /// The objects of the revision in force, as JSON (`models`, `versions`, `aliases`), for the UI.
    pub catalog: Mutex<serde_json::Value>,
    /// SHA-256 of the token that write requests (`retry`) must bring; `None` turns them off.
    pub api_token_sha256: Option<[u8; 32]>,
}

type S = Arc<Shared>;

fn json_or_500<T: serde::Serialize>(v: Result<T, crate::store::StoreError>) -> Response {
    match v {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    model: Option<String>,
    alias: Option<String>,
    until: Option<chrono::DateTime<chrono::Utc>>,
}

async fn metrics(State(s): State<S>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.metrics.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(s): State<S>) -> Response {
    let r = s.ready.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let ok = r.revision.is_some() && r.rejected.is_none();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({"ready": ok, "revision": r.revision, "rejected": r.rejected, "errors": r.errors})))
        .into_response()
}

async fn statuses(State(s): State<S>, Path(kind): Path<String>) -> Response {
    if kind == "models" {
        let catalog = s.catalog.lock().unwrap_or_else(|p| p.into_inner()).clone();
        return axum::Json(catalog["models"].clone()).into_response();
    }
    let kind = match kind.as_str() {
        "versions" => "ModelVersion",
        "aliases" => "ModelAlias",
        "evaluations" => "Evaluation",
        "deployments" => "ModelDeployment",
        _ => {
            return (
                StatusCode::NOT_FOUND,
                "try models, versions, aliases, evaluations, deployments or history",
            )
                .into_response();
        }
    };
    // Evaluations also carry their spec (model, version, suite), so `slipway plan --results URL`
    // can read them as documents.
    let specs: std::collections::HashMap<(String, String), serde_json::Value> =
        if kind == "Evaluation" {
            let catalog = s.catalog.lock().unwrap_or_else(|p| p.into_inner());
            catalog["evaluations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let key = (
                        e["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or("default")
                            .to_string(),
                        e["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    );
                    (key, e["spec"].clone())
                })
                .collect()
        } else {
            Default::default()
        };
    json_or_500(s.store.statuses(kind).map(|rows| {
        rows.into_iter()
            .map(|(ns, name, status)| {
                let mut row = json!({"namespace": ns, "name": name, "status": status});
                if let Some(spec) = specs.get(&(ns, name)) {
                    row["spec"] = spec.clone();
                }
                row
            })
            .collect::<Vec<_>>()
    }))
}

async fn history(State(s): State<S>, Query(q): Query<HistoryQuery>) -> Response {
    json_or_500(s.store.history(&HistoryFilter {
        model: q.model,
        alias: q.alias,
        until: q.until,
        after_id: None,
    }))
}

async fn report(State(s): State<S>, Path((ns, file)): Path<(String, String)>) -> Response {
    let ok_name =
        |x: &str| !x.is_empty() && !x.contains('/') && !x.contains("..") && !x.starts_with('.');
    if !ok_name(&ns) || !ok_name(&file) || !(file.ends_with(".html") || file.ends_with(".md")) {
        return (StatusCode::NOT_FOUND, "no such report").into_response();
    }
    match std::fs::read(s.state_dir.join("reports").join(&ns).join(&file)) {
        Ok(bytes) => {
            let ty = if file.ends_with(".html") {
                "text/html; charset=utf-8"
            } else {
                "text/markdown; charset=utf-8"
            };
            ([(header::CONTENT_TYPE, ty)], bytes).into_response()
        }
        Err(_) => (StatusCode::NOT_FOUND, "no such report").into_response(),
    }
}

async fn post_results(
    State(s): State<S>,
    Path((ns, name)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let token = bearer(&headers);
    match crate::reconcile::external::accept(&s.store, &ns, &name, token, &body) {
        Ok(()) => (StatusCode::ACCEPTED, axum::Json(json!({"accepted": true}))).into_response(),
        Err((code, message)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
            (status, axum::Json(json!({"error": message}))).into_response()
        }
    }
}

/// The bearer token of a request, if any.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

#[derive(Deserialize)]
struct RetryRequest {
    version: Option<String>,
    actor: Option<String>,
}

async fn post_retry(
    State(s): State<S>,
    Path((ns, name)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let error = |status: StatusCode, message: String| {
        (status, axum::Json(json!({"error": message}))).into_response()
    };
    let Some(want) = s.api_token_sha256 else {
        return error(
            StatusCode::FORBIDDEN,
            "write requests are off on this instance; start `slipway run` with --api-token-file"
                .into(),
        );
    };
    use sha2::Digest;
    let given = bearer(&headers).map(|t| <[u8; 32]>::from(sha2::Sha256::digest(t.as_bytes())));
    // Digests of equal length: comparing them leaks nothing about the token itself.
    if given != Some(want) {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token; send the token in the instance's --api-token-file"
                .into(),
        );
    }
    let request: RetryRequest = if body.is_empty() {
        RetryRequest {
            version: None,
            actor: None,
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("body must be {{\"version\": \"…\"}} or empty: {e}"),
                );
            }
        }
    };
    let actor = request.actor.map(|a| format!("{a} (api)"));
    match crate::reconcile::retry::request_retry(
        &s.store,
        &ns,
        &name,
        request.version.as_deref(),
        actor.or(Some("api".into())),
    ) {
        Ok(versions) => axum::Json(json!({"versions": versions})).into_response(),
        Err(crate::reconcile::retry::RetryError::NothingToRetry(m)) => {
            error(StatusCode::CONFLICT, m)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The routes.
pub fn router(shared: S) -> Router {
    Router::new()
        .route("/", get(ui::index))
        .route("/ui/{ns}/{model}", get(ui::model))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/history", get(history))
        .route("/api/v1/{kind}", get(statuses))
        .route(
            "/api/v1/evaluations/{ns}/{name}/results",
            axum::routing::post(post_results),
        )
        .route(
            "/api/v1/deployments/{ns}/{name}/retry",
            axum::routing::post(post_retry),
        )
        .route("/reports/{ns}/{file}", get(report))
        .with_state(shared)
}

/// Serves on `addr` from a runtime of its own, on a background thread; returns the bound address.
pub fn spawn(addr: SocketAddr, shared: S) -> std::io::Result<SocketAddr> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(addr))?;
    let bound = listener.local_addr()?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let _ = axum::serve(listener, router(shared)).await;
        })
    });
    Ok(bound)
}
