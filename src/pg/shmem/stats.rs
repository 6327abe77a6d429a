//! pg_oauth's counters (`oauth.stats`): per database, in shared memory, counted with one
//! atomic addition and no table write. 16 databases have their own counters; the others,
//! and logins to PostgreSQL 18 (checked before a database is chosen), share database 0.
//! A restart starts them from zero, as PostgreSQL's own statistics after a crash.

use std::cell::Cell;
use std::sync::atomic::Ordering;

use pgrx::pg_sys;

use super::segment::{segment, segment_if_exists, Segment, StatsSlot, STATS_COUNTERS, STATS_SLOTS};

/// A family of counters: its name, what it counts, and its labels with their values (the
/// counters are every combination, in order).
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [(&'static str, &'static [&'static str])],
}

pub const GRANTS: &[&str] = &["client_credentials", "refresh_token", "token_exchange"];
pub const FORMATS: &[&str] = &["opaque", "jwt"];
pub const ALGS: &[&str] = &["ES256", "EdDSA", "RS256", "PS256", "HS256"];
pub const ENDPOINTS: &[&str] = &["token", "verify", "revoke", "introspect"];
pub const ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "invalid_token",
    "invalid_dpop_proof",
    "use_dpop_nonce",
    "server_error",
    "temporarily_unavailable",
];
pub const AUTH_FAILURES: &[&str] = &[
    "unknown_client",
    "wrong_secret",
    "no_secret",
    "assertion",
    "certificate",
    "locked_out",
    "throttled_source",
];
pub const ARGON2: &[&str] = &["verifications", "waits", "timeouts"];
const OUTCOMES: &[&str] = &["accepted", "refused"];
/// The listener's paths: its endpoints (the metadata documents together), /metrics, the
/// sandbox's files, the console (its files and its API), and anything else (answered 404).
pub const PATHS: &[&str] = &[
    "token",
    "revoke",
    "introspect",
    "jwks",
    "metadata",
    "metrics",
    "sandbox",
    "console",
    "other",
];
const STATUSES: &[&str] = &["2xx", "3xx", "4xx", "5xx"];
/// Upper bounds (seconds) of the latency histogram's buckets.
pub const LE: &[&str] = &[
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
];
const LE_MICROS: [u64; 12] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    u64::MAX,
];

pub static FAMILIES: &[Family] = &[
    Family {
        name: "tokens_issued",
        help: "Access tokens issued, by grant and format.",
        labels: &[("grant", GRANTS), ("format", FORMATS)],
    },
    Family {
        name: "tokens_signed",
        help: "JWT access tokens signed, by algorithm.",
        labels: &[("alg", ALGS)],
    },
    Family {
        name: "refusals",
        help: "Requests refused, by endpoint and OAuth error.",
        labels: &[("endpoint", ENDPOINTS), ("error", ERRORS)],
    },
    Family {
        name: "client_authentication_failures",
        help: "Failed client authentications, by reason (an unknown client, a wrong secret, a lockout, a throttled source, ...).",
        labels: &[("reason", AUTH_FAILURES)],
    },
    Family {
        name: "argon2",
        help: "argon2id verifications run (those of unknown clients included, which cost the same), waits for an argon2 slot, and waits that gave up (temporarily_unavailable).",
        labels: &[("event", ARGON2)],
    },
    Family {
        name: "dpop_proofs",
        help: "DPoP proofs accepted (spent), and refused as replays.",
        labels: &[("result", OUTCOMES)],
    },
    Family {
        name: "verifications",
        help: "Access tokens verified (auth_verify, PostgREST's pre-request check), accepted or refused.",
        labels: &[("result", OUTCOMES)],
    },
    Family {
        name: "revocations",
        help: "Tokens revoked by their client or an administrator's function (RFC 7009).",
        labels: &[],
    },
    Family {
        name: "introspections",
        help: "Token introspections answered (RFC 7662).",
        labels: &[],
    },
    Family {
        name: "logins",
        help: "PostgreSQL 18 logins with pg_oauth tokens, accepted or refused (database 0).",
        labels: &[("result", OUTCOMES)],
    },
    Family {
        name: "http_requests",
        help: "Requests the HTTP listener answered, by path and status class.",
        labels: &[("path", PATHS), ("status", STATUSES)],
    },
    Family {
        name: "http_request_duration_seconds_bucket",
        help: "HTTP listener requests answered within `le` seconds, by path (cumulative: a histogram's buckets).",
        labels: &[("path", PATHS), ("le", LE)],
    },
    Family {
        name: "http_request_duration_microseconds_sum",
        help: "Total time the HTTP listener took to answer, by path, in microseconds.",
        labels: &[("path", PATHS)],
    },
];

/// The number of counters of `family`.
const fn width(family: &Family) -> usize {
    let mut n = 1;
    let mut i = 0;
    while i < family.labels.len() {
        n *= family.labels[i].1.len();
        i += 1;
    }
    n
}

/// Every family's counters, one after the other.
pub const TOTAL: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < FAMILIES.len() {
        n += width(&FAMILIES[i]);
        i += 1;
    }
    n
};

const _: () = assert!(TOTAL <= STATS_COUNTERS);

