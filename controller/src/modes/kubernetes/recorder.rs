//! Kubernetes events (`events.k8s.io/v1`), written by Slipway's own recorder.
//!
//! kube-runtime's recorder keys a series by reason alone and keeps its first note: a second
//! `RolloutStarted` on an object was shown as "(x2) rolling out 7" after 8 rolled out. It also
//! keeps a full copy of every event it sent for six minutes and scans them all on each send
//! (at ten times the benchmark's size that was 35 MB and O(events) per event). Here a series is
//! one object, type, reason *and note*: the same words again count up (`series.count`), other
//! words are a new event. What is remembered per series is a hash, a name and a count.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// How long a repeat of an event counts up its series instead of starting a new event (the
/// window client-go's event correlator uses too).
const SERIES_WINDOW: Duration = Duration::from_secs(10 * 60);

/// The most series remembered; past it, expired ones are dropped, then all (a repeat then
/// starts a new event: never a wrong one).
const SERIES_BOUND: usize = 20_000;

/// The API server refuses an event whose note is longer than this (bytes).
const NOTE_LIMIT: usize = 1024;

/// A normal event or a warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// Something happened.
    Normal,
    /// Something went wrong, or needs someone.
    Warning,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Normal => "Normal",
            Type::Warning => "Warning",
        }
    }
}

/// One series: the event written first, how often it happened, and when last.
struct Series {
    name: String,
    count: u32,
    last: Instant,
}

/// Writes events for the reconcilers.
pub struct Recorder {
    client: kube::Client,
    controller: String,
    instance: String,
    hasher: RandomState,
    series: Mutex<HashMap<u64, Series>>,
}

impl Recorder {
    /// A recorder reporting as `controller` (`reportingController`) from `instance`.
    pub fn new(client: kube::Client, controller: &str, instance: &str) -> Recorder {
        Recorder {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            hasher: RandomState::new(),
            series: Mutex::new(HashMap::new()),
        }
    }

    /// Writes an event about `regarding`: a new one, or the next count of the same words said
    /// about the same object within the window.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: Type,
        reason: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let note = truncated(note);
        let key = self.key(regarding, type_, reason, note);
        let now = Instant::now();
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        if let Some((name, count)) = self.next_in_series(key, now) {
            let patch = json!({"series": {"count": count, "lastObservedTime": micro_time()}});
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // Gone (expired on the server before our window): write a new one.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event: Event =
            serde_json::from_value(self.event(regarding, type_, reason, note, namespace))
                .map_err(kube::Error::SerdeError)?;
        let name = event.metadata.name.clone().unwrap_or_default();
        events.create(&PostParams::default(), &event).await?;
        self.remember(key, name, now);
        Ok(())
    }

    fn key(&self, regarding: &ObjectReference, type_: Type, reason: &str, note: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        (
            &regarding.uid,
            &regarding.kind,
            &regarding.namespace,
            &regarding.name,
        )
            .hash(&mut h);
        (type_, reason, note).hash(&mut h);
        h.finish()
    }

    /// The event to count up, and its next count, when this series is still open.
    fn next_in_series(&self, key: u64, now: Instant) -> Option<(String, u32)> {
        let mut series = lock(&self.series);
        let s = series.get_mut(&key)?;
        if now.duration_since(s.last) > SERIES_WINDOW {
            series.remove(&key);
            return None;
        }
        s.count += 1;
        s.last = now;
        Some((s.name.clone(), s.count))
    }

    fn remember(&self, key: u64, name: String, now: Instant) {
        let mut series = lock(&self.series);
        if series.len() >= SERIES_BOUND {
            series.retain(|_, s| now.duration_since(s.last) <= SERIES_WINDOW);
            if series.len() >= SERIES_BOUND {
                series.clear();
            }
        }
        series.insert(
            key,
            Series {
                name,
                count: 1,
                last: now,
            },
        );
    }

    fn event(
        &self,
        regarding: &ObjectReference,
        type_: Type,
        reason: &str,
        note: &str,
        namespace: &str,
    ) -> Value {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let about = regarding.name.as_deref().unwrap_or(&self.controller);
        // A name is at most 253 characters: keep the object's name's start (not ending in `-` or
        // `.`, which a name part may not) and the stamp.
        let about: String = about.chars().take(253 - 34).collect();
        let about = about.trim_end_matches(['-', '.']);
        json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": format!("{about}.{stamp:x}"), "namespace": namespace},
            "eventTime": micro_time(),
            "reportingController": self.controller,
            "reportingInstance": self.instance,
            "action": reason,
            "reason": reason,
            "note": note,
            "type": type_.as_str(),
            "regarding": regarding,
        })
    }

    /// How many series are remembered (for tests).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        lock(&self.series).len()
    }
}

