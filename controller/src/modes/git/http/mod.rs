//! Git mode's home for the HTTP server (`slipway run --listen`): answers from the SQLite store
//! and the state folder, and adds the read API over the store and the web UI.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

mod ui;
use crate::edges::http::{Home, Posted, Reply};
use crate::edges::store::{HistoryFilter, Store};

/// The metrics `slipway run` keeps: the ones both homes serve.
pub type Metrics = crate::edges::metrics::Metrics;

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
    /// Hash ([`crate::edges::http::token::hash`]) of the token write requests (`retry`) must bring; `None`
    /// turns them off.
    pub api_token_hash: Option<String>,
    /// The secret push webhooks are signed with (`--webhook-secret-file`); `None` turns
    /// `POST /hooks/git` off.
    pub hook_secret: Option<Vec<u8>>,
    /// Set by a verified push: the pass loop stops waiting and looks at the source now.
    pub wake: std::sync::atomic::AtomicBool,
    /// The ref a push must name to wake the loop (`refs/heads/` and `--ref`).
    pub hook_ref: String,
    /// The ids of the last deliveries taken (a replayed one wakes nothing).
    pub deliveries: Mutex<std::collections::VecDeque<String>>,
}

pub(super) type S = Arc<Shared>;

fn json_or_500<T: serde::Serialize>(v: Result<T, crate::edges::store::StoreError>) -> Response {
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

/// Whether the request brings the instance's API token.
fn authenticated(s: &Shared, headers: &axum::http::HeaderMap) -> bool {
    match (
        &s.api_token_hash,
        crate::edges::http::token::bearer_of(headers),
    ) {
        (Some(want), Some(t)) => crate::edges::http::token::matches_hash(&t, want),
        _ => false,
    }
}

/// Takes out what may carry secrets — where notifications and `webhook` runners send (a URL
/// can hold a token; header references name the operator's variables and files) and the body
/// templates — leaving `redacted: true` where it did. The read API serves these only with the
/// API token.
pub fn redact(value: &mut serde_json::Value) {
    fn runner(r: &mut serde_json::Value) {
        if let Some(w) = r.get_mut("webhook").and_then(|w| w.as_object_mut()) {
            for field in ["url", "headers", "bodyTemplate"] {
                w.remove(field);
            }
            w.insert("redacted".into(), true.into());
        }
    }
    let spec = &mut value["spec"];
    if let Some(channels) = spec.get_mut("notifications").and_then(|n| n.as_array_mut()) {
        for c in channels.iter_mut().filter_map(|c| c.as_object_mut()) {
            c.retain(|k, _| k == "name" || k == "events");
            c.insert("redacted".into(), true.into());
        }
    }
    if let Some(suites) = spec.get_mut("evaluations").and_then(|e| e.as_array_mut()) {
        for suite in suites {
            runner(&mut suite["runner"]);
        }
    }
    if let Some(r) = spec.get_mut("runner") {
        runner(r);
    }
}

/// A catalog object as the reader sees it: whole with the API token, redacted without.
fn shown(full: bool, mut value: serde_json::Value) -> serde_json::Value {
    if !full {
        redact(&mut value);
    }
    value
}

async fn statuses(
    State(s): State<S>,
    Path(kind): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let full = authenticated(&s, &headers);
    if kind == "models" {
        return axum::Json(models_with_status(&s, full)).into_response();
    }
    let Some(kind) = stored_kind(&kind) else {
        return (
            StatusCode::NOT_FOUND,
            "try models, versions, aliases, evaluations, deployments or history",
        )
            .into_response();
    };
    // Evaluations also carry their spec (model, version, suite), so `slipway plan --results URL`
    // can read them as documents.
    let specs = if kind == "Evaluation" {
        evaluation_specs(&s, full)
    } else {
        Default::default()
    };
    if kind == "ModelDeployment" {
        return json_or_500(super::deployment_rows(&s.store));
    }
    json_or_500(s.store.statuses(kind).map(|rows| {
        rows.into_iter()
            .map(|(ns, name, status)| {
                let mut row = json!({"namespace": ns, "name": name, "status": status});
                // The report as this instance serves it, not where its file is on the host.
                if row["status"]["report"].is_string() {
                    row["status"]["report"] = json!(format!("/reports/{ns}/{name}.html"));
                }
                if let Some(spec) = specs.get(&(ns, name)) {
                    row["spec"] = spec.clone();
                }
                row
            })
            .collect::<Vec<_>>()
    }))
}

/// The stored kind the read API's `/api/v1/{kind}` path names (but `models`), if any.
fn stored_kind(path: &str) -> Option<&'static str> {
    Some(match path {
        "versions" => "ModelVersion",
        "aliases" => "ModelAlias",
        "evaluations" => "Evaluation",
        "deployments" => "ModelDeployment",
        _ => return None,
    })
}

