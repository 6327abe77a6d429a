//! Server settings.

pub mod gucs;
pub mod login;
