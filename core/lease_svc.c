/* See lease_svc.h. Errors are etcd's rpctypes: a TTL above the maximum is OUT_OF_RANGE
 * "etcdserver: too large lease TTL"; a taken id FAILED_PRECONDITION "etcdserver: lease
 * already exists"; an unknown lease NOT_FOUND "etcdserver: requested lease not found" for
 * Revoke, but a TTL of 0 for KeepAlive and -1 for TimeToLive, as etcd answers. */
#include "core/lease_svc.h"

#include <protobuf-c/protobuf-c.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/lease.h"
#include "core/svc.h"
#include "rpc.pb-c.h"
#include "storage/mvcc.h"

typedef Etcdserverpb__ResponseHeader ResponseHeader;

const ProtobufCMessageDescriptor *lease_svc_desc(int method)
{
	switch (method) {
	case SVC_LEASE_GRANT:
		return &etcdserverpb__lease_grant_request__descriptor;
	case SVC_LEASE_REVOKE:
		return &etcdserverpb__lease_revoke_request__descriptor;
	case SVC_LEASE_KEEPALIVE:
		return &etcdserverpb__lease_keep_alive_request__descriptor;
	case SVC_LEASE_TTL:
		return &etcdserverpb__lease_time_to_live_request__descriptor;
	case SVC_LEASE_LEASES:
		return &etcdserverpb__lease_leases_request__descriptor;
	default:
		return NULL;
	}
}

static ResponseHeader *lease_header(struct arena *a, const struct kv_header_ids *ids, int64_t rev)
{
	return kv_header(a, ids, rev);
}

struct lease_key_list {
	struct arena *a;
	const uint8_t **keys;
	size_t *lens;
	size_t n, cap;
};

static void lease_collect_key(void *arg, const uint8_t *key, size_t len)
{
	struct lease_key_list *l = arg;

	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		const uint8_t **nk = arena_alloc(l->a, ncap * sizeof *nk);
		size_t *nl = arena_alloc(l->a, ncap * sizeof *nl);
		if (l->n) {
			memcpy(nk, l->keys, l->n * sizeof *nk);
			memcpy(nl, l->lens, l->n * sizeof *nl);
		}
		l->keys = nk;
		l->lens = nl;
		l->cap = ncap;
	}
	l->keys[l->n] = arena_memdup(l->a, key, len);
	l->lens[l->n++] = len;
}

/* Forgets the lease, then deletes what was attached (the deletes detach nothing more). */
static int lease_svc_revoke(struct lease_table *t, struct mvcc_store *s, int64_t id, struct arena *a,
			    const struct kv_sink *sink)
{
	struct lease_key_list keys = {.a = a};

	if (lease_revoke(t, id, lease_collect_key, &keys) < 0)
		return -1;
	if (sink && sink->lease_revoke)
		sink->lease_revoke(sink->arg, mvcc_rev(s), id);
	if (keys.n)
		kv_delete_keys(s, keys.keys, keys.lens, keys.n, sink);
	return 0;
}

void lease_svc_expire(struct lease_table *t, struct mvcc_store *s, int64_t id, struct arena *a,
		      const struct kv_sink *sink)
{
	lease_svc_revoke(t, s, id, a, sink);
}

struct lease_ids {
	struct arena *a;
	int64_t *ids;
	size_t n, cap;
};

static void lease_collect_id(void *arg, int64_t id)
{
	struct lease_ids *l = arg;

	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		int64_t *n = arena_alloc(l->a, ncap * sizeof *n);
		if (l->n)
			memcpy(n, l->ids, l->n * sizeof *n);
		l->ids = n;
		l->cap = ncap;
	}
	l->ids[l->n++] = id;
}

static int lease_id_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static void lease_ttl_key(void *arg, const uint8_t *key, size_t len)
{
	lease_collect_key(arg, key, len);
}

