/* etcd's KV semantics over storage/mvcc. See kv.h.
 *
 * The shapes follow etcd 3.5/3.6's applier exactly where clients can tell:
 * - Range: with a sort order or a min/max revision filter everything in the range is
 *   fetched, filtered, sorted (stable; Go's sort.Sort is stable for the short results
 *   clients compare) and cut to `limit`; otherwise limit+1 keys are fetched to know `more`.
 *   `count` is the number of live keys in the whole range, ignoring limit and filters.
 * - Txn: every compare on the chosen path (nested txns too) is evaluated against the state
 *   before the txn, then puts on the path are checked (ignore_* need the key, a lease must
 *   exist), then ranges (revision bounds), and only then is anything applied — so a txn
 *   is never half-applied. Nested response headers carry only a revision, as etcd's.
 * - Revisions: a write that changes nothing leaves the revision alone.
 */
#include "core/kv.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "rpc.pb-c.h"
#include "kv.pb-c.h"
#include "storage/mvcc.h"

typedef Etcdserverpb__RangeRequest RangeRequest;
typedef Etcdserverpb__RangeResponse RangeResponse;
typedef Etcdserverpb__PutRequest PutRequest;
typedef Etcdserverpb__PutResponse PutResponse;
typedef Etcdserverpb__DeleteRangeRequest DeleteRangeRequest;
typedef Etcdserverpb__DeleteRangeResponse DeleteRangeResponse;
typedef Etcdserverpb__TxnRequest TxnRequest;
typedef Etcdserverpb__TxnResponse TxnResponse;
typedef Etcdserverpb__RequestOp RequestOp;
typedef Etcdserverpb__ResponseOp ResponseOp;
typedef Etcdserverpb__Compare Compare;
typedef Etcdserverpb__CompactionRequest CompactionRequest;
typedef Etcdserverpb__CompactionResponse CompactionResponse;
typedef Etcdserverpb__ResponseHeader ResponseHeader;
typedef Mvccpb__KeyValue KeyValue;

struct kv_error {
	enum grpc_code code;
	const char *message;
};

/* etcd's rpctypes errors, as clients see them. */
static const struct kv_error err_empty_key = {GRPC_INVALID_ARGUMENT, "etcdserver: key is not provided"};
static const struct kv_error err_key_not_found = {GRPC_INVALID_ARGUMENT, "etcdserver: key not found"};
static const struct kv_error err_value_provided = {GRPC_INVALID_ARGUMENT, "etcdserver: value is provided"};
static const struct kv_error err_lease_provided = {GRPC_INVALID_ARGUMENT, "etcdserver: lease is provided"};
static const struct kv_error err_too_many_ops = {GRPC_INVALID_ARGUMENT,
						 "etcdserver: too many operations in txn request"};
static const struct kv_error err_duplicate_key = {GRPC_INVALID_ARGUMENT,
						  "etcdserver: duplicate key given in txn request"};
static const struct kv_error err_invalid_sort = {GRPC_INVALID_ARGUMENT, "etcdserver: invalid sort option"};
static const struct kv_error err_too_large = {GRPC_INVALID_ARGUMENT, "etcdserver: request is too large"};
static const struct kv_error err_compacted = {GRPC_OUT_OF_RANGE,
					      "etcdserver: mvcc: required revision has been compacted"};
static const struct kv_error err_future_rev = {GRPC_OUT_OF_RANGE,
					       "etcdserver: mvcc: required revision is a future revision"};
static const struct kv_error err_lease_not_found = {GRPC_NOT_FOUND, "etcdserver: requested lease not found"};
static const struct kv_error err_bad_message = {GRPC_INTERNAL, "grpc: error unmarshalling request"};

static void kv_set_error(struct kv_result *res, const struct kv_error *e)
{
	res->code = e->code;
	res->message = e->message;
	res->resp = NULL;
}

static const struct kv_error *kv_mvcc_error(int rc)
{
	return rc == -MVCC_ECOMPACTED ? &err_compacted : &err_future_rev;
}

static const ProtobufCMessageDescriptor *const kv_request_desc[KV_METHODS] = {
	[KV_RANGE] = &etcdserverpb__range_request__descriptor,
	[KV_PUT] = &etcdserverpb__put_request__descriptor,
	[KV_DELETE_RANGE] = &etcdserverpb__delete_range_request__descriptor,
	[KV_TXN] = &etcdserverpb__txn_request__descriptor,
	[KV_COMPACT] = &etcdserverpb__compaction_request__descriptor,
};

struct ProtobufCMessage *kv_decode(enum kv_method method, struct arena *a, const uint8_t *msg, size_t len)
{
	ProtobufCAllocator al;

	arena_pb_allocator(a, &al);
	return protobuf_c_message_unpack(kv_request_desc[method], &al, len, msg);
}

ResponseHeader *kv_header(struct arena *a, const struct kv_header_ids *ids, int64_t rev)
{
	ResponseHeader *h = arena_alloc(a, sizeof *h);

	etcdserverpb__response_header__init(h);
	h->cluster_id = ids->cluster_id;
	h->member_id = ids->member_id;
	h->raft_term = ids->raft_term;
	h->revision = rev;
	return h;
}

/* A nested header: etcd fills cluster, member and term only at the top level. */
static ResponseHeader *kv_header_new(struct arena *a, int64_t rev)
{
	ResponseHeader *h = arena_alloc(a, sizeof *h);

	etcdserverpb__response_header__init(h);
	h->revision = rev;
	return h;
}

/* ---------- request checks (etcd's v3rpc layer) ---------- */

static bool kv_empty(ProtobufCBinaryData b) { return b.len == 0; }

static int kv_check_range(const RangeRequest *r, const struct kv_error **err)
{
	if (kv_empty(r->key)) {
		*err = &err_empty_key;
		return -1;
	}
	if ((unsigned)r->sort_order > ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND ||
	    (unsigned)r->sort_target > ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE) {
		*err = &err_invalid_sort;
		return -1;
	}
	return 0;
}

static int kv_check_put(const PutRequest *r, const struct kv_error **err)
{
	if (kv_empty(r->key))
		*err = &err_empty_key;
	else if (r->ignore_value && r->value.len != 0)
		*err = &err_value_provided;
	else if (r->ignore_lease && r->lease != 0)
		*err = &err_lease_provided;
	else
		return 0;
	return -1;
}

static int kv_check_txn(const TxnRequest *r, int64_t max_ops, const struct kv_error **err);

static int kv_check_op(const RequestOp *op, int64_t max_ops, const struct kv_error **err)
{
	switch (op->request_case) {
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
		return kv_check_range(op->request_range, err);
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
		return kv_check_put(op->request_put, err);
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
		if (kv_empty(op->request_delete_range->key)) {
			*err = &err_empty_key;
			return -1;
		}
		return 0;
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
		return kv_check_txn(op->request_txn, max_ops, err);
	default: /* an empty op: etcd's checkRequestOp answers this */
		*err = &err_key_not_found;
		return -1;
	}
}

static int kv_check_txn(const TxnRequest *r, int64_t max_ops, const struct kv_error **err)
{
	int64_t opc = (int64_t)r->n_compare;

	if (opc < (int64_t)r->n_success)
		opc = (int64_t)r->n_success;
	if (opc < (int64_t)r->n_failure)
		opc = (int64_t)r->n_failure;
	if (opc > max_ops) {
		*err = &err_too_many_ops;
		return -1;
	}
	for (size_t i = 0; i < r->n_compare; i++) {
		if (kv_empty(r->compare[i]->key)) {
			*err = &err_empty_key;
			return -1;
		}
	}
	for (size_t i = 0; i < r->n_success; i++)
		if (kv_check_op(r->success[i], max_ops - opc, err))
			return -1;
	for (size_t i = 0; i < r->n_failure; i++)
		if (kv_check_op(r->failure[i], max_ops - opc, err))
			return -1;
	return 0;
}

/* ---- duplicate keys in a txn: etcd's checkIntervals, with small arrays ---- */

struct kv_keyset {
	const ProtobufCBinaryData **keys;
	size_t n, cap;
};

