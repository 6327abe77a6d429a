//! In-database tests of what the console rests on: the console's variant of the role rule
//! (members of oauth_admin allowed, every other privilege still refused) and acting as a role
//! for a while (pg/role.rs): PostgreSQL's privilege checks apply, SET ROLE is refused
//! meanwhile, and the previous user is back afterwards, also after an ERROR.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::pg::role;
    use crate::pg::subxact;

    fn problem(function: &str, role: &str) -> Option<String> {
        Spi::get_one::<String>(&format!("SELECT oauth.{function}('{role}')")).unwrap()
    }

    #[pg_test]
    fn the_console_may_act_as_an_admin_role_and_nothing_more_privileged() {
        Spi::run(
            "CREATE ROLE t_console NOLOGIN IN ROLE oauth_admin;
             CREATE ROLE t_bypass NOLOGIN BYPASSRLS IN ROLE oauth_admin;
             CREATE ROLE t_files NOLOGIN IN ROLE oauth_admin, pg_read_server_files;
             CREATE ROLE t_super SUPERUSER NOLOGIN;",
        )
        .unwrap();
        assert_eq!(problem("console_role_problem", "t_console"), None);
        assert_eq!(problem("console_role_problem", "oauth_admin"), None);
        let policy = problem("policy_role_problem", "t_console").unwrap();
        assert!(policy.contains("administers or calls pg_oauth"), "{policy}");
        for (role, why) in [
            ("t_bypass", "has BYPASSRLS"),
            ("t_files", "pg_read_server_files"),
            ("t_super", "is a superuser"),
            ("nobody_here", "does not exist"),
        ] {
            let found = problem("console_role_problem", role).unwrap_or_default();
            assert!(found.contains(why), "{role}: {found}");
        }
    }

    #[pg_test]
    fn acting_as_a_role_has_its_privileges_only_and_ends() {
        Spi::run("CREATE ROLE t_other NOLOGIN; CREATE ROLE t_actor NOLOGIN IN ROLE t_other")
            .unwrap();
        let before = Spi::get_one::<String>("SELECT current_user::text").unwrap();
        let actor = role::oid_of("t_actor").unwrap();
        let inside = role::as_role(actor, || {
            Spi::get_one::<String>("SELECT current_user::text").unwrap()
        });
        assert_eq!(inside.as_deref(), Some("t_actor"));
        // PostgreSQL's own checks: the role may not read the clients, nor switch roles (not
        // even to one it is a member of, as inside a SECURITY DEFINER function).
        for sql in ["SELECT count(*) FROM oauth.client", "SET ROLE t_other"] {
            let outcome = subxact::attempt(|| {
                role::as_role(actor, || Spi::run(sql).map_err(|e| e.to_string()))
            });
            assert!(outcome.is_err(), "{sql} ran as t_actor");
        }
        let after = Spi::get_one::<String>("SELECT current_user::text").unwrap();
        assert_eq!(after, before);
        assert_eq!(role::oid_of("nobody_here"), None);
    }
}
