//! JWT access tokens against an independent JOSE implementation (jwt-simple, pure Rust:
//! neither jsonwebtoken nor aws-lc), key rotation across backends, and forged tokens.

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jwt_simple::prelude::*;
use pg_oauth_harness::{expect_error, json, postgres, Cluster};
use serde_json::{json, Value};

const ISSUER: &str = "https://issuer.test";
const ALGS: [&str; 5] = ["ES256", "EdDSA", "RS256", "PS256", "HS256"];

fn setup(cluster: &Cluster, db: &str, extra: &[(&str, &str)]) -> postgres::Client {
    let mut settings = vec![("pg_oauth.issuer", ISSUER)];
    settings.extend_from_slice(extra);
    let mut db = cluster.create_db_with(db, &settings);
    db.batch_execute("CREATE ROLE api_user NOLOGIN").ok();
    db
}

fn add_jwt_client(db: &mut postgres::Client, id: &str, alg: &str, lifetime: i32) {
    db.execute(
        "INSERT INTO oauth.client (id, secret, scope, token_format, jwt_alg, access_token_expiration)
         VALUES ($1, 'verysecret', '{read,write}', 'jwt', $2, $3)",
        &[&id, &alg, &lifetime],
    )
    .unwrap();
    db.execute(
        "INSERT INTO oauth.policy (client_id, role) VALUES ($1, 'api_user')",
        &[&id],
    )
    .unwrap();
}

fn token(db: &mut postgres::Client, client: &str) -> String {
    let resp = json(
        db,
        "SELECT oauth.auth_token('client_credentials', $1, 'verysecret', 'read')",
        &[&client],
    );
    resp["access_token"].as_str().unwrap().to_owned()
}

fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let header = serde_json::from_slice(&B64.decode(it.next().unwrap()).unwrap()).unwrap();
    let payload = serde_json::from_slice(&B64.decode(it.next().unwrap()).unwrap()).unwrap();
    (header, payload)
}

fn b64json(v: &Value) -> String {
    B64.encode(v.to_string())
}

fn jwks(db: &mut postgres::Client) -> Vec<Value> {
    json(db, "SELECT oauth.auth_jwks()", &[])["keys"]
        .as_array()
        .unwrap()
        .clone()
}

fn field(jwk: &Value, name: &str) -> Vec<u8> {
    B64.decode(jwk[name].as_str().unwrap()).unwrap()
}

fn options() -> VerificationOptions {
    VerificationOptions {
        allowed_issuers: Some(HashSet::from([ISSUER.to_owned()])),
        allowed_audiences: Some(HashSet::from([ISSUER.to_owned()])),
        ..Default::default()
    }
}

/// Verify with jwt-simple, using only the JWKS (or, for HS256, the shared secret).
fn verify_independently(db: &mut postgres::Client, token: &str) -> JWTClaims<Value> {
    let (header, _) = parts(token);
    let kid = header["kid"].as_str().unwrap();
    let alg = header["alg"].as_str().unwrap();
    if alg == "HS256" {
        let secret: Vec<u8> = db
            .query_one(
                "SELECT private_key FROM oauth.signing_key WHERE kid = $1",
                &[&kid],
            )
            .unwrap()
            .get(0);
        return HS256Key::from_bytes(&secret)
            .verify_token::<Value>(token, Some(options()))
            .unwrap();
    }
    let jwk = jwks(db)
        .into_iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} is not in the JWKS"));
    assert_eq!(jwk["alg"], alg);
    assert_eq!(jwk["use"], "sig");
    let claims = match alg {
        "ES256" => {
            let mut point = vec![4u8];
            point.extend(field(&jwk, "x"));
            point.extend(field(&jwk, "y"));
            ES256PublicKey::from_bytes(&point)
                .unwrap()
                .verify_token::<Value>(token, Some(options()))
        }
        "EdDSA" => Ed25519PublicKey::from_bytes(&field(&jwk, "x"))
            .unwrap()
            .verify_token::<Value>(token, Some(options())),
        "RS256" => RS256PublicKey::from_components(&field(&jwk, "n"), &field(&jwk, "e"))
            .unwrap()
            .verify_token::<Value>(token, Some(options())),
        "PS256" => PS256PublicKey::from_components(&field(&jwk, "n"), &field(&jwk, "e"))
            .unwrap()
            .verify_token::<Value>(token, Some(options())),
        other => panic!("unexpected alg {other}"),
    };
    claims.unwrap_or_else(|e| panic!("{alg} token failed independent verification: {e}"))
}

