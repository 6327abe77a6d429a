//! JOSE: signing key material (`keys`), which keys sign and are published (`ring`), JWS
//! compact tokens (`jwt`), DPoP proofs (`dpop`), keys others publish (`jwks`) and tokens
//! other issuers sign (`external`).

pub mod dpop;
pub mod external;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod ring;
