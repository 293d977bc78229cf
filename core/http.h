/* etcd's HTTP/1.1 endpoints (/health, /livez, /readyz, /version, /metrics), answered on the
 * reactor that owns the connection. */
#ifndef UETCD_CORE_HTTP_H
#define UETCD_CORE_HTTP_H

struct server;
struct http1_conn;
struct http1_request;

void http_handle(struct server *srv, struct http1_conn *h, const struct http1_request *r);

#endif
