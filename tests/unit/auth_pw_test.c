/* core/auth_pw: bcrypt through libxcrypt. Known vectors (the $2a$ ones are the classic
 * crypt_blowfish / OpenBSD test vectors, which Go's bcrypt also produces), hash-then-verify
 * at low cost, and etcd's limits: cost range and default, 72-byte passwords. */
#include "core/auth_pw.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

static const struct {
	const char *pw, *hash;
} vectors[] = {
	{ "U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW" },
	{ "U*U*", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK" },
	{ "U*U*U", "$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a" },
	{ "", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy" },
	{ "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
	  "$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui" },
	/* $2b$ is the same function for these passwords */
	{ "U*U", "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW" },
};

Test(auth_pw, known_vectors)
{
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		const char *pw = vectors[i].pw, *h = vectors[i].hash;
		cr_assert(auth_pw_verify(pw, strlen(pw), h, strlen(h)), "vector %zu", i);
		cr_assert_not(auth_pw_verify("U*V", 3, h, strlen(h)), "vector %zu with a wrong password", i);
	}
}

Test(auth_pw, wrong_or_malformed_hashes_never_match)
{
	const char *h = vectors[0].hash;
	char bad[61];
	memcpy(bad, h, 61);
	bad[59] ^= 1;
	cr_assert_not(auth_pw_verify("U*U", 3, bad, 60), "last character changed");
	cr_assert_not(auth_pw_verify("U*U", 3, h, 59), "short");
	cr_assert_not(auth_pw_verify("U*U", 3, "", 0));
	cr_assert_not(auth_pw_verify("U*U", 3, "$1$abcdefgh$0123456789012345678901", 33), "other algorithm");
	memcpy(bad, h, 61);
	bad[4] = 'x';
	cr_assert_not(auth_pw_verify("U*U", 3, bad, 60), "bad cost");
	cr_assert_not(auth_pw_verify("U*U\0x", 5, h, 60), "NUL in the password");
}

Test(auth_pw, hash_then_verify)
{
	char h[AUTH_PW_HASH_LEN + 1], h2[AUTH_PW_HASH_LEN + 1];

	cr_assert_eq(auth_pw_hash("secret", 6, 4, h), 0);
	cr_assert_eq(strlen(h), AUTH_PW_HASH_LEN);
	cr_assert_eq(strncmp(h, "$2b$04$", 7), 0);
	cr_assert(auth_pw_verify("secret", 6, h, AUTH_PW_HASH_LEN));
	cr_assert_not(auth_pw_verify("secreT", 6, h, AUTH_PW_HASH_LEN));
	cr_assert_not(auth_pw_verify("secret", 5, h, AUTH_PW_HASH_LEN));
	cr_assert_eq(auth_pw_hash("secret", 6, 4, h2), 0);
	cr_assert_neq(strcmp(h, h2), 0, "a fresh salt each time");
	cr_assert_eq(auth_pw_hash("", 0, 4, h), 0, "etcd hashes an empty password too");
	cr_assert(auth_pw_verify("", 0, h, AUTH_PW_HASH_LEN));
}

Test(auth_pw, default_cost_hash)
{
	char h[AUTH_PW_HASH_LEN + 1];
	cr_assert_eq(auth_pw_hash("pw", 2, AUTH_PW_COST_DEFAULT, h), 0);
	cr_assert_eq(strncmp(h, "$2b$10$", 7), 0);
	cr_assert(auth_pw_verify("pw", 2, h, AUTH_PW_HASH_LEN));
}

Test(auth_pw, limits)
{
	char h[AUTH_PW_HASH_LEN + 1], pw[80];
	memset(pw, 'x', sizeof pw);
	cr_assert_eq(auth_pw_hash(pw, 72, 4, h), 0, "72 bytes is the most");
	cr_assert(auth_pw_verify(pw, 72, h, AUTH_PW_HASH_LEN));
	cr_assert_not(auth_pw_verify(pw, 73, h, AUTH_PW_HASH_LEN), "bcrypt would truncate; Go refuses");
	cr_assert_eq(auth_pw_hash(pw, 73, 4, h), -E2BIG);
	cr_assert_str_eq(AUTH_PW_ERR_TOO_LONG_MSG, "bcrypt: password length exceeds 72 bytes");
	cr_assert_eq(auth_pw_hash("a\0b", 3, 4, h), -EINVAL);
	cr_assert_eq(auth_pw_hash("a", 1, 3, h), -EINVAL);
	cr_assert_eq(auth_pw_hash("a", 1, 32, h), -EINVAL);
}

Test(auth_pw, etcd_cost_flag)
{
	cr_assert_eq(auth_pw_cost(10), 10);
	cr_assert_eq(auth_pw_cost(4), 4);
	cr_assert_eq(auth_pw_cost(31), 31);
	cr_assert_eq(auth_pw_cost(3), AUTH_PW_COST_DEFAULT);
	cr_assert_eq(auth_pw_cost(32), AUTH_PW_COST_DEFAULT);
	cr_assert_eq(auth_pw_cost(-1), AUTH_PW_COST_DEFAULT);
}
