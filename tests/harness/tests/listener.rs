//! pg_oauth's own HTTP listener (`pg_oauth.http_listen`, background workers of the database
//! server): no PostgREST runs. A client that knows only the issuer discovers the endpoints
//! (RFC 8414) and uses them with a real OAuth library (the `oauth2` crate).

use oauth2::basic::BasicClient;
use oauth2::{
    AccessToken, AuthType, ClientId, ClientSecret, IntrospectionUrl, TokenIntrospectionResponse,
    TokenResponse, TokenUrl,
};
use pg_oauth_harness::{free_port, json, listener_cluster, node_json, postgres, Cluster};
use reqwest::blocking::Client as Http;
use reqwest::StatusCode;
use serde_json::Value;

fn url(metadata: &Value, name: &str) -> String {
    metadata[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {metadata}"))
        .to_owned()
}

/// A cluster whose listener serves `issuer` on `port` (standard paths), with `extra`
/// settings and one client `client_sql` makes; and a connection to it.
#[test]
fn a_stock_client_gets_verifies_introspects_and_revokes_with_no_postgrest() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let (mut cluster, mut db) = listener_cluster(
        "listener",
        port,
        &issuer,
        &[("pg_oauth.http_workers", "2")],
        "INSERT INTO oauth.client (id, secret, scope, token_format)
         VALUES ('listener-client', 'a-long-enough-secret-for-the-listener', '{read,write}', 'jwt');",
    );
    let http = Http::new();
    let metadata = discovery_from_the_issuer_alone(&http, &issuer);
    a_stock_client_gets_introspects_and_revokes(&http, &metadata, &issuer, &mut db);
    errors_are_rfc6749_answers(&http, &metadata, &issuer, &mut db);
    repeated_parameters(&http, &metadata, &mut db);
    hostile_connections_starve_no_one(&http, &metadata, port);
    a_crashed_worker_comes_back(&http, &metadata, &cluster, db);
    // SIGTERM (a fast shutdown) ends both workers cleanly.
    cluster.stop_server("fast");
    let log = std::fs::read_to_string(cluster.dir.join("server.log")).unwrap();
    let since_restart = log
        .rsplit("all server processes terminated")
        .next()
        .unwrap();
    for said in [
        "pg_oauth: HTTP listener on",
        "pg_oauth: HTTP listener stopping",
    ] {
        assert_eq!(since_restart.matches(said).count(), 2, "{said}: {log}");
    }
}

/// Discovery at the standard path of the issuer's origin: every endpoint listed, the JWK
/// Set non-empty. Returns the metadata.
fn discovery_from_the_issuer_alone(http: &Http, issuer: &str) -> Value {
    let metadata: Value = http
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(metadata["issuer"], issuer);
    for (name, path) in [
        ("token_endpoint", "/token"),
        ("jwks_uri", "/jwks"),
        ("revocation_endpoint", "/revoke"),
        ("introspection_endpoint", "/introspect"),
    ] {
        assert_eq!(url(&metadata, name), format!("{issuer}{path}"));
    }
    let jwks: Value = http
        .get(url(&metadata, "jwks_uri"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(!jwks["keys"].as_array().unwrap().is_empty(), "{jwks}");

    metadata
}

/// The oauth2 crate gets a token, introspects it, and (by hand: that crate revokes over https
/// only) revokes it; the database verifies it, then refuses it.
fn a_stock_client_gets_introspects_and_revokes(
    http: &Http,
    metadata: &Value,
    issuer: &str,
    db: &mut postgres::Client,
) {
    let client = BasicClient::new(ClientId::new("listener-client".into()))
        .set_client_secret(ClientSecret::new(
            "a-long-enough-secret-for-the-listener".into(),
        ))
        .set_auth_type(AuthType::BasicAuth)
        .set_token_uri(TokenUrl::new(url(metadata, "token_endpoint")).unwrap())
        .set_introspection_url(
            IntrospectionUrl::new(url(metadata, "introspection_endpoint")).unwrap(),
        );
    let token = client
        .exchange_client_credentials()
        .request(http)
        .unwrap_or_else(|e| panic!("token from the listener: {e:?}"));
    let access = token.access_token().secret().clone();
    let verified = json(db, "SELECT oauth.auth_verify($1)", &[&access]);
    assert_eq!(verified["client_id"], "listener-client");
    assert_eq!(verified["iss"], issuer);

    let introspection = client
        .introspect(&AccessToken::new(access.clone()))
        .request(http)
        .unwrap();
    assert!(introspection.active());
    // The oauth2 crate revokes over https only (the listener speaks plain HTTP: TLS is a
    // proxy's here), so the RFC 7009 request is made by hand.
    let revoked = http
        .post(url(metadata, "revocation_endpoint"))
        .basic_auth(
            "listener-client",
            Some("a-long-enough-secret-for-the-listener"),
        )
        .form(&[("token", access.as_str())])
        .send()
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let introspection = client
        .introspect(&AccessToken::new(access.clone()))
        .request(http)
        .unwrap();
    assert!(!introspection.active());
    assert!(db
        .query_one("SELECT oauth.auth_verify($1)", &[&access])
        .is_err());
}

/// RFC 6749 answers from the same handler PostgREST uses: a wrong secret is a 401 with a
/// Basic challenge, recorded with the socket peer as its source; GET is 405, an unknown path
/// 404, a body over the limit 413.
fn errors_are_rfc6749_answers(
    http: &Http,
    metadata: &Value,
    issuer: &str,
    db: &mut postgres::Client,
) {
    let refused = http
        .post(url(metadata, "token_endpoint"))
        .basic_auth("listener-client", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().contains_key("www-authenticate"));
    let source: String = db
        .query_one(
            "SELECT source FROM oauth.auth_failure WHERE client_id = 'listener-client'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(source, "127.0.0.1");
    let get = http.get(url(metadata, "token_endpoint")).send().unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.headers()["allow"], "POST");
    let unknown = http.get(format!("{issuer}/nothing-here")).send().unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let too_large = http
        .post(url(metadata, "token_endpoint"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 100_000])
        .send()
        .unwrap();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// RFC 8707: each repeated `resource` field names one more audience, and the token is for
/// all of them; any other repeated parameter is refused (RFC 6749 §3.1), where a form parser
/// keeping the last value would have issued a token for the last resource only.
fn repeated_parameters(http: &Http, metadata: &Value, db: &mut postgres::Client) {
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, token_format, audience)
         VALUES ('two-apis', 'a-long-enough-secret-for-the-listener', 'jwt',
                 '{https://a.example/api,https://b.example/api}')",
    )
    .unwrap();
    let post = |form: &[(&str, &str)]| {
        let response = http
            .post(url(metadata, "token_endpoint"))
            .basic_auth("two-apis", Some("a-long-enough-secret-for-the-listener"))
            .form(form)
            .send()
            .unwrap();
        (response.status(), response.json::<Value>().unwrap())
    };
    let (status, body) = post(&[
        ("grant_type", "client_credentials"),
        ("resource", "https://a.example/api"),
        ("resource", "https://b.example/api"),
    ]);
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let claims = json(db, "SELECT oauth.auth_verify($1)", &[&token]);
    assert_eq!(
        claims["aud"],
        serde_json::json!(["https://a.example/api", "https://b.example/api"])
    );
    let (status, body) = post(&[
        ("grant_type", "client_credentials"),
        ("scope", "read"),
        ("scope", "write"),
    ]);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("\"scope\" is repeated"),
        "{body}"
    );
}

