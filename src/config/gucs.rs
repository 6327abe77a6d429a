//! Server settings (`pg_oauth.*`). All are superuser-set (PGC_SUSET) so an
//! application role cannot change what its own tokens claim or how they are checked.
//!
//! One rule for where they come from (docs/reference.md, "Settings"): a database's value
//! (`ALTER DATABASE ... SET`) wins over the server's (`ALTER SYSTEM`, postgresql.conf), as for
//! any PostgreSQL setting, and a change applies on reload to every session — not only to new
//! ones, as PostgreSQL would do for the database's: reading a [`Setting`] first brings the
//! session's pg_oauth settings up to date after a reload (pg/settings.rs). So SQL callers,
//! PostgREST's pooled connections and the listener's workers agree.

use std::ffi::CString;

use pgrx::guc::GucValue;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

use crate::crypto::alg::JwtAlg;
use crate::pg::settings;

/// A pg_oauth setting, read as the module's rule says.
pub struct Setting<T: GucValue>(GucSetting<T>);

impl<T: GucValue> Setting<T> {
    const fn wrap(setting: GucSetting<T>) -> Self {
        Setting(setting)
    }

    /// The value, after a reload brought up to date (see the module's rule).
    pub fn get(&self) -> T {
        settings::refresh("pg_oauth.");
        self.0.get()
    }

    /// The value this process has, without bringing it up to date: for code that runs before
    /// a database is chosen (the login validator), where a database's values do not apply.
    pub fn current(&self) -> T {
        self.0.get()
    }

    /// For registration.
    fn guc(&'static self) -> &'static GucSetting<T> {
        &self.0
    }
}

pub static ISSUER: Setting<Option<CString>> =
    Setting::wrap(GucSetting::<Option<CString>>::new(None));
pub static API_URL: Setting<Option<CString>> =
    Setting::wrap(GucSetting::<Option<CString>>::new(None));
pub static DEFAULT_AUDIENCE: Setting<Option<CString>> =
    Setting::wrap(GucSetting::<Option<CString>>::new(None));
pub static DEFAULT_JWT_ALG: Setting<JwtAlg> =
    Setting::wrap(GucSetting::<JwtAlg>::new(JwtAlg::ES256));
pub static LEEWAY: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(30));
pub static VERIFY_REVOCATION: Setting<bool> = Setting::wrap(GucSetting::<bool>::new(true));
pub static LOCKOUT_THRESHOLD: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(10));
pub static LOCKOUT_WINDOW: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(300));
pub static LOCKOUT_DURATION: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(300));
pub static SOURCE_FAILURE_LIMIT: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(100));
pub static HTTP_CLIENT_ADDRESS_HEADER: Setting<Option<CString>> =
    Setting::wrap(GucSetting::<Option<CString>>::new(None));
pub static SCOPES_SUPPORTED: Setting<Option<CString>> =
    Setting::wrap(GucSetting::<Option<CString>>::new(None));
pub static CLIENT_ASSERTION_MAX_LIFETIME: Setting<i32> =
    Setting::wrap(GucSetting::<i32>::new(3600));
pub static DPOP_REQUIRED: Setting<bool> = Setting::wrap(GucSetting::<bool>::new(false));
pub static DPOP_NONCE: Setting<bool> = Setting::wrap(GucSetting::<bool>::new(false));
pub static DPOP_PROOF_MAX_AGE: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(10));
pub static ENDPOINT_PREFIX: Setting<Option<CString>> =
    Setting::wrap(GucSetting::<Option<CString>>::new(Some(c"/rpc")));
pub static SMART_EXPAND_WILDCARDS: Setting<bool> = Setting::wrap(GucSetting::<bool>::new(true));
pub static AUDIT_MIN_RETENTION: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(86_400));
pub static SESSION_PARTITION_INTERVAL: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(86_400));
pub static ARGON2_CONCURRENCY: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(0));
pub static ARGON2_WAIT: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(1000));
pub static REFUSAL_DELAY: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(100));
pub static HTTP_LISTEN: Setting<Option<CString>> =
    Setting::wrap(GucSetting::<Option<CString>>::new(None));
pub static HTTP_WORKERS: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(2));
pub static HTTP_DATABASE: Setting<Option<CString>> =
    Setting::wrap(GucSetting::<Option<CString>>::new(Some(c"postgres")));
pub static HTTP_MAX_CONNECTIONS: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(10_000));
pub static HTTP_MAX_CONNECTIONS_PER_SOURCE: Setting<i32> =
    Setting::wrap(GucSetting::<i32>::new(256));