/* Delete intervals: a point when end.len == 0, else [key, end) compared as plain bytes
 * (so a from-key end "\0" covers nothing, exactly as etcd's interval tree behaves). */
struct kv_ivset {
	const ProtobufCBinaryData **key, **end;
	size_t n, cap;
};

static int kv_bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int kv_bin_cmp(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
	return kv_bytes_cmp(a->data, a->len, b->data, b->len);
}

static bool kv_keyset_has(const struct kv_keyset *s, const ProtobufCBinaryData *k)
{
	for (size_t i = 0; i < s->n; i++)
		if (kv_bin_cmp(s->keys[i], k) == 0)
			return true;
	return false;
}

/* A set, as etcd's map: adding a key already there changes nothing. */
static void kv_keyset_add(struct arena *a, struct kv_keyset *s, const ProtobufCBinaryData *k)
{
	if (kv_keyset_has(s, k))
		return;
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 8;
		const ProtobufCBinaryData **n = arena_alloc(a, ncap * sizeof *n);
		if (s->n)
			memcpy(n, s->keys, s->n * sizeof *n);
		s->keys = n;
		s->cap = ncap;
	}
	s->keys[s->n++] = k;
}

static void kv_ivset_add(struct arena *a, struct kv_ivset *s, const ProtobufCBinaryData *k, const ProtobufCBinaryData *e)
{
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 8;
		const ProtobufCBinaryData **nk = arena_alloc(a, ncap * sizeof *nk);
		const ProtobufCBinaryData **ne = arena_alloc(a, ncap * sizeof *ne);
		if (s->n) {
			memcpy(nk, s->key, s->n * sizeof *nk);
			memcpy(ne, s->end, s->n * sizeof *ne);
		}
		s->key = nk;
		s->end = ne;
		s->cap = ncap;
	}
	s->key[s->n] = k;
	s->end[s->n] = e;
	s->n++;
}

static bool kv_ivset_hits(const struct kv_ivset *s, const ProtobufCBinaryData *p)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->end[i]->len == 0) {
			if (kv_bin_cmp(s->key[i], p) == 0)
				return true;
		} else if (kv_bin_cmp(s->key[i], p) <= 0 && kv_bin_cmp(p, s->end[i]) < 0) {
			return true;
		}
	}
	return false;
}

