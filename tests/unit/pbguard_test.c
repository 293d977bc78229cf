/* pbguard tests: nesting exactly at a limit passes and one more is refused; deep Txns are
 * flattened so that they unpack shallow and fail etcd's check as etcd fails them; every
 * truncation and byte flip of deep and shallow messages is judged exactly as protobuf-c
 * judges it (without ever recursing deep); wire-format corner cases (groups, overlong
 * varints, a length that wraps, packed and bool fields); and the schemas the server
 * decodes without flattening cannot nest. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/auth_rpc.h"
#include "core/election.h"
#include "core/kv.h"
#include "core/lease_svc.h"
#include "core/pbguard.h"
#include "core/svc.h"
#include "rpc.pb-c.h"

static size_t put_varint(uint8_t *o, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		o[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	o[n++] = (uint8_t)v;
	return n;
}

static size_t varint_len(uint64_t v)
{
	uint8_t b[10];
	return put_varint(b, v);
}

/* A chain of `depth` messages: TxnRequest at odd depths (success = field 2), RequestOp at
 * even ones (request_txn = field 4), `inner` as the innermost message's content. Built
 * from the inside out without copying. Caller frees. */
static uint8_t *chain(unsigned depth, const uint8_t *inner, size_t inner_len, size_t *len)
{
	size_t n = inner_len, *pre = malloc(depth * sizeof *pre);
	for (unsigned d = depth; d > 1; d--) { /* the field that holds the message at depth d */
		pre[d - 1] = 1 + varint_len(n);
		n += pre[d - 1];
	}
	uint8_t *b = malloc(n + 1), *o = b;
	size_t rest = n;
	for (unsigned d = 2; d <= depth; d++) {
		rest -= pre[d - 1];
		*o++ = (d % 2 == 0) ? 0x12 : 0x22; /* TxnRequest.success / RequestOp.request_txn */
		o += put_varint(o, rest);
	}
	if (inner_len)
		memcpy(o, inner, inner_len);
	free(pre);
	*len = n;
	return b;
}

static const ProtobufCMessageDescriptor *txn = &etcdserverpb__txn_request__descriptor;

/* Depth of an unpacked Txn chain, iteratively. */
static unsigned unpacked_depth(const Etcdserverpb__TxnRequest *t)
{
	unsigned d = 1;
	while (t && t->n_success) {
		d++;
		const Etcdserverpb__RequestOp *op = t->success[0];
		if (op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN)
			break;
		d++;
		t = op->request_txn;
	}
	return d;
}

static int walk(const uint8_t *b, size_t len, size_t frames_max)
{
	struct pbguard_frame *f = malloc((frames_max + 1) * sizeof *f);
	int rc = pbguard_walk(txn, b, len, f, frames_max, 0, NULL);
	free(f);
	return rc;
}

Test(pbguard, depth_is_reported_exactly)
{
	for (unsigned d = 1; d < 300; d += 7) {
		size_t len;
		uint8_t *b = chain(d, NULL, 0, &len);
		cr_expect_eq(walk(b, len, 1000), (int)d, "depth %u", d);
		cr_expect_eq(walk(b, len, d - 1), (int)d, "frames exactly enough at %u", d);
		if (d > 1)
			cr_expect_eq(walk(b, len, d - 2), -ELOOP, "one frame short at %u", d);
		free(b);
	}
}

Test(pbguard, limit_passes_and_limit_plus_one_is_refused)
{
	struct arena *a = arena_new(1 << 16);
	for (unsigned d = PBGUARD_DEPTH_MAX - 1; d <= PBGUARD_DEPTH_MAX + 2; d++) {
		size_t len;
		bool flat;
		int rc = 0;
		uint8_t *b = chain(d, NULL, 0, &len);
		ProtobufCMessage *m = pbguard_unpack(txn, a, b, len, PBGUARD_DEPTH_MAX + 1, &flat, &rc);
		if (d <= PBGUARD_DEPTH_MAX) {
			cr_assert_not_null(m, "depth %u", d);
			cr_expect_eq(unpacked_depth((void *)m), d);
			cr_expect(!flat);
		} else {
			cr_expect_null(m, "depth %u", d);
			cr_expect_eq(rc, -ELOOP);
		}
		arena_reset(a);
		free(b);
	}
	arena_free(a);
}

