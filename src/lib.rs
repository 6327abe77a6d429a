//! pg_oauth: an OAuth 2.0 authorization server for the client credentials grant,
//! inside PostgreSQL. See README.md for the SQL API and the security model.

use pgrx::prelude::*;

// Dependencies run one way: api -> flow -> {authn, grant} -> {store, jose} -> {pg, config,
// crypto} -> error (`python3 ../shared/tools/modcycles.py src` finds none running back).
mod api;
mod authn;
mod config;
mod crypto;
mod error;
mod flow;
mod grant;
mod http;
mod jose;
mod pg;
mod store;

#[cfg(any(test, feature = "pg_test"))]
mod tests;
#[cfg(any(test, feature = "pg_test"))]
mod tests_console;
#[cfg(any(test, feature = "pg_test"))]
mod tests_dpop;
#[cfg(any(test, feature = "pg_test"))]
mod tests_exchange;
#[cfg(any(test, feature = "pg_test"))]
mod tests_login;

#[cfg(test)]
mod fuzz;

::pgrx::pg_module_magic!(name, version);

// The SQL files, by concern: bootstrap first, finalize last, the tables in between (no
// function needs a table to be created; the audit view needs the token tables).
pgrx::extension_sql_file!("../sql/bootstrap.sql", bootstrap);
pgrx::extension_sql_file!("../sql/clients.sql", name = "clients");
pgrx::extension_sql_file!("../sql/tokens.sql", name = "tokens");
pgrx::extension_sql_file!("../sql/smart.sql", name = "smart");
pgrx::extension_sql_file!("../sql/audit.sql", name = "audit", requires = ["tokens"]);
pgrx::extension_sql_file!("../sql/http.sql", name = "http");
pgrx::extension_sql_file!("../sql/finalize.sql", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    config::gucs::init();
    pg::redact::init();
    pg::settings::init();
    http::listener::register();
    config::login::init();
    pg::pending::init();
    pg::validator::set_handler(authn::login::validate);
    api::login_worker::register();
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