/// Now, as the API server writes a `MicroTime`.
fn micro_time() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// `note` cut to what the API server accepts, at a character boundary (the log keeps it whole).
fn truncated(note: &str) -> &str {
    if note.len() <= NOTE_LIMIT {
        return note;
    }
    let mut end = NOTE_LIMIT;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    &note[..end]
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout() -> ObjectReference {
        ObjectReference {
            api_version: Some("slipway.dev/v1alpha1".into()),
            kind: Some("ModelDeployment".into()),
            name: Some("classifier".into()),
            namespace: Some("team".into()),
            uid: Some("u-1".into()),
            ..Default::default()
        }
    }

    /// The same words again count up one event; other words under the same reason are an
    /// event of their own, never a count of the first one's note.
    #[tokio::test]
    async fn a_series_is_one_object_reason_and_note() {
        let (client, mut server) = super::super::mock::client();
        let recorder = std::sync::Arc::new(Recorder::new(client, "slipway-controller", "pod-1"));
        let send = |note: &'static str| {
            let r = recorder.clone();
            tokio::spawn(async move {
                r.publish(&rollout(), Type::Normal, "RolloutStarted", note)
                    .await
            })
        };

        let first = send("rolling out 7");
        let seen = server.answer(201, json!({})).await;
        first.await.unwrap().unwrap();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.uri, "/apis/events.k8s.io/v1/namespaces/team/events?");
        assert_eq!(seen.body["note"], "rolling out 7");
        assert_eq!(seen.body["reason"], "RolloutStarted");
        assert_eq!(seen.body["type"], "Normal");
        assert_eq!(seen.body["reportingController"], "slipway-controller");
        assert_eq!(seen.body["reportingInstance"], "pod-1");
        assert_eq!(seen.body["regarding"]["uid"], "u-1");
        let name = seen.body["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("classifier."), "{name}");

        let again = send("rolling out 7");
        let seen = server.answer(200, json!({})).await;
        again.await.unwrap().unwrap();
        assert_eq!(seen.method, "PATCH");
        assert_eq!(
            seen.uri,
            format!("/apis/events.k8s.io/v1/namespaces/team/events/{name}?")
        );
        assert_eq!(seen.body["series"]["count"], 2);
        assert!(seen.body.get("note").is_none(), "a count keeps its words");

        let other = send("rolling out 8");
        let seen = server.answer(201, json!({})).await;
        other.await.unwrap().unwrap();
        assert_eq!(seen.method, "POST", "other words are another event");
        assert_eq!(seen.body["note"], "rolling out 8");
        assert_eq!(recorder.remembered(), 2);
    }

    /// An event's name is a valid object name however long the object's name is.
    #[tokio::test]
    async fn a_long_name_is_cut_to_a_valid_event_name() {
        let (client, _server) = super::super::mock::client();
        let recorder = Recorder::new(client, "slipway-controller", "pod-1");
        let mut about = rollout();
        about.name = Some(format!("{}-{}", "a".repeat(218), "b".repeat(30)));
        let event = recorder.event(&about, Type::Normal, "RolloutStarted", "n", "team");
        let name = event["metadata"]["name"].as_str().unwrap();
        assert!(name.len() <= 253, "{}", name.len());
        let (base, stamp) = name.rsplit_once('.').unwrap();
        assert_eq!(base, "a".repeat(218), "cut, and no `-` left before the dot");
        assert!(stamp.chars().all(|c| c.is_ascii_hexdigit()));
    }

    /// A series whose event the API server no longer has starts again; a note longer than the
    /// API server takes is cut, not refused.
    #[tokio::test]
    async fn an_expired_series_starts_again_and_long_notes_are_cut() {
        let (client, mut server) = super::super::mock::client();
        let recorder = std::sync::Arc::new(Recorder::new(client, "slipway-controller", "pod-1"));
        // Three bytes a character: the limit falls inside one.
        let long: String = "€".repeat(NOTE_LIMIT);
        let send = {
            let recorder = recorder.clone();
            let long = long.clone();
            move || {
                let (r, note) = (recorder.clone(), long.clone());
                tokio::spawn(
                    async move { r.publish(&rollout(), Type::Warning, "Stalled", &note).await },
                )
            }
        };
        let first = send();
        let seen = server.answer(201, json!({})).await;
        first.await.unwrap().unwrap();
        let note = seen.body["note"].as_str().unwrap();
        assert!(
            note.len() <= NOTE_LIMIT && long.starts_with(note),
            "cut at a character"
        );
        assert_eq!(seen.body["type"], "Warning");

        let again = send();
        let gone = server
            .answer(404, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}))
            .await;
        assert_eq!(gone.method, "PATCH");
        let seen = server.answer(201, json!({})).await;
        again.await.unwrap().unwrap();
        assert_eq!(seen.method, "POST", "written again");
        server.quiet().await;
    }
}
