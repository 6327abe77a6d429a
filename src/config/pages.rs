//! The settings of the listener's pages (http/sandbox, http/console): server settings, read by
//! the listener's workers at start and after each reload.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Whether the listener serves the auth sandbox at /sandbox.
pub static HTTP_SANDBOX: GucSetting<bool> = GucSetting::<bool>::new(true);
/// Whether the listener serves the console at /console (its page and its API).
pub static HTTP_CONSOLE: GucSetting<bool> = GucSetting::<bool>::new(true);

pub fn init() {
    GucRegistry::define_bool_guc(
        c"pg_oauth.http_sandbox",
        c"Whether the HTTP listener serves the auth sandbox page at /sandbox.",
        c"Reloadable. A static page that calls this server's public endpoints.",
        &HTTP_SANDBOX,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_oauth.http_console",
        c"Whether the HTTP listener serves the console at /console (its page and its API).",
        c"Reloadable. Only tokens of clients in oauth.console_access sign in to it.",
        &HTTP_CONSOLE,
        GucContext::Sighup,
        GucFlags::default(),
    );
}
