//! SMART on FHIR scopes, private_key_jwt client authentication (RFC 7523, SMART Backend
//! Services) with keys and assertions made by an independent JOSE library (jwt-simple),
//! and client secret rotation.

use std::time::Duration as StdDuration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jwt_simple::prelude::*;
use pg_oauth_harness::{expect_error, json, postgres, repo_root, Cluster, PostgRest};
use serde_json::{json, Value};

const ISSUER: &str = "http://127.0.0.1:3000";
const TOKEN_ENDPOINT: &str = "http://127.0.0.1:3000/rpc/token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn setup(cluster: &Cluster) -> postgres::Client {
    cluster.create_db_with("oauth", &[("pg_oauth.issuer", ISSUER)])
}

fn token_sql() -> &'static str {
    "SELECT oauth.auth_token('client_credentials', 'smart', 'verysecret', $1)"
}

#[test]
fn smart_scopes_expand_and_refuse_patient_and_user_context() {
    let cluster = Cluster::start("smart-scopes", &[]);
    let mut db = setup(&cluster);
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, type, scope)
         VALUES ('smart', 'verysecret', 'smart-app',
                 '{system/*.read,system/Observation.cruds,patient/*.read}');
         INSERT INTO oauth.client (id, secret, scope) VALUES ('plain', 'verysecret', '{notes:*}');",
    )
    .unwrap();
    let types: i64 = db
        .query_one("SELECT count(*) FROM oauth.fhir_resource_type", &[])
        .unwrap()
        .get(0);
    assert!(
        types >= 140,
        "seeded with the FHIR R4 resource types ({types})"
    );

    // v1 wildcard: expanded to every resource type, in the response and in the token.
    let resp = json(&mut db, token_sql(), &[&"system/*.read"]);
    let granted: Vec<&str> = resp["scope"].as_str().unwrap().split(' ').collect();
    assert_eq!(granted.len() as i64, types);
    assert!(granted.contains(&"system/Patient.read"));
    assert!(granted.contains(&"system/Observation.read"));
    assert!(!granted.iter().any(|s| s.contains('*')));
    let claims = json(
        &mut db,
        "SELECT oauth.auth_verify($1)",
        &[&resp["access_token"].as_str().unwrap()],
    );
    assert_eq!(claims["scope"], resp["scope"]);

    // patient/ and user/ need a context client credentials cannot have.
    for scope in [
        "patient/*.read",
        "user/Patient.read",
        "system/*.read patient/Patient.read",
    ] {
        let (code, message) = expect_error(&mut db, token_sql(), &[&scope]);
        assert_eq!(code, "42704", "{scope}");
        assert!(
            message.starts_with("invalid_scope: scope \"patient/")
                || message.starts_with("invalid_scope: scope \"user/"),
            "{message}"
        );
        assert!(message.contains("only system/ scopes"), "{message}");
    }

    // v2 permissions: .rs is within the allowed .read (= r s); within .cruds anything goes.
    let rs = json(&mut db, token_sql(), &[&"system/Observation.rs"]);
    assert_eq!(rs["scope"], "system/Observation.rs");
    let v2 = json(
        &mut db,
        token_sql(),
        &[&"system/Observation.cud system/Encounter.s"],
    );
    assert_eq!(v2["scope"], "system/Observation.cud system/Encounter.s");
    let (code, message) = expect_error(&mut db, token_sql(), &[&"system/Patient.write"]);
    assert_eq!(code, "42704");
    assert!(
        message.contains("\"system/Patient.write\" is not allowed"),
        "{message}"
    );
    let v2_wild = json(&mut db, token_sql(), &[&"system/*.rs"]);
    assert!(v2_wild["scope"]
        .as_str()
        .unwrap()
        .contains("system/Patient.rs"));

    // No scope: all allowed system/ scopes, expanded; the patient/ entry is left out.
    let default = json(
        &mut db,
        "SELECT oauth.auth_token('client_credentials', 'smart', 'verysecret')",
        &[],
    );
    let default: Vec<&str> = default["scope"].as_str().unwrap().split(' ').collect();
    assert!(
        default.contains(&"system/Observation.cruds") && default.contains(&"system/Patient.read")
    );
    assert!(!default.iter().any(|s| s.starts_with("patient/")));

    // The resource-type list is data the DBA controls.
    db.execute(
        "DELETE FROM oauth.fhir_resource_type WHERE name = 'Patient'",
        &[],
    )
    .unwrap();
    db.execute(
        "INSERT INTO oauth.fhir_resource_type VALUES ('MyCustomResource')",
        &[],
    )
    .unwrap();
    let custom = json(&mut db, token_sql(), &[&"system/*.read"]);
    let custom: Vec<&str> = custom["scope"].as_str().unwrap().split(' ').collect();
    assert!(!custom.contains(&"system/Patient.read"));
    assert!(custom.contains(&"system/MyCustomResource.read"));

    // Wildcard patterns outside SMART.
    let plain = json(&mut db, "SELECT oauth.auth_token('client_credentials', 'plain', 'verysecret', 'notes:read notes:write')", &[]);
    assert_eq!(plain["scope"], "notes:read notes:write");
    let (code, _) = expect_error(
        &mut db,
        "SELECT oauth.auth_token('client_credentials', 'plain', 'verysecret', 'admin')",
        &[],
    );
    assert_eq!(code, "42704");

    // has_scope understands SMART: system/Patient.rs satisfies a read of Patient.
    let mut tx = db.transaction().unwrap();
    tx.batch_execute(
        r#"SET LOCAL request.jwt.claims = '{"scope": "system/Patient.rs system/*.read notes:*"}'"#,
    )
    .unwrap();
    let row = tx
        .query_one(
            "SELECT oauth.has_scope('system/Patient.read'), oauth.has_scope('system/Patient.r'),
                    oauth.has_scope('system/Observation.s'), oauth.has_scope('system/Patient.write'),
                    oauth.has_scope('notes:anything'), oauth.has_scope('patient/Patient.read')",
            &[],
        )
        .unwrap();
    let got: Vec<bool> = (0..6).map(|i| row.get(i)).collect();
    assert_eq!(got, [true, true, true, false, true, false]);
}

