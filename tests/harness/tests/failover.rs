//! Failover: a streaming standby promoted when its primary dies (SIGKILL, as a crash would).
//! The standby's listener answers the read-only endpoints (JWK Set, metadata, introspection)
//! and refuses token requests with 503 temporarily_unavailable until it is promoted, then
//! issues. Tokens issued before verify after. A revocation committed with
//! `synchronous_commit = remote_apply` (synchronous_standby_names set) is in force after the
//! failover; with asynchronous replication, how many of the last revocations a failover loses
//! is measured (printed, quoted in docs/operations.md), and the standby always holds a prefix
//! of them — never a later one without an earlier one.

use std::time::{Duration, Instant};

use pg_oauth_harness::{db_error, free_port, json, postgres, Cluster};
use reqwest::blocking::Client as Http;
use serde_json::Value;

const SECRET: &str = "Kq3vZ8yT1bW6nR4pL0sX9dF2gH7jM5cV-aE_uIoP3kQ";

struct Pair {
    primary: Cluster,
    standby: Cluster,
    standby_port: u16,
}

/// A primary with the listener on, database `oauth` with a client, and a hot standby whose
/// listener serves on a port of its own.
fn pair(name: &str) -> Pair {
    let (primary_port, standby_port) = (free_port(), free_port());
    let listen = format!("'127.0.0.1:{primary_port}'");
    let primary = Cluster::start(
        name,
        &[
            ("shared_preload_libraries", "'pg_oauth'"),
            ("pg_oauth.http_listen", &listen),
            ("pg_oauth.http_database", "'oauth'"),
            ("pg_oauth.endpoint_prefix", "''"),
        ],
    );
    let mut db = primary.create_db_with(
        "oauth",
        &[(
            "pg_oauth.issuer",
            &format!("http://127.0.0.1:{standby_port}"),
        )],
    );
    db.execute(
        "INSERT INTO oauth.client (id, secret, scope, token_format)
         VALUES ('fo-client', $1, '{read}', 'jwt')",
        &[&SECRET],
    )
    .unwrap();
    db.batch_execute("SELECT oauth.ensure_signing_keys()")
        .unwrap();
    let standby_listen = format!("'127.0.0.1:{standby_port}'");
    let standby = Cluster::replica_with(
        &primary,
        &format!("{name}-standby"),
        &[("pg_oauth.http_listen", &standby_listen)],
    );
    Pair {
        primary,
        standby,
        standby_port,
    }
}

