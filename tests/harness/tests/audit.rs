//! The audit trail (failed authentications, issuance and revocation events) and
//! brute-force lockout per client id and source, against a real server.

use std::thread::sleep;
use std::time::{Duration, Instant};

use pg_oauth_harness::{as_postgrest, db_error, expect_error, json, postgres, Cluster};
use serde_json::Value;

const TOKEN: &str = "SELECT oauth.auth_token('client_credentials', $1, $2)";

fn token(db: &mut postgres::Client, client: &str, secret: &str) -> Result<Value, (String, String)> {
    db.query_one(TOKEN, &[&client, &secret])
        .map(|row| row.get(0))
        .map_err(|e| db_error(&e))
}

fn failures(db: &mut postgres::Client, client: &str) -> Vec<(String, String)> {
    db.query(
        "SELECT source, reason FROM oauth.auth_failure WHERE client_id = $1 ORDER BY id",
        &[&client],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// What PostgREST does for a request to /rpc/token, in SQL: its settings, then the call.
fn http_token(db: &mut postgres::Client, client: &str, secret: &str, forwarded_for: &str) -> Value {
    let (status, body) = as_postgrest(
        db,
        &serde_json::json!({ "x-forwarded-for": forwarded_for }),
        "POST",
        "SELECT oauth.http_token(jsonb_build_object('grant_type', 'client_credentials',
                                                   'client_id', $1::text, 'client_secret', $2::text))",
        &[&client, &secret],
    );
    serde_json::json!({ "status": status, "body": body })
}

