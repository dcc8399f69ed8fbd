//! Slipway: a GitOps-style declarative model registry and deploy controller.
//!
//! The layout is the architecture:
//! - [`decide`] — pure decisions, no I/O, no clock, no client: catalog, policy, plans, evaluation
//!   lifecycle, rollout state machines, admission verdicts;
//! - [`edges`] — one real implementation per effect: sources, store, runners, serving targets,
//!   notifications, the HTTP server;
//! - [`modes`] — the two homes hosting the same decisions: git mode (`slipway run`) and
//!   Kubernetes mode (`slipway controller`);
//! - [`cli`] — the command line.
#![forbid(unsafe_code)]

pub mod cli;
pub mod decide;
pub mod edges;
pub mod modes;
#[cfg(test)]
pub mod testing;
