//! Notifications and secrets in Kubernetes mode.
//!
//! The messages are git mode's ([`crate::edges::notify::messages_with`]); secrets may also name a key
//! of a Kubernetes Secret in the object's namespace (`secretKeyRef`). Delivery runs off the
//! reconcile path and its outcome becomes an event on the object (`NotificationDelivered` or
//! `NotificationFailed`) and the `slipway_notifications` metric.

use crate::decide::events::Event as Happened;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::recorder::Type;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::Resource;
use kube::api::Api;
use slipway_crd::common::SecretRef;
use slipway_crd::registered_model::Notification;

use super::context::Context;
use crate::edges::notify::{Delivery, Message, Notifier, event_of, messages_with};
use crate::edges::store::HistoryEntry;

/// The label a Secret carries to let Slipway send its values.
pub const USABLE_BY: &str = "slipway.dev/usable-by";
/// Its value.
pub const USABLE_BY_SLIPWAY: &str = "slipway";

fn usable(s: &Secret) -> bool {
    s.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(USABLE_BY))
        .is_some_and(|v| v == USABLE_BY_SLIPWAY)
}

/// Secret values read from the cluster for one namespace, keyed by (Secret, key).
pub struct Secrets(BTreeMap<(String, String), Result<String, String>>);

impl Secrets {
    /// Reads every `secretKeyRef` among `refs` from namespace `ns`.
    pub async fn load<'a>(
        client: &kube::Client,
        ns: &str,
        refs: impl IntoIterator<Item = &'a SecretRef>,
    ) -> Secrets {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let mut values = BTreeMap::new();
        for r in refs {
            let Some(k) = &r.secret_key_ref else { continue };
            let id = (k.name.clone(), k.key.clone());
            if values.contains_key(&id) {
                continue;
            }
            let value = match api.get_opt(&k.name).await {
                // Only Secrets that opt in: the others of the namespace stay where they are.
                Ok(Some(s)) if !usable(&s) => Err(format!(
                    "Secret {ns}/{} is not labelled {USABLE_BY}={USABLE_BY_SLIPWAY}; label it to \
                     let Slipway send its values (kubectl label secret {} {USABLE_BY}={USABLE_BY_SLIPWAY})",
                    k.name, k.name
                )),
                Ok(Some(s)) => s
                    .data
                    .and_then(|d| d.get(&k.key).map(|b| b.0.clone()))
                    .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                    .ok_or_else(|| format!("Secret {ns}/{} has no key {}", k.name, k.key)),
                Ok(None) => Err(format!(
                    "Secret {ns}/{} does not exist; create it with key {}",
                    k.name, k.key
                )),
                Err(e) => Err(format!("cannot read Secret {ns}/{}: {e}", k.name)),
            };
            values.insert(id, value);
        }
        Secrets(values)
    }

    /// The value of a reference: a loaded `secretKeyRef`. `env:` and `file:` would read the
    /// controller's own environment and files: refused.
    pub fn resolve(&self, r: &SecretRef) -> Result<String, String> {
        match &r.secret_key_ref {
            Some(k) => self
                .0
                .get(&(k.name.clone(), k.key.clone()))
                .cloned()
                .unwrap_or_else(|| Err(format!("Secret {} was not loaded", k.name))),
            None => Err(
                "env: and file: secret references are refused in Kubernetes mode (they \
                         would read the controller's own environment and files); use \
                         secretKeyRef"
                    .into(),
            ),
        }
    }
}

/// The secret references of notification channels.
fn channel_refs(channels: &[Notification]) -> impl Iterator<Item = &SecretRef> {
    channels.iter().flat_map(|c| {
        c.slack
            .iter()
            .map(|s| &s.webhook_url)
            .chain(c.webhook.iter().flat_map(|w| w.headers.values()))
    })
}

/// Announces a transition: an event on the object (`note` its text) and the notifications its
/// model asks for (`entry`, whose event name is also the event's reason).
pub async fn announce<K: Resource<DynamicType = ()>>(
    ctx: &Arc<Context>,
    object: &K,
    note: String,
    entry: HistoryEntry,
) {
    if let Some(what) = Happened::parse(&entry.event) {
        // Counted by `notify`, once per happening.
        super::context::send(ctx, object, what, note).await;
    }
    notify(ctx, object, entry).await;
}

