//! Refresh-token reuse detection when the grant's row is held by a transaction left open:
//! the revocations it defers wait at most a lock timeout per try, pg_oauth's background
//! workers stay within a quarter of max_worker_processes (parallel query still gets its
//! workers), nobody is told a revocation happened that did not commit, the grant's tokens are
//! refused meanwhile, what is given up on is counted and logged in words a DBA can act on,
//! and once the row is free the revocation commits. Before: 8 reuses pinned every worker
//! slot for as long as the row was held, the real client was told the grant was revoked while
//! it was not, and the thief's next refresh succeeded.

use std::time::{Duration, Instant};

use pg_oauth_harness::{db_error, json, postgres, Cluster};

const SECRET: &str = "rt-secret";

fn refresh(db: &mut postgres::Client, token: &str) -> Result<String, String> {
    db.query_one(
        "SELECT oauth.auth_token('refresh_token', 'held', $1, refresh_token => $2) ->> 'refresh_token'",
        &[&SECRET, &token],
    )
    .map(|r| r.get(0))
    .map_err(|e| db_error(&e).1)
}

#[test]
fn reuse_detection_never_stops_and_never_pins_the_workers() {
    let cluster = Cluster::start("reuse-locks", &[("max_worker_processes", "8")]);
    let mut db = cluster.create_db("oauth");
    db.execute(
        "INSERT INTO oauth.client (id, secret, scope, refresh_token) VALUES ('held', $1, '{read}', true)",
        &[&SECRET],
    )
    .unwrap();
    db.batch_execute(
        "CREATE TABLE big AS SELECT g FROM generate_series(1, 200000) AS g; ANALYZE big;",
    )
    .unwrap();
    let first = json(
        &mut db,
        "SELECT oauth.auth_token('client_credentials', 'held', $1) -> 'refresh_token'",
        &[&SECRET],
    );
    let first = first.as_str().unwrap().to_owned();
    let next = refresh(&mut db, &first).unwrap(); // the thief's, say
    let dropped_before: i64 = db
        .query_one("SELECT oauth.audit_dropped_events()", &[])
        .unwrap()
        .get(0);

    // A transaction left open on the grant's row.
    let mut holder = cluster.connect("oauth");
    holder
        .batch_execute(
            "BEGIN; SELECT 1 FROM oauth.refresh_family WHERE client_id = 'held' FOR UPDATE;",
        )
        .unwrap();

    // Eight connections present the spent token at once.
    let reusers: Vec<_> = (0..8)
        .map(|_| {
            let mut db = cluster.connect("oauth");
            let first = first.clone();
            std::thread::spawn(move || refresh(&mut db, &first).unwrap_err())
        })
        .collect();
    let mut monitor = cluster.connect("oauth");
    monitor
        .batch_execute(
            "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0;
             SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;",
        )
        .unwrap();
    let (mut most, mut parallel_ok) = (0i64, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while reusers.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
        let running: i64 = monitor
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_oauth'",
                &[],
            )
            .unwrap()
            .get(0);
        most = most.max(running);
        // Parallel query still gets its workers.
        let plan: Vec<String> = monitor
            .query("EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM big", &[])
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default();
        parallel_ok |= plan.iter().any(|l| l.contains("Workers Launched: 2"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let told: Vec<String> = reusers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        most <= 2,
        "{most} pg_oauth workers at once (max_worker_processes 8)"
    );
    assert!(parallel_ok, "parallel query got no workers");
    for message in &told {
        assert!(
            message.starts_with("invalid_grant: the refresh token was already used; "),
            "{message}"
        );
        assert!(
            !message.contains("has been revoked"),
            "told a revocation that did not commit: {message}"
        );
    }
    // The grant's tokens are refused while its revocation is owed.
    let refused = refresh(&mut db, &next).unwrap_err();
    assert!(refused.contains("already used"), "{refused}");
    assert!(!grant_revoked(&mut db), "the row is still held");

    // What was given up on is counted and logged in words, with what to do.
    let dropped: i64 = db
        .query_one("SELECT oauth.audit_dropped_events()", &[])
        .unwrap()
        .get(0);
    assert!(dropped > dropped_before, "nothing counted");
    let log = cluster.log();
    assert!(
        log.contains("revocation of refresh grant") && log.contains("UPDATE oauth.refresh_family"),
        "{log}"
    );
    assert!(!log.contains("RevokeFamily"), "a Rust structure in the log");

    // Once the row is free, the spent token revokes the grant.
    holder.batch_execute("COMMIT").unwrap();
    let message = refresh(&mut db, &first).unwrap_err();
    assert!(message.contains("has been revoked"), "{message}");
    assert!(grant_revoked(&mut db));
}

/// Whether the grant of client 'held' is revoked.
fn grant_revoked(db: &mut postgres::Client) -> bool {
    db.query_one(
        "SELECT revoked_at IS NOT NULL FROM oauth.refresh_family WHERE client_id = 'held'",
        &[],
    )
    .unwrap()
    .get(0)
}
