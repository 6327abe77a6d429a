//! Privileges, search_path attacks, hostile input: what each role can reach, that no
//! planted object is ever called by pg_oauth's privileged code, and that every text input
//! is data — quotes, metacharacters, unicode and megabyte strings alike.

use std::collections::BTreeSet;

use pg_oauth_harness::{as_postgrest, db_error, json, postgres, repo_root, Cluster};
use serde_json::Value;

const ISSUER: &str = "http://127.0.0.1:3000";

fn setup(cluster: &Cluster) -> postgres::Client {
    let mut db = cluster.create_db_with("oauth", &[("pg_oauth.issuer", ISSUER)]);
    drop(db);
    cluster.psql_file(
        "oauth",
        &repo_root().join("examples/postgrest/setup.sql"),
        &[],
    );
    db = cluster.connect("oauth");
    db.batch_execute(
        "CREATE ROLE admin LOGIN IN ROLE oauth_admin;
         CREATE ROLE app LOGIN IN ROLE oauth_app;
         CREATE ROLE nobody LOGIN;
         CREATE ROLE api_user NOLOGIN;
         GRANT api_user TO authenticator;
         ALTER ROLE authenticator PASSWORD NULL;
         INSERT INTO oauth.client (id, secret, scope, token_format) VALUES
             ('opaque-client', 'opaque-secret', '{read,write}', 'opaque'),
             ('jwt-client', 'jwt-client-secret-9', '{read,write}', 'jwt');
         INSERT INTO oauth.policy (client_id, role) VALUES ('jwt-client', 'api_user');
         SELECT oauth.ensure_signing_keys('ES256');",
    )
    .unwrap();
    db
}

