//! The protocol flows: the token endpoint (with token exchange), verification, revocation, introspection and
//! server metadata, shared by the SQL functions and the HTTP endpoints; and carrying out
//! what failed requests leave to be done (`deferred`).

pub mod console;
pub mod deferred;
pub mod exchange;
pub mod issue;
pub mod metadata;
pub mod token;
