/* See auth_pw.h. libxcrypt does the bcrypt work: crypt_gensalt_rn("$2b$", cost) draws the
 * salt from the kernel, crypt_rn hashes. Verification re-hashes the password with the
 * stored hash as setting and compares all AUTH_PW_HASH_LEN characters without an early
 * exit, so the time taken does not tell how many leading characters matched. */
#include "core/auth_pw.h"

#include <crypt.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(CRYPT_OUTPUT_SIZE > AUTH_PW_HASH_LEN, "crypt output holds a bcrypt hash");

int auth_pw_cost(long requested)
{
	if (requested < AUTH_PW_COST_MIN || requested > AUTH_PW_COST_MAX)
		return AUTH_PW_COST_DEFAULT;
	return (int)requested;
}

/* Copies password into a NUL-terminated buffer of AUTH_PW_PASSWORD_MAX + 1 bytes.
 * -E2BIG when too long, -EINVAL when it holds a NUL. */
static int auth_pw_cstr(const char *password, size_t len, char buf[AUTH_PW_PASSWORD_MAX + 1])
{
	if (len > AUTH_PW_PASSWORD_MAX)
		return -E2BIG;
	if (len && memchr(password, 0, len))
		return -EINVAL;
	if (len)
		memcpy(buf, password, len);
	buf[len] = 0;
	return 0;
}

/* crypt_rn into a heap scratch area (struct crypt_data is 32 KiB: too big for a small
 * thread stack); copies the result to out. -EIO on failure. */
static int auth_pw_crypt(const char *phrase, const char *setting, char out[AUTH_PW_HASH_LEN + 1])
{
	struct crypt_data *cd = calloc(1, sizeof *cd);
	int rc = -EIO;

	if (!cd)
		return -ENOMEM;
	const char *h = crypt_rn(phrase, setting, cd, sizeof *cd);
	if (h && h[0] != '*' && strlen(h) == AUTH_PW_HASH_LEN) {
		memcpy(out, h, AUTH_PW_HASH_LEN + 1);
		rc = 0;
	}
	explicit_bzero(cd, sizeof *cd);
	free(cd);
	return rc;
}

int auth_pw_hash(const char *password, size_t len, int cost, char out[AUTH_PW_HASH_LEN + 1])
{
	char pw[AUTH_PW_PASSWORD_MAX + 1], salt[CRYPT_GENSALT_OUTPUT_SIZE];
	int rc;

	if (cost < AUTH_PW_COST_MIN || cost > AUTH_PW_COST_MAX)
		return -EINVAL;
	rc = auth_pw_cstr(password, len, pw);
	if (rc)
		return rc;
	/* NULL random bytes: libxcrypt reads them from the kernel itself. */
	if (!crypt_gensalt_rn("$2b$", (unsigned long)cost, NULL, 0, salt, sizeof salt)) {
		rc = -EIO;
		goto fail;
	}
	rc = auth_pw_crypt(pw, salt, out);
fail:
	explicit_bzero(pw, sizeof pw);
	return rc;
}

bool auth_pw_verify(const char *password, size_t len, const char *hash, size_t hash_len)
{
	char pw[AUTH_PW_PASSWORD_MAX + 1], setting[AUTH_PW_HASH_LEN + 1], got[AUTH_PW_HASH_LEN + 1];
	unsigned char diff = 0;

	/* Only "$2?$NN$..." hashes of the exact length: anything else never matches (and is
	 * not handed to crypt, which would accept other algorithms' settings). */
	if (hash_len != AUTH_PW_HASH_LEN || hash[0] != '$' || hash[1] != '2' || hash[3] != '$')
		return false;
	if (memchr(hash, 0, hash_len))
		return false;
	if (auth_pw_cstr(password, len, pw))
		return false;
	memcpy(setting, hash, AUTH_PW_HASH_LEN);
	setting[AUTH_PW_HASH_LEN] = 0;
	int rc = auth_pw_crypt(pw, setting, got);
	explicit_bzero(pw, sizeof pw);
	if (rc)
		return false;
	for (size_t i = 0; i < AUTH_PW_HASH_LEN; i++)
		diff |= (unsigned char)(got[i] ^ setting[i]);
	explicit_bzero(got, sizeof got);
	return diff == 0;
}
