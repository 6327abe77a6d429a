//! `oauth.stats`: pg_oauth's counters match, exactly, what a test did, over SQL and over the
//! listener (a stock HTTP client); every counter the test did not touch is zero;
//! `oauth.stats_reset()` zeroes them; only oauth_admin reads or resets them.

use std::collections::BTreeMap;

use pg_oauth_harness::{free_port, listener_cluster, postgres};
use serde_json::Value;

const SECRET: &str = "a-secret-long-enough-to-be-proven-0123456789";

/// (metric, labels as `k=v,k=v` in name order) → value, for this database's non-zero counters
/// (the latency histogram's depend on the machine's speed).
fn counters(db: &mut postgres::Client) -> BTreeMap<(String, String), i64> {
    db.query(
        "SELECT metric, labels, value FROM oauth.stats
          WHERE database = current_database() AND value <> 0
            AND metric NOT LIKE 'http_request_duration%'",
        &[],
    )
    .unwrap()
    .iter()
    .map(|row| {
        let labels: Value = row.get(1);
        let labels = labels
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
            .collect::<Vec<_>>()
            .join(",");
        ((row.get::<_, String>(0), labels), row.get(2))
    })
    .collect()
}

fn expect(pairs: &[(&str, &str, i64)]) -> BTreeMap<(String, String), i64> {
    pairs
        .iter()
        .map(|(m, l, v)| ((m.to_string(), l.to_string()), *v))
        .collect()
}

fn token(
    db: &mut postgres::Client,
    client: &str,
    secret: &str,
    scope: Option<&str>,
) -> Result<String, String> {
    db.query_one(
        "SELECT oauth.auth_token('client_credentials', $1, $2, $3) ->> 'access_token'",
        &[&client, &secret, &scope],
    )
    .map(|row| row.get(0))
    .map_err(|e| e.to_string())
}

