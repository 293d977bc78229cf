/* Authentication state: users, roles, permissions, the enabled flag and auth_revision,
 * with etcd 3.5's AuthStore semantics and error strings (checked against etcd 3.5.16).
 * Pure and single-owner: no I/O, no clock, no locks, no password hashing (core/auth_pw.h,
 * run by the caller off the reactors) and no tokens (core/auth_token.h). Whoever owns a
 * struct auth (the sequencer, in the intended wiring) is its only writer; readers on other
 * threads get their own copy (auth_clone) published by the owner.
 *
 * etcd's rules kept here (see the tests for each):
 *   - auth_revision starts at 1 and grows by one on every successful change, except that
 *     enabling does not bump it (etcd's AuthEnable does not commit a revision), enabling
 *     when enabled and disabling when disabled change nothing, and granting a user a role
 *     it already has succeeds without a change. Failed operations change nothing.
 *   - the role "root" needs no role entry to be granted; a user holding it may do anything.
 *   - permissions: empty range_end = one key; range_end "\0" = from key on; otherwise
 *     [key, range_end). A grant needs a non-empty key and key < range_end (or one of the two
 *     forms above), else "invalid auth management". Granting (key, range_end) again updates
 *     the type of the permission etcd finds by binary search on key; a second permission
 *     with the same key but another range_end is appended (etcd's quirk, reproduced:
 *     duplicates can appear); revoking removes every permission with that key and range_end.
 *   - lists are sorted bytewise (users, roles, a user's roles); a role's permissions are
 *     sorted by key, equal keys in the order they were granted.
 *
 * Permission checks use, per user, the union of its roles' permissions as sorted, merged
 * intervals (one array for read, one for write), rebuilt whenever that user's roles or one
 * of those roles' permissions change; a check is a binary search, without allocation. */
#ifndef UETCD_CORE_AUTH_H
#define UETCD_CORE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Limits: an operation over one of them fails with AUTH_ERR_TOO_LARGE, a state or operation
 * that exceeds one does not decode. */
#define AUTH_NAME_MAX 65536	    /* bytes in a user or role name */
#define AUTH_KEY_MAX 1572864	    /* bytes in a permission key or range_end (etcd's --max-request-bytes default) */
#define AUTH_HASH_MAX 128	    /* bytes of a stored password hash */
#define AUTH_USERS_MAX 65536
#define AUTH_ROLES_MAX 65536
#define AUTH_ROLE_PERMS_MAX 65536 /* permissions in one role */

/* Errors: negative, distinct from -errno values. auth_strerror gives etcd's message, and
 * auth_grpc_code the gRPC status code etcd answers with. */
enum auth_err {
	AUTH_ERR_ROOT_USER_NOT_EXIST = -4096,
	AUTH_ERR_ROOT_ROLE_NOT_EXIST,
	AUTH_ERR_USER_ALREADY_EXIST,
	AUTH_ERR_USER_EMPTY,
	AUTH_ERR_USER_NOT_FOUND,
	AUTH_ERR_ROLE_ALREADY_EXIST,
	AUTH_ERR_ROLE_NOT_FOUND,
	AUTH_ERR_ROLE_EMPTY,
	AUTH_ERR_PERMISSION_NOT_GIVEN,
	AUTH_ERR_AUTH_FAILED,
	AUTH_ERR_NO_PASSWORD_USER,
	AUTH_ERR_PERMISSION_DENIED,
	AUTH_ERR_ROLE_NOT_GRANTED,
	AUTH_ERR_PERMISSION_NOT_GRANTED,
	AUTH_ERR_AUTH_NOT_ENABLED,
	AUTH_ERR_AUTH_OLD_REVISION,
	AUTH_ERR_INVALID_AUTH_TOKEN,
	AUTH_ERR_INVALID_AUTH_MGMT,
	AUTH_ERR_TOO_LARGE,
	/* token provider configuration (core/auth_token.h): start-up errors, not answers */
	AUTH_ERR_INVALID_AUTH_OPTS,
	AUTH_ERR_INVALID_AUTH_METHOD,
	AUTH_ERR_MISSING_KEY,
	AUTH_ERR_KEY_MISMATCH,
	AUTH_ERR_VERIFY_ONLY,
	AUTH_ERR_INVALID_KEY,
	AUTH_ERR_KEY_FILE,
	AUTH_ERR_UNSUPPORTED_METHOD,
	AUTH_ERR_LAST_
};

