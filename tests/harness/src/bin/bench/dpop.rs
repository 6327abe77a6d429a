//! `make bench`, DPoP (RFC 9449) through PostgREST, as ratios to the same requests with
//! bearer tokens: issuance with a proof, and reading the API with a DPoP-bound JWT and a
//! fresh proof per request (checked by the pre-request hook) against a bearer JWT (checked by
//! PostgREST and the hook). One load generator for both halves of each ratio
//! (tests/clients/openid-client/load.mjs: hey cannot sign a proof per request).

use pg_oauth_harness::{node_json, Cluster, PostgRest};

use super::Stat;

/// The recipe's public origin (examples/postgrest): what proofs name as `htu`.
const ORIGIN: &str = "http://127.0.0.1:3000";
/// Requests in flight, as hey's -c.
const CONCURRENCY: u32 = 16;

/// Requests per second and ratios, round by round: issuance (bearer, DPoP), API (bearer,
/// DPoP).
pub struct Dpop {
    rps: [Stat; 4],
    ratio: [Stat; 2],
}

/// In `app` (after http::setup_app): a role tokens act as, the one role allowed an RPC that
/// returns the role it runs as, and a bearer and a DPoP client with it (JWT, ES256).
fn setup(cluster: &Cluster) {
    cluster
        .connect("app")
        .batch_execute(
            "CREATE ROLE bench_reader NOLOGIN;
             GRANT bench_reader TO authenticator;
             GRANT USAGE ON SCHEMA api TO bench_reader;
             -- Only the token's role may call it: a request left anonymous fails.
             CREATE FUNCTION api.bench_whoami() RETURNS text LANGUAGE sql STABLE
                 AS $$ SELECT current_user::text $$;
             REVOKE ALL ON FUNCTION api.bench_whoami() FROM PUBLIC;
             GRANT EXECUTE ON FUNCTION api.bench_whoami() TO bench_reader;
             INSERT INTO oauth.client (id, secret, token_format, dpop_bound_access_tokens)
             VALUES ('bench-bearer', 'benchsecret', 'jwt', false),
                    ('bench-dpop', 'benchsecret', 'jwt', true);
             INSERT INTO oauth.policy (client_id, role)
             VALUES ('bench-bearer', 'bench_reader'), ('bench-dpop', 'bench_reader');",
        )
        .unwrap();
}

/// One load.mjs run: requests per second (all must be 200).
fn load(mode: &str, client: &str, rest: &PostgRest, seconds: u64) -> f64 {
    let (url, htu) = match mode {
        "token-bearer" | "token-dpop" => (rest.url("/rpc/token"), format!("{ORIGIN}/rpc/token")),
        _ => (
            rest.url("/rpc/bench_noop"),
            format!("{ORIGIN}/rpc/bench_noop"),
        ),
    };
    let (seconds, concurrency) = (seconds.to_string(), CONCURRENCY.to_string());
    let credentials = format!("{client}:benchsecret");
    let (token_url, token_htu) = (rest.url("/rpc/token"), format!("{ORIGIN}/rpc/token"));
    let run = node_json(
        &[
            "load.mjs",
            mode,
            &seconds,
            &concurrency,
            &url,
            &htu,
            &credentials,
            &token_url,
            &token_htu,
        ],
        &[],
    );
    assert_eq!(run["failed"], 0, "{mode}: {run}");
    run["rps"].as_f64().unwrap()
}

pub fn run(cluster: &Cluster, rounds: u64, seconds: u64) -> Dpop {
    setup(cluster);
    let rest = PostgRest::start(cluster, "app");
    let runs = [
        ("token-bearer", "bench-bearer"),
        ("token-dpop", "bench-dpop"),
        ("api-bearer", "bench-bearer"),
        ("api-dpop", "bench-dpop"),
    ];
    // Warm-up: every pooled connection verifies the secrets once (argon2), node JITs.
    for (mode, client) in runs {
        load(mode, client, &rest, 3);
    }
    let mut rps: [Stat; 4] = Default::default();
    let mut ratio: [Stat; 2] = Default::default();
    for round in 1..=rounds {
        let r: Vec<f64> = runs
            .iter()
            .map(|(mode, client)| load(mode, client, &rest, seconds))
            .collect();
        println!(
            "  dpop round {round}: token bearer {:.0}, token DPoP {:.0}, API bearer {:.0}, API DPoP {:.0} req/s",
            r[0], r[1], r[2], r[3]
        );
        for (stat, v) in rps.iter_mut().zip(&r) {
            stat.push(*v);
        }
        ratio[0].push(r[1] / r[0]);
        ratio[1].push(r[3] / r[2]);
    }
    Dpop { rps, ratio }
}

impl Dpop {
    /// The DPoP rows of BENCHMARKS.md's table.
    pub fn rows(&self) -> String {
        format!(
            "| DPoP: POST /rpc/token with a proof through PostgREST (load.mjs, 16 in flight) | {} req/s | bearer {:.0} req/s | {} |  |\n\
             | DPoP: GET of an RPC only the token's role may call, DPoP-bound JWT and a fresh proof per request (pre-request hook) | {} req/s | bearer JWT {:.0} req/s | {} |  |\n",
            self.rps[1].show(0),
            self.rps[0].median(),
            self.ratio[0].show(2),
            self.rps[3].show(0),
            self.rps[2].median(),
            self.ratio[1].show(2),
        )
    }
}
