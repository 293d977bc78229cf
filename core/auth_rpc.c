/* See auth_rpc.h. What needs which permission, as etcd 3.5.16 answers (checked side by side
 * in tests/integration/test_auth.py):
 *   Range: read; Put, DeleteRange: write, and read too with prev_kv; Txn: read on every
 *   compare, and each op (nested too) as above; Compact, Status, Alarm, MemberList: nothing;
 *   Lease revoke, a put with a lease, and time-to-live with keys: write (read) on every key
 *   attached to the lease, checked on the sequencer, which has the lease table (core/seq.c);
 *   Hash, HashKV, Defragment, Snapshot, MoveLeader, Downgrade: root
 *   ("auth: permission denied"); member changes: root; Lock/Election: read and write on
 *   the name's prefix (their keys live there), Leader and Observe read; the Auth methods:
 *   root, except Authenticate, UserGet of oneself and RoleGet of a role one holds. */
#include "core/auth_rpc.h"

#include <errno.h>
#include <protobuf-c/protobuf-c.h>
#include <string.h>

#include "core/arena.h"
#include "core/auth.h"
#include "core/authsvc.h"
#include "core/seq.h"
#include "core/svc.h"
#include "election.pb-c.h"
#include "lock.pb-c.h"
#include "rpc.pb-c.h"
#include "storage/mvcc.h"

static const ProtobufCMessageDescriptor *const auth_descs[] = {
	[SVC_AUTH_ENABLE - SVC_AUTH_ENABLE] = &etcdserverpb__auth_enable_request__descriptor,
	[SVC_AUTH_DISABLE - SVC_AUTH_ENABLE] = &etcdserverpb__auth_disable_request__descriptor,
	[SVC_AUTH_STATUS - SVC_AUTH_ENABLE] = &etcdserverpb__auth_status_request__descriptor,
	[SVC_AUTH_AUTHENTICATE - SVC_AUTH_ENABLE] = &etcdserverpb__authenticate_request__descriptor,
	[SVC_AUTH_USER_ADD - SVC_AUTH_ENABLE] = &etcdserverpb__auth_user_add_request__descriptor,
	[SVC_AUTH_USER_GET - SVC_AUTH_ENABLE] = &etcdserverpb__auth_user_get_request__descriptor,
	[SVC_AUTH_USER_LIST - SVC_AUTH_ENABLE] = &etcdserverpb__auth_user_list_request__descriptor,
	[SVC_AUTH_USER_DELETE - SVC_AUTH_ENABLE] = &etcdserverpb__auth_user_delete_request__descriptor,
	[SVC_AUTH_USER_CHANGE_PASSWORD - SVC_AUTH_ENABLE] = &etcdserverpb__auth_user_change_password_request__descriptor,
	[SVC_AUTH_USER_GRANT_ROLE - SVC_AUTH_ENABLE] = &etcdserverpb__auth_user_grant_role_request__descriptor,
	[SVC_AUTH_USER_REVOKE_ROLE - SVC_AUTH_ENABLE] = &etcdserverpb__auth_user_revoke_role_request__descriptor,
	[SVC_AUTH_ROLE_ADD - SVC_AUTH_ENABLE] = &etcdserverpb__auth_role_add_request__descriptor,
	[SVC_AUTH_ROLE_GET - SVC_AUTH_ENABLE] = &etcdserverpb__auth_role_get_request__descriptor,
	[SVC_AUTH_ROLE_LIST - SVC_AUTH_ENABLE] = &etcdserverpb__auth_role_list_request__descriptor,
	[SVC_AUTH_ROLE_DELETE - SVC_AUTH_ENABLE] = &etcdserverpb__auth_role_delete_request__descriptor,
	[SVC_AUTH_ROLE_GRANT_PERMISSION - SVC_AUTH_ENABLE] = &etcdserverpb__auth_role_grant_permission_request__descriptor,
	[SVC_AUTH_ROLE_REVOKE_PERMISSION - SVC_AUTH_ENABLE] =
		&etcdserverpb__auth_role_revoke_permission_request__descriptor,
};

const ProtobufCMessageDescriptor *auth_rpc_desc(int method)
{
	if (method < SVC_AUTH_ENABLE || method > SVC_AUTH_ROLE_REVOKE_PERMISSION)
		return NULL;
	return auth_descs[method - SVC_AUTH_ENABLE];
}

