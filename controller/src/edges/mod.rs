//! The edges: where Slipway touches the world. Each has one real implementation, tested against
//! a real peer (git repositories, SQLite files, subprocesses, HTTP receivers, moto, the API
//! server).

pub mod cloudwatch;
pub mod github;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod progress;
pub mod providers;
pub mod runners;
pub mod serving;
pub mod source;
pub mod store;
