//! Mutual TLS (RFC 8705) at pg_oauth's listener, with clients none of us wrote: curl with a
//! client certificate, and the oauth2 crate over reqwest with a TLS identity. Clients
//! authenticate by certificate (tls_client_auth: issued by the configured CA, with the
//! registered subject DN or SAN; self_signed_tls_client_auth: the certificate registered in
//! the client's JWK Set) and get tokens bound to it (`cnf.x5t#S256`). Where the data is,
//! `oauth.auth_verify` takes the token only with its certificate.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine;
use oauth2::basic::BasicClient;
use oauth2::{ClientId, TokenResponse, TokenUrl};
use pg_oauth_harness::certs::Cert;
use pg_oauth_harness::{expect_error, free_port, is_root, listener_cluster, postgres};
use serde_json::Value;

const SECRET: &str = "a-long-enough-secret-for-the-listener";

/// The certificates of the test, in a directory the server's user can read.
struct Certs {
    dir: PathBuf,
    server: (String, String),
    ca: Cert,
    /// Issued by `ca` to CN=svc-a with the DNS name svc-a.example.
    svc_a: Cert,
    /// The same subject and name, issued by a CA nobody configured.
    rogue_a: Cert,
    /// Self-signed, registered by client svc-b.
    svc_b: Cert,
    /// Self-signed, registered nowhere: a thief's.
    thief: Cert,
}

