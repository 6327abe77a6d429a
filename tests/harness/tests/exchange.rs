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

/// The seed's EHR case: another issuer's token (its key made by panva's jose, its JWK Set
/// in oauth.trusted_issuer) is exchanged over the listener by openid-client for a pg_oauth
/// token of the gateway, acting for the EHR's subject with the role of the client the issuer
/// stands for. Each way such a token can be wrong is refused, with the reason.
#[test]
fn another_issuers_token_is_exchanged_and_every_bad_one_is_refused() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let ehr = "https://ehr.example";
    let made = node_json(&["external.mjs", ehr, &issuer], &[]);
    let (_cluster, mut db) = listener_cluster(
        "exchange-external",
        port,
        &issuer,
        &[],
        "CREATE ROLE ehr_reader NOLOGIN;
         INSERT INTO oauth.client (id, scope) VALUES ('ehr-patients', '{}');
         INSERT INTO oauth.policy (client_id, role) VALUES ('ehr-patients', 'ehr_reader');
         INSERT INTO oauth.client (id, secret, scope, token_format, grant_types)
         VALUES ('gateway', 'a-long-enough-secret-for-the-listener', '{}', 'jwt',
                 '{client_credentials,urn:ietf:params:oauth:grant-type:token-exchange}'),
                ('bystander', 'a-long-enough-secret-for-the-listener', '{}', 'jwt',
                 '{client_credentials,urn:ietf:params:oauth:grant-type:token-exchange}');
         INSERT INTO oauth.exchange_policy (client_id, subject_client_id)
         VALUES ('gateway', 'ehr-patients');",
    );
    db.execute(
        "INSERT INTO oauth.trusted_issuer (issuer, jwks, algorithms, audiences, max_token_age,
                                           token_type, subject_client_id, scope)
         VALUES ($1, $2, '{ES256}', ARRAY[$3], 3600, 'at+jwt', 'ehr-patients',
                 '{patient/*.read}')",
        &[&ehr, &made["jwks"], &issuer],
    )
    .unwrap();
    let tokens = &made["tokens"];
    let seen = node_json(
        &[
            "exchange.mjs",
            &issuer,
            "gateway",
            SECRET,
            tokens["valid"].as_str().unwrap(),
            "patient/*.read",
            &issuer,
        ],
        &[],
    );
    let token = seen["exchanged"]["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{seen}"));
    let claims: Value = db
        .query_one("SELECT oauth.auth_verify($1)", &[&token])
        .unwrap()
        .get(0);
    assert_eq!(claims["sub"], "patient-7");
    assert_eq!(claims["client_id"], "gateway");
    assert_eq!(claims["act"]["sub"], "gateway");
    assert_eq!(claims["role"], "ehr_reader");
    assert_eq!(claims["scope"], "patient/*.read");

    let http = reqwest::blocking::Client::new();
    let actor: Value = db
        .query_one(
            "SELECT oauth.auth_token('client_credentials', 'gateway', $1)",
            &[&SECRET],
        )
        .unwrap()
        .get(0);
    let actor = actor["access_token"].as_str().unwrap().to_owned();
    let exchange = |client: &str, subject: &str, scope: Option<&str>| -> (u16, Value) {
        let mut form = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ];
        form.extend(scope.map(|s| ("scope", s)));
        if client == "gateway" {
            form.push(("actor_token", &actor));
            form.push((
                "actor_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ));
        }
        let resp = http
            .post(format!("{issuer}/token"))
            .basic_auth(client, Some(SECRET))
            .form(&form)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json().unwrap())
    };
    let valid = tokens["valid"].as_str().unwrap();
    for (case, expected) in [
        (
            "unknown_issuer",
            "issuer \"https://unknown.example\" is not trusted",
        ),
        ("bad_signature", "its signature does not verify"),
        ("expired", "it has expired"),
        ("wrong_audience", "its aud names none"),
        ("alg_not_allowed", "alg \"RS256\" is not accepted"),
        ("too_old", "older than the 3600 seconds"),
        ("wrong_typ", "its typ is not \"at+jwt\""),
        ("may_act_other", "may_act does not name this actor"),
    ] {
        let (status, body) = exchange("gateway", tokens[case].as_str().unwrap(), None);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{case}: {body}"
        );
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(expected), "{case}: {description}");
    }
    let (status, body) = exchange("gateway", valid, Some("patient/*.write"));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    let (_, body) = exchange("bystander", valid, None);
    assert_eq!(body["error"], "unauthorized_client", "{body}");
    // The issuer removed: its tokens are no longer exchanged, at once.
    db.execute(
        "DELETE FROM oauth.trusted_issuer WHERE issuer = $1",
        &[&ehr],
    )
    .unwrap();
    let (_, body) = exchange("gateway", valid, None);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("is not trusted"),
        "{body}"
    );
}
