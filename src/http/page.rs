//! What the listener's pages (the sandbox, the console) share: their static files are
//! embedded in the library and served by the HTTP thread (no database work), each with
//! these headers.

/// Headers of every page's file: nothing but this origin's files runs (no inline script, no
/// style attribute), it connects only to this origin, nothing frames it.
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

/// (path, content type, body)
pub type Asset = (&'static str, &'static str, &'static str);

pub const HTML: &str = "text/html; charset=utf-8";
pub const JS: &str = "text/javascript; charset=utf-8";
pub const CSS: &str = "text/css; charset=utf-8";
pub const SVG: &str = "image/svg+xml";

/// The file at `path` among `assets`: (content type, body).
pub fn find(assets: &[Asset], path: &str) -> Option<(&'static str, &'static str)> {
    assets
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, content_type, body)| (*content_type, *body))
}

/// Whether a page runs no inline script or event-handler attribute and loads each of
/// `files` (for the pages' unit tests).
#[cfg(test)]
pub fn self_contained(page: &str, files: &[&str], assets: &[Asset]) -> Result<(), String> {
    let handler = page
        .split_whitespace()
        .any(|w| w.starts_with("on") && w.contains('='));
    if page.contains("<script>") || handler || page.contains("style=") {
        return Err("inline script, handler or style".into());
    }
    for file in files {
        if !page.contains(file) || find(assets, file).is_none() {
            return Err(format!("{file} not loaded or not served"));
        }
    }
    Ok(())
}
