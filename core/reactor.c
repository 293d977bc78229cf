/* The reactor loop. One turn:
 *   1. answer what the sequencer finished (one exchange on the `done` stack),
 *   2. hand this turn's writes to the sequencer (one queue operation),
 *   3. start one gathered sendmsg per connection that has output and none in flight,
 *   4. announce a quiescent point (no snapshot pointer is held past here),
 *   5. submit and wait in one io_uring_enter, offline for reclamation while asleep,
 *   6. reap every completion in a batch with one cq_advance.
 *
 * Receives are multishot with buffers from a provided buffer ring, so an idle connection
 * holds no receive buffer; every buffer goes back to the ring as soon as the HTTP/2 layer
 * has taken its bytes. Accepts are multishot too. A connection is freed only when no
 * operation of it is still in the kernel (`inflight` reaches zero after shutdown(2)).
 *
 * Completions are named by user_data = type | generation | slot, so a completion for a
 * connection slot that has since been reused is recognised and dropped.
 *
 * Fairness and bounds (one client must not starve the others):
 *  - gRPC request messages are not run inside the receive that parsed them: they are
 *    copied into their connection's work queue and run at the top of the next turn, each
 *    connection getting at most CONN_TURN_REQS requests or CONN_TURN_US of CPU per turn
 *    (round robin over connections with work). So a reset stream's or a closed
 *    connection's queued requests are dropped unrun (RST_STREAM parsed in the same
 *    receive batch as its request cancels it), and a long backlog is spread over turns.
 *  - A connection's requests in flight (queued here, or handed to the sequencer and not
 *    back, a reset stream's included) are bounded by CONN_REQS_MAX and CONN_BYTES_MAX, a
 *    reactor's by SEQ_REACTOR_REQS_MAX/BYTES_MAX (core/seq.h). Past a bound the
 *    connection is not read (its multishot receive is cancelled; bytes already on the way
 *    are held, not parsed) until it is back under half: backpressure through TCP, which
 *    costs a well-behaved client nothing, rather than REFUSED_STREAM, which would make
 *    every client implement retries and would not bound a reset stream's work.
 *  - Accept errors back off (ACCEPT_BACKOFF_MS); out of descriptors, a reserve descriptor
 *    is given up for a moment to accept and close what waits (as libuv does), and
 *    connections are capped below RLIMIT_NOFILE so that the log and checkpoints keep some.
 */
#include "core/reactor.h"

#include <errno.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/authsvc.h"
#include "core/config.h"
#include "core/log.h"
#include "core/qsbr.h"
#include "core/seq.h"
#include "core/server.h"
#include "core/svc.h"
#include "core/watch.h"
#include "core/gateway.h"
#include "core/http.h"
#include "net/grpc.h"
#include "net/http1.h"
#include "tls/tls.h"

#define RING_ENTRIES 4096
#define RING_CQ_ENTRIES 16384
#define RECV_BUF_COUNT 512 /* power of two */
#define RECV_BUF_SIZE (16 * 1024)
#define RECV_BGID 1
#define CONN_IOV_MAX 64
#define TICK_MS 100
#define TLS_HANDSHAKE_MS (120 * 1000) /* grpc-go's server handshake deadline */
#define CLOSE_FLUSH_MS (5 * 1000)       /* a GOAWAY/alert gets this long to go out */
#define TLS_RELOAD_TICKS 10 /* certificate files are checked once a second */
#define PLAIN_BUF_SIZE (32 * 1024)
#define SLOT_BITS 24
#define SLOTS_MAX (1u << SLOT_BITS)
/* Requests in flight on one connection (queued here + on the sequencer): past it the
 * connection is not read until it is back to CONN_REQS_RESUME. Above any sane client's
 * concurrency (grpc-go opens at most max-concurrent-streams calls), so only a client
 * that pipelines into reset streams or one stream (LeaseKeepAlive) ever meets it. */
#define CONN_REQS_MAX 1024
#define CONN_REQS_RESUME (CONN_REQS_MAX / 2)
/* The same for their request bytes (one message may be up to --max-request-bytes). */
#define CONN_BYTES_MAX (16u << 20)
/* A connection's share of one loop turn. */
#define CONN_TURN_REQS 64
#define CONN_TURN_US 1000
/* Work queue buffers: the first allocation, and the largest kept once drained. */
#define WORK_BUF_MIN 4096
#define WORK_BUF_KEEP (64 * 1024)
/* Bytes a paused connection may still deliver (what was in flight when it was paused:
 * its receive is cancelled, so in practice a few receive buffers); more closes it. */
#define CONN_HELD_MAX (4u << 20)
/* An accept that failed (no descriptors, no memory) is tried again after this. */
#define ACCEPT_BACKOFF_MS 100
/* Descriptors kept for everything but client connections (log segments, checkpoints,
 * snapshot files, listeners): connections are refused past RLIMIT_NOFILE minus these. */
#define FD_RESERVE 64
/* Waiting connections closed at once when the reserve descriptor is given up. */
#define ACCEPT_SHED_MAX 256

enum ud_type { UD_ACCEPT = 1, UD_RECV, UD_SEND, UD_WAKE, UD_TICK, UD_CANCEL };

static uint64_t ud_make(enum ud_type t, uint32_t gen, uint32_t slot)
{
	return (uint64_t)t << 56 | (uint64_t)(gen & 0xffffffu) << SLOT_BITS | slot;
}
static enum ud_type ud_type(uint64_t ud) { return (enum ud_type)(ud >> 56); }
static uint32_t ud_gen(uint64_t ud) { return (uint32_t)(ud >> SLOT_BITS) & 0xffffffu; }
static uint32_t ud_slot(uint64_t ud) { return (uint32_t)ud & (SLOTS_MAX - 1); }

struct conn {
	struct reactor *r;
	int fd;
	uint32_t slot, gen;
	struct grpc_conn *g;    /* HTTP/2 + gRPC, once the first bytes said so */
	struct http1_conn *h;   /* or HTTP/1.1 */
	struct tls_conn *tls;   /* NULL on a plaintext listener */
	uint8_t sniff[24];      /* the first bytes, until they tell the protocol */
	uint64_t accepted_ms;   /* for the TLS handshake deadline */
	uint64_t close_by_ms;   /* set with close_when_flushed: close even if output is stuck */
	char *peer_cn;          /* the verified client certificate's CN, once the handshake is done */
	bool cn_checked;
	uint8_t nsniff;
	int inflight;           /* operations of this connection in the kernel */
	bool recv_armed, sending, closing, close_when_flushed, dirty;
	bool paused;            /* over a bound: not read (see the file header) */
	bool in_ready, in_paused; /* on the reactor's ready / paused list (not freed while so) */
	struct conn *next_dirty, *next_ready, *next_paused;
	/* deferred work: entries (struct work_hdr + message) in wbuf[whead, wtail) */
	uint8_t *wbuf;
	size_t whead, wtail, wcap;
	uint32_t work_live;     /* entries neither run nor dropped */
	uint32_t work_reqs;     /* of which request messages, */
	size_t work_bytes;      /* and their bytes */
	uint32_t seq_reqs;      /* requests on the sequencer (svc charges them) */
	uint64_t seq_bytes;
	uint8_t *held;          /* received while paused: fed when it resumes */
	size_t nheld, held_cap;
	struct msghdr msg;
	struct iovec iov[CONN_IOV_MAX];
};