/// A SMART wildcard expanded to every FHIR resource type makes a large JWT (nginx's default
/// 8 KB header buffers refuse two of them); pg_oauth.smart_expand_wildcards = off keeps the
/// wildcard itself, which has_scope understands. The sizes printed here are README's.
#[test]
fn smart_wildcards_can_stay_compact_in_the_jwt() {
    let cluster = Cluster::start("smart-compact", &[]);
    let mut db = setup(&cluster);
    db.batch_execute(
        "CREATE ROLE fhir_reader NOLOGIN;
         INSERT INTO oauth.client (id, secret, type, scope, token_format)
         VALUES ('smart', 'verysecret', 'smart-app', '{system/*.read,system/*.rs}', 'jwt');
         INSERT INTO oauth.policy (client_id, role) VALUES ('smart', 'fhir_reader');",
    )
    .unwrap();
    let size = |db: &mut postgres::Client, scope: &str| {
        let resp = json(db, token_sql(), &[&scope]);
        let token = resp["access_token"].as_str().unwrap().to_owned();
        let claims = json(db, "SELECT oauth.auth_verify($1)", &[&token]);
        assert_eq!(claims["scope"], resp["scope"]);
        (token.len(), resp["scope"].as_str().unwrap().to_owned())
    };
    let (one, scope) = size(&mut db, "system/*.read");
    assert!(!scope.contains('*'));
    let (two, _) = size(&mut db, "system/*.read system/*.rs");
    eprintln!("expanded JWT sizes: one wildcard {one} B, two wildcards {two} B");
    assert!(one > 4096, "one expanded wildcard: {one} B");
    assert!(two + "Authorization: Bearer ".len() > 8192, "two: {two} B");

    db.batch_execute("ALTER DATABASE oauth SET pg_oauth.smart_expand_wildcards = off")
        .unwrap();
    let mut db = cluster.connect("oauth");
    let (compact, scope) = size(&mut db, "system/*.read system/*.rs");
    eprintln!("compact JWT size: two wildcards {compact} B");
    assert_eq!(scope, "system/*.read system/*.rs");
    assert!(compact < 1024, "compact: {compact} B");
    // What the compact token grants is what the expanded one granted.
    let mut tx = db.transaction().unwrap();
    tx.execute(
        "SELECT set_config('request.jwt.claims', $1, true)",
        &[&json!({ "scope": scope }).to_string()],
    )
    .unwrap();
    let row = tx
        .query_one(
            "SELECT oauth.has_scope('system/Patient.read'), oauth.has_scope('system/Observation.s'),
                    oauth.has_scope('system/Patient.write')",
            &[],
        )
        .unwrap();
    let got: Vec<bool> = (0..3).map(|i| row.get(i)).collect();
    assert_eq!(got, [true, true, false]);
}

