/* The sequencer: the one thread that changes the store.
 *
 * Reactors hand it write requests through one multi-producer queue; it drains everything
 * pending as a batch, applies the requests in arrival order (assigning revisions), makes
 * the batch durable (the log slots in here), publishes the new index root, and only then
 * hands each result back to the reactor that owns the request. So no client is answered,
 * and no reader sees a write, before its batch is published.
 *
 * Ownership: a seq_req belongs to its reactor until seq_submit(), to the sequencer until it
 * is delivered back, then to the reactor again. Its arena holds the decoded request and the
 * packed response. */
#ifndef UETCD_CORE_SEQ_H
#define UETCD_CORE_SEQ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/kv.h"

struct seq;
struct arena;
struct mvcc_store;
struct ProtobufCMessage;

struct seq_req {
	struct seq_req *next;
	int reactor;       /* owner's index */
	uint64_t conn_id;  /* owner's name for the connection */
	uint32_t stream_id;
	int method;        /* enum kv_method */
	struct ProtobufCMessage *msg;
	struct arena *arena;
	bool keep_open;    /* a message of a streaming call: answer it, do not end the call */
	bool cancel;       /* the call (method, conn_id, stream_id) ended: drop what waits for it */
	bool http;         /* from the JSON gateway: answered as JSON on an HTTP/1.1 connection */
	bool counted;      /* held against its reactor's SEQ_REACTOR_REQS_MAX until it comes back */
	uint32_t in_bytes; /* its request message's size, for the reactor's byte bounds */
	uint64_t start_us; /* when it was queued, for the latency histogram */
	/* result, filled by the sequencer */
	enum grpc_code code;
	const char *message;
	uint8_t *resp;
	size_t resp_len;
	int fd;            /* Snapshot: the file the answer streams (the receiver closes it), else -1 */
	uint64_t fd_bytes;
	/* auth: who sent it (in the arena) and the auth revision its permissions were checked
	 * at on the reactor (0: not checked; the sequencer refuses it if auth changed since) */
	const uint8_t *user;
	size_t user_len;
	int auth_err;      /* the call's identity failed (invalid token) */
	uint64_t auth_token_rev, auth_checked_rev;
	char *token;       /* Authenticate: the token issued (in the arena) */
};

struct watch_batch;

/* Called on the sequencer thread with the finished requests of one reactor, in order, and
 * with one reference to each committed batch of watch events for every reactor. */
struct seq_deliver {
	void (*requests)(void *arg, int reactor, struct seq_req *list);
	void (*events)(void *arg, int reactor, struct watch_batch *b);
	void *arg;
};

struct wal;
struct lease_table;

/* `wal` (may be NULL: nothing is logged) receives one record per batch and is committed
 * before the batch is published. The sequencer owns `leases` from now on: it expires them. */
struct seq *seq_new(struct mvcc_store *store, struct wal *wal, struct lease_table *leases,
		    const struct kv_header_ids *ids, int reactors, const struct seq_deliver *deliver);
int seq_start(struct seq *s);
/* Stops the thread after the batch in progress; requests still queued are not applied. */
void seq_stop(struct seq *s);
void seq_free(struct seq *s);

/* While bit 1 (NOSPACE) is set, writes that add data are refused as etcd refuses them;
 * while bit 2 (CORRUPT) is set, every KV and lease write is. */
void seq_set_alarms(struct seq *s, _Atomic unsigned *alarms);
/* --quota-backend-bytes (0: none): a write that adds data when the store's bytes in use
 * plus the request would pass it raises NOSPACE (etcd's quota) and is refused. No request
 * is larger than max_request_bytes, so below quota minus that none is sized. */
void seq_set_quota(struct seq *s, uint64_t bytes, uint64_t max_request_bytes);
/* Auth (core/authsvc.h): its methods run here, its changes are logged with the batch and
 * published after it; every request checked on a reactor is refused if auth changed
 * before it applied. Before seq_start. */
struct authsvc;
void seq_set_auth(struct seq *s, struct authsvc *a);
/* --auto-compaction-*: periodic keeps `retention` ms of history, otherwise `retention`
 * revisions; 0 never compacts. Before seq_start. */
void seq_set_autocompact(struct seq *s, bool periodic, int64_t retention);

/* Checkpoints (storage/ckpt.h), written by `w` from published views. The sequencer decides
 * when: once the log has grown by max(min_log_bytes, 4x the last checkpoint's size) since
 * the last one, or after snapshot_count revisions if it grew by 2x the last checkpoint's
 * size and min_log_bytes (so that writing checkpoints costs at most a half of what writing
 * the log does), or
 * after a compaction once the log since the last one is larger than the store now is. It rolls the log first, so the
 * checkpoint says where replay continues, and deletes the segments it covers once it is
 * durable. Defragment waits for a checkpoint of its own; Snapshot for a snapshot file.
 * ckpt_bytes: the size of the checkpoint the store was loaded from (0: none). Before
 * seq_start. Without a worker, Defragment has nothing to do and Snapshot is refused. */
struct ckpt_worker;
void seq_set_checkpoints(struct seq *s, struct ckpt_worker *w, uint64_t min_log_bytes, uint64_t snapshot_count,
			 uint64_t ckpt_bytes);
/* The worker's hook: a job finished (any thread). */
void seq_ckpt_done(void *seq);
/* What the data occupies on disk: the log segments' written bytes (not their preallocated
 * tails) plus the checkpoint (Status.db_size). Any thread. */
uint64_t seq_db_size(const struct seq *s);

/* The queue's bound: each reactor holds at most SEQ_REACTOR_REQS_MAX requests that it
 * handed over (here or through the password thread) and has not had back, and at most
 * SEQ_REACTOR_BYTES_MAX bytes of their request messages; past either it stops reading
 * the connections that add more (backpressure, enforced in core/reactor.c). So the queue
 * and each reactor's done stack hold at most reactors x SEQ_REACTOR_REQS_MAX requests,
 * plus Lock/Campaign calls parked for their turn (not counted: a parked call waits on
 * another client, and one per live stream at most, which max-concurrent-streams bounds). */
#define SEQ_REACTOR_REQS_MAX 16384
#define SEQ_REACTOR_BYTES_MAX (256u << 20)

/* Queues a chain of requests linked by ->next (first to last in arrival order). */
void seq_submit(struct seq *s, struct seq_req *first, struct seq_req *last);

/* Batches applied and requests applied, for metrics and Status. */
uint64_t seq_batches(const struct seq *s);
uint64_t seq_applied(const struct seq *s);
/* The log's fdatasync and the whole batch commit (encode, write, sync), for /metrics. */
struct metrics_hist;
const struct metrics_hist *seq_fsync_hist(const struct seq *s);
const struct metrics_hist *seq_commit_hist(const struct seq *s);

#endif
