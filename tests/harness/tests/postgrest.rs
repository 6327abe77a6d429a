//! pg_oauth behind a real PostgREST 12, configured by the shipped examples/postgrest files,
//! driven by a real OAuth client library (the `oauth2` crate).

use std::time::{Duration, Instant};

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, ClientId, ClientSecret, RefreshToken, RequestTokenError, Scope, TokenResponse,
    TokenUrl,
};
use pg_oauth_harness::{postgres, repo_root, Cluster, PostgRest};
use reqwest::blocking::{Client as Http, Response};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Env {
    cluster: Cluster,
    db: postgres::Client,
    rest: PostgRest,
    http: Http,
}

/// A cluster with the README recipe applied: setup.sql, demo.sql, and PostgREST.
fn start(name: &str) -> Env {
    let cluster = Cluster::start(name, &[]);
    cluster.recipe_app(&repo_root().join("examples/postgrest/setup.sql"), &[]);
    let db = cluster.connect("app");
    let rest = PostgRest::start(&cluster, "app");
    let http = Http::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Env {
        cluster,
        db,
        rest,
        http,
    }
}

impl Env {
    fn oauth_client(&self, id: &str, secret: &str, auth: AuthType) -> OAuthClient {
        BasicClient::new(ClientId::new(id.into()))
            .set_client_secret(ClientSecret::new(secret.into()))
            .set_token_uri(TokenUrl::new(self.rest.url("/rpc/token")).unwrap())
            .set_auth_type(auth)
    }

    fn get_with(&self, path: &str, token: &str) -> Response {
        self.http
            .get(self.rest.url(path))
            .bearer_auth(token)
            .send()
            .unwrap()
    }

    fn post_form(
        &self,
        path: &str,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Response {
        let mut req = self.http.post(self.rest.url(path)).form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        req.send().unwrap()
    }

    fn token(&self, id: &str, secret: &str) -> String {
        let client = self.oauth_client(id, secret, AuthType::BasicAuth);
        client
            .exchange_client_credentials()
            .request(&self.http)
            .unwrap_or_else(|e| panic!("token for {id}: {e:?}"))
            .access_token()
            .secret()
            .clone()
    }
}

type OAuthClient = oauth2::Client<
    oauth2::StandardErrorResponse<BasicErrorResponseType>,
    oauth2::StandardTokenResponse<oauth2::EmptyExtraTokenFields, oauth2::basic::BasicTokenType>,
    oauth2::StandardTokenIntrospectionResponse<
        oauth2::EmptyExtraTokenFields,
        oauth2::basic::BasicTokenType,
    >,
    oauth2::StandardRevocableToken,
    oauth2::StandardErrorResponse<oauth2::RevocationErrorResponseType>,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn body(resp: Response) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn header<'h>(headers: &'h reqwest::header::HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[test]
fn oauth2_client_gets_tokens_postgrest_accepts_and_revocation_is_honoured() {
    let env = start("pgrst-flow");

    // The oauth2 crate's client credentials exchange, with HTTP Basic and with body auth.
    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let resp = env
            .oauth_client("api-client", "verysecret", auth.clone())
            .exchange_client_credentials()
            .add_scope(Scope::new("notes:read".into()))
            .request(&env.http)
            .unwrap_or_else(|e| panic!("{auth:?}: {e:?}"));
        assert_eq!(resp.token_type().as_ref(), "bearer");
        assert_eq!(resp.expires_in(), Some(Duration::from_secs(3600)));
        let scopes: Vec<String> = resp
            .scopes()
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(scopes, ["notes:read"]);
        let token = resp.access_token().secret();
        // PostgREST switches to the policy role and applies RLS on the token's scopes.
        let (status, _, rows) = body(env.get_with("/notes", token));
        assert_eq!(status, StatusCode::OK, "{rows}");
        assert_eq!(rows[0]["body"], "hello from the database");
        // notes:read only: inserting is refused by the RLS policy.
        let denied = env
            .http
            .post(env.rest.url("/notes"))
            .bearer_auth(token)
            .json(&json!({ "body": "no write scope" }))
            .send()
            .unwrap();
        assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    }

