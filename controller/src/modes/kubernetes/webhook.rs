//! The admission webhook server: `POST /validate` and `POST /mutate` with `AdmissionReview`
//! (admission.k8s.io/v1) over TLS. The decisions are in [`super::admission`]; this file reads
//! the cluster, speaks the wire format and serves.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};
use slipway_crd::promotion_policy::Operation;

use super::cluster::ClusterReader;
use crate::decide::admission::{self, Request, Verdict};

/// What the handlers share.
pub struct Webhook {
    /// Reads the namespace's objects for each decision.
    pub reader: ClusterReader,
    /// Counts decisions.
    pub metrics: Arc<super::metrics::Metrics>,
}

/// The request inside an `AdmissionReview`, or why it cannot be read.
fn request_of(review: &Value) -> Result<(String, Request), String> {
    let r = review
        .get("request")
        .ok_or("AdmissionReview has no request")?;
    let uid = r["uid"].as_str().ok_or("request has no uid")?.to_string();
    let operation = match r["operation"].as_str() {
        Some("CREATE") => Operation::Create,
        Some("UPDATE") => Operation::Update,
        Some("DELETE") => Operation::Delete,
        other => return Err(format!("operation {other:?} is not decided by Slipway")),
    };
    let object = |f: &str| Some(r[f].clone()).filter(|v| v.is_object());
    let groups = r["userInfo"]["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok((
        uid,
        Request {
            kind: r["kind"]["kind"].as_str().unwrap_or_default().to_string(),
            namespace: r["namespace"].as_str().unwrap_or("default").to_string(),
            name: r["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .or(r["object"]["metadata"]["name"].as_str())
                .unwrap_or_default()
                .to_string(),
            operation,
            user: r["userInfo"]["username"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            groups,
            object: object("object"),
            old_object: object("oldObject"),
        },
    ))
}

fn review(response: Value) -> axum::Json<Value> {
    axum::Json(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    }))
}

fn refuse(uid: &str, code: u16, message: &str) -> axum::Json<Value> {
    review(json!({
        "uid": uid,
        "allowed": false,
        "status": {"code": code, "message": message, "reason": if code == 403 { "Forbidden" } else { "BadRequest" }},
    }))
}

async fn validate(
    State(hook): State<Arc<Webhook>>,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    let (uid, req) = match request_of(&body) {
        Ok(x) => x,
        Err(e) => return refuse("", 400, &e),
    };
    let cluster = match hook.reader.read(&req.namespace).await {
        Ok(c) => c,
        // Fail closed, and say why: the API server shows this to the user.
        Err(e) => {
            return refuse(
                &uid,
                500,
                &format!(
                    "Slipway could not read namespace {} to decide: {e}; try again",
                    req.namespace
                ),
            );
        }
    };
    let verdict = admission::validate(&req, &cluster, chrono::Utc::now());
    tracing::info!(
        kind = %req.kind, namespace = %req.namespace, name = %req.name,
        user = %req.user, allowed = matches!(verdict, Verdict::Allowed(_)),
        "admission decision"
    );
    hook.metrics
        .admissions
        .get_or_create(&super::metrics::ByController {
            controller: if matches!(verdict, Verdict::Allowed(_)) {
                "allowed"
            } else {
                "denied"
            }
            .into(),
        })
        .inc();
    match verdict {
        Verdict::Allowed(warnings) => review(json!({
            "uid": uid,
            "allowed": true,
            "warnings": warnings,
        })),
        Verdict::Denied(message) => refuse(&uid, 403, &message),
    }
}

async fn mutate(axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
    let (uid, req) = match request_of(&body) {
        Ok(x) => x,
        Err(e) => return refuse("", 400, &e),
    };
    let mut response = json!({"uid": uid, "allowed": true});
    if let Some(patch) = admission::stamp(&req) {
        response["patchType"] = "JSONPatch".into();
        response["patch"] = base64::engine::general_purpose::STANDARD
            .encode(patch.to_string())
            .into();
    }
    review(response)
}

/// The routes.
pub fn router(hook: Arc<Webhook>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .with_state(hook)
}

/// Serves `router` over TLS on `addr` until the task is dropped; returns the bound address.
pub async fn serve_tls(
    addr: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    router: Router,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use hyper_util::rt::TokioIo;
    use tower::ServiceExt as _;

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let tls = match acceptor.accept(stream).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                };
                let service = hyper::service::service_fn(move |req| router.clone().oneshot(req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok((bound, task))
}
