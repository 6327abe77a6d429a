//! Refresh tokens (rotation, sliding expiry, reuse detection, races), audience and
//! introspection, against a real server.

use std::sync::{Arc, Barrier};
use std::thread::sleep;
use std::time::Duration;

use pg_oauth_harness::{as_postgrest, expect_error, json, postgres, Cluster};
use serde_json::Value;

const ISSUER: &str = "https://issuer.test";

fn setup(cluster: &Cluster) -> postgres::Client {
    let mut db = cluster.create_db_with("oauth", &[("pg_oauth.issuer", ISSUER)]);
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, scope, token_format, refresh_token, refresh_token_expiration)
         VALUES ('r', 'verysecret', '{read,write}', 'jwt', true, 3),
                ('other', 'verysecret', '{read,write}', 'opaque', true, 3600);
         INSERT INTO oauth.client (id, secret, scope, grant_types)
         VALUES ('norefresh', 'verysecret', '{read}', '{client_credentials}');",
    )
    .unwrap();
    db
}

fn grant(db: &mut postgres::Client, client: &str, scope: &str) -> Value {
    json(
        db,
        "SELECT oauth.auth_token('client_credentials', $1, 'verysecret', $2)",
        &[&client, &scope],
    )
}

fn refresh_sql() -> &'static str {
    "SELECT oauth.auth_token('refresh_token', $1, 'verysecret', $3, refresh_token => $2)"
}

fn refresh(db: &mut postgres::Client, client: &str, token: &Value) -> Value {
    json(
        db,
        refresh_sql(),
        &[&client, &token.as_str().unwrap(), &None::<&str>],
    )
}

fn refresh_error(db: &mut postgres::Client, client: &str, token: &Value) -> (String, String) {
    expect_error(
        db,
        refresh_sql(),
        &[&client, &token.as_str().unwrap(), &None::<&str>],
    )
}

fn verifies(db: &mut postgres::Client, access: &Value) -> bool {
    db.query_one("SELECT oauth.auth_verify($1)", &[&access.as_str().unwrap()])
        .is_ok()
}

#[test]
fn refresh_rotates_slides_and_detects_reuse() {
    let cluster = Cluster::start("refresh", &[]);
    let mut db = setup(&cluster);

    let r0 = grant(&mut db, "r", "read write");
    assert!(r0["refresh_token"].is_string());
    assert_eq!(r0["scope"], "read write");

    // Sliding expiry: each refresh token lives 3 s from its issue (= the last use).
    sleep(Duration::from_secs(2));
    let r1 = refresh(&mut db, "r", &r0["refresh_token"]);
    assert_ne!(
        r1["refresh_token"], r0["refresh_token"],
        "refresh tokens rotate"
    );
    assert_eq!(r1["scope"], "read write");
    sleep(Duration::from_secs(2)); // 4 s after r0 was issued: only sliding keeps us alive
    let r2 = refresh(&mut db, "r", &r1["refresh_token"]);
    assert!(verifies(&mut db, &r2["access_token"]));

    // Reusing a spent token: invalid_grant, and the whole family is revoked, including the
    // newest refresh token and every access token it produced.
    let (code, message) = refresh_error(&mut db, "r", &r1["refresh_token"]);
    assert_eq!(code, "0LP01");
    assert!(
        message.starts_with("invalid_grant: the refresh token was already used"),
        "{message}"
    );
    let (_, message) = refresh_error(&mut db, "r", &r2["refresh_token"]);
    assert!(message.contains("has been revoked"), "{message}");
    for resp in [&r0, &r1, &r2] {
        assert!(!verifies(&mut db, &resp["access_token"]));
    }

    // Idle longer than the lifetime: expired.
    let fresh = grant(&mut db, "r", "read");
    sleep(Duration::from_millis(3200));
    let (_, message) = refresh_error(&mut db, "r", &fresh["refresh_token"]);
    assert!(message.contains("has expired"), "{message}");
}