/// Sends the notifications `entry` calls for on its model's channels, in the background, once
/// per happening (a reconcile that runs again on the same object — the watch not yet showing
/// its status write — does not announce again; every later happening is written first, so it
/// comes from a newer object revision); each outcome becomes an event on `object`.
pub async fn notify<K: Resource<DynamicType = ()>>(
    ctx: &Arc<Context>,
    object: &K,
    entry: HistoryEntry,
) {
    let key = format!(
        "{}/{}/{}/{}",
        entry.event,
        object.meta().uid.as_deref().unwrap_or_default(),
        object
            .meta()
            .resource_version
            .as_deref()
            .unwrap_or_default(),
        entry.version.as_deref().unwrap_or_default()
    );
    if !ctx.announced.first(key) {
        return;
    }
    // What happened counts once, as git mode counts its history entry.
    ctx.metrics.observe(&entry);
    if event_of(&entry).is_none() {
        return;
    }
    let object: ObjectReference = object.object_ref(&());
    let messages = messages_for(ctx, &entry).await;
    if messages.is_empty() {
        return;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        for m in messages {
            let (channel, d) = deliver(m).await;
            record_delivery(&ctx, &object, &entry, &channel, &d).await;
        }
    });
}

/// The messages `entry` calls for on its model's channels, with their secrets; one to a
/// destination outside the operator's bounds is the channel and why it is not sent.
async fn messages_for(
    ctx: &Context,
    entry: &HistoryEntry,
) -> Vec<Result<Message, (String, String)>> {
    let ns = entry.namespace.clone();
    let channels = ctx
        .cache
        .view(&ns)
        .catalog
        .model(&ns, &entry.model)
        .map(|m| m.spec.notifications.clone())
        .unwrap_or_default();
    if channels.is_empty() {
        return Vec::new();
    }
    let secrets = Secrets::load(&ctx.client, &ns, channel_refs(&channels)).await;
    // Messages carry secrets (a Slack URL, header values): only to the operator's destinations.
    messages_with(&channels, entry, &|r| secrets.resolve(r))
        .into_iter()
        .map(|m| {
            let m = m?;
            match ctx.bounds.destination(&m.url) {
                Ok(()) => Ok(m),
                Err(why) => Err((m.channel, why)),
            }
        })
        .collect()
}

/// Delivers one message on a blocking thread (one refused before is not sent); returns its
/// channel and the delivery.
async fn deliver(m: Result<Message, (String, String)>) -> (String, Delivery) {
    let channel = match &m {
        Ok(m) => m.channel.clone(),
        Err((channel, _)) => channel.clone(),
    };
    tokio::task::spawn_blocking(move || Notifier::default().deliver_built(m))
        .await
        .unwrap_or_else(|e| {
            let why = format!("delivery task failed: {e}");
            (channel, Delivery::not_attempted(why))
        })
}

/// Records a delivery's outcome: a log line, the metrics and an event on `object`.
async fn record_delivery(
    ctx: &Context,
    object: &ObjectReference,
    entry: &HistoryEntry,
    channel: &str,
    d: &Delivery,
) {
    let (reason, note) = match &d.error {
        None => (
            Happened::NotificationDelivered.as_str(),
            format!(
                "{} sent to {channel} ({} attempt(s))",
                entry.event, d.attempts
            ),
        ),
        Some(e) => (
            Happened::NotificationFailed.as_str(),
            format!(
                "{} not sent to {channel} after {} attempt(s): {e}",
                entry.event, d.attempts
            ),
        ),
    };
    tracing::info!(channel = %channel, event = %entry.event, delivered = d.delivered, "{note}");
    ctx.metrics.happened(reason);
    ctx.metrics.delivered(d.delivered);
    let type_ = if d.delivered {
        Type::Normal
    } else {
        Type::Warning
    };
    if let Err(e) = ctx.recorder.publish(object, type_, reason, &note).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
}

/// A history entry for a Kubernetes-mode transition (the `actor` is the controller).
pub fn entry(
    event: Happened,
    ns: &str,
    model: &str,
    subject: String,
    version: Option<String>,
    alias: Option<String>,
    message: String,
) -> HistoryEntry {
    HistoryEntry {
        id: 0,
        at: chrono::Utc::now(),
        event: event.as_str().into(),
        namespace: ns.into(),
        model: model.into(),
        subject,
        version,
        alias,
        actor: Some("slipway".into()),
        revision: None,
        decision: None,
        message,
        data: serde_json::Value::Null,
    }
}
