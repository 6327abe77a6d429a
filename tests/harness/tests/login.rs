//! PostgreSQL 18 logins with pg_oauth tokens (SASL OAUTHBEARER, pg_oauth as the server's
//! validator), driven by a C program against the server's own libpq 18 and its token hook
//! (tests/clients/libpq/oauth_login.c): a service gets a token with the client-credentials
//! grant and logs in as its client's policy role. Every refusal the issue lists, each with its
//! reason in the server log and no token text there; revocation in force at the next login
//! after the commit; the state rebuilt after a restart; logins during key rotation and
//! revocation; a flood of garbage tokens. On 15 and 16 the feature is absent.

#[path = "../../../src/pg/validator_abi.rs"]
mod abi;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pg_oauth_harness::{pg_bindir, pg_config, pg_version, postgres, Cluster, Rng};

const ISSUER: &str = "https://issuer.pg-oauth.test";
const AUDIENCE: &str = "postgresql://db.pg-oauth.test";
const SECRET: &str = "a-secret-long-enough-for-the-proofs-0123456789";

const HBA: &str = r#"
local all all trust
host all postgres 127.0.0.1/32 trust
host mapped all 127.0.0.1/32 oauth issuer="https://issuer.pg-oauth.test" scope="db:login" map=services
host elsewhere all 127.0.0.1/32 oauth issuer="https://other-issuer.pg-oauth.test" scope="db:login" delegate_ident_mapping=1
host all all 127.0.0.1/32 oauth issuer="https://issuer.pg-oauth.test" scope="db:login" delegate_ident_mapping=1
"#;

fn compile(source: &str, out: &Path, flags: &[String]) {
    let status = Command::new("gcc")
        .args(["-O1", "-Wall", "-Werror", "-o"])
        .arg(out)
        .arg(pg_oauth_harness::repo_root().join(source))
        .args(flags)
        .status()
        .expect("gcc");
    assert!(status.success(), "gcc {source}");
}

struct Login {
    cluster: Cluster,
    client: PathBuf,
}

impl Login {
    fn start() -> Login {
        let audience = format!("'{AUDIENCE}'");
        let issuer = format!("'{ISSUER}'");
        let mut cluster = Cluster::init(
            &pg_bindir(),
            &[],
            "login",
            &[
                ("shared_preload_libraries", "'pg_oauth'"),
                ("oauth_validator_libraries", "'pg_oauth'"),
                ("pg_oauth.login_databases", "'postgres'"),
                ("pg_oauth.login_audience", &audience),
                ("pg_oauth.issuer", &issuer),
                ("pg_oauth.leeway", "0"),
            ],
        );
        std::fs::write(cluster.data_dir().join("pg_hba.conf"), HBA).unwrap();
        std::fs::write(
            cluster.data_dir().join("pg_ident.conf"),
            "services svc app_reader\n",
        )
        .unwrap();
        cluster.start_server();
        let client = pg_oauth_harness::libpq_oauth_client(&cluster.dir);
        let login = Login { cluster, client };
        login.sql("CREATE DATABASE mapped");
        login.sql("CREATE DATABASE elsewhere");
        login.sql(
            "CREATE EXTENSION pg_oauth;
             CREATE ROLE app_reader LOGIN; CREATE ROLE app_writer LOGIN;",
        );
        for (id, alg) in [
            ("svc", "ES256"),
            ("svc-eddsa", "EdDSA"),
            ("svc-rs256", "RS256"),
            ("svc-ps256", "PS256"),
            ("svc-hs256", "HS256"),
        ] {
            login.sql(&format!(
                "INSERT INTO oauth.client (id, secret, token_format, jwt_alg, scope, audience)
                 VALUES ('{id}', '{SECRET}', 'jwt', '{alg}', '{{db:login,read}}',
                         '{{{AUDIENCE},https://api.pg-oauth.test}}');
                 INSERT INTO oauth.policy VALUES ('{id}', 'app_reader');"
            ));
        }
        login.sql(&format!(
            "INSERT INTO oauth.client (id, secret, scope, audience)
             VALUES ('svc-opaque', '{SECRET}', '{{db:login}}', '{{{AUDIENCE}}}');
             INSERT INTO oauth.policy VALUES ('svc-opaque', 'app_reader');
             INSERT INTO oauth.client (id, secret, token_format, scope, audience, access_token_expiration)
             VALUES ('svc-short', '{SECRET}', 'jwt', '{{db:login}}', '{{{AUDIENCE}}}', 1);
             INSERT INTO oauth.policy VALUES ('svc-short', 'app_reader');"
        ));
        login.wait_for_state();
        login
    }

