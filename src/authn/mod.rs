//! Client authentication: secrets (Basic or form), private_key_jwt assertions, TLS client
//! certificates (mtls.rs), and the lockout and throttling that bound guessing, counted by
//! where requests come from.

pub mod assertion;
pub mod attempts;
pub mod credentials;
pub mod dpop;
pub mod login;
pub mod login_state;
pub mod mtls;
pub mod source;
