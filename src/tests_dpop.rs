//! In-database tests of DPoP (RFC 9449): proofs signed here with keys made here, as a client
//! would (the end-to-end tests use a client library none of us wrote).

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use serde_json::{json, Value};

    use crate::crypto::alg::JwtAlg;
    use crate::crypto::random::b64url;
    use crate::jose::dpop::ath_of;
    use crate::jose::keys;
    use crate::pg::shmem::dpop::{spend, Spent};

    const ISSUER: &str = "https://as.example";
    const TOKEN_URL: &str = "https://as.example/rpc/token";
    const RESOURCE: &str = "https://api.example/items";

    /// A client's DPoP key: its public JWK and what signs with it.
    struct ClientKey {
        jwk: Value,
        alg: JwtAlg,
        key: keys::Key,
    }

    fn client_key(alg: JwtAlg) -> ClientKey {
        let made = keys::generate(alg).unwrap();
        ClientKey {
            jwk: made.public_jwk.unwrap(),
            alg,
            key: keys::parse_key(&made.kid, alg, &made.private_der).unwrap(),
        }
    }

    fn now() -> i64 {
        crate::pg::backend::now_micros() / 1_000_000
    }

    fn jws(key: &ClientKey, header: Value, claims: Value) -> String {
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let signature = key.key.sign(signing_input.as_bytes()).unwrap();
        format!("{signing_input}.{}", b64url(&signature))
    }

    /// A proof for `htm` `htu`, by `key`, with `ath` when a token is given.
    fn proof(key: &ClientKey, htm: &str, htu: &str, token: Option<&str>) -> String {
        let header = json!({ "typ": "dpop+jwt", "alg": key.alg.as_str(), "jwk": key.jwk });
        let mut claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "htm": htm,
            "htu": htu,
            "iat": now(),
        });
        if let Some(token) = token {
            claims["ath"] = json!(ath_of(token));
        }
        jws(key, header, claims)
    }

    fn setup(id: &str, format: &str, alg: JwtAlg) {
        Spi::run(&format!("SET pg_oauth.issuer = '{ISSUER}'")).unwrap();
        Spi::run(&format!(
            "INSERT INTO oauth.client (id, secret, scope, token_format, jwt_alg)
             VALUES ('{id}', 'verysecret', '{{read}}', '{format}', '{}')",
            alg.as_str()
        ))
        .unwrap();
    }

    fn issue(id: &str, dpop: Option<&str>) -> Result<Value, String> {
        run_json(
            "SELECT oauth.auth_token('client_credentials', $1, 'verysecret', dpop => $2)",
            vec![id.into(), dpop.into()],
        )
    }

    fn verify(token: &str, dpop: Option<&str>, htm: &str, htu: &str) -> Result<Value, String> {
        run_json(
            "SELECT oauth.auth_verify($1, dpop => $2, htm => $3, htu => $4)",
            vec![token.into(), dpop.into(), htm.into(), htu.into()],
        )
    }

    /// A statement's jsonb result, or the message of the error it raised.
    fn run_json(sql: &str, args: Vec<pgrx::datum::DatumWithOid<'_>>) -> Result<Value, String> {
        let outcome = crate::pg::subxact::attempt(|| {
            Spi::get_one_with_args::<pgrx::JsonB>(sql, &args).map_err(|e| e.to_string())
        });
        match outcome {
            Ok(Ok(Some(json))) => Ok(json.0),
            Ok(Ok(None)) => Err("NULL".into()),
            Ok(Err(spi)) => Err(spi),
            Err(raised) => Err(raised.message),
        }
    }

    fn refused(outcome: Result<Value, String>, expected: &str) {
        match outcome {
            Ok(v) => panic!("accepted ({v}), expected a refusal: {expected}"),
            Err(message) => assert!(
                message.contains(expected),
                "refused with {message:?}, expected {expected:?}"
            ),
        }
    }

    /// Each algorithm, both token formats: the token is bound to the proof's key (`cnf.jkt`,
    /// the session's jkt), is refused without a proof, with a proof by another key, for
    /// another method or URL, without `ath`, or replayed; a fresh proof by its key passes.
    #[pg_test]
    fn a_dpop_token_works_only_with_a_fresh_proof_by_its_key() {
        for (i, alg) in [JwtAlg::ES256, JwtAlg::EdDSA, JwtAlg::RS256, JwtAlg::PS256]
            .into_iter()
            .enumerate()
        {
            for format in ["jwt", "opaque"] {
                let id = format!("dpop{i}{format}");
                setup(&id, format, alg);
                let key = client_key(alg);
                let thief = client_key(alg);
                let issued = issue(&id, Some(&proof(&key, "POST", TOKEN_URL, None))).unwrap();
                assert_eq!(issued["token_type"], "DPoP", "{alg:?} {format}");
                let token = issued["access_token"].as_str().unwrap();
                let jkt: String = Spi::get_one_with_args(
                    "SELECT jkt FROM oauth.session WHERE client_id = $1",
                    &[id.as_str().into()],
                )
                .unwrap()
                .unwrap();
                let introspected =
                    run_json("SELECT oauth.auth_introspect($1)", vec![token.into()]).unwrap();
                assert_eq!(introspected["token_type"], "DPoP");
                assert_eq!(introspected["cnf"]["jkt"], jkt.as_str());

                refused(
                    run_json("SELECT oauth.auth_verify($1)", vec![token.into()]),
                    "invalid_token: the access token is DPoP-bound",
                );
                refused(verify(token, None, "GET", RESOURCE), "DPoP-bound");
                let by_thief = proof(&thief, "GET", RESOURCE, Some(token));
                refused(
                    verify(token, Some(&by_thief), "GET", RESOURCE),
                    "invalid_dpop_proof: the DPoP proof is not signed by the key",
                );
                let for_post = proof(&key, "POST", RESOURCE, Some(token));
                refused(
                    verify(token, Some(&for_post), "GET", RESOURCE),
                    "is for method \"POST\", not GET",
                );
                let elsewhere = proof(&key, "GET", "https://api.example/other", Some(token));
                refused(
                    verify(token, Some(&elsewhere), "GET", RESOURCE),
                    "not this URL",
                );
                let no_ath = proof(&key, "GET", RESOURCE, None);
                refused(verify(token, Some(&no_ath), "GET", RESOURCE), "ath");

                let good = proof(&key, "GET", RESOURCE, Some(token));
                // The URL is compared without its query, in normal form (RFC 9449 §4.3).
                let claims = verify(
                    token,
                    Some(&good),
                    "GET",
                    "HTTPS://API.example:443/items?x=1",
                )
                .unwrap();
                assert_eq!(claims["cnf"]["jkt"], jkt.as_str());
                refused(
                    verify(token, Some(&good), "GET", RESOURCE),
                    "already used (jti replay)",
                );
            }
        }
    }

    /// What the token endpoint refuses: proofs that are not DPoP proofs by a public key, are
    /// for another URL, too old, or replayed; and a client that must use DPoP without one.
    #[pg_test]
    fn the_token_endpoint_refuses_bad_proofs() {
        setup("strict", "jwt", JwtAlg::ES256);
        let key = client_key(JwtAlg::ES256);
        let cases = bad_proofs(&key);
        for (bad, expected) in &cases {
            refused(issue("strict", Some(bad)), expected);
        }
        let once = proof(&key, "POST", TOKEN_URL, None);
        issue("strict", Some(&once)).unwrap();
        refused(issue("strict", Some(&once)), "already used (jti replay)");
        // Without a proof a client gets a bearer token, unless it must use DPoP.
        assert_eq!(issue("strict", None).unwrap()["token_type"], "Bearer");
        Spi::run("UPDATE oauth.client SET dpop_bound_access_tokens = true WHERE id = 'strict'")
            .unwrap();
        refused(
            issue("strict", None),
            "invalid_dpop_proof: this client's tokens must be DPoP-bound",
        );
        let fresh = proof(&key, "POST", TOKEN_URL, None);
        assert_eq!(issue("strict", Some(&fresh)).unwrap()["token_type"], "DPoP");
        let metadata = run_json("SELECT oauth.auth_metadata()", vec![]).unwrap();
        assert_eq!(
            metadata["dpop_signing_alg_values_supported"],
            json!(["ES256", "EdDSA", "Ed25519", "RS256", "PS256"])
        );
    }

    /// Proofs the token endpoint must refuse, each with (part of) the reason it gives.
    fn bad_proofs(key: &ClientKey) -> Vec<(String, &'static str)> {
        let claims = |iat: i64| json!({ "jti": uuid::Uuid::new_v4().to_string(), "htm": "POST", "htu": TOKEN_URL, "iat": iat });
        let header =
            |typ: &str, alg: &str, jwk: &Value| json!({ "typ": typ, "alg": alg, "jwk": jwk });
        vec![
            (
                jws(key, header("JWT", "ES256", &key.jwk), claims(now())),
                "typ must be dpop+jwt",
            ),
            (
                jws(key, header("dpop+jwt", "HS256", &key.jwk), claims(now())),
                "are not accepted",
            ),
            (
                jws(
                    key,
                    json!({ "typ": "dpop+jwt", "alg": "ES256" }),
                    claims(now()),
                ),
                "needs the public key",
            ),
            (
                jws(
                    key,
                    header(
                        "dpop+jwt",
                        "ES256",
                        &json!({ "kty": "EC", "crv": "P-256", "x": key.jwk["x"], "y": key.jwk["y"], "d": key.jwk["x"] }),
                    ),
                    claims(now()),
                ),
                "must be a public key",
            ),
            (
                jws(
                    key,
                    header("dpop+jwt", "ES256", &client_key(JwtAlg::ES256).jwk),
                    claims(now()),
                ),
                "signature does not verify",
            ),
            (
                jws(key, header("dpop+jwt", "EdDSA", &key.jwk), claims(now())),
                "does not fit its alg",
            ),
            (
                jws(
                    key,
                    header("dpop+jwt", "ES256", &key.jwk),
                    claims(now() - 120),
                ),
                "older than 10 seconds",
            ),
            (
                jws(
                    key,
                    header("dpop+jwt", "ES256", &key.jwk),
                    claims(now() + 120),
                ),
                "in the future",
            ),
            (
                proof(key, "POST", "https://as.example/rpc/revoke", None),
                "not this URL",
            ),
            ("not.a.proof".to_owned(), "invalid_dpop_proof"),
        ]
    }

    /// The memory of used proofs is bounded: a bucket holds 64 live proofs, the next one is
    /// refused as busy (never accepted by dropping a live one, which would let it be replayed),
    /// and room comes back as proofs age out.
    #[pg_test]
    fn the_replay_memory_is_bounded_and_never_forgets_a_live_proof() {
        let jkt = format!("test-{}", uuid::Uuid::new_v4());
        // A day ahead: the proofs other tests left are all past their windows then.
        let now_us = crate::pg::backend::now_micros() + 86_400_000_000;
        let until_us = now_us + 60_000_000;
        // jtis that fall in one bucket (the bucket is a function of jkt and jti).
        let target = bucket(&jkt, "0");
        let same: Vec<String> = (1..)
            .map(|n: u64| n.to_string())
            .filter(|jti| bucket(&jkt, jti) == target)
            .take(65)
            .collect();
        assert_eq!(spend(&jkt, "0", until_us, now_us), Spent::Fresh);
        for jti in &same[..63] {
            assert_eq!(spend(&jkt, jti, until_us, now_us), Spent::Fresh);
        }
        assert_eq!(spend(&jkt, "0", until_us, now_us), Spent::Replayed);
        // Full until the first window ends: at the second after until_us.
        let ends_us = (until_us / 1_000_000 + 1) * 1_000_000;
        let full = Spent::Full {
            next_free_us: ends_us,
        };
        assert_eq!(spend(&jkt, &same[63], until_us, now_us), full);
        assert_eq!(spend(&jkt, &same[63], until_us, ends_us - 1), full);
        // Once the window has passed, the same proofs are room again.
        let later = ends_us + 60_000_000;
        assert_eq!(spend(&jkt, &same[64], later, ends_us), Spent::Fresh);
        assert_eq!(spend(&jkt, "0", later, ends_us), Spent::Fresh);
    }

    fn bucket(jkt: &str, jti: &str) -> usize {
        crate::pg::shmem::dpop::bucket(jkt, jti)
    }
}
