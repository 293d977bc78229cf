/* Fuzz target: protobuf decoding of every KV request as the server decodes it (pbguard,
 * then protobuf-c), etcd's checks, and applying what passes to a real store. The input is
 * a sequence of records:
 *   [method % 5 | 0x80 nest][len: 2 bytes big-endian][len bytes of protobuf]
 * With bit 7 set, the record is a Txn whose bytes are wrapped in 1 + (first two bytes of
 * the record) % 6000 levels of success[0].request_txn first, so that nesting far past what
 * etcd checks (and what once overflowed the stack) is reachable from short inputs.
 * Reads run against the published view, writes against the working state, with a publish
 * after every few records, so nested txns, compares, ranges and compactions meet every
 * state the fuzzer can build. Any crash, sanitizer report or leak is a finding; so is a
 * flattened Txn (pbguard_txn_depth) that passes kv_check. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/kv.h"
#include "core/pbguard.h"
#include "core/qsbr.h"
#include "rpc.pb-c.h"
#include "storage/mvcc.h"

static const ProtobufCMessageDescriptor *const DESC[KV_METHODS] = {
	[KV_RANGE] = &etcdserverpb__range_request__descriptor,
	[KV_PUT] = &etcdserverpb__put_request__descriptor,
	[KV_DELETE_RANGE] = &etcdserverpb__delete_range_request__descriptor,
	[KV_TXN] = &etcdserverpb__txn_request__descriptor,
	[KV_COMPACT] = &etcdserverpb__compaction_request__descriptor,
};

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

/* `levels` TxnRequests around `in`, built into the arena from the inside out. */
static const uint8_t *nest(struct arena *a, const uint8_t *in, size_t len, unsigned levels, size_t *out)
{
	uint8_t tmp[10];
	size_t n = len;
	for (unsigned i = 0; i < levels; i++) {
		n += 1 + put_varint(tmp, n);
		n += 1 + put_varint(tmp, n);
	}
	uint8_t *b = arena_alloc(a, n + 1), *o = b + n - len;
	memcpy(o, in, len);
	size_t inner = len;
	for (unsigned i = 0; i < levels; i++) { /* prepend: RequestOp.request_txn, then success */
		size_t h = put_varint(tmp, inner);
		o -= h;
		memcpy(o, tmp, h);
		*--o = 0x22;
		inner += h + 1;
		h = put_varint(tmp, inner);
		o -= h;
		memcpy(o, tmp, h);
		*--o = 0x12;
		inner += h + 1;
	}
	*out = n;
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qsbr *q = qsbr_new(1);
	struct mvcc_store *s = mvcc_store_new(q);
	struct arena *a = arena_new(4096);
	struct kv_limits lim = {.max_txn_ops = 128, .max_request_bytes = 1572864};
	size_t off = 0;
	int n = 0;

	while (off + 3 <= size) {
		enum kv_method m = (enum kv_method)((data[off] & 0x7f) % KV_METHODS);
		bool deep = data[off] & 0x80;
		size_t len = (size_t)data[off + 1] << 8 | data[off + 2];
		off += 3;
		if (len > size - off)
			len = size - off;
		const uint8_t *msg = data + off;
		off += len;
		if (deep) {
			unsigned levels = len >= 2 ? 1 + (unsigned)(msg[0] << 8 | msg[1]) % 6000 : 1;
			m = KV_TXN;
			msg = nest(a, msg + (len >= 2 ? 2 : 0), len >= 2 ? len - 2 : 0, levels, &len);
		}
		struct kv_result res;
		bool flat;
		int rc;
		struct ProtobufCMessage *req = pbguard_unpack(DESC[m], a, msg, len,
							      m == KV_TXN ? pbguard_txn_depth(lim.max_txn_ops)
									  : PBGUARD_DEPTH_MAX + 1,
							      &flat, &rc);
		int bad = req ? kv_check(m, req, len, &lim, a, &res) : -1;
		if (req && flat && !bad)
			abort(); /* a flattened txn must fail etcd's checks, or it would run changed */
		if (req && !bad) {
			if (kv_is_read_only(m, req)) {
				struct mvcc_view v;
				mvcc_view_published(s, &v);
				kv_read(m, &v, req, a, &res);
			} else {
				kv_write(m, s, req, a, NULL, &res);
			}
		}
		if (++n % 4 == 0)
			mvcc_publish(s);
		arena_reset(a);
	}
	mvcc_publish(s);
	arena_free(a);
	mvcc_store_free(s);
	qsbr_free(q);
	return 0;
}
