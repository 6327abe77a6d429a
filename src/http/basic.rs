//! HTTP Basic client credentials (RFC 6749 §2.3.1, RFC 7617). Hand-written rather than
//! taken from a crate: it must read the same header several ways (see
//! `basic_credentials`), and it is fuzzed (fuzz.rs).

use base64::Engine;

use crate::error::{OAuthError, Result};

/// application/x-www-form-urlencoded decoding of one value (RFC 6749 §2.3.1 applies it to
/// the client id and secret inside HTTP Basic).
pub fn form_urldecode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = value.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The readings of an `Authorization: Basic` header as (client id, secret) pairs, the
/// preferred first; `None` when the header is absent or uses another scheme.
///
/// RFC 6749 §2.3.1 says the id and secret are form-encoded before Basic encoding, and
/// that reading comes first. Many clients (authlib, requests-oauthlib, httpx-auth,
/// @badgateway/oauth2-client) send them raw, and the two readings differ when the text
/// holds `+` or `%` (any base64 secret) or a client id holds `:` (URIs). So the raw text
/// split at its first `:` and, for ids with colons, at its last `:` are readings too: at
/// most three, each verified like a secret of its own (authn/credentials.rs counts each as a guess).
pub fn basic_credentials(header: Option<&str>) -> Result<Option<Vec<(String, String)>>> {
    let Some(header) = header.map(str::trim) else {
        return Ok(None);
    };
    let Some((scheme, encoded)) = header.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let malformed = || OAuthError::InvalidClient("malformed HTTP Basic credentials".into());
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let mut readings = Vec::with_capacity(3);
    if let (Some(id), Some(secret)) = (form_urldecode(id), form_urldecode(secret)) {
        readings.push((id, secret));
    }
    let raw_first = (id.to_owned(), secret.to_owned());
    let raw_last = decoded
        .rsplit_once(':')
        .map(|(id, secret)| (id.to_owned(), secret.to_owned()));
    for reading in std::iter::once(raw_first).chain(raw_last) {
        if !reading.0.is_empty() && !readings.contains(&reading) {
            readings.push(reading);
        }
    }
    if readings.is_empty() {
        return Err(malformed());
    }
    Ok(Some(readings))
}

#[cfg(test)]
mod unit {
    use super::*;

    fn basic(text: &str) -> Option<Vec<(String, String)>> {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(text)
        );
        basic_credentials(Some(&header)).unwrap()
    }

    fn pairs(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn basic_credentials_are_form_urldecoded_first_then_read_raw() {
        assert_eq!(
            basic("my%20client:p%40ss+word%3A"),
            pairs(&[
                ("my client", "p@ss word:"),
                ("my%20client", "p%40ss+word%3A")
            ])
        );
        assert_eq!(basic_credentials(Some("Bearer abc")).unwrap(), None);
        assert_eq!(basic_credentials(None).unwrap(), None);
        assert!(basic_credentials(Some("Basic !!!")).is_err());
        let no_colon = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("x")
        );
        assert!(basic_credentials(Some(&no_colon)).is_err());
        // Nothing to decode: one reading, as before.
        assert_eq!(basic("id:s3cr3t"), pairs(&[("id", "s3cr3t")]));
        // A raw base64 secret: `+` is a space when decoded, itself when raw.
        assert_eq!(
            basic("svc:ab+c/d="),
            pairs(&[("svc", "ab c/d="), ("svc", "ab+c/d=")])
        );
        // Not form-encoded at all (a bad escape): the raw reading only.
        assert_eq!(basic("svc:100%zz"), pairs(&[("svc", "100%zz")]));
        // A raw URI client id: split at the first and at the last colon.
        assert_eq!(
            basic("urn:acme:svc:pw"),
            pairs(&[("urn", "acme:svc:pw"), ("urn:acme:svc", "pw")])
        );
        // The same id form-encoded: the decoded reading first.
        assert_eq!(
            basic("urn%3Aacme%3Asvc:pw"),
            pairs(&[("urn:acme:svc", "pw"), ("urn%3Aacme%3Asvc", "pw")])
        );
        assert!(basic("urn:a+b:c").unwrap().len() <= 3);
    }

    #[test]
    fn form_urldecode_rejects_bad_escapes() {
        assert_eq!(form_urldecode("a%2Bb+c").as_deref(), Some("a+b c"));
        assert_eq!(form_urldecode("%"), None);
        assert_eq!(form_urldecode("%zz"), None);
        assert_eq!(form_urldecode("%ff"), None, "not UTF-8");
    }
}
