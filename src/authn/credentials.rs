//! Client authentication by secret (HTTP Basic or form fields) or by assertion
//! (assertion.rs): the readings of the presented credentials, the warm paths that need no
//! argon2 (this backend's memory, proofs in the cluster), and the cold path within the
//! cluster-wide argon2 bound, all under the lockout of attempts.rs.

use std::rc::Rc;

use pgrx::spi::SpiClient;

use crate::authn::assertion;
use crate::authn::attempts::{self, Attempt};
use crate::authn::mtls;
use crate::config::gucs;
use crate::crypto::argon2id;
use crate::crypto::certificate::Certificate;
use crate::crypto::secret;
use crate::error::{OAuthError, Result};
use crate::pg::backend;
use crate::pg::limits;
use crate::pg::shmem::proofs;
use crate::pg::shmem::stats;
use crate::store;
use crate::store::client::{load, load_uncached, Client};

/// How a client proves its identity in a request.
pub enum Credentials<'a> {
    Secret {
        client_id: &'a str,
        secret: &'a str,
        /// Further readings of an HTTP Basic header, after (client_id, secret).
        others: &'a [(String, String)],
    },
    Assertion {
        client_id: Option<&'a str>,
        assertion_type: &'a str,
        assertion: &'a str,
    },
    /// `tls_client_auth` or `self_signed_tls_client_auth` (RFC 8705 §2): a client id and the
    /// TLS client certificate of the request.
    Certificate {
        client_id: &'a str,
        certificate: &'a Certificate,
    },
}

/// Authenticate a client. Unknown clients, clients without a secret and wrong secrets
/// all fail with the same error after the same argon2 work (the audit trail records which
/// it was). While the named client is locked out for the caller's source, the request is
/// refused before any of that work.
pub fn authenticate(spi: &mut SpiClient<'_>, credentials: Credentials<'_>) -> Result<Rc<Client>> {
    match credentials {
        Credentials::Secret {
            client_id,
            secret,
            others,
        } => {
            // Once the caller's source is throttled, ids are read from the table, not this
            // backend's cache: a refusal takes as long for an id that exists as for one that
            // does not, so refusals tell nothing about which ids exist.
            let throttled = attempts::source_is_throttled(spi)?;
            let readings = readings(spi, client_id, secret, others, throttled)?;
            // A proven secret is never refused because others guessed wrong (proofs.rs).
            if let Some(client) = proven(&readings) {
                return Ok(client);
            }
            let claimed = claimed_by(&readings);
            attempt(spi, &claimed, readings.len() as i32, |spi| {
                authenticate_secret(spi, &readings)
            })
        }
        Credentials::Assertion {
            client_id,
            assertion_type,
            assertion,
        } => {
            let claimed = client_id
                .map(str::to_owned)
                .or_else(|| assertion::claimed_client(assertion));
            let claimed: Vec<&str> = claimed.as_deref().into_iter().collect();
            attempt(spi, &claimed, 1, |spi| {
                assertion::authenticate(spi, client_id, assertion_type, assertion)
            })
        }
        Credentials::Certificate {
            client_id,
            certificate,
        } => attempt(spi, &[client_id], 1, |spi| {
            mtls::authenticate(spi, client_id, certificate)
        }),
    }
}

/// Run one authentication of the `claimed` client ids under their lockouts (refused if any
/// of them is locked out for this source), and record its failure against each of them as
/// `guesses` guesses (and once against the source).
fn attempt(
    spi: &mut SpiClient<'_>,
    claimed: &[&str],
    guesses: i32,
    authenticate: impl FnOnce(&mut SpiClient<'_>) -> Result<Rc<Client>>,
) -> Result<Rc<Client>> {
    let attempts = Attempt::begin_all(spi, claimed)?;
    match authenticate(spi) {
        Ok(client) => {
            for attempt in attempts {
                attempt.succeeded(spi)?;
            }
            Ok(client)
        }
        Err(err) => {
            if err.is_authentication_failure() {
                // Correct credentials of an inactive client are not a guess.
                let reason = err.audit_reason();
                let guesses = if reason == INACTIVE { 0 } else { guesses };
                for (i, attempt) in attempts.into_iter().enumerate() {
                    attempt.failed(reason, guesses, i == 0);
                }
            }
            Err(err)
        }
    }
}

const INACTIVE: &str = "client is inactive";

/// One way to read presented secret credentials, and the client it names (if any).
struct Reading<'a> {
    secret: &'a str,
    client: Option<Rc<Client>>,
    client_id: &'a str,
}