pub static HTTP_PROXY_ROLES: Setting<Option<CString>> =
    Setting::wrap(GucSetting::<Option<CString>>::new(Some(c"authenticator")));
pub static HTTP_MAX_BODY: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(65_536));
pub static HTTP_TIMEOUT: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(10_000));
pub static HTTP_LOCK_TIMEOUT: Setting<i32> = Setting::wrap(GucSetting::<i32>::new(200));
pub static HTTP_TRUSTED_PROXIES: Setting<Option<CString>> =
    Setting::wrap(GucSetting::<Option<CString>>::new(None));
pub static HTTP_METRICS_ALLOW: Setting<Option<CString>> =
    Setting::wrap(GucSetting::<Option<CString>>::new(None));
pub static HTTP_TLS_CERT: Setting<Option<CString>> =
    Setting::wrap(GucSetting::<Option<CString>>::new(None));
pub static HTTP_TLS_KEY: Setting<Option<CString>> =
    Setting::wrap(GucSetting::<Option<CString>>::new(None));
pub static HTTP_TLS_CLIENT_CERTIFICATES: Setting<bool> =
    Setting::wrap(GucSetting::<bool>::new(false));
pub static TLS_CLIENT_CA_FILE: Setting<Option<CString>> =
    Setting::wrap(GucSetting::<Option<CString>>::new(None));
pub static CLIENT_CERTIFICATE_HEADER: Setting<Option<CString>> =
    Setting::wrap(GucSetting::<Option<CString>>::new(None));

pub fn init() {
    init_tokens();
    init_dpop();
    init_mtls();
    init_abuse();
    init_argon2();
    init_endpoints();
    init_listener();
    super::pages::init();
}

