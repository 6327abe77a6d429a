//! `make bench` with PostgreSQL 18: logging in with a pg_oauth token (SASL OAUTHBEARER, pg_oauth
//! as the validator) against SCRAM-SHA-256 for the same role, by the same C program over
//! libpq (tests/clients/libpq/oauth_login.c, which connects and disconnects in a loop); and
//! how long after a revoking commit the token is refused.

use std::process::Command;
use std::time::Instant;

use pg_oauth_harness::{pg_bindir, Cluster};

use super::Stat;

const ISSUER: &str = "https://issuer.bench";
const AUDIENCE: &str = "postgresql://db.bench";
const CONNECTIONS: u32 = 300;

pub struct Login {
    /// Mean connection time (µs): token, SCRAM; and their ratio, round by round.
    pub token_us: Stat,
    pub scram_us: Stat,
    pub ratio: Stat,
    /// From the revoking commit's return to the refused login's answer (ms).
    pub revoked_ms: Stat,
}

fn cluster() -> Cluster {
    let mut cluster = Cluster::init(
        &pg_bindir(),
        &[],
        "bench-login",
        &[
            ("shared_preload_libraries", "'pg_oauth'"),
            ("oauth_validator_libraries", "'pg_oauth'"),
            ("pg_oauth.login_databases", "'postgres'"),
            ("pg_oauth.login_audience", &format!("'{AUDIENCE}'")),
            ("pg_oauth.issuer", &format!("'{ISSUER}'")),
            ("password_encryption", "'scram-sha-256'"),
        ],
    );
    std::fs::write(
        cluster.data_dir().join("pg_hba.conf"),
        format!(
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\n\
             host scram all 127.0.0.1/32 scram-sha-256\n\
             host all all 127.0.0.1/32 oauth issuer=\"{ISSUER}\" scope=\"db:login\" delegate_ident_mapping=1\n"
        ),
    )
    .unwrap();
    cluster.start_server();
    let mut db = cluster.connect("postgres");
    db.batch_execute("CREATE DATABASE scram").unwrap();
    db.batch_execute(&format!(
            "CREATE EXTENSION pg_oauth;
             CREATE ROLE bench_login LOGIN PASSWORD 'a-bench-password-0123456789';
             INSERT INTO oauth.client (id, secret, token_format, scope, audience)
             VALUES ('bench-login', 'benchsecret-0123456789-0123456789', 'jwt', '{{db:login}}', '{{{AUDIENCE}}}');
             INSERT INTO oauth.policy VALUES ('bench-login', 'bench_login');"
        ))
        .unwrap();
    cluster
}

fn token(cluster: &Cluster) -> String {
    cluster
        .connect("postgres")
        .query_one(
            "SELECT oauth.auth_token('client_credentials', 'bench-login', 'benchsecret-0123456789-0123456789', 'db:login', $1) ->> 'access_token'",
            &[&AUDIENCE],
        )
        .unwrap()
        .get(0)
}

fn oauth_conninfo(cluster: &Cluster) -> String {
    format!(
        "host=127.0.0.1 port={} dbname=postgres user=bench_login oauth_client_id=bench-login \
         oauth_issuer={ISSUER}/.well-known/openid-configuration",
        cluster.port
    )
}

/// Mean µs per connection over CONNECTIONS connections.
fn connect_loop(client: &std::path::Path, conninfo: &str, token: &str) -> f64 {
    let out = Command::new(client)
        .arg(conninfo)
        .arg(CONNECTIONS.to_string())
        .env("PG_OAUTH_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

pub fn run(rounds: u64) -> Login {
    let cluster = cluster();
    let client = pg_oauth_harness::libpq_oauth_client(&cluster.dir);
    // The login worker builds the state once the extension exists.
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while cluster
        .connect("postgres")
        .query("SELECT 1 FROM oauth.login_status()", &[])
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "no login state");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let token = token(&cluster);
    let scram = format!(
        "host=127.0.0.1 port={} dbname=scram user=bench_login password=a-bench-password-0123456789",
        cluster.port
    );
    let mut result = Login {
        token_us: Stat::default(),
        scram_us: Stat::default(),
        ratio: Stat::default(),
        revoked_ms: Stat::default(),
    };
    // Warm-up, then interleaved rounds.
    connect_loop(&client, &oauth_conninfo(&cluster), &token);
    connect_loop(&client, &scram, "");
    for round in 1..=rounds {
        let t = connect_loop(&client, &oauth_conninfo(&cluster), &token);
        let s = connect_loop(&client, &scram, "");
        println!("  login round {round}: token {t:.0} µs, SCRAM-SHA-256 {s:.0} µs per connection");
        result.token_us.push(t);
        result.scram_us.push(s);
        result.ratio.push(t / s);
    }
    let mut db = cluster.connect("postgres");
    for _ in 0..20 {
        let victim = self::token(&cluster);
        let _: bool = db
            .query_one("SELECT oauth.auth_revoke($1)", &[&victim])
            .unwrap()
            .get(0);
        let committed = Instant::now();
        let refused = Command::new(&client)
            .arg(oauth_conninfo(&cluster))
            .env("PG_OAUTH_TOKEN", &victim)
            .output()
            .unwrap();
        assert!(!refused.status.success(), "a revoked token logged in");
        result
            .revoked_ms
            .push(committed.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "  login: revoked token refused {} ms after the revoking commit",
        result.revoked_ms.show(1)
    );
    result
}

impl Login {
    /// Rows of BENCHMARKS.md's table.
    pub fn rows(&self) -> String {
        format!(
            "| Login (PostgreSQL 18): a connection with a pg_oauth token (OAUTHBEARER, libpq's hook, {CONNECTIONS} in a row) | {} µs | SCRAM-SHA-256, same role: {:.0} µs | {} |  |\n\
             | Login (PostgreSQL 18): revoking commit → the token's next login refused (a new process connecting) | {} ms | | | ≤ 100 ms |\n",
            self.token_us.show(0),
            self.scram_us.median(),
            self.ratio.show(2),
            self.revoked_ms.show(1)
        )
    }
}
