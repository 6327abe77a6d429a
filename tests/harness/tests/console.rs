//! The console (`/console` on the listener). Its API as an attacker and a DBA would try it:
//! no token, a bad one, a token of an ordinary client, of a console client whose role lacks
//! the privileges, a revoked one; who may grant console access, and as which role. Then an
//! operator's session in a real browser (Debian's Chromium driven by Playwright,
//! tests/clients/browser/console.mjs): sign in, create a client, use its secret once over
//! HTTP, see the issued count rise on the chart, revoke its session, see the audit row; edit,
//! rotate, deactivate, rotate a signing key; a client id that is markup shown as text.

use std::time::{Duration, Instant};

use pg_oauth_harness::{free_port, listener_cluster, node_json_in};
use serde_json::{json, Value};

const SECRET: &str = "a-console-secret-long-enough-0123456789";
const XSS_ID: &str = "<img src=x onerror=alert(1)>";

/// Roles and clients: `console` (acts as console_admin, a member of oauth_admin), `weak`
/// (acts as weak_admin, which has no privilege on pg_oauth), `app` (an ordinary client).
const SETUP: &str = "
    CREATE ROLE console_admin NOLOGIN IN ROLE oauth_admin;
    CREATE ROLE weak_admin NOLOGIN;
    CREATE ROLE app_role NOLOGIN;
    CREATE ROLE dba LOGIN IN ROLE oauth_admin;
";

fn clients(db: &mut postgres::Client) {
    db.execute(
        "INSERT INTO oauth.client (id, secret, scope) VALUES
            ('console', $1, '{}'), ('weak', $1, '{}'), ('app', $1, '{read}'), ($2, $1, '{read}')",
        &[&SECRET, &XSS_ID],
    )
    .unwrap();
    db.batch_execute(
        "INSERT INTO oauth.policy (client_id, role) VALUES ('app', 'app_role');
         INSERT INTO oauth.console_access (client_id, role)
         VALUES ('console', 'console_admin'), ('weak', 'weak_admin');",
    )
    .unwrap();
}

fn token(base: &str, client_id: &str) -> String {
    let body: Value = reqwest::blocking::Client::new()
        .post(format!("{base}/token"))
        .basic_auth(client_id, Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    body["access_token"].as_str().expect("a token").to_owned()
}

/// POST /console/api/`action`: (status, WWW-Authenticate, body).
fn call(base: &str, token: Option<&str>, action: &str, args: Value) -> (u16, String, Value) {
    let mut req = reqwest::blocking::Client::new()
        .post(format!("{base}/console/api/{action}"))
        .json(&args);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, challenge, resp.json().unwrap_or(Value::Null))
}

const ACTIONS: [&str; 10] = [
    "clients",
    "create_client",
    "update_client",
    "rotate_secret",
    "sessions",
    "revoke",
    "keys",
    "rotate_key",
    "audit",
    "stats",
];

