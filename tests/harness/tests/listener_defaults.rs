//! The listener set up as README's snippet does, by a DBA who gets a detail wrong: one
//! cluster per port; a discovery document whose every URL the listener answers, with the
//! default endpoint prefix; a database without the extension, a missing issuer and an
//! unusable TLS key said plainly at start and in the answers, and fixed by a reload; methods
//! an endpoint does not take answered 405 with `Allow`.

use std::time::Duration;

use pg_oauth_harness::{free_port, Cluster};
use reqwest::blocking::Client as Http;
use serde_json::Value;

const SECRET: &str = "a-long-enough-secret-for-the-listener-5678";

/// A cluster whose listener serves `database` on `port`, with `extra` settings.
fn listening(name: &str, port: u16, extra: &[(&str, &str)]) -> Cluster {
    let listen = format!("'127.0.0.1:{port}'");
    let mut settings = vec![
        ("shared_preload_libraries", "'pg_oauth'"),
        ("pg_oauth.http_listen", listen.as_str()),
    ];
    settings.extend_from_slice(extra);
    Cluster::start(name, &settings)
}

/// A fresh connection per request, so that every request is accepted anew.
fn http() -> Http {
    Http::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn token(http: &Http, base: &str, client: &str) -> (u16, Value) {
    let response = http
        .post(format!("{base}/token"))
        .basic_auth(client, Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn wait_for_log(cluster: &Cluster, text: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cluster.log().contains(text) {
        assert!(
            std::time::Instant::now() < deadline,
            "no \"{text}\" in the log:\n{}",
            cluster.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_second_cluster_cannot_take_a_port_the_first_listens_on() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let first = listening("listener-port-first", port, &[]);
    let mut db = first.connect("postgres");
    db.batch_execute("CREATE EXTENSION pg_oauth").unwrap();
    db.execute(
        "INSERT INTO oauth.client (id, secret, scope) VALUES ('only-first', $1, '{read}')",
        &[&SECRET],
    )
    .unwrap();
    first.wait_for_listener(&format!("127.0.0.1:{port}"));
    // A copy of the database would answer differently; any second cluster shows the split.
    let second = listening("listener-port-second", port, &[]);
    second
        .connect("postgres")
        .batch_execute("CREATE EXTENSION pg_oauth")
        .unwrap();
    wait_for_log(&second, &format!("cannot listen on 127.0.0.1:{port}"));
    let workers: i64 = second
        .connect("postgres")
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_oauth http listener'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(workers, 0, "the second cluster started listener workers");
    let http = http();
    let statuses: Vec<u16> = (0..30)
        .map(|_| token(&http, &base, "only-first").0)
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "answers from two databases on one port: {statuses:?}"
    );
}

#[test]
fn with_the_default_prefix_every_url_in_the_listeners_documents_is_served() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let issuer = format!("'{base}'");
    let cluster = listening(
        "listener-paths",
        port,
        &[("pg_oauth.issuer", issuer.as_str())],
    );
    let mut db = cluster.connect("postgres");
    db.batch_execute("CREATE EXTENSION pg_oauth").unwrap();
    cluster.wait_for_listener(&format!("127.0.0.1:{port}"));
    let http = http();
    for document in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/smart-configuration",
    ] {
        let metadata: Value = http
            .get(format!("{base}{document}"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        for (name, method) in [
            ("token_endpoint", "POST"),
            ("revocation_endpoint", "POST"),
            ("introspection_endpoint", "POST"),
            ("jwks_uri", "GET"),
        ] {
            let url = metadata[name].as_str().unwrap_or_else(|| panic!("{name}"));
            assert!(url.starts_with(&base), "{document}: {name} = {url}");
            let status = match method {
                "POST" => http.post(url).form(&[("token", "x")]).send(),
                _ => http.get(url).send(),
            }
            .unwrap()
            .status()
            .as_u16();
            assert!(
                matches!(status, 200 | 400 | 401),
                "{document}: {name} = {url} answered {status}"
            );
        }
    }
    // PostgREST's documents keep PostgREST's paths.
    let sql: String = db
        .query_one("SELECT oauth.auth_metadata() ->> 'token_endpoint'", &[])
        .unwrap()
        .get(0);
    assert_eq!(sql, format!("{base}/rpc/token"));
}

#[test]
fn a_database_without_the_extension_and_a_missing_issuer_are_said_plainly() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let cluster = listening("listener-diagnostics", port, &[]);
    cluster.wait_for_listener(&format!("127.0.0.1:{port}"));
    wait_for_log(
        &cluster,
        "the HTTP listener's database \"postgres\" has no pg_oauth extension",
    );
    let http = http();
    let (status, body) = token(&http, &base, "later");
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        body["error_description"],
        "pg_oauth is not installed in the listener's database (pg_oauth.http_database)"
    );
    // Installed while the listener runs: served at once, no restart.
    let mut db = cluster.connect("postgres");
    db.batch_execute("CREATE EXTENSION pg_oauth").unwrap();
    db.execute(
        "INSERT INTO oauth.client (id, secret, scope) VALUES ('later', $1, '{read}')",
        &[&SECRET],
    )
    .unwrap();
    let (status, body) = token(&http, &base, "later");
    assert_eq!(status, 200, "{body}");
    // No issuer: the documents say what is missing, as /token does for a JWT client.
    let response = http
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 500);
    let body: Value = response.json().unwrap();
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(
            "pg_oauth.issuer is not set; it is needed to publish the metadata: ALTER DATABASE"
        ),
        "{description}"
    );
}