void lease_svc_apply(struct lease_table *t, struct mvcc_store *s, int method, const struct ProtobufCMessage *req,
		     struct arena *a, const struct kv_sink *sink, const struct kv_header_ids *ids, uint64_t now_ms,
		     struct kv_result *res)
{
	res->code = GRPC_OK;
	res->message = NULL;
	res->resp = NULL;
	switch (method) {
	case SVC_LEASE_GRANT: {
		const Etcdserverpb__LeaseGrantRequest *g = (const void *)req;
		int64_t ttl = g->ttl < LEASE_MIN_TTL ? LEASE_MIN_TTL : g->ttl;
		int64_t id = g->id ? g->id : lease_new_id(t);
		if (g->ttl > LEASE_MAX_TTL) {
			res->code = GRPC_OUT_OF_RANGE;
			res->message = "etcdserver: too large lease TTL";
			return;
		}
		if (lease_grant(t, id, ttl, now_ms) < 0) {
			res->code = GRPC_FAILED_PRECONDITION;
			res->message = "etcdserver: lease already exists";
			return;
		}
		if (sink && sink->lease_grant)
			sink->lease_grant(sink->arg, mvcc_rev(s), id, ttl);
		Etcdserverpb__LeaseGrantResponse *r = arena_alloc(a, sizeof *r);
		etcdserverpb__lease_grant_response__init(r);
		r->header = lease_header(a, ids, mvcc_rev(s));
		r->id = id;
		r->ttl = ttl;
		res->resp = &r->base;
		return;
	}
	case SVC_LEASE_REVOKE: {
		const Etcdserverpb__LeaseRevokeRequest *q = (const void *)req;
		if (lease_svc_revoke(t, s, q->id, a, sink) < 0) {
			res->code = GRPC_NOT_FOUND;
			res->message = "etcdserver: requested lease not found";
			return;
		}
		Etcdserverpb__LeaseRevokeResponse *r = arena_alloc(a, sizeof *r);
		etcdserverpb__lease_revoke_response__init(r);
		r->header = lease_header(a, ids, mvcc_rev(s));
		res->resp = &r->base;
		return;
	}
	case SVC_LEASE_KEEPALIVE: {
		const Etcdserverpb__LeaseKeepAliveRequest *k = (const void *)req;
		int64_t ttl = lease_renew(t, k->id, now_ms);
		Etcdserverpb__LeaseKeepAliveResponse *r = arena_alloc(a, sizeof *r);
		etcdserverpb__lease_keep_alive_response__init(r);
		r->header = lease_header(a, ids, mvcc_rev(s));
		r->id = k->id;
		r->ttl = ttl < 0 ? 0 : ttl;
		res->resp = &r->base;
		return;
	}
	case SVC_LEASE_TTL: {
		const Etcdserverpb__LeaseTimeToLiveRequest *q = (const void *)req;
		Etcdserverpb__LeaseTimeToLiveResponse *r = arena_alloc(a, sizeof *r);
		int64_t remaining, granted;
		etcdserverpb__lease_time_to_live_response__init(r);
		r->header = lease_header(a, ids, mvcc_rev(s));
		r->id = q->id;
		if (lease_ttl(t, q->id, now_ms, &remaining, &granted) < 0) {
			r->ttl = -1;
		} else {
			r->ttl = remaining;
			r->grantedttl = granted;
			if (q->keys) {
				struct lease_key_list keys = {.a = a};
				lease_keys(t, q->id, lease_ttl_key, &keys);
				r->n_keys = keys.n;
				r->keys = arena_alloc(a, (keys.n ? keys.n : 1) * sizeof *r->keys);
				for (size_t i = 0; i < keys.n; i++) {
					r->keys[i].data = (uint8_t *)keys.keys[i];
					r->keys[i].len = keys.lens[i];
				}
			}
		}
		res->resp = &r->base;
		return;
	}
	case SVC_LEASE_LEASES: {
		struct lease_ids l = {.a = a};
		Etcdserverpb__LeaseLeasesResponse *r = arena_alloc(a, sizeof *r);
		lease_each(t, lease_collect_id, &l);
		if (l.n > 1)
			qsort(l.ids, l.n, sizeof *l.ids, lease_id_cmp);
		etcdserverpb__lease_leases_response__init(r);
		r->header = lease_header(a, ids, mvcc_rev(s));
		r->n_leases = l.n;
		r->leases = arena_alloc(a, (l.n ? l.n : 1) * sizeof *r->leases);
		for (size_t i = 0; i < l.n; i++) {
			r->leases[i] = arena_alloc(a, sizeof *r->leases[i]);
			etcdserverpb__lease_status__init(r->leases[i]);
			r->leases[i]->id = l.ids[i];
		}
		res->resp = &r->base;
		return;
	}
	default:
		res->code = GRPC_UNIMPLEMENTED;
		res->message = "unknown method";
		return;
	}
}
