/* Fuzz target: the decoding path of the streaming and auxiliary services — WatchRequest
 * (create with filters, cancel, progress), LeaseKeepAlive, Lock and Election requests — as
 * the reactor decodes them, into an arena. The first byte picks the message type; the rest
 * is the message. Seeds: tests/fuzz/corpus/watch_fuzz (and the gRPC fuzzer's corpus). */
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "election.pb-c.h"
#include "lock.pb-c.h"
#include "rpc.pb-c.h"

static const ProtobufCMessageDescriptor *const fuzz_types[] = {
	&etcdserverpb__watch_request__descriptor,
	&etcdserverpb__lease_keep_alive_request__descriptor,
	&etcdserverpb__lease_grant_request__descriptor,
	&v3lockpb__lock_request__descriptor,
	&v3electionpb__campaign_request__descriptor,
	&v3electionpb__proclaim_request__descriptor,
	&v3electionpb__resign_request__descriptor,
	&v3electionpb__leader_request__descriptor,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct arena *a;
	ProtobufCAllocator al;

	if (size < 1)
		return 0;
	if (!a)
		a = arena_new(4096);
	arena_reset(a);
	arena_pb_allocator(a, &al);
	const ProtobufCMessageDescriptor *d = fuzz_types[data[0] % (sizeof fuzz_types / sizeof fuzz_types[0])];
	ProtobufCMessage *m = protobuf_c_message_unpack(d, &al, size - 1, data + 1);
	if (m && d == &etcdserverpb__watch_request__descriptor) {
		Etcdserverpb__WatchRequest *w = (Etcdserverpb__WatchRequest *)m;
		/* what the hub reads of a create request must be consistent */
		if (w->request_union_case == ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST) {
			const Etcdserverpb__WatchCreateRequest *c = w->create_request;
			volatile size_t sum = c->key.len + c->range_end.len + c->n_filters;
			for (size_t i = 0; i < c->n_filters; i++)
				sum += (size_t)c->filters[i];
			(void)sum;
		}
	}
	if (m) {
		/* re-encoding what decoded must not fail either */
		size_t len = protobuf_c_message_get_packed_size(m);
		uint8_t *buf = arena_alloc(a, len ? len : 1);
		protobuf_c_message_pack(m, buf);
	}
	return 0;
}