fn set(rows: Vec<postgres::Row>) -> BTreeSet<String> {
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Every (table.column, privilege) a role holds in schema oauth, directly or by membership.
fn column_privileges(db: &mut postgres::Client, role: &str) -> BTreeSet<String> {
    set(db
        .query(
            "SELECT c.relname || '.' || a.attname || ':' || p
               FROM pg_class c
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE']) AS p
              WHERE c.relnamespace = 'oauth'::regnamespace AND c.relkind IN ('r', 'p', 'v')
                AND has_column_privilege($1, c.oid, a.attnum, p)",
            &[&role],
        )
        .unwrap())
}

fn table_privileges(db: &mut postgres::Client, role: &str) -> BTreeSet<String> {
    set(db
        .query(
            "SELECT c.relname || ':' || p
               FROM pg_class c
              CROSS JOIN unnest(ARRAY['DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p
              WHERE c.relnamespace = 'oauth'::regnamespace AND c.relkind IN ('r', 'p', 'v')
                AND has_table_privilege($1, c.oid, p)",
            &[&role],
        )
        .unwrap())
}

fn executable(db: &mut postgres::Client, role: &str) -> BTreeSet<String> {
    set(db
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p
              WHERE p.pronamespace IN ('oauth'::regnamespace, 'api'::regnamespace)
                AND has_function_privilege($1, p.oid, 'EXECUTE')",
            &[&role],
        )
        .unwrap())
}

#[test]
fn each_role_reaches_exactly_what_it_should() {
    let cluster = Cluster::start("privileges", &[]);
    let mut db = setup(&cluster);
    // As README "Security model" advises: the roles below that may not call auth_token fail
    // before pg_oauth runs, in sessions that have not loaded it; loaded at connection, it
    // keeps those statements (and their secrets) out of the server log.
    db.batch_execute("ALTER DATABASE oauth SET session_preload_libraries = 'pg_oauth'")
        .unwrap();
    each_role_executes_exactly_its_functions(&mut db);
    only_the_admin_reaches_tables_and_never_hashes_or_keys(&mut db);
    every_definer_function_pins_its_search_path(&mut db);
    let token = each_role_in_practice(&cluster);
    no_answer_holds_a_hash_or_a_private_key(&cluster, &mut db, &token);
    constraint_violations_show_no_secret(&cluster, &mut db);
}

fn each_role_executes_exactly_its_functions(db: &mut postgres::Client) {
    // Functions: everyone may run the claim helpers and the pre-request hook (they read
    // only the caller's own request), nothing else of pg_oauth's.
    let public = strings(&[
        "oauth.claims()",
        "oauth.client_id()",
        "oauth.has_scope(text)",
        "oauth.has_any_scope(text[])",
        "oauth.has_all_scopes(text[])",
        "oauth.postgrest_pre_request()",
        "oauth.postgrest_request_check()",
        "oauth.is_string_or_uri(text)",
        "oauth.are_strings_or_uris(text[])",
    ]);
    let app: BTreeSet<String> = public
        .iter()
        .cloned()
        .chain(
            [
                "oauth.auth_token(text,text,text,text,text,text,text,text,text,text,text,text,text,text)",
                "oauth.auth_verify(text)",
                "oauth.auth_verify(text,text)",
                "oauth.auth_verify(text,text,text,text,text,text)",
                "oauth.auth_dpop_nonce()",
                "oauth.auth_revoke(text)",
                "oauth.auth_introspect(text)",
                "oauth.auth_jwks()",
                "oauth.auth_metadata()",
                "oauth.auth_smart_configuration()",
            ]
            .map(String::from),
        )
        .collect();
    let admin: BTreeSet<String> = app
        .iter()
        .cloned()
        .chain(
            [
                "oauth.create_client(text,text[],text[],text,text[],integer,boolean,text,text,integer,jsonb,boolean,boolean,boolean)",
                "oauth.rotate_client_secret(text,interval)",
                "oauth.rotate_signing_key(text)",
                "oauth.ensure_signing_keys(text)",
                "oauth.purge_expired(integer,interval)",
                "oauth.policy_role_problem(text)",
                "oauth.console_role_problem(text)",
                "oauth.loading_by_copy()",
                "oauth.audit_dropped_events()",
                "oauth.login_refresh()",
                "oauth.login_status()",
                "oauth.stats_counters()",
                "oauth.stats_reset()",
            ]
            .map(String::from),
        )
        .collect();
    let api: BTreeSet<String> = executable(db, "postgres")
        .into_iter()
        .filter(|f| f.starts_with("api."))
        .collect();
    assert_eq!(api.len(), 10, "{api:?}");
    let anon: BTreeSet<String> = public.iter().cloned().chain(api.iter().cloned()).collect();
    // NOINHERIT: the authenticator holds only its own grants until PostgREST switches role.
    let mut authenticator = public.clone();
    authenticator.insert("oauth.postgrest_pre_config()".into());

    assert_eq!(executable(db, "nobody"), public);
    assert_eq!(executable(db, "api_user"), public);
    assert_eq!(executable(db, "app"), app);
    assert_eq!(executable(db, "admin"), admin);
    assert_eq!(executable(db, "anon"), anon);
    assert_eq!(executable(db, "authenticator"), authenticator);
}

fn only_the_admin_reaches_tables_and_never_hashes_or_keys(db: &mut postgres::Client) {
    // Tables: only the admin, and never the secret hashes or private keys.
    for role in ["nobody", "app", "anon", "authenticator", "api_user"] {
        assert_eq!(column_privileges(db, role), BTreeSet::new(), "{role}");
        assert_eq!(table_privileges(db, role), BTreeSet::new(), "{role}");
    }
    let admin_columns = column_privileges(db, "admin");
    for hidden in [
        "client.secret:SELECT",
        "client.previous_secret:SELECT",
        "client.previous_secret:INSERT",
        "client.previous_secret:UPDATE",
        "signing_key.private_key:SELECT",
        "signing_key.private_key:INSERT",
        "signing_key.private_key:UPDATE",
        "session.token_hash:UPDATE",
        "session.client_id:UPDATE",
        "auth_failure.reason:INSERT",
        "auth_failure.reason:UPDATE",
    ] {
        assert!(!admin_columns.contains(hidden), "admin holds {hidden}");
    }
    for granted in [
        "client.secret:INSERT",
        "client.secret:UPDATE",
        "client.id:SELECT",
        "policy.role:INSERT",
        "console_access.role:INSERT",
        "session.revoked_at:UPDATE",
        "audit_event.detail:SELECT",
        "auth_failure.reason:SELECT",
    ] {
        assert!(admin_columns.contains(granted), "admin lacks {granted}");
    }
    assert!(!table_privileges(db, "admin").contains("client:TRUNCATE"));
}

fn every_definer_function_pins_its_search_path(db: &mut postgres::Client) {
    // Every SECURITY DEFINER function pins its search_path — except auth_verify, whose
    // fast path runs no SQL and whose fallbacks pin it themselves (search_path test below).
    let unpinned = set(db
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p
              WHERE p.pronamespace IN ('oauth'::regnamespace, 'api'::regnamespace) AND p.prosecdef
                AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)",
            &[],
        )
        .unwrap());
    assert_eq!(
        unpinned,
        strings(&["oauth.auth_verify(text)", "oauth.auth_verify(text,text)"])
    );
}