#[test]
fn methods_an_endpoint_does_not_take_are_405_with_allow() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let cluster = listening("listener-methods", port, &[]);
    cluster
        .connect("postgres")
        .batch_execute("CREATE EXTENSION pg_oauth")
        .unwrap();
    cluster.wait_for_listener(&format!("127.0.0.1:{port}"));
    let http = http();
    for (method, path, allow, description) in [
        ("GET", "/token", "POST", "use POST, not GET"),
        ("PUT", "/revoke", "POST", "use POST, not PUT"),
        ("POST", "/jwks", "GET, HEAD", "use GET, not POST"),
        (
            "DELETE",
            "/.well-known/oauth-authorization-server",
            "GET, HEAD",
            "use GET, not DELETE",
        ),
    ] {
        let response = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        let body: Value = response.json().unwrap();
        assert_eq!(body["error"], "invalid_request");
        assert_eq!(body["error_description"], description);
    }
}

#[test]
fn a_tls_key_that_cannot_be_used_keeps_connections_out_until_a_reload_fixes_it() {
    use std::os::unix::fs::PermissionsExt;
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("pg_oauth-listener-key-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let settings = [
        format!("'{}'", crt.display()),
        format!("'{}'", key.display()),
    ];
    let cluster = listening(
        "listener-tls-key",
        port,
        &[
            ("pg_oauth.http_tls_cert", settings[0].as_str()),
            ("pg_oauth.http_tls_key", settings[1].as_str()),
        ],
    );
    cluster
        .connect("postgres")
        .batch_execute("CREATE EXTENSION pg_oauth")
        .unwrap();
    wait_for_log(&cluster, "connections are refused until a reload");
    let https = |crt: &std::path::Path| {
        let pem = std::fs::read(crt).unwrap();
        Http::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .tls_built_in_root_certs(false)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let jwks = format!("https://localhost:{port}/jwks");
    // The files appear, but the key is readable by everyone: refused, as PostgreSQL refuses
    // such an ssl_key_file.
    pg_oauth_harness::self_signed_certificate(&dir);
    if pg_oauth_harness::is_root() {
        std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    cluster
        .connect("postgres")
        .batch_execute("SELECT pg_reload_conf()")
        .unwrap();
    wait_for_log(&cluster, "has group or world access");
    assert!(
        https(&crt).get(&jwks).send().is_err(),
        "served with a world-readable key"
    );
    // Made private, and reloaded: served over TLS, never plain HTTP meanwhile.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(http()
        .get(format!("http://127.0.0.1:{port}/jwks"))
        .send()
        .is_err());
    cluster
        .connect("postgres")
        .batch_execute("SELECT pg_reload_conf()")
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match https(&crt).get(&jwks).send() {
            Ok(response) if response.status().as_u16() == 200 => break,
            other => assert!(
                std::time::Instant::now() < deadline,
                "TLS never came up after the reload: {other:?}\n{}",
                cluster.log()
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
