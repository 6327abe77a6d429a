//! PostgreSQL 18's OAuth login with pg_oauth tokens: whether a bearer token may log in as the
//! role asked for. The server asks before any database is open, so everything comes from
//! shared memory (pg/shmem/login.rs, kept by login_state.rs): the keys of the database that
//! publishes the token's issuer, the token's session, and its client.
//!
//! A token logs in when it is a JWT of the issuer pg_hba.conf names, signed by a published key
//! (algorithm, kid, typ at+jwt, no crit), unexpired, for `pg_oauth.login_audience`, carrying
//! the scopes pg_hba.conf asks for, not bound to a key or certificate (the login cannot prove
//! possession), its session open (not revoked, not deleted, issued for login), its client
//! active with the same policy role as when the token was issued; and, when pg_hba.conf
//! delegates the mapping to us, that role is the one asked for. The identity is the client id
//! (`system_user` is `oauth:<client id>`), which pg_ident.conf maps otherwise.

use std::rc::Rc;

use crate::config::{gucs, login as settings};
use crate::crypto::alg::JwtAlg;
use crate::error::OAuthError;
use crate::jose::jwt::{self, Expiry};
use crate::jose::keys;
use crate::pg::backend;
use crate::pg::shmem::login::{self, Lookup, PublishedKey};
use crate::pg::validator::{LoginOutcome, LoginRequest};

fn refused(authn_id: Option<&str>, why: impl Into<String>) -> LoginOutcome {
    LoginOutcome {
        authorized: false,
        authn_id: authn_id.map(str::to_owned),
        refusal: Some(why.into()),
    }
}

/// The issuer identifier pg_hba.conf's `issuer` stands for: itself, or, for a discovery
/// document's URL (as libpq accepts), the issuer it describes (RFC 8414 §3, OpenID Discovery).
pub fn issuer_id(configured: &str) -> String {
    if let Some((base, rest)) = configured.split_once("/.well-known/") {
        for name in ["oauth-authorization-server", "openid-configuration"] {
            if rest == name {
                return base.to_owned();
            }
            if let Some(path) = rest.strip_prefix(name).and_then(|r| r.strip_prefix('/')) {
                return format!("{base}/{path}");
            }
        }
    }
    configured.to_owned()
}

pub fn validate(req: &LoginRequest<'_>) -> LoginOutcome {
    let Some(audience) = settings::audience() else {
        return refused(None, "pg_oauth.login_audience is not set");
    };
    let Some(issuer) = req.issuer.map(issuer_id) else {
        return refused(None, "pg_hba.conf names no issuer");
    };
    if req.token.split('.').count() != 3 {
        return refused(
            None,
            "only JWT access tokens log in (an opaque token cannot be checked before a database is chosen)",
        );
    }
    let view = match login::issuer(&issuer) {
        Lookup::Found(view) => view,
        Lookup::UnknownIssuer => {
            return refused(
                None,
                format!("no database publishes issuer \"{issuer}\" (see pg_oauth.login_databases), or its state is being rebuilt"),
            )
        }
        Lookup::AmbiguousIssuer => {
            return refused(None, format!("two databases publish issuer \"{issuer}\""))
        }
    };
    let now_us = backend::now_micros();
    let expiry = Expiry::Enforce {
        now_us,
        leeway: i64::from(gucs::LEEWAY.current()),
    };
    let verified =
        match jwt::verify_detached(req.token, &issuer, expiry, |kid| find_key(&view.keys, kid)) {
            Ok(verified) => verified,
            Err(err) => return refused(None, reason(&err)),
        };
    let Some(client_id) = verified.client_id().map(str::to_owned) else {
        return refused(None, "the token names no client_id");
    };
    let refuse = |why: String| refused(Some(&client_id), why);
    if verified.claims.contains_key("cnf") {
        return refuse(
            "a sender-constrained token (DPoP or certificate-bound) cannot log in: the login cannot prove possession".into(),
        );
    }
    if !verified.audience_contains(&audience) {
        return refuse(format!(
            "the token's audience does not include \"{audience}\" (pg_oauth.login_audience)"
        ));
    }
    if let Some(missing) = missing_scope(req.scope, &verified.claims) {
        return refuse(format!("the token lacks scope \"{missing}\""));
    }
    let Some(id) = verified.jti().and_then(|j| uuid::Uuid::parse_str(j).ok()) else {
        return refuse("the token's jti is not a pg_oauth session".into());
    };
    match standing(view.database, &client_id, id.as_bytes(), now_us, req) {
        Ok(()) => LoginOutcome {
            authorized: true,
            authn_id: Some(client_id),
            refusal: None,
        },
        Err(why) => refuse(why),
    }
}

