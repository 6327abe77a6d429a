//! In-database tests of the login state's tables (pg/shmem/login.rs): what does not fit is
//! refused, never answered wrongly; changes apply only to a built state; a reset empties it.
//! Databases with made-up oids, so the real one's state is untouched.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::pg::shmem::login::{self, Change, LoginToken, Lookup, PublishedKey, Snapshot};

    const NOW: i64 = 1_800_000_000_000_000;

    fn token(n: u32, client: &str) -> LoginToken {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_le_bytes());
        id[8..12].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_le_bytes());
        LoginToken {
            id,
            client_id: client.into(),
            role: "app_reader".into(),
            expires_at_us: NOW + 3_600_000_000,
        }
    }

    fn key(n: usize) -> PublishedKey {
        PublishedKey {
            kid: format!("kid-{n}"),
            alg: "HS256".into(),
            material: vec![n as u8; 32],
            until_us: None,
        }
    }

    #[pg_test]
    fn what_does_not_fit_is_refused_never_answered_wrongly() {
        let database = 4_000_000_001;
        let tokens: Vec<LoginToken> = (0..20_000).map(|n| token(n, "svc")).collect();
        let snapshot = Snapshot {
            issuer: "https://full.example".into(),
            keys: (0..40).map(key).collect(),
            clients: vec![("svc".into(), "app_reader".into())],
            tokens: tokens.clone(),
        };
        let overflow = login::replace(database, &snapshot, NOW).unwrap();
        assert_eq!(overflow.keys, 8, "32 keys per database");
        assert!(overflow.tokens >= 20_000 - 16_384, "{overflow:?}");
        let mut found = 0;
        for t in &tokens {
            let standing = login::standing(database, "svc", &t.id);
            if let Some(seen) = standing.token {
                assert_eq!(&seen, t);
                found += 1;
            }
            // Under another client's name, nobody's token is found.
            assert!(login::standing(database, "other", &t.id).token.is_none());
        }
        assert_eq!(found + overflow.tokens, tokens.len());
        let Lookup::Found(view) = login::issuer("https://full.example") else {
            panic!("issuer not found");
        };
        assert_eq!(view.keys.len(), 32);
        login::forget(database);
        assert_eq!(login::issuer("https://full.example"), Lookup::UnknownIssuer);
    }

    #[pg_test]
    fn changes_apply_to_a_built_state_only_and_a_reset_empties_it() {
        let database = 4_000_000_002;
        let t = token(7, "svc");
        // Nothing built: nothing applied.
        login::apply(database, &[Change::TokenOpened(t.clone())], NOW);
        assert_eq!(
            login::issuer("https://changes.example"),
            Lookup::UnknownIssuer
        );
        let snapshot = Snapshot {
            issuer: "https://changes.example".into(),
            keys: vec![key(1)],
            clients: vec![],
            tokens: vec![],
        };
        login::replace(database, &snapshot, NOW).unwrap();
        assert!(login::ready(database, "https://changes.example"));
        assert!(!login::ready(database, "https://other.example"));
        login::apply(
            database,
            &[
                Change::TokenOpened(t.clone()),
                Change::Client {
                    client_id: "svc".into(),
                    role: Some("app_reader".into()),
                },
                Change::KeyPublished(key(2)),
                Change::KeyWithdrawn("kid-1".into()),
            ],
            NOW,
        );
        let standing = login::standing(database, "svc", &t.id);
        assert_eq!(standing.token.as_ref(), Some(&t));
        assert_eq!(standing.role.as_deref(), Some("app_reader"));
        let Lookup::Found(view) = login::issuer("https://changes.example") else {
            panic!("issuer not found");
        };
        assert_eq!(view.keys, vec![key(2)]);
        login::apply(
            database,
            &[
                Change::TokenClosed(t.id),
                Change::Client {
                    client_id: "svc".into(),
                    role: None,
                },
            ],
            NOW,
        );
        let standing = login::standing(database, "svc", &t.id);
        assert!(standing.token.is_none() && standing.role.is_none());
        login::apply(database, &[Change::Reset], NOW);
        assert!(!login::ready(database, "https://changes.example"));
    }

    #[pg_test]
    fn an_expired_token_or_key_makes_room() {
        let database = 4_000_000_003;
        let mut old = key(1);
        old.until_us = Some(NOW - 1);
        let snapshot = Snapshot {
            issuer: "https://room.example".into(),
            keys: std::iter::once(old).chain((2..33).map(key)).collect(),
            clients: vec![],
            tokens: vec![],
        };
        assert_eq!(
            login::replace(database, &snapshot, NOW - 10).unwrap().keys,
            0
        );
        // Full; the ended key's slot is taken by a new one.
        login::apply(database, &[Change::KeyPublished(key(40))], NOW);
        let Lookup::Found(view) = login::issuer("https://room.example") else {
            panic!("issuer not found");
        };
        assert!(view.keys.contains(&key(40)) && !view.keys.iter().any(|k| k.kid == "kid-1"));
        login::forget(database);
    }
}