fn verify_error(db: &mut postgres::Client, token: &str) -> String {
    let (code, message) = expect_error(db, "SELECT oauth.auth_verify($1)", &[&token]);
    assert_eq!(code, "28000", "{message}");
    message
}

#[test]
fn every_alg_verifies_with_an_independent_jose_library() {
    let cluster = Cluster::start("jwt-algs", &[]);
    let mut db = setup(&cluster, "oauth", &[]);
    for alg in ALGS {
        let client = format!("client-{alg}");
        add_jwt_client(&mut db, &client, alg, 600);
        let token = token(&mut db, &client);
        let (header, _) = parts(&token);
        assert_eq!(header["alg"], alg);
        assert_eq!(header["typ"], "at+jwt");
        let claims = verify_independently(&mut db, &token);
        assert_eq!(claims.subject.as_deref(), Some(client.as_str()));
        assert_eq!(claims.issuer.as_deref(), Some(ISSUER));
        assert_eq!(claims.custom["client_id"], client.as_str());
        assert_eq!(claims.custom["scope"], "read");
        assert_eq!(claims.custom["role"], "api_user");
        let (iat, exp) = (claims.issued_at.unwrap(), claims.expires_at.unwrap());
        assert_eq!(exp.as_secs() - iat.as_secs(), 600);
        let jti = claims.jwt_id.unwrap();
        let open: bool = db
            .query_one(
                "SELECT revoked_at IS NULL FROM oauth.session WHERE id = $1::text::uuid",
                &[&jti],
            )
            .unwrap()
            .get(0);
        assert!(open, "the jti names the token's session");
        // And our own verifier agrees.
        let ours = json(&mut db, "SELECT oauth.auth_verify($1)", &[&token]);
        assert_eq!(ours["jti"], jti.as_str());
    }
    // The JWK Set publishes active and next keys of the four public algorithms, no secrets.
    let keys = jwks(&mut db);
    assert_eq!(keys.len(), 8, "{keys:?}");
    for jwk in keys {
        assert_ne!(jwk["alg"], "HS256");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
            assert!(jwk.get(private).is_none(), "JWKS leaks {private}: {jwk}");
        }
    }
}

