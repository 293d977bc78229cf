/* See svc.h. Reads are answered inside the callback that delivered the request: decode
 * into the thread's scratch arena, read the published view, pack into the thread's pack
 * buffer, hand the bytes to the connection — no allocation once warm. Writes are decoded
 * straight into a pooled seq_req's own arena, checked (a bad request never reaches the
 * sequencer), and chained for svc_flush. */
#include "core/svc.h"

#include <errno.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/auth.h"
#include "core/auth_rpc.h"
#include "core/authsvc.h"
#include "core/config.h"
#include "core/reactor.h"
#include "core/election.h"
#include "core/kv.h"
#include "core/lease_svc.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/pbguard.h"
#include "core/maint.h"
#include "core/seq.h"
#include "core/snapstream.h"
#include "rpc.pb-c.h"
#include "core/watch.h"
#include "core/server.h"
#include "net/grpc.h"
#include "storage/mvcc.h"

#define SVC_REQ_POOL_MAX 4096
/* A Range answer up to about this many bytes is packed whole (one copy, no per-call state);
 * larger ones are streamed under flow control. */
#define SVC_RANGE_WHOLE_MAX (256u * 1024)

struct svc_thread {
	struct svc_metrics m; /* first: its own cache lines, written by this thread only */
	struct server *srv;
	int reactor;
	struct arena *scratch;
	uint8_t *pack;
	size_t pack_cap;
	struct seq_req *free_reqs;
	size_t n_free;
	struct seq_req *pend_first, *pend_last;
	struct watch_hub *watch;
	struct snapstreams *snaps;
	void (*charge)(void *arg, uint64_t conn_id, int reqs, int64_t bytes);
	void *charge_arg;
};

struct svc_route_entry {
	const char *path;
	int method;
};

static const struct svc_route_entry svc_routes[] = {
	{"/etcdserverpb.KV/Range", KV_RANGE},
	{"/etcdserverpb.KV/Put", KV_PUT},
	{"/etcdserverpb.KV/DeleteRange", KV_DELETE_RANGE},
	{"/etcdserverpb.KV/Txn", KV_TXN},
	{"/etcdserverpb.KV/Compact", KV_COMPACT},
	{"/etcdserverpb.KV/RangeStream", SVC_KV_RANGE_STREAM},
	{"/etcdserverpb.Maintenance/Status", SVC_MAINT_STATUS},
	{"/etcdserverpb.Cluster/MemberList", SVC_CLUSTER_MEMBER_LIST},
	{"/etcdserverpb.Watch/Watch", SVC_WATCH},
	{"/etcdserverpb.Lease/LeaseGrant", SVC_LEASE_GRANT},
	{"/etcdserverpb.Lease/LeaseRevoke", SVC_LEASE_REVOKE},
	{"/etcdserverpb.Lease/LeaseKeepAlive", SVC_LEASE_KEEPALIVE},
	{"/etcdserverpb.Lease/LeaseTimeToLive", SVC_LEASE_TTL},
	{"/etcdserverpb.Lease/LeaseLeases", SVC_LEASE_LEASES},
	{"/etcdserverpb.Maintenance/Alarm", SVC_MAINT_ALARM},
	{"/etcdserverpb.Maintenance/Hash", SVC_MAINT_HASH},
	{"/etcdserverpb.Maintenance/HashKV", SVC_MAINT_HASHKV},
	{"/etcdserverpb.Maintenance/Defragment", SVC_MAINT_DEFRAGMENT},
	{"/etcdserverpb.Maintenance/Snapshot", SVC_MAINT_SNAPSHOT},
	{"/etcdserverpb.Auth/AuthEnable", SVC_AUTH_ENABLE},
	{"/etcdserverpb.Auth/AuthDisable", SVC_AUTH_DISABLE},
	{"/etcdserverpb.Auth/AuthStatus", SVC_AUTH_STATUS},
	{"/etcdserverpb.Auth/Authenticate", SVC_AUTH_AUTHENTICATE},
	{"/etcdserverpb.Auth/UserAdd", SVC_AUTH_USER_ADD},
	{"/etcdserverpb.Auth/UserGet", SVC_AUTH_USER_GET},
	{"/etcdserverpb.Auth/UserList", SVC_AUTH_USER_LIST},
	{"/etcdserverpb.Auth/UserDelete", SVC_AUTH_USER_DELETE},
	{"/etcdserverpb.Auth/UserChangePassword", SVC_AUTH_USER_CHANGE_PASSWORD},
	{"/etcdserverpb.Auth/UserGrantRole", SVC_AUTH_USER_GRANT_ROLE},
	{"/etcdserverpb.Auth/UserRevokeRole", SVC_AUTH_USER_REVOKE_ROLE},
	{"/etcdserverpb.Auth/RoleAdd", SVC_AUTH_ROLE_ADD},
	{"/etcdserverpb.Auth/RoleGet", SVC_AUTH_ROLE_GET},
	{"/etcdserverpb.Auth/RoleList", SVC_AUTH_ROLE_LIST},
	{"/etcdserverpb.Auth/RoleDelete", SVC_AUTH_ROLE_DELETE},
	{"/etcdserverpb.Auth/RoleGrantPermission", SVC_AUTH_ROLE_GRANT_PERMISSION},
	{"/etcdserverpb.Auth/RoleRevokePermission", SVC_AUTH_ROLE_REVOKE_PERMISSION},
	{"/etcdserverpb.Maintenance/MoveLeader", SVC_MAINT_MOVE_LEADER},
	{"/etcdserverpb.Maintenance/Downgrade", SVC_MAINT_DOWNGRADE},
	{"/etcdserverpb.Cluster/MemberAdd", SVC_CLUSTER_MEMBER_ADD},
	{"/etcdserverpb.Cluster/MemberRemove", SVC_CLUSTER_MEMBER_REMOVE},
	{"/etcdserverpb.Cluster/MemberUpdate", SVC_CLUSTER_MEMBER_UPDATE},
	{"/etcdserverpb.Cluster/MemberPromote", SVC_CLUSTER_MEMBER_PROMOTE},
	{"/v3lockpb.Lock/Lock", SVC_LOCK_LOCK},
	{"/v3lockpb.Lock/Unlock", SVC_LOCK_UNLOCK},
	{"/v3electionpb.Election/Campaign", SVC_ELECTION_CAMPAIGN},
	{"/v3electionpb.Election/Proclaim", SVC_ELECTION_PROCLAIM},
	{"/v3electionpb.Election/Leader", SVC_ELECTION_LEADER},
	{"/v3electionpb.Election/Resign", SVC_ELECTION_RESIGN},
	{"/v3electionpb.Election/Observe", SVC_ELECTION_OBSERVE},
};

