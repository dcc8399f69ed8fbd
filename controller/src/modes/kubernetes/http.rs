//! Kubernetes mode's home for the HTTP server (`slipway controller --listen`): results and
//! reports are read from and written to the cluster.

use std::sync::{Arc, OnceLock};

use serde_json::json;

use super::metrics::Metrics;
use crate::edges::http::{Home, Posted, Reply};

/// The cluster, as the HTTP server sees it.
pub struct ClusterHome {
    /// The controller's client.
    pub client: kube::Client,
    /// The controller's metrics.
    pub metrics: Arc<Metrics>,
    /// Where reports are linked from: the results API's address as users reach it (set once
    /// the listener is bound).
    pub reports_url: OnceLock<String>,
    /// The watches (set once they are started): ready once every one has listed and delivers.
    pub cache: OnceLock<Arc<super::cache::Cache>>,
    /// What this setup keeps from working, as found at start (shown in `/readyz`).
    pub warnings: OnceLock<Vec<String>>,
}

impl ClusterHome {
    /// Whether the watches have listed, and the details that say so.
    fn watches_ready(&self) -> (bool, serde_json::Value) {
        let leader = self.metrics.leader.get() == 1;
        match self.cache.get() {
            None => (
                false,
                json!({"ready": false, "reason": "starting the watches", "leader": leader}),
            ),
            Some(c) if !c.is_current() => (
                false,
                json!({"ready": false, "reason": "the watches have not listed yet, or lost the API server", "leader": leader}),
            ),
            Some(_) => (true, json!({"ready": true, "leader": leader})),
        }
    }
}

impl Home for ClusterHome {
    /// Ready once every watch has listed and is delivering: before that, admission and the
    /// controllers would decide from a partial view. A watch that lost the API server makes it
    /// unready until it lists again.
    fn readiness(&self) -> (bool, serde_json::Value) {
        let (ok, mut details) = self.watches_ready();
        if let Some(w) = self.warnings.get().filter(|w| !w.is_empty()) {
            details["warnings"] = json!(w);
        }
        (ok, details)
    }

    fn metrics(&self) -> Result<String, String> {
        self.metrics.encode()
    }

    async fn post_results(&self, p: Posted) -> Reply {
        let reports = self.reports_url.get().cloned().unwrap_or_default();
        match super::results::accept(
            &self.client,
            &reports,
            &p.namespace,
            &p.name,
            p.token.as_deref(),
            &p.body,
        )
        .await
        {
            Ok(verdict) => Reply::ok(202, json!({"accepted": true, "verdict": verdict})),
            Err((code, message)) => Reply::error(code, message),
        }
    }

    /// A report is the namespace's data: only for a caller whose Kubernetes token the API
    /// server vouches for, and who may get that evaluation (TokenReview, SubjectAccessReview) —
    /// not for anyone who reaches the controller, through the controller's own credentials.
    async fn report(
        &self,
        ns: String,
        name: String,
        format: String,
        token: Option<String>,
    ) -> Result<String, (u16, String)> {
        may_read(&self.client, &ns, &name, token).await?;
        let cache = self.cache.get().map(|c| &**c);
        super::results::report(&self.client, cache, &ns, &name, &format).await
    }
}

/// Whether the bearer of `token` may get evaluation `ns/name`, as the API server says.
async fn may_read(
    client: &kube::Client,
    ns: &str,
    name: &str,
    token: Option<String>,
) -> Result<(), (u16, String)> {
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    use kube::api::{Api, PostParams};
    let unauthenticated = || {
        (
            401,
            format!(
                "a report of a cluster is for someone who may read evaluation {ns}/{name}: send \
                 your Kubernetes bearer token (curl -H \"Authorization: Bearer $(kubectl create \
                 token NAME)\" or your kubeconfig's)"
            ),
        )
    };
    let token = token.ok_or_else(unauthenticated)?;
    let review = TokenReview {
        spec: TokenReviewSpec {
            token,
            ..Default::default()
        },
        ..Default::default()
    };
    let reviewed = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| {
            (
                500,
                format!("cannot check the token with the API server: {e}"),
            )
        })?;
    let user = reviewed
        .status
        .filter(|s| s.authenticated == Some(true))
        .and_then(|s| s.user)
        .ok_or_else(unauthenticated)?;
    let username = user.username.clone().unwrap_or_default();
    let access = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username,
            groups: user.groups,
            uid: user.uid,
            extra: user.extra,
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.to_string()),
                verb: Some("get".into()),
                group: Some("slipway.dev".into()),
                resource: Some("evaluations".into()),
                name: Some(name.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let decided = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &access)
        .await
        .map_err(|e| (500, format!("cannot check access with the API server: {e}")))?;
    if decided.status.is_some_and(|s| s.allowed) {
        Ok(())
    } else {
        Err((
            403,
            format!("{username} may not get evaluation {ns}/{name}, so not its report either"),
        ))
    }
}