/// The session, the client and the role.
fn standing(
    database: u32,
    client_id: &str,
    id: &[u8; 16],
    now_us: i64,
    req: &LoginRequest<'_>,
) -> Result<(), String> {
    let standing = login::standing(database, client_id, id);
    let role = standing.role.ok_or_else(|| {
        format!("client \"{client_id}\" may not log in (deactivated, deleted, or without a policy)")
    })?;
    let token = standing
        .token
        .filter(|t| t.expires_at_us > now_us)
        .ok_or("the token is revoked, expired, or was not issued for login (its audience)")?;
    if role != token.role {
        return Err(format!(
            "client \"{client_id}\"'s policy role changed since the token was issued"
        ));
    }
    if req.delegated && role != req.role {
        return Err(format!(
            "the token acts as role \"{role}\", not \"{}\"",
            req.role
        ));
    }
    Ok(())
}

fn find_key(published: &[PublishedKey], kid: &str) -> crate::error::Result<Option<Rc<keys::Key>>> {
    let Some(key) = published.iter().find(|k| k.kid == kid) else {
        return Ok(None);
    };
    let alg = JwtAlg::parse(&key.alg)
        .ok_or_else(|| OAuthError::InvalidToken("unknown signing key".into()))?;
    keys::verifier(&key.kid, alg, &key.material, key.until_us).map(|k| Some(Rc::new(k)))
}

/// The first scope pg_hba.conf asks for that the token's `scope` lacks.
fn missing_scope(
    required: Option<&str>,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    let granted: Vec<&str> = claims
        .get("scope")
        .and_then(|s| s.as_str())
        .map(|s| s.split(' ').collect())
        .unwrap_or_default();
    required?
        .split_ascii_whitespace()
        .find(|s| !granted.contains(s))
        .map(str::to_owned)
}

/// A verification error as the server log may show it: our own fixed descriptions.
fn reason(err: &OAuthError) -> String {
    match err {
        OAuthError::InvalidToken(why) => why.clone(),
        _ => "the token cannot be verified".into(),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn discovery_urls_name_their_issuer() {
        let id = issuer_id;
        assert_eq!(id("https://as.example"), "https://as.example");
        assert_eq!(
            id("https://as.example/.well-known/oauth-authorization-server"),
            "https://as.example"
        );
        assert_eq!(
            id("https://as.example/.well-known/oauth-authorization-server/tenant"),
            "https://as.example/tenant"
        );
        assert_eq!(
            id("https://as.example/tenant/.well-known/openid-configuration"),
            "https://as.example/tenant"
        );
        assert_eq!(
            id("https://as.example/.well-known/other"),
            "https://as.example/.well-known/other"
        );
    }

    #[test]
    fn every_required_scope_must_be_granted() {
        let claims = |scope: &str| {
            let mut m = serde_json::Map::new();
            m.insert("scope".into(), scope.into());
            m
        };
        assert_eq!(missing_scope(None, &claims("a")), None);
        assert_eq!(
            missing_scope(Some("db:login"), &claims("read db:login")),
            None
        );
        assert_eq!(
            missing_scope(Some("db:login db:admin"), &claims("db:login")),
            Some("db:admin".into())
        );
        assert_eq!(
            missing_scope(Some("db:login"), &claims("db:login2")),
            Some("db:login".into())
        );
        assert_eq!(
            missing_scope(Some("db:login"), &serde_json::Map::new()),
            Some("db:login".into())
        );
    }
}