int svc_route(const char *path, size_t len)
{
	const char *slash = len > 1 ? memchr(path + 1, '/', len - 1) : NULL;
	size_t svc_len = slash ? (size_t)(slash - path) + 1 : 0; /* "/etcdserverpb.KV/" */
	bool known_service = false;

	for (size_t i = 0; i < sizeof svc_routes / sizeof svc_routes[0]; i++) {
		if (strlen(svc_routes[i].path) == len && memcmp(svc_routes[i].path, path, len) == 0)
			return svc_routes[i].method;
		known_service |= svc_len && strncmp(svc_routes[i].path, path, svc_len) == 0;
	}
	return known_service ? -2 : -1; /* grpc-go's "unknown method" vs "unknown service" */
}

struct svc_thread *svc_thread_new(struct server *srv, int reactor_index, void (*dirty)(void *conn_user))
{
	struct svc_thread *t = calloc(1, sizeof *t);

	if (!t)
		log_fatal("svc: out of memory");
	t->srv = srv;
	t->reactor = reactor_index;
	t->scratch = arena_new(64 * 1024);
	t->watch = watch_hub_new(srv, reactor_index, dirty);
	t->snaps = snapstreams_new(&srv->ids, dirty);
	return t;
}

void svc_thread_free(struct svc_thread *t)
{
	struct seq_req *n;

	if (!t)
		return;
	for (struct seq_req *r = t->free_reqs; r; r = n) {
		n = r->next;
		arena_free(r->arena);
		free(r);
	}
	watch_hub_free(t->watch);
	snapstreams_free(t->snaps);
	arena_free(t->scratch);
	free(t->pack);
	free(t);
}

static struct seq_req *svc_req_get(struct svc_thread *t)
{
	struct seq_req *r = t->free_reqs;

	if (r) {
		t->free_reqs = r->next;
		t->n_free--;
	} else {
		r = calloc(1, sizeof *r);
		if (!r)
			log_fatal("svc: out of memory");
		r->arena = arena_new(4096);
	}
	r->next = NULL;
	r->reactor = t->reactor;
	r->http = false;
	r->cancel = false;
	r->counted = false;
	r->in_bytes = 0;
	r->fd = -1;
	return r;
}

static void svc_req_put(struct svc_thread *t, struct seq_req *r)
{
	arena_reset(r->arena);
	if (t->n_free >= SVC_REQ_POOL_MAX) {
		arena_free(r->arena);
		free(r);
		return;
	}
	r->next = t->free_reqs;
	t->free_reqs = r;
	t->n_free++;
}

static uint64_t svc_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Ends a call with a status, counting it for grpc_server_handled_total. */
static void svc_status(struct svc_thread *t, struct grpc_conn *c, uint32_t sid, int method, enum grpc_code code,
		       const char *msg)
{
	if (method >= 0 && method < SVC_METHODS && (unsigned)code <= GRPC_UNAUTHENTICATED)
		atomic_fetch_add_explicit(&t->m.handled[method][code], 1, memory_order_relaxed);
	grpc_send_status(c, sid, code, msg);
}

