/* etcd's KV service semantics (Range, Put, DeleteRange, Txn, Compact) over storage/mvcc.
 *
 * Reads run on a reactor against a published view; writes run on the sequencer inside one
 * mvcc write transaction each. Request validation that etcd does before a request reaches
 * raft (empty key, too many txn ops, duplicate keys, flags that contradict) is kv_check(),
 * run on the reactor so that a bad request never costs the sequencer anything.
 * Responses are built in the caller's arena; their KeyValue bytes may point into the view's
 * memory, so pack them before the reading thread's next quiescent point. Error codes and
 * messages are etcd's own, because clients match on them. */
#ifndef UETCD_CORE_KV_H
#define UETCD_CORE_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "net/grpc.h"

struct arena;
struct mvcc_store;
struct mvcc_view;
struct mvcc_kv;
struct ProtobufCMessage;

/* A gRPC status and message; code GRPC_OK means `resp` holds the response. */
struct kv_result {
	enum grpc_code code;
	const char *message;
	struct ProtobufCMessage *resp;
};

struct kv_limits {
	uint32_t max_txn_ops;       /* --max-txn-ops */
	uint64_t max_request_bytes; /* --max-request-bytes */
};

struct kv_header_ids {
	uint64_t cluster_id, member_id, raft_term;
};

/* The KV methods, numbered for routing and for the sequencer. */
enum kv_method { KV_RANGE, KV_PUT, KV_DELETE_RANGE, KV_TXN, KV_COMPACT, KV_METHODS };

/* Decodes a request message of `method` into the arena; NULL if it is not valid protobuf. */
struct ProtobufCMessage *kv_decode(enum kv_method method, struct arena *a, const uint8_t *msg, size_t len);
/* etcd's pre-raft checks. Returns 0, or fills *res with the error and returns -1. */
int kv_check(enum kv_method method, const struct ProtobufCMessage *req, size_t wire_len,
	     const struct kv_limits *lim, struct arena *a, struct kv_result *res);
/* True when a request only reads (a Range, or a Txn all of whose ops on every branch read):
 * it can be answered on the reactor from the published view. */
int kv_is_read_only(enum kv_method method, const struct ProtobufCMessage *req);

/* A Range, answered whole when its encoded answer is small, else streamed. Returns 0 with
 * *res filled as kv_read does (a whole response, or an error) when the answer takes at
 * most about `whole_max` bytes, or when it is not in key order (sorted by another target:
 * built whole); returns 1 with *out and *len (the packed RangeResponse's exact length)
 * when it is larger: read it with kv_range_stream_read (a grpc_msg_source read: it holds
 * no snapshot pointer between calls, see kv.c) and free it with kv_range_stream_free. */
struct kv_range_stream;
int kv_range_begin(const struct mvcc_view *v, const struct ProtobufCMessage *req, struct arena *a,
		   const struct kv_header_ids *ids, size_t whole_max, struct kv_result *res,
		   struct kv_range_stream **out, uint64_t *len);
/* Writes up to cap bytes of the answer; -1 when it cannot go on (a compaction passed its
 * revision). */
ssize_t kv_range_stream_read(void *st, uint8_t *buf, size_t cap);
void kv_range_stream_free(void *st);
/* RangeStream (etcd 3.7): the same Range as a stream of RangeStreamResponse chunks, from one
 * revision, one chunk in memory at a time. Returns 0 with *out (read it with
 * kv_range_stream_read_msgs, a GRPC_SOURCE_FRAMED source: whole framed messages, filling
 * cap until the end, -1 when a compaction passed its revision; free it with
 * kv_range_stream_free), or
 * -1 with *res holding the error Range would give (or UNIMPLEMENTED for a sort). */
int kv_range_stream_begin(const struct mvcc_view *v, const struct ProtobufCMessage *req,
			  const struct kv_header_ids *ids, struct kv_result *res, struct kv_range_stream **out);
ssize_t kv_range_stream_read_msgs(void *st, uint8_t *buf, size_t cap);
/* Read path: a Range or a read-only Txn answered from a view. */
void kv_read(enum kv_method method, const struct mvcc_view *v, const struct ProtobufCMessage *req,
	     struct arena *a, struct kv_result *res);
/* Receives every change a write applies, in order: the log and the watchers are fed from
 * it. Pointers are valid until the sequencer publishes the batch. A put's `prev` (and a
 * delete's) is the key's last live version, NULL when the put creates the key. */
struct kv_sink {
	void (*put)(void *arg, const struct mvcc_kv *kv, const struct mvcc_kv *prev);
	void (*del)(void *arg, const uint8_t *key, size_t key_len, int64_t rev, const struct mvcc_kv *prev);
	/* a compaction to compact_rev, done when the store was at rev (may be NULL) */
	void (*compact)(void *arg, int64_t rev, int64_t compact_rev);
	/* whether a lease id exists (NULL: none does) */
	bool (*lease_exists)(void *arg, int64_t id);
	/* lease grants and revocations, for the log (may be NULL); rev is the store's */
	void (*lease_grant)(void *arg, int64_t rev, int64_t id, int64_t ttl);
	void (*lease_revoke)(void *arg, int64_t rev, int64_t id);
	/* an auth change (core/auth.h's operation bytes), for the log */
	void (*auth)(void *arg, int64_t rev, const uint8_t *op, size_t len);
	void *arg;
};

/* Write path (sequencer only): applies one request to the store's working state, reporting
 * its changes to `sink` (may be NULL). */
void kv_write(enum kv_method method, struct mvcc_store *s, const struct ProtobufCMessage *req, struct arena *a,
	      const struct kv_sink *sink, struct kv_result *res);
/* Deletes the given keys (each must exist) in one write transaction, reporting to sink;
 * returns the revision after it. For lease revocation. */
int64_t kv_delete_keys(struct mvcc_store *s, const uint8_t *const *keys, const size_t *lens, size_t n,
		       const struct kv_sink *sink);
/* Message-building helpers the other services share. */
struct Etcdserverpb__ResponseHeader;
struct Mvccpb__KeyValue;
/* A response header naming this member, its cluster and term, at `rev`. */
struct Etcdserverpb__ResponseHeader *kv_header(struct arena *a, const struct kv_header_ids *ids, int64_t rev);
/* A KeyValue for one version; `copy` copies the bytes into the arena (else they are lent
 * from the view and must be packed before its reader's next quiescent point). */
struct Mvccpb__KeyValue *kv_pb_kv(struct arena *a, const struct mvcc_kv *m, bool copy);
/* The key of the range with the lowest create revision as of `rev` (0: the view's): the
 * owner of a lock or the leader of an election. Returns 1 and fills *out, 0 if the range
 * is empty, or a negative mvcc error. */
int kv_range_owner(const struct mvcc_view *v, const uint8_t *key, size_t key_len, const uint8_t *end, size_t end_len,
		   int64_t rev, struct mvcc_kv *out);

/* Fills the top-level response header's cluster, member and term (revision is set by
 * kv_read / kv_write). */
void kv_fill_header(struct ProtobufCMessage *resp, enum kv_method method, const struct kv_header_ids *ids);

#endif
