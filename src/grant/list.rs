//! The one rule for a request's space-delimited lists (scope, audience).

use crate::error::{OAuthError, Result};

/// Longest list parameter (scope, audience) accepted: a bound on the work a request causes.
pub const MAX_LIST_BYTES: usize = 8192;

/// The one rule for a request's space-delimited lists (RFC 6749 §3.3 for scope; audience
/// alike): at most MAX_LIST_BYTES, split on spaces, blanks ignored, each item checked by
/// `check`, duplicates dropped, request order kept. `None` when nothing is named.
pub(super) fn parse_list(
    value: Option<&str>,
    name: &str,
    too_long: fn(String) -> OAuthError,
    check: impl Fn(&str) -> Result<()>,
) -> Result<Option<Vec<String>>> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.len() > MAX_LIST_BYTES {
        return Err(too_long(format!(
            "the {name} parameter is longer than {MAX_LIST_BYTES} bytes"
        )));
    }
    let mut items: Vec<String> = Vec::new();
    for item in value.split(' ').filter(|t| !t.is_empty()) {
        check(item)?;
        if !items.iter().any(|t| t == item) {
            items.push(item.to_owned());
        }
    }
    Ok(Some(items).filter(|items| !items.is_empty()))
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::grant::{audience, scope};

    #[test]
    fn scope_and_audience_lists_follow_one_rule() {
        let long = format!("a {}", "b".repeat(MAX_LIST_BYTES));
        for (parsed, code) in [
            (scope::parse(Some(&long)), "invalid_scope"),
            (audience::parse(Some(&long)), "invalid_target"),
        ] {
            let err = parsed.unwrap_err();
            assert_eq!(err.code(), code);
            assert!(
                err.description().contains("longer than 8192 bytes"),
                "{err}"
            );
        }
        for parse in [scope::parse, audience::parse] {
            assert_eq!(parse(None).unwrap(), None);
            assert_eq!(parse(Some("  ")).unwrap(), None);
            assert_eq!(
                parse(Some(" x y  x ")).unwrap(),
                Some(vec!["x".to_owned(), "y".to_owned()])
            );
        }
    }
}
