/* Fuzzes the JSON -> protobuf parser with arbitrary bytes, and round-trips what parses.
 *
 * Input: byte 0 picks the message type (etcd's gateway request bodies and a few responses
 * with every field kind), bit 7 of byte 0 picks the allocator (arena or malloc, so ASan sees
 * leaks of half-built messages). Whatever parses is marshalled, parsed again and marshalled
 * again: the two JSON texts must be identical, and both must also pack to the same
 * protobuf bytes.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/pbjson.h"
#include "kv.pb-c.h"
#include "rpc.pb-c.h"

static const ProtobufCMessageDescriptor *const TYPES[] = {
	&etcdserverpb__range_request__descriptor,
	&etcdserverpb__put_request__descriptor,
	&etcdserverpb__delete_range_request__descriptor,
	&etcdserverpb__txn_request__descriptor,
	&etcdserverpb__compaction_request__descriptor,
	&etcdserverpb__watch_request__descriptor,
	&etcdserverpb__lease_grant_request__descriptor,
	&etcdserverpb__lease_time_to_live_request__descriptor,
	&etcdserverpb__alarm_request__descriptor,
	&etcdserverpb__authenticate_request__descriptor,
	&etcdserverpb__txn_response__descriptor,
	&etcdserverpb__watch_response__descriptor,
	&etcdserverpb__status_response__descriptor,
	&etcdserverpb__member_list_response__descriptor,
	&etcdserverpb__hash_kvresponse__descriptor,
	&etcdserverpb__lease_time_to_live_response__descriptor,
};

static struct arena *A;

static void same_packed(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
	size_t la = protobuf_c_message_get_packed_size(a), lb = protobuf_c_message_get_packed_size(b);
	if (la != lb)
		abort();
	uint8_t *pa = malloc(la + 1), *pb = malloc(lb + 1);
	protobuf_c_message_pack(a, pa);
	protobuf_c_message_pack(b, pb);
	if (memcmp(pa, pb, la) != 0)
		abort();
	free(pa);
	free(pb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const ProtobufCMessageDescriptor *d = TYPES[(data[0] & 0x7f) % (sizeof(TYPES) / sizeof(TYPES[0]))];
	bool use_arena = data[0] & 0x80;
	data++;
	size--;
	if (!A)
		A = arena_new(65536);
	arena_reset(A);
	ProtobufCAllocator pa;
	arena_pb_allocator(A, &pa);
	ProtobufCAllocator *alloc = use_arena ? &pa : NULL;

	ProtobufCMessage *m = NULL;
	struct pbjson_error err;
	int rc = pbjson_unmarshal(d, data, size, alloc, &m, &err);
	if (rc < 0) {
		if (m || (rc != -EINVAL && rc != -ELOOP) || err.msg[0] == 0 || err.offset > size)
			abort();
		return 0;
	}
	if (!m || m->descriptor != d)
		abort();
	struct pbjson_buf j1 = {0}, j2 = {0}, j3 = {0};
	if (pbjson_marshal(m, 0, &j1) != 0)
		abort();
	if (pbjson_marshal(m, PBJSON_COMMA_SPACE | PBJSON_STREAM, &j3) != 0)
		abort();
	ProtobufCMessage *m2 = NULL;
	rc = pbjson_unmarshal(d, (const uint8_t *)j1.p, j1.len, NULL, &m2, &err);
	if (rc != 0)
		abort(); /* what we write, we read */
	if (pbjson_marshal(m2, 0, &j2) != 0)
		abort();
	if (j1.len != j2.len || memcmp(j1.p, j2.p, j1.len) != 0)
		abort();
	same_packed(m, m2);
	/* a bounded buffer fails cleanly and restores its length */
	struct pbjson_buf small = {0};
	small.max = j1.len / 2;
	rc = pbjson_marshal(m, 0, &small);
	if (j1.len > 1 && (rc != -ENOBUFS || small.len != 0))
		abort();
	free(small.p);
	protobuf_c_message_free_unpacked(m2, NULL);
	if (!use_arena)
		protobuf_c_message_free_unpacked(m, NULL);
	free(j1.p);
	free(j2.p);
	free(j3.p);
	return 0;
}