struct reactor {
	struct server *srv;
	int index;
	struct io_uring ring;
	pthread_t thread;
	bool started;
	int efd;
	uint64_t efd_val;
	_Alignas(64) _Atomic(struct seq_req *) done;
	_Atomic(struct watch_batch *) wdone; /* committed batches for our watchers */
	_Alignas(64) _Atomic int waiting;
	int listen_fds[CONFIG_URLS_MAX];
	bool listen_tls[CONFIG_URLS_MAX];
	int n_listen;
	struct tls_ctx *tls_ctx; /* this reactor's reference; reloaded on its own thread */
	unsigned tls_reload_gen, ticks;
	uint8_t *plain;          /* decrypted bytes on their way to HTTP/2 */
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	struct conn **conns; /* by slot; NULL when free */
	uint32_t n_slots, cap_slots;
	uint32_t *free_slots;
	uint32_t n_free_slots;
	uint32_t gen_next;
	struct conn *dirty;
	struct svc_thread *svc;
	struct __kernel_timespec tick_ts;
	int qsbr_slot;
	uint64_t now_ms;
	uint64_t n_conns;
	struct conn *ready_head, *ready_tail; /* connections with work queued */
	struct conn *paused;                  /* connections not read, to resume */
	uint64_t reqs, bytes;   /* every connection's work queued + requests on the sequencer */
	int reserve_fd;         /* given up to accept-and-close when out of descriptors */
	bool accept_armed[CONFIG_URLS_MAX];
	uint64_t accept_retry_ms[CONFIG_URLS_MAX]; /* backing off after an error: re-armed by the tick */
};

/* Client connections of every reactor, and their cap (RLIMIT_NOFILE minus FD_RESERVE). */
static _Atomic long reactor_conns_open;
static long reactor_conns_max = 1L << 30;

/* One deferred event of a call, followed by its message bytes. */
enum work_kind { WORK_MESSAGE, WORK_HALF_CLOSE };
struct work_hdr {
	uint32_t sid;
	int32_t method;
	uint32_t len;
	uint8_t kind;
	bool dead; /* run, or its call ended first */
};
#define WORK_HDR_SIZE ((sizeof(struct work_hdr) + 7) & ~(size_t)7)

static struct grpc_server_callbacks reactor_grpc_cb;

static uint64_t reactor_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t reactor_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static struct io_uring_sqe *reactor_sqe(struct reactor *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

	while (!sqe) {
		int rc = io_uring_submit(&r->ring);
		if (rc < 0 && rc != -EBUSY && rc != -EAGAIN)
			log_fatal("reactor %d: io_uring_submit: %s", r->index, strerror(-rc));
		sqe = io_uring_get_sqe(&r->ring);
	}
	return sqe;
}

/* ---------- listeners ---------- */

static int reactor_resolve(const struct config_url *u, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res;
	char port[8];
	const char *host = u->host[0] ? u->host : NULL;
	int rc;

	if (host && (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0))
		host = NULL;
	snprintf(port, sizeof port, "%u", u->port);
	if (!host)
		hints.ai_family = AF_INET;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc)
		return -EADDRNOTAVAIL;
	/* like etcd, "localhost" means the IPv4 loopback first */
	struct addrinfo *pick = res;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
		if (ai->ai_family == AF_INET) {
			pick = ai;
			break;
		}
	memcpy(ss, pick->ai_addr, pick->ai_addrlen);
	*len = pick->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int reactor_listen(struct reactor *r, const struct config_url *u)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1, rc;

	if (r->n_listen >= CONFIG_URLS_MAX)
		return -E2BIG;
	if (strcmp(u->scheme, "https") == 0 && !r->srv->tls_ctx)
		return -ENOKEY;
	rc = reactor_resolve(u, &ss, &len);
	if (rc)
		return rc;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* The port is ours alone, as etcd's: reactor 0 binds without SO_REUSEPORT, so the bind
	 * fails (EADDRINUSE) if any socket, another uetcd's included, holds the address; only
	 * then does it turn SO_REUSEPORT on (Linux checks the flag of bound sockets at each later
	 * bind), so our other reactors join its group. Another process's exclusive bind keeps
	 * failing while any of our sockets is bound: no window between a probe and the binds. */
	bool first = r->index == 0;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    (!first && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 || bind(fd, (struct sockaddr *)&ss, len) < 0 ||
	    (first && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) || listen(fd, 4096) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	r->listen_tls[r->n_listen] = strcmp(u->scheme, "https") == 0;
	r->listen_fds[r->n_listen++] = fd;
	return 0;
}

static void reactor_arm_accept(struct reactor *r, int li)
{
	struct io_uring_sqe *sqe = reactor_sqe(r);

	io_uring_prep_multishot_accept(sqe, r->listen_fds[li], NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud_make(UD_ACCEPT, 0, (uint32_t)li));
	r->accept_armed[li] = true;
	r->accept_retry_ms[li] = 0;
}

/* Out of descriptors: what waits in the backlog can neither be accepted nor refused, and
 * accepting again at once would fail at once (a spin). Give up the reserve descriptor for
 * a moment to accept and close what waits, so those clients hear at once instead of
 * hanging, then take the reserve back. The listener is ours alone (SO_REUSEPORT), so a
 * poll that says "ready" means accept4 will not block. */
static void reactor_shed(struct reactor *r, int li)
{
	int shed = 0;

	if (r->reserve_fd >= 0)
		close(r->reserve_fd);
	for (; shed < ACCEPT_SHED_MAX; shed++) {
		struct pollfd p = {.fd = r->listen_fds[li], .events = POLLIN};
		int fd;
		if (poll(&p, 1, 0) <= 0 || (fd = accept4(r->listen_fds[li], NULL, NULL, SOCK_CLOEXEC)) < 0)
			break;
		close(fd);
	}
	r->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	log_warn_limited("reactor %d: out of file descriptors (%ld client connections open): closed %d waiting "
			 "connection(s)",
			 r->index, atomic_load(&reactor_conns_open), shed);
}

static void reactor_accept_failed(struct reactor *r, int li, int err)
{
	log_warn_limited("reactor %d: accept: %s; trying again in %d ms", r->index, strerror(err), ACCEPT_BACKOFF_MS);
	if (err == EMFILE || err == ENFILE)
		reactor_shed(r, li);
	r->accept_retry_ms[li] = r->now_ms + ACCEPT_BACKOFF_MS;
}

/* ---------- connections ---------- */

static uint64_t conn_id(const struct conn *c) { return (uint64_t)c->gen << 32 | c->slot; }

