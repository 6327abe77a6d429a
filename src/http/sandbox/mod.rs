//! The auth sandbox at `/sandbox` on the listener: a page a developer keeps open while
//! integrating (get a token, see the exact request and a curl line, the JWT decoded and its
//! signature checked in the browser against `/jwks`, introspect and revoke it). Static files
//! embedded in the library, served by the listener's HTTP thread (no database work), under
//! the pages' Content-Security-Policy (http/page.rs). On unless `pg_oauth.http_sandbox = off`.

use super::page::{self, Asset, CSS, HTML, JS, SVG};

const ASSETS: [Asset; 5] = [
    ("/sandbox", HTML, include_str!("assets/index.html")),
    ("/sandbox/", HTML, include_str!("assets/index.html")),
    ("/sandbox/sandbox.js", JS, include_str!("assets/sandbox.js")),
    (
        "/sandbox/sandbox.css",
        CSS,
        include_str!("assets/sandbox.css"),
    ),
    ("/sandbox/icon.svg", SVG, include_str!("assets/icon.svg")),
];

/// Whether `path` is the sandbox's.
pub fn is_sandbox(path: &str) -> bool {
    path == "/sandbox" || path.starts_with("/sandbox/")
}

/// The file at `path`: (content type, body).
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    page::find(&ASSETS, path)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_runs_no_inline_script() {
        let (_, html) = asset("/sandbox").unwrap();
        let files = [
            "/sandbox/sandbox.js",
            "/sandbox/sandbox.css",
            "/sandbox/icon.svg",
        ];
        page::self_contained(html, &files, &ASSETS).unwrap();
        let (_, script) = asset("/sandbox/sandbox.js").unwrap();
        assert!(!script.contains("innerHTML") && !script.contains("eval("));
        assert!(asset("/sandbox/../jwks").is_none());
    }
}
