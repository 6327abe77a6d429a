//! The SQL surface: every `#[pg_extern]` and `#[pg_trigger]` lives here, as a thin wrapper
//! over the layers below — the `auth_*` functions (sql), administration (admin), the write
//! triggers (triggers), claim helpers for row-level security (rls), and PostgREST's
//! endpoints and pre-config hook (postgrest, over the HTTP handler of src/http) and its
//! pre-request hook (gate); PostgreSQL 18's OAuth login (login: its triggers and functions;
//! login_worker: the worker that builds its state). Nothing depends on it.

mod admin;
mod gate;
mod login;
pub mod login_worker;
pub mod postgrest;
mod rls;
mod sql;
mod stats;
mod triggers;
