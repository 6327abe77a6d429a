//! PostgREST's pre-request hook, the resource server's gate where the data is
//! (`oauth.postgrest_pre_request()`, sql/http.sql): a token is used only as issued, by its
//! holder. A bearer token PostgREST verified must be the very token of an open session, with
//! the claims PostgREST read; a DPoP-bound token (RFC 9449) comes in the `DPoP` scheme, which
//! PostgREST does not read (it sees an anonymous request), with a proof for this request,
//! and the hook gives the request its token's claims and role.

use pgrx::prelude::*;
use serde_json::{json, Map, Value};

use super::postgrest::postgrest_request;
use super::rls::request_claims;
use crate::authn::dpop::Presented;
use crate::config::gucs;
use crate::error::{OAuthError, OrRaise, Result};
use crate::flow::metadata;
use crate::flow::token::{self, Possession};
use crate::grant::claims::bound_jkt;
use crate::http::message::Request;
use crate::jose::dpop::ALGORITHMS;
use crate::pg::backend;
use crate::pg::jsonb::Jsonb;
use crate::pg::redact;
use crate::store::session;

/// Internal, for `oauth.postgrest_pre_request()`: what to do with the current PostgREST
/// request. NULL: go on as PostgREST decided. `{"claims": ...}`: the request carries a
/// DPoP-bound token in the `DPoP` scheme with a valid proof; it takes the token's claims and
/// role. `{"error", "error_description", "status", "headers"}`: refuse it, with an RFC 6750 or
/// RFC 9449 challenge. Spends the request's DPoP proof.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn postgrest_request_check() -> Option<Jsonb> {
    let _sensitive = redact::sensitive();
    let request = postgrest_request();
    let claims = request_claims();
    let (scheme, token) = authorization(&request);
    // A refusal's challenge names the scheme the token should have come in.
    let dpop = scheme.as_deref() == Some("dpop")
        || bound_jkt(&claims).is_some()
        || gucs::DPOP_REQUIRED.get();
    let outcome = match scheme.as_deref() {
        Some("dpop") => {
            dpop_request(&request, &claims, &token).map(|c| Some(json!({ "claims": c })))
        }
        Some("bearer") if gucs::DPOP_REQUIRED.get() => Err(OAuthError::InvalidToken(
            "this API takes only DPoP-bound tokens (pg_oauth.dpop_required)".into(),
        )),
        Some("bearer") => bearer_check(&request, Some(&token), &claims).map(|()| None),
        _ => bearer_check(&request, None, &claims).map(|()| None),
    };
    match outcome {
        Ok(answer) => answer.map(Jsonb),
        Err(err) => Some(Jsonb(refusal(&err, dpop))),
    }
}

/// Why the bearer token of the current PostgREST request may not be used, or NULL (the
/// bearer half of `postgrest_request_check`, kept for hooks written against 0.2.0).
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn request_token_problem() -> Option<String> {
    let request = postgrest_request();
    let (scheme, token) = authorization(&request);
    let token = (scheme.as_deref() == Some("bearer")).then_some(token);
    bearer_check(&request, token.as_deref(), &request_claims())
        .err()
        .map(|err| err.description().to_owned())
}

/// The request's authorization scheme (lower case) and credentials, as `request.headers`
/// has them.
fn authorization(request: &Request) -> (Option<String>, String) {
    let Some((scheme, token)) = request
        .header("authorization")
        .and_then(|h| h.trim().split_once(' '))
    else {
        return (None, String::new());
    };
    (Some(scheme.to_ascii_lowercase()), token.trim().to_owned())
}

/// The claims PostgREST verified (`request.jwt.claims`) are bound to a session of ours
/// through the bearer token the request carries: they must name a session by a string `jti`,
/// that session must have been issued for exactly this token (its SHA-256, so a token minted
/// around a live jti is refused) and be open, and the token's own claims must be the verified
/// ones. A request with no token and no claims is anonymous, which PostgREST's anon role
/// decides. A DPoP-bound token is not a bearer token (RFC 9449 §7.1).
///
/// The token is read from `request.headers`, which keeps the last of repeated Authorization
/// headers while PostgREST verifies the first: requiring the two to carry the same claims
/// closes that gap (a second header cannot lend its session to the first's claims).
fn bearer_check(request: &Request, token: Option<&str>, claims: &Map<String, Value>) -> Result<()> {
    let invalid = |d: &str| Err(OAuthError::InvalidToken(d.to_owned()));
    let token = match token {
        None if anonymous(claims) => return Ok(()),
        None => return invalid("the request carries no bearer token for its claims"),
        Some(token) => token,
    };
    let Some(id) = claims
        .get("jti")
        .and_then(Value::as_str)
        .and_then(|jti| uuid::Uuid::parse_str(jti).ok())
    else {
        return invalid("the access token has no valid jti");
    };
    crate::pg::cache::accept_invalidations();
    session::probe(id.as_bytes(), token).or_raise().check()?;
    if !carries_claims(token, claims) {
        return invalid(session::UNKNOWN);
    }
    if bound_jkt(claims).is_some() {
        return invalid(
            "the access token is DPoP-bound: send it as Authorization: DPoP, with a DPoP proof",
        );
    }
    // A certificate-bound token (RFC 8705 §3) comes over the TLS connection of its
    // certificate, which the proxy in front forwards.
    let held = Possession {
        dpop: None,
        certificate: request.client_certificate.as_ref(),
    };
    token::check_binding(claims, token, held)
}