/* etcd's message for an AUTH_ERR_* ("etcdserver: user name not found"); "unknown error"
 * for anything else. */
const char *auth_strerror(int err);
/* The gRPC status code etcd answers with (9 FailedPrecondition, 3 InvalidArgument, ...);
 * 2 (Unknown) for codes etcd does not map. */
int auth_grpc_code(int err);

/* authpb.Permission.Type values. */
enum auth_perm_type { AUTH_PERM_READ = 0, AUTH_PERM_WRITE = 1, AUTH_PERM_READWRITE = 2 };

/* What a request needs, for auth_check_range: either or both. */
#define AUTH_READ 1u
#define AUTH_WRITE 2u

struct auth;

/* An empty state: disabled, no users or roles, auth_revision 1. Never NULL (out of
 * memory is fatal, as everywhere in uetcd). */
struct auth *auth_new(void);
void auth_free(struct auth *a);
/* A deep copy, for publishing an immutable snapshot to reader threads. */
struct auth *auth_clone(const struct auth *a);

bool auth_is_enabled(const struct auth *a);
uint64_t auth_revision(const struct auth *a);

/* ---- mutations: 0 or an AUTH_ERR_*; on error nothing changed ---- */

/* AUTH_ERR_ROOT_USER_NOT_EXIST, AUTH_ERR_ROOT_ROLE_NOT_EXIST. */
int auth_enable(struct auth *a);
int auth_disable(struct auth *a);
/* hash: the bcrypt hash to store (auth_pw_hash, made by the caller beforehand), ignored
 * when no_password. etcd hashes even an empty password, so an empty password is a
 * password. AUTH_ERR_USER_EMPTY, AUTH_ERR_USER_ALREADY_EXIST, AUTH_ERR_TOO_LARGE. */
int auth_user_add(struct auth *a, const uint8_t *name, size_t len, const uint8_t *hash, size_t hash_len,
		  bool no_password);
/* AUTH_ERR_INVALID_AUTH_MGMT (root while enabled), AUTH_ERR_USER_NOT_FOUND. The caller
 * also drops the user's simple tokens (auth_token_simple_invalidate_user). */
int auth_user_delete(struct auth *a, const uint8_t *name, size_t len);
/* A no-password user keeps no password (hash ignored), as in etcd. The caller also drops
 * the user's simple tokens. AUTH_ERR_USER_NOT_FOUND, AUTH_ERR_TOO_LARGE. */
int auth_user_change_password(struct auth *a, const uint8_t *name, size_t len, const uint8_t *hash,
			      size_t hash_len);
/* AUTH_ERR_USER_NOT_FOUND, AUTH_ERR_ROLE_NOT_FOUND (not for "root"), AUTH_ERR_TOO_LARGE. */
int auth_user_grant_role(struct auth *a, const uint8_t *user, size_t ulen, const uint8_t *role, size_t rlen);
/* AUTH_ERR_INVALID_AUTH_MGMT (root from root while enabled), AUTH_ERR_USER_NOT_FOUND,
 * AUTH_ERR_ROLE_NOT_GRANTED. */
