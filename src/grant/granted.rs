//! What a token request is granted, whatever its grant type.

use crate::store::refresh::FamilyId;

/// What a token request is granted: the access token's scopes and audience, and the
/// refresh token's family and grant, if it gets one (RFC 6749 §6: a new refresh token has
/// exactly the scope of the one it replaces, whatever the access token narrowed to).
pub struct Granted {
    pub scopes: Vec<String>,
    pub audience: Vec<String>,
    pub refresh: Option<RefreshGrant>,
}

pub struct RefreshGrant {
    pub family: FamilyId,
    pub scope: Vec<String>,
    pub audience: Vec<String>,
}
