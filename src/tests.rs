//! In-database unit tests (`cargo pgrx test`).

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn setup_client(id: &str, columns: &str, values: &str) {
        let (columns, values) = if columns.is_empty() {
            (String::new(), String::new())
        } else {
            (format!(", {columns}"), format!(", {values}"))
        };
        Spi::run(&format!(
            "INSERT INTO oauth.client (id, secret, grant_types, scope{columns}) VALUES ('{id}', 'verysecret', '{{client_credentials}}', '{{read,write}}'{values})"
        ))
        .unwrap();
    }

    /// `auth_token(client_id, secret)` in a subtransaction: whether it issued.
    fn attempt(client_id: &str, secret: &str) -> bool {
        let sql =
            format!("SELECT oauth.auth_token('client_credentials', '{client_id}', '{secret}')");
        matches!(
            crate::pg::subxact::attempt(|| Spi::run(&sql).map_err(|_| ())),
            Ok(Ok(()))
        )
    }

    /// Every failing reading costs the same argon2 work, two verifications, whether the id
    /// exists, has no secret, or is in a rotation's grace period (two hashes to try): the
    /// time of a failure tells nothing of which (it cost one for a client outside a grace
    /// period or an unknown id, two in a grace period).
    #[pg_test]
    fn every_failing_reading_costs_the_same_argon2_work() {
        Spi::run("SET pg_oauth.lockout_threshold = 0").unwrap();
        Spi::run("SET pg_oauth.source_failure_limit = 0").unwrap();
        Spi::run("SET pg_oauth.refusal_delay = 0").unwrap();
        setup_client("plain", "", "");
        setup_client("rotating", "", "");
        Spi::run("SELECT oauth.rotate_client_secret('rotating', interval '1 hour')").unwrap();
        Spi::run("INSERT INTO oauth.client (id) VALUES ('no-secret')").unwrap();
        for id in ["plain", "rotating", "no-secret", "unknown"] {
            let before = crate::crypto::argon2id::argon2_runs();
            assert!(!attempt(id, "wrong-guess"));
            assert_eq!(
                crate::crypto::argon2id::argon2_runs() - before,
                2,
                "argon2 verifications for a wrong guess at {id}"
            );
        }
        let before = crate::crypto::argon2id::argon2_runs();
        assert!(attempt("plain", "verysecret"));
        assert!(crate::crypto::argon2id::argon2_runs() - before <= 1);
    }

    /// Once a source is throttled, the ids it names are read from the table, not the cache,
    /// whether they exist or not: a refusal takes as long either way (a cached known id was
    /// ~50 µs faster than an unknown one).
    #[pg_test]
    fn a_throttled_source_reads_every_id_from_the_table() {
        Spi::run("SET pg_oauth.source_failure_limit = 1").unwrap();
        Spi::run("SET pg_oauth.refusal_delay = 0").unwrap();
        setup_client("known", "", "");
        assert!(attempt("known", "verysecret"), "cached now");
        let before = crate::store::client::uncached_loads();
        assert!(attempt("known", "verysecret"));
        assert_eq!(
            crate::store::client::uncached_loads(),
            before,
            "from the cache"
        );
        assert!(!attempt("nobody-1", "guess"), "the source's one failure");
        for id in ["known", "nobody-2"] {
            let before = crate::store::client::uncached_loads();
            assert!(!attempt(id, "guess"), "{id}: throttled");
            assert_eq!(crate::store::client::uncached_loads(), before + 1, "{id}");
        }
    }

    fn argon2_phc(secret: &str, m: u32, t: u32, p: u32) -> String {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"sixteen-byte-slt").unwrap();
        argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(m, t, p, None).unwrap(),
        )
        .hash_password(secret.as_bytes(), &salt)
        .unwrap()
        .to_string()
    }

    /// Imported hashes are held to about five times our cost (one anonymous wrong guess at
    /// the old cap held the cluster's argon2 slot ~3.4 s), and a costly hash is replaced by
    /// one at our cost when its secret first verifies, the current one or the previous one
    /// of a rotation, whose grace period goes on.
    #[pg_test]
    fn costly_imports_are_capped_and_rehashed_at_first_success() {
        let over = argon2_phc("imported-secret", 65_536, 4, 1);
        let refused = crate::pg::subxact::attempt(|| {
            Spi::run_with_args(
                "INSERT INTO oauth.client (id, secret) VALUES ('too-costly', $1)",
                &[over.as_str().into()],
            )
            .map_err(|_| ())
        });
        assert!(!matches!(refused, Ok(Ok(()))), "an import over the cap");
        let costly = argon2_phc("imported-secret", 65_536, 3, 4);
        let old = argon2_phc("old-secret", 32_768, 2, 1);
        Spi::run_with_args(
            "INSERT INTO oauth.client (id, secret) VALUES ('costly', $1)",
            &[costly.as_str().into()],
        )
        .unwrap();
        Spi::run_with_args(
            "UPDATE oauth.client SET previous_secret = $1,
                    previous_secret_expires_at = '2999-01-01' WHERE id = 'costly'",
            &[old.as_str().into()],
        )
        .unwrap();
        let stored = |column: &str| -> String {
            Spi::get_one::<String>(&format!(
                "SELECT {column} FROM oauth.client WHERE id = 'costly'"
            ))
            .unwrap()
            .unwrap()
        };
        assert!(attempt("costly", "imported-secret"));
        assert!(stored("secret").starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(
            stored("previous_secret"),
            old,
            "the previous one is untouched"
        );
        assert!(attempt("costly", "old-secret"));
        assert!(stored("previous_secret").starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(
            stored("previous_secret_expires_at::text"),
            "2999-01-01 00:00:00+00",
            "the grace period goes on"
        );
        assert!(attempt("costly", "imported-secret"));
        assert!(attempt("costly", "old-secret"));
    }

    /// An error names the place that raised it (api/sql.rs, where auth_token raises), not
    /// error.rs for all: `raise` and `or_raise` pass their caller's location on.
    #[pg_test]
    fn errors_report_the_location_that_raised_them() {
        let file = PgTryBuilder::new(|| {
            Spi::run("SELECT oauth.auth_token('no_such_grant')").unwrap();
            None
        })
        .catch_others(|e| match e {
            pg_sys::panic::CaughtError::PostgresError(r)
            | pg_sys::panic::CaughtError::ErrorReport(r) => Some(r.file().to_owned()),
            pg_sys::panic::CaughtError::RustPanic { ereport, .. } => {
                Some(ereport.file().to_owned())
            }
        })
        .execute();
        // PostgreSQL keeps the file's base name (errstart); the old location was error.rs.
        assert_eq!(file.as_deref(), Some("sql.rs"));
    }

    /// The algorithms and grant types the code knows are exactly those the tables accept:
    /// the lists live in the code (JwtAlg::ALL, metadata::GRANT_TYPES) and in the CHECK
    /// constraints, and this keeps them one list.
    #[pg_test]
    fn check_constraints_accept_exactly_what_the_code_knows() {
        let quoted_in = |constraint: &str| -> std::collections::BTreeSet<String> {
            let def = Spi::get_one_with_args::<String>(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1",
                &[constraint.into()],
            )
            .unwrap()
            .unwrap();
            def.split('\'')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        let algs: std::collections::BTreeSet<String> = crate::crypto::alg::JwtAlg::ALL
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect();
        assert_eq!(quoted_in("jwt_alg_supported"), algs);
        assert_eq!(quoted_in("signing_key_alg_supported"), algs);
        let grants: std::collections::BTreeSet<String> = crate::flow::metadata::GRANT_TYPES
            .iter()
            .map(|g| (*g).to_owned())
            .collect();
        assert_eq!(quoted_in("grant_types_supported"), grants);
    }

    #[pg_test]
    fn secret_is_hashed_on_insert_and_update() {
        setup_client("c1", "", "");
        let stored = Spi::get_one::<String>("SELECT secret FROM oauth.client WHERE id = 'c1'")
            .unwrap()
            .unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        Spi::run("UPDATE oauth.client SET secret = 'other' WHERE id = 'c1'").unwrap();
        let updated = Spi::get_one::<String>("SELECT secret FROM oauth.client WHERE id = 'c1'")
            .unwrap()
            .unwrap();
        assert!(updated.starts_with("$argon2id$"));
        assert_ne!(stored, updated);
    }

    #[pg_test]
    fn imported_phc_string_is_kept() {
        let phc = crate::crypto::argon2id::hash("imported").unwrap();
        Spi::run_with_args(
            "INSERT INTO oauth.client (id, secret) VALUES ('imp', $1)",
            &[phc.as_str().into()],
        )
        .unwrap();
        let stored = Spi::get_one::<String>("SELECT secret FROM oauth.client WHERE id = 'imp'")
            .unwrap()
            .unwrap();
        assert_eq!(stored, phc);
        let token = Spi::get_one::<pgrx::JsonB>(
            "SELECT oauth.auth_token('client_credentials', 'imp', 'imported')",
        )
        .unwrap()
        .unwrap();
        assert_eq!(token.0["token_type"], "Bearer");
    }

    #[pg_test]
    fn issue_verify_revoke_opaque() {
        setup_client("c2", "", "");
        let resp = Spi::get_one::<pgrx::JsonB>(
            "SELECT oauth.auth_token('client_credentials', 'c2', 'verysecret', 'read')",
        )
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(resp["token_type"], "Bearer");
        assert_eq!(resp["expires_in"], 3600);
        assert_eq!(resp["scope"], "read");
        let token = resp["access_token"].as_str().unwrap().to_owned();
        assert_eq!(token.len(), 64);

        let claims = Spi::get_one_with_args::<pgrx::JsonB>(
            "SELECT oauth.auth_verify($1)",
            &[token.as_str().into()],
        )
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(claims["client_id"], "c2");
        assert_eq!(claims["sub"], "c2");
        assert_eq!(claims["scope"], "read");

        let hash_matches = Spi::get_one_with_args::<bool>(
            "SELECT token_hash = sha256(convert_to($1, 'UTF8')) FROM oauth.session WHERE client_id = 'c2'",
            &[token.as_str().into()],
        )
        .unwrap()
        .unwrap();
        assert!(hash_matches, "only the SHA-256 of the token is stored");

        let revoked = Spi::get_one_with_args::<bool>(
            "SELECT oauth.auth_revoke($1)",
            &[token.as_str().into()],
        )
        .unwrap()
        .unwrap();
        assert!(revoked);
        let again = Spi::get_one_with_args::<bool>(
            "SELECT oauth.auth_revoke($1)",
            &[token.as_str().into()],
        )
        .unwrap()
        .unwrap();
        assert!(!again, "revocation is idempotent");
    }

    fn clock_us() -> i64 {
        crate::pg::backend::now_micros()
    }

    fn sleep_until(at_us: i64) {
        let wait = at_us - clock_us();
        if wait > 0 {
            std::thread::sleep(std::time::Duration::from_micros(wait as u64));
        }
    }

    /// An opaque token is live for its whole lifetime whatever the moment of the second it
    /// was issued in, and not a moment longer. (Expiry was compared in whole seconds: a
    /// 1-second token issued late in a second was refused as expired just after the next
    /// second began, a few milliseconds after it was issued.)
    #[pg_test]
    fn an_opaque_token_lives_its_whole_lifetime() {
        setup_client("s1", "token_format, access_token_expiration", "'opaque', 1");
        let issue = || {
            Spi::get_one::<String>(
                "SELECT oauth.auth_token('client_credentials', 's1', 'verysecret')->>'access_token'",
            )
            .unwrap()
            .unwrap()
        };
        let verifies = |token: &str| {
            let sql = format!("SELECT oauth.auth_verify('{token}')");
            matches!(
                crate::pg::subxact::attempt(|| Spi::run(&sql).map_err(|_| ())),
                Ok(Ok(()))
            )
        };
        issue(); // the secret's first verification (argon2) is behind us
        for _ in 0..5 {
            // Issue in the second half of a second, verify just after the next one begins.
            sleep_until((clock_us().div_euclid(1_000_000) + 1) * 1_000_000 + 600_000);
            let token = issue();
            let (issued, expires) = Spi::get_two::<i64, i64>(
                "SELECT (extract(epoch FROM issued_at) * 1000000)::int8,
                        (extract(epoch FROM expires_at) * 1000000)::int8
                   FROM oauth.session WHERE client_id = 's1' ORDER BY issued_at DESC LIMIT 1",
            )
            .unwrap();
            let (issued, expires) = (issued.unwrap(), expires.unwrap());
            let next_second = (issued.div_euclid(1_000_000) + 1) * 1_000_000 + 20_000;
            if next_second + 50_000 >= expires || clock_us() >= next_second {
                continue; // this machine was too slow for the moment wanted: again
            }
            sleep_until(next_second);
            assert!(
                verifies(&token),
                "refused {} ms after issuance, {} ms before its expiry",
                (clock_us() - issued) / 1000,
                (expires - clock_us()) / 1000
            );
            sleep_until(expires + 1_000);
            assert!(!verifies(&token), "accepted after its expiry");
            return;
        }
        panic!("never issued in the second half of a second with time to spare");
    }

    #[pg_test(error = "invalid_token: access token has been revoked")]
    fn revoked_token_fails_verification() {
        setup_client("c3", "", "");
        let token = Spi::get_one::<String>(
            "SELECT oauth.auth_token('client_credentials', 'c3', 'verysecret')->>'access_token'",
        )
        .unwrap()
        .unwrap();
        Spi::run("UPDATE oauth.session SET revoked_at = now() WHERE client_id = 'c3'").unwrap();
        Spi::get_one_with_args::<pgrx::JsonB>(
            "SELECT oauth.auth_verify($1)",
            &[token.as_str().into()],
        )
        .unwrap();
    }

    #[pg_test(error = "invalid_client: client authentication failed")]
    fn wrong_secret_is_invalid_client() {
        setup_client("c4", "", "");
        Spi::run("SELECT oauth.auth_token('client_credentials', 'c4', 'wrong')").unwrap();
    }

    #[pg_test(error = "invalid_client: client authentication failed")]
    fn unknown_client_is_invalid_client() {
        Spi::run("SELECT oauth.auth_token('client_credentials', 'nobody', 'verysecret')").unwrap();
    }

    #[pg_test]
    fn no_scope_grants_all_allowed_scopes() {
        setup_client("c5", "", "");
        let scope = Spi::get_one::<String>(
            "SELECT oauth.auth_token('client_credentials', 'c5', 'verysecret')->>'scope'",
        )
        .unwrap()
        .unwrap();
        assert_eq!(scope, "read write");
    }

    #[pg_test]
    fn policy_role_is_carried_by_tokens() {
        setup_client("c6", "", "");
        Spi::run("CREATE ROLE oauth_test_api NOLOGIN").unwrap();
        Spi::run("INSERT INTO oauth.policy (client_id, role) VALUES ('c6', 'oauth_test_api')")
            .unwrap();
        let role = Spi::get_one::<String>(
            "SELECT oauth.auth_verify(oauth.auth_token('client_credentials', 'c6', 'verysecret')->>'access_token')->>'role'",
        )
        .unwrap()
        .unwrap();
        assert_eq!(role, "oauth_test_api");
    }

    #[pg_test]
    fn deactivating_a_client_revokes_its_sessions() {
        setup_client("c7", "", "");
        Spi::run("SELECT oauth.auth_token('client_credentials', 'c7', 'verysecret')").unwrap();
        Spi::run("UPDATE oauth.client SET active = false WHERE id = 'c7'").unwrap();
        let open = Spi::get_one::<i64>(
            "SELECT count(*) FROM oauth.session WHERE client_id = 'c7' AND revoked_at IS NULL",
        )
        .unwrap()
        .unwrap();
        assert_eq!(open, 0);
    }

    #[pg_test]
    fn create_client_returns_a_working_secret_once() {
        let secret = Spi::get_one::<String>("SELECT oauth.create_client('gen', '{read}')")
            .unwrap()
            .unwrap();
        assert_eq!(secret.len(), 43);
        let stored = Spi::get_one::<String>("SELECT secret FROM oauth.client WHERE id = 'gen'")
            .unwrap()
            .unwrap();
        assert_ne!(stored, secret);
        let resp = Spi::get_one_with_args::<pgrx::JsonB>(
            "SELECT oauth.auth_token('client_credentials', 'gen', $1)",
            &[secret.as_str().into()],
        )
        .unwrap()
        .unwrap();
        assert_eq!(resp.0["scope"], "read");
    }

    #[pg_test(error = "invalid_token: unknown signing key")]
    fn jwt_roundtrip_and_key_cache_invalidation() {
        Spi::run("SET pg_oauth.issuer = 'https://issuer.test'").unwrap();
        setup_client("j1", "token_format, jwt_alg", "'jwt', 'EdDSA'");
        let token = Spi::get_one::<String>(
            "SELECT oauth.auth_token('client_credentials', 'j1', 'verysecret') ->> 'access_token'",
        )
        .unwrap()
        .unwrap();
        assert_eq!(token.split('.').count(), 3);
        let sub = Spi::get_one_with_args::<String>(
            "SELECT oauth.auth_verify($1) ->> 'sub'",
            &[token.as_str().into()],
        )
        .unwrap()
        .unwrap();
        assert_eq!(sub, "j1");
        // The parsed key is cached now; deleting the row must still take effect at once.
        Spi::run("DELETE FROM oauth.signing_key WHERE alg = 'EdDSA'").unwrap();
        Spi::get_one_with_args::<pgrx::JsonB>(
            "SELECT oauth.auth_verify($1)",
            &[token.as_str().into()],
        )
        .unwrap();
    }
}