static int auth_fail(struct kv_result *res, int err)
{
	res->code = (enum grpc_code)auth_grpc_code(err);
	res->message = auth_strerror(err);
	res->resp = NULL;
	return -1;
}

/* ---- permission checks (reactor) ---- */

struct auth_who {
	const struct auth *a;
	const uint8_t *user;
	size_t ulen;
};

static int auth_range(const struct auth_who *w, const ProtobufCBinaryData *key, const ProtobufCBinaryData *end,
		      unsigned want)
{
	return auth_check_range(w->a, w->user, w->ulen, key->data, key->len, end->data, end->len, want);
}

static int auth_txn(const struct auth_who *w, const Etcdserverpb__TxnRequest *t);

static int auth_ops(const struct auth_who *w, Etcdserverpb__RequestOp **ops, size_t n)
{
	static const ProtobufCBinaryData none = {0, NULL};
	int rc = 0;

	for (size_t i = 0; i < n && !rc; i++) {
		const Etcdserverpb__RequestOp *op = ops[i];
		switch (op->request_case) {
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
			rc = auth_range(w, &op->request_range->key, &op->request_range->range_end, AUTH_READ);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
			rc = auth_range(w, &op->request_put->key, &none,
					AUTH_WRITE | (op->request_put->prev_kv ? AUTH_READ : 0));
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
			rc = auth_range(w, &op->request_delete_range->key, &op->request_delete_range->range_end,
					AUTH_WRITE | (op->request_delete_range->prev_kv ? AUTH_READ : 0));
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
			rc = auth_txn(w, op->request_txn);
			break;
		default:
			break;
		}
	}
	return rc;
}

static int auth_txn(const struct auth_who *w, const Etcdserverpb__TxnRequest *t)
{
	int rc = 0;

	for (size_t i = 0; i < t->n_compare && !rc; i++)
		rc = auth_range(w, &t->compare[i]->key, &t->compare[i]->range_end, AUTH_READ);
	if (!rc)
		rc = auth_ops(w, t->success, t->n_success);
	if (!rc)
		rc = auth_ops(w, t->failure, t->n_failure);
	return rc;
}

/* [p, p+1) with its last byte bumped: the prefix range of the lock or election name. */
static int auth_prefix(const struct auth_who *w, const ProtobufCBinaryData *name, unsigned want)
{
	uint8_t end[256];
	size_t n = name->len;

	if (!n || n > sizeof end)
		return auth_check_range(w->a, w->user, w->ulen, name->data, n, (const uint8_t *)"\0", 1, want);
	memcpy(end, name->data, n);
	while (n && end[n - 1] == 0xff)
		n--;
	if (!n)
		return auth_check_range(w->a, w->user, w->ulen, name->data, name->len, (const uint8_t *)"\0", 1, want);
	end[n - 1]++;
	return auth_check_range(w->a, w->user, w->ulen, name->data, name->len, end, n, want);
}

