//! The production recipe: nginx (examples/nginx, Debian's nginx, TLS) as the public origin
//! and issuer, PostgREST behind it. A client that knows only the issuer URL discovers
//! everything else (RFC 8414) and uses it with a real OAuth library.

use std::collections::HashSet;

use base64::Engine;
use jwt_simple::prelude::*;
use oauth2::basic::BasicClient;
use oauth2::{
    AccessToken, AuthType, ClientId, ClientSecret, IntrospectionUrl, RevocationUrl,
    StandardRevocableToken, TokenIntrospectionResponse, TokenResponse, TokenUrl,
};
use pg_oauth_harness::{
    free_port, node_json, postgres, repo_root, self_signed_certificate, Cluster, Nginx, PostgRest,
};
use reqwest::blocking::Client as Http;
use reqwest::StatusCode;
use serde_json::Value;

struct Env {
    cluster: Cluster,
    _rest: PostgRest,
    nginx: Nginx,
    http: Http,
    /// The proxy's certificate (PEM), for clients that must trust it.
    crt: std::path::PathBuf,
}

fn start(name: &str) -> Env {
    let cluster = Cluster::start(name, &[]);
    let (crt, key) = self_signed_certificate(&cluster.dir);
    // The issuer is nginx's origin, so nginx's port is chosen before the database is set up.
    let port = free_port();
    let issuer = format!("https://127.0.0.1:{port}");
    cluster.recipe_app(
        &repo_root().join("examples/nginx/setup.sql"),
        &[("issuer", &issuer)],
    );
    let rest = PostgRest::start_with(&cluster, "app", &[("PGRST_JWT_AUD", &issuer)]);
    let nginx = Nginx::start_on(&cluster.dir, port, rest.port, &crt, &key);
    assert_eq!(nginx.origin(), issuer);
    let http = Http::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&crt).unwrap()).unwrap(),
        )
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Env {
        cluster,
        _rest: rest,
        nginx,
        http,
        crt,
    }
}

/// RFC 8414 §3: all a discovery-based client starts from is the issuer.
fn discover(http: &Http, issuer: &str) -> Value {
    let resp = http
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let metadata: Value = resp.json().unwrap();
    // §3.3: the issuer in the metadata MUST be identical to the one discovery started from.
    assert_eq!(metadata["issuer"], issuer, "{metadata}");
    metadata
}

fn url(metadata: &Value, name: &str) -> String {
    metadata[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} missing from {metadata}"))
        .to_owned()
}

/// Verify a JWT with keys fetched from the discovered jwks_uri (jwt-simple, not ours).
fn verify(http: &Http, metadata: &Value, token: &str) -> JWTClaims<Value> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Value =
        serde_json::from_slice(&b64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let jwks: Value = http
        .get(url(metadata, "jwks_uri"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the signing key is published");
    let mut point = vec![4u8];
    point.extend(b64.decode(jwk["x"].as_str().unwrap()).unwrap());
    point.extend(b64.decode(jwk["y"].as_str().unwrap()).unwrap());
    let issuer = url(metadata, "issuer");
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([issuer.clone()])),
        allowed_audiences: Some(HashSet::from([issuer])),
        ..Default::default()
    };
    ES256PublicKey::from_bytes(&point)
        .unwrap()
        .verify_token::<Value>(token, Some(options))
        .unwrap()
}

