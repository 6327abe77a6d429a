//! The one error type of pg_oauth, and its mapping to PostgreSQL errors.
//!
//! Every variant is an OAuth error code (RFC 6749 §5.2, RFC 6750 §3.1, RFC 8707 §2);
//! the message always starts with that code so SQL callers and the HTTP layer can read it.
//! Descriptions never contain secrets, tokens or key material.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    #[error("invalid_client: {0}")]
    InvalidClient(String),
    /// invalid_client with the one description every failed client authentication gets
    /// ([`CLIENT_AUTH_FAILED`]), so that no caller can tell an unknown client from a wrong
    /// secret, a missing key or a bad signature; `reason` goes to the audit trail only.
    #[error("invalid_client: client authentication failed")]
    AuthenticationFailed { reason: String },
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    #[error("invalid_target: {0}")]
    InvalidTarget(String),
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    /// access_denied: an authenticated caller asks for what it may not have (the console,
    /// an action its role has no privilege for).
    #[error("access_denied: {0}")]
    AccessDenied(String),
    /// A DPoP proof (RFC 9449) that is missing where required, malformed, for another
    /// request, replayed, or not by the key the token is bound to.
    #[error("invalid_dpop_proof: {0}")]
    InvalidDpopProof(String),
    /// use_dpop_nonce (RFC 9449 §8): the proof must carry this server nonce, which the HTTP
    /// answer also carries in its `DPoP-Nonce` header.
    #[error("use_dpop_nonce: sign the DPoP proof with the server's nonce {nonce}")]
    UseDpopNonce { nonce: String },
    #[error("server_error: {0}")]
    ServerError(String),
    /// The cluster's argon2 work is at its bound (limits.rs): try again shortly.
    #[error("temporarily_unavailable: the server is busy; try again in {retry_after_secs} s")]
    TemporarilyUnavailable { retry_after_secs: i64 },
    /// temporarily_unavailable: a write (issuance, revocation) asked of a hot standby; the
    /// primary, or this server once promoted, answers it.
    #[error("temporarily_unavailable: {0}")]
    ReadOnly(String),
    /// invalid_client, refused before any credential check: too many failures from this
    /// source (see authn/attempts.rs).
    #[error("invalid_client: {description}")]
    LockedOut {
        description: String,
        retry_after_secs: i64,
    },
}

pub type Result<T, E = OAuthError> = std::result::Result<T, E>;

/// The description every failed client authentication gets, whatever the cause, so that an
/// unknown client and a wrong secret cannot be told apart.
pub const CLIENT_AUTH_FAILED: &str = "client authentication failed";

/// How long a standby asks HTTP clients to wait before they try a write again.
pub const READ_ONLY_RETRY_AFTER_SECS: i64 = 5;

impl OAuthError {
    /// Too many failures from the caller's source, whatever client ids they named.
    pub fn source_throttled(retry_after_secs: i64) -> Self {
        OAuthError::LockedOut {
            description: format!(
                "too many failed authentications from this address; try again in {retry_after_secs} s"
            ),
            retry_after_secs,
        }
    }

    /// server_error: pg_oauth.issuer is needed `to` do something and is not set. Says how to
    /// set it (docs/reference.md, "Settings": the database's value, applied on reload).
    pub fn no_issuer(to: &str) -> Self {
        OAuthError::ServerError(format!(
            "pg_oauth.issuer is not set; it is needed to {to}: \
             ALTER DATABASE <database> SET pg_oauth.issuer = 'https://...', then SELECT pg_reload_conf()"
        ))
    }

    pub fn locked_out(retry_after_secs: i64) -> Self {
        OAuthError::LockedOut {
            description: format!(
                "too many failed authentications of this client from this address; try again in {retry_after_secs} s"
            ),
            retry_after_secs,
        }
    }
}

