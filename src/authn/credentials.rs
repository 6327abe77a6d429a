//! Client authentication by secret (HTTP Basic or form fields) or by assertion
//! (assertion.rs): the readings of the presented credentials, the warm paths that need no
//! argon2 (this backend's memory, proofs in the cluster), and the cold path within the
//! cluster-wide argon2 bound, all under the lockout of attempts.rs.

use std::rc::Rc;

use pgrx::spi::SpiClient;

use crate::authn::assertion;
use crate::authn::attempts::Attempt;
use crate::crypto::secret;
use crate::error::{OAuthError, Result};
use crate::pg::limits;
use crate::pg::shmem::proofs;
use crate::store::client::{load, Client};

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
            let readings = readings(spi, client_id, secret, others)?;
            // A proven secret is never refused because others guessed wrong (proofs.rs).
            if let Some(client) = proven(&readings) {
                return Ok(client);
            }
            let claimed = claimed_by(&readings);
            attempt(spi, Some(claimed), readings.len() as i32, |_| {
                authenticate_secret(&readings)
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
            attempt(spi, claimed.as_deref(), 1, |spi| {
                assertion::authenticate(spi, client_id, assertion_type, assertion)
            })
        }
    }
}

/// Run one authentication of the `claimed` client under its lockout, and record its
/// failure as `guesses` guesses.
fn attempt(
    spi: &mut SpiClient<'_>,
    claimed: Option<&str>,
    guesses: i32,
    authenticate: impl FnOnce(&mut SpiClient<'_>) -> Result<Rc<Client>>,
) -> Result<Rc<Client>> {
    let attempt = match claimed {
        Some(id) => Some(Attempt::begin(spi, id)?),
        None => None,
    };
    match (authenticate(spi), attempt) {
        (Ok(client), Some(attempt)) => {
            attempt.succeeded(spi)?;
            Ok(client)
        }
        (Ok(client), None) => Ok(client),
        (Err(err), attempt) => {
            if let Some(attempt) = attempt.filter(|_| err.is_authentication_failure()) {
                // Correct credentials of an inactive client are not a guess.
                let reason = err.audit_reason();
                attempt.failed(reason, if reason == INACTIVE { 0 } else { guesses });
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
) -> Result<Vec<Reading<'a>>> {
    std::iter::once((client_id, secret))
        .chain(others.iter().map(|(id, s)| (id.as_str(), s.as_str())))
        .map(|(client_id, secret)| {
            Ok(Reading {
                secret,
                client: load(spi, client_id)?,
                client_id,
            })
        })
        .collect()
}

/// The client id a secret attempt is counted against: the first reading that names a
/// client, so that every reading of one client's credentials shares its lockout.
fn claimed_by<'a>(readings: &[Reading<'a>]) -> &'a str {
    readings
        .iter()
        .find(|r| r.client.is_some())
        .unwrap_or(&readings[0])
        .client_id
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
/// each reading costs one verification (a dummy one when it names no client with a
/// secret), so the time a failure takes says nothing about which ids exist.
fn authenticate_secret(readings: &[Reading<'_>]) -> Result<Rc<Client>> {
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
    let slot = limits::Slot::acquire_unless(limits::Wait::Bounded, || {
        proven_elsewhere = proven_in_cluster(readings);
        proven_elsewhere.is_some()
    })?;
    if let Some(client) = proven_elsewhere {
        return accept(&client);
    }
    // Cold: argon2, within the cluster-wide bound (limits.rs); one slot for the readings.
    let _slot = slot;
    for reading in readings {
        match reading.client.as_ref().filter(|c| c.secret.is_some()) {
            Some(client) => {
                for stored in hashes(client) {
                    if secret::verify(&client.id, stored, reading.secret) {
                        proofs::remember(&client.id, stored, reading.secret);
                        return accept(client);
                    }
                }
            }
            None => {
                secret::verify_dummy(reading.secret);
            }
        }
    }
    let reason = match readings.iter().find_map(|r| r.client.as_ref()) {
        None => "unknown client",
        Some(client) if client.secret.is_none() => "client has no secret",
        Some(_) => "wrong secret",
    };
    Err(OAuthError::AuthenticationFailed {
        reason: reason.to_owned(),
    })
}

/// The credentials a request carries: a client secret or a client assertion (RFC 7521),
/// never both.
pub fn credentials_from<'a>(
    client_id: Option<&'a str>,
    client_secret: Option<&'a str>,
    other_readings: &'a [(String, String)],
    assertion_type: Option<&'a str>,
    assertion: Option<&'a str>,
) -> Result<Credentials<'a>> {
    match (client_id, client_secret, assertion_type, assertion) {
        (_, Some(_), Some(_), _) | (_, Some(_), _, Some(_)) => Err(OAuthError::InvalidRequest(
            "use one client authentication method: a client_secret or a client_assertion".into(),
        )),
        (client_id, None, Some(assertion_type), Some(assertion)) => {
            Ok(Credentials::Assertion { client_id, assertion_type, assertion })
        }
        (_, None, Some(_), None) | (_, None, None, Some(_)) => Err(OAuthError::InvalidClient(
            "client_assertion and client_assertion_type go together".into(),
        )),
        (Some(client_id), Some(secret), None, None) => {
            Ok(Credentials::Secret {
                client_id,
                secret,
                others: other_readings,
            })
        }
        _ => Err(OAuthError::InvalidClient(
            "client authentication is required (client_id and client_secret, or a client_assertion)"
                .into(),
        )),
    }
}
