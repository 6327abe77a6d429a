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
        let phc = crate::crypto::secret::hash("imported").unwrap();
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