static int kv_check_intervals(struct arena *a, RequestOp **reqs, size_t n, struct kv_keyset *puts,
			      struct kv_ivset *dels)
{
	for (size_t i = 0; i < n; i++) {
		if (reqs[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE)
			continue;
		const DeleteRangeRequest *d = reqs[i]->request_delete_range;
		kv_ivset_add(a, dels, &d->key, &d->range_end);
	}
	for (size_t i = 0; i < n; i++) {
		if (reqs[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN)
			continue;
		const TxnRequest *t = reqs[i]->request_txn;
		struct kv_keyset pthen = {0}, pelse = {0};
		struct kv_ivset dthen = {0}, delse = {0};
		if (kv_check_intervals(a, t->success, t->n_success, &pthen, &dthen) ||
		    kv_check_intervals(a, t->failure, t->n_failure, &pelse, &delse))
			return -1;
		for (size_t j = 0; j < pthen.n; j++) {
			if (kv_keyset_has(puts, pthen.keys[j]) || kv_ivset_hits(dels, pthen.keys[j]))
				return -1;
			kv_keyset_add(a, puts, pthen.keys[j]);
		}
		for (size_t j = 0; j < pelse.n; j++) {
			/* then and else are exclusive: a key put by both is fine */
			if (kv_keyset_has(puts, pelse.keys[j]) && !kv_keyset_has(&pthen, pelse.keys[j]))
				return -1;
			if (kv_ivset_hits(dels, pelse.keys[j]))
				return -1;
			kv_keyset_add(a, puts, pelse.keys[j]);
		}
		for (size_t j = 0; j < dthen.n; j++)
			kv_ivset_add(a, dels, dthen.key[j], dthen.end[j]);
		for (size_t j = 0; j < delse.n; j++)
			kv_ivset_add(a, dels, delse.key[j], delse.end[j]);
	}
	for (size_t i = 0; i < n; i++) {
		if (reqs[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
			continue;
		const ProtobufCBinaryData *k = &reqs[i]->request_put->key;
		if (kv_keyset_has(puts, k) || kv_ivset_hits(dels, k))
			return -1;
		kv_keyset_add(a, puts, k);
	}
	return 0;
}

/* Bytes etcd adds around a request when it wraps it for raft (request header with a
 * 64-bit id, field tag and length): the request-too-large check counts them. */
static size_t kv_raft_overhead(size_t len)
{
	size_t v = 1;

	while (len >= 0x80) {
		len >>= 7;
		v++;
	}
	return 14 + 1 + v;
}

int kv_check(enum kv_method method, const struct ProtobufCMessage *req, size_t wire_len,
	     const struct kv_limits *lim, struct arena *a, struct kv_result *res)
{
	const struct kv_error *err = NULL;
	int rc = 0;

	switch (method) {
	case KV_RANGE:
		rc = kv_check_range((const RangeRequest *)req, &err);
		break;
	case KV_PUT:
		rc = kv_check_put((const PutRequest *)req, &err);
		break;
	case KV_DELETE_RANGE:
		if (kv_empty(((const DeleteRangeRequest *)req)->key)) {
			err = &err_empty_key;
			rc = -1;
		}
		break;
	case KV_TXN: {
		const TxnRequest *t = (const TxnRequest *)req;
		rc = kv_check_txn(t, lim->max_txn_ops, &err);
		if (!rc) {
			struct kv_keyset p = {0};
			struct kv_ivset d = {0};
			struct kv_keyset p2 = {0};
			struct kv_ivset d2 = {0};
			if (kv_check_intervals(a, t->success, t->n_success, &p, &d) ||
			    kv_check_intervals(a, t->failure, t->n_failure, &p2, &d2)) {
				err = &err_duplicate_key;
				rc = -1;
			}
		}
		break;
	}
	case KV_COMPACT:
	default:
		break;
	}
	if (!rc && method != KV_RANGE && wire_len + kv_raft_overhead(wire_len) > lim->max_request_bytes) {
		err = &err_too_large;
		rc = -1;
	}
	if (rc)
		kv_set_error(res, err);
	return rc;
}

static bool kv_ops_read_only(RequestOp **ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		switch (ops[i]->request_case) {
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
			if (!kv_is_read_only(KV_TXN, &ops[i]->request_txn->base))
				return false;
			break;
		default:
			return false;
		}
	}
	return true;
}

int kv_is_read_only(enum kv_method method, const struct ProtobufCMessage *req)
{
	if (method == KV_RANGE)
		return 1;
	if (method != KV_TXN)
		return 0;
	const TxnRequest *t = (const TxnRequest *)req;
	return kv_ops_read_only(t->success, t->n_success) && kv_ops_read_only(t->failure, t->n_failure);
}

/* ---------- Range ---------- */

/* Bytes besides key and value that one encoded KeyValue takes at most: tags, lengths and
 * four int64 varints. */
#define KV_ENC_FIXED_MAX (2 + 10 + 1 + 10 + 4 * 11 + 1 + 10)


struct kv_collect {
	struct arena *a;
	KeyValue **kvs;
	size_t n, cap;
	int64_t count;
	int64_t keep; /* collect at most this many; 0: all */
	bool count_only;
	bool copy; /* under the writer: later changes in the batch may move what mvcc lent */
	size_t budget; /* stop collecting past this many bytes (about); 0: no limit */
	size_t bytes;
	bool over; /* the budget was passed: the walk stopped early */
};

KeyValue *kv_pb_kv(struct arena *a, const struct mvcc_kv *m, bool copy)
{
	KeyValue *kv = arena_alloc(a, sizeof *kv);

	mvccpb__key_value__init(kv);
	kv->key.data = copy ? arena_memdup(a, m->key, m->key_len) : (uint8_t *)m->key;
	kv->key.len = m->key_len;
	kv->value.data = copy ? arena_memdup(a, m->value, m->value_len) : (uint8_t *)m->value;
	kv->value.len = m->value_len;
	kv->create_revision = m->create_revision;
	kv->mod_revision = m->mod_revision;
	kv->version = m->version;
	kv->lease = m->lease;
	return kv;
}

/* Under the writer: the version may be retired by a later change in the batch. */
static KeyValue *kv_copy(struct arena *a, const struct mvcc_kv *m) { return kv_pb_kv(a, m, true); }

static KeyValue *kv_make(struct arena *a, const struct mvcc_kv *m) { return kv_pb_kv(a, m, false); }

struct kv_owner {
	struct mvcc_kv kv;
	bool found;
};

static int kv_owner_fn(void *arg, const struct mvcc_kv *kv)
{
	struct kv_owner *o = arg;

	if (!o->found || kv->create_revision < o->kv.create_revision) {
		o->kv = *kv;
		o->found = true;
	}
	return 0;
}

int kv_range_owner(const struct mvcc_view *v, const uint8_t *key, size_t key_len, const uint8_t *end, size_t end_len,
		   int64_t rev, struct mvcc_kv *out)
{
	struct kv_owner o = {.found = false};
	int rc = mvcc_range(v, key, key_len, end, end_len, rev, false, kv_owner_fn, &o);

	if (rc < 0)
		return rc;
	if (o.found)
		*out = o.kv;
	return o.found;
}

static void kv_collect_push(struct kv_collect *c, KeyValue *kv)
{
	if (c->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 16;
		KeyValue **n = arena_alloc(c->a, ncap * sizeof *n);
		if (c->n)
			memcpy(n, c->kvs, c->n * sizeof *n);
		c->kvs = n;
		c->cap = ncap;
	}
	c->kvs[c->n++] = kv;
}

static int kv_collect_fn(void *arg, const struct mvcc_kv *m)
{
	struct kv_collect *c = arg;

	c->count++;
	if (c->count_only || (c->keep > 0 && (int64_t)c->n >= c->keep))
		return 0;
	if (c->budget) {
		c->bytes += m->key_len + m->value_len + KV_ENC_FIXED_MAX;
		if (c->bytes > c->budget) {
			c->over = true;
			return 1;
		}
	}
	kv_collect_push(c, c->copy ? kv_copy(c->a, m) : kv_make(c->a, m));
	return 0;
}

/* The range end as mvcc takes it: etcd's "\0" means "every key >= key". */
static void kv_range_bounds(const ProtobufCBinaryData *end, const uint8_t **e, size_t *elen)
{
	*e = end->data;
	*elen = end->len;
}

static int kv_sort_cmp(const KeyValue *a, const KeyValue *b, int target)
{
	switch (target) {
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION:
		return (a->version > b->version) - (a->version < b->version);
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE:
		return (a->create_revision > b->create_revision) - (a->create_revision < b->create_revision);
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD:
		return (a->mod_revision > b->mod_revision) - (a->mod_revision < b->mod_revision);
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE:
		return kv_bytes_cmp(a->value.data, a->value.len, b->value.data, b->value.len);
	default:
		return kv_bytes_cmp(a->key.data, a->key.len, b->key.data, b->key.len);
	}
}

/* Stable merge sort; `desc` sorts by the reversed order, ties keeping key order. */
static void kv_sort(struct arena *a, KeyValue **v, size_t n, int target, bool desc)
{
	KeyValue **tmp;

	if (n < 2)
		return;
	tmp = arena_alloc(a, n * sizeof *tmp);
	for (size_t w = 1; w < n; w *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * w) {
			size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
			size_t i = lo, j = mid, k = lo;
			while (i < mid && j < hi) {
				int c = kv_sort_cmp(v[j], v[i], target);
				if (desc)
					c = -c;
				tmp[k++] = c < 0 ? v[j++] : v[i++];
			}
			while (i < mid)
				tmp[k++] = v[i++];
			while (j < hi)
				tmp[k++] = v[j++];
		}
		memcpy(v, tmp, n * sizeof *v);
	}
}

static void kv_prune(struct kv_collect *c, const RangeRequest *r)
{
	size_t o = 0;

	for (size_t i = 0; i < c->n; i++) {
		const KeyValue *kv = c->kvs[i];
		if (r->max_mod_revision != 0 && kv->mod_revision > r->max_mod_revision)
			continue;
		if (r->min_mod_revision != 0 && kv->mod_revision < r->min_mod_revision)
			continue;
		if (r->max_create_revision != 0 && kv->create_revision > r->max_create_revision)
			continue;
		if (r->min_create_revision != 0 && kv->create_revision < r->min_create_revision)
			continue;
		c->kvs[o++] = c->kvs[i];
	}
	c->n = o;
}

/* With `budget`, a range answered in key order (the only one kv_range_begin streams) stops
 * once it has collected about that many bytes: NULL with *over set. */
static RangeResponse *kv_range_exec_budget(const struct mvcc_view *v, const RangeRequest *r, struct arena *a,
					   bool copy, size_t budget, bool *over, const struct kv_error **err)
{
	bool filtered = r->min_mod_revision || r->max_mod_revision || r->min_create_revision || r->max_create_revision;
	int sort_order = r->sort_order;
	int64_t limit = r->limit;
	struct kv_collect c = {.a = a, .count_only = r->count_only, .copy = copy};
	if (budget && r->sort_target == ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY && !r->count_only)
		c.budget = budget;
	const uint8_t *e;
	size_t elen;
	int rc;

	if (sort_order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE || filtered)
		limit = 0;
	c.keep = limit > 0 ? limit + 1 : 0;
	kv_range_bounds(&r->range_end, &e, &elen);
	rc = mvcc_range(v, r->key.data, r->key.len, e, elen, r->revision > 0 ? r->revision : 0, false, kv_collect_fn,
			&c);
	if (rc < 0) {
		*err = kv_mvcc_error(rc);
		return NULL;
	}
	if (c.over) {
		*over = true;
		return NULL;
	}
	if (filtered)
		kv_prune(&c, r);
	if (r->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY &&
	    sort_order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE)
		sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
	else if (r->sort_target == ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY &&
		 sort_order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND)
		sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE;
	if (sort_order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE)
		kv_sort(a, c.kvs, c.n, r->sort_target, sort_order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND);

	RangeResponse *resp = arena_alloc(a, sizeof *resp);
	etcdserverpb__range_response__init(resp);
	if (r->limit > 0 && (int64_t)c.n > r->limit) {
		c.n = (size_t)r->limit;
		resp->more = 1;
	}
	resp->header = kv_header_new(a, v->rev);
	resp->count = c.count;
	resp->n_kvs = c.n;
	resp->kvs = c.kvs;
	if (r->keys_only)
		for (size_t i = 0; i < c.n; i++)
			c.kvs[i]->value.len = 0, c.kvs[i]->value.data = NULL;
	return resp;
}

static RangeResponse *kv_range_exec(const struct mvcc_view *v, const RangeRequest *r, struct arena *a, bool copy,
				    const struct kv_error **err)
{
	bool over = false;

	return kv_range_exec_budget(v, r, a, copy, 0, &over, err);
}

/* ---------- Range, streamed ----------
 *
 * A Range whose answer is large is encoded as it is sent: the RangeResponse is written in
 * field order — header, each kv, more, count — byte for byte what protobuf-c would pack,
 * but a few kvs at a time as the call's window opens. The gRPC prefix needs the length
 * first, so kv_range_begin walks the range once to size it (and count it), then the
 * stream walks it again in slices.
 *
 * Snapshots and reclamation (core/qsbr.h): a reactor may hold a pointer into a published
 * snapshot only until its next quiescent point, i.e. within one loop turn, and holding one
 * longer (pinning an epoch) would keep every root the sequencer retires meanwhile alive for
 * as long as a slow client reads. So the stream holds no snapshot pointer at all: it keeps
 * its own copies of the range bounds, the revision R it reads at (the request's, or the
 * view's current one when the answer began) and the last key it reached. Each slice takes
 * the then-published view and resumes the walk after that key, reading at R. MVCC keeps
 * every version a read at R needs in any newer view (a key's history is immutable, and a
 * key leaves the tree only when compaction removed a tombstone, i.e. a key absent at R), so
 * every slice reads exactly what a single walk of the first view would have — until a
 * compaction passes R: mvcc then answers -MVCC_ECOMPACTED, the stream fails and the call is
 * reset (REFUSED_STREAM: clients see UNAVAILABLE and retry, getting fresh data or, for an
 * explicit revision, etcd's "required revision has been compacted").
 *
 * Memory per stream: this struct, the copied bounds and one key; never the answer. */

static size_t kv_varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *kv_varint_put(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* A tag and an int64 (proto3: omitted when 0). */
static uint8_t *kv_i64_put(uint8_t *p, uint8_t tag, int64_t v)
{
	if (!v)
		return p;
	*p++ = tag;
	return kv_varint_put(p, (uint64_t)v);
}

/* One kvs entry as pieces: fixed bytes before the key, the key, fixed bytes before the
 * value, the value, fixed bytes after. */
struct kv_enc {
	uint8_t pre[2 + 10 + 1 + 10], mid[4 * 11 + 1 + 10], post[11];
	const uint8_t *part[5];
	size_t len[5];
	size_t total;
};

static void kv_enc_build(struct kv_enc *e, const struct mvcc_kv *m, bool keys_only)
{
	size_t vlen = keys_only ? 0 : m->value_len;
	uint8_t *p = e->mid;

	p = kv_i64_put(p, 0x10, m->create_revision);
	p = kv_i64_put(p, 0x18, m->mod_revision);
	p = kv_i64_put(p, 0x20, m->version);
	if (vlen) {
		*p++ = 0x2a;
		p = kv_varint_put(p, vlen);
	}
	e->len[2] = (size_t)(p - e->mid);
	e->len[4] = (size_t)(kv_i64_put(e->post, 0x30, m->lease) - e->post);
	size_t klen_f = m->key_len ? 1 + kv_varint_len(m->key_len) + m->key_len : 0;
	size_t inner = klen_f + e->len[2] + vlen + e->len[4];
	p = e->pre;
	*p++ = 0x12;
	p = kv_varint_put(p, inner);
	if (m->key_len) {
		*p++ = 0x0a;
		p = kv_varint_put(p, m->key_len);
	}
	e->len[0] = (size_t)(p - e->pre);
	e->part[0] = e->pre;
	e->part[1] = m->key;
	e->len[1] = m->key_len;
	e->part[2] = e->mid;
	e->part[3] = m->value;
	e->len[3] = vlen;
	e->part[4] = e->post;
	e->total = e->len[0] + e->len[1] + e->len[2] + e->len[3] + e->len[4];
}

/* Size of one kvs entry, tag and length included. */
static size_t kv_enc_size(const struct mvcc_kv *m, bool keys_only)
{
	size_t vlen = keys_only ? 0 : m->value_len;
	size_t inner = (m->key_len ? 1 + kv_varint_len(m->key_len) + m->key_len : 0) +
		       (m->create_revision ? 1 + kv_varint_len((uint64_t)m->create_revision) : 0) +
		       (m->mod_revision ? 1 + kv_varint_len((uint64_t)m->mod_revision) : 0) +
		       (m->version ? 1 + kv_varint_len((uint64_t)m->version) : 0) +
		       (vlen ? 1 + kv_varint_len(vlen) + vlen : 0) +
		       (m->lease ? 1 + kv_varint_len((uint64_t)m->lease) : 0);
	return 1 + kv_varint_len(inner) + inner;
}

/* Copies bytes [off, off + cap) of the entry (fewer at its end) to buf; returns how many. */
static size_t kv_enc_copy(const struct kv_enc *e, size_t off, uint8_t *buf, size_t cap)
{
	size_t n = 0;

	for (int i = 0; i < 5 && n < cap; i++) {
		if (off >= e->len[i]) {
			off -= e->len[i];
			continue;
		}
		size_t k = e->len[i] - off;
		if (k > cap - n)
			k = cap - n;
		memcpy(buf + n, e->part[i] + off, k);
		n += k;
		off = 0;
	}
	return n;
}

struct kv_range_stream {
	const struct mvcc_store *store;
	int64_t rev; /* R: every slice reads at it */
	uint8_t *key, *end; /* the request's bounds (copies) */
	size_t key_len, end_len;
	bool desc, keys_only;
	int64_t min_mod, max_mod, min_create, max_create;
	uint64_t left; /* kvs still to send */
	uint8_t head[64], tail[24]; /* header field; more and count */
	uint32_t head_len, head_off, tail_len, tail_off;
	uint8_t *last; /* the last key reached (resume after it), or the one partly sent */
	size_t last_len, last_cap;
	bool have_last, partial;
	size_t part_off; /* bytes of the partly sent entry already out */
	/* an answer sorted by another target than the key: its keys in answer order, each
	 * read back by key at `rev` when its turn comes (the keys, never the values, are kept) */
	uint8_t *list;
	size_t *list_off; /* n + 1 offsets into list */
	size_t list_n, list_i;
	/* RangeStream (kv_range_stream_begin): RangeStreamResponse messages, one chunk built
	 * and framed at a time in `chunk` (served from chunk_off to chunk_len) */
	uint8_t *chunk;
	size_t chunk_cap, chunk_off, chunk_len, target;
	int64_t rs_count, rs_limit, rs_sent;
	bool rs_more, rs_done, count_only;
};

static bool kv_stream_filter(const struct kv_range_stream *st, const struct mvcc_kv *m)
{
	return !((st->max_mod && m->mod_revision > st->max_mod) || (st->min_mod && m->mod_revision < st->min_mod) ||
		 (st->max_create && m->create_revision > st->max_create) ||
		 (st->min_create && m->create_revision < st->min_create));
}

static void kv_stream_remember(struct kv_range_stream *st, const uint8_t *key, size_t len)
{
	if (len + 1 > st->last_cap) { /* +1: room for the successor's 0 byte */
		size_t cap = st->last_cap ? st->last_cap : 64;
		while (cap < len + 1)
			cap *= 2;
		uint8_t *n = realloc(st->last, cap);
		if (!n)
			abort();
		st->last = n;
		st->last_cap = cap;
	}
	memcpy(st->last, key, len);
	st->last_len = len;
	st->have_last = true;
}

/* The first pass: what the answer holds and how many bytes it packs to. */
struct kv_plan {
	const struct kv_range_stream *st;
	int64_t count, limit;
	uint64_t sent;
	bool more;
	uint64_t bytes;
};

static int kv_plan_fn(void *arg, const struct mvcc_kv *m)
{
	struct kv_plan *p = arg;

	p->count++;
	if (!kv_stream_filter(p->st, m))
		return 0;
	if (p->limit > 0 && (int64_t)p->sent >= p->limit) {
		p->more = true;
		return 0;
	}
	p->sent++;
	p->bytes += kv_enc_size(m, p->st->keys_only);
	return 0;
}

/* One slice's walk: writes entries into buf until it is full or nothing is left. */
struct kv_slice {
	struct kv_range_stream *st;
	uint8_t *buf;
	size_t cap, n;
};

/* Writes (the rest of) one entry; true when it went out whole. */
static bool kv_slice_entry(struct kv_slice *sl, const struct mvcc_kv *m, size_t off)
{
	struct kv_enc e;

	kv_enc_build(&e, m, sl->st->keys_only);
	size_t k = kv_enc_copy(&e, off, sl->buf + sl->n, sl->cap - sl->n);
	sl->n += k;
	if (off + k == e.total) {
		sl->st->left--;
		sl->st->partial = false;
		return true;
	}
	sl->st->partial = true;
	sl->st->part_off = off + k;
	return false;
}

static int kv_slice_fn(void *arg, const struct mvcc_kv *m)
{
	struct kv_slice *sl = arg;
	struct kv_range_stream *st = sl->st;

	if (!kv_stream_filter(st, m))
		return 0;
	bool whole = kv_slice_entry(sl, m, 0);
	if (whole && st->left > 0 && sl->n < sl->cap)
		return 0;
	kv_stream_remember(st, m->key, m->key_len);
	return 1;
}

ssize_t kv_range_stream_read(void *arg, uint8_t *buf, size_t cap)
{
	struct kv_range_stream *st = arg;
	struct kv_slice sl = {.st = st, .buf = buf, .cap = cap};
	struct mvcc_view v;

	if (st->head_off < st->head_len) {
		size_t k = st->head_len - st->head_off < cap ? st->head_len - st->head_off : cap;
		memcpy(buf, st->head + st->head_off, k);
		st->head_off += (uint32_t)k;
		sl.n = k;
	}
	if (st->left > 0 && sl.n < cap)
		mvcc_view_published(st->store, &v);
	while (st->left > 0 && sl.n < cap) {
		if (st->list && !st->partial) {
			size_t i = st->list_i++;
			kv_stream_remember(st, st->list + st->list_off[i], st->list_off[i + 1] - st->list_off[i]);
			st->partial = true; /* read it back below, from its start */
			st->part_off = 0;
		}
		if (st->partial) {
			struct mvcc_kv m;
			int rc = mvcc_get(&v, st->last, st->last_len, st->rev, &m);
			if (rc != 1)
				return -1; /* compacted past R (or, never, a changed history) */
			if (!kv_slice_entry(&sl, &m, st->part_off))
				break;
			continue;
		}
		const uint8_t *k = st->key, *e = st->end;
		size_t klen = st->key_len, elen = st->end_len;
		if (st->have_last && !st->desc) {
			st->last[st->last_len] = 0; /* the first key after `last` */
			k = st->last;
			klen = st->last_len + 1;
		} else if (st->have_last) {
			if (st->last_len == 1 && st->last[0] == 0)
				return -1; /* nothing sorts below "\0": the first pass counted wrong */
			e = st->last;
			elen = st->last_len;
		}
		size_t before = sl.n;
		uint64_t left = st->left;
		int rc = mvcc_range(&v, k, klen, e, elen, st->rev, st->desc, kv_slice_fn, &sl);
		if (rc < 0 || (rc == 0 && st->left > 0) || (sl.n == before && st->left == left))
			return -1;
	}
	if (st->left == 0 && st->tail_off < st->tail_len && sl.n < cap) {
		size_t k = st->tail_len - st->tail_off < cap - sl.n ? st->tail_len - st->tail_off : cap - sl.n;
		memcpy(buf + sl.n, st->tail + st->tail_off, k);
		st->tail_off += (uint32_t)k;
		sl.n += k;
	}
	return (ssize_t)sl.n;
}

void kv_range_stream_free(void *arg)
{
	struct kv_range_stream *st = arg;

	if (!st)
		return;
	free(st->key);
	free(st->last);
	free(st->list);
	free(st->list_off);
	free(st->chunk);
	free(st);
}

static uint8_t *kv_dup(const uint8_t *p, size_t n)
{
	uint8_t *d = malloc(n ? n : 1);

	if (!d)
		abort();
	if (n && p)
		memcpy(d, p, n);
	return d;
}

static struct kv_range_stream *kv_stream_new(const struct mvcc_view *v, const RangeRequest *r);
static void kv_stream_frame(struct kv_range_stream *st, const struct mvcc_view *v, const struct kv_header_ids *ids,
			    bool more, int64_t count);
static void kv_stream_tail(struct kv_range_stream *st, bool more, int64_t count);
static int kv_range_begin_sorted(const struct mvcc_view *v, const RangeRequest *r, const struct kv_header_ids *ids,
				 size_t whole_max, struct kv_result *res, struct kv_range_stream **out,
				 uint64_t *len);

int kv_range_begin(const struct mvcc_view *v, const struct ProtobufCMessage *req, struct arena *a,
		   const struct kv_header_ids *ids, size_t whole_max, struct kv_result *res,
		   struct kv_range_stream **out, uint64_t *len)
{
	const RangeRequest *r = (const RangeRequest *)req;
	const struct kv_error *err = NULL;
	bool over = false;

	res->code = GRPC_OK;
	res->message = NULL;
	res->resp = (ProtobufCMessage *)kv_range_exec_budget(v, r, a, false, whole_max, &over, &err);
	if (res->resp && r->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY)
		return kv_range_begin_sorted(v, r, ids, whole_max, res, out, len);
	if (res->resp)
		return 0;
	if (!over) {
		kv_set_error(res, err);
		return 0;
	}
	/* large and in key order: plan it, then stream it */
	struct kv_range_stream *st = kv_stream_new(v, r);
	struct kv_plan p = {.st = st, .limit = r->limit};
	int rc = mvcc_range(v, st->key, st->key_len, st->end, st->end_len, st->rev, st->desc, kv_plan_fn, &p);
	if (rc < 0) {
		kv_range_stream_free(st);
		kv_set_error(res, kv_mvcc_error(rc));
		return 0;
	}
	st->left = p.sent;
	kv_stream_frame(st, v, ids, p.more, p.count);
	*out = st;
	*len = st->head_len + p.bytes + st->tail_len;
	return 1;
}

static struct kv_range_stream *kv_stream_new(const struct mvcc_view *v, const RangeRequest *r)
{
	struct kv_range_stream *st = calloc(1, sizeof *st);
	if (!st)
		abort();
	st->store = v->store;
	st->rev = r->revision > 0 ? r->revision : v->rev;
	st->key = kv_dup(NULL, r->key.len + r->range_end.len); /* key then range_end */
	if (r->key.len)
		memcpy(st->key, r->key.data, r->key.len);
	st->key_len = r->key.len;
	st->end = st->key + r->key.len;
	if (r->range_end.len)
		memcpy(st->end, r->range_end.data, r->range_end.len);
	st->end_len = r->range_end.len;
	st->desc = r->sort_order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
	st->keys_only = r->keys_only;
	st->min_mod = r->min_mod_revision;
	st->max_mod = r->max_mod_revision;
	st->min_create = r->min_create_revision;
	st->max_create = r->max_create_revision;
	return st;
}

/* The header field before the kvs, `more` and `count` after them. */
static void kv_stream_frame(struct kv_range_stream *st, const struct mvcc_view *v, const struct kv_header_ids *ids,
			    bool more, int64_t count)
{
	ResponseHeader hdr;
	etcdserverpb__response_header__init(&hdr);
	hdr.cluster_id = ids->cluster_id;
	hdr.member_id = ids->member_id;
	hdr.raft_term = ids->raft_term;
	hdr.revision = v->rev;
	size_t hlen = etcdserverpb__response_header__get_packed_size(&hdr);
	uint8_t *h = st->head;
	*h++ = 0x0a;
	h = kv_varint_put(h, hlen);
	etcdserverpb__response_header__pack(&hdr, h);
	st->head_len = (uint32_t)(h + hlen - st->head);
	kv_stream_tail(st, more, count);
}

/* `more` and `count`, the fields after the kvs. */
static void kv_stream_tail(struct kv_range_stream *st, bool more, int64_t count)
{
	uint8_t *t = st->tail;
	if (more) {
		*t++ = 0x18;
		*t++ = 1;
	}
	t = kv_i64_put(t, 0x20, count);
	st->tail_len = (uint32_t)(t - st->tail);
}

/* A sorted answer (already collected and sorted in `res`, its values lent by the view):
 * kept whole if small, else its keys are copied and it is streamed in that order. */
static int kv_range_begin_sorted(const struct mvcc_view *v, const RangeRequest *r, const struct kv_header_ids *ids,
				 size_t whole_max, struct kv_result *res, struct kv_range_stream **out,
				 uint64_t *len)
{
	const RangeResponse *resp = (const RangeResponse *)res->resp;
	uint64_t bytes = 0;
	size_t keys = 0;

	for (size_t i = 0; i < resp->n_kvs; i++) {
		const KeyValue *kv = resp->kvs[i];
		struct mvcc_kv m = {.key = kv->key.data, .key_len = kv->key.len, .value_len = kv->value.len,
				    .create_revision = kv->create_revision, .mod_revision = kv->mod_revision,
				    .version = kv->version, .lease = kv->lease};
		bytes += kv_enc_size(&m, false); /* keys_only answers carry no value already */
		keys += kv->key.len;
	}
	if (bytes <= whole_max)
		return 0;
	struct kv_range_stream *st = kv_stream_new(v, r);
	st->list = kv_dup(NULL, keys);
	st->list_off = malloc((resp->n_kvs + 1) * sizeof *st->list_off);
	if (!st->list_off)
		abort();
	size_t off = 0;
	for (size_t i = 0; i < resp->n_kvs; i++) {
		st->list_off[i] = off;
		if (resp->kvs[i]->key.len)
			memcpy(st->list + off, resp->kvs[i]->key.data, resp->kvs[i]->key.len);
		off += resp->kvs[i]->key.len;
	}
	st->list_off[resp->n_kvs] = off;
	st->list_n = st->left = resp->n_kvs;
	kv_stream_frame(st, v, ids, resp->more, resp->count);
	*out = st;
	*len = st->head_len + bytes + st->tail_len;
	return 1;
}

/* ---------- RangeStream (etcd 3.7, KEP-5966) ----------
 *
 * The same answer as Range, as a server stream of RangeStreamResponse{range_response = 1}
 * messages whose merge is Range's RangeResponse: every chunk but the last carries kvs only,
 * the last one adds the header (its revision the view's when the call began, as Range's),
 * `more` and `count`. It reuses the streamed Range's state and its snapshot rule (see
 * above): no snapshot pointer is held between reads; each chunk takes the then-published
 * view and resumes after the last key sent, reading at the fixed revision R. Unlike the
 * single-message Range nothing is sized up front (a message's length is only needed per
 * chunk), so the first bytes go out after one small chunk's walk, and count is the tally
 * of keys walked (the walk goes on past `limit`, counting only, as Range's does). A chunk
 * is built whole before it is framed, so a stream holds at most one chunk: about
 * KV_RS_CHUNK_MAX bytes plus one entry (an entry over that is a chunk alone). Sorting by
 * anything but the key, ascending, is etcd's UNIMPLEMENTED (clients use Range for it). */

/* The first chunk is small so that the first bytes leave soon; each next one doubles up
 * to KV_RS_CHUNK_MAX (bytes of kvs; the bound on a stream's buffer, with one entry). */
#define KV_RS_CHUNK_FIRST (4u * 1024)
#define KV_RS_CHUNK_MAX (64u * 1024)
/* Room before the kvs for the gRPC prefix (5), the range_response tag (1) and its length
 * (at most 5 bytes: a chunk is under 2^32). */
#define KV_RS_RESERVE 16

static void kv_rs_reserve(struct kv_range_stream *st, size_t more)
{
	size_t need = st->chunk_len + more + sizeof st->head + sizeof st->tail;

	if (need <= st->chunk_cap)
		return;
	size_t cap = st->chunk_cap ? st->chunk_cap : KV_RS_CHUNK_FIRST + 256;
	while (cap < need)
		cap *= 2;
	uint8_t *n = realloc(st->chunk, cap);
	if (!n)
		abort();
	st->chunk = n;
	st->chunk_cap = cap;
}

static void kv_rs_put(struct kv_range_stream *st, const void *p, size_t n)
{
	kv_rs_reserve(st, n);
	memcpy(st->chunk + st->chunk_len, p, n);
	st->chunk_len += n;
}

static int kv_rs_fn(void *arg, const struct mvcc_kv *m)
{
	struct kv_range_stream *st = arg;
	struct kv_enc e;

	st->rs_count++;
	if (st->count_only || !kv_stream_filter(st, m))
		return 0;
	if (st->rs_limit > 0 && st->rs_sent >= st->rs_limit) {
		st->rs_more = true;
		return 0;
	}
	kv_enc_build(&e, m, st->keys_only);
	kv_rs_reserve(st, e.total);
	st->chunk_len += kv_enc_copy(&e, 0, st->chunk + st->chunk_len, e.total);
	st->rs_sent++;
	if (st->rs_limit > 0 && st->rs_sent >= st->rs_limit)
		return 0; /* the last chunk: the walk goes on counting */
	if (st->end_len == 0 || st->chunk_len - KV_RS_RESERVE < st->target)
		return 0;
	kv_stream_remember(st, m->key, m->key_len);
	return 1;
}

/* Builds and frames the next chunk; -1 when a compaction passed R. */
static int kv_rs_fill(struct kv_range_stream *st)
{
	struct mvcc_view v;
	const uint8_t *k = st->key;
	size_t klen = st->key_len;

	mvcc_view_published(st->store, &v);
	if (st->have_last) {
		st->last[st->last_len] = 0; /* the first key after `last` */
		k = st->last;
		klen = st->last_len + 1;
	}
	st->chunk_len = KV_RS_RESERVE;
	kv_rs_reserve(st, 0);
	int rc = mvcc_range(&v, k, klen, st->end, st->end_len, st->rev, false, kv_rs_fn, st);
	if (rc < 0)
		return -1;
	st->rs_done = rc == 0;
	if (st->rs_done) {
		kv_stream_tail(st, st->rs_more, st->rs_count);
		kv_rs_put(st, st->head, st->head_len);
		kv_rs_put(st, st->tail, st->tail_len);
	}
	size_t inner = st->chunk_len - KV_RS_RESERVE;
	size_t body = 1 + kv_varint_len(inner) + inner;
	uint8_t *p = st->chunk + KV_RS_RESERVE - (body - inner) - 5;
	st->chunk_off = (size_t)(p - st->chunk);
	p[0] = 0;
	p[1] = (uint8_t)(body >> 24);
	p[2] = (uint8_t)(body >> 16);
	p[3] = (uint8_t)(body >> 8);
	p[4] = (uint8_t)body;
	p[5] = 0x0a;
	kv_varint_put(p + 6, inner);
	if (st->target < KV_RS_CHUNK_MAX)
		st->target *= 2;
	return 0;
}

ssize_t kv_range_stream_read_msgs(void *arg, uint8_t *buf, size_t cap)
{
	struct kv_range_stream *st = arg;
	size_t n = 0;

	while (n < cap) {
		if (st->chunk_off == st->chunk_len) {
			if (st->rs_done)
				break;
			if (kv_rs_fill(st) < 0)
				return -1;
		}
		size_t k = st->chunk_len - st->chunk_off;
		if (k > cap - n)
			k = cap - n;
		memcpy(buf + n, st->chunk + st->chunk_off, k);
		st->chunk_off += k;
		n += k;
	}
	if (st->rs_done && st->chunk_off == st->chunk_len && st->chunk) {
		free(st->chunk); /* all out: the stream keeps nothing while the trailers go */
		st->chunk = NULL;
		st->chunk_cap = st->chunk_off = st->chunk_len = 0;
	}
	return (ssize_t)n;
}

static int kv_rs_probe_fn(void *arg, const struct mvcc_kv *m)
{
	(void)arg;
	(void)m;
	return 1;
}

int kv_range_stream_begin(const struct mvcc_view *v, const struct ProtobufCMessage *req,
			  const struct kv_header_ids *ids, struct kv_result *res, struct kv_range_stream **out)
{
	const RangeRequest *r = (const RangeRequest *)req;

	res->code = GRPC_OK;
	res->message = NULL;
	res->resp = NULL;
	if (r->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY ||
	    r->sort_order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND) {
		res->code = GRPC_UNIMPLEMENTED;
		res->message = "etcdserver: RangeStream does not support sorting; use Range";
		return -1;
	}
	/* Range's errors (a compacted or future revision) before any message */
	int rc = mvcc_range(v, r->key.data, r->key.len, r->range_end.data, r->range_end.len,
			    r->revision > 0 ? r->revision : 0, false, kv_rs_probe_fn, NULL);
	if (rc < 0) {
		kv_set_error(res, kv_mvcc_error(rc));
		return -1;
	}
	struct kv_range_stream *st = kv_stream_new(v, r);
	st->rs_limit = r->limit;
	st->count_only = r->count_only;
	st->target = KV_RS_CHUNK_FIRST;
	kv_stream_frame(st, v, ids, false, 0);
	*out = st;
	return 0;
}

/* ---------- Txn compares ---------- */

static int kv_cmp_i64(int64_t a, int64_t b) { return (a > b) - (a < b); }

static bool kv_compare_kv(const Compare *c, const KeyValue *kv)
{
	int result = 0;
	int64_t want = 0;

	switch (c->target) {
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE: {
		ProtobufCBinaryData v = {0, NULL};
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE)
			v = c->value;
		result = kv_bytes_cmp(kv->value.data, kv->value.len, v.data, v.len);
		break;
	}
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION)
			want = c->create_revision;
		result = kv_cmp_i64(kv->create_revision, want);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION)
			want = c->mod_revision;
		result = kv_cmp_i64(kv->mod_revision, want);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION)
			want = c->version;
		result = kv_cmp_i64(kv->version, want);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE)
			want = c->lease;
		result = kv_cmp_i64(kv->lease, want);
		break;
	default:
		break;
	}
	switch (c->result) {
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL:
		return result == 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL:
		return result != 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER:
		return result > 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS:
		return result < 0;
	default:
		return true;
	}
}