/// Each model of the revision in force with its status (newest version, resolved aliases), as
/// in a cluster.
fn models_with_status(s: &Shared, full: bool) -> Vec<serde_json::Value> {
    let catalog = s.catalog.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let statuses: std::collections::HashMap<(String, String), serde_json::Value> = s
        .store
        .statuses("RegisteredModel")
        .unwrap_or_default()
        .into_iter()
        .map(|(ns, name, status)| ((ns, name), status))
        .collect();
    catalog["models"]
        .as_array()
        .into_iter()
        .flatten()
        .cloned()
        .map(|mut m| {
            let key = (
                m["namespace"].as_str().unwrap_or_default().to_string(),
                m["name"].as_str().unwrap_or_default().to_string(),
            );
            m["status"] = statuses.get(&key).cloned().unwrap_or_default();
            shown(full, m)
        })
        .collect()
}

/// The spec of each evaluation of the revision in force, by namespace and name, as the reader
/// may see it.
fn evaluation_specs(
    s: &Shared,
    full: bool,
) -> std::collections::HashMap<(String, String), serde_json::Value> {
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
            (
                key,
                shown(full, json!({"spec": e["spec"].clone()}))["spec"].take(),
            )
        })
        .collect()
}

async fn history(State(s): State<S>, Query(q): Query<HistoryQuery>) -> Response {
    json_or_500(s.store.history(&HistoryFilter {
        model: q.model,
        alias: q.alias,
        until: q.until,
        after_id: None,
    }))
}

/// The body of a retry request: empty, or `{"version": …, "actor": …}` (an evaluation's retry
/// takes no version).
#[derive(Default, Deserialize)]
struct RetryRequest {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    actor: Option<String>,
}

impl RetryRequest {
    /// The request `p` carries, or the 400 that says what it should be.
    fn of(p: &Posted, shape: &str) -> Result<RetryRequest, Reply> {
        if p.body.is_empty() {
            return Ok(RetryRequest::default());
        }
        serde_json::from_slice(&p.body)
            .map_err(|e| Reply::error(400, format!("body must be {shape} or empty: {e}")))
    }

    /// Who asked, as the history records it.
    fn actor(self) -> Option<String> {
        Some(
            self.actor
                .map_or_else(|| "api".into(), |a| format!("{a} (api)")),
        )
    }
}

impl Shared {
    /// Whether a write request may go on: write requests need the instance's API token.
    fn may_write(&self, p: &Posted) -> Result<(), Reply> {
        let Some(want) = &self.api_token_hash else {
            return Err(Reply::error(
                403,
                "write requests are off on this instance; start `slipway run` with --api-token-file",
            ));
        };
        if !p
            .token
            .as_deref()
            .is_some_and(|t| crate::edges::http::token::matches_hash(t, want))
        {
            return Err(Reply::error(
                401,
                "missing or wrong bearer token; send the token in the instance's --api-token-file",
            ));
        }
        Ok(())
    }
}

