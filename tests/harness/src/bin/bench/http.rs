//! `make bench`, HTTP: the token endpoint through PostgREST and through pg_oauth's own
//! listener, against node-oidc-provider in memory and with a PostgreSQL adapter; one load
//! generator (hey -c 16) for all.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use pg_oauth_harness::{repo_root, Cluster, PostgRest};

use super::{capture, Stat};

/// Requests per second, per target and as ratios, round by round.
pub struct Http {
    /// token, node (memory), PostgREST INSERT, PostgREST no-op, listener, node (PostgreSQL)
    http: [Stat; 6],
    /// token / node, token / INSERT, no-op / node, listener / node, listener / node
    /// (PostgreSQL), listener / token
    http_ratio: [Stat; 6],
}

/// The database `app` the listener and PostgREST serve: the PostgREST recipe, the HTTP
/// floors, and the client every HTTP scenario uses.
pub fn setup_app(cluster: &Cluster, root: &Path) {
    cluster
        .connect("postgres")
        .batch_execute("CREATE DATABASE app")
        .unwrap();
    cluster.psql_file("app", &root.join("examples/postgrest/setup.sql"), &[]);
    cluster.psql_file("app", &root.join("bench/http.sql"), &[]);
    cluster
        .connect("app")
        .batch_execute("INSERT INTO oauth.client (id, secret, scope) VALUES ('bench-client', 'benchsecret', '{read}')")
        .unwrap();
}

pub fn run(
    cluster: &Cluster,
    root: &Path,
    rounds: u64,
    http_seconds: u64,
    listener_port: u16,
) -> Http {
    setup_app(cluster, root);
    let rest = PostgRest::start(cluster, "app");
    let node = NodeOidc::start(None);
    cluster
        .connect("postgres")
        .batch_execute("CREATE DATABASE oidc")
        .unwrap();
    let node_pg = NodeOidc::start(Some(&format!(
        "postgresql://postgres@127.0.0.1:{}/oidc",
        cluster.port
    )));
    let form = Some((
        "bench-client:benchsecret",
        "grant_type=client_credentials&scope=read",
    ));
    let token_url = rest.url("/rpc/token");
    let insert_url = rest.url("/rpc/bench_insert");
    let noop_url = rest.url("/rpc/bench_noop");
    let listener_url = format!("http://127.0.0.1:{listener_port}/token");
    // Warm-up: every pooled connection verifies the secret once (argon2), node JITs.
    for url in [
        &token_url,
        &node.token_endpoint,
        &node_pg.token_endpoint,
        &listener_url,
    ] {
        hey(url, form, 3);
    }
    let mut http: [Stat; 6] = Default::default();
    let mut http_ratio: [Stat; 6] = Default::default();
    for round in 1..=rounds {
        let t = hey(&token_url, form, http_seconds);
        let n = hey(&node.token_endpoint, form, http_seconds);
        let i = hey(&insert_url, form, http_seconds);
        let z = hey(&noop_url, None, http_seconds);
        let l = hey(&listener_url, form, http_seconds);
        let d = hey(&node_pg.token_endpoint, form, http_seconds);
        println!(
            "  http round {round}: token {t:.0}, node-oidc-provider {n:.0}, PostgREST INSERT {i:.0}, PostgREST no-op {z:.0}, listener {l:.0}, node-oidc-provider (PostgreSQL) {d:.0} req/s"
        );
        for (stat, v) in http.iter_mut().zip([t, n, i, z, l, d]) {
            stat.push(v);
        }
        for (stat, v) in http_ratio
            .iter_mut()
            .zip([t / n, t / i, z / n, l / n, l / d, l / t])
        {
            stat.push(v);
        }
    }
    // Every token node-oidc-provider answered for was committed, as pg_oauth's are.
    let node_rows: i64 = cluster
        .connect("oidc")
        .query_one("SELECT count(*) FROM oidc_payload", &[])
        .unwrap()
        .get(0);
    println!("  node-oidc-provider (PostgreSQL) committed {node_rows} tokens");
    drop(node_pg);
    drop(node);
    drop(rest);

    Http { http, http_ratio }
}

