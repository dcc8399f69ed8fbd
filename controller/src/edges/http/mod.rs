//! The one HTTP server of both homes (`slipway run --listen` and `slipway controller --listen`):
//! health, readiness, Prometheus metrics, the results API external jobs post to, the retry API
//! and the evaluation reports. A home ([`Home`]) answers each route from where it keeps its
//! state (SQLite in git mode, the cluster in Kubernetes mode) and may add routes of its own
//! (git mode's read API and web UI). Request parsing, bearer tokens, report names and the shapes
//! of answers are decided here, once.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub mod hooks;
pub mod serve;
pub mod token;

/// An answer of the API: an HTTP status and a JSON body (`{"error": …}` for failures).
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

impl Reply {
    /// A success.
    pub fn ok(status: u16, body: Value) -> Self {
        Reply { status, body }
    }

    /// A failure with a message that says what to do.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Reply {
            status,
            body: json!({"error": message.into()}),
        }
    }
}

impl From<Result<Value, (u16, String)>> for Reply {
    fn from(r: Result<Value, (u16, String)>) -> Self {
        match r {
            Ok(body) => Reply::ok(200, body),
            Err((status, message)) => Reply::error(status, message),
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body)).into_response()
    }
}

/// A posted request: path parameters, the bearer token (if any) and the body.
#[derive(Clone, Debug)]
pub struct Posted {
    /// Namespace.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// The `Authorization: Bearer` token.
    pub token: Option<String>,
    /// The raw body.
    pub body: bytes::Bytes,
}

/// Where a home keeps its state, as the server asks for it.
pub trait Home: Send + Sync + 'static {
    /// Whether this instance is ready, and the details `/readyz` shows.
    fn readiness(&self) -> (bool, Value);

    /// The OpenMetrics text of `/metrics`.
    fn metrics(&self) -> Result<String, String>;

    /// `POST /api/v1/evaluations/{ns}/{name}/results`: an external job's results.
    fn post_results(&self, posted: Posted) -> impl Future<Output = Reply> + Send;

    /// `POST /api/v1/deployments/{ns}/{name}/retry`: retry a rejected version.
    fn post_retry(&self, posted: Posted) -> impl Future<Output = Reply> + Send {
        async move {
            Reply::error(
                404,
                format!(
                    "retry over HTTP is served by `slipway run`; in a cluster, annotate the deployment (who may is up to RBAC): kubectl annotate -n {} mdeploy {} slipway.dev/retry=VERSION",
                    posted.namespace, posted.name
                ),
            )
        }
    }

    /// `POST /api/v1/evaluations/{ns}/{name}/retry`: run an evaluation that failed without
    /// results again.
    fn post_evaluation_retry(&self, posted: Posted) -> impl Future<Output = Reply> + Send {
        async move {
            Reply::error(
                404,
                format!(
                    "retry over HTTP is served by `slipway run`; in a cluster, annotate the evaluation (who may is up to RBAC): kubectl annotate -n {} meval {} slipway.dev/retry=",
                    posted.namespace, posted.name
                ),
            )
        }
    }

    /// The report of evaluation `ns/name` in `format` (`html` or `md`), for the caller with
    /// bearer `token`; the error is (HTTP status, message).
    fn report(
        &self,
        namespace: String,
        name: String,
        format: String,
        token: Option<String>,
    ) -> impl Future<Output = Result<String, (u16, String)>> + Send;

    /// Routes only this home serves (git mode: the read API and the web UI).
    fn routes(self: &Arc<Self>) -> Router {
        Router::new()
    }
}

async fn readyz<H: Home>(State(h): State<Arc<H>>) -> Response {
    let (ok, details) = h.readiness();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(details)).into_response()
}

async fn metrics<H: Home>(State(h): State<Arc<H>>) -> Response {
    match h.metrics() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

fn posted(ns: String, name: String, headers: &HeaderMap, body: bytes::Bytes) -> Posted {
    Posted {
        namespace: ns,
        name,
        token: token::bearer_of(headers),
        body,
    }
}

async fn results<H: Home>(
    State(h): State<Arc<H>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Reply {
    h.post_results(posted(ns, name, &headers, body)).await
}

async fn retry<H: Home>(
    State(h): State<Arc<H>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Reply {
    h.post_retry(posted(ns, name, &headers, body)).await
}

async fn evaluation_retry<H: Home>(
    State(h): State<Arc<H>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Reply {
    h.post_evaluation_retry(posted(ns, name, &headers, body))
        .await
}

/// `/reports/{ns}/{name}.html|md`: names that could leave the reports folder are refused here.
async fn report<H: Home>(
    State(h): State<Arc<H>>,
    Path((ns, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let plain =
        |x: &str| !x.is_empty() && !x.contains('/') && !x.contains("..") && !x.starts_with('.');
    let (name, format) = file.rsplit_once('.').unwrap_or((&file, ""));
    if !plain(&ns) || !plain(name) || !matches!(format, "html" | "md") {
        return (
            StatusCode::NOT_FOUND,
            "no such report: ask for /reports/NAMESPACE/EVALUATION.html or .md\n",
        )
            .into_response();
    }
    match h
        .report(
            ns,
            name.to_string(),
            format.to_string(),
            token::bearer_of(&headers),
        )
        .await
    {
        Ok(body) => {
            let ty = if format == "html" {
                "text/html; charset=utf-8"
            } else {
                "text/markdown; charset=utf-8"
            };
            ([(header::CONTENT_TYPE, ty)], body).into_response()
        }
        Err((code, message)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::NOT_FOUND),
            format!("{message}\n"),
        )
            .into_response(),
    }
}

/// The routes: the shared ones, then the home's own.
pub fn router<H: Home>(home: Arc<H>) -> Router {
    let own = home.routes();
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<H>))
        .route("/metrics", get(metrics::<H>))
        .route(
            "/api/v1/evaluations/{ns}/{name}/results",
            post(results::<H>),
        )
        .route("/api/v1/deployments/{ns}/{name}/retry", post(retry::<H>))
        .route(
            "/api/v1/evaluations/{ns}/{name}/retry",
            post(evaluation_retry::<H>),
        )
        .route("/reports/{ns}/{file}", get(report::<H>))
        .with_state(home)
        .merge(own)
}

/// Binds `addr`; the error says what to do.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {addr}: {e}; free the port or pass another --listen")
    })
}

/// Serves `home` on `addr` from a runtime of its own, on a background thread (for `slipway run`,
/// whose reconciler is synchronous); returns the bound address.
pub fn spawn<H: Home>(addr: SocketAddr, home: Arc<H>) -> anyhow::Result<SocketAddr> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(bind(addr))?;
    let bound = listener.local_addr()?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            serve::serve(listener, router(home), None).await;
        })
    });
    Ok(bound)
}