/// `POST /hooks/git`: a forge's push webhook, signed with the secret of `--webhook-secret-file`
/// ([`crate::edges::http::hooks`]); a verified push wakes the pass loop.
async fn push_hook(
    axum::extract::State(s): axum::extract::State<S>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> Response {
    use crate::edges::http::hooks::{Hook, verify};
    let Some(secret) = &s.hook_secret else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            "push webhooks are off: start `slipway run` with --webhook-secret-file FILE (the forge signs with the same secret)\n",
        )
            .into_response();
    };
    let status = |code: u16| {
        axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::BAD_REQUEST)
    };
    match verify(&headers, &body, secret) {
        Err((code, why)) => (status(code), why).into_response(),
        Ok(Hook::Push {
            reference: Some(pushed),
            ..
        }) if pushed != s.hook_ref => (
            status(202),
            format!(
                "push to {pushed} ignored: this run follows {}\n",
                s.hook_ref
            ),
        )
            .into_response(),
        Ok(Hook::Push { delivery, .. }) => {
            if let Some(id) = delivery {
                let mut seen = s.deliveries.lock().unwrap_or_else(|p| p.into_inner());
                if seen.contains(&id) {
                    return (status(202), format!("delivery {id} was taken already\n"))
                        .into_response();
                }
                if seen.len() >= 256 {
                    seen.pop_front();
                }
                seen.push_back(id);
            }
            s.wake.store(true, std::sync::atomic::Ordering::Relaxed);
            (
                status(202),
                "a pass starts now (after a backoff, once it ends)\n",
            )
                .into_response()
        }
        Ok(Hook::Ping) => (status(200), "pong\n").into_response(),
        Ok(Hook::Other(event)) => (
            status(202),
            format!("event {event} ignored: only pushes start a pass\n"),
        )
            .into_response(),
    }
}

impl Home for Shared {
    fn readiness(&self) -> (bool, serde_json::Value) {
        let r = self.ready.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let ok = r.revision.is_some() && r.rejected.is_none();
        (
            ok,
            json!({"ready": ok, "revision": r.revision, "rejected": r.rejected, "errors": r.errors}),
        )
    }

    fn metrics(&self) -> Result<String, String> {
        self.metrics.encode()
    }

    async fn post_results(&self, p: Posted) -> Reply {
        match crate::modes::git::external::accept(
            &self.store,
            &p.namespace,
            &p.name,
            p.token.as_deref(),
            &p.body,
        ) {
            Ok(()) => Reply::ok(202, json!({"accepted": true})),
            Err((code, message)) => Reply::error(code, message),
        }
    }

    async fn post_evaluation_retry(&self, p: Posted) -> Reply {
        if let Err(refused) = self.may_write(&p) {
            return refused;
        }
        let request = match RetryRequest::of(&p, r#"{"actor": "…"}"#) {
            Ok(r) if r.version.is_some() => {
                return Reply::error(400, "an evaluation's retry takes no version");
            }
            Ok(r) => r,
            Err(refused) => return refused,
        };
        use crate::modes::git::retry::{RetryError, request_evaluation_retry};
        match request_evaluation_retry(&self.store, &p.namespace, &p.name, request.actor()) {
            Ok(()) => Reply::ok(
                200,
                json!({"evaluation": format!("{}/{}", p.namespace, p.name)}),
            ),
            Err(RetryError::NoSuchEvaluation(m)) => Reply::error(404, m),
            Err(RetryError::NothingToRetry(m)) => Reply::error(409, m),
            Err(e) => Reply::error(500, e.to_string()),
        }
    }

    async fn post_retry(&self, p: Posted) -> Reply {
        if let Err(refused) = self.may_write(&p) {
            return refused;
        }
        let request = match RetryRequest::of(&p, r#"{"version": "…"}"#) {
            Ok(r) => r,
            Err(refused) => return refused,
        };
        let version = request.version.clone();
        match crate::modes::git::retry::request_retry(
            &self.store,
            &p.namespace,
            &p.name,
            version.as_deref(),
            request.actor(),
        ) {
            Ok(versions) => Reply::ok(200, json!({"versions": versions})),
            Err(crate::modes::git::retry::RetryError::NoSuchDeployment(m)) => Reply::error(404, m),
            Err(crate::modes::git::retry::RetryError::NothingToRetry(m)) => Reply::error(409, m),
            Err(e) => Reply::error(500, e.to_string()),
        }
    }

    /// Git mode's reports are the operator's own instance's, open to whoever reaches it (as its
    /// web UI is).
    async fn report(
        &self,
        ns: String,
        name: String,
        format: String,
        _token: Option<String>,
    ) -> Result<String, (u16, String)> {
        let path = self
            .state_dir
            .join("reports")
            .join(&ns)
            .join(format!("{name}.{format}"));
        std::fs::read_to_string(&path)
            .map_err(|_| (404, format!("no report of evaluation {ns}/{name}")))
    }

    fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(ui::index))
            .route("/ui/{ns}/{model}", get(ui::model))
            .route("/api/v1/history", get(history))
            .route("/hooks/git", axum::routing::post(push_hook))
            .route("/api/v1/{kind}", get(statuses))
            .with_state(self.clone())
    }
}
