//! `make bench`: issuance, verification, cold-secret and HTTP benchmarks against a
//! throwaway cluster (fsync on) with the release build, each compared with a floor measured
//! in the same run. Prints one table and writes it, with the machine and method, to
//! BENCHMARKS.md. Rounds and durations: BENCH_ROUNDS (3), BENCH_SECONDS (20),
//! BENCH_HTTP_SECONDS (10), BENCH_SUSTAINED_MINUTES (10). BENCH_ONLY=sustained (or dpop, or
//! login: PostgreSQL 18 logins with tokens, PG_VERSION=18, or issuance) runs that scenario
//! alone and writes nothing.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

mod dpop;
mod flood;
mod http;
mod login;
mod sustained;

use flood::{flood, Flood};
use pg_oauth_harness::{pg_bindir, postgres, repo_root, Cluster};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Samples of one measurement; reported as median (min–max).
#[derive(Default, Clone)]
struct Stat(Vec<f64>);

impl Stat {
    fn push(&mut self, v: f64) {
        self.0.push(v);
    }
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    }
    fn median(&self) -> f64 {
        let v = self.sorted();
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    fn show(&self, decimals: usize) -> String {
        let v = self.sorted();
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median(),
            v[0],
            v[v.len() - 1],
            d = decimals
        )
    }
}