/// Hostile connections do not starve the others: hundreds of idle and half-sent requests
/// from one address (127.0.0.2) are open while a client from another is served; a request
/// line that is not HTTP gets 400. (From one address, a worker keeps at most
/// pg_oauth.http_max_connections_per_source, 256, and closes the rest at once: the kernel may
/// hand one worker most of the 300, so the client and the probe come from 127.0.0.1.)
fn hostile_connections_starve_no_one(http: &Http, metadata: &Value, port: u16) {
    use std::io::{Read, Write};
    let address = format!("127.0.0.1:{port}");
    let target: std::net::SocketAddr = address.parse().unwrap();
    let mut idle: Vec<std::net::TcpStream> = (0..300)
        .map(|i| {
            let mut s = pg_oauth_harness::connect_from([127, 0, 0, 2], target).unwrap();
            if i % 2 == 0 {
                // Best effort: one the worker closed at once may refuse the write.
                let _ = s.write_all(b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Le");
            }
            s
        })
        .collect();
    let served = http.get(url(metadata, "jwks_uri")).send().unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    let mut garbage = std::net::TcpStream::connect(&address).unwrap();
    garbage
        .write_all(b"\x00\xff not http at all\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = garbage.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    idle.clear();
}

/// A worker that crashes (SIGKILL) is started again (after the postmaster's crash restart),
/// and the listener answers again.
fn a_crashed_worker_comes_back(
    http: &Http,
    metadata: &Value,
    cluster: &Cluster,
    mut db: postgres::Client,
) {
    let pid: i32 = db
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_oauth http listener' LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    drop(db);
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    // Back means: the postmaster's crash restart is over, two new workers run, and they answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let connection = format!(
        "host=127.0.0.1 port={} dbname=postgres user=postgres",
        cluster.port
    );
    loop {
        let new_workers = postgres::Client::connect(&connection, postgres::NoTls)
            .and_then(|mut db| {
                db.query_one(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE backend_type = 'pg_oauth http listener' AND pid <> $1",
                    &[&pid],
                )
            })
            .map(|row| row.get::<_, i64>(0))
            .unwrap_or(0);
        let answers = new_workers == 2
            && http
                .get(url(metadata, "jwks_uri"))
                .timeout(std::time::Duration::from_secs(2))
                .send()
                .is_ok_and(|r| r.status() == StatusCode::OK);
        if answers {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the listener did not come back"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_discovery_based_client_knows_only_the_issuer() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let (_cluster, mut db) = listener_cluster(
        "listener-discovery",
        port,
        &issuer,
        &[],
        "INSERT INTO oauth.client (id, secret, scope)
         VALUES ('discovering-client', 'a-long-enough-secret-for-the-listener', '{read,write}');",
    );
    // panva's openid-client (Node.js): Issuer.discover, then grant, introspect, revoke.
    let seen = node_json(
        &[
            "client.mjs",
            &issuer,
            "discovering-client",
            "a-long-enough-secret-for-the-listener",
        ],
        &[],
    );
    assert_eq!(seen["issuer"], issuer.as_str());
    assert_eq!(seen["token_endpoint"], format!("{issuer}/token"));
    // The library normalises the type to lower case (RFC 6749 §7.1: case-insensitive).
    assert!(seen["token_type"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("bearer")));
    assert_eq!(seen["scope"], "read");
    assert_eq!(seen["active_before"], true);
    assert_eq!(seen["client_id_before"], "discovering-client");
    assert_eq!(seen["active_after"], false);
    // The token it was given is the database's: revoked there too.
    let access = seen["access_token"].as_str().unwrap();
    let refused = db
        .query_one("SELECT oauth.auth_verify($1)", &[&access])
        .unwrap_err();
    let (_, message) = pg_oauth_harness::db_error(&refused);
    assert!(message.contains("revoked"), "{message}");
}

/// A certificate and key the server's user can read, in `dir`.
fn server_certificate(dir: &std::path::Path) -> (String, String) {
    std::fs::create_dir_all(dir).unwrap();
    let (crt, key) = pg_oauth_harness::self_signed_certificate(dir);
    if pg_oauth_harness::is_root() {
        for file in [&crt, &key] {
            std::process::Command::new("chown")
                .arg("postgres:postgres")
                .arg(file)
                .status()
                .unwrap();
        }
    }
    (crt.display().to_string(), key.display().to_string())
}

fn trusting(crt: &str) -> Http {
    let pem = std::fs::read(crt).unwrap();
    Http::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn over_tls_a_stock_client_revokes_too_and_a_renewed_certificate_applies_on_reload() {
    let port = free_port();
    let issuer = format!("https://localhost:{port}");
    let certs = std::env::temp_dir().join(format!("pg_oauth-listener-tls-{}", std::process::id()));
    let (crt, key) = server_certificate(&certs.join("first"));
    let (crt_setting, key_setting) = (format!("'{crt}'"), format!("'{key}'"));
    let (cluster, mut db) = listener_cluster(
        "listener-tls",
        port,
        &issuer,
        &[
            ("pg_oauth.http_tls_cert", &crt_setting),
            ("pg_oauth.http_tls_key", &key_setting),
        ],
        "INSERT INTO oauth.client (id, secret, scope)
         VALUES ('tls-client', 'a-long-enough-secret-for-the-listener', '{read}');",
    );
    let http = trusting(&crt);
    let metadata: Value = http
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    // Over https the oauth2 crate does all of it itself, revocation included.
    let client = BasicClient::new(ClientId::new("tls-client".into()))
        .set_client_secret(ClientSecret::new(
            "a-long-enough-secret-for-the-listener".into(),
        ))
        .set_auth_type(AuthType::BasicAuth)
        .set_token_uri(TokenUrl::new(url(&metadata, "token_endpoint")).unwrap())
        .set_introspection_url(
            IntrospectionUrl::new(url(&metadata, "introspection_endpoint")).unwrap(),
        )
        .set_revocation_url(
            oauth2::RevocationUrl::new(url(&metadata, "revocation_endpoint")).unwrap(),
        );
    let token = client
        .exchange_client_credentials()
        .request(&http)
        .unwrap_or_else(|e| panic!("token over TLS: {e:?}"));
    let access = AccessToken::new(token.access_token().secret().clone());
    assert!(client.introspect(&access).request(&http).unwrap().active());
    client
        .revoke_token(oauth2::StandardRevocableToken::AccessToken(access.clone()))
        .unwrap()
        .request(&http)
        .unwrap_or_else(|e| panic!("revocation over TLS: {e:?}"));
    assert!(!client.introspect(&access).request(&http).unwrap().active());

    // Plain HTTP on the TLS port gets no HTTP answer.
    use std::io::{Read, Write};
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let _ = plain.write_all(b"GET /jwks HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

    // A renewed certificate: new files, a reload, and new connections present it.
    let (crt2, key2) = server_certificate(&certs.join("second"));
    for statement in [
        format!("ALTER SYSTEM SET pg_oauth.http_tls_cert = '{crt2}'"),
        format!("ALTER SYSTEM SET pg_oauth.http_tls_key = '{key2}'"),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        db.batch_execute(&statement).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // A fresh client per try: no pooled connection from before the reload.
        let renewed = (0..8).all(|_| {
            trusting(&crt2)
                .get(format!("{issuer}/jwks"))
                .send()
                .is_ok_and(|r| r.status() == StatusCode::OK)
        });
        if renewed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate never applied"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(trusting(&crt).get(format!("{issuer}/jwks")).send().is_err());
    drop(db);
    drop(cluster);
    let _ = std::fs::remove_dir_all(certs);
}
