/* Unit tests for core/kv.c: etcd's request checks (empty key, too many ops, duplicate keys
 * in txns, contradictory flags, request size), Range options (limit/more/count, sort,
 * filters, keys_only, count_only, revisions), Txn semantics (compares on missing keys,
 * range compares, compares evaluated before any op, path checks that keep a txn from being
 * half-applied, nested txns), Compact errors, and RangeStream (its chunks merge to Range's
 * answer in any read size, from one revision, ending past a compaction). The messages are
 * built as protobuf-c structs and also round-tripped through kv_decode. */
#include <criterion/criterion.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/kv.h"
#include "core/qsbr.h"
#include "rpc.pb-c.h"
#include "storage/mvcc.h"

static struct qsbr *q;
static struct mvcc_store *s;
static struct arena *a;
static const struct kv_limits lim = {.max_txn_ops = 128, .max_request_bytes = 1572864};

static void setup(void)
{
	q = qsbr_new(1);
	s = mvcc_store_new(q);
	a = arena_new(4096);
}

static void teardown(void)
{
	arena_free(a);
	mvcc_store_free(s);
	qsbr_free(q);
}

TestSuite(kv, .init = setup, .fini = teardown);

static ProtobufCBinaryData bin(const char *str)
{
	return (ProtobufCBinaryData){strlen(str), (uint8_t *)str};
}

/* Packs and decodes again, so every test also exercises kv_decode. */
static ProtobufCMessage *roundtrip(enum kv_method m, const ProtobufCMessage *msg, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = arena_alloc(a, *len + 1);
	protobuf_c_message_pack(msg, buf);
	ProtobufCMessage *d = kv_decode(m, a, buf, *len);
	cr_assert_not_null(d);
	return d;
}

/* Runs a request as the server would: check, then read or write, then publish. */
static struct kv_result run(enum kv_method m, const ProtobufCMessage *msg)
{
	struct kv_result res;
	size_t len;
	ProtobufCMessage *d = roundtrip(m, msg, &len);

	if (kv_check(m, d, len, &lim, a, &res))
		return res;
	if (kv_is_read_only(m, d)) {
		struct mvcc_view v;
		mvcc_view_published(s, &v);
		kv_read(m, &v, d, a, &res);
	} else {
		kv_write(m, s, d, a, NULL, &res);
		mvcc_publish(s);
	}
	return res;
}

static void put(const char *k, const char *v)
{
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = bin(k);
	p.value = bin(v);
	struct kv_result r = run(KV_PUT, &p.base);
	cr_assert_eq(r.code, GRPC_OK, "put %s: %s", k, r.message);
}

static Etcdserverpb__RangeResponse *range(Etcdserverpb__RangeRequest *rr)
{
	struct kv_result r = run(KV_RANGE, &rr->base);
	cr_assert_eq(r.code, GRPC_OK, "range: %s", r.message ? r.message : "");
	return (Etcdserverpb__RangeResponse *)r.resp;
}

static void expect_error(struct kv_result r, enum grpc_code code, const char *msg)
{
	cr_assert_eq(r.code, code, "want %d %s, got %d %s", code, msg, r.code, r.message ? r.message : "");
	cr_assert_str_eq(r.message, msg);
}

Test(kv, put_checks)
{
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;

	expect_error(run(KV_PUT, &p.base), GRPC_INVALID_ARGUMENT, "etcdserver: key is not provided");
	p.key = bin("k");
	p.ignore_value = 1;
	p.value = bin("v");
	expect_error(run(KV_PUT, &p.base), GRPC_INVALID_ARGUMENT, "etcdserver: value is provided");
	p.value = bin("");
	expect_error(run(KV_PUT, &p.base), GRPC_INVALID_ARGUMENT, "etcdserver: key not found");
	p.ignore_value = 0;
	p.ignore_lease = 1;
	p.lease = 5;
	expect_error(run(KV_PUT, &p.base), GRPC_INVALID_ARGUMENT, "etcdserver: lease is provided");
	p.ignore_lease = 0;
	expect_error(run(KV_PUT, &p.base), GRPC_NOT_FOUND, "etcdserver: requested lease not found");
	cr_assert_eq(mvcc_rev(s), 1, "failed puts change nothing");
}

