//! The protocol flows: the token endpoint, verification, revocation, introspection and
//! server metadata, shared by the SQL functions and the HTTP endpoints.

pub mod metadata;
pub mod token;
