//! Runs the isolation tester specs in tests/isolation against a throwaway cluster:
//! deterministic interleavings of concurrent sessions (stale per-backend caches, refresh
//! token races, lockout counting, key and secret rotation, revocation under REPEATABLE
//! READ). See tests/isolation/README.md.
//!
//! `PG_OAUTH_ISOLATION_RESULTS=<dir>` copies the actual outputs (and regression.diffs, if
//! any) there for inspection.

use std::path::Path;
use std::process::Command;

use pg_oauth_harness::{keep_results, pg_bindir, pg_config, repo_root, Cluster};

/// Every spec in `input`/specs, by name, sorted.
fn specs(input: &Path) -> Vec<String> {
    let mut specs: Vec<String> = std::fs::read_dir(input.join("specs"))
        .expect("tests/isolation/specs")
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".spec").map(str::to_owned)
        })
        .collect();
    specs.sort();
    specs
}

#[test]
fn isolation_specs() {
    let cluster = Cluster::start("isolation", &[]);
    drop(cluster.create_db_with("isolation", &[("pg_oauth.issuer", "https://issuer.test")]));

    let input = repo_root().join("tests/isolation");
    let specs = specs(&input);
    assert!(!specs.is_empty(), "no specs in {}", input.display());
    let output = cluster.dir.join("isolation-output");
    std::fs::create_dir_all(&output).unwrap();

    // pg_isolation_regress runs the isolationtester found next to it.
    let runner = pg_config("--pkglibdir").join("pgxs/src/test/isolation/pg_isolation_regress");
    let status = Command::new(&runner)
        .current_dir(&cluster.dir)
        .arg(format!("--bindir={}", pg_bindir().display()))
        .arg(format!("--inputdir={}", input.display()))
        .arg(format!("--outputdir={}", output.display()))
        .arg("--use-existing")
        .arg("--host=127.0.0.1")
        .arg(format!("--port={}", cluster.port))
        .arg("--user=postgres")
        .arg("--dbname=isolation")
        .args(&specs)
        .status()
        .unwrap_or_else(|e| panic!("run {}: {e}", runner.display()));
    keep_results(&output, "PG_OAUTH_ISOLATION_RESULTS");
    if !status.success() {
        let diffs = std::fs::read_to_string(output.join("regression.diffs")).unwrap_or_default();
        panic!("pg_isolation_regress failed ({status}):\n{diffs}");
    }
}
