//! Server settings.

pub mod gucs;
pub mod login;
pub mod pages;

/// A text setting's value as pg_oauth reads every one: trimmed, and empty meaning unset.
pub fn trimmed(value: Option<std::ffi::CString>) -> Option<String> {
    value
        .and_then(|s| s.into_string().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
