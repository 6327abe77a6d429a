//! The SQL surface that PostgREST serves over HTTP. Depends on everything below it; nothing
//! depends on it.

pub mod http;
