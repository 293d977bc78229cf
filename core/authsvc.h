/* Auth in the running server: the auth state (core/auth.h) and who may change it, the
 * token provider (core/auth_token.h), the password thread, and the identity of a call.
 *
 * Ownership: the sequencer is the only writer of the state (authsvc_writer); after a batch
 * that changed it is durable, it publishes a deep copy (authsvc_publish), which reactors
 * read lock-free (authsvc_view) under the same qsbr domain as the store. Tokens live in a
 * table behind one mutex (simple tokens: a lookup restarts the token's TTL; JWT: wolfCrypt
 * objects are not thread-safe): taken once per call, only while auth is enabled.
 *
 * bcrypt is slow on purpose (~50 ms at cost 10): hashing and verifying run on a thread of
 * their own, never on a reactor or the sequencer, so a password-guessing loop costs only
 * other logins time. */
#ifndef UETCD_CORE_AUTHSVC_H
#define UETCD_CORE_AUTHSVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth;
struct qsbr;

/* Who a call is, resolved once when it starts (from its "token" metadata, else the verified
 * client certificate's CN). */
struct authsvc_ident {
	int err;           /* 0, or AUTH_ERR_INVALID_AUTH_TOKEN: every request of the call fails so */
	uint64_t revision; /* the token's auth revision (JWT); 0: the current one */
	size_t ulen;
	uint8_t user[];
};

struct authsvc;

/* --auth-token, --auth-token-ttl (s), --bcrypt-cost. NULL with the reason in err when the
 * token options are bad or the JWT keys do not load (etcd refuses to start then too). */
struct authsvc *authsvc_new(const char *token_opts, uint64_t token_ttl_s, int bcrypt_cost, struct qsbr *q, char *err,
			    size_t errlen);
void authsvc_free(struct authsvc *a);

/* ---- the state ---- */

/* The sequencer's own copy (start-up: recovery fills it before any reader exists). */
struct auth *authsvc_writer(struct authsvc *a);
/* Replaces the writer's state (a checkpoint's). */
void authsvc_replace(struct authsvc *a, struct auth *state);
/* Makes the writer's state the one readers see (the old copy is retired through qsbr). */
void authsvc_publish(struct authsvc *a);
/* What readers see: valid until the calling reader's next quiescent point. */
const struct auth *authsvc_view(const struct authsvc *a);
/* Whether the published state has auth enabled: the one check on the hot path. */
bool authsvc_enabled(const struct authsvc *a);

/* ---- tokens and identities ---- */

/* For a call that starts: the identity behind `token` (may be NULL) or else `cn` (may be
 * NULL); NULL when the call carries neither. malloc'd: free() it when the call ends. */
struct authsvc_ident *authsvc_identify(struct authsvc *a, const char *token, size_t tlen, const char *cn);
/* A fresh token for user (Authenticate), NUL-terminated in out. Its length, or an AUTH_ERR
 * (no token provider) or -errno. Any thread. */
int authsvc_issue(struct authsvc *a, const uint8_t *user, size_t ulen, uint64_t revision, char *out, size_t cap);
/* After a user is deleted or its password changes: its simple tokens go. */
void authsvc_tokens_drop_user(struct authsvc *a, const uint8_t *user, size_t ulen);
/* After auth is disabled: every simple token goes. */
void authsvc_tokens_clear(struct authsvc *a);
#define AUTHSVC_TOKEN_MAX 8192

/* ---- passwords (the password thread) ---- */

struct authsvc_pw_job {
	struct authsvc_pw_job *next;
	bool verify;           /* false: hash `password`; true: check it against `hash` */
	const char *password;  /* valid until done */
	size_t len;
	char hash[128];        /* in: the stored hash (verify); out: the new hash */
	size_t hash_len;
	int rc;                /* out: 0; verify: AUTH_ERR_AUTH_FAILED on a mismatch; hash: -E2BIG (too long) */
	void (*done)(struct authsvc_pw_job *j); /* on the password thread */
	void *arg;
};

/* Jobs waiting for the password thread, process-wide: past it a login or password change
 * is refused (etcd's "too many requests") instead of queueing minutes of bcrypt. */
#define AUTHSVC_PW_QUEUE_MAX 64
/* Queues j for the password thread: 0, or -EBUSY when AUTHSVC_PW_QUEUE_MAX wait already
 * (j is not taken; its done is never called). */
int authsvc_pw_submit(struct authsvc *a, struct authsvc_pw_job *j);

#endif
