//! `make lint`'s check of the layout house style holds for `src/`: no import cycle between
//! the folders of one folder, nor between two files; no file over 600 lines, no function over
//! 80; no SQL on pg_oauth's tables (`oauth.*`) outside `src/store/` but the exceptions listed
//! below with their reason. Exit 1 with every finding listed.
//!
//! It reads the code as text, as rustfmt leaves it: `crate::` and `super::` paths (in `use`
//! and inline) are the imports; a function ends at the first `}` at its own indentation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;

/// Files outside `src/store/` that may name pg_oauth's tables in SQL, and why.
const SQL_EXCEPTIONS: &[(&str, &str)] = &[
    ("src/tests.rs", "in-database tests set up and inspect rows"),
    (
        "src/tests_dpop.rs",
        "in-database tests set up and inspect rows",
    ),
    (
        "src/tests_exchange.rs",
        "in-database tests set up and inspect rows",
    ),
    (
        "src/tests_console.rs",
        "in-database tests check a role's privileges on the tables",
    ),
    ("src/fuzz.rs", "fuzz tests set up rows"),
];

fn main() {
    let root = pg_oauth_harness::repo_root().join("src");
    let files = rust_files(&root);
    let mut findings = Vec::new();
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|f| (module_of(&root, f), f.clone()))
        .collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests (`#[cfg(test)] mod ...`, at the end of a file) import their own module.
        let code = without_comments(match text.find("#[cfg(test)]\nmod ") {
            Some(at) => &text[..at],
            None => &text,
        });
        let rel = file
            .strip_prefix(root.parent().unwrap())
            .unwrap()
            .display()
            .to_string();
        let mut targets = references(module, &code);
        targets.extend(children_used(module, &code));
        for target in targets {
            if let Some(found) = resolve(&modules, &target) {
                if &found != module {
                    edges.entry(module.clone()).or_default().insert(found);
                }
            }
        }
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            findings.push(format!("{rel}: {lines} lines (at most {MAX_FILE_LINES})"));
        }
        for (name, start, length) in functions(&text) {
            if length > MAX_FN_LINES {
                findings.push(format!(
                    "{rel}:{start}: fn {name} has {length} lines (at most {MAX_FN_LINES})"
                ));
            }
        }
        if !rel.starts_with("src/store/") && !SQL_EXCEPTIONS.iter().any(|(f, _)| *f == rel) {
            for (line, statement) in sql_on_tables(&code) {
                findings.push(format!(
                    "{rel}:{line}: SQL on pg_oauth's tables outside src/store/: {statement}"
                ));
            }
        }
    }
    findings.extend(cycles(&edges));
    if findings.is_empty() {
        println!(
            "layout: {} files; no import cycle, no file over {MAX_FILE_LINES} lines, no function \
             over {MAX_FN_LINES}, no SQL on oauth.* outside src/store/ (but {} listed exceptions)",
            files.len(),
            SQL_EXCEPTIONS.len()
        );
        return;
    }
    for finding in &findings {
        eprintln!("layout: {finding}");
    }
    std::process::exit(1);
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `src/a/b.rs` is `[a, b]`, `src/a/mod.rs` is `[a]`, `src/lib.rs` is `[]`.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The code without `//` comments (doc comments included) and string contents kept.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path the code names through `crate::` or `super::`, made absolute; `use`
/// groups (`crate::a::{b, c::d}`) expanded one level deep, as rustfmt writes them.
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let (base, skip) = if rest.starts_with("crate::") {
            (Vec::new(), 7)
        } else if rest.starts_with("super::") {
            // `super` of a file is its folder's module; of a mod.rs, the folder above.
            let mut base = module.to_vec();
            base.pop();
            (base, 7)
        } else {
            i += 1;
            continue;
        };
        // Not part of a longer identifier (`my_crate::`).
        if i > 0 && (bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_') {
            i += 1;
            continue;
        }
        let mut j = i + skip;
        let mut path = base;
        let mut prefix = String::new();
        while j < bytes.len() {
            let c = bytes[j];
            if c.is_alphanumeric() || c == '_' {
                prefix.push(c);
            } else if c == ':' {
                if !prefix.is_empty() {
                    path.push(std::mem::take(&mut prefix));
                }
            } else if c == '{' {
                let close = bytes[j..].iter().position(|c| *c == '}').map(|p| j + p);
                let group: String = bytes[j + 1..close.unwrap_or(j + 1)].iter().collect();
                for item in group.split(',') {
                    let mut each = path.clone();
                    each.extend(
                        item.trim()
                            .split("::")
                            .map(|s| s.trim().trim_start_matches('{').to_owned())
                            .filter(|s| !s.is_empty() && s != "self"),
                    );
                    found.push(each);
                }
                break;
            } else {
                break;
            }
            j += 1;
        }
        if !prefix.is_empty() {
            path.push(prefix);
        }
        found.push(path);
        i = j.max(i + 1);
    }
    found
}

