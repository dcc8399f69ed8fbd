//! Deployment targets. `local`: model-server processes behind Slipway's traffic router.

pub mod local;
pub mod router;
pub mod sagemaker;
