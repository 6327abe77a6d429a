//! What a token request is granted: the grant types (client credentials, refresh token),
//! the scopes and audiences they grant, and the claims that carry them.

pub mod audience;
pub mod claims;
pub mod client_credentials;
pub mod granted;
pub mod list;
pub mod refresh_token;
pub mod scope;