fn anonymous(claims: &Map<String, Value>) -> bool {
    claims.keys().all(|k| k == "role")
}

/// A token in the `DPoP` scheme (RFC 9449 §7.1): PostgREST saw an anonymous request. The
/// token (opaque or JWT) must be live and DPoP-bound, and the `DPoP` header a fresh proof by
/// its key for this request: its method and public URL (`pg_oauth.api_url`, or the issuer,
/// followed by PostgREST's `request.path`). Returns the token's claims.
fn dpop_request(
    request: &Request,
    claims: &Map<String, Value>,
    token: &str,
) -> Result<Map<String, Value>> {
    if !anonymous(claims) {
        return Err(OAuthError::InvalidToken(
            "the request carries a bearer token and a DPoP one".into(),
        ));
    }
    let proof = request
        .header("dpop")
        .ok_or_else(|| OAuthError::InvalidDpopProof("the request carries no DPoP proof".into()))?;
    let Some(base) = gucs::string(&gucs::API_URL).or_else(gucs::issuer) else {
        return Err(OAuthError::ServerError(
            "DPoP proofs cannot be checked: set pg_oauth.api_url to the API's public URL".into(),
        ));
    };
    let path = backend::request_setting(c"request.path").unwrap_or_default();
    let urls = [format!("{}{path}", base.trim_end_matches('/'))];
    let presented = Presented {
        proof,
        method: request.method.as_deref().unwrap_or(""),
        urls: &urls,
    };
    let held = Possession {
        dpop: Some(&presented),
        certificate: request.client_certificate.as_ref(),
    };
    let verified = token::verify(token, None, held)?;
    if bound_jkt(&verified).is_none() {
        return Err(OAuthError::InvalidToken(
            "the access token is not DPoP-bound: send it as Authorization: Bearer".into(),
        ));
    }
    Ok(verified)
}

/// The hook's refusal of a request: 401 with a challenge in the scheme the token should come
/// in (RFC 6750 §3, RFC 9449 §7.1) and where the API's metadata is (RFC 9728 §5.1); 429 when
/// the server is busy, 500 when it is not set up to check.
fn refusal(err: &OAuthError, dpop: bool) -> Value {
    let description = err.description().replace(['"', '\\'], "'");
    let metadata = metadata::resource_metadata_url()
        .map(|url| format!(", resource_metadata=\"{url}\""))
        .unwrap_or_default();
    let dpop = dpop
        || matches!(
            err,
            OAuthError::InvalidDpopProof(_) | OAuthError::UseDpopNonce { .. }
        );
    let challenge = if dpop {
        format!(
            "DPoP error=\"{}\", error_description=\"{description}\", algs=\"{}\"{metadata}",
            err.code(),
            ALGORITHMS.join(" ")
        )
    } else {
        format!(
            "Bearer error=\"{}\", error_description=\"{description}\"{metadata}",
            err.code()
        )
    };
    let mut headers = json!({ "WWW-Authenticate": challenge, "Cache-Control": "no-store" });
    if let Some(nonce) = err.dpop_nonce() {
        headers["DPoP-Nonce"] = json!(nonce);
    }
    let status = match (err, err.retry_after_secs()) {
        (OAuthError::ServerError(_), _) => 500,
        (_, Some(secs)) => {
            headers["Retry-After"] = json!(secs.to_string());
            429
        }
        _ => 401,
    };
    json!({
        "error": err.code(),
        "error_description": err.description(),
        "status": status,
        "headers": headers,
    })
}

/// Whether `token` (a JWS) carries exactly `verified` as its claims (numbers compared by
/// value: PostgREST may write 1.7e9 where the token has 1700000000).
fn carries_claims(token: &str, verified: &Map<String, Value>) -> bool {
    use base64::Engine;
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok());
    match payload {
        Some(Value::Object(carried)) => {
            same_json(&Value::Object(carried), &Value::Object(verified.clone()))
        }
        _ => false,
    }
}

fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