Test(kv, put_prev_kv_and_ignore_value)
{
	put("k", "v1");
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = bin("k");
	p.ignore_value = 1;
	p.prev_kv = 1;
	struct kv_result r = run(KV_PUT, &p.base);
	cr_assert_eq(r.code, GRPC_OK);
	Etcdserverpb__PutResponse *pr = (Etcdserverpb__PutResponse *)r.resp;
	cr_assert_eq(pr->header->revision, 3);
	cr_assert_not_null(pr->prev_kv);
	cr_assert_eq(pr->prev_kv->version, 1);
	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	rr.key = bin("k");
	Etcdserverpb__RangeResponse *resp = range(&rr);
	cr_assert_eq(resp->n_kvs, 1);
	cr_assert_eq(resp->kvs[0]->value.len, 2, "ignore_value keeps the old value");
	cr_assert_eq(resp->kvs[0]->version, 2);
	cr_assert_eq(resp->kvs[0]->create_revision, 2);
	cr_assert_eq(resp->kvs[0]->mod_revision, 3);
}

Test(kv, range_limit_count_more_sort_filters)
{
	const char *keys[] = {"a", "b", "c", "d", "e"};
	for (int i = 0; i < 5; i++)
		put(keys[i], "x");
	put("b", "y"); /* b: version 2, mod 7 */
	put("d", "z"); /* d: version 2, mod 8 */

	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	rr.key = bin("a");
	rr.range_end = bin("z");
	rr.limit = 2;
	Etcdserverpb__RangeResponse *r = range(&rr);
	cr_assert_eq(r->n_kvs, 2);
	cr_assert_eq(r->count, 5, "count ignores limit");
	cr_assert(r->more);
	cr_assert_eq(r->header->revision, 8);

	rr.limit = 5;
	r = range(&rr);
	cr_assert_not(r->more, "exactly limit keys: no more");

	rr.limit = 0;
	rr.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION;
	rr.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
	r = range(&rr);
	cr_assert_eq(r->n_kvs, 5);
	cr_assert_eq(r->kvs[0]->key.data[0], 'b', "ties keep key order");
	cr_assert_eq(r->kvs[1]->key.data[0], 'd');
	cr_assert_eq(r->kvs[2]->key.data[0], 'a');

	rr.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE; /* target != KEY: ascending */
	rr.limit = 1;
	r = range(&rr);
	cr_assert_eq(r->kvs[0]->version, 1);
	cr_assert(r->more);

	Etcdserverpb__RangeRequest f = ETCDSERVERPB__RANGE_REQUEST__INIT;
	f.key = bin("a");
	f.range_end = bin("z");
	f.min_mod_revision = 7;
	f.keys_only = 1;
	r = range(&f);
	cr_assert_eq(r->n_kvs, 2);
	cr_assert_eq(r->count, 5, "count is before filters");
	cr_assert_eq(r->kvs[0]->value.len, 0);

	Etcdserverpb__RangeRequest c = ETCDSERVERPB__RANGE_REQUEST__INIT;
	c.key = bin("\0");
	c.key.len = 1;
	c.range_end = c.key;
	c.count_only = 1;
	r = range(&c);
	cr_assert_eq(r->count, 5);
	cr_assert_eq(r->n_kvs, 0);

	Etcdserverpb__RangeRequest old = ETCDSERVERPB__RANGE_REQUEST__INIT;
	old.key = bin("b");
	old.revision = 6;
	r = range(&old);
	cr_assert_eq(r->kvs[0]->version, 1, "read at an old revision");
	cr_assert_eq(r->header->revision, 8, "the header names the current revision");
	old.revision = 9;
	expect_error(run(KV_RANGE, &old.base), GRPC_OUT_OF_RANGE,
		     "etcdserver: mvcc: required revision is a future revision");
}

Test(kv, range_checks)
{
	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	expect_error(run(KV_RANGE, &rr.base), GRPC_INVALID_ARGUMENT, "etcdserver: key is not provided");
	rr.key = bin("k");
	rr.sort_order = 7;
	expect_error(run(KV_RANGE, &rr.base), GRPC_INVALID_ARGUMENT, "etcdserver: invalid sort option");
}