#[test]
fn the_counters_match_what_was_done_over_sql_and_http() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let (cluster, mut db) = listener_cluster(
        "stats",
        port,
        &issuer,
        &[],
        &format!(
            "INSERT INTO oauth.client (id, secret, scope) VALUES ('op', '{SECRET}', '{{read}}');
             INSERT INTO oauth.client (id, secret, scope, token_format) VALUES ('jw', '{SECRET}', '{{read}}', 'jwt');
             INSERT INTO oauth.client (id, secret, scope, token_format, jwt_alg) VALUES ('ed', '{SECRET}', '{{read}}', 'jwt', 'EdDSA');
             CREATE ROLE watcher LOGIN; GRANT oauth_admin TO watcher;
             CREATE ROLE app LOGIN; GRANT oauth_app TO app;"
        ),
    );
    cluster.wait_for_listener(&format!("127.0.0.1:{port}"));
    // Whatever setting up counted (the listener's own start) goes.
    db.batch_execute("SELECT oauth.stats_reset()").unwrap();
    assert_eq!(counters(&mut db), BTreeMap::new());

    let opaque: Vec<String> = (0..3)
        .map(|_| token(&mut db, "op", SECRET, None).unwrap())
        .collect();
    let jwt = token(&mut db, "jw", SECRET, None).unwrap();
    token(&mut db, "jw", SECRET, Some("read")).unwrap();
    token(&mut db, "ed", SECRET, None).unwrap();
    assert!(token(&mut db, "op", "a-wrong-secret", None).is_err());
    assert!(token(&mut db, "nobody", SECRET, None).is_err());
    assert!(token(&mut db, "op", SECRET, Some("write")).is_err());
    for t in &opaque[..2] {
        db.query_one("SELECT oauth.auth_verify($1)", &[t]).unwrap();
    }
    assert!(db
        .query_one("SELECT oauth.auth_verify('garbage')", &[])
        .is_err());
    let revoked: bool = db
        .query_one("SELECT oauth.auth_revoke($1)", &[&opaque[2]])
        .unwrap()
        .get(0);
    assert!(revoked);
    assert!(db
        .query_one("SELECT oauth.auth_verify($1)", &[&opaque[2]])
        .is_err());
    db.query_one("SELECT oauth.auth_introspect($1)", &[&jwt])
        .unwrap();

    // Over the listener: two tokens, a wrong secret, a revocation and an introspection by
    // their client.
    let http = reqwest::blocking::Client::new();
    let post = |path: &str, form: &[(&str, &str)], secret: &str| {
        http.post(format!("{issuer}/{path}"))
            .basic_auth("op", Some(secret))
            .form(form)
            .send()
            .unwrap()
    };
    let mut http_tokens = Vec::new();
    for _ in 0..2 {
        let reply = post("token", &[("grant_type", "client_credentials")], SECRET);
        assert_eq!(reply.status(), 200);
        let body: Value = reply.json().unwrap();
        http_tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    let refused = post(
        "token",
        &[("grant_type", "client_credentials")],
        "a-wrong-secret",
    );
    assert_eq!(refused.status(), 401);
    assert_eq!(
        post("revoke", &[("token", &http_tokens[0])], SECRET).status(),
        200
    );
    assert_eq!(
        post("introspect", &[("token", &http_tokens[1])], SECRET).status(),
        200
    );
    let refused = post(
        "introspect",
        &[("token", &http_tokens[1])],
        "a-wrong-secret",
    );
    assert_eq!(refused.status(), 401);

    // Every failing reading of a secret costs two argon2 verifications, known client or not
    // (authn/credentials.rs); the right secrets were proven when they were written.
    assert_eq!(
        counters(&mut db),
        expect(&[
            ("tokens_issued", "format=opaque,grant=client_credentials", 5),
            ("tokens_issued", "format=jwt,grant=client_credentials", 3),
            ("tokens_signed", "alg=ES256", 2),
            ("tokens_signed", "alg=EdDSA", 1),
            ("refusals", "endpoint=token,error=invalid_client", 3),
            ("refusals", "endpoint=token,error=invalid_scope", 1),
            ("refusals", "endpoint=verify,error=invalid_token", 2),
            ("refusals", "endpoint=introspect,error=invalid_client", 1),
            ("client_authentication_failures", "reason=wrong_secret", 3),
            ("client_authentication_failures", "reason=unknown_client", 1),
            ("argon2", "event=verifications", 8),
            ("verifications", "result=accepted", 2),
            ("verifications", "result=refused", 2),
            ("revocations", "", 2),
            ("introspections", "", 2),
            ("http_requests", "path=token,status=2xx", 2),
            ("http_requests", "path=token,status=4xx", 1),
            ("http_requests", "path=revoke,status=2xx", 1),
            ("http_requests", "path=introspect,status=2xx", 1),
            ("http_requests", "path=introspect,status=4xx", 1),
        ])
    );

    metrics(&mut db, &issuer);

    // Only oauth_admin reads and resets them.
    let mut app = cluster.connect_as("postgres", "app");
    assert!(app.query("SELECT * FROM oauth.stats", &[]).is_err());
    assert!(app.batch_execute("SELECT oauth.stats_reset()").is_err());
    let mut watcher = cluster.connect_as("postgres", "watcher");
    assert_eq!(counters(&mut watcher), counters(&mut db));
    watcher.batch_execute("SELECT oauth.stats_reset()").unwrap();
    assert_eq!(counters(&mut watcher), BTreeMap::new());
    // Every counter exists, zero or not, with its description.
    let all: i64 = db
        .query_one(
            "SELECT count(*) FROM oauth.stats WHERE database = current_database() AND description <> ''",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(all, 230);
}

fn allow_metrics(db: &mut postgres::Client, allowed: &str) {
    db.batch_execute(&format!(
        "ALTER SYSTEM SET pg_oauth.http_metrics_allow = '{allowed}'"
    ))
    .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
}

/// GET /metrics until it answers `status` (a reload reaches the listener's workers soon,
/// not at once).
fn metrics_status(issuer: &str, status: u16) -> reqwest::blocking::Response {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = reqwest::blocking::get(format!("{issuer}/metrics")).unwrap();
        if reply.status() == status || std::time::Instant::now() > deadline {
            assert_eq!(reply.status(), status);
            return reply;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Off by default (404), refused to an address not listed (403), and to a listed one the same
/// counters as oauth.stats, in a document Prometheus' own parser reads.
fn metrics(db: &mut postgres::Client, issuer: &str) {
    metrics_status(issuer, 404);
    allow_metrics(db, "127.0.0.2, 10.0.0.0/8");
    metrics_status(issuer, 403);
    allow_metrics(db, "127.0.0.0/8");
    let reply = metrics_status(issuer, 200);
    assert!(reply.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = reply.text().unwrap();
    let mut parse = std::process::Command::new("python3")
        .arg(pg_oauth_harness::repo_root().join("tests/clients/prometheus/parse.py"))
        .env(
            "PYTHONPATH",
            pg_oauth_harness::repo_root().join(".tools/python"),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    parse
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = parse.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser refused /metrics:\n{text}");
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed["families"]["pg_oauth_tokens_issued"], "counter");
    assert_eq!(
        parsed["families"]["pg_oauth_http_request_duration_seconds"],
        "histogram"
    );
    let sample = |name: &str, labels: &[(&str, &str)]| -> f64 {
        parsed["samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| {
                s[0] == name
                    && s[1]["database"] == "postgres"
                    && labels.iter().all(|(k, v)| s[1][*k] == *v)
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))[2]
            .as_f64()
            .unwrap()
    };
    // Every counter oauth.stats shows is there with the same value.
    let stats = counters(db);
    for ((metric, labels), value) in &stats {
        if metric.starts_with("http_") {
            continue;
        }
        let pairs: Vec<(&str, &str)> = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| l.split_once('=').unwrap())
            .collect();
        assert_eq!(
            sample(&format!("pg_oauth_{metric}_total"), &pairs),
            *value as f64,
            "{metric} {labels}"
        );
    }
    // The requests made over HTTP above: 2 tokens and a wrong secret, a revocation, an
    // introspection and a wrong secret there.
    let requests = |path: &str, status: &str| {
        sample(
            "pg_oauth_http_requests_total",
            &[("path", path), ("status", status)],
        )
    };
    assert_eq!(requests("token", "2xx"), 2.0);
    assert_eq!(requests("token", "4xx"), 1.0);
    assert_eq!(requests("revoke", "2xx"), 1.0);
    assert_eq!(requests("introspect", "2xx"), 1.0);
    assert_eq!(requests("introspect", "4xx"), 1.0);
    assert!(requests("metrics", "4xx") >= 2.0);
    let count = sample(
        "pg_oauth_http_request_duration_seconds_count",
        &[("path", "token")],
    );
    assert_eq!(count, 3.0);
    assert_eq!(
        sample(
            "pg_oauth_http_request_duration_seconds_bucket",
            &[("path", "token"), ("le", "+Inf")]
        ),
        3.0
    );
    assert!(
        sample(
            "pg_oauth_http_request_duration_seconds_sum",
            &[("path", "token")]
        ) > 0.0
    );
}
