//! Token exchange (RFC 8693): a client trades a token it holds (the subject token) for one
//! of its own, narrower in scope, for another audience, and, with an actor token, saying who
//! acts for the subject (`act`, §4.1). The subject token is a live token of this server, or
//! one a trusted issuer signed (`oauth.trusted_issuer`, jose/external.rs), which stands for a
//! pg_oauth client. Refused unless the client has the grant and `oauth.exchange_policy` a row
//! for it and the subject token's client. The new token is a session like any other, lives no
//! longer than the subject token, and is revoked with it when that is ours
//! (`oauth.session_revoke_exchanged`).

use pgrx::spi::SpiClient;
use serde_json::{json, Map, Value};

use crate::config::gucs;
use crate::error::{quoted, OAuthError, Result};
use crate::flow::token;
use crate::grant::claims::{bound_jkt, bound_x5t};
use crate::grant::granted::Granted;
use crate::grant::{audience, scope};
use crate::jose::external;
use crate::pg::backend;
use crate::pg::cache::{self, Fresh};
use crate::store::client::{self, Client, TokenFormat};
use crate::store::exchange_policy::{self, ExchangePolicy};
use crate::store::policy::{self, ActingAs};
use crate::store::session::{self, SessionId};
use crate::store::trusted_issuer;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3 token type identifiers.
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The RFC 8693 §2.1 parameters of a token exchange request.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExchangeRequest<'a> {
    pub subject_token: Option<&'a str>,
    pub subject_token_type: Option<&'a str>,
    pub actor_token: Option<&'a str>,
    pub actor_token_type: Option<&'a str>,
    pub requested_token_type: Option<&'a str>,
}

/// What an exchange gives the new token besides its scopes and audience.
pub struct Exchanged {
    /// The subject token's `sub`.
    pub subject: String,
    /// Who acts (§4.1): the actor, with the subject token's own `act` nested; under
    /// impersonation, the subject token's `act` as it was.
    pub act: Option<Value>,
    /// The subject token's session, if it is ours: revoking it revokes the new token.
    pub from: Option<SessionId>,
    /// The subject token's role (the new token reaches what the subject reached, no more).
    pub role: Option<String>,
    /// The subject token's expiry, in Unix microseconds: the new token lives no longer.
    pub expires_at_us: i64,
    /// §2.2.1 `issued_token_type`.
    pub issued_token_type: &'static str,
}

/// RFC 8693 §2: check the exchange `req` of `client` against the subject token, the actor
/// token and the policy, and say what the new token gets. Holds the subject token's session
/// against revocation until the transaction ends.
pub fn grant(
    spi: &mut SpiClient<'_>,
    client: &Client,
    req: &ExchangeRequest<'_>,
    scope: Option<&str>,
    audience: Option<&str>,
) -> Result<(Granted, Exchanged)> {
    if !cache::client_has_column(c"dpop_bound_access_tokens") {
        return Err(OAuthError::ServerError(
            "token exchange needs the 0.3.0 schema: run ALTER EXTENSION pg_oauth UPDATE".into(),
        ));
    }
    if !client.has_grant(GRANT_TYPE) {
        return Err(OAuthError::UnauthorizedClient(
            "the token exchange grant is not enabled for this client (oauth.client.grant_types)"
                .into(),
        ));
    }
    let issued_token_type = issued_type(client, req.requested_token_type)?;
    let (subject, from) = subject_of(spi, req)?;
    let subject_client = text(&subject, "client_id").unwrap_or_default().to_owned();
    let Some(policy) = exchange_policy::load(spi, &client.id, &subject_client)? else {
        return Err(OAuthError::UnauthorizedClient(format!(
            "this client may not exchange tokens issued to {} (oauth.exchange_policy)",
            quoted(&subject_client)
        )));
    };
    let actor = actor_of(req)?;
    let act = act_of(client, &subject, actor.as_ref(), &policy, &subject_client)?;
    if let Some(from) = &from {
        if !session::hold_open(spi, from)? {
            return Err(invalid("subject_token", session::REVOKED));
        }
    }
    let granted = Granted {
        scopes: scopes(&subject, &policy, scope)?,
        audience: audiences(client, &policy, audience)?,
        refresh: None,
    };
    let role = text(&subject, "role").map(str::to_owned);
    if let Some(problem) = role
        .as_deref()
        .map(|r| policy::role_problem(spi, &Fresh::take(), r, ActingAs::Policy))
    {
        if let Some(problem) = problem? {
            return Err(OAuthError::UnauthorizedClient(format!(
                "the subject token's role may not be used: {problem}"
            )));
        }
    }
    let exchanged = Exchanged {
        subject: text(&subject, "sub").unwrap_or(&subject_client).to_owned(),
        act,
        from,
        role,
        expires_at_us: subject.get("exp").and_then(Value::as_i64).unwrap_or(0) * 1_000_000,
        issued_token_type,
    };
    Ok((granted, exchanged))
}

