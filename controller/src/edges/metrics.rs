//! The metrics both homes serve at `/metrics`, under one set of names: what happened
//! (`slipway_events_total{event}`, one series per [`Happened`] from the start, counted from the
//! same history entries in both homes), evaluation run time, notification outcomes, reconciles
//! and their failures. A home adds what only it has to the same registry (Kubernetes mode: the
//! leader lease, promotion latency, admission).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::decide::events::Event as Happened;
use crate::edges::serving::control::{self, Ask, Reply};
use crate::edges::serving::router::{BUCKETS, Totals};
use crate::edges::store::HistoryEntry;

/// Label set: what happened.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByEvent {
    /// The event's wire name (`AliasMoved`, `RolledBack`, …).
    pub event: String,
}

/// Label set: which controller (Kubernetes mode: `aliases`, `deployments`, …; git mode: `git`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByController {
    /// The controller.
    pub controller: String,
}

/// Label set: a failed reconcile's kind and error category.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByError {
    /// The kind reconciled (git mode: `pass`).
    pub kind: String,
    /// The error's category (`conflict`, `api-unavailable`, `fetch`, `invalid-revision`, …).
    pub category: String,
}

/// Label set: how a notification went.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByOutcome {
    /// `delivered` or `failed`.
    pub outcome: String,
}

/// Label set: one version behind a local router.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByVersion {
    /// The deployment's namespace.
    pub namespace: String,
    /// The deployment.
    pub deployment: String,
    /// The version.
    pub version: String,
}

/// What local routers observe per version (git mode's `local` target): what a metric of a
/// rollout's analysis queries from a Prometheus that scrapes `/metrics`. Each router runs in a
/// process of its own and counts since it started; a scrape asks every router for its totals
/// (a router that does not answer within half a second is left out of that scrape).
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    /// Each deployment's router socket.
    routers: Arc<Mutex<BTreeMap<(String, String), PathBuf>>>,
}

impl Traffic {
    /// Exports the router of `deployment` answering on `socket`.
    pub fn serve(&self, deployment: &(String, String), socket: &Path) {
        self.lock().insert(deployment.clone(), socket.to_path_buf());
    }

    /// Stops exporting a deployment's router.
    pub fn forget(&self, deployment: &(String, String)) {
        self.lock().remove(deployment);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), PathBuf>> {
        self.routers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every router's totals, by version label.
    fn totals(&self) -> Vec<(ByVersion, Totals)> {
        let routers = self.lock().clone();
        let mut out = Vec::new();
        for ((namespace, deployment), socket) in routers {
            let asked = control::ask(&socket, &Ask::Totals, Duration::from_millis(500));
            if let Ok(Reply::Totals { totals }) = asked {
                for (version, t) in totals {
                    let label = ByVersion {
                        namespace: namespace.clone(),
                        deployment: deployment.clone(),
                        version,
                    };
                    out.push((label, t));
                }
            }
        }
        out
    }
}

/// One counter per version label, read from its totals by `value`.
fn counters(
    encoder: &mut DescriptorEncoder,
    totals: &[(ByVersion, Totals)],
    (name, help): (&str, &str),
    value: fn(&Totals) -> u64,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (label, t) in totals {
        ConstCounter::new(value(t)).encode(family.encode_family(label)?)?;
    }
    Ok(())
}

impl Collector for Traffic {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.totals();
        let served: Vec<(ByVersion, Totals)> = totals
            .iter()
            .filter(|(_, t)| t.requests > 0 || (t.mirrored == 0 && t.skipped == 0))
            .cloned()
            .collect();
        let shadows: Vec<(ByVersion, Totals)> = totals
            .iter()
            .filter(|(_, t)| t.mirrored > 0 || t.skipped > 0)
            .cloned()
            .collect();
        let each = [
            (
                (
                    "router_requests",
                    "Requests a local router forwarded, per version",
                ),
                (|t: &Totals| t.requests) as fn(&Totals) -> u64,
                &served,
            ),
            // The errors series exists from the version's first request on (a ratio of errors
            // to requests reads 0, not "no data", for a version with none).
            (
                (
                    "router_errors",
                    "Requests a local router forwarded that were answered 5xx or not at all, per version",
                ),
                |t: &Totals| t.errors,
                &served,
            ),
            (
                (
                    "router_mirrored",
                    "Requests a local router mirrored to a version as a shadow (its answers discarded), per version",
                ),
                |t: &Totals| t.mirrored,
                &shadows,
            ),
            // Agreement = agreed / mirrored; a shadow with none agreeing reads 0, not "no data".
            (
                (
                    "router_agreed",
                    "Mirrored requests a shadow answered as the serving version did (same status and answer, within the tolerance), per version",
                ),
                |t: &Totals| t.agreed,
                &shadows,
            ),
            (
                (
                    "router_mirror_skipped",
                    "Requests in a shadow's share not mirrored because too many mirrors were in flight, per version",
                ),
                |t: &Totals| t.skipped,
                &shadows,
            ),
        ];
        for (descriptor, value, totals) in each {
            counters(&mut encoder, totals, descriptor, value)?;
        }
        let mut latency = encoder.encode_descriptor(
            "router_request_duration_seconds",
            "Durations of the requests a local router forwarded, per version",
            None,
            MetricType::Histogram,
        )?;
        for (label, t) in &served {
            let buckets: Vec<(f64, u64)> = BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(t.buckets.iter().copied().chain(std::iter::repeat(0)))
                .collect();
            latency
                .encode_family(label)?
                .encode_histogram::<NoLabelSet>(t.seconds, t.requests, &buckets, None)?;
        }
        Ok(())
    }
}

