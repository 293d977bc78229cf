/* core/auth: etcd 3.5's AuthStore rules and messages (each checked by hand against the
 * reference etcd 3.5.16 through its JSON gateway), the permission check against a
 * brute-force model of etcd's interval tree on random ranges, and the byte formats: round
 * trips, every truncation, random corruption. */
#include "core/auth.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S(x) (const uint8_t *)(x), strlen(x)
#define HASH "$2b$04$abcdefghijklmnopqrstuuOs.fJqD5D1Kf8Pb6Ow2DDAPbGkCGN8i"

static int add_user(struct auth *a, const char *name) { return auth_user_add(a, S(name), S(HASH), false); }

/* Makes root with role root and enables auth. */
static void enable_with_root(struct auth *a)
{
	cr_assert_eq(add_user(a, "root"), 0);
	cr_assert_eq(auth_user_grant_role(a, S("root"), S("root")), 0);
	cr_assert_eq(auth_enable(a), 0);
}

/* Collects names or permissions into one string: "a,b," / "R[a,c) W[z] RW[b,\0)". */
struct collect {
	char s[4096];
	size_t n;
};

static void put_name(void *arg, const uint8_t *p, size_t len)
{
	struct collect *c = arg;
	c->n += (size_t)snprintf(c->s + c->n, sizeof c->s - c->n, "%.*s,", (int)len, (const char *)p);
}

static void put_perm(void *arg, int type, const uint8_t *k, size_t kl, const uint8_t *e, size_t el)
{
	static const char *t[] = { "R", "W", "RW" };
	struct collect *c = arg;
	if (el == 0)
		c->n += (size_t)snprintf(c->s + c->n, sizeof c->s - c->n, "%s[%.*s] ", t[type], (int)kl, (const char *)k);
	else if (el == 1 && e[0] == 0)
		c->n += (size_t)snprintf(c->s + c->n, sizeof c->s - c->n, "%s[%.*s,\\0) ", t[type], (int)kl,
					 (const char *)k);
	else
		c->n += (size_t)snprintf(c->s + c->n, sizeof c->s - c->n, "%s[%.*s,%.*s) ", t[type], (int)kl,
					 (const char *)k, (int)el, (const char *)e);
}

static const char *users(const struct auth *a)
{
	static struct collect c;
	c.n = 0;
	c.s[0] = 0;
	auth_user_list(a, put_name, &c);
	return c.s;
}

static const char *roles(const struct auth *a)
{
	static struct collect c;
	c.n = 0;
	c.s[0] = 0;
	auth_role_list(a, put_name, &c);
	return c.s;
}

static const char *user_roles(const struct auth *a, const char *u)
{
	static struct collect c;
	c.n = 0;
	c.s[0] = 0;
	if (auth_user_get(a, S(u), put_name, &c))
		return "ERR";
	return c.s;
}

static const char *perms(const struct auth *a, const char *r)
{
	static struct collect c;
	c.n = 0;
	c.s[0] = 0;
	if (auth_role_get(a, S(r), put_perm, &c))
		return "ERR";
	return c.s;
}

Test(auth, messages_and_codes_are_etcds)
{
	cr_assert_str_eq(auth_strerror(AUTH_ERR_ROOT_USER_NOT_EXIST), "etcdserver: root user does not exist");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_ROOT_ROLE_NOT_EXIST), "etcdserver: root user does not have root role");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_USER_ALREADY_EXIST), "etcdserver: user name already exists");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_USER_EMPTY), "etcdserver: user name is empty");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_USER_NOT_FOUND), "etcdserver: user name not found");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_ROLE_ALREADY_EXIST), "etcdserver: role name already exists");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_ROLE_NOT_FOUND), "etcdserver: role name not found");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_ROLE_EMPTY), "etcdserver: role name is empty");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_PERMISSION_NOT_GIVEN), "etcdserver: permission not given");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_AUTH_FAILED),
			 "etcdserver: authentication failed, invalid user ID or password");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_PERMISSION_DENIED), "etcdserver: permission denied");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_ROLE_NOT_GRANTED), "etcdserver: role is not granted to the user");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_PERMISSION_NOT_GRANTED),
			 "etcdserver: permission is not granted to the role");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_AUTH_NOT_ENABLED), "etcdserver: authentication is not enabled");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_INVALID_AUTH_TOKEN), "etcdserver: invalid auth token");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_INVALID_AUTH_MGMT), "etcdserver: invalid auth management");
	cr_assert_str_eq(auth_strerror(AUTH_ERR_AUTH_OLD_REVISION), "etcdserver: revision of auth store is old");
	cr_assert_str_eq(auth_strerror(0), "unknown error");
	cr_assert_str_eq(auth_strerror(-EINVAL), "unknown error");
	cr_assert_eq(auth_grpc_code(AUTH_ERR_USER_NOT_FOUND), 9);
	cr_assert_eq(auth_grpc_code(AUTH_ERR_USER_EMPTY), 3);
	cr_assert_eq(auth_grpc_code(AUTH_ERR_INVALID_AUTH_MGMT), 3);
	cr_assert_eq(auth_grpc_code(AUTH_ERR_PERMISSION_DENIED), 7);
	cr_assert_eq(auth_grpc_code(AUTH_ERR_INVALID_AUTH_TOKEN), 16);
	cr_assert_eq(auth_grpc_code(AUTH_ERR_NO_PASSWORD_USER), 2);
	for (int e = AUTH_ERR_ROOT_USER_NOT_EXIST; e < AUTH_ERR_LAST_; e++)
		cr_assert(auth_strerror(e) && auth_strerror(e)[0], "message for %d", e);
}

Test(auth, new_state_is_disabled_at_revision_one)
{
	struct auth *a = auth_new();
	cr_assert_not(auth_is_enabled(a));
	cr_assert_eq(auth_revision(a), 1);
	cr_assert_eq(auth_user_count(a), 0);
	cr_assert_eq(auth_role_count(a), 0);
	auth_free(a);
}

