//! Prometheus metrics of `slipway controller` (`/metrics`).

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set: which controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByController {
    /// `aliases`, `deployments`, `versions`, `evaluations`.
    pub controller: String,
}

/// Label set: a failed reconcile's kind and error category.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByError {
    /// The kind reconciled.
    pub kind: String,
    /// The error's category (`conflict`, `api-unavailable`, `forbidden`, …).
    pub category: String,
}

/// Label set: how a notification went.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByOutcome {
    /// `delivered` or `failed`.
    pub outcome: String,
}

/// The controller's metrics.
pub struct Metrics {
    registry: Registry,
    /// Reconciles by controller.
    pub reconciles: Family<ByController, Counter>,
    /// Failed reconciles by controller.
    pub failures: Family<ByController, Counter>,
    /// Failed reconciles by kind and error category.
    pub errors: Family<ByError, Counter>,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge<i64, AtomicI64>,
    /// Seconds from an alias move being observed to the first write of its rollout.
    pub promotion_latency: Histogram,
    /// Admission decisions by result (`allowed`, `denied`).
    pub admissions: Family<ByController, Counter>,
    /// Seconds the webhook takes to decide a validating request (from the watches, or reading the
    /// namespace where it must).
    pub admission_seconds: Histogram,
    /// Notifications by outcome.
    pub notifications: Family<ByOutcome, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("slipway_controller");
        let reconciles = Family::<ByController, Counter>::default();
        let failures = Family::<ByController, Counter>::default();
        let errors = Family::<ByError, Counter>::default();
        registry.register(
            "errors",
            "Failed reconciles by kind and error category",
            errors.clone(),
        );
        let leader = Gauge::<i64, AtomicI64>::default();
        let promotion_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let admissions = Family::<ByController, Counter>::default();
        registry.register("reconciles", "Reconciles by controller", reconciles.clone());
        registry.register(
            "failures",
            "Failed reconciles by controller",
            failures.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the lease",
            leader.clone(),
        );
        registry.register(
            "promotion_latency_seconds",
            "Alias move observed to the first rollout write",
            promotion_latency.clone(),
        );
        registry.register(
            "admissions",
            "Admission decisions by result",
            admissions.clone(),
        );
        let admission_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "admission_seconds",
            "Time to decide a validating admission request",
            admission_seconds.clone(),
        );
        let notifications = Family::<ByOutcome, Counter>::default();
        registry.register(
            "notifications",
            "Notifications by outcome",
            notifications.clone(),
        );
        Metrics {
            registry,
            errors,
            notifications,
            reconciles,
            failures,
            leader,
            promotion_latency,
            admissions,
            admission_seconds,
        }
    }
}

impl Metrics {
    /// Counts a reconcile of `controller`, failed or not.
    /// Counts a failed reconcile by kind and category.
    pub fn failed(&self, kind: &str, category: &str) {
        self.errors
            .get_or_create(&ByError {
                kind: kind.into(),
                category: category.into(),
            })
            .inc();
    }

    /// Counts a reconcile of `controller`.
    pub fn reconciled(&self, controller: &str, ok: bool) {
        let label = ByController {
            controller: controller.into(),
        };
        self.reconciles.get_or_create(&label).inc();
        if !ok {
            self.failures.get_or_create(&label).inc();
        }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> Result<String, String> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
}