fn certs(name: &str) -> Certs {
    let dir = std::env::temp_dir().join(format!("pg_oauth-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (crt, key) = pg_oauth_harness::self_signed_certificate(&dir);
    let ca = Cert::authority(&dir, "pg_oauth test CA");
    let rogue = Cert::authority(&dir.join("rogue"), "pg_oauth test CA");
    let subject = "/O=pg_oauth tests/CN=svc-a";
    let svc_a = Cert::issued(&dir, "svc-a", subject, "DNS:svc-a.example", &ca);
    let rogue_a = Cert::issued(&dir, "rogue-a", subject, "DNS:svc-a.example", &rogue);
    let svc_b = Cert::self_signed(&dir, "svc-b", "/CN=svc-b");
    let thief = Cert::self_signed(&dir, "thief", "/CN=svc-b");
    if is_root() {
        for file in [&crt, &key] {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(file)
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    Certs {
        server: (crt.display().to_string(), key.display().to_string()),
        dir,
        ca,
        svc_a,
        rogue_a,
        svc_b,
        thief,
    }
}

/// `curl` POSTing `form` to `url`, presenting `cert` (if any): (status, JSON body).
fn curl(url: &str, server_crt: &str, cert: Option<&Cert>, form: &[&str]) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--cacert", server_crt, "-w", "\n%{http_code}"]);
    if let Some(cert) = cert {
        cmd.arg("--cert").arg(&cert.crt).arg("--key").arg(&cert.key);
    }
    for field in form {
        cmd.args(["--data-urlencode", field]);
    }
    let out = cmd.arg(url).output().expect("curl (apt install curl)");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (
        status.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// The claims of a JWT, unverified (what it says it is bound to).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// reqwest trusting the listener's certificate, presenting `identity`.
fn http_with(server_crt: &str, identity: Option<&Cert>) -> reqwest::blocking::Client {
    let pem = std::fs::read(server_crt).unwrap();
    let mut builder = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10));
    if let Some(cert) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(&cert.identity()).unwrap());
    }
    builder.build().unwrap()
}

const CLIENTS: &str = "
    INSERT INTO oauth.client (id, secret, scope, token_format,
                              tls_client_certificate_bound_access_tokens,
                              tls_client_auth_subject_dn, tls_client_auth_san_dns, jwks)
    VALUES ('svc-a', NULL, '{read}', 'jwt', true, 'CN=svc-a, O=pg_oauth tests', NULL, NULL),
           ('svc-a-dns', NULL, '{read}', 'opaque', true, NULL, 'svc-a.example', NULL),
           ('svc-b', NULL, '{read}', 'jwt', true, NULL, NULL, $1),
           ('svc-secret', 'a-long-enough-secret-for-the-listener', '{read}', 'opaque', true,
            NULL, NULL, NULL),
           ('plain', 'a-long-enough-secret-for-the-listener', '{read}', 'jwt', false,
            NULL, NULL, NULL)";

#[test]
fn clients_authenticate_by_certificate_and_their_tokens_work_only_with_it() {
    let port = free_port();
    let issuer = format!("https://localhost:{port}");
    let c = certs("mtls-listener");
    let (crt, key) = (&c.server.0, &c.server.1);
    let ca_setting = format!("'{}'", c.ca.crt.display());
    let (crt_setting, key_setting) = (format!("'{crt}'"), format!("'{key}'"));
    let (cluster, mut db) = listener_cluster(
        "mtls-listener",
        port,
        &issuer,
        &[
            ("pg_oauth.http_tls_cert", &crt_setting),
            ("pg_oauth.http_tls_key", &key_setting),
            ("pg_oauth.http_tls_client_certificates", "on"),
            ("pg_oauth.tls_client_ca_file", &ca_setting),
        ],
        "",
    );
    db.execute(CLIENTS, &[&c.svc_b.jwks()]).unwrap();
    let token_url = format!("{issuer}/token");
    let grant = "grant_type=client_credentials";

    // RFC 8705 §3.3: the metadata says so.
    let metadata: Value = http_with(crt, None)
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], true);
    for method in ["tls_client_auth", "self_signed_tls_client_auth"] {
        let methods = metadata["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap();
        assert!(methods.contains(&Value::from(method)), "{metadata}");
    }

    // self_signed_tls_client_auth with curl: the registered certificate.
    let (status, body) = curl(&token_url, crt, Some(&c.svc_b), &[grant, "client_id=svc-b"]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["token_type"], "Bearer",
        "RFC 8705 tokens are bearer tokens"
    );
    let token_b = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&token_b)["cnf"]["x5t#S256"], c.svc_b.x5t());
    // Another self-signed certificate with the same subject is not the registered one.
    let (status, body) = curl(&token_url, crt, Some(&c.thief), &[grant, "client_id=svc-b"]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client")),
        "{body}"
    );

    // tls_client_auth with the oauth2 crate over reqwest presenting the CA-issued certificate.
    let library = |cert: &Cert, client_id: &str| {
        BasicClient::new(ClientId::new(client_id.into()))
            .set_token_uri(TokenUrl::new(token_url.clone()).unwrap())
            .exchange_client_credentials()
            .request(&http_with(crt, Some(cert)))
    };
    let token_a = library(&c.svc_a, "svc-a").unwrap_or_else(|e| panic!("svc-a: {e:?}"));
    let token_a = token_a.access_token().secret().clone();
    assert_eq!(claims(&token_a)["cnf"]["x5t#S256"], c.svc_a.x5t());
    // The same subject from a CA nobody configured, and a self-signed one: refused.
    for cert in [&c.rogue_a, &c.thief] {
        let refused = library(cert, "svc-a");
        assert!(refused.is_err(), "{refused:?}");
    }
    // By subject alternative name (curl), an opaque token.
    let (status, body) = curl(
        &token_url,
        crt,
        Some(&c.svc_a),
        &[grant, "client_id=svc-a-dns"],
    );
    assert_eq!(status, 200, "{body}");
    let token_dns = body["access_token"].as_str().unwrap().to_owned();
    // No certificate: no authentication.
    let (status, body) = curl(&token_url, crt, None, &[grant, "client_id=svc-a"]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client")),
        "{body}"
    );

    // A client that authenticates by secret gets its tokens bound to its certificate, and
    // without one gets none.
    let secret = format!("client_secret={SECRET}");
    let form = [grant, "client_id=svc-secret", secret.as_str()];
    let (status, body) = curl(&token_url, crt, Some(&c.thief), &form);
    assert_eq!(status, 200, "{body}");
    let token_secret = body["access_token"].as_str().unwrap().to_owned();
    let (status, body) = curl(&token_url, crt, None, &form);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    // Introspection shows the confirmation (RFC 8705 §3.2).
    let (status, body) = curl(
        &format!("{issuer}/introspect"),
        crt,
        None,
        &[
            "client_id=svc-secret",
            &secret,
            &format!("token={token_secret}"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], true);
    assert_eq!(body["cnf"]["x5t#S256"], c.thief.x5t(), "{body}");
    assert_eq!(body["token_type"], "Bearer");

    where_the_data_is(
        &mut db,
        &c,
        &[
            (&token_b, &c.svc_b),
            (&token_a, &c.svc_a),
            (&token_dns, &c.svc_a),
            (&token_secret, &c.thief),
        ],
    );
    // A client without binding gets a plain token even with a certificate.
    let (status, body) = curl(
        &token_url,
        crt,
        Some(&c.svc_b),
        &[grant, "client_id=plain", &secret],
    );
    assert_eq!(status, 200, "{body}");
    assert!(claims(body["access_token"].as_str().unwrap())
        .get("cnf")
        .is_none());
    drop(cluster);
    let _ = std::fs::remove_dir_all(&c.dir);
}

