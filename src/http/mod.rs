//! The OAuth endpoints over HTTP. One transport-neutral handler (`handler`, taking and giving
//! the types of `message`; HTTP Basic in `basic`) answers for both transports: PostgREST,
//! through the `oauth.http_*` functions of api/postgrest.rs, and pg_oauth's own listener
//! (`listener`: background workers of the server, hyper and, optionally, rustls in `tls`),
//! which also serves two pages (`page`): the auth sandbox and the console.

pub mod basic;
pub mod console;
pub mod handler;
pub mod listener;
pub mod message;
mod metrics;
pub mod page;
pub mod sandbox;
mod tls;
