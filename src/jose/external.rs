//! Access tokens other issuers sign, for token exchange (RFC 8693): verified against what a
//! DBA wrote in `oauth.trusted_issuer` (its keys by value, the algorithms, the audiences, how
//! old a token may be, its `typ`), as strictly as our own tokens (jwt.rs): an allow-listed
//! asymmetric `alg` the selected key fits, no `crit`, `iss`, `aud`, `exp` and `nbf` with the
//! leeway, an `iat` neither in the future nor older than the issuer's maximum, and a `sub`.

use base64::Engine;
use jsonwebtoken::{errors::ErrorKind, Validation};
use serde_json::{Map, Value};

use crate::error::quoted;
use crate::jose::jwks::{self, jws_name};

/// Longest external token read; a larger one is refused before anything is decoded.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What a trusted issuer's tokens must be.
pub struct Trust<'a> {
    pub issuer: &'a str,
    pub jwks: &'a Value,
    pub algorithms: &'a [String],
    pub audiences: &'a [String],
    /// Seconds since `iat` a token is accepted for.
    pub max_age: i64,
    /// The `typ` its header must carry (`at+jwt`, or `application/at+jwt`), if any.
    pub typ: Option<&'a str>,
}

/// The unverified `iss` of a JWT: which trusted issuer's rules to verify it by.
pub fn claimed_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Unverified {
        iss: Option<String>,
    }
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Unverified>(token)
        .ok()
        .and_then(|claims| claims.iss)
}

/// The claims of `token` if `trust`'s issuer signed it and it is valid at `now` (Unix
/// seconds, with `leeway` either way); else why not, for the caller to word.
pub fn verify(
    token: &str,
    trust: &Trust<'_>,
    now: i64,
    leeway: i64,
) -> Result<Map<String, Value>, String> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!("longer than {MAX_TOKEN_BYTES} bytes"));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| "not a JWT".to_owned())?;
    check_header(token, &header, trust)?;
    let key = jwks::select(trust.jwks, &header)?;
    let mut validation = Validation::new(header.alg);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&[trust.issuer]);
    validation.set_audience(trust.audiences);
    validation.validate_nbf = true;
    validation.leeway = u64::try_from(leeway).unwrap_or(0);
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(|e| {
            match e.kind() {
                ErrorKind::InvalidSignature => "its signature does not verify",
                ErrorKind::ExpiredSignature => "it has expired",
                ErrorKind::ImmatureSignature => "it is not valid yet (nbf)",
                ErrorKind::InvalidAudience => {
                    "its aud names none of the issuer's accepted audiences"
                }
                ErrorKind::InvalidIssuer => "its iss is not the trusted issuer",
                ErrorKind::MissingRequiredClaim(_) => "it lacks exp, iss, aud or sub",
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
                    "the issuer's key does not fit its algorithm"
                }
                _ => "it is not a valid JWT",
            }
            .to_owned()
        })?
        .claims;
    check_age(&claims, trust.max_age, now, leeway)?;
    if !claims.get("sub").is_some_and(Value::is_string) {
        return Err("its sub is not a string".into());
    }
    Ok(claims)
}

/// What needs no key: an allow-listed asymmetric algorithm, the issuer's `typ`, no `crit`
/// (no extension is understood here, RFC 7515 §4.1.11).
fn check_header(
    token: &str,
    header: &jsonwebtoken::Header,
    trust: &Trust<'_>,
) -> Result<(), String> {
    let alg = jws_name(&header.alg);
    if !jwks::is_asymmetric(header.alg) || !trust.algorithms.contains(&alg) {
        return Err(format!(
            "alg {} is not accepted from this issuer",
            quoted(&alg)
        ));
    }
    if let Some(expected) = trust.typ {
        let typ = header
            .typ
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let expected = expected.to_ascii_lowercase();
        if typ != expected && typ.strip_prefix("application/") != Some(expected.as_str()) {
            return Err(format!("its typ is not {}", quoted(&expected)));
        }
    }
    let raw_header = token.split('.').next().unwrap_or_default();
    let raw: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw_header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null);
    if raw.get("crit").is_some() {
        return Err("its header has crit, which is not understood here".into());
    }
    Ok(())
}

/// `iat` is required, not in the future, and no older than `max_age` (a token replayed past
/// the issuer's maximum age is refused, whatever its `exp`).
fn check_age(
    claims: &Map<String, Value>,
    max_age: i64,
    now: i64,
    leeway: i64,
) -> Result<(), String> {
    let Some(iat) = claims.get("iat").and_then(Value::as_i64) else {
        return Err("it has no numeric iat".into());
    };
    if iat > now + leeway {
        return Err("it was issued in the future (iat)".into());
    }
    if now - iat > max_age + leeway {
        return Err(format!(
            "it is older than the {max_age} seconds this issuer's tokens are accepted for"
        ));
    }
    Ok(())
}

