//! Abuse resistance (issue 13): what an attacker or a careless caller cannot make pg_oauth
//! write where it should not, lose, or leak — against real servers.

use std::time::{Duration, Instant};

use pg_oauth_harness::{db_error, postgres, repo_root, Cluster, PostgRest};

/// With PostgreSQL's defaults (log_min_error_statement = error) a failing statement is
/// logged; a failing pg_oauth call must not put its secret or token in the server log.
#[test]
fn secrets_in_failing_statements_never_reach_the_server_log() {
    let cluster = Cluster::start("abuse-log", &[]);
    let mut db = cluster.create_db_with("oauth", &[("pg_oauth.issuer", "https://issuer.example")]);
    db.batch_execute(
        "CREATE ROLE app_reader NOLOGIN;
         INSERT INTO oauth.client (id, secret, scope, token_format)
         VALUES ('app', 'Right-Secret-R1', '{read}', 'jwt');
         INSERT INTO oauth.policy (client_id, role) VALUES ('app', 'app_reader');",
    )
    .unwrap();
    // Simple-query protocol: the literals are part of the statement text.
    for sql in [
        "SELECT oauth.auth_token('client_credentials', 'app', 'Leaked-Secret-L1')",
        "SELECT oauth.auth_token('client_credentials', 'app', 'Right-Secret-R1', 'bad-scope')",
        "SELECT oauth.auth_token('client_credentials', 'nobody', 'Leaked-Secret-L2')",
        "SELECT oauth.auth_verify('Leaked-Token-L3')",
        "SELECT oauth.auth_verify('Leaked-Token-L4', 'https://other.example')",
        // PL/pgSQL: the CONTEXT line would quote the statement.
        "DO $$ BEGIN PERFORM oauth.auth_token('client_credentials', 'app', 'Leaked-Secret-L5'); END $$",
        // The trigger refuses an unusable secret: the INSERT carries it.
        "INSERT INTO oauth.client (id, secret) VALUES ('x', repeat('Leaked-Secret-L6', 300))",
        // Errors raised before pg_oauth's function runs: no EXECUTE right, no such signature.
        "SET ROLE app_reader; SELECT oauth.auth_token('client_credentials', 'app', 'Leaked-Secret-L7')",
        "SELECT oauth.auth_token('client_credentials', 'app', 'Leaked-Secret-L8', 1, 2, 3, 4, 5, 6, 7)",
    ] {
        let err = db.batch_execute(sql).unwrap_err();
        assert!(!db_error(&err).1.is_empty(), "{sql}");
    }
    // Control: statements of other failing statements are logged (the setting is on).
    db.batch_execute("SELECT 1 / 0 AS control_marker_c9")
        .unwrap_err();
    let log = cluster.log();
    assert!(log.contains("control_marker_c9"), "{log}");
    for secret in [
        "Right-Secret-R1",
        "Leaked-Secret-L1",
        "Leaked-Secret-L2",
        "Leaked-Token-L3",
        "Leaked-Token-L4",
        "Leaked-Secret-L5",
        "Leaked-Secret-L6",
        "Leaked-Secret-L7",
        "Leaked-Secret-L8",
    ] {
        assert!(!log.contains(secret), "{secret} in the server log:\n{log}");
    }
    // A session that has not loaded pg_oauth yet has no hook: session_preload_libraries
    // loads it at connection, so its first statement is covered too.
    db.batch_execute("ALTER DATABASE oauth SET session_preload_libraries = 'pg_oauth'")
        .unwrap();
    let mut fresh = cluster.connect("oauth");
    let err = fresh
        .batch_execute(
            "SET ROLE app_reader; SELECT oauth.auth_token('client_credentials', 'app', 'Leaked-Secret-L9')",
        )
        .unwrap_err();
    assert!(db_error(&err).1.contains("permission denied"), "{err}");
    assert!(
        !cluster.log().contains("Leaked-Secret-L9"),
        "{}",
        cluster.log()
    );
    // The errors themselves are still logged, without their statements.
    assert!(
        log.contains("invalid_client: client authentication failed"),
        "{log}"
    );
}

