//! Notifications: Slack incoming webhooks (Block Kit) and generic webhooks with a minijinja body.
//!
//! [`messages`] builds what to send (pure); [`Notifier::deliver`] sends it with retries and
//! backoff. Secrets (the Slack URL, header values) come from environment variables or files
//! and never appear in history, logs or errors.

pub mod courier;

use std::time::Duration;

use serde_json::{Value, json};
use slipway_crd::common::SecretRef;
use slipway_crd::registered_model::{Notification, NotificationEvent};

use crate::edges::store::HistoryEntry;

/// The notification event a history entry stands for, if any.
pub fn event_of(entry: &HistoryEntry) -> Option<NotificationEvent> {
    NotificationEvent::named(&entry.event)
}

/// A message ready to send. `url` and header values may be secrets: never print them.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Channel name (for history and metrics).
    pub channel: String,
    /// Where to POST.
    pub url: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: String,
}

/// What git mode's registry may use of `slipway run`'s secrets, and where messages that carry
/// them may go: the operator's `--allowed-secrets` and `--allowed-destinations`.
#[derive(Clone, Debug)]
pub struct Allowed {
    /// `env:` variables and `file:` paths the registry may name: exact, or a prefix ending in `*`.
    pub secrets: Vec<String>,
    /// Hosts messages with secrets or tokens may go to (`hooks.slack.com`, `*.example.com`, `*`).
    pub destinations: Vec<String>,
}

impl Allowed {
    /// Anything goes (what a cluster's messages, checked before, are sent with).
    pub fn any() -> Allowed {
        Allowed {
            secrets: vec!["*".into()],
            destinations: vec!["*".into()],
        }
    }

    /// The secret `r` names, if the operator allows it.
    pub fn resolve(&self, r: &SecretRef) -> Result<String, String> {
        crate::decide::bounds::Bounds::secret_source(&self.secrets, r)?;
        secret(r)
    }

    /// Whether a message may go to `url`.
    pub fn destination(&self, url: &str) -> Result<(), String> {
        crate::decide::bounds::Bounds {
            destinations: self.destinations.clone(),
            ..Default::default()
        }
        .destination(url)
    }

    /// `m` if it may be sent where it goes.
    pub fn checked(&self, m: Message) -> Result<Message, (String, String)> {
        match self.destination(&m.url) {
            Ok(()) => Ok(m),
            Err(why) => Err((m.channel, why)),
        }
    }
}

/// Resolves a secret reference from the environment or a file.
pub fn secret(r: &SecretRef) -> Result<String, String> {
    if let Some(var) = &r.env {
        return std::env::var(var).map_err(|_| format!("environment variable {var} is not set"));
    }
    if let Some(path) = &r.file {
        return std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("cannot read secret file {path}: {e}"));
    }
    Err("secretKeyRef secrets are only available in Kubernetes mode".into())
}

/// Text as Slack shows it literally: its control characters as spaces, and `&`, `<` and `>`
/// escaped as Slack asks — a message may carry text written by a model's own code (a failed
/// Job's termination message), which must not mention `<!channel>` or link elsewhere.
fn slack_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack_body(entry: &HistoryEntry, event: NotificationEvent) -> Value {
    let icon = match event {
        NotificationEvent::PromotionBlocked | NotificationEvent::RolledBack => ":warning:",
        NotificationEvent::RolloutSucceeded | NotificationEvent::AliasMoved => ":white_check_mark:",
        _ => ":information_source:",
    };
    let mut context = vec![format!("model *{}*", slack_text(&entry.model))];
    if let Some(v) = &entry.version {
        context.push(format!("version *{}*", slack_text(v)));
    }
    if let Some(a) = &entry.alias {
        context.push(format!("alias *{}*", slack_text(a)));
    }
    if let Some(r) = &entry.revision {
        context.push(format!("revision `{}`", slack_text(r)));
    }
    let message = slack_text(&entry.message);
    json!({
        "text": format!("{}: {message}", event.as_str()),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": format!("{} · {}", event.as_str(), entry.model)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("{icon} {message}")}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context.join(" · ")}]}
        ]
    })
}

/// The messages for one history entry, for a model's notification channels. Channels whose
/// secrets cannot be resolved or whose template fails come back as errors, per channel.
pub fn messages(
    channels: &[Notification],
    entry: &HistoryEntry,
) -> Vec<Result<Message, (String, String)>> {
    messages_with(channels, entry, &secret)
}

