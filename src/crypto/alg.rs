//! The JWS algorithms pg_oauth signs with: a setting's values (`pg_oauth.default_jwt_alg`)
//! and a column's (`oauth.client.jwt_alg`, `oauth.signing_key.alg`). Apart from jose/keys.rs so
//! that the settings need not depend on key handling.

use pgrx::prelude::*;

#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PostgresGucEnum)]
pub enum JwtAlg {
    ES256,
    EdDSA,
    RS256,
    PS256,
    HS256,
}

impl JwtAlg {
    pub const ALL: [JwtAlg; 5] = [
        JwtAlg::ES256,
        JwtAlg::EdDSA,
        JwtAlg::RS256,
        JwtAlg::PS256,
        JwtAlg::HS256,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlg::ES256 => "ES256",
            JwtAlg::EdDSA => "EdDSA",
            JwtAlg::RS256 => "RS256",
            JwtAlg::PS256 => "PS256",
            JwtAlg::HS256 => "HS256",
        }
    }

    pub fn parse(name: &str) -> Option<JwtAlg> {
        JwtAlg::ALL.into_iter().find(|a| a.as_str() == name)
    }
}