static struct conn *reactor_conn_lookup(struct reactor *r, uint32_t slot, uint32_t gen)
{
	if (slot >= r->n_slots)
		return NULL;
	struct conn *c = r->conns[slot];
	return c && (c->gen & 0xffffffu) == (gen & 0xffffffu) ? c : NULL;
}

static void conn_mark_dirty(struct conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	c->next_dirty = c->r->dirty;
	c->r->dirty = c;
}

static void conn_arm_recv(struct conn *c)
{
	struct io_uring_sqe *sqe = reactor_sqe(c->r);

	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RECV_BGID;
	io_uring_sqe_set_data64(sqe, ud_make(UD_RECV, c->gen, c->slot));
	c->recv_armed = true;
	c->inflight++;
}

/* A connection is freed only once nothing refers to it: no operation in the kernel, not
 * on the dirty, ready or paused list (each list's walk frees a closing one it drops). */
static bool conn_can_free(const struct conn *c)
{
	return c->inflight == 0 && !c->dirty && !c->in_ready && !c->in_paused;
}

/* Drops every queued request unrun (the connection is closing). */
static void conn_work_drop(struct conn *c)
{
	struct reactor *r = c->r;

	r->reqs -= c->work_reqs;
	r->bytes -= c->work_bytes;
	c->work_live = c->work_reqs = 0;
	c->work_bytes = 0;
	c->whead = c->wtail = c->wcap = 0;
	free(c->wbuf);
	c->wbuf = NULL;
	free(c->held);
	c->held = NULL;
	c->nheld = c->held_cap = 0;
}

static void conn_free(struct conn *c)
{
	struct reactor *r = c->r;

	conn_work_drop(c);
	if (c->g)
		grpc_conn_free(c->g);
	if (c->h) {
		svc_http_closed(r->svc, c->h); /* a gateway watch ends with its connection */
		http1_conn_free(c->h);
	}
	tls_conn_free(c->tls);
	free(c->peer_cn);
	close(c->fd);
	r->conns[c->slot] = NULL;
	r->free_slots[r->n_free_slots++] = c->slot;
	r->n_conns--;
	atomic_fetch_sub(&reactor_conns_open, 1);
	free(c);
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->close_when_flushed) {
		/* a peer we are throwing out (protocol error): reset, so it stops sending now
		 * instead of filling buffers until a FIN reaches it */
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	}
	/* ends the multishot receive (and any send) so inflight can drain */
	shutdown(c->fd, SHUT_RDWR);
	conn_work_drop(c); /* a closed connection's queued requests are not run */
	if (conn_can_free(c))
		conn_free(c);
}

static void conn_op_done(struct conn *c)
{
	c->inflight--;
	if (c->closing && conn_can_free(c))
		conn_free(c);
}

