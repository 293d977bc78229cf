/* etcd's JSON gateway under /v3/ (see gateway.c), on the reactor that owns the connection. */
#ifndef UETCD_CORE_GATEWAY_H
#define UETCD_CORE_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>

struct svc_thread;
struct http1_conn;
struct http1_request;
struct seq_req;

/* Answers (or queues) a /v3/ request; false if the path is not the gateway's. */
bool gateway_handle(struct svc_thread *t, struct http1_conn *h, void *conn_user, uint64_t conn_id,
		    const struct http1_request *r);
/* A gateway request came back from the sequencer: answer it on h (NULL if gone), recycle it. */
void gateway_complete(struct svc_thread *t, struct http1_conn *h, struct seq_req *r);

#endif