#[test]
fn a_client_that_knows_only_the_issuer_discovers_and_uses_every_endpoint() {
    let env = start("proxy-discovery");
    let issuer = env.nginx.origin();
    let metadata = discover(&env.http, &issuer);
    // The friendly paths the proxy serves, on the issuer's origin.
    for (name, path) in [
        ("token_endpoint", "/token"),
        ("jwks_uri", "/jwks"),
        ("revocation_endpoint", "/revoke"),
        ("introspection_endpoint", "/introspect"),
    ] {
        assert_eq!(url(&metadata, name), format!("{issuer}{path}"));
    }

    let client = BasicClient::new(ClientId::new("api-client".into()))
        .set_client_secret(ClientSecret::new("verysecret".into()))
        .set_auth_type(AuthType::BasicAuth)
        .set_token_uri(TokenUrl::new(url(&metadata, "token_endpoint")).unwrap())
        .set_introspection_url(
            IntrospectionUrl::new(url(&metadata, "introspection_endpoint")).unwrap(),
        )
        .set_revocation_url(RevocationUrl::new(url(&metadata, "revocation_endpoint")).unwrap());
    let token = client
        .exchange_client_credentials()
        .request(&env.http)
        .unwrap_or_else(|e| panic!("token through the proxy: {e:?}"));
    let access = token.access_token().secret().clone();
    let claims = verify(&env.http, &metadata, &access);
    assert_eq!(claims.subject.as_deref(), Some("api-client"));

    // PostgREST behind the proxy accepts it (its jwt-aud is the issuer).
    let notes = |token: &str| {
        env.http
            .get(format!("{issuer}/notes"))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(notes(&access), StatusCode::OK);

    let introspection = client
        .introspect(&AccessToken::new(access.clone()))
        .request(&env.http)
        .unwrap();
    assert!(introspection.active());
    assert_eq!(
        introspection.client_id().map(|c| c.as_str()),
        Some("api-client")
    );

    client
        .revoke_token(StandardRevocableToken::AccessToken(AccessToken::new(
            access.clone(),
        )))
        .unwrap()
        .request(&env.http)
        .unwrap();
    assert_eq!(notes(&access), StatusCode::UNAUTHORIZED);

    // SMART App Launch 2.x configuration at its well-known path.
    let smart: Value = env
        .http
        .get(format!("{issuer}/.well-known/smart-configuration"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(smart["token_endpoint"], metadata["token_endpoint"]);
    assert_eq!(smart["jwks_uri"], metadata["jwks_uri"]);
    let capabilities = smart["capabilities"].as_array().unwrap();
    assert!(capabilities.contains(&"client-confidential-asymmetric".into()));
    assert!(smart["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .contains(&"private_key_jwt".into()));
    // Not an OpenID provider: no OIDC discovery document that would not be valid.
    let oidc = env
        .http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .unwrap();
    assert_eq!(oidc.status(), StatusCode::NOT_FOUND);
}

#[test]
fn raw_basic_and_the_callers_address_pass_through_the_proxy() {
    let env = start("proxy-address");
    let issuer = env.nginx.origin();
    let mut db = env.cluster.connect("app");
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, scope, token_format)
         VALUES ('b64', 'q+Xz/9aL0w==', '{notes:read}', 'jwt');
         INSERT INTO oauth.policy (client_id, role) VALUES ('b64', 'api_user');",
    )
    .unwrap();
    let token = |id: &str, secret: &str, spoof: bool| {
        let mut req = env
            .http
            .post(format!("{issuer}/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")]);
        if spoof {
            req = req.header("X-Forwarded-For", "203.0.113.9");
        }
        req.send().unwrap().status()
    };
    assert_eq!(token("b64", "q+Xz/9aL0w==", false), StatusCode::OK);
    // A failure is recorded against the caller's address, as nginx saw it: a header the
    // caller sent is replaced, not trusted.
    assert_eq!(token("b64", "wrong", true), StatusCode::UNAUTHORIZED);
    let sources: Vec<String> = db
        .query(
            "SELECT DISTINCT source FROM oauth.auth_failure WHERE client_id = 'b64'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sources, ["127.0.0.1"]);
}

/// Over HTTP pg_oauth answers refusals at once, so the recipe bounds their rate per address:
/// a burst beyond nginx's limit is answered 429 before it reaches PostgREST, and the limit
/// is per address (another caller is served).
#[test]
fn the_recipe_rate_limits_client_authentication_per_address() {
    let env = start("proxy-rate-limit");
    let issuer = env.nginx.origin();
    // Cheap requests (no client authentication is reached), as fast as one connection goes.
    let statuses: Vec<StatusCode> = (0..300)
        .map(|_| {
            env.http
                .post(format!("{issuer}/token"))
                .form(&[("grant_type", "password")])
                .send()
                .unwrap()
                .status()
        })
        .collect();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    // unsupported_grant_type (400) or no client authentication (401), from pg_oauth.
    let answered = statuses
        .iter()
        .filter(|s| [StatusCode::BAD_REQUEST, StatusCode::UNAUTHORIZED].contains(s))
        .count();
    assert_eq!(limited + answered, 300, "{statuses:?}");
    assert!(answered >= 40, "the burst is served: {answered}");
    assert!(limited >= 100, "the rest is limited: {limited} of 300");
    // Discovery is not limited.
    assert_eq!(
        env.http
            .get(format!("{issuer}/.well-known/oauth-authorization-server"))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// DPoP (RFC 9449) through the recipe, with openid-client (Node.js): a client that must use
/// DPoP gets a bound token at the proxy's token endpoint and reads the API with it
/// (`Authorization: DPoP`, which PostgREST does not read: the pre-request hook checks the
/// proof and gives the request the token's role and claims, so row-level security applies).
/// What a thief could do with what it saw is refused, each with a DPoP challenge: the request
/// replayed, the token as a bearer token or without a proof, with a proof by another key, and
/// the seen proof at another URL (an endpoint of the same API). For a JWT (PostgREST could
/// read it as a bearer token) and an opaque token (it could not); then with server nonces
/// required (RFC 9449 §8).
#[test]
fn dpop_bound_tokens_read_the_api_only_with_their_key() {
    let env = start("proxy-dpop");
    let issuer = env.nginx.origin();
    let mut db = env.cluster.connect("app");
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, scope, token_format, dpop_bound_access_tokens)
         VALUES ('dpop-jwt', 'a-long-enough-secret-for-dpop', '{notes:read}', 'jwt', true),
                ('dpop-opaque', 'a-long-enough-secret-for-dpop', '{notes:read}', 'opaque', true);
         INSERT INTO oauth.policy (client_id, role)
         VALUES ('dpop-jwt', 'api_user'), ('dpop-opaque', 'api_user');",
    )
    .unwrap();
    let metadata_at =
        format!("resource_metadata=\"{issuer}/.well-known/oauth-protected-resource\"");
    for (client, alg, nonce) in [
        ("dpop-jwt", "ES256", false),
        ("dpop-opaque", "EdDSA", false),
        ("dpop-jwt", "PS256", true),
    ] {
        if nonce {
            // RFC 9449 §8: proofs must carry a server nonce; the library learns it from the
            // use_dpop_nonce answer's DPoP-Nonce header and retries.
            db.batch_execute("ALTER SYSTEM SET pg_oauth.dpop_nonce = on")
                .unwrap();
            db.batch_execute("SELECT pg_reload_conf()").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        let seen = node_json(
            &[
                "dpop_api.mjs",
                &issuer,
                client,
                "a-long-enough-secret-for-dpop",
                alg,
                &format!("{issuer}/notes"),
                &format!("{issuer}/jwks"),
            ],
            &[("NODE_EXTRA_CA_CERTS", env.crt.to_str().unwrap())],
        );
        assert!(
            seen["token_type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("dpop")),
            "{seen}"
        );
        assert_eq!(seen["scheme"], "DPoP", "{seen}");
        assert_eq!(seen["proof_nonce"].is_string(), nonce, "{seen}");
        assert_eq!(seen["status"], 200, "{client}: {seen}");
        assert_eq!(seen["rows"], 1, "row-level security saw notes:read: {seen}");
        for (attack, said) in [
            ("replayed", "already used"),
            ("as_bearer", "DPoP-bound"),
            ("no_proof", "no DPoP proof"),
            ("thief", "not signed by the key"),
            ("elsewhere", "not this URL"),
        ] {
            let answer = &seen[attack];
            assert_eq!(answer["status"], 401, "{client} {attack}: {seen}");
            if client == "dpop-opaque" && attack == "as_bearer" {
                continue; // PostgREST itself refuses what is not a JWT.
            }
            let challenge = answer["challenge"].as_str().unwrap_or_default();
            assert!(
                challenge.starts_with("DPoP error=")
                    && challenge.contains(said)
                    && challenge.contains(&metadata_at),
                "{client} {attack}: {challenge}"
            );
        }
    }
    the_api_may_take_only_dpop_bound_tokens(&env, &mut db, &metadata_at);
}

/// RFC 9728: the API's metadata at its well-known place, where every challenge points; and
/// `pg_oauth.dpop_required`, after which the API refuses bearer tokens (and says so there).
fn the_api_may_take_only_dpop_bound_tokens(env: &Env, db: &mut postgres::Client, at: &str) {
    let issuer = env.nginx.origin();
    let document = |http: &Http| -> Value {
        let url = format!("{issuer}/.well-known/oauth-protected-resource");
        http.get(url).send().unwrap().json().unwrap()
    };
    let prm = document(&env.http);
    assert_eq!(prm["resource"], issuer.as_str());
    assert_eq!(prm["authorization_servers"], serde_json::json!([issuer]));
    assert_eq!(
        prm["bearer_methods_supported"],
        serde_json::json!(["header"])
    );
    assert_eq!(prm["dpop_bound_access_tokens_required"], false);
    assert!(at.contains(&format!(
        "\"{issuer}/.well-known/oauth-protected-resource\""
    )));

    let bearer: String = db
        .query_one(
            "SELECT oauth.auth_token('client_credentials', 'api-client', 'verysecret') ->> 'access_token'",
            &[],
        )
        .unwrap()
        .get(0);
    let notes = |token: &str| {
        env.http
            .get(format!("{issuer}/notes"))
            .bearer_auth(token)
            .send()
            .unwrap()
    };
    assert_eq!(notes(&bearer).status(), StatusCode::OK);
    db.batch_execute("ALTER SYSTEM SET pg_oauth.dpop_required = on")
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let refused = notes(&bearer);
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let challenge = refused.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("DPoP error=\"invalid_token\"")
            && challenge.contains("only DPoP-bound tokens")
            && challenge.contains(at),
        "{challenge}"
    );
    assert_eq!(
        document(&env.http)["dpop_bound_access_tokens_required"],
        true
    );
}

/// Certificate-bound tokens (RFC 8705) through the recipe: nginx takes any client certificate
/// and forwards it in the header pg_oauth reads from PostgREST's sessions only. curl gets a
/// token bound to its certificate; the API (the pre-request hook) serves it only over a
/// connection with that certificate: not with another one, not without, and not when the
/// caller sends the forwarding header itself with the right certificate (a public document).
#[test]
fn certificate_bound_tokens_read_the_api_only_over_their_certificate() {
    use pg_oauth_harness::certs::Cert;
    let env = start("proxy-mtls");
    let issuer = env.nginx.origin();
    let dir = env.cluster.dir.join("client-certs");
    let svc = Cert::self_signed(&dir, "svc", "/CN=svc");
    let thief = Cert::self_signed(&dir, "thief", "/CN=svc");
    let mut db = env.cluster.connect("app");
    db.execute(
        "INSERT INTO oauth.client (id, scope, token_format, jwks,
                                   tls_client_certificate_bound_access_tokens)
         VALUES ('mtls', '{notes:read}', 'jwt', $1, true)",
        &[&svc.jwks()],
    )
    .unwrap();
    db.batch_execute("INSERT INTO oauth.policy (client_id, role) VALUES ('mtls', 'api_user')")
        .unwrap();
    let metadata = discover(&env.http, &issuer);
    assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], true);
    let prm: Value = env
        .http
        .get(format!("{issuer}/.well-known/oauth-protected-resource"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(prm["tls_client_certificate_bound_access_tokens"], true);

    // curl, with its certificate, at the discovered token endpoint.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&env.crt)
        .arg("--cert")
        .arg(&svc.crt)
        .arg("--key")
        .arg(&svc.key)
        .args([
            "-d",
            "grant_type=client_credentials",
            "-d",
            "client_id=mtls",
        ])
        .arg(url(&metadata, "token_endpoint"))
        .output()
        .expect("curl");
    let body: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let token = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"));
    let claims = verify(&env.http, &metadata, token);
    assert_eq!(claims.custom["cnf"]["x5t#S256"], svc.x5t());

    let api = |cert: Option<&Cert>, forwarded: Option<&str>| {
        let mut http = Http::builder().add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&env.crt).unwrap()).unwrap(),
        );
        if let Some(cert) = cert {
            http = http.identity(reqwest::Identity::from_pem(&cert.identity()).unwrap());
        }
        let mut request = http
            .build()
            .unwrap()
            .get(format!("{issuer}/notes"))
            .bearer_auth(token);
        if let Some(pem) = forwarded {
            request = request.header("X-SSL-Client-Cert", pem.replace('\n', "%0A"));
        }
        let resp = request.send().unwrap();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let status = resp.status();
        let rows = resp
            .json::<Value>()
            .ok()
            .and_then(|v| v.as_array().map(Vec::len));
        (status, challenge, rows)
    };
    let (status, _, rows) = api(Some(&svc), None);
    assert_eq!((status, rows), (StatusCode::OK, Some(1)));
    let escaped = svc.pem().replace(' ', "%20");
    for (cert, forwarded, said) in [
        (Some(&thief), None, "bound to another client certificate"),
        (None, None, "certificate-bound"),
        (None, Some(escaped.as_str()), "certificate-bound"),
        (
            Some(&thief),
            Some(escaped.as_str()),
            "bound to another client certificate",
        ),
    ] {
        let (status, challenge, _) = api(cert, forwarded);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\"") && challenge.contains(said),
            "{challenge}"
        );
    }
}

