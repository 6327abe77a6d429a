//! Acting as another role for a while, as a SECURITY DEFINER function does: the console's
//! actions run with the privileges of the role oauth.console_access names, so PostgreSQL's
//! own checks (table and column privileges, EXECUTE) decide what they may do, exactly as for
//! that role's SQL.

use pgrx::pg_sys;

/// The role named `name`, if it exists.
pub fn oid_of(name: &str) -> Option<pg_sys::Oid> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name; missing_ok, so a missing role is InvalidOid, not an ERROR.
    let oid = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// What `as_role` restores.
struct Previous {
    user: pg_sys::Oid,
    context: i32,
}

impl Drop for Previous {
    fn drop(&mut self) {
        // SAFETY: puts back the user and security context read in `as_role`; only sets two
        // globals (no ERROR), so it is safe while unwinding from one too.
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) };
    }
}

/// Run `f` as `role`: the current user (not the session user) is `role` until `f` returns or
/// raises, and SET ROLE / SET SESSION AUTHORIZATION are refused meanwhile, as inside a
/// SECURITY DEFINER function. An ERROR's subtransaction abort restores it too.
pub fn as_role<T>(role: pg_sys::Oid, f: impl FnOnce() -> T) -> T {
    let mut previous = Previous {
        user: pg_sys::InvalidOid,
        context: 0,
    };
    // SAFETY: reads then sets this backend's current user and security context, as
    // fmgr_security_definer does; `previous` restores them when dropped.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut previous.user, &mut previous.context);
        pg_sys::SetUserIdAndSecContext(
            role,
            previous.context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
    }
    let _restore = previous;
    f()
}