    // All scopes by default: write works, and RLS sees the client id from the claims.
    let token = env.token("api-client", "verysecret");
    let created = env
        .http
        .post(env.rest.url("/notes"))
        .bearer_auth(&token)
        .header("Prefer", "return=representation")
        .json(&json!({ "body": "written by a client" }))
        .send()
        .unwrap();
    let (status, _, rows) = body(created);
    assert_eq!(status, StatusCode::CREATED, "{rows}");
    assert_eq!(rows[0]["author"], "api-client");
    let forged_author = env
        .http
        .post(env.rest.url("/notes"))
        .bearer_auth(&token)
        .json(&json!({ "body": "pretending", "author": "dba" }))
        .send()
        .unwrap();
    assert_eq!(forged_author.status(), StatusCode::FORBIDDEN);

    // Revocation through /rpc/revoke: PostgREST refuses the token right away.
    let other = env.token("api-client", "verysecret");
    assert_eq!(env.get_with("/notes", &token).status(), StatusCode::OK);
    let revoked = env.post_form(
        "/rpc/revoke",
        Some(("api-client", "verysecret")),
        &[("token", &token)],
    );
    let revoked_at = Instant::now();
    let (status, headers, _) = body(revoked);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    let (status, headers, err) = body(env.get_with("/notes", &token));
    assert!(
        revoked_at.elapsed() < Duration::from_secs(1),
        "refused within the same second"
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{err}");
    assert_eq!(
        header(&headers, "www-authenticate"),
        Some(concat!(
            "Bearer error=\"invalid_token\", error_description=\"access token has been revoked\", ",
            "resource_metadata=\"http://127.0.0.1:3000/.well-known/oauth-protected-resource\""
        ))
    );
    assert_eq!(err["code"], "invalid_token");
    // ...and only that token: the other one still works.
    assert_eq!(env.get_with("/notes", &other).status(), StatusCode::OK);

    // A DBA closing the session in SQL has the same effect.
    let mut db = env.cluster.connect("app");
    db.execute(
        "UPDATE oauth.session SET revoked_at = now() WHERE revoked_at IS NULL",
        &[],
    )
    .unwrap();
    assert_eq!(
        env.get_with("/notes", &other).status(),
        StatusCode::UNAUTHORIZED
    );

    // Refresh tokens through the oauth2 crate.
    db.execute(
        "UPDATE oauth.client SET refresh_token = true WHERE id = 'api-client'",
        &[],
    )
    .unwrap();
    let client = env.oauth_client("api-client", "verysecret", AuthType::BasicAuth);
    let first = client
        .exchange_client_credentials()
        .request(&env.http)
        .unwrap();
    let rt = first
        .refresh_token()
        .expect("a refresh token")
        .secret()
        .clone();
    let second = client
        .exchange_refresh_token(&RefreshToken::new(rt.clone()))
        .request(&env.http)
        .unwrap();
    assert_eq!(
        env.get_with("/notes", second.access_token().secret())
            .status(),
        StatusCode::OK
    );
    let reused = client
        .exchange_refresh_token(&RefreshToken::new(rt))
        .request(&env.http);
    match reused {
        Err(RequestTokenError::ServerResponse(e)) => {
            assert_eq!(*e.error(), BasicErrorResponseType::InvalidGrant)
        }
        other => panic!("reuse must be invalid_grant: {other:?}"),
    }
    assert_eq!(
        env.get_with("/notes", second.access_token().secret())
            .status(),
        StatusCode::UNAUTHORIZED,
        "reuse revoked the family"
    );
}

#[test]
fn token_endpoint_speaks_rfc6749_errors_and_formats() {
    let env = start("pgrst-errors");
    let mut db = env.cluster.connect("app");
    // Ids and secrets that need escaping in HTTP Basic; a client id with ':' must be a URI
    // (it becomes the JWT sub, an RFC 7519 StringOrURI).
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, scope, token_format)
         VALUES ('odd id/ü', 'p@ss:w0rd+&=% ü', '{notes:read}', 'jwt'),
                ('urn:example:a+b&c=d', 'p@ss:w0rd+&=% ü', '{notes:read}', 'jwt');
         INSERT INTO oauth.policy (client_id, role)
         VALUES ('odd id/ü', 'api_user'), ('urn:example:a+b&c=d', 'api_user');",
    )
    .unwrap();
    credentials_in_every_encoding(&env);
    every_rfc6749_error_with_its_status(&env, &mut db);
    introspection_and_revocation_need_the_client(&env);
    documents_over_get_and_the_token_endpoint_by_post(&env);
    tokens_postgrest_must_not_accept(&env, &mut db);
    several_audiences(&env, &mut db);
    drop(env.db);
}

