//! A session's own settings, kept as a new session would have them.
//!
//! PostgreSQL applies a database's and a role's settings (`ALTER DATABASE/ROLE ... SET`) when
//! a session connects and never again, while postgresql.conf and `ALTER SYSTEM` apply on
//! reload. A session older than a change of the former keeps the old value for its lifetime
//! (a PostgREST pool's connections, pg_oauth's listener workers): one database then has two
//! issuers at once, and which one a session sees depends on when it connected. [`refresh`]
//! re-applies, after each reload, the settings of one prefix as a new session would get them:
//! the role's in this database, else the role's, else the database's, else `ALTER ROLE ALL`'s,
//! else the configuration files', else the default. A session's own `SET` and connection
//! options keep their precedence over all of them, as at connection time.
//!
//! The values are set in the current transaction, so a rollback (of it, or of the
//! subtransaction they were set in) takes them back: the transaction callbacks below then make
//! the next call do it again, and only a commit makes the reload done.

use std::cell::Cell;
use std::ffi::{CStr, CString};

use pgrx::pg_sys;
use pgrx::prelude::*;

thread_local! {
    /// The reload (PgReloadTime) this session's settings were last brought up to date after,
    /// committed.
    static DONE: Cell<pg_sys::TimestampTz> = const { Cell::new(0) };
    /// A refresh made in the current transaction, not yet committed: its reload, and the
    /// subtransaction it lives in.
    static PENDING: Cell<Option<(pg_sys::TimestampTz, pg_sys::SubTransactionId)>> = const { Cell::new(None) };
    /// A refresh is running (its own queries read no setting, but stay safe if one did).
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// From _PG_init: follow commits and rollbacks of the transactions refreshes happen in.
pub fn init() {
    // SAFETY: registering callbacks that live as long as the library (never unloaded);
    // they only touch this module's thread-locals.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    let Some((reload, _)) = PENDING.get() else {
        return;
    };
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {
            DONE.set(reload);
            PENDING.set(None);
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            PENDING.set(None);
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    subxact: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    let Some((reload, within)) = PENDING.get() else {
        return;
    };
    if within != subxact {
        return;
    }
    match event {
        // Its values now belong to the parent, and go with it if it rolls back.
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => PENDING.set(Some((reload, parent))),
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => PENDING.set(None),
        _ => {}
    }
}

/// Bring the settings named `prefix*` up to date if the server's configuration was reloaded
/// (or this session never did it) and this is a transaction that can: cheap otherwise (one
/// comparison), so every read of a setting may call it.
pub fn refresh(prefix: &str) {
    // SAFETY: a timestamp this process sets when it (or, before it started, the postmaster)
    // reads the configuration files.
    let reload = unsafe { pg_sys::PgReloadTime };
    if DONE.get() == reload || PENDING.get().is_some_and(|(r, _)| r == reload) || BUSY.get() {
        return;
    }
    // No reload since this process started: it has what it applied when it connected.
    // SAFETY: set once when the process starts.
    if DONE.get() == 0 && reload < unsafe { pg_sys::MyStartTimestamp } {
        DONE.set(reload);
        return;
    }
    // SAFETY: state queries of the current transaction, with no preconditions.
    let usable = unsafe {
        pg_sys::IsUnderPostmaster
            && pg_sys::IsTransactionState()
            && !pg_sys::IsInParallelMode()
            && !pg_sys::IsBinaryUpgrade
    };
    if !usable {
        return;
    }
    BUSY.set(true);
    let _done = Reset(&BUSY);
    apply_all(prefix);
    // SAFETY: inside a transaction (checked above).
    let within = unsafe { pg_sys::GetCurrentSubTransactionId() };
    PENDING.set(Some((reload, within)));
}

struct Reset(&'static std::thread::LocalKey<Cell<bool>>);

impl Drop for Reset {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// Where a value of a session's setting came from, as pg_settings says.
const FROM_ROLE_OR_DATABASE: [&str; 4] = ["global", "database", "user", "database user"];

fn apply_all(prefix: &str) {
    let stored = stored_values(prefix);
    let pattern = format!("{}%", prefix.replace('_', "\\_"));
    let settings: Vec<(String, String, Option<String>)> = Spi::connect(|spi| {
        spi.select(
            "SELECT name, source, boot_val FROM pg_catalog.pg_settings
              WHERE name LIKE $1 AND context IN ('user', 'superuser')",
            None,
            &[pattern.into()],
        )?
        .map(|row| {
            Ok((
                row.get(1)?.unwrap_or_default(),
                row.get(2)?.unwrap_or_default(),
                row.get(3)?,
            ))
        })
        .collect::<Result<_, pgrx::spi::Error>>()
    })
    .unwrap_or_default();
    for (name, source, boot) in settings {
        let value = match stored.iter().find(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            Some((_, value)) => value.clone(),
            // Set at connection from a row that is gone: back to what the files say.
            None if FROM_ROLE_OR_DATABASE.contains(&source.as_str()) => {
                file_value(&name).or(boot).unwrap_or_default()
            }
            // From the files (applied by the reload itself), the session, the connection.
            None => continue,
        };
        set(&name, &value);
    }
}

/// The values `ALTER DATABASE/ROLE ... SET` stored for this session's database and login
/// role, of the settings named `prefix*`: the most specific for each name.
fn stored_values(prefix: &str) -> Vec<(String, String)> {
    let rows: Vec<(i32, Vec<String>)> = Spi::connect(|spi| {
        spi.select(
            "SELECT (s.setdatabase <> 0)::int + 2 * (s.setrole <> 0)::int, s.setconfig
               FROM pg_catalog.pg_db_role_setting s
              WHERE s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database
                                           WHERE datname = pg_catalog.current_database()))
                AND s.setrole IN (0, (SELECT oid FROM pg_catalog.pg_roles
                                       WHERE rolname = SESSION_USER))
              ORDER BY 1",
            None,
            &[],
        )?
        .map(|row| Ok((row.get(1)?.unwrap_or(0), row.get(2)?.unwrap_or_default())))
        .collect::<Result<_, pgrx::spi::Error>>()
    })
    .unwrap_or_default();
    // Least specific first (ALTER ROLE ALL, database, role, role in database): later
    // entries replace earlier ones, as the sources' precedence says.
    let mut values: Vec<(String, String)> = Vec::new();
    for (_, config) in rows {
        for entry in config {
            let Some((name, value)) = entry.split_once('=') else {
                continue;
            };
            if !name.to_ascii_lowercase().starts_with(prefix) {
                continue;
            }
            values.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            values.push((name.to_owned(), value.to_owned()));
        }
    }
    values
}

/// Set `name` as a database-and-role setting: above the files, below the session's own SET
/// and the connection's options (which PostgreSQL then keeps, with this as their RESET value).
fn set(name: &str, value: &str) {
    let (Ok(name), Ok(value)) = (CString::new(name), CString::new(value)) else {
        return;
    };
    // SAFETY: set_config_option as PostgreSQL applies stored settings at connection
    // (PGC_SUSET: they were checked when stored), inside a transaction; a value that does
    // not parse is reported (WARNING) and changes nothing.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_DATABASE_USER,
            pg_sys::GucAction::GUC_ACTION_SET,
            true,
            pg_sys::WARNING as i32,
            false,
        );
    }
}