/// Token exchange (RFC 8693) through the recipe, driven by openid-client's generic grant: a
/// gateway trades a token it was handed for a delegated one of its own, narrowed to
/// notes:read; PostgREST serves the API with it (the subject's role, row-level security on
/// its scopes), and refuses it once the subject token is revoked.
#[test]
fn an_exchanged_token_reads_the_api_and_dies_with_its_subject() {
    let env = start("proxy-exchange");
    let issuer = env.nginx.origin();
    let mut db = env.cluster.connect("app");
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, scope, token_format, grant_types)
         VALUES ('gateway', 'a-long-enough-secret-to-exchange', '{}', 'jwt',
                 '{client_credentials,urn:ietf:params:oauth:grant-type:token-exchange}');
         INSERT INTO oauth.exchange_policy (client_id, subject_client_id, scope)
         VALUES ('gateway', 'api-client', '{notes:read}');",
    )
    .unwrap();
    let metadata = discover(&env.http, &issuer);
    let client = BasicClient::new(ClientId::new("api-client".into()))
        .set_client_secret(ClientSecret::new("verysecret".into()))
        .set_auth_type(AuthType::BasicAuth)
        .set_token_uri(TokenUrl::new(url(&metadata, "token_endpoint")).unwrap())
        .set_revocation_url(RevocationUrl::new(url(&metadata, "revocation_endpoint")).unwrap());
    let subject = client
        .exchange_client_credentials()
        .request(&env.http)
        .unwrap_or_else(|e| panic!("subject token: {e:?}"));
    let subject = subject.access_token().secret().clone();
    let secret = "a-long-enough-secret-to-exchange";
    let token = exchanged_at_proxy(&env, "gateway", secret, &subject, "notes:read");
    let claims = verify(&env.http, &metadata, &token);
    assert_eq!(claims.subject.as_deref(), Some("api-client"));
    assert_eq!(claims.custom["client_id"], "gateway");
    assert_eq!(claims.custom["act"]["sub"], "gateway");
    assert_eq!(claims.custom["role"], "api_user");
    assert_eq!(
        notes_with(&env, &token),
        (StatusCode::OK, Some(1)),
        "notes:read"
    );

    client
        .revoke_token(StandardRevocableToken::AccessToken(AccessToken::new(
            subject,
        )))
        .unwrap()
        .request(&env.http)
        .unwrap_or_else(|e| panic!("revocation: {e:?}"));
    assert_eq!(notes_with(&env, &token).0, StatusCode::UNAUTHORIZED);
}

