/* Auth tokens as etcd 3.5 issues them (--auth-token, --auth-token-ttl). No clock of its
 * own: every call that needs the time takes now_ms (wall clock, ms since the epoch, for
 * JWT "exp"; any monotonic ms count will do for simple tokens), so tests run on a fake one.
 *
 * Simple tokens ("simple"): 16 random letters + "." + the index of the Authenticate
 * request, mapped to the user; a token lives --auth-token-ttl (default 300 s) after its
 * last use (etcd resets the TTL on every use). etcd answers with the CURRENT auth_revision
 * for a simple token (it never goes stale; deleting the user or changing its password
 * drops the user's tokens, disabling auth drops all). The table is bounded (tokens_max):
 * when full, the least recently used token goes (etcd keeps every token; it only warns).
 * Not thread-safe: one owner, or the caller's lock.
 *
 * JWT ("jwt,pub-key=P,priv-key=K,sign-method=M,ttl=D"): RS256/384/512, PS256/384/512,
 * ES256/384/512 with PEM keys (PKCS#1, PKCS#8, SEC1, SubjectPublicKeyInfo), HS256/384/512
 * with the priv-key file's bytes as secret; claims {"exp":…,"revision":…,"username":…} as
 * etcd writes them (Go's JSON: sorted keys, <>& escaped), header {"alg":M,"typ":"JWT"}.
 * Verification follows golang-jwt v4 as etcd 3.5 uses it: three base64url segments, the
 * header's alg must be the configured one, the signature must verify, exp (and nbf, iat
 * when present) must hold, username must be a string and revision a number. A JWT carries
 * its auth_revision: auth_check_revision() then answers "revision of auth store is old"
 * after any auth change, as etcd does. A struct auth_token_jwt is not thread-safe
 * (wolfCrypt RNG, ECC caches): one per thread, or the caller's lock.
 *
 * Not supported (etcd accepts them): certificates as pub-key (Go takes the key out of a
 * "CERTIFICATE" PEM), PSS signatures whose salt is not the hash length (etcd only writes
 * hash-length salts; golang-jwt accepts any), EdDSA (etcd 3.5 refuses it too), and JSON
 * nested deeper than 64 levels inside a token. */
#ifndef UETCD_CORE_AUTH_TOKEN_H
#define UETCD_CORE_AUTH_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/auth.h" /* AUTH_ERR_* */

/* ---- --auth-token ---- */

enum auth_token_type {
	AUTH_TOKEN_NONE,   /* "": etcd's nop provider (Authenticate cannot issue tokens) */
	AUTH_TOKEN_SIMPLE, /* "simple" (options after it are accepted and ignored, as etcd) */
	AUTH_TOKEN_JWT,	   /* "jwt,…" */
};

#define AUTH_TOKEN_PATH_MAX 4096
#define AUTH_TOKEN_JWT_TTL_DEFAULT_NS (300LL * 1000000000LL) /* etcd's DefaultTTL, 5 minutes */

struct auth_token_opts {
	enum auth_token_type type;
	char sign_method[16];		     /* JWT: a method golang-jwt knows (checked) */
	char pub_key[AUTH_TOKEN_PATH_MAX];  /* JWT: file, "" when not given */
	char priv_key[AUTH_TOKEN_PATH_MAX]; /* JWT: file, "" when not given */
	int64_t ttl_ns;			     /* JWT: "ttl" as Go's time.ParseDuration, else the default */
	unsigned unknown;		     /* JWT: options etcd does not know (it warns about them) */
};

/* Parses --auth-token as etcd's decomposeOpts and jwtOptions.Parse: "type,k=v,…" with
 * exactly one '=' per option and no option twice, type "simple", "jwt" or "". Returns 0,
 * or AUTH_ERR_INVALID_AUTH_OPTS (etcd's start-up error) with *detail set to what etcd logs
 * ("invalid token option", "unknown token type", the ttl's parse error, "auth: invalid auth
 * signature method"). Files are not read here. */
int auth_token_opts_parse(const char *s, struct auth_token_opts *o, const char **detail);

/* Go's time.ParseDuration ("300ms", "1.5h", "2h45m", "-1s", "0"); 0 or -EINVAL / -ERANGE. */
int auth_token_parse_duration(const char *s, size_t len, int64_t *ns);

/* ---- simple tokens ---- */

#define AUTH_TOKEN_SIMPLE_PREFIX_LEN 16
#define AUTH_TOKEN_SIMPLE_MAX (AUTH_TOKEN_SIMPLE_PREFIX_LEN + 1 + 20) /* prefix "." uint64 */
#define AUTH_TOKEN_SIMPLE_TTL_DEFAULT_MS 300000
#define AUTH_TOKEN_SIMPLE_TOKENS_DEFAULT 65536