#[test]
fn failures_are_recorded_without_secrets_and_lock_out_per_source() {
    let cluster = Cluster::start("audit", &[]);
    let mut admin = cluster.create_db_with(
        "oauth",
        &[
            ("pg_oauth.lockout_threshold", "3"),
            ("pg_oauth.lockout_window", "60"),
            ("pg_oauth.lockout_duration", "3"),
            ("pg_oauth.http_client_address_header", "x-forwarded-for"),
            // This test's connections stand in for PostgREST's (its authenticator).
            ("pg_oauth.http_proxy_roles", "authenticator, postgres"),
        ],
    );
    admin
        .batch_execute(
            "INSERT INTO oauth.client (id, secret, scope) VALUES ('app', 'right-secret', '{read}');
             INSERT INTO oauth.client (id, secret, scope, active) VALUES ('off', 'right-secret', '{read}', false);",
        )
        .unwrap();
    let mut tcp = cluster.connect("oauth"); // source 127.0.0.1
    let mut unix = cluster.connect_unix("oauth"); // source local

    // Each kind of failure is recorded with its reason and source; the caller sees one
    // message for all of them.
    for (client, secret) in [("app", "guess-1"), ("nobody", "guess-2")] {
        let (code, message) = token(&mut tcp, client, secret).unwrap_err();
        assert_eq!(code, "28P01");
        assert_eq!(message, "invalid_client: client authentication failed");
    }
    let (_, message) = token(&mut tcp, "off", "right-secret").unwrap_err();
    assert_eq!(message, "invalid_client: client is inactive");
    assert_eq!(
        failures(&mut admin, "app"),
        [("127.0.0.1".into(), "wrong secret".into())]
    );
    assert_eq!(
        failures(&mut admin, "nobody"),
        [("127.0.0.1".into(), "unknown client".into())]
    );
    assert_eq!(
        failures(&mut admin, "off"),
        [("127.0.0.1".into(), "client is inactive".into())]
    );

    // Success forgives earlier failures from the same source: two more failures are not
    // three in a row.
    token(&mut tcp, "app", "right-secret").unwrap();
    for guess in ["guess-3", "guess-4"] {
        token(&mut tcp, "app", guess).unwrap_err();
    }
    token(&mut tcp, "app", "right-secret").unwrap();

    // Three failures in the window lock the client out for that source only: the right
    // secret is refused there, at once (no argon2 work), and accepted from elsewhere.
    for guess in ["guess-5", "guess-6", "guess-7"] {
        token(&mut tcp, "app", guess).unwrap_err();
    }
    let started = Instant::now();
    let (code, message) = token(&mut tcp, "app", "right-secret").unwrap_err();
    let refused_in = started.elapsed();
    assert_eq!(code, "28P01");
    assert!(
        message.starts_with("invalid_client: too many failed authentications of this client from this address; try again in "),
        "{message}"
    );
    token(&mut unix, "app", "right-secret").unwrap();
    let last = failures(&mut admin, "app").pop().unwrap();
    assert!(
        last.1.starts_with("wrong secret; locked out until "),
        "{last:?}"
    );
    // A locked-out attempt does no argon2 (≈20–50 ms here); generous bound for slow CI.
    println!("refused while locked out in {refused_in:?}");

    // Over HTTP the source is the proxy header's last address.
    for guess in ["h1", "h2", "h3"] {
        let r = http_token(&mut admin, "app", guess, "203.0.113.9, 10.0.0.7");
        assert_eq!(r["status"], "400", "{r}");
        assert_eq!(r["body"]["error"], "invalid_client");
    }
    let r = http_token(&mut admin, "app", "right-secret", "198.51.100.1, 10.0.0.7");
    assert_eq!(
        r["body"]["error"], "invalid_client",
        "same last hop, same source: {r}"
    );
    let r = http_token(&mut admin, "app", "right-secret", "10.0.0.8");
    assert_eq!(r["status"], "200", "another source: {r}");
    let sources: Vec<String> = failures(&mut admin, "app")
        .into_iter()
        .map(|f| f.0)
        .collect();
    assert!(
        sources.iter().filter(|s| *s == "10.0.0.7").count() == 3,
        "{sources:?}"
    );
    // Only PostgREST's login role may name the source in the header: any other role that
    // sets request.headers itself is counted by its own connection.
    admin
        .batch_execute(
            "CREATE ROLE caller LOGIN; GRANT EXECUTE ON FUNCTION oauth.http_token(jsonb) TO caller;",
        )
        .unwrap();
    let mut caller = cluster.connect_as("oauth", "caller");
    // (A client id of its own: "app" is still locked out for 127.0.0.1 here.)
    let r = http_token(&mut caller, "stranger", "not-it", "192.0.2.200");
    assert_eq!(r["body"]["error"], "invalid_client", "{r}");
    assert_eq!(
        failures(&mut admin, "stranger"),
        [("127.0.0.1".into(), "unknown client".into())],
        "a role chose its own source"
    );

    // The lockout ends by itself...
    sleep(Duration::from_millis(3200));
    token(&mut tcp, "app", "right-secret").unwrap();
    // ...or when an administrator deletes its row (every backend sees it at once).
    for guess in ["guess-8", "guess-9", "guess-10"] {
        token(&mut tcp, "app", guess).unwrap_err();
    }
    assert!(token(&mut tcp, "app", "right-secret")
        .unwrap_err()
        .1
        .contains("too many"));
    admin
        .execute(
            "DELETE FROM oauth.client_lockout WHERE client_id = 'app'",
            &[],
        )
        .unwrap();
    token(&mut tcp, "app", "right-secret").unwrap();

    // No presented secret is stored anywhere in the audit tables or the log.
    let dump: String = admin
        .query_one(
            "SELECT concat_ws(' ', (SELECT string_agg(f::text, ' ') FROM oauth.auth_failure f),
                                   (SELECT string_agg(l::text, ' ') FROM oauth.client_lockout l),
                                   (SELECT string_agg(e::text, ' ') FROM oauth.audit_event e))",
            &[],
        )
        .unwrap()
        .get(0);
    for secret in ["guess-", "right-secret", "h1", "h2"] {
        assert!(!dump.contains(secret), "{secret} in the audit trail");
    }
    assert!(
        !cluster.log().contains("guess-"),
        "a presented secret reached the server log"
    );

    // Threshold 0: no lockout, failures still recorded.
    admin
        .batch_execute("ALTER DATABASE oauth SET pg_oauth.lockout_threshold = 0")
        .unwrap();
    let mut fresh = cluster.connect("oauth");
    let before = failures(&mut admin, "app").len();
    for i in 0..5 {
        token(&mut fresh, "app", &format!("guess-x{i}")).unwrap_err();
    }
    token(&mut fresh, "app", "right-secret").unwrap();
    assert_eq!(failures(&mut admin, "app").len(), before + 5);
}

