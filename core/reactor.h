/* A reactor: one thread, one io_uring ring, its own SO_REUSEPORT listener per listen URL,
 * and the connections it accepted, for their whole life. It never blocks except in the
 * ring's wait. See reactor.c for the ring's flags and the loop's order. */
#ifndef UETCD_CORE_REACTOR_H
#define UETCD_CORE_REACTOR_H

struct server;
struct reactor;
struct seq_req;
struct config_url;

struct reactor *reactor_new(struct server *srv, int index);
/* Opens this reactor's listening socket for `u` (SO_REUSEPORT: every reactor opens one).
 * Returns 0 or -errno. */
int reactor_listen(struct reactor *r, const struct config_url *u);
int reactor_start(struct reactor *r);
/* Wakes the reactor so it sees srv->stopping, then joins it. */
void reactor_stop(struct reactor *r);
void reactor_free(struct reactor *r);
/* The verified client certificate's Common Name on the connection a service callback got
 * as conn_user, or NULL (plaintext, no client certificate, handshake not done). Auth uses
 * it as the user name when no token is sent, as etcd does under --client-cert-auth. */
const char *reactor_conn_peer_cn(const void *conn_user);

/* The reactor's service layer (for /metrics, which sums every reactor's counters). */
struct svc_thread *reactor_svc(struct reactor *r);

/* Sequencer side: hands back finished requests (a chain) and wakes the reactor if it sleeps. */
void reactor_deliver(struct reactor *r, struct seq_req *list);
/* Sequencer side: hands over one reference to a committed batch of watch events. */
struct watch_batch;
void reactor_deliver_watch(struct reactor *r, struct watch_batch *b);

#endif