static int auth_method(const struct auth_who *w, int method, const ProtobufCMessage *req)
{
	static const ProtobufCBinaryData none = {0, NULL};

	switch (method) {
	case KV_RANGE: {
		const Etcdserverpb__RangeRequest *r = (const void *)req;
		return auth_range(w, &r->key, &r->range_end, AUTH_READ);
	}
	case KV_PUT: {
		const Etcdserverpb__PutRequest *r = (const void *)req;
		return auth_range(w, &r->key, &none, AUTH_WRITE | (r->prev_kv ? AUTH_READ : 0));
	}
	case KV_DELETE_RANGE: {
		const Etcdserverpb__DeleteRangeRequest *r = (const void *)req;
		return auth_range(w, &r->key, &r->range_end, AUTH_WRITE | (r->prev_kv ? AUTH_READ : 0));
	}
	case KV_TXN:
		return auth_txn(w, (const void *)req);
	case SVC_MAINT_HASH:
	case SVC_MAINT_HASHKV:
	case SVC_MAINT_DEFRAGMENT:
	case SVC_MAINT_SNAPSHOT:
	case SVC_MAINT_MOVE_LEADER:
	case SVC_MAINT_DOWNGRADE:
		return auth_check_admin(w->a, w->user, w->ulen) ? 1 : 0;
	case SVC_CLUSTER_MEMBER_ADD:
	case SVC_CLUSTER_MEMBER_REMOVE:
	case SVC_CLUSTER_MEMBER_UPDATE:
	case SVC_CLUSTER_MEMBER_PROMOTE:
		return auth_check_admin(w->a, w->user, w->ulen);
	case SVC_LOCK_LOCK:
		return auth_prefix(w, &((const V3lockpb__LockRequest *)req)->name, AUTH_READ | AUTH_WRITE);
	case SVC_LOCK_UNLOCK:
		return auth_range(w, &((const V3lockpb__UnlockRequest *)req)->key, &none, AUTH_WRITE);
	case SVC_ELECTION_CAMPAIGN:
		return auth_prefix(w, &((const V3electionpb__CampaignRequest *)req)->name, AUTH_READ | AUTH_WRITE);
	case SVC_ELECTION_LEADER:
	case SVC_ELECTION_OBSERVE:
		return auth_prefix(w, &((const V3electionpb__LeaderRequest *)req)->name, AUTH_READ);
	case SVC_ELECTION_PROCLAIM:
	case SVC_ELECTION_RESIGN: {
		const V3electionpb__LeaderKey *l = method == SVC_ELECTION_PROCLAIM
							   ? ((const V3electionpb__ProclaimRequest *)req)->leader
							   : ((const V3electionpb__ResignRequest *)req)->leader;
		return l ? auth_range(w, &l->key, &none, AUTH_WRITE) : 0;
	}
	case SVC_AUTH_AUTHENTICATE:
		return 0;
	case SVC_AUTH_USER_GET: {
		const Etcdserverpb__AuthUserGetRequest *r = (const void *)req;
		int rc = auth_check_admin(w->a, w->user, w->ulen);
		if (rc && r->name && strlen(r->name) == w->ulen && !memcmp(r->name, w->user, w->ulen))
			return 0; /* oneself */
		return rc;
	}
	case SVC_AUTH_ROLE_GET: {
		const Etcdserverpb__AuthRoleGetRequest *r = (const void *)req;
		int rc = auth_check_admin(w->a, w->user, w->ulen);
		if (rc && r->role &&
		    auth_user_has_role(w->a, w->user, w->ulen, (const uint8_t *)r->role, strlen(r->role)))
			return 0; /* a role one holds */
		return rc;
	}
	default:
		if (method >= SVC_AUTH_ENABLE && method <= SVC_AUTH_ROLE_REVOKE_PERMISSION)
			return auth_check_admin(w->a, w->user, w->ulen);
		return 0;
	}
}

int auth_rpc_check(const struct auth *view, const struct authsvc_ident *id, int method, const ProtobufCMessage *req,
		   struct kv_result *res)
{
	struct auth_who w = {view, NULL, 0};
	int rc;

	if (method == SVC_AUTH_AUTHENTICATE)
		return 0;
	if (!id)
		return auth_fail(res, AUTH_ERR_USER_EMPTY);
	if (id->err)
		return auth_fail(res, id->err);
	if ((rc = auth_check_revision(view, id->revision ? id->revision : auth_revision(view))))
		return auth_fail(res, rc);
	w.user = id->user;
	w.ulen = id->ulen;
	rc = auth_method(&w, method, req);
	if (rc == 1) { /* the maintenance server's own words (gRPC code Unknown) */
		res->code = GRPC_UNKNOWN;
		res->message = "auth: permission denied";
		res->resp = NULL;
		return -1;
	}
	return rc ? auth_fail(res, rc) : 0;
}

const char *auth_rpc_check_watch(const struct auth *view, const struct authsvc_ident *id, const uint8_t *key,
				 size_t klen, const uint8_t *end, size_t elen)
{
	if (!id)
		return "rpc error: code = InvalidArgument desc = etcdserver: user name is empty";
	if (id->err || auth_check_revision(view, id->revision ? id->revision : auth_revision(view)))
		return "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token";
	if (auth_check_range(view, id->user, id->ulen, key, klen, end, elen, AUTH_READ))
		return "rpc error: code = PermissionDenied desc = etcdserver: permission denied";
	return NULL;
}

/* ---- the sequencer ---- */

