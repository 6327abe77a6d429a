//! The claims of an access token (RFC 9068 §2.2, plus `client_id` and PostgREST's `role`):
//! one builder for the JWT payload and for what `auth_verify` and introspection return for
//! opaque tokens, so both formats answer with the same shape.

use serde_json::{json, Map, Value};

use crate::store::session::{self, SessionId};

pub struct Claims<'a> {
    pub issuer: Option<&'a str>,
    pub client_id: &'a str,
    pub scope: &'a [String],
    pub audience: &'a [String],
    pub role: Option<&'a str>,
    pub id: &'a SessionId,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires_at: i64,
    /// The thumbprint of the DPoP key the token is bound to: `cnf.jkt` (RFC 9449 §6.1).
    pub jkt: Option<&'a str>,
    /// The thumbprint of the client certificate the token is bound to: `cnf.x5t#S256`
    /// (RFC 8705 §3.1).
    pub x5t: Option<&'a str>,
    /// An exchanged token (RFC 8693): its subject, when not the client, and its actor chain
    /// (`act`, §4.1).
    pub subject: Option<&'a str>,
    pub act: Option<&'a Value>,
}

/// The DPoP key thumbprint a token's claims bind it to (`cnf.jkt`), if any.
pub fn bound_jkt(claims: &Map<String, Value>) -> Option<&str> {
    claims.get("cnf")?.get("jkt")?.as_str()
}

/// The certificate thumbprint a token's claims bind it to (`cnf.x5t#S256`), if any.
pub fn bound_x5t(claims: &Map<String, Value>) -> Option<&str> {
    claims.get("cnf")?.get("x5t#S256")?.as_str()
}

/// `aud` as JWTs carry it: a string for one audience, an array for several.
pub fn audience_claim(audience: &[String]) -> Option<Value> {
    match audience {
        [] => None,
        [one] => Some(Value::String(one.clone())),
        many => Some(json!(many)),
    }
}

impl Claims<'_> {
    /// `scope` and `aud` only when there are any; `role` only when the client has a policy.
    pub fn build(&self) -> Map<String, Value> {
        let mut claims = Map::new();
        if let Some(iss) = self.issuer {
            claims.insert("iss".into(), Value::String(iss.to_owned()));
        }
        let sub = self.subject.unwrap_or(self.client_id);
        claims.insert("sub".into(), Value::String(sub.to_owned()));
        claims.insert("client_id".into(), Value::String(self.client_id.to_owned()));
        if let Some(aud) = audience_claim(self.audience) {
            claims.insert("aud".into(), aud);
        }
        if !self.scope.is_empty() {
            claims.insert("scope".into(), Value::String(self.scope.join(" ")));
        }
        if let Some(role) = self.role {
            claims.insert("role".into(), Value::String(role.to_owned()));
        }
        claims.insert("iat".into(), json!(self.issued_at));
        claims.insert("exp".into(), json!(self.expires_at));
        claims.insert("jti".into(), Value::String(session::uuid_string(self.id)));
        let mut cnf = Map::new();
        if let Some(jkt) = self.jkt {
            cnf.insert("jkt".into(), Value::String(jkt.to_owned()));
        }
        if let Some(x5t) = self.x5t {
            cnf.insert("x5t#S256".into(), Value::String(x5t.to_owned()));
        }
        if !cnf.is_empty() {
            claims.insert("cnf".into(), Value::Object(cnf));
        }
        if let Some(act) = self.act {
            claims.insert("act".into(), act.clone());
        }
        claims
    }
}
