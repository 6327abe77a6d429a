//! Proofs of verified secrets, shared by every backend of the cluster, so that a client
//! that knows its secret is never refused because others guessed wrong.
//!
//! The lockout (audit.rs) refuses a client id from a source after too many failures, before
//! any secret is checked. When the real client shares that source with the guesser (a NAT,
//! a proxy without the client-address header, Unix sockets), the lockout would refuse it
//! too. So a secret that was verified once — by argon2 anywhere in the cluster, or when it
//! was written in plaintext to oauth.client — leaves a proof here: HMAC(k, key ‖ secret)
//! under key = SHA-256(database, client id, stored hash). A request whose secret matches a
//! proof is accepted at the cost of one HMAC, lockout or not.
//!
//! A proof check is still a check whose answer the caller sees, and it is not throttled: so
//! proofs are kept and honoured only for secrets of at least MIN_SECRET_BYTES (generated
//! secrets have 43 characters; guessing 32 random characters online is hopeless). Shorter
//! secrets stay behind the lockout alone.
//!
//! Where: one dynamic shared memory segment (no shared_preload_libraries needed), created
//! by the first backend that needs it, pinned until the server stops, and found by the
//! others through `pg_dynshmem/pg_oauth_proofs` (handle and a random nonce; PostgreSQL's
//! own directory for DSM state, which base backups skip). The HMAC key `k` exists only in
//! that memory: a copy of the database or its backups holds no proof anyone could test
//! guesses against offline. A restart forgets every proof; clients prove themselves again
//! with their next argon2 verification. 8192 proofs in 8-way buckets, least recently used
//! evicted; ~600 KB.

use std::cell::{Cell, UnsafeCell};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use aws_lc_rs::{constant_time, digest, hmac, rand};
use pgrx::pg_sys;

use crate::limits;

/// Shortest secret a proof is kept and honoured for.
pub const MIN_SECRET_BYTES: usize = 32;

const MAGIC: u64 = 0x7067_5f6f_6175_7468; // "pg_oauth"
const LAYOUT: u32 = 1;
const BUCKETS: usize = 1024;
const WAYS: usize = 8;
const REGISTRY: &str = "pg_dynshmem/pg_oauth_proofs";

#[repr(C)]
struct Entry {
    key: [u8; 32],
    proof: [u8; 32],
    /// 0: empty; else the clock value of its last use.
    used: u64,
}

#[repr(C)]
struct Segment {
    magic: u64,
    layout: u32,
    lock: AtomicU32,
    nonce: [u8; 16],
    hmac_key: [u8; 32],
    clock: AtomicU64,
    buckets: UnsafeCell<[[Entry; WAYS]; BUCKETS]>,
}

thread_local! {
    static SEGMENT: Cell<*mut Segment> = const { Cell::new(std::ptr::null_mut()) };
    /// The segment could not be created here (no DSM slot left): proofs are off in this
    /// backend, which then authenticates as if none existed.
    static UNAVAILABLE: Cell<bool> = const { Cell::new(false) };
}

/// dsm_create flag: return NULL instead of raising an error when no segment slot is left.
const DSM_CREATE_NULL_IF_MAXSEGMENTS: i32 = 1;

/// Whether `secret` is a proven secret of `client_id` with stored hash `stored_hash`.
pub fn holds(client_id: &str, stored_hash: &str, secret: &str) -> bool {
    if secret.len() < MIN_SECRET_BYTES {
        return false;
    }
    let Some(segment) = segment() else {
        return false;
    };
    let key = entry_key(client_id, stored_hash);
    let expected = proof(segment, &key, secret);
    let found = segment.locked(|buckets, tick| {
        buckets[bucket(&key)]
            .iter_mut()
            .find(|e| e.used != 0 && e.key == key)
            .map(|e| {
                e.used = tick;
                e.proof
            })
    });
    found.is_some_and(|p| constant_time::verify_slices_are_equal(&p, &expected).is_ok())
}

/// Remember that `secret` is `client_id`'s secret under `stored_hash` (just verified by
/// argon2, or just hashed from the plaintext an administrator wrote).
pub fn remember(client_id: &str, stored_hash: &str, secret: &str) {
    if secret.len() < MIN_SECRET_BYTES {
        return;
    }
    let Some(segment) = segment() else {
        return;
    };
    let key = entry_key(client_id, stored_hash);
    let value = proof(segment, &key, secret);
    segment.locked(|buckets, tick| {
        let ways = &mut buckets[bucket(&key)];
        let slot = match ways.iter().position(|e| e.used != 0 && e.key == key) {
            Some(i) => i,
            None => (0..WAYS).min_by_key(|&i| ways[i].used).unwrap_or(0),
        };
        ways[slot] = Entry {
            key,
            proof: value,
            used: tick,
        };
    });
}