/// Several audiences through PostgREST (docs/postgrest.md): one field with the values
/// space-separated, in a form or a JSON body; a repeated form field keeps its last value
/// (PostgREST's mapping of fields to arguments), which the docs say.
fn several_audiences(env: &Env, db: &mut postgres::Client) {
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, token_format, audience)
         VALUES ('two-apis', 'verysecret', 'jwt', '{https://a.example,https://b.example}')",
    )
    .unwrap();
    let both = json!(["https://a.example", "https://b.example"]);
    let aud = |response: Response| {
        jwt_part(ok(response)["access_token"].as_str().unwrap(), 1)["aud"].clone()
    };
    let json_body = env
        .http
        .post(env.rest.url("/rpc/token"))
        .basic_auth("two-apis", Some("verysecret"))
        .json(&json!({ "grant_type": "client_credentials",
                       "resource": "https://a.example https://b.example" }))
        .send()
        .unwrap();
    assert_eq!(aud(json_body), both, "a JSON body");
    let one_field = [
        ("grant_type", "client_credentials"),
        ("resource", "https://a.example https://b.example"),
    ];
    let basic = Some(("two-apis", "verysecret"));
    assert_eq!(aud(env.post_form("/rpc/token", basic, &one_field)), both);
    let repeated = [
        ("grant_type", "client_credentials"),
        ("resource", "https://a.example"),
        ("resource", "https://b.example"),
    ];
    assert_eq!(
        aud(env.post_form("/rpc/token", basic, &repeated)),
        json!("https://b.example"),
        "PostgREST passes the last of a repeated field"
    );
}

/// A token response: 200, never cacheable.
fn ok(resp: Response) -> Value {
    let (status, headers, body) = body(resp);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    assert_eq!(header(&headers, "pragma"), Some("no-cache"));
    assert_eq!(body["token_type"], "Bearer");
    body
}

/// An RFC 6749 §5.2 error answer with `status` and `code`: its headers.
fn err(resp: Response, status: StatusCode, code: &str) -> reqwest::header::HeaderMap {
    let (got, headers, body) = body(resp);
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    headers
}

/// RFC 6749 §2.3.1 credentials in HTTP Basic (form-url-encoded inside), in a form body and in
/// a JSON body, with parameters nobody registered.
fn credentials_in_every_encoding(env: &Env) {
    // RFC 6749 §2.3.1: id and secret are form-url-encoded inside HTTP Basic; the oauth2
    // crate does that, and so must we.
    for id in ["odd id/ü", "urn:example:a+b&c=d"] {
        let odd = env.token(id, "p@ss:w0rd+&=% ü");
        let (status, _, rows) = body(env.get_with("/notes", &odd));
        assert_eq!(status, StatusCode::OK, "{id}: {rows}");
    }

    // Body credentials, form-encoded, with registered parameters we do not use.
    ok(env.post_form(
        "/rpc/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "api-client"),
            ("client_secret", "verysecret"),
            ("state", "ignored"),
            ("resource", "http://127.0.0.1:3000"),
        ],
    ));
    // A JSON body, as Aidbox takes it, with members nobody registered.
    let json_body = env
        .http
        .post(env.rest.url("/rpc/token"))
        .json(
            &json!({ "grant_type": "client_credentials", "client_id": "api-client",
                       "client_secret": "verysecret", "scope": "notes:read", "x-custom": 1 }),
        )
        .send()
        .unwrap();
    assert_eq!(ok(json_body)["scope"], "notes:read");
}

