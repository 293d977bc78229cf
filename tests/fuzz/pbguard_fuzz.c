/* Fuzzes pbguard's walk against protobuf-c itself.
 *
 * Input: byte 0 picks the message type (etcd's requests, and a few responses for field
 * kinds requests lack: packed and fixed-width numbers), byte 1 the flattening depth, byte 2
 * (bits 0-3) how many times the rest is wrapped in a Txn's success[0].request_txn (0, or
 * 2^k levels: up to 16384, so that deep nesting is reachable from short inputs), the rest
 * the message. Checked on every input:
 *  - the walk never recurses, and with len / 2 + 1 frames never runs out;
 *  - where protobuf-c can be run safely (nesting within 300), the walk accepts exactly
 *    what protobuf-c accepts (-EPROTO: the two inputs refused on purpose, either way);
 *  - flattening at any depth (bit 7 of byte 1 clear) and merging runs of unknown fields
 *    give bytes protobuf-c unpacks through at most that depth + 1 (measured by walking the
 *    copy, never by recursing);
 *  - pbguard_unpack never returns a message nested deeper than PBGUARD_DEPTH_MAX + 1.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/pbguard.h"
#include "kv.pb-c.h"
#include "rpc.pb-c.h"

static const ProtobufCMessageDescriptor *const TYPES[] = {
	&etcdserverpb__txn_request__descriptor,
	&etcdserverpb__range_request__descriptor,
	&etcdserverpb__put_request__descriptor,
	&etcdserverpb__watch_request__descriptor,
	&etcdserverpb__auth_role_grant_permission_request__descriptor,
	&etcdserverpb__lease_keep_alive_request__descriptor,
	&etcdserverpb__member_add_request__descriptor,
	&etcdserverpb__txn_response__descriptor,
	&etcdserverpb__hash_kvresponse__descriptor,
	&etcdserverpb__member_list_response__descriptor,
	&etcdserverpb__alarm_response__descriptor,
};

enum { SAFE_DEPTH = 300 }; /* protobuf-c's recursion under ASan stays well inside the stack */

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

/* `levels` TxnRequest levels around `in` (success[0].request_txn), into a new buffer. */
static uint8_t *wrap(const uint8_t *in, size_t len, unsigned levels, size_t *out_len)
{
	size_t n = len, *hdr = malloc((levels + 1) * 2 * sizeof *hdr);
	uint8_t tmp[10];
	for (unsigned i = 0; i < levels; i++) {
		hdr[2 * i] = 1 + put_varint(tmp, n); /* RequestOp.request_txn */
		n += hdr[2 * i];
		hdr[2 * i + 1] = 1 + put_varint(tmp, n); /* TxnRequest.success */
		n += hdr[2 * i + 1];
	}
	uint8_t *b = malloc(n ? n : 1), *o = b;
	size_t rest = n;
	for (unsigned i = levels; i-- > 0;) {
		rest -= hdr[2 * i + 1];
		*o++ = 0x12;
		o += put_varint(o, rest);
		rest -= hdr[2 * i];
		*o++ = 0x22;
		o += put_varint(o, rest);
	}
	memcpy(o, in, len);
	free(hdr);
	*out_len = n;
	return b;
}

static struct pbguard_frame *frames_for(size_t len, size_t *n)
{
	*n = len / 2 + 1;
	return malloc(*n * sizeof(struct pbguard_frame));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct arena *a;
	if (!a)
		a = arena_new(1 << 16);
	if (size < 3)
		return 0;
	const ProtobufCMessageDescriptor *d = TYPES[data[0] % (sizeof TYPES / sizeof *TYPES)];
	unsigned fd = 1 + data[1] % 64;
	unsigned k = data[2] & 15, levels = k ? 1u << (k - 1) : 0;
	size_t len, nf;
	if (levels)
		d = &etcdserverpb__txn_request__descriptor;
	uint8_t *msg = wrap(data + 3, size - 3, levels, &len);
	struct pbguard_frame *frames = frames_for(len, &nf);

	int depth = pbguard_walk(d, msg, len, frames, nf, 0, NULL);
	if (depth == -ELOOP || depth == -ENOTSUP)
		abort(); /* len / 2 + 1 frames always suffice; the types table fits etcd's schemas */
	if (depth == -EBADMSG || depth > 0) {
		int shallow = pbguard_walk(d, msg, len, frames, SAFE_DEPTH, 0, NULL);
		if (shallow != -ELOOP) { /* protobuf-c would recurse at most SAFE_DEPTH: compare */
			ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, msg);
			if ((m != NULL) != (depth > 0))
				abort();
			protobuf_c_message_free_unpacked(m, NULL);
		}
	}
	if (depth > 0) {
		/* flattened at fd: same verdict, and no deeper than fd + 1 */
		uint8_t *copy = malloc(len ? len : 1);
		memcpy(copy, msg, len);
		size_t merged;
		int again = pbguard_walk_merge(d, msg, len, frames, nf, data[1] & 0x80 ? 0 : fd, copy, &merged);
		if (again != depth)
			abort();
		if (data[1] & 0x80)
			fd = (unsigned)depth; /* merging only: nothing flattened */
		int flat = pbguard_walk(d, copy, len, frames, nf, 0, NULL);
		if (flat <= 0 || (unsigned)flat > fd + 1)
			abort();
		if (flat <= SAFE_DEPTH) { /* merging alone leaves the nesting as it was */
			ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, copy);
			if (!m)
				abort();
			protobuf_c_message_free_unpacked(m, NULL);
		}
		free(copy);
	}
	/* the server's entry point: flattening at etcd's txn depth or refusing past the bound */
	bool flattened;
	int rc = 0;
	unsigned want = d == &etcdserverpb__txn_request__descriptor ? pbguard_txn_depth(128) : PBGUARD_DEPTH_MAX + 1;
	ProtobufCMessage *m = pbguard_unpack(d, a, msg, len, want, &flattened, &rc);
	if (m) {
		if (depth <= 0)
			abort();
		size_t n2 = 0;
		uint8_t *packed = malloc(protobuf_c_message_get_packed_size(m) + 1);
		n2 = protobuf_c_message_pack(m, packed); /* bounded recursion: depth <= want + 1 */
		struct pbguard_frame *f2 = frames_for(n2, &nf);
		int pd = pbguard_walk(d, packed, n2, f2, nf, 0, NULL);
		if (pd <= 0 || (unsigned)pd > (want > PBGUARD_DEPTH_MAX ? PBGUARD_DEPTH_MAX : want) + 1)
			abort();
		free(f2);
		free(packed);
	} else if (depth > 0 && !(rc == -ELOOP && depth > PBGUARD_DEPTH_MAX)) {
		abort();
	}
	arena_reset(a);
	free(frames);
	free(msg);
	return 0;
}
