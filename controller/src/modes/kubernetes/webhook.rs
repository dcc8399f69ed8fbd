//! The admission webhook server: `POST /validate` and `POST /mutate` with `AdmissionReview`
//! (admission.k8s.io/v1, kube's typed `AdmissionReview`) over TLS. The decisions are in
//! [`crate::decide::admission`], made from the controller's watches ([`super::cache`]); this file
//! speaks the wire format and serves.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde_json::Value;
use slipway_crd::promotion_policy::Operation;

use super::cache::Cache;
use super::cluster::ClusterReader;
use crate::decide::admission::{self, Cluster, Request, Verdict};

/// What the handlers share.
pub struct Webhook {
    /// The watched objects decisions are made from.
    pub cache: Arc<Cache>,
    /// The namespace the cache watches (`None`: all).
    pub watched: Option<String>,
    /// Reads a namespace's objects from the API server: for namespaces the cache does not watch,
    /// and to check a refusal against the latest objects.
    pub reader: ClusterReader,
    /// Counts decisions.
    pub metrics: Arc<super::metrics::Metrics>,
    /// The operator's bounds on what objects may make the controller do.
    pub bounds: Arc<crate::decide::bounds::Bounds>,
    /// Groups whose members may withdraw anyone's `Approval`.
    pub withdrawers: Vec<String>,
}

type Review = AdmissionReview<DynamicObject>;

/// The decision's view of an admission request (kube's typed `AdmissionRequest`).
fn request_of(r: &AdmissionRequest<DynamicObject>) -> Result<Request, String> {
    let operation = match &r.operation {
        kube::core::admission::Operation::Create => Operation::Create,
        kube::core::admission::Operation::Update => Operation::Update,
        kube::core::admission::Operation::Delete => Operation::Delete,
        other => return Err(format!("operation {other:?} is not decided by Slipway")),
    };
    let object = |o: &Option<DynamicObject>| {
        o.as_ref()
            .and_then(|o| serde_json::to_value(o).ok())
            .filter(Value::is_object)
    };
    let new = object(&r.object);
    let name = Some(r.name.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| {
            new.as_ref()
                .and_then(|o| o["metadata"]["name"].as_str().map(String::from))
        })
        .unwrap_or_default();
    Ok(Request {
        kind: r.kind.kind.clone(),
        namespace: r.namespace.clone().unwrap_or_else(|| "default".into()),
        name,
        operation,
        user: r.user_info.username.clone().unwrap_or_default(),
        groups: r.user_info.groups.clone().unwrap_or_default(),
        object: new,
        old_object: object(&r.old_object),
    })
}

/// A refusal the API server shows as an error of the given HTTP status.
fn refuse(response: AdmissionResponse, code: u16, message: &str) -> axum::Json<Review> {
    let mut response = response.deny(message);
    response.result.code = code;
    response.result.reason = if code == 403 {
        "Forbidden"
    } else {
        "BadRequest"
    }
    .into();
    axum::Json(response.into_review())
}

/// The answer to a review without a request.
fn no_request() -> axum::Json<Review> {
    refuse(
        AdmissionResponse::invalid("AdmissionReview has no request"),
        400,
        "AdmissionReview has no request",
    )
}

/// The verdict on `req`. Most requests are decided from the watched objects; these are read
/// from the API server at the moment of the request instead: alias changes (what production
/// serves: a watch a few milliseconds behind must not miss a new rejection, a deleted approval
/// or a new policy), any request while a watch is not current (still listing, or failing), a
/// namespace outside the watched one, and — checked once more — a refusal or a warning (the
/// watch may be behind the change the client just made).
async fn decide(hook: &Webhook, req: &Request) -> Result<Verdict, kube::Error> {
    let now = chrono::Utc::now();
    let watched = hook.watched.as_deref().is_none_or(|ns| ns == req.namespace);
    if watched && req.kind != "ModelAlias" && hook.cache.is_current() {
        let view = hook.cache.view(&req.namespace);
        let approvals = hook.cache.approvals_in(&req.namespace);
        let cluster = Cluster {
            view: &view,
            approvals: &approvals,
            bounds: &hook.bounds,
            withdrawers: &hook.withdrawers,
        };
        let verdict = admission::validate(req, &cluster, now);
        if verdict == Verdict::Allowed(Vec::new()) {
            return Ok(verdict);
        }
    }
    let (view, approvals) = hook.reader.read(&req.namespace).await?;
    let cluster = Cluster {
        view: &view,
        approvals: &approvals,
        bounds: &hook.bounds,
        withdrawers: &hook.withdrawers,
    };
    Ok(admission::validate(req, &cluster, now))
}

