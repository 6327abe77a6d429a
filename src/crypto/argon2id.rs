//! argon2id: hashing client secrets at OWASP's parameters, verifying them (at the same cost
//! for an unknown client, with a dummy hash), and judging hashes written to the table
//! (imports within bounded costs, rehashed at ours once their secret is known). Runs in a
//! working memory of its own, mapped with transparent huge pages.

use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::random::random_bytes;
use crate::error::{OAuthError, Result};

/// OWASP Password Storage Cheat Sheet (2023): argon2id, m = 19 MiB, t = 2, p = 1.
const M_COST_KIB: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// Secrets longer than this are refused before any hashing work (argon2 accepts up to
/// 4 GiB; a bound keeps a hostile caller from making us hash megabytes).
pub const MAX_SECRET_BYTES: usize = 4096;

/// A hash of 256 random bits nobody knows, with the same parameters as real hashes, so
/// that authenticating an unknown client costs the same as a wrong secret.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$BM5VaxqGqSimc8sZ0BPx9g$dtRkbGchv3X43RZ2gLNVT2Yz/uhkpNLv8v53GBBSS8o";

/// The costs an argon2 hash may have: each verification of a client secret (and of every
/// wrong guess, which anyone may make) pays them, holding one of the cluster's argon2 slots.
/// An import is held to about five times our own cost (m = 64 MiB, t = 3, p = 4: ~85 ms);
/// rows restored with COPY keep the looser caps of releases before 0.3.0, under which they
/// may have been imported. Either way a hash above our own cost is replaced by one at our
/// cost when its secret first verifies (authn/credentials.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caps {
    Import,
    Restored,
}

impl Caps {
    fn limits(self) -> (u32, u32, u32) {
        match self {
            Caps::Import => (65_536, 3, 4),
            Caps::Restored => (262_144, 16, 16),
        }
    }
}

thread_local! {
    /// Set while pg_oauth replaces a hash by one of the same secret at its own cost.
    static REHASHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` (the UPDATE that stores a rehashed secret) marked as a rehash: the write trigger
/// then keeps a rotation's grace period, which a new secret would end.
pub fn as_rehash<R>(f: impl FnOnce() -> R) -> R {
    REHASHING.set(true);
    let result = f();
    REHASHING.set(false);
    result
}

/// Whether the write running is a rehash (see `as_rehash`).
pub fn is_rehash() -> bool {
    REHASHING.get()
}

/// Whether a stored hash costs more (or other) than our own, and should be replaced by one
/// at our cost once its secret is known.
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let ours = Algorithm::try_from(parsed.algorithm) == Ok(Algorithm::Argon2id);
    !ours
        || Params::try_from(&parsed).map_or(true, |p| {
            (p.m_cost(), p.t_cost(), p.p_cost()) != (M_COST_KIB, T_COST, P_COST)
        })
}

/// What a value written to `oauth.client.secret` is.
pub enum SecretValue {
    Plaintext,
    /// An argon2 PHC string we can verify against (kept as is: an import).
    Argon2Hash,
    /// Shaped like an argon2 PHC string but not usable; why.
    BadHash(String),
}

#[cfg(test)]
pub fn classify(value: &str) -> SecretValue {
    classify_with(value, Caps::Import)
}

/// What a value written to a secret column is, with the costs allowed by `caps`.
pub fn classify_with(value: &str, caps: Caps) -> SecretValue {
    let (max_m, max_t, max_p) = caps.limits();
    if !value.starts_with("$argon2") {
        return SecretValue::Plaintext;
    }
    let Ok(hash) = PasswordHash::new(value) else {
        return SecretValue::BadHash("it is not a valid PHC string".into());
    };
    if Algorithm::try_from(hash.algorithm).is_err() {
        return SecretValue::BadHash("unknown argon2 variant".into());
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return SecretValue::BadHash("it has no salt or no hash".into());
    }
    match Params::try_from(&hash) {
        Err(e) => SecretValue::BadHash(format!("invalid parameters ({e})")),
        Ok(p) if p.m_cost() > max_m || p.t_cost() > max_t || p.p_cost() > max_p => {
            SecretValue::BadHash(format!(
                "its costs exceed m = {max_m} KiB, t = {max_t}, p = {max_p}"
            ))
        }
        Ok(_) => SecretValue::Argon2Hash,
    }
}

/// Whether `value` is an argon2 PHC string we can verify against.
#[cfg(test)]
pub fn is_argon2_phc(value: &str) -> bool {
    matches!(classify(value), SecretValue::Argon2Hash)
}

/// Hash a plaintext secret to an argon2id PHC string.
pub fn hash(plain: &str) -> Result<String> {
    if plain.is_empty() {
        return Err(OAuthError::InvalidRequest(
            "a client secret must not be empty".into(),
        ));
    }
    if plain.len() > MAX_SECRET_BYTES {
        return Err(OAuthError::InvalidRequest(format!(
            "a client secret must be at most {MAX_SECRET_BYTES} bytes"
        )));
    }
    let salt = SaltString::encode_b64(&random_bytes::<16>())
        .map_err(|e| OAuthError::ServerError(format!("salt encoding failed: {e}")))?;
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| OAuthError::ServerError(format!("argon2 parameters: {e}")))?;
    let failed =
        |e: &dyn std::fmt::Display| OAuthError::ServerError(format!("argon2 hashing failed: {e}"));
    let output = argon2_output(
        plain.as_bytes(),
        Algorithm::Argon2id,
        Version::V0x13,
        params.clone(),
        salt.as_salt(),
    )
    .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// argon2's 19 MiB of working memory, mapped per hash, 2 MiB-aligned and marked for
/// transparent huge pages: argon2 reads blocks at data-dependent addresses all over it, and
/// with 4 KiB pages most of those reads miss the TLB (a third of the first verification in
/// a fresh backend; see BENCHMARKS.md). Unmapped afterwards, so the kernel zeroes it.
struct WorkArea {
    map: *mut libc::c_void,
    map_len: usize,
    blocks: *mut Block,
    count: usize,
}

const HUGE_PAGE: usize = 2 << 20;

impl WorkArea {
    fn new(count: usize) -> Option<WorkArea> {
        let bytes = count.checked_mul(std::mem::size_of::<Block>())?;
        let map_len = bytes.checked_add(HUGE_PAGE)?;
        // SAFETY: a fresh private anonymous mapping; checked for failure below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return None;
        }
        let aligned = (map as usize).next_multiple_of(HUGE_PAGE);
        #[cfg(target_os = "linux")]
        // SAFETY: the range lies inside the mapping; the advice only affects how it is backed.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
        }
        Some(WorkArea {
            map,
            map_len,
            blocks: aligned as *mut Block,
            count,
        })
    }

    fn blocks(&mut self) -> &mut [Block] {
        // SAFETY: `count` blocks fit between the aligned start and the end of the mapping,
        // which is zero-filled (a valid all-zero Block) and exclusively ours.
        unsafe { std::slice::from_raw_parts_mut(self.blocks, self.count) }
    }
}

impl Drop for WorkArea {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`.
        unsafe {
            libc::munmap(self.map, self.map_len);
        }
    }
}