/* Packs into the thread's buffer (grown to the largest response seen) and sends. */
static void svc_send_response(struct svc_thread *t, struct grpc_conn *c, uint32_t sid, int method,
			      const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);

	if (len > t->pack_cap) {
		size_t cap = t->pack_cap ? t->pack_cap : 4096;
		while (cap < len)
			cap *= 2;
		free(t->pack);
		t->pack = malloc(cap);
		if (!t->pack)
			log_fatal("svc: out of memory");
		t->pack_cap = cap;
	}
	protobuf_c_message_pack(m, t->pack);
	if (grpc_send_message(c, sid, t->pack, len) == 0)
		svc_status(t, c, sid, method, GRPC_OK, NULL);
}

static void svc_reply(struct svc_thread *t, struct grpc_conn *c, uint32_t sid, int method, struct kv_result *res)
{
	if (res->code != GRPC_OK) {
		svc_status(t, c, sid, method, res->code, res->message);
		return;
	}
	kv_fill_header(res->resp, (enum kv_method)method, &t->srv->ids);
	svc_send_response(t, c, sid, method, res->resp);
}

static void svc_kv_read(struct svc_thread *t, struct grpc_conn *c, uint32_t sid, int method,
			const ProtobufCMessage *req, struct arena *a)
{
	struct mvcc_view v;
	struct kv_result res;
	uint64_t start = svc_now_us();

	mvcc_view_published(t->srv->store, &v);
	kv_read((enum kv_method)method, &v, req, a, &res);
	metrics_mvcc_count(&t->m.mvcc, method, req, res.resp);
	svc_reply(t, c, sid, method, &res);
	metrics_observe(&t->m.read_us, metrics_us_bounds, metrics_us_nbounds, svc_now_us() - start);
}

/* A Range: small answers whole (as svc_kv_read), large ones pulled by the call's
 * flow-control window (kv_range_begin), so one costs about a window of memory. */
static void svc_kv_range(struct svc_thread *t, struct grpc_conn *c, uint32_t sid, const ProtobufCMessage *req,
			 struct arena *a)
{
	struct mvcc_view v;
	struct kv_result res;
	struct kv_range_stream *st;
	uint64_t len;
	uint64_t start = svc_now_us();

	mvcc_view_published(t->srv->store, &v);
	metrics_mvcc_count(&t->m.mvcc, KV_RANGE, req, NULL); /* a Range counts whatever its answer */
	if (kv_range_begin(&v, req, a, &t->srv->ids, SVC_RANGE_WHOLE_MAX, &res, &st, &len) == 1) {
		struct grpc_msg_source src = {.read = kv_range_stream_read, .free = kv_range_stream_free, .arg = st};
		if (grpc_send_message_source(c, sid, len, &src) == 0)
			svc_status(t, c, sid, KV_RANGE, GRPC_OK, NULL); /* trailers wait behind it */
	} else {
		svc_reply(t, c, sid, KV_RANGE, &res);
	}
	metrics_observe(&t->m.read_us, metrics_us_bounds, metrics_us_nbounds, svc_now_us() - start);
}

void svc_set_charge(struct svc_thread *t, void (*charge)(void *arg, uint64_t conn_id, int reqs, int64_t bytes),
		    void *arg)
{
	t->charge = charge;
	t->charge_arg = arg;
}

/* A request leaves for the sequencer: held against its connection's and reactor's bounds
 * until it comes back, except a Lock or Campaign, which may park there for as long as
 * another client holds the name (one per live stream at most). */
static void svc_charge(struct svc_thread *t, struct seq_req *r, int sign)
{
	r->counted = r->cancel || !r->msg || (r->method != SVC_LOCK_LOCK && r->method != SVC_ELECTION_CAMPAIGN);
	if (r->counted && t->charge)
		t->charge(t->charge_arg, r->conn_id, sign, sign * (int64_t)r->in_bytes);
}

/* A RangeStream: chunks pulled by the call's window from one revision (kv.c). */
static void svc_kv_range_stream(struct svc_thread *t, struct grpc_conn *c, uint32_t sid,
				const ProtobufCMessage *req)
{
	struct mvcc_view v;
	struct kv_result res;
	struct kv_range_stream *st;

	mvcc_view_published(t->srv->store, &v);
	if (kv_range_stream_begin(&v, req, &t->srv->ids, &res, &st) < 0) {
		svc_status(t, c, sid, SVC_KV_RANGE_STREAM, res.code, res.message);
		return;
	}
	struct grpc_msg_source src = {.read = kv_range_stream_read_msgs, .free = kv_range_stream_free, .arg = st};
	if (grpc_send_message_source(c, sid, GRPC_SOURCE_FRAMED, &src) == 0)
		svc_status(t, c, sid, SVC_KV_RANGE_STREAM, GRPC_OK, NULL); /* trailers wait behind it */
}