static Etcdserverpb__RequestOp *op_put(const char *k, const char *v)
{
	Etcdserverpb__RequestOp *op = arena_alloc(a, sizeof *op);
	Etcdserverpb__PutRequest *p = arena_alloc(a, sizeof *p);
	etcdserverpb__request_op__init(op);
	etcdserverpb__put_request__init(p);
	p->key = bin(k);
	p->value = bin(v);
	op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	op->request_put = p;
	return op;
}

static Etcdserverpb__RequestOp *op_del(const char *k, const char *end)
{
	Etcdserverpb__RequestOp *op = arena_alloc(a, sizeof *op);
	Etcdserverpb__DeleteRangeRequest *d = arena_alloc(a, sizeof *d);
	etcdserverpb__request_op__init(op);
	etcdserverpb__delete_range_request__init(d);
	d->key = bin(k);
	if (end)
		d->range_end = bin(end);
	op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
	op->request_delete_range = d;
	return op;
}

static Etcdserverpb__RequestOp *op_get(const char *k)
{
	Etcdserverpb__RequestOp *op = arena_alloc(a, sizeof *op);
	Etcdserverpb__RangeRequest *r = arena_alloc(a, sizeof *r);
	etcdserverpb__request_op__init(op);
	etcdserverpb__range_request__init(r);
	r->key = bin(k);
	op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	op->request_range = r;
	return op;
}

static Etcdserverpb__RequestOp *op_txn(Etcdserverpb__TxnRequest *t)
{
	Etcdserverpb__RequestOp *op = arena_alloc(a, sizeof *op);
	etcdserverpb__request_op__init(op);
	op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
	op->request_txn = t;
	return op;
}

static Etcdserverpb__Compare *cmp_i64(const char *k, int target, int result, int64_t v)
{
	Etcdserverpb__Compare *c = arena_alloc(a, sizeof *c);
	etcdserverpb__compare__init(c);
	c->key = bin(k);
	c->target = target;
	c->result = result;
	switch (target) {
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
		c->version = v;
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
		c->mod_revision = v;
		break;
	default:
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
		c->create_revision = v;
		break;
	}
	return c;
}

Test(kv, txn_duplicate_keys)
{
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	Etcdserverpb__RequestOp *ops[3];
	const char *dup = "etcdserver: duplicate key given in txn request";

	ops[0] = op_put("a", "1");
	ops[1] = op_put("a", "2");
	t.success = ops;
	t.n_success = 2;
	expect_error(run(KV_TXN, &t.base), GRPC_INVALID_ARGUMENT, dup);

	ops[1] = op_del("0", "b");
	expect_error(run(KV_TXN, &t.base), GRPC_INVALID_ARGUMENT, dup);

	ops[1] = op_del("0", "\0"); /* a from-key delete is not an interval to etcd's check */
	ops[1]->request_delete_range->range_end.len = 1;
	cr_assert_eq(run(KV_TXN, &t.base).code, GRPC_OK);

	/* the same key in the then and else branches of a nested txn is fine */
	Etcdserverpb__TxnRequest *in = arena_alloc(a, sizeof *in);
	etcdserverpb__txn_request__init(in);
	Etcdserverpb__RequestOp **th = arena_alloc(a, sizeof *th), **el = arena_alloc(a, sizeof *el);
	th[0] = op_put("n", "1");
	el[0] = op_put("n", "2");
	in->success = th;
	in->n_success = 1;
	in->failure = el;
	in->n_failure = 1;
	ops[0] = op_txn(in);
	t.n_success = 1;
	cr_assert_eq(run(KV_TXN, &t.base).code, GRPC_OK);
	/* but not beside a put of the same key at the outer level */
	ops[1] = op_put("n", "3");
	t.n_success = 2;
	expect_error(run(KV_TXN, &t.base), GRPC_INVALID_ARGUMENT, dup);

	/* regression: the same nested txn one level deeper is still fine (the key counts once) */
	Etcdserverpb__TxnRequest *mid = arena_alloc(a, sizeof *mid);
	etcdserverpb__txn_request__init(mid);
	Etcdserverpb__RequestOp **mops = arena_alloc(a, sizeof *mops);
	mops[0] = op_txn(in);
	mid->success = mops;
	mid->n_success = 1;
	ops[0] = op_txn(mid);
	t.n_success = 1;
	cr_assert_eq(run(KV_TXN, &t.base).code, GRPC_OK);
}