/// invalid_client (401 with Basic, 400 in the body) and the other §5.2 errors; a failed
/// request leaves nothing behind.
fn every_rfc6749_error_with_its_status(env: &Env, db: &mut postgres::Client) {
    // invalid_client: 401 + WWW-Authenticate with Basic, 400 with body credentials.
    let headers = err(
        env.post_form(
            "/rpc/token",
            Some(("api-client", "wrong")),
            &[("grant_type", "client_credentials")],
        ),
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    assert!(header(&headers, "www-authenticate")
        .unwrap()
        .starts_with("Basic realm="));
    let headers = err(
        env.post_form(
            "/rpc/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "api-client"),
                ("client_secret", "wrong"),
            ],
        ),
        StatusCode::BAD_REQUEST,
        "invalid_client",
    );
    assert!(header(&headers, "www-authenticate").is_none());
    err(
        env.post_form("/rpc/token", None, &[("grant_type", "client_credentials")]),
        StatusCode::BAD_REQUEST,
        "invalid_client",
    );
    err(
        env.post_form(
            "/rpc/token",
            Some(("nobody", "verysecret")),
            &[("grant_type", "client_credentials")],
        ),
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    let garbage = env
        .http
        .post(env.rest.url("/rpc/token"))
        .header("Authorization", "Basic !!!")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap();
    err(garbage, StatusCode::UNAUTHORIZED, "invalid_client");

    // The other RFC 6749 §5.2 errors, all 400.
    let basic = Some(("api-client", "verysecret"));
    err(
        env.post_form("/rpc/token", basic, &[("grant_type", "password")]),
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    );
    err(
        env.post_form("/rpc/token", basic, &[("scope", "notes:read")]),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    err(
        env.post_form(
            "/rpc/token",
            basic,
            &[("grant_type", "client_credentials"), ("scope", "admin")],
        ),
        StatusCode::BAD_REQUEST,
        "invalid_scope",
    );
    err(
        env.post_form(
            "/rpc/token",
            basic,
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", "verysecret"),
            ],
        ),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    err(
        env.post_form(
            "/rpc/token",
            basic,
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
        ),
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );
    err(
        env.post_form(
            "/rpc/token",
            basic,
            &[
                ("grant_type", "client_credentials"),
                ("audience", "https://elsewhere"),
            ],
        ),
        StatusCode::BAD_REQUEST,
        "invalid_target",
    );
    // A failed request leaves nothing behind (its writes ran in a subtransaction).
    let sessions: i64 = db
        .query_one(
            "SELECT count(*) FROM oauth.session WHERE client_id = 'api-client'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        sessions, 2,
        "only the two successful api-client requests created sessions"
    );
}

/// Introspection needs client authentication; revocation takes only the client's own tokens.
fn introspection_and_revocation_need_the_client(env: &Env) {
    let basic = Some(("api-client", "verysecret"));
    // Introspection needs client authentication.
    let token = env.token("api-client", "verysecret");
    let (status, _, intro) = body(env.post_form("/rpc/introspect", basic, &[("token", &token)]));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(intro["active"], true);
    assert_eq!(intro["client_id"], "api-client");
    err(
        env.post_form("/rpc/introspect", None, &[("token", &token)]),
        StatusCode::BAD_REQUEST,
        "invalid_client",
    );
    err(
        env.post_form("/rpc/introspect", basic, &[]),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let (_, _, junk) = body(env.post_form("/rpc/introspect", basic, &[("token", "junk")]));
    assert_eq!(junk, json!({ "active": false }));

    // Revocation: only the client's own tokens.
    err(
        env.post_form(
            "/rpc/revoke",
            Some(("odd%20id%2F%C3%BC", "p%40ss%3Aw0rd%2B%26%3D%25+%C3%BC")),
            &[("token", &token)],
        ),
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );
    assert_eq!(
        env.get_with("/notes", &token).status(),
        StatusCode::OK,
        "not revoked by a stranger"
    );
    let (status, _, _) = body(env.post_form(
        "/rpc/revoke",
        basic,
        &[("token", "unknown"), ("token_type_hint", "access_token")],
    ));
    assert_eq!(
        status,
        StatusCode::OK,
        "unknown tokens are not an error (RFC 7009)"
    );
}

/// The JWK Set and the metadata over GET; the token endpoint by POST only (RFC 6749 §3.2).
fn documents_over_get_and_the_token_endpoint_by_post(env: &Env) {
    // JWKS and metadata over GET.
    let (status, headers, jwks) = body(env.http.get(env.rest.url("/rpc/jwks")).send().unwrap());
    assert_eq!(status, StatusCode::OK);
    assert!(header(&headers, "cache-control")
        .unwrap()
        .contains("max-age"));
    assert!(!jwks["keys"].as_array().unwrap().is_empty());
    assert!(!jwks.to_string().contains("\"d\""), "no private members");
    let (status, _, md) = body(env.http.get(env.rest.url("/rpc/metadata")).send().unwrap());
    assert_eq!(status, StatusCode::OK);
    assert_eq!(md["issuer"], "http://127.0.0.1:3000");
    assert_eq!(md["token_endpoint"], "http://127.0.0.1:3000/rpc/token");
    // The token endpoint is POST only (RFC 6749 §3.2); PostgREST would run a GET.
    let get = env
        .http
        .get(env.rest.url("/rpc/token?grant_type=client_credentials"))
        .basic_auth("api-client", Some("verysecret"))
        .send()
        .unwrap();
    let headers = err(get, StatusCode::METHOD_NOT_ALLOWED, "invalid_request");
    assert_eq!(header(&headers, "allow"), Some("POST"));
}

/// Tokens PostgREST must not accept: another audience (jwt-aud), and opaque tokens.
fn tokens_postgrest_must_not_accept(env: &Env, db: &mut postgres::Client) {
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, token_format, audience)
         VALUES ('elsewhere', 'verysecret', 'jwt', '{https://other.example}');
         INSERT INTO oauth.client (id, secret) VALUES ('opaque', 'verysecret');",
    )
    .unwrap();
    let foreign = env.token("elsewhere", "verysecret");
    assert_eq!(
        env.get_with("/notes", &foreign).status(),
        StatusCode::UNAUTHORIZED
    );
    let opaque = env.token("opaque", "verysecret");
    assert_eq!(
        env.get_with("/notes", &opaque).status(),
        StatusCode::UNAUTHORIZED
    );
}

/// authlib, requests-oauthlib, httpx-auth and @badgateway/oauth2-client send HTTP Basic
/// credentials without form-encoding them (reqwest's `basic_auth` does the same): secrets
/// from `openssl rand -base64` hold `+ / =`, URI client ids hold `:`. (Raw credentials
/// with a colon in both the id and the secret cannot be told apart: RFC 7617 forbids it.)
#[test]
fn raw_http_basic_credentials_are_accepted_and_each_reading_is_a_guess() {
    let env = start("pgrst-raw-basic");
    let mut db = env.cluster.connect("app");
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, scope, token_format)
         VALUES ('b64', 'q+Xz/9aL0w==', '{notes:read}', 'jwt'),
                ('urn:acme:svc', 'a+b/c=d', '{notes:read}', 'jwt'),
                ('spaces', 'correct horse+battery', '{notes:read}', 'jwt');
         INSERT INTO oauth.policy (client_id, role)
         VALUES ('b64', 'api_user'), ('urn:acme:svc', 'api_user'), ('spaces', 'api_user');",
    )
    .unwrap();
    let raw = |id: &str, secret: &str| {
        env.post_form(
            "/rpc/token",
            Some((id, secret)),
            &[("grant_type", "client_credentials")],
        )
    };
    // Twice each: the first on a cold path (argon2), the second possibly warm.
    for (id, secret) in [
        ("b64", "q+Xz/9aL0w=="),
        ("urn:acme:svc", "a+b/c=d"),
        ("spaces", "correct horse+battery"),
    ] {
        for _ in 0..2 {
            let (status, _, body) = body(raw(id, secret));
            assert_eq!(status, StatusCode::OK, "{id} raw: {body}");
            let token = body["access_token"].as_str().unwrap().to_owned();
            assert_eq!(env.get_with("/notes", &token).status(), StatusCode::OK);
        }
        // The RFC 6749 §2.3.1 form-encoded credentials work as before.
        env.token(id, secret);
    }
    // A reading never crosses to another client's secret, and failures look alike.
    for (id, secret) in [
        ("b64", "q Xz/9aL0w=="),
        ("b64", "q%2BXz/9aL0w%3D%3D+"),
        ("urn:acme:svc", "a+b/c=dX"),
        ("urn:acme", "a+b/c=d"),
        ("nobody", "q+Xz/9aL0w=="),
    ] {
        let (status, headers, body) = body(raw(id, secret));
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{id}:{secret}: {body}");
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_description"], "client authentication failed");
        assert!(header(&headers, "www-authenticate").is_some());
    }
    // Every reading verified counts as one guess toward the lockout: `b64:q+x` reads as
    // `q x` and `q+x`, two guesses.
    db.batch_execute("DELETE FROM oauth.client_lockout")
        .unwrap();
    let (status, _, _) = body(raw("b64", "q+x"));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let failures: i32 = db
        .query_one(
            "SELECT failures FROM oauth.client_lockout WHERE client_id = 'b64'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(failures, 2);
    drop(env.db);
}

