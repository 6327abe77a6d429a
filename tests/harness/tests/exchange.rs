//! Token exchange (RFC 8693) with a client library none of us wrote: panva's openid-client
//! discovers the listener, sees the grant in the metadata, and trades a token it was handed
//! for one of its own through its generic grant request, with its own token as the actor.
//! The new token is checked where the data is (oauth.auth_verify), and dies with its subject.

use pg_oauth_harness::{expect_error, free_port, listener_cluster, node_json};
use serde_json::Value;

const SECRET: &str = "a-long-enough-secret-for-the-listener";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

#[test]
fn openid_client_exchanges_a_token_it_was_handed_for_a_delegated_one() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let (_cluster, mut db) = listener_cluster(
        "exchange-openid-client",
        port,
        &issuer,
        &[],
        "INSERT INTO oauth.client (id, secret, scope, token_format)
         VALUES ('upstream', 'a-long-enough-secret-for-the-listener', '{read,write}', 'jwt');
         INSERT INTO oauth.client (id, secret, scope, token_format, audience, grant_types)
         VALUES ('gateway', 'a-long-enough-secret-for-the-listener', '{}', 'opaque',
                 '{https://b.example}',
                 '{client_credentials,urn:ietf:params:oauth:grant-type:token-exchange}');
         INSERT INTO oauth.exchange_policy (client_id, subject_client_id, scope)
         VALUES ('gateway', 'upstream', '{read}');",
    );
    let subject: Value = db
        .query_one(
            "SELECT oauth.auth_token('client_credentials', 'upstream', $1)",
            &[&SECRET],
        )
        .unwrap()
        .get(0);
    let subject = subject["access_token"].as_str().unwrap();
    let seen = node_json(
        &[
            "exchange.mjs",
            &issuer,
            "gateway",
            SECRET,
            subject,
            "read",
            "https://b.example",
        ],
        &[],
    );
    assert!(
        seen["grant_types"]
            .as_array()
            .unwrap()
            .contains(&EXCHANGE.into()),
        "{seen}"
    );
    let exchanged = &seen["exchanged"];
    assert_eq!(
        exchanged["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(exchanged["token_type"], "bearer", "{seen}");
    let token = exchanged["access_token"].as_str().unwrap();
    let claims: Value = db
        .query_one("SELECT oauth.auth_verify($1)", &[&token])
        .unwrap()
        .get(0);
    assert_eq!(claims["sub"], "upstream");
    assert_eq!(claims["client_id"], "gateway");
    assert_eq!(claims["act"]["sub"], "gateway");
    assert_eq!(claims["scope"], "read");
    assert_eq!(claims["aud"], "https://b.example");

    // The subject token revoked (RFC 7009, by its own client): the exchanged one goes too.
    let revoked: bool = db
        .query_one("SELECT oauth.auth_revoke($1)", &[&subject])
        .unwrap()
        .get(0);
    assert!(revoked);
    let (state, message) = expect_error(&mut db, "SELECT oauth.auth_verify($1)", &[&token]);
    assert_eq!(state, "28000");
    assert!(message.contains("revoked"), "{message}");
}