/// The raw argon2 output for `plain` under the given algorithm, version, parameters and salt.
fn argon2_output(
    plain: &[u8],
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Salt,
) -> std::result::Result<Output, argon2::password_hash::Error> {
    let mut salt_buf = [0u8; Salt::MAX_LENGTH];
    let salt = salt.decode_b64(&mut salt_buf)?;
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let count = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    Output::init_with(output_len, |out| {
        match WorkArea::new(count) {
            Some(mut area) => {
                argon2.hash_password_into_with_memory(plain, salt, out, area.blocks())
            }
            None => argon2.hash_password_into(plain, salt, out),
        }
        .map_err(Into::into)
    })
}

thread_local! {
    /// argon2 verifications run in this backend (for the tests of equal work).
    static ARGON2_RUNS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// argon2 verifications this backend has run.
#[cfg(any(test, feature = "pg_test"))]
pub fn argon2_runs() -> u64 {
    ARGON2_RUNS.get()
}

/// Full argon2 verification with the hash's own algorithm, version and parameters (so
/// imported hashes verify too); `Output` compares in constant time.
pub fn argon2_verify(plain: &str, phc: &str) -> bool {
    ARGON2_RUNS.set(ARGON2_RUNS.get() + 1);
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    argon2_output(plain.as_bytes(), algorithm, version, params, salt)
        .is_ok_and(|computed| computed == expected)
}

/// A presented secret as it may be hashed: one that cannot be valid (empty, or longer than
/// MAX_SECRET_BYTES) becomes the empty string before any hashing, so no caller controls the
/// cost of a verification, known client or not.
pub(super) fn presentable(plain: &str) -> &str {
    if plain.len() > MAX_SECRET_BYTES {
        ""
    } else {
        plain
    }
}

/// Spend the same argon2 work as a real verification, then fail.
pub fn verify_dummy(plain: &str) -> bool {
    let _ = argon2_verify(presentable(plain), DUMMY_HASH);
    false
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn oversized_secrets_are_never_hashed_as_presented() {
        let huge = "x".repeat(MAX_SECRET_BYTES + 1);
        assert_eq!(presentable(&huge), "");
        assert_eq!(
            presentable(&huge[..MAX_SECRET_BYTES]).len(),
            MAX_SECRET_BYTES
        );
        assert_eq!(presentable("s3cret"), "s3cret");
    }

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters() {
        let h = hash("verysecret").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(is_argon2_phc(&h));
        assert!(!is_argon2_phc("verysecret"));
        assert!(!is_argon2_phc("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(is_argon2_phc(DUMMY_HASH));
    }

    #[test]
    fn hashes_interoperate_with_the_standard_argon2_code_path() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Ours (own working memory) verified by the crate's stock verifier...
        let ours = hash("interop").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"interop", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"interoq", &parsed)
            .is_err());
        // ...and a stock hash with other parameters (argon2i, m=8 MiB, t=3) verified by ours.
        let salt = SaltString::encode_b64(&random_bytes::<16>()).unwrap();
        let stock = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(8192, 3, 1, None).unwrap(),
        )
        .hash_password(b"imported", &salt)
        .unwrap()
        .to_string();
        assert!(argon2_verify("imported", &stock));
        assert!(!argon2_verify("importeD", &stock));
    }

    #[test]
    fn imports_are_held_to_five_times_our_cost_and_rehashed() {
        let phc = |m: u32, t: u32, p: u32| {
            let salt = SaltString::encode_b64(&random_bytes::<16>()).unwrap();
            use argon2::password_hash::PasswordHasher;
            Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(m, t, p, None).unwrap(),
            )
            .hash_password(b"x", &salt)
            .unwrap()
            .to_string()
        };
        let within = phc(65_536, 3, 4);
        assert!(matches!(classify(&within), SecretValue::Argon2Hash));
        let costly = phc(65_536, 4, 1);
        assert!(matches!(classify(&costly), SecretValue::BadHash(_)));
        assert!(matches!(
            classify_with(&costly, Caps::Restored),
            SecretValue::Argon2Hash
        ));
        assert!(needs_rehash(&within) && needs_rehash(&costly));
        assert!(!needs_rehash(&hash("ours").unwrap()));
        assert!(needs_rehash(&phc(19_456, 2, 2)));
    }
}