Test(kv, txn_too_many_ops)
{
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	Etcdserverpb__RequestOp **ops = arena_alloc(a, 129 * sizeof *ops);
	char *names = arena_alloc(a, 129 * 16);

	for (int i = 0; i < 129; i++) {
		snprintf(names + i * 16, 16, "k%d", i);
		ops[i] = op_get(names + i * 16);
	}
	t.success = ops;
	t.n_success = 128;
	cr_assert_eq(run(KV_TXN, &t.base).code, GRPC_OK);
	t.n_success = 129;
	expect_error(run(KV_TXN, &t.base), GRPC_INVALID_ARGUMENT, "etcdserver: too many operations in txn request");
}

Test(kv, txn_compares_and_branches)
{
	put("k", "v"); /* rev 2 */
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	Etcdserverpb__Compare *c[1];
	Etcdserverpb__RequestOp *then[2], *els[1];

	/* create: mod_revision(new) == 0 -> put, else get */
	c[0] = cmp_i64("new", ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD, ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL, 0);
	then[0] = op_put("new", "1");
	els[0] = op_get("new");
	t.compare = c;
	t.n_compare = 1;
	t.success = then;
	t.n_success = 1;
	t.failure = els;
	t.n_failure = 1;
	struct kv_result r = run(KV_TXN, &t.base);
	Etcdserverpb__TxnResponse *tr = (Etcdserverpb__TxnResponse *)r.resp;
	cr_assert(tr->succeeded);
	cr_assert_eq(tr->header->revision, 3);
	cr_assert_eq(tr->responses[0]->response_put->header->revision, 3);

	/* again: fails, else branch returns the current value at the current revision */
	r = run(KV_TXN, &t.base);
	tr = (Etcdserverpb__TxnResponse *)r.resp;
	cr_assert_not(tr->succeeded);
	cr_assert_eq(tr->header->revision, 3, "a txn that changes nothing keeps the revision");
	cr_assert_eq(tr->responses[0]->response_range->n_kvs, 1);
	cr_assert_eq(tr->responses[0]->response_range->kvs[0]->mod_revision, 3);

	/* a value compare on a missing key fails even for NOT_EQUAL */
	Etcdserverpb__Compare vc = ETCDSERVERPB__COMPARE__INIT;
	vc.key = bin("missing");
	vc.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
	vc.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL;
	vc.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
	vc.value = bin("x");
	c[0] = &vc;
	t.n_success = 0;
	t.n_failure = 0;
	r = run(KV_TXN, &t.base);
	cr_assert_not(((Etcdserverpb__TxnResponse *)r.resp)->succeeded);

	/* a version compare over a range needs every key to match */
	put("r1", "x");
	put("r2", "x");
	put("r2", "y");
	Etcdserverpb__Compare *rc = cmp_i64("r1", ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION,
					    ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL, 1);
	rc->range_end = bin("r3");
	c[0] = rc;
	r = run(KV_TXN, &t.base);
	cr_assert_not(((Etcdserverpb__TxnResponse *)r.resp)->succeeded);
	rc->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER;
	rc->version = 0;
	r = run(KV_TXN, &t.base);
	cr_assert(((Etcdserverpb__TxnResponse *)r.resp)->succeeded);
}

Test(kv, txn_compares_see_state_before_txn)
{
	put("k", "v"); /* rev 2, version 1 */
	Etcdserverpb__TxnRequest inner = ETCDSERVERPB__TXN_REQUEST__INIT;
	Etcdserverpb__Compare *ic[1] = {cmp_i64("k", ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION,
						 ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL, 1)};
	Etcdserverpb__RequestOp *ithen[1] = {op_put("seen-old", "1")};
	inner.compare = ic;
	inner.n_compare = 1;
	inner.success = ithen;
	inner.n_success = 1;

	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	Etcdserverpb__RequestOp *then[2] = {op_put("k", "v2"), op_txn(&inner)};
	t.success = then;
	t.n_success = 2;
	struct kv_result r = run(KV_TXN, &t.base);
	cr_assert_eq(r.code, GRPC_OK);
	Etcdserverpb__TxnResponse *tr = (Etcdserverpb__TxnResponse *)r.resp;
	cr_assert(tr->responses[1]->response_txn->succeeded, "the nested compare saw version 1, before the put");
	cr_assert_eq(tr->responses[1]->response_txn->header->revision, 0, "nested headers carry no revision");
	cr_assert_eq(tr->header->revision, 3, "one revision for the whole txn");
	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	rr.key = bin("seen-old");
	cr_assert_eq(range(&rr)->kvs[0]->mod_revision, 3);
}