static void svc_queue(struct svc_thread *t, struct seq_req *r)
{
	svc_charge(t, r, 1);
	r->start_us = svc_now_us();
	if (t->pend_last)
		t->pend_last->next = r;
	else
		t->pend_first = r;
	t->pend_last = r;
}

/* With auth on: whether `id` may make this request; else res holds etcd's error. A request
 * for the sequencer (r) records the auth revision it was checked at, and who sent it. */
bool svc_auth_allows(struct svc_thread *t, const struct authsvc_ident *id, int method, const ProtobufCMessage *req,
		     struct seq_req *r, struct kv_result *res)
{
	struct authsvc *as = t->srv->auth;
	const struct auth *view;

	if (r) {
		r->auth_checked_rev = 0;
		r->auth_err = 0;
		r->token = NULL;
		r->user = NULL;
		r->user_len = 0;
	}
	if (!as || !authsvc_enabled(as))
		return true;
	view = authsvc_view(as);
	if (auth_rpc_check(view, id, method, req, res))
		return false;
	if (r) {
		r->auth_checked_rev = auth_revision(view) + 1;
		if (id) {
			uint8_t *u = arena_alloc(r->arena, id->ulen + 1);
			memcpy(u, id->user, id->ulen + 1);
			r->user = u;
			r->user_len = id->ulen;
		}
	}
	return true;
}

/* The same for a gRPC call, answering the call when it may not. */
static bool svc_authorized(struct svc_thread *t, struct grpc_conn *c, uint32_t sid, int method,
			   const ProtobufCMessage *req, struct seq_req *r)
{
	struct kv_result res;

	if (svc_auth_allows(t, grpc_call_user(c, sid), method, req, r, &res))
		return true;
	svc_status(t, c, sid, method, res.code, res.message);
	return false;
}

/* The password thread's part of Authenticate, UserAdd and UserChangePassword: then the
 * request goes on to the sequencer as if it came straight from the reactor. */
struct svc_pw {
	struct authsvc_pw_job job;
	struct seq_req *r;
	struct server *srv;
	uint64_t rev; /* Authenticate: the auth revision the password was read at */
};

static void svc_pw_done(struct authsvc_pw_job *j)
{
	struct svc_pw *p = j->arg;
	struct seq_req *r = p->r;

	if (r->method == SVC_AUTH_AUTHENTICATE) {
		const Etcdserverpb__AuthenticateRequest *q = (const void *)r->msg;
		if (j->rc) {
			r->auth_err = j->rc;
		} else {
			char *tok = arena_alloc(r->arena, AUTHSVC_TOKEN_MAX);
			int n = authsvc_issue(p->srv->auth, (const uint8_t *)q->name, strlen(q->name), p->rev, tok,
					      AUTHSVC_TOKEN_MAX);
			if (n < 0)
				r->auth_err = n;
			else
				r->token = tok;
		}
	} else if (j->rc) {
		r->auth_err = j->rc;
	} else {
		char *h = arena_alloc(r->arena, j->hash_len + 1);
		memcpy(h, j->hash, j->hash_len + 1);
		if (r->method == SVC_AUTH_USER_ADD)
			((Etcdserverpb__AuthUserAddRequest *)r->msg)->hashedpassword = h;
		else
			((Etcdserverpb__AuthUserChangePasswordRequest *)r->msg)->hashedpassword = h;
	}
	r->next = NULL;
	seq_submit(p->srv->seq, r, r);
}

/* An Auth method (r decoded, checked and addressed): for passwords through the password
 * thread, then to the sequencer, which owns the auth state. -1 with res: answer it now
 * (r is still the caller's). */