/// As each role, in practice: the admin manages but cannot read hashes or keys, the
/// application calls functions only, others get nothing. Returns a token the app got.
fn each_role_in_practice(cluster: &Cluster) -> String {
    // In practice, as each role: the admin manages but cannot read hashes or keys.
    let mut admin_db = cluster.connect_as("oauth", "admin");
    admin_db
        .batch_execute(
            "INSERT INTO oauth.client (id, secret, scope) VALUES ('made-by-admin', 'plain', '{read}');
             UPDATE oauth.client SET scope = '{read,write}' WHERE id = 'made-by-admin';
             INSERT INTO oauth.policy (client_id, role) VALUES ('made-by-admin', 'api_user');
             SELECT oauth.rotate_client_secret('made-by-admin');
             SELECT oauth.rotate_signing_key('ES256');
             UPDATE oauth.session SET revoked_at = now() WHERE false;
             SELECT * FROM oauth.purge_expired(10);",
        )
        .unwrap();
    for sql in [
        "SELECT secret FROM oauth.client",
        "SELECT previous_secret FROM oauth.client",
        "SELECT private_key FROM oauth.signing_key",
        "SELECT * FROM oauth.client",
        "UPDATE oauth.client SET previous_secret = 'x'",
        "UPDATE oauth.signing_key SET state = 'active'",
        "INSERT INTO oauth.session (id, client_id, token_hash, format, scope, audience, issued_at, expires_at)
         VALUES (gen_random_uuid(), 'x', '\\x00', 'opaque', '{}', '{}', now(), now())",
        "INSERT INTO oauth.auth_failure (client_id, source, reason) VALUES ('x', 'x', 'x')",
        "SELECT oauth.http_token('{}')",
        "SELECT oauth.postgrest_pre_config()",
        "TRUNCATE oauth.session",
    ] {
        let err = admin_db.batch_execute(sql).unwrap_err();
        assert_eq!(db_error(&err).0, "42501", "admin: {sql}");
    }

    // The application calls functions and touches no table; others get nothing.
    let mut app_db = cluster.connect_as("oauth", "app");
    let t = json(
        &mut app_db,
        "SELECT oauth.auth_token('client_credentials', 'jwt-client', 'jwt-client-secret-9', 'read')",
        &[],
    );
    json(
        &mut app_db,
        "SELECT oauth.auth_verify($1)",
        &[&t["access_token"].as_str().unwrap()],
    );
    for (role, sqls) in [
        (
            "app",
            vec![
                "SELECT id FROM oauth.client",
                "SELECT count(*) FROM oauth.session",
                "SELECT * FROM oauth.audit_event",
                "SELECT oauth.create_client('x')",
                "SELECT oauth.rotate_signing_key()",
                "SELECT * FROM oauth.purge_expired()",
                "DELETE FROM oauth.client_lockout",
            ],
        ),
        (
            "nobody",
            vec![
                "SELECT oauth.auth_token('client_credentials', 'jwt-client', 'jwt-client-secret-9')",
                "SELECT oauth.auth_verify('x')",
                "SELECT oauth.auth_jwks()",
                "SELECT id FROM oauth.client",
            ],
        ),
        (
            "authenticator",
            vec![
                "SELECT oauth.auth_token('client_credentials', 'jwt-client', 'jwt-client-secret-9')",
                "SELECT oauth.http_token('{}')",
                "SELECT id FROM oauth.session",
            ],
        ),
    ] {
        let mut conn = cluster.connect_as("oauth", role);
        for sql in sqls {
            let err = conn.batch_execute(sql).unwrap_err();
            assert_eq!(db_error(&err).0, "42501", "{role}: {sql}");
        }
    }

    t["access_token"].as_str().unwrap().to_owned()
}