Test(kv, txn_never_half_applied)
{
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	Etcdserverpb__RequestOp *then[2] = {op_put("a", "1"), op_put("b", "2")};
	then[1]->request_put->lease = 42; /* no such lease */
	t.success = then;
	t.n_success = 2;
	expect_error(run(KV_TXN, &t.base), GRPC_NOT_FOUND, "etcdserver: requested lease not found");
	cr_assert_eq(mvcc_rev(s), 1);
	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	rr.key = bin("a");
	cr_assert_eq(range(&rr)->n_kvs, 0, "the first put was not applied");

	/* a range at a future revision on the taken path fails the whole txn */
	then[1] = op_get("a");
	then[1]->request_range->revision = 5;
	expect_error(run(KV_TXN, &t.base), GRPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision");
	cr_assert_eq(mvcc_rev(s), 1);
}

Test(kv, delete_and_compact)
{
	put("p/1", "a");
	put("p/2", "b");
	put("q", "c"); /* rev 4 */
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	d.key = bin("p/");
	d.range_end = bin("p0");
	d.prev_kv = 1;
	struct kv_result r = run(KV_DELETE_RANGE, &d.base);
	Etcdserverpb__DeleteRangeResponse *dr = (Etcdserverpb__DeleteRangeResponse *)r.resp;
	cr_assert_eq(dr->deleted, 2);
	cr_assert_eq(dr->n_prev_kvs, 2);
	cr_assert_eq(dr->header->revision, 5);
	r = run(KV_DELETE_RANGE, &d.base);
	dr = (Etcdserverpb__DeleteRangeResponse *)r.resp;
	cr_assert_eq(dr->deleted, 0);
	cr_assert_eq(dr->header->revision, 5, "deleting nothing keeps the revision");

	Etcdserverpb__CompactionRequest c = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
	c.revision = 9;
	expect_error(run(KV_COMPACT, &c.base), GRPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision");
	c.revision = 4;
	r = run(KV_COMPACT, &c.base);
	cr_assert_eq(r.code, GRPC_OK);
	cr_assert_eq(((Etcdserverpb__CompactionResponse *)r.resp)->header->revision, 5);
	expect_error(run(KV_COMPACT, &c.base), GRPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted");
	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	rr.key = bin("q");
	rr.revision = 3;
	expect_error(run(KV_RANGE, &rr.base), GRPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted");
	rr.revision = 4;
	cr_assert_eq(range(&rr)->n_kvs, 1, "reading at the compacted revision works");
}

Test(kv, request_too_large)
{
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	size_t n = 1572864;
	uint8_t *big = arena_alloc(a, n);

	memset(big, 'v', n);
	p.key = bin("k");
	p.value.data = big;
	p.value.len = n;
	expect_error(run(KV_PUT, &p.base), GRPC_INVALID_ARGUMENT, "etcdserver: request is too large");
	p.value.len = n - 100;
	cr_assert_eq(run(KV_PUT, &p.base).code, GRPC_OK);
}

/* ---------- RangeStream ---------- */

/* Reads a whole RangeStream answer in reads of at most `cap` bytes, writing between reads
 * when `mid` is set; merges the RangeStreamResponse chunks (kvs appended, the rest from the
 * last) and packs the result. Returns its length, or -1 when a read failed. */
static ssize_t stream_merged(const Etcdserverpb__RangeRequest *rr, size_t cap, void (*mid)(void), uint8_t *out,
			     size_t out_cap, size_t *chunks)
{
	static const struct kv_header_ids ids = {1, 2, 3};
	size_t len;
	ProtobufCMessage *d = roundtrip(KV_RANGE, &rr->base, &len);
	struct mvcc_view v;
	struct kv_result res;
	struct kv_range_stream *st;
	size_t body_cap = 1 << 22, n = 0;
	uint8_t *body = malloc(body_cap), buf[8192];

	mvcc_view_published(s, &v);
	cr_assert_eq(kv_range_stream_begin(&v, d, &ids, &res, &st), 0);
	for (int i = 0; i < 1 << 22; i++) {
		ssize_t k = kv_range_stream_read_msgs(st, buf, cap);
		if (k < 0) {
			kv_range_stream_free(st);
			free(body);
			return -1;
		}
		if (k == 0)
			break;
		cr_assert_leq(n + (size_t)k, body_cap);
		memcpy(body + n, buf, (size_t)k);
		n += (size_t)k;
		if (mid && i == 0)
			mid();
	}
	kv_range_stream_free(st);
	Etcdserverpb__RangeResponse m = ETCDSERVERPB__RANGE_RESPONSE__INIT;
	Mvccpb__KeyValue **kvs = arena_alloc(a, 4096 * sizeof *kvs);
	*chunks = 0;
	for (size_t off = 0; off < n;) {
		cr_assert_leq(off + 5, n);
		size_t ml = (size_t)body[off + 1] << 24 | (size_t)body[off + 2] << 16 | (size_t)body[off + 3] << 8 |
			    body[off + 4];
		cr_assert_eq(body[off], 0);
		cr_assert_leq(off + 5 + ml, n);
		Etcdserverpb__RangeStreamResponse *c =
			etcdserverpb__range_stream_response__unpack(NULL, ml, body + off + 5);
		cr_assert_not_null(c);
		cr_assert_not_null(c->range_response);
		bool last = off + 5 + ml == n;
		cr_assert_eq(c->range_response->header != NULL, last, "the header is in the last chunk only");
		if (!last)
			cr_assert(c->range_response->n_kvs > 0 && !c->range_response->count && !c->range_response->more);
		for (size_t i = 0; i < c->range_response->n_kvs; i++) {
			cr_assert_lt(m.n_kvs, 4096);
			Mvccpb__KeyValue *kv = arena_alloc(a, sizeof *kv);
			*kv = *c->range_response->kvs[i];
			kv->key.data = arena_alloc(a, kv->key.len + 1);
			memcpy(kv->key.data, c->range_response->kvs[i]->key.data, kv->key.len);
			kv->value.data = arena_alloc(a, kv->value.len + 1);
			if (kv->value.len)
				memcpy(kv->value.data, c->range_response->kvs[i]->value.data, kv->value.len);
			kvs[m.n_kvs++] = kv;
		}
		if (last) {
			Etcdserverpb__ResponseHeader *h = arena_alloc(a, sizeof *h);
			*h = *c->range_response->header;
			m.header = h;
			m.count = c->range_response->count;
			m.more = c->range_response->more;
		}
		etcdserverpb__range_stream_response__free_unpacked(c, NULL);
		off += 5 + ml;
		(*chunks)++;
	}
	free(body);
	m.kvs = kvs;
	size_t pl = etcdserverpb__range_response__get_packed_size(&m);
	cr_assert_leq(pl, out_cap);
	etcdserverpb__range_response__pack(&m, out);
	return (ssize_t)pl;
}

static size_t range_packed(const Etcdserverpb__RangeRequest *rr, uint8_t *out, size_t out_cap)
{
	static const struct kv_header_ids ids = {1, 2, 3};
	struct kv_result r = run(KV_RANGE, &rr->base);
	cr_assert_eq(r.code, GRPC_OK);
	kv_fill_header(r.resp, KV_RANGE, &ids);
	size_t pl = protobuf_c_message_get_packed_size(r.resp);
	cr_assert_leq(pl, out_cap);
	protobuf_c_message_pack(r.resp, out);
	return pl;
}

static void stream_fill(void)
{
	char k[32], v[300];
	for (int i = 0; i < 3000; i++) {
		snprintf(k, sizeof k, "s/%05d", i);
		snprintf(v, sizeof v, "%0*d", 1 + i % 250, i);
		put(k, v);
	}
}

static const char from_key[1] = {0};

Test(kv, range_stream_merges_to_range_in_any_read_size)
{
	static uint8_t want[1 << 21], got[1 << 21];
	stream_fill();
	struct {
		int64_t limit, revision, min_mod, max_create;
		bool keys_only, count_only;
		const char *key, *end;
	} cases[] = {
		{0, 0, 0, 0, false, false, "s/", "s0"},	    {10, 0, 0, 0, false, false, "s/", "s0"},
		{2999, 0, 0, 0, false, false, "s/", "s0"},  {0, 1500, 0, 0, false, false, "s/", "s0"},
		{0, 0, 2000, 0, false, false, "s/", "s0"},  {100, 0, 0, 1200, true, false, "s/", "s0"},
		{0, 0, 0, 0, false, true, "s/", "s0"},	    {0, 0, 0, 0, false, false, "s/00042", ""},
		{0, 0, 0, 0, false, false, "x", "y"},	    {5, 0, 0, 0, false, false, "s/02990", from_key},
	};
	size_t caps[] = {1, 7, 4096, 8192};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
		rr.key = bin(cases[i].key);
		/* from_key: range_end "\0" (from the key on); "": the key alone */
		rr.range_end = cases[i].end == from_key ? (ProtobufCBinaryData){1, (uint8_t *)from_key}
			       : cases[i].end[0]	  ? bin(cases[i].end)
							  : (ProtobufCBinaryData){0, NULL};
		rr.limit = cases[i].limit;
		rr.revision = cases[i].revision;
		rr.min_mod_revision = cases[i].min_mod;
		rr.max_create_revision = cases[i].max_create;
		rr.keys_only = cases[i].keys_only;
		rr.count_only = cases[i].count_only;
		size_t wl = range_packed(&rr, want, sizeof want);
		for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
			size_t chunks;
			ssize_t gl = stream_merged(&rr, caps[c], NULL, got, sizeof got, &chunks);
			cr_assert_eq(gl, (ssize_t)wl, "case %zu cap %zu: %zd vs %zu bytes", i, caps[c], gl, wl);
			cr_assert(!memcmp(got, want, wl), "case %zu cap %zu differs", i, caps[c]);
			if (i == 0)
				cr_assert_gt(chunks, 5, "a large answer comes in chunks");
		}
	}
}

static void stream_mid_writes(void)
{
	put("s/00001", "changed");
	put("s/99999", "new");
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	d.key = bin("s/01000");
	d.range_end = bin("s/01100");
	cr_assert_eq(run(KV_DELETE_RANGE, &d.base).code, GRPC_OK);
}

static void stream_mid_compact(void)
{
	stream_mid_writes();
	Etcdserverpb__CompactionRequest c = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
	c.revision = 3006; /* the stream reads at 3004 (after the first call's writes) */
	cr_assert_eq(run(KV_COMPACT, &c.base).code, GRPC_OK);
}

Test(kv, range_stream_reads_one_revision_and_fails_past_a_compaction)
{
	static uint8_t want[1 << 21], got[1 << 21];
	size_t chunks;
	stream_fill(); /* revisions 2..3001 */
	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	rr.key = bin("s/");
	rr.range_end = bin("s0");
	size_t wl = range_packed(&rr, want, sizeof want);
	ssize_t gl = stream_merged(&rr, 4096, stream_mid_writes, got, sizeof got, &chunks);
	cr_assert_eq(gl, (ssize_t)wl);
	cr_assert(!memcmp(got, want, wl), "writes during the stream are not seen");
	cr_assert_eq(stream_merged(&rr, 4096, stream_mid_compact, got, sizeof got, &chunks), -1,
		     "a compaction past the stream's revision ends it");

	struct mvcc_view v;
	struct kv_result res;
	struct kv_range_stream *st;
	static const struct kv_header_ids ids = {1, 2, 3};
	mvcc_view_published(s, &v);
	rr.revision = 2;
	cr_assert_eq(kv_range_stream_begin(&v, &rr.base, &ids, &res, &st), -1);
	expect_error(res, GRPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted");
	rr.revision = v.rev + 1;
	cr_assert_eq(kv_range_stream_begin(&v, &rr.base, &ids, &res, &st), -1);
	expect_error(res, GRPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision");
	rr.revision = 0;
	rr.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
	cr_assert_eq(kv_range_stream_begin(&v, &rr.base, &ids, &res, &st), -1);
	cr_assert_eq(res.code, GRPC_UNIMPLEMENTED);
}