#[test]
fn issuance_and_revocations_are_audited_with_reasons() {
    let cluster = Cluster::start("audit-events", &[]);
    let mut db = cluster.create_db_with("oauth", &[("pg_oauth.issuer", "https://issuer.test")]);
    db.batch_execute(
        "CREATE ROLE dba LOGIN SUPERUSER;
         INSERT INTO oauth.client (id, secret, scope, refresh_token) VALUES ('c', 's3cret', '{read}', true);",
    )
    .unwrap();
    let t = |db: &mut postgres::Client| token(db, "c", "s3cret").unwrap();
    let by_function = t(&mut db);
    let by_dba = t(&mut db);
    let by_reuse = t(&mut db);
    let by_deactivation = t(&mut db);

    db.query_one(
        "SELECT oauth.auth_revoke($1)",
        &[&by_function["access_token"].as_str().unwrap()],
    )
    .unwrap();
    let mut dba = cluster.connect_as("oauth", "dba");
    dba.execute(
        "UPDATE oauth.session SET revoked_at = now() WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
        &[&by_dba["access_token"].as_str().unwrap()],
    )
    .unwrap();
    let rt = by_reuse["refresh_token"].as_str().unwrap();
    json(
        &mut db,
        "SELECT oauth.auth_token('refresh_token', 'c', 's3cret', refresh_token => $1)",
        &[&rt],
    );
    expect_error(
        &mut db,
        "SELECT oauth.auth_token('refresh_token', 'c', 's3cret', refresh_token => $1)",
        &[&rt],
    );
    let reason = |db: &mut postgres::Client, token: &Value| -> Option<String> {
        db.query_one(
            "SELECT detail ->> 'reason' FROM oauth.audit_event e JOIN oauth.session s ON s.id = e.session_id
              WHERE e.event = 'token revoked' AND s.token_hash = sha256(convert_to($1, 'UTF8'))",
            &[&token["access_token"].as_str().unwrap()],
        )
        .ok()
        .map(|r| r.get(0))
    };
    assert_eq!(
        reason(&mut db, &by_function).as_deref(),
        Some("revoked with oauth.auth_revoke() by postgres")
    );
    assert_eq!(reason(&mut db, &by_dba).as_deref(), Some("revoked by dba"));
    assert_eq!(
        reason(&mut db, &by_reuse).as_deref(),
        Some("refresh grant revoked: refresh token reused")
    );
    db.execute("UPDATE oauth.client SET active = false WHERE id = 'c'", &[])
        .unwrap();
    assert_eq!(
        reason(&mut db, &by_deactivation).as_deref(),
        Some("client deactivated")
    );

    // Every token issued is an event; no event carries token material.
    let issued: i64 = db
        .query_one(
            "SELECT count(*) FROM oauth.audit_event WHERE event = 'token issued'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(issued, 5);
    let all: String = db
        .query_one(
            "SELECT string_agg(e::text, ' ') FROM oauth.audit_event e",
            &[],
        )
        .unwrap()
        .get(0);
    for token in [&by_function, &by_dba, &by_reuse, &by_deactivation] {
        let access = token["access_token"].as_str().unwrap();
        assert!(!all.contains(access) && !all.contains(&access[..20]));
    }
    assert!(!all.contains("\\x"), "no hashes in the audit view");
}

fn purge(db: &mut postgres::Client, max: i32) -> Vec<(String, i64)> {
    db.query(
        "SELECT relation, deleted FROM oauth.purge_expired($1, interval '0')",
        &[&max],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn count(db: &mut postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn purge_expired_deletes_in_bounded_batches() {
    // The floor on retention is the superuser's (tested below); here it is off. Partitions
    // of a second, so that a test sees several.
    let cluster = Cluster::start(
        "purge",
        &[
            ("pg_oauth.audit_min_retention", "0"),
            ("pg_oauth.session_partition_interval", "1"),
        ],
    );
    let mut db = cluster.create_db("oauth");
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, scope, access_token_expiration, refresh_token, refresh_token_expiration)
         VALUES ('short', 's', '{read}', 1, true, 1), ('long', 's', '{read}', 3600, false, 3600);",
    )
    .unwrap();
    // Short-lived tokens in one partition, a long-lived one in the next.
    let slot_now = |db: &mut postgres::Client| -> i16 {
        db.query_one("SELECT oauth.session_slot(clock_timestamp())", &[])
            .unwrap()
            .get(0)
    };
    // Issued from the start of a partition's second, five tokens fit in it unless the machine
    // stalls (a loaded CI machine did): then they go and it tries again.
    let short_slot = loop {
        let start = slot_now(&mut db);
        while slot_now(&mut db) == start {
            sleep(Duration::from_millis(10));
        }
        for _ in 0..5 {
            token(&mut db, "short", "s").unwrap();
        }
        let slots = db
            .query(
                "SELECT DISTINCT slot FROM oauth.session WHERE client_id = 'short'",
                &[],
            )
            .unwrap();
        if slots.len() == 1 {
            break slots[0].get::<_, i16>(0);
        }
        db.batch_execute(
            "DELETE FROM oauth.session WHERE client_id = 'short';
             DELETE FROM oauth.refresh_family WHERE client_id = 'short';",
        )
        .unwrap();
    };
    while slot_now(&mut db) == short_slot {
        sleep(Duration::from_millis(50));
    }
    let kept = token(&mut db, "long", "s").unwrap();
    token(&mut db, "long", "wrong").unwrap_err();
    sleep(Duration::from_millis(1100));
    let in_partition = |db: &mut postgres::Client, slot: i16| -> i64 {
        db.query_one(
            "SELECT count(*) FROM oauth.session WHERE slot = $1",
            &[&slot],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(in_partition(&mut db, short_slot), 5);

    // Row by row within max_rows; the partition whose tokens all expired is emptied whole.
    let first = purge(&mut db, 3);
    let deleted = |rows: &[(String, i64)], rel: &str| rows.iter().find(|r| r.0 == rel).unwrap().1;
    assert_eq!(deleted(&first, "refresh_token"), 3, "{first:?}");
    assert_eq!(in_partition(&mut db, short_slot), 0, "emptied whole");
    assert_eq!(count(&mut db, "SELECT count(*) FROM oauth.session"), 1);
    let second = purge(&mut db, 100);
    assert_eq!(deleted(&second, "refresh_token"), 2);
    assert_eq!(deleted(&second, "refresh_family"), 5);
    assert_eq!(deleted(&second, "auth_failure"), 1);
    let third = purge(&mut db, 100);
    assert!(third.iter().all(|r| r.1 == 0), "{third:?}");
    // What has not expired stays, and still works.
    db.query_one(
        "SELECT oauth.auth_verify($1)",
        &[&kept["access_token"].as_str().unwrap()],
    )
    .unwrap();

    // A partition that also holds a live token is not emptied; only the one next in turn has
    // its expired rows deleted one by one (tokens outliving the partitions' turn), within
    // max_rows. Rows written here as an upgraded table would hold them.
    // (Partitions of 31 days here, so that the partition next in turn stays the same.)
    db.batch_execute("SET pg_oauth.session_partition_interval = '31d'")
        .unwrap();
    let next: i16 = (slot_now(&mut db) + 1) % 16;
    // The partition may already hold the live token issued above (its slot under 1-second
    // partitions is next's one time in 16): count from what it holds.
    let before = in_partition(&mut db, next);
    db.batch_execute(&format!(
        "INSERT INTO oauth.session (id, client_id, token_hash, format, scope, audience, issued_at, expires_at, slot)
         SELECT gen_random_uuid(), 'long', '\\x00'::bytea, 'opaque', '{{}}'::text[], '{{}}'::text[], now() - interval '2 days',
                now() - interval '1 day' + i * interval '1 s', {next}
           FROM generate_series(1, 4) AS i
         UNION ALL
         SELECT gen_random_uuid(), 'long', '\\x00'::bytea, 'opaque', '{{}}'::text[], '{{}}'::text[], now(), now() + interval '1 day', {next}"
    ))
    .unwrap();
    let rows = purge(&mut db, 3);
    assert_eq!(deleted(&rows, "session"), 3, "{rows:?}");
    assert_eq!(in_partition(&mut db, next), before + 2);
    purge(&mut db, 100);
    assert_eq!(
        in_partition(&mut db, next),
        before + 1,
        "the live one stays"
    );
    db.batch_execute("RESET pg_oauth.session_partition_interval")
        .unwrap();
    // Whoever may purge cannot erase a recent audit trail: the floor is superuser-set.
    db.batch_execute("SET pg_oauth.audit_min_retention = '1h'")
        .unwrap();
    let (code, message) = expect_error(
        &mut db,
        "SELECT * FROM oauth.purge_expired(10, interval '59 minutes')",
        &[],
    );
    assert_eq!(code, "22023");
    assert!(
        message.contains("retention must be at least 01:00:00"),
        "{message}"
    );
    db.batch_execute(
        "CREATE ROLE purger LOGIN IN ROLE oauth_admin;
         ALTER DATABASE oauth SET pg_oauth.audit_min_retention = '1h';",
    )
    .unwrap();
    let mut purger = cluster.connect_as("oauth", "purger");
    // Refused either way: at the SET once the library is loaded (superuser-only setting),
    // or, if the SET made a placeholder first, by the floor that replaces it on load.
    let err = purger
        .batch_execute(
            "SET pg_oauth.audit_min_retention = 0;
             SELECT * FROM oauth.purge_expired(10, interval '0')",
        )
        .unwrap_err();
    let (code, message) = db_error(&err);
    assert!(code == "42501" || code == "22023", "{code}: {message}");
    let (code, _) = expect_error(&mut db, "SELECT * FROM oauth.purge_expired(0)", &[]);
    assert_eq!(code, "22023");
}

/// The purge waits at most 50 ms for a partition in use (and leaves it for the next call),
/// and the partition it empties is not the one tokens are being issued into: issuance and
/// verification go on while the purge's transaction holds it.
#[test]
fn the_purge_never_holds_up_issuance() {
    let cluster = Cluster::start(
        "purge-locks",
        &[
            ("pg_oauth.audit_min_retention", "0"),
            ("pg_oauth.session_partition_interval", "1"),
        ],
    );
    let mut db = cluster.create_db("oauth");
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, scope, access_token_expiration)
         VALUES ('short', 'opaque-secret', '{read}', 1), ('long', 'opaque-secret', '{read}', 3600);",
    )
    .unwrap();
    token(&mut db, "short", "opaque-secret").unwrap();
    // The partition the token went to (with 1 s partitions, the second it was issued in:
    // computed before issuing, it was the next one whenever a second began in between).
    let slot: i16 = db
        .query_one(
            "SELECT slot FROM oauth.session WHERE client_id = 'short'",
            &[],
        )
        .unwrap()
        .get(0);
    let partition = format!("oauth.session_p{slot:02}");
    sleep(Duration::from_millis(2100));

    // A reader holds the partition: the purge gives up on it after its lock timeout.
    let mut reader = cluster.connect("oauth");
    reader
        .batch_execute(&format!("BEGIN; SELECT count(*) FROM {partition};"))
        .unwrap();
    let started = Instant::now();
    purge(&mut db, 100);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let left = |db: &mut postgres::Client| count(db, &format!("SELECT count(*) FROM {partition}"));
    assert_eq!(left(&mut db), 1, "left for the next purge");
    reader.batch_execute("COMMIT").unwrap();

    // The purge empties it and keeps it locked until its transaction ends: tokens are issued
    // and verified meanwhile.
    let mut purger = cluster.connect("oauth");
    purger
        .batch_execute("BEGIN; SELECT * FROM oauth.purge_expired(100, interval '0');")
        .unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        let issued = token(&mut db, "long", "opaque-secret").unwrap();
        db.query_one(
            "SELECT oauth.auth_verify($1)",
            &[&issued["access_token"].as_str().unwrap()],
        )
        .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    purger.batch_execute("COMMIT").unwrap();
    assert_eq!(left(&mut db), 0);
}