bool auth_rpc_still_valid(const struct authsvc *as, const struct seq_req *r, struct kv_result *res)
{
	const struct auth *a = authsvc_writer((struct authsvc *)as);

	if (!auth_is_enabled(a) || r->method == SVC_AUTH_AUTHENTICATE || r->auth_checked_rev == auth_revision(a) + 1)
		return true;
	auth_fail(res, AUTH_ERR_AUTH_OLD_REVISION);
	return false;
}

struct auth_names {
	struct arena *ar;
	char **v;
	size_t n, cap;
};

static void auth_name_add(void *arg, const uint8_t *name, size_t len)
{
	struct auth_names *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		char **v = arena_alloc(l->ar, cap * sizeof *v);
		if (l->n)
			memcpy(v, l->v, l->n * sizeof *v);
		l->v = v;
		l->cap = cap;
	}
	char *s = arena_alloc(l->ar, len + 1);
	memcpy(s, name, len);
	s[len] = 0;
	l->v[l->n++] = s;
}

struct auth_perms {
	struct arena *ar;
	Authpb__Permission **v;
	size_t n, cap;
};

static void auth_perm_add(void *arg, int type, const uint8_t *key, size_t klen, const uint8_t *end, size_t elen)
{
	struct auth_perms *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		Authpb__Permission **v = arena_alloc(l->ar, cap * sizeof *v);
		if (l->n)
			memcpy(v, l->v, l->n * sizeof *v);
		l->v = v;
		l->cap = cap;
	}
	Authpb__Permission *p = arena_alloc(l->ar, sizeof *p);
	authpb__permission__init(p);
	p->permtype = (Authpb__Permission__Type)type;
	p->key.data = arena_alloc(l->ar, klen ? klen : 1);
	memcpy(p->key.data, key, klen);
	p->key.len = klen;
	p->range_end.data = arena_alloc(l->ar, elen ? elen : 1);
	memcpy(p->range_end.data, end, elen);
	p->range_end.len = elen;
	l->v[l->n++] = p;
}

#define STR(s) (const uint8_t *)((s) ? (s) : ""), ((s) ? strlen(s) : 0)