/// Nothing any role can call returns a hash or a private key: look for them in every answer
/// (the owner reads them to know what to look for).
fn no_answer_holds_a_hash_or_a_private_key(
    cluster: &Cluster,
    db: &mut postgres::Client,
    token: &str,
) {
    let mut admin_db = cluster.connect_as("oauth", "admin");
    let hashes: Vec<String> = db
        .query("SELECT secret FROM oauth.client", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let private_keys: Vec<Vec<u8>> = db
        .query("SELECT private_key FROM oauth.signing_key", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut answers = String::new();
    for sql in [
        "SELECT oauth.auth_jwks()::text",
        "SELECT oauth.auth_metadata()::text",
        "SELECT oauth.auth_introspect($1)::text",
        "SELECT oauth.auth_verify($1)::text",
    ] {
        let mut app_db = cluster.connect_as("oauth", "app");
        let row = if sql.contains("$1") {
            app_db.query_one(sql, &[&token])
        } else {
            app_db.query_one(sql, &[])
        };
        answers.push_str(&row.unwrap().get::<_, String>(0));
    }
    let audit: String = admin_db
        .query_one(
            "SELECT coalesce(string_agg(e::text, ' '), '') FROM oauth.audit_event e",
            &[],
        )
        .unwrap()
        .get(0);
    answers.push_str(&audit);
    assert!(!answers.contains("$argon2"));
    for hash in &hashes {
        assert!(!answers.contains(hash.as_str()));
    }
    use base64::Engine;
    for key in &private_keys {
        for engine in [
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD,
        ] {
            let encoded = engine.encode(key);
            // Any 16-character window of the key's encoding would be a leak.
            for start in (0..encoded.len().saturating_sub(16)).step_by(8) {
                assert!(!answers.contains(&encoded[start..start + 16]));
            }
        }
    }
}

/// Constraint violations as the admin: the plaintext never shows, and no stored hash does.
fn constraint_violations_show_no_secret(cluster: &Cluster, db: &mut postgres::Client) {
    let mut admin_db = cluster.connect_as("oauth", "admin");
    // (PostgreSQL's "Failing row contains" shows the columns a statement writes, so a
    // rejected INSERT or UPDATE of a secret shows the hash of that rejected value — which
    // the admin supplied and which is never stored.)
    let stored: Vec<String> = db
        .query("SELECT secret FROM oauth.client", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for sql in [
        "INSERT INTO oauth.client (id, secret, scope) VALUES ('bad-scope', 'plaintext-in-error?', ARRAY['a b'])",
        "UPDATE oauth.client SET scope = ARRAY['a b'] WHERE id = 'jwt-client'",
        "UPDATE oauth.client SET secret = 'plaintext-in-error?', scope = ARRAY['a b'] WHERE id = 'jwt-client'",
        "UPDATE oauth.client SET access_token_expiration = -1 WHERE id = 'opaque-client'",
    ] {
        let err = admin_db.execute(sql, &[]).unwrap_err();
        let db_err = err.as_db_error().unwrap();
        assert_eq!(db_err.code().code(), "23514", "{sql}");
        let shown = format!("{} {:?} {:?}", db_err.message(), db_err.detail(), db_err.hint());
        assert!(!shown.contains("plaintext-in-error?"), "{shown}");
        for hash in &stored {
            assert!(!shown.contains(&hash[30..]), "a stored hash in: {shown}");
        }
    }
}

/// A role that may call pg_oauth's functions plants look-alikes of everything those
/// functions use, puts them first on its search_path, and calls every entry point. None of
/// the planted objects may run (each would record itself in evil.calls).
#[test]
fn planted_functions_operators_and_temp_objects_are_never_called() {
    let cluster = Cluster::start("search-path", &[]);
    let mut db = setup(&cluster);
    db.batch_execute(
        "CREATE ROLE mallory LOGIN IN ROLE oauth_app, anon;
         INSERT INTO oauth.client (id, secret, scope, refresh_token) VALUES ('rt-client', 'rt-secret', '{read}', true);
         CREATE SCHEMA evil AUTHORIZATION mallory;",
    )
    .unwrap();
    let mut m = cluster.connect_as("oauth", "mallory");
    let mut plant = String::from(
        "CREATE TABLE evil.calls (what text);
         GRANT INSERT, SELECT ON evil.calls TO PUBLIC;
         GRANT USAGE ON SCHEMA evil TO PUBLIC;",
    );
    // Functions with the names and argument types of those pg_oauth's SQL uses.
    for (name, args, returns, value) in [
        ("now", "", "timestamptz", "'2000-01-01'::timestamptz"),
        ("sha256", "bytea", "bytea", "'\\x00'::bytea"),
        ("length", "text", "integer", "1"),
        ("lower", "text", "text", "'x'"),
        ("upper", "text", "text", "'x'"),
        ("current_setting", "text", "text", "'x'"),
        ("current_setting", "text, boolean", "text", "'x'"),
        ("set_config", "text, text, boolean", "text", "'x'"),
        ("host", "inet", "text", "'x'"),
        ("inet_client_addr", "", "inet", "'10.6.6.6'::inet"),
        ("date_part", "text, timestamptz", "double precision", "0"),
        ("to_char", "timestamptz, text", "text", "'x'"),
        ("array_to_string", "anyarray, text", "text", "'x'"),
        ("pg_notify", "text, text", "void", ""),
        (
            "gen_random_uuid",
            "",
            "uuid",
            "'00000000-0000-0000-0000-000000000000'::uuid",
        ),
        ("jsonb_strip_nulls", "jsonb", "jsonb", "'{}'::jsonb"),
        ("format", "text", "text", "'x'"),
        (
            "make_interval",
            "integer, integer, integer, integer, integer, integer, double precision",
            "interval",
            "'0'::interval",
        ),
    ] {
        plant.push_str(&format!(
            "CREATE FUNCTION evil.{name}({args}) RETURNS {returns} LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO evil.calls VALUES ('{name}'); RETURN {value}; END $$;
             GRANT EXECUTE ON FUNCTION evil.{name}({args}) TO PUBLIC;"
        ));
    }
    // Operators on the types pg_oauth compares.
    for (op, left, right) in [
        ("=", "text", "text"),
        ("=", "uuid", "uuid"),
        ("=", "bytea", "bytea"),
        ("=", "name", "name"),
        ("<", "timestamptz", "timestamptz"),
        (">", "timestamptz", "timestamptz"),
        ("<=", "timestamptz", "timestamptz"),
        (">=", "timestamptz", "timestamptz"),
        ("<@", "text[]", "text[]"),
        ("@>", "text[]", "text[]"),
        ("||", "text", "text"),
        ("~", "text", "text"),
        ("+", "timestamptz", "interval"),
        ("-", "timestamptz", "interval"),
    ] {
        let f = format!(
            "op_{}_{}_{}",
            op.bytes()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join("_"),
            left.replace("[]", "_array"),
            right.replace("[]", "_array")
        );
        let returns = match op {
            "||" => "text",
            "+" | "-" => "timestamptz",
            _ => "boolean",
        };
        let value = match op {
            "||" => "'x'",
            "+" | "-" => "'2000-01-01'::timestamptz",
            _ => "true",
        };
        plant.push_str(&format!(
            "CREATE FUNCTION evil.{f}(a {left}, b {right}) RETURNS {returns} LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO evil.calls VALUES ('{op} {left} {right}'); RETURN {value}; END $$;
             CREATE OPERATOR evil.{op} (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = evil.{f});"
        ));
    }
    m.batch_execute(&plant).unwrap();
    // Temp tables shadowing pg_oauth's, and the hostile search_path (pg_temp first too).
    m.batch_execute(
        "CREATE TEMP TABLE client (id text, secret text);
         CREATE TEMP TABLE session (id uuid, revoked_at timestamptz);
         CREATE TEMP TABLE signing_key (kid text);
         INSERT INTO pg_temp.client VALUES ('opaque-client', 'x');
         SET search_path = pg_temp, evil, pg_catalog, oauth, public;",
    )
    .unwrap();

    let (opaque, jwt) = every_entry_point_answers_correctly(&mut m);
    the_postgrest_endpoints_and_revocation(&mut m, &opaque, &jwt);
    the_claim_helpers_and_the_pre_request_hook(&mut m, &jwt);
    the_administrators_side(&cluster, &mut db);
    let calls: Vec<String> = db
        .query("SELECT what FROM evil.calls", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(calls.is_empty(), "planted objects ran: {calls:?}");
    // And the planted objects do work for whoever calls them unqualified (the test is live).
    m.batch_execute("SELECT now(), 'a'::text = 'b'::text")
        .unwrap();
    let live: i64 = db
        .query_one("SELECT count(*) FROM evil.calls", &[])
        .unwrap()
        .get(0);
    assert_eq!(live, 2);
}

/// Every entry point mallory can reach, with correct results: tokens of each kind (and a
/// failure, through the autonomous worker, and a reused refresh token), verified and
/// introspected. Returns the opaque and the JWT token responses.
fn every_entry_point_answers_correctly(m: &mut postgres::Client) -> (Value, Value) {
    let opaque = json(
        m,
        "SELECT oauth.auth_token('client_credentials', 'opaque-client', 'opaque-secret', 'read')",
        &[],
    );
    let jwt = json(
        m,
        "SELECT oauth.auth_token('client_credentials', 'jwt-client', 'jwt-client-secret-9', 'read write')",
        &[],
    );
    let rt = json(
        m,
        "SELECT oauth.auth_token('client_credentials', 'rt-client', 'rt-secret')",
        &[],
    );
    let refreshed = json(
        m,
        "SELECT oauth.auth_token('refresh_token', 'rt-client', 'rt-secret', refresh_token => $1)",
        &[&rt["refresh_token"].as_str().unwrap()],
    );
    assert!(refreshed["access_token"].is_string());
    // A failure too (audit path, through the autonomous worker), and a reused refresh token.
    assert!(m
        .query_one(
            "SELECT oauth.auth_token('client_credentials', 'opaque-client', 'wrong')",
            &[]
        )
        .is_err());
    assert!(m
        .query_one(
            "SELECT oauth.auth_token('refresh_token', 'rt-client', 'rt-secret', refresh_token => $1)",
            &[&rt["refresh_token"].as_str().unwrap()],
        )
        .is_err());
    for token in [&opaque, &jwt] {
        let access = token["access_token"].as_str().unwrap();
        let claims = json(m, "SELECT oauth.auth_verify($1)", &[&access]);
        assert_eq!(claims["scope"], token["scope"]);
        json(m, "SELECT oauth.auth_verify($1, $2)", &[&access, &ISSUER]);
        let introspected = json(m, "SELECT oauth.auth_introspect($1)", &[&access]);
        assert_eq!(introspected["active"], true);
    }
    m.batch_execute("SET pg_oauth.verify_revocation = off")
        .unwrap_err(); // superuser-only
    json(m, "SELECT oauth.auth_jwks()", &[]);
    json(m, "SELECT oauth.auth_metadata()", &[]);
    (opaque, jwt)
}

/// Through the PostgREST endpoints (mallory is in anon), as PostgREST would call them; then
/// both tokens revoked.
fn the_postgrest_endpoints_and_revocation(m: &mut postgres::Client, opaque: &Value, jwt: &Value) {
    m.batch_execute(
        "BEGIN;
         SELECT pg_catalog.set_config('request.method', 'POST', true),
                pg_catalog.set_config('request.headers', '{\"authorization\": \"Basic b3BhcXVlLWNsaWVudDpvcGFxdWUtc2VjcmV0\"}', true);
         SELECT api.token(grant_type => 'client_credentials');
         SELECT api.introspect(token => 'x');
         SELECT api.revoke(token => 'x');
         SELECT api.jwks(), api.metadata();
         COMMIT;",
    )
    .unwrap();
    let status: Vec<postgres::Row> = m.query("SELECT 1", &[]).unwrap();
    assert_eq!(status.len(), 1);
    for token in [opaque, jwt] {
        let access = token["access_token"].as_str().unwrap();
        let revoked: bool = m
            .query_one("SELECT oauth.auth_revoke($1)", &[&access])
            .unwrap()
            .get(0);
        assert!(revoked);
        let err = m
            .query_one("SELECT oauth.auth_verify($1)", &[&access])
            .unwrap_err();
        assert_eq!(db_error(&err).0, "28000");
    }
}

/// The claim helpers, with a request's claims set as PostgREST sets them; the pre-request
/// hook passing an anonymous request and refusing the revoked JWT.
fn the_claim_helpers_and_the_pre_request_hook(m: &mut postgres::Client, jwt: &Value) {
    m.batch_execute(
        "BEGIN;
         SELECT pg_catalog.set_config('request.jwt.claims', '{\"scope\": \"read\", \"client_id\": \"c\"}', true);
         SELECT oauth.claims(), oauth.client_id(), oauth.has_scope('read'),
                oauth.has_any_scope('{read}'), oauth.has_all_scopes('{read}');
         COMMIT;",
    )
    .unwrap();
    // The pre-request hook: an anonymous request passes; the revoked JWT, with its claims as
    // PostgREST verified them, is refused.
    m.batch_execute(
        "BEGIN;
         SELECT pg_catalog.set_config('request.jwt.claims', '{\"role\": \"anon\"}', true);
         SELECT oauth.postgrest_pre_request();
         COMMIT;",
    )
    .unwrap();
    let access = jwt["access_token"].as_str().unwrap();
    let claims = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(access.split('.').nth(1).unwrap())
            .unwrap()
    };
    let mut tx = m.transaction().unwrap();
    tx.execute(
        "SELECT pg_catalog.set_config('request.jwt.claims', $1, true),
                pg_catalog.set_config('request.headers', $2, true)",
        &[
            &String::from_utf8(claims).unwrap(),
            &serde_json::json!({ "authorization": format!("Bearer {access}") }).to_string(),
        ],
    )
    .unwrap();
    let refused = tx
        .query_one("SELECT oauth.postgrest_pre_request()", &[])
        .unwrap_err();
    assert!(db_error(&refused).1.contains("revoked"), "{refused:?}");
    drop(tx);
}

/// The administrator's side, run by an admin with the same hostile path: triggers fire on
/// every write. (The admin's own statements qualify what they use, so that only pg_oauth's
/// code could reach the planted objects.)
fn the_administrators_side(cluster: &Cluster, db: &mut postgres::Client) {
    db.batch_execute("GRANT USAGE ON SCHEMA evil TO admin")
        .unwrap();
    let mut a = cluster.connect_as("oauth", "admin");
    a.batch_execute(
        "SET search_path = evil, pg_catalog, oauth;
         INSERT INTO oauth.client (id, secret, scope) VALUES ('admin-client', 'admin-secret', '{read}');
         UPDATE oauth.client SET secret = 'admin-secret-2' WHERE id OPERATOR(pg_catalog.=) 'admin-client';
         INSERT INTO oauth.policy (client_id, role) VALUES ('admin-client', 'api_user');
         SELECT oauth.create_client('generated');
         SELECT oauth.rotate_client_secret('admin-client');
         SELECT oauth.rotate_signing_key('ES256');
         UPDATE oauth.session SET revoked_at = pg_catalog.now()
          WHERE client_id OPERATOR(pg_catalog.=) 'rt-client';
         UPDATE oauth.client SET active = false WHERE id OPERATOR(pg_catalog.=) 'jwt-client';
         DELETE FROM oauth.client WHERE id OPERATOR(pg_catalog.=) 'generated';
         SELECT * FROM oauth.purge_expired(100, interval '1 day');
         SELECT count(*) FROM oauth.audit_event;",
    )
    .unwrap();
}

/// Text that would break SQL built by string formatting, unicode, and megabyte strings:
/// stored and compared exactly, refused with the documented errors, never a crash.
#[test]
fn hostile_text_is_data() {
    let cluster = Cluster::start("hostile-input", &[]);
    let mut db = setup(&cluster);
    let ids = [
        "quote'client",
        "double\"quote",
        "semi;colon--",
        "back\\slash",
        "$1 $$ %s %I {}",
        "x'); DROP TABLE oauth.client; --",
        "ünïcødé-клиент-客户端-🔑",
        "rtl-\u{202e}txet",
        "combining-e\u{301}",
        "urn:example:client'name",
    ];
    let secrets = [
        "p'a\"s;s\\w%o$1rd",
        "пароль-密码-🔐",
        "' OR '1'='1",
        "x\u{202e}y",
    ];
    let scope = "read');DROP-TABLE|$1{x}";
    for (i, id) in ids.iter().enumerate() {
        let secret = secrets[i % secrets.len()];
        db.execute(
            "INSERT INTO oauth.client (id, secret, scope, token_format) VALUES ($1, $2, ARRAY[$3, 'read'], $4)",
            &[id, &secret, &scope, &if i % 2 == 0 { "opaque" } else { "jwt" }],
        )
        .unwrap_or_else(|e| panic!("insert {id:?}: {e}"));
        let t = json(
            &mut db,
            "SELECT oauth.auth_token('client_credentials', $1, $2, $3)",
            &[id, &secret, &scope],
        );
        assert_eq!(t["scope"], scope);
        let claims = json(
            &mut db,
            "SELECT oauth.auth_verify($1)",
            &[&t["access_token"].as_str().unwrap()],
        );
        assert_eq!(claims["client_id"], *id);
        let stored: String = db
            .query_one(
                "SELECT client_id FROM oauth.session WHERE id = ($1::jsonb ->> 'jti')::uuid",
                &[&claims],
            )
            .unwrap()
            .get(0);
        assert_eq!(stored, *id);
        // One character off in the secret, or the id, is a failure like any other.
        let wrong = format!("{secret}x");
        let err = db
            .query_one(
                "SELECT oauth.auth_token('client_credentials', $1, $2)",
                &[id, &wrong],
            )
            .unwrap_err();
        assert_eq!(db_error(&err).0, "28P01");
    }
    let count: i64 = db
        .query_one("SELECT count(*) FROM oauth.client", &[])
        .unwrap()
        .get(0);
    assert_eq!(count as usize, ids.len() + 2, "the table is intact");

    // Every byte of a long secret counts (bcrypt would have stopped at 72).
    let long = "s".repeat(1023) + "a";
    db.execute(
        "INSERT INTO oauth.client (id, secret) VALUES ('long-secret', $1)",
        &[&long],
    )
    .unwrap();
    json(
        &mut db,
        "SELECT oauth.auth_token('client_credentials', 'long-secret', $1)",
        &[&long],
    );
    let last_byte_differs = "s".repeat(1023) + "b";
    let err = db
        .query_one(
            "SELECT oauth.auth_token('client_credentials', 'long-secret', $1)",
            &[&last_byte_differs],
        )
        .unwrap_err();
    assert_eq!(
        db_error(&err),
        (
            "28P01".into(),
            "invalid_client: client authentication failed".into()
        )
    );

    // Megabyte strings in every parameter: a documented error, a short message.
    let mb = "A".repeat(1 << 20);
    let cases: Vec<(&str, Vec<&(dyn postgres::types::ToSql + Sync)>, &str)> = vec![
        ("SELECT oauth.auth_token('client_credentials', $1, 'x')", vec![&mb], "28P01"),
        ("SELECT oauth.auth_token('client_credentials', 'opaque-client', $1)", vec![&mb], "28P01"),
        ("SELECT oauth.auth_token('client_credentials', 'opaque-client', 'opaque-secret', $1)", vec![&mb], "42704"),
        ("SELECT oauth.auth_token('client_credentials', 'opaque-client', 'opaque-secret', 'read', $1)", vec![&mb], "42602"),
        ("SELECT oauth.auth_token($1, 'opaque-client', 'opaque-secret')", vec![&mb], "0A000"),
        ("SELECT oauth.auth_token('refresh_token', 'opaque-client', 'opaque-secret', refresh_token => $1)", vec![&mb], "42501"),
        ("SELECT oauth.auth_token('client_credentials', client_assertion_type => 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion => $1)", vec![&mb], "28P01"),
        ("SELECT oauth.auth_verify($1)", vec![&mb], "28000"),
        ("SELECT oauth.auth_verify('x', $1)", vec![&mb], "28000"),
    ];
    for (sql, params, code) in cases {
        let err = db.query_one(sql, &params).unwrap_err();
        let (got, message) = db_error(&err);
        assert_eq!(got, code, "{sql}: {message:.200}");
        assert!(
            message.len() < 1000,
            "{sql}: a {} byte message",
            message.len()
        );
    }
    let inactive = json(&mut db, "SELECT oauth.auth_introspect($1)", &[&mb]);
    assert_eq!(inactive, serde_json::json!({ "active": false }));
    let revoked: bool = db
        .query_one("SELECT oauth.auth_revoke($1)", &[&mb])
        .unwrap()
        .get(0);
    assert!(!revoked);
    // Over the HTTP surface: a megabyte Basic header and form fields are answered, not crashed on.
    let basic = serde_json::json!({ "authorization": format!("Basic {mb}") });
    let (status, answer) = as_postgrest(
        &mut db,
        &basic,
        "POST",
        "SELECT oauth.http_token(jsonb_build_object('grant_type', 'client_credentials', 'scope', $1::text))",
        &[&mb],
    );
    assert_eq!(
        (status.as_str(), &answer["error"]),
        ("401", &serde_json::json!("invalid_client"))
    );
    let (status, answer) = as_postgrest(
        &mut db,
        &serde_json::json!({}),
        "POST",
        "SELECT oauth.http_introspect(jsonb_build_object('token', $1::text, 'client_id', $1::text, 'client_secret', 'x'))",
        &[&mb],
    );
    assert_eq!(
        (status.as_str(), &answer["error"]),
        ("400", &serde_json::json!("invalid_client"))
    );
    // The failure with a megabyte client id was recorded, cut short.
    let longest: i32 = db
        .query_one("SELECT max(length(client_id)) FROM oauth.auth_failure", &[])
        .unwrap()
        .get(0);
    assert!(longest <= 256, "{longest}");
    // The server is fine.
    json(
        &mut db,
        "SELECT oauth.auth_token('client_credentials', 'opaque-client', 'opaque-secret')",
        &[],
    );
}