struct kv_cmp_walk {
	const Compare *c;
	bool ok, any;
	struct arena *a;
};

static int kv_cmp_fn(void *arg, const struct mvcc_kv *m)
{
	struct kv_cmp_walk *w = arg;
	KeyValue kv;

	w->any = true;
	mvccpb__key_value__init(&kv);
	kv.key.data = (uint8_t *)m->key;
	kv.key.len = m->key_len;
	kv.value.data = (uint8_t *)m->value;
	kv.value.len = m->value_len;
	kv.create_revision = m->create_revision;
	kv.mod_revision = m->mod_revision;
	kv.version = m->version;
	kv.lease = m->lease;
	if (!kv_compare_kv(w->c, &kv)) {
		w->ok = false;
		return 1;
	}
	return 0;
}

static bool kv_compare(const struct mvcc_view *v, const Compare *c)
{
	struct kv_cmp_walk w = {.c = c, .ok = true};
	const uint8_t *e;
	size_t elen;

	kv_range_bounds(&c->range_end, &e, &elen);
	if (mvcc_range(v, c->key.data, c->key.len, e, elen, 0, false, kv_cmp_fn, &w) < 0)
		return false;
	if (!w.any) {
		/* a value compare on a missing key always fails; others compare zero values */
		if (c->target == ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE)
			return false;
		KeyValue zero;
		mvccpb__key_value__init(&zero);
		return kv_compare_kv(c, &zero);
	}
	return w.ok;
}