struct auth_token_simple;

/* ttl_ms 0: etcd's default 300 s. tokens_max 0: AUTH_TOKEN_SIMPLE_TOKENS_DEFAULT. */
struct auth_token_simple *auth_token_simple_new(uint64_t ttl_ms, size_t tokens_max);
void auth_token_simple_free(struct auth_token_simple *s);
/* Issues a token for user (auth_revision as of issue, index: the Authenticate request's
 * log index or any number unique enough) into out, NUL-terminated; returns its length,
 * or -EIO when the kernel gives no random bytes. */
int auth_token_simple_assign(struct auth_token_simple *s, const uint8_t *user, size_t ulen, uint64_t revision,
			     uint64_t index, uint64_t now_ms, char out[AUTH_TOKEN_SIMPLE_MAX + 1]);
/* The format check etcd makes before waiting for the token's index to be applied: exactly
 * one '.', then a decimal uint64. 0 with *index, or AUTH_ERR_INVALID_AUTH_TOKEN. */
int auth_token_simple_parse(const char *tok, size_t len, uint64_t *index);
/* The user of a live token: copies its name to user (ucap bytes), sets *ulen and
 * *revision (the auth_revision at issue; etcd uses the current one, see above) and
 * restarts its TTL. AUTH_ERR_INVALID_AUTH_TOKEN for a malformed, unknown or expired token
 * (an expired one is dropped); -ENOSPC when ucap is short. */
int auth_token_simple_lookup(struct auth_token_simple *s, const char *tok, size_t len, uint64_t now_ms, uint8_t *user,
			     size_t ucap, size_t *ulen, uint64_t *revision);
/* Drops every token of user (user deleted, password changed). */
void auth_token_simple_invalidate_user(struct auth_token_simple *s, const uint8_t *user, size_t ulen);
/* Drops every token (auth disabled). */
void auth_token_simple_clear(struct auth_token_simple *s);
/* Drops the tokens whose TTL has run out (etcd sweeps every second); returns how many. */
size_t auth_token_simple_expire(struct auth_token_simple *s, uint64_t now_ms);
size_t auth_token_simple_count(const struct auth_token_simple *s);

/* ---- JWT ---- */

#define AUTH_TOKEN_JWT_MAX 8192 /* longer tokens are refused unread */

struct auth_token_jwt;

/* Reads o's key files and loads them (o->type must be AUTH_TOKEN_JWT). NULL with *err:
 * AUTH_ERR_INVALID_AUTH_OPTS (a file cannot be read), AUTH_ERR_MISSING_KEY,
 * AUTH_ERR_KEY_MISMATCH, AUTH_ERR_INVALID_KEY, AUTH_ERR_UNSUPPORTED_METHOD; *detail gets
 * the text etcd logs ("key is not a valid RSA public key", …). */
struct auth_token_jwt *auth_token_jwt_new(const struct auth_token_opts *o, int *err, const char **detail);
/* The same from PEM bytes in memory (either may be NULL/0). */
struct auth_token_jwt *auth_token_jwt_new_pem(const char *sign_method, const uint8_t *pub, size_t pub_len,
					      const uint8_t *priv, size_t priv_len, int64_t ttl_ns, int *err,
					      const char **detail);
void auth_token_jwt_free(struct auth_token_jwt *j);
/* Whether only a public key was given (signing then fails with AUTH_ERR_VERIFY_ONLY). */
bool auth_token_jwt_verify_only(const struct auth_token_jwt *j);
/* Signs {"exp": now + ttl, "revision", "username"} into out (NUL-terminated); returns its
 * length, AUTH_ERR_VERIFY_ONLY, -ENOSPC, -EIO (wolfCrypt failed). */
ssize_t auth_token_jwt_sign(struct auth_token_jwt *j, const uint8_t *user, size_t ulen, uint64_t revision,
			    uint64_t now_ms, char *out, size_t cap);
/* Verifies tok: 0 with the user name (UTF-8, ucap bytes at most) and the revision claim, or
 * AUTH_ERR_INVALID_AUTH_TOKEN for anything wrong (format, alg, signature, expiry, claims,
 * a user name over ucap). Never reads past len. */
int auth_token_jwt_verify(struct auth_token_jwt *j, const char *tok, size_t len, uint64_t now_ms, uint8_t *user,
			  size_t ucap, size_t *ulen, uint64_t *revision);

#endif
