//! The segment itself: its layout (the tables' entries are declared here, their use in the
//! files named after them), how a backend finds or makes it, and its lock.

use std::cell::{Cell, UnsafeCell};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use aws_lc_rs::{digest, rand};
use pgrx::pg_sys;

use crate::pg::limits;

const MAGIC: u64 = 0x7067_5f6f_6175_7468; // "pg_oauth"
/// Changes with the tables' layout: a library with another layout makes its own segment.
const LAYOUT: u32 = 8;
const REGISTRY: &str = "pg_dynshmem/pg_oauth_shared";
/// dsm_create flag: return NULL instead of raising an error when no segment slot is left.
const DSM_CREATE_NULL_IF_MAXSEGMENTS: i32 = 1;

#[repr(C)]
pub(super) struct Segment {
    magic: u64,
    layout: u32,
    lock: AtomicU32,
    nonce: [u8; 16],
    /// The proofs' HMAC key: it exists only here.
    pub(super) hmac_key: [u8; 32],
    clock: AtomicU64,
    /// pg_oauth's background workers running now (workers.rs).
    pub(super) workers: AtomicU32,
    proofs: UnsafeCell<ProofTable>,
    sources: UnsafeCell<SourceTable>,
    marks: UnsafeCell<MarkTable>,
    dpop: UnsafeCell<DpopTable>,
    login_issuers: UnsafeCell<[LoginIssuer; LOGIN_ISSUERS]>,
    login_clients: UnsafeCell<LoginClientTable>,
    login_sessions: UnsafeCell<LoginSessionTable>,
    /// Counters (stats.rs): atomics, read and added to without the lock.
    pub(super) stats: [StatsSlot; STATS_SLOTS],
}

/// 16 databases, and slot 0 for the rest and for logins (no database yet).
pub(super) const STATS_SLOTS: usize = 17;
pub(super) const STATS_COUNTERS: usize = 256;

#[repr(C)]
pub(super) struct StatsSlot {
    /// The database's oid; 0: free (slot 0: shared).
    pub(super) database: AtomicU32,
    pub(super) counters: [AtomicU64; STATS_COUNTERS],
}

pub(super) const LOGIN_ISSUERS: usize = 8;
pub(super) const LOGIN_KEYS: usize = 32;
/// A key's public part (an RSA-4096 public key is 526 bytes) or an HS256 secret.
pub(super) const LOGIN_KEY_BYTES: usize = 1024;
pub(super) const LOGIN_CLIENT_BUCKETS: usize = 512;
pub(super) const LOGIN_CLIENT_WAYS: usize = 8;
pub(super) const LOGIN_SESSION_BUCKETS: usize = 2048;
pub(super) const LOGIN_SESSION_WAYS: usize = 8;

#[repr(C)]
pub(super) struct LoginKey {
    /// 0: free.
    pub(super) used: u8,
    pub(super) alg: [u8; 8],
    pub(super) kid: [u8; 64],
    pub(super) kid_len: u16,
    pub(super) material_len: u16,
    /// End of publication (Unix µs); i64::MAX: none.
    pub(super) until_us: i64,
    pub(super) material: [u8; LOGIN_KEY_BYTES],
}

#[repr(C)]
pub(super) struct LoginIssuer {
    /// The issuing database's oid; 0: free.
    pub(super) database: u32,
    /// 1 once a rebuild filled it.
    pub(super) ready: u32,
    pub(super) issuer_len: u16,
    pub(super) issuer: [u8; 256],
    pub(super) keys: [LoginKey; LOGIN_KEYS],
}

impl LoginIssuer {
    pub(super) const EMPTY: Self = Self {
        database: 0,
        ready: 0,
        issuer_len: 0,
        issuer: [0; 256],
        keys: [const { LoginKey::EMPTY }; LOGIN_KEYS],
    };
}

impl LoginKey {
    pub(super) const EMPTY: Self = Self {
        used: 0,
        alg: [0; 8],
        kid: [0; 64],
        kid_len: 0,
        material_len: 0,
        until_us: 0,
        material: [0; LOGIN_KEY_BYTES],
    };
}

#[repr(C)]
pub(super) struct LoginClient {
    /// SHA-256 over the database and the client id.
    pub(super) key: [u8; 32],
    /// 0: free.
    pub(super) database: u32,
    pub(super) role_len: u8,
    pub(super) role: [u8; 64],
}

impl LoginClient {
    pub(super) const EMPTY: Self = Self {
        key: [0; 32],
        database: 0,
        role_len: 0,
        role: [0; 64],
    };
}

pub(super) type LoginClientTable = [[LoginClient; LOGIN_CLIENT_WAYS]; LOGIN_CLIENT_BUCKETS];

#[repr(C)]
pub(super) struct LoginSession {
    pub(super) id: [u8; 16],
    /// 0: free.
    pub(super) database: u32,
    pub(super) role_len: u8,
    pub(super) expires_at_us: i64,
    /// The client's key (as in LoginClient).
    pub(super) client: [u8; 32],
    pub(super) role: [u8; 64],
}

impl LoginSession {
    pub(super) const EMPTY: Self = Self {
        id: [0; 16],
        database: 0,
        role_len: 0,
        expires_at_us: 0,
        client: [0; 32],
        role: [0; 64],
    };
}

