/*
 * A service that logs in to PostgreSQL 18 with a pg_oauth token, through libpq's own hook
 * (PQsetAuthDataHook, PQAUTHDATA_OAUTH_BEARER_TOKEN): no password anywhere.
 *
 *   oauth_login '<conninfo with oauth_issuer and oauth_client_id>' [repeat | -]
 *
 * The token comes from the environment: PG_OAUTH_TOKEN, or, when PG_OAUTH_TOKEN_CONNINFO is
 * set, from pg_oauth itself over that connection (oauth.auth_token with PG_OAUTH_CLIENT_ID,
 * PG_OAUTH_CLIENT_SECRET and PG_OAUTH_AUDIENCE, the client-credentials grant). It prints
 * current_user and system_user, or libpq's error and exits 2. With `repeat`, it connects that
 * many times and prints the mean connection time in microseconds (make bench). With `-`,
 * it logs in once with each line of standard input as the token and prints how many logins
 * were accepted and refused (the tests' flood of garbage).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

static char *token;

static int
hook(PGauthData type, PGconn *conn, void *data)
{
	if (type == PQAUTHDATA_OAUTH_BEARER_TOKEN)
	{
		PGoauthBearerRequest *request = data;

		/* libpq copies it. */
		request->token = token;
		return 1;
	}
	return PQdefaultAuthDataHook(type, conn, data);
}

/* A token from pg_oauth's SQL API: what a service does when it reaches the database anyway. */
static char *
fetch_token(const char *conninfo)
{
	const char *params[4] = {
		getenv("PG_OAUTH_CLIENT_ID"), getenv("PG_OAUTH_CLIENT_SECRET"),
		getenv("PG_OAUTH_AUDIENCE"), getenv("PG_OAUTH_SCOPE")
	};
	PGconn	   *conn = PQconnectdb(conninfo);
	PGresult   *res;
	char	   *result;

	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "token connection: %s", PQerrorMessage(conn));
		exit(3);
	}
	res = PQexecParams(conn,
					   "SELECT oauth.auth_token('client_credentials', $1, $2, $4, $3) ->> 'access_token'",
					   4, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		fprintf(stderr, "auth_token: %s", PQerrorMessage(conn));
		exit(3);
	}
	result = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(conn);
	return result;
}

/* One login per line of standard input. */
static int
flood(const char *conninfo)
{
	static char line[1 << 16];
	long		accepted = 0,
				refused = 0;

	while (fgets(line, sizeof(line), stdin))
	{
		PGconn	   *conn;

		line[strcspn(line, "\n")] = '\0';
		token = line;
		conn = PQconnectdb(conninfo);
		if (PQstatus(conn) == CONNECTION_OK)
			accepted++;
		else
			refused++;
		PQfinish(conn);
	}
	printf("accepted %ld refused %ld\n", accepted, refused);
	return 0;
}

int
main(int argc, char **argv)
{
	int			repeat = argc > 2 ? atoi(argv[2]) : 0;
	PGconn	   *conn;
	PGresult   *res;

	if (argc < 2)
	{
		fprintf(stderr, "usage: %s conninfo [repeat]\n", argv[0]);
		return 1;
	}
	if (getenv("PG_OAUTH_TOKEN_CONNINFO"))
		token = fetch_token(getenv("PG_OAUTH_TOKEN_CONNINFO"));
	else if (getenv("PG_OAUTH_TOKEN"))
		token = strdup(getenv("PG_OAUTH_TOKEN"));
	PQsetAuthDataHook(hook);

	if (argc > 2 && strcmp(argv[2], "-") == 0)
		return flood(argv[1]);
	if (repeat > 0)
	{
		struct timespec start, end;

		clock_gettime(CLOCK_MONOTONIC, &start);
		for (int i = 0; i < repeat; i++)
		{
			conn = PQconnectdb(argv[1]);
			if (PQstatus(conn) != CONNECTION_OK)
			{
				fprintf(stderr, "%s", PQerrorMessage(conn));
				return 2;
			}
			PQfinish(conn);
		}
		clock_gettime(CLOCK_MONOTONIC, &end);
		printf("%.1f\n", ((end.tv_sec - start.tv_sec) * 1e6 + (end.tv_nsec - start.tv_nsec) / 1e3) / repeat);
		return 0;
	}

	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "%s", PQerrorMessage(conn));
		return 2;
	}
	res = PQexec(conn, "SELECT current_user, system_user");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		fprintf(stderr, "%s", PQerrorMessage(conn));
		return 2;
	}
	printf("%s %s\n", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
	PQclear(res);
	PQfinish(conn);
	return 0;
}
