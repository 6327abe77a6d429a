//! PostgreSQL 18 calls pg_oauth as an OAuth validator (`oauth_validator_libraries =
//! 'pg_oauth'`): the entry point and callback it looks for, and what they read of the
//! connection (pg_hba.conf's issuer, scope and delegate_ident_mapping). The decision is
//! authn/login.rs's, registered here from _PG_init (this layer calls nothing above it).
//!
//! The callback runs while the connection authenticates: before a database is chosen, under
//! authentication_timeout. It reads shared memory only, raises no error (a refusal is an
//! answer, logged with its reason and never the token), and allocates the identity it returns
//! with palloc, as the server frees it.

use std::sync::OnceLock;

/// What the server asks.
pub struct LoginRequest<'a> {
    pub token: &'a str,
    /// The role the connection asks for.
    pub role: &'a str,
    /// pg_hba.conf's `issuer` and `scope`.
    pub issuer: Option<&'a str>,
    pub scope: Option<&'a str>,
    /// pg_hba.conf's `delegate_ident_mapping=1`: the validator decides the role.
    pub delegated: bool,
}

/// The answer.
#[derive(Debug, PartialEq, Eq)]
pub struct LoginOutcome {
    pub authorized: bool,
    /// The client id, once the token's signature is verified.
    pub authn_id: Option<String>,
    /// Why not, for the server log (never the token).
    pub refusal: Option<String>,
}

pub type Handler = fn(&LoginRequest<'_>) -> LoginOutcome;

static HANDLER: OnceLock<Handler> = OnceLock::new();

/// From _PG_init.
pub fn set_handler(handler: Handler) {
    let _ = HANDLER.set(handler);
}

#[cfg(feature = "pg18")]
mod entry {
    use std::ffi::{c_char, CStr, CString};

    use pgrx::pg_sys;
    use pgrx::prelude::*;

    use super::super::validator_abi::{
        OAuthValidatorCallbacks, Port, ValidatorModuleResult, ValidatorModuleState,
        PG_OAUTH_VALIDATOR_MAGIC,
    };
    use super::{LoginRequest, HANDLER};

    static CALLBACKS: OAuthValidatorCallbacks = OAuthValidatorCallbacks {
        magic: PG_OAUTH_VALIDATOR_MAGIC,
        startup_cb: None,
        shutdown_cb: None,
        validate_cb: Some(validate),
    };

    /// What the server calls after loading the library named in oauth_validator_libraries.
    #[unsafe(no_mangle)]
    pub extern "C-unwind" fn _PG_oauth_validator_module_init() -> *const OAuthValidatorCallbacks {
        &CALLBACKS
    }

    /// A C string the server owns, if set and UTF-8.
    ///
    /// # Safety
    /// `ptr` is NULL or a NUL-terminated string that outlives the call.
    unsafe fn text<'a>(ptr: *const c_char) -> Option<&'a str> {
        // SAFETY: the caller's promise.
        (!ptr.is_null())
            .then(|| unsafe { CStr::from_ptr(ptr) }.to_str().ok())
            .flatten()
    }

    #[pg_guard]
    unsafe extern "C-unwind" fn validate(
        _state: *const ValidatorModuleState,
        token: *const c_char,
        role: *const c_char,
        result: *mut ValidatorModuleResult,
    ) -> bool {
        // SAFETY: the server passes its NUL-terminated token and role, and its connection
        // (MyProcPort, whose hba is the pg_hba.conf line that chose OAuth), for this call.
        let (token, role, issuer, scope, delegated) = unsafe {
            let port = pg_sys::MyProcPort as *const Port;
            let hba = if port.is_null() {
                std::ptr::null_mut()
            } else {
                (*port).hba
            };
            let (issuer, scope, delegated) = if hba.is_null() {
                (None, None, false)
            } else {
                (
                    text((*hba).oauth_issuer),
                    text((*hba).oauth_scope),
                    (*hba).oauth_skip_usermap,
                )
            };
            (text(token), text(role), issuer, scope, delegated)
        };
        let (Some(token), Some(role), Some(handler)) = (token, role, HANDLER.get()) else {
            return false;
        };
        let outcome = handler(&LoginRequest {
            token,
            role,
            issuer,
            scope,
            delegated,
        });
        super::super::shmem::stats::count(
            "logins",
            &[if outcome.authorized {
                "accepted"
            } else {
                "refused"
            }],
        );
        if let Some(why) = &outcome.refusal {
            log!("pg_oauth: login as role \"{role}\" with a pg_oauth token refused: {why}");
        }
        // SAFETY: the server's result struct for this call; authn_id is palloc'd in the
        // current memory context, as the server expects to free it.
        unsafe {
            (*result).authorized = outcome.authorized;
            if let Some(id) = outcome.authn_id.and_then(|id| CString::new(id).ok()) {
                (*result).authn_id = pg_sys::pstrdup(id.as_ptr());
            }
        }
        true
    }
}
