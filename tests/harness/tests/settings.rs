//! One rule for pg_oauth's settings (docs/reference.md, "Settings"): a database's value wins
//! over the server's, and a change applies on reload to every session. Checked with the
//! issuer, as four callers see it for one database: a new SQL session, an SQL session opened
//! before the change (as a PostgREST pool's are), PostgREST itself, and the listener — across
//! ALTER SYSTEM, ALTER DATABASE, a restart and ALTER DATABASE ... RESET.

use std::time::{Duration, Instant};

use pg_oauth_harness::{free_port, postgres, repo_root, Cluster, PostgRest};
use reqwest::blocking::Client as Http;
use serde_json::Value;

const METADATA_ISSUER: &str = "SELECT oauth.auth_metadata() ->> 'issuer'";

struct Callers {
    old: postgres::Client,
    rest: PostgRest,
    listener: String,
    http: Http,
}

impl Callers {
    /// The issuer each caller sees: new SQL session, old SQL session, PostgREST, listener.
    fn issuers(&mut self, cluster: &Cluster) -> Vec<String> {
        let sql = |db: &mut postgres::Client| -> String {
            db.query_one(METADATA_ISSUER, &[])
                .map(|row| row.get(0))
                .unwrap_or_else(|e| format!("error: {e}"))
        };
        let document = |url: String| -> String {
            self.http
                .get(url)
                .send()
                .and_then(|r| r.json::<Value>())
                .map(|v| v["issuer"].as_str().unwrap_or("none").to_owned())
                .unwrap_or_else(|e| format!("error: {e}"))
        };
        vec![
            sql(&mut cluster.connect("app")),
            sql(&mut self.old),
            document(self.rest.url("/rpc/metadata")),
            document(format!(
                "{}/.well-known/oauth-authorization-server",
                self.listener
            )),
        ]
    }

    /// Wait (a reload reaches every process within moments) until all four see `expected`.
    fn agree_on(&mut self, cluster: &Cluster, expected: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = self.issuers(cluster);
            if seen.iter().all(|s| s == expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: new SQL, old SQL, PostgREST, listener see {seen:?}, not {expected}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn reload(cluster: &Cluster) {
    cluster
        .connect("postgres")
        .batch_execute("SELECT pg_reload_conf()")
        .unwrap();
}

#[test]
fn the_databases_issuer_wins_everywhere_and_follows_every_reload() {
    let port = free_port();
    let listen = format!("'127.0.0.1:{port}'");
    let mut cluster = Cluster::start(
        "settings-issuer",
        &[
            ("shared_preload_libraries", "'pg_oauth'"),
            ("pg_oauth.http_listen", listen.as_str()),
            ("pg_oauth.http_database", "'app'"),
        ],
    );
    // README's PostgREST recipe: it sets the issuer with ALTER DATABASE.
    cluster.recipe_app(
        &repo_root().join("examples/postgrest/setup.sql"),
        &[("issuer", "https://first.example")],
    );
    cluster.wait_for_listener(&format!("127.0.0.1:{port}"));
    let mut old = cluster.connect("app");
    old.query_one(METADATA_ISSUER, &[]).unwrap();
    let mut callers = Callers {
        old,
        rest: PostgRest::start(&cluster, "app"),
        listener: format!("http://127.0.0.1:{port}"),
        http: Http::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    };
    // The listener's workers may have connected before the recipe's ALTER DATABASE: a
    // reload brings them to it, as it does every session.
    reload(&cluster);
    callers.agree_on(&cluster, "https://first.example", "after the recipe");

    // The server's value does not override the database's, before or after a restart.
    cluster
        .connect("postgres")
        .batch_execute("ALTER SYSTEM SET pg_oauth.issuer = 'https://system.example'")
        .unwrap();
    reload(&cluster);
    callers.agree_on(&cluster, "https://first.example", "after ALTER SYSTEM");

    // A new database value reaches sessions opened before it, PostgREST's and the listener's.
    cluster
        .connect("postgres")
        .batch_execute("ALTER DATABASE app SET pg_oauth.issuer = 'https://second.example'")
        .unwrap();
    reload(&cluster);
    callers.agree_on(&cluster, "https://second.example", "after ALTER DATABASE");

    cluster.stop_server("fast");
    cluster.start_server();
    cluster.wait_for_listener(&format!("127.0.0.1:{port}"));
    callers.old = cluster.connect("app");
    callers.old.query_one(METADATA_ISSUER, &[]).unwrap();
    callers.agree_on(&cluster, "https://second.example", "after a restart");

    // Without the database's value, the server's applies, to old sessions too.
    cluster
        .connect("postgres")
        .batch_execute("ALTER DATABASE app RESET pg_oauth.issuer")
        .unwrap();
    reload(&cluster);
    callers.agree_on(&cluster, "https://system.example", "after RESET");

    // A session's own SET still wins for that session (a superuser's test, say).
    let mut own = cluster.connect("app");
    own.batch_execute("SET pg_oauth.issuer = 'https://mine.example'")
        .unwrap();
    reload(&cluster);
    std::thread::sleep(Duration::from_millis(300));
    let mine: String = own.query_one(METADATA_ISSUER, &[]).unwrap().get(0);
    assert_eq!(mine, "https://mine.example");
}