/// [`messages`] with secrets resolved by `secret` (Kubernetes mode adds `secretKeyRef`).
pub fn messages_with(
    channels: &[Notification],
    entry: &HistoryEntry,
    secret: &dyn Fn(&SecretRef) -> Result<String, String>,
) -> Vec<Result<Message, (String, String)>> {
    let Some(event) = event_of(entry) else {
        return Vec::new();
    };
    channels
        .iter()
        .filter(|c| c.hears(event))
        .map(|c| {
            let fail = |why: String| (c.name.clone(), why);
            if let Some(slack) = &c.slack {
                let url = secret(&slack.webhook_url).map_err(fail)?;
                return Ok(Message {
                    channel: c.name.clone(),
                    url,
                    headers: vec![("Content-Type".into(), "application/json".into())],
                    body: slack_body(entry, event).to_string(),
                });
            }
            let Some(hook) = &c.webhook else {
                return Err(fail("no slack or webhook configured".into()));
            };
            let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
            for (k, r) in &hook.headers {
                headers.push((
                    k.clone(),
                    secret(r).map_err(|e| fail(format!("header {k}: {e}")))?,
                ));
            }
            let ctx = json!({
                "event": event.as_str(),
                "model": entry.model,
                "version": entry.version,
                "alias": entry.alias,
                "message": entry.message,
                "revision": entry.revision,
                "at": entry.at,
                "data": entry.data,
            });
            let body = match &hook.body_template {
                Some(t) => json_body(t, &ctx).map_err(fail)?,
                None => ctx.to_string(),
            };
            Ok(Message {
                channel: c.name.clone(),
                url: hook.url.clone(),
                headers,
                body,
            })
        })
        .collect()
}

/// Renders a `bodyTemplate` (a notification's or a `webhook` runner's) into a JSON body. Every
/// value a `{{ … }}` writes is escaped as the inside of a JSON string — a quote, backslash or
/// line break in a message or an artifact URI cannot end the string and change the document —
/// and a list or object is written as JSON. A template that does not render JSON is an error.
pub fn json_body(template: &str, context: &serde_json::Value) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_formatter(|out, _state, value| {
        let text = match (value.as_str(), value.kind()) {
            (Some(s), _) => {
                let quoted = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
                quoted[1..quoted.len() - 1].to_string()
            }
            (None, minijinja::value::ValueKind::Map | minijinja::value::ValueKind::Seq) => {
                serde_json::to_string(value).unwrap_or_default()
            }
            (None, _) => value.to_string(),
        };
        out.write_str(&text)
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()))
    });
    let body = env
        .render_str(
            template,
            minijinja::Value::from(minijinja::value::Serde(context)),
        )
        .map_err(|e| format!("bodyTemplate: {e}"))?;
    serde_json::from_str::<serde::de::IgnoredAny>(&body)
        // Not the body in the message: a runner's body holds the attempt's token.
        .map_err(|e| format!("bodyTemplate does not render JSON: {e}"))?;
    Ok(body)
}

/// Delivers the notifications of every history entry after the stored cursor, then advances the
/// cursor, recording each delivery in the history. At least once: a process killed mid-way
/// delivers the rest (and possibly one again) on its next pass.
pub fn deliver_pending(
    store: &crate::edges::store::Store,
    catalog: &crate::decide::catalog::Catalog,
    notifier: &Notifier,
    progress: &dyn Fn(&str),
) -> Result<Vec<HistoryEntry>, crate::edges::store::StoreError> {
    use crate::edges::store::{HistoryFilter, Write};
    let cursor = store
        .status("Notifier", "default", "cursor")?
        .and_then(|s| s["id"].as_i64())
        .unwrap_or(0);
    let pending = store.history(&HistoryFilter {
        after_id: Some(cursor),
        ..Default::default()
    })?;
    for entry in pending.iter().cloned() {
        let channels = catalog
            .model(&entry.namespace, &entry.model)
            .map(|m| m.spec.notifications.clone())
            .unwrap_or_default();
        let mut writes = Vec::new();
        let allowed = &notifier.allowed;
        let built = messages_with(&channels, &entry, &|r| allowed.resolve(r));
        for m in built
            .into_iter()
            .map(|m| m.and_then(|m| allowed.checked(m)))
        {
            let (channel, outcome) = notifier.deliver_built(m);
            let mut h = entry.clone();
            h.id = 0;
            h.at = chrono::Utc::now();
            h.event = if outcome.delivered {
                "NotificationDelivered".into()
            } else {
                "NotificationFailed".into()
            };
            h.subject = format!("Notification/{channel}");
            h.actor = Some("slipway".into());
            h.message = match &outcome.error {
                None => format!(
                    "{} sent to {channel} ({} attempt{})",
                    entry.event,
                    outcome.attempts,
                    if outcome.attempts == 1 { "" } else { "s" }
                ),
                Some(e) => format!(
                    "{} not sent to {channel} after {} attempts: {e}",
                    entry.event, outcome.attempts
                ),
            };
            h.data = json!({"event": entry.event, "entry": entry.id, "status": outcome.status, "attempts": outcome.attempts});
            progress(&h.message);
            writes.push(Write::History(h));
        }
        writes.push(Write::Status {
            kind: "Notifier".into(),
            namespace: "default".into(),
            name: "cursor".into(),
            status: json!({"id": entry.id}),
        });
        store.apply(&writes)?;
    }
    Ok(pending)
}

