//! The auth sandbox at `/sandbox` on the listener: a page a developer keeps open while
//! integrating (get a token, see the exact request and a curl line, the JWT decoded and its
//! signature checked in the browser against `/jwks`, introspect and revoke it). Static files
//! embedded in the library, served by the listener's HTTP thread (no database work), under a
//! Content-Security-Policy that allows this origin's script and style only, no framing, no
//! inline script. On unless `pg_oauth.http_sandbox = off`.

/// (path, content type, body)
const ASSETS: [(&str, &str, &str); 5] = [
    (
        "/sandbox",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "/sandbox/",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "/sandbox/sandbox.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/sandbox.js"),
    ),
    (
        "/sandbox/sandbox.css",
        "text/css; charset=utf-8",
        include_str!("assets/sandbox.css"),
    ),
    (
        "/sandbox/icon.svg",
        "image/svg+xml",
        include_str!("assets/icon.svg"),
    ),
];

/// Headers of every sandbox answer: nothing but this origin's files runs, nothing frames it.
pub const HEADERS: [(&str, &str); 6] = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cache-Control", "no-cache"),
];

/// Whether `path` is the sandbox's.
pub fn is_sandbox(path: &str) -> bool {
    path == "/sandbox" || path.starts_with("/sandbox/")
}

/// The file at `path`: (content type, body).
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, content_type, body)| (*content_type, *body))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_runs_no_inline_script() {
        let (_, page) = asset("/sandbox").unwrap();
        let handler = page
            .split_whitespace()
            .any(|w| w.starts_with("on") && w.contains('='));
        assert!(
            !page.contains("<script>") && !handler,
            "inline script or handler"
        );
        for file in [
            "/sandbox/sandbox.js",
            "/sandbox/sandbox.css",
            "/sandbox/icon.svg",
        ] {
            assert!(page.contains(file) && asset(file).is_some(), "{file}");
        }
        let (_, script) = asset("/sandbox/sandbox.js").unwrap();
        assert!(!script.contains("innerHTML") && !script.contains("eval("));
        assert!(asset("/sandbox/../jwks").is_none());
    }
}
