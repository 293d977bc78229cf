/* Lock and Election, as etcd's v3lock and v3election servers do them with its concurrency
 * package, but run on the sequencer, which sees every change as it happens:
 *
 * - a contender's key is "<name>/<lease id in hex>"; Lock/Campaign create it (value empty,
 *   or the campaign value) with the lease if it does not exist yet, else reuse it (a
 *   Campaign with a new value proclaims it);
 * - the owner/leader is the key under "<name>/" with the lowest create revision;
 * - a Lock or Campaign that is not the owner is parked here and answered by election_wake
 *   after the batch in which every key created before it is gone, or with "session
 *   expired" if its own key went (its lease expired or was revoked);
 * - Unlock deletes the key; Resign and Proclaim act only if the leader key still has the
 *   caller's create revision ("election: not leader" otherwise); Leader reads the owner
 *   ("election: no leader" if none).
 * A parked call whose client goes away (the call ends first) is dropped and its key deleted,
 * as etcd's concurrency recipes delete the key of a wait that was cancelled. */
#include "core/election.h"

#include <inttypes.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/kv.h"
#include "core/lease.h"
#include "core/log.h"
#include "core/seq.h"
#include "core/svc.h"
#include "election.pb-c.h"
#include "lock.pb-c.h"
#include "rpc.pb-c.h"
#include "storage/mvcc.h"

struct election_wait {
	struct election_wait *next;
	struct seq_req *r;
	const uint8_t *pfx, *key; /* in r's arena */
	size_t pfx_len, key_len;
	int64_t rev; /* the key's create revision */
	int64_t lease;
	const uint8_t *name;
	size_t name_len;
};

struct election {
	struct election_wait *waits;
	struct seq_req *cancelled; /* parked calls whose client left: answered by the next wake */
};

struct election *election_new(void)
{
	struct election *e = calloc(1, sizeof *e);

	if (!e)
		log_fatal("election: out of memory");
	return e;
}

void election_free(struct election *e)
{
	while (e && e->waits) {
		struct election_wait *w = e->waits;
		e->waits = w->next;
		free(w);
	}
	free(e);
}

const ProtobufCMessageDescriptor *election_request_desc(int method)
{
	switch (method) {
	case SVC_LOCK_LOCK:
		return &v3lockpb__lock_request__descriptor;
	case SVC_LOCK_UNLOCK:
		return &v3lockpb__unlock_request__descriptor;
	case SVC_ELECTION_CAMPAIGN:
		return &v3electionpb__campaign_request__descriptor;
	case SVC_ELECTION_PROCLAIM:
		return &v3electionpb__proclaim_request__descriptor;
	case SVC_ELECTION_LEADER:
	case SVC_ELECTION_OBSERVE:
		return &v3electionpb__leader_request__descriptor;
	case SVC_ELECTION_RESIGN:
		return &v3electionpb__resign_request__descriptor;
	default:
		return NULL;
	}
}

static Etcdserverpb__ResponseHeader *el_header(struct arena *a, const struct kv_header_ids *ids, int64_t rev)
{
	return kv_header(a, ids, rev);
}

static void el_pack(struct seq_req *r, const ProtobufCMessage *m)
{
	r->code = GRPC_OK;
	r->message = NULL;
	r->resp_len = protobuf_c_message_get_packed_size(m);
	r->resp = arena_alloc(r->arena, r->resp_len ? r->resp_len : 1);
	protobuf_c_message_pack(m, r->resp);
}

static void el_fail(struct seq_req *r, enum grpc_code code, const char *msg)
{
	r->code = code;
	r->message = msg;
	r->resp = NULL;
	r->resp_len = 0;
}

/* "<name>/" and the key "<name>/<lease hex>", in the request's arena. */
static void el_keys(struct arena *a, const ProtobufCBinaryData *name, int64_t lease, struct election_wait *w)
{
	char hex[24];
	int n = snprintf(hex, sizeof hex, "%" PRIx64, (uint64_t)lease);
	uint8_t *pfx = arena_alloc(a, name->len + 1 + (size_t)n);

	if (name->len)
		memcpy(pfx, name->data, name->len);
	pfx[name->len] = '/';
	memcpy(pfx + name->len + 1, hex, (size_t)n);
	w->pfx = pfx;
	w->pfx_len = name->len + 1;
	w->key = pfx;
	w->key_len = name->len + 1 + (size_t)n;
}

/* The end of the prefix range: the prefix with its last byte incremented. */
static size_t el_prefix_end(const uint8_t *pfx, size_t len, uint8_t *end)
{
	memcpy(end, pfx, len);
	while (len && end[len - 1] == 0xff)
		len--;
	if (len)
		end[len - 1]++;
	return len;
}

/* The key under pfx with the lowest create revision, as of the view. */
static bool el_owner(const struct mvcc_view *v, const uint8_t *pfx, size_t len, struct mvcc_kv *out)
{
	uint8_t end[len + 1];
	size_t elen = el_prefix_end(pfx, len, end);
	static const uint8_t nul = 0;

	return kv_range_owner(v, pfx, len, elen ? end : &nul, elen ? elen : 1, 0, out) == 1;
}