/// Sends messages over HTTP(S).
pub struct Notifier {
    agent: ureq::Agent,
    /// Attempts per message.
    pub attempts: u32,
    /// First backoff; doubled after every failed attempt.
    pub backoff: Duration,
    /// What [`deliver_pending`] may resolve and where it may send (git mode's operator flags).
    pub allowed: Allowed,
}

impl Notifier {
    /// A notifier that resolves and sends only what `allowed` lets it.
    pub fn allowing(allowed: Allowed) -> Notifier {
        Notifier {
            allowed,
            ..Notifier::default()
        }
    }
}

impl Default for Notifier {
    fn default() -> Self {
        // Redirects are not followed: a message carries secrets (a Slack URL, header values, a
        // results token) for the receiver it names, not for wherever that receiver points.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        Notifier {
            agent,
            attempts: 4,
            backoff: Duration::from_millis(500),
            allowed: Allowed::any(),
        }
    }
}

/// The outcome of one delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// Whether the receiver accepted it (2xx).
    pub delivered: bool,
    /// Attempts made.
    pub attempts: u32,
    /// Last HTTP status, if any answer came.
    pub status: Option<u16>,
    /// Why it failed (no secret in it).
    pub error: Option<String>,
}

impl Delivery {
    /// A delivery not attempted (its message could not be built, or its sender stopped), and why.
    pub fn not_attempted(why: impl Into<String>) -> Delivery {
        Delivery {
            delivered: false,
            attempts: 0,
            status: None,
            error: Some(why.into()),
        }
    }
}

impl Notifier {
    /// Delivers a message of [`messages`], or says why it could not be built: the channel and
    /// the delivery.
    pub fn deliver_built(&self, m: Result<Message, (String, String)>) -> (String, Delivery) {
        match m {
            Ok(m) => (m.channel.clone(), self.deliver(&m)),
            Err((channel, why)) => (channel, Delivery::not_attempted(why)),
        }
    }

    /// POSTs one message, retrying connection errors, 429 and 5xx with exponential backoff.
    pub fn deliver(&self, m: &Message) -> Delivery {
        let mut wait = self.backoff;
        let mut last = Delivery {
            delivered: false,
            attempts: 0,
            status: None,
            error: None,
        };
        for attempt in 1..=self.attempts {
            last.attempts = attempt;
            let mut req = self.agent.post(&m.url);
            for (k, v) in &m.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            match req.send(m.body.as_str()) {
                Ok(resp) => {
                    let code = resp.status().as_u16();
                    last.status = Some(code);
                    if (200..300).contains(&code) {
                        last.delivered = true;
                        last.error = None;
                        return last;
                    }
                    last.error = Some(if (300..400).contains(&code) {
                        format!(
                            "the receiver answered HTTP {code} (a redirect): Slipway does not \
                             follow redirects with secrets; point the URL at the final address"
                        )
                    } else {
                        format!("the receiver answered HTTP {code}")
                    });
                    if code != 429 && code < 500 {
                        return last; // a client error will not heal by retrying
                    }
                }
                // The error text of a transport failure can contain the URL: keep only its kind.
                Err(e) => last.error = Some(format!("transport error ({})", error_kind(&e))),
            }
            if attempt < self.attempts {
                std::thread::sleep(wait);
                wait *= 2;
            }
        }
        last
    }
}

