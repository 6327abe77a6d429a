//! A streaming hot standby: verification and introspection work on it read-only, a
//! revocation or key rotation on the primary reaches it once replayed, and writes are
//! refused with a clear error.

use std::time::{Duration, Instant};

use pg_oauth_harness::{db_error, json, postgres, Cluster};
use serde_json::Value;

/// Wait until the standby has replayed everything the primary has written so far.
fn catch_up(primary: &mut postgres::Client, standby: &mut postgres::Client) {
    let lsn: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let caught_up: bool = standby
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&lsn],
            )
            .unwrap()
            .get(0);
        if caught_up {
            return;
        }
        assert!(Instant::now() < deadline, "the standby did not catch up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_standby_verifies_and_sees_revocations_and_rotations() {
    let primary_cluster = Cluster::start("primary", &[]);
    let mut primary =
        primary_cluster.create_db_with("oauth", &[("pg_oauth.issuer", "https://issuer.replica")]);
    primary
        .batch_execute(
            "INSERT INTO oauth.client (id, secret, scope, token_format) VALUES
                 ('r-opaque', 's', '{read}', 'opaque'), ('r-jwt', 's', '{read}', 'jwt');
             SELECT oauth.ensure_signing_keys('ES256');",
        )
        .unwrap();
    let standby_cluster = Cluster::replica_of(&primary_cluster, "standby");
    let mut standby = standby_cluster.connect("oauth");
    let in_recovery: bool = standby
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(in_recovery);

    let token = |db: &mut postgres::Client, client: &str| -> String {
        json(
            db,
            "SELECT oauth.auth_token('client_credentials', $1, 's')",
            &[&client],
        )["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let opaque = token(&mut primary, "r-opaque");
    let jwt = token(&mut primary, "r-jwt");
    catch_up(&mut primary, &mut standby);
    for t in [&opaque, &jwt] {
        let claims = json(&mut standby, "SELECT oauth.auth_verify($1)", &[t]);
        assert_eq!(claims["scope"], "read");
        let introspected = json(&mut standby, "SELECT oauth.auth_introspect($1)", &[t]);
        assert_eq!(introspected["active"], true);
    }
    json(&mut standby, "SELECT oauth.auth_jwks()", &[]);

    // Writes belong to the primary, and the standby says so.
    for sql in [
        "SELECT oauth.auth_token('client_credentials', 'r-opaque', 's')",
        "SELECT oauth.auth_revoke($1)",
    ] {
        let err = if sql.contains("$1") {
            standby.query_one(sql, &[&opaque]).unwrap_err()
        } else {
            standby.query_one(sql, &[]).unwrap_err()
        };
        let (code, message) = db_error(&err);
        assert_eq!(code, "25006", "{message}");
        assert!(
            message.starts_with("temporarily_unavailable: this server is a read-only standby"),
            "{message}"
        );
    }

    // A revocation on the primary holds on the standby once replayed — in a backend that
    // has verified (and cached) before.
    let revoked: bool = primary
        .query_one("SELECT oauth.auth_revoke($1)", &[&jwt])
        .unwrap()
        .get(0);
    assert!(revoked);
    primary
        .execute(
            "UPDATE oauth.session SET revoked_at = now() WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
            &[&opaque],
        )
        .unwrap();
    catch_up(&mut primary, &mut standby);
    for t in [&opaque, &jwt] {
        let err = standby
            .query_one("SELECT oauth.auth_verify($1)", &[t])
            .unwrap_err();
        assert_eq!(db_error(&err).0, "28000");
        let introspected: Value = json(&mut standby, "SELECT oauth.auth_introspect($1)", &[t]);
        assert_eq!(introspected["active"], false);
    }

    // Two key rotations on the primary: the standby's warm backend verifies tokens signed
    // with the new key (its key cache is invalidated by the replayed change).
    primary
        .batch_execute(
            "SELECT oauth.rotate_signing_key('ES256'); SELECT oauth.rotate_signing_key('ES256');",
        )
        .unwrap();
    let fresh = token(&mut primary, "r-jwt");
    catch_up(&mut primary, &mut standby);
    json(&mut standby, "SELECT oauth.auth_verify($1)", &[&fresh]);
}