Test(auth, enable_needs_root_with_root_role_and_keeps_revision)
{
	struct auth *a = auth_new();
	cr_assert_eq(auth_enable(a), AUTH_ERR_ROOT_USER_NOT_EXIST);
	cr_assert_eq(add_user(a, "root"), 0);
	cr_assert_eq(auth_enable(a), AUTH_ERR_ROOT_ROLE_NOT_EXIST);
	cr_assert_eq(auth_user_grant_role(a, S("root"), S("root")), 0, "root role needs no role entry");
	cr_assert_eq(auth_revision(a), 3);
	cr_assert_eq(auth_enable(a), 0);
	cr_assert(auth_is_enabled(a));
	cr_assert_eq(auth_revision(a), 3, "etcd's AuthEnable commits no revision");
	cr_assert_eq(auth_enable(a), 0, "enabling again is a no-op");
	cr_assert_eq(auth_revision(a), 3);
	cr_assert_eq(auth_disable(a), 0);
	cr_assert_not(auth_is_enabled(a));
	cr_assert_eq(auth_revision(a), 4, "disabling commits one");
	cr_assert_eq(auth_disable(a), 0);
	cr_assert_eq(auth_revision(a), 4, "disabling again is a no-op");
	auth_free(a);
}

Test(auth, user_add_errors)
{
	struct auth *a = auth_new();
	cr_assert_eq(auth_user_add(a, S(""), S(HASH), false), AUTH_ERR_USER_EMPTY);
	cr_assert_eq(add_user(a, "u"), 0);
	cr_assert_eq(add_user(a, "u"), AUTH_ERR_USER_ALREADY_EXIST);
	cr_assert_eq(auth_user_add(a, S("u"), NULL, 0, true), AUTH_ERR_USER_ALREADY_EXIST);
	uint8_t big[AUTH_HASH_MAX + 1] = { 0 };
	cr_assert_eq(auth_user_add(a, S("v"), big, sizeof big, false), AUTH_ERR_TOO_LARGE);
	cr_assert_eq(auth_user_add(a, S("v"), big, sizeof big, true), 0, "no-password ignores the hash");
	cr_assert_eq(auth_revision(a), 3);
	auth_free(a);
}

Test(auth, users_and_roles_list_sorted_bytewise)
{
	struct auth *a = auth_new();
	const char *names[] = { "root", "np", "B", "ab", "a" };
	for (int i = 0; i < 5; i++)
		cr_assert_eq(add_user(a, names[i]), 0);
	cr_assert_str_eq(users(a), "B,a,ab,np,root,");
	cr_assert_eq(auth_role_add(a, S("r1")), 0);
	cr_assert_eq(auth_role_add(a, S("Z")), 0);
	cr_assert_eq(auth_role_add(a, S("root")), 0);
	cr_assert_str_eq(roles(a), "Z,r1,root,");
	cr_assert_eq(auth_user_grant_role(a, S("ab"), S("r1")), 0);
	cr_assert_eq(auth_user_grant_role(a, S("ab"), S("Z")), 0);
	cr_assert_eq(auth_user_grant_role(a, S("ab"), S("root")), 0);
	cr_assert_str_eq(user_roles(a, "ab"), "Z,r1,root,");
	cr_assert_eq(auth_user_get(a, S("zz"), put_name, NULL), AUTH_ERR_USER_NOT_FOUND);
	cr_assert_eq(auth_role_get(a, S("zz"), put_perm, NULL), AUTH_ERR_ROLE_NOT_FOUND);
	auth_free(a);
}

Test(auth, user_delete)
{
	struct auth *a = auth_new();
	cr_assert_eq(auth_user_delete(a, S("nobody")), AUTH_ERR_USER_NOT_FOUND);
	enable_with_root(a);
	uint64_t rev = auth_revision(a);
	cr_assert_eq(auth_user_delete(a, S("root")), AUTH_ERR_INVALID_AUTH_MGMT);
	cr_assert_eq(add_user(a, "u"), 0);
	cr_assert_eq(auth_user_delete(a, S("u")), 0);
	cr_assert_eq(auth_revision(a), rev + 2);
	cr_assert_eq(auth_user_get(a, S("u"), put_name, NULL), AUTH_ERR_USER_NOT_FOUND);
	cr_assert_eq(auth_disable(a), 0);
	cr_assert_eq(auth_user_delete(a, S("root")), 0, "root may go while disabled");
	cr_assert_str_eq(users(a), "");
	auth_free(a);
}

Test(auth, change_password)
{
	struct auth *a = auth_new();
	char out[AUTH_HASH_MAX + 1];
	uint64_t rev;

	cr_assert_eq(auth_user_change_password(a, S("zz"), S(HASH)), AUTH_ERR_USER_NOT_FOUND);
	enable_with_root(a);
	cr_assert_eq(auth_user_add(a, S("np"), NULL, 0, true), 0);
	uint64_t r0 = auth_revision(a);
	cr_assert_eq(auth_user_change_password(a, S("np"), S(HASH)), 0, "etcd accepts it");
	cr_assert_eq(auth_revision(a), r0 + 1);
	cr_assert_eq(auth_user_password(a, S("np"), out, sizeof out, &rev), AUTH_ERR_NO_PASSWORD_USER,
		     "and the user stays without password");
	cr_assert_eq(auth_user_change_password(a, S("root"), S("$2b$04$other")), 0);
	cr_assert_eq(auth_user_password(a, S("root"), out, sizeof out, &rev), 0);
	cr_assert_str_eq(out, "$2b$04$other");
	cr_assert_eq(rev, auth_revision(a));
	auth_free(a);
}

