//! JOSE: signing key material (`keys`), which keys sign and are published (`ring`), and JWS
//! compact tokens (`jwt`).

pub mod dpop;
pub mod jwt;
pub mod keys;
pub mod ring;
