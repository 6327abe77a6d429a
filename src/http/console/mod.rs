//! The console at `/console` on the listener, for DBAs and operators: its page (static files
//! embedded in the library, served by the HTTP thread under the pages' Content-Security-
//! Policy, http/page.rs) and its API, `POST /console/api/<action>` with a pg_oauth access
//! token as a Bearer token (flow/console.rs decides who may do what). On unless
//! `pg_oauth.http_console = off`.

use super::page::{self, Asset, CSS, HTML, JS, SVG};
use crate::flow::console::Action;

const ASSETS: [Asset; 5] = [
    ("/console", HTML, include_str!("assets/index.html")),
    ("/console/", HTML, include_str!("assets/index.html")),
    ("/console/console.js", JS, include_str!("assets/console.js")),
    (
        "/console/console.css",
        CSS,
        include_str!("assets/console.css"),
    ),
    ("/console/icon.svg", SVG, include_str!("assets/icon.svg")),
];

const API: &str = "/console/api/";

/// Whether `path` is the console's (its files or its API).
pub fn is_console(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// The API action `path` asks for; None for the console's files and unknown actions.
pub fn action(path: &str) -> Option<Action> {
    Action::named(path.strip_prefix(API)?)
}

/// Whether `path` is under the API (an unknown action there is a 404 in JSON, not a file).
pub fn is_api(path: &str) -> bool {
    path.starts_with(API)
}

/// The file at `path`: (content type, body).
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    page::find(&ASSETS, path)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_writes_no_markup() {
        let (_, html) = asset("/console").unwrap();
        let files = [
            "/console/console.js",
            "/console/console.css",
            "/console/icon.svg",
        ];
        page::self_contained(html, &files, &ASSETS).unwrap();
        let (_, script) = asset("/console/console.js").unwrap();
        for unsafe_sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "eval(",
            "document.write",
        ] {
            assert!(!script.contains(unsafe_sink), "{unsafe_sink}");
        }
        assert_eq!(action("/console/api/clients"), Some(Action::Clients));
        assert_eq!(action("/console/api/../token"), None);
        assert_eq!(action("/console/clients"), None);
        assert!(asset("/console/api/clients").is_none());
    }
}