fn capture(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One pgbench run: transactions per second.
fn pgbench(cluster: &Cluster, script: &Path, seconds: u64) -> f64 {
    pgbench_at(cluster.port, script, seconds)
}

/// pgbench against the cluster listening on `port` (from another thread).
fn pgbench_at(port: u16, script: &Path, seconds: u64) -> f64 {
    let out = capture(
        Command::new(pg_bindir().join("pgbench"))
            .args([
                "-n",
                "-c",
                "4",
                "-j",
                "2",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .arg("-p")
            .arg(port.to_string())
            .arg("-T")
            .arg(seconds.to_string())
            .arg("-f")
            .arg(script)
            .arg("bench"),
        "pgbench",
    );
    if let Some(failed) = out
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
    {
        assert!(failed.starts_with('0'), "pgbench reported failures: {out}");
    }
    out.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_else(|| panic!("no tps in pgbench output:\n{out}"))
}

/// Seconds to run `sql` (one row) in `db`.
fn time_query(db: &mut postgres::Client, sql: &str) -> f64 {
    let start = Instant::now();
    db.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    start.elapsed().as_secs_f64()
}

const VERIFY_FORMATS: [(&str, &str); 5] = [
    ("opaque", "bench-opaque"),
    ("hs256", "bench-hs256"),
    ("es256", "bench-es256"),
    ("eddsa", "bench-eddsa"),
    ("rs256", "bench-rs256"),
];

fn version(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

fn machine() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    let oidc_version = std::fs::read_to_string(repo_root().join("bench/node-oidc/package.json"))
        .ok()
        .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
        .and_then(|p| {
            p["dependencies"]["oidc-provider"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "?".into());
    vec![
        (
            "CPU".into(),
            format!(
                "{cpu}, {} cores",
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(0)
            ),
        ),
        ("Memory".into(), mem_gib),
        ("Kernel".into(), version("uname", &["-sr"])),
        (
            "Transparent huge pages".into(),
            std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "?".into()),
        ),
        (
            "PostgreSQL".into(),
            version(
                pg_bindir().join("postgres").to_str().unwrap(),
                &["--version"],
            ),
        ),
        (
            "PostgREST".into(),
            version(
                pg_oauth_harness::postgrest_binary().to_str().unwrap(),
                &["--version"],
            ),
        ),
        (
            "Node.js / oidc-provider".into(),
            format!("{} / {oidc_version}", version("node", &["--version"])),
        ),
    ]
}

fn main() {
    let started = Instant::now();
    let rounds = env_num("BENCH_ROUNDS", 3);
    let seconds = env_num("BENCH_SECONDS", 20);
    let http_seconds = env_num("BENCH_HTTP_SECONDS", 10);
    let root = repo_root();

    println!("pg_oauth benchmarks: {rounds} rounds, {seconds} s per issuance run, {http_seconds} s per HTTP run");
    // pg_oauth's own listener serves the `app` database made below (its workers retry
    // until it exists); idle, they wait on their latches.
    let listener_port = pg_oauth_harness::free_port();
    let listen = format!("'127.0.0.1:{listener_port}'");
    let cluster = Cluster::start(
        "bench",
        &[
            ("shared_buffers", "'256MB'"),
            ("synchronous_commit", "on"),
            ("shared_preload_libraries", "'pg_oauth'"),
            ("pg_oauth.http_listen", &listen),
            ("pg_oauth.http_database", "'app'"),
        ],
    );
    let sustained_minutes = env_num("BENCH_SUSTAINED_MINUTES", 10);
    if std::env::var("BENCH_ONLY").as_deref() == Ok("dpop") {
        http::setup_app(&cluster, &root);
        let result = dpop::run(&cluster, rounds, http_seconds);
        println!("\n{}", result.rows());
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("login") {
        assert_eq!(
            pg_oauth_harness::pg_version(),
            "18",
            "logins with tokens need PG_VERSION=18"
        );
        let result = login::run(rounds);
        println!("\n{}", result.rows());
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("sustained") {
        http::setup_app(&cluster, &root);
        let result = sustained::run(&cluster, listener_port, sustained_minutes);
        println!("\n{}\n{}", result.rows(), result.minutes());
        return;
    }
    cluster
        .connect("postgres")
        .batch_execute("CREATE DATABASE bench")
        .unwrap();
    let mut db = cluster.connect("bench");
    db.batch_execute("ALTER DATABASE bench SET pg_oauth.issuer = 'https://issuer.bench'")
        .unwrap();
    drop(db);
    cluster.psql_file("bench", &root.join("bench/setup.sql"), &[]);
    let mut db = cluster.connect("bench");

    // 1. Issuance: pgbench, 4 clients, interleaved rounds so drift hits every scenario.
    let scenarios = ["floor", "opaque", "es256", "eddsa", "rs256", "refresh"];
    let mut tps: Vec<Stat> = vec![Stat::default(); scenarios.len()];
    for round in 1..=rounds {
        for (i, name) in scenarios.iter().enumerate() {
            if *name == "refresh" {
                db.batch_execute(
                    "TRUNCATE bench.refresh_chain;
                     INSERT INTO bench.refresh_chain
                     SELECT i, oauth.auth_token('client_credentials', 'bench-refresh', 'benchsecret') ->> 'refresh_token'
                       FROM generate_series(0, 3) AS i;",
                )
                .unwrap();
            }
            let t = pgbench(
                &cluster,
                &root.join(format!("bench/issuance/{name}.sql")),
                seconds,
            );
            println!("  issuance round {round}: {name:8} {t:8.0} tx/s");
            tps[i].push(t);
        }
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("issuance") {
        for (i, name) in scenarios.iter().enumerate() {
            println!("  issuance {name:8} {} tx/s", tps[i].show(0));
        }
        return;
    }
    let issuance_ratio: Vec<Stat> = (0..scenarios.len())
        .map(|i| {
            Stat(
                (0..tps[i].0.len())
                    .map(|r| tps[i].0[r] / tps[0].0[r])
                    .collect(),
            )
        })
        .collect();

    // 2. Verification: count(auth_verify(t)) over 50k stored tokens per format, against
    //    count(hmac(t, key, 'sha256')) over the same rows.
    const TOKENS: i64 = 50_000;
    for (fmt, client) in VERIFY_FORMATS {
        db.batch_execute(&format!(
            "CREATE TABLE bench.tokens_{fmt} (t text NOT NULL)"
        ))
        .unwrap();
        // Two connections share the work (RS256 signing alone is ~1 ms per token).
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    cluster
                        .connect("bench")
                        .batch_execute(&format!(
                            "INSERT INTO bench.tokens_{fmt}
                             SELECT oauth.auth_token('client_credentials', '{client}', 'benchsecret', 'read') ->> 'access_token'
                               FROM generate_series(1, {})",
                            TOKENS / 2
                        ))
                        .unwrap();
                });
            }
        });
        db.batch_execute(&format!("VACUUM ANALYZE bench.tokens_{fmt}"))
            .unwrap();
        println!("  stored {TOKENS} {fmt} tokens");
    }
    db.batch_execute("VACUUM ANALYZE oauth.session").unwrap();
    let mut verify: Vec<(String, Stat, Stat)> = Vec::new(); // (label, µs/token, ratio)
    let per_token = |secs: f64| secs * 1e6 / TOKENS as f64;
    let mut rows: Vec<(String, String, bool)> = Vec::new();
    for (fmt, _) in VERIFY_FORMATS {
        rows.push((format!("{fmt}, with revocation check"), fmt.into(), true));
        if fmt != "opaque" {
            rows.push((format!("{fmt}, signature only"), fmt.into(), false));
        }
    }
    let mut floor_us: Vec<Stat> = vec![Stat::default(); VERIFY_FORMATS.len()];
    let mut samples: Vec<(Stat, Stat)> = vec![(Stat::default(), Stat::default()); rows.len()];
    for _ in 0..rounds {
        for (f, (fmt, _)) in VERIFY_FORMATS.iter().enumerate() {
            let floor = per_token(time_query(
                &mut db,
                &format!(
                    "SELECT count(hmac(t, 'benchmark-key', 'sha256')) FROM bench.tokens_{fmt}"
                ),
            ));
            floor_us[f].push(floor);
            for (r, (_, row_fmt, revocation)) in rows.iter().enumerate() {
                if row_fmt != fmt {
                    continue;
                }
                db.batch_execute(&format!(
                    "SET pg_oauth.verify_revocation = {}",
                    if *revocation { "on" } else { "off" }
                ))
                .unwrap();
                let us = per_token(time_query(
                    &mut db,
                    &format!("SELECT count(oauth.auth_verify(t)) FROM bench.tokens_{fmt}"),
                ));
                samples[r].0.push(us);
                samples[r].1.push(us / floor);
            }
        }
    }
    db.batch_execute("RESET pg_oauth.verify_revocation")
        .unwrap();
    for (r, (label, _, _)) in rows.iter().enumerate() {
        verify.push((label.clone(), samples[r].0.clone(), samples[r].1.clone()));
        println!("  verify {label}: {} µs/token", samples[r].0.show(2));
    }

    // 3. Cold secret: the first auth_token in a fresh connection. Each connection's client
    //    is new and its secret imported as a hash (a copy of bench-opaque's), so no backend
    //    has verified it and no proof exists: an argon2id verification. Then the same for
    //    bench-opaque, whose secret other backends have proven (shared memory, no argon2).
    let mut cold = Stat::default();
    let mut proven = Stat::default();
    let mut warm = Stat::default();
    for i in 0..15 {
        let id = format!("bench-cold-{i}");
        db.execute(
            "INSERT INTO oauth.client (id, secret, scope)
               SELECT $1, secret, scope FROM oauth.client WHERE id = 'bench-opaque'",
            &[&id],
        )
        .unwrap();
        let mut fresh = cluster.connect("bench");
        let sql =
            format!("SELECT oauth.auth_token('client_credentials', '{id}', 'benchsecret', 'read')");
        cold.push(time_query(&mut fresh, &sql) * 1e3);
        warm.push(time_query(&mut fresh, &sql) * 1e3);
        let mut fresh = cluster.connect("bench");
        let sql =
            "SELECT oauth.auth_token('client_credentials', 'bench-opaque', 'benchsecret', 'read')";
        proven.push(time_query(&mut fresh, sql) * 1e3);
    }
    println!(
        "  cold secret: {} ms, proven elsewhere {} ms (warm {} ms)",
        cold.show(1),
        proven.show(1),
        warm.show(2)
    );

    // 4. Flood: a warm client's issuance alone and beside 4 connections guessing random
    //    unknown client ids (bench/flood.sql) from the same source, round by round: with the
    //    default per-source throttle, and with it off (as if every guess came from its own
    //    address: only the argon2 bound holds); the most argon2 slots held at once
    //    (pg_locks), and how many audit rows each flood wrote.
    let flood_client = root.join("bench/flood_client.sql");
    let mut floods: Vec<Flood> = Vec::new();
    for (label, limit) in [
        ("per-source throttle on (100)", "100"),
        ("per-source throttle off", "0"),
    ] {
        db.batch_execute(&format!(
            "ALTER DATABASE bench SET pg_oauth.source_failure_limit = {limit}"
        ))
        .unwrap();
        floods.push(flood(
            &cluster,
            &flood_client,
            &root.join("bench/flood.sql"),
            rounds,
            http_seconds,
            label,
        ));
    }
    db.batch_execute("ALTER DATABASE bench RESET pg_oauth.source_failure_limit")
        .unwrap();
    // The bound in force: the setting, or its default of half the CPUs.
    let argon2_bound = match db
        .query_one(
            "SELECT current_setting('pg_oauth.argon2_concurrency')::int",
            &[],
        )
        .unwrap()
        .get::<_, i32>(0)
    {
        0 => format!(
            "0 (half the CPUs: {})",
            std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
        ),
        n => n.to_string(),
    };

    // 5. HTTP: the token endpoint through PostgREST and the listener vs node-oidc-provider.
    let http = http::run(&cluster, &root, rounds, http_seconds, listener_port);

    // 6. DPoP through PostgREST, against bearer tokens.
    let dpop = dpop::run(&cluster, rounds, http_seconds);

    // 7. Sustained issuance through the listener with the purge running.
    let sustained = sustained::run(&cluster, listener_port, sustained_minutes);
    let logins = (pg_oauth_harness::pg_version() == "18").then(|| login::run(rounds));

    // The table.
    let mut table = String::new();
    table.push_str("| benchmark | result, median (min–max) | floor / peer, median | ratio, median (min–max) | target |\n");
    table.push_str("| --- | --- | --- | --- | --- |\n");
    let labels = [
        "INSERT of a session-shaped row (the floor)",
        "auth_token, opaque",
        "auth_token, JWT ES256",
        "auth_token, JWT EdDSA",
        "auth_token, JWT RS256",
        "auth_token, refresh grant",
    ];
    let targets = ["", "≥ 0.8", "≥ 0.8", "≥ 0.8", "", ""];
    for i in 0..scenarios.len() {
        table.push_str(&format!(
            "| Issuance: {} | {} tx/s | {:.0} tx/s | {} | {} |\n",
            labels[i],
            tps[i].show(0),
            tps[0].median(),
            issuance_ratio[i].show(2),
            targets[i]
        ));
    }
    for (label, us, ratio) in &verify {
        let fmt = label.split(',').next().unwrap();
        let f = VERIFY_FORMATS
            .iter()
            .position(|(name, _)| *name == fmt)
            .unwrap();
        let target = match label.as_str() {
            "hs256, signature only" => "≤ 3",
            "hs256, with revocation check" => "≤ 6",
            _ => "",
        };
        table.push_str(&format!(
            "| Verification: {label} | {} µs/token | {:.2} µs/token (HMAC) | {} | {target} |\n",
            us.show(2),
            floor_us[f].median(),
            ratio.show(2)
        ));
    }
    table.push_str(&format!(
        "| Cold secret: first auth_token in a fresh connection (argon2id) | {} ms | warm call {:.2} ms | | ≤ 50 ms |\n",
        cold.show(1),
        warm.median()
    ));
    table.push_str(&format!(
        "| Proven secret: first auth_token in a fresh connection, secret verified by another backend | {} ms | warm call {:.2} ms | | |\n",
        proven.show(1),
        warm.median()
    ));
    for f in &floods {
        table.push_str(&format!(
            "| Flood, {}: a warm client's issuance beside 4 connections guessing unknown ids | {} tx/s | alone {:.0} tx/s | {} | ≥ 0.5 |\n",
            f.label,
            f.flooded.show(0),
            f.alone.median(),
            f.ratio.show(2)
        ));
        table.push_str(&format!(
            "| Flood, {}: most argon2 verifications at once (pg_locks, sampled); audit rows written | {} at once; {} rows | argon2_concurrency {argon2_bound} | | at the bound |\n",
            f.label, f.peak_slots, f.rows
        ));
    }
    table.push_str(&http.rows());
    table.push_str(&dpop.rows());
    table.push_str(&sustained.rows());
    match &logins {
        Some(logins) => table.push_str(&logins.rows()),
        None => table.push_str(
            "| Login (PostgreSQL 18) with a pg_oauth token | not run: `make bench PG_VERSION=18` | | | |\n",
        ),
    }
    println!("\n{table}\n{}", sustained.minutes());

    let machine: String = machine()
        .into_iter()
        .map(|(k, v)| format!("| {k} | {v} |\n"))
        .collect();
    let doc = format!(
        "# pg_oauth benchmarks\n\n\
         Written by `make bench` ({rounds} rounds, {secs:.0} minutes in all). Ratios are taken in the\n\
         same run, round by round, because these machines are noisy; targets are those of the\n\
         performance and operations issues.\n\n{table}\n\
         ## Sustained issuance, minute by minute\n\n{minutes}\n\
         ## Machine\n\n| | |\n| --- | --- |\n{machine}\n\
         ## Method\n\n\
         - A throwaway cluster (`initdb`, defaults plus `shared_buffers = 256MB`; `fsync` and\n  `synchronous_commit` on), the release build of the extension.\n\
         - **Issuance**: `pgbench -n -c 4 -j 2 -T {seconds}` per scenario, scripts in `bench/issuance/`;\n  scenarios interleaved in each round. The floor inserts into `bench.floor_session`, created\n  `LIKE oauth.session_p00 INCLUDING ALL` (the partition tokens go into). Every auth_token call authenticates its client with its\n  secret (warm: verified from the per-backend cache after the first call) and commits a session.\n  The refresh scenario exchanges each client's refresh token for the next.\n\
         - **Verification**: `SELECT count(oauth.auth_verify(t))` over {TOKENS} tokens per format,\n  with `pg_oauth.verify_revocation` on and off, against\n  `SELECT count(hmac(t, 'benchmark-key', 'sha256'))` (pgcrypto) over the same rows.\n\
         - **Cold secret**: 15 fresh connections, each timing its first auth_token for a client\n  of its own whose secret was imported as a hash, so nothing has verified it (argon2id,\n  m = 19456 KiB, t = 2, p = 1), and then a warm one; and 15 more, each timing its first\n  auth_token for a client whose secret other backends have verified (a proof in shared\n  memory, no argon2). argon2's working memory is 2 MiB-aligned\n  and advised for transparent huge pages (used when the setting above is `madvise` or `always`).\n\
         - **Flood**: `bench/flood_client.sql` (4 connections; a client with a 43-character secret)\n  alone for {http_seconds} s, then again while another pgbench (4 connections, same source)\n  runs `bench/flood.sql`: `auth_token` with a random unknown client id, error caught. Once\n  with the default per-source throttle, once with it off. The peak of argon2 slots held is\n  sampled from `pg_locks` every 10 ms (an argon2 verification holds its slot about 17 ms); audit rows are `auth_failure` + `client_lockout` + `source_throttle` rows.\n\
         - **HTTP**: PostgREST {pgrst} configured by `examples/postgrest/`, and node-oidc-provider\n  (`bench/node-oidc/`, in-memory adapter, client credentials, HTTP Basic) on the same machine;\n  `hey -z {http_seconds}s -c 16 -m POST` with HTTP Basic and `grant_type=client_credentials&scope=read`,\n  after a 3 s warm-up of each; every response must be 200. Both issue opaque tokens. pg_oauth\n  commits a session row per token (durable); node-oidc-provider's in-memory adapter keeps\n  recent tokens in a capped in-process cache and writes nothing. The PostgREST floors\n  (`bench/http.sql`) are the same POST to a function that only commits a session-shaped row,\n  and a GET of a function that does nothing: what PostgREST itself costs here.\n\
         - **Listener**: pg_oauth's own HTTP listener (`pg_oauth.http_listen`, the default 2 workers)\n  on the same cluster and database as PostgREST, the same client, the same hey command at\n  `/token`. node-oidc-provider a second time with `bench/node-oidc/pg_adapter.js`: every token\n  committed to a database of the same cluster (INSERT ... ON CONFLICT, pool of 16, the same\n  `synchronous_commit = on`) before it answers, the durability pg_oauth gives.\n\
         - **DPoP**: the same PostgREST, `tests/clients/openid-client/load.mjs` (16 requests in\n  flight, {http_seconds} s, every response must be 200) for both halves of each ratio: client\n  credentials at `/rpc/token` for a bearer JWT client and, with a fresh ES256 proof per request\n  (panva's jose), for a client with `dpop_bound_access_tokens`; and GET of an RPC only the\n  tokens' role may call (`current_user`), with the bearer JWT (PostgREST verifies it, with its\n  JWT cache off as configured, and the pre-request hook checks its session) and with the\n  DPoP-bound JWT in the `DPoP` scheme and a fresh proof (PostgREST sees an anonymous request;\n  the hook verifies token and proof, spends the proof, and sets the role). The generator\n  signs on the same 2 CPUs.\n\
         - **Sustained**: the listener under `hey -z 60s -c 16`, minute after minute for\n  {sustained_minutes} minutes, for a client whose tokens live 60 s, with\n  `pg_oauth.session_partition_interval = 20` and `oauth.purge_expired(50000, interval '0')`\n  called every 10 s from another connection (`audit_min_retention = 0`). After each minute,\n  `count(*)` and the size of `oauth.session`'s partitions. A sampler reads `pg_locks` every\n  5 ms and keeps the longest `clock_timestamp() - waitstart` of a listener worker waiting for a lock.\n",
        minutes = sustained.minutes(),
        secs = started.elapsed().as_secs_f64() / 60.0,
        pgrst = "12.0.2",
    );
    std::fs::write(root.join("BENCHMARKS.md"), doc).expect("write BENCHMARKS.md");
    println!(
        "Wrote BENCHMARKS.md ({:.1} min).",
        started.elapsed().as_secs_f64() / 60.0
    );
}
