/*
 * The layout of PostgreSQL 18's validator interface as the server's own headers define it:
 * sizes and member offsets, printed for tests/harness/tests/login.rs to compare with the
 * declarations in src/pg/validator_abi.rs.
 */
#include "postgres.h"

#include <stddef.h>

#include <stdio.h>

#include "libpq/hba.h"
#include "libpq/libpq-be.h"
#include "libpq/oauth.h"

/* port.h redirects printf to libpgport's; this program links nothing of the server. */
#undef printf

#define SIZE(s) printf("%s %zu\n", #s, sizeof(s))
#define MEMBER(s, m) printf("%s.%s %zu\n", #s, #m, offsetof(s, m))

int
main(void)
{
	SIZE(ValidatorModuleState);
	MEMBER(ValidatorModuleState, sversion);
	MEMBER(ValidatorModuleState, private_data);
	SIZE(ValidatorModuleResult);
	MEMBER(ValidatorModuleResult, authorized);
	MEMBER(ValidatorModuleResult, authn_id);
	MEMBER(Port, user_name);
	MEMBER(Port, hba);
	SIZE(HbaLine);
	MEMBER(HbaLine, auth_method);
	MEMBER(HbaLine, usermap);
	MEMBER(HbaLine, oauth_issuer);
	MEMBER(HbaLine, oauth_scope);
	MEMBER(HbaLine, oauth_validator);
	MEMBER(HbaLine, oauth_skip_usermap);
	SIZE(OAuthValidatorCallbacks);
	MEMBER(OAuthValidatorCallbacks, magic);
	MEMBER(OAuthValidatorCallbacks, startup_cb);
	MEMBER(OAuthValidatorCallbacks, shutdown_cb);
	MEMBER(OAuthValidatorCallbacks, validate_cb);
	printf("PG_OAUTH_VALIDATOR_MAGIC %u\n", (unsigned) PG_OAUTH_VALIDATOR_MAGIC);
	return 0;
}