fn readings<'a>(
    spi: &SpiClient<'_>,
    client_id: &'a str,
    secret: &'a str,
    others: &'a [(String, String)],
    uncached: bool,
) -> Result<Vec<Reading<'a>>> {
    std::iter::once((client_id, secret))
        .chain(others.iter().map(|(id, s)| (id.as_str(), s.as_str())))
        .map(|(client_id, secret)| {
            let client = if uncached {
                load_uncached(spi, client_id)?
            } else {
                load(spi, client_id)?
            };
            Ok(Reading {
                secret,
                client,
                client_id,
            })
        })
        .collect()
}

/// The client ids a secret attempt is held to and counted against: every one a reading
/// names that exists (a raw Basic header `urn:acme:svc:secret` reads several ways, and each
/// client it may name is guessed at: each one's lockout applies), else the first reading's.
fn claimed_by<'a>(readings: &[Reading<'a>]) -> Vec<&'a str> {
    let mut ids: Vec<&str> = Vec::new();
    for reading in readings.iter().filter(|r| r.client.is_some()) {
        if !ids.contains(&reading.client_id) {
            ids.push(reading.client_id);
        }
    }
    if ids.is_empty() {
        ids.push(readings[0].client_id);
    }
    ids
}

/// The stored hashes a secret may match: the current one, and the previous one during a
/// rotation's grace period.
fn hashes(client: &Client) -> impl Iterator<Item = &str> {
    client
        .secret
        .as_deref()
        .into_iter()
        .chain(client.previous_secret())
}

