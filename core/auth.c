/* See auth.h. Users and roles are arrays of pointers sorted by name (lookups are binary
 * searches; management operations are rare and move at most AUTH_USERS_MAX pointers).
 * Each user carries its merged read and write intervals; only rebuild_user() writes them,
 * and every function that changes a user's roles or a role's permissions calls it (through
 * rebuild_holders() for a role) before returning, so checks never see stale intervals.
 *
 * Byte formats. Integers little-endian; "str" is a u32 length then that many bytes.
 *
 * Operation (a log record's payload; auth_op_encode / auth_op_decode):
 * | offset | size | field                                                             |
 * |--------|------|-------------------------------------------------------------------|
 * | 0      | 1    | format version, 1                                                 |
 * | 1      | 1    | type (enum auth_op_type, 1..11)                                   |
 * | 2      | ...  | per type:                                                         |
 * |        |      |   ENABLE, DISABLE: nothing                                        |
 * |        |      |   USER_ADD: str name, u8 flags (bit 0 no_password), str hash      |
 * |        |      |   USER_DELETE, ROLE_ADD, ROLE_DELETE: str name                    |
 * |        |      |   USER_CHANGE_PASSWORD: str name, str hash                        |
 * |        |      |   USER_GRANT_ROLE, USER_REVOKE_ROLE: str user, str role           |
 * |        |      |   ROLE_GRANT_PERMISSION: str role, u8 has_perm (0/1), u32 type    |
 * |        |      |     (authpb value, as int32), str key, str range_end              |
 * |        |      |   ROLE_REVOKE_PERMISSION: str role, str key, str range_end        |
 * Names up to AUTH_NAME_MAX, hashes AUTH_HASH_MAX, keys AUTH_KEY_MAX; the record ends
 * exactly after the last field. An operation that fails when applied is still a valid
 * record (replay fails it the same way).
 *
 * State (a checkpoint; auth_state_encode / auth_state_decode):
 * | offset | size | field                                                             |
 * |--------|------|-------------------------------------------------------------------|
 * | 0      | 4    | magic "UAS1"                                                      |
 * | 4      | 8    | auth_revision, >= 1                                               |
 * | 12     | 1    | enabled, 0 or 1 (1 needs user root holding role root)            |
 * | 13     | 4    | U, users (<= AUTH_USERS_MAX)                                      |
 * | 17     | ...  | U users, names strictly increasing: str name (non-empty), u8     |
 * |        |      |   flags (bit 0 no_password), str hash, u32 R, R x str role       |
 * |        |      |   (non-empty, strictly increasing)                                |
 * | ...    | 4    | N, roles (<= AUTH_ROLES_MAX)                                      |
 * | ...    | ...  | N roles, names strictly increasing: str name (non-empty), u32 P   |
 * |        |      |   (<= AUTH_ROLE_PERMS_MAX), P x (u32 type, str key, str range_end)|
 * |        |      |   with keys non-decreasing and each a valid permission range      |
 * The state ends exactly there. No checksum: the log record or checkpoint file that
 * carries these bytes has its own. */
#include "core/auth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define OP_VERSION 1
#define STATE_MAGIC "UAS1"

struct auth_bytes {
	uint8_t *p;
	size_t len;
};

struct auth_perm {
	int32_t type;
	struct auth_bytes key, end;
};

struct auth_role {
	struct auth_bytes name;
	struct auth_perm *perms;
	size_t nperms, cap;
};

/* [b, e), or [b, +inf) when inf. Bytes live in the owning set's mem. */
struct auth_ivl {
	const uint8_t *b, *e;
	size_t blen, elen;
	bool inf;
};

struct auth_ivset {
	struct auth_ivl *v;
	size_t n;
	uint8_t *mem;
};

struct auth_user {
	struct auth_bytes name, hash;
	bool no_password;
	bool root; /* holds role "root": allowed everything */
	struct auth_bytes *roles; /* sorted, unique */
	size_t nroles, cap;
	struct auth_ivset rd, wr;
};

struct auth {
	uint64_t revision;
	bool enabled;
	struct auth_user **users;
	size_t nusers, ucap;
	struct auth_role **roles;
	size_t nroles, rcap;
};

static const uint8_t ROOT[] = "root";
#define ROOT_LEN 4

/* ---- errors ---- */