/// The value postgresql.conf and postgresql.auto.conf (ALTER SYSTEM) give `name`, read as the
/// server reads them on reload: the last one wins.
fn file_value(name: &str) -> Option<String> {
    let mut found = None;
    // SAFETY: ParseConfigFile reads the files into a list allocated in the current memory
    // context; we read it, then free it. ConfigFileName and DataDir are set for the life of
    // every server process.
    unsafe {
        let mut head: *mut pg_sys::ConfigVariable = std::ptr::null_mut();
        let mut tail: *mut pg_sys::ConfigVariable = std::ptr::null_mut();
        let mut files: Vec<CString> = Vec::new();
        if !pg_sys::ConfigFileName.is_null() {
            files.push(CStr::from_ptr(pg_sys::ConfigFileName).to_owned());
        }
        if !pg_sys::DataDir.is_null() {
            let dir = CStr::from_ptr(pg_sys::DataDir).to_string_lossy();
            if let Ok(auto) = CString::new(format!("{dir}/postgresql.auto.conf")) {
                files.push(auto);
            }
        }
        for file in &files {
            // Not strict: a missing postgresql.auto.conf is no error. Problems were logged by
            // the reload itself; DEBUG2 keeps them from being logged twice.
            pg_sys::ParseConfigFile(
                file.as_ptr(),
                false,
                std::ptr::null(),
                0,
                0,
                pg_sys::DEBUG2 as i32,
                &mut head,
                &mut tail,
            );
        }
        let mut item = head;
        while !item.is_null() {
            let entry = &*item;
            if !entry.name.is_null()
                && !entry.value.is_null()
                && entry.errmsg.is_null()
                && CStr::from_ptr(entry.name)
                    .to_string_lossy()
                    .eq_ignore_ascii_case(name)
            {
                found = Some(CStr::from_ptr(entry.value).to_string_lossy().into_owned());
            }
            item = entry.next;
        }
        pg_sys::FreeConfigVariables(head);
    }
    found
}