fn entry_key(client_id: &str, stored_hash: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    // SAFETY: reading this backend's database oid.
    ctx.update(&unsafe { pg_sys::MyDatabaseId }.to_u32().to_le_bytes());
    ctx.update(client_id.as_bytes());
    ctx.update(&[0]);
    ctx.update(stored_hash.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

fn bucket(key: &[u8; 32]) -> usize {
    let mut first = [0u8; 8];
    first.copy_from_slice(&key[..8]);
    (u64::from_le_bytes(first) % BUCKETS as u64) as usize
}

fn proof(segment: &Segment, key: &[u8; 32], secret: &str) -> [u8; 32] {
    let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, &segment.hmac_key);
    let mut ctx = hmac::Context::with_key(&hmac_key);
    ctx.update(key);
    ctx.update(secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

impl Segment {
    /// Run `f` on the buckets under the segment's spinlock, with a fresh clock value. `f`
    /// only reads and writes plain memory: nothing in it can raise an error or sleep.
    fn locked<R>(&self, f: impl FnOnce(&mut [[Entry; WAYS]; BUCKETS], u64) -> R) -> R {
        let mut spins = 0u32;
        while self
            .lock
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins.is_multiple_of(64) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let tick = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        // SAFETY: the spinlock gives this process exclusive access to the buckets.
        let buckets = unsafe { &mut *self.buckets.get() };
        let result = f(buckets, tick);
        self.lock.store(0, Ordering::Release);
        result
    }
}

/// This backend's mapping of the cluster's segment, attached or created on first use.
fn segment() -> Option<&'static Segment> {
    let cached = SEGMENT.get();
    if !cached.is_null() {
        // SAFETY: a pinned mapping stays valid for the life of this process.
        return Some(unsafe { &*cached });
    }
    if UNAVAILABLE.get() {
        return None;
    }
    let Some(found) = attach().or_else(create) else {
        UNAVAILABLE.set(true);
        return None;
    };
    SEGMENT.set(found);
    // SAFETY: as above.
    Some(unsafe { &*found })
}

/// (handle, nonce) from the registry file.
fn registered() -> Option<(pg_sys::dsm_handle, [u8; 16])> {
    let mut bytes = [0u8; 24];
    std::fs::File::open(REGISTRY)
        .ok()?
        .read_exact(&mut bytes)
        .ok()?;
    let (handle, rest) = bytes.split_at(4);
    let (layout, nonce) = rest.split_at(4);
    if u32::from_le_bytes(layout.try_into().ok()?) != LAYOUT {
        return None;
    }
    Some((
        u32::from_le_bytes(handle.try_into().ok()?),
        nonce.try_into().ok()?,
    ))
}

/// Attach to the registered segment, if it still exists and is ours.
fn attach() -> Option<*mut Segment> {
    let (handle, nonce) = registered()?;
    // SAFETY: dsm_attach returns NULL for a handle that no longer exists (e.g. after a
    // restart); a segment that does exist is checked for size, magic, layout and nonce
    // before use, and detached if it is not ours.
    unsafe {
        let seg = pg_sys::dsm_attach(handle);
        if seg.is_null() {
            return None;
        }
        let base = pg_sys::dsm_segment_address(seg) as *mut Segment;
        let ours = pg_sys::dsm_segment_map_length(seg) >= std::mem::size_of::<Segment>()
            && (*base).magic == MAGIC
            && (*base).layout == LAYOUT
            && (*base).nonce == nonce;
        if !ours {
            pg_sys::dsm_detach(seg);
            return None;
        }
        pg_sys::dsm_pin_mapping(seg);
        Some(base)
    }
}

/// Create and register the segment, under a cluster-wide lock so that only one backend
/// does (the others wait, then attach to it).
fn create() -> Option<*mut Segment> {
    let tag = limits::cluster_tag(u32::MAX);
    // SAFETY: a transaction-level lock on a tag of our own, waited for; released below or
    // by the resource owner on error.
    unsafe {
        pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as i32, false, false);
    }
    let made = attach().or_else(|| {
        // SAFETY: a fresh segment, zeroed and initialised before it is registered;
        // pinned so that it outlives this backend, and its mapping so that it outlives
        // the current resource owner.
        unsafe {
            let seg = pg_sys::dsm_create(
                std::mem::size_of::<Segment>(),
                DSM_CREATE_NULL_IF_MAXSEGMENTS,
            );
            if seg.is_null() {
                return None;
            }
            let base = pg_sys::dsm_segment_address(seg) as *mut Segment;
            std::ptr::write_bytes(base as *mut u8, 0, std::mem::size_of::<Segment>());
            let mut nonce = [0u8; 16];
            let mut hmac_key = [0u8; 32];
            rand::fill(&mut nonce).ok()?;
            rand::fill(&mut hmac_key).ok()?;
            (*base).nonce = nonce;
            (*base).hmac_key = hmac_key;
            (*base).layout = LAYOUT;
            (*base).magic = MAGIC;
            pg_sys::dsm_pin_segment(seg);
            pg_sys::dsm_pin_mapping(seg);
            let handle = pg_sys::dsm_segment_handle(seg);
            publish(handle, &nonce).ok()?;
            Some(base)
        }
    });
    // SAFETY: releases the lock taken above.
    unsafe {
        pg_sys::LockRelease(&tag, pg_sys::ExclusiveLock as i32, false);
    }
    made
}

/// Write the registry file atomically (a reader sees the old or the new one, whole).
fn publish(handle: pg_sys::dsm_handle, nonce: &[u8; 16]) -> std::io::Result<()> {
    let temp = format!("{REGISTRY}.{}", std::process::id());
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(&handle.to_le_bytes())?;
    file.write_all(&LAYOUT.to_le_bytes())?;
    file.write_all(nonce)?;
    file.sync_all()?;
    std::fs::rename(&temp, REGISTRY)
}
