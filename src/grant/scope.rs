//! Scopes (RFC 6749 §3.3): parsing requests, deciding what a client is granted, wildcard
//! patterns, and SMART on FHIR scopes (v1 `read`/`write`/`*`, v2 `cruds`).

use pgrx::spi::SpiClient;

use crate::error::quoted;
use crate::error::{OAuthError, Result};
use crate::store::fhir;

/// scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
pub fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Split a space-delimited scope parameter into distinct tokens, in request order
/// (`list::parse_list`'s rule); `None` or a blank string means "no scope requested".
pub fn parse(scope: Option<&str>) -> Result<Option<Vec<String>>> {
    super::list::parse_list(scope, "scope", OAuthError::InvalidScope, |token| {
        is_scope_token(token).then_some(()).ok_or_else(|| {
            OAuthError::InvalidScope(format!("malformed scope token {}", quoted(token)))
        })
    })
}

/// `*` in `pattern` matches one or more characters; everything else matches itself.
///
/// Linear in the value's length for each literal piece: the pieces between stars are
/// matched leftmost-first (which is optimal, since a star only needs one character), so a
/// hostile scope cannot make a pattern backtrack exponentially.
pub fn glob_matches(pattern: &str, value: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or("");
    let rest: Vec<&str> = pieces.collect();
    let Some((last, middle)) = rest.split_last() else {
        return pattern == value;
    };
    let Some(mut tail) = value.strip_prefix(first) else {
        return false;
    };
    // Each star takes at least one character, then the next piece's first occurrence.
    for piece in middle {
        let Some(one) = tail.chars().next() else {
            return false;
        };
        tail = &tail[one.len_utf8()..];
        match tail.find(piece) {
            Some(at) => tail = &tail[at + piece.len()..],
            None => return false,
        }
    }
    // The last star takes at least one character before the final piece.
    tail.strip_suffix(last)
        .is_some_and(|before| !before.is_empty())
}

/// SMART permissions as a set: c r u d s.
const C: u8 = 1;
const R: u8 = 2;
const U: u8 = 4;
const D: u8 = 8;
const S: u8 = 16;

/// A SMART on FHIR scope: `<context>/<resource or *>.<permissions>[?query]`.
#[derive(Debug, PartialEq, Eq)]
pub struct Smart<'a> {
    pub context: &'a str,
    pub resource: &'a str,
    pub permissions: u8,
    /// The permissions as written (`read`, `rs`, ...), kept when expanding wildcards.
    pub written: &'a str,
    pub query: Option<&'a str>,
}