Test(auth, user_password_for_authenticate)
{
	struct auth *a = auth_new();
	char out[AUTH_HASH_MAX + 1];
	uint64_t rev = 0;

	cr_assert_eq(add_user(a, "root"), 0);
	cr_assert_eq(auth_user_password(a, S("root"), out, sizeof out, &rev), AUTH_ERR_AUTH_NOT_ENABLED);
	cr_assert_eq(auth_user_grant_role(a, S("root"), S("root")), 0);
	cr_assert_eq(auth_enable(a), 0);
	cr_assert_eq(auth_user_password(a, S("nobody"), out, sizeof out, &rev), AUTH_ERR_AUTH_FAILED);
	cr_assert_eq(auth_user_password(a, S("root"), out, 3, &rev), -ENOSPC);
	cr_assert_eq(auth_user_password(a, S("root"), out, sizeof out, &rev), 0);
	cr_assert_str_eq(out, HASH);
	cr_assert_eq(rev, 3);
	auth_free(a);
}

Test(auth, grant_role)
{
	struct auth *a = auth_new();
	cr_assert_eq(auth_user_grant_role(a, S("zz"), S("zz")), AUTH_ERR_USER_NOT_FOUND, "user first");
	cr_assert_eq(add_user(a, "u"), 0);
	cr_assert_eq(auth_user_grant_role(a, S("u"), S("nope")), AUTH_ERR_ROLE_NOT_FOUND);
	cr_assert_eq(auth_user_grant_role(a, S("u"), S("")), AUTH_ERR_ROLE_NOT_FOUND);
	cr_assert_eq(auth_role_add(a, S("r")), 0);
	uint64_t rev = auth_revision(a);
	cr_assert_eq(auth_user_grant_role(a, S("u"), S("r")), 0);
	cr_assert_eq(auth_revision(a), rev + 1);
	cr_assert_eq(auth_user_grant_role(a, S("u"), S("r")), 0, "granting again is ignored");
	cr_assert_eq(auth_revision(a), rev + 1, "without a revision");
	cr_assert(auth_user_has_role(a, S("u"), S("r")));
	cr_assert_not(auth_user_has_role(a, S("u"), S("root")));
	cr_assert_not(auth_user_has_role(a, S("x"), S("r")));
	auth_free(a);
}

Test(auth, revoke_role)
{
	struct auth *a = auth_new();
	cr_assert_eq(auth_user_revoke_role(a, S("zz"), S("zz")), AUTH_ERR_USER_NOT_FOUND);
	enable_with_root(a);
	cr_assert_eq(auth_user_revoke_role(a, S("root"), S("root")), AUTH_ERR_INVALID_AUTH_MGMT);
	cr_assert_eq(add_user(a, "u"), 0);
	cr_assert_eq(auth_user_revoke_role(a, S("u"), S("zz")), AUTH_ERR_ROLE_NOT_GRANTED);
	cr_assert_eq(auth_user_grant_role(a, S("u"), S("root")), 0);
	cr_assert_eq(auth_check_admin(a, S("u")), 0);
	cr_assert_eq(auth_user_revoke_role(a, S("u"), S("root")), 0);
	cr_assert_eq(auth_check_admin(a, S("u")), AUTH_ERR_PERMISSION_DENIED);
	cr_assert_eq(auth_disable(a), 0);
	cr_assert_eq(auth_user_revoke_role(a, S("root"), S("root")), 0, "allowed while disabled");
	auth_free(a);
}

Test(auth, role_add_and_delete)
{
	struct auth *a = auth_new();
	cr_assert_eq(auth_role_add(a, S("")), AUTH_ERR_ROLE_EMPTY);
	cr_assert_eq(auth_role_add(a, S("r1")), 0);
	cr_assert_eq(auth_role_add(a, S("r1")), AUTH_ERR_ROLE_ALREADY_EXIST);
	cr_assert_eq(auth_role_delete(a, S("zz")), AUTH_ERR_ROLE_NOT_FOUND);
	enable_with_root(a);
	cr_assert_eq(auth_role_delete(a, S("root")), AUTH_ERR_INVALID_AUTH_MGMT, "even with no role entry");
	cr_assert_eq(auth_role_get(a, S("root"), put_perm, NULL), AUTH_ERR_ROLE_NOT_FOUND);
	cr_assert_eq(auth_role_add(a, S("root")), 0, "root may be added as a role");
	cr_assert_str_eq(perms(a, "root"), "", "etcd 3.5.16 lists no permission for it");
	cr_assert_eq(auth_role_delete(a, S("root")), AUTH_ERR_INVALID_AUTH_MGMT);
	cr_assert_eq(add_user(a, "u"), 0);
	cr_assert_eq(add_user(a, "v"), 0);
	cr_assert_eq(auth_user_grant_role(a, S("u"), S("r1")), 0);
	cr_assert_eq(auth_user_grant_role(a, S("v"), S("r1")), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("r1"), AUTH_PERM_READ, S("k"), NULL, 0), 0);
	cr_assert_eq(auth_check_range(a, S("u"), S("k"), NULL, 0, AUTH_READ), 0);
	uint64_t rev = auth_revision(a);
	cr_assert_eq(auth_role_delete(a, S("r1")), 0);
	cr_assert_eq(auth_revision(a), rev + 1, "one revision for the role and its users");
	cr_assert_str_eq(user_roles(a, "u"), "");
	cr_assert_str_eq(user_roles(a, "v"), "");
	cr_assert_eq(auth_check_range(a, S("u"), S("k"), NULL, 0, AUTH_READ), AUTH_ERR_PERMISSION_DENIED);
	cr_assert_eq(auth_role_add(a, S("r1")), 0);
	cr_assert_eq(auth_check_range(a, S("u"), S("k"), NULL, 0, AUTH_READ), AUTH_ERR_PERMISSION_DENIED,
		     "a new role of the same name is not granted");
	auth_free(a);
}

