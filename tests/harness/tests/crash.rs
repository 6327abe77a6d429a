//! kill -9 of the server under load, then crash recovery: every token a caller received
//! has its committed session (and verifies), and every revocation a caller saw succeed is
//! still in force.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pg_oauth_harness::{db_error, postgres, Cluster};
use serde_json::Value;

#[derive(Default)]
struct Seen {
    issued: Vec<String>,
    revoked: Vec<String>,
    /// A revocation in flight when the server died: it may or may not have committed.
    uncertain: Option<String>,
}

#[test]
fn a_crash_loses_no_token_and_no_revocation() {
    let mut cluster = Cluster::start("crash", &[]);
    let mut db = cluster.create_db_with("oauth", &[("pg_oauth.issuer", "https://issuer.crash")]);
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, scope, token_format) VALUES
             ('crash-opaque', 's', '{read}', 'opaque'), ('crash-jwt', 's', '{read}', 'jwt');",
    )
    .unwrap();
    drop(db);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|n| {
            let url = cluster.url("oauth", "postgres");
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Seen::default();
                let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                let client = if n % 2 == 0 {
                    "crash-opaque"
                } else {
                    "crash-jwt"
                };
                let mut step = 0;
                while !stop.load(Ordering::Relaxed) {
                    step += 1;
                    // A reply means the statement committed (autocommit).
                    let result = if step % 3 == 0 && !seen.issued.is_empty() {
                        let victim = seen.issued[seen.issued.len() / 2].clone();
                        db.query_one("SELECT oauth.auth_revoke($1)", &[&victim])
                            .map(|row| {
                                if row.get::<_, bool>(0) {
                                    seen.revoked.push(victim);
                                }
                            })
                    } else {
                        db.query_one(
                            "SELECT oauth.auth_token('client_credentials', $1, 's')",
                            &[&client],
                        )
                        .map(|row| {
                            let t: Value = row.get(0);
                            seen.issued
                                .push(t["access_token"].as_str().unwrap().to_owned());
                        })
                    };
                    if result.is_err() {
                        // The server is gone. A revocation sent but unanswered may have
                        // committed or not; nobody was told either way.
                        if step % 3 == 0 && !seen.issued.is_empty() {
                            seen.uncertain = Some(seen.issued[seen.issued.len() / 2].clone());
                        }
                        break;
                    }
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    cluster.kill9();
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = workers.into_iter().map(|w| w.join().unwrap()).collect();

    cluster.start_server(); // crash recovery replays the WAL
    let mut db = cluster.connect("oauth");
    let issued: Vec<&String> = seen.iter().flat_map(|s| &s.issued).collect();
    let revoked: Vec<&String> = seen.iter().flat_map(|s| &s.revoked).collect();
    println!(
        "{} tokens issued and {} revoked before the crash",
        issued.len(),
        revoked.len()
    );
    assert!(issued.len() > 100 && !revoked.is_empty(), "too little load");
    assert!(
        cluster.log().contains("database system was interrupted")
            || cluster.log().contains("not properly shut down"),
        "no crash recovery happened"
    );
    let uncertain: Vec<&String> = seen.iter().filter_map(|s| s.uncertain.as_ref()).collect();
    for token in &issued {
        if uncertain.contains(token) {
            continue;
        }
        let result = db.query_one("SELECT oauth.auth_verify($1)", &[token]);
        if revoked.contains(token) {
            assert_eq!(
                db_error(&result.unwrap_err()).0,
                "28000",
                "a revocation was lost"
            );
        } else {
            result.unwrap_or_else(|e| {
                panic!(
                    "a token issued before the crash is gone: {:?}",
                    db_error(&e)
                )
            });
        }
    }
    let sessions: i64 = db
        .query_one("SELECT count(*) FROM oauth.session", &[])
        .unwrap()
        .get(0);
    assert!(sessions as usize >= issued.len());
}
