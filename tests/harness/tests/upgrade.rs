//! Upgrades: `ALTER EXTENSION pg_oauth UPDATE` from every released version (the frozen
//! install scripts in sql/released/) reaches exactly the schema a fresh install of the
//! current version has, and keeps clients, policies, sessions and keys working. For the
//! current version itself, the frozen script must still produce that schema: a released
//! script is never edited (change the version and add sql/pg_oauth--A--B.sql instead).

use std::path::{Path, PathBuf};
use std::process::Command;

use pg_oauth_harness::{is_root, json, pg_config, postgres, repo_root, Cluster};
use serde_json::Value;

fn current_version() -> String {
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("version in Cargo.toml")
        .to_owned()
}

fn extension_dir() -> PathBuf {
    pg_config("--sharedir").join("extension")
}

/// Copy into the server's extension directory (root, or sudo like `make install`).
fn install_file(from: &Path, to: &Path) {
    let status = if is_root() {
        Command::new("cp").arg(from).arg(to).status()
    } else {
        Command::new("sudo").arg("cp").arg(from).arg(to).status()
    };
    assert!(
        status.is_ok_and(|s| s.success()),
        "cp {} {}",
        from.display(),
        to.display()
    );
}

/// Released versions, oldest first (their frozen install scripts).
fn released() -> Vec<(String, PathBuf)> {
    let mut versions: Vec<(Vec<u32>, String, PathBuf)> =
        std::fs::read_dir(repo_root().join("sql/released"))
            .expect("sql/released")
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let version = name
                    .strip_prefix("pg_oauth--")?
                    .strip_suffix(".sql")?
                    .to_owned();
                let key = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
                Some((key, version, e.path()))
            })
            .collect();
    versions.sort();
    versions.into_iter().map(|(_, v, p)| (v, p)).collect()
}