int auth_user_revoke_role(struct auth *a, const uint8_t *user, size_t ulen, const uint8_t *role, size_t rlen);
/* AUTH_ERR_ROLE_EMPTY, AUTH_ERR_ROLE_ALREADY_EXIST, AUTH_ERR_TOO_LARGE. */
int auth_role_add(struct auth *a, const uint8_t *name, size_t len);
/* Removes the role from every user too. AUTH_ERR_INVALID_AUTH_MGMT (root while enabled),
 * AUTH_ERR_ROLE_NOT_FOUND. */
int auth_role_delete(struct auth *a, const uint8_t *name, size_t len);
/* type: enum auth_perm_type. AUTH_ERR_INVALID_AUTH_MGMT (bad range or type),
 * AUTH_ERR_ROLE_NOT_FOUND, AUTH_ERR_TOO_LARGE. (etcd's "permission not given", for a
 * request without perm, is the caller's or auth_op's: see struct auth_op.has_perm.) */
int auth_role_grant_permission(struct auth *a, const uint8_t *role, size_t rlen, int type, const uint8_t *key,
			       size_t klen, const uint8_t *end, size_t elen);
/* AUTH_ERR_ROLE_NOT_FOUND, AUTH_ERR_PERMISSION_NOT_GRANTED. */
int auth_role_revoke_permission(struct auth *a, const uint8_t *role, size_t rlen, const uint8_t *key, size_t klen,
				const uint8_t *end, size_t elen);

/* ---- reads ---- */

typedef void (*auth_name_fn)(void *arg, const uint8_t *name, size_t len);
typedef void (*auth_perm_fn)(void *arg, int type, const uint8_t *key, size_t klen, const uint8_t *end,
			     size_t elen);

/* The user's roles, sorted. AUTH_ERR_USER_NOT_FOUND. */
int auth_user_get(const struct auth *a, const uint8_t *name, size_t len, auth_name_fn fn, void *arg);
void auth_user_list(const struct auth *a, auth_name_fn fn, void *arg);
/* The role's permissions in etcd's order. AUTH_ERR_ROLE_NOT_FOUND (also for "root" when
 * no role "root" was added: etcd 3.5.16 answers so, and lists no permission for it). */
int auth_role_get(const struct auth *a, const uint8_t *name, size_t len, auth_perm_fn fn, void *arg);
void auth_role_list(const struct auth *a, auth_name_fn fn, void *arg);
size_t auth_user_count(const struct auth *a);
size_t auth_role_count(const struct auth *a);

/* The first half of etcd's CheckPassword, for Authenticate: copies the user's hash into
 * out (NUL-terminated; cap >= AUTH_HASH_MAX + 1) and the current auth_revision into
 * *revision; the caller then runs auth_pw_verify off the reactor, and answers
 * AUTH_ERR_AUTH_FAILED on a mismatch. etcd retries the whole Authenticate when
 * auth_revision moved meanwhile. AUTH_ERR_AUTH_NOT_ENABLED, AUTH_ERR_AUTH_FAILED (no such
 * user), AUTH_ERR_NO_PASSWORD_USER. */
int auth_user_password(const struct auth *a, const uint8_t *name, size_t len, char *out, size_t cap,
		       uint64_t *revision);

/* Whether a token's user, with the auth_revision the token carries (JWT) or the current one
 * (simple tokens), may act: 0; AUTH_ERR_USER_EMPTY for revision 0; AUTH_ERR_AUTH_OLD_REVISION
 * when auth changed since the token was issued. 0 when auth is disabled. */
int auth_check_revision(const struct auth *a, uint64_t token_revision);
/* etcd's IsAdminPermitted (auth, user and role management, and other admin RPCs): 0 when
 * disabled; AUTH_ERR_USER_EMPTY, AUTH_ERR_USER_NOT_FOUND, AUTH_ERR_PERMISSION_DENIED (no
 * root role). */
