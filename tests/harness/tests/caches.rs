//! The per-backend caches (clients, verified secrets, signing keys) never outlive a
//! committed change: another backend's UPDATE, rotation, deactivation or policy change
//! applies to this backend's very next call — even inside a transaction it keeps open.

use pg_oauth_harness::{postgres, Cluster};

fn token(db: &mut impl postgres::GenericClient, secret: &str) -> Result<serde_json::Value, String> {
    db.query_one(
        "SELECT oauth.auth_token('client_credentials', 'cached', $1)",
        &[&secret],
    )
    .map(|row| row.get(0))
    .map_err(|e| pg_oauth_harness::db_error(&e).1)
}

#[test]
fn changes_reach_a_warm_backend_at_its_next_call() {
    let cluster = Cluster::start("caches", &[]);
    let mut admin = cluster.create_db_with("oauth", &[("pg_oauth.issuer", "https://issuer.test")]);
    admin
        .batch_execute(
            "CREATE ROLE role_a NOLOGIN; CREATE ROLE role_b NOLOGIN;
             INSERT INTO oauth.client (id, secret, scope, token_format) VALUES ('cached', 'first', '{read}', 'jwt');
             INSERT INTO oauth.policy (client_id, role) VALUES ('cached', 'role_a');",
        )
        .unwrap();
    let mut app = cluster.connect("oauth");
    // Warm every cache in the app backend.
    for _ in 0..3 {
        token(&mut app, "first").unwrap();
    }

    // A new secret: the old one stops working at once, the new one works.
    admin
        .execute(
            "UPDATE oauth.client SET secret = 'second' WHERE id = 'cached'",
            &[],
        )
        .unwrap();
    assert!(token(&mut app, "first")
        .unwrap_err()
        .contains("invalid_client"));
    token(&mut app, "second").unwrap();

    // Scope and policy changes show in the next token.
    admin
        .execute(
            "UPDATE oauth.client SET scope = '{read,write}' WHERE id = 'cached'",
            &[],
        )
        .unwrap();
    admin
        .execute(
            "UPDATE oauth.policy SET role = 'role_b' WHERE client_id = 'cached'",
            &[],
        )
        .unwrap();
    let t = token(&mut app, "second").unwrap();
    assert_eq!(t["scope"], "read write");
    let claims: serde_json::Value = app
        .query_one(
            "SELECT oauth.auth_verify($1)",
            &[&t["access_token"].as_str().unwrap()],
        )
        .unwrap()
        .get(0);
    assert_eq!(claims["role"], "role_b");

    // A role made superuser (a syscache change, not a table change) is refused at once.
    admin.execute("ALTER ROLE role_b SUPERUSER", &[]).unwrap();
    assert!(token(&mut app, "second").unwrap_err().contains("superuser"));
    admin.execute("ALTER ROLE role_b NOSUPERUSER", &[]).unwrap();
    token(&mut app, "second").unwrap();

    // Inside one long transaction of the app that began before it: a deactivation
    // committed elsewhere applies at the next call (as a statement in READ COMMITTED would
    // see it).
    let mut tx = app.transaction().unwrap();
    tx.batch_execute("SELECT 1").unwrap();
    admin
        .execute(
            "UPDATE oauth.client SET active = false WHERE id = 'cached'",
            &[],
        )
        .unwrap();
    assert!(token(&mut tx, "second").unwrap_err().contains("inactive"));
    tx.rollback().unwrap();
    admin
        .execute(
            "UPDATE oauth.client SET active = true WHERE id = 'cached'",
            &[],
        )
        .unwrap();
    // A transaction that issued a token holds the client until it ends: a deactivation
    // waits for it (and then revokes that token), rather than leaving it valid.
    let mut tx = app.transaction().unwrap();
    token(&mut tx, "second").unwrap();
    let deactivation = std::thread::spawn({
        let mut admin = cluster.connect("oauth");
        move || {
            admin
                .execute(
                    "UPDATE oauth.client SET active = false WHERE id = 'cached'",
                    &[],
                )
                .unwrap();
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!deactivation.is_finished(), "the deactivation did not wait");
    tx.commit().unwrap();
    deactivation.join().unwrap();
    assert!(token(&mut app, "second").unwrap_err().contains("inactive"));
    admin
        .execute(
            "UPDATE oauth.client SET active = true WHERE id = 'cached'",
            &[],
        )
        .unwrap();

    // A rotation: both secrets work in the grace period, in the warm backend too.
    let third: String = admin
        .query_one(
            "SELECT oauth.rotate_client_secret('cached', interval '1 hour')",
            &[],
        )
        .unwrap()
        .get(0);
    token(&mut app, &third).unwrap();
    token(&mut app, "second").unwrap();
    admin
        .execute(
            "UPDATE oauth.client SET previous_secret_expires_at = now() WHERE id = 'cached'",
            &[],
        )
        .unwrap();
    assert!(token(&mut app, "second")
        .unwrap_err()
        .contains("invalid_client"));
    token(&mut app, &third).unwrap();

    // Keys: a token signed by a key another backend deletes stops verifying in a warm
    // backend, even within its open transaction.
    let t = token(&mut app, &third).unwrap();
    let access = t["access_token"].as_str().unwrap().to_owned();
    let mut tx = app.transaction().unwrap();
    tx.query_one("SELECT oauth.auth_verify($1)", &[&access])
        .unwrap();
    admin
        .execute("DELETE FROM oauth.signing_key WHERE state = 'active'", &[])
        .unwrap();
    let err = tx
        .query_one("SELECT oauth.auth_verify($1)", &[&access])
        .unwrap_err();
    assert!(pg_oauth_harness::db_error(&err)
        .1
        .contains("unknown signing key"));
    tx.rollback().unwrap();

    // A deleted client is gone for the warm backend at its next call.
    token(&mut app, &third).unwrap();
    admin
        .execute("DELETE FROM oauth.client WHERE id = 'cached'", &[])
        .unwrap();
    assert!(token(&mut app, &third)
        .unwrap_err()
        .contains("invalid_client"));
}