/* The chosen branch of every txn on the path, in etcd's pre-order: path[0] is this txn. */
struct kv_path {
	bool *taken;
	size_t n, cap;
};

static void kv_path_push(struct arena *a, struct kv_path *p, bool t)
{
	if (p->n == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 8;
		bool *nt = arena_alloc(a, ncap);
		if (p->n)
			memcpy(nt, p->taken, p->n);
		p->taken = nt;
		p->cap = ncap;
	}
	p->taken[p->n++] = t;
}

static void kv_compare_path(const struct mvcc_view *v, const TxnRequest *t, struct arena *a, struct kv_path *p)
{
	bool ok = true;

	for (size_t i = 0; i < t->n_compare && ok; i++)
		ok = kv_compare(v, t->compare[i]);
	kv_path_push(a, p, ok);
	RequestOp **ops = ok ? t->success : t->failure;
	size_t n = ok ? t->n_success : t->n_failure;
	for (size_t i = 0; i < n; i++)
		if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN)
			kv_compare_path(v, ops[i]->request_txn, a, p);
}

typedef int (*kv_op_check_fn)(const struct mvcc_view *v, const RequestOp *op, const struct kv_sink *sink,
			      const struct kv_error **err);

static int kv_check_path(const struct mvcc_view *v, const TxnRequest *t, const struct kv_path *p, size_t *pi,
			 kv_op_check_fn f, const struct kv_sink *sink, const struct kv_error **err)
{
	bool ok = p->taken[(*pi)++];
	RequestOp **ops = ok ? t->success : t->failure;
	size_t n = ok ? t->n_success : t->n_failure;

	for (size_t i = 0; i < n; i++) {
		if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN) {
			if (kv_check_path(v, ops[i]->request_txn, p, pi, f, sink, err))
				return -1;
		} else if (f(v, ops[i], sink, err)) {
			return -1;
		}
	}
	return 0;
}

