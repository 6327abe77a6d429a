//! pg_oauth's roles are cluster-wide: with the extension in two databases, a member of
//! oauth_admin administers both unless CONNECT keeps it to one. CREATE EXTENSION says so when
//! the roles exist already, and the documented separation (CONNECT per database) holds.

use pg_oauth_harness::{postgres, Cluster};

#[test]
fn databases_are_kept_apart_by_connect_and_the_shared_roles_are_announced() {
    let cluster = Cluster::start("roles", &[]);
    let mut app1 = cluster.create_db("app1");
    let warnings_before = cluster
        .log()
        .matches("WARNING:  pg_oauth: the roles oauth_admin and oauth_app exist already")
        .count();
    drop(cluster.create_db("app2"));
    // (The server's log may reach its file a moment after the statement returns.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while cluster
        .log()
        .matches("WARNING:  pg_oauth: the roles oauth_admin and oauth_app exist already")
        .count()
        == warnings_before
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        cluster
            .log()
            .matches("WARNING:  pg_oauth: the roles oauth_admin and oauth_app exist already")
            .count(),
        warnings_before + 1,
        "no warning that oauth_admin and oauth_app are shared:\n{}",
        cluster.log()
    );
    app1.batch_execute(
        "CREATE ROLE app1_admin LOGIN IN ROLE oauth_admin;
         REVOKE CONNECT ON DATABASE app2 FROM PUBLIC;",
    )
    .unwrap();
    cluster
        .connect("app2")
        .batch_execute("INSERT INTO oauth.client (id, secret) VALUES ('app2-client', 'x')")
        .unwrap();

    // app1's administrator manages app1 ...
    let mut admin1 = cluster.connect_as("app1", "app1_admin");
    admin1
        .batch_execute("INSERT INTO oauth.client (id, secret) VALUES ('app1-client', 'x')")
        .unwrap();
    // ... and cannot reach app2 at all.
    let refused = postgres::Client::connect(
        &format!(
            "host=127.0.0.1 port={} dbname=app2 user=app1_admin",
            cluster.port
        ),
        postgres::NoTls,
    );
    let err = refused.err().expect("app1_admin connected to app2");
    let message = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("permission denied for database"), "{err}");
}
