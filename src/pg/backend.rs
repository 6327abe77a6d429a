//! This backend and its clock: whether it may write (primary or standby), who logged in,
//! the time, and waits on its latch.

use pgrx::pg_sys;

/// Whether this server is a hot standby (in recovery): it can read, not write.
pub fn is_standby() -> bool {
    // SAFETY: reads a flag in shared memory.
    unsafe { pg_sys::RecoveryInProgress() }
}

/// Writes need the primary: on a hot standby say so plainly (rather than failing later
/// with "cannot execute INSERT in a read-only transaction").
pub fn require_primary(what: &str) -> crate::error::Result<()> {
    if is_standby() {
        return Err(crate::error::OAuthError::ReadOnly(format!(
            "this server is a read-only standby; {what} on the primary (verification and introspection work here)"
        )));
    }
    Ok(())
}

/// Whether the statement running is a COPY: rows loaded in bulk, as pg_restore and psql
/// restoring a dump load them.
pub fn in_copy() -> bool {
    // SAFETY: ActivePortal is NULL or the portal this backend is running, valid while it runs
    // (and so while a trigger of its statement fires).
    unsafe {
        let portal = pg_sys::ActivePortal;
        !portal.is_null() && (*portal).commandTag == pg_sys::CommandTag::CMDTAG_COPY
    }
}

/// The session user's name (who logged in, whatever role a function runs as).
pub fn session_user() -> String {
    // SAFETY: the session user exists for the whole session; the name is palloc'd.
    unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::GetSessionUserId(), true);
        if name.is_null() {
            return "?".into();
        }
        std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned()
    }
}

/// Microseconds since the Unix epoch, from the system clock.
pub fn now_micros() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("system clock before 1970");
    now.as_micros() as i64
}

const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

pub fn timestamptz(unix_micros: i64) -> pgrx::datum::TimestampWithTimeZone {
    pgrx::datum::TimestampWithTimeZone::try_from(unix_micros - PG_EPOCH_OFFSET_MICROS)
        .expect("timestamp in range")
}

pub fn unix_micros(ts: pgrx::datum::TimestampWithTimeZone) -> i64 {
    let pg: pg_sys::TimestampTz = ts.into();
    pg + PG_EPOCH_OFFSET_MICROS
}

pub fn unix_seconds(ts: pgrx::datum::TimestampWithTimeZone) -> i64 {
    let pg: pg_sys::TimestampTz = ts.into();
    (pg + PG_EPOCH_OFFSET_MICROS).div_euclid(1_000_000)
}

/// Sleep on the latch for up to `ms` milliseconds (no CPU; interrupts and postmaster death
/// end it): a latch set by someone else (a worker we wait for, sinval catch-up) wakes it early.
pub fn sleep_ms(ms: i64) {
    // SAFETY: a latch wait with a timeout, as PostgreSQL's own waits do.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pg_sys::check_for_interrupts!();
}

/// Sleep on the latch for the whole of `ms` milliseconds, however often the latch is set.
pub fn pause_ms(ms: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms.max(0) as u64);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        sleep_ms(left.as_millis().max(1) as i64);
    }
}

/// Set a setting for the rest of this session (a background worker's own, say), as
/// `SET name = value` would outside a transaction.
pub fn set_session_setting(name: &std::ffi::CStr, value: &str) {
    let value = std::ffi::CString::new(value).expect("a setting's value has no NUL");
    // SAFETY: a session setting by name and value; the GUC machinery copies both.
    unsafe {
        pg_sys::SetConfigOption(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
        );
    }
}

/// Whether extension `name` is installed in this database (a catalog cache lookup; needs a
/// transaction).
pub fn extension_installed(name: &std::ffi::CStr) -> bool {
    // SAFETY: a syscache lookup inside a transaction; missing_ok, so it never raises.
    unsafe { pg_sys::get_extension_oid(name.as_ptr(), true) != pg_sys::InvalidOid }
}

/// A setting of the current session that may not exist: those PostgREST sets for a request
/// (`request.headers`, `request.method`, `request.jwt.claims`, ...).
pub fn request_setting(name: &std::ffi::CStr) -> Option<String> {
    // SAFETY: with missing_ok, GetConfigOptionByName returns NULL or a palloc'd string.
    unsafe {
        let value = pg_sys::GetConfigOptionByName(name.as_ptr(), std::ptr::null_mut(), true);
        (!value.is_null()).then(|| {
            std::ffi::CStr::from_ptr(value)
                .to_string_lossy()
                .into_owned()
        })
    }
}

/// The name of the database with oid `oid`, if it exists (a catalog lookup: in a transaction).
pub fn database_name(oid: u32) -> Option<String> {
    if oid == 0 {
        return None;
    }
    // SAFETY: get_database_name reads pg_database (a shared catalog) and returns a palloc'd
    // copy of the name, or NULL; it is copied out at once.
    unsafe {
        let name = pg_sys::get_database_name(pg_sys::Oid::from(oid));
        (!name.is_null()).then(|| {
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned()
        })
    }
}