int svc_auth_request(struct svc_thread *t, struct seq_req *r, struct kv_result *res)
{
	const char *password = NULL;
	struct svc_pw *p;

	r->start_us = svc_now_us();
	p = arena_alloc(r->arena, sizeof *p);
	memset(p, 0, sizeof *p);
	p->r = r;
	p->srv = t->srv;
	p->job.done = svc_pw_done;
	p->job.arg = p;
	if (r->method == SVC_AUTH_AUTHENTICATE) {
		const Etcdserverpb__AuthenticateRequest *q = (const void *)r->msg;
		int rc = auth_user_password(authsvc_view(t->srv->auth), (const uint8_t *)q->name, strlen(q->name),
					    p->job.hash, sizeof p->job.hash, &p->rev);
		if (rc) {
			res->code = (enum grpc_code)auth_grpc_code(rc);
			res->message = auth_strerror(rc);
			return -1;
		}
		p->job.hash_len = strlen(p->job.hash);
		p->job.verify = true;
		password = q->password;
	} else if (r->method == SVC_AUTH_USER_ADD) {
		const Etcdserverpb__AuthUserAddRequest *q = (const void *)r->msg;
		if (!(q->options && q->options->no_password) && !(q->hashedpassword && *q->hashedpassword))
			password = q->password;
	} else if (r->method == SVC_AUTH_USER_CHANGE_PASSWORD) {
		const Etcdserverpb__AuthUserChangePasswordRequest *q = (const void *)r->msg;
		if (!(q->hashedpassword && *q->hashedpassword))
			password = q->password;
	}
	if (!password) {
		svc_queue(t, r);
		return 0;
	}
	p->job.password = password;
	p->job.len = strlen(password);
	svc_charge(t, r, 1); /* before the hand-off: r is the password thread's from then on */
	if (authsvc_pw_submit(t->srv->auth, &p->job) < 0) {
		/* AUTHSVC_PW_QUEUE_MAX passwords wait already: etcd's answer to overload */
		svc_charge(t, r, -1);
		r->counted = false;
		res->code = GRPC_RESOURCE_EXHAUSTED;
		res->message = "etcdserver: too many requests";
		return -1;
	}
	return 0;
}

static const ProtobufCMessageDescriptor *const svc_kv_desc[KV_METHODS] = {
	[KV_RANGE] = &etcdserverpb__range_request__descriptor,
	[KV_PUT] = &etcdserverpb__put_request__descriptor,
	[KV_DELETE_RANGE] = &etcdserverpb__delete_range_request__descriptor,
	[KV_TXN] = &etcdserverpb__txn_request__descriptor,
	[KV_COMPACT] = &etcdserverpb__compaction_request__descriptor,
};

/* Every request from outside is decoded here, through pbguard (core/pbguard.h): walked
 * without recursion first, so protobuf-c never recurses past PBGUARD_DEPTH_MAX. A Txn
 * nested deeper than etcd's checks can look (pbguard_txn_depth) is flattened there, and
 * kv_check answers it as etcd does ("too many operations"); past what pbguard can flatten
 * (--max-txn-ops above 254) it gets that answer at once. Other schemas cannot nest that
 * deep. NULL: answered already. */
static ProtobufCMessage *svc_decode(struct svc_thread *t, struct grpc_conn *c, uint32_t sid, int method,
				    const ProtobufCMessageDescriptor *desc, struct arena *a, const uint8_t *msg,
				    size_t len, bool *flattened)
{
	bool txn = desc == &etcdserverpb__txn_request__descriptor;
	ProtobufCMessage *m;
	int rc = 0;

	m = desc ? pbguard_unpack(desc, a, msg, len,
				  txn ? pbguard_txn_depth(t->srv->limits.max_txn_ops) : PBGUARD_DEPTH_MAX + 1, flattened,
				  &rc)
		 : NULL;
	if (m)
		return m;
	if (rc == -ELOOP && txn)
		svc_status(t, c, sid, method, GRPC_INVALID_ARGUMENT, "etcdserver: too many operations in txn request");
	else
		svc_status(t, c, sid, method, GRPC_INTERNAL, "grpc: error unmarshalling request");
	return NULL;
}

/* What maint.c unpacks itself, by method. */
static const ProtobufCMessageDescriptor *svc_maint_desc(int method)
{
	switch (method) {
	case SVC_MAINT_HASH: return &etcdserverpb__hash_request__descriptor;
	case SVC_MAINT_HASHKV: return &etcdserverpb__hash_kvrequest__descriptor;
	case SVC_MAINT_MOVE_LEADER: return &etcdserverpb__move_leader_request__descriptor;
	case SVC_MAINT_DOWNGRADE: return &etcdserverpb__downgrade_request__descriptor;
	case SVC_CLUSTER_MEMBER_ADD: return &etcdserverpb__member_add_request__descriptor;
	case SVC_CLUSTER_MEMBER_REMOVE: return &etcdserverpb__member_remove_request__descriptor;
	case SVC_CLUSTER_MEMBER_UPDATE: return &etcdserverpb__member_update_request__descriptor;
	case SVC_CLUSTER_MEMBER_PROMOTE: return &etcdserverpb__member_promote_request__descriptor;
	default: return NULL;
	}
}

/* Bytes that watch.c or maint.c unpack themselves: their schemas hold no recursion (at
 * most 3 levels), so this refuses what protobuf-c would refuse, as they do, and merges
 * runs of dead fields (pbguard_unpack) into a copy in t->scratch, which *msg then points
 * to: reset t->scratch before, not after. False: refused. */
