//! The auth sandbox (`/sandbox` on the listener) in a real browser: Debian's Chromium driven by
//! Playwright (tests/clients/browser/sandbox.mjs). A developer's session: a token for a JWT
//! client, the request and curl line shown, the JWT decoded and its signature verified in the
//! browser against /jwks, introspected, revoked and then inactive; a wrong secret's error; an
//! opaque token; private_key_jwt signed by WebCrypto; a key made in the browser. And an
//! attacker's: a client id that is markup renders as text, no inline script runs (CSP), the
//! page cannot be framed.

use pg_oauth_harness::{free_port, listener_cluster, node_json_in};

const SECRET: &str = "a-sandbox-secret-long-enough-0123456789";
const XSS_ID: &str = "<img src=x onerror=alert(1)>";

#[test]
fn a_developer_gets_verifies_introspects_and_revokes_a_token_in_the_browser() {
    let pair = node_json_in("browser", &["sandbox.mjs", "keypair"], &[]);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let jwks = serde_json::json!({ "keys": [pair["public"]] });
    let (cluster, mut db) = listener_cluster("sandbox", port, &base, &[], "");
    db.execute(
        "INSERT INTO oauth.client (id, secret, scope, token_format)
         VALUES ('sandbox-jwt', $1, '{read}', 'jwt'), ($2, $1, '{read}', 'jwt'),
                ('sandbox-opaque', $1, '{read}', 'opaque')",
        &[&SECRET, &XSS_ID],
    )
    .unwrap();
    db.execute(
        "INSERT INTO oauth.client (id, scope, token_format, jwks) VALUES ('sandbox-pk', '{read}', 'jwt', $1)",
        &[&jwks],
    )
    .unwrap();
    cluster.wait_for_listener(&format!("127.0.0.1:{port}"));
    // PG_OAUTH_SCREENSHOTS=<dir> keeps the page's picture (docs/sandbox.png is one).
    let screenshot = std::env::var("PG_OAUTH_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| cluster.dir.clone())
        .join("sandbox.png");
    let private_jwk = pair["private"].to_string();
    let seen = node_json_in(
        "browser",
        &["sandbox.mjs"],
        &[
            ("BASE", &base),
            ("CLIENT_ID", "sandbox-jwt"),
            ("SECRET", SECRET),
            ("OPAQUE_ID", "sandbox-opaque"),
            ("XSS_ID", XSS_ID),
            ("PK_ID", "sandbox-pk"),
            ("PK_JWK", &private_jwk),
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
        text("request").starts_with("POST /token HTTP/1.1"),
        "{}",
        text("request")
    );
    assert!(text("request").contains("grant_type=client_credentials"));
    assert!(
        text("curl").starts_with("curl -u 'sandbox-jwt:"),
        "{}",
        text("curl")
    );
    assert!(
        text("response").starts_with("HTTP 200"),
        "{}",
        text("response")
    );
    assert!(
        text("verification").starts_with("Signature verified in this browser"),
        "{}",
        text("verification")
    );
    assert_eq!(seen["claims"]["client_id"], "sandbox-jwt");
    assert_eq!(seen["claims"]["iss"], base.as_str());
    assert!(
        text("introspected").contains("\"active\": true"),
        "{}",
        text("introspected")
    );
    assert!(text("revoked").contains("HTTP 200"), "{}", text("revoked"));
    assert!(
        text("afterRevocation").contains("\"active\": false"),
        "{}",
        text("afterRevocation")
    );
    assert!(
        text("refused").starts_with("HTTP 401"),
        "{}",
        text("refused")
    );
    assert!(text("refused").contains("invalid_client"));
    assert!(
        text("opaque").contains("opaque token"),
        "{}",
        text("opaque")
    );

    // Markup from the server is text.
    assert!(text("xssClaims").contains(XSS_ID), "{}", text("xssClaims"));
    assert_eq!(seen["images"], 0);
    assert_eq!(seen["dialogs"], serde_json::json!([]));
    assert_eq!(seen["inlineBlocked"], true);

    let assertion = &seen["assertion"];
    assert!(
        assertion["response"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 200"),
        "{assertion}"
    );
    assert!(assertion["verification"]
        .as_str()
        .unwrap()
        .starts_with("Signature verified"));
    let made = &seen["generated"]["keys"][0];
    assert!(
        made["x"].is_string() && made["y"].is_string() && made.get("d").is_none(),
        "{made}"
    );

    assert_eq!(seen["unlabelled"], serde_json::json!([]));
    // The console's only error is the network log of the wrong secret's 401.
    assert_eq!(
        seen["consoleErrorsBefore"],
        serde_json::json!([
            "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
        ])
    );
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);

    // Off by setting.
    db.batch_execute("ALTER SYSTEM SET pg_oauth.http_sandbox = off")
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = reqwest::blocking::get(format!("{base}/sandbox"))
            .unwrap()
            .status();
        if status == 404 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still served: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
