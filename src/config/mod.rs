//! Server settings.

pub mod gucs;
