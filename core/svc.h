/* The etcd services as a reactor runs them: routes gRPC paths to methods, answers reads on
 * the spot from the published snapshot, and turns writes into sequencer requests that are
 * submitted once per loop turn. Everything here runs on one reactor thread. */
#ifndef UETCD_CORE_SVC_H
#define UETCD_CORE_SVC_H

#include <stddef.h>
#include <stdint.h>

#include "core/kv.h"

/* Method numbers: the KV methods first (enum kv_method), then the others. */
enum svc_method {
	SVC_MAINT_STATUS = KV_METHODS,
	SVC_CLUSTER_MEMBER_LIST,
	SVC_WATCH,
	SVC_LEASE_GRANT,
	SVC_LEASE_REVOKE,
	SVC_LEASE_KEEPALIVE,
	SVC_LEASE_TTL,
	SVC_LEASE_LEASES,
	SVC_MAINT_ALARM,
	SVC_MAINT_HASH,
	SVC_MAINT_HASHKV,
	SVC_MAINT_DEFRAGMENT,
	SVC_MAINT_MOVE_LEADER,
	SVC_MAINT_DOWNGRADE,
	SVC_CLUSTER_MEMBER_ADD,
	SVC_CLUSTER_MEMBER_REMOVE,
	SVC_CLUSTER_MEMBER_UPDATE,
	SVC_CLUSTER_MEMBER_PROMOTE,
	SVC_LOCK_LOCK,
	SVC_LOCK_UNLOCK,
	SVC_ELECTION_CAMPAIGN,
	SVC_ELECTION_PROCLAIM,
	SVC_ELECTION_LEADER,
	SVC_ELECTION_RESIGN,
	SVC_ELECTION_OBSERVE,
	SVC_MAINT_SNAPSHOT,
	SVC_AUTH_ENABLE, /* the Auth service: SVC_AUTH_ENABLE .. SVC_AUTH_ROLE_REVOKE_PERMISSION */
	SVC_AUTH_DISABLE,
	SVC_AUTH_STATUS,
	SVC_AUTH_AUTHENTICATE,
	SVC_AUTH_USER_ADD,
	SVC_AUTH_USER_GET,
	SVC_AUTH_USER_LIST,
	SVC_AUTH_USER_DELETE,
	SVC_AUTH_USER_CHANGE_PASSWORD,
	SVC_AUTH_USER_GRANT_ROLE,
	SVC_AUTH_USER_REVOKE_ROLE,
	SVC_AUTH_ROLE_ADD,
	SVC_AUTH_ROLE_GET,
	SVC_AUTH_ROLE_LIST,
	SVC_AUTH_ROLE_DELETE,
	SVC_AUTH_ROLE_GRANT_PERMISSION,
	SVC_AUTH_ROLE_REVOKE_PERMISSION,
	SVC_KV_RANGE_STREAM, /* etcd 3.7's KV.RangeStream */
	SVC_METHODS,
};

struct server;
struct ProtobufCMessage;
struct grpc_conn;
struct seq_req;
struct svc_thread;

#include "core/metrics.h"

/* What a reactor's service layer counts, for /metrics (written by its thread only). */
struct svc_metrics {
	_Alignas(64) _Atomic uint64_t started[SVC_METHODS];
	_Atomic uint64_t handled[SVC_METHODS][17]; /* by gRPC status code */
	struct metrics_hist read_us, write_us;     /* request latency in microseconds */
	struct metrics_mvcc mvcc;                  /* etcd_mvcc_*_total of the reads answered here */
};

const struct svc_metrics *svc_thread_metrics(const struct svc_thread *t);
/* "/etcdserverpb.KV/Range" for a method number, NULL if it has none. */
const char *svc_method_path(int method);

struct watch_batch;

/* `dirty` tells the reactor that a connection (named by its conn_user) has output. */
struct svc_thread *svc_thread_new(struct server *srv, int reactor_index, void (*dirty)(void *conn_user));
void svc_thread_free(struct svc_thread *t);

/* Maps a gRPC :path to a method number, or -1 (UNIMPLEMENTED). */
int svc_route(const char *path, size_t len);

/* A call's life on connection `c` (conn_id names it for late answers, conn_user for
 * the reactor's dirty callback). */
/* token: the call's "token" metadata (NULL if none): its identity, when auth needs one. */
void svc_on_call_start(struct svc_thread *t, struct grpc_conn *c, void *conn_user, uint32_t stream_id, int method,
		       const char *token, size_t token_len);
void svc_on_message(struct svc_thread *t, struct grpc_conn *c, uint64_t conn_id, uint32_t stream_id, int method,
		    const uint8_t *msg, size_t len);
void svc_on_half_close(struct svc_thread *t, struct grpc_conn *c, uint64_t conn_id, uint32_t stream_id, int method);
void svc_on_call_end(struct svc_thread *t, struct grpc_conn *c, uint64_t conn_id, uint32_t stream_id, int method,
		     void *call_user);
/* A committed batch of events for this reactor's watchers (in commit order). */
void svc_watch_deliver(struct svc_thread *t, struct watch_batch *b);
/* For the JSON gateway, which runs requests the way gRPC calls do. */
struct arena;
struct server *svc_server(struct svc_thread *t);
struct arena *svc_scratch(struct svc_thread *t);
struct seq_req *svc_req_new(struct svc_thread *t);
void svc_req_submit(struct svc_thread *t, struct seq_req *r);
void svc_req_release(struct svc_thread *t, struct seq_req *r);

/* Auth for requests that do not come as gRPC calls (the gateway): whether `id` may make
 * the request (else res holds etcd's error), recording the check in r (may be NULL); and
 * an Auth method's way to the sequencer (0: taken; -1: answer res, r is still yours). */
struct authsvc_ident;
struct kv_result;
bool svc_auth_allows(struct svc_thread *t, const struct authsvc_ident *id, int method,
		     const struct ProtobufCMessage *req, struct seq_req *r, struct kv_result *res);
int svc_auth_request(struct svc_thread *t, struct seq_req *r, struct kv_result *res);

/* The gateway's /v3/watch on an HTTP/1.1 connection, and that connection going away. */
struct http1_conn;
struct Etcdserverpb__WatchRequest;
bool svc_http_watch(struct svc_thread *t, struct http1_conn *h, void *conn_user,
		    const struct Etcdserverpb__WatchRequest *req, struct authsvc_ident *ident);
void svc_http_closed(struct svc_thread *t, struct http1_conn *h);
/* Server shutdown: ends this thread's streaming calls the way clients resume from. */
void svc_stop(struct svc_thread *t);
/* Periodic work: watch catch-up and progress notifications. */
void svc_tick(struct svc_thread *t, uint64_t now_ms);
/* Requests handed to the sequencer are charged to their connection (reqs +1, bytes) as
 * they are queued (and -1 if a hand-off fails), so the reactor can bound what a connection
 * has in flight; the reactor releases the charge when the request comes back
 * (seq_req.counted, .in_bytes). */
void svc_set_charge(struct svc_thread *t, void (*charge)(void *arg, uint64_t conn_id, int reqs, int64_t bytes),
		    void *arg);
/* Hands this turn's write requests to the sequencer (one queue operation). */
void svc_flush(struct svc_thread *t);
/* A request came back from the sequencer: answer it on `c` (NULL if the connection is
 * gone) and recycle it. */
void svc_complete(struct svc_thread *t, struct grpc_conn *c, struct seq_req *r);

#endif