static void reactor_accept(struct reactor *r, int fd, int li)
{
	struct conn *c;
	int one = 1;

	if (atomic_fetch_add(&reactor_conns_open, 1) >= reactor_conns_max) {
		/* the limit on connections: the descriptors left are the log's and checkpoints' */
		atomic_fetch_sub(&reactor_conns_open, 1);
		close(fd);
		log_warn_limited("reactor %d: %ld client connections open (the limit: RLIMIT_NOFILE less %d): refusing "
				 "a connection",
				 r->index, reactor_conns_max, FD_RESERVE);
		return;
	}
	if (r->n_free_slots == 0) {
		if (r->n_slots == r->cap_slots) {
			uint32_t ncap = r->cap_slots ? r->cap_slots * 2 : 1024;
			if (ncap > SLOTS_MAX || !(r->conns = realloc(r->conns, ncap * sizeof *r->conns)) ||
			    !(r->free_slots = realloc(r->free_slots, ncap * sizeof *r->free_slots))) {
				log_warn_limited("reactor %d: connection table full, refusing a connection", r->index);
				atomic_fetch_sub(&reactor_conns_open, 1);
				close(fd);
				return;
			}
			r->cap_slots = ncap;
		}
		r->conns[r->n_slots] = NULL;
		r->free_slots[r->n_free_slots++] = r->n_slots++;
	}
	c = calloc(1, sizeof *c);
	if (!c) {
		atomic_fetch_sub(&reactor_conns_open, 1);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->r = r;
	c->fd = fd;
	c->slot = r->free_slots[--r->n_free_slots];
	c->gen = ++r->gen_next & 0xffffffu;
	c->accepted_ms = r->now_ms;
	if (r->listen_tls[li] && !(c->tls = tls_conn_new(r->tls_ctx))) {
		r->free_slots[r->n_free_slots++] = c->slot;
		atomic_fetch_sub(&reactor_conns_open, 1);
		close(fd);
		free(c);
		return;
	}
	r->conns[c->slot] = c;
	r->n_conns++;
	conn_arm_recv(c); /* the client speaks first: its first bytes choose HTTP/2 or HTTP/1.1 */
}

static void reactor_cb_http(void *user, struct http1_conn *h, const struct http1_request *req);

/* Starts the protocol the client asked for: ALPN under TLS, else the first bytes (the
 * HTTP/2 preface, or an HTTP/1.x request line). Anything else goes to HTTP/2, which
 * answers garbage with the right error. */
static int conn_proto_start(struct conn *c, const uint8_t *first, size_t len)
{
	const char *alpn = c->tls ? tls_conn_alpn(c->tls) : NULL;
	bool http1 = alpn ? strcmp(alpn, "http/1.1") == 0 : http1_sniff(first, len) == HTTP1_SNIFF_HTTP1;

	if (http1) {
		struct http1_config hc;
		http1_config_default(&hc);
		hc.max_body_bytes = c->r->srv->limits.max_request_bytes + (512 << 10);
		c->h = http1_conn_new(&hc, reactor_cb_http, c);
		return c->h ? 0 : -1;
	}
	c->g = grpc_conn_new(&c->r->srv->grpc, &reactor_grpc_cb, c);
	if (!c->g)
		return -1;
	grpc_conn_set_now(c->g, c->r->now_ms);
	return 0;
}

/* Plaintext bytes up to whichever protocol the connection speaks. Returns < 0 when the
 * connection must end once its output is sent. */
static int conn_proto_recv(struct conn *c, const uint8_t *data, size_t len)
{
	if (!c->g && !c->h) {
		size_t take = 0;
		bool alpn = c->tls && tls_conn_alpn(c->tls);
		if (!alpn && (c->nsniff || len < sizeof c->sniff)) {
			take = sizeof c->sniff - c->nsniff < len ? sizeof c->sniff - c->nsniff : len;
			memcpy(c->sniff + c->nsniff, data, take);
			c->nsniff += (uint8_t)take;
			if (c->nsniff < sizeof c->sniff && http1_sniff(c->sniff, c->nsniff) == HTTP1_SNIFF_MORE)
				return 0;
		}
		if (conn_proto_start(c, c->nsniff ? c->sniff : data, c->nsniff ? c->nsniff : len) < 0)
			return -1;
		if (c->nsniff && conn_proto_recv(c, c->sniff, c->nsniff) < 0)
			return -1;
		data += take;
		len -= take;
		if (!len)
			return 0;
	}
	if (c->h)
		return http1_conn_recv(c->h, data, len);
	grpc_conn_set_now(c->g, c->r->now_ms);
	return grpc_conn_recv(c->g, data, len);
}

static size_t conn_proto_output(struct conn *c, struct iovec *iov, size_t max)
{
	return c->g ? grpc_conn_output(c->g, iov, max) : c->h ? http1_conn_output(c->h, iov, max) : 0;
}

static void conn_proto_consumed(struct conn *c, size_t n)
{
	if (c->g)
		grpc_conn_output_consumed(c->g, n);
	else if (c->h)
		http1_conn_output_consumed(c->h, n);
}

static bool conn_proto_has_output(const struct conn *c)
{
	return c->g ? grpc_conn_has_output(c->g) : c->h ? http1_conn_has_output(c->h) : false;
}

static bool conn_proto_done(const struct conn *c)
{
	return c->g ? grpc_conn_done(c->g) : c->h ? http1_conn_done(c->h) : false;
}

/* Ciphertext in, plaintext up to the protocol. Returns < 0 when the connection must end
 * once its output (a TLS alert, a GOAWAY) is sent. */
static int conn_recv_tls(struct conn *c, const uint8_t *data, size_t len)
{
	struct reactor *r = c->r;
	ssize_t n;

	if (tls_conn_feed(c->tls, data, len) < 0)
		return -1;
	while ((n = tls_conn_read(c->tls, r->plain, PLAIN_BUF_SIZE)) > 0) {
		if (!c->cn_checked && r->srv->cfg->client_cert_auth) {
			char cn[256];
			c->cn_checked = true;
			if (tls_conn_peer_cn(c->tls, cn, sizeof cn) > 0) {
				c->peer_cn = strdup(cn);
				log_debug("tls: client certificate CN \"%s\" on reactor %d", cn, r->index);
			}
		}
		if (conn_proto_recv(c, r->plain, (size_t)n) < 0)
			return -1;
	}
	if (n < 0) {
		if (n != -ESHUTDOWN) /* worded and rate-limited by tls/ */
			tls_log_rejected(r->index, tls_conn_error(c->tls) ? tls_conn_error(c->tls) : strerror((int)-n),
					 r->now_ms);
		return -1;
	}
	return 0;
}

/* ---------- bounds: requests in flight, pausing and resuming a connection ---------- */

static bool conn_over(const struct conn *c)
{
	const struct reactor *r = c->r;

	return c->work_reqs + c->seq_reqs >= CONN_REQS_MAX || c->work_bytes + c->seq_bytes >= CONN_BYTES_MAX ||
	       r->reqs >= SEQ_REACTOR_REQS_MAX || r->bytes >= SEQ_REACTOR_BYTES_MAX;
}

static bool conn_may_resume(const struct conn *c)
{
	const struct reactor *r = c->r;

	return c->work_reqs + c->seq_reqs <= CONN_REQS_RESUME && c->work_bytes + c->seq_bytes <= CONN_BYTES_MAX / 2 &&
	       r->reqs <= SEQ_REACTOR_REQS_MAX / 4 * 3 && r->bytes <= SEQ_REACTOR_BYTES_MAX / 4 * 3;
}

/* Enforces CONN_REQS_MAX, CONN_BYTES_MAX and SEQ_REACTOR_*_MAX: stop reading c. What the
 * receive buffer being parsed still holds is parsed (at most RECV_BUF_SIZE more bytes of
 * requests); what arrives before the cancel lands is held. */
static void conn_maybe_pause(struct conn *c)
{
	struct reactor *r = c->r;

	if (c->paused || c->closing || !conn_over(c))
		return;
	c->paused = true;
	log_info_limited("reactor %d: a connection has %u requests (%zu bytes) in flight, the reactor %llu: not "
			 "reading it until they drain",
			 r->index, c->work_reqs + c->seq_reqs, (size_t)(c->work_bytes + c->seq_bytes),
			 (unsigned long long)r->reqs);
	if (!c->in_paused) {
		c->in_paused = true;
		c->next_paused = r->paused;
		r->paused = c;
	}
	if (c->recv_armed) {
		struct io_uring_sqe *sqe = reactor_sqe(r);
		io_uring_prep_cancel64(sqe, ud_make(UD_RECV, c->gen, c->slot), 0);
		io_uring_sqe_set_data64(sqe, ud_make(UD_CANCEL, 0, 0));
	}
}

/* svc's charge for a request handed to the sequencer (reqs -1: the hand-off failed). */
static void reactor_charge(void *arg, uint64_t id, int reqs, int64_t bytes)
{
	struct reactor *r = arg;
	struct conn *c = reactor_conn_lookup(r, (uint32_t)id, (uint32_t)(id >> 32));

	r->reqs += (uint64_t)(int64_t)reqs;
	r->bytes += (uint64_t)bytes;
	if (!c)
		return;
	c->seq_reqs += (uint32_t)reqs;
	c->seq_bytes += (uint64_t)bytes;
	if (reqs > 0)
		conn_maybe_pause(c);
}

/* Received bytes (ciphertext under TLS) up to the protocol, or held while paused. */
static void conn_feed(struct conn *c, const uint8_t *data, size_t len)
{
	if (c->closing || c->close_when_flushed)
		return;
	if (c->paused) {
		if (c->nheld + len > CONN_HELD_MAX) {
			log_warn_limited("reactor %d: a paused connection kept sending past %u bytes: closing it",
					 c->r->index, CONN_HELD_MAX);
			conn_close(c);
			return;
		}
		if (c->nheld + len > c->held_cap) {
			size_t cap = c->held_cap ? c->held_cap : RECV_BUF_SIZE;
			while (cap < c->nheld + len)
				cap *= 2;
			uint8_t *nb = realloc(c->held, cap);
			if (!nb) {
				conn_close(c);
				return;
			}
			c->held = nb;
			c->held_cap = cap;
		}
		memcpy(c->held + c->nheld, data, len);
		c->nheld += len;
		return;
	}
	if ((c->tls ? conn_recv_tls(c, data, len) : conn_proto_recv(c, data, len)) < 0)
		c->close_when_flushed = true;
	conn_mark_dirty(c);
}

/* Top of a turn: connections back under their bounds are read again, held bytes first. */
static void reactor_resume(struct reactor *r)
{
	struct conn *c = r->paused, *next;

	r->paused = NULL;
	for (; c; c = next) {
		next = c->next_paused;
		/* c stays marked in_paused while it is worked on, so nothing frees it meanwhile */
		if (!c->closing && conn_may_resume(c)) {
			c->paused = false;
			/* held bytes go up a receive buffer's worth at a time, as they would have
			 * come: if they pause it again, the rest stays held */
			size_t off = 0;
			while (off < c->nheld && !c->paused && !c->closing) {
				size_t n = c->nheld - off < RECV_BUF_SIZE ? c->nheld - off : RECV_BUF_SIZE;
				conn_feed(c, c->held + off, n);
				off += n;
			}
			if (c->held && off) {
				memmove(c->held, c->held + off, c->nheld - off);
				c->nheld -= off;
			}
			if (c->held && !c->nheld) {
				free(c->held);
				c->held = NULL;
				c->held_cap = 0;
			}
			if (!c->paused && !c->recv_armed && !c->closing && !c->close_when_flushed)
				conn_arm_recv(c);
		}
		if (c->closing || !c->paused) {
			c->in_paused = false;
			if (c->closing && conn_can_free(c))
				conn_free(c);
			continue;
		}
		c->next_paused = r->paused; /* still (or again) over its bounds */
		r->paused = c;
	}
}

static void reactor_recv_done(struct reactor *r, struct conn *c, struct io_uring_cqe *cqe)
{
	if (cqe->res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		uint8_t *data = r->bufs + (size_t)bid * RECV_BUF_SIZE;
		conn_feed(c, data, (size_t)cqe->res);
		io_uring_buf_ring_add(r->br, data, RECV_BUF_SIZE, (unsigned short)bid,
				      io_uring_buf_ring_mask(RECV_BUF_COUNT), 0);
		io_uring_buf_ring_advance(r->br, 1);
	}
	if (cqe->flags & IORING_CQE_F_MORE)
		return;
	c->recv_armed = false;
	c->inflight--;
	if (c->closing) {
		if (conn_can_free(c))
			conn_free(c);
		return;
	}
	if (cqe->res == 0 || (cqe->res < 0 && cqe->res != -ENOBUFS && cqe->res != -ECANCELED)) {
		/* the peer is gone (or reset): nothing it sends can be answered */
		conn_close(c);
		return;
	}
	/* multishot ended (buffers ran out, the kernel stopped it, or we paused it): arm
	 * again unless paused; reactor_resume arms a paused one */
	if (!c->paused && !c->close_when_flushed)
		conn_arm_recv(c);
}

/* ---------- deferred work: a connection's request messages, run in turns ---------- */

static size_t work_size(uint32_t len) { return WORK_HDR_SIZE + (((size_t)len + 7) & ~(size_t)7); }

static void reactor_ready_push(struct reactor *r, struct conn *c)
{
	c->in_ready = true;
	c->next_ready = NULL;
	if (r->ready_tail)
		r->ready_tail->next_ready = c;
	else
		r->ready_head = c;
	r->ready_tail = c;
}

/* Queues one event of a call; false when memory ran out. */
static bool conn_work_append(struct conn *c, enum work_kind kind, uint32_t sid, int method, const uint8_t *msg,
			     size_t len)
{
	struct reactor *r = c->r;
	size_t need = work_size((uint32_t)len);

	if (c->wtail + need > c->wcap) {
		size_t live = c->wtail - c->whead;
		if (c->whead) {
			memmove(c->wbuf, c->wbuf + c->whead, live);
			c->whead = 0;
			c->wtail = live;
		}
		if (live + need > c->wcap) {
			size_t cap = c->wcap ? c->wcap : WORK_BUF_MIN;
			while (cap < live + need)
				cap *= 2;
			uint8_t *nb = realloc(c->wbuf, cap);
			if (!nb)
				return false;
			c->wbuf = nb;
			c->wcap = cap;
		}
	}
	struct work_hdr *h = (struct work_hdr *)(c->wbuf + c->wtail);
	*h = (struct work_hdr){.sid = sid, .method = method, .len = (uint32_t)len, .kind = (uint8_t)kind};
	if (len)
		memcpy((uint8_t *)h + WORK_HDR_SIZE, msg, len);
	c->wtail += need;
	c->work_live++;
	if (kind == WORK_MESSAGE) {
		c->work_reqs++;
		c->work_bytes += len;
		r->reqs++;
		r->bytes += len;
	}
	if (!c->in_ready)
		reactor_ready_push(r, c);
	return true;
}

static void conn_work_kill(struct conn *c, struct work_hdr *h)
{
	struct reactor *r = c->r;

	h->dead = true;
	c->work_live--;
	if (h->kind == WORK_MESSAGE) {
		c->work_reqs--;
		c->work_bytes -= h->len;
		r->reqs--;
		r->bytes -= h->len;
	}
	if (!c->work_live) /* only dead entries left: reclaim them all */
		c->whead = c->wtail = 0;
}

/* A call ended (reset, deadline, answered): whatever it still had queued is dropped. */
static void conn_work_call_end(struct conn *c, uint32_t sid)
{
	for (size_t off = c->whead; c->work_live && off < c->wtail;) {
		struct work_hdr *h = (struct work_hdr *)(c->wbuf + off);
		off += work_size(h->len);
		if (!h->dead && h->sid == sid)
			conn_work_kill(c, h);
	}
}

/* Runs c's share of this turn: CONN_TURN_REQS events or CONN_TURN_US, at least one. */
static void conn_work_run(struct conn *c)
{
	struct reactor *r = c->r;
	uint64_t start = 0;
	unsigned n = 0;

	while (c->whead < c->wtail && !c->closing) {
		struct work_hdr *h = (struct work_hdr *)(c->wbuf + c->whead);
		if (h->dead) {
			c->whead += work_size(h->len);
			continue;
		}
		if (n == CONN_TURN_REQS || (n && reactor_clock_us() - start >= CONN_TURN_US))
			break;
		if (!n)
			start = reactor_clock_us();
		struct work_hdr w = *h;
		const uint8_t *msg = (const uint8_t *)h + WORK_HDR_SIZE; /* stays put: nothing appends meanwhile */
		c->whead += work_size(h->len);
		conn_work_kill(c, h); /* consumed */
		if (w.kind == WORK_MESSAGE)
			svc_on_message(r->svc, c->g, conn_id(c), w.sid, w.method, msg, w.len);
		else
			svc_on_half_close(r->svc, c->g, conn_id(c), w.sid, w.method);
		n++;
	}
	if (c->whead >= c->wtail) {
		c->whead = c->wtail = 0;
		if (c->wcap > WORK_BUF_KEEP) {
			free(c->wbuf);
			c->wbuf = NULL;
			c->wcap = 0;
		}
	}
	if (n)
		conn_mark_dirty(c);
}

/* Each connection with work gets its share, in round robin. */
static void reactor_run_work(struct reactor *r)
{
	struct conn *c = r->ready_head, *next;

	r->ready_head = r->ready_tail = NULL;
	for (; c; c = next) {
		next = c->next_ready;
		if (!c->closing && !atomic_load_explicit(&r->srv->stopping, memory_order_relaxed))
			conn_work_run(c);
		c->in_ready = false; /* only now: nothing may free c while its work runs */
		if (c->closing) {
			if (conn_can_free(c))
				conn_free(c);
			continue;
		}
		if (c->work_live)
			reactor_ready_push(r, c);
	}
}

/* Moves HTTP/2 output into TLS records (as much as TLS takes), then returns the ciphertext
 * to send. */
static size_t conn_output_tls(struct conn *c)
{
	size_t n = conn_proto_output(c, c->iov, CONN_IOV_MAX);

	if (n && tls_conn_handshake_done(c->tls)) {
		ssize_t w = tls_conn_writev(c->tls, c->iov, n);
		if (w > 0)
			conn_proto_consumed(c, (size_t)w);
	}
	return tls_conn_output(c->tls, c->iov, CONN_IOV_MAX);
}

static bool conn_has_output(const struct conn *c)
{
	if (c->tls)
		return tls_conn_output_bytes(c->tls) > 0 || (tls_conn_handshake_done(c->tls) && conn_proto_has_output(c));
	return conn_proto_has_output(c);
}

static void conn_send(struct conn *c)
{
	size_t n = c->tls ? conn_output_tls(c) : conn_proto_output(c, c->iov, CONN_IOV_MAX);
	struct io_uring_sqe *sqe;

	if (n == 0)
		return;
	memset(&c->msg, 0, sizeof c->msg);
	c->msg.msg_iov = c->iov;
	c->msg.msg_iovlen = n;
	sqe = reactor_sqe(c->r);
	io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud_make(UD_SEND, c->gen, c->slot));
	c->sending = true;
	c->inflight++;
}

