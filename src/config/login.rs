//! The settings of PostgreSQL 18's OAuth login with pg_oauth tokens (authn/login.rs): server
//! settings, not a database's, since a login is checked before a database is chosen.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// The audience a token must name to log in: this database server (e.g. `postgresql://db.example.com`).
pub static LOGIN_AUDIENCE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// The databases whose pg_oauth issues login tokens: a background worker in each keeps their
/// state in shared memory.
pub static LOGIN_DATABASES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub fn init() {
    if !cfg!(feature = "pg18") {
        return;
    }
    GucRegistry::define_string_guc(
        c"pg_oauth.login_audience",
        c"Audience a pg_oauth token must name to log in to this server with OAuth (PostgreSQL 18, pg_hba.conf method oauth); empty: no token logs in.",
        c"Needs oauth_validator_libraries = 'pg_oauth' and pg_oauth in shared_preload_libraries with pg_oauth.login_databases set. See docs/login.md.",
        &LOGIN_AUDIENCE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // SAFETY: a flag the postmaster sets while it loads shared_preload_libraries.
    if !unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    GucRegistry::define_string_guc(
        c"pg_oauth.login_databases",
        c"Databases (comma-separated) whose pg_oauth issues tokens that log in to this server.",
        c"A background worker per database keeps what logins check in shared memory. Needs pg_oauth in shared_preload_libraries.",
        &LOGIN_DATABASES,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

fn string(setting: &GucSetting<Option<CString>>) -> Option<String> {
    super::trimmed(setting.get())
}

/// The login audience, if logins are on.
pub fn audience() -> Option<String> {
    if cfg!(feature = "pg18") {
        string(&LOGIN_AUDIENCE)
    } else {
        None
    }
}

/// The databases listed in pg_oauth.login_databases.
pub fn databases() -> Vec<String> {
    string(&LOGIN_DATABASES)
        .map(|list| {
            list.split(',')
                .map(|d| d.trim().to_owned())
                .filter(|d| !d.is_empty())
                .collect()
        })
        .unwrap_or_default()
}