impl<'a> Smart<'a> {
    pub fn parse(scope: &'a str) -> Option<Smart<'a>> {
        let (context, rest) = scope.split_once('/')?;
        if !matches!(context, "system" | "patient" | "user") {
            return None;
        }
        let (resource, rest) = rest.split_once('.')?;
        if resource != "*"
            && !(resource.starts_with(|c: char| c.is_ascii_uppercase())
                && resource.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return None;
        }
        let (written, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let permissions = match written {
            "read" => R | S,
            "write" => C | U | D,
            "*" => C | R | U | D | S,
            v2 => {
                // SMART v2: a non-empty subsequence of "cruds", in that order.
                let mut order = "cruds".chars();
                let mut bits = 0;
                for c in v2.chars() {
                    order.by_ref().find(|&o| o == c)?;
                    bits |= match c {
                        'c' => C,
                        'r' => R,
                        'u' => U,
                        'd' => D,
                        _ => S,
                    };
                }
                if bits == 0 {
                    return None;
                }
                bits
            }
        };
        Some(Smart {
            context,
            resource,
            permissions,
            written,
            query,
        })
    }

    /// Whether this (granted or allowed) scope covers `wanted`.
    pub fn covers(&self, wanted: &Smart<'_>) -> bool {
        self.context == wanted.context
            && (self.resource == "*" || self.resource == wanted.resource)
            && wanted.permissions & !self.permissions == 0
            && (self.query.is_none() || self.query == wanted.query)
    }
}

/// Whether `scope` is among the client's `allowed` scopes: equal, matched by a wildcard
/// pattern, or (SMART) covered by an allowed SMART scope.
pub fn is_allowed(allowed: &[String], scope: &str) -> bool {
    let smart = Smart::parse(scope);
    allowed.iter().any(|a| {
        a == scope
            || match (Smart::parse(a), &smart) {
                // SMART patterns follow SMART rules only (no plain globbing into
                // resource names).
                (Some(allowed), Some(wanted)) => allowed.covers(wanted),
                (Some(_), None) => false,
                (None, _) => glob_matches(a, scope),
            }
    })
}

fn smart_context_error(scope: &str) -> OAuthError {
    OAuthError::InvalidScope(format!(
        "scope {} needs a patient or user context; the client credentials grant allows only system/ scopes",
        quoted(scope)
    ))
}

/// The scopes a client is granted for a request: every requested scope must be allowed;
/// no request grants everything the client is allowed. SMART clients get only `system/`
/// scopes, with wildcards expanded to the resource types in oauth.fhir_resource_type
/// (when `expand_wildcards`: pg_oauth.smart_expand_wildcards).
pub fn grant(
    spi: &SpiClient<'_>,
    allowed: &[String],
    smart_client: bool,
    expand_wildcards: bool,
    requested: Option<Vec<String>>,
) -> Result<Vec<String>> {
    let wanted = match requested {
        Some(requested) => {
            for scope in &requested {
                if smart_client && Smart::parse(scope).is_some_and(|s| s.context != "system") {
                    return Err(smart_context_error(scope));
                }
                if !is_allowed(allowed, scope) {
                    return Err(OAuthError::InvalidScope(format!(
                        "scope {} is not allowed for this client",
                        quoted(scope)
                    )));
                }
            }
            requested
        }
        None => allowed
            .iter()
            .filter(|a| !smart_client || Smart::parse(a).is_none_or(|s| s.context == "system"))
            .cloned()
            .collect(),
    };
    if smart_client && expand_wildcards {
        expand_smart(spi, wanted)
    } else {
        Ok(wanted)
    }
}

/// Replace `system/*.<perm>` by one scope per FHIR resource type.
fn expand_smart(spi: &SpiClient<'_>, scopes: Vec<String>) -> Result<Vec<String>> {
    if !scopes
        .iter()
        .any(|s| Smart::parse(s).is_some_and(|s| s.resource == "*"))
    {
        return Ok(scopes);
    }
    let types = fhir::resource_types(spi)?;
    let mut expanded: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !expanded.contains(&s) {
            expanded.push(s);
        }
    };
    for scope in &scopes {
        match Smart::parse(scope) {
            Some(smart) if smart.resource == "*" => {
                for t in &types {
                    let query = smart.query.map(|q| format!("?{q}")).unwrap_or_default();
                    push(format!("{}/{t}.{}{query}", smart.context, smart.written));
                }
            }
            _ => push(scope.clone()),
        }
    }
    Ok(expanded)
}

/// Whether granted scopes satisfy `required`, with wildcard and SMART semantics:
/// `system/Patient.rs` satisfies `system/Patient.read`, `system/*.read` satisfies
/// `system/Observation.r`.
pub fn satisfies(granted: &[String], required: &str) -> bool {
    is_allowed(granted, required)
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
    fn wildcards_match_one_or_more_characters() {
        assert!(glob_matches("notes:*", "notes:read"));
        assert!(!glob_matches("notes:*", "notes:"));
        assert!(glob_matches("a*c*e", "abcde"));
        assert!(!glob_matches("a*c", "abd"));
        assert!(glob_matches("x", "x"));
        assert!(is_allowed(&v(&["notes:*"]), "notes:write"));
        assert!(!is_allowed(&v(&["notes:*"]), "admin"));
    }

    #[test]
    fn smart_scopes_parse_v1_and_v2() {
        let s = Smart::parse("system/Observation.rs").unwrap();
        assert_eq!(
            (s.context, s.resource, s.permissions),
            ("system", "Observation", R | S)
        );
        assert_eq!(Smart::parse("system/*.read").unwrap().permissions, R | S);
        assert_eq!(
            Smart::parse("system/*.*").unwrap().permissions,
            C | R | U | D | S
        );
        assert_eq!(
            Smart::parse("patient/Patient.cud").unwrap().permissions,
            C | U | D
        );
        assert!(
            Smart::parse("system/Observation.sr").is_none(),
            "v2 order is c r u d s"
        );
        assert!(Smart::parse("system/Observation.rr").is_none());
        assert!(Smart::parse("system/observation.read").is_none());
        assert!(Smart::parse("admin/Patient.read").is_none());
        assert!(Smart::parse("notes:read").is_none());
    }

    #[test]
    fn smart_coverage_maps_v1_to_v2() {
        let allowed = v(&["system/*.read"]);
        assert!(is_allowed(&allowed, "system/Patient.read"));
        assert!(is_allowed(&allowed, "system/Observation.rs"));
        assert!(is_allowed(&allowed, "system/Observation.s"));
        assert!(!is_allowed(&allowed, "system/Observation.cruds"));
        assert!(!is_allowed(&allowed, "system/Observation.write"));
        assert!(!is_allowed(&allowed, "patient/Observation.read"));
        let specific = v(&["system/Patient.rs"]);
        assert!(satisfies(&specific, "system/Patient.read"));
        assert!(
            !satisfies(&specific, "system/*.read"),
            "a wildcard needs a wildcard"
        );
        assert!(!satisfies(&specific, "system/Observation.read"));
    }

    #[test]
    fn quoted_bounds_length() {
        assert_eq!(quoted(&"a".repeat(1_000_000)).len(), 64 + 5);
    }
}