/// What tokens say and how they are checked.
fn init_tokens() {
    GucRegistry::define_string_guc(
        c"pg_oauth.issuer",
        c"Issuer identifier: the `iss` claim and the RFC 8414 `issuer`.",
        c"Required for JWT access tokens. Usually the public https base URL of the API.",
        ISSUER.guc(),
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_oauth.default_audience",
        c"Audience for tokens whose request names none and whose client lists none.",
        c"When unset, the issuer is the audience.",
        DEFAULT_AUDIENCE.guc(),
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pg_oauth.default_jwt_alg",
        c"Signing algorithm for JWT clients whose jwt_alg is NULL.",
        c"",
        DEFAULT_JWT_ALG.guc(),
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_oauth.leeway",
        c"Clock skew in seconds tolerated when checking JWT exp, nbf and iat.",
        c"",
        LEEWAY.guc(),
        0,
        300,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"pg_oauth.verify_revocation",
        c"Whether auth_verify checks that a JWT's session is still open.",
        c"Off makes JWT verification signature-only: revoked JWTs stay valid until they expire.",
        VERIFY_REVOCATION.guc(),
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_oauth.client_assertion_max_lifetime",
        c"Longest a client assertion (private_key_jwt) may live, in seconds from now.",
        c"SMART Backend Services clients (type smart-app) are held to 300 s whatever this says.",
        CLIENT_ASSERTION_MAX_LIFETIME.guc(),
        60,
        86_400,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"pg_oauth.smart_expand_wildcards",
        c"Whether a SMART client's system/*.<perm> scope is granted as one scope per FHIR resource type.",
        c"On (as Aidbox does): explicit scopes, about 40 bytes per resource type in every JWT. Off: the wildcard itself, which has_all_scopes and resource servers that know SMART wildcards accept.",
        SMART_EXPAND_WILDCARDS.guc(),
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// Lockouts, throttling and refusals; the audit trail's retention.
/// DPoP (RFC 9449): proof age, nonces, and whether the API takes only bound tokens.
fn init_dpop() {
    GucRegistry::define_int_guc(
        c"pg_oauth.dpop_proof_max_age",
        c"How old a DPoP proof (RFC 9449) may be, by its iat, when it is presented.",
        c"Plus pg_oauth.leeway either way for clock skew. Each proof's jti is remembered, server-wide, until it is this old; a proof is accepted once. The longer the age, the fewer proofs a second the memory of used proofs holds.",
        DPOP_PROOF_MAX_AGE.guc(),
        1,
        300,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"pg_oauth.dpop_required",
        c"Whether the API behind PostgREST's pre-request hook takes only DPoP-bound tokens (RFC 9449).",
        c"On: a bearer token is refused there with a DPoP challenge, and the protected resource metadata (RFC 9728) says dpop_bound_access_tokens_required. Clients must then get their tokens with a DPoP proof.",
        DPOP_REQUIRED.guc(),
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_oauth.dpop_nonce",
        c"Whether DPoP proofs must carry a nonce the server handed out (RFC 9449 §8).",
        c"Off: any fresh proof is accepted. On: a proof without a current nonce is answered use_dpop_nonce with a DPoP-Nonce header; nonces last 5 to 10 minutes.",
        DPOP_NONCE.guc(),
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// Client certificates (RFC 8705): whom tls_client_auth trusts, and what a proxy forwards.
fn init_mtls() {
    GucRegistry::define_string_guc(
        c"pg_oauth.tls_client_ca_file",
        c"PEM file with the CA certificates that issue tls_client_auth clients' certificates (RFC 8705 §2.1).",
        c"Empty: no client authenticates by tls_client_auth (self_signed_tls_client_auth and certificate-bound tokens need no CA). Read again when the file changes.",
        TLS_CLIENT_CA_FILE.guc(),
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"pg_oauth.client_certificate_header",
        c"Request header in which a proxy that terminates TLS forwards the client's certificate (e.g. x-ssl-client-cert with nginx's $ssl_client_escaped_cert).",
        c"Believed only from a trusted proxy: a listener peer in pg_oauth.http_trusted_proxies, a PostgREST session whose login role is in pg_oauth.http_proxy_roles. The proxy must set it on every request (a client's own is then replaced). Empty: off.",
        CLIENT_CERTIFICATE_HEADER.guc(),
        GucContext::Suset,
        GucFlags::default(),
    );
}

fn init_abuse() {
    GucRegistry::define_int_guc(
        c"pg_oauth.lockout_threshold",
        c"Failed client authentications from one source that lock the client out there.",
        c"Counted per client id and source within pg_oauth.lockout_window; 0 disables lockout (failures are still recorded).",
        LOCKOUT_THRESHOLD.guc(),
        0,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_oauth.lockout_window",
        c"Seconds over which failed client authentications are counted toward a lockout.",
        c"",
        LOCKOUT_WINDOW.guc(),
        1,
        86_400,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_oauth.lockout_duration",
        c"Seconds a client stays locked out for a source after too many failures from it.",
        c"",
        LOCKOUT_DURATION.guc(),
        1,
        86_400,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_oauth.source_failure_limit",
        c"Failed client authentications from one source, whatever client ids they name, that throttle it for the rest of pg_oauth.lockout_window.",
        c"Counted cluster-wide in shared memory; a throttled source gets no secret verified, except proven ones (32+ characters, verified before). 0: off.",
        SOURCE_FAILURE_LIMIT.guc(),
        0,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_oauth.refusal_delay",
        c"How long an SQL caller's attempt refused by a lockout or a throttled source waits before its error.",
        c"As auth_delay does for logins: a connection that keeps guessing gets at most 1000/delay answers a second and spends no CPU meanwhile. Not applied over HTTP, where it would hold a shared pool connection.",
        REFUSAL_DELAY.guc(),
        0,
        10_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_oauth.audit_min_retention",
        c"Shortest retention oauth.purge_expired accepts for the audit trail, in seconds.",
        c"Whoever may run purge_expired still cannot erase recent sessions and failures with it.",
        AUDIT_MIN_RETENTION.guc(),
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_oauth.session_partition_interval",
        c"How long tokens are issued into one of oauth.session's 16 partitions before the next.",
        c"oauth.purge_expired empties a partition whole once all its tokens expired past the retention, which takes no per-row work when retention plus the longest token lifetime is at most 14 intervals. Changes apply to tokens issued afterwards.",
        SESSION_PARTITION_INTERVAL.guc(),
        1,
        31 * 86_400,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
}

/// The cluster-wide bound on argon2 work (pg/limits.rs).
fn init_argon2() {
    GucRegistry::define_int_guc(
        c"pg_oauth.argon2_concurrency",
        c"Most argon2 secret hashes or verifications running at once in the cluster (0: half the CPUs, at least 1).",
        c"Each takes about 17 ms of CPU and 19 MiB. Verifications beyond it wait pg_oauth.argon2_wait, then answer temporarily_unavailable; clients whose secret a backend verified before never wait.",
        ARGON2_CONCURRENCY.guc(),
        0,
        1024,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_oauth.argon2_wait",
        c"How long a secret verification waits for an argon2 slot before answering temporarily_unavailable.",
        c"",
        ARGON2_WAIT.guc(),
        0,
        60_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
}

/// What the HTTP endpoints and the published metadata say.
fn init_endpoints() {
    GucRegistry::define_string_guc(
        c"pg_oauth.api_url",
        c"Public base URL under which PostgREST serves /rpc/token and the other endpoints.",
        c"Endpoints in the metadata are <api_url><endpoint_prefix>/<name>. Defaults to the issuer.",
        API_URL.guc(),
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_oauth.http_client_address_header",
        c"Request header (e.g. x-forwarded-for) that carries the caller's address over PostgREST.",
        c"Set it only when a proxy you run sets that header; the last address in it is used. Unset: the connection's address (PostgREST's).",
        HTTP_CLIENT_ADDRESS_HEADER.guc(),
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_oauth.endpoint_prefix",
        c"Path between api_url and an endpoint's name in the published metadata (default /rpc).",
        c"PostgREST serves /rpc/token; a proxy in front may serve /token instead: set '' (see examples/nginx).",
        ENDPOINT_PREFIX.guc(),
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_oauth.http_proxy_roles",
        c"Login roles (comma-separated) whose requests over PostgREST may name their source in pg_oauth.http_client_address_header.",
        c"PostgREST logs in as its authenticator role; any other session that sets request.headers itself is counted by its own connection's address.",
        HTTP_PROXY_ROLES.guc(),
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_oauth.scopes_supported",
        c"Scopes the metadata publishes as scopes_supported (space-separated).",
        c"Unset: the metadata has no scopes_supported (RFC 8414 makes it optional; the clients' scopes are not listed to anonymous callers).",
        SCOPES_SUPPORTED.guc(),
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// How many argon2 computations may run at once in the cluster (pg_oauth.argon2_concurrency;
/// 0 = half the CPUs, at least one).
pub fn argon2_slots() -> u32 {
    match ARGON2_CONCURRENCY.get() {
        n if n > 0 => n as u32,
        _ => std::thread::available_parallelism()
            .map(|n| (n.get() / 2).max(1) as u32)
            .unwrap_or(1),
    }
}

/// How long a verification waits for an argon2 slot (pg_oauth.argon2_wait).
pub fn argon2_wait() -> std::time::Duration {
    std::time::Duration::from_millis(ARGON2_WAIT.get().max(0) as u64)
}

/// A string setting as an owned value, with empty treated as unset.
pub fn string(setting: &Setting<Option<CString>>) -> Option<String> {
    super::trimmed(setting.get())
}

pub fn issuer() -> Option<String> {
    string(&ISSUER)
}

/// Run `f` with the issuer, read in place (no copy: this is on the verification path).
pub fn with_issuer<R>(f: impl FnOnce(Option<&str>) -> R) -> R {
    settings::refresh("pg_oauth.");
    // SAFETY: the GUC machinery owns the string and does not change it while we run.
    let raw = unsafe { *ISSUER.0.as_ptr() };
    let issuer = (!raw.is_null())
        // SAFETY: a non-null GUC string is a NUL-terminated C string.
        .then(|| unsafe { std::ffi::CStr::from_ptr(raw) }.to_str().ok())
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    f(issuer)
}

/// Which server carries a request: the statuses it may answer and the paths it serves differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// PostgREST, through the `oauth.http_*` functions (and SQL callers, who reach the
    /// endpoints through PostgREST). It takes any 503 for "database away" (it restarts its
    /// connection worker and prepends its own `Retry-After: 0`), so temporarily_unavailable is
    /// a 429 there.
    PostgRest,
    /// pg_oauth's own listener: temporarily_unavailable is a 503, as RFC 9110 means it.
    Listener,
}

/// The public URL of an endpoint as `transport` serves it: PostgREST's
/// `<api_url or issuer><endpoint_prefix>/<name>`, the listener's `<issuer>/<name>` (the
/// paths it answers, whatever the prefix: a document describes the server that serves it).
pub fn endpoint(transport: Transport, name: &str) -> Option<String> {
    let (base, prefix) = match transport {
        Transport::PostgRest => {
            let prefix = ENDPOINT_PREFIX
                .get()
                .and_then(|s| s.into_string().ok())
                .unwrap_or_default();
            (string(&API_URL).or_else(issuer)?, prefix)
        }
        Transport::Listener => (issuer()?, String::new()),
    };
    let prefix = prefix.trim().trim_matches('/');
    let base = base.trim_end_matches('/');
    Some(if prefix.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{prefix}/{name}")
    })
}

/// pg_oauth's own HTTP listener (http/listener): off unless pg_oauth is in
/// shared_preload_libraries and http_listen is set. Its settings are read at server start,
/// so they exist only then (PostgreSQL refuses postmaster settings from a library loaded
/// later, as pg_stat_statements' are).
fn init_listener() {
    // SAFETY: a flag the postmaster sets while it loads shared_preload_libraries.
    if !unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    GucRegistry::define_string_guc(
        c"pg_oauth.http_listen",
        c"Address and port pg_oauth's own HTTP listener serves the OAuth endpoints on (e.g. 127.0.0.1:8080); empty: off.",
        c"Needs pg_oauth in shared_preload_libraries. Serves POST /token, /revoke, /introspect and GET /jwks, /.well-known/oauth-authorization-server, /.well-known/smart-configuration.",
        HTTP_LISTEN.guc(),
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_oauth.http_workers",
        c"Background workers of the HTTP listener; each owns a database connection and accepts on the same port.",
        c"",
        HTTP_WORKERS.guc(),
        1,
        64,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_oauth.http_database",
        c"Database the HTTP listener's workers connect to (pg_oauth must be created there).",
        c"",
        HTTP_DATABASE.guc(),
        GucContext::Postmaster,
        GucFlags::default(),
    );
    init_listener_limits();
}

/// The listener's reloadable settings.
fn init_listener_limits() {
    GucRegistry::define_int_guc(
        c"pg_oauth.http_max_connections",
        c"Open connections each HTTP listener worker keeps at most; more wait in the kernel's accept queue.",
        c"Reloadable. Idle connections close after pg_oauth.http_timeout.",
        HTTP_MAX_CONNECTIONS.guc(),
        1,
        100_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_oauth.http_max_connections_per_source",
        c"Open connections each HTTP listener worker keeps from one address; more are closed at once.",
        c"Reloadable. Peers listed in pg_oauth.http_trusted_proxies are not limited (a proxy carries many clients).",
        HTTP_MAX_CONNECTIONS_PER_SOURCE.guc(),
        1,
        100_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_oauth.http_max_body",
        c"Largest request body the HTTP listener reads, in bytes; larger ones are answered 413.",
        c"Reloadable.",
        HTTP_MAX_BODY.guc(),
        1024,
        1_048_576,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_oauth.http_timeout",
        c"How long the HTTP listener waits for a request's headers and body, and keeps an idle connection.",
        c"Reloadable (new connections). A connection is closed after 30 times this in any case.",
        HTTP_TIMEOUT.guc(),
        100,
        600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_oauth.http_lock_timeout",
        c"How long a listener request waits for a lock another transaction holds before it is answered 503 temporarily_unavailable.",
        c"Reloadable. A transaction left open on a row a request needs (a refresh token, a client's lockout row) delays the other requests of its worker's batch by at most this, never stalls the listener.",
        HTTP_LOCK_TIMEOUT.guc(),
        1,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"pg_oauth.http_trusted_proxies",
        c"Peer addresses or networks (comma-separated, CIDR allowed) whose pg_oauth.http_client_address_header the HTTP listener believes.",
        c"A proxy in front of the listener (e.g. 127.0.0.1): its requests count by the address in that header, every other peer by its own. Empty: the socket peer, always. Reloadable.",
        HTTP_TRUSTED_PROXIES.guc(),
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_oauth.http_metrics_allow",
        c"Addresses or networks (comma-separated, CIDR allowed) that may read the HTTP listener's /metrics (Prometheus); empty: /metrics is off.",
        c"Reloadable. Any other address is answered 403.",
        HTTP_METRICS_ALLOW.guc(),
        GucContext::Sighup,
        GucFlags::default(),
    );
    init_listener_tls();
}

/// The listener's TLS: its certificate and key, and whether it asks for client certificates.
fn init_listener_tls() {
    GucRegistry::define_string_guc(
        c"pg_oauth.http_tls_cert",
        c"PEM file with the HTTP listener's TLS certificate chain (leaf first); empty: plain HTTP.",
        c"Set with pg_oauth.http_tls_key. Reloadable: a renewed certificate applies to new connections.",
        HTTP_TLS_CERT.guc(),
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"pg_oauth.http_tls_key",
        c"PEM file with the private key of pg_oauth.http_tls_cert.",
        c"Readable by the database server's user only. Reloadable.",
        HTTP_TLS_KEY.guc(),
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_bool_guc(
        c"pg_oauth.http_tls_client_certificates",
        c"Whether the HTTP listener's TLS asks clients for a certificate (optional; RFC 8705 mutual TLS).",
        c"On: a client that presents one may authenticate with it (tls_client_auth, self_signed_tls_client_auth) and get certificate-bound tokens. Any certificate is accepted at the handshake; what it is worth is decided per client. Reloadable.",
        HTTP_TLS_CLIENT_CERTIFICATES.guc(),
        GucContext::Sighup,
        GucFlags::default(),
    );
}