#[test]
fn refresh_narrows_scope_and_refuses_strangers() {
    let cluster = Cluster::start("refresh-scope", &[]);
    let mut db = setup(&cluster);
    let g = grant(&mut db, "other", "read write");
    let rt = g["refresh_token"].as_str().unwrap();

    let narrowed = json(&mut db, refresh_sql(), &[&"other", &rt, &Some("read")]);
    assert_eq!(narrowed["scope"], "read");
    let rt = narrowed["refresh_token"].as_str().unwrap().to_owned();
    // The new refresh token still carries the original grant, so write can come back...
    let widened_back = json(&mut db, refresh_sql(), &[&"other", &rt, &None::<&str>]);
    assert_eq!(widened_back["scope"], "read write");
    let rt = widened_back["refresh_token"].as_str().unwrap().to_owned();
    // ...but nothing beyond it.
    let (code, message) = expect_error(&mut db, refresh_sql(), &[&"other", &rt, &Some("admin")]);
    assert_eq!(code, "42704");
    assert!(
        message.contains("was not granted to this refresh token"),
        "{message}"
    );

    // Another client presenting this (valid) token: refused, and the family is burnt.
    let (code, message) = refresh_error(&mut db, "r", &Value::String(rt.clone()));
    assert_eq!(code, "0LP01");
    assert!(message.contains("issued to another client"), "{message}");
    let (_, message) = refresh_error(&mut db, "other", &Value::String(rt));
    assert!(message.contains("revoked"), "{message}");

    // Clients without refresh tokens get none, and cannot use the grant.
    let plain = grant(&mut db, "norefresh", "read");
    assert!(plain.get("refresh_token").is_none());
    let (code, _) = expect_error(
        &mut db,
        "SELECT oauth.auth_token('refresh_token', 'norefresh', 'verysecret', refresh_token => 'x')",
        &[],
    );
    assert_eq!(code, "42501");
    let (code, message) = expect_error(
        &mut db,
        "SELECT oauth.auth_token('refresh_token', 'other', 'verysecret')",
        &[],
    );
    assert_eq!(
        (code.as_str(), message.as_str()),
        (
            "22023",
            "invalid_request: the refresh_token parameter is required"
        )
    );
    let (code, _) = expect_error(
        &mut db,
        "SELECT oauth.auth_token('refresh_token', 'other', 'verysecret', refresh_token => 'garbage')",
        &[],
    );
    assert_eq!(code, "0LP01");
}

#[test]
fn racing_refreshes_let_exactly_one_win_and_burn_the_family() {
    const RACERS: usize = 8;
    let cluster = Cluster::start("refresh-race", &[]);
    let mut db = setup(&cluster);
    for round in 0..5 {
        let g = grant(&mut db, "other", "read");
        let rt = g["refresh_token"].as_str().unwrap().to_owned();
        let barrier = Arc::new(Barrier::new(RACERS));
        let racers: Vec<_> = (0..RACERS)
            .map(|_| {
                let url = cluster.url("oauth", "postgres");
                let (barrier, rt) = (barrier.clone(), rt.clone());
                std::thread::spawn(move || {
                    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                    barrier.wait();
                    c.query_one(refresh_sql(), &[&"other", &rt, &None::<&str>])
                        .map(|row| row.get::<_, Value>(0))
                })
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let winners: Vec<&Value> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one refresh wins");
        for err in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(err.as_db_error().unwrap().code().code(), "0LP01");
        }
        // The losers were reuses: the family, the winner's tokens included, is revoked.
        let winner = winners[0];
        assert!(!verifies(&mut db, &winner["access_token"]), "round {round}");
        let (_, message) = refresh_error(&mut db, "other", &winner["refresh_token"]);
        assert!(message.contains("revoked"), "round {round}: {message}");
    }
}

/// Reuse detection from SQL needs a background worker slot; when all of them are busy
/// for a moment, the revocation waits for one rather than being lost.
#[test]
fn reuse_detection_survives_a_shortage_of_worker_slots() {
    const CALLERS: usize = 6;
    // One slot goes to the logical replication launcher: one is left for six callers.
    let cluster = Cluster::start("refresh-slots", &[("max_worker_processes", "2")]);
    let mut db = setup(&cluster);
    let grants: Vec<Value> = (0..CALLERS)
        .map(|_| grant(&mut db, "other", "read"))
        .collect();
    for g in &grants {
        refresh(&mut db, "other", &g["refresh_token"]);
    }
    let barrier = Arc::new(Barrier::new(CALLERS));
    let callers: Vec<_> = grants
        .iter()
        .map(|g| {
            let url = cluster.url("oauth", "postgres");
            let barrier = barrier.clone();
            let rt = g["refresh_token"].as_str().unwrap().to_owned();
            std::thread::spawn(move || {
                let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                barrier.wait();
                // Spent already: a reuse.
                c.query_one(refresh_sql(), &[&"other", &rt, &None::<&str>])
                    .unwrap_err()
            })
        })
        .collect();
    for caller in callers {
        let err = caller.join().unwrap();
        assert_eq!(err.as_db_error().unwrap().code().code(), "0LP01");
    }
    for g in &grants {
        assert!(
            !verifies(&mut db, &g["access_token"]),
            "a reused grant stayed open"
        );
    }
    assert!(!cluster.log().contains("no background worker slot"));
}

/// Over HTTP no worker is needed: the revocation commits with the error response.
#[test]
fn reuse_detected_over_http_commits_with_the_answer() {
    let cluster = Cluster::start("refresh-http", &[("max_worker_processes", "1")]);
    let mut db = setup(&cluster);
    let g = grant(&mut db, "other", "read");
    refresh(&mut db, "other", &g["refresh_token"]);
    let (status, answer) = as_postgrest(
        &mut db,
        &serde_json::json!({}),
        "POST",
        "SELECT oauth.http_token(jsonb_build_object('grant_type', 'refresh_token',
             'client_id', 'other', 'client_secret', 'verysecret', 'refresh_token', $1::text))",
        &[&g["refresh_token"].as_str().unwrap()],
    );
    assert_eq!(status, "400");
    assert_eq!(answer["error"], "invalid_grant");
    assert!(!verifies(&mut db, &g["access_token"]));
}

