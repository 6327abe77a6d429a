//! Backups and restores, run as a DBA runs them: pg_dump in custom format restored by
//! pg_restore (in parallel, and with --create into a new cluster), plain SQL replayed by psql,
//! --data-only into a schema made by CREATE EXTENSION (with and without --disable-triggers),
//! and pg_dumpall into a new cluster. Every row pg_oauth holds comes back exactly: clients
//! authenticate with their old secrets, tokens issued before the dump verify (revoked and
//! expired ones stay so), the JWK Set is byte-identical and its keys keep signing, the refresh
//! grant continues and its spent token still revokes it, audit rows and sequences carry on,
//! and PostgREST (the shipped recipe) serves the copy unchanged.

use std::collections::BTreeMap;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jwt_simple::prelude::*;
use pg_oauth_harness::{postgres, repo_root, Cluster, PostgRest};
use serde_json::{json, Value};

const ISSUER: &str = "http://127.0.0.1:3000";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Clients with a secret, one of each kind: the recipe's ES256 client, an opaque one with
/// refresh tokens, a JWT client of every other algorithm, one whose tokens expire at once.
const SECRET_CLIENTS: [(&str, &str); 7] = [
    ("api-client", "verysecret"),
    ("op", "opaque-secret"),
    ("jwt-eddsa", "jwt-client-secret-9"),
    ("jwt-rs256", "jwt-client-secret-9"),
    ("jwt-ps256", "jwt-client-secret-9"),
    ("jwt-hs256", "jwt-client-secret-9"),
    ("short", "rt-secret"),
];

/// Every table of pg_oauth's, in the order the checks report them.
const TABLES: [&str; 11] = [
    "client",
    "policy",
    "signing_key",
    "session",
    "refresh_family",
    "refresh_token",
    "client_assertion_jti",
    "fhir_resource_type",
    "auth_failure",
    "source_throttle",
    "client_lockout",
];

/// What the source database held when it was dumped.
struct Before {
    /// table (or sequence) -> row count and digest of its rows as text.
    contents: BTreeMap<String, String>,
    jwks: String,
    /// Live access tokens: one per secret client but `short`, and one signed by a key
    /// retired since (in its grace period).
    live: Vec<String>,
    revoked: String,
    expired: String,
    /// The refresh grant: the token that continues it and the spent one.
    refresh_next: String,
    refresh_spent: String,
    pkjwt: ES256KeyPair,
}

fn json_of(
    db: &mut postgres::Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Value {
    pg_oauth_harness::json(db, sql, params)
}

fn token(db: &mut postgres::Client, client: &str, secret: &str) -> Value {
    json_of(
        db,
        "SELECT oauth.auth_token('client_credentials', $1, $2)",
        &[&client, &secret],
    )
}

fn access(response: &Value) -> String {
    response["access_token"].as_str().unwrap().to_owned()
}

fn contents(db: &mut postgres::Client) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for table in TABLES {
        let row = db
            .query_one(
                &format!(
                    "SELECT count(*)::text || ' ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '')
                       FROM oauth.{table} t"
                ),
                &[],
            )
            .unwrap();
        out.insert(table.to_owned(), row.get(0));
    }
    for sequence in ["auth_failure_id_seq", "audit_dropped_seq"] {
        let row = db
            .query_one(
                &format!("SELECT last_value || ' ' || is_called FROM oauth.{sequence}"),
                &[],
            )
            .unwrap();
        out.insert(sequence.to_owned(), row.get(0));
    }
    out
}

fn assertion(key: &ES256KeyPair) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let claims = Claims::create(Duration::from_secs(120))
        .with_issuer("pkjwt")
        .with_subject("pkjwt")
        .with_audience(ISSUER)
        .with_jwt_id(format!("backup-{}-{n}", std::process::id()));
    ES256KeyPair::from_bytes(&key.to_bytes())
        .unwrap()
        .with_key_id("k1")
        .sign(claims)
        .unwrap()
}

fn by_assertion(db: &mut postgres::Client, key: &ES256KeyPair) -> Value {
    json_of(
        db,
        "SELECT oauth.auth_token('client_credentials', client_assertion_type => $1, client_assertion => $2)",
        &[&JWT_BEARER, &assertion(key)],
    )
}