/* The 5000-deep Txn of issue 12: flattened at pbguard_txn_depth, unpacked shallow, and
 * kv_check answers etcd's error. One level less than etcd's limit is not touched. */
Test(pbguard, deep_txn_is_flattened_and_fails_etcds_check)
{
	struct arena *a = arena_new(1 << 16);
	struct kv_limits lim = {.max_txn_ops = 128, .max_request_bytes = 1572864};
	unsigned fd = pbguard_txn_depth(128);
	cr_assert_eq(fd, 259);
	const unsigned levels[] = {129, 130, 131, 200, 5000, 200000};
	for (size_t i = 0; i < sizeof levels / sizeof *levels; i++) {
		unsigned d = 2 * levels[i] - 1; /* levels[i] nested TxnRequests */
		size_t len;
		bool flat;
		int rc = 0;
		struct kv_result res;
		uint8_t *b = chain(d, NULL, 0, &len);
		ProtobufCMessage *m = pbguard_unpack(txn, a, b, len, fd, &flat, &rc);
		cr_assert_not_null(m, "%u levels", levels[i]);
		cr_expect_eq(flat, d > fd, "%u levels", levels[i]);
		cr_expect_leq(unpacked_depth((void *)m), fd);
		int bad = kv_check(KV_TXN, m, len, &lim, a, &res);
		if (levels[i] <= 129) {
			cr_expect_eq(bad, 0, "%u levels pass as in etcd", levels[i]);
		} else {
			cr_expect_neq(bad, 0);
			cr_expect_str_eq(res.message, "etcdserver: too many operations in txn request");
		}
		arena_reset(a);
		free(b);
	}
	/* --max-txn-ops too large to flatten exactly: refused past PBGUARD_DEPTH_MAX */
	cr_expect_eq(pbguard_txn_depth(100000), PBGUARD_DEPTH_MAX + 1);
	size_t len;
	bool flat;
	int rc = 0;
	uint8_t *b = chain(9999, NULL, 0, &len);
	cr_expect_null(pbguard_unpack(txn, a, b, len, pbguard_txn_depth(100000), &flat, &rc));
	cr_expect_eq(rc, -ELOOP);
	free(b);
	arena_free(a);
}

/* Flattening at every depth of a chain with content of every size (the filler's two
 * forms and its short cases): the copy always unpacks, never deeper than asked + 1. */
Test(pbguard, flatten_at_every_depth)
{
	struct arena *a = arena_new(1 << 16);
	uint8_t inner[300];
	for (size_t k = 0; k < sizeof inner; k++)
		inner[k] = k % 2 ? 0x00 : 0x78; /* field 15 = 0 pairs: unknown fields, valid */
	for (size_t il = 0; il <= 40; il += 2) {
		size_t len;
		uint8_t *b = chain(40, inner, il, &len);
		for (unsigned fd = 1; fd <= 41; fd++) {
			bool flat;
			int rc = 0;
			ProtobufCMessage *m = pbguard_unpack(txn, a, b, len, fd, &flat, &rc);
			cr_assert_not_null(m, "inner %zu flat %u", il, fd);
			cr_expect_leq(unpacked_depth((void *)m), fd + 1, "inner %zu flat %u", il, fd);
			arena_reset(a);
		}
		free(b);
	}
	arena_free(a);
}

/* pbguard refuses exactly what protobuf-c refuses: every truncation and every single-byte
 * change of a 59-deep chain with compares, puts and unknown fields. */
