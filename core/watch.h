/* Watch: every committed batch becomes one immutable, reference-counted list of events
 * that the sequencer hands to every reactor; each reactor matches it against its own
 * watchers (its "hub") and writes the responses on their streams. No lock is shared
 * between the writer and the watchers.
 *
 * A watcher is synced (fed from batches as they arrive) or unsynced (its stream could not
 * take more, or it started in the past): unsynced watchers are caught up from the store's
 * history in the reactor's tick, and cancelled with compact_revision if that history has
 * been compacted meanwhile, as etcd does. Memory per stream is bounded by the stream's
 * flow-control queue limit; a slow consumer never delays the writer or other streams. */
#ifndef UETCD_CORE_WATCH_H
#define UETCD_CORE_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct server;
struct grpc_conn;
struct kv_sink;
struct watch_batch;
struct watch_builder;
struct watch_hub;

/* ---- sequencer side ---- */

struct watch_builder *watch_builder_new(void);
void watch_builder_free(struct watch_builder *b);
/* A kv_sink that records every change into the builder. */
void watch_builder_sink(struct watch_builder *b, struct kv_sink *out);
/* Starts a batch whose first revision will be rev + 1: returns whether its changes are to
 * be recorded (someone watches now). */
bool watch_builder_begin(struct watch_builder *b, int64_t rev);
/* After the batch's revisions up to `rev` are PUBLISHED (mvcc_publish), never before: the
 * batch for every reactor (`refs` references), or NULL when no revision was committed, or
 * none was recorded and still nobody watches. A batch that was not recorded while someone
 * started watching meanwhile comes back as a `history` batch without events: the hubs read
 * its revisions from the store. The builder is empty afterwards either way. */
struct watch_batch *watch_builder_finish(struct watch_builder *b, int refs, int64_t rev);
/* Drops whatever was recorded. */
void watch_builder_reset(struct watch_builder *b);
/* True while any reactor has a watcher (or one is being created). */
bool watch_any(void);

/* Chaining batches on their way to a reactor (one link per reactor inside the batch). */
struct watch_batch *watch_batch_next(struct watch_batch *b, int reactor);
void watch_batch_set_next(struct watch_batch *b, int reactor, struct watch_batch *next);
void watch_batch_release(struct watch_batch *b);

/* ---- reactor side ---- */

/* `dirty` tells the reactor a connection has output; conn_user names it. */
struct watch_hub *watch_hub_new(struct server *srv, int reactor, void (*dirty)(void *conn_user));
void watch_hub_free(struct watch_hub *h);
/* Matches one batch (in commit order) against the hub's watchers and releases it. */
void watch_hub_deliver(struct watch_hub *h, struct watch_batch *b);
/* Catch-up of unsynced watchers, pending progress requests, periodic progress notices. */
void watch_hub_tick(struct watch_hub *h, uint64_t now_ms);

/* The seam tests/unit/watch_test.c drives a hub through without a reactor: when set,
 * responses for gRPC streams go to send() (packed WatchResponses) instead of the
 * connection, and queued() says how many bytes a stream has waiting. `owner` is the
 * grpc_conn pointer the stream was opened with (any unique pointer will do). */
struct watch_wire {
	void (*send)(void *arg, const void *owner, uint32_t sid, const uint8_t *msg, size_t len);
	size_t (*queued)(void *arg, const void *owner, uint32_t sid);
	void *arg;
};
void watch_hub_set_wire(struct watch_hub *h, const struct watch_wire *wire);

/* The Watch call's life on one stream. */
void watch_stream_open(struct watch_hub *h, struct grpc_conn *c, void *conn_user, uint32_t sid);
void watch_stream_message(struct watch_hub *h, struct grpc_conn *c, uint32_t sid, const uint8_t *msg, size_t len);
void watch_stream_half_close(struct watch_hub *h, struct grpc_conn *c, uint32_t sid);
void watch_stream_close(struct watch_hub *h, struct grpc_conn *c, uint32_t sid);
/* Server shutdown: ends every watch (and observe) call with UNAVAILABLE "etcdserver:
 * server stopped", which clients take as "resume elsewhere", never as "re-list". */
void watch_hub_stop(struct watch_hub *h);
/* The gateway's /v3/watch: a create request on an HTTP/1.1 connection, answered as a
 * chunked stream of {"result":...} lines until the connection closes (watch_http_close).
 * False if the request is not a create. */
struct http1_conn;
struct Etcdserverpb__WatchRequest;
struct authsvc_ident;
/* ident: the caller, from the Authorization header (NULL: none); the stream takes it. */
bool watch_http_open(struct watch_hub *h, struct http1_conn *http, void *conn_user,
		     const struct Etcdserverpb__WatchRequest *req, struct authsvc_ident *ident);
void watch_http_close(struct watch_hub *h, struct http1_conn *http);
/* Election.Observe on a stream opened with watch_stream_open: one LeaderResponse now (if
 * there is a leader) and one each time the leader key or its value changes. */
void watch_observe(struct watch_hub *h, struct grpc_conn *c, uint32_t sid, const uint8_t *msg, size_t len);

#endif
