//! Slipway: a GitOps-style declarative model registry and deploy controller.
//!
//! Pure decisions live in [`catalog`], [`policy`] and [`plan`]; edges (files, git, the command
//! line) in [`source`] and [`cli`].
#![forbid(unsafe_code)]

pub mod catalog;
pub mod cli;
pub mod diagnostics;
pub mod duration;
pub mod evaluation;
pub mod k8s;
pub mod limits;
pub mod notify;
pub mod plan;
pub mod policy;
pub mod reconcile;
pub mod report;
pub mod rollout;
pub mod runner;
pub mod server;
pub mod source;
pub mod store;
pub mod target;
#[cfg(test)]
pub mod testing;
pub mod token;