Test(pbguard, agrees_with_protobuf_c_on_damaged_input)
{
	static const uint8_t inner[] = {
		0x0a, 0x05, 0x08, 0x01, 0x1a, 0x01, 'k', /* compare {result: 1, key: "k"} */
		0x12, 0x06, 0x12, 0x04, 0x0a, 0x02, 'a', 'b', /* success: put {key "ab"} */
		0x78, 0x05, 0x7d, 0x01, 0x02, 0x03, 0x04, /* unknown varint, unknown fixed32 */
		0x1a, 0x00, /* failure: empty RequestOp */
	};
	struct arena *a = arena_new(1 << 16);
	size_t len;
	uint8_t *b = chain(59, inner, sizeof inner, &len);
	uint8_t *c = malloc(len);
	ProtobufCAllocator al;
	arena_pb_allocator(a, &al);
	for (size_t cut = 0; cut <= len; cut++) {
		bool ok = protobuf_c_message_unpack(txn, &al, cut, b) != NULL;
		cr_expect_eq(walk(b, cut, 100) > 0, ok, "cut at %zu", cut);
		arena_reset(a);
	}
	static const uint8_t vals[] = {0x00, 0x01, 0x02, 0x07, 0x08, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x7f, 0x80, 0xff};
	for (size_t pos = 0; pos < len; pos++) {
		for (size_t v = 0; v < sizeof vals; v++) {
			memcpy(c, b, len);
			c[pos] = vals[v];
			bool ok = protobuf_c_message_unpack(txn, &al, len, c) != NULL;
			cr_expect_eq(walk(c, len, 100) > 0, ok, "byte %zu = %#x", pos, vals[v]);
			arena_reset(a);
		}
	}
	free(b);
	free(c);
	arena_free(a);
}

static int walk_desc(const ProtobufCMessageDescriptor *d, const uint8_t *b, size_t len)
{
	struct pbguard_frame f[8];
	return pbguard_walk(d, b, len, f, 8, 0, NULL);
}

Test(pbguard, wire_format_corners)
{
	const ProtobufCMessageDescriptor *wc = &etcdserverpb__watch_create_request__descriptor;
	/* groups and wire types 6, 7: refused, as protobuf-c refuses them */
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\x7b", 1), -EBADMSG);
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\x7c", 1), -EBADMSG);
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\x7e\x00", 2), -EBADMSG);
	/* an 11-byte varint; a 6-byte tag; a 6-byte length */
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\x78\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00", 12), -EBADMSG);
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\xf8\x80\x80\x80\x80\x00\x00", 7), -EBADMSG);
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\x7a\x80\x80\x80\x80\x80\x00", 7), -EBADMSG);
	/* a 10-byte varint and an overlong but 5-byte length are fine */
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\x78\x80\x80\x80\x80\x80\x80\x80\x80\x01", 10), 1);
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\x7a\x81\x80\x80\x80\x00x", 7), 1);
	/* a length whose 32-bit sum with its prefix wraps: refused (protobuf-c would misread) */
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\x7a\xff\xff\xff\xff\x0f\x00\x00\x00\x00\x00", 11), -EPROTO);
	/* huge field numbers are unknown fields, kept; field 0 is refused, in one byte as
	 * protobuf-c does, in more as etcd does */
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\xf8\xff\xff\xff\x0f\x01", 6), 1);
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\x00\x00", 2), -EBADMSG);
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\x80\x00\x00", 3), -EPROTO);
	/* known field, wrong wire type: success (message) as varint; key (bytes) as fixed32 */
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\x10\x01", 2), -EBADMSG);
	cr_expect_eq(walk_desc(wc, (const uint8_t *)"\x0d\x01\x02\x03\x04", 5), -EBADMSG);
	/* bool (prev_kv = 6) takes any wire type, as in protobuf-c */
	cr_expect_eq(walk_desc(wc, (const uint8_t *)"\x32\x02\x05\x05", 4), 1);
	cr_expect_eq(walk_desc(wc, (const uint8_t *)"\x35\x01\x00\x00\x00", 5), 1);
	/* filters (5): repeated enum, packed or not; a packed varint must end inside */
	cr_expect_eq(walk_desc(wc, (const uint8_t *)"\x2a\x02\x00\x01", 4), 1);
	cr_expect_eq(walk_desc(wc, (const uint8_t *)"\x28\x01\x28\x00", 4), 1);
	cr_expect_eq(walk_desc(wc, (const uint8_t *)"\x2a\x02\x00\x81", 4), -EBADMSG);
	cr_expect_eq(walk_desc(wc, (const uint8_t *)"\x2d\x00\x00\x00\x00", 5), -EBADMSG);
	/* truncated fixed64 / fixed32 / length / tag */
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\x79\x00\x00", 3), -EBADMSG);
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\x7d\x00", 2), -EBADMSG);
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\x7a\x05\x00", 3), -EBADMSG);
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"\xf8", 1), -EBADMSG);
	cr_expect_eq(walk_desc(txn, (const uint8_t *)"", 0), 1);
	/* each agrees with protobuf-c where protobuf-c reads safely */
	struct arena *a = arena_new(4096);
	ProtobufCAllocator al;
	arena_pb_allocator(a, &al);
	cr_expect_not_null(protobuf_c_message_unpack(wc, &al, 4, (const uint8_t *)"\x32\x02\x05\x05"));
	cr_expect_null(protobuf_c_message_unpack(wc, &al, 4, (const uint8_t *)"\x2a\x02\x00\x81"));
	cr_expect_null(protobuf_c_message_unpack(txn, &al, 12,
						 (const uint8_t *)"\x78\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00"));
	cr_expect_null(protobuf_c_message_unpack(txn, &al, 2, (const uint8_t *)"\x00\x00"));
	cr_expect_not_null(protobuf_c_message_unpack(txn, &al, 3, (const uint8_t *)"\x80\x00\x00"));
	arena_free(a);
}

