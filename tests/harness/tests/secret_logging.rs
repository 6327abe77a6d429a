//! Secrets stay out of the server log in the ways a DBA's logging settings could put them
//! there, beyond failing calls of pg_oauth's functions (abuse.rs): a WARNING pg_oauth raises
//! inside auth_token with log_min_error_statement = warning; a failing INSERT INTO
//! oauth.client with a plaintext secret; and auto_explain logging nested statements with
//! their parameters (PostgreSQL 16 and later), which create_client and rotate_client_secret
//! would feed the plaintext secret they generate.

use pg_oauth_harness::{pg_config, Cluster};

/// In the harness's NEVER_LOGGED list: the cluster's log is scanned for it when it is dropped.
const SECRET: &str = "q+Xz/9aL0w==";

#[test]
fn warnings_and_failing_inserts_never_log_their_statement() {
    // No worker slot for the failure record: pg_oauth WARNs inside auth_token, whose
    // statement carries the secret.
    let cluster = Cluster::start(
        "secret-logging",
        &[
            ("max_worker_processes", "1"),
            ("log_min_error_statement", "warning"),
        ],
    );
    let mut db = cluster.create_db("oauth");
    db.batch_execute("INSERT INTO oauth.client (id, secret) VALUES ('app', 'right')")
        .unwrap();
    db.execute(
        "SELECT oauth.auth_token('client_credentials', 'app', $1)",
        &[&SECRET],
    )
    .unwrap_err();
    let log = cluster.log();
    assert!(
        log.contains("no background worker could be started"),
        "{log}"
    );
    // A failing INSERT with a plaintext secret (one scope that breaks the check constraint),
    // as a literal in the statement's text.
    let sql = format!(
        "INSERT INTO oauth.client (id, secret, scope) VALUES ('bad', '{SECRET}', '{{\"read write\"}}')"
    );
    let err = db.batch_execute(&sql).unwrap_err();
    assert!(err.to_string().contains("db error"));
    let log = cluster.log();
    assert!(log.contains("scope_tokens_valid"), "{log}");
    assert!(!log.contains(SECRET), "a secret reached the log:\n{log}");
}

#[test]
fn auto_explain_never_sees_a_generated_secret() {
    let library = pg_config("--pkglibdir").join("auto_explain.so");
    if !library.exists() {
        // PyPI's PostgreSQL 16 build ships no contrib modules; CI's 18 and 15 do.
        let version = pg_oauth_harness::pg_version();
        assert_eq!(
            version, "16",
            "auto_explain is missing from PostgreSQL {version}"
        );
        println!("auto_explain is not in this build of PostgreSQL {version}");
        return;
    }
    let cluster = Cluster::start(
        "secret-auto-explain",
        &[
            ("shared_preload_libraries", "'auto_explain'"),
            ("auto_explain.log_min_duration", "0"),
            ("auto_explain.log_nested_statements", "on"),
            ("auto_explain.log_analyze", "on"),
        ],
    );
    let mut db = cluster.create_db("oauth");
    if pg_oauth_harness::pg_version() != "15" {
        // Parameters of nested statements are logged from 16 on.
        db.batch_execute("SET auto_explain.log_parameter_max_length = -1")
            .unwrap();
    }
    let created: String = db
        .query_one("SELECT oauth.create_client('ae-client')", &[])
        .unwrap()
        .get(0);
    let rotated: String = db
        .query_one("SELECT oauth.rotate_client_secret('ae-client')", &[])
        .unwrap()
        .get(0);
    let log = cluster.log();
    assert!(
        log.contains("INSERT INTO oauth.client"),
        "auto_explain logged nothing:\n{log}"
    );
    for secret in [&created, &rotated] {
        assert!(
            !log.contains(secret.as_str()),
            "a generated secret reached the log"
        );
    }
}
