//! Installing a build under a running server: `make install` (packaging/install) renames each
//! file into place, so a server with pg_oauth in shared_preload_libraries keeps the library it
//! has mapped and goes on serving. Copying over the file in place (as `cargo pgrx install`
//! does) changed the pages under the running listener and killed the whole server.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pg_oauth_harness::{free_port, pg_config, repo_root, Cluster};

#[test]
fn a_new_build_installs_under_a_running_listener_without_stopping_it() {
    let port = free_port();
    let listen = format!("'127.0.0.1:{port}'");
    let mut cluster = Cluster::start(
        "install",
        &[
            ("shared_preload_libraries", "'pg_oauth'"),
            ("pg_oauth.http_listen", listen.as_str()),
        ],
    );
    cluster
        .connect("postgres")
        .batch_execute(
            "CREATE EXTENSION pg_oauth;
             INSERT INTO oauth.client (id, secret, scope)
             VALUES ('install-client', 'a-secret-long-enough-to-be-proven-0123', '{read}');",
        )
        .unwrap();
    let token_url = format!("http://127.0.0.1:{port}/token");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let request = move |http: &reqwest::blocking::Client| {
        http.post(&token_url)
            .basic_auth(
                "install-client",
                Some("a-secret-long-enough-to-be-proven-0123"),
            )
            .form(&[("grant_type", "client_credentials")])
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(request(&http), 200);
    let request = Arc::new(request);

    // Requests keep coming while the library file is replaced.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = std::thread::spawn({
        let (stop, served, failed, http) = (stop.clone(), served.clone(), failed.clone(), http);
        let request = request.clone();
        move || {
            while !stop.load(Ordering::Relaxed) {
                match request(&http) {
                    200 => served.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));

    // A staged tree holding a copy of the installed library, installed as `make install`
    // installs its build.
    let library = pg_config("--pkglibdir").join("pg_oauth.so");
    let stage = cluster.dir.join("stage");
    let staged = stage.join(library.strip_prefix("/").unwrap());
    std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
    std::fs::copy(&library, &staged).unwrap();
    let installed = Command::new("bash")
        .arg(repo_root().join("packaging/install-files"))
        .arg(&stage)
        .output()
        .expect("packaging/install-files");
    assert!(
        installed.status.success(),
        "install-files: {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();

    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert!(served > 10, "only {served} requests served");
    assert_eq!(
        failed, 0,
        "{failed} requests failed while the library was replaced"
    );
    assert_eq!(request(&reqwest::blocking::Client::new()), 200);
    let log = cluster.log();
    assert!(
        !log.contains("terminated by signal") && !log.contains("was terminated"),
        "a process died:\n{log}"
    );
    // New backends load the new file; the server still answers SQL.
    cluster
        .connect("postgres")
        .batch_execute("SELECT oauth.auth_jwks()")
        .unwrap();
    cluster.stop_server("fast");
}
