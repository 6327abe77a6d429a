//! Eight connections issuing, refreshing, revoking and verifying at once, with refresh
//! tokens deliberately presented twice by different connections. PG_OAUTH_SOAK_SECONDS
//! (default 6; `make soak` runs 60). Afterwards: no duplicate jti, every revocation holds,
//! every reused refresh token burnt its grant, no deadlock, nothing unexpected failed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pg_oauth_harness::{db_error, postgres, Cluster};
use serde_json::Value;

const THREADS: usize = 8;

fn seconds() -> u64 {
    std::env::var("PG_OAUTH_SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

#[derive(Default)]
struct Outcome {
    /// Every access token handed out, with its jti.
    issued: Vec<(String, String)>,
    /// Access tokens whose revocation returned true.
    revoked: Vec<String>,
    /// Access tokens obtained from a refresh token that was also presented elsewhere.
    from_raced: Vec<(String, String)>,
    operations: usize,
}

/// A refresh token both connections of a pair present; what each presentation got.
#[derive(Default)]
struct Race {
    wins: usize,
    losses: usize,
    errors: Vec<String>,
}

/// A client credentials grant: the response, its access token and that token's jti.
fn issue(db: &mut postgres::Client, client: &str) -> (Value, String, String) {
    let t: Value = db
        .query_one(
            "SELECT oauth.auth_token('client_credentials', $1, 's', 'read')",
            &[&client],
        )
        .unwrap()
        .get(0);
    let access = t["access_token"].as_str().unwrap().to_owned();
    let id = jti(db, &access);
    (t, access, id)
}

/// The token's session id (its jti), whether or not a race has revoked it since.
fn jti(db: &mut postgres::Client, access: &str) -> String {
    db.query_one(
        "SELECT id::text FROM oauth.session WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
        &[&access],
    )
    .unwrap()
    .get(0)
}

/// What the connections share: refresh tokens offered for a race (one connection posts,
/// its partner presents it too), and what each raced token's presentations got.
#[derive(Clone, Default)]
struct Shared {
    offered: Arc<Mutex<VecDeque<(String, String)>>>,
    races: Arc<Mutex<HashMap<String, Race>>>,
}

/// One connection's run: issue, revoke, refresh its own chain, offer and present refresh
/// tokens for races, and check at each step that what it holds still verifies.
struct Connection {
    db: postgres::Client,
    client: &'static str,
    shared: Shared,
    out: Outcome,
    live: Vec<String>,
    chain: Option<String>,
}

impl Connection {
    fn run(mut self, deadline: Instant) -> Outcome {
        let mut step = 0usize;
        while Instant::now() < deadline {
            step += 1;
            self.out.operations += 1;
            match step % 6 {
                0 | 1 => self.issue_and_verify(),
                2 => self.revoke_one(),
                3 => self.refresh_own_chain(),
                4 => self.offer_for_a_race(),
                _ => self.present_offered(),
            }
            // What we hold and did not revoke still verifies.
            if let Some(access) = self.live.first() {
                self.db
                    .query_one("SELECT oauth.auth_verify($1)", &[access])
                    .unwrap_or_else(|e| panic!("a live token failed: {e}"));
            }
        }
        self.out
    }

    /// Issue, and verify at once.
    fn issue_and_verify(&mut self) {
        let (t, access, id) = issue(&mut self.db, self.client);
        self.out.issued.push((access.clone(), id));
        self.live.push(access);
        if self.chain.is_none() {
            self.chain = t["refresh_token"].as_str().map(str::to_owned);
        }
    }

    /// Revoke one of ours; it must stop verifying at once.
    fn revoke_one(&mut self) {
        let Some(access) = self.live.pop() else {
            return;
        };
        let revoked: bool = self
            .db
            .query_one("SELECT oauth.auth_revoke($1)", &[&access])
            .unwrap()
            .get(0);
        if revoked {
            self.out.revoked.push(access.clone());
            let err = self
                .db
                .query_one("SELECT oauth.auth_verify($1)", &[&access])
                .unwrap_err();
            assert_eq!(db_error(&err).0, "28000");
        }
    }

    /// Refresh our own chain (burnt, if a race we took part in burnt it).
    fn refresh_own_chain(&mut self) {
        let Some(rt) = self.chain.take() else {
            return;
        };
        match self.db.query_one(
            "SELECT oauth.auth_token('refresh_token', $1, 's', refresh_token => $2)",
            &[&self.client, &rt],
        ) {
            Ok(row) => {
                let t: Value = row.get(0);
                let access = t["access_token"].as_str().unwrap().to_owned();
                let id = jti(&mut self.db, &access);
                self.out.issued.push((access, id));
                self.chain = t["refresh_token"].as_str().map(str::to_owned);
            }
            Err(e) => assert_eq!(db_error(&e).0, "0LP01", "{e}"),
        }
    }

    /// Race: offer a fresh refresh token twice (two presentations, usually by two
    /// connections).
    fn offer_for_a_race(&mut self) {
        let (t, access, id) = issue(&mut self.db, self.client);
        self.out.issued.push((access.clone(), id.clone()));
        self.out.from_raced.push((access, id));
        let rt = t["refresh_token"].as_str().unwrap().to_owned();
        let mut pool = self.shared.offered.lock().unwrap();
        pool.push_back((self.client.to_owned(), rt.clone()));
        pool.push_back((self.client.to_owned(), rt));
    }

    /// Present refresh tokens someone offered (maybe our own), and note what each got.
    fn present_offered(&mut self) {
        for _ in 0..2 {
            let offered = self.shared.offered.lock().unwrap().pop_front();
            let Some((owner, rt)) = offered else { break };
            let result = self.db.query_one(
                "SELECT oauth.auth_token('refresh_token', $1, 's', refresh_token => $2)",
                &[&owner, &rt],
            );
            let mut races = self.shared.races.lock().unwrap();
            let race = races.entry(rt.clone()).or_default();
            match result {
                Ok(row) => {
                    race.wins += 1;
                    drop(races);
                    let t: Value = row.get(0);
                    let access = t["access_token"].as_str().unwrap().to_owned();
                    let id = jti(&mut self.db, &access);
                    self.out.issued.push((access.clone(), id.clone()));
                    self.out.from_raced.push((access, id));
                }
                Err(e) => {
                    assert_eq!(db_error(&e).0, "0LP01", "{e}");
                    race.losses += 1;
                }
            }
        }
    }
}

#[test]
fn eight_connections_at_once_lose_nothing() {
    let cluster = Cluster::start("soak", &[("deadlock_timeout", "'100ms'")]);
    let mut db = cluster.create_db_with("oauth", &[("pg_oauth.issuer", "https://issuer.soak")]);
    db.batch_execute(
        "INSERT INTO oauth.client (id, secret, scope, token_format, refresh_token) VALUES
             ('soak-opaque', 's', '{read,write}', 'opaque', true),
             ('soak-jwt', 's', '{read,write}', 'jwt', true);",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds());
    let shared = Shared::default();
    let workers: Vec<_> = (0..THREADS)
        .map(|n| {
            let connection = Connection {
                db: cluster.connect("oauth"),
                client: if n % 2 == 0 {
                    "soak-opaque"
                } else {
                    "soak-jwt"
                },
                shared: shared.clone(),
                out: Outcome::default(),
                live: Vec::new(),
                chain: None,
            };
            std::thread::spawn(move || connection.run(deadline))
        })
        .collect();
    let outcomes: Vec<Outcome> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let issued: Vec<&(String, String)> = outcomes.iter().flat_map(|o| &o.issued).collect();
    let operations: usize = outcomes.iter().map(|o| o.operations).sum();
    println!(
        "{operations} operations in {} s by {THREADS} connections; {} tokens issued",
        seconds(),
        issued.len()
    );
    assert!(issued.len() > 100, "the soak did too little work");
    no_duplicate_jti_and_every_token_has_its_session(&mut db, &issued);
    no_lost_revocation(&mut db, &outcomes);
    every_reused_refresh_token_burnt_its_grant(&mut db, &shared, &outcomes);
    let log = cluster.log();
    assert!(!log.contains("deadlock detected"), "{log}");
    assert!(!log.contains("terminated by signal"), "{log}");
}

fn no_duplicate_jti_and_every_token_has_its_session(
    db: &mut postgres::Client,
    issued: &[&(String, String)],
) {
    let ids: HashSet<&str> = issued.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), issued.len(), "duplicate jti");
    let sessions: i64 = db
        .query_one("SELECT count(*) FROM oauth.session", &[])
        .unwrap()
        .get(0);
    assert!(sessions as usize >= issued.len());
}

fn no_lost_revocation(db: &mut postgres::Client, outcomes: &[Outcome]) {
    for access in outcomes.iter().flat_map(|o| &o.revoked) {
        let err = db
            .query_one("SELECT oauth.auth_verify($1)", &[access])
            .unwrap_err();
        assert_eq!(db_error(&err).0, "28000");
    }
}

/// Each refresh token presented twice: one presentation at most won, and when the other
/// lost, the grant is burnt — including the token the winner received.
fn every_reused_refresh_token_burnt_its_grant(
    db: &mut postgres::Client,
    shared: &Shared,
    outcomes: &[Outcome],
) {
    let races = shared.races.lock().unwrap();
    let mut raced = 0;
    for (rt, race) in races.iter() {
        assert!(race.wins <= 1, "a refresh token was exchanged twice");
        if race.wins + race.losses >= 2 {
            raced += 1;
            let family_revoked: bool = db
                .query_one(
                    "SELECT f.revoked_at IS NOT NULL FROM oauth.refresh_token t
                       JOIN oauth.refresh_family f ON f.id = t.family_id
                      WHERE t.token_hash = sha256(convert_to($1, 'UTF8'))",
                    &[rt],
                )
                .unwrap()
                .get(0);
            assert!(
                family_revoked,
                "a reused refresh token left its grant open: {} wins, {:?}",
                race.wins, race.errors
            );
        }
    }
    assert!(raced > 10, "too few races ({raced})");
    for (access, _) in outcomes.iter().flat_map(|o| &o.from_raced) {
        let family_revoked: Option<bool> = db
            .query_opt(
                "SELECT f.revoked_at IS NOT NULL FROM oauth.session s
                   JOIN oauth.refresh_family f ON f.id = s.family_id
                  WHERE s.token_hash = sha256(convert_to($1, 'UTF8'))",
                &[access],
            )
            .unwrap()
            .map(|r| r.get(0));
        if family_revoked == Some(true) {
            let err = db
                .query_one("SELECT oauth.auth_verify($1)", &[access])
                .unwrap_err();
            assert_eq!(
                db_error(&err).0,
                "28000",
                "a burnt grant's token still verifies"
            );
        }
    }
}