/// A reading of an active client whose secret was verified before — by this backend, or
/// anywhere in the cluster (proofs.rs) — for secrets long enough that an unthrottled check
/// tells a guesser nothing (proofs::MIN_SECRET_BYTES). Shorter secrets go through the
/// lockout as every other attempt.
fn proven(readings: &[Reading<'_>]) -> Option<Rc<Client>> {
    readings.iter().find_map(|reading| {
        let client = reading.client.as_ref().filter(|c| c.active)?;
        if reading.secret.len() < proofs::MIN_SECRET_BYTES {
            return None;
        }
        hashes(client)
            .any(|h| {
                secret::verify_warm(&client.id, h, reading.secret)
                    || proofs::holds(&client.id, h, reading.secret)
            })
            .then(|| client.clone())
    })
}

/// A reading whose secret has a proof in the cluster (proofs.rs), now remembered in this
/// backend too.
fn proven_in_cluster(readings: &[Reading<'_>]) -> Option<Rc<Client>> {
    readings.iter().find_map(|reading| {
        let client = reading.client.as_ref()?;
        let stored = hashes(client).find(|h| proofs::holds(&client.id, h, reading.secret))?;
        secret::remember_warm(&client.id, stored, reading.secret);
        Some(client.clone())
    })
}

/// Secret authentication over every reading of the credentials. A reading this backend
/// verified before, or one proven in the cluster, is accepted without argon2; otherwise
/// each reading costs the same argon2 work, two verifications (the current hash, then the
/// previous one in a rotation's grace period or a dummy), whatever exists: the time a
/// failure takes says nothing about which ids exist or which are in a grace period. A hash
/// costlier than ours is replaced by one at our cost once its secret verifies.
fn authenticate_secret(spi: &mut SpiClient<'_>, readings: &[Reading<'_>]) -> Result<Rc<Client>> {
    let accept = |client: &Rc<Client>| {
        if client.active {
            Ok(client.clone())
        } else {
            Err(OAuthError::InvalidClient(INACTIVE.into()))
        }
    };
    for reading in readings {
        if let Some(client) = &reading.client {
            if hashes(client).any(|h| secret::verify_warm(&client.id, h, reading.secret)) {
                return accept(client);
            }
        }
    }
    // Proven elsewhere in the cluster (proofs.rs) — already, or while we queue for a slot.
    let mut proven_elsewhere = None;
    // `needless` is asked before each round of attempts: a second round means a wait.
    let mut rounds = 0;
    let slot = limits::Slot::acquire_unless(
        gucs::argon2_slots(),
        limits::Wait::Bounded(gucs::argon2_wait()),
        || {
            rounds += 1;
            proven_elsewhere = proven_in_cluster(readings);
            proven_elsewhere.is_some()
        },
    );
    if rounds > 1 {
        stats::count("argon2", &["waits"]);
    }
    if slot.is_err() {
        stats::count("argon2", &["timeouts"]);
    }
    let slot = slot?;
    if let Some(client) = proven_elsewhere {
        return accept(&client);
    }
    // Cold: argon2, within the cluster-wide bound (limits.rs); one slot for the readings.
    let _slot = slot;
    for reading in readings {
        let mut verified = 0;
        if let Some(client) = reading.client.as_ref().filter(|c| c.secret.is_some()) {
            for stored in hashes(client) {
                verified += 1;
                stats::count("argon2", &["verifications"]);
                if secret::verify(&client.id, stored, reading.secret) {
                    proofs::remember(&client.id, stored, reading.secret);
                    rehash_if_costly(spi, client, stored, reading.secret)?;
                    return accept(client);
                }
            }
        }
        for _ in verified..VERIFICATIONS_PER_READING {
            stats::count("argon2", &["verifications"]);
            argon2id::verify_dummy(reading.secret);
        }
    }
    let (reason, label) = match readings.iter().find_map(|r| r.client.as_ref()) {
        None => ("unknown client", "unknown_client"),
        Some(client) if client.secret.is_none() => ("client has no secret", "no_secret"),
        Some(_) => ("wrong secret", "wrong_secret"),
    };
    stats::count("client_authentication_failures", &[label]);
    Err(OAuthError::AuthenticationFailed {
        reason: reason.to_owned(),
    })
}

/// Argon2 verifications a failing reading costs: a current and a previous hash at most.
const VERIFICATIONS_PER_READING: usize = 2;

/// Replace `stored`, just verified with `plain`, by a hash at our own cost when it costs more
/// (an import, or a hash restored from an older release): every later guess at this client
/// pays our cost, not the import's. Not on a standby (it cannot write); a failure to store
/// it leaves the old hash, which still works.
fn rehash_if_costly(
    spi: &mut SpiClient<'_>,
    client: &Client,
    stored: &str,
    plain: &str,
) -> Result<()> {
    if !argon2id::needs_rehash(stored) || backend::is_standby() {
        return Ok(());
    }
    let rehashed = argon2id::hash(plain)?;
    if store::client::rehash(spi, &client.id, stored, &rehashed)? {
        proofs::remember(&client.id, &rehashed, plain);
        secret::remember_warm(&client.id, &rehashed, plain);
    }
    Ok(())
}

/// The credentials a request carries: a client secret, a client assertion (RFC 7521), or
/// a client id with the request's TLS client certificate (RFC 8705 §2) — one of them.
pub fn credentials_from<'a>(
    client_id: Option<&'a str>,
    client_secret: Option<&'a str>,
    other_readings: &'a [(String, String)],
    assertion_type: Option<&'a str>,
    assertion: Option<&'a str>,
    certificate: Option<&'a Certificate>,
) -> Result<Credentials<'a>> {
    let required = || {
        OAuthError::InvalidClient(
            "client authentication is required (client_id and client_secret, a \
             client_assertion, or a TLS client certificate)"
                .into(),
        )
    };
    match (client_id, client_secret, assertion_type, assertion) {
        (_, Some(_), Some(_), _) | (_, Some(_), _, Some(_)) => Err(OAuthError::InvalidRequest(
            "use one client authentication method: a client_secret or a client_assertion".into(),
        )),
        (client_id, None, Some(assertion_type), Some(assertion)) => Ok(Credentials::Assertion {
            client_id,
            assertion_type,
            assertion,
        }),
        (_, None, Some(_), None) | (_, None, None, Some(_)) => Err(OAuthError::InvalidClient(
            "client_assertion and client_assertion_type go together".into(),
        )),
        (Some(client_id), Some(secret), None, None) => Ok(Credentials::Secret {
            client_id,
            secret,
            others: other_readings,
        }),
        (Some(client_id), None, None, None) => match certificate {
            Some(certificate) => Ok(Credentials::Certificate {
                client_id,
                certificate,
            }),
            None => Err(required()),
        },
        _ => Err(required()),
    }
}
