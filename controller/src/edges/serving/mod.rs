//! Deployment targets. `local`: model-server processes behind Slipway's traffic router.

pub mod control;
pub mod local;
pub mod processes;
pub mod router;
pub mod sagemaker;