#[test]
fn forged_tampered_and_stale_tokens_are_rejected() {
    let cluster = Cluster::start("jwt-forged", &[]);
    let mut db = setup(&cluster, "oauth", &[]);
    for alg in ["ES256", "EdDSA", "RS256"] {
        add_jwt_client(&mut db, &format!("c-{alg}"), alg, 600);
    }
    let es = token(&mut db, "c-ES256");
    let ed = token(&mut db, "c-EdDSA");
    let rs = token(&mut db, "c-RS256");
    let (es_header, es_claims) = parts(&es);
    let ed_kid = parts(&ed).0["kid"].clone();
    let rs_kid = parts(&rs).0["kid"].clone();
    let sig = |t: &str| t.rsplit('.').next().unwrap().to_owned();

    // Tampered payload, original signature.
    let mut tampered = es_claims.clone();
    tampered["scope"] = json!("read write admin");
    let forged = format!(
        "{}.{}.{}",
        b64json(&es_header),
        b64json(&tampered),
        sig(&es)
    );
    assert!(verify_error(&mut db, &forged).contains("signature is invalid"));

    // Swapped kid: another algorithm's key, and another key of the same algorithm.
    let mut header = es_header.clone();
    header["kid"] = ed_kid.clone();
    let swapped = format!("{}.{}.{}", b64json(&header), b64json(&es_claims), sig(&es));
    assert!(verify_error(&mut db, &swapped).contains("alg does not match"));
    let next_kid: String = db
        .query_one(
            "SELECT kid FROM oauth.signing_key WHERE alg = 'ES256' AND state = 'next'",
            &[],
        )
        .unwrap()
        .get(0);
    header["kid"] = json!(next_kid);
    let swapped = format!("{}.{}.{}", b64json(&header), b64json(&es_claims), sig(&es));
    assert!(verify_error(&mut db, &swapped).contains("signature is invalid"));

    // alg: none, with and without a signature.
    let none = json!({ "alg": "none", "kid": es_header["kid"], "typ": "at+jwt" });
    for s in ["", "AAAA"] {
        let unsigned = format!("{}.{}.{s}", b64json(&none), b64json(&es_claims));
        assert!(verify_error(&mut db, &unsigned).contains("alg does not match"));
    }

    // HS256 keyed with the RS256 public key (algorithm confusion).
    let rs_jwk = jwks(&mut db)
        .into_iter()
        .find(|k| k["kid"] == rs_kid)
        .unwrap();
    for public_bytes in [field(&rs_jwk, "n"), rs_jwk.to_string().into_bytes()] {
        let key = HS256Key::from_bytes(&public_bytes).with_key_id(rs_kid.as_str().unwrap());
        let claims = Claims::with_custom_claims(es_claims.clone(), Duration::from_secs(600));
        let opts = HeaderOptions {
            signature_type: Some("at+jwt".into()),
            ..Default::default()
        };
        let confused = key.authenticate_with_options(claims, &opts).unwrap();
        assert!(verify_error(&mut db, &confused).contains("alg does not match"));
    }

    // Tokens signed with our real private key by an independent signer: accepted when
    // every claim is right, rejected when exp/nbf/iss/typ/session are wrong.
    let kid = es_header["kid"].as_str().unwrap();
    let der: Vec<u8> = db
        .query_one(
            "SELECT private_key FROM oauth.signing_key WHERE kid = $1",
            &[&kid],
        )
        .unwrap()
        .get(0);
    let signer = ES256KeyPair::from_der(&der).unwrap().with_key_id(kid);
    let at_jwt = HeaderOptions {
        signature_type: Some("at+jwt".into()),
        ..Default::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let sign = |claims: Value, header: &HeaderOptions| -> String {
        let mut claims = claims;
        let obj = claims.as_object_mut().unwrap();
        let (iat, exp, nbf) = (obj.remove("iat"), obj.remove("exp"), obj.remove("nbf"));
        let mut jwt = Claims::with_custom_claims(claims, Duration::from_secs(1));
        jwt.issued_at = iat.map(|v| UnixTimeStamp::from_secs(v.as_u64().unwrap()));
        jwt.expires_at = exp.map(|v| UnixTimeStamp::from_secs(v.as_u64().unwrap()));
        jwt.invalid_before = nbf.map(|v| UnixTimeStamp::from_secs(v.as_u64().unwrap()));
        signer.sign_with_options(jwt, header).unwrap()
    };
    let mut good = es_claims.clone();
    good["iat"] = json!(now);
    good["exp"] = json!(now + 300);
    // Every claim right and signed with the real key, around a live jti — but not the token
    // that session was issued for (its SHA-256 differs): whoever holds a key cannot mint
    // tokens for live sessions.
    assert!(verify_error(&mut db, &sign(good.clone(), &at_jwt)).contains("unknown access token"));
    // The byte-for-byte original, re-signed by the independent signer, is the same token
    // only for deterministic signatures; ES256 is randomized, so check the issued one.
    assert_eq!(
        json(&mut db, "SELECT oauth.auth_verify($1)", &[&es])["jti"],
        es_claims["jti"]
    );

    let mut expired = good.clone();
    expired["iat"] = json!(now - 1000);
    expired["exp"] = json!(now - 100);
    assert!(verify_error(&mut db, &sign(expired, &at_jwt)).contains("expired"));
    let mut early = good.clone();
    early["nbf"] = json!(now + 600);
    assert!(verify_error(&mut db, &sign(early, &at_jwt)).contains("not valid yet"));
    let mut future = good.clone();
    future["iat"] = json!(now + 600);
    future["exp"] = json!(now + 900);
    assert!(verify_error(&mut db, &sign(future, &at_jwt)).contains("issued in the future"));
    let mut foreign = good.clone();
    foreign["iss"] = json!("https://evil.test");
    assert!(verify_error(&mut db, &sign(foreign, &at_jwt)).contains("another issuer"));
    let plain_jwt = HeaderOptions::default(); // typ "JWT": an ID token or anything else
    assert!(verify_error(&mut db, &sign(good.clone(), &plain_jwt)).contains("typ must be at+jwt"));
    let mut sessionless = good.clone();
    sessionless["jti"] = json!("01900000-0000-7000-8000-000000000000");
    assert!(verify_error(&mut db, &sign(sessionless, &at_jwt)).contains("unknown access token"));

    // A revoked token stops verifying at once; an expired one never did.
    let revoked: bool = db
        .query_one("SELECT oauth.auth_revoke($1)", &[&es])
        .unwrap()
        .get(0);
    assert!(revoked);
    assert!(verify_error(&mut db, &es).contains("revoked"));
    assert!(verify_error(&mut db, "a.b.c").contains("malformed"));
    assert!(verify_error(&mut db, &format!("{es}.x")).contains("three"));
}

#[test]
fn rotation_keeps_issued_tokens_valid_and_reaches_every_backend() {
    let cluster = Cluster::start("jwt-rotation", &[]);
    let mut a = setup(&cluster, "oauth", &[]);
    add_jwt_client(&mut a, "rot", "ES256", 600);
    let mut b = cluster.connect("oauth");

    let t1 = token(&mut a, "rot");
    let kid = |t: &str| parts(t).0["kid"].as_str().unwrap().to_owned();
    let next1: String = a
        .query_one(
            "SELECT kid FROM oauth.signing_key WHERE state = 'next'",
            &[],
        )
        .unwrap()
        .get(0);
    // Backend B rotates; backend A (which has the old key cached) signs with the new one.
    let active2: String = b
        .query_one("SELECT oauth.rotate_signing_key('ES256')", &[])
        .unwrap()
        .get(0);
    assert_eq!(active2, next1, "the published next key becomes active");
    let t2 = token(&mut a, "rot");
    assert_eq!(kid(&t2), active2);
    b.query_one("SELECT oauth.rotate_signing_key()", &[])
        .unwrap();
    let t3 = token(&mut a, "rot");
    assert!(kid(&t1) != kid(&t2) && kid(&t2) != kid(&t3));

    // Tokens from before both rotations still verify, on both backends and independently.
    for t in [&t1, &t2, &t3] {
        for db in [&mut a, &mut b] {
            assert_eq!(json(db, "SELECT oauth.auth_verify($1)", &[t])["sub"], "rot");
            verify_independently(db, t);
        }
    }
    let states: Vec<(String, String)> = a
        .query(
            "SELECT kid, state FROM oauth.signing_key ORDER BY created_at",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let published: Vec<String> = jwks(&mut a)
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states.len(), 4);
    for (kid, _) in &states {
        assert!(
            published.contains(kid),
            "{kid} ({states:?}) must stay published"
        );
    }

    // A key deleted by a DBA (say it leaked) stops verifying everywhere at once.
    let doomed = kid(&t3);
    a.query_one("SELECT oauth.auth_verify($1)", &[&t3]).unwrap();
    b.execute("DELETE FROM oauth.signing_key WHERE kid = $1", &[&doomed])
        .unwrap();
    assert!(verify_error(&mut a, &t3).contains("unknown signing key"));
}

#[test]
fn retired_keys_leave_the_jwks_when_their_tokens_have_expired() {
    let cluster = Cluster::start("jwt-retire", &[]);
    let mut db = setup(&cluster, "oauth", &[("pg_oauth.leeway", "0")]);
    add_jwt_client(&mut db, "short", "EdDSA", 2);
    let t = token(&mut db, "short");
    let old = parts(&t).0["kid"].as_str().unwrap().to_owned();
    db.query_one("SELECT oauth.rotate_signing_key('EdDSA')", &[])
        .unwrap();
    assert_eq!(
        json(&mut db, "SELECT oauth.auth_verify($1)", &[&t])["sub"],
        "short"
    );
    assert!(jwks(&mut db).iter().any(|k| k["kid"] == old.as_str()));
    std::thread::sleep(std::time::Duration::from_millis(3100));
    assert!(!jwks(&mut db).iter().any(|k| k["kid"] == old.as_str()));
    let message = verify_error(&mut db, &t);
    assert!(
        message.contains("unknown signing key") || message.contains("expired"),
        "{message}"
    );
}

#[test]
fn issuer_is_required_for_jwts() {
    let cluster = Cluster::start("jwt-noiss", &[]);
    let mut db = cluster.create_db("oauth");
    db.batch_execute("CREATE ROLE api_user NOLOGIN").unwrap();
    add_jwt_client(&mut db, "noiss", "ES256", 60);
    let (code, message) = expect_error(
        &mut db,
        "SELECT oauth.auth_token('client_credentials', 'noiss', 'verysecret')",
        &[],
    );
    assert_eq!(code, "55000");
    assert!(
        message.starts_with("server_error: pg_oauth.issuer is not set"),
        "{message}"
    );
}