impl OAuthError {
    /// The OAuth `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient(_) | Self::AuthenticationFailed { .. } | Self::LockedOut { .. } => {
                "invalid_client"
            }
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            Self::InvalidToken(_) => "invalid_token",
            Self::AccessDenied(_) => "access_denied",
            Self::InvalidDpopProof(_) => "invalid_dpop_proof",
            Self::UseDpopNonce { .. } => "use_dpop_nonce",
            Self::ServerError(_) => "server_error",
            Self::TemporarilyUnavailable { .. } | Self::ReadOnly(_) => "temporarily_unavailable",
        }
    }

    /// When to try again, for errors that pass (the HTTP `Retry-After`).
    pub fn retry_after_secs(&self) -> Option<i64> {
        match self {
            Self::LockedOut {
                retry_after_secs, ..
            }
            | Self::TemporarilyUnavailable { retry_after_secs } => Some(*retry_after_secs),
            Self::ReadOnly(_) => Some(READ_ONLY_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// The OAuth `error_description`.
    pub fn description(&self) -> &str {
        match self {
            Self::InvalidRequest(d)
            | Self::InvalidClient(d)
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::UnsupportedGrantType(d)
            | Self::InvalidScope(d)
            | Self::InvalidTarget(d)
            | Self::InvalidToken(d)
            | Self::AccessDenied(d)
            | Self::InvalidDpopProof(d)
            | Self::ServerError(d)
            | Self::ReadOnly(d)
            | Self::LockedOut { description: d, .. } => d,
            Self::AuthenticationFailed { .. } => CLIENT_AUTH_FAILED,
            Self::TemporarilyUnavailable { .. } => "the server is busy; try again shortly",
            Self::UseDpopNonce { .. } => {
                "sign the DPoP proof with the nonce in the DPoP-Nonce header (RFC 9449 §8)"
            }
        }
    }

    /// The nonce a `use_dpop_nonce` answer hands out (its `DPoP-Nonce` header).
    pub fn dpop_nonce(&self) -> Option<&str> {
        match self {
            Self::UseDpopNonce { nonce } => Some(nonce),
            _ => None,
        }
    }

    /// What the audit trail records for this error: the private reason of a failed
    /// authentication, else the description.
    pub fn audit_reason(&self) -> &str {
        match self {
            Self::AuthenticationFailed { reason } => reason,
            other => other.description(),
        }
    }

    /// Whether the client failed to authenticate (invalid_client, lockouts aside).
    pub fn is_authentication_failure(&self) -> bool {
        matches!(
            self,
            Self::InvalidClient(_) | Self::AuthenticationFailed { .. }
        )
    }

    /// The SQLSTATE raised for this error; documented in the README.
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            Self::InvalidRequest(_) => ERRCODE_INVALID_PARAMETER_VALUE, // 22023
            Self::InvalidClient(_) | Self::AuthenticationFailed { .. } | Self::LockedOut { .. } => {
                ERRCODE_INVALID_PASSWORD // 28P01
            }
            Self::InvalidGrant(_) => ERRCODE_INVALID_GRANT_OPERATION, // 0LP01
            Self::UnauthorizedClient(_) => ERRCODE_INSUFFICIENT_PRIVILEGE, // 42501
            Self::UnsupportedGrantType(_) => ERRCODE_FEATURE_NOT_SUPPORTED, // 0A000
            Self::InvalidScope(_) => ERRCODE_UNDEFINED_OBJECT,        // 42704
            Self::InvalidTarget(_) => ERRCODE_INVALID_NAME,           // 42602
            Self::InvalidToken(_) => ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION, // 28000
            Self::AccessDenied(_) => ERRCODE_INSUFFICIENT_PRIVILEGE,  // 42501
            Self::InvalidDpopProof(_) => ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION, // 28000
            Self::UseDpopNonce { .. } => ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION, // 28000
            Self::ServerError(_) => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, // 55000
            Self::TemporarilyUnavailable { .. } => ERRCODE_INSUFFICIENT_RESOURCES, // 53000
            Self::ReadOnly(_) => ERRCODE_READ_ONLY_SQL_TRANSACTION,   // 25006
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            Self::InvalidClient(_) | Self::AuthenticationFailed { .. } => Some(
                "Check the client's credentials (secret, assertion or TLS certificate) and that it is active in oauth.client.",
            ),
            Self::LockedOut { .. } => Some(
                "The lockout ends by itself (pg_oauth.lockout_duration); an administrator can end it early by deleting the client's row in oauth.client_lockout.",
            ),
            Self::UnauthorizedClient(_) => Some(
                "Check the client's grant_types (refresh_token for refresh) and its policy role (oauth.policy_role_problem).",
            ),
            Self::UnsupportedGrantType(_) => {
                Some("Supported grant types: client_credentials, refresh_token.")
            }
            Self::InvalidScope(_) => Some("Request only scopes listed in oauth.client.scope."),
            Self::InvalidTarget(_) => {
                Some("Request only audiences listed in oauth.client.audience.")
            }
            Self::InvalidGrant(_) => Some("Obtain a new grant with grant_type client_credentials."),
            Self::InvalidToken(_) => Some("Obtain a new access token with oauth.auth_token()."),
            Self::AccessDenied(_) => Some(
                "The console's client needs a row in oauth.console_access naming a role with the privileges its actions use (a member of oauth_admin).",
            ),
            Self::UseDpopNonce { .. } => Some(
                "pg_oauth.dpop_nonce is on: proofs carry a nonce the server hands out, valid for 5 to 10 minutes.",
            ),
            Self::InvalidDpopProof(_) => Some(
                "Sign a fresh DPoP proof (RFC 9449 §4) for this request's method and URL with the key the token is bound to.",
            ),
            Self::TemporarilyUnavailable { .. } => Some(
                "Too many secret verifications are running at once (pg_oauth.argon2_concurrency), or too many DPoP proofs are young at once; retry after a moment.",
            ),
            Self::ReadOnly(_) => Some(
                "Send token and revocation requests to the primary; verification and introspection work on standbys.",
            ),
            _ => None,
        }
    }

    /// Raise this error as a PostgreSQL ERROR. Never returns. The report's location is
    /// the caller's (its file and line in the server log), not this function's.
    #[track_caller]
    pub fn raise(self) -> ! {
        let mut report = ErrorReport::new(self.sqlstate(), self.to_string(), "pg_oauth");
        if let Some(hint) = self.hint() {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR reports do not return")
    }
}

/// Unwrap a result at the SQL boundary, raising the OAuth error.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T> {
    #[track_caller]
    fn or_raise(self) -> T {
        match self {
            Ok(value) => value,
            Err(err) => err.raise(),
        }
    }
}

/// Errors from SPI are bugs or broken installations, never the caller's fault.
impl From<pgrx::spi::SpiError> for OAuthError {
    fn from(err: pgrx::spi::SpiError) -> Self {
        OAuthError::ServerError(format!("database access failed: {err}"))
    }
}

/// A value quoted for an error description, shortened so a hostile 1 MB input does not
/// become a 1 MB error message.
pub fn quoted(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        format!("\"{value}\"")
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("\"{head}...\"")
    }
}