int auth_check_admin(const struct auth *a, const uint8_t *user, size_t ulen);
/* etcd's isRangeOpPermitted for [key, end) as a request gives it (empty end: the one key;
 * end "\0": from key on): 0 when allowed (auth disabled, user has role root, or one
 * merged permission interval of each wanted type (AUTH_READ, AUTH_WRITE or both) covers
 * the whole range); AUTH_ERR_PERMISSION_DENIED otherwise, also for an unknown user. An
 * empty key is never covered (etcd treats it as past every key). No allocation; O(log).
 * The revision check (auth_check_revision) is separate. */
int auth_check_range(const struct auth *a, const uint8_t *user, size_t ulen, const uint8_t *key, size_t klen,
		     const uint8_t *end, size_t elen, unsigned want);
/* Whether the user holds role (as etcd's HasRole). */
bool auth_user_has_role(const struct auth *a, const uint8_t *user, size_t ulen, const uint8_t *role, size_t rlen);

/* ---- log records: one mutating operation as bytes (format: top of auth.c) ---- */

enum auth_op_type {
	AUTH_OP_ENABLE = 1,
	AUTH_OP_DISABLE,
	AUTH_OP_USER_ADD,
	AUTH_OP_USER_DELETE,
	AUTH_OP_USER_CHANGE_PASSWORD,
	AUTH_OP_USER_GRANT_ROLE,
	AUTH_OP_USER_REVOKE_ROLE,
	AUTH_OP_ROLE_ADD,
	AUTH_OP_ROLE_DELETE,
	AUTH_OP_ROLE_GRANT_PERMISSION,
	AUTH_OP_ROLE_REVOKE_PERMISSION,
	AUTH_OP_LAST_
};

/* One operation, fields used per type as named; pointers borrow (from the request when
 * encoding, from the record bytes after auth_op_decode). */
struct auth_op {
	enum auth_op_type type;
	const uint8_t *name; /* user (USER_*) or role (ROLE_*) */
	size_t name_len;
	const uint8_t *role; /* USER_GRANT_ROLE, USER_REVOKE_ROLE */
	size_t role_len;
	const uint8_t *hash; /* USER_ADD, USER_CHANGE_PASSWORD: the bcrypt hash */
	size_t hash_len;
	bool no_password;    /* USER_ADD */
	bool has_perm;	     /* ROLE_GRANT_PERMISSION: false is etcd's request without perm */
	int perm_type;	     /* ROLE_GRANT_PERMISSION */
	const uint8_t *key, *end; /* ROLE_GRANT_PERMISSION, ROLE_REVOKE_PERMISSION */
	size_t key_len, end_len;
};

/* Applies op: the matching auth_* mutation; AUTH_ERR_PERMISSION_NOT_GIVEN for a grant
 * without perm. Replaying the same records on the same state gives the same results. */
int auth_apply(struct auth *a, const struct auth_op *op);
/* Bytes auth_op_encode writes for op. */
size_t auth_op_size(const struct auth_op *op);
/* Writes op into out; returns the bytes written, -ENOSPC if cap is short, -EINVAL for an
 * unknown type or a field over its limit. */
ssize_t auth_op_encode(const struct auth_op *op, uint8_t *out, size_t cap);
/* Parses exactly len bytes into *op (pointing into buf). 0, or -EINVAL for anything that
 * is not one well-formed record (truncated, trailing bytes, unknown type or version, a
 * length over its limit). */
int auth_op_decode(const uint8_t *buf, size_t len, struct auth_op *op);

/* ---- checkpoints: the whole state as bytes (format: top of auth.c) ---- */

/* Bytes auth_state_encode writes. */
size_t auth_state_size(const struct auth *a);
/* Deterministic: equal states give equal bytes. Returns the bytes written or -ENOSPC. */
ssize_t auth_state_encode(const struct auth *a, uint8_t *out, size_t cap);
/* A new state from exactly len bytes, or NULL with *err = -EINVAL when they are not a
 * well-formed state (any defect: lengths, order, duplicates, limits, trailing bytes). */
struct auth *auth_state_decode(const uint8_t *buf, size_t len, int *err);

#endif