impl Http {
    /// The HTTP rows of BENCHMARKS.md's table.
    pub fn rows(&self) -> String {
        let (http, http_ratio) = (&self.http, &self.http_ratio);
        let mut table = String::new();
        table.push_str(&format!(
            "| HTTP: POST /rpc/token through PostgREST (hey -c 16) | {} req/s | node-oidc-provider {:.0} req/s | {} | ≥ 2 |\n",
            http[0].show(0),
            http[1].median(),
            http_ratio[0].show(2)
        ));
        table.push_str(&format!(
            "| HTTP: the same, against PostgREST committing a session-shaped INSERT | {} req/s | PostgREST INSERT {:.0} req/s | {} |  |\n",
            http[0].show(0),
            http[2].median(),
            http_ratio[1].show(2)
        ));
        table.push_str(&format!(
            "| HTTP: PostgREST's ceiling, GET of a no-op RPC, against node-oidc-provider | {} req/s | node-oidc-provider {:.0} req/s | {} |  |\n",
            http[3].show(0),
            http[1].median(),
            http_ratio[2].show(2)
        ));
        table.push_str(&format!(
            "| HTTP: POST /token, pg_oauth's own listener, against node-oidc-provider in memory | {} req/s | node-oidc-provider {:.0} req/s | {} | ≥ 1.5 |\n",
            http[4].show(0),
            http[1].median(),
            http_ratio[3].show(2)
        ));
        table.push_str(&format!(
            "| HTTP: the same, against node-oidc-provider committing each token to PostgreSQL | {} req/s | node-oidc-provider (PostgreSQL) {} req/s | {} | ≥ 3 |\n",
            http[4].show(0),
            http[5].show(0),
            http_ratio[4].show(2)
        ));
        table.push_str(&format!(
            "| HTTP: the listener against POST /rpc/token through PostgREST | {} req/s | PostgREST {:.0} req/s | {} |  |\n",
            http[4].show(0),
            http[0].median(),
            http_ratio[5].show(2)
        ));
        table
    }
}

/// One hey run, 16 connections: requests per second (all must be 200). With a body, a
/// form-encoded POST with HTTP Basic credentials `user`; without, a GET.
fn hey(url: &str, post: Option<(&str, &str)>, seconds: u64) -> f64 {
    hey_run(url, post, seconds).rps
}

/// What one hey run measured.
pub struct HeyRun {
    pub rps: f64,
    /// 99th percentile and slowest response, in milliseconds.
    pub p99_ms: f64,
    pub slowest_ms: f64,
}

/// One hey run (see `hey`), with its latencies.
pub fn hey_run(url: &str, post: Option<(&str, &str)>, seconds: u64) -> HeyRun {
    use base64::Engine;
    let mut cmd = Command::new("hey");
    cmd.args(["-z", &format!("{seconds}s"), "-c", "16"]);
    if let Some((user, body)) = post {
        // Debian's hey 0.1.4 drops the header its -a option sets (rakyll/hey#150): set it here.
        let basic = format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user)
        );
        cmd.args([
            "-m",
            "POST",
            "-T",
            "application/x-www-form-urlencoded",
            "-H",
            &basic,
            "-d",
            body,
        ]);
    }
    let out = capture(cmd.arg(url), "hey");
    let statuses: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('[') && l.contains("responses"))
        .collect();
    assert!(
        !statuses.is_empty() && statuses.iter().all(|l| l.starts_with("[200]")),
        "non-200 responses from {url}:\n{out}"
    );
    let seconds_after = |prefix: &str| -> f64 {
        out.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(prefix)
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or_else(|| panic!("no {prefix} in hey output:\n{out}"))
    };
    HeyRun {
        rps: seconds_after("Requests/sec:"),
        p99_ms: seconds_after("99% in") * 1000.0,
        slowest_ms: seconds_after("Slowest:") * 1000.0,
    }
}

struct NodeOidc {
    child: std::process::Child,
    token_endpoint: String,
}

impl NodeOidc {
    /// With `database_url`, tokens are committed to PostgreSQL (bench/node-oidc/pg_adapter.js);
    /// without, the library's in-memory adapter keeps them.
    fn start(database_url: Option<&str>) -> NodeOidc {
        let dir = repo_root().join("bench/node-oidc");
        if !dir.join("node_modules").exists() {
            capture(
                Command::new("npm")
                    .args(["ci", "--silent", "--no-audit", "--no-fund"])
                    .current_dir(&dir),
                "npm ci (oidc-provider)",
            );
        }
        let mut node = Command::new("node");
        if let Some(url) = database_url {
            node.env("DATABASE_URL", url);
        }
        let mut child = node
            .arg("server.js")
            .current_dir(&dir)
            .env("PORT", pg_oauth_harness::free_port().to_string())
            .env("NODE_ENV", "production")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node-oidc-provider");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read node-oidc-provider output");
        let token_endpoint = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("token_endpoint="))
            .unwrap_or_else(|| panic!("unexpected node-oidc-provider output: {line}"))
            .to_owned();
        NodeOidc {
            child,
            token_endpoint,
        }
    }
}

impl Drop for NodeOidc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