/// Everything about schema oauth that an upgrade must get right, one sorted line each.
fn fingerprint(db: &mut postgres::Client) -> Vec<String> {
    let sql = "
      SELECT coalesce(line, 'a NULL line') FROM (
      SELECT 'function ' || p.oid::regprocedure::text || ' returns ' || pg_get_function_result(p.oid)
             || ' lang ' || l.lanname || ' vol ' || p.provolatile::text || ' par ' || p.proparallel::text
             || ' strict ' || p.proisstrict || ' secdef ' || p.prosecdef
             || ' config ' || coalesce(array_to_string(p.proconfig, ','), '')
             || ' acl ' || coalesce(array_to_string(p.proacl, ','), '')
             || ' args ' || pg_get_function_arguments(p.oid)
             || ' src ' || CASE WHEN l.lanname = 'c' THEN p.prosrc ELSE md5(p.prosrc) END
        FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
       WHERE p.pronamespace = 'oauth'::regnamespace
      UNION ALL
      SELECT 'relation ' || c.relname || ' kind ' || c.relkind::text
             || ' acl ' || coalesce(array_to_string(c.relacl, ','), '')
             || ' options ' || coalesce(array_to_string(c.reloptions, ','), '')
        FROM pg_class c WHERE c.relnamespace = 'oauth'::regnamespace
      UNION ALL
      SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
             || ' notnull ' || a.attnotnull || ' default ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
             || ' identity ' || a.attidentity::text
             || ' acl ' || coalesce(array_to_string(a.attacl, ','), '')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE c.relnamespace = 'oauth'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
      UNION ALL
      SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'oauth'::regnamespace
      UNION ALL
      SELECT 'index ' || pg_get_indexdef(indexrelid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
       WHERE c.relnamespace = 'oauth'::regnamespace
      UNION ALL
      SELECT 'trigger ' || pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
       WHERE c.relnamespace = 'oauth'::regnamespace AND NOT t.tgisinternal
      UNION ALL
      SELECT 'view ' || c.relname || ' ' || md5(pg_get_viewdef(c.oid))
        FROM pg_class c WHERE c.relnamespace = 'oauth'::regnamespace AND c.relkind = 'v'
      UNION ALL
      SELECT 'member ' || pg_describe_object(classid, objid, objsubid)
        FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
       WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND e.extname = 'pg_oauth'
      UNION ALL
      SELECT 'schema acl ' || coalesce(array_to_string(nspacl, ','), '')
        FROM pg_namespace WHERE nspname = 'oauth'
      UNION ALL
      SELECT 'config dump ' || coalesce(extconfig::regclass[]::text, '') || ' where '
             || coalesce(extcondition::text, '')
        FROM pg_extension WHERE extname = 'pg_oauth'
      UNION ALL
      SELECT 'description ' || pg_describe_object(d.classoid, d.objoid, d.objsubid) || ' '
             || md5(d.description)
        FROM pg_description d
       WHERE (d.classoid = 'pg_proc'::regclass
              AND d.objoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'oauth'::regnamespace))
          OR (d.classoid = 'pg_class'::regclass
              AND d.objoid IN (SELECT oid FROM pg_class WHERE relnamespace = 'oauth'::regnamespace))
      ) AS f(line) ORDER BY 1";
    db.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// Functions, tables, views, sequences and columns of schema oauth with no description
/// (`\df+` and `\d+` would explain nothing).
fn undescribed(db: &mut postgres::Client) -> Vec<String> {
    let sql = "
      SELECT what FROM (
        SELECT 'function ' || p.oid::regprocedure::text
          FROM pg_proc p
         WHERE p.pronamespace = 'oauth'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL
        UNION ALL
        SELECT 'relation ' || c.relname
          FROM pg_class c
         WHERE c.relnamespace = 'oauth'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S')
           AND obj_description(c.oid, 'pg_class') IS NULL
           -- an identity column's sequence is the column's business
           AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                              AND d.objid = c.oid AND d.deptype = 'i')
        UNION ALL
        SELECT 'column ' || c.relname || '.' || a.attname
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         WHERE c.relnamespace = 'oauth'::regnamespace AND c.relkind IN ('r', 'p', 'v')
           AND NOT c.relispartition -- a partition's columns are its table's
           AND a.attnum > 0 AND NOT a.attisdropped AND col_description(c.oid, a.attnum) IS NULL
      ) AS u(what) ORDER BY 1";
    db.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

fn assert_same_schema(upgraded: &[String], fresh: &[String], what: &str) {
    let missing: Vec<&String> = fresh.iter().filter(|l| !upgraded.contains(l)).collect();
    let extra: Vec<&String> = upgraded.iter().filter(|l| !fresh.contains(l)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: the schema differs from a fresh install\nmissing:\n{}\nextra:\n{}",
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        extra
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Data every release must carry across an upgrade, made with that release's functions.
fn populate(db: &mut postgres::Client) -> Vec<Value> {
    db.batch_execute(
        "DO $$ BEGIN CREATE ROLE upgrade_role NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         INSERT INTO oauth.client (id, secret, scope, token_format, refresh_token)
              VALUES ('up-opaque', 'up-secret', '{read}', 'opaque', true),
                     ('up-jwt', 'up-secret', '{read}', 'jwt', false);
         INSERT INTO oauth.policy (client_id, role) VALUES ('up-jwt', 'upgrade_role');",
    )
    .unwrap();
    ["up-opaque", "up-jwt"]
        .iter()
        .map(|c| {
            json(
                db,
                "SELECT oauth.auth_token('client_credentials', $1, 'up-secret')",
                &[c],
            )
        })
        .collect()
}

fn still_works(db: &mut postgres::Client, tokens: &[Value], what: &str) {
    let clients: i64 = db
        .query_one(
            "SELECT count(*) FROM oauth.client WHERE id LIKE 'up-%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(clients, 2, "{what}: clients");
    let role: String = db
        .query_one(
            "SELECT role FROM oauth.policy WHERE client_id = 'up-jwt'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(role, "upgrade_role", "{what}: policy");
    for t in tokens {
        let claims = json(
            db,
            "SELECT oauth.auth_verify($1)",
            &[&t["access_token"].as_str().unwrap()],
        );
        assert_eq!(claims["scope"], "read", "{what}: a session from before");
    }
    // The secret hashes, the keys and the refresh grant carried over too.
    json(
        db,
        "SELECT oauth.auth_token('client_credentials', 'up-jwt', 'up-secret')",
        &[],
    );
    json(
        db,
        "SELECT oauth.auth_token('refresh_token', 'up-opaque', 'up-secret', refresh_token => $1)",
        &[&tokens[0]["refresh_token"].as_str().unwrap()],
    );
}

#[test]
fn every_release_upgrades_to_the_current_schema_and_keeps_its_data() {
    let current = current_version();
    let releases = released();
    assert!(!releases.is_empty(), "sql/released holds no release");
    let cluster = Cluster::start("upgrade", &[]);
    let issuer = [("pg_oauth.issuer", "https://issuer.upgrade")];
    let mut fresh = cluster.create_db_with("fresh", &issuer);
    let expected = fingerprint(&mut fresh);
    assert!(expected.len() > 100, "the fingerprint covers too little");
    assert_eq!(
        undescribed(&mut fresh),
        Vec::<String>::new(),
        "objects of schema oauth without a COMMENT (add one to the block at the end of \
         sql/finalize.sql and of the upgrade scripts)"
    );

    let ext = extension_dir();
    for (i, (version, frozen)) in releases.iter().enumerate() {
        let db_name = format!("from_{}", version.replace('.', "_"));
        let generated = ext.join(format!("pg_oauth--{version}.sql"));
        // The current version's generated script is in place: put the frozen one there
        // for this CREATE EXTENSION, and the generated one back afterwards (even if the
        // install fails).
        struct Restore(Option<(PathBuf, PathBuf)>);
        impl Drop for Restore {
            fn drop(&mut self) {
                if let Some((copy, generated)) = self.0.take() {
                    install_file(&copy, &generated);
                }
            }
        }
        let restore = Restore((*version == current).then(|| {
            let copy = cluster.dir.join("generated.sql");
            std::fs::copy(&generated, &copy).expect("keep the generated script");
            (copy, generated.clone())
        }));
        install_file(frozen, &generated);
        cluster
            .connect("postgres")
            .batch_execute(&format!("CREATE DATABASE {db_name}"))
            .unwrap();
        let mut db = cluster.connect(&db_name);
        db.batch_execute(&format!(
            "ALTER DATABASE {db_name} SET pg_oauth.issuer = 'https://issuer.upgrade';
             CREATE EXTENSION pg_oauth VERSION '{version}';"
        ))
        .unwrap_or_else(|e| panic!("install {version}: {e}"));
        drop(restore);
        drop(db);
        let mut db = cluster.connect(&db_name);
        let tokens = populate(&mut db);

        db.batch_execute("ALTER EXTENSION pg_oauth UPDATE")
            .unwrap_or_else(|e| panic!("update from {version}: {e}"));
        let installed: String = db
            .query_one(
                "SELECT extversion FROM pg_extension WHERE extname = 'pg_oauth'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(installed, current, "from {version}");
        drop(db);
        let mut db = cluster.connect(&db_name);
        assert_same_schema(&fingerprint(&mut db), &expected, &format!("from {version}"));
        still_works(&mut db, &tokens, &format!("from {version}"));
        println!(
            "release {} of {}: {version} -> {current} ok",
            i + 1,
            releases.len()
        );
    }
}

/// Released SQL is frozen: the install script of every release and every upgrade script
/// between releases match `sql/released/SHA256SUMS`, and each of them is listed there. A
/// change to the SQL surface goes into the upgrade script of the version in development.
#[test]
fn released_sql_never_changes() {
    let root = repo_root();
    let sums = std::fs::read_to_string(root.join("sql/released/SHA256SUMS")).unwrap();
    let listed: Vec<&str> = sums
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    let releases: Vec<String> = released().into_iter().map(|(v, _)| v).collect();
    let mut must_be_listed: Vec<String> = releases
        .iter()
        .map(|v| format!("sql/released/pg_oauth--{v}.sql"))
        .collect();
    // An upgrade script is released once its target version is.
    for entry in std::fs::read_dir(root.join("sql")).unwrap().flatten() {
        let name = entry.file_name().into_string().unwrap();
        let Some(versions) = name
            .strip_prefix("pg_oauth--")
            .and_then(|n| n.strip_suffix(".sql"))
        else {
            continue;
        };
        if let Some((_, to)) = versions.split_once("--") {
            if releases.iter().any(|r| r == to) {
                must_be_listed.push(format!("sql/{name}"));
            }
        }
    }
    for file in &must_be_listed {
        assert!(
            listed.contains(&file.as_str()),
            "{file} is released but not in sql/released/SHA256SUMS"
        );
    }
    let check = Command::new("sha256sum")
        .args(["--check", "--strict", "sql/released/SHA256SUMS"])
        .current_dir(&root)
        .output()
        .expect("sha256sum");
    assert!(
        check.status.success(),
        "a released SQL script changed (released scripts are frozen; put the change in the \
         upgrade script of the version in development):\n{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(
        !releases.contains(&current_version()),
        "the version in Cargo.toml ({}) is already released: start the next one",
        current_version()
    );
}

/// What every object of schema oauth lets `role` do: table, column, sequence, function and
/// schema privileges, one line each.
fn reachable(db: &mut postgres::Client, role: &str) -> Vec<String> {
    let sql = "
      SELECT what FROM (
        SELECT 'table ' || c.relname || ' ' || p AS what
          FROM pg_class c CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE',
                                                  'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p
         WHERE c.relnamespace = 'oauth'::regnamespace AND c.relkind IN ('r', 'p', 'v')
           AND has_table_privilege($1, c.oid, p)
        UNION ALL
        SELECT 'column ' || c.relname || '.' || a.attname || ' ' || p
          FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
         CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE']) AS p
         WHERE c.relnamespace = 'oauth'::regnamespace AND c.relkind IN ('r', 'p', 'v')
           AND NOT a.attisdropped AND has_column_privilege($1, c.oid, a.attnum, p)
        UNION ALL
        SELECT 'sequence ' || c.relname || ' ' || p
          FROM pg_class c CROSS JOIN unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) AS p
         WHERE c.relnamespace = 'oauth'::regnamespace AND c.relkind = 'S'
           AND has_sequence_privilege($1, c.oid, p)
        UNION ALL
        SELECT 'function ' || p.oid::regprocedure::text
          FROM pg_proc p
         WHERE p.pronamespace = 'oauth'::regnamespace AND has_function_privilege($1, p.oid, 'EXECUTE')
        UNION ALL
        SELECT 'schema oauth ' || p FROM unnest(ARRAY['CREATE', 'USAGE']) AS p
         WHERE has_schema_privilege($1, 'oauth', p)
      ) AS r ORDER BY 1";
    db.query(sql, &[&role])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// The installing superuser's default privileges apply to objects CREATE EXTENSION makes: a
/// `reporting` role granted SELECT on new tables and EXECUTE on new functions would read the
/// secret hashes, the private signing keys and postgrest_pre_config(). Every ACL of schema
/// oauth is set explicitly, at install and by the upgrade (which also repairs an existing
/// install and keeps grants made since), so such a role reaches only what PUBLIC does.
#[test]
fn default_privileges_hand_out_nothing_at_install_or_upgrade() {
    let cluster = Cluster::start("default-privileges", &[]);
    let mut admin = cluster.connect("postgres");
    admin
        .batch_execute(
            "CREATE ROLE reporting LOGIN;
             CREATE ROLE auditor LOGIN;
             CREATE ROLE nobody LOGIN;",
        )
        .unwrap();
    // Default privileges are per database: set in template1, every new database has them.
    cluster
        .connect("template1")
        .batch_execute(
            "ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO reporting;
             ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC;
             ALTER DEFAULT PRIVILEGES GRANT ALL ON SEQUENCES TO reporting;
             ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO reporting;
             ALTER DEFAULT PRIVILEGES GRANT ALL ON SCHEMAS TO reporting;",
        )
        .unwrap();
    let defaults: i64 = cluster
        .connect("template1")
        .query_one("SELECT count(*) FROM pg_default_acl", &[])
        .unwrap()
        .get(0);
    assert_eq!(defaults, 4);
    let mut fresh = cluster.create_db("fresh");
    fresh
        .batch_execute(
            "INSERT INTO oauth.client (id, secret, token_format) VALUES ('dp', 'up-secret', 'jwt');",
        )
        .unwrap();
    let public = reachable(&mut fresh, "nobody");
    assert!(
        public
            .iter()
            .all(|p| !p.contains("secret") && !p.contains("private_key")),
        "{public:?}"
    );
    assert_eq!(
        reachable(&mut fresh, "reporting"),
        public,
        "a fresh install"
    );
    let mut as_reporting = cluster.connect_as("fresh", "reporting");
    for sql in [
        "SELECT secret FROM oauth.client",
        "SELECT private_key FROM oauth.signing_key",
        "SELECT oauth.postgrest_pre_config()",
        "CREATE TABLE oauth.planted (x int)",
    ] {
        let (code, _) = pg_oauth_harness::expect_error(&mut as_reporting, sql, &[]);
        assert_eq!(code, "42501", "{sql}");
    }

    // Installs made before 0.3.0 had the grants: the upgrade takes them back (with a WARNING
    // naming each) and keeps what a DBA granted since.
    let ext = extension_dir();
    for (version, frozen) in released() {
        let db_name = format!("dp_{}", version.replace('.', "_"));
        install_file(&frozen, &ext.join(format!("pg_oauth--{version}.sql")));
        admin
            .batch_execute(&format!("CREATE DATABASE {db_name}"))
            .unwrap();
        let mut db = cluster.connect(&db_name);
        db.batch_execute(&format!("CREATE EXTENSION pg_oauth VERSION '{version}'"))
            .unwrap();
        let before = reachable(&mut db, "reporting");
        assert!(
            before.contains(&"column client.secret SELECT".to_owned()),
            "{version} as installed: {before:?}"
        );
        db.batch_execute(
            "GRANT SELECT ON oauth.session, oauth.auth_failure, oauth.audit_event TO auditor;
             GRANT UPDATE (revoked_at) ON oauth.session TO auditor;",
        )
        .unwrap();
        db.batch_execute("ALTER EXTENSION pg_oauth UPDATE").unwrap();
        assert_eq!(
            reachable(&mut db, "reporting"),
            public,
            "upgraded from {version}"
        );
        let auditor = reachable(&mut db, "auditor");
        for kept in [
            "table session SELECT",
            "table auth_failure SELECT",
            "table audit_event SELECT",
            "column session.revoked_at UPDATE",
        ] {
            assert!(
                auditor.contains(&kept.to_owned()),
                "a grant made after installing {version} is kept: {kept}"
            );
        }
    }
}
