//! Property-based fuzzing of every parser that sees request input: HTTP Basic credentials,
//! form decoding, scopes (plain, wildcard patterns, SMART), opaque tokens, JWT
//! verification, client assertions, DPoP proofs, client certificates, other issuers' tokens
//! (token exchange) and imported argon2 hashes. Each property is checked on
//! PG_OAUTH_FUZZ_CASES random inputs (default 2,000 per property; `make fuzz` runs 220,000
//! per property, over 1.5 million in all). No input may panic; JWT verification must
//! reject every modification of a valid token.

use std::rc::Rc;

use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::authn::assertion;
use crate::crypto::alg::JwtAlg;
use crate::crypto::argon2id;
use crate::error::OAuthError;
use crate::grant::scope::{self, Smart};
use crate::http;
use crate::jose::jwt::{self, Expiry};
use crate::jose::keys::{self, Key};
use crate::pg::backend;
use crate::store::session;

fn cases() -> u32 {
    std::env::var("PG_OAUTH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

/// Text of any unicode, and text near the grammar (the characters these parsers split on).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,80}",
        "[a-zA-Z0-9:%+ /._*?=$-]{0,60}",
        proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// application/x-www-form-urlencoded encoding of one value.
fn form_urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn fuzz_basic_credentials() {
    runner()
        .run(&(text(), text(), text()), |(header, id, secret)| {
            // Anything: Ok(None), Ok(Some) or invalid_client, never a panic.
            match http::basic::basic_credentials(Some(&header)) {
                Ok(_) => {}
                Err(e) => prop_assert!(matches!(e, OAuthError::InvalidClient(_))),
            }
            let _ =
                http::basic::basic_credentials(Some(&format!("Basic {}", b64(header.as_bytes()))));
            // What a client encodes per RFC 6749 §2.3.1 comes back exactly.
            let encoded = format!("{}:{}", form_urlencode(&id), form_urlencode(&secret));
            let parsed =
                http::basic::basic_credentials(Some(&format!("Basic {}", b64(encoded.as_bytes()))));
            prop_assert_eq!(
                parsed.map(|r| r.and_then(|r| r.into_iter().next())),
                Ok(Some((id.clone(), secret.clone())))
            );
            // Sent raw (no form-encoding), an id without colons is one of the readings.
            if !id.contains(':') && !id.is_empty() {
                let raw = format!("{id}:{secret}");
                let readings =
                    http::basic::basic_credentials(Some(&format!("Basic {}", b64(raw.as_bytes()))));
                let readings = readings.unwrap().unwrap();
                prop_assert!(readings.len() <= 3);
                prop_assert!(readings.contains(&(id, secret)));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn fuzz_form_urldecode() {
    runner()
        .run(&text(), |value| {
            let _ = http::basic::form_urldecode(&value);
            prop_assert_eq!(
                http::basic::form_urldecode(&form_urlencode(&value)),
                Some(value)
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn fuzz_scope_parsing() {
    runner()
        .run(&(text(), text()), |(requested, allowed)| {
            match scope::parse(Some(&requested)) {
                Ok(None) => prop_assert!(requested.split(' ').all(str::is_empty)),
                Ok(Some(tokens)) => {
                    for (i, t) in tokens.iter().enumerate() {
                        prop_assert!(scope::is_scope_token(t));
                        prop_assert!(requested.split(' ').any(|r| r == t));
                        prop_assert!(!tokens[..i].contains(t));
                    }
                }
                Err(e) => prop_assert!(matches!(e, OAuthError::InvalidScope(_))),
            }
            let _ = Smart::parse(&requested);
            let _ = scope::is_allowed(std::slice::from_ref(&allowed), &requested);
            let _ = scope::satisfies(std::slice::from_ref(&allowed), &requested);
            Ok(())
        })
        .unwrap();
}

/// The obvious recursive definition, as a reference for the linear matcher.
fn glob_reference(pattern: &[char], value: &[char]) -> bool {
    match pattern.split_first() {
        None => value.is_empty(),
        Some(('*', rest)) => (1..=value.len()).any(|i| glob_reference(rest, &value[i..])),
        Some((c, rest)) => value.first() == Some(c) && glob_reference(rest, &value[1..]),
    }
}

#[test]
fn fuzz_scope_patterns_against_a_reference() {
    runner()
        .run(&("[ab*é]{0,10}", "[abé]{0,12}"), |(pattern, value)| {
            let p: Vec<char> = pattern.chars().collect();
            let v: Vec<char> = value.chars().collect();
            prop_assert_eq!(
                scope::glob_matches(&pattern, &value),
                glob_reference(&p, &v),
                "pattern {:?} value {:?}",
                pattern,
                value
            );
            Ok(())
        })
        .unwrap();
    // And a hostile case the reference would take forever on: immediate.
    let pattern = "a*".repeat(30) + "b";
    assert!(!scope::glob_matches(
        &pattern,
        &"a".repeat(crate::grant::list::MAX_LIST_BYTES)
    ));
}

#[test]
fn fuzz_opaque_tokens() {
    runner()
        .run(
            &(
                text(),
                proptest::array::uniform32(any::<u8>()),
                proptest::array::uniform16(any::<u8>()),
            ),
            |(junk, random, id)| {
                let _ = session::opaque_token_id(&junk);
                let mut raw = [0u8; 48];
                raw[..16].copy_from_slice(&id);
                raw[16..].copy_from_slice(&random);
                let token = crate::crypto::random::b64url(&raw);
                prop_assert_eq!(session::opaque_token_id(&token), Some(id));
                Ok(())
            },
        )
        .unwrap();
}

const ISSUER: &str = "https://issuer.fuzz";

fn key(alg: JwtAlg) -> (String, Rc<Key>) {
    let new = keys::generate(alg).unwrap();
    let key = keys::parse_key(&new.kid, alg, &new.private_der).unwrap();
    (new.kid, Rc::new(key))
}

fn valid_jwt(key: &Key, now: i64) -> String {
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "c", "client_id": "c", "aud": ISSUER, "scope": "read",
        "iat": now, "exp": now + 3600, "jti": "0190d6c8-0000-7000-8000-000000000000",
    });
    jwt::sign(key, claims.to_string().as_bytes()).unwrap()
}

/// An edit of a token: replace, insert or delete one character, or truncate.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, char),
    Insert(usize, char),
    Delete(usize),
    Truncate(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let c = prop_oneof![
        proptest::char::range('-', 'z'),
        Just('.'),
        Just('='),
        any::<char>()
    ];
    proptest::collection::vec(
        prop_oneof![
            (any::<usize>(), c.clone()).prop_map(|(i, c)| Edit::Replace(i, c)),
            (any::<usize>(), c).prop_map(|(i, c)| Edit::Insert(i, c)),
            any::<usize>().prop_map(Edit::Delete),
            any::<usize>().prop_map(Edit::Truncate),
        ],
        1..4,
    )
}

fn apply(token: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    for edit in edits {
        let n = chars.len().max(1);
        match *edit {
            Edit::Replace(i, c) if !chars.is_empty() => chars[i % n] = c,
            Edit::Insert(i, c) => chars.insert(i % (chars.len() + 1), c),
            Edit::Delete(i) if !chars.is_empty() => {
                chars.remove(i % n);
            }
            Edit::Truncate(i) => chars.truncate(i % n),
            _ => {}
        }
    }
    chars.into_iter().collect()
}

#[test]
fn fuzz_jwt_verification() {
    let now = backend::now_micros() / 1_000_000;
    let keys: Vec<(String, Rc<Key>)> = [JwtAlg::ES256, JwtAlg::EdDSA, JwtAlg::HS256]
        .into_iter()
        .map(key)
        .collect();
    let tokens: Vec<String> = keys.iter().map(|(_, k)| valid_jwt(k, now)).collect();
    let verify = |token: &str| {
        jwt::verify(
            token,
            Some(ISSUER),
            Expiry::Enforce {
                now_us: now * 1_000_000,
                leeway: 30,
            },
            |kid| {
                Ok(keys
                    .iter()
                    .find(|(k, _)| k == kid)
                    .map(|(_, key)| key.clone()))
            },
        )
    };
    for token in &tokens {
        assert!(verify(token).is_ok(), "the unmodified token verifies");
    }
    runner()
        .run(
            &(0..tokens.len(), edits(), text()),
            |(which, edits, junk)| {
                let original = &tokens[which];
                let mutated = apply(original, &edits);
                match verify(&mutated) {
                    Ok(_) => prop_assert_eq!(&mutated, original, "a modified token verified"),
                    Err(e) => prop_assert!(matches!(e, OAuthError::InvalidToken(_))),
                }
                // Junk, and junk dressed as a JWT.
                prop_assert!(verify(&junk).is_err());
                let dressed = format!(
                    "{}.{}.{}",
                    crate::crypto::random::b64url(junk.as_bytes()),
                    "e30",
                    "AA"
                );
                prop_assert!(verify(&dressed).is_err());
                // Another key's header on this payload and signature (kid swap, alg confusion).
                let other = &tokens[(which + 1) % tokens.len()];
                let (oh, _) = other.split_once('.').unwrap();
                let (_, rest) = original.split_once('.').unwrap();
                let swapped = format!("{oh}.{rest}");
                prop_assert!(verify(&swapped).is_err());
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn fuzz_client_assertions_and_imported_hashes() {
    runner()
        .run(&(text(), text()), |(junk, phc_tail)| {
            let _ = assertion::claimed_client(&junk);
            let dressed = format!("e30.{}.sig", crate::crypto::random::b64url(junk.as_bytes()));
            let _ = assertion::claimed_client(&dressed);
            let _ = argon2id::classify(&junk);
            let _ = argon2id::classify(&format!("$argon2id$v=19$m=19456,t=2,p=1${phc_tail}"));
            let _ = argon2id::classify(&format!("$argon2id${phc_tail}"));
            Ok(())
        })
        .unwrap();
    // Costs beyond the import bounds are refused, not hashed as a plaintext secret.
    assert!(matches!(
        argon2id::classify("$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"),
        argon2id::SecretValue::BadHash(_)
    ));
}

/// A DPoP proof (RFC 9449) signed by `key`, with its public JWK in the header.
fn valid_proof(alg: JwtAlg, now: i64) -> String {
    let new = keys::generate(alg).unwrap();
    let key = keys::parse_key(&new.kid, alg, &new.private_der).unwrap();
    let header =
        serde_json::json!({ "typ": "dpop+jwt", "alg": alg.as_str(), "jwk": new.public_jwk });
    let claims = serde_json::json!({
        "jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": "https://as.example/token", "iat": now,
    });
    let b64url = crate::crypto::random::b64url;
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64url(&signature))
}

/// DPoP proofs: no modification of a valid proof reads as valid, junk never does, nothing
/// panics; URL normalisation takes any text.
#[test]
fn fuzz_dpop_proofs() {
    use crate::jose::dpop;
    let now = backend::now_micros() / 1_000_000;
    let proofs: Vec<String> = [JwtAlg::ES256, JwtAlg::EdDSA, JwtAlg::RS256, JwtAlg::PS256]
        .into_iter()
        .map(|alg| valid_proof(alg, now))
        .collect();
    for proof in &proofs {
        assert!(dpop::read(proof).is_ok(), "the unmodified proof reads");
    }
    runner()
        .run(
            &(0..proofs.len(), edits(), text()),
            |(which, edits, junk)| {
                let original = &proofs[which];
                let mutated = apply(original, &edits);
                match dpop::read(&mutated) {
                    Ok(_) => prop_assert_eq!(&mutated, original, "a modified proof verified"),
                    Err(e) => prop_assert!(matches!(e, OAuthError::InvalidDpopProof(_))),
                }
                prop_assert!(dpop::read(&junk).is_err());
                // Another proof's header (another key) on this payload and signature.
                let other = &proofs[(which + 1) % proofs.len()];
                let (oh, _) = other.split_once('.').unwrap();
                let (_, rest) = original.split_once('.').unwrap();
                let swapped = format!("{oh}.{rest}");
                prop_assert!(dpop::read(&swapped).is_err());
                let _ = dpop::normalized_url(&junk);
                let _ = dpop::normalized_url(&format!("https://{junk}"));
                Ok(())
            },
        )
        .unwrap();
}

/// Client certificates as a proxy forwards them or a SQL caller passes them: any text, and
/// any change to a real certificate's DER, is read without panicking; a changed certificate
/// never reads as the original (its thumbprint differs).
#[test]
fn fuzz_client_certificates() {
    use crate::crypto::certificate::{Certificate, NameKind, TEST_PEM};
    let original = Certificate::parse(TEST_PEM).unwrap();
    let der = original.leaf().to_vec();
    runner()
        .run(
            &(
                proptest::collection::vec((0..der.len(), any::<u8>()), 1..4),
                0..=der.len(),
                text(),
            ),
            |(flips, keep, junk)| {
                let mut changed = der.clone();
                for (at, xor) in flips {
                    changed[at] ^= xor.max(1);
                }
                changed.truncate(keep.max(1));
                for form in [b64(&changed), format!("-----BEGIN%20{junk}"), junk.clone()] {
                    if let Ok(cert) = Certificate::parse(&form) {
                        prop_assert!(
                            cert.leaf() == der.as_slice()
                                || cert.thumbprint() != original.thumbprint()
                        );
                        for kind in [NameKind::SubjectDn, NameKind::Dns, NameKind::Ip] {
                            let _ = cert.has_name(kind, &junk);
                        }
                    }
                }
                let _ = original.has_name(NameKind::SubjectDn, &junk);
                Ok(())
            },
        )
        .unwrap();
}

/// Tokens of a trusted issuer (token exchange): no modification of a valid one verifies,
/// junk never does, and nothing panics, whatever the input.
#[test]
fn fuzz_external_tokens() {
    use crate::jose::external::{self, unit};
    let ehr = unit::issuer();
    let header = serde_json::json!({ "alg": "ES256", "kid": "k1", "typ": "at+jwt" });
    let original = ehr.sign(header, unit::good_claims());
    assert!(
        unit::check(&original, &ehr.jwks).is_ok(),
        "the unmodified token verifies"
    );
    runner()
        .run(&(edits(), text()), |(edits, junk)| {
            let mutated = apply(&original, &edits);
            if unit::check(&mutated, &ehr.jwks).is_ok() {
                prop_assert_eq!(&mutated, &original, "a modified token verified");
            }
            prop_assert!(unit::check(&junk, &ehr.jwks).is_err());
            let _ = external::claimed_issuer(&junk);
            let _ = external::claimed_issuer(&mutated);
            Ok(())
        })
        .unwrap();
}
