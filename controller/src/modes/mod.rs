//! The two homes of the same lifecycle: they observe, persist and carry out effects; every
//! decision comes from [`crate::decide`].

pub mod git;
pub mod kubernetes;