#[test]
fn only_a_console_client_acting_as_an_admin_role_gets_anything() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (cluster, mut db) = listener_cluster("console_api", port, &base, &[], SETUP);
    clients(&mut db);
    cluster.wait_for_listener(&format!("127.0.0.1:{port}"));
    let args = json!({ "id": "app", "session_id": "00000000-0000-0000-0000-000000000000" });

    // Anonymous, or a token that is not one: 401 with a Bearer challenge, for every action.
    for action in ACTIONS {
        let (status, challenge, body) = call(&base, None, action, args.clone());
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token"))
        );
        assert!(challenge.starts_with("Bearer "), "{challenge}");
        let (status, _, _) = call(&base, Some("not-a-token"), action, args.clone());
        assert_eq!(status, 401, "{action}");
    }

    // An ordinary client's valid token: 403 everywhere, nothing done.
    let app = token(&base, "app");
    for action in ACTIONS.iter().chain(&["whoami"]) {
        let (status, _, body) = call(&base, Some(&app), action, args.clone());
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("access_denied")),
            "{action}: {body}"
        );
    }
    let secret_rotated: i64 = db
        .query_one(
            "SELECT count(*) FROM oauth.client WHERE id = 'app' AND previous_secret IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(secret_rotated, 0);

    // A console client whose role has no privilege on pg_oauth: signed in, but PostgreSQL
    // refuses every action, as it would refuse that role's SQL.
    let weak = token(&base, "weak");
    let (status, _, who) = call(&base, Some(&weak), "whoami", json!({}));
    assert_eq!(
        (status, &who),
        (200, &json!({"client_id": "weak", "role": "weak_admin"}))
    );
    for action in ACTIONS {
        let (status, _, body) = call(&base, Some(&weak), action, args.clone());
        assert_eq!(status, 403, "{action}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .starts_with("permission denied"),
            "{action}: {body}"
        );
    }

    // The console client: it lists clients without a secret hash, and acts as its role.
    let admin = token(&base, "console");
    let (status, _, listed) = call(&base, Some(&admin), "clients", json!({}));
    assert_eq!(status, 200, "{listed}");
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [XSS_ID, "app", "console", "weak"]);
    assert!(!listed.to_string().contains("$argon2"), "{listed}");
    assert_eq!(listed[1]["role"], "app_role");
    assert_eq!(listed[2]["console_role"], "console_admin");
    let (status, _, made) = call(
        &base,
        Some(&admin),
        "create_client",
        json!({"id": "made", "scope": "read", "role": "app_role"}),
    );
    assert_eq!(status, 200, "{made}");
    let made_by: String = db
        .query_one(
            "SELECT p.role::text FROM oauth.policy p JOIN oauth.client c ON c.id = p.client_id WHERE c.id = 'made'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(made_by, "app_role");
    // What PostgreSQL refuses is refused with its message (insufficient_privilege a 403,
    // bad input a 400); the rule on policy roles holds at the console too.
    let (status, _, body) = call(
        &base,
        Some(&admin),
        "update_client",
        json!({"id": "made", "role": "console_admin"}),
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("administers or calls pg_oauth"),
        "{body}"
    );
    let (status, _, body) = call(&base, Some(&admin), "revoke", json!({"session_id": "x"}));
    assert_eq!(status, 400, "{body}");

    // Revoked, the console's own token signs in no more.
    let (status, _, body) = call(
        &base,
        Some(&admin),
        "revoke",
        json!({"client_id": "console"}),
    );
    assert_eq!(
        (status, body["sessions"].as_i64()),
        (200, Some(1)),
        "{body}"
    );
    let (status, _, _) = call(&base, Some(&admin), "clients", json!({}));
    assert_eq!(status, 401);

    // Only a member of the role may let the console act as it; privileged roles never.
    let mut dba = cluster.connect_as("postgres", "dba");
    let err = dba
        .execute(
            "INSERT INTO oauth.console_access (client_id, role) VALUES ('made', 'console_admin')",
            &[],
        )
        .unwrap_err();
    let message = |err: postgres::Error| err.as_db_error().unwrap().message().to_owned();
    let err = message(err);
    assert!(
        err.contains("only a member of role \"console_admin\""),
        "{err}"
    );
    let err = db
        .execute(
            "INSERT INTO oauth.console_access (client_id, role) VALUES ('made', 'postgres')",
            &[],
        )
        .unwrap_err();
    let err = message(err);
    assert!(err.contains("is a superuser"), "{err}");
    let err = db
        .execute(
            "INSERT INTO oauth.policy (client_id, role) VALUES ('made', 'console_admin') \
             ON CONFLICT (client_id) DO UPDATE SET role = EXCLUDED.role",
            &[],
        )
        .unwrap_err();
    let err = message(err);
    assert!(err.contains("administers or calls"), "{err}");
    // Deleting the client deletes its console access.
    db.batch_execute("DELETE FROM oauth.client WHERE id = 'weak'")
        .unwrap();
    let left: i64 = db
        .query_one("SELECT count(*) FROM oauth.console_access", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 1);

    // Off by setting: neither the page nor the API.
    db.batch_execute("ALTER SYSTEM SET pg_oauth.http_console = off")
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = reqwest::blocking::get(format!("{base}/console"))
            .unwrap()
            .status();
        let (api, _, _) = call(&base, Some(&app), "clients", json!({}));
        if page == 404 && api == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "still served: {page} {api}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_operator_creates_a_client_sees_it_work_and_revokes_its_token_in_the_browser() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (cluster, mut db) = listener_cluster("console_browser", port, &base, &[], SETUP);
    clients(&mut db);
    cluster.wait_for_listener(&format!("127.0.0.1:{port}"));
    // PG_OAUTH_SCREENSHOTS=<dir> keeps the page's picture (docs/console.png is one), taken
    // under nine seconds of another client's tokens so the charts have something to show.
    let kept = std::env::var("PG_OAUTH_SCREENSHOTS").ok();
    let screenshot = kept
        .as_ref()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| cluster.dir.clone())
        .join("console.png");
    let load = if kept.is_some() { "app" } else { "" };
    let seen = node_json_in(
        "browser",
        &["console.mjs"],
        &[
            ("BASE", &base),
            ("CONSOLE_ID", "console"),
            ("CONSOLE_SECRET", SECRET),
            ("NEW_ID", "billing-service"),
            ("ROLE", "app_role"),
            ("XSS_ID", XSS_ID),
            ("APP_ID", load),
            ("APP_SECRET", SECRET),
            ("SCREENSHOT", screenshot.to_str().unwrap()),
        ],
    );
    let text = |key: &str| seen[key].as_str().unwrap_or_default().to_owned();

    assert_eq!(seen["status"], 200);
    let csp = text("csp");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(seen["frameOptions"], "DENY");

    assert!(
        text("wrongSecret").contains("client authentication failed"),
        "{seen}"
    );
    assert_eq!(
        text("whoami"),
        "Signed in as console, acting as role console_admin."
    );
    assert_eq!(seen["stored"], 0, "nothing kept in storage or cookies");

    assert_eq!(text("secretShownFor"), "billing-service");
    assert_eq!(text("secretAfterDone"), "");
    assert!(text("newRow").contains("read write"), "{}", text("newRow"));
    assert!(text("newRow").contains("app_role"), "{}", text("newRow"));
    assert_eq!(text("xssRow"), XSS_ID);
    assert_eq!(seen["images"], 0);
    assert_eq!(seen["dialogs"], json!([]));

    // Its secret worked once over HTTP, and the chart counted it.
    assert_eq!(seen["tokenStatus"], 200);
    let (before, after) = (
        seen["issuedBefore"].as_i64().unwrap(),
        seen["issuedAfter"].as_i64().unwrap(),
    );
    assert!(after > before, "{before} -> {after}");
    let points = text("ratePoints");
    assert!(points.split(' ').count() >= 2, "{points}");
    assert!(text("rateLabel").starts_with("tokens per second"));
    // The one refusal so far is the wrong secret at sign-in; no source was throttled.
    assert_eq!(
        seen["refusals"],
        json!([["client authentication: wrong_secret", "1"]])
    );
    assert_eq!(text("throttled"), "None.");

    // Revoked at the console: gone from the live list, inactive, in the audit trail.
    assert!(
        text("sessionRow").contains("live"),
        "{}",
        text("sessionRow")
    );
    assert_eq!(text("revokedMessage"), "Revoked 1 token.");
    assert_eq!(seen["liveAfter"], 0);
    assert_eq!(seen["introspectedAfter"], json!({"active": false}));
    let audit = seen["auditRows"].as_array().unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0][1], "token revoked");
    assert_eq!(audit[0][2], "billing-service");
    assert!(audit[0][3]
        .as_str()
        .unwrap()
        .contains("revoked at the console by console"));
    let reason: String = db
        .query_one(
            "SELECT revoked_reason FROM oauth.session WHERE client_id = 'billing-service'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(reason, "revoked at the console by console");

    // Edited, rotated, deactivated: as the table says.
    assert_eq!(seen["rotatedSecretDiffers"], true);
    let row = text("editedRow");
    assert!(
        row.starts_with("billing-serviceno") && row.contains("read"),
        "{row}"
    );
    let (scope, active, rotated): (Vec<String>, bool, bool) = {
        let r = db
            .query_one(
                "SELECT scope, active, previous_secret_expires_at IS NOT NULL FROM oauth.client WHERE id = 'billing-service'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(
        (scope, active, rotated),
        (vec!["read".to_owned()], false, true)
    );

    assert!(
        text("rotated").starts_with("Rotated: "),
        "{}",
        text("rotated")
    );
    let states: Vec<&str> = seen["keyStates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"active") && states.contains(&"next"),
        "{states:?}"
    );

    assert_eq!(seen["unlabelled"], json!([]));
    assert!(
        seen["phoneOverflow"].as_i64().unwrap() <= 0,
        "{}",
        seen["phoneOverflow"]
    );
    assert_eq!(seen["keyboardTab"], "true");
    assert_eq!(text("signedOut"), "Signed out.");
    assert_eq!(seen["inlineBlocked"], true);
    // The only errors in the browser's console: the network log of the wrong secret's 401.
    assert_eq!(
        seen["errorsBeforeInjection"],
        json!([
            "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
        ])
    );
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}