    fn db(&self) -> postgres::Client {
        self.cluster.connect("postgres")
    }

    fn sql(&self, sql: &str) {
        self.db()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The login worker has built the state (after a start, or a restart).
    fn wait_for_state(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let built: i64 = self
                .db()
                .query_one("SELECT count(*) FROM oauth.login_status()", &[])
                .unwrap()
                .get(0);
            if built == 1 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no login state:\n{}",
                self.cluster.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn token(&self, client: &str, scope: &str, audience: &str) -> String {
        self.db()
            .query_one(
                "SELECT oauth.auth_token('client_credentials', $1, $2, $3, $4) ->> 'access_token'",
                &[&client, &SECRET, &scope, &audience],
            )
            .unwrap_or_else(|e| panic!("token for {client}: {e}"))
            .get(0)
    }

    fn conninfo(&self, db: &str, role: &str) -> String {
        // The discovery document's URL as the server would name it: libpq calls the hook at
        // once instead of asking the server first.
        format!(
            "host=127.0.0.1 port={} dbname={db} user={role} oauth_client_id=svc \
             oauth_issuer={ISSUER}/.well-known/openid-configuration",
            self.cluster.port
        )
    }

    /// Log in with `token`: `current_user system_user`, or libpq's error.
    fn login(&self, db: &str, role: &str, token: &str) -> Result<String, String> {
        let out = Command::new(&self.client)
            .arg(self.conninfo(db, role))
            .env("PG_OAUTH_TOKEN", token)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A refused login, whose reason the server log gives.
    fn refused(&self, db: &str, role: &str, token: &str, reason: &str) {
        let before = self.cluster.log().len();
        let result = self.login(db, role, token);
        assert!(
            result.is_err(),
            "logged in as {role} ({reason}): {result:?}"
        );
        let log = self.cluster.log();
        assert!(
            log[before..].contains(reason),
            "no \"{reason}\" in the server log:\n{}",
            &log[before..]
        );
    }
}

#[test]
fn a_service_logs_in_with_its_token_and_every_refusal_is_logged_without_the_token() {
    if pg_version() != "18" {
        return the_feature_is_absent_before_18();
    }
    let l = Login::start();
    let mut shown: Vec<String> = Vec::new();

    // The service gets its own token from pg_oauth (the client-credentials grant, over SQL)
    // and logs in with it through libpq's hook: no password.
    let out = Command::new(&l.client)
        .arg(l.conninfo("postgres", "app_reader"))
        .env(
            "PG_OAUTH_TOKEN_CONNINFO",
            format!(
                "host=127.0.0.1 port={} dbname=postgres user=postgres",
                l.cluster.port
            ),
        )
        .env("PG_OAUTH_CLIENT_ID", "svc")
        .env("PG_OAUTH_CLIENT_SECRET", SECRET)
        .env("PG_OAUTH_AUDIENCE", AUDIENCE)
        .env("PG_OAUTH_SCOPE", "db:login")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "app_reader oauth:svc"
    );

    // Every algorithm pg_oauth signs with.
    for client in ["svc-eddsa", "svc-rs256", "svc-ps256", "svc-hs256"] {
        let token = l.token(client, "db:login", AUDIENCE);
        assert_eq!(
            l.login("postgres", "app_reader", &token).unwrap(),
            format!("app_reader oauth:{client}")
        );
        shown.push(token);
    }
    // Without delegate_ident_mapping, pg_ident.conf maps the client id.
    let token = l.token("svc", "db:login", AUDIENCE);
    assert_eq!(
        l.login("mapped", "app_reader", &token).unwrap(),
        "app_reader oauth:svc"
    );
    let before = l.cluster.log().len();
    assert!(l.login("mapped", "app_writer", &token).is_err());
    assert!(l.cluster.log()[before..].contains("no match in usermap"));

    refusals(&l, &token, &mut shown);
    revocation_keys_and_restart(l, token, shown);
}

fn refusals(l: &Login, token: &str, shown: &mut Vec<String>) {
    l.refused(
        "postgres",
        "app_writer",
        token,
        "acts as role \"app_reader\", not \"app_writer\"",
    );
    l.refused(
        "elsewhere",
        "app_reader",
        token,
        "no database publishes issuer \"https://other-issuer.pg-oauth.test\"",
    );

    let other_audience = l.token("svc", "db:login", "https://api.pg-oauth.test");
    l.refused(
        "postgres",
        "app_reader",
        &other_audience,
        "audience does not include",
    );
    let no_scope = l.token("svc", "read", AUDIENCE);
    l.refused(
        "postgres",
        "app_reader",
        &no_scope,
        "lacks scope \"db:login\"",
    );
    let opaque = l.token("svc-opaque", "db:login", AUDIENCE);
    l.refused(
        "postgres",
        "app_reader",
        &opaque,
        "only JWT access tokens log in",
    );

    // A changed signature, and claims changed under the original signature.
    let parts: Vec<&str> = token.split('.').collect();
    let mut signature = parts[2].to_owned();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    signature.replace_range(0..1, flipped);
    let forged = format!("{}.{}.{signature}", parts[0], parts[1]);
    l.refused(
        "postgres",
        "app_reader",
        &forged,
        "JWT signature is invalid",
    );
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut claims: serde_json::Value =
        serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
    claims["role"] = "app_writer".into();
    claims["scope"] = "db:login read write".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        engine.encode(claims.to_string()),
        parts[2]
    );
    l.refused(
        "postgres",
        "app_writer",
        &tampered,
        "JWT signature is invalid",
    );

    let short = l.token("svc-short", "db:login", AUDIENCE);
    std::thread::sleep(Duration::from_millis(2100));
    l.refused("postgres", "app_reader", &short, "access token has expired");

    let deactivated = l.token("svc-eddsa", "db:login", AUDIENCE);
    l.sql("UPDATE oauth.client SET active = false WHERE id = 'svc-eddsa'");
    l.refused(
        "postgres",
        "app_reader",
        &deactivated,
        "client \"svc-eddsa\" may not log in",
    );

    shown.extend([
        other_audience,
        no_scope,
        opaque,
        forged,
        tampered,
        short,
        deactivated,
    ]);
}

fn revocation_keys_and_restart(mut l: Login, token: String, mut shown: Vec<String>) {
    // Only commits count: a revocation rolled back to a savepoint changes nothing, and a
    // token whose issuing transaction rolled back never logs in (auth_verify says the same).
    let mut db = l.db();
    let mut tx = db.transaction().unwrap();
    tx.batch_execute("SAVEPOINT s").unwrap();
    tx.query_one("SELECT oauth.auth_revoke($1)", &[&token])
        .unwrap();
    tx.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
    tx.commit().unwrap();
    let mut tx = db.transaction().unwrap();
    let ghost: String = tx
        .query_one(
            "SELECT oauth.auth_token('client_credentials', 'svc', $1, 'db:login', $2) ->> 'access_token'",
            &[&SECRET, &AUDIENCE],
        )
        .unwrap()
        .get(0);
    tx.rollback().unwrap();
    l.refused("postgres", "app_reader", &ghost, "the token is revoked");
    shown.push(ghost);

    // Revoked after it was issued: the first login that starts after the revoking commit
    // returned is refused (the commit itself publishes it).
    assert!(l.login("postgres", "app_reader", &token).is_ok());
    let revoked: bool = l
        .db()
        .query_one("SELECT oauth.auth_revoke($1)", &[&token])
        .unwrap()
        .get(0);
    assert!(revoked);
    l.refused("postgres", "app_reader", &token, "the token is revoked");

    // A policy's role changed after issuance: its old tokens do not log in.
    let before_change = l.token("svc", "db:login", AUDIENCE);
    l.sql("UPDATE oauth.policy SET role = 'app_writer' WHERE client_id = 'svc'");
    l.refused(
        "postgres",
        "app_reader",
        &before_change,
        "policy role changed",
    );
    let after_change = l.token("svc", "db:login", AUDIENCE);
    assert_eq!(
        l.login("postgres", "app_writer", &after_change).unwrap(),
        "app_writer oauth:svc"
    );

    // The signing key deleted.
    let rs = l.token("svc-rs256", "db:login", AUDIENCE);
    assert!(l.login("postgres", "app_reader", &rs).is_ok());
    l.sql("DELETE FROM oauth.signing_key WHERE alg = 'RS256'");
    l.refused("postgres", "app_reader", &rs, "unknown signing key");

    // A restart empties shared memory; the worker builds the state again from the tables.
    let live = l.token("svc-ps256", "db:login", AUDIENCE);
    l.cluster.stop_server("fast");
    l.cluster.start_server();
    l.wait_for_state();
    assert_eq!(
        l.login("postgres", "app_reader", &live).unwrap(),
        "app_reader oauth:svc-ps256"
    );
    l.refused("postgres", "app_reader", &token, "the token is revoked");
    l.refused("postgres", "app_reader", &rs, "unknown signing key");
    l.refused(
        "postgres",
        "app_reader",
        &before_change,
        "policy role changed",
    );

    shown.extend([token, before_change, after_change, rs, live]);
    // Logins are counted (database NULL in oauth.stats: no database is chosen yet), from zero
    // since the restart: one accepted, three refused (libpq, given the discovery URL, does not
    // try a refused token again).
    let count = |result: &str| -> i64 {
        l.db()
            .query_one(
                "SELECT value FROM oauth.stats
                  WHERE database IS NULL AND metric = 'logins' AND labels ->> 'result' = $1",
                &[&result],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(count("accepted"), 1);
    assert_eq!(count("refused"), 3);
    let log = l.cluster.log();
    for token in &shown {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token is in the server log");
    }
}

fn the_feature_is_absent_before_18() {
    let cluster = Cluster::start("login-absent", &[]);
    let mut db = cluster.create_db("app");
    assert!(db.simple_query("SHOW pg_oauth.login_audience").is_err());
    let said: String = db
        .query_one("SELECT oauth.login_refresh()", &[])
        .unwrap()
        .get(0);
    assert!(said.contains("needs PostgreSQL 18"), "{said}");
    // The publishing triggers run and change nothing.
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, token_format) VALUES ('c', 'a-secret-of-the-client-0123456789', 'jwt');
         UPDATE oauth.client SET active = false WHERE id = 'c';
         DELETE FROM oauth.client WHERE id = 'c';",
    )
    .unwrap();
    let rows = db.query("SELECT * FROM oauth.login_status()", &[]).unwrap();
    assert!(rows.is_empty());
}

#[test]
fn the_validator_interface_is_declared_as_the_server_header_defines_it() {
    if pg_version() != "18" {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pg_oauth-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("validator_layout");
    compile(
        "tests/clients/libpq/validator_layout.c",
        &out,
        &[format!("-I{}", pg_config("--includedir-server").display())],
    );
    let printed = String::from_utf8(Command::new(&out).output().unwrap().stdout).unwrap();
    let c: std::collections::HashMap<&str, usize> = printed
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k, v.parse().unwrap()))
        .collect();
    let mut compared = 0;
    for (name, size, members) in abi::layout() {
        if size != 0 {
            assert_eq!(Some(&size), c.get(name), "sizeof({name})");
            compared += 1;
        }
        for (member, offset) in members {
            let key = format!("{name}.{member}");
            assert_eq!(Some(&offset), c.get(key.as_str()), "offsetof({key})");
            compared += 1;
        }
    }
    assert_eq!(
        compared,
        c.len() - 1,
        "every value the header gave was compared"
    );
    assert_eq!(
        c["PG_OAUTH_VALIDATOR_MAGIC"],
        abi::PG_OAUTH_VALIDATOR_MAGIC as usize
    );
}