/// The recipe's database `app`, holding every kind of row pg_oauth keeps.
fn source() -> (Cluster, Before) {
    let cluster = Cluster::start("backup-source", &[]);
    cluster.recipe_app(&repo_root().join("examples/postgrest/setup.sql"), &[]);
    let mut db = cluster.connect("app");
    let pkjwt = ES256KeyPair::generate();
    let point = pkjwt.public_key().public_key().to_bytes_uncompressed();
    let jwks = json!({ "keys": [{ "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
                                  "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..]) }] });
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, scope, token_format, refresh_token, access_token_expiration, jwt_alg) VALUES
             ('op', 'opaque-secret', '{notes:read}', 'opaque', true, 3600, NULL),
             ('jwt-eddsa', 'jwt-client-secret-9', '{notes:read}', 'jwt', false, 3600, 'EdDSA'),
             ('jwt-rs256', 'jwt-client-secret-9', '{notes:read}', 'jwt', false, 3600, 'RS256'),
             ('jwt-ps256', 'jwt-client-secret-9', '{notes:read}', 'jwt', false, 3600, 'PS256'),
             ('jwt-hs256', 'jwt-client-secret-9', '{notes:read}', 'jwt', false, 3600, 'HS256'),
             ('short', 'rt-secret', '{notes:read}', 'opaque', false, 1, NULL);
         INSERT INTO oauth.policy (client_id, role)
              SELECT id, 'api_user' FROM oauth.client WHERE id LIKE 'jwt-%';
         INSERT INTO oauth.fhir_resource_type (name) VALUES ('CustomThing');
         SELECT nextval('oauth.audit_dropped_seq') FROM generate_series(1, 3);",
    )
    .unwrap();
    db.execute(
        "INSERT INTO oauth.client (id, scope, jwks) VALUES ('pkjwt', '{notes:read}', $1)",
        &[&jwks],
    )
    .unwrap();

    // A token whose key is then rotated out (retired, still published and accepted).
    let mut live = vec![access(&token(&mut db, "api-client", "verysecret"))];
    db.batch_execute("SELECT oauth.rotate_signing_key('ES256')")
        .unwrap();
    let mut refresh = String::new();
    for (client, secret) in SECRET_CLIENTS.iter().filter(|(c, _)| *c != "short") {
        let response = token(&mut db, client, secret);
        if *client == "op" {
            refresh = response["refresh_token"].as_str().unwrap().to_owned();
        }
        live.push(access(&response));
    }
    let revoked = access(&token(&mut db, "api-client", "verysecret"));
    db.execute("SELECT oauth.auth_revoke($1)", &[&revoked])
        .unwrap();
    let expired = access(&token(&mut db, "short", "rt-secret"));
    let refreshed = json_of(
        &mut db,
        "SELECT oauth.auth_token('refresh_token', 'op', 'opaque-secret', refresh_token => $1)",
        &[&refresh],
    );
    by_assertion(&mut db, &pkjwt);
    // A failed authentication: an audit row and a lockout row.
    assert!(db
        .query(
            "SELECT oauth.auth_token('client_credentials', 'op', 'not-the-secret')",
            &[]
        )
        .is_err());
    std::thread::sleep(std::time::Duration::from_millis(1200)); // `short`'s token expires
    let before = Before {
        contents: contents(&mut db),
        jwks: json_of(&mut db, "SELECT oauth.auth_jwks()", &[]).to_string(),
        live,
        revoked,
        expired,
        refresh_next: refreshed["refresh_token"].as_str().unwrap().to_owned(),
        refresh_spent: refresh,
        pkjwt,
    };
    for table in [
        "signing_key",
        "session",
        "refresh_token",
        "auth_failure",
        "client_lockout",
    ] {
        assert!(
            !before.contents[table].starts_with("0 "),
            "the source has no {table} rows"
        );
    }
    (cluster, before)
}

fn verify_error(db: &mut postgres::Client, token: &str) -> String {
    match db.query_one("SELECT oauth.auth_verify($1)", &[&token]) {
        Ok(_) => panic!("the token verified"),
        Err(e) => pg_oauth_harness::db_error(&e).1,
    }
}

/// Everything the restored database `db` must do as the source did.
fn check(cluster: &Cluster, db_name: &str, before: &Before, what: &str) {
    let mut db = cluster.connect(db_name);
    let after = contents(&mut db);
    for (name, digest) in &before.contents {
        assert_eq!(
            &after[name], digest,
            "{what}: oauth.{name} differs from the dump's source"
        );
    }
    assert_eq!(
        json_of(&mut db, "SELECT oauth.auth_jwks()", &[]).to_string(),
        before.jwks,
        "{what}: the JWK Set changed"
    );
    for token in &before.live {
        json_of(&mut db, "SELECT oauth.auth_verify($1)", &[token]);
    }
    assert!(
        verify_error(&mut db, &before.revoked).contains("revoked"),
        "{what}"
    );
    assert!(
        verify_error(&mut db, &before.expired).contains("expired"),
        "{what}"
    );

    // Old secrets authenticate; new tokens are signed by keys of the old JWK Set.
    let old_kids: Vec<String> = serde_json::from_str::<Value>(&before.jwks).unwrap()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    for (client, secret) in SECRET_CLIENTS {
        let new = access(&token(&mut db, client, secret));
        json_of(&mut db, "SELECT oauth.auth_verify($1)", &[&new]);
        if client.starts_with("jwt-") && client != "jwt-hs256" || client == "api-client" {
            let header: Value =
                serde_json::from_slice(&B64.decode(new.split('.').next().unwrap()).unwrap())
                    .unwrap();
            let kid = header["kid"].as_str().unwrap().to_owned();
            assert!(
                old_kids.contains(&kid),
                "{what}: {client} signs with a new key"
            );
        }
    }
    by_assertion(&mut db, &before.pkjwt);

    // The refresh grant goes on; its spent token still revokes it.
    let next = json_of(
        &mut db,
        "SELECT oauth.auth_token('refresh_token', 'op', 'opaque-secret', refresh_token => $1)",
        &[&before.refresh_next],
    );
    assert!(db
        .query(
            "SELECT oauth.auth_token('refresh_token', 'op', 'opaque-secret', refresh_token => $1)",
            &[&before.refresh_spent],
        )
        .is_err());
    let (_, message) = pg_oauth_harness::expect_error(
        &mut db,
        "SELECT oauth.auth_token('refresh_token', 'op', 'opaque-secret', refresh_token => $1)",
        &[&next["refresh_token"].as_str().unwrap()],
    );
    assert!(message.contains("revoked"), "{what}: {message}");

    // Audit rows continue the restored sequence; nothing was dropped.
    let failures_before: i64 = db
        .query_one("SELECT count(*) FROM oauth.auth_failure", &[])
        .unwrap()
        .get(0);
    assert!(db
        .query(
            "SELECT oauth.auth_token('client_credentials', 'op', 'not-it-either')",
            &[]
        )
        .is_err());
    let row = db
        .query_one(
            "SELECT count(*), oauth.audit_dropped_events() FROM oauth.auth_failure",
            &[],
        )
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        failures_before + 1,
        "{what}: failure not recorded"
    );
    assert_eq!(row.get::<_, i64>(1), 3, "{what}: audit_dropped_events");

    // PostgREST, configured by the recipe as shipped, serves the copy.
    let postgrest = PostgRest::start(cluster, db_name);
    let http = reqwest::blocking::Client::new();
    let notes = |token: &str| {
        http.get(postgrest.url("/notes"))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        notes(&before.live[1]),
        200,
        "{what}: a token from before the dump"
    );
    assert_eq!(
        notes(&before.revoked),
        401,
        "{what}: a token revoked before the dump"
    );
    let fresh: Value = http
        .post(postgrest.url("/rpc/token"))
        .basic_auth("api-client", Some("verysecret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        notes(fresh["access_token"].as_str().unwrap()),
        200,
        "{what}"
    );
}

/// A new, empty cluster holding the source's roles (`pg_dumpall --roles-only`), as a DBA
/// prepares one before restoring a database dump into it.
fn cluster_with_roles(source: &Cluster, name: &str) -> Cluster {
    let target = Cluster::start(name, &[]);
    let roles = source.dir.join(format!("{name}-roles.sql"));
    let dump = source.run_client("pg_dumpall", &["--roles-only"]);
    std::fs::write(&roles, dump).unwrap();
    replay(&target, "postgres", &roles);
    target
}

/// Replay a plain SQL dump with psql; the only error allowed is the one every cluster gives
/// when a dump creates its bootstrap superuser.
fn replay(cluster: &Cluster, db: &str, file: &Path) {
    let out = cluster
        .client_program("psql")
        .args(["-X", "-q", "-d", db, "-f"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| l.contains("ERROR")) {
        assert!(
            line.contains("role \"postgres\" already exists"),
            "psql -f {}: {stderr}",
            file.display()
        );
    }
}

#[test]
fn every_kind_of_dump_restores_everything_pg_oauth_holds() {
    let (source, before) = source();
    let dir = source.dir.clone();
    let custom = dir.join("app.dump");
    source.run_client(
        "pg_dump",
        &["-Fc", "-d", "app", "-f", custom.to_str().unwrap()],
    );
    let custom = custom.to_str().unwrap();

    // pg_restore --jobs into a new database of the same cluster; pg_dump without --create
    // carries no ALTER DATABASE settings, so the issuer is set again (docs/operations.md).
    source.run_client("createdb", &["app_jobs"]);
    source.run_client(
        "pg_restore",
        &["--jobs", "4", "--exit-on-error", "-d", "app_jobs", custom],
    );
    source.run_client(
        "psql",
        &[
            "-X",
            "-d",
            "app_jobs",
            "-c",
            &format!("ALTER DATABASE app_jobs SET pg_oauth.issuer = '{ISSUER}'"),
        ],
    );
    check(
        &source,
        "app_jobs",
        &before,
        "pg_restore --jobs 4 into a new database",
    );

    // Plain SQL, replayed by psql.
    let plain = dir.join("app.sql");
    source.run_client("pg_dump", &["-d", "app", "-f", plain.to_str().unwrap()]);
    source.run_client("createdb", &["app_plain"]);
    replay(&source, "app_plain", &plain);
    source.run_client(
        "psql",
        &[
            "-X",
            "-d",
            "app_plain",
            "-c",
            &format!("ALTER DATABASE app_plain SET pg_oauth.issuer = '{ISSUER}'"),
        ],
    );
    check(&source, "app_plain", &before, "pg_dump | psql");

    // --data-only into a schema made by CREATE EXTENSION (and the recipe's own objects),
    // with the triggers running and with --disable-triggers.
    for (db, extra) in [
        ("app_data", None),
        ("app_data_nt", Some("--disable-triggers")),
    ] {
        source.run_client("createdb", &[db]);
        source.run_client(
            "pg_restore",
            &["--schema-only", "--exit-on-error", "-d", db, custom],
        );
        let mut args = vec!["--data-only", "--exit-on-error", "-d", db];
        args.extend(extra);
        args.push(custom);
        source.run_client("pg_restore", &args);
        source.run_client(
            "psql",
            &[
                "-X",
                "-d",
                db,
                "-c",
                &format!("ALTER DATABASE {db} SET pg_oauth.issuer = '{ISSUER}'"),
            ],
        );
        check(
            &source,
            db,
            &before,
            &format!("pg_restore --data-only {extra:?}"),
        );
    }

    // pg_restore --create into a new cluster that has the roles.
    let target = cluster_with_roles(&source, "backup-restore");
    target.run_client(
        "pg_restore",
        &["--create", "--exit-on-error", "-d", "postgres", custom],
    );
    check(
        &target,
        "app",
        &before,
        "pg_restore --create into a new cluster",
    );
    drop(target);

    // pg_dumpall into a new cluster.
    let all = dir.join("all.sql");
    std::fs::write(&all, source.run_client("pg_dumpall", &[])).unwrap();
    let target = Cluster::start("backup-dumpall", &[]);
    replay(&target, "postgres", &all);
    check(&target, "app", &before, "pg_dumpall into a new cluster");
}
