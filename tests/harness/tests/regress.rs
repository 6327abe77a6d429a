//! Runs the pg_regress suite in tests/pg_regress against a throwaway cluster.
//! (`cargo pgrx regress` uses the same files but cannot start its server as root.)

use std::process::Command;

use pg_oauth_harness::{keep_results, pg_bindir, pg_config, repo_root, Cluster};

#[test]
fn pg_regress_suite() {
    let cluster = Cluster::start("regress", &[]);
    let root = repo_root();
    let input = root.join("tests/pg_regress");
    let output = cluster.dir.join("regress-output");
    std::fs::create_dir_all(&output).unwrap();
    let mut tests: Vec<String> = std::fs::read_dir(input.join("sql"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".sql").map(str::to_owned)
        })
        .filter(|name| name != "setup")
        .collect();
    tests.sort();
    tests.insert(0, "setup".into());

    let pg_regress = pg_config("--pkglibdir").join("pgxs/src/test/regress/pg_regress");
    let status = Command::new(&pg_regress)
        .current_dir(&cluster.dir)
        .arg(format!("--bindir={}", pg_bindir().display()))
        .arg(format!("--inputdir={}", input.display()))
        .arg(format!("--outputdir={}", output.display()))
        .arg("--host=127.0.0.1")
        .arg(format!("--port={}", cluster.port))
        .arg("--user=postgres")
        .arg("--dbname=pg_oauth_regress")
        .args(&tests)
        .status()
        .expect("run pg_regress");
    keep_results(&output, "PG_OAUTH_REGRESS_RESULTS");
    if !status.success() {
        let diffs = std::fs::read_to_string(output.join("regression.diffs")).unwrap_or_default();
        panic!("pg_regress failed:\n{diffs}");
    }
}