/* The operation a mutating method makes; false for the methods that only read. */
static bool auth_op_of(int method, const ProtobufCMessage *req, struct auth_op *op)
{
	memset(op, 0, sizeof *op);
	switch (method) {
	case SVC_AUTH_ENABLE:
		op->type = AUTH_OP_ENABLE;
		return true;
	case SVC_AUTH_DISABLE:
		op->type = AUTH_OP_DISABLE;
		return true;
	case SVC_AUTH_USER_ADD: {
		const Etcdserverpb__AuthUserAddRequest *r = (const void *)req;
		op->type = AUTH_OP_USER_ADD;
		op->name = (const uint8_t *)(r->name ? r->name : "");
		op->name_len = r->name ? strlen(r->name) : 0;
		op->no_password = r->options && r->options->no_password;
		op->hash = (const uint8_t *)(r->hashedpassword ? r->hashedpassword : "");
		op->hash_len = r->hashedpassword ? strlen(r->hashedpassword) : 0;
		return true;
	}
	case SVC_AUTH_USER_DELETE: {
		const Etcdserverpb__AuthUserDeleteRequest *r = (const void *)req;
		op->type = AUTH_OP_USER_DELETE;
		op->name = (const uint8_t *)(r->name ? r->name : "");
		op->name_len = r->name ? strlen(r->name) : 0;
		return true;
	}
	case SVC_AUTH_USER_CHANGE_PASSWORD: {
		const Etcdserverpb__AuthUserChangePasswordRequest *r = (const void *)req;
		op->type = AUTH_OP_USER_CHANGE_PASSWORD;
		op->name = (const uint8_t *)(r->name ? r->name : "");
		op->name_len = r->name ? strlen(r->name) : 0;
		op->hash = (const uint8_t *)(r->hashedpassword ? r->hashedpassword : "");
		op->hash_len = r->hashedpassword ? strlen(r->hashedpassword) : 0;
		return true;
	}
	case SVC_AUTH_USER_GRANT_ROLE:
	case SVC_AUTH_USER_REVOKE_ROLE: {
		const char *user, *role;
		if (method == SVC_AUTH_USER_GRANT_ROLE) {
			user = ((const Etcdserverpb__AuthUserGrantRoleRequest *)req)->user;
			role = ((const Etcdserverpb__AuthUserGrantRoleRequest *)req)->role;
			op->type = AUTH_OP_USER_GRANT_ROLE;
		} else {
			user = ((const Etcdserverpb__AuthUserRevokeRoleRequest *)req)->name;
			role = ((const Etcdserverpb__AuthUserRevokeRoleRequest *)req)->role;
			op->type = AUTH_OP_USER_REVOKE_ROLE;
		}
		op->name = (const uint8_t *)(user ? user : "");
		op->name_len = user ? strlen(user) : 0;
		op->role = (const uint8_t *)(role ? role : "");
		op->role_len = role ? strlen(role) : 0;
		return true;
	}
	case SVC_AUTH_ROLE_ADD:
	case SVC_AUTH_ROLE_DELETE: {
		const char *n = method == SVC_AUTH_ROLE_ADD ? ((const Etcdserverpb__AuthRoleAddRequest *)req)->name
							    : ((const Etcdserverpb__AuthRoleDeleteRequest *)req)->role;
		op->type = method == SVC_AUTH_ROLE_ADD ? AUTH_OP_ROLE_ADD : AUTH_OP_ROLE_DELETE;
		op->name = (const uint8_t *)(n ? n : "");
		op->name_len = n ? strlen(n) : 0;
		return true;
	}
	case SVC_AUTH_ROLE_GRANT_PERMISSION: {
		const Etcdserverpb__AuthRoleGrantPermissionRequest *r = (const void *)req;
		op->type = AUTH_OP_ROLE_GRANT_PERMISSION;
		op->name = (const uint8_t *)(r->name ? r->name : "");
		op->name_len = r->name ? strlen(r->name) : 0;
		op->has_perm = r->perm != NULL;
		if (r->perm) {
			op->perm_type = r->perm->permtype;
			op->key = r->perm->key.data;
			op->key_len = r->perm->key.len;
			op->end = r->perm->range_end.data;
			op->end_len = r->perm->range_end.len;
		}
		return true;
	}
	case SVC_AUTH_ROLE_REVOKE_PERMISSION: {
		const Etcdserverpb__AuthRoleRevokePermissionRequest *r = (const void *)req;
		op->type = AUTH_OP_ROLE_REVOKE_PERMISSION;
		op->name = (const uint8_t *)(r->role ? r->role : "");
		op->name_len = r->role ? strlen(r->role) : 0;
		op->key = r->key.data;
		op->key_len = r->key.len;
		op->end = r->range_end.data;
		op->end_len = r->range_end.len;
		return true;
	}
	default:
		return false;
	}
}

/* Every Auth response is a header and, for some, one more field: built as the generic
 * message of its method's descriptor. */
static ProtobufCMessage *auth_resp_new(struct arena *ar, int method, Etcdserverpb__ResponseHeader *hdr)
{
	static const ProtobufCMessageDescriptor *const resp[] = {
		&etcdserverpb__auth_enable_response__descriptor,
		&etcdserverpb__auth_disable_response__descriptor,
		&etcdserverpb__auth_status_response__descriptor,
		&etcdserverpb__authenticate_response__descriptor,
		&etcdserverpb__auth_user_add_response__descriptor,
		&etcdserverpb__auth_user_get_response__descriptor,
		&etcdserverpb__auth_user_list_response__descriptor,
		&etcdserverpb__auth_user_delete_response__descriptor,
		&etcdserverpb__auth_user_change_password_response__descriptor,
		&etcdserverpb__auth_user_grant_role_response__descriptor,
		&etcdserverpb__auth_user_revoke_role_response__descriptor,
		&etcdserverpb__auth_role_add_response__descriptor,
		&etcdserverpb__auth_role_get_response__descriptor,
		&etcdserverpb__auth_role_list_response__descriptor,
		&etcdserverpb__auth_role_delete_response__descriptor,
		&etcdserverpb__auth_role_grant_permission_response__descriptor,
		&etcdserverpb__auth_role_revoke_permission_response__descriptor,
	};
	const ProtobufCMessageDescriptor *d = resp[method - SVC_AUTH_ENABLE];
	ProtobufCMessage *m = arena_alloc(ar, d->sizeof_message);

	d->message_init(m);
	/* field 1 of every Auth response is the header */
	*(Etcdserverpb__ResponseHeader **)((char *)m + d->fields[0].offset) = hdr;
	return m;
}

