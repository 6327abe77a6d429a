//! Major-version upgrades with pg_upgrade, as a DBA runs them: a cluster of the older server
//! with pg_oauth in shared_preload_libraries (the listener on), clients, keys and tokens;
//! pg_upgrade --copy and --link to a new cluster of the next server, with pg_oauth installed
//! there too; then tokens issued before verify, revoked ones stay revoked, clients
//! authenticate with their old secrets, the JWK Set is the same and the listener serves.
//!
//! Not part of `make test` (it needs two servers with pg_oauth installed): `make test-upgrade`
//! runs it for 15 → 16 and 16 → 18, the paths in PG_OAUTH_UPGRADE_PATHS
//! (`<old pg_config>><new pg_config>`, space-separated).

use std::path::{Path, PathBuf};
use std::process::Command;

use pg_oauth_harness::{free_port, json, postgres, server_command, Cluster};
use serde_json::Value;

const ISSUER: &str = "https://issuer.upgrade";

fn config(pg_config: &Path, flag: &str) -> String {
    let out = Command::new(pg_config)
        .arg(flag)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", pg_config.display()));
    assert!(out.status.success(), "{} {flag}", pg_config.display());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn major(pg_config: &Path) -> u32 {
    // "PostgreSQL 16.2" -> 16
    config(pg_config, "--version")
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|v| v.parse().ok())
        .expect("a PostgreSQL version")
}

/// Settings both clusters run with: the listener on `port`, serving `app`.
fn settings(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("shared_preload_libraries", "'pg_oauth'".into()),
        ("pg_oauth.http_listen", format!("'127.0.0.1:{port}'")),
        ("pg_oauth.http_database", "'app'".into()),
        ("pg_oauth.endpoint_prefix", "''".into()),
    ]
}

fn as_refs<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

struct Before {
    live: Vec<String>,
    revoked: String,
    jwks: String,
}

fn populate(db: &mut postgres::Client) -> Before {
    db.batch_execute(
        "CREATE ROLE upgrade_role NOLOGIN;
         INSERT INTO oauth.client (id, secret, scope, token_format) VALUES
             ('up-opaque', 'up-secret', '{read}', 'opaque'),
             ('up-jwt', 'up-secret', '{read}', 'jwt');
         INSERT INTO oauth.policy (client_id, role) VALUES ('up-jwt', 'upgrade_role');",
    )
    .unwrap();
    let token = |db: &mut postgres::Client, client: &str| -> String {
        json(
            db,
            "SELECT oauth.auth_token('client_credentials', $1, 'up-secret') -> 'access_token'",
            &[&client],
        )
        .as_str()
        .unwrap()
        .to_owned()
    };
    let live = vec![token(db, "up-opaque"), token(db, "up-jwt")];
    let revoked = token(db, "up-jwt");
    db.execute("SELECT oauth.auth_revoke($1)", &[&revoked])
        .unwrap();
    let jwks = json(db, "SELECT oauth.auth_jwks()", &[]).to_string();
    Before {
        live,
        revoked,
        jwks,
    }
}

fn listener_token(port: u16) -> Value {
    let response = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{port}/token"))
        .basic_auth("up-jwt", Some("up-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "the listener's token endpoint"
    );
    response.json().unwrap()
}

fn upgrade(from: &Path, to: &Path, mode: &str) {
    let (old_bin, new_bin) = (
        PathBuf::from(config(from, "--bindir")),
        PathBuf::from(config(to, "--bindir")),
    );
    let (old_major, new_major) = (major(from), major(to));
    let what = format!("{old_major} -> {new_major} --{mode}");
    // PostgreSQL 18's initdb turns data checksums on, and pg_upgrade needs both sides alike.
    let checksums: &[&str] = if new_major >= 18 && old_major < 18 {
        &["--no-data-checksums"]
    } else {
        &[]
    };
    let port = free_port();
    let listener = settings(port);
    let mut old = Cluster::start_with(&old_bin, &[], "upgrade-old", &as_refs(&listener));
    old.connect("postgres")
        .batch_execute("CREATE DATABASE app")
        .unwrap();
    let mut db = old.connect("app");
    db.batch_execute(&format!(
        "CREATE EXTENSION pg_oauth; ALTER DATABASE app SET pg_oauth.issuer = '{ISSUER}';"
    ))
    .unwrap();
    drop(db);
    let mut db = old.connect("app");
    let before = populate(&mut db);
    old.wait_for_listener(&format!("127.0.0.1:{port}"));
    listener_token(port);
    drop(db);
    old.stop_server("fast");

    let mut new = Cluster::init(&new_bin, checksums, "upgrade-new", &as_refs(&listener));
    let out = server_command(new_bin.join("pg_upgrade"))
        .current_dir(&new.dir)
        .arg("-b")
        .arg(&old_bin)
        .arg("-B")
        .arg(&new_bin)
        .arg("-d")
        .arg(old.data_dir())
        .arg("-D")
        .arg(new.data_dir())
        .arg(format!("--{mode}"))
        .args([
            "-p",
            &free_port().to_string(),
            "-P",
            &free_port().to_string(),
        ])
        .output()
        .expect("pg_upgrade");
    assert!(
        out.status.success(),
        "pg_upgrade {what}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    new.start_server();
    let mut db = new.connect("app");
    // The library and the schema are the current version's on both sides: nothing to update.
    db.batch_execute("ALTER EXTENSION pg_oauth UPDATE").unwrap();
    for token in &before.live {
        json(&mut db, "SELECT oauth.auth_verify($1)", &[token]);
    }
    let (_, refused) =
        pg_oauth_harness::expect_error(&mut db, "SELECT oauth.auth_verify($1)", &[&before.revoked]);
    assert!(refused.contains("revoked"), "{what}: {refused}");
    for client in ["up-opaque", "up-jwt"] {
        json(
            &mut db,
            "SELECT oauth.auth_token('client_credentials', $1, 'up-secret')",
            &[&client],
        );
    }
    assert_eq!(
        json(&mut db, "SELECT oauth.auth_jwks()", &[]).to_string(),
        before.jwks,
        "{what}: the JWK Set"
    );
    new.wait_for_listener(&format!("127.0.0.1:{port}"));
    let issued = listener_token(port);
    json(
        &mut db,
        "SELECT oauth.auth_verify($1)",
        &[&issued["access_token"].as_str().unwrap()],
    );
    let version: String = db.query_one("SHOW server_version_num", &[]).unwrap().get(0);
    assert!(
        version.starts_with(&new_major.to_string()),
        "{what}: {version}"
    );
    assert!(
        !new.log().contains("terminated by signal"),
        "{what}:\n{}",
        new.log()
    );
    println!("pg_upgrade {what}: ok");
}

#[test]
fn pg_upgrade_carries_clients_keys_and_tokens_to_the_next_major_version() {
    let paths = std::env::var("PG_OAUTH_UPGRADE_PATHS")
        .expect("PG_OAUTH_UPGRADE_PATHS (run through `make test-upgrade`)");
    let paths: Vec<(PathBuf, PathBuf)> = paths
        .split_whitespace()
        .map(|p| {
            let (from, to) = p.split_once('>').expect("<old pg_config>><new pg_config>");
            (PathBuf::from(from), PathBuf::from(to))
        })
        .collect();
    assert!(!paths.is_empty());
    for (from, to) in &paths {
        for mode in ["copy", "link"] {
            upgrade(from, to, mode);
        }
    }
}
