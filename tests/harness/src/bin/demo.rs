//! `make demo`: a throwaway cluster, a client, and a token issued, verified and revoked,
//! showing each SQL step and its result. Everything is torn down at the end.

use pg_oauth_harness::Cluster;

/// Show a statement, run it, show its rows or error; returns the first value.
fn step(db: &mut pg_oauth_harness::postgres::Client, title: &str, sql: &str) -> Option<String> {
    println!("\n== {title}\n   {}", sql.replace('\n', "\n   "));
    let mut first = None;
    match db.simple_query(sql) {
        Ok(messages) => {
            for msg in messages {
                if let pg_oauth_harness::postgres::SimpleQueryMessage::Row(row) = msg {
                    for (i, col) in row.columns().iter().enumerate() {
                        let value = row.get(i).unwrap_or("NULL");
                        println!("   -> {}: {}", col.name(), value);
                        first.get_or_insert_with(|| value.to_owned());
                    }
                }
            }
        }
        Err(err) => {
            let db_err = err.as_db_error().expect("a database error");
            println!(
                "   -> ERROR ({}): {}",
                db_err.code().code(),
                db_err.message()
            );
            if let Some(hint) = db_err.hint() {
                println!("      HINT: {hint}");
            }
        }
    }
    first
}

fn main() {
    println!(
        "Starting a throwaway PostgreSQL {} cluster...",
        pg_oauth_harness::pg_version()
    );
    let cluster = Cluster::start("demo", &[]);
    let mut db = cluster.create_db("demo");
    println!(
        "Cluster on 127.0.0.1:{}; extension installed (CREATE EXTENSION pg_oauth).",
        cluster.port
    );

    step(
        &mut db,
        "A DBA registers a client with plain SQL",
        "INSERT INTO oauth.client (id, secret, grant_types, scope)\nVALUES ('api-client', 'verysecret', '{client_credentials}', '{read,write}');",
    );
    step(
        &mut db,
        "Only the argon2id hash of the secret is stored",
        "SELECT id, left(secret, 31) || '...' AS secret FROM oauth.client;",
    );
    let response = step(
        &mut db,
        "The client gets a token (RFC 6749 client credentials grant)",
        "SELECT oauth.auth_token('client_credentials', 'api-client', 'verysecret', 'read') AS response;",
    )
    .expect("a token response");
    let response: serde_json::Value = serde_json::from_str(&response).unwrap();
    let token = response["access_token"].as_str().unwrap();
    step(
        &mut db,
        "Verify the token: its claims",
        &format!("SELECT oauth.auth_verify('{token}') AS claims;"),
    );
    step(
        &mut db,
        "Each token is a session a DBA can inspect",
        "SELECT id AS jti, client_id, scope, issued_at, expires_at, revoked_at FROM oauth.session ORDER BY issued_at;",
    );
    step(
        &mut db,
        "Revoke it (RFC 7009)",
        &format!("SELECT oauth.auth_revoke('{token}') AS revoked;"),
    );
    step(
        &mut db,
        "Verification now fails",
        &format!("SELECT oauth.auth_verify('{token}');"),
    );
    step(
        &mut db,
        "A wrong secret is refused",
        "SELECT oauth.auth_token('client_credentials', 'api-client', 'wrong-secret');",
    );
    drop(db);
    drop(cluster);
    println!("\nCluster stopped and removed. Demo complete.");
}
