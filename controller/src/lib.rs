//! Slipway: a GitOps-style declarative model registry and deploy controller.
//!
//! The layout is the architecture:
//! - [`decide`] — the `slipway-core` crate (`core/`): pure decisions, no I/O, no clock, no client:
//!   catalog, policy, plans, evaluation lifecycle, rollout state machines, admission verdicts —
//!   a crate of its own, so the compiler keeps it pure;
//! - [`edges`] — one real implementation per effect: sources, store, runners, serving targets,
//!   notifications, the HTTP server;
//! - [`modes`] — the two homes hosting the same decisions: git mode (`slipway run`) and
//!   Kubernetes mode (`slipway controller`);
//! - [`cli`] — the command line.
#![forbid(unsafe_code)]

pub mod cli;
pub use slipway_core as decide;
pub mod edges;
pub mod modes;
#[cfg(test)]
pub use slipway_core::testing;