/// The child modules a file declares (`mod x;`) and names (`x::...`): a folder's `mod.rs`
/// using its files' items depends on them as any other file would.
fn children_used(module: &[String], code: &str) -> Vec<Vec<String>> {
    let declared: Vec<String> = code
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l
                .strip_prefix("pub ")
                .or_else(|| l.strip_prefix("pub(crate) "))
                .unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
        })
        .collect();
    declared
        .into_iter()
        .filter(|child| {
            code.match_indices(&format!("{child}::")).any(|(at, _)| {
                at == 0 || {
                    let before = code[..at].chars().last().unwrap_or(' ');
                    !(before.is_alphanumeric() || before == '_' || before == ':')
                }
            })
        })
        .map(|child| {
            let mut path = module.to_vec();
            path.push(child);
            path
        })
        .collect()
}

/// The longest module `target` starts with.
fn resolve(modules: &BTreeMap<Vec<String>, PathBuf>, target: &[String]) -> Option<Vec<String>> {
    (1..=target.len())
        .rev()
        .map(|n| target[..n].to_vec())
        .find(|prefix| modules.contains_key(prefix))
}

/// (name, first line, length) of every function, by rustfmt's indentation.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(at) = trimmed.find("fn ") else {
            continue;
        };
        let head = &trimmed[..at];
        let is_fn = head.split_whitespace().all(|w| {
            w.starts_with("pub")
                || [
                    "const",
                    "async",
                    "unsafe",
                    "extern",
                    "\"C\"",
                    "\"C-unwind\"",
                ]
                .contains(&w)
        });
        if !is_fn || trimmed.ends_with(';') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let name: String = trimmed[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let end = lines[n..]
            .iter()
            .position(|l| {
                l.len() > indent && l[..indent].trim().is_empty() && l[indent..].starts_with('}')
            })
            .or_else(|| {
                lines[n..]
                    .iter()
                    .position(|l| l.trim_end().ends_with('}') && l.starts_with(&line[..indent]))
            });
        if let Some(end) = end {
            found.push((name, n + 1, end + 1));
        }
    }
    found
}

/// Lines whose string literals name a table of schema `oauth` after an SQL keyword.
fn sql_on_tables(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let lower = line.to_ascii_lowercase();
        for keyword in ["from ", "into ", "update ", "join ", "table ", "truncate "] {
            let mut start = 0;
            while let Some(at) = lower[start..].find(keyword) {
                let after = start + at + keyword.len();
                let boundary =
                    start + at == 0 || !lower.as_bytes()[start + at - 1].is_ascii_alphanumeric();
                if boundary && lower[after..].trim_start().starts_with("oauth.") {
                    found.push((n + 1, line.trim().to_owned()));
                }
                start = after;
            }
        }
    }
    found.dedup();
    found
}

/// Cycles between the members (files and folders) of each folder, and between files.
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<String> {
    let mut findings = Vec::new();
    // Between files.
    let files: BTreeMap<String, BTreeSet<String>> = edges
        .iter()
        .map(|(from, to)| (from.join("::"), to.iter().map(|t| t.join("::")).collect()))
        .collect();
    for cycle in strongly_connected(&files) {
        findings.push(format!(
            "import cycle between files: {}",
            cycle.join(" <-> ")
        ));
    }
    // Between the members of each folder (a folder's member is the next path segment).
    let mut folders: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, targets) in edges {
        for to in targets {
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common < from.len() && common < to.len() {
                folders
                    .entry(from[..common].to_vec())
                    .or_default()
                    .entry(from[common].clone())
                    .or_default()
                    .insert(to[common].clone());
            }
        }
    }
    for (folder, graph) in folders {
        for cycle in strongly_connected(&graph) {
            let at = if folder.is_empty() {
                "src".to_owned()
            } else {
                format!("src/{}", folder.join("/"))
            };
            findings.push(format!("import cycle in {at}: {}", cycle.join(" <-> ")));
        }
    }
    findings
}

/// The strongly connected components of more than one node (Tarjan).
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        found: Vec<Vec<String>>,
    }
    fn visit(s: &mut State, v: &str) {
        let n = s.index.len();
        s.index.insert(v.to_owned(), n);
        s.low.insert(v.to_owned(), n);
        s.stack.push(v.to_owned());
        for w in s.graph.get(v).cloned().unwrap_or_default() {
            if !s.index.contains_key(&w) {
                visit(s, &w);
                let low = s.low[&w].min(s.low[v]);
                s.low.insert(v.to_owned(), low);
            } else if s.stack.contains(&w) {
                let low = s.index[&w].min(s.low[v]);
                s.low.insert(v.to_owned(), low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.found
}
