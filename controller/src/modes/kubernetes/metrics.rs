//! Prometheus metrics of `slipway controller` (`/metrics`): the ones both homes serve
//! ([`crate::edges::metrics`]), and what only a cluster has — the leader lease, promotion
//! latency and admission decisions — in the same registry.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

pub use crate::edges::metrics::ByOutcome;

/// Label set: an admission decision's result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByResult {
    /// `allowed` or `denied`.
    pub result: String,
}

/// The controller's metrics.
pub struct Metrics {
    /// The metrics both homes serve.
    pub shared: crate::edges::metrics::Metrics,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge<i64, AtomicI64>,
    /// Seconds from an alias move being observed to the first write of its rollout.
    pub promotion_latency: Histogram,
    /// Admission decisions by result (`allowed`, `denied`).
    pub admissions: Family<ByResult, Counter>,
    /// Seconds the webhook takes to decide a validating request (from the watches, or reading the
    /// namespace where it must).
    pub admission_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut shared = crate::edges::metrics::Metrics::default().with_controllers(&[
            "aliases",
            "approvals",
            "deployments",
            "evaluations",
            "models",
            "versions",
        ]);
        let registry = &mut shared.registry;
        let leader = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "leader",
            "1 while this replica holds the lease",
            leader.clone(),
        );
        let promotion_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "promotion_latency_seconds",
            "Alias move observed to the first rollout write",
            promotion_latency.clone(),
        );
        let admissions = Family::<ByResult, Counter>::default();
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
        for result in ["allowed", "denied"] {
            let _ = admissions.get_or_create(&ByResult {
                result: result.into(),
            });
        }
        Metrics {
            shared,
            leader,
            promotion_latency,
            admissions,
            admission_seconds,
        }
    }
}

impl std::ops::Deref for Metrics {
    type Target = crate::edges::metrics::Metrics;

    fn deref(&self) -> &Self::Target {
        &self.shared
    }
}
