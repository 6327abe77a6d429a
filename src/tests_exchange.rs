//! In-database tests of token exchange (RFC 8693) of pg_oauth's own tokens, through
//! `oauth.auth_token`: what the new token says, that it dies with its subject token, and every
//! refusal (the end-to-end tests drive it over HTTP with a client library none of us wrote).

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use serde_json::Value;

    const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
    const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

    /// `upstream` holds tokens (role exchange_role); `gateway` may exchange them by policy
    /// (delegation, read and write, for https://b.example); `stranger` has the grant but no
    /// policy row; `plain` has no grant.
    fn setup() {
        Spi::run(
            "SET pg_oauth.issuer = 'https://as.example';
             CREATE ROLE exchange_role NOLOGIN;
             INSERT INTO oauth.client (id, secret, scope, token_format, audience)
             VALUES ('upstream', 'verysecret', '{read,write,admin}', 'jwt', '{https://a.example}');
             INSERT INTO oauth.policy (client_id, role) VALUES ('upstream', 'exchange_role');
             INSERT INTO oauth.client (id, secret, scope, token_format, grant_types)
             VALUES ('gateway', 'verysecret', '{}', 'opaque',
                     '{client_credentials,urn:ietf:params:oauth:grant-type:token-exchange}'),
                    ('stranger', 'verysecret', '{}', 'jwt',
                     '{client_credentials,urn:ietf:params:oauth:grant-type:token-exchange}'),
                    ('plain', 'verysecret', '{}', 'jwt', '{client_credentials}');
             INSERT INTO oauth.exchange_policy (client_id, subject_client_id, scope, audience)
             VALUES ('gateway', 'upstream', '{read,write}', '{https://b.example}'),
                    ('gateway', 'gateway', NULL, '{https://c.example}'),
                    ('plain', 'upstream', NULL, NULL);",
        )
        .unwrap();
    }

    fn token(client: &str) -> String {
        let sql = format!("SELECT oauth.auth_token('client_credentials', '{client}', 'verysecret') ->> 'access_token'");
        Spi::get_one::<String>(&sql).unwrap().unwrap()
    }

    /// An exchange by `client`: its response, or the message of the error it raised.
    fn exchange(
        client: &str,
        subject: &str,
        actor: Option<&str>,
        scope: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Value, String> {
        let args = vec![
            EXCHANGE.into(),
            client.into(),
            subject.into(),
            ACCESS_TOKEN.into(),
            actor.into(),
            actor.map(|_| ACCESS_TOKEN).into(),
            scope.into(),
            audience.into(),
        ];
        run_json(
            "SELECT oauth.auth_token($1, $2, 'verysecret', scope => $7, audience => $8,
                                     subject_token => $3, subject_token_type => $4,
                                     actor_token => $5, actor_token_type => $6)",
            args,
        )
    }

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

    fn verify(token: &str) -> Result<Value, String> {
        run_json("SELECT oauth.auth_verify($1)", vec![token.into()])
    }

    fn refused(outcome: Result<Value, String>, expected: &str) {
        match outcome {
            Ok(v) => panic!("accepted ({v}), expected a refusal: {expected}"),
            Err(message) => assert!(
                message.starts_with(expected) || message.contains(expected),
                "refused with {message:?}, expected {expected:?}"
            ),
        }
    }

    /// Delegation: the new token is the gateway's, for the upstream subject, narrowed to what
    /// was asked and the policy allows, acting as the subject's role, no longer-lived, and it
    /// says who acts; exchanged again, the chain nests. Revoking the subject token revokes
    /// both, whatever their format.
    #[pg_test]
    fn an_exchanged_token_narrows_delegates_and_dies_with_its_subject() {
        setup();
        let subject = token("upstream");
        let actor = token("gateway");
        let answer = exchange(
            "gateway",
            &subject,
            Some(&actor),
            Some("read"),
            Some("https://b.example"),
        )
        .unwrap();
        assert_eq!(answer["issued_token_type"], ACCESS_TOKEN);
        assert_eq!(answer["token_type"], "Bearer");
        assert_eq!(answer["scope"], "read");
        assert!(answer.get("refresh_token").is_none());
        assert!(answer["expires_in"].as_i64().unwrap() <= 3600);
        let exchanged = answer["access_token"].as_str().unwrap().to_owned();
        let claims = verify(&exchanged).unwrap();
        assert_eq!(claims["sub"], "upstream");
        assert_eq!(claims["client_id"], "gateway");
        assert_eq!(claims["act"], serde_json::json!({ "sub": "gateway" }));
        assert_eq!(claims["aud"], "https://b.example");
        assert_eq!(claims["role"], "exchange_role");
        let subject_exp = verify(&subject).unwrap()["exp"].as_i64().unwrap();
        assert!(claims["exp"].as_i64().unwrap() <= subject_exp);

        // The exchanged token exchanged again (the gateway's own policy row): the chain nests.
        let again = exchange("gateway", &exchanged, Some(&actor), None, None).unwrap();
        let again = again["access_token"].as_str().unwrap().to_owned();
        let claims = verify(&again).unwrap();
        assert_eq!(claims["sub"], "upstream");
        assert_eq!(
            claims["act"],
            serde_json::json!({ "sub": "gateway", "act": { "sub": "gateway" } })
        );
        assert_eq!(claims["aud"], "https://c.example");

        Spi::run(&format!(
            "UPDATE oauth.session SET revoked_at = now()
              WHERE id = ('{}'::jsonb ->> 'jti')::uuid",
            verify(&subject).unwrap()
        ))
        .unwrap();
        refused(
            verify(&exchanged),
            "invalid_token: access token has been revoked",
        );
        refused(
            verify(&again),
            "invalid_token: access token has been revoked",
        );
        let reasons = Spi::get_one::<i64>(
            "SELECT count(*) FROM oauth.session WHERE revoked_reason = 'subject token revoked'",
        )
        .unwrap();
        assert_eq!(reasons, Some(2));
        refused(
            exchange("gateway", &subject, Some(&actor), None, None),
            "invalid_request: subject_token: access token has been revoked",
        );
        let audited = Spi::get_one::<pgrx::JsonB>(
            "SELECT detail FROM oauth.audit_event
              WHERE event = 'token issued' AND client_id = 'gateway' AND detail ? 'act'
              ORDER BY at LIMIT 1",
        )
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(audited["subject"], "upstream");
        assert_eq!(audited["act"]["sub"], "gateway");
    }

    /// Each refusal, with the error RFC 8693 §2.2.2 (or RFC 6749 §5.2) gives it.
    #[pg_test]
    fn every_exchange_the_policy_does_not_allow_is_refused() {
        setup();
        let subject = token("upstream");
        let actor = token("gateway");
        let ok = |scope, audience| exchange("gateway", &subject, Some(&actor), scope, audience);
        refused(ok(Some("admin"), None), "invalid_scope: scope \"admin\"");
        refused(ok(Some("delete"), None), "invalid_scope: scope \"delete\"");
        refused(
            ok(None, Some("https://a.example")),
            "invalid_target: audience \"https://a.example\"",
        );
        // No policy row, no grant, impersonation not allowed, another client's actor token.
        refused(
            exchange("stranger", &subject, Some(&token("stranger")), None, None),
            "unauthorized_client: this client may not exchange tokens issued to \"upstream\"",
        );
        refused(
            exchange("plain", &subject, None, None, None),
            "unauthorized_client: the token exchange grant is not enabled",
        );
        refused(
            exchange("gateway", &subject, None, None, None),
            "unauthorized_client: this client may exchange these tokens only with an actor_token",
        );
        refused(
            exchange("gateway", &subject, Some(&token("upstream")), None, None),
            "invalid_request: actor_token: it was not issued to this client",
        );
    }

    /// Subject and actor tokens that are not ones, and types that are not supported:
    /// invalid_request (RFC 8693 §2.2.2).
    #[pg_test]
    fn tokens_and_types_the_exchange_cannot_take_are_invalid_requests() {
        setup();
        let subject = token("upstream");
        let actor = token("gateway");
        // A subject token that is not one: unknown, tampered with, missing, of no known type.
        refused(
            exchange("gateway", "not-a-token", Some(&actor), None, None),
            "invalid_request: subject_token: malformed access token",
        );
        let tampered = format!("{}x", subject);
        refused(
            exchange("gateway", &tampered, Some(&actor), None, None),
            "invalid_request: subject_token:",
        );
        refused(
            run_json(
                "SELECT oauth.auth_token($1, 'gateway', 'verysecret', subject_token => $2)",
                vec![EXCHANGE.into(), subject.as_str().into()],
            ),
            "invalid_request: the subject_token_type parameter is required",
        );
        refused(
            run_json(
                "SELECT oauth.auth_token($1, 'gateway', 'verysecret')",
                vec![EXCHANGE.into()],
            ),
            "invalid_request: the subject_token parameter is required",
        );
        refused(
            run_json(
                "SELECT oauth.auth_token($1, 'gateway', 'verysecret', subject_token => $2,
                        subject_token_type => 'urn:ietf:params:oauth:token-type:saml2')",
                vec![EXCHANGE.into(), subject.as_str().into()],
            ),
            "invalid_request: subject_token: token type",
        );
        refused(
            run_json(
                "SELECT oauth.auth_token($1, 'gateway', 'verysecret', subject_token => $2,
                        subject_token_type => $3, actor_token => $4, actor_token_type => $3,
                        requested_token_type => 'urn:ietf:params:oauth:token-type:id_token')",
                vec![
                    EXCHANGE.into(),
                    subject.as_str().into(),
                    ACCESS_TOKEN.into(),
                    actor.as_str().into(),
                ],
            ),
            "invalid_request: requested_token_type",
        );
        // Impersonation, where the policy allows it: no act.
        Spi::run(
            "UPDATE oauth.exchange_policy SET impersonation = true WHERE client_id = 'gateway'",
        )
        .unwrap();
        let answer = exchange("gateway", &subject, None, None, None).unwrap();
        let claims = verify(answer["access_token"].as_str().unwrap()).unwrap();
        assert_eq!(claims["sub"], "upstream");
        assert!(claims.get("act").is_none(), "{claims}");
        assert_eq!(claims["scope"], "read write");
    }
}
