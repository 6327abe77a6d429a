//! DPoP (RFC 9449) with a client library none of us wrote: panva's openid-client (Node.js)
//! discovers the listener from the issuer, gets a DPoP-bound token with a key of each
//! algorithm pg_oauth accepts, and calls a resource with it. The token and the library's proof
//! are then checked where the data is, with oauth.auth_verify: the proof works once, for its
//! method and URL, and the token alone, or with a proof for another request, is refused.

use pg_oauth_harness::{expect_error, free_port, listener_cluster, node_json, postgres};
use serde_json::Value;

const SECRET: &str = "a-long-enough-secret-for-the-listener";

#[test]
fn openid_client_gets_and_uses_dpop_bound_tokens() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let (_cluster, mut db) = listener_cluster(
        "dpop-openid-client",
        port,
        &issuer,
        &[],
        "INSERT INTO oauth.client (id, secret, scope, token_format, dpop_bound_access_tokens)
         VALUES ('dpop-jwt', 'a-long-enough-secret-for-the-listener', '{read}', 'jwt', true),
                ('dpop-opaque', 'a-long-enough-secret-for-the-listener', '{read}', 'opaque', true);",
    );
    for (client, alg) in [
        ("dpop-jwt", "ES256"),
        ("dpop-opaque", "EdDSA"),
        ("dpop-jwt", "RS256"),
        ("dpop-opaque", "PS256"),
    ] {
        let seen = node_json(&["dpop.mjs", &issuer, client, SECRET, alg], &[]);
        assert_eq!(
            seen["dpop_algs"],
            serde_json::json!(["ES256", "EdDSA", "Ed25519", "RS256", "PS256"])
        );
        assert!(
            seen["token_type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("dpop")),
            "{alg}: {seen}"
        );
        let token = seen["access_token"].as_str().unwrap();
        let request = &seen["requests"][0];
        // RFC 9449 §7.1: the token goes in the DPoP scheme, the proof in the DPoP header.
        assert_eq!(request["authorization"], format!("DPoP {token}"));
        assert_eq!(request["method"], "GET");
        let proof = request["dpop"].as_str().unwrap();
        let url = format!(
            "{}{}",
            seen["resource"].as_str().unwrap(),
            request["path"].as_str().unwrap()
        );
        let verify = "SELECT oauth.auth_verify($1, dpop => $2, htm => $3, htu => $4)";

        // A thief holding only the token.
        let (state, message) = expect_error(&mut db, "SELECT oauth.auth_verify($1)", &[&token]);
        assert_eq!(state, "28000");
        assert!(message.contains("DPoP-bound"), "{alg}: {message}");
        // The library's proof replayed for another method or another URL.
        let (_, message) = expect_error(&mut db, verify, &[&token, &proof, &"DELETE", &url]);
        assert!(
            message.contains("invalid_dpop_proof: the DPoP proof is for method"),
            "{message}"
        );
        let elsewhere = url.replace("/items", "/secrets");
        let (_, message) = expect_error(&mut db, verify, &[&token, &proof, &"GET", &elsewhere]);
        assert!(message.contains("not this URL"), "{message}");
        // The proof with the token it was made for, at the URL it names: accepted once.
        let row = db
            .query_one(verify, &[&token, &proof, &"GET", &url])
            .unwrap();
        let claims: Value = row.get(0);
        assert_eq!(claims["client_id"], client);
        let jkt: Option<String> = db
            .query_one(
                "SELECT jkt FROM oauth.session WHERE id = ($1::jsonb->>'jti')::uuid",
                &[&claims],
            )
            .unwrap()
            .get(0);
        assert_eq!(claims["cnf"]["jkt"].as_str(), jkt.as_deref(), "{alg}");
        let (_, message) = expect_error(&mut db, verify, &[&token, &proof, &"GET", &url]);
        assert!(message.contains("already used (jti replay)"), "{message}");
    }
    server_nonces(&mut db, &issuer);
    // RFC 9728 from the listener too: the API's metadata, its resource the issuer (no
    // pg_oauth.api_url) and its tokens from this server.
    let prm: Value =
        reqwest::blocking::get(format!("{issuer}/.well-known/oauth-protected-resource"))
            .unwrap()
            .json()
            .unwrap();
    assert_eq!(prm["resource"], issuer.as_str());
    assert_eq!(prm["authorization_servers"], serde_json::json!([issuer]));
    assert_eq!(
        prm["dpop_signing_alg_values_supported"],
        serde_json::json!(["ES256", "EdDSA", "Ed25519", "RS256", "PS256"])
    );
    assert_eq!(prm["tls_client_certificate_bound_access_tokens"], false);
}

/// RFC 9449 §8 and §9: with `pg_oauth.dpop_nonce` on, the token endpoint answers a proof
/// without a nonce `use_dpop_nonce` with a `DPoP-Nonce` header, and openid-client retries
/// with it; at the resource, `auth_verify` refuses a proof without the nonce, and one with
/// the nonce a resource server handed out (`oauth.auth_dpop_nonce()`) passes.
fn server_nonces(db: &mut postgres::Client, issuer: &str) {
    let nonce_of = |db: &mut postgres::Client| -> Option<String> {
        db.query_one("SELECT oauth.auth_dpop_nonce()", &[])
            .unwrap()
            .get(0)
    };
    assert_eq!(nonce_of(db), None, "no nonce while they are off");
    db.batch_execute("ALTER SYSTEM SET pg_oauth.dpop_nonce = on")
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let nonce = nonce_of(db).expect("a nonce once they are on");
    let seen = node_json(
        &["dpop.mjs", issuer, "dpop-jwt", SECRET, "ES256", &nonce],
        &[],
    );
    let token = seen["access_token"].as_str().unwrap();
    let request = &seen["requests"][0];
    let proof = request["dpop"].as_str().unwrap();
    let url = format!(
        "{}{}",
        seen["resource"].as_str().unwrap(),
        request["path"].as_str().unwrap()
    );
    let verify = "SELECT oauth.auth_verify($1, dpop => $2, htm => 'GET', htu => $3)";
    db.query_one(verify, &[&token, &proof, &url])
        .unwrap_or_else(|e| panic!("{}", pg_oauth_harness::describe(&e)));
    // A proof without the nonce (made before nonces were required) is refused, naming it.
    db.batch_execute("ALTER SYSTEM SET pg_oauth.dpop_nonce = off")
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let seen = node_json(&["dpop.mjs", issuer, "dpop-jwt", SECRET, "ES256"], &[]);
    let (token, request) = (seen["access_token"].as_str().unwrap(), &seen["requests"][0]);
    let url = format!(
        "{}{}",
        seen["resource"].as_str().unwrap(),
        request["path"].as_str().unwrap()
    );
    db.batch_execute("ALTER SYSTEM SET pg_oauth.dpop_nonce = on")
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let proof = request["dpop"].as_str().unwrap();
    let (state, message) = expect_error(db, verify, &[&token, &proof, &url]);
    assert_eq!(state, "28000");
    assert!(message.starts_with("use_dpop_nonce: "), "{message}");
    assert!(message.contains(&nonce_of(db).unwrap()), "{message}");
}