#[test]
fn key_rotation_reaches_postgrest_without_restart() {
    let env = start("pgrst-rotate");
    let mut db = env.cluster.connect("app");
    let before = env.token("api-client", "verysecret");
    assert_eq!(env.get_with("/notes", &before).status(), StatusCode::OK);
    let reloads = env.rest.log().matches("Config reloaded").count();
    for round in 1..=2 {
        db.query_one("SELECT oauth.rotate_signing_key()", &[])
            .unwrap();
        env.rest.wait_for_config_reloads(reloads + round);
        let after = env.token("api-client", "verysecret");
        assert_ne!(kid(&after), kid(&before));
        assert_eq!(
            env.get_with("/notes", &after).status(),
            StatusCode::OK,
            "round {round}: new key"
        );
        assert_eq!(
            env.get_with("/notes", &before).status(),
            StatusCode::OK,
            "round {round}: old key"
        );
    }
    // Withdrawing a key stops its tokens at PostgREST too.
    db.execute(
        "DELETE FROM oauth.signing_key WHERE kid = $1",
        &[&kid(&before)],
    )
    .unwrap();
    env.rest.wait_for_config_reloads(reloads + 3);
    assert_eq!(
        env.get_with("/notes", &before).status(),
        StatusCode::UNAUTHORIZED
    );
    drop(env.db);
}

