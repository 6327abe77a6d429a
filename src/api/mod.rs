//! The SQL surface, and nothing else: every `#[pg_extern]` and `#[pg_trigger]` lives here,
//! as a thin wrapper over the layers below. Depends on everything below it; nothing depends
//! on it.

mod admin;
pub mod http;
pub mod listener;
pub mod postgrest;
mod rls;
mod sql;
mod triggers;