static void reactor_send_done(struct conn *c, int res)
{
	c->sending = false;
	if (res < 0) {
		if (c->closing) {
			conn_op_done(c); /* may free c */
			return;
		}
		c->inflight--;
		conn_close(c);
		return;
	}
	if (c->tls)
		tls_conn_output_consumed(c->tls, (size_t)res);
	else
		conn_proto_consumed(c, (size_t)res);
	conn_mark_dirty(c);
	conn_op_done(c);
}

/* Step 3 of the turn: one send per connection with output and nothing in flight. */
static void reactor_flush(struct reactor *r)
{
	struct conn *c = r->dirty, *n;

	r->dirty = NULL;
	for (; c; c = n) {
		n = c->next_dirty;
		c->dirty = false;
		if (c->closing) {
			if (conn_can_free(c))
				conn_free(c);
			continue;
		}
		if (c->close_when_flushed && !c->close_by_ms)
			c->close_by_ms = r->now_ms + CLOSE_FLUSH_MS;
		if (!c->sending && conn_has_output(c))
			conn_send(c);
		/* output that cannot go (a peer window at zero) must not keep a dying
		 * connection open: close once nothing is in flight */
		if (!c->sending && (c->close_when_flushed || conn_proto_done(c)))
			conn_close(c);
	}
}

