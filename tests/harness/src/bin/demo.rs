//! `make demo`: a throwaway cluster, a client, and a token issued, verified and revoked,
//! showing each SQL step and its result. Everything is torn down at the end.

use pg_oauth_harness::{repo_root, Cluster, PostgRest};

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
    // pg_oauth's own listener serves the `app` database of the HTTP part, and its sandbox.
    let listener_port = pg_oauth_harness::free_port();
    let listen = format!("'127.0.0.1:{listener_port}'");
    let cluster = Cluster::start(
        "demo",
        &[
            ("shared_preload_libraries", "'pg_oauth'"),
            ("pg_oauth.http_listen", &listen),
            ("pg_oauth.http_database", "'app'"),
        ],
    );
    let mut db = cluster.create_db("demo");
    let server: String = db
        .query_one("SELECT pg_catalog.version()", &[])
        .expect("version()")
        .get(0);
    let extension: String = db
        .query_one(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_oauth'",
            &[],
        )
        .expect("pg_oauth installed")
        .get(0);
    println!(
        "Cluster on 127.0.0.1:{}: {server}\npg_oauth {extension} installed (CREATE EXTENSION pg_oauth).",
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
    http_demo(&cluster);
    let console_secret = console_client(&cluster);
    sandbox(listener_port, &console_secret);
    drop(cluster);
    println!("\nPostgREST and the cluster stopped and removed. Demo complete.");
}

/// A client that signs in to the console, acting as a role granted oauth_admin: its secret.
fn console_client(cluster: &Cluster) -> String {
    let mut app = cluster.connect("app");
    app.batch_execute("CREATE ROLE demo_console NOLOGIN IN ROLE oauth_admin")
        .unwrap();
    let secret: String = app
        .query_one("SELECT oauth.create_client('console-admin')", &[])
        .unwrap()
        .get(0);
    app.batch_execute(
        "INSERT INTO oauth.console_access (client_id, role) VALUES ('console-admin', 'demo_console')",
    )
    .unwrap();
    secret
}

/// The auth sandbox and the console on the listener: their addresses, kept open while a
/// person looks (a terminal).
fn sandbox(port: u16, console_secret: &str) {
    let url = format!("http://127.0.0.1:{port}/sandbox");
    let status = reqwest::blocking::get(&url).map(|r| r.status().as_u16());
    println!(
        "\n== The auth sandbox, served by pg_oauth's listener (HTTP {}):\n   {url}\n   try client api-client, secret verysecret",
        status.map_or_else(|e| e.to_string(), |s| s.to_string())
    );
    let console = format!("http://127.0.0.1:{port}/console");
    let status = reqwest::blocking::get(&console).map(|r| r.status().as_u16());
    println!(
        "\n== The console (HTTP {}):\n   {console}\n   sign in as client console-admin, secret {console_secret}",
        status.map_or_else(|e| e.to_string(), |s| s.to_string())
    );
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        println!("   Press Enter to stop the cluster.");
        let _ = std::io::stdin().read_line(&mut String::new());
    }
}

/// Show an HTTP exchange the way curl would print it.
fn show(title: &str, command: &str, resp: reqwest::blocking::Response) -> String {
    println!("\n== {title}\n   $ {command}");
    println!("   -> HTTP {}", resp.status());
    for name in ["cache-control", "pragma", "www-authenticate"] {
        if let Some(value) = resp.headers().get(name) {
            println!("   -> {name}: {}", value.to_str().unwrap_or("?"));
        }
    }
    let body = resp.text().unwrap_or_default();
    println!("   -> {body}");
    body
}

/// The same flow over HTTP, through PostgREST set up with examples/postgrest.
fn http_demo(cluster: &Cluster) {
    println!(
        "

#### Over HTTP: PostgREST 12.0.2 with examples/postgrest/*"
    );
    cluster.recipe_app(&repo_root().join("examples/postgrest/setup.sql"), &[]);
    println!(
        "Ran examples/postgrest/setup.sql and demo.sql (notes table, api-client, api_user policy)."
    );
    let rest = PostgRest::start(cluster, "app");
    let base = rest.url("");
    let http = reqwest::blocking::Client::new();

    let body = show(
        "Token request with HTTP Basic (RFC 6749 §4.4)",
        &format!("curl -u api-client:verysecret -d grant_type=client_credentials {base}/rpc/token"),
        http.post(rest.url("/rpc/token"))
            .basic_auth("api-client", Some("verysecret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .unwrap(),
    );
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    show(
        "The JWT works at PostgREST: role api_user, RLS on its scopes",
        &format!("curl -H 'Authorization: Bearer <token>' {base}/notes"),
        http.get(rest.url("/notes"))
            .bearer_auth(&token)
            .send()
            .unwrap(),
    );
    show(
        "Revoke it (RFC 7009)",
        &format!("curl -u api-client:verysecret -d token=<token> {base}/rpc/revoke"),
        http.post(rest.url("/rpc/revoke"))
            .basic_auth("api-client", Some("verysecret"))
            .form(&[("token", token.as_str())])
            .send()
            .unwrap(),
    );
    show(
        "PostgREST refuses the revoked token at once",
        &format!("curl -H 'Authorization: Bearer <token>' {base}/notes"),
        http.get(rest.url("/notes"))
            .bearer_auth(&token)
            .send()
            .unwrap(),
    );
    show(
        "A wrong secret: 401 with WWW-Authenticate",
        &format!("curl -u api-client:wrong -d grant_type=client_credentials {base}/rpc/token"),
        http.post(rest.url("/rpc/token"))
            .basic_auth("api-client", Some("wrong"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .unwrap(),
    );
    drop(rest);
}