fn error_kind(e: &ureq::Error) -> &'static str {
    match e {
        ureq::Error::Timeout(_) => "timeout",
        ureq::Error::Io(_) => "connection failed",
        ureq::Error::HostNotFound => "host not found",
        ureq::Error::Tls(_) => "TLS",
        _ => "request failed",
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn text_a_model_wrote_cannot_mention_or_link_in_slack() {
        let mut e = entry("EvaluationCompleted");
        e.message =
            "failed: pod x: Error (<!channel> <https://evil|Approve v8>\n\u{1b}[2K & more)".into();
        let body = slack_body(&e, NotificationEvent::EvaluationCompleted);
        let section = body["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(
            section,
            ":information_source: failed: pod x: Error (&lt;!channel&gt; &lt;https://evil|Approve v8&gt;  [2K &amp; more)"
        );
        assert!(!body["text"].as_str().unwrap().contains('<'));
    }

    use super::*;

    #[test]
    fn a_body_template_escapes_what_it_writes_and_must_render_json() {
        let hostile = "s3://m/7\", \"admin\": true, \"x\": \"\\\n";
        let ctx = json!({"event": "AliasMoved", "uri": hostile, "n": 3, "data": {"a": [1, "b"]}});
        let body = json_body(
            r#"{"event": "{{ event }}", "uri": "{{ uri }}", "n": {{ n }}, "data": {{ data }}}"#,
            &ctx,
        )
        .unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["uri"], hostile, "{body}");
        assert_eq!(
            parsed.as_object().unwrap().len(),
            4,
            "no key was injected: {body}"
        );
        assert_eq!(parsed["data"], json!({"a": [1, "b"]}));
        assert_eq!(parsed["n"], 3);
        let broken = json_body(r#"{"event": {{ event }}}"#, &ctx).unwrap_err();
        assert!(broken.contains("does not render JSON"), "{broken}");
    }
    use slipway_crd::registered_model::{SlackNotification, WebhookNotification};

    fn entry(event: &str) -> HistoryEntry {
        HistoryEntry {
            id: 0,
            at: "2026-11-26T12:00:00Z".parse().unwrap(),
            event: event.into(),
            namespace: "default".into(),
            model: "pitch-frames".into(),
            subject: "ModelAlias/p".into(),
            version: Some("8".into()),
            alias: Some("production".into()),
            actor: None,
            revision: Some("abc".into()),
            decision: Some("allowed".into()),
            message: "pitch-frames/production: 7 → 8".into(),
            data: Value::Null,
        }
    }

    fn channels() -> Vec<Notification> {
        vec![
            Notification {
                name: "slack".into(),
                events: vec![NotificationEvent::AliasMoved],
                slack: Some(SlackNotification { webhook_url: SecretRef { env: Some("SLIPWAY_TEST_SLACK_URL".into()), ..Default::default() } }),
                webhook: None,
            },
            Notification {
                name: "dispatch".into(),
                events: vec![NotificationEvent::AliasMoved, NotificationEvent::RolledBack],
                slack: None,
                webhook: Some(WebhookNotification {
                    url: "http://127.0.0.1:9/dispatch".into(),
                    body_template: Some(r#"{"event_type": "{{ event }}", "client_payload": {"version": "{{ version }}"}}"#.into()),
                    headers: Default::default(),
                }),
            },
        ]
    }

    #[test]
    fn channels_get_the_events_they_asked_for() {
        let msgs = messages(&channels(), &entry("RolledBack"));
        assert_eq!(msgs.len(), 1);
        let m = msgs[0].as_ref().unwrap();
        assert_eq!(m.channel, "dispatch");
        assert_eq!(
            m.body,
            r#"{"event_type": "RolledBack", "client_payload": {"version": "8"}}"#
        );
        assert!(messages(&channels(), &entry("ServerRestarted")).is_empty());
    }

    #[test]
    fn a_missing_secret_is_an_error_for_that_channel_only() {
        let msgs = messages(&channels(), &entry("AliasMoved"));
        assert_eq!(msgs.len(), 2);
        let (channel, why) = msgs[0].clone().unwrap_err();
        assert_eq!(channel, "slack");
        assert_eq!(
            why,
            "environment variable SLIPWAY_TEST_SLACK_URL is not set"
        );
        assert!(msgs[1].is_ok());
    }

    #[test]
    fn slack_messages_are_block_kit() {
        let body = slack_body(&entry("AliasMoved"), NotificationEvent::AliasMoved);
        assert_eq!(body["blocks"][0]["type"], "header");
        assert!(
            body["blocks"][1]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("7 → 8")
        );
        assert!(body["text"].as_str().unwrap().starts_with("AliasMoved"));
    }
}