/// HS256 secrets are shared with PostgREST, so the authenticator login can read them (the
/// pre-config hook hands them over) and sign any claims. pg_oauth binds every JWT to the
/// session it was issued for: a token minted around a live jti — more scope, another role —
/// is refused by the pre-request hook and by auth_verify, while the real token keeps working.
#[test]
fn tokens_minted_around_a_live_session_are_refused() {
    use jwt_simple::prelude::*;
    let env = start("pgrst-forge");
    let mut db = env.cluster.connect("app");
    let reloads = env.rest.log().matches("Config reloaded").count();
    db.batch_execute(
        "SELECT oauth.ensure_signing_keys('HS256');
         UPDATE oauth.client SET jwt_alg = 'HS256' WHERE id = 'api-client';",
    )
    .unwrap();
    env.rest.wait_for_config_reloads(reloads + 1);
    let token = env.token("api-client", "verysecret");
    assert_eq!(env.get_with("/notes", &token).status(), StatusCode::OK);

    // What the authenticator can read: the key set PostgREST verifies with.
    let mut authenticator = postgres::Client::connect(
        &format!(
            "host=127.0.0.1 port={} dbname=app user=authenticator password=change-me",
            env.cluster.port
        ),
        postgres::NoTls,
    )
    .unwrap();
    let mut tx = authenticator.transaction().unwrap();
    tx.execute("SELECT oauth.postgrest_pre_config()", &[])
        .unwrap();
    let keys: String = tx
        .query_one("SELECT current_setting('pgrst.jwt_secret')", &[])
        .unwrap()
        .get(0);
    tx.commit().unwrap();
    let keys: Value = serde_json::from_str(&keys).unwrap();
    let signing_kid = kid(&token);
    let secret = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == signing_kid.as_str() && k["kty"] == "oct")
        .map(|k| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(k["k"].as_str().unwrap())
                .unwrap()
        })
        .expect("the HS256 secret is in PostgREST's key set");

    // Same header, same jti, same session — more scope.
    let payload = token.split('.').nth(1).unwrap();
    let mut claims: Value = {
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    claims["scope"] = json!("notes:read notes:write notes:admin");
    let obj = claims.as_object_mut().unwrap();
    let (iat, exp) = (obj.remove("iat").unwrap(), obj.remove("exp").unwrap());
    let mut jwt = Claims::with_custom_claims(claims, Duration::from_secs(1));
    jwt.issued_at = Some(UnixTimeStamp::from_secs(iat.as_u64().unwrap()));
    jwt.expires_at = Some(UnixTimeStamp::from_secs(exp.as_u64().unwrap()));
    let forged = HS256Key::from_bytes(&secret)
        .with_key_id(&signing_kid)
        .authenticate_with_options(
            jwt,
            &HeaderOptions {
                signature_type: Some("at+jwt".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(kid(&forged), signing_kid);

    let (status, headers, err) = body(env.get_with("/notes", &forged));
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{err}");
    assert_eq!(
        header(&headers, "www-authenticate"),
        Some(concat!(
            "Bearer error=\"invalid_token\", error_description=\"unknown access token\", ",
            "resource_metadata=\"http://127.0.0.1:3000/.well-known/oauth-protected-resource\""
        ))
    );
    let refused = db
        .query_one("SELECT oauth.auth_verify($1)", &[&forged])
        .unwrap_err();
    assert!(
        pg_oauth_harness::db_error(&refused)
            .1
            .contains("unknown access token"),
        "{refused}"
    );
    // The real token is untouched.
    assert_eq!(env.get_with("/notes", &token).status(), StatusCode::OK);

    let sign = |claims: Value| -> String {
        let mut claims = claims;
        let obj = claims.as_object_mut().unwrap();
        let (iat, exp) = (obj.remove("iat").unwrap(), obj.remove("exp").unwrap());
        let mut jwt = Claims::with_custom_claims(claims, Duration::from_secs(1));
        jwt.issued_at = Some(UnixTimeStamp::from_secs(iat.as_u64().unwrap()));
        jwt.expires_at = Some(UnixTimeStamp::from_secs(exp.as_u64().unwrap()));
        jwt.invalid_before = None;
        HS256Key::from_bytes(&secret)
            .with_key_id(&signing_kid)
            .authenticate_with_options(
                jwt,
                &HeaderOptions {
                    signature_type: Some("at+jwt".into()),
                    ..Default::default()
                },
            )
            .unwrap()
    };
    let real_claims: Value = {
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    // A forged token with no jti at all: there is no session to bind it to.
    let mut no_jti = real_claims.clone();
    no_jti.as_object_mut().unwrap().remove("jti");
    no_jti["scope"] = json!("notes:read notes:write notes:admin");
    let (status, _, err) = body(env.get_with("/notes", &sign(no_jti)));
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no jti: {err}");

    // Two Authorization headers: PostgREST verifies the first (forged, more scope, the real
    // jti), request.headers keeps the last (the real token).
    let mut wider = real_claims.clone();
    wider["scope"] = json!("notes:read notes:write notes:admin");
    let two_headers = |first: String| {
        env.http
            .get(env.rest.url("/notes"))
            .header("authorization", format!("Bearer {first}"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .unwrap()
    };
    let (status, _, err) = body(two_headers(sign(wider)));
    assert_eq!(status, StatusCode::UNAUTHORIZED, "two headers: {err}");
    // Re-signed with the very claims of the real token, a second header changes nothing.
    assert_eq!(two_headers(sign(real_claims)).status(), StatusCode::OK);
}

/// Keys are published before they sign: a client of an algorithm nobody used yet gets that
/// algorithm's keys when it is written, PostgREST learns them through NOTIFY, and the very
/// first token is accepted (before, keys were made at the first issuance and PostgREST
/// refused that token until its reload).
#[test]
fn the_first_token_of_a_new_algorithm_is_accepted() {
    let env = start("pgrst-first-alg");
    let mut db = env.cluster.connect("app");
    let keys: i64 = db
        .query_one(
            "SELECT count(*) FROM oauth.signing_key WHERE alg = 'EdDSA'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(keys, 0, "no EdDSA keys yet");
    let reloads = env.rest.log().matches("Config reloaded").count();
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, scope, token_format, jwt_alg)
         VALUES ('ed-client', 'verysecret', '{notes:read}', 'jwt', 'EdDSA');
         INSERT INTO oauth.policy (client_id, role) VALUES ('ed-client', 'api_user');",
    )
    .unwrap();
    let states: Vec<String> = db
        .query(
            "SELECT state FROM oauth.signing_key WHERE alg = 'EdDSA' ORDER BY state",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        states,
        ["active", "next"],
        "keys exist once the client does"
    );
    env.rest.wait_for_config_reloads(reloads + 1);
    let token = env.token("ed-client", "verysecret");
    assert_eq!(
        env.get_with("/notes", &token).status(),
        StatusCode::OK,
        "the first EdDSA token"
    );
}

/// Keys sign only after they are published, in every path. A deleted active key (the docs
/// say: then rotate) is replaced by the next key, which PostgREST has had all along, not by a
/// brand-new one; and an algorithm with no key at all (a new pg_oauth.default_jwt_alg for
/// clients whose jwt_alg is NULL) gets its keys committed, and sent to PostgREST, before the
/// first token is signed.
#[test]
fn tokens_are_signed_only_by_published_keys() {
    let env = start("pgrst-published");
    let mut db = env.cluster.connect("app");
    let published = |db: &mut postgres::Client| -> Vec<String> {
        db.query(
            "SELECT k ->> 'kid' FROM jsonb_array_elements(oauth.auth_jwks() -> 'keys') AS k",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let before = published(&mut db);
    let reloads = env.rest.log().matches("Config reloaded").count();
    db.batch_execute("DELETE FROM oauth.signing_key WHERE alg = 'ES256' AND state = 'active'")
        .unwrap();
    env.rest.wait_for_config_reloads(reloads + 1);
    let token = env.token("api-client", "verysecret");
    assert!(
        before.contains(&kid(&token)),
        "signed by {} which was not published ({before:?})",
        kid(&token)
    );
    assert_eq!(env.get_with("/notes", &token).status(), StatusCode::OK);

    // A new default algorithm that has no keys: made and committed before the first token.
    let reloads = env.rest.log().matches("Config reloaded").count();
    db.batch_execute(
        "ALTER DATABASE app SET pg_oauth.default_jwt_alg = 'PS256';
         INSERT INTO oauth.client (id, secret, scope, token_format)
         VALUES ('ps-client', 'verysecret', '{notes:read}', 'opaque');
         INSERT INTO oauth.policy (client_id, role) VALUES ('ps-client', 'api_user');
         UPDATE oauth.client SET token_format = 'jwt' WHERE id = 'ps-client';",
    )
    .unwrap();
    // The trigger made keys for this session's default (ES256); PS256 has none.
    let ps256: i64 = db
        .query_one(
            "SELECT count(*) FROM oauth.signing_key WHERE alg = 'PS256'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(ps256, 0);
    let mut fresh = env.cluster.connect("app");
    let mut issuing = fresh.transaction().unwrap();
    let first: Value = issuing
        .query_one(
            "SELECT oauth.auth_token('client_credentials', 'ps-client', 'verysecret') -> 'access_token'",
            &[],
        )
        .unwrap()
        .get(0);
    let first = first.as_str().unwrap();
    // The key was committed before the token was signed: while the issuing transaction is
    // still open, another connection already publishes it.
    assert!(published(&mut db).contains(&kid(first)));
    issuing.commit().unwrap();
    env.rest.wait_for_config_reloads(reloads + 1);
    // The reload counted may be an earlier one (the NOTIFY of the ES256 key promoted above
    // can reach PostgREST after `reloads` was read): PostgREST must come to accept the token
    // once the reload for the PS256 key lands, within the bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while env.get_with("/notes", first).status() != StatusCode::OK {
        assert!(
            std::time::Instant::now() < deadline,
            "PostgREST never accepted a token signed by the new PS256 key:\n{}",
            env.rest.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Part `n` of a JWT (0: header, 1: claims), decoded.
fn jwt_part(token: &str, n: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(n).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

fn kid(token: &str) -> String {
    jwt_part(token, 0)["kid"].as_str().unwrap().to_owned()
}
