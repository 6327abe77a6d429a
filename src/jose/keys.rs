//! JWT signing key material: keys generated inside the database (ES256, EdDSA, RS256,
//! PS256, HS256), parsed from their stored form, signing and verifying, and their public
//! JWKs. Which keys exist and which one signs is ring.rs; where they are stored,
//! store/signing_key.rs.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey, RsaEncoding, RsaKeyPair,
};
use serde_json::{json, Value};

use crate::crypto::alg::JwtAlg;
use crate::crypto::random::{b64url, random_bytes};
use crate::error::{OAuthError, Result};

/// The RSA signature encoding `alg` names (PS256: PSS, RS256: PKCS #1 v1.5).
fn rsa_encoding(alg: JwtAlg) -> &'static dyn RsaEncoding {
    match alg {
        JwtAlg::PS256 => &signature::RSA_PSS_SHA256,
        _ => &signature::RSA_PKCS1_SHA256,
    }
}

enum Signer {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
    Hmac(Box<hmac::Key>),
    /// A key known only by its public part (the login validator's): verifies, never signs.
    None,
}

enum Verifier {
    Public(ParsedPublicKey),
    Hmac(Box<hmac::Key>),
}

/// A parsed key, ready to sign and verify.
pub struct Key {
    pub alg: JwtAlg,
    /// base64url of the JOSE header this key signs with.
    pub header_b64: String,
    /// A retired key's end of publication (Unix microseconds): no token verifies with it
    /// afterwards.
    pub expires_at_us: Option<i64>,
    signer: Signer,
    verifier: Verifier,
}

impl Key {
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let failed = |_| OAuthError::ServerError("signing failed".into());
        Ok(match &self.signer {
            Signer::Ecdsa(kp) => kp
                .sign(&SystemRandom::new(), message)
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Signer::Ed25519(kp) => kp.sign(message).as_ref().to_vec(),
            Signer::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(
                    rsa_encoding(self.alg),
                    &SystemRandom::new(),
                    message,
                    &mut sig,
                )
                .map_err(failed)?;
                sig
            }
            Signer::Hmac(key) => hmac::sign(key, message).as_ref().to_vec(),
            Signer::None => return Err(OAuthError::ServerError("a public key cannot sign".into())),
        })
    }

    /// Whether tokens signed by this key may still verify at `now_us`.
    pub fn published_at(&self, now_us: i64) -> bool {
        self.expires_at_us.is_none_or(|end| now_us < end)
    }

    /// Constant-time for HMAC; public-key verification has no secret to leak.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match &self.verifier {
            Verifier::Public(key) => key.verify_sig(message, sig).is_ok(),
            Verifier::Hmac(key) => hmac::verify(key, message, sig).is_ok(),
        }
    }
}

pub(crate) fn parse_key(kid: &str, alg: JwtAlg, private: &[u8]) -> Result<Key> {
    let bad = |what: &str| OAuthError::ServerError(format!("signing key {kid}: {what}"));
    let (signer, verifier) = match alg {
        JwtAlg::ES256 => {
            let kp = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, private)
                .map_err(|_| bad("invalid P-256 key"))?;
            let public = ParsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_FIXED,
                kp.public_key().as_ref(),
            )
            .map_err(|_| bad("invalid P-256 public key"))?;
            (Signer::Ecdsa(kp), Verifier::Public(public))
        }
        JwtAlg::EdDSA => {
            let kp = Ed25519KeyPair::from_pkcs8(private).map_err(|_| bad("invalid Ed25519 key"))?;
            let public = ParsedPublicKey::new(&signature::ED25519, kp.public_key().as_ref())
                .map_err(|_| bad("invalid Ed25519 public key"))?;
            (Signer::Ed25519(kp), Verifier::Public(public))
        }
        JwtAlg::RS256 | JwtAlg::PS256 => {
            let kp = RsaKeyPair::from_pkcs8(private).map_err(|_| bad("invalid RSA key"))?;
            let params = if alg == JwtAlg::PS256 {
                &signature::RSA_PSS_2048_8192_SHA256
            } else {
                &signature::RSA_PKCS1_2048_8192_SHA256
            };
            let public = ParsedPublicKey::new(params, kp.public_key().as_ref())
                .map_err(|_| bad("invalid RSA public key"))?;
            (Signer::Rsa(kp), Verifier::Public(public))
        }
        JwtAlg::HS256 => {
            if private.len() < 32 {
                return Err(bad("HS256 secret shorter than 256 bits"));
            }
            let key = Box::new(hmac::Key::new(hmac::HMAC_SHA256, private));
            (Signer::Hmac(key.clone()), Verifier::Hmac(key))
        }
    };
    let header = json!({ "alg": alg.as_str(), "kid": kid, "typ": "at+jwt" });
    Ok(Key {
        header_b64: b64url(header.to_string().as_bytes()),
        expires_at_us: None,
        alg,
        signer,
        verifier,
    })
}

/// What verifying needs of a stored key, and no more: the public key (X9.62 point, Ed25519
/// key, PKCS#1 RSAPublicKey), or an HS256 key's secret.
pub fn public_material(alg: JwtAlg, private: &[u8]) -> Result<Vec<u8>> {
    let bad = || OAuthError::ServerError("a signing key cannot be parsed".into());
    Ok(match alg {
        JwtAlg::ES256 => {
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, private)
                .map_err(|_| bad())?
                .public_key()
                .as_ref()
                .to_vec()
        }
        JwtAlg::EdDSA => Ed25519KeyPair::from_pkcs8(private)
            .map_err(|_| bad())?
            .public_key()
            .as_ref()
            .to_vec(),
        JwtAlg::RS256 | JwtAlg::PS256 => RsaKeyPair::from_pkcs8(private)
            .map_err(|_| bad())?
            .public_key()
            .as_ref()
            .to_vec(),
        JwtAlg::HS256 => private.to_vec(),
    })
}

