//! `make bench`, flood: a warm client's issuance alone and beside connections guessing
//! random unknown client ids.

use std::path::Path;
use std::time::Duration;

use pg_oauth_harness::{postgres, Cluster};

use super::{pgbench, pgbench_at, Stat};

/// One flood scenario's results.
pub struct Flood {
    pub label: &'static str,
    pub alone: Stat,
    pub flooded: Stat,
    pub ratio: Stat,
    pub peak_slots: i64,
    pub rows: i64,
}

/// The client script alone, then beside the flood script, `rounds` times.
pub fn flood(
    cluster: &Cluster,
    client: &Path,
    flood_script: &Path,
    rounds: u64,
    seconds: u64,
    label: &'static str,
) -> Flood {
    let mut db = cluster.connect("bench");
    let audit_rows = |db: &mut postgres::Client| -> i64 {
        db.query_one(
            "SELECT (SELECT count(*) FROM oauth.auth_failure) + (SELECT count(*) FROM oauth.client_lockout)
                  + (SELECT count(*) FROM oauth.source_throttle)",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let rows_before = audit_rows(&mut db);
    let mut result = Flood {
        label,
        alone: Stat::default(),
        flooded: Stat::default(),
        ratio: Stat::default(),
        peak_slots: 0,
        rows: 0,
    };
    for round in 1..=rounds {
        let a = pgbench(cluster, client, seconds);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            let mut watch = cluster.connect("bench");
            std::thread::spawn(move || {
                let mut peak = 0i64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let held: i64 = watch
                        .query_one(
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = 0 AND granted",
                            &[],
                        )
                        .unwrap()
                        .get(0);
                    peak = peak.max(held);
                    std::thread::sleep(Duration::from_millis(10));
                }
                peak
            })
        };
        let flooding = {
            let (port, script) = (cluster.port, flood_script.to_owned());
            std::thread::spawn(move || pgbench_at(port, &script, seconds + 2))
        };
        std::thread::sleep(Duration::from_secs(1));
        let f = pgbench(cluster, client, seconds);
        let guesses = flooding.join().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        result.peak_slots = result.peak_slots.max(sampler.join().unwrap());
        println!(
            "  flood ({label}) round {round}: client alone {a:.0} tx/s, beside the flood {f:.0} tx/s ({:.2}); flood {guesses:.0} guesses/s",
            f / a
        );
        result.alone.push(a);
        result.flooded.push(f);
        result.ratio.push(f / a);
    }
    result.rows = audit_rows(&mut db) - rows_before;
    result
}