#[test]
fn audience_and_introspection() {
    let cluster = Cluster::start("audience", &[]);
    let mut db = setup(&cluster);
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, scope, audience, token_format)
         VALUES ('aud', 'verysecret', '{read}', '{https://a.test,https://b.test}', 'jwt')",
    )
    .unwrap();
    let a = json(
        &mut db,
        "SELECT oauth.auth_token('client_credentials', 'aud', 'verysecret', NULL, 'https://a.test')",
        &[],
    );
    let at = a["access_token"].as_str().unwrap();
    let claims = json(
        &mut db,
        "SELECT oauth.auth_verify($1, 'https://a.test')",
        &[&at],
    );
    assert_eq!(claims["aud"], "https://a.test");
    let (code, message) = expect_error(
        &mut db,
        "SELECT oauth.auth_verify($1, 'https://b.test')",
        &[&at],
    );
    assert_eq!(code, "28000");
    assert!(message.contains("not intended for audience"), "{message}");
    let (code, _) = expect_error(
        &mut db,
        "SELECT oauth.auth_token('client_credentials', 'aud', 'verysecret', NULL, 'https://c.test')",
        &[],
    );
    assert_eq!(code, "42602");
    let both = json(
        &mut db,
        "SELECT oauth.auth_token('client_credentials', 'aud', 'verysecret')",
        &[],
    );
    let claims = json(
        &mut db,
        "SELECT oauth.auth_verify($1)",
        &[&both["access_token"].as_str().unwrap()],
    );
    assert_eq!(
        claims["aud"],
        serde_json::json!(["https://a.test", "https://b.test"])
    );

    // Introspection: live tokens show their claims, anything else is just inactive.
    let live = json(&mut db, "SELECT oauth.auth_introspect($1)", &[&at]);
    assert_eq!(live["active"], true);
    assert_eq!(live["token_type"], "Bearer");
    assert_eq!(live["client_id"], "aud");
    assert_eq!(live["scope"], "read");
    for key in ["sub", "aud", "iss", "exp", "iat", "jti"] {
        assert!(live.get(key).is_some(), "introspection lacks {key}: {live}");
    }
    let g = grant(&mut db, "other", "read");
    let opaque = json(
        &mut db,
        "SELECT oauth.auth_introspect($1)",
        &[&g["access_token"].as_str().unwrap()],
    );
    assert_eq!(opaque["active"], true);
    let rt = json(
        &mut db,
        "SELECT oauth.auth_introspect($1)",
        &[&g["refresh_token"].as_str().unwrap()],
    );
    assert_eq!(rt["active"], true);
    assert_eq!(rt["token_type"], "refresh_token");
    db.query_one("SELECT oauth.auth_revoke($1)", &[&at])
        .unwrap();
    let inactive = serde_json::json!({ "active": false });
    for token in [
        at,
        "garbage",
        "",
        "a.b.c",
        g["access_token"].as_str().unwrap(),
    ] {
        if token == g["access_token"].as_str().unwrap() {
            // Revoking the refresh token revokes the access tokens of its grant too.
            let revoked: bool = db
                .query_one(
                    "SELECT oauth.auth_revoke($1)",
                    &[&g["refresh_token"].as_str().unwrap()],
                )
                .unwrap()
                .get(0);
            assert!(revoked);
        }
        assert_eq!(
            json(&mut db, "SELECT oauth.auth_introspect($1)", &[&token]),
            inactive,
            "{token}"
        );
    }
    let md = json(&mut db, "SELECT oauth.auth_metadata()", &[]);
    assert_eq!(md["issuer"], ISSUER);
    assert_eq!(md["token_endpoint"], format!("{ISSUER}/rpc/token"));
    assert_eq!(md["jwks_uri"], format!("{ISSUER}/rpc/jwks"));
}
