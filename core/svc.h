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
	SVC_METHODS,
};

struct server;
struct grpc_conn;
struct seq_req;
struct svc_thread;

struct svc_thread *svc_thread_new(struct server *srv, int reactor_index);
void svc_thread_free(struct svc_thread *t);

/* Maps a gRPC :path to a method number, or -1 (UNIMPLEMENTED). */
int svc_route(const char *path, size_t len);

/* One request message of a call on connection `c` (named conn_id for late answers). */
void svc_on_message(struct svc_thread *t, struct grpc_conn *c, uint64_t conn_id, uint32_t stream_id, int method,
		    const uint8_t *msg, size_t len);
/* Hands this turn's write requests to the sequencer (one queue operation). */
void svc_flush(struct svc_thread *t);
/* A request came back from the sequencer: answer it on `c` (NULL if the connection is
 * gone) and recycle it. */
void svc_complete(struct svc_thread *t, struct grpc_conn *c, struct seq_req *r);

#endif