fn missing(name: &str) -> OAuthError {
    OAuthError::InvalidRequest(format!("the {name} parameter is required"))
}

/// §2.2.2: a subject or actor token that is not valid is invalid_request.
fn invalid(which: &str, why: &str) -> OAuthError {
    OAuthError::InvalidRequest(format!("{which}: {why}"))
}

fn text<'m>(claims: &'m Map<String, Value>, name: &str) -> Option<&'m str> {
    claims.get(name).and_then(Value::as_str)
}

/// §2.2.1: what the new token is: an access token (a JWT too, if the client's tokens are).
fn issued_type(client: &Client, requested: Option<&str>) -> Result<&'static str> {
    match requested {
        None | Some(ACCESS_TOKEN) => Ok(ACCESS_TOKEN),
        Some(JWT) if client.token_format == TokenFormat::Jwt => Ok(JWT),
        Some(JWT) => Err(OAuthError::InvalidRequest(
            "this client's access tokens are opaque, not JWTs".into(),
        )),
        Some(other) => Err(OAuthError::InvalidRequest(format!(
            "requested_token_type {} is not supported; ask for {ACCESS_TOKEN}",
            quoted(other)
        ))),
    }
}

/// The subject token's claims, and its session when it is ours: a live token of this server,
/// or one a trusted issuer signed (external.rs), read as the same claims (its `sub`, the
/// client it stands for, the scopes its issuer may obtain, its `exp`, `act` and `may_act`).
fn subject_of(
    spi: &SpiClient<'_>,
    req: &ExchangeRequest<'_>,
) -> Result<(Map<String, Value>, Option<SessionId>)> {
    const WHICH: &str = "subject_token";
    let token =
        typed(req.subject_token, req.subject_token_type, WHICH)?.ok_or_else(|| missing(WHICH))?;
    let ours = gucs::issuer();
    match external::claimed_issuer(token).filter(|iss| Some(iss) != ours.as_ref()) {
        Some(iss) => Ok((foreign(spi, token, &iss)?, None)),
        None => {
            let claims = ours_live(token, WHICH)?;
            let session = session_of(&claims)?;
            Ok((claims, Some(session)))
        }
    }
}

/// The actor token's claims: a live token of this server.
fn actor_of(req: &ExchangeRequest<'_>) -> Result<Option<Map<String, Value>>> {
    const WHICH: &str = "actor_token";
    match typed(req.actor_token, req.actor_token_type, WHICH)? {
        Some(token) => ours_live(token, WHICH).map(Some),
        None => Ok(None),
    }
}

/// A presented token, of a type its `*_type` parameter names.
fn typed<'a>(
    token: Option<&'a str>,
    token_type: Option<&str>,
    which: &str,
) -> Result<Option<&'a str>> {
    let Some(token) = token else {
        return match token_type {
            Some(_) => Err(missing(which)),
            None => Ok(None),
        };
    };
    match token_type {
        Some(ACCESS_TOKEN) => Ok(Some(token)),
        Some(JWT) if token.contains('.') => Ok(Some(token)),
        Some(JWT) => Err(invalid(which, "not a JWT")),
        Some(other) => Err(invalid(
            which,
            &format!("token type {} is not supported", quoted(other)),
        )),
        None => Err(missing(&format!("{which}_type"))),
    }
}

/// The claims of a live access token of ours, held by whoever presents it: a DPoP- or
/// certificate-bound token is not exchanged (that would strip its binding).
fn ours_live(token: &str, which: &str) -> Result<Map<String, Value>> {
    let claims = token::claims_of(token, None).map_err(|err| match err {
        OAuthError::InvalidToken(why) => invalid(which, &why),
        other => other,
    })?;
    if bound_jkt(&claims).is_some() || bound_x5t(&claims).is_some() {
        return Err(invalid(
            which,
            "a DPoP- or certificate-bound token is not exchanged",
        ));
    }
    Ok(claims)
}

