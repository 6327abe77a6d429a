//! Runs the pg_regress suite in tests/pg_regress against a throwaway cluster.
//! (`cargo pgrx regress` uses the same files but cannot start its server as root.)

use std::process::Command;

use pg_oauth_harness::{pg_bindir, repo_root, Cluster};

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

    let pkglibdir = String::from_utf8(
        Command::new(pg_bindir().join("pg_config"))
            .arg("--pkglibdir")
            .output()
            .expect("pg_config")
            .stdout,
    )
    .unwrap();
    let pg_regress = format!("{}/pgxs/src/test/regress/pg_regress", pkglibdir.trim());
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
    if !status.success() {
        let diffs = std::fs::read_to_string(output.join("regression.diffs")).unwrap_or_default();
        if let Some(dir) = std::env::var_os("PG_OAUTH_REGRESS_RESULTS") {
            // Let a developer inspect (or promote) the actual outputs.
            let dir = std::path::PathBuf::from(dir);
            std::fs::create_dir_all(&dir).unwrap();
            for entry in std::fs::read_dir(output.join("results")).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
            }
        }
        panic!("pg_regress failed:\n{diffs}");
    }
}
