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
}

impl Home for ClusterHome {
    fn readiness(&self) -> (bool, serde_json::Value) {
        (true, json!({"ready": true}))
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

    async fn report(
        &self,
        ns: String,
        name: String,
        format: String,
    ) -> Result<String, (u16, String)> {
        super::results::report(&self.client, &ns, &name, &format).await
    }
}