/* Greatest nesting a schema allows, iteratively over a small explicit stack; -1 if it
 * recurses. */
static int schema_depth(const ProtobufCMessageDescriptor *root)
{
	struct {
		const ProtobufCMessageDescriptor *d;
		unsigned next;
	} st[16];
	int n = 1, deepest = 1;
	st[0].d = root;
	st[0].next = 0;
	while (n > 0) {
		if (st[n - 1].next == st[n - 1].d->n_fields) {
			n--;
			continue;
		}
		const ProtobufCFieldDescriptor *f = &st[n - 1].d->fields[st[n - 1].next++];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		for (int i = 0; i < n; i++)
			if (st[i].d == f->descriptor)
				return -1;
		if (n == 16)
			return -1;
		st[n].d = f->descriptor;
		st[n].next = 0;
		n++;
		if (n > deepest)
			deepest = n;
	}
	return deepest;
}

/* Only a Txn can nest: every other request the server decodes (itself or in watch.c and
 * maint.c) is a few levels at most, so protobuf-c's recursion there is bounded by the
 * schema. */
Test(pbguard, only_txn_schemas_recurse)
{
	cr_expect_eq(schema_depth(txn), -1);
	const ProtobufCMessageDescriptor *flat[] = {
		&etcdserverpb__range_request__descriptor,
		&etcdserverpb__put_request__descriptor,
		&etcdserverpb__delete_range_request__descriptor,
		&etcdserverpb__compaction_request__descriptor,
		&etcdserverpb__watch_request__descriptor,
		&etcdserverpb__alarm_request__descriptor,
		&etcdserverpb__hash_request__descriptor,
		&etcdserverpb__hash_kvrequest__descriptor,
		&etcdserverpb__defragment_request__descriptor,
		&etcdserverpb__snapshot_request__descriptor,
		&etcdserverpb__move_leader_request__descriptor,
		&etcdserverpb__downgrade_request__descriptor,
		&etcdserverpb__member_add_request__descriptor,
		&etcdserverpb__member_remove_request__descriptor,
		&etcdserverpb__member_update_request__descriptor,
		&etcdserverpb__member_promote_request__descriptor,
		&etcdserverpb__status_request__descriptor,
		&etcdserverpb__member_list_request__descriptor,
	};
	for (size_t i = 0; i < sizeof flat / sizeof *flat; i++)
		cr_expect(schema_depth(flat[i]) > 0 && schema_depth(flat[i]) <= 4, "%s", flat[i]->name);
	for (int m = SVC_LEASE_GRANT; m <= SVC_LEASE_LEASES; m++)
		cr_expect(schema_depth(lease_svc_desc(m)) > 0 && schema_depth(lease_svc_desc(m)) <= 4, "lease %d", m);
	for (int m = SVC_AUTH_ENABLE; m <= SVC_AUTH_ROLE_REVOKE_PERMISSION; m++)
		cr_expect(schema_depth(auth_rpc_desc(m)) > 0 && schema_depth(auth_rpc_desc(m)) <= 4, "auth %d", m);
	for (int m = SVC_LOCK_LOCK; m <= SVC_ELECTION_OBSERVE; m++)
		cr_expect(schema_depth(election_request_desc(m)) > 0 && schema_depth(election_request_desc(m)) <= 4,
			  "election %d", m);
}