static bool svc_guard(struct svc_thread *t, const ProtobufCMessageDescriptor *desc, const uint8_t **msg, size_t len)
{
	struct pbguard_frame frames[PBGUARD_FRAMES_STACK];
	size_t merged;

	if (!desc)
		return true;
	if (pbguard_walk_merge(desc, *msg, len, frames, PBGUARD_FRAMES_STACK, 0, NULL, &merged) <= 0)
		return false;
	if (merged >= PBGUARD_MERGE_MIN) {
		uint8_t *copy = arena_memdup(t->scratch, *msg, len);
		pbguard_walk_merge(desc, *msg, len, frames, PBGUARD_FRAMES_STACK, 0, copy, &merged);
		*msg = copy;
	}
	return true;
}

/* A call the sequencer answers: decoded into the request's own arena. Every Lease method
 * runs there (it owns the lease table); a keep-alive's stream stays open. Auth methods go
 * by way of the password thread when they carry a password. */
static void svc_queue_unpacked(struct svc_thread *t, struct grpc_conn *c, uint64_t conn_id, uint32_t sid, int method,
			       const ProtobufCMessageDescriptor *desc, const uint8_t *msg, size_t len)
{
	struct seq_req *r = svc_req_get(t);
	bool flat;

	r->msg = svc_decode(t, c, sid, method, desc, r->arena, msg, len, &flat);
	if (!r->msg) {
		svc_req_put(t, r);
		return;
	}
	if (!svc_authorized(t, c, sid, method, r->msg, r)) {
		svc_req_put(t, r);
		return;
	}
	r->conn_id = conn_id;
	r->stream_id = sid;
	r->method = method;
	r->in_bytes = (uint32_t)len;
	r->keep_open = method == SVC_LEASE_KEEPALIVE;
	if (method < SVC_AUTH_ENABLE || method > SVC_AUTH_ROLE_REVOKE_PERMISSION) {
		svc_queue(t, r);
	} else {
		struct kv_result res;
		if (svc_auth_request(t, r, &res)) {
			svc_status(t, c, sid, method, res.code, res.message);
			svc_req_put(t, r);
		}
	}
}