/// Tokens, each with when its revocation committed.
type Pool = Arc<Mutex<Vec<(String, Option<Instant>)>>>;

/// Logins while tokens are revoked and keys rotated, with an oracle: a login that began after
/// its token's revocation committed is refused; a token never revoked, whose key is still
/// published (a rotation keeps the retired key until its tokens expire), logs in. Then a
/// flood of garbage tokens: the server answers them all and still logs a service in.
#[test]
fn logins_during_rotation_and_revocation_follow_the_commits_and_garbage_is_refused() {
    if pg_version() != "18" {
        return;
    }
    let l = Arc::new(Login::start());
    // (token, when its revocation committed)
    let tokens: Pool = Arc::new(Mutex::new(
        (0..8)
            .map(|_| (l.token("svc", "db:login", AUDIENCE), None))
            .collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let mutator = {
        let (l, tokens, stop) = (l.clone(), tokens.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut db = l.db();
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                if round % 15 == 0 {
                    db.batch_execute("SELECT oauth.rotate_signing_key('ES256')")
                        .unwrap();
                }
                let victim = {
                    let tokens = tokens.lock().unwrap();
                    tokens.iter().position(|(_, r)| r.is_none())
                };
                if let Some(i) = victim {
                    let token = tokens.lock().unwrap()[i].0.clone();
                    let _: bool = db
                        .query_one("SELECT oauth.auth_revoke($1)", &[&token])
                        .unwrap()
                        .get(0);
                    tokens.lock().unwrap()[i].1 = Some(Instant::now());
                }
                let fresh = l.token("svc", "db:login", AUDIENCE);
                tokens.lock().unwrap().push((fresh, None));
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };
    let mut checked = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut rng = Rng::new(7);
    while Instant::now() < deadline {
        let (token, revoked_before) = {
            let tokens = tokens.lock().unwrap();
            let (token, revoked) = rng.pick(&tokens).clone();
            (token, revoked)
        };
        let started = Instant::now();
        let result = l.login("postgres", "app_reader", &token);
        let revoked_now = tokens
            .lock()
            .unwrap()
            .iter()
            .find(|(t, _)| *t == token)
            .and_then(|(_, r)| *r);
        match (revoked_before, revoked_now) {
            (Some(_), _) => {
                assert!(
                    result.is_err(),
                    "a token revoked before the login began logged in"
                );
                checked.0 += 1;
            }
            (None, None) => {
                let log = l.cluster.log();
                assert!(
                    result.is_ok(),
                    "a live token was refused: {result:?}\n{}",
                    &log[log.len().saturating_sub(1500)..]
                );
                checked.1 += 1;
            }
            // Revoked while the login ran: either answer is right.
            (None, Some(at)) => assert!(at >= started),
        }
    }
    stop.store(true, Ordering::Relaxed);
    mutator.join().unwrap();
    println!(
        "logins checked: {} refused after their revocation, {} accepted",
        checked.0, checked.1
    );
    assert!(
        checked.0 > 5 && checked.1 > 5,
        "too few logins checked: {checked:?}"
    );

    // Garbage: random bytes, random base64url parts, a real token cut and spliced, huge ones.
    let good = l.token("svc", "db:login", AUDIENCE);
    let mut rng = Rng::new(42);
    let alphabet: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="
        .chars()
        .collect();
    let mut lines = String::new();
    for i in 0..400 {
        let token = match i % 4 {
            0 => (0..rng.below(200) + 1)
                .map(|_| *rng.pick(&alphabet))
                .collect::<String>(),
            1 => {
                let cut = rng.below(good.len());
                format!(
                    "{}{}",
                    &good[..cut],
                    &good[cut..].chars().rev().collect::<String>()
                )
            }
            2 => {
                let part = |rng: &mut Rng| {
                    (0..rng.below(60) + 1)
                        .map(|_| *rng.pick(&alphabet[..64]))
                        .collect::<String>()
                };
                format!("{}.{}.{}", part(&mut rng), part(&mut rng), part(&mut rng))
            }
            _ => format!(
                "eyJ{}.eyJ{}.x",
                "A".repeat(rng.below(20_000)),
                "B".repeat(100)
            ),
        };
        lines.push_str(&token);
        lines.push('\n');
    }
    let mut flood = Command::new(&l.client)
        .arg(l.conninfo("postgres", "app_reader"))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    flood
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = flood.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "accepted 0 refused 400"
    );
    assert_eq!(
        l.login("postgres", "app_reader", &good).unwrap(),
        "app_reader oauth:svc"
    );
    let log = l.cluster.log();
    assert!(
        !log.contains("terminated by signal"),
        "a backend crashed:\n{log}"
    );
}