static int el_put(struct mvcc_store *s, struct arena *a, const uint8_t *key, size_t klen, const ProtobufCBinaryData *val,
		  int64_t lease, const struct kv_sink *sink, struct kv_result *res)
{
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;

	p.key.data = (uint8_t *)key;
	p.key.len = klen;
	if (val)
		p.value = *val;
	p.lease = lease;
	kv_write(KV_PUT, s, &p.base, a, sink, res);
	return res->code == GRPC_OK ? 0 : -1;
}

static void el_delete(struct mvcc_store *s, const uint8_t *key, size_t klen, const struct kv_sink *sink)
{
	const uint8_t *keys[1] = {key};
	size_t lens[1] = {klen};
	struct mvcc_view v;
	struct mvcc_kv kv;

	mvcc_view_working(s, &v);
	if (mvcc_get(&v, key, klen, 0, &kv) == 1)
		kv_delete_keys(s, keys, lens, 1, sink);
}

static Mvccpb__KeyValue *el_kv(struct arena *a, const struct mvcc_kv *m) { return kv_pb_kv(a, m, true); }

/* Answers a Lock or Campaign whose key now owns the name. */
static void el_granted(struct seq_req *r, const struct election_wait *w, struct mvcc_store *s,
		       const struct kv_header_ids *ids)
{
	if (r->method == SVC_LOCK_LOCK) {
		V3lockpb__LockResponse resp = V3LOCKPB__LOCK_RESPONSE__INIT;
		resp.header = el_header(r->arena, ids, mvcc_rev(s));
		resp.key.data = (uint8_t *)w->key;
		resp.key.len = w->key_len;
		el_pack(r, &resp.base);
	} else {
		V3electionpb__CampaignResponse resp = V3ELECTIONPB__CAMPAIGN_RESPONSE__INIT;
		V3electionpb__LeaderKey lk = V3ELECTIONPB__LEADER_KEY__INIT;
		resp.header = el_header(r->arena, ids, mvcc_rev(s));
		lk.name.data = (uint8_t *)w->name;
		lk.name.len = w->name_len;
		lk.key.data = (uint8_t *)w->key;
		lk.key.len = w->key_len;
		lk.rev = w->rev;
		lk.lease = w->lease;
		resp.leader = &lk;
		el_pack(r, &resp.base);
	}
}

/* Lock and Campaign: create (or reuse) the contender's key, then own the name or wait. */
static bool el_contend(struct election *e, struct mvcc_store *s, struct seq_req *r, const ProtobufCBinaryData *name,
		       int64_t lease, const ProtobufCBinaryData *value, const struct kv_sink *sink,
		       const struct kv_header_ids *ids)
{
	struct election_wait w = {.r = r, .lease = lease, .name = name->data, .name_len = name->len};
	struct mvcc_view v;
	struct mvcc_kv mine, owner;
	struct kv_result res;

	el_keys(r->arena, name, lease, &w);
	mvcc_view_working(s, &v);
	if (mvcc_get(&v, w.key, w.key_len, 0, &mine) != 1) {
		if (el_put(s, r->arena, w.key, w.key_len, value, lease, sink, &res) < 0) {
			el_fail(r, res.code, res.message);
			return false;
		}
		w.rev = mvcc_rev(s);
	} else {
		w.rev = mine.create_revision;
		if (value && (mine.value_len != value->len || memcmp(mine.value, value->data, value->len)) &&
		    el_put(s, r->arena, w.key, w.key_len, value, lease, sink, &res) < 0) {
			el_fail(r, res.code, res.message);
			return false;
		}
	}
	mvcc_view_working(s, &v);
	if (el_owner(&v, w.pfx, w.pfx_len, &owner) && owner.create_revision == w.rev) {
		el_granted(r, &w, s, ids);
		return false;
	}
	struct election_wait *p = malloc(sizeof *p);
	if (!p)
		log_fatal("election: out of memory");
	*p = w;
	p->next = e->waits;
	e->waits = p;
	return true;
}

/* The leader key named by a LeaderKey, if it still is what the caller holds. */
static bool el_is_leader(struct mvcc_store *s, const V3electionpb__LeaderKey *lk)
{
	struct mvcc_view v;
	struct mvcc_kv kv;

	mvcc_view_working(s, &v);
	return lk && mvcc_get(&v, lk->key.data, lk->key.len, 0, &kv) == 1 && kv.create_revision == lk->rev;
}

