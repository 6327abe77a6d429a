//! Scopes (RFC 6749 §3.3): parsing requests and deciding what a client is granted.

use crate::error::{OAuthError, Result};

/// scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
pub fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Split a space-delimited scope parameter into distinct tokens, in request order.
/// `None` or a blank string means "no scope requested".
pub fn parse(scope: Option<&str>) -> Result<Option<Vec<String>>> {
    let Some(scope) = scope else {
        return Ok(None);
    };
    let mut tokens: Vec<String> = Vec::new();
    for token in scope.split(' ').filter(|t| !t.is_empty()) {
        if !is_scope_token(token) {
            return Err(OAuthError::InvalidScope(format!(
                "malformed scope token {}",
                quoted(token)
            )));
        }
        if !tokens.iter().any(|t| t == token) {
            tokens.push(token.to_owned());
        }
    }
    Ok(if tokens.is_empty() {
        None
    } else {
        Some(tokens)
    })
}

/// Whether `scope` is among the client's `allowed` scopes.
pub fn is_allowed(allowed: &[String], scope: &str) -> bool {
    allowed.iter().any(|a| a == scope)
}

/// The scopes granted to a client for a request: every requested scope must be allowed;
/// no request grants everything the client is allowed.
pub fn grant(allowed: &[String], requested: Option<Vec<String>>) -> Result<Vec<String>> {
    let Some(requested) = requested else {
        return Ok(allowed.to_vec());
    };
    for scope in &requested {
        if !is_allowed(allowed, scope) {
            return Err(OAuthError::InvalidScope(format!(
                "scope {} is not allowed for this client",
                quoted(scope)
            )));
        }
    }
    Ok(requested)
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

#[cfg(test)]
mod unit {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_splits_dedupes_and_validates() {
        assert_eq!(parse(None).unwrap(), None);
        assert_eq!(parse(Some("  ")).unwrap(), None);
        assert_eq!(
            parse(Some("read  write read")).unwrap(),
            Some(v(&["read", "write"]))
        );
        assert!(matches!(
            parse(Some("re\"ad")),
            Err(OAuthError::InvalidScope(_))
        ));
        assert!(matches!(
            parse(Some("a\tb")),
            Err(OAuthError::InvalidScope(_))
        ));
    }

    #[test]
    fn grant_requires_every_scope_to_be_allowed() {
        let allowed = v(&["read", "write"]);
        assert_eq!(grant(&allowed, None).unwrap(), allowed);
        assert_eq!(grant(&allowed, Some(v(&["read"]))).unwrap(), v(&["read"]));
        let err = grant(&allowed, Some(v(&["read", "admin"]))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid_scope: scope \"admin\" is not allowed for this client"
        );
    }

    #[test]
    fn quoted_bounds_length() {
        assert_eq!(quoted(&"a".repeat(1_000_000)).len(), 64 + 5);
    }
}