Test(auth, grant_permission_validation)
{
	struct auth *a = auth_new();
	struct auth_op op = { .type = AUTH_OP_ROLE_GRANT_PERMISSION, .name = (const uint8_t *)"r1", .name_len = 2 };
	cr_assert_eq(auth_apply(a, &op), AUTH_ERR_PERMISSION_NOT_GIVEN);
	cr_assert_eq(auth_role_grant_permission(a, S("nope"), AUTH_PERM_READ, S("b"), S("a")), AUTH_ERR_INVALID_AUTH_MGMT,
		     "the range is checked before the role");
	cr_assert_eq(auth_role_grant_permission(a, S("nope"), AUTH_PERM_READ, S("b"), NULL, 0), AUTH_ERR_ROLE_NOT_FOUND);
	cr_assert_eq(auth_role_add(a, S("r1")), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("r1"), AUTH_PERM_READ, S(""), NULL, 0), AUTH_ERR_INVALID_AUTH_MGMT);
	cr_assert_eq(auth_role_grant_permission(a, S("r1"), AUTH_PERM_READ, S(""), (const uint8_t *)"", 1),
		     AUTH_ERR_INVALID_AUTH_MGMT);
	cr_assert_eq(auth_role_grant_permission(a, S("r1"), AUTH_PERM_READ, S("b"), S("b")), AUTH_ERR_INVALID_AUTH_MGMT);
	cr_assert_eq(auth_role_grant_permission(a, S("r1"), AUTH_PERM_READ, S("b"), S("a")), AUTH_ERR_INVALID_AUTH_MGMT);
	cr_assert_eq(auth_role_grant_permission(a, S("r1"), AUTH_PERM_READ, S("b"), (const uint8_t *)"", 1), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("r1"), AUTH_PERM_READ, (const uint8_t *)"", 1,
						(const uint8_t *)"", 1),
		     0, "\\0..\\0 is every key");
	cr_assert_eq(auth_role_grant_permission(a, S("r1"), AUTH_PERM_READ, S("b"), S("ba")), 0);
	auth_free(a);
}

/* The sequence run against etcd 3.5.16 (role "D"): grants of [a,c) [a,b) [a,b) [a] [a,c)
 * list as [a,c) [a,b) [a,b) [a]: the last grant updated [a,c) in place, the third appended a
 * duplicate since etcd looks only at the first permission with key a. Revoking [a,b)
 * removes both copies. Each grant commits a revision. */
Test(auth, grant_permission_merges_as_etcd)
{
	struct auth *a = auth_new();
	cr_assert_eq(auth_role_add(a, S("D")), 0);
	uint64_t rev = auth_revision(a);
	cr_assert_eq(auth_role_grant_permission(a, S("D"), AUTH_PERM_READ, S("a"), S("c")), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("D"), AUTH_PERM_READ, S("a"), S("b")), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("D"), AUTH_PERM_READ, S("a"), S("b")), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("D"), AUTH_PERM_READ, S("a"), NULL, 0), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("D"), AUTH_PERM_WRITE, S("a"), S("c")), 0);
	cr_assert_str_eq(perms(a, "D"), "W[a,c) R[a,b) R[a,b) R[a] ");
	cr_assert_eq(auth_revision(a), rev + 5);
	cr_assert_eq(auth_role_revoke_permission(a, S("D"), S("a"), S("b")), 0);
	cr_assert_str_eq(perms(a, "D"), "W[a,c) R[a] ");
	cr_assert_eq(auth_revision(a), rev + 6);

	/* role Z of the same session: sorted by key, equal keys in grant order */
	cr_assert_eq(auth_role_add(a, S("Z")), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("Z"), AUTH_PERM_WRITE, S("z"), NULL, 0), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("Z"), AUTH_PERM_READ, S("a"), S("c")), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("Z"), AUTH_PERM_READ, S("a"), S("b")), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("Z"), AUTH_PERM_READWRITE, S("a"), S("c")), 0);
	cr_assert_str_eq(perms(a, "Z"), "RW[a,c) R[a,b) W[z] ");
	auth_free(a);
}

Test(auth, revoke_permission_errors)
{
	struct auth *a = auth_new();
	cr_assert_eq(auth_role_revoke_permission(a, S("nope"), S("b"), NULL, 0), AUTH_ERR_ROLE_NOT_FOUND);
	cr_assert_eq(auth_role_add(a, S("r")), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("r"), AUTH_PERM_READ, S("b"), S("c")), 0);
	uint64_t rev = auth_revision(a);
	cr_assert_eq(auth_role_revoke_permission(a, S("r"), S("b"), NULL, 0), AUTH_ERR_PERMISSION_NOT_GRANTED,
		     "key and range_end must both match");
	cr_assert_eq(auth_role_revoke_permission(a, S("r"), S("b"), S("d")), AUTH_ERR_PERMISSION_NOT_GRANTED);
	cr_assert_eq(auth_revision(a), rev);
	cr_assert_eq(auth_role_revoke_permission(a, S("r"), S("b"), S("c")), 0);
	cr_assert_str_eq(perms(a, "r"), "");
	auth_free(a);
}

Test(auth, check_revision_and_admin)
{
	struct auth *a = auth_new();
	cr_assert_eq(auth_check_revision(a, 0), 0, "disabled: anything goes");
	cr_assert_eq(auth_check_admin(a, S("")), 0);
	enable_with_root(a);
	cr_assert_eq(add_user(a, "u"), 0);
	uint64_t rev = auth_revision(a);
	cr_assert_eq(auth_check_revision(a, 0), AUTH_ERR_USER_EMPTY);
	cr_assert_eq(auth_check_revision(a, rev - 1), AUTH_ERR_AUTH_OLD_REVISION);
	cr_assert_eq(auth_check_revision(a, rev), 0);
	cr_assert_eq(auth_check_revision(a, rev + 1), 0);
	cr_assert_eq(auth_check_admin(a, S("")), AUTH_ERR_USER_EMPTY);
	cr_assert_eq(auth_check_admin(a, S("nobody")), AUTH_ERR_USER_NOT_FOUND);
	cr_assert_eq(auth_check_admin(a, S("u")), AUTH_ERR_PERMISSION_DENIED);
	cr_assert_eq(auth_check_admin(a, S("root")), 0);
	auth_free(a);
}

