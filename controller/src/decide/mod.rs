//! Pure decisions: nothing here does I/O, reads a clock or talks to a client. Both homes and the
//! pull-request check call these with objects and observations, and carry out what they return.

pub mod admission;
pub mod bounds;
pub mod catalog;
pub mod conditions;
pub mod diagnostics;
pub mod duration;
pub mod evaluation;
pub mod limits;
pub mod plan;
pub mod policy;
pub mod promotion;
pub mod report;
pub mod rollout;