bool election_apply(struct election *e, struct mvcc_store *s, struct seq_req *r, const struct kv_sink *sink,
		    const struct kv_header_ids *ids)
{
	struct kv_result res;

	switch (r->method) {
	case SVC_LOCK_LOCK: {
		const V3lockpb__LockRequest *q = (const void *)r->msg;
		return el_contend(e, s, r, &q->name, q->lease, NULL, sink, ids);
	}
	case SVC_ELECTION_CAMPAIGN: {
		const V3electionpb__CampaignRequest *q = (const void *)r->msg;
		return el_contend(e, s, r, &q->name, q->lease, &q->value, sink, ids);
	}
	case SVC_LOCK_UNLOCK: {
		const V3lockpb__UnlockRequest *q = (const void *)r->msg;
		V3lockpb__UnlockResponse resp = V3LOCKPB__UNLOCK_RESPONSE__INIT;
		el_delete(s, q->key.data, q->key.len, sink);
		resp.header = el_header(r->arena, ids, mvcc_rev(s));
		el_pack(r, &resp.base);
		return false;
	}
	case SVC_ELECTION_RESIGN: {
		const V3electionpb__ResignRequest *q = (const void *)r->msg;
		V3electionpb__ResignResponse resp = V3ELECTIONPB__RESIGN_RESPONSE__INIT;
		if (el_is_leader(s, q->leader))
			el_delete(s, q->leader->key.data, q->leader->key.len, sink);
		resp.header = el_header(r->arena, ids, mvcc_rev(s));
		el_pack(r, &resp.base);
		return false;
	}
	case SVC_ELECTION_PROCLAIM: {
		const V3electionpb__ProclaimRequest *q = (const void *)r->msg;
		V3electionpb__ProclaimResponse resp = V3ELECTIONPB__PROCLAIM_RESPONSE__INIT;
		if (!el_is_leader(s, q->leader)) {
			el_fail(r, GRPC_UNKNOWN, "election: not leader");
			return false;
		}
		if (el_put(s, r->arena, q->leader->key.data, q->leader->key.len, &q->value, q->leader->lease, sink, &res) <
		    0) {
			el_fail(r, res.code, res.message);
			return false;
		}
		resp.header = el_header(r->arena, ids, mvcc_rev(s));
		el_pack(r, &resp.base);
		return false;
	}
	case SVC_ELECTION_LEADER: {
		const V3electionpb__LeaderRequest *q = (const void *)r->msg;
		V3electionpb__LeaderResponse resp = V3ELECTIONPB__LEADER_RESPONSE__INIT;
		uint8_t *pfx = arena_alloc(r->arena, q->name.len + 1);
		struct mvcc_view v;
		struct mvcc_kv owner;
		if (q->name.len)
			memcpy(pfx, q->name.data, q->name.len);
		pfx[q->name.len] = '/';
		mvcc_view_working(s, &v);
		if (!el_owner(&v, pfx, q->name.len + 1, &owner)) {
			el_fail(r, GRPC_UNKNOWN, "election: no leader");
			return false;
		}
		resp.header = el_header(r->arena, ids, mvcc_rev(s));
		resp.kv = el_kv(r->arena, &owner);
		el_pack(r, &resp.base);
		return false;
	}
	default:
		el_fail(r, GRPC_UNIMPLEMENTED, "unknown method");
		return false;
	}
}

bool election_cancel(struct election *e, struct mvcc_store *s, const struct seq_req *gone, const struct kv_sink *sink)
{
	for (struct election_wait **pp = &e->waits; *pp; pp = &(*pp)->next) {
		struct election_wait *w = *pp;
		struct mvcc_view v;
		struct mvcc_kv mine;
		if (w->r->reactor != gone->reactor || w->r->conn_id != gone->conn_id || w->r->stream_id != gone->stream_id)
			continue;
		mvcc_view_working(s, &v);
		if (mvcc_get(&v, w->key, w->key_len, 0, &mine) == 1 && mine.create_revision == w->rev)
			el_delete(s, w->key, w->key_len, sink);
		*pp = w->next;
		el_fail(w->r, GRPC_CANCELLED, "context canceled");
		w->r->next = e->cancelled;
		e->cancelled = w->r;
		free(w);
		return true;
	}
	return false;
}

struct seq_req *election_wake(struct election *e, struct mvcc_store *s, const struct kv_header_ids *ids)
{
	struct seq_req *done = e->cancelled, **tail = &done;

	e->cancelled = NULL;
	while (*tail)
		tail = &(*tail)->next;
	struct election_wait **pp = &e->waits;
	struct mvcc_view v;

	mvcc_view_working(s, &v);
	while (*pp) {
		struct election_wait *w = *pp;
		struct mvcc_kv mine, owner;
		bool have = mvcc_get(&v, w->key, w->key_len, 0, &mine) == 1 && mine.create_revision == w->rev;
		if (have && !(el_owner(&v, w->pfx, w->pfx_len, &owner) && owner.create_revision == w->rev)) {
			pp = &w->next;
			continue;
		}
		if (have)
			el_granted(w->r, w, s, ids);
		else
			el_fail(w->r, GRPC_UNKNOWN, "session expired");
		*pp = w->next;
		*tail = w->r;
		tail = &w->r->next;
		w->r->next = NULL;
		free(w);
	}
	return done;
}