#define CHK(a, u, k, e, w) auth_check_range(a, S(u), S(k), S(e), w)

Test(auth, check_range_rules)
{
	struct auth *a = auth_new();
	const uint8_t z = 0;

	enable_with_root(a);
	cr_assert_eq(add_user(a, "u"), 0);
	cr_assert_eq(auth_role_add(a, S("r")), 0);
	cr_assert_eq(auth_user_grant_role(a, S("u"), S("r")), 0);
	cr_assert_eq(CHK(a, "u", "a", "", AUTH_READ), AUTH_ERR_PERMISSION_DENIED, "no permission");
	cr_assert_eq(CHK(a, "root", "a", "", AUTH_READ | AUTH_WRITE), 0, "root role: everything");
	cr_assert_eq(CHK(a, "nobody", "a", "", AUTH_READ), AUTH_ERR_PERMISSION_DENIED);
	cr_assert_eq(auth_role_grant_permission(a, S("r"), AUTH_PERM_READ, S("a"), S("c")), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("r"), AUTH_PERM_WRITE, S("k"), NULL, 0), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("r"), AUTH_PERM_READWRITE, S("x"), &z, 1), 0);
	cr_assert_eq(CHK(a, "u", "a", "", AUTH_READ), 0);
	cr_assert_eq(CHK(a, "u", "bzzz", "", AUTH_READ), 0);
	cr_assert_eq(CHK(a, "u", "c", "", AUTH_READ), AUTH_ERR_PERMISSION_DENIED, "range_end is exclusive");
	cr_assert_eq(CHK(a, "u", "a", "c", AUTH_READ), 0);
	cr_assert_eq(CHK(a, "u", "a", "ca", AUTH_READ), AUTH_ERR_PERMISSION_DENIED);
	cr_assert_eq(CHK(a, "u", "a", "", AUTH_WRITE), AUTH_ERR_PERMISSION_DENIED, "read only");
	cr_assert_eq(CHK(a, "u", "k", "", AUTH_WRITE), 0);
	cr_assert_eq(CHK(a, "u", "k", "", AUTH_READ), AUTH_ERR_PERMISSION_DENIED);
	cr_assert_eq(auth_check_range(a, S("u"), S("k"), (const uint8_t *)"k\0", 2, AUTH_WRITE), 0,
		     "[k, k\\0) is the key k");
	cr_assert_eq(CHK(a, "u", "k", "ka", AUTH_WRITE), AUTH_ERR_PERMISSION_DENIED);
	cr_assert_eq(CHK(a, "u", "ka", "", AUTH_WRITE), AUTH_ERR_PERMISSION_DENIED);
	cr_assert_eq(auth_check_range(a, S("u"), S("x"), &z, 1, AUTH_READ | AUTH_WRITE), 0, "from key");
	cr_assert_eq(auth_check_range(a, S("u"), S("y"), &z, 1, AUTH_READ), 0);
	cr_assert_eq(auth_check_range(a, S("u"), S("w"), &z, 1, AUTH_READ), AUTH_ERR_PERMISSION_DENIED);
	cr_assert_eq(auth_check_range(a, S("u"), S("a"), &z, 1, AUTH_READ), AUTH_ERR_PERMISSION_DENIED,
		     "[a,c) does not reach +inf");
	cr_assert_eq(CHK(a, "u", "", "", AUTH_READ), AUTH_ERR_PERMISSION_DENIED, "empty key");
	/* touching intervals merge, as etcd's tree treats them as contiguous */
	cr_assert_eq(auth_role_grant_permission(a, S("r"), AUTH_PERM_READ, S("c"), S("e")), 0);
	cr_assert_eq(CHK(a, "u", "a", "e", AUTH_READ), 0);
	cr_assert_eq(CHK(a, "u", "b", "d", AUTH_READ), 0);
	/* several roles add up */
	cr_assert_eq(auth_role_add(a, S("r2")), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("r2"), AUTH_PERM_READ, S("e"), S("f")), 0);
	cr_assert_eq(CHK(a, "u", "a", "f", AUTH_READ), AUTH_ERR_PERMISSION_DENIED);
	cr_assert_eq(auth_user_grant_role(a, S("u"), S("r2")), 0);
	cr_assert_eq(CHK(a, "u", "a", "f", AUTH_READ), 0);
	cr_assert_eq(auth_role_revoke_permission(a, S("r"), S("c"), S("e")), 0);
	cr_assert_eq(CHK(a, "u", "a", "f", AUTH_READ), AUTH_ERR_PERMISSION_DENIED, "rebuilt on revoke");
	cr_assert_eq(auth_user_revoke_role(a, S("u"), S("r")), 0);
	cr_assert_eq(CHK(a, "u", "a", "", AUTH_READ), AUTH_ERR_PERMISSION_DENIED, "rebuilt on role revoke");
	cr_assert_eq(auth_disable(a), 0);
	cr_assert_eq(CHK(a, "u", "a", "", AUTH_READ), 0, "disabled: allowed");
	auth_free(a);
}

/* ---- brute force: etcd's interval tree, literally ---- */

/* etcd's BytesAffineComparable: the empty string is past every other. */
static int affine_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	if (al == 0)
		return bl == 0 ? 0 : 1;
	if (bl == 0)
		return -1;
	int c = memcmp(a, b, al < bl ? al : bl);
	return c ? (c < 0 ? -1 : 1) : (al < bl ? -1 : al > bl);
}

