//! `make lint`'s dependency check, offline: every crate the extension links (its normal
//! dependencies as `cargo tree -e normal` resolves them for the build of the PostgreSQL
//! version in `PG_VERSION`, features as the build sees them) is under a licence on the list
//! below, and no crate is on the banned list. Exit 1 with every finding listed.

use std::collections::BTreeSet;
use std::process::Command;

/// Licences compatible with shipping pg_oauth under Apache-2.0, as SPDX identifiers.
const ALLOWED: &[&str] = &[
    "Apache-2.0",
    "Apache-2.0 WITH LLVM-exception",
    "MIT",
    "MIT-0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "CC0-1.0",
    "0BSD",
    "OpenSSL",
    "CDLA-Permissive-2.0",
];

/// Crates that must not be linked: a second TLS or crypto stack beside aws-lc-rs (the one
/// pg_oauth audits and configures), and OpenSSL bindings.
const BANNED: &[&str] = &["openssl", "openssl-sys", "native-tls", "ring"];

fn main() {
    let root = pg_oauth_harness::repo_root();
    let version = std::env::var("PG_VERSION").unwrap_or_else(|_| "15".into());
    let output = Command::new("cargo")
        .args(["tree", "--offline", "-e", "normal", "--prefix", "none"])
        .args(["--format", "{p}|{l}", "--no-default-features", "--features"])
        .arg(format!("pg{version}"))
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("cargo tree");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let linked: BTreeSet<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.trim_end_matches(" (*)").to_owned())
        .filter(|line| !line.is_empty())
        .collect();
    let mut findings = Vec::new();
    for line in &linked {
        let (package, license) = line.split_once('|').unwrap_or((line, ""));
        // `{p}` is "name vX.Y.Z" (and the path, for the root package).
        let name = package.split_whitespace().next().unwrap_or_default();
        if name == "pg_oauth" {
            continue;
        }
        if BANNED.contains(&name) {
            findings.push(format!("{package} is banned"));
        }
        if !acceptable(license) {
            findings.push(format!("{package}: licence {license:?} is not on the list"));
        }
    }
    if findings.is_empty() {
        println!(
            "licenses: {} linked crates, every licence on the list, none banned",
            linked.len()
        );
        return;
    }
    for finding in &findings {
        eprintln!("licenses: {finding}");
    }
    std::process::exit(1);
}

/// Whether an SPDX licence expression allows us: `OR` takes either side, `AND` needs both,
/// parentheses group (`/`, an old spelling of `OR`, too).
fn acceptable(expression: &str) -> bool {
    let spaced = expression
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace('/', " OR ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut at = 0;
    let allowed = or_expression(&tokens, &mut at);
    allowed && at == tokens.len() && !tokens.is_empty()
}

fn or_expression(tokens: &[&str], at: &mut usize) -> bool {
    let mut allowed = and_expression(tokens, at);
    while tokens.get(*at) == Some(&"OR") {
        *at += 1;
        allowed |= and_expression(tokens, at);
    }
    allowed
}

fn and_expression(tokens: &[&str], at: &mut usize) -> bool {
    let mut allowed = term(tokens, at);
    while tokens.get(*at) == Some(&"AND") {
        *at += 1;
        allowed &= term(tokens, at);
    }
    allowed
}

fn term(tokens: &[&str], at: &mut usize) -> bool {
    match tokens.get(*at) {
        Some(&"(") => {
            *at += 1;
            let allowed = or_expression(tokens, at);
            if tokens.get(*at) == Some(&")") {
                *at += 1;
            }
            allowed
        }
        Some(id) => {
            *at += 1;
            // `X WITH exception`: the exception only widens what X allows.
            let mut name = (*id).to_owned();
            if tokens.get(*at) == Some(&"WITH") {
                name = format!("{name} WITH {}", tokens.get(*at + 1).unwrap_or(&""));
                *at += 2;
            }
            ALLOWED.contains(&name.as_str()) || ALLOWED.contains(id)
        }
        None => false,
    }
}

#[cfg(test)]
mod unit {
    use super::acceptable;

    #[test]
    fn spdx_expressions() {
        assert!(acceptable("MIT OR Apache-2.0"));
        assert!(acceptable("Apache-2.0 AND ISC"));
        assert!(acceptable("(MIT OR Apache-2.0) AND Unicode-3.0"));
        assert!(acceptable("MIT/Apache-2.0"));
        assert!(!acceptable("GPL-3.0"));
        assert!(!acceptable("MIT AND GPL-3.0"));
        assert!(!acceptable(""));
        assert!(!acceptable("(MIT OR GPL-3.0) AND Proprietary"));
        assert!(acceptable("Apache-2.0 WITH LLVM-exception OR MIT"));
    }
}
