//! Runs the isolation tester specs in tests/isolation against a throwaway cluster:
//! deterministic interleavings of concurrent sessions (stale per-backend caches, refresh
//! token races, lockout counting, key and secret rotation, revocation under REPEATABLE
//! READ). See tests/isolation/README.md.
//!
//! `PG_OAUTH_ISOLATION_RESULTS=<dir>` copies the actual outputs (and regression.diffs, if
//! any) there for inspection.

use std::path::Path;
use std::process::Command;

use pg_oauth_harness::{keep_results, node_json, pg_bindir, pg_config, repo_root, Cluster};

/// The specs and expected outputs of tests/isolation, copied to `dir`, with each
/// `specs/<name>.spec.in` rendered into `<name>.spec`: its `@PROOFn@` replaced by fresh DPoP
/// proofs for the token endpoint (one key; made with panva's jose, tests/clients), since a
/// proof is only accepted while young.
fn render(dir: &Path) -> std::path::PathBuf {
    let source = repo_root().join("tests/isolation");
    let input = dir.join("isolation-input");
    for sub in ["specs", "expected"] {
        std::fs::create_dir_all(input.join(sub)).unwrap();
        for entry in std::fs::read_dir(source.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            match name.strip_suffix(".in") {
                Some(spec) => {
                    std::fs::write(input.join(sub).join(spec), with_proofs(&text)).unwrap()
                }
                None => std::fs::write(input.join(sub).join(&name), text).unwrap(),
            }
        }
    }
    input
}

fn with_proofs(spec: &str) -> String {
    let wanted = (1..)
        .take_while(|n| spec.contains(&format!("@PROOF{n}@")))
        .count();
    let wanted = wanted.to_string();
    let proofs = node_json(
        &[
            "proofs.mjs",
            "POST",
            "https://issuer.test/rpc/token",
            &wanted,
        ],
        &[],
    );
    let proofs: Vec<String> = serde_json::from_value(proofs).unwrap();
    let mut spec = spec.to_owned();
    for (i, proof) in proofs.iter().enumerate() {
        spec = spec.replace(&format!("@PROOF{}@", i + 1), proof);
    }
    spec
}

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
    // Proofs are made before the first spec runs, and the specs take a while: they may be
    // as old as the whole run when dpop_replay uses them.
    drop(cluster.create_db_with(
        "isolation",
        &[
            ("pg_oauth.issuer", "https://issuer.test"),
            ("pg_oauth.dpop_proof_max_age", "300"),
        ],
    ));

    let input = render(&cluster.dir);
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
