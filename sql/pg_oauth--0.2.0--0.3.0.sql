-- pg_oauth 0.2.0 -> 0.3.0. Version 0.3.0 is not released yet: this script grows with it until
-- it is, then it is frozen like the release's install script. It ends with the same
-- description block as sql/finalize.sql (the upgrade test compares them).
\echo Use "ALTER EXTENSION pg_oauth UPDATE" to load this file. \quit