void auth_rpc_apply(struct authsvc *as, struct mvcc_store *s, struct seq_req *r, const struct kv_sink *sink,
		    const struct kv_header_ids *ids, struct kv_result *res, bool *changed)
{
	struct auth *a = authsvc_writer(as);
	struct arena *ar = r->arena;
	struct auth_op op;
	int rc;

	res->code = GRPC_OK;
	res->message = NULL;
	*changed = false;
	if (!auth_rpc_still_valid(as, r, res))
		return;
	if (r->auth_err) { /* from the password thread: a failed login, or a password too long */
		if (r->auth_err == -E2BIG) {
			res->code = GRPC_UNKNOWN;
			res->message = "bcrypt: password length exceeds 72 bytes";
			res->resp = NULL;
			return;
		}
		auth_fail(res, r->auth_err);
		return;
	}
	Etcdserverpb__ResponseHeader *hdr = kv_header(ar, ids, mvcc_rev(s));
	ProtobufCMessage *resp = auth_resp_new(ar, r->method, hdr);

	if (auth_op_of(r->method, r->msg, &op)) {
		bool enable_noop = (op.type == AUTH_OP_ENABLE && auth_is_enabled(a)) ||
				   (op.type == AUTH_OP_DISABLE && !auth_is_enabled(a));
		if ((rc = auth_apply(a, &op))) {
			auth_fail(res, rc);
			return;
		}
		if (!enable_noop) {
			size_t n = auth_op_size(&op);
			uint8_t *bytes = arena_alloc(ar, n);
			if (auth_op_encode(&op, bytes, n) == (ssize_t)n && sink && sink->auth)
				sink->auth(sink->arg, mvcc_rev(s), bytes, n);
			*changed = true;
		}
		if (op.type == AUTH_OP_USER_DELETE || op.type == AUTH_OP_USER_CHANGE_PASSWORD)
			authsvc_tokens_drop_user(as, op.name, op.name_len);
		else if (op.type == AUTH_OP_DISABLE)
			authsvc_tokens_clear(as);
		res->resp = resp;
		return;
	}
	switch (r->method) {
	case SVC_AUTH_STATUS: {
		Etcdserverpb__AuthStatusResponse *m = (void *)resp;
		m->enabled = auth_is_enabled(a);
		m->authrevision = auth_revision(a);
		break;
	}
	case SVC_AUTH_AUTHENTICATE:
		((Etcdserverpb__AuthenticateResponse *)resp)->token = r->token;
		break;
	case SVC_AUTH_USER_GET: {
		const char *name = ((const Etcdserverpb__AuthUserGetRequest *)r->msg)->name;
		struct auth_names l = {.ar = ar};
		if ((rc = auth_user_get(a, STR(name), auth_name_add, &l))) {
			auth_fail(res, rc);
			return;
		}
		((Etcdserverpb__AuthUserGetResponse *)resp)->roles = l.v;
		((Etcdserverpb__AuthUserGetResponse *)resp)->n_roles = l.n;
		break;
	}
	case SVC_AUTH_USER_LIST:
	case SVC_AUTH_ROLE_LIST: {
		struct auth_names l = {.ar = ar};
		if (r->method == SVC_AUTH_USER_LIST) {
			auth_user_list(a, auth_name_add, &l);
			((Etcdserverpb__AuthUserListResponse *)resp)->users = l.v;
			((Etcdserverpb__AuthUserListResponse *)resp)->n_users = l.n;
		} else {
			auth_role_list(a, auth_name_add, &l);
			((Etcdserverpb__AuthRoleListResponse *)resp)->roles = l.v;
			((Etcdserverpb__AuthRoleListResponse *)resp)->n_roles = l.n;
		}
		break;
	}
	case SVC_AUTH_ROLE_GET: {
		const char *role = ((const Etcdserverpb__AuthRoleGetRequest *)r->msg)->role;
		struct auth_perms l = {.ar = ar};
		if ((rc = auth_role_get(a, STR(role), auth_perm_add, &l))) {
			auth_fail(res, rc);
			return;
		}
		((Etcdserverpb__AuthRoleGetResponse *)resp)->perm = l.v;
		((Etcdserverpb__AuthRoleGetResponse *)resp)->n_perm = l.n;
		break;
	}
	default:
		break;
	}
	res->resp = resp;
}