/// The seed's EHR case through the recipe: another issuer's token (its key made by panva's
/// jose, its JWK Set in oauth.trusted_issuer) is exchanged by openid-client at the proxy's
/// token endpoint, and PostgREST serves the API with the new token, as the role of the client
/// the issuer's subjects stand for, with row-level security on the scopes it got.
#[test]
fn another_issuers_token_exchanged_through_the_recipe_reads_the_api() {
    let env = start("proxy-exchange-external");
    let issuer = env.nginx.origin();
    let ehr = "https://ehr.example";
    let made = node_json(&["external.mjs", ehr, &issuer], &[]);
    let mut db = env.cluster.connect("app");
    db.batch_execute(
        "INSERT INTO oauth.client (id, scope) VALUES ('ehr-patients', '{}');
         INSERT INTO oauth.policy (client_id, role) VALUES ('ehr-patients', 'api_user');
         INSERT INTO oauth.client (id, secret, scope, token_format, grant_types)
         VALUES ('smart-app', 'a-long-enough-secret-to-exchange', '{}', 'jwt',
                 '{client_credentials,urn:ietf:params:oauth:grant-type:token-exchange}');
         INSERT INTO oauth.exchange_policy (client_id, subject_client_id)
         VALUES ('smart-app', 'ehr-patients');",
    )
    .unwrap();
    db.execute(
        "INSERT INTO oauth.trusted_issuer (issuer, jwks, algorithms, audiences,
                                           subject_client_id, scope)
         VALUES ($1, $2, '{ES256}', ARRAY[$3], 'ehr-patients', '{notes:read}')",
        &[&ehr, &made["jwks"], &issuer],
    )
    .unwrap();
    let ehr_token = made["tokens"]["valid"].as_str().unwrap();
    let secret = "a-long-enough-secret-to-exchange";
    let token = exchanged_at_proxy(&env, "smart-app", secret, ehr_token, "notes:read");
    let metadata = discover(&env.http, &issuer);
    let claims = verify(&env.http, &metadata, &token);
    assert_eq!(claims.subject.as_deref(), Some("patient-7"));
    assert_eq!(claims.custom["role"], "api_user");
    assert_eq!(
        notes_with(&env, &token),
        (StatusCode::OK, Some(1)),
        "notes:read"
    );
}

/// openid-client (exchange.mjs) at the proxy: `client` exchanges `subject` for `scope`, with
/// its own token as the actor. The new token.
fn exchanged_at_proxy(env: &Env, client: &str, secret: &str, subject: &str, scope: &str) -> String {
    let issuer = env.nginx.origin();
    let seen = node_json(
        &[
            "exchange.mjs",
            &issuer,
            client,
            secret,
            subject,
            scope,
            &issuer,
        ],
        &[("NODE_EXTRA_CA_CERTS", env.crt.to_str().unwrap())],
    );
    seen["exchanged"]["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{seen}"))
        .to_owned()
}

/// GET /notes with `token`: the status, and how many rows row-level security let through.
fn notes_with(env: &Env, token: &str) -> (StatusCode, Option<usize>) {
    let resp = env
        .http
        .get(format!("{}/notes", env.nginx.origin()))
        .bearer_auth(token)
        .send()
        .unwrap();
    let status = resp.status();
    let rows = resp
        .json::<Value>()
        .ok()
        .and_then(|v| v.as_array().map(Vec::len));
    (status, rows)
}
