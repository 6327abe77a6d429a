//! PostgreSQL 18's OAuth validator interface (`libpq/oauth.h`), which pgrx's bindings do not
//! include: declared here, by hand, with nothing but core types, so that a test can compile
//! this file beside a C program built against the server's own header and compare every size
//! and offset (tests/harness/tests/login.rs).

use std::ffi::{c_char, c_void};

/// `PG_OAUTH_VALIDATOR_MAGIC`.
pub const PG_OAUTH_VALIDATOR_MAGIC: u32 = 0x2025_0220;

#[repr(C)]
pub struct ValidatorModuleState {
    pub sversion: i32,
    pub private_data: *mut c_void,
}

#[repr(C)]
pub struct ValidatorModuleResult {
    pub authorized: bool,
    pub authn_id: *mut c_char,
}

pub type ValidatorStartupCb = unsafe extern "C-unwind" fn(state: *mut ValidatorModuleState);
pub type ValidatorShutdownCb = unsafe extern "C-unwind" fn(state: *mut ValidatorModuleState);
pub type ValidatorValidateCb = unsafe extern "C-unwind" fn(
    state: *const ValidatorModuleState,
    token: *const c_char,
    role: *const c_char,
    result: *mut ValidatorModuleResult,
) -> bool;

#[repr(C)]
pub struct OAuthValidatorCallbacks {
    pub magic: u32,
    pub startup_cb: Option<ValidatorStartupCb>,
    pub shutdown_cb: Option<ValidatorShutdownCb>,
    pub validate_cb: Option<ValidatorValidateCb>,
}

/// `struct sockaddr_storage` and `socklen_t`.
#[repr(C)]
pub struct SockAddr {
    pub addr: [u64; 16],
    pub salen: u32,
}

/// `Port` (`libpq/libpq-be.h`) up to `hba`, its members that do not depend on how the server
/// was built (SSL and GSSAPI come later). Read through MyProcPort, never made.
#[repr(C)]
pub struct Port {
    pub sock: i32,
    pub noblock: bool,
    pub proto: u32,
    pub laddr: SockAddr,
    pub raddr: SockAddr,
    pub remote_host: *mut c_char,
    pub remote_hostname: *mut c_char,
    pub remote_hostname_resolv: i32,
    pub remote_hostname_errcode: i32,
    pub remote_port: *mut c_char,
    pub local_host: [c_char; 64],
    pub database_name: *mut c_char,
    pub user_name: *mut c_char,
    pub cmdline_options: *mut c_char,
    pub guc_options: *mut c_void,
    pub application_name: *mut c_char,
    pub hba: *mut HbaLine,
}

/// `HbaLine` (`libpq/hba.h`): the pg_hba.conf line that chose the connection's method.
#[repr(C)]
pub struct HbaLine {
    pub sourcefile: *mut c_char,
    pub linenumber: i32,
    pub rawline: *mut c_char,
    pub conntype: i32,
    pub databases: *mut c_void,
    pub roles: *mut c_void,
    pub addr: [u64; 16],
    pub addrlen: i32,
    pub mask: [u64; 16],
    pub masklen: i32,
    pub ip_cmp_method: i32,
    pub hostname: *mut c_char,
    pub auth_method: i32,
    pub usermap: *mut c_char,
    pub pamservice: *mut c_char,
    pub pam_use_hostname: bool,
    pub ldaptls: bool,
    pub ldapscheme: *mut c_char,
    pub ldapserver: *mut c_char,
    pub ldapport: i32,
    pub ldapbinddn: *mut c_char,
    pub ldapbindpasswd: *mut c_char,
    pub ldapsearchattribute: *mut c_char,
    pub ldapsearchfilter: *mut c_char,
    pub ldapbasedn: *mut c_char,
    pub ldapscope: i32,
    pub ldapprefix: *mut c_char,
    pub ldapsuffix: *mut c_char,
    pub clientcert: i32,
    pub clientcertname: i32,
    pub krb_realm: *mut c_char,
    pub include_realm: bool,
    pub compat_realm: bool,
    pub upn_username: bool,
    pub radiusservers: *mut c_void,
    pub radiusservers_s: *mut c_char,
    pub radiussecrets: *mut c_void,
    pub radiussecrets_s: *mut c_char,
    pub radiusidentifiers: *mut c_void,
    pub radiusidentifiers_s: *mut c_char,
    pub radiusports: *mut c_void,
    pub radiusports_s: *mut c_char,
    pub oauth_issuer: *mut c_char,
    pub oauth_scope: *mut c_char,
    pub oauth_validator: *mut c_char,
    pub oauth_skip_usermap: bool,
}

// SAFETY: immutable after construction (a static of function pointers and a constant).
unsafe impl Sync for OAuthValidatorCallbacks {}

/// A struct's name, size and (member, offset) pairs.
#[allow(dead_code)]
pub type Layout = (&'static str, usize, Vec<(&'static str, usize)>);

/// (name, size, [(member, offset)]) of each struct, as Rust lays them out, for the test that
/// compares them with the C compiler's (which includes this file; the extension does not
/// call it).
#[allow(dead_code)]
pub fn layout() -> Vec<Layout> {
    use std::mem::{offset_of, size_of};
    vec![
        (
            "ValidatorModuleState",
            size_of::<ValidatorModuleState>(),
            vec![
                ("sversion", offset_of!(ValidatorModuleState, sversion)),
                (
                    "private_data",
                    offset_of!(ValidatorModuleState, private_data),
                ),
            ],
        ),
        (
            "ValidatorModuleResult",
            size_of::<ValidatorModuleResult>(),
            vec![
                ("authorized", offset_of!(ValidatorModuleResult, authorized)),
                ("authn_id", offset_of!(ValidatorModuleResult, authn_id)),
            ],
        ),
        (
            "Port",
            // Only a prefix is declared: its size is not the server's.
            0,
            vec![
                ("user_name", offset_of!(Port, user_name)),
                ("hba", offset_of!(Port, hba)),
            ],
        ),
        (
            "HbaLine",
            size_of::<HbaLine>(),
            vec![
                ("auth_method", offset_of!(HbaLine, auth_method)),
                ("usermap", offset_of!(HbaLine, usermap)),
                ("oauth_issuer", offset_of!(HbaLine, oauth_issuer)),
                ("oauth_scope", offset_of!(HbaLine, oauth_scope)),
                ("oauth_validator", offset_of!(HbaLine, oauth_validator)),
                (
                    "oauth_skip_usermap",
                    offset_of!(HbaLine, oauth_skip_usermap),
                ),
            ],
        ),
        (
            "OAuthValidatorCallbacks",
            size_of::<OAuthValidatorCallbacks>(),
            vec![
                ("magic", offset_of!(OAuthValidatorCallbacks, magic)),
                (
                    "startup_cb",
                    offset_of!(OAuthValidatorCallbacks, startup_cb),
                ),
                (
                    "shutdown_cb",
                    offset_of!(OAuthValidatorCallbacks, shutdown_cb),
                ),
                (
                    "validate_cb",
                    offset_of!(OAuthValidatorCallbacks, validate_cb),
                ),
            ],
        ),
    ]
}
