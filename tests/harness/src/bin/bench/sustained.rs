//! `make bench`, sustained issuance: pg_oauth's listener at full speed (hey -c 16) for
//! BENCH_SUSTAINED_MINUTES (10) minutes, with oauth.purge_expired run every 10 s as pg_cron
//! would run it. Tokens live 60 s and oauth.session's partitions turn every 20 s, so the purge
//! empties partitions from the second minute on. Reported minute by minute: tokens/s,
//! latency, and oauth.session's rows and size; and the longest time a listener worker (the
//! issuer) was seen waiting for a lock, sampled from pg_locks every 5 ms.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pg_oauth_harness::Cluster;

use super::http::hey_run;
use super::Stat;

/// Token lifetime and partition interval of the scenario, in seconds.
const LIFETIME: i64 = 60;
const INTERVAL: i64 = 20;
const PURGE_EVERY: Duration = Duration::from_secs(10);

struct Minute {
    rps: f64,
    p99_ms: f64,
    slowest_ms: f64,
    rows: i64,
    mb: f64,
}

pub struct Sustained {
    minutes: Vec<Minute>,
    purges: Stat,
    /// Longest lock wait of a listener worker seen, in ms, and what it waited for.
    lock_wait_ms: f64,
    lock_wait_on: String,
}

fn session_size(cluster: &Cluster) -> (i64, f64) {
    let row = cluster
        .connect("app")
        .query_one(
            "SELECT (SELECT count(*) FROM oauth.session),
                    (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits
                      WHERE inhparent = 'oauth.session'::regclass)::float8 / 1048576",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// Run `f` every `every` until `stop` (in a thread).
fn every(
    every: Duration,
    stop: &Arc<AtomicBool>,
    mut f: impl FnMut() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let stop = stop.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            f();
            std::thread::sleep(every.saturating_sub(started.elapsed()));
        }
    })
}

pub fn run(cluster: &Cluster, listener_port: u16, minutes: u64) -> Sustained {
    let mut admin = cluster.connect("app");
    // One statement each: ALTER SYSTEM cannot run in a transaction block.
    for sql in [
        format!("ALTER SYSTEM SET pg_oauth.session_partition_interval = {INTERVAL}"),
        "ALTER SYSTEM SET pg_oauth.audit_min_retention = 0".into(),
        "SELECT pg_reload_conf()".into(),
        "TRUNCATE oauth.session".into(),
        format!(
            "INSERT INTO oauth.client (id, secret, scope, access_token_expiration)
             VALUES ('bench-sustained', 'benchsecret', '{{read}}', {LIFETIME})"
        ),
    ] {
        admin.batch_execute(&sql).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1)); // the workers reload
    let stop = Arc::new(AtomicBool::new(false));
    let purge_ms = Arc::new(Mutex::new(Stat::default()));
    let purger = every(PURGE_EVERY, &stop, {
        let (mut db, purge_ms) = (cluster.connect("app"), purge_ms.clone());
        move || {
            let started = Instant::now();
            db.batch_execute("SELECT sum(deleted) FROM oauth.purge_expired(50000, interval '0')")
                .unwrap();
            purge_ms
                .lock()
                .unwrap()
                .push(started.elapsed().as_secs_f64() * 1000.0);
        }
    });
    let longest = Arc::new(Mutex::new((0.0f64, String::new())));
    let sampler = every(Duration::from_millis(5), &stop, {
        let (mut db, longest) = (cluster.connect("app"), longest.clone());
        move || {
            let rows = db
                .query(
                    "SELECT extract(epoch FROM clock_timestamp() - l.waitstart)::float8 * 1000,
                            l.locktype || ' ' || coalesce(l.relation::regclass::text, '') || ' ' || l.mode
                       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                      WHERE NOT l.granted AND a.backend_type = 'pg_oauth http listener'
                        AND l.waitstart IS NOT NULL",
                    &[],
                )
                .unwrap();
            let mut longest = longest.lock().unwrap();
            for row in rows {
                let ms: f64 = row.get(0);
                if ms > longest.0 {
                    *longest = (ms, row.get(1));
                }
            }
        }
    });

    let url = format!("http://127.0.0.1:{listener_port}/token");
    let form = Some((
        "bench-sustained:benchsecret",
        "grant_type=client_credentials&scope=read",
    ));
    let mut results = Vec::new();
    for minute in 1..=minutes {
        let run = hey_run(&url, form, 60);
        let (rows, mb) = session_size(cluster);
        println!(
            "  sustained minute {minute}: {:.0} tokens/s, p99 {:.1} ms, slowest {:.0} ms; oauth.session {rows} rows, {mb:.0} MB",
            run.rps, run.p99_ms, run.slowest_ms
        );
        results.push(Minute {
            rps: run.rps,
            p99_ms: run.p99_ms,
            slowest_ms: run.slowest_ms,
            rows,
            mb,
        });
    }
    stop.store(true, Ordering::Relaxed);
    purger.join().unwrap();
    sampler.join().unwrap();
    let (lock_wait_ms, lock_wait_on) = longest.lock().unwrap().clone();
    let purges = purge_ms.lock().unwrap().clone();
    Sustained {
        minutes: results,
        purges,
        lock_wait_ms,
        lock_wait_on,
    }
}

impl Sustained {
    /// The summary rows of BENCHMARKS.md's table.
    pub fn rows(&self) -> String {
        let (first, last) = (&self.minutes[0], &self.minutes[self.minutes.len() - 1]);
        let peak = self.minutes.iter().map(|m| m.mb).fold(0.0, f64::max);
        let peak_rows = self.minutes.iter().map(|m| m.rows).max().unwrap_or(0);
        let mean_rps: f64 =
            self.minutes.iter().map(|m| m.rps).sum::<f64>() / self.minutes.len() as f64;
        // What retention 0 leaves: tokens still alive, the partition filling, and one purge
        // period, at the measured rate.
        let bound = (LIFETIME + INTERVAL + PURGE_EVERY.as_secs() as i64) as f64 * mean_rps;
        format!(
            "| Sustained issuance, listener, {n} min with purge_expired every {p} s: last minute against first | {:.0} tokens/s | first minute {:.0} tokens/s | {:.2} | ≥ 0.9 |\n\
             | Sustained: oauth.session at its largest (tokens live {LIFETIME} s, partitions of {INTERVAL} s, retention 0) | {peak_rows} rows, {peak:.0} MB | live + filling partition + one purge period ≈ {bound:.0} rows | {:.2} | bounded |\n\
             | Sustained: longest lock wait of an issuer (listener worker, pg_locks every 5 ms) | {:.1} ms{} | purge took {} ms | | < 50 ms |\n",
            last.rps,
            first.rps,
            last.rps / first.rps,
            peak_rows as f64 / bound,
            self.lock_wait_ms,
            if self.lock_wait_on.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.lock_wait_on.trim())
            },
            self.purges.show(0),
            n = self.minutes.len(),
            p = PURGE_EVERY.as_secs(),
        )
    }

    /// Minute by minute, for BENCHMARKS.md.
    pub fn minutes(&self) -> String {
        let mut table = String::from(
            "| minute | tokens/s | p99 | slowest | oauth.session rows | size |\n| --- | --- | --- | --- | --- | --- |\n",
        );
        for (i, m) in self.minutes.iter().enumerate() {
            table.push_str(&format!(
                "| {} | {:.0} | {:.1} ms | {:.0} ms | {} | {:.0} MB |\n",
                i + 1,
                m.rps,
                m.p99_ms,
                m.slowest_ms,
                m.rows,
                m.mb
            ));
        }
        table
    }
}
