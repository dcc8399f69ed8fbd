//! Evaluation executors. `local` runs the suite command as a subprocess; others follow.

pub mod local;