/// Test helpers: an issuer with a key made here, and the checks of its row (fuzz.rs too).
#[cfg(test)]
pub(crate) mod unit {
    use super::*;
    use crate::crypto::alg::JwtAlg;
    use crate::crypto::random::b64url;
    use crate::jose::keys;
    use serde_json::json;

    pub(crate) struct Issuer {
        key: keys::Key,
        pub jwks: Value,
    }

    pub(crate) const ISS: &str = "https://ehr.example";
    pub(crate) const AUD: &str = "https://as.example";

    pub(crate) fn issuer() -> Issuer {
        let made = keys::generate(JwtAlg::ES256).unwrap();
        let mut jwk = made.public_jwk.unwrap();
        jwk["kid"] = json!("k1");
        Issuer {
            key: keys::parse_key(&made.kid, JwtAlg::ES256, &made.private_der).unwrap(),
            jwks: json!({ "keys": [jwk] }),
        }
    }

    impl Issuer {
        pub(crate) fn sign(&self, header: Value, claims: Value) -> String {
            let input = format!(
                "{}.{}",
                b64url(header.to_string().as_bytes()),
                b64url(claims.to_string().as_bytes())
            );
            let signature = self.key.sign(input.as_bytes()).unwrap();
            format!("{input}.{}", b64url(&signature))
        }
    }

    pub(crate) fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// `token` with `other`'s payload: its signature no longer covers what it says.
    fn swapped_payload(token: &str, other: &str) -> String {
        let parts: Vec<&str> = token.split('.').collect();
        let theirs: Vec<&str> = other.split('.').collect();
        format!("{}.{}.{}", parts[0], theirs[1], parts[2])
    }

    pub(crate) fn good_claims() -> Value {
        json!({ "iss": ISS, "sub": "patient-7", "aud": AUD, "iat": now(), "exp": now() + 300 })
    }

    pub(crate) fn check(token: &str, jwks: &Value) -> Result<Map<String, Value>, String> {
        let algorithms = ["ES256".to_owned()];
        let audiences = [AUD.to_owned()];
        let trust = Trust {
            issuer: ISS,
            jwks,
            algorithms: &algorithms,
            audiences: &audiences,
            max_age: 3600,
            typ: Some("at+jwt"),
        };
        verify(token, &trust, now(), 30)
    }

    #[test]
    fn only_what_the_trusted_issuer_signed_as_its_row_says_verifies() {
        let ehr = issuer();
        let header = json!({ "alg": "ES256", "kid": "k1", "typ": "at+jwt" });
        let good = ehr.sign(header.clone(), good_claims());
        assert_eq!(check(&good, &ehr.jwks).unwrap()["sub"], "patient-7");
        let app_typ = ehr.sign(
            json!({ "alg": "ES256", "kid": "k1", "typ": "application/at+jwt" }),
            good_claims(),
        );
        assert!(check(&app_typ, &ehr.jwks).is_ok());
        let with = |name: &str, value: Value| {
            let mut claims = good_claims();
            claims[name] = value;
            ehr.sign(header.clone(), claims)
        };
        let without = |name: &str| {
            let mut claims = good_claims();
            claims.as_object_mut().unwrap().remove(name);
            ehr.sign(header.clone(), claims)
        };
        let crit = json!({ "alg": "ES256", "kid": "k1", "typ": "at+jwt", "crit": ["exp"] });
        for (token, why) in [
            (ehr.sign(crit, good_claims()), "crit"),
            (without("iat"), "no numeric iat"),
            (with("iat", json!(now() + 600)), "in the future"),
            (with("iat", json!(now() - 4000)), "older than"),
            (without("sub"), "lacks"),
            (with("sub", json!(7)), "sub"),
            (with("nbf", json!(now() + 600)), "not valid yet"),
            (with("iss", json!("https://other.example")), "iss is not"),
            (
                ehr.sign(json!({ "alg": "ES256", "kid": "k1" }), good_claims()),
                "typ",
            ),
            (
                ehr.sign(
                    json!({ "alg": "ES256", "kid": "k2", "typ": "at+jwt" }),
                    good_claims(),
                ),
                "kid",
            ),
            (
                ehr.sign(
                    json!({ "alg": "HS256", "kid": "k1", "typ": "at+jwt" }),
                    good_claims(),
                ),
                "alg \"HS256\"",
            ),
            (
                ehr.sign(json!({ "alg": "none", "typ": "at+jwt" }), good_claims()),
                "not a JWT",
            ),
            (
                swapped_payload(&good, &with("sub", json!("patient-8"))),
                "signature",
            ),
        ] {
            let refused = check(&token, &ehr.jwks).expect_err(why);
            assert!(refused.contains(why), "{why}: {refused}");
        }
        // Another issuer's keys do not verify it.
        assert!(check(&good, &issuer().jwks).is_err());
        assert_eq!(claimed_issuer(&good).as_deref(), Some(ISS));
    }
}