struct ivl {
	uint8_t b[8], e[8];
	size_t bl, el;
};

/* adt.Interval.Compare: 0 when q and c overlap. */
static int ivl_compare(const struct ivl *q, const struct ivl *c)
{
	int bb = affine_cmp(q->b, q->bl, c->b, c->bl), be = affine_cmp(q->b, q->bl, c->e, c->el),
	    eb = affine_cmp(q->e, q->el, c->b, c->bl);
	if (bb < 0 && eb <= 0)
		return -1;
	if (be >= 0)
		return 1;
	return 0;
}

struct model {
	struct ivl v[512];
	size_t n;
};

static void model_add(void *arg, int type, const uint8_t *k, size_t kl, const uint8_t *e, size_t el);
static unsigned model_want;

static void model_add(void *arg, int type, const uint8_t *k, size_t kl, const uint8_t *e, size_t el)
{
	struct model *m = arg;
	bool rd = type == AUTH_PERM_READ || type == AUTH_PERM_READWRITE;
	bool wr = type == AUTH_PERM_WRITE || type == AUTH_PERM_READWRITE;
	if (!((model_want == AUTH_READ && rd) || (model_want == AUTH_WRITE && wr)))
		return;
	struct ivl *iv = &m->v[m->n++];
	memcpy(iv->b, k, kl);
	iv->bl = kl;
	if (el == 0) { /* NewBytesAffinePoint */
		memcpy(iv->e, k, kl);
		iv->e[kl] = 0;
		iv->el = kl + 1;
	} else if (el == 1 && e[0] == 0) {
		iv->el = 0; /* open end: the largest */
	} else {
		memcpy(iv->e, e, el);
		iv->el = el;
	}
}

struct role_names {
	char names[16][8];
	int n;
};

static void collect_role(void *arg, const uint8_t *p, size_t len)
{
	struct role_names *r = arg;
	memcpy(r->names[r->n], p, len);
	r->names[r->n++][len] = 0;
}

static int ivl_sort(const void *x, const void *y)
{
	const struct ivl *a = x, *b = y;
	return affine_cmp(a->b, a->bl, b->b, b->bl);
}

/* etcd: root role, else Intersects (one key) or Contains (a range) on the user's tree. */
static bool model_allowed(const struct auth *a, const char *user, const uint8_t *k, size_t kl, const uint8_t *e,
			  size_t el, unsigned want)
{
	struct role_names rn = { .n = 0 };
	if (auth_user_get(a, S(user), collect_role, &rn))
		return false;
	for (int i = 0; i < rn.n; i++)
		if (strcmp(rn.names[i], "root") == 0)
			return true;
	for (unsigned w = AUTH_READ; w <= AUTH_WRITE; w <<= 1) {
		if (!(want & w))
			continue;
		static struct model m;
		m.n = 0;
		model_want = w;
		for (int i = 0; i < rn.n; i++)
			auth_role_get(a, S(rn.names[i]), model_add, &m);
		qsort(m.v, m.n, sizeof m.v[0], ivl_sort);
		struct ivl q = { .bl = kl };
		memcpy(q.b, k, kl);
		bool ok;
		if (el == 0) {
			memcpy(q.e, k, kl);
			q.e[kl] = 0;
			q.el = kl + 1;
			ok = false;
			for (size_t i = 0; i < m.n; i++)
				ok |= ivl_compare(&q, &m.v[i]) == 0;
		} else {
			if (!(el == 1 && e[0] == 0)) {
				memcpy(q.e, e, el);
				q.el = el;
			}
			const struct ivl *first = NULL;
			const uint8_t *maxe = NULL;
			size_t maxel = 0;
			bool contiguous = true;
			for (size_t i = 0; i < m.n && contiguous; i++) {
				const struct ivl *c = &m.v[i];
				if (ivl_compare(&q, c) != 0)
					continue;
				if (!first) {
					first = c;
					maxe = c->e;
					maxel = c->el;
					continue;
				}
				if (affine_cmp(maxe, maxel, c->b, c->bl) < 0)
					contiguous = false;
				else if (affine_cmp(c->e, c->el, maxe, maxel) > 0)
					maxe = c->e, maxel = c->el;
			}
			ok = contiguous && first && affine_cmp(maxe, maxel, q.e, q.el) >= 0 &&
			     affine_cmp(first->b, first->bl, q.b, q.bl) <= 0;
		}
		if (!ok)
			return false;
	}
	return true;
}

static size_t rnd_key(uint8_t *out, size_t min, size_t max)
{
	static const uint8_t alpha[] = { 0, 'a', 'b', 'c' };
	size_t n = min + (size_t)rand() % (max - min + 1);
	for (size_t i = 0; i < n; i++)
		out[i] = alpha[rand() % 4];
	return n;
}

/* A random end: empty (one key), "\0" (from key) or any string (maybe before key). */
static size_t rnd_end(uint8_t *out)
{
	int r = rand() % 10;
	if (r < 3)
		return 0;
	if (r < 5) {
		out[0] = 0;
		return 1;
	}
	return rnd_key(out, 1, 3);
}