/* ---------- cross-thread completions ---------- */

static void reactor_wake(struct reactor *r)
{
	if (atomic_load(&r->waiting) && atomic_exchange(&r->waiting, 0)) {
		uint64_t one = 1;
		if (write(r->efd, &one, sizeof one) < 0 && errno != EAGAIN)
			log_fatal("reactor %d: eventfd write: %s", r->index, strerror(errno));
	}
}

void reactor_deliver(struct reactor *r, struct seq_req *list)
{
	struct seq_req *last = list;

	while (last->next)
		last = last->next;
	/* push the chain in arrival order onto a newest-first stack: reverse it on take */
	struct seq_req *old = atomic_load_explicit(&r->done, memory_order_relaxed);
	struct seq_req *rev = NULL, *n;
	for (struct seq_req *q = list; q; q = n) {
		n = q->next;
		q->next = rev;
		rev = q;
	}
	do {
		list->next = old;
	} while (!atomic_compare_exchange_weak(&r->done, &old, rev));
	reactor_wake(r);
}

void reactor_deliver_watch(struct reactor *r, struct watch_batch *b)
{
	struct watch_batch *old = atomic_load_explicit(&r->wdone, memory_order_relaxed);

	do {
		watch_batch_set_next(b, r->index, old);
	} while (!atomic_compare_exchange_weak(&r->wdone, &old, b));
	reactor_wake(r);
}

/* Batches come newest first off the stack: deliver them oldest first. Their number is
 * bounded by the sequencer's batches since our last turn, each one reference. */
static void reactor_drain_watch(struct reactor *r)
{
	struct watch_batch *list = atomic_exchange(&r->wdone, NULL), *fifo = NULL, *n;

	for (; list; list = n) {
		n = watch_batch_next(list, r->index);
		watch_batch_set_next(list, r->index, fifo);
		fifo = list;
	}
	for (; fifo; fifo = n) {
		n = watch_batch_next(fifo, r->index);
		svc_watch_deliver(r->svc, fifo);
	}
}

/* The done stack holds only requests this reactor handed over, so at most
 * SEQ_REACTOR_REQS_MAX counted ones plus parked calls (core/seq.h). */
static void reactor_drain_done(struct reactor *r)
{
	struct seq_req *list = atomic_exchange(&r->done, NULL), *fifo = NULL, *n;

	for (; list; list = n) {
		n = list->next;
		list->next = fifo;
		fifo = list;
	}
	for (struct seq_req *q = fifo; q; q = n) {
		n = q->next;
		q->next = NULL;
		struct conn *c = reactor_conn_lookup(r, (uint32_t)q->conn_id, (uint32_t)(q->conn_id >> 32));
		if (q->counted) /* back: it no longer counts against the bounds */
			reactor_charge(r, q->conn_id, -1, -(int64_t)q->in_bytes);
		if (q->http) {
			gateway_complete(r->svc, c && !c->closing ? c->h : NULL, q);
			if (c && !c->closing)
				conn_mark_dirty(c);
		} else if (c && !c->closing && c->g) {
			svc_complete(r->svc, c->g, q);
			conn_mark_dirty(c);
		} else {
			svc_complete(r->svc, NULL, q);
		}
	}
}

static void reactor_arm_wake(struct reactor *r)
{
	struct io_uring_sqe *sqe = reactor_sqe(r);

	io_uring_prep_read(sqe, r->efd, &r->efd_val, sizeof r->efd_val, 0);
	io_uring_sqe_set_data64(sqe, ud_make(UD_WAKE, 0, 0));
}

static void reactor_arm_tick(struct reactor *r)
{
	struct io_uring_sqe *sqe = reactor_sqe(r);

	r->tick_ts.tv_sec = 0;
	r->tick_ts.tv_nsec = TICK_MS * 1000000L;
	io_uring_prep_timeout(sqe, &r->tick_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_make(UD_TICK, 0, 0));
}

static void reactor_tls_reload(struct reactor *r)
{
	unsigned gen = atomic_load(&r->srv->tls_reload_gen);

	if (!r->tls_ctx || (++r->ticks % TLS_RELOAD_TICKS && gen == r->tls_reload_gen))
		return;
	if (tls_ctx_reload_if_changed(&r->tls_ctx, gen != r->tls_reload_gen) > 0 && r->index == 0)
		log_info("reloaded the TLS certificate and key for new connections");
	r->tls_reload_gen = gen;
}