/// A token `iss` signed, verified by its row in `oauth.trusted_issuer`, as subject claims.
fn foreign(spi: &SpiClient<'_>, token: &str, iss: &str) -> Result<Map<String, Value>> {
    const WHICH: &str = "subject_token";
    let Some(trusted) = trusted_issuer::load(spi, iss)? else {
        return Err(invalid(
            WHICH,
            &format!(
                "issuer {} is not trusted (oauth.trusted_issuer)",
                quoted(iss)
            ),
        ));
    };
    let trust = external::Trust {
        issuer: &trusted.issuer,
        jwks: &trusted.jwks,
        algorithms: &trusted.algorithms,
        audiences: &trusted.audiences,
        max_age: i64::from(trusted.max_token_age),
        typ: trusted.token_type.as_deref(),
    };
    let now = backend::now_micros() / 1_000_000;
    let leeway = i64::from(gucs::LEEWAY.get());
    let verified =
        external::verify(token, &trust, now, leeway).map_err(|why| invalid(WHICH, &why))?;
    let stands_for = client::load(spi, &trusted.subject_client_id)?
        .filter(|c| c.active)
        .ok_or_else(|| {
            OAuthError::UnauthorizedClient(format!(
                "tokens of {} stand for client {}, which is missing or inactive",
                quoted(iss),
                quoted(&trusted.subject_client_id)
            ))
        })?;
    let mut claims = Map::new();
    for name in ["sub", "exp", "act", "may_act"] {
        if let Some(value) = verified.get(name) {
            claims.insert(name.into(), value.clone());
        }
    }
    claims.insert("client_id".into(), json!(stands_for.id));
    claims.insert("scope".into(), json!(trusted.scope.join(" ")));
    if let Some(role) = &stands_for.role {
        claims.insert("role".into(), json!(role));
    }
    Ok(claims)
}

/// Who acts (§4.1, §4.4). With an actor token: it must be the exchanging client's own (the
/// party that asks is the one that acts), allowed by the subject token's `may_act` if it has
/// one, and the new `act` names it, with the subject's `act` nested. Without: impersonation,
/// which the policy must allow unless the subject token is the client's own.
fn act_of(
    client: &Client,
    subject: &Map<String, Value>,
    actor: Option<&Map<String, Value>>,
    policy: &ExchangePolicy,
    subject_client: &str,
) -> Result<Option<Value>> {
    let prior = subject.get("act").cloned();
    let Some(actor) = actor else {
        if subject.contains_key("may_act") {
            return Err(invalid(
                "actor_token",
                "the subject token names who may act (may_act)",
            ));
        }
        if subject_client != client.id && !policy.impersonation {
            return Err(OAuthError::UnauthorizedClient(
                "this client may exchange these tokens only with an actor_token \
                 (delegation); its oauth.exchange_policy row does not allow impersonation"
                    .into(),
            ));
        }
        return Ok(prior);
    };
    if text(actor, "client_id") != Some(client.id.as_str()) {
        return Err(invalid("actor_token", "it was not issued to this client"));
    }
    let actor_sub = text(actor, "sub").unwrap_or(&client.id);
    if let Some(may_act) = subject.get("may_act") {
        let allowed = may_act.get("sub").and_then(Value::as_str) == Some(actor_sub)
            && may_act
                .get("iss")
                .is_none_or(|iss| Some(iss) == actor.get("iss"));
        if !allowed {
            return Err(invalid(
                "actor_token",
                "the subject token's may_act does not name this actor",
            ));
        }
    }
    let mut act = json!({ "sub": actor_sub });
    if let Some(prior) = prior {
        act["act"] = prior;
    }
    Ok(Some(act))
}

fn session_of(subject: &Map<String, Value>) -> Result<SessionId> {
    text(subject, "jti")
        .and_then(|jti| uuid::Uuid::parse_str(jti).ok())
        .map(|u| *u.as_bytes())
        .ok_or_else(|| invalid("subject_token", "it names no session"))
}

/// The new token's scopes: those requested, each one the subject token has and the policy
/// allows; none requested: all of those.
fn scopes(
    subject: &Map<String, Value>,
    policy: &ExchangePolicy,
    requested: Option<&str>,
) -> Result<Vec<String>> {
    let held: Vec<String> = text(subject, "scope")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let allowed = |s: &String| {
        held.contains(s)
            && policy
                .scope
                .as_ref()
                .is_none_or(|p| scope::is_allowed(p, s))
    };
    match scope::parse(requested)? {
        None => Ok(held.iter().filter(|s| allowed(s)).cloned().collect()),
        Some(requested) => {
            if let Some(wider) = requested.iter().find(|s| !allowed(s)) {
                return Err(OAuthError::InvalidScope(format!(
                    "scope {} is not in the subject token or not allowed by the exchange policy",
                    quoted(wider)
                )));
            }
            Ok(requested)
        }
    }
}

/// The new token's audiences (§2.1 `audience`/`resource`): those requested, each one the
/// policy allows (else the client may have); none requested: all of those.
fn audiences(
    client: &Client,
    policy: &ExchangePolicy,
    requested: Option<&str>,
) -> Result<Vec<String>> {
    let allowed = policy
        .audience
        .clone()
        .unwrap_or_else(|| audience::allowed(client));
    let Some(requested) = audience::parse(requested)? else {
        return Ok(allowed);
    };
    if let Some(aud) = requested.iter().find(|a| !allowed.contains(a)) {
        return Err(OAuthError::InvalidTarget(format!(
            "audience {} is not allowed for this exchange",
            quoted(aud)
        )));
    }
    Ok(requested)
}
