//! Slipway's pure decisions: nothing here does I/O, reads a clock or talks to a client. Both homes
//! and the pull-request check call these with objects and observations, and carry out what they
//! return. This is a crate of its own so the compiler keeps it so: it links no kube client or
//! runtime, no tokio, no SQLite and no HTTP stack (see `Cargo.toml`).
#![forbid(unsafe_code)]

pub mod admission;
pub mod bounds;
pub mod catalog;
pub mod conditions;
pub mod diagnostics;
pub mod duration;
pub mod evaluation;
pub mod events;
pub mod files;
pub mod limits;
pub mod model;
pub mod outcome;
pub mod plan;
pub mod policy;
pub mod promotion;
pub mod report;
pub mod rollout;
pub mod signature;
pub mod tasks;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// Bytes as lowercase hex digits, without an allocation per byte (content addresses are
/// computed for every evaluation on every pass).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}