/// A failure recorded for a request that fails inside a transaction that holds the
/// client's lockout row (a success earlier in it cleared the row) does not wait for that
/// transaction: it is recorded at once, without counting toward the lockout.
#[test]
fn failure_records_never_wait_on_the_callers_own_locks() {
    let cluster = Cluster::start("abuse-locks", &[]);
    let mut db = cluster.create_db("oauth");
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, scope) VALUES ('app', 'right', '{read}')",
    )
    .unwrap();
    db.batch_execute("SELECT oauth.auth_token('client_credentials', 'app', 'wrong-1')")
        .unwrap_err();
    let failures = |db: &mut postgres::Client| -> Vec<String> {
        db.query(
            "SELECT reason FROM oauth.auth_failure WHERE client_id = 'app' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    assert_eq!(failures(&mut db), ["wrong secret"]);

    db.batch_execute(
        "BEGIN;
         SELECT oauth.auth_token('client_credentials', 'app', 'right');",
    )
    .unwrap();
    let err = db
        .batch_execute("SELECT oauth.auth_token('client_credentials', 'app', 'wrong-2')")
        .unwrap_err();
    assert_eq!(db_error(&err).0, "28P01");
    db.batch_execute("ROLLBACK").unwrap();
    assert_eq!(
        failures(&mut db),
        [
            "wrong secret",
            "wrong secret; not counted toward the lockout (its row was busy)"
        ]
    );
    assert!(
        !cluster.log().contains("did not finish"),
        "{}",
        cluster.log()
    );
    assert_eq!(dropped(&mut db), 0);
}

fn dropped(db: &mut postgres::Client) -> i64 {
    db.query_one("SELECT oauth.audit_dropped_events()", &[])
        .unwrap()
        .get(0)
}

/// With no background worker slot a failure cannot be recorded from SQL; it is counted.
#[test]
fn failures_that_cannot_be_recorded_are_counted() {
    // The logical replication launcher takes the only worker slot.
    let cluster = Cluster::start("abuse-dropped", &[("max_worker_processes", "1")]);
    let mut db = cluster.create_db("oauth");
    db.batch_execute("INSERT INTO oauth.client (id, secret) VALUES ('app', 'right')")
        .unwrap();
    assert_eq!(dropped(&mut db), 0);
    db.batch_execute("SELECT oauth.auth_token('client_credentials', 'app', 'wrong')")
        .unwrap_err();
    assert_eq!(dropped(&mut db), 1);
    let recorded: i64 = db
        .query_one("SELECT count(*) FROM oauth.auth_failure", &[])
        .unwrap()
        .get(0);
    assert_eq!(recorded, 0);
    let log = cluster.log();
    assert!(
        log.contains("no background worker could be started"),
        "{log}"
    );
    assert!(
        log.contains("lost the record of a failed authentication of client \"app\""),
        "{log}"
    );
}

/// At most pg_oauth.argon2_concurrency argon2 computations run at once in the cluster; a
/// cold verification beyond it waits pg_oauth.argon2_wait, then answers
/// temporarily_unavailable (SQLSTATE 53000; over HTTP 429 + one Retry-After). A warm client
/// never waits, nor does a connection that never verified a secret proven in the cluster
/// (written in plaintext, or verified by another backend): the slot is for unknown work.
#[test]
fn argon2_work_is_bounded_cluster_wide_and_warm_clients_never_wait() {
    let cluster = Cluster::start(
        "abuse-argon2",
        &[
            ("pg_oauth.argon2_concurrency", "1"),
            ("pg_oauth.argon2_wait", "0"),
            // Guessing here is the tool, not the subject: no lockout, no throttle.
            ("pg_oauth.lockout_threshold", "0"),
            ("pg_oauth.source_failure_limit", "0"),
        ],
    );
    cluster.recipe_app(&repo_root().join("examples/postgrest/setup.sql"), &[]);
    let rest = PostgRest::start(&cluster, "app");
    let mut db = cluster.connect("app");
    // An imported hash at the highest accepted cost, as current and previous secret: a wrong
    // guess at it holds the only slot for two such verifications.
    let slow = format!(
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0${}",
        "A".repeat(43)
    );
    db.execute(
        "INSERT INTO oauth.client (id, secret) VALUES ('slow', $1), ('warm', 'warm-secret')",
        &[&slow],
    )
    .unwrap();
    db.execute(
        "UPDATE oauth.client SET previous_secret = $1, previous_secret_expires_at = now() + interval '1 hour'
          WHERE id = 'slow'",
        &[&slow],
    )
    .unwrap();
    // The same secret imported as a hash under another id: nothing in the cluster proves it.
    db.execute(
        "INSERT INTO oauth.client (id, secret)
         SELECT 'imported', secret FROM oauth.client WHERE id = 'warm'",
        &[],
    )
    .unwrap();
    let token_sql = "SELECT oauth.auth_token('client_credentials', $1, $2)";
    let mut warm = cluster.connect("app");
    warm.query_one(token_sql, &[&"warm", &"warm-secret"])
        .unwrap();

    // Guessers that queue for the slot (a setting of their own sessions), one after another:
    // it is held, with gaps of a poll (2 ms) between them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holders: Vec<_> = (0..3)
        .map(|_| {
            let mut conn = cluster.connect("app");
            conn.batch_execute("SET pg_oauth.argon2_wait = '60s'")
                .unwrap();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    conn.query_one(token_sql, &[&"slow", &"wrong"]).unwrap_err();
                }
            })
        })
        .collect();
    let slot_held = |db: &mut postgres::Client| -> bool {
        db.query_one(
            "SELECT count(*) > 0 FROM pg_locks
              WHERE locktype = 'advisory' AND database = 0 AND granted",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !slot_held(&mut db) {
        assert!(
            Instant::now() < deadline,
            "the slow verification never took a slot"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    // Cold work now: refused at once, in SQL... (a wrong guess that lands in a gap between
    // the guessers is verified instead; it proves nothing, so try again)
    let mut cold = cluster.connect("app");
    let refused_sql = (0..50).find_map(|_| {
        let err = cold
            .query_one(token_sql, &[&"imported", &"not-the-secret"])
            .unwrap_err();
        let (code, message) = db_error(&err);
        (code == "53000").then_some(message)
    });
    let message = refused_sql.expect("never refused while the slot was taken");
    assert!(message.starts_with("temporarily_unavailable"), "{message}");
    // ...and over HTTP (PostgREST's connections are cold too).
    let http = reqwest::blocking::Client::new();
    let refused_http = (0..50).find_map(|_| {
        let resp = http
            .post(rest.url("/rpc/token"))
            .basic_auth("imported", Some("not-the-secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .unwrap();
        (resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS).then_some(resp)
    });
    let resp = refused_http.expect("never refused over HTTP while the slot was taken");
    let retry: Vec<&str> = resp
        .headers()
        .get_all("retry-after")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(retry, ["1"], "{:?}", resp.headers());
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    // A warm client is not held up; nor are fresh connections whose secret is proven in the
    // cluster: written in plaintext by the recipe (never verified yet), or verified by the
    // `warm` connection.
    for _ in 0..5 {
        warm.query_one(token_sql, &[&"warm", &"warm-secret"])
            .unwrap();
    }
    for (id, secret) in [("api-client", "verysecret"), ("warm", "warm-secret")] {
        cluster
            .connect("app")
            .query_one(token_sql, &[&id, &secret])
            .unwrap();
    }
    let resp = http
        .post(rest.url("/rpc/token"))
        .basic_auth("api-client", Some("verysecret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    assert!(slot_held(&mut db), "the guessers were still running");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for holder in holders {
        holder.join().unwrap();
    }
    assert!(!slot_held(&mut db), "released after the hash");
    cold.query_one(token_sql, &[&"imported", &"warm-secret"])
        .unwrap();
    // A refusal is not a failed authentication: only verified guesses were recorded.
    let refusals_recorded: i64 = db
        .query_one(
            "SELECT count(*) FROM oauth.auth_failure WHERE client_id = 'imported' AND reason <> 'wrong secret'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(refusals_recorded, 0);
}

/// Through the shipped PostgREST recipe every caller shares PostgREST's address: 1,000
/// wrong guesses for a client, then the real client still gets its tokens, from
/// connections that never verified its secret; the guesser got at most
/// pg_oauth.lockout_threshold verified guesses. Short secrets keep the plain lockout.
#[test]
fn guessers_sharing_the_clients_address_cannot_lock_it_out() {
    let cluster = Cluster::start("abuse-lockout", &[]);
    cluster.recipe_app(&repo_root().join("examples/postgrest/setup.sql"), &[]);
    let rest = PostgRest::start(&cluster, "app");
    let mut db = cluster.connect("app");
    let strong = "Kq3vZ8yT1bW6nR4pL0sX9dF2gH7jM5cV-aE_uIoP3kQ";
    db.execute(
        "INSERT INTO oauth.client (id, secret, scope, token_format)
         VALUES ('svc', $1, '{notes:read}', 'jwt')",
        &[&strong],
    )
    .unwrap();
    db.batch_execute("INSERT INTO oauth.policy (client_id, role) VALUES ('svc', 'api_user')")
        .unwrap();
    let http = reqwest::blocking::Client::new();
    let token = |id: &str, secret: &str| {
        http.post(rest.url("/rpc/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .unwrap()
            .status()
    };
    for i in 0..1000 {
        // Short and long guesses: both meet the lockout.
        let guess = if i % 2 == 0 {
            format!("guess-{i}")
        } else {
            format!("{}{i:04}", &strong[..40])
        };
        assert_eq!(token("svc", &guess), reqwest::StatusCode::UNAUTHORIZED);
    }
    let served = (0..100)
        .filter(|_| token("svc", strong) == reqwest::StatusCode::OK)
        .count();
    eprintln!("the real client got {served} of 100 after 1,000 guesses");
    assert!(served >= 99, "the real client got {served} of 100");
    let verified_guesses: i64 = db
        .query_one(
            "SELECT count(*) FROM oauth.auth_failure WHERE client_id = 'svc'",
            &[],
        )
        .unwrap()
        .get(0);
    let threshold: i64 = db
        .query_one(
            "SELECT current_setting('pg_oauth.lockout_threshold')::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        (1..=threshold).contains(&verified_guesses),
        "{verified_guesses} verified guesses"
    );
    let locked: bool = db
        .query_one(
            "SELECT locked_until > now() FROM oauth.client_lockout WHERE client_id = 'svc'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(locked, "the guessers are locked out");

    // A secret under 32 characters has no proof to stand on: the lockout holds for all.
    for i in 0..threshold {
        assert_eq!(
            token("api-client", &format!("guess-{i}")),
            reqwest::StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        token("api-client", "verysecret"),
        reqwest::StatusCode::UNAUTHORIZED
    );
}

/// Rotating client ids does not escape throttling: failures are counted per source,
/// cluster-wide, whatever ids they named; a throttled source gets no secret verified
/// (no argon2, nothing recorded) except a proven one.
#[test]
fn a_source_that_rotates_client_ids_is_throttled() {
    let cluster = Cluster::start("abuse-source", &[("pg_oauth.source_failure_limit", "5")]);
    let mut db = cluster.create_db("oauth");
    let strong = "Kq3vZ8yT1bW6nR4pL0sX9dF2gH7jM5cV-aE_uIoP3kQ";
    db.execute(
        "INSERT INTO oauth.client (id, secret) VALUES ('strong', $1), ('short', 'verysecret')",
        &[&strong],
    )
    .unwrap();
    let token_sql = "SELECT oauth.auth_token('client_credentials', $1, $2)";
    let refusal = |db: &mut postgres::Client, id: &str, secret: &str| -> String {
        let err = db.query_one(token_sql, &[&id, &secret]).unwrap_err();
        let (code, message) = db_error(&err);
        assert_eq!(code, "28P01", "{message}");
        message
    };
    for i in 0..5 {
        let message = refusal(&mut db, &format!("unknown-{i}"), "guess");
        assert_eq!(message, "invalid_client: client authentication failed");
    }
    // From another connection too (the count is shared), for any id.
    let mut other = cluster.connect("oauth");
    for (id, secret) in [("unknown-6", "guess"), ("short", "verysecret")] {
        let message = refusal(&mut other, id, secret);
        assert!(
            message.contains("too many failed authentications from this address"),
            "{message}"
        );
    }
    // A proven secret is still served.
    other.query_one(token_sql, &[&"strong", &strong]).unwrap();
    for i in 7..9 {
        refusal(&mut other, &format!("unknown-{i}"), "guess");
    }
    // However many ids it tried, the throttled source has one aggregate row for its window
    // (written at the 1st, 2nd and 4th refusal), in the audit trail.
    let throttled: Vec<(String, i64)> = db
        .query(
            "SELECT detail->>'source', (detail->>'refused')::bigint FROM oauth.audit_event
              WHERE event = 'source throttled'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let failed_from: String = db
        .query_one("SELECT DISTINCT source FROM oauth.auth_failure", &[])
        .unwrap()
        .get(0);
    assert_eq!(throttled, vec![(failed_from, 4)]);
    let rows: Vec<(String, String)> = db
        .query(
            "SELECT client_id, reason FROM oauth.auth_failure ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(
        rows[4]
            .1
            .ends_with("the source is throttled for the rest of its window"),
        "{rows:?}"
    );
}

/// A refusal (lockout, throttled source) costs no argon2, so a guesser would get refusals as
/// fast as it asks. SQL callers wait pg_oauth.refusal_delay first, on the latch (visible as
/// an Extension wait, cancellable, nothing recorded); over HTTP refusals are answered at once,
/// because a wait would hold one of PostgREST's pooled connections for the guesser.
#[test]
fn refusals_are_paced_for_sql_callers_and_never_hold_an_http_pool_connection() {
    let cluster = Cluster::start(
        "abuse-pacing",
        &[
            ("pg_oauth.source_failure_limit", "2"),
            ("pg_oauth.refusal_delay", "60000"),
        ],
    );
    cluster.recipe_app(&repo_root().join("examples/postgrest/setup.sql"), &[]);
    let mut db = cluster.connect("app");
    db.batch_execute(
        "ALTER DATABASE app SET pg_oauth.http_client_address_header = 'x-forwarded-for'",
    )
    .unwrap();
    let rest = PostgRest::start(&cluster, "app");

    // Over HTTP, from 203.0.113.7: two failures, then refusals, each answered at once (a
    // paced one would take 60 s and time out).
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let attempt = |from: &str| {
        http.post(rest.url("/rpc/token"))
            .header("x-forwarded-for", from)
            .basic_auth("nobody", Some("guess"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .expect("answered without a refusal delay")
    };
    let description = |resp: reqwest::blocking::Response| -> String {
        assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED);
        let body: serde_json::Value = resp.json().unwrap();
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    for _ in 0..2 {
        assert_eq!(
            description(attempt("203.0.113.7")),
            "client authentication failed"
        );
    }
    for _ in 0..3 {
        let resp = attempt("203.0.113.7");
        assert!(resp.headers().contains_key("retry-after"));
        let said = description(resp);
        assert!(
            said.contains("too many failed authentications from this address"),
            "{said}"
        );
    }
    // IPv6 counts by /64: whoever has one address has 2^64 of them.
    for from in ["2001:db8:5:6::1", "2001:db8:5:6:ffff:1:2:3"] {
        assert_eq!(description(attempt(from)), "client authentication failed");
    }
    let said = description(attempt("2001:db8:5:6:abcd::9"));
    assert!(
        said.contains("too many failed authentications from this address"),
        "{said}"
    );
    assert_eq!(
        description(attempt("2001:db8:5:7::1")),
        "client authentication failed"
    );

    // In SQL, from this connection's address: two failures, then a refusal that waits.
    let token_sql = "SELECT oauth.auth_token('client_credentials', $1, 'guess')";
    for i in 0..2 {
        let err = db.query_one(token_sql, &[&format!("sql-{i}")]).unwrap_err();
        assert_eq!(
            db_error(&err).1,
            "invalid_client: client authentication failed"
        );
    }
    let mut guesser = cluster.connect("app");
    let guesser_pid: i32 = guesser
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let refused =
        std::thread::spawn(move || guesser.query_one(token_sql, &[&"sql-refused"]).unwrap_err());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: bool = db
            .query_one(
                "SELECT count(*) = 1 FROM pg_stat_activity
                  WHERE pid = $1 AND state = 'active' AND wait_event_type = 'Extension'",
                &[&guesser_pid],
            )
            .unwrap()
            .get(0);
        if waiting {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refused SQL caller never waited on its latch"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    db.execute("SELECT pg_cancel_backend($1)", &[&guesser_pid])
        .unwrap();
    let err = refused.join().unwrap();
    assert_eq!(db_error(&err).0, "57014", "cancelled while it waited");
    // Refusals are not failures: two per source were recorded (with their own addresses),
    // and one for the other /64.
    let recorded: Vec<String> = db
        .query("SELECT source FROM oauth.auth_failure ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(recorded.len(), 7, "{recorded:?}");
    assert_eq!(
        recorded[2..5],
        [
            "2001:db8:5:6::1",
            "2001:db8:5:6:ffff:1:2:3",
            "2001:db8:5:7::1"
        ]
    );
}