void svc_on_message(struct svc_thread *t, struct grpc_conn *c, uint64_t conn_id, uint32_t sid, int method,
		    const uint8_t *msg, size_t len)
{
	struct kv_result res;
	ProtobufCMessage *req;

	if (method == SVC_WATCH) {
		arena_reset(t->scratch);
		if (!svc_guard(t, &etcdserverpb__watch_request__descriptor, &msg, len)) {
			svc_status(t, c, sid, method, GRPC_INTERNAL, "grpc: error unmarshalling request");
			return;
		}
		watch_stream_message(t->watch, c, sid, msg, len);
		return;
	}
	if (method == SVC_MAINT_STATUS || method == SVC_CLUSTER_MEMBER_LIST) {
		struct mvcc_view v;
		arena_reset(t->scratch);
		mvcc_view_published(t->srv->store, &v);
		svc_send_response(t, c, sid, method,
				  method == SVC_MAINT_STATUS ? maint_status(t->srv, &v, t->scratch)
							     : cluster_member_list(t->srv, &v, t->scratch));
		return;
	}
	if (method == SVC_MAINT_DEFRAGMENT || method == SVC_MAINT_SNAPSHOT) {
		/* both wait on the sequencer for a checkpoint or snapshot file of their own */
		svc_queue_unpacked(t, c, conn_id, sid, method,
				   method == SVC_MAINT_DEFRAGMENT ? &etcdserverpb__defragment_request__descriptor
								  : &etcdserverpb__snapshot_request__descriptor,
				   msg, len);
		return;
	}
	if (method >= SVC_AUTH_ENABLE && method <= SVC_AUTH_ROLE_REVOKE_PERMISSION) {
		svc_queue_unpacked(t, c, conn_id, sid, method, auth_rpc_desc(method), msg, len);
		return;
	}
	if (method == SVC_MAINT_ALARM) { /* alarms change on the sequencer, which logs them */
		svc_queue_unpacked(t, c, conn_id, sid, method, &etcdserverpb__alarm_request__descriptor, msg, len);
		return;
	}
	if (method >= SVC_MAINT_ALARM && method <= SVC_CLUSTER_MEMBER_PROMOTE) {
		struct mvcc_view v;
		struct kv_result res;
		if (!svc_authorized(t, c, sid, method, NULL, NULL))
			return;
		arena_reset(t->scratch);
		if (!svc_guard(t, svc_maint_desc(method), &msg, len)) {
			svc_status(t, c, sid, method, GRPC_INTERNAL, "grpc: error unmarshalling request");
			return;
		}
		mvcc_view_published(t->srv->store, &v);
		maint_handle(t->srv, method, msg, len, &v, t->scratch, &res);
		if (res.code != GRPC_OK)
			svc_status(t, c, sid, method, res.code, res.message);
		else
			svc_send_response(t, c, sid, method, res.resp);
		return;
	}
	if (method >= SVC_LEASE_GRANT && method <= SVC_LEASE_LEASES) {
		svc_queue_unpacked(t, c, conn_id, sid, method, lease_svc_desc(method), msg, len);
		return;
	}
	if (method == SVC_ELECTION_OBSERVE) {
		if (t->srv->auth && authsvc_enabled(t->srv->auth)) { /* read permission on the name */
			ProtobufCMessage *q;
			bool flat;
			int rc;
			arena_reset(t->scratch);
			q = pbguard_unpack(election_request_desc(method), t->scratch, msg, len, PBGUARD_DEPTH_MAX + 1,
					   &flat, &rc);
			struct kv_result res;
			if (q && !svc_auth_allows(t, grpc_call_user(c, sid), method, q, NULL, &res)) {
				/* etcd's observer stops at the refused read and ends the call quietly */
				svc_status(t, c, sid, method, GRPC_OK, NULL);
				return;
			}
		}
		if (!svc_guard(t, election_request_desc(method), &msg, len)) {
			svc_status(t, c, sid, method, GRPC_INTERNAL, "grpc: error unmarshalling request");
			return;
		}
		watch_observe(t->watch, c, sid, msg, len);
		return;
	}
	if (method >= SVC_LOCK_LOCK && method <= SVC_ELECTION_RESIGN) {
		svc_queue_unpacked(t, c, conn_id, sid, method, election_request_desc(method), msg, len);
		return;
	}
	if ((method < 0 || method >= KV_METHODS) && method != SVC_KV_RANGE_STREAM) {
		svc_status(t, c, sid, method, GRPC_UNIMPLEMENTED, "unknown method");
		return;
	}
	bool flat;
	if (method == KV_RANGE || method == SVC_KV_RANGE_STREAM) {
		arena_reset(t->scratch);
		req = svc_decode(t, c, sid, method, svc_kv_desc[KV_RANGE], t->scratch, msg, len, &flat);
		if (!req)
			return;
		if (kv_check(KV_RANGE, req, len, &t->srv->limits, t->scratch, &res)) {
			svc_status(t, c, sid, method, res.code, res.message);
			return;
		}
		if (!svc_authorized(t, c, sid, KV_RANGE, req, NULL)) /* RangeStream: Range's checks */
			return;
		if (method == SVC_KV_RANGE_STREAM)
			svc_kv_range_stream(t, c, sid, req);
		else
			svc_kv_range(t, c, sid, req, t->scratch);
		return;
	}

	struct seq_req *r = svc_req_get(t);
	req = svc_decode(t, c, sid, method, svc_kv_desc[method], r->arena, msg, len, &flat);
	if (!req) {
		svc_req_put(t, r);
		return;
	}
	if (kv_check((enum kv_method)method, req, len, &t->srv->limits, r->arena, &res)) {
		svc_status(t, c, sid, method, res.code, res.message);
		svc_req_put(t, r);
		return;
	}
	if (flat) { /* NEVER: a flattened txn always fails etcd's checks; never run one */
		svc_status(t, c, sid, method, GRPC_INVALID_ARGUMENT, "etcdserver: too many operations in txn request");
		svc_req_put(t, r);
		return;
	}
	if (!svc_authorized(t, c, sid, method, req, r)) {
		svc_req_put(t, r);
		return;
	}
	if (kv_is_read_only((enum kv_method)method, req)) {
		svc_kv_read(t, c, sid, method, req, r->arena);
		svc_req_put(t, r);
		return;
	}
	r->conn_id = conn_id;
	r->stream_id = sid;
	r->method = method;
	r->msg = req;
	r->in_bytes = (uint32_t)len;
	r->keep_open = false;
	svc_queue(t, r);
}

void svc_flush(struct svc_thread *t)
{
	snapstreams_pump(t->snaps);
	if (!t->pend_first)
		return;
	seq_submit(t->srv->seq, t->pend_first, t->pend_last);
	t->pend_first = t->pend_last = NULL;
}

void svc_complete(struct svc_thread *t, struct grpc_conn *c, struct seq_req *r)
{
	if (r->cancel) { /* the call it speaks for is over: nothing to answer */
		svc_req_put(t, r);
		return;
	}
	if (r->msg && !r->keep_open)
		metrics_observe(&t->m.write_us, metrics_us_bounds, metrics_us_nbounds, svc_now_us() - r->start_us);
	if (r->fd >= 0) { /* a snapshot file: streamed from now on, or dropped with its call */
		struct mvcc_view v;
		mvcc_view_published(t->srv->store, &v);
		if (c)
			snapstreams_ready(t->snaps, c, r->stream_id, r->fd, r->fd_bytes, v.rev);
		else
			close(r->fd);
		r->fd = -1;
		svc_req_put(t, r);
		return;
	}
	if (c) {
		if (r->code == GRPC_OK && !r->resp)
			svc_status(t, c, r->stream_id, r->method, GRPC_OK, NULL);
		else if (r->code != GRPC_OK)
			svc_status(t, c, r->stream_id, r->method, r->code, r->message);
		else if (grpc_send_message(c, r->stream_id, r->resp, r->resp_len) == 0 && !r->keep_open)
			svc_status(t, c, r->stream_id, r->method, GRPC_OK, NULL);
	}
	svc_req_put(t, r);
}