/// A client's key pair, made by jwt-simple, with its public JWK.
enum TestKey {
    Rs384(RS384KeyPair),
    Es384(ES384KeyPair),
    Es256(ES256KeyPair),
    Ed(Ed25519KeyPair),
}

impl TestKey {
    fn jwk(&self, kid: &str) -> Value {
        match self {
            TestKey::Rs384(k) => {
                let c = k.public_key().to_components();
                json!({ "kty": "RSA", "kid": kid, "alg": "RS384", "n": B64.encode(c.n), "e": B64.encode(c.e) })
            }
            TestKey::Es384(k) => {
                let point = k.public_key().public_key().to_bytes_uncompressed();
                json!({ "kty": "EC", "crv": "P-384", "kid": kid, "alg": "ES384",
                        "x": B64.encode(&point[1..49]), "y": B64.encode(&point[49..]) })
            }
            TestKey::Es256(k) => {
                let point = k.public_key().public_key().to_bytes_uncompressed();
                json!({ "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
                        "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..]) })
            }
            TestKey::Ed(k) => {
                json!({ "kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA",
                        "x": B64.encode(k.public_key().to_bytes()) })
            }
        }
    }

    fn sign(&self, kid: &str, claims: JWTClaims<NoCustomClaims>) -> String {
        match self {
            TestKey::Rs384(k) => k.clone().with_key_id(kid).sign(claims),
            TestKey::Es384(k) => ES384KeyPair::from_bytes(&k.to_bytes())
                .unwrap()
                .with_key_id(kid)
                .sign(claims),
            TestKey::Es256(k) => ES256KeyPair::from_bytes(&k.to_bytes())
                .unwrap()
                .with_key_id(kid)
                .sign(claims),
            TestKey::Ed(k) => k.clone().with_key_id(kid).sign(claims),
        }
        .unwrap()
    }
}

fn assertion_claims(client: &str, aud: &str, valid_for_secs: u64) -> JWTClaims<NoCustomClaims> {
    Claims::create(Duration::from_secs(valid_for_secs))
        .with_issuer(client)
        .with_subject(client)
        .with_audience(aud)
        .with_jwt_id(format!("jti-{}", rand_id()))
}

fn rand_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn by_assertion(db: &mut postgres::Client, assertion: &str) -> Result<Value, (String, String)> {
    db.query_one(
        "SELECT oauth.auth_token('client_credentials', client_assertion_type => $1, client_assertion => $2)",
        &[&JWT_BEARER, &assertion],
    )
    .map(|row| row.get(0))
    .map_err(|e| pg_oauth_harness::db_error(&e))
}

#[test]
fn private_key_jwt_authenticates_and_refuses_bad_assertions() {
    let cluster = Cluster::start("smart-pkjwt", &[]);
    let mut db = setup(&cluster);
    let keys = [
        (
            "rs384",
            TestKey::Rs384(RS384KeyPair::generate(2048).unwrap()),
        ),
        ("es384", TestKey::Es384(ES384KeyPair::generate())),
        ("es256", TestKey::Es256(ES256KeyPair::generate())),
        ("ed", TestKey::Ed(Ed25519KeyPair::generate())),
    ];
    let jwks = json!({ "keys": keys.iter().map(|(kid, k)| k.jwk(kid)).collect::<Vec<_>>() });
    db.execute(
        "INSERT INTO oauth.client (id, type, scope, jwks) VALUES ('backend', 'smart-app', '{system/*.read}', $1)",
        &[&jwks],
    )
    .unwrap();
    let endpoint = json(&mut db, "SELECT oauth.auth_metadata()", &[])["token_endpoint"].clone();
    assert_eq!(endpoint, TOKEN_ENDPOINT);
    assert!(json(&mut db, "SELECT oauth.auth_metadata()", &[])
        ["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("private_key_jwt")));

    // Every algorithm authenticates.
    for (kid, key) in &keys {
        let resp = by_assertion(
            &mut db,
            &key.sign(kid, assertion_claims("backend", TOKEN_ENDPOINT, 120)),
        )
        .unwrap_or_else(|e| panic!("{kid}: {e:?}"));
        assert!(resp["scope"]
            .as_str()
            .unwrap()
            .contains("system/Patient.read"));
    }

    let (rs_kid, rs) = (&keys[0].0, &keys[0].1);
    let refused = |db: &mut postgres::Client, assertion: &str, why: &str| {
        let (code, message) = by_assertion(db, assertion).expect_err(why);
        assert_eq!(code, "28P01", "{why}: {message}");
        assert!(message.starts_with("invalid_client: "), "{why}: {message}");
        message
    };

    // Replay: the same assertion twice.
    let once = rs.sign(rs_kid, assertion_claims("backend", TOKEN_ENDPOINT, 120));
    by_assertion(&mut db, &once).unwrap();
    assert!(refused(&mut db, &once, "replay").contains("already used"));
    // An assertion past its exp but within the leeway (30 s) is still accepted, so its jti
    // must be remembered until exp + leeway: purge_expired in between must not forget it.
    let mut late = assertion_claims("backend", TOKEN_ENDPOINT, 120);
    let now = Clock::now_since_epoch();
    late.issued_at = Some(now - Duration::from_secs(60));
    late.expires_at = Some(now - Duration::from_secs(10));
    let late = rs.sign(rs_kid, late);
    by_assertion(&mut db, &late).expect("within the leeway");
    db.query("SELECT * FROM oauth.purge_expired()", &[])
        .unwrap();
    assert!(refused(&mut db, &late, "replay after purge").contains("already used"));
    // Wrong audience.
    let wrong_aud = rs.sign(
        rs_kid,
        assertion_claims("backend", "https://elsewhere/token", 120),
    );
    assert!(refused(&mut db, &wrong_aud, "aud").contains("aud must be the issuer"));
    // ...but the issuer identifier is an audience too (RFC 7523bis; oauth4webapi sends it).
    by_assertion(
        &mut db,
        &rs.sign(rs_kid, assertion_claims("backend", ISSUER, 120)),
    )
    .expect("aud = issuer");
    // Expired.
    let mut expired = assertion_claims("backend", TOKEN_ENDPOINT, 120);
    let now = Clock::now_since_epoch();
    expired.issued_at = Some(now - Duration::from_secs(600));
    expired.expires_at = Some(now - Duration::from_secs(300));
    assert!(refused(&mut db, &rs.sign(rs_kid, expired), "expired").contains("expired"));
    // Too long-lived: SMART Backend Services allows five minutes...
    let long = rs.sign(rs_kid, assertion_claims("backend", TOKEN_ENDPOINT, 3600));
    assert!(refused(&mut db, &long, "lifetime").contains("more than 300 seconds"));
    // ...other clients pg_oauth.client_assertion_max_lifetime (3600 s: authlib's default).
    db.execute(
        "INSERT INTO oauth.client (id, jwks) SELECT 'generic', jwks FROM oauth.client WHERE id = 'backend'",
        &[],
    )
    .unwrap();
    by_assertion(
        &mut db,
        &rs.sign(rs_kid, assertion_claims("generic", TOKEN_ENDPOINT, 3600)),
    )
    .expect("an hour for a client that is not a SMART app");
    let longer = rs.sign(rs_kid, assertion_claims("generic", TOKEN_ENDPOINT, 7200));
    assert!(refused(&mut db, &longer, "lifetime").contains("more than 3600 seconds"));
    // An unknown kid, the wrong key under a registered kid, a key registered for another
    // algorithm, an unknown issuer, a client without keys: one answer, so assertions tell
    // nothing about which clients or keys exist; the audit trail records which it was.
    let failed = "invalid_client: client authentication failed";
    let unknown = rs.sign("nope", assertion_claims("backend", TOKEN_ENDPOINT, 120));
    assert_eq!(refused(&mut db, &unknown, "kid"), failed);
    let stranger = TestKey::Rs384(RS384KeyPair::generate(2048).unwrap());
    let forged = stranger.sign(rs_kid, assertion_claims("backend", TOKEN_ENDPOINT, 120));
    assert_eq!(refused(&mut db, &forged, "wrong key"), failed);
    let mismatched = rs.sign("es384", assertion_claims("backend", TOKEN_ENDPOINT, 120));
    assert_eq!(refused(&mut db, &mismatched, "alg"), failed);
    let nobody = rs.sign(
        rs_kid,
        assertion_claims("no-such-client", TOKEN_ENDPOINT, 120),
    );
    assert_eq!(refused(&mut db, &nobody, "unknown iss"), failed);
    db.execute(
        "INSERT INTO oauth.client (id, secret) VALUES ('keyless', 'a-secret')",
        &[],
    )
    .unwrap();
    let keyless = rs.sign(rs_kid, assertion_claims("keyless", TOKEN_ENDPOINT, 120));
    assert_eq!(refused(&mut db, &keyless, "no keys"), failed);
    let reasons: Vec<String> = db
        .query(
            "SELECT client_id || ': ' || reason FROM oauth.auth_failure
              WHERE client_id IN ('backend', 'no-such-client', 'keyless') ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for reason in [
        "backend: no registered key has kid \"nope\"",
        "backend: the client assertion's signature does not verify",
        "backend: the key is registered for ES384, not RS384",
        "no-such-client: no client with registered keys is the client assertion's issuer",
        "keyless: no client with registered keys is the client assertion's issuer",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }
    // Oversized assertions are refused before anything is decoded or hashed.
    let huge = format!("{}.{}.x", "a".repeat(6000), "b".repeat(6000));
    assert!(refused(&mut db, &huge, "size").contains("longer than 8192 bytes"));
    // iss and sub must both be the client.
    let mut other_sub = assertion_claims("backend", TOKEN_ENDPOINT, 120);
    other_sub.subject = Some("someone-else".into());
    assert!(refused(&mut db, &rs.sign(rs_kid, other_sub), "sub").contains("iss and sub"));
    // Not even a JWT.
    assert!(refused(&mut db, "garbage", "garbage").contains("not a JWT"));
    // An assertion and a secret at once: invalid_request.
    let (code, _) = expect_error(
        &mut db,
        "SELECT oauth.auth_token('client_credentials', 'backend', 'x', client_assertion_type => $1, client_assertion => $2)",
        &[&JWT_BEARER, &rs.sign(rs_kid, assertion_claims("backend", TOKEN_ENDPOINT, 120))],
    );
    assert_eq!(code, "22023");
    // Private keys are refused at registration.
    let private =
        json!({ "keys": [{ "kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "secret" }] });
    let err = db
        .execute(
            "UPDATE oauth.client SET jwks = $1 WHERE id = 'backend'",
            &[&private],
        )
        .unwrap_err();
    let (_, message) = pg_oauth_harness::db_error(&err);
    assert!(message.contains("jwks_public_only"), "{message}");

    // The same through PostgREST's /rpc/token (form fields).
    cluster.psql_file(
        "oauth",
        &repo_root().join("examples/postgrest/setup.sql"),
        &[],
    );
    let rest = PostgRest::start(&cluster, "oauth");
    let http = reqwest::blocking::Client::new();
    let post = |assertion: &str| {
        http.post(rest.url("/rpc/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion),
                ("scope", "system/Observation.rs"),
            ])
            .send()
            .unwrap()
    };
    let ok = post(&rs.sign(rs_kid, assertion_claims("backend", TOKEN_ENDPOINT, 120)));
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().unwrap();
    assert_eq!(body["scope"], "system/Observation.rs");
    let bad = post(&once);
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().unwrap();
    assert_eq!(body["error"], "invalid_client");
}

#[test]
fn secret_rotation_has_a_grace_period() {
    let cluster = Cluster::start("rotation", &[]);
    let mut db = setup(&cluster);
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, scope) VALUES ('svc', 'old-secret', '{read}')",
    )
    .unwrap();
    let works = |db: &mut postgres::Client, secret: &str| {
        db.query_one(
            "SELECT oauth.auth_token('client_credentials', 'svc', $1)",
            &[&secret],
        )
        .is_ok()
    };
    assert!(works(&mut db, "old-secret"));

    let new: String = db
        .query_one(
            "SELECT oauth.rotate_client_secret('svc', interval '2 seconds')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(new.len(), 43);
    assert!(works(&mut db, &new), "the new secret works at once");
    assert!(
        works(&mut db, "old-secret"),
        "the old one during the grace period"
    );
    std::thread::sleep(StdDuration::from_millis(2300));
    assert!(works(&mut db, &new));
    assert!(!works(&mut db, "old-secret"), "and not after it");

    // An UPDATE of the secret ends any grace immediately.
    let newer: String = db
        .query_one(
            "SELECT oauth.rotate_client_secret('svc', interval '1 hour')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(works(&mut db, &new), "previous secret in grace");
    db.execute(
        "UPDATE oauth.client SET secret = 'set-by-dba' WHERE id = 'svc'",
        &[],
    )
    .unwrap();
    assert!(!works(&mut db, &new));
    assert!(!works(&mut db, &newer));
    assert!(works(&mut db, "set-by-dba"));
    let (code, message) = expect_error(
        &mut db,
        "SELECT oauth.rotate_client_secret('nobody', interval '1 hour')",
        &[],
    );
    assert_eq!(code, "22023");
    assert!(message.contains("no client \"nobody\""), "{message}");
}
