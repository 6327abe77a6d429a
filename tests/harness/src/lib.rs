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

/// The PostgreSQL major version the extension is built for (`PG_VERSION`, default 15).
pub fn pg_version() -> String {
    std::env::var("PG_VERSION").unwrap_or_else(|_| "15".into())
}

/// Where the server programs live (`PG_BINDIR`, default Debian's layout).
pub fn pg_bindir() -> PathBuf {
    std::env::var_os("PG_BINDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/usr/lib/postgresql/{}/bin", pg_version())))
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
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    running: bool,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl Cluster {
    /// initdb and start a new cluster with extra `postgresql.conf` settings.
    pub fn start(name: &str, settings: &[(&str, &str)]) -> Cluster {
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
        let data = dir.join("data");
        run(
            server_command(pg_bindir().join("initdb"))
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "-D",
                ])
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
        let mut cluster = Cluster {
            dir,
            port: 0,
            running: false,
        };
        cluster.start_server();
        cluster
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
            server_command(pg_bindir().join("pg_ctl"))
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
            let _ = server_command(pg_bindir().join("pg_ctl"))
                .args(["stop", "-w", "-m", mode, "-D"])
                .arg(self.data_dir())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.running = false;
        }
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_server("immediate");
        if std::env::var_os("PG_OAUTH_KEEP_CLUSTER").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
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

/// A JSON value from a one-row, one-column query.
pub fn json(
    db: &mut postgres::Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> serde_json::Value {
    db.query_one(sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}