fn issue(db: &mut postgres::Client, n: i32) -> Vec<String> {
    db.query(
        "SELECT oauth.auth_token('client_credentials', 'fo-client', $1) ->> 'access_token'
           FROM generate_series(1, $2)",
        &[&SECRET, &n],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn catch_up(primary: &mut postgres::Client, standby: &mut postgres::Client) {
    let lsn: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !standby
        .query_one(
            "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
            &[&lsn],
        )
        .unwrap()
        .get::<_, bool>(0)
    {
        assert!(Instant::now() < deadline, "the standby did not catch up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn revoked(db: &mut postgres::Client, token: &str) -> bool {
    match db.query_one("SELECT oauth.auth_verify($1)", &[&token]) {
        Ok(_) => false,
        Err(e) => {
            let (_, message) = db_error(&e);
            assert!(message.contains("revoked"), "{message}");
            true
        }
    }
}

fn post(http: &Http, url: &str, form: &[(&str, &str)]) -> (u16, Option<String>, Value) {
    let response = http
        .post(url)
        .basic_auth("fo-client", Some(SECRET))
        .form(form)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, response.json().unwrap())
}

/// The standby's listener, once its workers answer.
fn standby_listener(port: u16) -> (Http, String) {
    let base = format!("http://127.0.0.1:{port}");
    let http = Http::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/jwks")).send().is_err() {
        assert!(
            Instant::now() < deadline,
            "the standby's listener did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (http, base)
}

#[test]
fn a_standby_serves_reads_and_takes_over_with_every_synchronous_revocation() {
    let mut pair = pair("failover-sync");
    let mut primary = pair.primary.connect("oauth");
    let mut standby = pair.standby.connect("oauth");
    // Synchronous from now on (with it set before the standby existed, every commit would
    // have waited for a standby that was not there).
    primary
        .batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        .unwrap();
    primary.batch_execute("SELECT pg_reload_conf()").unwrap();
    let tokens = issue(&mut primary, 20);
    catch_up(&mut primary, &mut standby);

    // The standby's listener: reads yes, writes 503 until promotion.
    let (http, base) = standby_listener(pair.standby_port);
    let jwks: Value = http
        .get(format!("{base}/jwks"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(jwks, json(&mut primary, "SELECT oauth.auth_jwks()", &[]));
    let metadata = http
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .unwrap();
    assert_eq!(metadata.status().as_u16(), 200);
    let (status, _, body) = post(
        &http,
        &format!("{base}/introspect"),
        &[("token", &tokens[0])],
    );
    assert_eq!(
        (status, &body["active"]),
        (200, &Value::Bool(true)),
        "{body}"
    );
    let (status, retry, body) = post(
        &http,
        &format!("{base}/token"),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("read-only standby"),
        "{body}"
    );
    assert!(retry.is_some(), "Retry-After");

    // Revocations committed with remote_apply, then the primary dies at once.
    primary
        .batch_execute("SET synchronous_commit = remote_apply")
        .unwrap();
    for token in &tokens[..10] {
        let done: bool = primary
            .query_one("SELECT oauth.auth_revoke($1)", &[token])
            .unwrap()
            .get(0);
        assert!(done);
    }
    pair.primary.kill9();
    pair.standby.promote();
    drop(standby);
    let mut promoted = pair.standby.connect("oauth");
    for token in &tokens[..10] {
        assert!(
            revoked(&mut promoted, token),
            "a synchronous revocation was lost"
        );
    }
    for token in &tokens[10..] {
        assert!(!revoked(&mut promoted, token));
    }
    // The listener issues once the server is promoted.
    let (status, _, body) = post(
        &http,
        &format!("{base}/token"),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(status, 200, "{body}");
    json(
        &mut promoted,
        "SELECT oauth.auth_verify($1)",
        &[&body["access_token"].as_str().unwrap()],
    );
}

#[test]
fn asynchronous_replication_loses_at_most_the_last_revocations() {
    const N: usize = 1000;
    let mut lost = Vec::new();
    for round in 0..3 {
        let mut pair = pair(&format!("failover-async-{round}"));
        let mut primary = pair.primary.connect("oauth");
        let mut standby = pair.standby.connect("oauth");
        let tokens = issue(&mut primary, N as i32);
        catch_up(&mut primary, &mut standby);
        drop(standby);
        // Each revocation its own transaction, as fast as one connection goes; the primary
        // dies the moment the last one has committed.
        let started = Instant::now();
        for token in &tokens {
            primary
                .query_one("SELECT oauth.auth_revoke($1)", &[token])
                .unwrap();
        }
        let rate = N as f64 / started.elapsed().as_secs_f64();
        pair.primary.kill9();
        pair.standby.promote();
        let mut promoted = pair.standby.connect("oauth");
        let held: Vec<bool> = tokens.iter().map(|t| revoked(&mut promoted, t)).collect();
        let kept = held.iter().take_while(|r| **r).count();
        assert!(
            held[kept..].iter().all(|r| !r),
            "the standby holds a later revocation without an earlier one"
        );
        println!(
            "asynchronous failover, round {}: {} of {N} revocations lost ({rate:.0} revocations/s)",
            round + 1,
            N - kept
        );
        lost.push(N - kept);
    }
    println!("asynchronous failover: lost {lost:?} of {N}");
}