Test(auth, check_range_matches_etcds_tree_on_random_ranges)
{
	size_t allowed = 0, denied = 0, ranges_allowed = 0;
	srand(12345);
	for (int round = 0; round < 60; round++) {
		struct auth *a = auth_new();
		enable_with_root(a);
		char rname[4][8] = { "r0", "r1", "r2", "r3" };
		for (int i = 0; i < 4; i++)
			cr_assert_eq(auth_role_add(a, S(rname[i])), 0);
		cr_assert_eq(add_user(a, "u"), 0);
		for (int step = 0; step < 40; step++) {
			uint8_t k[8], e[8];
			size_t kl, el;
			const char *r = rname[rand() % 4];
			switch (rand() % 6) {
			case 0:
			case 1:
			case 2:
				kl = rnd_key(k, 1, 3);
				el = rnd_end(e);
				auth_role_grant_permission(a, S(r), rand() % 3, k, kl, e, el);
				break;
			case 3:
				auth_user_grant_role(a, S("u"), S(r));
				break;
			case 4:
				if (rand() % 3 == 0)
					auth_user_revoke_role(a, S("u"), S(r));
				break;
			case 5:
				kl = rnd_key(k, 1, 3);
				el = rnd_end(e);
				auth_role_revoke_permission(a, S(r), k, kl, e, el);
				break;
			}
			for (int q = 0; q < 50; q++) {
				kl = rnd_key(k, rand() % 8 ? 1 : 0, 3);
				el = rnd_end(e);
				unsigned want = 1 + (unsigned)rand() % 3;
				bool m = model_allowed(a, "u", k, kl, e, el, want);
				int got = auth_check_range(a, S("u"), k, kl, e, el, want);
				cr_assert_eq(got == 0, m, "round %d step %d: key %zu bytes end %zu bytes want %u: %d vs %d",
					     round, step, kl, el, want, got, m);
				allowed += m;
				denied += !m;
				ranges_allowed += m && el > 1;
			}
		}
		auth_free(a);
	}
	/* the comparison means something only if both answers are common */
	cr_assert_gt(allowed, 10000, "%zu allowed, %zu denied", allowed, denied);
	cr_assert_gt(denied, 10000, "%zu allowed, %zu denied", allowed, denied);
	cr_assert_gt(ranges_allowed, 1000, "%zu ranges allowed", ranges_allowed);
}

/* ---- byte formats ---- */

static uint8_t *state_bytes(const struct auth *a, size_t *len)
{
	*len = auth_state_size(a);
	uint8_t *b = malloc(*len);
	cr_assert_eq(auth_state_encode(a, b, *len), (ssize_t)*len);
	return b;
}

static bool same_state(const struct auth *x, const struct auth *y)
{
	size_t lx, ly;
	uint8_t *bx = state_bytes(x, &lx), *by = state_bytes(y, &ly);
	bool eq = lx == ly && memcmp(bx, by, lx) == 0;
	free(bx);
	free(by);
	return eq;
}

/* A random operation over a small alphabet of names, so that many succeed and many fail. */
static void rnd_op(struct auth_op *op, uint8_t *buf)
{
	static const char *names[] = { "root", "u", "v", "r", "s", "" };
	memset(op, 0, sizeof *op);
	op->type = 1 + rand() % (AUTH_OP_LAST_ - 1);
	if (rand() % 4 == 0)
		op->type = AUTH_OP_USER_GRANT_ROLE;
	const char *n = names[rand() % 6], *r = names[rand() % 6];
	op->name = (const uint8_t *)n;
	op->name_len = strlen(n);
	op->role = (const uint8_t *)r;
	op->role_len = strlen(r);
	op->hash = (const uint8_t *)HASH;
	op->hash_len = rand() % 2 ? strlen(HASH) : 0;
	op->no_password = rand() % 3 == 0;
	op->has_perm = rand() % 8 != 0;
	op->perm_type = rand() % 3;
	op->key = buf;
	op->key_len = rnd_key(buf, 0, 3);
	op->end = buf + 8;
	op->end_len = rnd_end(buf + 8);
}

Test(auth, ops_round_trip_and_replay_to_the_same_state)
{
	srand(777);
	for (int round = 0; round < 40; round++) {
		struct auth *a = auth_new(), *b = auth_new();
		for (int i = 0; i < 200; i++) {
			struct auth_op op, dec;
			uint8_t kb[16], rec[256];
			rnd_op(&op, kb);
			size_t n = auth_op_size(&op);
			cr_assert_leq(n, sizeof rec);
			cr_assert_eq(auth_op_encode(&op, rec, n - 1), -ENOSPC);
			cr_assert_eq(auth_op_encode(&op, rec, sizeof rec), (ssize_t)n);
			cr_assert_eq(auth_op_decode(rec, n, &dec), 0);
			for (size_t cut = 0; cut < n; cut++)
				cr_assert_eq(auth_op_decode(rec, cut, &dec), -EINVAL, "truncated at %zu", cut);
			cr_assert_eq(auth_op_decode(rec, n, &dec), 0);
			int ra = auth_apply(a, &op), rb = auth_apply(b, &dec);
			cr_assert_eq(ra, rb);
			cr_assert_eq(auth_revision(a), auth_revision(b));
		}
		cr_assert(same_state(a, b));
		struct auth *c = auth_clone(a);
		cr_assert(same_state(a, c));
		auth_free(a);
		auth_free(b);
		auth_free(c);
	}
}

Test(auth, op_decode_rejects)
{
	struct auth_op op;
	uint8_t rec[64] = { 0 };
	cr_assert_eq(auth_op_decode(rec, 0, &op), -EINVAL);
	cr_assert_eq(auth_op_decode((const uint8_t *)"\x01\x01", 2, &op), 0);
	cr_assert_eq(op.type, AUTH_OP_ENABLE);
	cr_assert_eq(auth_op_decode((const uint8_t *)"\x02\x01", 2, &op), -EINVAL, "version");
	cr_assert_eq(auth_op_decode((const uint8_t *)"\x01\x00", 2, &op), -EINVAL, "type 0");
	cr_assert_eq(auth_op_decode((const uint8_t *)"\x01\x0c", 2, &op), -EINVAL, "type 12");
	cr_assert_eq(auth_op_decode((const uint8_t *)"\x01\x01\x00", 3, &op), -EINVAL, "trailing byte");
	/* user add with flags 2 */
	cr_assert_eq(auth_op_decode((const uint8_t *)"\x01\x03\x01\x00\x00\x00u\x02\x00\x00\x00\x00", 12, &op), -EINVAL);
	cr_assert_eq(auth_op_decode((const uint8_t *)"\x01\x03\x01\x00\x00\x00u\x01\x00\x00\x00\x00", 12, &op), 0);
	cr_assert(op.no_password);
	/* a length past the end, and one over the name limit */
	cr_assert_eq(auth_op_decode((const uint8_t *)"\x01\x04\xff\xff\xff\xffu", 7, &op), -EINVAL);
	struct auth_op big = { .type = AUTH_OP_ROLE_ADD, .name = rec, .name_len = AUTH_NAME_MAX + 1 };
	cr_assert_eq(auth_op_encode(&big, rec, sizeof rec), -EINVAL);
	struct auth_op bad = { .type = AUTH_OP_LAST_ };
	cr_assert_eq(auth_op_encode(&bad, rec, sizeof rec), -EINVAL);
}

