//! Evaluation runners: `local` runs the suite command as a subprocess (git mode); `webhook` asks
//! an external system (both homes); Kubernetes Jobs are created by Kubernetes mode.

pub mod local;
pub mod pool;
pub mod webhook;