static bool kv_lease_exists(const struct kv_sink *sink, int64_t lease)
{
	return lease == 0 || (sink && sink->lease_exists && sink->lease_exists(sink->arg, lease));
}

static int kv_check_put_op(const struct mvcc_view *v, const RequestOp *op, const struct kv_sink *sink,
			   const struct kv_error **err)
{
	if (op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
		return 0;
	const PutRequest *p = op->request_put;
	if (p->ignore_value || p->ignore_lease) {
		struct mvcc_kv prev;
		if (mvcc_get(v, p->key.data, p->key.len, 0, &prev) != 1) {
			*err = &err_key_not_found;
			return -1;
		}
	}
	if (!kv_lease_exists(sink, p->lease)) {
		*err = &err_lease_not_found;
		return -1;
	}
	return 0;
}

static int kv_check_range_op(const struct mvcc_view *v, const RequestOp *op, const struct kv_sink *sink,
			     const struct kv_error **err)
{
	if (op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE)
		return 0;
	int64_t rev = op->request_range->revision;
	if (rev == 0)
		return 0;
	if (rev > v->rev) {
		*err = &err_future_rev;
		return -1;
	}
	if (rev < v->compact_rev) {
		*err = &err_compacted;
		return -1;
	}
	return 0;
}

/* ---------- writes (sequencer) ---------- */

/* The writer's context for one request: where changes are reported, and the revision the
 * request's changes take if it changes anything. */
struct kv_wctx {
	struct mvcc_store *s;
	struct arena *a;
	const struct kv_sink *sink;
	int64_t rev;
};

static PutResponse *kv_put_exec(struct kv_wctx *w, const PutRequest *p)
{
	struct arena *a = w->a;
	PutResponse *resp = arena_alloc(a, sizeof *resp);
	struct mvcc_kv prev, old;
	struct mvcc_view v;
	const uint8_t *val = p->value.data;
	size_t vlen = p->value.len;
	int64_t lease = p->lease;
	int had;

	etcdserverpb__put_response__init(resp);
	if (p->ignore_value || p->ignore_lease) {
		/* checked before anything was applied: the key exists */
		mvcc_view_working(w->s, &v);
		if (mvcc_get(&v, p->key.data, p->key.len, 0, &prev) == 1) {
			if (p->ignore_value) {
				val = prev.value;
				vlen = prev.value_len;
			}
			if (p->ignore_lease)
				lease = prev.lease;
		}
	}
	had = mvcc_put(w->s, p->key.data, p->key.len, val, vlen, lease, &old) == 1;
	if (had && p->prev_kv)
		resp->prev_kv = kv_copy(a, &old);
	resp->header = kv_header_new(a, w->rev);
	if (w->sink) {
		struct mvcc_kv kv = {
			.key = p->key.data,
			.key_len = p->key.len,
			.value = val,
			.value_len = vlen,
			.create_revision = had ? old.create_revision : w->rev,
			.mod_revision = w->rev,
			.version = had ? old.version + 1 : 1,
			.lease = lease,
		};
		w->sink->put(w->sink->arg, &kv, had ? &old : NULL);
	}
	return resp;
}

struct kv_del_walk {
	struct arena *a;
	const struct kv_wctx *w;
	bool prev;
	KeyValue **kvs;
	size_t n, cap;
};

static int kv_del_fn(void *arg, const struct mvcc_kv *m)
{
	struct kv_del_walk *w = arg;

	if (w->w->sink)
		w->w->sink->del(w->w->sink->arg, m->key, m->key_len, w->w->rev, m);
	if (!w->prev)
		return 0;
	struct kv_collect c = {.a = w->a, .kvs = w->kvs, .n = w->n, .cap = w->cap};
	kv_collect_push(&c, kv_copy(w->a, m));
	w->kvs = c.kvs;
	w->n = c.n;
	w->cap = c.cap;
	return 0;
}

static DeleteRangeResponse *kv_delete_exec(struct kv_wctx *wc, const DeleteRangeRequest *d)
{
	struct arena *a = wc->a;
	DeleteRangeResponse *resp = arena_alloc(a, sizeof *resp);
	struct kv_del_walk w = {.a = a, .w = wc, .prev = d->prev_kv};
	struct mvcc_view v;
	const uint8_t *e;
	size_t elen;

	etcdserverpb__delete_range_response__init(resp);
	kv_range_bounds(&d->range_end, &e, &elen);
	resp->deleted = mvcc_delete_range(wc->s, d->key.data, d->key.len, e, elen, kv_del_fn, &w);
	resp->n_prev_kvs = w.n;
	resp->prev_kvs = w.kvs;
	mvcc_view_working(wc->s, &v);
	resp->header = kv_header_new(a, v.rev);
	return resp;
}

/* Executes the ops of one txn level along the path; writes only when s is not NULL. */
static TxnResponse *kv_txn_exec(const struct mvcc_view *rv, struct kv_wctx *w, const TxnRequest *t,
				const struct kv_path *p, size_t *pi, struct arena *a)
{
	struct mvcc_store *s = w ? w->s : NULL;
	TxnResponse *resp = arena_alloc(a, sizeof *resp);
	bool ok = p->taken[(*pi)++];
	RequestOp **ops = ok ? t->success : t->failure;
	size_t n = ok ? t->n_success : t->n_failure;

	etcdserverpb__txn_response__init(resp);
	resp->header = kv_header_new(a, 0);
	resp->succeeded = ok;
	resp->n_responses = n;
	resp->responses = arena_alloc(a, (n ? n : 1) * sizeof *resp->responses);
	for (size_t i = 0; i < n; i++) {
		ResponseOp *r = arena_alloc(a, sizeof *r);
		const struct kv_error *err;
		struct mvcc_view wv;

		etcdserverpb__response_op__init(r);
		resp->responses[i] = r;
		switch (ops[i]->request_case) {
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
			if (s)
				mvcc_view_working(s, &wv);
			else
				wv = *rv;
			r->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
			r->response_range = kv_range_exec(&wv, ops[i]->request_range, a, s != NULL, &err);
			if (!r->response_range) {
				/* checked before anything was applied: cannot happen */
				RangeResponse *empty = arena_alloc(a, sizeof *empty);
				etcdserverpb__range_response__init(empty);
				r->response_range = empty;
			}
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
			r->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
			r->response_put = kv_put_exec(w, ops[i]->request_put);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
			r->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
			r->response_delete_range = kv_delete_exec(w, ops[i]->request_delete_range);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
			r->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
			r->response_txn = kv_txn_exec(rv, w, ops[i]->request_txn, p, pi, a);
			break;
		default:
			break;
		}
	}
	return resp;
}

/* The whole txn: compares, path checks, then execution. w == NULL for a read-only txn. */
static TxnResponse *kv_txn(const struct mvcc_view *v, struct kv_wctx *w, const TxnRequest *t, struct arena *a,
			   const struct kv_error **err)
{
	struct kv_path path = {0};
	size_t pi = 0;

	const struct kv_sink *sink = w ? w->sink : NULL;

	kv_compare_path(v, t, a, &path);
	if (kv_check_path(v, t, &path, &pi, kv_check_put_op, sink, err))
		return NULL;
	pi = 0;
	if (kv_check_path(v, t, &path, &pi, kv_check_range_op, sink, err))
		return NULL;
	pi = 0;
	return kv_txn_exec(v, w, t, &path, &pi, a);
}

void kv_read(enum kv_method method, const struct mvcc_view *v, const struct ProtobufCMessage *req,
	     struct arena *a, struct kv_result *res)
{
	const struct kv_error *err = NULL;

	res->code = GRPC_OK;
	res->message = NULL;
	if (method == KV_RANGE) {
		res->resp = (ProtobufCMessage *)kv_range_exec(v, (const RangeRequest *)req, a, false, &err);
	} else {
		TxnResponse *t = kv_txn(v, NULL, (const TxnRequest *)req, a, &err);
		if (t)
			t->header->revision = v->rev;
		res->resp = (ProtobufCMessage *)t;
	}
	if (!res->resp)
		kv_set_error(res, err);
}

void kv_write(enum kv_method method, struct mvcc_store *s, const struct ProtobufCMessage *req, struct arena *a,
	      const struct kv_sink *sink, struct kv_result *res)
{
	const struct kv_error *err = NULL;
	struct kv_wctx w = {.s = s, .a = a, .sink = sink, .rev = mvcc_rev(s) + 1};
	struct mvcc_view v;
	int64_t rev;

	res->code = GRPC_OK;
	res->message = NULL;
	res->resp = NULL;
	switch (method) {
	case KV_PUT: {
		const PutRequest *p = (const PutRequest *)req;
		if (!kv_lease_exists(sink, p->lease)) {
			err = &err_lease_not_found;
			break;
		}
		if (p->ignore_value || p->ignore_lease) {
			struct mvcc_kv prev;
			mvcc_view_working(s, &v);
			if (mvcc_get(&v, p->key.data, p->key.len, 0, &prev) != 1) {
				err = &err_key_not_found;
				break;
			}
		}
		mvcc_txn_begin(s);
		PutResponse *r = kv_put_exec(&w, p);
		r->header->revision = mvcc_txn_end(s);
		res->resp = &r->base;
		break;
	}
	case KV_DELETE_RANGE: {
		mvcc_txn_begin(s);
		DeleteRangeResponse *r = kv_delete_exec(&w, (const DeleteRangeRequest *)req);
		r->header->revision = mvcc_txn_end(s);
		res->resp = &r->base;
		break;
	}
	case KV_TXN: {
		mvcc_view_working(s, &v);
		mvcc_txn_begin(s);
		TxnResponse *r = kv_txn(&v, &w, (const TxnRequest *)req, a, &err);
		rev = mvcc_txn_end(s);
		if (r) {
			r->header->revision = rev;
			res->resp = &r->base;
		}
		break;
	}
	case KV_COMPACT: {
		const CompactionRequest *c = (const CompactionRequest *)req;
		int rc = mvcc_compact(s, c->revision);
		if (rc < 0) {
			err = kv_mvcc_error(rc);
			break;
		}
		if (sink && sink->compact)
			sink->compact(sink->arg, mvcc_rev(s), c->revision);
		CompactionResponse *r = arena_alloc(a, sizeof *r);
		etcdserverpb__compaction_response__init(r);
		r->header = kv_header_new(a, mvcc_rev(s));
		res->resp = &r->base;
		break;
	}
	case KV_RANGE: {
		mvcc_view_working(s, &v);
		kv_read(method, &v, req, a, res);
		return;
	}
	default:
		err = &err_bad_message;
		break;
	}
	if (!res->resp)
		kv_set_error(res, err);
}

int64_t kv_delete_keys(struct mvcc_store *s, const uint8_t *const *keys, const size_t *lens, size_t n,
		       const struct kv_sink *sink)
{
	struct kv_wctx w = {.s = s, .sink = sink, .rev = mvcc_rev(s) + 1};
	struct kv_del_walk dw = {.w = &w};

	mvcc_txn_begin(s);
	for (size_t i = 0; i < n; i++)
		mvcc_delete_range(s, keys[i], lens[i], NULL, 0, kv_del_fn, &dw);
	return mvcc_txn_end(s);
}

void kv_fill_header(struct ProtobufCMessage *resp, enum kv_method method, const struct kv_header_ids *ids)
{
	ResponseHeader *h = NULL;

	switch (method) {
	case KV_RANGE:
		h = ((RangeResponse *)resp)->header;
		break;
	case KV_PUT:
		h = ((PutResponse *)resp)->header;
		break;
	case KV_DELETE_RANGE:
		h = ((DeleteRangeResponse *)resp)->header;
		break;
	case KV_TXN:
		h = ((TxnResponse *)resp)->header;
		break;
	case KV_COMPACT:
		h = ((CompactionResponse *)resp)->header;
		break;
	default:
		break;
	}
	if (h) {
		h->cluster_id = ids->cluster_id;
		h->member_id = ids->member_id;
		h->raft_term = ids->raft_term;
	}
}
