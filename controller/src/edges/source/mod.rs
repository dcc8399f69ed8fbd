//! Where resources come from: a folder, or a git revision.

pub mod dir;
pub mod git;
pub mod remote;
