//! pg_oauth: an OAuth 2.0 authorization server for the client credentials grant,
//! inside PostgreSQL. See README.md for the SQL API and the security model.

use pgrx::prelude::*;

mod alg;
mod assertion;
mod audit;
mod autonomous;
mod cache;
mod claims;
mod client;
mod db;
mod error;
mod fresh;
mod gucs;
mod http;
mod jwt;
mod keys;
mod limits;
mod metadata;
mod policy;
mod redact;
mod refresh;
mod scope;
mod secret;
mod session;
mod shared;
mod token;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

#[cfg(test)]
mod fuzz;

::pgrx::pg_module_magic!(name, version);

pgrx::extension_sql_file!("../sql/bootstrap.sql", bootstrap);
pgrx::extension_sql_file!("../sql/finalize.sql", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    redact::init();
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