static void reactor_tick(struct reactor *r)
{
	for (int li = 0; li < r->n_listen; li++)
		if (r->accept_retry_ms[li] && r->now_ms >= r->accept_retry_ms[li] && !r->accept_armed[li] &&
		    !atomic_load(&r->srv->stopping))
			reactor_arm_accept(r, li);
	reactor_tls_reload(r);
	svc_tick(r->svc, r->now_ms);
	for (uint32_t i = 0; i < r->n_slots; i++) {
		struct conn *c = r->conns[i];
		if (c && !c->closing && c->close_by_ms && r->now_ms > c->close_by_ms) {
			conn_close(c);
			continue;
		}
		if (c && !c->closing && c->tls && !tls_conn_handshake_done(c->tls) &&
		    r->now_ms - c->accepted_ms > TLS_HANDSHAKE_MS) {
			conn_close(c); /* a client that never finishes its handshake holds nothing for long */
			continue;
		}
		if (c && !c->closing && c->g) {
			grpc_conn_tick(c->g, r->now_ms);
			if (conn_has_output(c))
				conn_mark_dirty(c);
		}
	}
}

static void reactor_handle(struct reactor *r, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	struct conn *c;

	switch (ud_type(ud)) {
	case UD_ACCEPT: {
		int li = (int)ud_slot(ud);
		if (cqe->res >= 0)
			reactor_accept(r, cqe->res, li);
		else if (cqe->res != -ECANCELED)
			reactor_accept_failed(r, li, -cqe->res);
		if (cqe->flags & IORING_CQE_F_MORE) {
			if (r->accept_retry_ms[li]) { /* backing off: stop it; the tick arms it again */
				struct io_uring_sqe *sqe = reactor_sqe(r);
				io_uring_prep_cancel64(sqe, ud, 0);
				io_uring_sqe_set_data64(sqe, ud_make(UD_CANCEL, 0, 0));
			}
			break;
		}
		r->accept_armed[li] = false;
		if (!r->accept_retry_ms[li] && !atomic_load(&r->srv->stopping))
			reactor_arm_accept(r, li);
		break;
	}
	case UD_RECV:
		c = reactor_conn_lookup(r, ud_slot(ud), ud_gen(ud));
		if (c)
			reactor_recv_done(r, c, cqe);
		break;
	case UD_SEND:
		c = reactor_conn_lookup(r, ud_slot(ud), ud_gen(ud));
		if (c)
			reactor_send_done(c, cqe->res);
		break;
	case UD_WAKE:
		reactor_arm_wake(r);
		break;
	case UD_TICK:
		r->now_ms = reactor_clock_ms();
		reactor_tick(r);
		reactor_arm_tick(r);
		break;
	default:
		break;
	}
}

/* ---------- grpc callbacks: the connection is `user` ---------- */

static int reactor_cb_route(void *user, const char *path, size_t len) { return svc_route(path, len); }

static void reactor_cb_call_start(void *user, uint32_t sid, int method, const struct grpc_header *h, size_t n)
{
	struct conn *c = user;
	const char *token = NULL;
	size_t tlen = 0;

	/* etcd's clients send their auth token as "token" metadata; "authorization" is what
	 * etcd also reads (its gateway forwards that header). As etcd: the first "token",
	 * else the first "authorization". Only looked for with auth on. */
	for (size_t i = 0; c->r->srv->auth && authsvc_enabled(c->r->srv->auth) && i < n; i++)
		if ((h[i].name_len == 5 && !memcmp(h[i].name, "token", 5)) ||
		    (!token && h[i].name_len == 13 && !memcmp(h[i].name, "authorization", 13))) {
			token = (const char *)h[i].value;
			tlen = h[i].value_len;
			if (h[i].name_len == 5)
				break;
		}
	svc_on_call_start(c->r->svc, c->g, c, sid, method, token, tlen);
}

/* A request message or a half-close: queued, run in this connection's share of the next
 * turn (the file header says why). */
static void reactor_cb_message(void *user, uint32_t sid, int method, const uint8_t *msg, size_t len)
{
	struct conn *c = user;

	if (!conn_work_append(c, WORK_MESSAGE, sid, method, msg, len)) {
		grpc_send_status(c->g, sid, GRPC_RESOURCE_EXHAUSTED, "uetcd: out of memory for the request");
		return;
	}
	conn_maybe_pause(c);
}

static void reactor_cb_half_close(void *user, uint32_t sid, int method)
{
	struct conn *c = user;

	if (!conn_work_append(c, WORK_HALF_CLOSE, sid, method, NULL, 0))
		grpc_send_status(c->g, sid, GRPC_RESOURCE_EXHAUSTED, "uetcd: out of memory for the request");
}

static void reactor_cb_call_end(void *user, uint32_t sid, int method, void *call_user)
{
	struct conn *c = user;

	if (c->work_live)
		conn_work_call_end(c, sid);
	svc_on_call_end(c->r->svc, c->g, conn_id(c), sid, method, call_user);
}

static void reactor_conn_dirty(void *conn_user) { conn_mark_dirty(conn_user); }

static void reactor_cb_http(void *user, struct http1_conn *h, const struct http1_request *req)
{
	struct conn *c = user;

	if (!gateway_handle(c->r->svc, h, c, conn_id(c), req))
		http_handle(c->r->srv, h, req);
	conn_mark_dirty(c);
}

static struct grpc_server_callbacks reactor_grpc_cb = {
	.route = reactor_cb_route,
	.on_call_start = reactor_cb_call_start,
	.on_message = reactor_cb_message,
	.on_half_close = reactor_cb_half_close,
	.on_call_end = reactor_cb_call_end,
};

/* ---------- thread ---------- */

static int reactor_ring_init(struct reactor *r)
{
	struct io_uring_params p;
	int rc;

	/* SINGLE_ISSUER + DEFER_TASKRUN: only this thread submits, and completion work runs
	 * when we enter the ring to wait, not by interrupting us mid-turn. COOP_TASKRUN is the
	 * fallback for kernels without DEFER_TASKRUN. CQSIZE: many multishot completions can
	 * land in one turn. */
	memset(&p, 0, sizeof p);
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
		  IORING_SETUP_DEFER_TASKRUN;
	p.cq_entries = RING_CQ_ENTRIES;
	rc = io_uring_queue_init_params(RING_ENTRIES, &r->ring, &p);
	if (rc == -EINVAL) {
		memset(&p, 0, sizeof p);
		p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
		p.cq_entries = RING_CQ_ENTRIES;
		rc = io_uring_queue_init_params(RING_ENTRIES, &r->ring, &p);
	}
	if (rc < 0)
		return rc;

	size_t ring_bytes = RECV_BUF_COUNT * sizeof(struct io_uring_buf);
	void *mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)mem, .ring_entries = RECV_BUF_COUNT, .bgid = RECV_BGID};
	rc = io_uring_register_buf_ring(&r->ring, &reg, 0);
	if (rc < 0)
		return rc;
	r->br = mem;
	io_uring_buf_ring_init(r->br);
	r->bufs = malloc((size_t)RECV_BUF_COUNT * RECV_BUF_SIZE);
	if (!r->bufs)
		return -ENOMEM;
	for (unsigned i = 0; i < RECV_BUF_COUNT; i++)
		io_uring_buf_ring_add(r->br, r->bufs + (size_t)i * RECV_BUF_SIZE, RECV_BUF_SIZE, (unsigned short)i,
				      io_uring_buf_ring_mask(RECV_BUF_COUNT), (int)i);
	io_uring_buf_ring_advance(r->br, RECV_BUF_COUNT);
	return 0;
}

