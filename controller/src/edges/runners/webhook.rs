//! The `webhook` runner's request: what asks an external system (a CI workflow, a batch
//! platform) to run an evaluation, in both homes.

use slipway_crd::common::{SecretRef, WebhookRunner};

use crate::edges::notify::Message;

/// The request that asks an external system to run an evaluation: `context` (evaluation, model,
/// version, suite, candidate, baseline, dataset, resultsUrl, token) rendered by the runner's
/// `bodyTemplate` (or sent as JSON), with its headers' secrets resolved by `secret`.
pub fn dispatch_message(
    evaluation: &str,
    hook: &WebhookRunner,
    context: &serde_json::Value,
    secret: &dyn Fn(&SecretRef) -> Result<String, String>,
) -> Result<Message, String> {
    let body = match &hook.body_template {
        Some(t) => crate::edges::notify::json_body(t, context)?,
        None => context.to_string(),
    };
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    for (k, r) in &hook.headers {
        headers.push((
            k.clone(),
            secret(r).map_err(|e| format!("header {k}: {e}"))?,
        ));
    }
    Ok(Message {
        channel: evaluation.to_string(),
        url: hook.url.clone(),
        headers,
        body,
    })
}
