//! What PostgreSQL 18's OAuth login needs to know, kept where a connection that has not yet
//! chosen a database can read it (the validator runs before any catalog of the target
//! database is open): per issuing database, its issuer and the keys its tokens verify with;
//! the clients that may log in (active, and the role their policy names); and the tokens
//! that may log in (open sessions issued for the login audience).
//!
//! Everything here is an allow-list: what is missing refuses a login. A database's entries
//! are replaced whole by a rebuild (under a lock that keeps writers out: authn/login_state.rs)
//! and changed by each committed change after it (pg/pending.rs), so a revocation takes
//! effect at its commit. Bounded: 8 issuing databases of 32 keys each, 4096 clients and
//! 16,384 live login tokens (about 2.8 MB). A token or client that finds no room is not
//! published, so it cannot log in, and the rebuild says so in the server log.

use super::segment::{
    segment, segment_if_exists, LoginClient, LoginIssuer, LoginKey, LoginSession, Tables,
    LOGIN_CLIENT_BUCKETS, LOGIN_KEY_BYTES, LOGIN_SESSION_BUCKETS,
};
use aws_lc_rs::digest;

/// A key as published: its kid, algorithm, public key (HS256: the secret), and the end of
/// its publication (Unix microseconds), if retired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKey {
    pub kid: String,
    pub alg: String,
    pub material: Vec<u8>,
    pub until_us: Option<i64>,
}

/// A token that may log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginToken {
    pub id: [u8; 16],
    pub client_id: String,
    pub role: String,
    pub expires_at_us: i64,
}

/// One committed change to what may log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    TokenOpened(LoginToken),
    TokenClosed([u8; 16]),
    /// The role a client's tokens log in as; None: they do not (inactive, deleted, or no
    /// policy).
    Client {
        client_id: String,
        role: Option<String>,
    },
    KeyPublished(PublishedKey),
    KeyWithdrawn(String),
    /// A table was truncated: the database's state is dropped until it is rebuilt.
    Reset,
}

/// A database's whole state, as a rebuild read it.
pub struct Snapshot {
    pub issuer: String,
    pub keys: Vec<PublishedKey>,
    /// (client id, policy role) of the active clients with a policy.
    pub clients: Vec<(String, String)>,
    pub tokens: Vec<LoginToken>,
}

/// What did not fit.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Overflow {
    pub keys: usize,
    pub clients: usize,
    pub tokens: usize,
}

/// What a login found for a token of `issuer`.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// No database publishes this issuer (or no state was built yet).
    UnknownIssuer,
    /// Two databases publish it: which one's revocations count is unknown, so neither.
    AmbiguousIssuer,
    Found(IssuerView),
}

#[derive(Debug, PartialEq, Eq)]
pub struct IssuerView {
    pub database: u32,
    pub keys: Vec<PublishedKey>,
}

/// The state of a client and one of its tokens, as a login sees them.
#[derive(Debug, PartialEq, Eq)]
pub struct Standing {
    pub token: Option<LoginToken>,
    /// The role the client's tokens log in as now; None: they do not.
    pub role: Option<String>,
}

