//! The listener when a transaction it does not own holds what a request needs, and when
//! requests pile up: a request that would wait for a lock gives up after
//! pg_oauth.http_lock_timeout with 503 temporarily_unavailable while everyone else is served,
//! and a stalled worker queues a bounded number of raw requests (503 beyond), so its memory
//! stays bounded.

use std::time::{Duration, Instant};

use pg_oauth_harness::{free_port, json, postgres, Cluster};
use reqwest::blocking::Client as Http;

const SECRET: &str = "a-long-enough-secret-for-the-listener-0123";

fn listener(name: &str, extra: &[(&str, &str)]) -> (Cluster, String) {
    let port = free_port();
    let listen = format!("'127.0.0.1:{port}'");
    let mut settings = vec![
        ("shared_preload_libraries", "'pg_oauth'"),
        ("pg_oauth.http_listen", listen.as_str()),
    ];
    settings.extend_from_slice(extra);
    let cluster = Cluster::start(name, &settings);
    let mut db = cluster.connect("postgres");
    db.batch_execute("CREATE EXTENSION pg_oauth").unwrap();
    for i in 0..40 {
        db.execute(
            "INSERT INTO oauth.client (id, secret, scope) VALUES ($1, $2, '{read}')",
            &[&format!("other-{i}"), &SECRET],
        )
        .unwrap();
    }
    db.execute(
        "INSERT INTO oauth.client (id, secret, scope, refresh_token) VALUES ('stuck', $1, '{read}', true)",
        &[&SECRET],
    )
    .unwrap();
    (cluster, format!("http://127.0.0.1:{port}"))
}

fn post(http: &Http, url: &str, client: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let response = http
        .post(url)
        .basic_auth(client, Some(SECRET))
        .form(form)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or_default())
}

/// Client 'stuck' presents `refresh` to the listener, in a thread of its own.
fn present_refresh_token(
    http: &Http,
    base: &str,
    refresh: &str,
) -> std::thread::JoinHandle<(u16, serde_json::Value)> {
    let (http, url, refresh) = (http.clone(), format!("{base}/token"), refresh.to_owned());
    std::thread::spawn(move || {
        post(
            &http,
            &url,
            "stuck",
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
    })
}

/// An application's `BEGIN; auth_token('refresh_token', ...)` left open holds the refresh
/// token's row: the same token presented to the listener waits at most the lock timeout and
/// is answered 503, and 40 other clients' requests (tokens and the JWK Set) are all served
/// meanwhile. Before, both workers waited on the row and every other request timed out.
#[test]
fn a_transaction_left_open_does_not_stall_the_listener() {
    let (cluster, base) = listener("listener-locks", &[("pg_oauth.http_lock_timeout", "200")]);
    let mut app = cluster.connect("postgres");
    let refresh = json(
        &mut app,
        "SELECT oauth.auth_token('client_credentials', 'stuck', $1) -> 'refresh_token'",
        &[&SECRET],
    );
    let refresh = refresh.as_str().unwrap().to_owned();
    let mut open = app.transaction().unwrap();
    open.query_one(
        "SELECT oauth.auth_token('refresh_token', 'stuck', $1, refresh_token => $2)",
        &[&SECRET, &refresh],
    )
    .unwrap();

    let http = Http::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let stuck = present_refresh_token(&http, &base, &refresh);
    let others: Vec<_> = (0..40)
        .map(|i| {
            let (http, base) = (http.clone(), base.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let (status, body) = post(
                    &http,
                    &format!("{base}/token"),
                    &format!("other-{i}"),
                    &[("grant_type", "client_credentials")],
                );
                assert_eq!(status, 200, "other-{i}: {body}");
                let jwks = http.get(format!("{base}/jwks")).send().unwrap();
                assert_eq!(jwks.status().as_u16(), 200);
                started.elapsed()
            })
        })
        .collect();
    let slowest = others.into_iter().map(|t| t.join().unwrap()).max().unwrap();
    assert!(
        slowest < Duration::from_secs(3),
        "another client waited {slowest:?}"
    );
    let (status, body) = stuck.join().unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(started.elapsed() < Duration::from_secs(5));
    open.rollback().unwrap();
    assert!(cluster.log().contains("gave up waiting for a lock"));
}

fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A worker stalled on one request (a lock it may wait 30 s for here) while 600 connections
/// each send a 64 KB JSON array: at most 256 requests are held (the rest are answered 503 at
/// once), as raw bytes, so the worker's memory stays within tens of megabytes (it grew by
/// 660 MB before: every body was parsed to JSON and queued without bound).
#[test]
fn a_stalled_worker_holds_a_bounded_queue() {
    let (cluster, base) = listener(
        "listener-queue",
        &[
            ("pg_oauth.http_workers", "1"),
            ("pg_oauth.http_lock_timeout", "30000"),
            // All 600 senders below come from 127.0.0.1: let them all in, to reach the queue.
            ("pg_oauth.http_max_connections_per_source", "1000"),
        ],
    );
    let mut app = cluster.connect("postgres");
    let pid: i32 = app
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_oauth http listener'",
            &[],
        )
        .unwrap()
        .get(0);
    let refresh = json(
        &mut app,
        "SELECT oauth.auth_token('client_credentials', 'stuck', $1) -> 'refresh_token'",
        &[&SECRET],
    )
    .as_str()
    .unwrap()
    .to_owned();
    let http = Http::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    // Warm the worker up, then measure.
    post(
        &http,
        &format!("{base}/token"),
        "other-0",
        &[("grant_type", "client_credentials")],
    );
    let before = rss_kb(pid);
    let mut open: postgres::Transaction = app.transaction().unwrap();
    open.query_one(
        "SELECT oauth.auth_token('refresh_token', 'stuck', $1, refresh_token => $2)",
        &[&SECRET, &refresh],
    )
    .unwrap();
    let stuck = present_refresh_token(&http, &base, &refresh);
    std::thread::sleep(Duration::from_millis(500));
    let body = format!("[{}]", vec!["1"; 30_000].join(","));
    let senders: Vec<_> = (0..600)
        .map(|_| {
            let (http, url, body) = (http.clone(), format!("{base}/token"), body.clone());
            std::thread::spawn(move || {
                http.post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let peak = rss_kb(pid);
    open.rollback().unwrap();
    let statuses: Vec<u16> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    stuck.join().unwrap();
    let refused = statuses.iter().filter(|s| **s == 503).count();
    let answered = statuses.iter().filter(|s| **s == 400).count();
    println!(
        "RSS {} MB -> {} MB; {refused} answered 503 at once, {answered} 400 (not an object)",
        before / 1024,
        peak / 1024
    );
    assert!(refused >= 600 - 256, "{refused} refused of 600");
    assert_eq!(refused + answered, 600, "{statuses:?}");
    assert!(
        peak < before + 100 * 1024,
        "the worker grew from {} MB to {} MB",
        before / 1024,
        peak / 1024
    );
}
