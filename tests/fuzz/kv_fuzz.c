/* Fuzz target: protobuf decoding of every KV request, etcd's checks, and applying what
 * passes to a real store. The input is a sequence of records:
 *   [method % 5][len: 2 bytes big-endian][len bytes of protobuf]
 * Reads run against the published view, writes against the working state, with a publish
 * after every few records, so nested txns, compares, ranges and compactions meet every
 * state the fuzzer can build. Any crash, sanitizer report or leak is a finding. */
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/kv.h"
#include "core/qsbr.h"
#include "storage/mvcc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qsbr *q = qsbr_new(1);
	struct mvcc_store *s = mvcc_store_new(q);
	struct arena *a = arena_new(4096);
	struct kv_limits lim = {.max_txn_ops = 128, .max_request_bytes = 1572864};
	size_t off = 0;
	int n = 0;

	while (off + 3 <= size) {
		enum kv_method m = (enum kv_method)(data[off] % KV_METHODS);
		size_t len = (size_t)data[off + 1] << 8 | data[off + 2];
		off += 3;
		if (len > size - off)
			len = size - off;
		struct kv_result res;
		struct ProtobufCMessage *req = kv_decode(m, a, data + off, len);
		off += len;
		if (req && kv_check(m, req, len, &lim, a, &res) == 0) {
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
