//! Kubernetes mode: the admission webhook (and, hosted on the same core, the controllers).

pub mod admission;
pub mod cache;
pub mod cluster;
pub mod controller;
pub mod evaluations;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod notify;
pub mod sagemaker;
pub mod tls;
pub mod webhook;