async fn validate(
    State(hook): State<Arc<Webhook>>,
    axum::Json(review): axum::Json<Review>,
) -> axum::Json<Review> {
    let request: Result<AdmissionRequest<DynamicObject>, _> = review.try_into();
    let Ok(r) = request else {
        return no_request();
    };
    let response = AdmissionResponse::from(&r);
    let req = match request_of(&r) {
        Ok(x) => x,
        Err(e) => return refuse(response, 400, &e),
    };
    let started = std::time::Instant::now();
    let decided = decide(&hook, &req).await;
    hook.metrics
        .admission_seconds
        .observe(started.elapsed().as_secs_f64());
    let verdict = match decided {
        Ok(v) => v,
        // Fail closed, and say why: the API server shows this to the user.
        Err(e) => {
            return refuse(
                response,
                500,
                &format!(
                    "Slipway could not read namespace {} to decide: {e}; try again",
                    req.namespace
                ),
            );
        }
    };
    tracing::info!(
        kind = %req.kind, namespace = %req.namespace, name = %req.name,
        user = %req.user, allowed = matches!(verdict, Verdict::Allowed(_)),
        "admission decision"
    );
    hook.metrics
        .admissions
        .get_or_create(&super::metrics::ByResult {
            result: if matches!(verdict, Verdict::Allowed(_)) {
                "allowed"
            } else {
                "denied"
            }
            .into(),
        })
        .inc();
    match verdict {
        Verdict::Allowed(warnings) => {
            let mut response = response;
            if !warnings.is_empty() {
                response.warnings = Some(warnings);
            }
            axum::Json(response.into_review())
        }
        Verdict::Denied(message) => refuse(response, 403, &message),
    }
}

async fn mutate(
    State(hook): State<Arc<Webhook>>,
    axum::Json(review): axum::Json<Review>,
) -> axum::Json<Review> {
    let request: Result<AdmissionRequest<DynamicObject>, _> = review.try_into();
    let Ok(r) = request else {
        return no_request();
    };
    let response = AdmissionResponse::from(&r);
    let req = match request_of(&r) {
        Ok(x) => x,
        Err(e) => return refuse(response, 400, &e),
    };
    // Approvals are rare: stamp them from the namespace as the API server has it now.
    let read = match req.kind.as_str() {
        "Approval" => match hook.reader.read(&req.namespace).await {
            Ok(r) => Some(r),
            Err(e) => {
                return refuse(
                    response,
                    500,
                    &format!(
                        "Slipway could not read namespace {} to stamp the approval: {e}; try again",
                        req.namespace
                    ),
                );
            }
        },
        _ => None,
    };
    let empty = (crate::decide::catalog::View::default(), Vec::new());
    let (view, approvals) = read.as_ref().unwrap_or(&empty);
    let cluster = Cluster {
        view,
        approvals,
        bounds: &hook.bounds,
        withdrawers: &hook.withdrawers,
    };
    let Some(patch) = admission::stamp(&req, &cluster) else {
        return axum::Json(response.into_review());
    };
    let stamped = serde_json::from_value::<json_patch::Patch>(patch)
        .map_err(|e| e.to_string())
        .and_then(|p| response.clone().with_patch(p).map_err(|e| e.to_string()));
    match stamped {
        Ok(r) => axum::Json(r.into_review()),
        // A patch Slipway built and cannot encode is a bug; refuse rather than admit unstamped.
        Err(e) => refuse(
            response,
            500,
            &format!("cannot stamp the {}: {e}", req.kind),
        ),
    }
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
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let task = tokio::spawn(crate::edges::http::serve::serve(
        listener,
        router,
        Some(acceptor),
    ));
    Ok((bound, task))
}