/// oauth.auth_verify takes each token with the certificate it is bound to (in each form a
/// proxy or a caller may pass it), and refuses it without, or with another.
fn where_the_data_is(db: &mut postgres::Client, c: &Certs, tokens: &[(&String, &Cert)]) {
    let verify = "SELECT oauth.auth_verify($1, dpop => NULL, htm => NULL, htu => NULL, \
                  client_certificate => $2)";
    for (token, cert) in tokens {
        let der = base64::engine::general_purpose::STANDARD.encode(cert.der());
        for form in [cert.pem(), der] {
            let claims: Value = db.query_one(verify, &[token, &form]).unwrap().get(0);
            assert_eq!(claims["cnf"]["x5t#S256"], cert.x5t());
        }
        let other = if std::ptr::eq(*cert, &c.thief) {
            &c.svc_b
        } else {
            &c.thief
        };
        let (state, message) = expect_error(db, verify, &[token, &other.pem()]);
        assert_eq!(state, "28000");
        assert!(
            message.contains("bound to another client certificate"),
            "{message}"
        );
        let (_, message) = expect_error(db, "SELECT oauth.auth_verify($1)", &[token]);
        assert!(message.contains("certificate-bound"), "{message}");
    }
    let (_, message) = expect_error(db, verify, &[tokens[0].0, &"not a certificate"]);
    assert!(message.starts_with("invalid_request"), "{message}");
}

/// The listener asks for client certificates only when told to; behind a proxy that
/// terminates TLS, it reads the one the proxy forwards, and only from that proxy.
#[test]
fn without_the_setting_the_listener_asks_for_no_certificate_but_a_trusted_proxy_may_forward_one() {
    let port = free_port();
    let issuer = format!("https://localhost:{port}");
    let c = certs("mtls-off");
    let (crt, key) = (&c.server.0, &c.server.1);
    let (crt_setting, key_setting) = (format!("'{crt}'"), format!("'{key}'"));
    let (cluster, mut db) = listener_cluster(
        "mtls-off",
        port,
        &issuer,
        &[
            ("pg_oauth.http_tls_cert", &crt_setting),
            ("pg_oauth.http_tls_key", &key_setting),
        ],
        "",
    );
    db.execute(CLIENTS, &[&c.svc_b.jwks()]).unwrap();
    let (status, body) = curl(
        &format!("{issuer}/token"),
        crt,
        Some(&c.svc_b),
        &["grant_type=client_credentials", "client_id=svc-b"],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client")),
        "{body}"
    );
    let metadata: Value = http_with(crt, None)
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        metadata["tls_client_certificate_bound_access_tokens"],
        false
    );

    // A proxy in front of the listener forwards the certificate in a header, believed only
    // from a peer in pg_oauth.http_trusted_proxies.
    let escaped: String = c.svc_b.pem().replace(' ', "%20").replace('\n', "%0A");
    let forwarded = |db: &mut postgres::Client, trusted: &str| {
        for statement in [
            "ALTER SYSTEM SET pg_oauth.client_certificate_header = 'x-ssl-client-cert'".to_owned(),
            format!("ALTER SYSTEM SET pg_oauth.http_trusted_proxies = '{trusted}'"),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            db.batch_execute(&statement).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        let out = Command::new("curl")
            .args(["-sS", "--cacert", crt, "-H"])
            .arg(format!("X-SSL-Client-Cert: {escaped}"))
            .args([
                "-d",
                "grant_type=client_credentials",
                "-d",
                "client_id=svc-b",
            ])
            .arg(format!("{issuer}/token"))
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let body = forwarded(&mut db, "10.9.9.9");
    assert_eq!(
        body["error"], "invalid_client",
        "not from a trusted proxy: {body}"
    );
    let body = forwarded(&mut db, "127.0.0.1");
    let token = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(claims(token)["cnf"]["x5t#S256"], c.svc_b.x5t());
    drop(cluster);
    let _ = std::fs::remove_dir_all(&c.dir);
}