/// The counter of `family` (by name) for these label values, in the labels' order.
fn index(family: &str, values: &[&str]) -> Option<usize> {
    let mut offset = 0;
    for f in FAMILIES {
        if f.name != family {
            offset += width(f);
            continue;
        }
        if values.len() != f.labels.len() {
            return None;
        }
        let mut within = 0;
        for ((_, allowed), value) in f.labels.iter().zip(values) {
            within = within * allowed.len() + allowed.iter().position(|a| a == value)?;
        }
        return Some(offset + within);
    }
    None
}

thread_local! {
    /// This backend's slot (its database never changes).
    static SLOT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The slot of `database`, claimed if new; the shared slot 0 when all are taken.
fn slot_for(slots: &[StatsSlot; STATS_SLOTS], database: u32) -> usize {
    if database == 0 {
        return 0;
    }
    for (i, slot) in slots.iter().enumerate().skip(1) {
        match slot
            .database
            .compare_exchange(0, database, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return i,
            Err(found) if found == database => return i,
            Err(_) => continue,
        }
    }
    0
}

/// Add one to the counter of `family` with these label values (unknown values count
/// nowhere: the families list every value pg_oauth uses).
pub fn count(family: &str, values: &[&str]) {
    let Some(i) = index(family, values) else {
        debug_assert!(false, "no counter {family} {values:?}");
        return;
    };
    // SAFETY: this backend's database, 0 before one is chosen.
    let database = unsafe { pg_sys::MyDatabaseId }.to_u32();
    // A login (no database yet) makes no segment: the login worker's has its state.
    let found: Option<&Segment> = if database == 0 {
        segment_if_exists()
    } else {
        segment()
    };
    let Some(segment) = found else {
        return;
    };
    let slot = SLOT.get().unwrap_or_else(|| {
        let slot = slot_for(&segment.stats, database);
        if database != 0 {
            SLOT.set(Some(slot));
        }
        slot
    });
    segment.stats[slot].counters[i].fetch_add(1, Ordering::Relaxed);
}

/// Counting from a thread that is not PostgreSQL's (the listener's HTTP thread): the
/// database's counters, found on the main thread, then plain atomic additions.
#[derive(Clone, Copy)]
pub struct Recorder(&'static StatsSlot);

/// A recorder for this backend's database (on its main thread).
pub fn recorder() -> Option<Recorder> {
    let segment = segment()?;
    // SAFETY: this backend's database, set when it connected.
    let database = unsafe { pg_sys::MyDatabaseId }.to_u32();
    Some(Recorder(&segment.stats[slot_for(&segment.stats, database)]))
}

impl Recorder {
    /// A request to `path` answered with `status` after `elapsed`.
    pub fn request(self, path: &str, status: u16, elapsed: std::time::Duration) {
        let class = match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let add = |i: Option<usize>, n: u64| {
            if let Some(i) = i {
                self.0.counters[i].fetch_add(n, Ordering::Relaxed);
            }
        };
        add(index("http_requests", &[path, class]), 1);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        for (le, bound) in LE.iter().zip(LE_MICROS) {
            if micros <= bound {
                add(
                    index("http_request_duration_seconds_bucket", &[path, le]),
                    1,
                );
            }
        }
        add(
            index("http_request_duration_microseconds_sum", &[path]),
            micros,
        );
    }
}

/// One counter's value: (database oid, family, label pairs, value). Zero counters are
/// included, so that every series exists from the start.
pub type Row = (u32, &'static Family, Vec<(&'static str, &'static str)>, u64);

/// Every counter of every database that has any.
pub fn read() -> Vec<Row> {
    let Some(segment) = segment() else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for (s, slot) in segment.stats.iter().enumerate() {
        let database = slot.database.load(Ordering::Acquire);
        if s != 0 && database == 0 {
            continue;
        }
        let mut i = 0;
        for family in FAMILIES {
            for combination in 0..width(family) {
                let mut labels = Vec::with_capacity(family.labels.len());
                let mut rest = combination;
                for (name, values) in family.labels.iter().rev() {
                    labels.push((*name, values[rest % values.len()]));
                    rest /= values.len();
                }
                labels.reverse();
                rows.push((
                    database,
                    family,
                    labels,
                    slot.counters[i].load(Ordering::Relaxed),
                ));
                i += 1;
            }
        }
    }
    rows
}

/// Set `database`'s counters to zero.
pub fn reset(database: u32) {
    let Some(segment) = segment() else {
        return;
    };
    for (s, slot) in segment.stats.iter().enumerate() {
        let here = slot.database.load(Ordering::Acquire);
        if (s == 0 && database == 0) || (s != 0 && here == database) {
            for counter in &slot.counters {
                counter.store(0, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn every_counter_has_one_index() {
        let mut seen = std::collections::HashSet::new();
        for family in FAMILIES {
            let combos: Vec<Vec<&str>> =
                family.labels.iter().fold(vec![vec![]], |acc, (_, values)| {
                    acc.iter()
                        .flat_map(|prefix| {
                            values.iter().map(move |v| {
                                let mut p = prefix.clone();
                                p.push(*v);
                                p
                            })
                        })
                        .collect()
                });
            for combo in combos {
                assert!(seen.insert(index(family.name, &combo).unwrap()));
            }
        }
        assert_eq!(seen.len(), TOTAL);
        assert_eq!(index("tokens_issued", &["refresh_token", "jwt"]), Some(3));
        assert_eq!(index("tokens_issued", &["password", "jwt"]), None);
        assert_eq!(
            index("revocations", &[]),
            Some(width(&FAMILIES[0]) + 5 + 48 + 7 + 3 + 2 + 2)
        );
    }
}