/* Builds a state through random operations. */
static struct auth *rnd_state(void)
{
	struct auth *a = auth_new();
	for (int i = 0; i < 300; i++) {
		struct auth_op op;
		uint8_t kb[16];
		rnd_op(&op, kb);
		auth_apply(a, &op);
	}
	return a;
}

Test(auth, state_round_trips_deterministically)
{
	srand(4242);
	for (int round = 0; round < 30; round++) {
		struct auth *a = rnd_state();
		size_t n;
		uint8_t *b = state_bytes(a, &n);
		int err = 0;
		cr_assert_eq(auth_state_encode(a, b, n - 1), -ENOSPC);
		struct auth *d = auth_state_decode(b, n, &err);
		cr_assert_not_null(d, "round %d", round);
		cr_assert(same_state(a, d));
		cr_assert_eq(auth_is_enabled(a), auth_is_enabled(d));
		cr_assert_eq(auth_revision(a), auth_revision(d));
		/* the decoded state answers checks as the original */
		for (int q = 0; q < 200; q++) {
			uint8_t k[8], e[8];
			size_t kl = rnd_key(k, 0, 3), el = rnd_end(e);
			const char *u = rand() % 2 ? "u" : "v";
			unsigned w = 1 + (unsigned)rand() % 3;
			cr_assert_eq(auth_check_range(a, S(u), k, kl, e, el, w), auth_check_range(d, S(u), k, kl, e, el, w));
		}
		for (size_t cut = 0; cut < n; cut++) {
			struct auth *t = auth_state_decode(b, cut, &err);
			cr_assert_null(t, "truncated at %zu of %zu", cut, n);
			cr_assert_eq(err, -EINVAL);
		}
		free(b);
		auth_free(a);
		auth_free(d);
	}
}

Test(auth, state_decode_survives_garbling)
{
	srand(99);
	struct auth *a = rnd_state();
	size_t n;
	uint8_t *good = state_bytes(a, &n), *b = malloc(n + 8);
	for (int i = 0; i < 20000; i++) {
		memcpy(b, good, n);
		int flips = 1 + rand() % 4;
		for (int f = 0; f < flips; f++)
			b[rand() % n] ^= (uint8_t)(1u << (rand() % 8));
		size_t len = rand() % 8 ? n : (size_t)rand() % (n + 8);
		int err = 0;
		struct auth *d = auth_state_decode(b, len, &err);
		if (d) { /* whatever decodes must encode back to the same bytes */
			size_t m;
			uint8_t *again = state_bytes(d, &m);
			cr_assert_eq(m, len);
			cr_assert_eq(memcmp(again, b, m), 0);
			free(again);
			auth_free(d);
		} else {
			cr_assert_eq(err, -EINVAL);
		}
	}
	free(good);
	free(b);
	auth_free(a);
}

Test(auth, state_decode_rejects_broken_invariants)
{
	struct auth *a = auth_new();
	enable_with_root(a);
	size_t n;
	uint8_t *b = state_bytes(a, &n);
	int err;
	struct auth *d = auth_state_decode(b, n, &err);
	cr_assert_not_null(d);
	auth_free(d);
	/* magic */
	b[0] = 'X';
	cr_assert_null(auth_state_decode(b, n, &err));
	b[0] = 'U';
	/* enabled, with root's role removed: the role count of root sits before its role */
	auth_free(a);
	a = auth_new();
	cr_assert_eq(add_user(a, "root"), 0);
	size_t n2;
	uint8_t *b2 = state_bytes(a, &n2);
	b2[12] = 1; /* enabled without root role */
	cr_assert_null(auth_state_decode(b2, n2, &err));
	b2[12] = 0;
	memset(b2 + 4, 0, 8); /* revision 0 */
	cr_assert_null(auth_state_decode(b2, n2, &err));
	free(b);
	free(b2);
	auth_free(a);
}

Test(auth, clone_is_independent)
{
	struct auth *a = auth_new();
	enable_with_root(a);
	cr_assert_eq(add_user(a, "u"), 0);
	cr_assert_eq(auth_role_add(a, S("r")), 0);
	cr_assert_eq(auth_role_grant_permission(a, S("r"), AUTH_PERM_READ, S("k"), NULL, 0), 0);
	cr_assert_eq(auth_user_grant_role(a, S("u"), S("r")), 0);
	struct auth *c = auth_clone(a);
	cr_assert(same_state(a, c));
	cr_assert_eq(CHK(c, "u", "k", "", AUTH_READ), 0, "the clone has its own intervals");
	cr_assert_eq(auth_role_delete(a, S("r")), 0);
	cr_assert_eq(CHK(a, "u", "k", "", AUTH_READ), AUTH_ERR_PERMISSION_DENIED);
	cr_assert_eq(CHK(c, "u", "k", "", AUTH_READ), 0, "and does not follow the original");
	cr_assert_str_eq(user_roles(c, "u"), "r,");
	auth_free(a);
	auth_free(c);
}