pub(super) type LoginSessionTable = [[LoginSession; LOGIN_SESSION_WAYS]; LOGIN_SESSION_BUCKETS];

pub(super) const MARK_BUCKETS: usize = 256;
pub(super) const MARK_WAYS: usize = 4;

#[repr(C)]
pub(super) struct MarkEntry {
    pub(super) key: [u8; 32],
    /// 0: empty; else the clock value when it was marked.
    pub(super) marked: u64,
}

pub(super) type MarkTable = [[MarkEntry; MARK_WAYS]; MARK_BUCKETS];

pub(super) const DPOP_BUCKETS: usize = 8192;
pub(super) const DPOP_WAYS: usize = 64;

#[repr(C)]
pub(super) struct DpopEntry {
    /// 64 bits of the proof's hash: two live proofs that share them (about 1 in 2^45 at a
    /// full table) make the second look replayed, never a replay look new.
    pub(super) key: [u8; 8],
    /// Until when (Unix seconds) the proof would be accepted; 0 or past: free.
    pub(super) until: u32,
}

pub(super) type DpopTable = [[DpopEntry; DPOP_WAYS]; DPOP_BUCKETS];

pub(super) const PROOF_BUCKETS: usize = 1024;
pub(super) const PROOF_WAYS: usize = 8;

#[repr(C)]
pub(super) struct ProofEntry {
    pub(super) key: [u8; 32],
    pub(super) proof: [u8; 32],
    /// 0: empty; else the clock value of its last use.
    pub(super) used: u64,
}

pub(super) type ProofTable = [[ProofEntry; PROOF_WAYS]; PROOF_BUCKETS];

pub(super) const SOURCE_BUCKETS: usize = 1024;
pub(super) const SOURCE_WAYS: usize = 4;

#[repr(C)]
pub(super) struct SourceEntry {
    pub(super) key: [u8; 32],
    /// Start of the counting window, in seconds since the epoch; 0: empty.
    pub(super) window_start: i64,
    pub(super) failures: u32,
    /// Requests refused since the source was throttled, in this window.
    pub(super) refused: u32,
}

pub(super) type SourceTable = [[SourceEntry; SOURCE_WAYS]; SOURCE_BUCKETS];

/// The tables, borrowed under the lock.
pub(super) struct Tables<'a> {
    pub(super) proofs: &'a mut ProofTable,
    pub(super) sources: &'a mut SourceTable,
    pub(super) marks: &'a mut MarkTable,
    pub(super) dpop: &'a mut DpopTable,
    pub(super) login_issuers: &'a mut [LoginIssuer; LOGIN_ISSUERS],
    pub(super) login_clients: &'a mut LoginClientTable,
    pub(super) login_sessions: &'a mut LoginSessionTable,
    /// A fresh value of the segment's clock (for least-recently-used eviction).
    pub(super) tick: u64,
}

thread_local! {
    static SEGMENT: Cell<*mut Segment> = const { Cell::new(std::ptr::null_mut()) };
    /// The segment could not be created here (no DSM slot left): shared state is off in
    /// this backend, which then works as if nothing were shared.
    static UNAVAILABLE: Cell<bool> = const { Cell::new(false) };
}

impl Segment {
    /// Run `f` on the tables under the segment's spinlock.
    pub(super) fn locked<R>(&self, f: impl FnOnce(Tables<'_>) -> R) -> R {
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
        // SAFETY: the spinlock gives this process exclusive access to the tables.
        let result = f(unsafe {
            Tables {
                proofs: &mut *self.proofs.get(),
                sources: &mut *self.sources.get(),
                marks: &mut *self.marks.get(),
                dpop: &mut *self.dpop.get(),
                login_issuers: &mut *self.login_issuers.get(),
                login_clients: &mut *self.login_clients.get(),
                login_sessions: &mut *self.login_sessions.get(),
                tick,
            }
        });
        self.lock.store(0, Ordering::Release);
        result
    }
}

/// SHA-256 over this database's oid and `parts` (each followed by a 0 byte).
pub(super) fn key_of(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    // SAFETY: reading this backend's database oid.
    ctx.update(&unsafe { pg_sys::MyDatabaseId }.to_u32().to_le_bytes());
    for part in parts {
        ctx.update(part);
        ctx.update(&[0]);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// The bucket of `key` among `buckets`.
pub(super) fn bucket_of(key: &[u8; 32], buckets: usize) -> usize {
    let mut first = [0u8; 8];
    first.copy_from_slice(&key[..8]);
    (u64::from_le_bytes(first) % buckets as u64) as usize
}

/// This backend's mapping of the cluster's segment, attached or created on first use.
pub(super) fn segment() -> Option<&'static Segment> {
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

/// The cluster's segment if some backend made it; never makes it (for callers that only
/// read, and may run before a database is chosen: a missing segment has nothing to read).
pub(super) fn segment_if_exists() -> Option<&'static Segment> {
    let cached = SEGMENT.get();
    if !cached.is_null() {
        // SAFETY: a pinned mapping stays valid for the life of this process.
        return Some(unsafe { &*cached });
    }
    let found = attach()?;
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