void svc_on_call_start(struct svc_thread *t, struct grpc_conn *c, void *conn_user, uint32_t sid, int method,
		       const char *token, size_t token_len)
{
	struct authsvc *as = t->srv->auth;

	/* who the call is: only looked up with auth on */
	if (as && authsvc_enabled(as)) {
		const char *cn = t->srv->cfg->client_cert_auth ? reactor_conn_peer_cn(conn_user) : NULL;
		struct authsvc_ident *id = authsvc_identify(as, token, token_len, cn);
		if (id)
			grpc_call_set_user(c, sid, id);
	}
	if (method >= 0 && method < SVC_METHODS)
		atomic_fetch_add_explicit(&t->m.started[method], 1, memory_order_relaxed);
	if (method == SVC_WATCH || method == SVC_ELECTION_OBSERVE)
		watch_stream_open(t->watch, c, conn_user, sid);
	else if (method == SVC_MAINT_SNAPSHOT)
		snapstreams_open(t->snaps, c, conn_user, sid);
}

void svc_on_half_close(struct svc_thread *t, struct grpc_conn *c, uint64_t conn_id, uint32_t sid, int method)
{
	if (method == SVC_WATCH) {
		watch_stream_half_close(t->watch, c, sid);
	} else if (method == SVC_LEASE_KEEPALIVE) {
		/* the end of the call follows its keep-alives through the sequencer, so every
		 * one of them is answered first, as etcd's loop does */
		struct seq_req *r = svc_req_get(t);
		r->conn_id = conn_id;
		r->stream_id = sid;
		r->method = method;
		r->msg = NULL;
		r->keep_open = false;
		svc_queue(t, r);
	}
}

void svc_on_call_end(struct svc_thread *t, struct grpc_conn *c, uint64_t conn_id, uint32_t sid, int method,
		     void *call_user)
{
	free(call_user); /* the call's identity */
	if (method == SVC_LOCK_LOCK || method == SVC_ELECTION_CAMPAIGN) {
		/* it may be parked on the sequencer: tell it (behind the call's own request) */
		struct seq_req *r = svc_req_get(t);
		r->conn_id = conn_id;
		r->stream_id = sid;
		r->method = method;
		r->msg = NULL;
		r->cancel = true;
		r->keep_open = false;
		r->auth_checked_rev = 0;
		svc_queue(t, r);
	}
	if (method == SVC_WATCH) /* a watch stream ends when its client goes: etcd counts Canceled */
		atomic_fetch_add_explicit(&t->m.handled[method][GRPC_CANCELLED], 1, memory_order_relaxed);
	if (method == SVC_WATCH || method == SVC_ELECTION_OBSERVE)
		watch_stream_close(t->watch, c, sid);
	else if (method == SVC_MAINT_SNAPSHOT)
		snapstreams_close(t->snaps, c, sid);
}

void svc_watch_deliver(struct svc_thread *t, struct watch_batch *b) { watch_hub_deliver(t->watch, b); }

void svc_tick(struct svc_thread *t, uint64_t now_ms) { watch_hub_tick(t->watch, now_ms); }

struct server *svc_server(struct svc_thread *t) { return t->srv; }
const struct svc_metrics *svc_thread_metrics(const struct svc_thread *t) { return &t->m; }

const char *svc_method_path(int method)
{
	for (size_t i = 0; i < sizeof svc_routes / sizeof svc_routes[0]; i++)
		if (svc_routes[i].method == method)
			return svc_routes[i].path;
	return NULL;
}
struct arena *svc_scratch(struct svc_thread *t) { return t->scratch; }
struct seq_req *svc_req_new(struct svc_thread *t) { return svc_req_get(t); }
void svc_req_submit(struct svc_thread *t, struct seq_req *r) { svc_queue(t, r); }
void svc_req_release(struct svc_thread *t, struct seq_req *r) { svc_req_put(t, r); }

void svc_stop(struct svc_thread *t) { watch_hub_stop(t->watch); }

bool svc_http_watch(struct svc_thread *t, struct http1_conn *h, void *conn_user,
		    const struct Etcdserverpb__WatchRequest *req, struct authsvc_ident *ident)
{
	return watch_http_open(t->watch, h, conn_user, req, ident);
}

void svc_http_closed(struct svc_thread *t, struct http1_conn *h) { watch_http_close(t->watch, h); }