static const struct {
	const char *msg;
	int code;
} auth_errs[] = {
	[AUTH_ERR_ROOT_USER_NOT_EXIST - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: root user does not exist", 9 },
	[AUTH_ERR_ROOT_ROLE_NOT_EXIST - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: root user does not have root role", 9 },
	[AUTH_ERR_USER_ALREADY_EXIST - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: user name already exists", 9 },
	[AUTH_ERR_USER_EMPTY - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: user name is empty", 3 },
	[AUTH_ERR_USER_NOT_FOUND - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: user name not found", 9 },
	[AUTH_ERR_ROLE_ALREADY_EXIST - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: role name already exists", 9 },
	[AUTH_ERR_ROLE_NOT_FOUND - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: role name not found", 9 },
	[AUTH_ERR_ROLE_EMPTY - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: role name is empty", 3 },
	[AUTH_ERR_PERMISSION_NOT_GIVEN - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: permission not given", 3 },
	[AUTH_ERR_AUTH_FAILED - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: authentication failed, invalid user ID or password", 3 },
	/* etcd has no gRPC mapping for this one: it answers code Unknown with the raw text */
	[AUTH_ERR_NO_PASSWORD_USER - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "auth: authentication failed, password was given for no password user", 2 },
	[AUTH_ERR_PERMISSION_DENIED - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: permission denied", 7 },
	[AUTH_ERR_ROLE_NOT_GRANTED - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: role is not granted to the user", 9 },
	[AUTH_ERR_PERMISSION_NOT_GRANTED - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: permission is not granted to the role", 9 },
	[AUTH_ERR_AUTH_NOT_ENABLED - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: authentication is not enabled", 9 },
	[AUTH_ERR_AUTH_OLD_REVISION - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: revision of auth store is old", 3 },
	[AUTH_ERR_INVALID_AUTH_TOKEN - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: invalid auth token", 16 },
	[AUTH_ERR_INVALID_AUTH_MGMT - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: invalid auth management", 3 },
	[AUTH_ERR_TOO_LARGE - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "etcdserver: request is too large", 3 },
	[AUTH_ERR_INVALID_AUTH_OPTS - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "auth: invalid auth options", 2 },
	[AUTH_ERR_INVALID_AUTH_METHOD - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "auth: invalid auth signature method", 2 },
	[AUTH_ERR_MISSING_KEY - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "auth: missing key data", 2 },
	[AUTH_ERR_KEY_MISMATCH - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "auth: public and private keys don't match", 2 },
	[AUTH_ERR_VERIFY_ONLY - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "auth: token signing attempted with verify-only key", 2 },
	/* golang-jwt's ErrKeyMustBePEMEncoded, what etcd reports for a key it cannot parse */
	[AUTH_ERR_INVALID_KEY - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "Invalid Key: Key must be a PEM encoded PKCS1 or PKCS8 key", 2 },
	[AUTH_ERR_KEY_FILE - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "auth: invalid auth options", 2 },
	[AUTH_ERR_UNSUPPORTED_METHOD - AUTH_ERR_ROOT_USER_NOT_EXIST] = { "unsupported signing method", 2 },
};
_Static_assert(sizeof auth_errs / sizeof auth_errs[0] == AUTH_ERR_LAST_ - AUTH_ERR_ROOT_USER_NOT_EXIST,
	       "one message per error");

const char *auth_strerror(int err)
{
	if (err < AUTH_ERR_ROOT_USER_NOT_EXIST || err >= AUTH_ERR_LAST_)
		return "unknown error";
	return auth_errs[err - AUTH_ERR_ROOT_USER_NOT_EXIST].msg;
}

int auth_grpc_code(int err)
{
	if (err < AUTH_ERR_ROOT_USER_NOT_EXIST || err >= AUTH_ERR_LAST_)
		return 2;
	return auth_errs[err - AUTH_ERR_ROOT_USER_NOT_EXIST].code;
}

/* ---- memory and bytes ---- */

static void *auth_calloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);

	if (!p)
		log_fatal("auth: out of memory");
	return p;
}

static void *auth_realloc(void *p, size_t n, size_t sz)
{
	if (n && sz > SIZE_MAX / n)
		log_fatal("auth: out of memory");
	p = realloc(p, n && sz ? n * sz : 1);
	if (!p)
		log_fatal("auth: out of memory");
	return p;
}

static struct auth_bytes bytes_dup(const uint8_t *p, size_t len)
{
	struct auth_bytes b = { auth_calloc(len + 1, 1), len };

	if (len)
		memcpy(b.p, p, len);
	return b;
}

static int bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0; /* an empty name may come as NULL */

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static bool bytes_eq(const struct auth_bytes *x, const uint8_t *p, size_t len)
{
	return x->len == len && (len == 0 || memcmp(x->p, p, len) == 0);
}

static bool is_open_end(const uint8_t *end, size_t elen) { return elen == 1 && end[0] == 0; }

/* etcd's isValidPermissionRange: a non-empty key and an empty range_end (one key),
 * "\0" (from key on) or one past key. */
static bool perm_range_valid(const uint8_t *key, size_t klen, const uint8_t *end, size_t elen)
{
	if (klen == 0)
		return false;
	if (elen == 0 || is_open_end(end, elen))
		return true;
	return bytes_cmp(key, klen, end, elen) < 0;
}

/* ---- lookups ---- */

/* Index of the first entry whose name is >= (p, len); *found when equal. */
#define DEFINE_FIND(fn, type)                                                                                  \
	static size_t fn(type *const *v, size_t n, const uint8_t *p, size_t len, bool *found)                  \
	{                                                                                                      \
		size_t lo = 0, hi = n;                                                                         \
		while (lo < hi) {                                                                              \
			size_t mid = lo + (hi - lo) / 2;                                                       \
			if (bytes_cmp(v[mid]->name.p, v[mid]->name.len, p, len) < 0)                          \
				lo = mid + 1;                                                                  \
			else                                                                                   \
				hi = mid;                                                                      \
		}                                                                                              \
		*found = lo < n && bytes_eq(&v[lo]->name, p, len);                                             \
		return lo;                                                                                     \
	}
DEFINE_FIND(find_user_idx, struct auth_user)
DEFINE_FIND(find_role_idx, struct auth_role)

static struct auth_user *find_user(const struct auth *a, const uint8_t *p, size_t len)
{
	bool found;
	size_t i = find_user_idx(a->users, a->nusers, p, len, &found);
	return found ? a->users[i] : NULL;
}

static struct auth_role *find_role(const struct auth *a, const uint8_t *p, size_t len)
{
	bool found;
	size_t i = find_role_idx(a->roles, a->nroles, p, len, &found);
	return found ? a->roles[i] : NULL;
}

/* Index of the first of the user's roles >= (p, len). */
static size_t user_role_idx(const struct auth_user *u, const uint8_t *p, size_t len, bool *found)
{
	size_t lo = 0, hi = u->nroles;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (bytes_cmp(u->roles[mid].p, u->roles[mid].len, p, len) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < u->nroles && bytes_eq(&u->roles[lo], p, len);
	return lo;
}

static bool user_has_role(const struct auth_user *u, const uint8_t *p, size_t len)
{
	bool found;
	user_role_idx(u, p, len, &found);
	return found;
}

/* ---- merged intervals ---- */

static void ivset_free(struct auth_ivset *s)
{
	free(s->v);
	free(s->mem);
	memset(s, 0, sizeof *s);
}

static int ivl_cmp_begin(const void *x, const void *y)
{
	const struct auth_ivl *a = x, *b = y;
	return bytes_cmp(a->b, a->blen, b->b, b->blen);
}

/* -1, 0, 1 comparing two interval ends (+inf is past every byte string). */
static int end_cmp(const struct auth_ivl *a, const struct auth_ivl *b)
{
	if (a->inf || b->inf)
		return a->inf - b->inf;
	return bytes_cmp(a->e, a->elen, b->e, b->elen);
}

/* Sorts and merges v[0..n) (overlapping or touching intervals become one) and copies the
 * result, bytes included, into s. The input's bytes may be freed afterwards. */
static void ivset_build(struct auth_ivset *s, struct auth_ivl *v, size_t n)
{
	size_t m = 0, total = 0;

	ivset_free(s);
	if (n == 0)
		return;
	qsort(v, n, sizeof *v, ivl_cmp_begin);
	for (size_t i = 1; i < n; i++) {
		struct auth_ivl *cur = &v[m];
		/* next begins at or before cur's end: one interval */
		if (cur->inf || bytes_cmp(v[i].b, v[i].blen, cur->e, cur->elen) <= 0) {
			if (end_cmp(&v[i], cur) > 0) {
				cur->e = v[i].e;
				cur->elen = v[i].elen;
				cur->inf = v[i].inf;
			}
		} else {
			v[++m] = v[i];
		}
	}
	m++;
	for (size_t i = 0; i < m; i++)
		total += v[i].blen + (v[i].inf ? 0 : v[i].elen);
	s->v = auth_calloc(m, sizeof *s->v);
	s->mem = auth_calloc(total, 1);
	s->n = m;
	uint8_t *p = s->mem;
	for (size_t i = 0; i < m; i++) {
		s->v[i] = v[i];
		memcpy(p, v[i].b, v[i].blen);
		s->v[i].b = p;
		p += v[i].blen;
		if (!v[i].inf) {
			memcpy(p, v[i].e, v[i].elen);
			s->v[i].e = p;
			p += v[i].elen;
		} else {
			s->v[i].e = NULL;
			s->v[i].elen = 0;
		}
	}
}

/* Whether one interval of s covers [key, end) (end_inf: [key, +inf); point: the key).
 * Intervals are disjoint and sorted, so only the one holding key can. */
static bool ivset_covers(const struct auth_ivset *s, const uint8_t *key, size_t klen, const uint8_t *end,
			 size_t elen, bool end_inf, bool point)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (bytes_cmp(s->v[mid].b, s->v[mid].blen, key, klen) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return false;
	const struct auth_ivl *iv = &s->v[lo - 1];
	if (!iv->inf && bytes_cmp(key, klen, iv->e, iv->elen) >= 0)
		return false;
	if (point)
		return true;
	if (end_inf)
		return iv->inf;
	return iv->inf || bytes_cmp(end, elen, iv->e, iv->elen) <= 0;
}

/* The only writer of u->rd, u->wr and u->root: from u's roles as they are now. */
static void rebuild_user(const struct auth *a, struct auth_user *u)
{
	size_t n = 0, nr = 0, nw = 0;
	struct auth_ivl *rv, *wv;
	uint8_t *points; /* key + "\0" for one-key permissions */
	size_t plen = 0, poff = 0;

	u->root = user_has_role(u, ROOT, ROOT_LEN);
	for (size_t i = 0; i < u->nroles; i++) {
		const struct auth_role *r = find_role(a, u->roles[i].p, u->roles[i].len);
		if (!r)
			continue;
		n += r->nperms;
		for (size_t j = 0; j < r->nperms; j++)
			if (r->perms[j].end.len == 0)
				plen += r->perms[j].key.len + 1;
	}
	rv = auth_calloc(n, sizeof *rv);
	wv = auth_calloc(n, sizeof *wv);
	points = auth_calloc(plen, 1);
	for (size_t i = 0; i < u->nroles; i++) {
		const struct auth_role *r = find_role(a, u->roles[i].p, u->roles[i].len);
		if (!r)
			continue;
		for (size_t j = 0; j < r->nperms; j++) {
			const struct auth_perm *p = &r->perms[j];
			struct auth_ivl iv = { .b = p->key.p, .blen = p->key.len };
			if (p->end.len == 0) {
				memcpy(points + poff, p->key.p, p->key.len);
				points[poff + p->key.len] = 0;
				iv.e = points + poff;
				iv.elen = p->key.len + 1;
				poff += p->key.len + 1;
			} else if (is_open_end(p->end.p, p->end.len)) {
				iv.inf = true;
			} else {
				iv.e = p->end.p;
				iv.elen = p->end.len;
			}
			/* unknown types (etcd stores any int32) grant nothing, as in etcd */
			if (p->type == AUTH_PERM_READ || p->type == AUTH_PERM_READWRITE)
				rv[nr++] = iv;
			if (p->type == AUTH_PERM_WRITE || p->type == AUTH_PERM_READWRITE)
				wv[nw++] = iv;
		}
	}
	ivset_build(&u->rd, rv, nr);
	ivset_build(&u->wr, wv, nw);
	free(rv);
	free(wv);
	free(points);
}

/* Rebuilds every user holding role (p, len). */
static void rebuild_holders(const struct auth *a, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < a->nusers; i++)
		if (user_has_role(a->users[i], p, len))
			rebuild_user(a, a->users[i]);
}

/* ---- life cycle ---- */

struct auth *auth_new(void)
{
	struct auth *a = auth_calloc(1, sizeof *a);

	a->revision = 1; /* etcd's NewAuthStore commits revision 1 into an empty store */
	return a;
}

static void user_free(struct auth_user *u)
{
	free(u->name.p);
	free(u->hash.p);
	for (size_t i = 0; i < u->nroles; i++)
		free(u->roles[i].p);
	free(u->roles);
	ivset_free(&u->rd);
	ivset_free(&u->wr);
	free(u);
}

static void role_free(struct auth_role *r)
{
	free(r->name.p);
	for (size_t i = 0; i < r->nperms; i++) {
		free(r->perms[i].key.p);
		free(r->perms[i].end.p);
	}
	free(r->perms);
	free(r);
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->nusers; i++)
		user_free(a->users[i]);
	for (size_t i = 0; i < a->nroles; i++)
		role_free(a->roles[i]);
	free(a->users);
	free(a->roles);
	free(a);
}

bool auth_is_enabled(const struct auth *a) { return a->enabled; }
uint64_t auth_revision(const struct auth *a) { return a->revision; }
size_t auth_user_count(const struct auth *a) { return a->nusers; }
size_t auth_role_count(const struct auth *a) { return a->nroles; }

static void commit(struct auth *a) { a->revision++; }

static struct auth_user *user_new(const uint8_t *name, size_t len)
{
	struct auth_user *u = auth_calloc(1, sizeof *u);
	u->name = bytes_dup(name, len);
	u->hash = bytes_dup(NULL, 0);
	return u;
}

static struct auth_role *role_new(const uint8_t *name, size_t len)
{
	struct auth_role *r = auth_calloc(1, sizeof *r);
	r->name = bytes_dup(name, len);
	return r;
}

static void insert_user(struct auth *a, size_t i, struct auth_user *u)
{
	if (a->nusers == a->ucap) {
		a->ucap = a->ucap ? a->ucap * 2 : 8;
		a->users = auth_realloc(a->users, a->ucap, sizeof *a->users);
	}
	memmove(&a->users[i + 1], &a->users[i], (a->nusers - i) * sizeof *a->users);
	a->users[i] = u;
	a->nusers++;
}

static void insert_role(struct auth *a, size_t i, struct auth_role *r)
{
	if (a->nroles == a->rcap) {
		a->rcap = a->rcap ? a->rcap * 2 : 8;
		a->roles = auth_realloc(a->roles, a->rcap, sizeof *a->roles);
	}
	memmove(&a->roles[i + 1], &a->roles[i], (a->nroles - i) * sizeof *a->roles);
	a->roles[i] = r;
	a->nroles++;
}

static void user_insert_role(struct auth_user *u, size_t i, const uint8_t *p, size_t len)
{
	if (u->nroles == u->cap) {
		u->cap = u->cap ? u->cap * 2 : 4;
		u->roles = auth_realloc(u->roles, u->cap, sizeof *u->roles);
	}
	memmove(&u->roles[i + 1], &u->roles[i], (u->nroles - i) * sizeof *u->roles);
	u->roles[i] = bytes_dup(p, len);
	u->nroles++;
}

static void user_remove_role(struct auth_user *u, size_t i)
{
	free(u->roles[i].p);
	memmove(&u->roles[i], &u->roles[i + 1], (u->nroles - i - 1) * sizeof *u->roles);
	u->nroles--;
}

static void role_insert_perm(struct auth_role *r, size_t i, int32_t type, const uint8_t *key, size_t klen,
			     const uint8_t *end, size_t elen)
{
	if (r->nperms == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 4;
		r->perms = auth_realloc(r->perms, r->cap, sizeof *r->perms);
	}
	memmove(&r->perms[i + 1], &r->perms[i], (r->nperms - i) * sizeof *r->perms);
	r->perms[i] = (struct auth_perm){ .type = type, .key = bytes_dup(key, klen), .end = bytes_dup(end, elen) };
	r->nperms++;
}

struct auth *auth_clone(const struct auth *a)
{
	struct auth *c = auth_calloc(1, sizeof *c);

	c->revision = a->revision;
	c->enabled = a->enabled;
	for (size_t i = 0; i < a->nroles; i++) {
		const struct auth_role *r = a->roles[i];
		struct auth_role *n = role_new(r->name.p, r->name.len);
		for (size_t j = 0; j < r->nperms; j++)
			role_insert_perm(n, j, r->perms[j].type, r->perms[j].key.p, r->perms[j].key.len,
					 r->perms[j].end.p, r->perms[j].end.len);
		insert_role(c, i, n);
	}
	for (size_t i = 0; i < a->nusers; i++) {
		const struct auth_user *u = a->users[i];
		struct auth_user *n = user_new(u->name.p, u->name.len);
		free(n->hash.p);
		n->hash = bytes_dup(u->hash.p, u->hash.len);
		n->no_password = u->no_password;
		for (size_t j = 0; j < u->nroles; j++)
			user_insert_role(n, j, u->roles[j].p, u->roles[j].len);
		rebuild_user(c, n);
		insert_user(c, i, n);
	}
	return c;
}

/* ---- mutations ---- */

int auth_enable(struct auth *a)
{
	if (a->enabled)
		return 0;
	const struct auth_user *u = find_user(a, ROOT, ROOT_LEN);
	if (!u)
		return AUTH_ERR_ROOT_USER_NOT_EXIST;
	if (!u->root)
		return AUTH_ERR_ROOT_ROLE_NOT_EXIST;
	a->enabled = true; /* etcd does not commit a revision here */
	return 0;
}

int auth_disable(struct auth *a)
{
	if (!a->enabled)
		return 0;
	a->enabled = false;
	commit(a);
	return 0;
}

int auth_user_add(struct auth *a, const uint8_t *name, size_t len, const uint8_t *hash, size_t hash_len,
		  bool no_password)
{
	bool found;

	if (len == 0)
		return AUTH_ERR_USER_EMPTY;
	if (len > AUTH_NAME_MAX || (!no_password && hash_len > AUTH_HASH_MAX))
		return AUTH_ERR_TOO_LARGE;
	size_t i = find_user_idx(a->users, a->nusers, name, len, &found);
	if (found)
		return AUTH_ERR_USER_ALREADY_EXIST;
	if (a->nusers >= AUTH_USERS_MAX)
		return AUTH_ERR_TOO_LARGE;
	struct auth_user *u = user_new(name, len);
	u->no_password = no_password;
	if (!no_password) {
		free(u->hash.p);
		u->hash = bytes_dup(hash, hash_len);
	}
	insert_user(a, i, u);
	commit(a);
	return 0;
}

int auth_user_delete(struct auth *a, const uint8_t *name, size_t len)
{
	bool found;

	if (a->enabled && len == ROOT_LEN && memcmp(name, ROOT, ROOT_LEN) == 0)
		return AUTH_ERR_INVALID_AUTH_MGMT;
	size_t i = find_user_idx(a->users, a->nusers, name, len, &found);
	if (!found)
		return AUTH_ERR_USER_NOT_FOUND;
	user_free(a->users[i]);
	memmove(&a->users[i], &a->users[i + 1], (a->nusers - i - 1) * sizeof *a->users);
	a->nusers--;
	commit(a);
	return 0;
}

int auth_user_change_password(struct auth *a, const uint8_t *name, size_t len, const uint8_t *hash,
			      size_t hash_len)
{
	struct auth_user *u = find_user(a, name, len);

	if (!u)
		return AUTH_ERR_USER_NOT_FOUND;
	if (!u->no_password && hash_len > AUTH_HASH_MAX)
		return AUTH_ERR_TOO_LARGE;
	free(u->hash.p);
	u->hash = u->no_password ? bytes_dup(NULL, 0) : bytes_dup(hash, hash_len);
	commit(a);
	return 0;
}

int auth_user_grant_role(struct auth *a, const uint8_t *user, size_t ulen, const uint8_t *role, size_t rlen)
{
	struct auth_user *u = find_user(a, user, ulen);
	bool found;

	if (!u)
		return AUTH_ERR_USER_NOT_FOUND;
	if (!(rlen == ROOT_LEN && memcmp(role, ROOT, ROOT_LEN) == 0) && !find_role(a, role, rlen))
		return AUTH_ERR_ROLE_NOT_FOUND;
	size_t i = user_role_idx(u, role, rlen, &found);
	if (found)
		return 0; /* etcd: ignored, no new revision */
	if (u->nroles >= AUTH_ROLES_MAX || rlen > AUTH_NAME_MAX)
		return AUTH_ERR_TOO_LARGE;
	user_insert_role(u, i, role, rlen);
	rebuild_user(a, u);
	commit(a);
	return 0;
}

int auth_user_revoke_role(struct auth *a, const uint8_t *user, size_t ulen, const uint8_t *role, size_t rlen)
{
	bool found;

	if (a->enabled && ulen == ROOT_LEN && memcmp(user, ROOT, ROOT_LEN) == 0 && rlen == ROOT_LEN &&
	    memcmp(role, ROOT, ROOT_LEN) == 0)
		return AUTH_ERR_INVALID_AUTH_MGMT;
	struct auth_user *u = find_user(a, user, ulen);
	if (!u)
		return AUTH_ERR_USER_NOT_FOUND;
	size_t i = user_role_idx(u, role, rlen, &found);
	if (!found)
		return AUTH_ERR_ROLE_NOT_GRANTED;
	user_remove_role(u, i);
	rebuild_user(a, u);
	commit(a);
	return 0;
}

int auth_role_add(struct auth *a, const uint8_t *name, size_t len)
{
	bool found;

	if (len == 0)
		return AUTH_ERR_ROLE_EMPTY;
	if (len > AUTH_NAME_MAX)
		return AUTH_ERR_TOO_LARGE;
	size_t i = find_role_idx(a->roles, a->nroles, name, len, &found);
	if (found)
		return AUTH_ERR_ROLE_ALREADY_EXIST;
	if (a->nroles >= AUTH_ROLES_MAX)
		return AUTH_ERR_TOO_LARGE;
	insert_role(a, i, role_new(name, len));
	rebuild_holders(a, name, len); /* only "root" can be held before it exists */
	commit(a);
	return 0;
}

int auth_role_delete(struct auth *a, const uint8_t *name, size_t len)
{
	bool found;

	if (a->enabled && len == ROOT_LEN && memcmp(name, ROOT, ROOT_LEN) == 0)
		return AUTH_ERR_INVALID_AUTH_MGMT;
	size_t i = find_role_idx(a->roles, a->nroles, name, len, &found);
	if (!found)
		return AUTH_ERR_ROLE_NOT_FOUND;
	struct auth_role *r = a->roles[i];
	memmove(&a->roles[i], &a->roles[i + 1], (a->nroles - i - 1) * sizeof *a->roles);
	a->nroles--;
	for (size_t j = 0; j < a->nusers; j++) {
		struct auth_user *u = a->users[j];
		size_t k = user_role_idx(u, name, len, &found);
		if (found) {
			user_remove_role(u, k);
			rebuild_user(a, u);
		}
	}
	role_free(r); /* after the rebuilds: name may point into r */
	commit(a);
	return 0;
}

int auth_role_grant_permission(struct auth *a, const uint8_t *role, size_t rlen, int type, const uint8_t *key,
			       size_t klen, const uint8_t *end, size_t elen)
{
	if (!perm_range_valid(key, klen, end, elen))
		return AUTH_ERR_INVALID_AUTH_MGMT;
	struct auth_role *r = find_role(a, role, rlen);
	if (!r)
		return AUTH_ERR_ROLE_NOT_FOUND;
	if (klen > AUTH_KEY_MAX || elen > AUTH_KEY_MAX)
		return AUTH_ERR_TOO_LARGE;
	/* etcd: the first permission whose key is >= key; updated only if it is this range */
	size_t lo = 0, hi = r->nperms;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (bytes_cmp(r->perms[mid].key.p, r->perms[mid].key.len, key, klen) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < r->nperms && bytes_eq(&r->perms[lo].key, key, klen) && bytes_eq(&r->perms[lo].end, end, elen)) {
		r->perms[lo].type = type;
	} else {
		if (r->nperms >= AUTH_ROLE_PERMS_MAX)
			return AUTH_ERR_TOO_LARGE;
		/* appended then sorted by key in etcd: after every permission with an equal key */
		while (lo < r->nperms && bytes_eq(&r->perms[lo].key, key, klen))
			lo++;
		role_insert_perm(r, lo, type, key, klen, end, elen);
	}
	rebuild_holders(a, r->name.p, r->name.len);
	commit(a);
	return 0;
}

int auth_role_revoke_permission(struct auth *a, const uint8_t *role, size_t rlen, const uint8_t *key, size_t klen,
				const uint8_t *end, size_t elen)
{
	struct auth_role *r = find_role(a, role, rlen);
	size_t kept = 0;

	if (!r)
		return AUTH_ERR_ROLE_NOT_FOUND;
	for (size_t i = 0; i < r->nperms; i++) {
		struct auth_perm *p = &r->perms[i];
		if (bytes_eq(&p->key, key, klen) && bytes_eq(&p->end, end, elen)) {
			free(p->key.p);
			free(p->end.p);
		} else {
			r->perms[kept++] = *p;
		}
	}
	if (kept == r->nperms)
		return AUTH_ERR_PERMISSION_NOT_GRANTED;
	r->nperms = kept;
	rebuild_holders(a, r->name.p, r->name.len);
	commit(a);
	return 0;
}

/* ---- reads ---- */

int auth_user_get(const struct auth *a, const uint8_t *name, size_t len, auth_name_fn fn, void *arg)
{
	const struct auth_user *u = find_user(a, name, len);

	if (!u)
		return AUTH_ERR_USER_NOT_FOUND;
	for (size_t i = 0; i < u->nroles; i++)
		fn(arg, u->roles[i].p, u->roles[i].len);
	return 0;
}

void auth_user_list(const struct auth *a, auth_name_fn fn, void *arg)
{
	for (size_t i = 0; i < a->nusers; i++)
		fn(arg, a->users[i]->name.p, a->users[i]->name.len);
}

int auth_role_get(const struct auth *a, const uint8_t *name, size_t len, auth_perm_fn fn, void *arg)
{
	const struct auth_role *r = find_role(a, name, len);

	if (!r)
		return AUTH_ERR_ROLE_NOT_FOUND;
	for (size_t i = 0; i < r->nperms; i++) {
		const struct auth_perm *p = &r->perms[i];
		fn(arg, p->type, p->key.p, p->key.len, p->end.p, p->end.len);
	}
	return 0;
}

void auth_role_list(const struct auth *a, auth_name_fn fn, void *arg)
{
	for (size_t i = 0; i < a->nroles; i++)
		fn(arg, a->roles[i]->name.p, a->roles[i]->name.len);
}

int auth_user_password(const struct auth *a, const uint8_t *name, size_t len, char *out, size_t cap,
		       uint64_t *revision)
{
	if (!a->enabled)
		return AUTH_ERR_AUTH_NOT_ENABLED;
	const struct auth_user *u = find_user(a, name, len);
	if (!u)
		return AUTH_ERR_AUTH_FAILED;
	if (u->no_password)
		return AUTH_ERR_NO_PASSWORD_USER;
	if (cap < u->hash.len + 1)
		return -ENOSPC;
	memcpy(out, u->hash.p, u->hash.len);
	out[u->hash.len] = 0;
	*revision = a->revision;
	return 0;
}

int auth_check_revision(const struct auth *a, uint64_t token_revision)
{
	if (!a->enabled)
		return 0;
	if (token_revision == 0)
		return AUTH_ERR_USER_EMPTY;
	if (token_revision < a->revision)
		return AUTH_ERR_AUTH_OLD_REVISION;
	return 0;
}

int auth_check_admin(const struct auth *a, const uint8_t *user, size_t ulen)
{
	if (!a->enabled)
		return 0;
	if (ulen == 0)
		return AUTH_ERR_USER_EMPTY;
	const struct auth_user *u = find_user(a, user, ulen);
	if (!u)
		return AUTH_ERR_USER_NOT_FOUND;
	return u->root ? 0 : AUTH_ERR_PERMISSION_DENIED;
}

int auth_check_range(const struct auth *a, const uint8_t *user, size_t ulen, const uint8_t *key, size_t klen,
		     const uint8_t *end, size_t elen, unsigned want)
{
	if (!a->enabled)
		return 0;
	const struct auth_user *u = find_user(a, user, ulen);
	if (!u)
		return AUTH_ERR_PERMISSION_DENIED;
	if (u->root)
		return 0;
	/* etcd orders the empty key after every key: nothing covers it */
	if (klen == 0)
		return AUTH_ERR_PERMISSION_DENIED;
	bool point = elen == 0, inf = is_open_end(end, elen);
	if ((want & AUTH_READ) && !ivset_covers(&u->rd, key, klen, end, elen, inf, point))
		return AUTH_ERR_PERMISSION_DENIED;
	if ((want & AUTH_WRITE) && !ivset_covers(&u->wr, key, klen, end, elen, inf, point))
		return AUTH_ERR_PERMISSION_DENIED;
	return 0;
}

bool auth_user_has_role(const struct auth *a, const uint8_t *user, size_t ulen, const uint8_t *role, size_t rlen)
{
	const struct auth_user *u = find_user(a, user, ulen);
	return u && user_has_role(u, role, rlen);
}

/* ---- operations ---- */

int auth_apply(struct auth *a, const struct auth_op *op)
{
	switch (op->type) {
	case AUTH_OP_ENABLE:
		return auth_enable(a);
	case AUTH_OP_DISABLE:
		return auth_disable(a);
	case AUTH_OP_USER_ADD:
		return auth_user_add(a, op->name, op->name_len, op->hash, op->hash_len, op->no_password);
	case AUTH_OP_USER_DELETE:
		return auth_user_delete(a, op->name, op->name_len);
	case AUTH_OP_USER_CHANGE_PASSWORD:
		return auth_user_change_password(a, op->name, op->name_len, op->hash, op->hash_len);
	case AUTH_OP_USER_GRANT_ROLE:
		return auth_user_grant_role(a, op->name, op->name_len, op->role, op->role_len);
	case AUTH_OP_USER_REVOKE_ROLE:
		return auth_user_revoke_role(a, op->name, op->name_len, op->role, op->role_len);
	case AUTH_OP_ROLE_ADD:
		return auth_role_add(a, op->name, op->name_len);
	case AUTH_OP_ROLE_DELETE:
		return auth_role_delete(a, op->name, op->name_len);
	case AUTH_OP_ROLE_GRANT_PERMISSION:
		if (!op->has_perm)
			return AUTH_ERR_PERMISSION_NOT_GIVEN;
		return auth_role_grant_permission(a, op->name, op->name_len, op->perm_type, op->key, op->key_len,
						  op->end, op->end_len);
	case AUTH_OP_ROLE_REVOKE_PERMISSION:
		return auth_role_revoke_permission(a, op->name, op->name_len, op->key, op->key_len, op->end,
						   op->end_len);
	default:
		return -EINVAL;
	}
}

/* A writer that counts bytes when out is NULL and stops writing past cap. */
struct wbuf {
	uint8_t *p;
	size_t len, cap;
};

static void w_bytes(struct wbuf *w, const void *p, size_t len)
{
	if (w->p && len && w->len + len <= w->cap)
		memcpy(w->p + w->len, p, len);
	w->len += len;
}

static void w_u8(struct wbuf *w, uint8_t v) { w_bytes(w, &v, 1); }

static void w_u32(struct wbuf *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	w_bytes(w, b, 4);
}

static void w_u64(struct wbuf *w, uint64_t v)
{
	w_u32(w, (uint32_t)v);
	w_u32(w, (uint32_t)(v >> 32));
}

static void w_str(struct wbuf *w, const uint8_t *p, size_t len)
{
	w_u32(w, (uint32_t)len);
	w_bytes(w, p, len);
}

/* A bounds-checked reader: every read fails once one has failed. */
struct rbuf {
	const uint8_t *p;
	size_t len, off;
	bool bad;
};

static bool r_need(struct rbuf *r, size_t n)
{
	if (r->bad || r->len - r->off < n) {
		r->bad = true;
		return false;
	}
	return true;
}

static uint8_t r_u8(struct rbuf *r)
{
	if (!r_need(r, 1))
		return 0;
	return r->p[r->off++];
}

static uint32_t r_u32(struct rbuf *r)
{
	if (!r_need(r, 4))
		return 0;
	const uint8_t *b = r->p + r->off;
	r->off += 4;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t r_u64(struct rbuf *r)
{
	uint64_t lo = r_u32(r);
	return lo | (uint64_t)r_u32(r) << 32;
}

/* A str of at most max bytes; *len set, pointer into the buffer. */
static const uint8_t *r_str(struct rbuf *r, size_t max, size_t *len)
{
	uint32_t n = r_u32(r);

	*len = 0;
	if (r->bad)
		return NULL;
	if (n > max || !r_need(r, n))
		return (r->bad = true), NULL;
	const uint8_t *p = r->p + r->off;
	r->off += n;
	*len = n;
	return p;
}

static bool op_fields_fit(const struct auth_op *op)
{
	return op->name_len <= AUTH_NAME_MAX && op->role_len <= AUTH_NAME_MAX && op->hash_len <= AUTH_HASH_MAX &&
	       op->key_len <= AUTH_KEY_MAX && op->end_len <= AUTH_KEY_MAX;
}

static void op_write(const struct auth_op *op, struct wbuf *w)
{
	w_u8(w, OP_VERSION);
	w_u8(w, (uint8_t)op->type);
	switch (op->type) {
	case AUTH_OP_ENABLE:
	case AUTH_OP_DISABLE:
		break;
	case AUTH_OP_USER_ADD:
		w_str(w, op->name, op->name_len);
		w_u8(w, op->no_password ? 1 : 0);
		w_str(w, op->hash, op->hash_len);
		break;
	case AUTH_OP_USER_DELETE:
	case AUTH_OP_ROLE_ADD:
	case AUTH_OP_ROLE_DELETE:
		w_str(w, op->name, op->name_len);
		break;
	case AUTH_OP_USER_CHANGE_PASSWORD:
		w_str(w, op->name, op->name_len);
		w_str(w, op->hash, op->hash_len);
		break;
	case AUTH_OP_USER_GRANT_ROLE:
	case AUTH_OP_USER_REVOKE_ROLE:
		w_str(w, op->name, op->name_len);
		w_str(w, op->role, op->role_len);
		break;
	case AUTH_OP_ROLE_GRANT_PERMISSION:
		w_str(w, op->name, op->name_len);
		w_u8(w, op->has_perm ? 1 : 0);
		w_u32(w, (uint32_t)op->perm_type);
		w_str(w, op->key, op->key_len);
		w_str(w, op->end, op->end_len);
		break;
	case AUTH_OP_ROLE_REVOKE_PERMISSION:
		w_str(w, op->name, op->name_len);
		w_str(w, op->key, op->key_len);
		w_str(w, op->end, op->end_len);
		break;
	default:
		break;
	}
}

size_t auth_op_size(const struct auth_op *op)
{
	struct wbuf w = { 0 };
	op_write(op, &w);
	return w.len;
}

ssize_t auth_op_encode(const struct auth_op *op, uint8_t *out, size_t cap)
{
	if (op->type < AUTH_OP_ENABLE || op->type >= AUTH_OP_LAST_ || !op_fields_fit(op))
		return -EINVAL;
	struct wbuf w = { out, 0, cap };
	op_write(op, &w);
	if (w.len > cap)
		return -ENOSPC;
	return (ssize_t)w.len;
}

int auth_op_decode(const uint8_t *buf, size_t len, struct auth_op *op)
{
	struct rbuf r = { buf, len, 0, false };
	uint8_t flags;

	memset(op, 0, sizeof *op);
	if (r_u8(&r) != OP_VERSION)
		return -EINVAL;
	op->type = (enum auth_op_type)r_u8(&r);
	switch (op->type) {
	case AUTH_OP_ENABLE:
	case AUTH_OP_DISABLE:
		break;
	case AUTH_OP_USER_ADD:
		op->name = r_str(&r, AUTH_NAME_MAX, &op->name_len);
		flags = r_u8(&r);
		if (flags > 1)
			return -EINVAL;
		op->no_password = flags;
		op->hash = r_str(&r, AUTH_HASH_MAX, &op->hash_len);
		break;
	case AUTH_OP_USER_DELETE:
	case AUTH_OP_ROLE_ADD:
	case AUTH_OP_ROLE_DELETE:
		op->name = r_str(&r, AUTH_NAME_MAX, &op->name_len);
		break;
	case AUTH_OP_USER_CHANGE_PASSWORD:
		op->name = r_str(&r, AUTH_NAME_MAX, &op->name_len);
		op->hash = r_str(&r, AUTH_HASH_MAX, &op->hash_len);
		break;
	case AUTH_OP_USER_GRANT_ROLE:
	case AUTH_OP_USER_REVOKE_ROLE:
		op->name = r_str(&r, AUTH_NAME_MAX, &op->name_len);
		op->role = r_str(&r, AUTH_NAME_MAX, &op->role_len);
		break;
	case AUTH_OP_ROLE_GRANT_PERMISSION:
		op->name = r_str(&r, AUTH_NAME_MAX, &op->name_len);
		flags = r_u8(&r);
		if (flags > 1)
			return -EINVAL;
		op->has_perm = flags;
		op->perm_type = (int32_t)r_u32(&r);
		op->key = r_str(&r, AUTH_KEY_MAX, &op->key_len);
		op->end = r_str(&r, AUTH_KEY_MAX, &op->end_len);
		break;
	case AUTH_OP_ROLE_REVOKE_PERMISSION:
		op->name = r_str(&r, AUTH_NAME_MAX, &op->name_len);
		op->key = r_str(&r, AUTH_KEY_MAX, &op->key_len);
		op->end = r_str(&r, AUTH_KEY_MAX, &op->end_len);
		break;
	default:
		return -EINVAL;
	}
	if (r.bad || r.off != len)
		return -EINVAL;
	return 0;
}

/* ---- checkpoints ---- */

static void state_write(const struct auth *a, struct wbuf *w)
{
	w_bytes(w, STATE_MAGIC, 4);
	w_u64(w, a->revision);
	w_u8(w, a->enabled ? 1 : 0);
	w_u32(w, (uint32_t)a->nusers);
	for (size_t i = 0; i < a->nusers; i++) {
		const struct auth_user *u = a->users[i];
		w_str(w, u->name.p, u->name.len);
		w_u8(w, u->no_password ? 1 : 0);
		w_str(w, u->hash.p, u->hash.len);
		w_u32(w, (uint32_t)u->nroles);
		for (size_t j = 0; j < u->nroles; j++)
			w_str(w, u->roles[j].p, u->roles[j].len);
	}
	w_u32(w, (uint32_t)a->nroles);
	for (size_t i = 0; i < a->nroles; i++) {
		const struct auth_role *r = a->roles[i];
		w_str(w, r->name.p, r->name.len);
		w_u32(w, (uint32_t)r->nperms);
		for (size_t j = 0; j < r->nperms; j++) {
			w_u32(w, (uint32_t)r->perms[j].type);
			w_str(w, r->perms[j].key.p, r->perms[j].key.len);
			w_str(w, r->perms[j].end.p, r->perms[j].end.len);
		}
	}
}

size_t auth_state_size(const struct auth *a)
{
	struct wbuf w = { 0 };
	state_write(a, &w);
	return w.len;
}

ssize_t auth_state_encode(const struct auth *a, uint8_t *out, size_t cap)
{
	struct wbuf w = { out, 0, cap };
	state_write(a, &w);
	if (w.len > cap)
		return -ENOSPC;
	return (ssize_t)w.len;
}

/* A count of items each at least min_bytes long: within max and the bytes left. */
static bool count_ok(const struct rbuf *r, uint32_t n, size_t max, size_t min_bytes)
{
	return !r->bad && n <= max && n <= (r->len - r->off) / min_bytes;
}

struct auth *auth_state_decode(const uint8_t *buf, size_t len, int *err)
{
	struct rbuf r = { buf, len, 0, false };
	struct auth *a = auth_calloc(1, sizeof *a);
	const uint8_t *p, *prev = NULL;
	size_t n, prev_len = 0;

	if (!r_need(&r, 4) || memcmp(buf, STATE_MAGIC, 4) != 0)
		goto fail;
	r.off = 4;
	a->revision = r_u64(&r);
	uint8_t en = r_u8(&r);
	if (r.bad || a->revision == 0 || en > 1)
		goto fail;
	uint32_t nu = r_u32(&r);
	if (!count_ok(&r, nu, AUTH_USERS_MAX, 13))
		goto fail;
	a->ucap = nu;
	a->users = auth_calloc(nu, sizeof *a->users);
	for (uint32_t i = 0; i < nu; i++) {
		p = r_str(&r, AUTH_NAME_MAX, &n);
		if (r.bad || n == 0 || (prev && bytes_cmp(prev, prev_len, p, n) >= 0))
			goto fail;
		prev = p;
		prev_len = n;
		struct auth_user *u = user_new(p, n);
		a->users[a->nusers++] = u;
		uint8_t flags = r_u8(&r);
		if (flags > 1)
			goto fail;
		u->no_password = flags;
		p = r_str(&r, AUTH_HASH_MAX, &n);
		if (r.bad || (u->no_password && n))
			goto fail;
		free(u->hash.p);
		u->hash = bytes_dup(p, n);
		uint32_t nr = r_u32(&r);
		if (!count_ok(&r, nr, AUTH_ROLES_MAX, 4))
			goto fail;
		for (uint32_t j = 0; j < nr; j++) {
			p = r_str(&r, AUTH_NAME_MAX, &n);
			if (r.bad || n == 0 ||
			    (j && bytes_cmp(u->roles[j - 1].p, u->roles[j - 1].len, p, n) >= 0))
				goto fail;
			user_insert_role(u, j, p, n);
		}
	}
	uint32_t nroles = r_u32(&r);
	if (!count_ok(&r, nroles, AUTH_ROLES_MAX, 8))
		goto fail;
	a->rcap = nroles;
	a->roles = auth_calloc(nroles, sizeof *a->roles);
	prev = NULL;
	for (uint32_t i = 0; i < nroles; i++) {
		p = r_str(&r, AUTH_NAME_MAX, &n);
		if (r.bad || n == 0 || (prev && bytes_cmp(prev, prev_len, p, n) >= 0))
			goto fail;
		prev = p;
		prev_len = n;
		struct auth_role *ro = role_new(p, n);
		a->roles[a->nroles++] = ro;
		uint32_t np = r_u32(&r);
		if (!count_ok(&r, np, AUTH_ROLE_PERMS_MAX, 12))
			goto fail;
		for (uint32_t j = 0; j < np; j++) {
			size_t klen, elen;
			int32_t type = (int32_t)r_u32(&r);
			const uint8_t *key = r_str(&r, AUTH_KEY_MAX, &klen);
			const uint8_t *end = r_str(&r, AUTH_KEY_MAX, &elen);
			if (r.bad || !perm_range_valid(key, klen, end, elen))
				goto fail;
			if (j && bytes_cmp(ro->perms[j - 1].key.p, ro->perms[j - 1].key.len, key, klen) > 0)
				goto fail;
			role_insert_perm(ro, j, type, key, klen, end, elen);
		}
	}
	if (r.bad || r.off != len)
		goto fail;
	for (size_t i = 0; i < a->nusers; i++)
		rebuild_user(a, a->users[i]);
	a->enabled = en;
	if (a->enabled) { /* the invariant enable and its guards keep */
		const struct auth_user *root = find_user(a, ROOT, ROOT_LEN);
		if (!root || !root->root)
			goto fail;
	}
	return a;
fail:
	auth_free(a);
	*err = -EINVAL;
	return NULL;
}
