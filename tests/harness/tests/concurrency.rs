//! Several connections issuing, verifying and revoking tokens at once against a real
//! server: every token gets its own session, revocations stick, nothing deadlocks.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use pg_oauth_harness::Cluster;

const WORKERS: usize = 8;
const ROUNDS: usize = 150;

#[test]
fn concurrent_issue_verify_revoke() {
    let cluster = Cluster::start("concurrency", &[]);
    let mut admin = cluster.create_db("oauth");
    admin
        .batch_execute(
            "CREATE ROLE api_user NOLOGIN;
             INSERT INTO oauth.client (id, secret, scope) VALUES ('api-client', 'verysecret', '{read,write}');
             INSERT INTO oauth.policy (client_id, role) VALUES ('api-client', 'api_user');",
        )
        .unwrap();

    let barrier = Arc::new(Barrier::new(WORKERS));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let url = cluster.url("oauth", "postgres");
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut db = pg_oauth_harness::postgres::Client::connect(&url, pg_oauth_harness::postgres::NoTls).unwrap();
                barrier.wait();
                let mut issued = Vec::new();
                let mut revoked = Vec::new();
                for round in 0..ROUNDS {
                    let row = db
                        .query_one(
                            "SELECT oauth.auth_token('client_credentials', 'api-client', 'verysecret', 'read') ->> 'access_token'",
                            &[],
                        )
                        .unwrap();
                    let token: String = row.get(0);
                    let claims: serde_json::Value = db
                        .query_one("SELECT oauth.auth_verify($1)", &[&token])
                        .unwrap()
                        .get(0);
                    assert_eq!(claims["client_id"], "api-client");
                    assert_eq!(claims["role"], "api_user");
                    let jti = claims["jti"].as_str().unwrap().to_owned();
                    if (round + w) % 2 == 0 {
                        let closed: bool = db
                            .query_one("SELECT oauth.auth_revoke($1)", &[&token])
                            .unwrap()
                            .get(0);
                        assert!(closed);
                        let err = db
                            .query_one("SELECT oauth.auth_verify($1)", &[&token])
                            .unwrap_err();
                        assert_eq!(err.code().unwrap().code(), "28000", "{err}");
                        revoked.push(jti.clone());
                    }
                    issued.push((jti, token));
                }
                (issued, revoked)
            })
        })
        .collect();

    let mut all_jti = HashSet::new();
    let mut all_tokens = HashSet::new();
    let mut revoked = HashSet::new();
    for worker in workers {
        let (issued, rev) = worker.join().expect("worker panicked");
        for (jti, token) in issued {
            assert!(all_jti.insert(jti), "duplicate jti");
            assert!(all_tokens.insert(token), "duplicate token");
        }
        revoked.extend(rev);
    }
    assert_eq!(all_jti.len(), WORKERS * ROUNDS);

    let row = admin
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE revoked_at IS NOT NULL), count(DISTINCT token_hash)
               FROM oauth.session WHERE client_id = 'api-client'",
            &[],
        )
        .unwrap();
    let (total, closed, hashes): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        total as usize,
        WORKERS * ROUNDS,
        "every issued token has its session"
    );
    assert_eq!(closed as usize, revoked.len(), "every revocation stuck");
    assert_eq!(hashes, total);
    for jti in &revoked {
        let is_revoked: bool = admin
            .query_one(
                "SELECT revoked_at IS NOT NULL FROM oauth.session WHERE id = $1::text::uuid",
                &[jti],
            )
            .unwrap()
            .get(0);
        assert!(is_revoked);
    }
    assert!(!cluster.log().contains("deadlock"), "no deadlocks");
}
