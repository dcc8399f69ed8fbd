//! Kubernetes mode: the admission webhook (and, hosted on the same core, the controllers).

pub mod aliases;
pub mod approvals;
pub mod cache;
pub mod cluster;
pub mod context;
pub mod deployments;
pub mod evaluation_jobs;
pub mod evaluations;
pub mod gateway;
pub mod http;
pub mod lease;
pub mod metrics;
#[cfg(test)]
mod mock;
pub mod models;
pub mod notify;
pub mod recorder;
pub mod results;
pub mod retire;
pub mod sagemaker;
pub mod service_accounts;
pub mod setup;
pub mod shadows;
pub mod stall;
pub mod tls;
pub mod versions;
pub mod watch;
pub mod webhook;
pub mod wiring;
pub mod workloads;
pub mod writeback;