fn client_key(database: u32, client_id: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"login-client\0");
    ctx.update(&database.to_le_bytes());
    ctx.update(client_id.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

fn bucket(bytes: &[u8], buckets: usize) -> usize {
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    (u64::from_le_bytes(first) % buckets as u64) as usize
}

fn session_bucket(database: u32, id: &[u8; 16]) -> usize {
    let mut mixed = [0u8; 8];
    mixed.copy_from_slice(&id[8..]);
    let v = u64::from_le_bytes(mixed) ^ u64::from(database).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (v % LOGIN_SESSION_BUCKETS as u64) as usize
}

fn text<const N: usize>(value: &str) -> Option<([u8; N], u16)> {
    let bytes = value.as_bytes();
    if bytes.len() > N {
        return None;
    }
    let mut out = [0u8; N];
    out[..bytes.len()].copy_from_slice(bytes);
    Some((out, bytes.len() as u16))
}

fn read(bytes: &[u8], len: u16) -> String {
    String::from_utf8_lossy(&bytes[..usize::from(len).min(bytes.len())]).into_owned()
}

/// The slot of `database`, if it has one.
fn slot_of(t: &Tables<'_>, database: u32) -> Option<usize> {
    t.login_issuers
        .iter()
        .position(|i| i.database == database && database != 0)
}

/// Replace `database`'s state with `snapshot`. Err(()) when all issuer slots are taken.
pub fn replace(database: u32, snapshot: &Snapshot, now_us: i64) -> Result<Overflow, ()> {
    let Some(segment) = segment() else {
        return Err(());
    };
    let (issuer, issuer_len) = text::<256>(&snapshot.issuer).ok_or(())?;
    segment.locked(|mut t| {
        let slot = match slot_of(&t, database) {
            Some(slot) => slot,
            None => t
                .login_issuers
                .iter()
                .position(|i| i.database == 0)
                .ok_or(())?,
        };
        clear(&mut t, database);
        let entry = &mut t.login_issuers[slot];
        entry.database = database;
        entry.issuer = issuer;
        entry.issuer_len = issuer_len;
        let mut overflow = Overflow::default();
        for key in &snapshot.keys {
            if !put_key(entry, key, now_us) {
                overflow.keys += 1;
            }
        }
        for (client_id, role) in &snapshot.clients {
            let fits = set_client(&mut t, database, client_id, Some(role));
            overflow.clients += usize::from(!fits);
        }
        for token in &snapshot.tokens {
            overflow.tokens += usize::from(!open_token(&mut t, database, token, now_us));
        }
        t.login_issuers[slot].ready = 1;
        Ok(overflow)
    })
}

/// Drop everything of `database` (its issuer slot included).
fn clear(t: &mut Tables<'_>, database: u32) {
    for issuer in t.login_issuers.iter_mut() {
        if issuer.database == database {
            *issuer = LoginIssuer::EMPTY;
        }
    }
    for bucket in t.login_clients.iter_mut() {
        for client in bucket.iter_mut().filter(|c| c.database == database) {
            *client = LoginClient::EMPTY;
        }
    }
    for bucket in t.login_sessions.iter_mut() {
        for session in bucket.iter_mut().filter(|s| s.database == database) {
            *session = LoginSession::EMPTY;
        }
    }
}

/// Forget `database`'s state: its logins are refused until a rebuild.
pub fn forget(database: u32) {
    if let Some(segment) = segment_if_exists() {
        segment.locked(|mut t| clear(&mut t, database));
    }
}

/// Whether `database` has a state built for `issuer`.
pub fn ready(database: u32, issuer: &str) -> bool {
    let Some(segment) = segment_if_exists() else {
        return false;
    };
    segment.locked(|t| {
        slot_of(&t, database).is_some_and(|slot| {
            let entry = &t.login_issuers[slot];
            entry.ready == 1 && read(&entry.issuer, entry.issuer_len) == issuer
        })
    })
}

/// Apply committed changes of `database` (nothing if its state is not built).
pub fn apply(database: u32, changes: &[Change], now_us: i64) {
    let Some(segment) = segment_if_exists() else {
        return;
    };
    segment.locked(|mut t| {
        let Some(slot) = slot_of(&t, database) else {
            return;
        };
        for change in changes {
            match change {
                Change::TokenOpened(token) => {
                    open_token(&mut t, database, token, now_us);
                }
                Change::TokenClosed(id) => close_token(&mut t, database, id),
                Change::Client { client_id, role } => {
                    set_client(&mut t, database, client_id, role.as_ref());
                }
                Change::KeyPublished(key) => {
                    put_key(&mut t.login_issuers[slot], key, now_us);
                }
                Change::KeyWithdrawn(kid) => remove_key(&mut t.login_issuers[slot], kid),
                Change::Reset => {
                    clear(&mut t, database);
                    return;
                }
            }
        }
    });
}

/// Publish `key`, in a free slot or one whose key's publication has ended.
fn put_key(issuer: &mut LoginIssuer, key: &PublishedKey, now_us: i64) -> bool {
    remove_key(issuer, &key.kid);
    let (Some((kid, kid_len)), true) = (
        text::<64>(&key.kid),
        key.material.len() <= LOGIN_KEY_BYTES && key.alg.len() <= 8,
    ) else {
        return false;
    };
    let Some(free) = issuer
        .keys
        .iter_mut()
        .find(|k| k.used == 0 || k.until_us <= now_us)
    else {
        return false;
    };
    let mut material = [0u8; LOGIN_KEY_BYTES];
    material[..key.material.len()].copy_from_slice(&key.material);
    let mut alg = [0u8; 8];
    alg[..key.alg.len()].copy_from_slice(key.alg.as_bytes());
    *free = LoginKey {
        used: 1,
        alg,
        kid,
        kid_len,
        material_len: key.material.len() as u16,
        until_us: key.until_us.unwrap_or(i64::MAX),
        material,
    };
    true
}

fn remove_key(issuer: &mut LoginIssuer, kid: &str) {
    for key in issuer.keys.iter_mut() {
        if key.used == 1 && read(&key.kid, key.kid_len) == kid {
            key.used = 0;
        }
    }
}

/// Set the role `client_id`'s tokens log in as, or (None) remove it. False when there was
/// no room.
fn set_client(t: &mut Tables<'_>, database: u32, client_id: &str, role: Option<&String>) -> bool {
    let key = client_key(database, client_id);
    let ways = &mut t.login_clients[bucket(&key, LOGIN_CLIENT_BUCKETS)];
    let found = ways
        .iter()
        .position(|c| c.database == database && c.key == key);
    let Some((name, len)) = role.and_then(|r| text::<64>(r)) else {
        if let Some(i) = found {
            ways[i] = LoginClient::EMPTY;
        }
        return role.is_none();
    };
    let Some(index) = found.or_else(|| ways.iter().position(|c| c.database == 0)) else {
        return false;
    };
    ways[index] = LoginClient {
        key,
        database,
        role_len: len as u8,
        role: name,
    };
    true
}

fn open_token(t: &mut Tables<'_>, database: u32, token: &LoginToken, now_us: i64) -> bool {
    let Some((role, role_len)) = text::<64>(&token.role) else {
        return false;
    };
    let ways = &mut t.login_sessions[session_bucket(database, &token.id)];
    let free = ways
        .iter()
        .position(|s| s.database == database && s.id == token.id)
        .or_else(|| {
            ways.iter()
                .position(|s| s.database == 0 || s.expires_at_us <= now_us)
        });
    let Some(index) = free else {
        return false;
    };
    ways[index] = LoginSession {
        id: token.id,
        database,
        role_len: role_len as u8,
        expires_at_us: token.expires_at_us,
        client: client_key(database, &token.client_id),
        role,
    };
    true
}

fn close_token(t: &mut Tables<'_>, database: u32, id: &[u8; 16]) {
    for session in t.login_sessions[session_bucket(database, id)].iter_mut() {
        if session.database == database && session.id == *id {
            *session = LoginSession::EMPTY;
        }
    }
}

/// The database publishing `issuer`, and its keys.
pub fn issuer(issuer: &str) -> Lookup {
    let Some(segment) = segment_if_exists() else {
        return Lookup::UnknownIssuer;
    };
    segment.locked(|t| {
        let mut found = t
            .login_issuers
            .iter()
            .filter(|i| i.ready == 1 && read(&i.issuer, i.issuer_len) == issuer);
        let Some(first) = found.next() else {
            return Lookup::UnknownIssuer;
        };
        if found.next().is_some() {
            return Lookup::AmbiguousIssuer;
        }
        let keys = first
            .keys
            .iter()
            .filter(|k| k.used == 1)
            .map(|k| PublishedKey {
                kid: read(&k.kid, k.kid_len),
                alg: String::from_utf8_lossy(&k.alg)
                    .trim_end_matches('\0')
                    .to_owned(),
                material: k.material[..usize::from(k.material_len)].to_vec(),
                until_us: (k.until_us != i64::MAX).then_some(k.until_us),
            })
            .collect();
        Lookup::Found(IssuerView {
            database: first.database,
            keys,
        })
    })
}

/// The token `id` of `client_id` in `database`, and the client's standing. A token found
/// under another client's name is as good as absent.
pub fn standing(database: u32, client_id: &str, id: &[u8; 16]) -> Standing {
    let Some(segment) = segment_if_exists() else {
        return Standing {
            token: None,
            role: None,
        };
    };
    let key = client_key(database, client_id);
    segment.locked(|t| {
        let token = t.login_sessions[session_bucket(database, id)]
            .iter()
            .find(|s| s.database == database && s.id == *id && s.client == key)
            .map(|s| LoginToken {
                id: *id,
                client_id: client_id.to_owned(),
                role: read(&s.role, u16::from(s.role_len)),
                expires_at_us: s.expires_at_us,
            });
        let client = t.login_clients[bucket(&key, LOGIN_CLIENT_BUCKETS)]
            .iter()
            .find(|c| c.database == database && c.key == key);
        Standing {
            token,
            role: client.map(|c| read(&c.role, u16::from(c.role_len))),
        }
    })
}

/// Per issuing database: (database oid, issuer, keys, clients, live tokens) and the table
/// sizes, for oauth.login_status().
pub fn usage(now_us: i64) -> Vec<(u32, String, usize, usize, usize)> {
    let Some(segment) = segment_if_exists() else {
        return Vec::new();
    };
    segment.locked(|t| {
        t.login_issuers
            .iter()
            .filter(|i| i.ready == 1)
            .map(|i| {
                let db = i.database;
                let clients = t
                    .login_clients
                    .iter()
                    .flatten()
                    .filter(|c| c.database == db);
                let tokens = t
                    .login_sessions
                    .iter()
                    .flatten()
                    .filter(|s| s.database == db && s.expires_at_us > now_us);
                (
                    db,
                    read(&i.issuer, i.issuer_len),
                    i.keys.iter().filter(|k| k.used == 1).count(),
                    clients.count(),
                    tokens.count(),
                )
            })
            .collect()
    })
}