/* On the way out: end streaming calls with UNAVAILABLE, say GOAWAY, and push what is
 * queued with non-blocking sends (best effort: the process is exiting). */
static void reactor_shutdown(struct reactor *r)
{
	svc_stop(r->svc);
	for (uint32_t i = 0; i < r->n_slots; i++) {
		struct conn *c = r->conns[i];
		if (!c || c->closing || c->sending)
			continue;
		if (c->g)
			grpc_conn_goaway(c->g);
		for (int tries = 0; tries < 8 && conn_has_output(c); tries++) {
			size_t n = c->tls ? conn_output_tls(c) : conn_proto_output(c, c->iov, CONN_IOV_MAX);
			struct msghdr m = {.msg_iov = c->iov, .msg_iovlen = n};
			ssize_t sent = n ? sendmsg(c->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) : 0;
			if (sent <= 0)
				break;
			if (c->tls)
				tls_conn_output_consumed(c->tls, (size_t)sent);
			else
				conn_proto_consumed(c, (size_t)sent);
		}
	}
}

static void *reactor_main(void *arg)
{
	struct reactor *r = arg;
	struct qsbr *q = r->srv->qsbr;
	int rc;

	rc = reactor_ring_init(r);
	if (rc < 0)
		log_fatal("reactor %d: io_uring setup: %s", r->index, strerror(-rc));
	r->now_ms = reactor_clock_ms();
	for (int i = 0; i < r->n_listen; i++)
		reactor_arm_accept(r, i);
	reactor_arm_wake(r);
	reactor_arm_tick(r);

	while (!atomic_load(&r->srv->stopping)) {
		reactor_drain_done(r);
		reactor_drain_watch(r);
		reactor_run_work(r);
		reactor_resume(r);
		svc_flush(r->svc);
		reactor_flush(r);
		qsbr_quiescent(q, r->qsbr_slot);

		atomic_store(&r->waiting, 1);
		if (r->ready_head || atomic_load(&r->done) || atomic_load(&r->wdone)) {
			atomic_store(&r->waiting, 0);
			rc = io_uring_submit_and_get_events(&r->ring); /* runs deferred task work too */
		} else {
			qsbr_offline(q, r->qsbr_slot);
			rc = io_uring_submit_and_wait(&r->ring, 1);
			qsbr_online(q, r->qsbr_slot);
			atomic_store(&r->waiting, 0);
		}
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME)
			log_fatal("reactor %d: io_uring_enter: %s", r->index, strerror(-rc));
		r->now_ms = reactor_clock_ms();

		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&r->ring, head, cqe)
		{
			reactor_handle(r, cqe);
			seen++;
		}
		io_uring_cq_advance(&r->ring, seen);
	}
	reactor_shutdown(r);
	qsbr_offline(q, r->qsbr_slot);
	return NULL;
}

struct reactor *reactor_new(struct server *srv, int index)
{
	struct reactor *r = aligned_alloc(64, (sizeof *r + 63) & ~(size_t)63);

	if (!r)
		log_fatal("reactor: out of memory");
	memset(r, 0, sizeof *r);
	r->srv = srv;
	r->index = index;
	atomic_init(&r->done, NULL);
	atomic_init(&r->wdone, NULL);
	atomic_init(&r->waiting, 0);
	r->efd = eventfd(0, EFD_CLOEXEC); /* blocking: io_uring would answer EAGAIN on a non-blocking one */
	if (r->efd < 0)
		log_fatal("reactor: eventfd: %s", strerror(errno));
	r->svc = svc_thread_new(srv, index, reactor_conn_dirty);
	svc_set_charge(r->svc, reactor_charge, r);
	r->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	struct rlimit rl;
	if (index == 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		reactor_conns_max = rl.rlim_cur > 2 * FD_RESERVE ? (long)rl.rlim_cur - FD_RESERVE : (long)rl.rlim_cur / 2;
	if (srv->tls_ctx) {
		r->tls_ctx = tls_ctx_ref(srv->tls_ctx);
		r->tls_reload_gen = atomic_load(&srv->tls_reload_gen);
	}
	r->plain = malloc(PLAIN_BUF_SIZE);
	if (!r->plain)
		log_fatal("reactor: out of memory");
	/* registered here, before any thread runs, so reclamation never skips a reader */
	r->qsbr_slot = qsbr_reader_register(srv->qsbr);
	qsbr_offline(srv->qsbr, r->qsbr_slot);
	return r;
}

int reactor_start(struct reactor *r)
{
	char name[16];
	int rc = pthread_create(&r->thread, NULL, reactor_main, r);

	if (rc)
		return -rc;
	snprintf(name, sizeof name, "uetcd-r%d", r->index);
	pthread_setname_np(r->thread, name);
	r->started = true;
	return 0;
}

void reactor_stop(struct reactor *r)
{
	uint64_t one = 1;

	if (!r->started)
		return;
	if (write(r->efd, &one, sizeof one) < 0 && errno != EAGAIN)
		log_warn("reactor %d: eventfd write: %s", r->index, strerror(errno));
	pthread_join(r->thread, NULL);
	r->started = false;
}

void reactor_free(struct reactor *r)
{
	if (!r)
		return;
	reactor_stop(r);
	for (uint32_t i = 0; i < r->n_slots; i++) {
		struct conn *c = r->conns[i];
		if (c) {
			conn_work_drop(c);
			if (c->g)
				grpc_conn_free(c->g);
			if (c->h)
				http1_conn_free(c->h);
			tls_conn_free(c->tls);
			close(c->fd);
			free(c);
		}
	}
	for (int i = 0; i < r->n_listen; i++)
		close(r->listen_fds[i]);
	if (r->br)
		io_uring_queue_exit(&r->ring);
	svc_thread_free(r->svc);
	tls_ctx_free(r->tls_ctx);
	free(r->plain);
	free(r->bufs);
	free(r->conns);
	free(r->free_slots);
	if (r->reserve_fd >= 0)
		close(r->reserve_fd);
	close(r->efd);
	free(r);
}

struct svc_thread *reactor_svc(struct reactor *r) { return r->svc; }

const char *reactor_conn_peer_cn(const void *conn_user) { return ((const struct conn *)conn_user)->peer_cn; }