/* Runs of unknown fields are merged before protobuf-c sees them: a Range made of 2-byte
 * unknown fields costs about its own size, not ~40x (protobuf-c's per-field bookkeeping),
 * and a merged run inside a flattened or ordinary message still unpacks. */
Test(pbguard, unknown_field_runs_are_merged)
{
	const ProtobufCMessageDescriptor *rr = &etcdserverpb__range_request__descriptor;
	struct arena *a = arena_new(1 << 16);
	size_t len = 200000;
	uint8_t *b = malloc(len + 8);
	for (size_t i = 0; i < len; i += 2) {
		b[i] = 0x78; /* field 15 (unknown to RangeRequest), varint 0 */
		b[i + 1] = 0;
	}
	memcpy(b + len, "\x0a\x01k", 3); /* then key "k", then two more unknown fields */
	memcpy(b + len + 3, "\x78\x00\x78\x00", 4);
	size_t n = len + 7, merged;
	struct pbguard_frame f[4];
	cr_assert_eq(pbguard_walk_merge(rr, b, n, f, 4, 0, NULL, &merged), 1);
	cr_expect_eq(merged, len / 2 - 1 + 1);
	bool flat;
	int rc;
	Etcdserverpb__RangeRequest *m = (void *)pbguard_unpack(rr, a, b, n, PBGUARD_DEPTH_MAX + 1, &flat, &rc);
	cr_assert_not_null(m);
	cr_expect_eq(m->base.n_unknown_fields, 2);
	cr_expect_eq(m->key.len, 1);
	cr_expect_leq(arena_used(a), 3 * n, "arena %zu for %zu bytes", arena_used(a), n);
	arena_reset(a);
	/* in a deep Txn: runs merged above the flattened depth, untouched below it */
	size_t cl;
	uint8_t *c = chain(301, b, 40, &cl); /* innermost TxnRequest: 20 unknown fields */
	for (unsigned fd = 1; fd <= 302; fd += 30) {
		Etcdserverpb__TxnRequest *t = (void *)pbguard_unpack(txn, a, c, cl, fd, &flat, &rc);
		cr_assert_not_null(t, "flat %u", fd);
		arena_reset(a);
	}
	free(c);
	free(b);
	arena_free(a);
}

/* A singular field sent again and again (protobuf-c keeps the last) is merged the same way:
 * a queued Put of 100000 keys costs its size, and is the Put of the last key. */
Test(pbguard, repeated_singular_fields_are_merged)
{
	const ProtobufCMessageDescriptor *pr = &etcdserverpb__put_request__descriptor;
	struct arena *a = arena_new(1 << 16);
	size_t n = 0, merged;
	uint8_t *b = malloc(300010);
	for (int i = 0; i < 100000; i++) {
		memcpy(b + n, "\x0a\x01", 2);
		b[n + 2] = (uint8_t)('a' + i % 26);
		n += 3;
	}
	memcpy(b + n, "\x12\x01v\x12\x01w", 6); /* value "v", then "w" */
	n += 6;
	struct pbguard_frame f[4];
	cr_assert_eq(pbguard_walk_merge(pr, b, n, f, 4, 0, NULL, &merged), 1);
	cr_expect_eq(merged, 99998);
	bool flat;
	int rc;
	Etcdserverpb__PutRequest *m = (void *)pbguard_unpack(pr, a, b, n, PBGUARD_DEPTH_MAX + 1, &flat, &rc);
	cr_assert_not_null(m);
	cr_expect_eq(m->key.len, 1);
	cr_expect_eq(m->key.data[0], 'a' + 99999 % 26);
	cr_expect_eq(m->value.len, 1);
	cr_expect_eq(m->value.data[0], 'w');
	cr_expect_leq(arena_used(a), 3 * n, "arena %zu for %zu bytes", arena_used(a), n);
	ProtobufCAllocator al;
	arena_reset(a);
	arena_pb_allocator(a, &al);
	cr_assert_not_null(protobuf_c_message_unpack(pr, &al, n, b));
	cr_expect_gt(arena_used(a), 10 * n, "without merging: %zu", arena_used(a)); /* why it matters */
	free(b);
	arena_free(a);
}