/// A key that only verifies, from `public_material`'s output.
pub fn verifier(
    kid: &str,
    alg: JwtAlg,
    material: &[u8],
    expires_at_us: Option<i64>,
) -> Result<Key> {
    let bad = || OAuthError::ServerError(format!("signing key {kid}: unusable public key"));
    let verifier = match alg {
        JwtAlg::HS256 if material.len() >= 32 => {
            Verifier::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, material)))
        }
        JwtAlg::HS256 => return Err(bad()),
        _ => {
            let params: &'static dyn signature::VerificationAlgorithm = match alg {
                JwtAlg::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
                JwtAlg::EdDSA => &signature::ED25519,
                JwtAlg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                _ => &signature::RSA_PKCS1_2048_8192_SHA256,
            };
            Verifier::Public(ParsedPublicKey::new(params, material).map_err(|_| bad())?)
        }
    };
    let header = json!({ "alg": alg.as_str(), "kid": kid, "typ": "at+jwt" });
    Ok(Key {
        header_b64: b64url(header.to_string().as_bytes()),
        expires_at_us,
        alg,
        signer: Signer::None,
        verifier,
    })
}

/// A newly generated key: its kid, private key and public JWK.
pub struct NewKey {
    pub kid: String,
    pub private_der: Vec<u8>,
    pub public_jwk: Option<Value>,
}

/// RFC 7638 JWK thumbprint (SHA-256) of a public key's required members.
fn thumbprint(required: &Value) -> Result<String> {
    let failed = |_| OAuthError::ServerError("a new key has no JWK thumbprint".into());
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(required.clone()).map_err(failed)?;
    jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .map_err(|_| OAuthError::ServerError("a new key has no JWK thumbprint".into()))
}

pub fn generate(alg: JwtAlg) -> Result<NewKey> {
    let failed = |_| OAuthError::ServerError(format!("{} key generation failed", alg.as_str()));
    let (private_der, required) = match alg {
        JwtAlg::ES256 => {
            let kp = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(failed)?;
            let point = kp.public_key().as_ref();
            let (x, y) = point[1..].split_at(32);
            let der = kp.to_pkcs8v1().map_err(failed)?.as_ref().to_vec();
            (
                der,
                json!({ "crv": "P-256", "kty": "EC", "x": b64url(x), "y": b64url(y) }),
            )
        }
        JwtAlg::EdDSA => {
            let kp = Ed25519KeyPair::generate().map_err(failed)?;
            let der = kp.to_pkcs8().map_err(failed)?.as_ref().to_vec();
            let x = b64url(kp.public_key().as_ref());
            (der, json!({ "crv": "Ed25519", "kty": "OKP", "x": x }))
        }
        JwtAlg::RS256 | JwtAlg::PS256 => {
            let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der = kp.as_der().map_err(failed)?;
            let public = kp.public_key();
            let n = b64url(public.modulus().big_endian_without_leading_zero());
            let e = b64url(public.exponent().big_endian_without_leading_zero());
            (
                der.as_ref().to_vec(),
                json!({ "e": e, "kty": "RSA", "n": n }),
            )
        }
        JwtAlg::HS256 => {
            return Ok(NewKey {
                kid: b64url(&random_bytes::<16>()),
                private_der: random_bytes::<32>().to_vec(),
                public_jwk: None,
            });
        }
    };
    let kid = thumbprint(&required)?;
    let mut jwk = required;
    let obj = jwk.as_object_mut().expect("a JSON object");
    obj.insert("kid".into(), Value::String(kid.clone()));
    obj.insert("alg".into(), Value::String(alg.as_str().into()));
    obj.insert("use".into(), Value::String("sig".into()));
    Ok(NewKey {
        kid,
        private_der,
        public_jwk: Some(jwk),
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify_for_every_alg() {
        for alg in JwtAlg::ALL {
            let new = generate(alg).unwrap();
            let key = parse_key(&new.kid, alg, &new.private_der).unwrap();
            let sig = key.sign(b"header.payload").unwrap();
            assert!(key.verify(b"header.payload", &sig), "{alg:?}");
            assert!(!key.verify(b"header.payloaD", &sig), "{alg:?}");
            let material = public_material(alg, &new.private_der).unwrap();
            let public = verifier(&new.kid, alg, &material, None).unwrap();
            assert!(public.verify(b"header.payload", &sig), "{alg:?}");
            assert!(!public.verify(b"header.payloaD", &sig), "{alg:?}");
            assert!(public.sign(b"x").is_err());
            assert_eq!(public.header_b64, key.header_b64);
            match new.public_jwk {
                Some(jwk) => {
                    assert_eq!(jwk["kid"], new.kid.as_str());
                    assert_eq!(jwk["alg"], alg.as_str());
                    assert_eq!(jwk["use"], "sig");
                    for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                        assert!(jwk.get(private).is_none(), "{alg:?} leaks {private}");
                    }
                }
                None => assert_eq!(alg, JwtAlg::HS256),
            }
        }
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1
        let jwk = json!({
            "e": "AQAB",
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        });
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