/// The metrics of both homes.
pub struct Metrics {
    /// The registry `/metrics` encodes (prefix `slipway`).
    pub registry: Registry,
    /// What happened, by event.
    pub events: Family<ByEvent, Counter>,
    /// Evaluation run time (seconds), per finished evaluation.
    pub evaluation_seconds: Histogram,
    /// Notifications by outcome.
    pub notifications: Family<ByOutcome, Counter>,
    /// Reconciles by controller.
    pub reconciles: Family<ByController, Counter>,
    /// Failed reconciles by controller.
    pub failures: Family<ByController, Counter>,
    /// Failed reconciles by kind and error category.
    pub errors: Family<ByError, Counter>,
    /// Local routers' traffic per version.
    pub traffic: Traffic,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("slipway");
        let events = Family::<ByEvent, Counter>::default();
        let evaluation_seconds = Histogram::new(exponential_buckets(0.1, 2.0, 14));
        let notifications = Family::<ByOutcome, Counter>::default();
        let reconciles = Family::<ByController, Counter>::default();
        let failures = Family::<ByController, Counter>::default();
        let errors = Family::<ByError, Counter>::default();
        registry.register("events", "What happened, by event", events.clone());
        registry.register(
            "evaluation_duration_seconds",
            "Evaluation run time",
            evaluation_seconds.clone(),
        );
        registry.register(
            "notifications",
            "Notifications by outcome",
            notifications.clone(),
        );
        registry.register("reconciles", "Reconciles by controller", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Failed reconciles by controller",
            failures.clone(),
        );
        registry.register(
            "errors",
            "Failed reconciles by kind and error category",
            errors.clone(),
        );
        let traffic = Traffic::default();
        registry.register_collector(Box::new(traffic.clone()));
        // Every series a dashboard or alert names exists from the start, at 0.
        for e in Happened::ALL.into_iter().filter(|e| e.in_history()) {
            let _ = events.get_or_create(&ByEvent {
                event: e.as_str().into(),
            });
        }
        for outcome in ["delivered", "failed"] {
            let _ = notifications.get_or_create(&ByOutcome {
                outcome: outcome.into(),
            });
        }
        Metrics {
            registry,
            events,
            evaluation_seconds,
            notifications,
            reconciles,
            failures,
            errors,
            traffic,
        }
    }
}

impl Metrics {
    /// These metrics with the reconcile series of `controllers` at 0 from the start.
    pub fn with_controllers(self, controllers: &[&str]) -> Self {
        for c in controllers {
            let label = ByController {
                controller: (*c).into(),
            };
            let _ = self.reconciles.get_or_create(&label);
            let _ = self.failures.get_or_create(&label);
        }
        self
    }

    /// Counts what a history entry says happened (both homes call it once per entry).
    pub fn observe(&self, entry: &HistoryEntry) {
        self.happened(&entry.event);
        match Happened::parse(&entry.event) {
            Some(Happened::EvaluationCompleted) => {
                if let Some(secs) = entry.data.get("seconds").and_then(|v| v.as_f64()) {
                    self.evaluation_seconds.observe(secs);
                }
            }
            Some(Happened::NotificationDelivered) => self.delivered(true),
            Some(Happened::NotificationFailed) => self.delivered(false),
            _ => {}
        }
    }

    /// Counts an event by its wire name.
    pub fn happened(&self, event: &str) {
        self.events
            .get_or_create(&ByEvent {
                event: event.into(),
            })
            .inc();
    }

    /// Counts a notification's outcome.
    pub fn delivered(&self, ok: bool) {
        let outcome = if ok { "delivered" } else { "failed" };
        self.notifications
            .get_or_create(&ByOutcome {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts a reconcile of `controller`, failed or not.
    pub fn reconciled(&self, controller: &str, ok: bool) {
        let label = ByController {
            controller: controller.into(),
        };
        self.reconciles.get_or_create(&label).inc();
        if !ok {
            self.failures.get_or_create(&label).inc();
        }
    }

    /// Counts a failed reconcile by kind and category.
    pub fn failed(&self, kind: &str, category: &str) {
        self.errors
            .get_or_create(&ByError {
                kind: kind.into(),
                category: category.into(),
            })
            .inc();
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> Result<String, String> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_a_series_from_the_start_and_entries_count() {
        let m = Metrics::default();
        let text = m.encode().unwrap();
        assert!(
            text.contains("slipway_events_total{event=\"RolledBack\"} 0"),
            "{text}"
        );
        assert!(text.contains("slipway_notifications_total{outcome=\"failed\"} 0"));
        let entry = HistoryEntry {
            id: 1,
            at: chrono::Utc::now(),
            event: "EvaluationCompleted".into(),
            namespace: "default".into(),
            model: "m".into(),
            subject: "Evaluation/m-1-holdout".into(),
            version: None,
            alias: None,
            actor: None,
            revision: None,
            decision: None,
            message: String::new(),
            data: serde_json::json!({"seconds": 3.0}),
        };
        m.observe(&entry);
        let text = m.encode().unwrap();
        assert!(
            text.contains("slipway_events_total{event=\"EvaluationCompleted\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("slipway_evaluation_duration_seconds_count 1"),
            "{text}"
        );
    }
}
