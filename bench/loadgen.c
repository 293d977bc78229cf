/* loadgen — an etcd v3 gRPC load generator on libnghttp2 + protobuf-c.
 *
 * It is deliberately independent of uetcd's own HTTP/2 and gRPC code so that the server is
 * never measured with its own framing. One event-loop thread per worker (--threads 1|2; the
 * machine has 2 cores and the server needs the other), each owning its connections, stream
 * slots, histograms and protobuf arena; the main thread only sleeps, snapshots the server's
 * /proc counters at the warm-up and end boundaries, and prints.
 *
 * Model: N connections x M stream slots. A slot holds at most one request in flight (unary)
 * or owns one long-lived stream (watch, lease keep-alive). Closed loop: an idle slot issues
 * its next request at once. Open loop (--rate R): requests are due every 1/R s; latency is
 * measured from the time a request was *due*, not sent, so a stalled server is charged for the
 * queueing it caused (no coordinated omission).
 *
 * Phases: preload (keys via 128-put Txns, leases) -> warm-up (run, not recorded) -> measure
 * (duration) -> stop. Every run ends by itself at the deadline; in-flight requests are dropped.
 *
 * Fixed-count mode (--ops N, for the instruction-count gate): one thread, a fixed seed, exactly
 * --warmup-ops W + N requests of the workload (watch: puts, each fanned out to every watcher),
 * then it waits for every answer (and every event) and exits: the same request sequence every
 * run, whatever the machine's load. The k8s compactor then ticks every COUNT_COMPACT_EVERY
 * requests instead of every 200 ms. Closed loop only.
 *
 * Latency histograms are log-bucketed (32 sub-buckets per power of two of nanoseconds, <= 3%
 * relative error), fixed-size arrays: recording a sample never allocates. Decoded responses
 * live in a per-worker bump arena reset after each message.
 *
 * TLS (--tls, OpenSSL, ALPN h2, optional client certificate) is compiled in when libssl-dev is
 * present (-DLOADGEN_TLS). The k8s mix has long-lived prefix watchers, and optionally
 * (--list-watch-ms) the robustness traffic's short watch after each LIST.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef LOADGEN_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

#include "rpc.pb-c.h"

/* ------------------------------------------------------------------ time */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until_ns(uint64_t t)
{
	for (;;) {
		uint64_t n = now_ns();
		if (n >= t)
			return;
		uint64_t d = t - n;
		struct timespec ts = { (time_t)(d / 1000000000u), (long)(d % 1000000000u) };
		nanosleep(&ts, NULL);
	}
}

/* ------------------------------------------------------------- histogram */

#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_N ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

struct hist {
	uint64_t n, sum_ns, min_ns, max_ns;
	uint64_t c[HIST_N];
};

static unsigned hist_index(uint64_t v)
{
	if (v < HIST_SUB)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = e - HIST_SUB_BITS;
	return (shift + 1) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
}

static uint64_t hist_bucket_mid(unsigned i)
{
	if (i < HIST_SUB)
		return i;
	unsigned shift = i / HIST_SUB - 1;
	uint64_t m = (uint64_t)(i % HIST_SUB) + HIST_SUB;
	return (m << shift) + ((1ull << shift) >> 1);
}

static void hist_reset(struct hist *h)
{
	memset(h, 0, sizeof *h);
	h->min_ns = UINT64_MAX;
}

static void hist_record(struct hist *h, uint64_t v_ns)
{
	h->c[hist_index(v_ns)]++;
	h->n++;
	h->sum_ns += v_ns;
	if (v_ns < h->min_ns)
		h->min_ns = v_ns;
	if (v_ns > h->max_ns)
		h->max_ns = v_ns;
}

static void hist_merge(struct hist *d, const struct hist *s)
{
	for (unsigned i = 0; i < HIST_N; i++)
		d->c[i] += s->c[i];
	d->n += s->n;
	d->sum_ns += s->sum_ns;
	if (s->min_ns < d->min_ns)
		d->min_ns = s->min_ns;
	if (s->max_ns > d->max_ns)
		d->max_ns = s->max_ns;
}

/* Value at quantile q in microseconds (bucket midpoint, clamped to the observed range). */
static double hist_quantile_us(const struct hist *h, double q)
{
	if (h->n == 0)
		return 0;
	uint64_t target = (uint64_t)ceil(q * (double)h->n);
	if (target < 1)
		target = 1;
	if (target >= h->n)
		return (double)h->max_ns / 1000.0; /* the top sample is known exactly */
	uint64_t cum = 0;
	for (unsigned i = 0; i < HIST_N; i++) {
		cum += h->c[i];
		if (cum >= target) {
			uint64_t v = hist_bucket_mid(i);
			if (v > h->max_ns)
				v = h->max_ns;
			if (v < h->min_ns)
				v = h->min_ns;
			return (double)v / 1000.0;
		}
	}
	return (double)h->max_ns / 1000.0;
}

/* "value_us cumulative_fraction count" per non-empty bucket, for plotting. */
static int hist_write(const struct hist *h, const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f, "# value_us cum_fraction count\n");
	uint64_t cum = 0;
	for (unsigned i = 0; i < HIST_N; i++) {
		if (!h->c[i])
			continue;
		cum += h->c[i];
		fprintf(f, "%.3f %.9f %" PRIu64 "\n", (double)hist_bucket_mid(i) / 1000.0,
			(double)cum / (double)h->n, h->c[i]);
	}
	return fclose(f) ? -errno : 0;
}

/* ----------------------------------------------------- protobuf arena */

struct arena {
	uint8_t *base;
	size_t cap, used;
	void *overflow; /* singly linked list of malloc'd spill blocks */
};

static void *arena_alloc(void *ad, size_t n)
{
	struct arena *a = ad;
	n = (n + 15) & ~(size_t)15;
	if (a->used + n <= a->cap) {
		void *p = a->base + a->used;
		a->used += n;
		return p;
	}
	void **blk = malloc(n + 16);
	if (!blk)
		return NULL;
	blk[0] = a->overflow;
	a->overflow = blk;
	return (uint8_t *)blk + 16;
}

static void arena_free(void *ad, void *p) { (void)ad; (void)p; }

static void arena_reset(struct arena *a)
{
	while (a->overflow) {
		void **blk = a->overflow;
		a->overflow = blk[0];
		free(blk);
	}
	a->used = 0;
}

/* --------------------------------------------------------------- config */

enum wl {
	WL_PUT, WL_GET, WL_LIST, WL_TXN, WL_DEL, WL_WATCH, WL_LEASE, WL_K8S, WL_PROBE,
};
static const char *const wl_names[] = { "put", "get", "list", "txn-put", "delete",
					"watch", "lease-keepalive", "k8s", "probe" };

/* Operation classes: per-class histograms (the k8s mix reports each). */
enum opc {
	OPC_PUT, OPC_GET, OPC_LIST, OPC_TXN, OPC_DEL, OPC_WATCH_EVENT, OPC_KEEPALIVE,
	OPC_K8S_UPDATE, OPC_K8S_CREATE, OPC_K8S_DELETE, OPC_K8S_LIST, OPC_K8S_GET,
	OPC_K8S_STALE_GET, OPC_K8S_STALE_LIST, OPC_K8S_GET_REV, OPC_K8S_COMPACT,
	OPC_N,
	/* not recorded */
	OPC_PRELOAD, OPC_LEASE_GRANT, OPC_COMPACT_CAS, OPC_WATCH_CREATE,
};
static const char *const opc_names[OPC_N] = {
	"put", "get", "list", "txn", "delete", "watch_event", "keepalive",
	"update", "create", "delete", "list_page", "get", "stale_get", "stale_list",
	"get_rev", "compact",
};

struct cfg {
	char host[256];
	char port[16];
	enum wl wl;
	const char *label;
	const char *token; /* --token: sent as "token" metadata on every call (etcd auth) */
	unsigned conns, streams, threads;
	double rate;      /* ops/s total, 0 = closed loop */
	double duration_s, warmup_s;
	unsigned key_size, val_size;
	uint64_t keyspace;
	bool seq, serializable;
	unsigned limit;
	unsigned watchers, writer_conns, writer_streams;
	unsigned leases;
	unsigned read_pct;
	double compact_interval_s;
	unsigned list_watch_ms;
	pid_t server_pid;
	const char *hist_out;
	bool quiet;
	bool tls, tls_insecure;
	const char *cacert, *cert, *key;
	bool count_mode;      /* --ops given: fixed request count, no clock */
	uint64_t count_ops, count_warmup;
	uint64_t seed;        /* 0: from the clock */
};

static struct cfg cfg = {
	.host = "127.0.0.1", .port = "2379", .wl = WL_PUT, .label = "server",
	.conns = 1, .streams = 1, .threads = 1, .rate = 0, .duration_s = 5, .warmup_s = 1,
	.key_size = 32, .val_size = 256, .keyspace = 10000, .seq = false, .serializable = false,
	.limit = 10, .watchers = 0, .writer_conns = 1, .writer_streams = 4, .leases = 100,
	.read_pct = 50, .compact_interval_s = 0.2, .server_pid = 0, .hist_out = NULL,
};

#define KEY_PREFIX "/bench/k/"
#define K8S_PREFIX "/registry/pods/default/"
#define K8S_ROOT "/registry/pods"
#define PRELOAD_BATCH 128 /* etcd's --max-txn-ops default */
#define PRELOAD_MAX_S 60  /* a preload that takes longer is a failed run */
#define COUNT_COMPACT_EVERY 200 /* fixed-count k8s mix: compactor tick per this many requests */
#define COUNT_MAX_S 600   /* fixed-count mode: a run that takes longer is a failed run */

/* ---------------------------------------------------------- shared state */

/* Known mod_revision of every key (txn-put, k8s): racy by design, like real clients' caches. */
static _Atomic int64_t *key_modrev;
/* Arrival time of the put response per revision, for commit-to-event latency. */
#define REV_RING (1u << 20)
struct rev_slot {
	_Atomic int64_t rev;
	_Atomic uint64_t t_ns;
};
static struct rev_slot *rev_ring;
static _Atomic unsigned watchers_created;
static _Atomic int64_t last_rev;        /* highest header revision seen */
static _Atomic int64_t compacted_rev;   /* our last successful compaction */
static _Atomic bool stop_all;
static uint64_t t_measure_ns;            /* set before workers start */
static _Atomic uint64_t t_end_ns;        /* moved earlier when the delete keyspace runs out */
static _Atomic uint64_t del_next;        /* delete: next key, shared by the workers */
static _Atomic bool keys_exhausted;
static uint64_t lease_ids[65536];
static unsigned lease_n;
/* fixed-count mode (one worker thread: plain counters) */
static uint64_t count_issued;            /* requests issued so far, warm-up included */
static uint64_t count_events;            /* watch events received, warm-up included */
static uint64_t count_puts_done;         /* watch: writer puts answered */
static uint64_t t_count_first_ns, t_count_last_ns; /* first measured issue, last completion */

/* Commit time estimate of a revision: the earliest of the put's response and the first event
 * for it (both leave the server after the commit). Returns false on the first mark. */
static bool rev_mark(int64_t rev, uint64_t t)
{
	struct rev_slot *rs = &rev_ring[(uint64_t)rev & (REV_RING - 1)];
	if (atomic_load_explicit(&rs->rev, memory_order_acquire) == rev) {
		uint64_t cur = atomic_load_explicit(&rs->t_ns, memory_order_relaxed);
		while (t < cur && !atomic_compare_exchange_weak_explicit(&rs->t_ns, &cur, t,
				memory_order_relaxed, memory_order_relaxed))
			;
		return true;
	}
	atomic_store_explicit(&rs->t_ns, t, memory_order_relaxed);
	atomic_store_explicit(&rs->rev, rev, memory_order_release);
	return false;
}

static uint64_t rev_commit_ns(int64_t rev, uint64_t dflt)
{
	struct rev_slot *rs = &rev_ring[(uint64_t)rev & (REV_RING - 1)];
	if (atomic_load_explicit(&rs->rev, memory_order_acquire) != rev)
		return dflt;
	return atomic_load_explicit(&rs->t_ns, memory_order_relaxed);
}

static void rev_seen(int64_t r)
{
	int64_t cur = atomic_load_explicit(&last_rev, memory_order_relaxed);
	while (r > cur && !atomic_compare_exchange_weak_explicit(&last_rev, &cur, r,
			memory_order_relaxed, memory_order_relaxed))
		;
}

/* ------------------------------------------------------- workers, slots */

enum slot_role { ROLE_UNARY, ROLE_WATCH, ROLE_KEEPALIVE, ROLE_COMPACTOR, ROLE_WRITER };

struct conn;
struct worker;

struct slot {
	struct conn *c;
	enum slot_role role;
	int32_t stream_id;       /* 0 when no stream */
	bool busy;               /* a request is in flight */
	bool deferred;           /* data provider is waiting for bytes */
	int opc;                 /* class of the request in flight */
	uint64_t t0_ns;          /* due (open loop) or send (closed loop) time */
	uint64_t key;            /* key index of the request in flight */
	int grpc_status;         /* -1 until seen */
	char grpc_msg[96];
	uint8_t *tx;
	size_t tx_len, tx_off, tx_cap;
	uint8_t *rx;
	size_t rx_len, rx_cap;
	/* k8s: a paged LIST in progress */
	bool list_more;
	int64_t list_rev;
	bool list_stale;
	char list_next[128];
	size_t list_next_len;
	unsigned lease_rr;       /* keep-alive: next lease index */
	bool short_watch;        /* k8s: a watch after a LIST, cancelled at watch_until_ns */
	bool watch_cancelled;
	uint64_t watch_until_ns;
	int compact_step;        /* compactor: 0 idle, 1 CAS in flight, 2 Compact in flight */
	int64_t compact_target;
	struct slot *next_idle;
};

struct conn {
	struct worker *w;
	int fd;
#ifdef LOADGEN_TLS
	SSL *ssl; /* NULL for plain h2c */
#endif
	nghttp2_session *s;
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	bool dead;
	bool want_pollout;
};

struct counters {
	uint64_t ops, errors, txn_fail, del_miss, early_events, compacted_reads, dropped, list_watches;
	uint64_t err_status[17];
	uint64_t events, watch_responses, progress_notifies;
};

struct worker {
	unsigned id;
	struct conn *conns;
	unsigned nconns;
	struct slot *slots;
	unsigned nslots;
	struct slot *idle;        /* stack of idle unary/writer slots */
	unsigned nidle;
	unsigned nidle_max;       /* slots that can be idle (not watchers, not the compactor) */
	struct slot *compactor;
	unsigned short_watches;   /* k8s post-LIST watches open */
	double rate;              /* this worker's share */
	uint64_t next_due_ns;
	uint64_t next_compact_ns;
	uint64_t rng;
	uint64_t seq_next;
	bool measuring;
	bool preload;             /* this worker runs the preload phase */
	uint64_t preload_next, preload_done_batches, preload_batches;
	unsigned lease_granted;
	struct arena arena;
	uint8_t rbuf[1 << 17];
	struct hist h[OPC_N];
	struct hist h_e2e;        /* watch: put send -> event */
	struct hist h_writer;     /* watch: the writers' put latency */
	struct counters k;
	char first_err[160];
	pthread_t thr;
};

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "loadgen: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

/* ------------------------------------------------------------ encoding */

static void slot_tx_reserve(struct slot *s, size_t n)
{
	if (n <= s->tx_cap)
		return;
	size_t cap = s->tx_cap ? s->tx_cap : 256;
	while (cap < n)
		cap *= 2;
	s->tx = realloc(s->tx, cap);
	if (!s->tx)
		die("out of memory");
	s->tx_cap = cap;
}

/* Frames one message (5-byte gRPC prefix) into the slot's send buffer. Only called when the
 * previous message has been fully handed to nghttp2 (tx_off == tx_len). */
static void slot_put_msg(struct slot *s, const ProtobufCMessage *m)
{
	if (s->tx_off != s->tx_len)
		die("internal: message queued over unsent bytes");
	size_t n = protobuf_c_message_get_packed_size(m);
	slot_tx_reserve(s, n + 5);
	s->tx[0] = 0;
	s->tx[1] = (uint8_t)(n >> 24);
	s->tx[2] = (uint8_t)(n >> 16);
	s->tx[3] = (uint8_t)(n >> 8);
	s->tx[4] = (uint8_t)n;
	protobuf_c_message_pack(m, s->tx + 5);
	s->tx_len = n + 5;
	s->tx_off = 0;
}

static size_t key_format(char *buf, const char *prefix, uint64_t idx)
{
	size_t pl = strlen(prefix);
	int digits = (int)cfg.key_size - (int)pl;
	if (digits < 8)
		digits = 8;
	return (size_t)snprintf(buf, 128, "%s%0*" PRIu64, prefix, digits, idx);
}

static uint8_t *value_buf;

/* ----------------------------------------------------------- nghttp2 glue */

static ssize_t cb_send(nghttp2_session *ss, const uint8_t *data, size_t len, int flags, void *ud)
{
	struct conn *c = ud;
	size_t room = c->out_cap - c->out_len;
	if (room == 0)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (len > room)
		len = room;
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	return (ssize_t)len;
}

/* Long-lived streams never half-close; unary requests end their side after one message. */
static bool slot_streaming(const struct slot *s)
{
	return s->role == ROLE_WATCH || s->role == ROLE_KEEPALIVE || s->short_watch;
}

static ssize_t cb_read(nghttp2_session *ss, int32_t sid, uint8_t *buf, size_t len,
		       uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct slot *s = src->ptr;
	size_t avail = s->tx_len - s->tx_off;
	if (avail == 0) {
		if (!slot_streaming(s)) {
			*flags |= NGHTTP2_DATA_FLAG_EOF;
			return 0;
		}
		s->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (len > avail)
		len = avail;
	memcpy(buf, s->tx + s->tx_off, len);
	s->tx_off += len;
	if (s->tx_off == s->tx_len && !slot_streaming(s))
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)len;
}

static int cb_header(nghttp2_session *ss, const nghttp2_frame *fr, const uint8_t *name, size_t nlen,
		     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	struct slot *s = nghttp2_session_get_stream_user_data(ss, fr->hd.stream_id);
	if (!s)
		return 0;
	if (nlen == 11 && !memcmp(name, "grpc-status", 11)) {
		s->grpc_status = 0;
		for (size_t i = 0; i < vlen; i++)
			s->grpc_status = s->grpc_status * 10 + (value[i] - '0');
	} else if (nlen == 12 && !memcmp(name, "grpc-message", 12)) {
		snprintf(s->grpc_msg, sizeof s->grpc_msg, "%.*s", (int)vlen, value);
	}
	return 0;
}

static void slot_on_stream_msg(struct slot *s, const uint8_t *p, size_t n);

static int cb_data(nghttp2_session *ss, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
		   void *ud)
{
	struct slot *s = nghttp2_session_get_stream_user_data(ss, sid);
	if (!s)
		return 0;
	if (s->rx_len + len > s->rx_cap) {
		size_t cap = s->rx_cap ? s->rx_cap : 4096;
		while (cap < s->rx_len + len)
			cap *= 2;
		s->rx = realloc(s->rx, cap);
		if (!s->rx)
			die("out of memory");
		s->rx_cap = cap;
	}
	memcpy(s->rx + s->rx_len, data, len);
	s->rx_len += len;
	if (slot_streaming(s)) {
		size_t off = 0;
		while (s->rx_len - off >= 5) {
			const uint8_t *h = s->rx + off;
			size_t mlen = ((size_t)h[1] << 24) | ((size_t)h[2] << 16) | ((size_t)h[3] << 8) | h[4];
			if (s->rx_len - off < 5 + mlen)
				break;
			slot_on_stream_msg(s, h + 5, mlen);
			off += 5 + mlen;
		}
		if (off) {
			memmove(s->rx, s->rx + off, s->rx_len - off);
			s->rx_len -= off;
		}
	}
	return 0;
}

static void slot_on_unary_done(struct slot *s, uint32_t h2err);
static void slot_make_idle(struct worker *w, struct slot *s);

static int cb_close(nghttp2_session *ss, int32_t sid, uint32_t err, void *ud)
{
	struct slot *s = nghttp2_session_get_stream_user_data(ss, sid);
	if (!s)
		return 0;
	s->stream_id = 0;
	if (s->short_watch) {
		/* k8s: the post-LIST watch ends when we cancel it; anything else is an error */
		struct worker *w = s->c->w;
		s->short_watch = false;
		w->short_watches--;
		if (!(err == NGHTTP2_CANCEL && s->watch_cancelled) && !atomic_load(&stop_all)) {
			w->k.errors++;
			if (!w->first_err[0])
				snprintf(w->first_err, sizeof w->first_err,
					 "list watch closed (h2 error %u, grpc-status %d %s)", err,
					 s->grpc_status, s->grpc_msg);
		}
		slot_make_idle(w, s);
		return 0;
	}
	if (s->role == ROLE_WATCH || s->role == ROLE_KEEPALIVE) {
		struct worker *w = s->c->w;
		if (!atomic_load(&stop_all)) {
			w->k.errors++;
			if (!w->first_err[0])
				snprintf(w->first_err, sizeof w->first_err,
					 "long-lived stream closed (h2 error %u, grpc-status %d)", err,
					 s->grpc_status);
		}
		s->busy = false;
		return 0;
	}
	slot_on_unary_done(s, err);
	return 0;
}

static int cb_frame_recv(nghttp2_session *ss, const nghttp2_frame *fr, void *ud)
{
	struct conn *c = ud;
	if (fr->hd.type == NGHTTP2_GOAWAY && !atomic_load(&stop_all)) {
		if (!c->w->first_err[0])
			snprintf(c->w->first_err, sizeof c->w->first_err, "GOAWAY error %u",
				 fr->goaway.error_code);
	}
	return 0;
}

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *h2opt;

static void h2_setup(void)
{
	nghttp2_session_callbacks_new(&callbacks);
	nghttp2_session_callbacks_set_send_callback(callbacks, cb_send);
	nghttp2_session_callbacks_set_on_header_callback(callbacks, cb_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, cb_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, cb_close);
	nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, cb_frame_recv);
	nghttp2_option_new(&h2opt);
	nghttp2_option_set_no_closed_streams(h2opt, 1);
	nghttp2_option_set_peer_max_concurrent_streams(h2opt, 1u << 20);
}

#ifdef LOADGEN_TLS
/* TLS is OpenSSL's (independent of the server's wolfSSL), ALPN "h2" required, TLS >= 1.2;
 * the handshake is done blocking before the socket goes non-blocking. */
static SSL_CTX *tls_ctx;

static void tls_setup(void)
{
	static const unsigned char alpn[] = { 2, 'h', '2' };
	tls_ctx = SSL_CTX_new(TLS_client_method());
	if (!tls_ctx)
		die("SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_set_alpn_protos(tls_ctx, alpn, sizeof alpn))
		die("SSL_CTX_set_alpn_protos failed");
	if (cfg.tls_insecure)
		SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
	else {
		SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
		if (cfg.cacert ? SSL_CTX_load_verify_locations(tls_ctx, cfg.cacert, NULL) != 1
			       : SSL_CTX_set_default_verify_paths(tls_ctx) != 1)
			die("cannot load CA %s", cfg.cacert ? cfg.cacert : "(system)");
	}
	if (cfg.cert && (SSL_CTX_use_certificate_chain_file(tls_ctx, cfg.cert) != 1 ||
			 SSL_CTX_use_PrivateKey_file(tls_ctx, cfg.key ? cfg.key : cfg.cert, SSL_FILETYPE_PEM) != 1))
		die("cannot load client certificate %s / key %s", cfg.cert, cfg.key ? cfg.key : cfg.cert);
}

static int conn_tls_handshake(struct conn *c)
{
	c->ssl = SSL_new(tls_ctx);
	SSL_set_fd(c->ssl, c->fd);
	struct in6_addr a6;
	struct in_addr a4;
	bool is_ip = inet_pton(AF_INET, cfg.host, &a4) == 1 || inet_pton(AF_INET6, cfg.host, &a6) == 1;
	if (!is_ip) /* SNI carries names only */
		SSL_set_tlsext_host_name(c->ssl, cfg.host);
	if (!cfg.tls_insecure)
		SSL_set1_host(c->ssl, cfg.host);
	if (SSL_connect(c->ssl) != 1) {
		char buf[200];
		ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
		fprintf(stderr, "loadgen: TLS handshake: %s\n", buf);
		return -EPROTO;
	}
	const unsigned char *proto;
	unsigned plen;
	SSL_get0_alpn_selected(c->ssl, &proto, &plen);
	if (plen != 2 || memcmp(proto, "h2", 2)) {
		fprintf(stderr, "loadgen: the server did not select ALPN h2\n");
		return -EPROTO;
	}
	return 0;
}
#endif

/* Transport: plain socket or TLS. Return bytes, 0 on EOF, -EAGAIN, or another -errno. */
static ssize_t conn_send_raw(struct conn *c, const void *p, size_t n)
{
#ifdef LOADGEN_TLS
	if (c->ssl) {
		int r = SSL_write(c->ssl, p, (int)n);
		if (r > 0)
			return r;
		int e = SSL_get_error(c->ssl, r);
		return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? -EAGAIN : -EPROTO;
	}
#endif
	ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
	return r < 0 ? -errno : r;
}

static ssize_t conn_recv_raw(struct conn *c, void *p, size_t n)
{
#ifdef LOADGEN_TLS
	if (c->ssl) {
		int r = SSL_read(c->ssl, p, (int)n);
		if (r > 0)
			return r;
		int e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return -EAGAIN;
		return e == SSL_ERROR_ZERO_RETURN ? 0 : -EPROTO;
	}
#endif
	ssize_t r = recv(c->fd, p, n, 0);
	return r < 0 ? -errno : r;
}

static bool conn_tls_pending(struct conn *c)
{
#ifdef LOADGEN_TLS
	return c->ssl && SSL_pending(c->ssl) > 0;
#else
	(void)c;
	return false;
#endif
}

static int conn_open(struct worker *w, struct conn *c)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
	int rc = getaddrinfo(cfg.host, cfg.port, &hints, &ai);
	if (rc)
		die("getaddrinfo %s:%s: %s", cfg.host, cfg.port, gai_strerror(rc));
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		int e = errno;
		close(fd);
		freeaddrinfo(ai);
		return -e;
	}
	freeaddrinfo(ai);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->w = w;
	c->fd = fd;
#ifdef LOADGEN_TLS
	if (cfg.tls && conn_tls_handshake(c)) {
		SSL_free(c->ssl);
		c->ssl = NULL;
		close(fd);
		return -EPROTO;
	}
#endif
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	c->out_cap = 1 << 18;
	c->out = malloc(c->out_cap);
	if (nghttp2_session_client_new2(&c->s, callbacks, c, h2opt))
		die("nghttp2_session_client_new2");
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24 },
		{ NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 1 << 16 },
	};
	nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 3);
	nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, 1 << 30);
	return 0;
}

#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, \
		   NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE }

static char authority[300];

/* Opens a stream for path with the message already framed in s->tx. */
static void slot_submit(struct slot *s, const char *path)
{
	nghttp2_nv nva[] = {
		NV(":method", "POST"), NV(":scheme", "http"), NV(":path", ""), NV(":authority", ""),
		NV("content-type", "application/grpc"), NV("te", "trailers"),
		NV("user-agent", "uetcd-loadgen/1"), NV("token", ""),
	};
	size_t nnv = sizeof nva / sizeof nva[0] - (cfg.token ? 0 : 1);
	if (cfg.token) {
		nva[7].value = (uint8_t *)cfg.token;
		nva[7].valuelen = strlen(cfg.token);
	}
	nva[2].value = (uint8_t *)path;
	nva[2].valuelen = strlen(path);
	if (cfg.tls) {
		nva[1].value = (uint8_t *)"https";
		nva[1].valuelen = 5;
	}
	nva[3].value = (uint8_t *)authority;
	nva[3].valuelen = strlen(authority);
	nghttp2_data_provider prd = { .source.ptr = s, .read_callback = cb_read };
	s->grpc_status = -1;
	s->grpc_msg[0] = 0;
	s->rx_len = 0;
	s->deferred = false;
	int32_t id = nghttp2_submit_request(s->c->s, NULL, nva, nnv, &prd, s);
	if (id < 0)
		die("nghttp2_submit_request: %s", nghttp2_strerror(id));
	s->stream_id = id;
	s->busy = true;
}

/* Queues one more message on a long-lived stream. */
static void slot_stream_send(struct slot *s)
{
	if (s->deferred) {
		s->deferred = false;
		nghttp2_session_resume_data(s->c->s, s->stream_id);
	}
}

/* ------------------------------------------------------------ requests */

static const char P_RANGE[] = "/etcdserverpb.KV/Range";
static const char P_PUT[] = "/etcdserverpb.KV/Put";
static const char P_DEL[] = "/etcdserverpb.KV/DeleteRange";
static const char P_TXN[] = "/etcdserverpb.KV/Txn";
static const char P_COMPACT[] = "/etcdserverpb.KV/Compact";
static const char P_WATCH[] = "/etcdserverpb.Watch/Watch";
static const char P_GRANT[] = "/etcdserverpb.Lease/LeaseGrant";
static const char P_KA[] = "/etcdserverpb.Lease/LeaseKeepAlive";

static uint64_t worker_pick_key(struct worker *w)
{
	if (cfg.seq)
		return w->seq_next++ % cfg.keyspace;
	return rng_next(&w->rng) % cfg.keyspace;
}

static void req_put(struct slot *s, const char *prefix, uint64_t k, uint64_t t_send)
{
	char kb[128];
	size_t kl = key_format(kb, prefix, k);
	Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
	r.key.data = (uint8_t *)kb;
	r.key.len = kl;
	r.value.data = value_buf;
	r.value.len = cfg.val_size;
	if (cfg.wl == WL_WATCH)
		memcpy(value_buf, &t_send, 8); /* watch: send time rides in the value */
	slot_put_msg(s, &r.base);
	slot_submit(s, P_PUT);
}

static void req_range(struct slot *s, const char *key, size_t kl, const char *end, size_t el,
		      int64_t limit, int64_t rev, bool serializable)
{
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	r.key.data = (uint8_t *)key;
	r.key.len = kl;
	r.range_end.data = (uint8_t *)end;
	r.range_end.len = el;
	r.limit = limit;
	r.revision = rev;
	r.serializable = serializable;
	slot_put_msg(s, &r.base);
	slot_submit(s, P_RANGE);
}

/* Kubernetes' update/delete shape: If(mod_revision(k) == rev) Then(put|delete k) Else(get k). */
static void req_txn_cas(struct slot *s, const char *kb, size_t kl, int64_t rev, bool del)
{
	Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
	cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
	cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
	cmp.key.data = (uint8_t *)kb;
	cmp.key.len = kl;
	cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
	cmp.mod_revision = rev;
	Etcdserverpb__Compare *cmps[1] = { &cmp };
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	put.key = cmp.key;
	put.value.data = value_buf;
	put.value.len = cfg.val_size;
	Etcdserverpb__DeleteRangeRequest dr = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	dr.key = cmp.key;
	Etcdserverpb__RangeRequest get = ETCDSERVERPB__RANGE_REQUEST__INIT;
	get.key = cmp.key;
	Etcdserverpb__RequestOp op_then = ETCDSERVERPB__REQUEST_OP__INIT, op_else = ETCDSERVERPB__REQUEST_OP__INIT;
	if (del) {
		op_then.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
		op_then.request_delete_range = &dr;
	} else {
		op_then.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
		op_then.request_put = &put;
	}
	op_else.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	op_else.request_range = &get;
	Etcdserverpb__RequestOp *thens[1] = { &op_then }, *elses[1] = { &op_else };
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	t.n_compare = 1;
	t.compare = cmps;
	t.n_success = 1;
	t.success = thens;
	t.n_failure = 1;
	t.failure = elses;
	slot_put_msg(s, &t.base);
	slot_submit(s, P_TXN);
}

/* Preload: one Txn with up to 128 unconditional puts of consecutive keys. */
static void req_preload(struct slot *s, const char *prefix, uint64_t first, unsigned n)
{
	static _Thread_local char keys[PRELOAD_BATCH][128];
	Etcdserverpb__PutRequest puts[PRELOAD_BATCH];
	Etcdserverpb__RequestOp ops[PRELOAD_BATCH], *opp[PRELOAD_BATCH];
	for (unsigned i = 0; i < n; i++) {
		Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
		Etcdserverpb__RequestOp o = ETCDSERVERPB__REQUEST_OP__INIT;
		puts[i] = p;
		ops[i] = o;
		size_t kl = key_format(keys[i], prefix, first + i);
		puts[i].key.data = (uint8_t *)keys[i];
		puts[i].key.len = kl;
		puts[i].value.data = value_buf;
		puts[i].value.len = cfg.val_size;
		ops[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
		ops[i].request_put = &puts[i];
		opp[i] = &ops[i];
	}
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	t.n_success = n;
	t.success = opp;
	slot_put_msg(s, &t.base);
	slot_submit(s, P_TXN);
}

static void req_lease_grant(struct slot *s)
{
	Etcdserverpb__LeaseGrantRequest r = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	r.ttl = 300;
	slot_put_msg(s, &r.base);
	slot_submit(s, P_GRANT);
}

static void req_watch_create(struct slot *s, const char *prefix, bool k8s)
{
	size_t pl = strlen(prefix);
	char end[128];
	memcpy(end, prefix, pl);
	end[pl - 1]++;
	Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	cr.key.data = (uint8_t *)prefix;
	cr.key.len = pl;
	cr.range_end.data = (uint8_t *)end;
	cr.range_end.len = pl;
	if (k8s) {
		cr.prev_kv = 1;
		cr.progress_notify = 1;
	}
	Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
	r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	r.create_request = &cr;
	slot_put_msg(s, &r.base);
	slot_submit(s, P_WATCH);
}

static void req_keepalive(struct slot *s, uint64_t t0)
{
	Etcdserverpb__LeaseKeepAliveRequest r = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
	r.id = (int64_t)lease_ids[s->lease_rr % lease_n];
	s->lease_rr += 1;
	slot_put_msg(s, &r.base);
	s->t0_ns = t0;
	s->busy = true;
	s->opc = OPC_KEEPALIVE;
	if (!s->stream_id)
		slot_submit(s, P_KA);
	else
		slot_stream_send(s);
}

/* ---------------------------------------------------- k8s-shaped mix */

static size_t k8s_key(char *kb, uint64_t k) { return key_format(kb, K8S_PREFIX, k); }

static void k8s_list_page(struct slot *s)
{
	char e[64]; /* range end of the prefix: last byte + 1 */
	size_t pl = strlen(K8S_PREFIX);
	memcpy(e, K8S_PREFIX, pl);
	e[pl - 1]++;
	req_range(s, s->list_next, s->list_next_len, e, pl, cfg.limit, s->list_rev, false);
}

static void k8s_issue(struct worker *w, struct slot *s)
{
	char kb[128];
	if (s->list_more) {
		s->opc = s->list_stale ? OPC_K8S_STALE_LIST : OPC_K8S_LIST;
		k8s_list_page(s);
		return;
	}
	unsigned r = (unsigned)(rng_next(&w->rng) % 1000);
	int64_t lr = atomic_load_explicit(&last_rev, memory_order_relaxed);
	int64_t cr = atomic_load_explicit(&compacted_rev, memory_order_relaxed);
	if (r < cfg.read_pct * 10) {
		unsigned rr = (unsigned)(rng_next(&w->rng) % 100);
		int64_t stale = lr - (int64_t)(rng_next(&w->rng) % 50);
		if (stale <= cr)
			stale = cr + 1;
		if (stale < 1)
			stale = 0;
		if (rr < 80 || rr >= 90) {
			/* paged LIST; 80% fresh, 10% (rr >= 90) at an old revision */
			s->list_stale = rr >= 90;
			s->list_rev = s->list_stale ? stale : 0;
			s->list_next_len = strlen(K8S_PREFIX);
			memcpy(s->list_next, K8S_PREFIX, s->list_next_len);
			s->opc = s->list_stale ? OPC_K8S_STALE_LIST : OPC_K8S_LIST;
			k8s_list_page(s);
		} else if (rr < 84) {
			size_t kl = k8s_key(kb, rng_next(&w->rng) % cfg.keyspace);
			s->opc = OPC_K8S_GET;
			req_range(s, kb, kl, NULL, 0, 0, 0, false);
		} else if (rr < 87) {
			size_t kl = k8s_key(kb, rng_next(&w->rng) % cfg.keyspace);
			s->opc = OPC_K8S_STALE_GET;
			req_range(s, kb, kl, NULL, 0, 0, stale, false);
		} else {
			s->opc = OPC_K8S_GET_REV;
			req_range(s, K8S_ROOT, strlen(K8S_ROOT), NULL, 0, 0, 0, false);
		}
		return;
	}
	uint64_t k = rng_next(&w->rng) % cfg.keyspace;
	size_t kl = k8s_key(kb, k);
	int64_t known = atomic_load_explicit(&key_modrev[k], memory_order_relaxed);
	s->key = k;
	unsigned wr = (unsigned)(rng_next(&w->rng) % 100);
	if (wr < 90) {
		s->opc = OPC_K8S_UPDATE;
		req_txn_cas(s, kb, kl, known, false);
	} else if (wr < 95) {
		s->opc = OPC_K8S_CREATE;
		req_txn_cas(s, kb, kl, 0, false);
	} else {
		s->opc = OPC_K8S_DELETE;
		req_txn_cas(s, kb, kl, known, true);
	}
}

static void k8s_list_watch(struct worker *w, struct slot *s, int64_t from, uint64_t now)
{
	size_t pl = strlen(K8S_PREFIX);
	char end[64];
	memcpy(end, K8S_PREFIX, pl);
	end[pl - 1]++;
	Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	cr.key.data = (uint8_t *)K8S_PREFIX;
	cr.key.len = pl;
	cr.range_end.data = (uint8_t *)end;
	cr.range_end.len = pl;
	cr.start_revision = from;
	cr.prev_kv = 1;
	cr.progress_notify = 1;
	Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
	r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	r.create_request = &cr;
	s->short_watch = true;
	s->watch_cancelled = false;
	s->watch_until_ns = now + (uint64_t)cfg.list_watch_ms * 1000000u;
	w->short_watches++;
	if (w->measuring)
		w->k.list_watches++;
	slot_put_msg(s, &r.base);
	slot_submit(s, P_WATCH);
}

/* Cancels the post-LIST watches whose time is up (RST_STREAM CANCEL, as a client does). */
static void k8s_list_watch_expire(struct worker *w, uint64_t now)
{
	for (unsigned i = 0; i < w->nslots && w->short_watches; i++) {
		struct slot *s = &w->slots[i];
		if (s->short_watch && !s->watch_cancelled && now >= s->watch_until_ns && s->stream_id) {
			s->watch_cancelled = true;
			nghttp2_submit_rst_stream(s->c->s, NGHTTP2_FLAG_NONE, s->stream_id, NGHTTP2_CANCEL);
		}
	}
}

/* Kubernetes' compactor: CAS on compact_rev_key (compare VERSION), then Compact(rev seen at the
 * previous tick). */
static int64_t compact_key_version;
static int64_t compact_prev_rev;

static void compactor_tick(struct worker *w, struct slot *s)
{
	static const char ck[] = "compact_rev_key";
	int64_t lr = atomic_load_explicit(&last_rev, memory_order_relaxed);
	Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
	cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
	cmp.key.data = (uint8_t *)ck;
	cmp.key.len = sizeof ck - 1;
	cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
	cmp.version = compact_key_version;
	Etcdserverpb__Compare *cmps[1] = { &cmp };
	char val[32];
	int vl = snprintf(val, sizeof val, "%" PRId64, lr);
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	put.key = cmp.key;
	put.value.data = (uint8_t *)val;
	put.value.len = (size_t)vl;
	Etcdserverpb__RangeRequest get = ETCDSERVERPB__RANGE_REQUEST__INIT;
	get.key = cmp.key;
	Etcdserverpb__RequestOp ot = ETCDSERVERPB__REQUEST_OP__INIT, oe = ETCDSERVERPB__REQUEST_OP__INIT;
	ot.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	ot.request_put = &put;
	oe.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	oe.request_range = &get;
	Etcdserverpb__RequestOp *t1[1] = { &ot }, *t2[1] = { &oe };
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	t.n_compare = 1;
	t.compare = cmps;
	t.n_success = 1;
	t.success = t1;
	t.n_failure = 1;
	t.failure = t2;
	s->compact_target = compact_prev_rev;
	compact_prev_rev = lr;
	s->compact_step = 1;
	s->opc = OPC_COMPACT_CAS;
	s->t0_ns = now_ns();
	slot_put_msg(s, &t.base);
	slot_submit(s, P_TXN);
}

static void compactor_compact(struct slot *s)
{
	Etcdserverpb__CompactionRequest r = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
	r.revision = s->compact_target;
	s->compact_step = 2;
	s->opc = OPC_K8S_COMPACT;
	slot_put_msg(s, &r.base);
	slot_submit(s, P_COMPACT);
}

/* ------------------------------------------------------- issue / complete */

static bool preload_pending(struct worker *w)
{
	return w->preload && (w->preload_next < w->preload_batches ||
			      (cfg.wl == WL_LEASE && w->lease_granted + w->nslots - w->nidle < cfg.leases &&
			       lease_n < cfg.leases));
}

/* Issues the next request on an idle slot. */
static void slot_issue(struct worker *w, struct slot *s, uint64_t t0)
{
	s->t0_ns = t0;
	if (w->preload) {
		if (cfg.wl == WL_LEASE) {
			s->opc = OPC_LEASE_GRANT;
			req_lease_grant(s);
			return;
		}
		uint64_t b = w->preload_next++;
		uint64_t first = b * PRELOAD_BATCH;
		unsigned n = (unsigned)(cfg.keyspace - first < PRELOAD_BATCH ? cfg.keyspace - first : PRELOAD_BATCH);
		s->opc = OPC_PRELOAD;
		s->key = first;
		s->compact_target = n; /* reused: batch size */
		req_preload(s, cfg.wl == WL_K8S ? K8S_PREFIX : KEY_PREFIX, first, n);
		return;
	}
	char kb[128];
	switch (cfg.wl) {
	case WL_PUT:
		s->opc = OPC_PUT;
		req_put(s, KEY_PREFIX, worker_pick_key(w), t0);
		break;
	case WL_WATCH:
		s->opc = OPC_PUT;
		req_put(s, KEY_PREFIX, worker_pick_key(w), now_ns());
		break;
	case WL_GET: {
		size_t kl = key_format(kb, KEY_PREFIX, worker_pick_key(w));
		s->opc = OPC_GET;
		req_range(s, kb, kl, NULL, 0, 0, 0, cfg.serializable);
		break;
	}
	case WL_LIST: {
		size_t kl = key_format(kb, KEY_PREFIX, worker_pick_key(w));
		char e[64];
		size_t pl = strlen(KEY_PREFIX);
		memcpy(e, KEY_PREFIX, pl);
		e[pl - 1]++;
		s->opc = OPC_LIST;
		req_range(s, kb, kl, e, pl, cfg.limit, 0, cfg.serializable);
		break;
	}
	case WL_TXN: {
		uint64_t k = worker_pick_key(w);
		size_t kl = key_format(kb, KEY_PREFIX, k);
		s->opc = OPC_TXN;
		s->key = k;
		req_txn_cas(s, kb, kl, atomic_load_explicit(&key_modrev[k], memory_order_relaxed), false);
		break;
	}
	case WL_DEL: {
		Etcdserverpb__DeleteRangeRequest r = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
		uint64_t k = atomic_fetch_add_explicit(&del_next, 1, memory_order_relaxed);
		if (k >= cfg.keyspace) {
			/* every preloaded key is gone: the window ends here (see main) */
			atomic_store(&keys_exhausted, true);
			k %= cfg.keyspace;
		}
		size_t kl = key_format(kb, KEY_PREFIX, k);
		r.key.data = (uint8_t *)kb;
		r.key.len = kl;
		s->opc = OPC_DEL;
		slot_put_msg(s, &r.base);
		slot_submit(s, P_DEL);
		break;
	}
	case WL_LEASE:
		req_keepalive(s, t0);
		break;
	case WL_K8S:
		k8s_issue(w, s);
		break;
	case WL_PROBE: {
		s->opc = OPC_GET;
		req_range(s, "probe", 5, NULL, 0, 0, 0, false);
		break;
	}
	}
}

static void slot_make_idle(struct worker *w, struct slot *s)
{
	if (cfg.count_mode && w->measuring && w->nidle + 1 == w->nidle_max)
		t_count_last_ns = now_ns();
	s->busy = false;
	s->next_idle = w->idle;
	w->idle = s;
	w->nidle++;
}

static void record(struct worker *w, int opc, uint64_t t0, uint64_t t1)
{
	if (!w->measuring || opc >= OPC_N || t1 > t_end_ns)
		return;
	hist_record(&w->h[opc], t1 > t0 ? t1 - t0 : 0);
	w->k.ops++;
}

static void note_error(struct worker *w, struct slot *s, int status, uint32_t h2err)
{
	if (w->measuring || w->preload) {
		w->k.errors++;
		w->k.err_status[status >= 0 && status < 17 ? status : 2]++;
	}
	if (!w->first_err[0])
		snprintf(w->first_err, sizeof w->first_err, "grpc-status %d (%s), h2 error %u", status,
			 s && s->grpc_msg[0] ? s->grpc_msg : "-", h2err);
}

static void slot_on_unary_done(struct slot *s, uint32_t h2err)
{
	struct worker *w = s->c->w;
	uint64_t t1 = now_ns();
	int opc = s->opc;
	ProtobufCAllocator al = { arena_alloc, arena_free, &w->arena };
	bool ok = h2err == 0 && s->grpc_status == 0 && s->rx_len >= 5;
	const uint8_t *msg = s->rx + 5;
	size_t mlen = ok ? s->rx_len - 5 : 0;

	if (s->role == ROLE_COMPACTOR) {
		if (ok && s->compact_step == 1) {
			Etcdserverpb__TxnResponse *r = etcdserverpb__txn_response__unpack(&al, mlen, msg);
			bool succ = r && r->succeeded;
			if (succ)
				compact_key_version++;
			else if (r && r->n_responses && r->responses[0]->response_case ==
				 ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE &&
				 r->responses[0]->response_range->n_kvs)
				compact_key_version = r->responses[0]->response_range->kvs[0]->version;
			arena_reset(&w->arena);
			if (succ && s->compact_target > 0) {
				compactor_compact(s);
				return;
			}
		} else if (ok && s->compact_step == 2) {
			record(w, OPC_K8S_COMPACT, s->t0_ns, t1);
			atomic_store(&compacted_rev, s->compact_target);
		} else if (!ok && s->grpc_status != 11 /* OUT_OF_RANGE: already compacted */) {
			note_error(w, s, s->grpc_status, h2err);
		}
		s->compact_step = 0;
		s->busy = false;
		return;
	}

	if (!ok) {
		if (s->grpc_status == 11 && (opc == OPC_K8S_STALE_GET || opc == OPC_K8S_STALE_LIST ||
					     opc == OPC_K8S_LIST)) {
			/* compacted under a stale read or a paged LIST pinned to its first page's
			 * revision: Kubernetes answers 410 Gone and re-lists; counted, not a failure */
			if (w->measuring)
				w->k.compacted_reads++;
			s->list_more = false;
			slot_make_idle(w, s);
			return;
		}
		note_error(w, s, s->grpc_status, h2err);
		s->list_more = false;
		slot_make_idle(w, s);
		return;
	}

	switch (opc) {
	case OPC_PRELOAD: {
		Etcdserverpb__TxnResponse *r = etcdserverpb__txn_response__unpack(&al, mlen, msg);
		if (r && r->header) {
			for (int64_t i = 0; i < s->compact_target; i++)
				atomic_store_explicit(&key_modrev[s->key + (uint64_t)i], r->header->revision,
						      memory_order_relaxed);
			rev_seen(r->header->revision);
		}
		w->preload_done_batches++;
		break;
	}
	case OPC_LEASE_GRANT: {
		Etcdserverpb__LeaseGrantResponse *r = etcdserverpb__lease_grant_response__unpack(&al, mlen, msg);
		if (r && lease_n < sizeof lease_ids / sizeof lease_ids[0])
			lease_ids[lease_n++] = (uint64_t)r->id;
		w->lease_granted++;
		break;
	}
	case OPC_PUT: {
		if (s->role == ROLE_WRITER) {
			count_puts_done++;
			Etcdserverpb__PutResponse *r = etcdserverpb__put_response__unpack(&al, mlen, msg);
			if (r && r->header)
				rev_mark(r->header->revision, t1);
			if (w->measuring && t1 <= t_end_ns)
				hist_record(&w->h_writer, t1 - s->t0_ns);
			if (cfg.count_mode && w->measuring)
				w->k.ops++; /* the count's unit is the put; events are reported beside it */
			break;
		}
		record(w, opc, s->t0_ns, t1);
		break;
	}
	case OPC_TXN:
	case OPC_K8S_UPDATE:
	case OPC_K8S_CREATE:
	case OPC_K8S_DELETE: {
		Etcdserverpb__TxnResponse *r = etcdserverpb__txn_response__unpack(&al, mlen, msg);
		if (!r) {
			note_error(w, s, 2, 0);
			break;
		}
		if (r->header)
			rev_seen(r->header->revision);
		int64_t nr = -1;
		if (r->succeeded)
			nr = opc == OPC_K8S_DELETE ? 0 : (r->header ? r->header->revision : -1);
		else {
			if (w->measuring)
				w->k.txn_fail++;
			if (r->n_responses && r->responses[0]->response_case ==
			    ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE)
				nr = r->responses[0]->response_range->n_kvs
					     ? r->responses[0]->response_range->kvs[0]->mod_revision
					     : 0;
		}
		if (nr >= 0)
			atomic_store_explicit(&key_modrev[s->key], nr, memory_order_relaxed);
		record(w, opc, s->t0_ns, t1);
		break;
	}
	case OPC_DEL: {
		Etcdserverpb__DeleteRangeResponse *r = etcdserverpb__delete_range_response__unpack(&al, mlen, msg);
		if (r && r->deleted == 0 && w->measuring)
			w->k.del_miss++;
		record(w, opc, s->t0_ns, t1);
		break;
	}
	case OPC_K8S_LIST:
	case OPC_K8S_STALE_LIST: {
		Etcdserverpb__RangeResponse *r = etcdserverpb__range_response__unpack(&al, mlen, msg);
		record(w, opc, s->t0_ns, t1);
		bool first_page = s->list_rev == 0;
		s->list_more = false;
		if (r && r->header) {
			rev_seen(r->header->revision);
			if (r->more && r->n_kvs) {
				/* continue from the last key + "\0" at the first page's revision */
				Mvccpb__KeyValue *kv = r->kvs[r->n_kvs - 1];
				if (kv->key.len + 1 < sizeof s->list_next) {
					memcpy(s->list_next, kv->key.data, kv->key.len);
					s->list_next[kv->key.len] = 0;
					s->list_next_len = kv->key.len + 1;
					if (!s->list_rev)
						s->list_rev = r->header->revision;
					s->list_more = true;
				}
			}
			if (!s->list_more && opc == OPC_K8S_LIST && cfg.list_watch_ms) {
				/* the apiserver's reflector: watch from the list's revision + 1 */
				int64_t from = (first_page ? r->header->revision : s->list_rev) + 1;
				arena_reset(&w->arena);
				k8s_list_watch(w, s, from, t1);
				return;
			}
		}
		break;
	}
	default: {
		if (opc == OPC_GET || opc == OPC_LIST || opc == OPC_K8S_GET || opc == OPC_K8S_GET_REV ||
		    opc == OPC_K8S_STALE_GET) {
			Etcdserverpb__RangeResponse *r = etcdserverpb__range_response__unpack(&al, mlen, msg);
			if (!r)
				note_error(w, s, 2, 0);
			else if (r->header)
				rev_seen(r->header->revision);
		}
		record(w, opc, s->t0_ns, t1);
		break;
	}
	}
	arena_reset(&w->arena);
	slot_make_idle(w, s);
}

static void slot_on_stream_msg(struct slot *s, const uint8_t *p, size_t n)
{
	struct worker *w = s->c->w;
	uint64_t t1 = now_ns();
	ProtobufCAllocator al = { arena_alloc, arena_free, &w->arena };
	if (s->role == ROLE_KEEPALIVE) {
		Etcdserverpb__LeaseKeepAliveResponse *r = etcdserverpb__lease_keep_alive_response__unpack(&al, n, p);
		if (!r || r->ttl <= 0)
			note_error(w, s, 5, 0);
		else
			record(w, OPC_KEEPALIVE, s->t0_ns, t1);
		arena_reset(&w->arena);
		slot_make_idle(w, s); /* the main loop sends the next keep-alive */
		return;
	}
	Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(&al, n, p);
	if (!r) {
		note_error(w, s, 2, 0);
		return;
	}
	if (r->created && !s->short_watch)
		atomic_fetch_add(&watchers_created, 1);
	for (size_t i = 0; i < r->n_events; i++)
		count_events += r->events[i]->kv != NULL;
	if (r->canceled)
		note_error(w, s, 1, 0);
	if (w->measuring && t1 <= t_end_ns) {
		w->k.watch_responses++;
		if (!r->n_events && !r->created)
			w->k.progress_notifies++;
		for (size_t i = 0; i < r->n_events; i++) {
			Mvccpb__KeyValue *kv = r->events[i]->kv;
			if (!kv)
				continue;
			w->k.events++;
			w->k.ops++;
			uint64_t tc;
			if (!rev_mark(kv->mod_revision, t1))
				w->k.early_events++; /* first sighting: it beat the put's response */
			tc = rev_commit_ns(kv->mod_revision, t1);
			hist_record(&w->h[OPC_WATCH_EVENT], t1 > tc ? t1 - tc : 0);
			if (cfg.wl == WL_WATCH && kv->value.len >= 8) {
				uint64_t ts;
				memcpy(&ts, kv->value.data, 8);
				if (ts && t1 > ts && t1 - ts < 3600ull * 1000000000u)
					hist_record(&w->h_e2e, t1 - ts);
			}
		}
	}
	arena_reset(&w->arena);
}

/* -------------------------------------------------------------- the loop */

static void conn_flush(struct conn *c)
{
	for (;;) {
		if (c->out_off == c->out_len) {
			c->out_off = c->out_len = 0;
			if (!nghttp2_session_want_write(c->s))
				break;
			int rv = nghttp2_session_send(c->s);
			if (rv) {
				c->dead = true;
				break;
			}
			if (c->out_len == 0)
				break;
		}
		ssize_t n = conn_send_raw(c, c->out + c->out_off, c->out_len - c->out_off);
		if (n < 0) {
			if (n == -EAGAIN || n == -EWOULDBLOCK) {
				c->want_pollout = true;
				return;
			}
			if (n == -EINTR)
				continue;
			c->dead = true;
			return;
		}
		c->out_off += (size_t)n;
	}
	c->want_pollout = false;
}

static void conn_read(struct conn *c)
{
	struct worker *w = c->w;
	/* TLS may hold decrypted bytes poll() cannot see: drain those too */
	for (int i = 0; i < 8 || conn_tls_pending(c); i++) {
		ssize_t n = conn_recv_raw(c, w->rbuf, sizeof w->rbuf);
		if (n < 0) {
			if (n == -EAGAIN || n == -EWOULDBLOCK)
				return;
			if (n == -EINTR)
				continue;
			c->dead = true;
			return;
		}
		if (n == 0) {
			c->dead = true;
			return;
		}
		ssize_t rv = nghttp2_session_mem_recv(c->s, w->rbuf, (size_t)n);
		if (rv < 0) {
			if (!w->first_err[0])
				snprintf(w->first_err, sizeof w->first_err, "nghttp2: %s",
					 nghttp2_strerror((int)rv));
			c->dead = true;
			return;
		}
		if ((size_t)n < sizeof w->rbuf && !conn_tls_pending(c) && !cfg.tls)
			return;
	}
}

/* Fixed-count mode: every request issued and answered, every event in (watch, k8s watchers
 * see only what the writes produce, so nothing else is awaited), the compactor idle. */
static bool count_done(struct worker *w)
{
	if (count_issued < cfg.count_warmup + cfg.count_ops || w->nidle != w->nidle_max)
		return false;
	if (w->compactor && w->compactor->busy)
		return false;
	if (cfg.wl == WL_WATCH && count_events < count_puts_done * cfg.watchers)
		return false;
	return true;
}

/* Runs the event loop until `until_ns` or, in preload mode, until the preload is done. */
static void worker_loop(struct worker *w, uint64_t until_ns)
{
	struct pollfd *pfd = calloc(w->nconns, sizeof *pfd);
	uint64_t period = w->rate > 0 ? (uint64_t)(1e9 / w->rate) : 0;
	if (period && !w->next_due_ns)
		w->next_due_ns = now_ns();
	for (;;) {
		bool writers_ok = true;
		uint64_t now = now_ns();
		if (now >= until_ns || atomic_load_explicit(&stop_all, memory_order_relaxed))
			break;
		if (!w->measuring && !w->preload && now >= t_measure_ns && t_measure_ns) {
			w->measuring = true;
			for (unsigned i = 0; i < OPC_N; i++)
				hist_reset(&w->h[i]);
			hist_reset(&w->h_e2e);
			hist_reset(&w->h_writer);
			memset(&w->k, 0, sizeof w->k);
		}
		if (w->preload) {
			if ((!preload_pending(w) || w->k.errors) && w->nidle == w->nslots)
				break;
			while (w->idle && preload_pending(w) && !w->k.errors) {
				struct slot *s = w->idle;
				w->idle = s->next_idle;
				w->nidle--;
				slot_issue(w, s, now);
			}
		} else {
			writers_ok = cfg.wl != WL_WATCH ||
				atomic_load(&watchers_created) >= cfg.watchers;
			if (period && !writers_ok)
				w->next_due_ns = now; /* the schedule starts once every watcher exists */
			if (period) {
				while (writers_ok && w->idle && w->next_due_ns <= now) {
					struct slot *s = w->idle;
					w->idle = s->next_idle;
					w->nidle--;
					slot_issue(w, s, w->next_due_ns);
					w->next_due_ns += period;
				}
				/* never bank more than 1 s of backlog: past that the server is simply
				 * slower than the offered rate; the sends dropped are counted */
				if (w->next_due_ns + 1000000000u < now) {
					uint64_t drop = (now - 1000000000u - w->next_due_ns) / period;
					if (w->measuring)
						w->k.dropped += drop;
					w->next_due_ns += drop * period;
				}
			} else if (cfg.count_mode) {
				while (writers_ok && w->idle && count_issued < cfg.count_warmup + cfg.count_ops) {
					struct slot *s = w->idle;
					w->idle = s->next_idle;
					w->nidle--;
					if (count_issued == cfg.count_warmup) {
						w->measuring = true;
						t_count_first_ns = now;
					}
					count_issued++;
					slot_issue(w, s, now);
				}
				if (count_done(w))
					break;
			} else {
				while (writers_ok && w->idle) {
					struct slot *s = w->idle;
					w->idle = s->next_idle;
					w->nidle--;
					slot_issue(w, s, now);
				}
			}
			if (w->short_watches)
				k8s_list_watch_expire(w, now);
			if (cfg.count_mode && w->compactor && !w->compactor->busy &&
			    count_issued >= w->next_compact_ns && count_issued < cfg.count_warmup + cfg.count_ops) {
				/* fixed-count mode: next_compact_ns counts requests, not time */
				w->compactor->busy = true;
				compactor_tick(w, w->compactor);
				w->next_compact_ns = count_issued + COUNT_COMPACT_EVERY;
			} else if (!cfg.count_mode && w->compactor && !w->compactor->busy &&
				   now >= w->next_compact_ns) {
				w->compactor->busy = true;
				compactor_tick(w, w->compactor);
				w->next_compact_ns = now + (uint64_t)(cfg.compact_interval_s * 1e9);
			}
		}
		unsigned alive = 0;
		for (unsigned i = 0; i < w->nconns; i++) {
			struct conn *c = &w->conns[i];
			if (!c->dead)
				conn_flush(c);
			pfd[i].fd = c->dead ? -1 : c->fd;
			pfd[i].events = POLLIN | (c->want_pollout ? POLLOUT : 0);
			pfd[i].revents = 0;
			alive += !c->dead;
		}
		if (!alive) {
			if (!w->first_err[0])
				snprintf(w->first_err, sizeof w->first_err, "all connections closed");
			w->k.errors++;
			break;
		}
		uint64_t wake = until_ns;
		if (period && w->idle && writers_ok && w->next_due_ns < wake)
			wake = w->next_due_ns;
		if (!w->measuring && t_measure_ns && t_measure_ns < wake && !w->preload)
			wake = t_measure_ns;
		if (w->compactor && !cfg.count_mode && w->next_compact_ns < wake)
			wake = w->next_compact_ns;
		if (w->short_watches && now + 5000000u < wake)
			wake = now + 5000000u; /* post-LIST watch expiry: 5 ms resolution */
		if (!writers_ok && now + 1000000u < wake)
			wake = now + 1000000u; /* poll for the last "created" every ms */
		now = now_ns();
		uint64_t d = wake > now ? wake - now : 0;
		struct timespec ts = { (time_t)(d / 1000000000u), (long)(d % 1000000000u) };
		int n = ppoll(pfd, w->nconns, &ts, NULL);
		if (n < 0 && errno != EINTR)
			die("ppoll: %s", strerror(errno));
		for (unsigned i = 0; n > 0 && i < w->nconns; i++) {
			struct conn *c = &w->conns[i];
			if (c->dead || !pfd[i].revents)
				continue;
			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
				conn_read(c);
			if (!c->dead && (pfd[i].revents & POLLOUT))
				c->want_pollout = false;
		}
	}
	free(pfd);
}

/* Builds a worker with nconns connections x streams slots of the given role. */
static void worker_init(struct worker *w, unsigned id, unsigned nconns, unsigned nslots_max)
{
	memset(w, 0, sizeof *w);
	w->id = id;
	w->rng = 0x9E3779B97F4A7C15ull * (id + 1) ^ (cfg.seed ? cfg.seed : (uint64_t)now_ns());
	w->arena.cap = 1 << 20;
	w->arena.base = malloc(w->arena.cap);
	w->conns = calloc(nconns + 1, sizeof *w->conns);
	w->slots = calloc(nslots_max, sizeof *w->slots);
	for (unsigned i = 0; i < OPC_N; i++)
		hist_reset(&w->h[i]);
	hist_reset(&w->h_e2e);
	hist_reset(&w->h_writer);
}

static struct conn *worker_add_conn(struct worker *w)
{
	struct conn *c = &w->conns[w->nconns];
	int rc = conn_open(w, c);
	if (rc < 0)
		return NULL;
	w->nconns++;
	return c;
}

static struct slot *worker_add_slot(struct worker *w, struct conn *c, enum slot_role role)
{
	struct slot *s = &w->slots[w->nslots++];
	s->c = c;
	s->role = role;
	return s;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	/* long-lived streams first: watchers and keep-alive streams */
	for (unsigned i = 0; i < w->nslots; i++) {
		struct slot *s = &w->slots[i];
		if (s->role == ROLE_WATCH)
			req_watch_create(s, cfg.wl == WL_K8S ? K8S_PREFIX : KEY_PREFIX, cfg.wl == WL_K8S);
	}
	worker_loop(w, t_end_ns);
	return NULL;
}

/* ------------------------------------------------------------ /proc */

static int proc_cpu_ticks(pid_t pid, uint64_t *ticks)
{
	char path[64], buf[2048];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return -EINVAL;
	/* after ") ": field 3 is state; utime is field 14, stime 15 */
	unsigned long long ut = 0, st = 0;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -EINVAL;
	*ticks = ut + st;
	return 0;
}

/* On-CPU nanoseconds of every live thread of pid (/proc/PID/task/TID/schedstat, first field):
 * nanosecond resolution where /proc/PID/stat has 10 ms ticks. Threads that exit inside the
 * window lose their share, so main() takes the larger of the two measures. */
static int proc_cpu_ns(pid_t pid, uint64_t *ns)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	uint64_t sum = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char p2[320];
		snprintf(p2, sizeof p2, "/proc/%d/task/%s/schedstat", (int)pid, de->d_name);
		FILE *f = fopen(p2, "r");
		if (!f)
			continue;
		unsigned long long v;
		if (fscanf(f, "%llu", &v) == 1)
			sum += v;
		fclose(f);
	}
	closedir(d);
	*ns = sum;
	return 0;
}

static long proc_status_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long v = -1;
	size_t fl = strlen(field);
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, field, fl) && line[fl] == ':') {
			v = atol(line + fl + 1);
			break;
		}
	fclose(f);
	return v;
}

/* Busy jiffies of the whole machine (all CPUs): user+nice+system+irq+softirq+steal. */
static int proc_busy_ticks(uint64_t *ticks)
{
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return -errno;
	unsigned long long u = 0, n = 0, sy = 0, id = 0, io = 0, irq = 0, sirq = 0, st = 0;
	int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &u, &n, &sy, &id, &io, &irq,
			 &sirq, &st);
	fclose(f);
	if (got < 8)
		return -EINVAL;
	*ticks = u + n + sy + irq + sirq + st;
	return 0;
}

static double rusage_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------ main */

static void usage(void)
{
	fprintf(stderr,
"usage: loadgen [options]\n"
"  --endpoint HOST:PORT     server (127.0.0.1:2379)\n"
"  --workload W             put|get|list|txn-put|delete|watch|lease-keepalive|k8s|probe\n"
"  --conns N --streams M    N connections x M concurrent stream slots (1 x 1)\n"
"  --threads T              event-loop threads, 1 or 2 (1)\n"
"  --rate R                 open loop at R ops/s total (watch: puts/s); 0 = closed loop\n"
"  --duration S --warmup S  measured seconds (5) after warm-up seconds (1)\n"
"  --key-size B --val-size B --keyspace K --seq   keys (32, 256, 10000, random)\n"
"  --limit L                list page size (10)\n"
"  --serializable           get/list without linearizable read\n"
"  --watchers W             watch: watchers spread over the connections (conns x streams)\n"
"  --writer-conns N --writer-streams M   watch: the writers (1 x 4)\n"
"  --leases L               lease-keepalive: leases granted up front (100)\n"
"  --read-pct P             k8s: percent of requests that are reads (50)\n"
"  --compact-interval S     k8s: compaction CAS period (0.2)\n"
"  --list-watch-ms MS       k8s: after each fresh LIST, watch from its revision + 1 for MS ms\n"
"                           (the robustness traffic uses 500); 0 = off (default)\n"
"  --server-pid P           measure server CPU (utime+stime) and peak RSS (VmHWM)\n"
"  --label NAME             server name in the result line\n"
"  --token T                auth token sent with every call (\"token\" metadata)\n"
"  --hist-out FILE          write the latency distribution (value_us cum_fraction count)\n"
"  --quiet                  only the RESULT line(s)\n"
"  --ops N --warmup-ops W   fixed-count mode: exactly W + N requests (watch: puts), W not\n"
"                           recorded, then wait for every answer/event and exit; no clock\n"
"  --seed S                 key-choice seed (count mode: 1; otherwise from the clock)\n"
"  --self-test              check the latency histogram and exit\n"
"  --tls (or https://)      TLS with ALPN h2 (OpenSSL); --cacert F, --cert F --key F for mTLS,\n"
"                           --insecure to skip verification\n");
	exit(2);
}

static void parse_args(int argc, char **argv)
{
	enum { O_EP = 1, O_WL, O_CONNS, O_STREAMS, O_THREADS, O_RATE, O_DUR, O_WARM, O_KS, O_VS,
	       O_KEYS, O_SEQ, O_LIMIT, O_SER, O_WATCHERS, O_WC, O_WS, O_LEASES, O_READ, O_CI, O_PID, O_TOKEN,
	       O_LABEL, O_HIST, O_QUIET, O_TLS, O_CACERT, O_CERT, O_KEY, O_INSECURE, O_LW, O_OPS,
	       O_WOPS, O_SEED };
	static const struct option opts[] = {
		{ "endpoint", 1, 0, O_EP }, { "workload", 1, 0, O_WL }, { "conns", 1, 0, O_CONNS },
		{ "streams", 1, 0, O_STREAMS }, { "threads", 1, 0, O_THREADS }, { "rate", 1, 0, O_RATE },
		{ "duration", 1, 0, O_DUR }, { "warmup", 1, 0, O_WARM }, { "key-size", 1, 0, O_KS },
		{ "val-size", 1, 0, O_VS }, { "keyspace", 1, 0, O_KEYS }, { "seq", 0, 0, O_SEQ },
		{ "limit", 1, 0, O_LIMIT }, { "serializable", 0, 0, O_SER },
		{ "watchers", 1, 0, O_WATCHERS }, { "writer-conns", 1, 0, O_WC },
		{ "writer-streams", 1, 0, O_WS }, { "leases", 1, 0, O_LEASES },
		{ "read-pct", 1, 0, O_READ }, { "compact-interval", 1, 0, O_CI },
		{ "list-watch-ms", 1, 0, O_LW },
		{ "server-pid", 1, 0, O_PID }, { "token", 1, 0, O_TOKEN }, { "label", 1, 0, O_LABEL }, { "hist-out", 1, 0, O_HIST },
		{ "quiet", 0, 0, O_QUIET }, { "tls", 0, 0, O_TLS }, { "cacert", 1, 0, O_CACERT },
		{ "cert", 1, 0, O_CERT }, { "key", 1, 0, O_KEY }, { "insecure", 0, 0, O_INSECURE },
		{ "ops", 1, 0, O_OPS }, { "warmup-ops", 1, 0, O_WOPS }, { "seed", 1, 0, O_SEED },
		{ "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
	};
	int o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case O_EP: {
			const char *colon = strrchr(optarg, ':');
			if (!colon || (size_t)(colon - optarg) >= sizeof cfg.host)
				die("--endpoint wants HOST:PORT");
			if (!strncmp(optarg, "http://", 7))
				optarg += 7;
			else if (!strncmp(optarg, "https://", 8)) {
				optarg += 8;
				cfg.tls = true;
			}
			colon = strrchr(optarg, ':');
			snprintf(cfg.host, sizeof cfg.host, "%.*s", (int)(colon - optarg), optarg);
			snprintf(cfg.port, sizeof cfg.port, "%s", colon + 1);
			break;
		}
		case O_WL: {
			unsigned i;
			for (i = 0; i < sizeof wl_names / sizeof wl_names[0]; i++)
				if (!strcmp(optarg, wl_names[i]))
					break;
			if (i == sizeof wl_names / sizeof wl_names[0])
				die("unknown workload %s", optarg);
			cfg.wl = (enum wl)i;
			break;
		}
		case O_CONNS: cfg.conns = (unsigned)atoi(optarg); break;
		case O_STREAMS: cfg.streams = (unsigned)atoi(optarg); break;
		case O_THREADS: cfg.threads = (unsigned)atoi(optarg); break;
		case O_RATE: cfg.rate = atof(optarg); break;
		case O_DUR: cfg.duration_s = atof(optarg); break;
		case O_WARM: cfg.warmup_s = atof(optarg); break;
		case O_KS: cfg.key_size = (unsigned)atoi(optarg); break;
		case O_VS: cfg.val_size = (unsigned)atoi(optarg); break;
		case O_KEYS: cfg.keyspace = strtoull(optarg, NULL, 10); break;
		case O_SEQ: cfg.seq = true; break;
		case O_LIMIT: cfg.limit = (unsigned)atoi(optarg); break;
		case O_SER: cfg.serializable = true; break;
		case O_WATCHERS: cfg.watchers = (unsigned)atoi(optarg); break;
		case O_WC: cfg.writer_conns = (unsigned)atoi(optarg); break;
		case O_WS: cfg.writer_streams = (unsigned)atoi(optarg); break;
		case O_LEASES: cfg.leases = (unsigned)atoi(optarg); break;
		case O_READ: cfg.read_pct = (unsigned)atoi(optarg); break;
		case O_CI: cfg.compact_interval_s = atof(optarg); break;
		case O_LW: cfg.list_watch_ms = (unsigned)atoi(optarg); break;
		case O_OPS: cfg.count_mode = true; cfg.count_ops = strtoull(optarg, NULL, 10); break;
		case O_WOPS: cfg.count_warmup = strtoull(optarg, NULL, 10); break;
		case O_SEED: cfg.seed = strtoull(optarg, NULL, 10); break;
		case O_PID: cfg.server_pid = (pid_t)atoi(optarg); break;
		case O_LABEL: cfg.label = optarg; break;
		case O_TOKEN: cfg.token = optarg; break;
		case O_HIST: cfg.hist_out = optarg; break;
		case O_QUIET: cfg.quiet = true; break;
#ifdef LOADGEN_TLS
		case O_TLS: cfg.tls = true; break;
#else
		case O_TLS: die("built without OpenSSL (libssl-dev): no --tls");
#endif
		case O_CACERT: cfg.cacert = optarg; cfg.tls = true; break;
		case O_CERT: cfg.cert = optarg; cfg.tls = true; break;
		case O_KEY: cfg.key = optarg; cfg.tls = true; break;
		case O_INSECURE: cfg.tls_insecure = true; cfg.tls = true; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
#ifndef LOADGEN_TLS
	if (cfg.tls)
		die("built without OpenSSL (libssl-dev): no TLS");
#endif
	if (!cfg.conns || !cfg.streams || cfg.threads < 1 || cfg.threads > 2 || !cfg.keyspace ||
	    cfg.key_size > 100 || cfg.duration_s <= 0 || cfg.read_pct > 100 ||
	    cfg.leases > sizeof lease_ids / sizeof lease_ids[0])
		die("bad option values (see --help)");
	if (cfg.wl == WL_WATCH && cfg.val_size < 8)
		cfg.val_size = 8;
	if (cfg.wl == WL_WATCH && !cfg.watchers)
		cfg.watchers = cfg.conns * cfg.streams;
	if (cfg.threads > cfg.conns)
		cfg.threads = cfg.conns;
	if (cfg.count_mode) {
		if (cfg.threads != 1 || cfg.rate > 0 || cfg.list_watch_ms)
			die("--ops: one thread, closed loop, no --list-watch-ms");
		if (!cfg.seed)
			cfg.seed = 1;
	}
}

/* Preload keys (or grant leases) on 4 connections x 16 streams, before any timing starts. */
static int preload(void)
{
	bool keys = cfg.wl == WL_GET || cfg.wl == WL_LIST || cfg.wl == WL_TXN || cfg.wl == WL_DEL ||
		    cfg.wl == WL_K8S;
	if (!keys && cfg.wl != WL_LEASE)
		return 0;
	struct worker *w = calloc(1, sizeof *w);
	worker_init(w, 99, 4, 4 * 16);
	w->preload = true;
	if (keys)
		w->preload_batches = (cfg.keyspace + PRELOAD_BATCH - 1) / PRELOAD_BATCH;
	for (unsigned i = 0; i < 4; i++) {
		struct conn *c = worker_add_conn(w);
		if (!c)
			die("connect %s:%s failed", cfg.host, cfg.port);
		for (unsigned j = 0; j < 16; j++)
			slot_make_idle(w, worker_add_slot(w, c, ROLE_UNARY));
	}
	uint64_t t0 = now_ns();
	worker_loop(w, t0 + PRELOAD_MAX_S * 1000000000ull);
	if (w->k.errors)
		die("preload failed: %s", w->first_err);
	if (keys && w->preload_done_batches != w->preload_batches)
		die("preload incomplete (%" PRIu64 "/%" PRIu64 " batches)", w->preload_done_batches,
		    w->preload_batches);
	if (cfg.wl == WL_LEASE && lease_n < cfg.leases)
		die("granted only %u of %u leases: %s", lease_n, cfg.leases, w->first_err);
	if (!cfg.quiet)
		fprintf(stderr, "loadgen: preloaded %s in %.2f s\n",
			keys ? "keys" : "leases", (double)(now_ns() - t0) / 1e9);
	for (unsigned i = 0; i < w->nconns; i++) {
		nghttp2_session_del(w->conns[i].s);
		close(w->conns[i].fd);
	}
	return 0;
}

static int probe(void)
{
	struct worker *w = calloc(1, sizeof *w);
	worker_init(w, 0, 1, 1);
	struct conn *c = worker_add_conn(w);
	if (!c)
		return 1;
	struct slot *s = worker_add_slot(w, c, ROLE_UNARY);
	slot_issue(w, s, now_ns());
	uint64_t deadline = now_ns() + (uint64_t)(cfg.duration_s * 1e9);
	w->measuring = true;
	t_end_ns = UINT64_MAX;
	while (s->busy && now_ns() < deadline) {
		w->idle = NULL;
		worker_loop(w, now_ns() + 10000000u);
		if (w->k.errors)
			break;
	}
	if (s->busy || w->k.errors || !w->k.ops) {
		fprintf(stderr, "probe: no answer (%s)\n", w->first_err[0] ? w->first_err : "timeout");
		return 1;
	}
	return 0;
}

/* --self-test: the histogram against exact quantiles of known distributions. */
static int hist_self_test(void)
{
	static struct hist h;
	int bad = 0;
	/* uniform 1..100000 us: quantile q is q * 100 ms */
	hist_reset(&h);
	for (uint64_t v = 1; v <= 100000; v++)
		hist_record(&h, v * 1000);
	const double qs[] = { 0.5, 0.9, 0.99, 0.999 };
	for (unsigned i = 0; i < 4; i++) {
		double want = qs[i] * 100000.0, got = hist_quantile_us(&h, qs[i]);
		if (fabs(got - want) / want > 0.035) {
			fprintf(stderr, "self-test: uniform q%.3f: got %.1f us, want %.1f us\n", qs[i], got, want);
			bad++;
		}
	}
	if (hist_quantile_us(&h, 1.0) != 100000.0 || h.n != 100000) {
		fprintf(stderr, "self-test: max/count wrong\n");
		bad++;
	}
	/* every value round-trips into a bucket whose midpoint is within 3.2% */
	for (uint64_t v = 1; v < (1ull << 40); v = v * 3 + 1) {
		uint64_t m = hist_bucket_mid(hist_index(v));
		if (v >= HIST_SUB && fabs((double)m - (double)v) / (double)v > 0.032) {
			fprintf(stderr, "self-test: %" PRIu64 " -> bucket mid %" PRIu64 "\n", v, m);
			bad++;
		}
	}
	/* a bimodal mix: 99% at 100 us, 1% at 10 ms */
	hist_reset(&h);
	for (unsigned i = 0; i < 9900; i++)
		hist_record(&h, 100000);
	for (unsigned i = 0; i < 100; i++)
		hist_record(&h, 10000000);
	if (fabs(hist_quantile_us(&h, 0.99) - 100) > 3.5 || fabs(hist_quantile_us(&h, 0.995) - 10000) > 320) {
		fprintf(stderr, "self-test: bimodal p99 %.1f p99.5 %.1f\n", hist_quantile_us(&h, 0.99),
			hist_quantile_us(&h, 0.995));
		bad++;
	}
	fprintf(stderr, "self-test: %s\n", bad ? "FAILED" : "ok");
	return bad ? 1 : 0;
}

static void on_alarm(int sig)
{
	static const char msg[] = "loadgen: hard deadline passed, exiting\n";
	(void)sig;
	if (write(2, msg, sizeof msg - 1) < 0)
		_exit(3);
	_exit(3);
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--self-test"))
		return hist_self_test();
	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	h2_setup();
#ifdef LOADGEN_TLS
	if (cfg.tls)
		tls_setup();
#endif
	snprintf(authority, sizeof authority, "%s:%s", cfg.host, cfg.port);
	value_buf = malloc(cfg.val_size + 8);
	for (unsigned i = 0; i < cfg.val_size + 8; i++)
		value_buf[i] = (uint8_t)('a' + i % 26);
	if (cfg.wl == WL_PROBE)
		return probe();
	key_modrev = calloc(cfg.keyspace, sizeof *key_modrev);
	rev_ring = calloc(REV_RING, sizeof *rev_ring);
	if (!key_modrev || !rev_ring)
		die("out of memory");
	/* Every run ends by itself: a wedged server or loop cannot hold the benchmark hostage. */
	signal(SIGALRM, on_alarm);
	alarm((unsigned)(PRELOAD_MAX_S + (cfg.count_mode ? COUNT_MAX_S : cfg.warmup_s + cfg.duration_s) + 30));
	preload();

	/* Build the workers: connections are dealt round-robin to threads. */
	struct worker *ws = calloc(cfg.threads, sizeof *ws);
	unsigned wconns = cfg.wl == WL_WATCH ? cfg.writer_conns : 0;
	unsigned total_conns = cfg.conns + wconns;
	for (unsigned t = 0; t < cfg.threads; t++)
		worker_init(&ws[t], t, total_conns,
			    cfg.conns * cfg.streams + wconns * cfg.writer_streams + cfg.watchers + 2);
	unsigned watchers_left = cfg.watchers;
	for (unsigned i = 0; i < cfg.conns; i++) {
		struct worker *w = &ws[i % cfg.threads];
		struct conn *c = worker_add_conn(w);
		if (!c)
			die("connect %s:%s failed", cfg.host, cfg.port);
		unsigned m = cfg.streams;
		if (cfg.wl == WL_WATCH) {
			/* spread W watchers evenly over the watcher connections */
			m = watchers_left / (cfg.conns - i);
			watchers_left -= m;
		}
		for (unsigned j = 0; j < m; j++) {
			enum slot_role role = cfg.wl == WL_WATCH ? ROLE_WATCH :
					      cfg.wl == WL_LEASE ? ROLE_KEEPALIVE : ROLE_UNARY;
			struct slot *s = worker_add_slot(w, c, role);
			if (role != ROLE_WATCH)
				slot_make_idle(w, s);
		}
	}
	for (unsigned i = 0; i < wconns; i++) {
		struct worker *w = &ws[0];
		struct conn *c = worker_add_conn(w);
		if (!c)
			die("connect %s:%s failed", cfg.host, cfg.port);
		for (unsigned j = 0; j < cfg.writer_streams; j++)
			slot_make_idle(w, worker_add_slot(w, c, ROLE_WRITER));
	}
	if (cfg.wl == WL_K8S) {
		/* Kubernetes watches every resource: W long-lived prefix watchers, and a compactor */
		struct worker *w = &ws[0];
		struct conn *c = worker_add_conn(w);
		if (!c)
			die("connect failed");
		w->compactor = worker_add_slot(w, c, ROLE_COMPACTOR);
		w->next_compact_ns = cfg.count_mode ? COUNT_COMPACT_EVERY :
				     now_ns() + (uint64_t)(cfg.compact_interval_s * 1e9);
		for (unsigned j = 0; j < cfg.watchers; j++)
			worker_add_slot(w, c, ROLE_WATCH);
	}
	for (unsigned t = 0; t < cfg.threads; t++)
		ws[t].nidle_max = ws[t].nidle;
	unsigned ws_with_rate = 0;
	for (unsigned t = 0; t < cfg.threads; t++)
		ws_with_rate += ws[t].nidle > 0;
	for (unsigned t = 0; t < cfg.threads; t++)
		ws[t].rate = cfg.rate > 0 && ws[t].nidle ? cfg.rate / ws_with_rate : 0;

	uint64_t t_start = now_ns();
	t_measure_ns = t_start + (uint64_t)(cfg.warmup_s * 1e9);
	t_end_ns = t_measure_ns + (uint64_t)(cfg.duration_s * 1e9);
	if (cfg.count_mode) {
		t_measure_ns = 0; /* the worker starts measuring at request W + 1 */
		t_end_ns = UINT64_MAX;
	}
	for (unsigned t = 0; t < cfg.threads; t++)
		if (pthread_create(&ws[t].thr, NULL, worker_main, &ws[t]))
			die("pthread_create");

	uint64_t cpu0 = 0, cpu1 = 0, busy0 = 0, busy1 = 0;
	if (!cfg.count_mode)
		sleep_until_ns(t_measure_ns);
	uint64_t sns0 = 0, sns1 = 0;
	bool have_cpu = cfg.server_pid && proc_cpu_ticks(cfg.server_pid, &cpu0) == 0;
	bool have_sns = cfg.server_pid && proc_cpu_ns(cfg.server_pid, &sns0) == 0;
	bool have_busy = proc_busy_ticks(&busy0) == 0;
	double lg0 = rusage_cpu_s();
	if (cfg.count_mode) {
		for (unsigned t = 0; t < cfg.threads; t++)
			pthread_join(ws[t].thr, NULL);
		t_measure_ns = t_count_first_ns ? t_count_first_ns : now_ns();
		t_end_ns = t_count_last_ns > t_measure_ns ? t_count_last_ns : t_measure_ns + 1;
	} else if (cfg.wl == WL_DEL) {
		/* deleting absent keys would measure something else: stop when the keys run out */
		while (now_ns() < t_end_ns && !atomic_load(&keys_exhausted))
			sleep_until_ns(now_ns() + 2000000u);
		uint64_t n = now_ns();
		if (n < t_end_ns)
			t_end_ns = n;
	} else {
		sleep_until_ns(t_end_ns);
	}
	if (have_cpu && proc_cpu_ticks(cfg.server_pid, &cpu1))
		have_cpu = false;
	if (have_sns && proc_cpu_ns(cfg.server_pid, &sns1))
		have_sns = false;
	if (have_busy && proc_busy_ticks(&busy1))
		have_busy = false;
	double lg1 = rusage_cpu_s();
	atomic_store(&stop_all, true);
	if (!cfg.count_mode)
		for (unsigned t = 0; t < cfg.threads; t++)
			pthread_join(ws[t].thr, NULL);
	long rss_kb = cfg.server_pid ? proc_status_kb(cfg.server_pid, "VmHWM") : -1;

	/* merge */
	static struct hist h[OPC_N], all, e2e, wr;
	struct counters k = { 0 };
	char first_err[160] = "";
	for (unsigned i = 0; i < OPC_N; i++)
		hist_reset(&h[i]);
	hist_reset(&all);
	hist_reset(&e2e);
	hist_reset(&wr);
	for (unsigned t = 0; t < cfg.threads; t++) {
		struct worker *w = &ws[t];
		for (unsigned i = 0; i < OPC_N; i++) {
			hist_merge(&h[i], &w->h[i]);
			hist_merge(&all, &w->h[i]);
		}
		hist_merge(&e2e, &w->h_e2e);
		hist_merge(&wr, &w->h_writer);
		k.ops += w->k.ops;
		k.errors += w->k.errors;
		k.txn_fail += w->k.txn_fail;
		k.del_miss += w->k.del_miss;
		k.early_events += w->k.early_events;
		k.compacted_reads += w->k.compacted_reads;
		k.dropped += w->k.dropped;
		k.list_watches += w->k.list_watches;
		k.events += w->k.events;
		k.watch_responses += w->k.watch_responses;
		k.progress_notifies += w->k.progress_notifies;
		if (!first_err[0] && w->first_err[0])
			snprintf(first_err, sizeof first_err, "%s", w->first_err);
	}
	unsigned created = atomic_load(&watchers_created);
	if ((cfg.wl == WL_WATCH || cfg.wl == WL_K8S) && created < cfg.watchers) {
		k.errors += cfg.watchers - created;
		if (!first_err[0])
			snprintf(first_err, sizeof first_err, "only %u of %u watchers created", created,
				 cfg.watchers);
	}
	/* watch: the figure of merit is events; the k8s mix reports requests (events apart) */
	const struct hist *primary = cfg.wl == WL_WATCH ? &h[OPC_WATCH_EVENT] : &all;
	if (cfg.wl == WL_K8S) {
		hist_reset(&all);
		for (unsigned i = 0; i < OPC_N; i++)
			if (i != OPC_WATCH_EVENT)
				hist_merge(&all, &h[i]);
	}
	uint64_t ops = primary->n;
	double dur = (double)(t_end_ns - t_measure_ns) / 1e9; /* shorter if the keys ran out */
	long hz = sysconf(_SC_CLK_TCK);
	double srv_cpu_s = have_cpu ? (double)(cpu1 - cpu0) / (double)hz : -1;
	if (have_cpu && have_sns && sns1 > sns0 && (double)(sns1 - sns0) / 1e9 > srv_cpu_s - 2.0 / (double)hz)
		srv_cpu_s = (double)(sns1 - sns0) / 1e9; /* same within tick error: take the precise one */
	double lg_cpu_s = lg1 - lg0;
	/* CPU used by everything else on the machine during the window: a noise indicator */
	double other_cpu_pct = -1;
	if (have_busy && have_cpu)
		other_cpu_pct = ((double)(busy1 - busy0) / (double)hz - srv_cpu_s - lg_cpu_s) * 100.0 / dur;
	if (other_cpu_pct < 0 && have_busy && have_cpu)
		other_cpu_pct = 0;

	printf("RESULT server=%s workload=%s conns=%u streams=%u threads=%u rate=%.0f duration_s=%.2f "
	       "ops=%" PRIu64 " errors=%" PRIu64 " ops_per_s=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f "
	       "p999_us=%.1f max_us=%.1f mean_us=%.1f srv_cpu_s=%.3f srv_cpu_us_per_op=%.2f "
	       "srv_rss_kb=%ld lg_cpu_s=%.3f lg_cpu_us_per_op=%.2f lg_cpu_pct=%.1f other_cpu_pct=%.1f",
	       cfg.label, wl_names[cfg.wl], cfg.conns, cfg.streams, cfg.threads, cfg.rate, dur, ops,
	       k.errors, (double)ops / dur, hist_quantile_us(primary, 0.5),
	       hist_quantile_us(primary, 0.9), hist_quantile_us(primary, 0.99),
	       hist_quantile_us(primary, 0.999), (double)primary->max_ns / 1000.0,
	       primary->n ? (double)primary->sum_ns / (double)primary->n / 1000.0 : 0, srv_cpu_s,
	       have_cpu && ops ? srv_cpu_s * 1e6 / (double)ops : -1, rss_kb, lg_cpu_s,
	       ops ? lg_cpu_s * 1e6 / (double)ops : -1, lg_cpu_s * 100.0 / dur, other_cpu_pct);
	if (cfg.rate > 0)
		printf(" dropped=%" PRIu64, k.dropped);
	if (cfg.wl == WL_TXN || cfg.wl == WL_K8S)
		printf(" txn_fail=%" PRIu64, k.txn_fail);
	if (cfg.wl == WL_DEL)
		printf(" del_miss=%" PRIu64, k.del_miss);
	if (cfg.wl == WL_WATCH || cfg.wl == WL_K8S)
		printf(" watchers=%u watchers_created=%u events=%" PRIu64 " early_events=%" PRIu64
		       " event_p99_us=%.1f",
		       cfg.watchers, atomic_load(&watchers_created), k.events, k.early_events,
		       hist_quantile_us(&h[OPC_WATCH_EVENT], 0.99));
	if (cfg.wl == WL_WATCH)
		printf(" puts_per_s=%.1f put_p50_us=%.1f put_p99_us=%.1f send_to_event_p50_us=%.1f "
		       "send_to_event_p99_us=%.1f",
		       (double)wr.n / dur, hist_quantile_us(&wr, 0.5), hist_quantile_us(&wr, 0.99),
		       hist_quantile_us(&e2e, 0.5), hist_quantile_us(&e2e, 0.99));
	if (cfg.wl == WL_K8S)
		printf(" compacted_reads=%" PRIu64 " progress_notifies=%" PRIu64 " list_watches=%" PRIu64,
		       k.compacted_reads, k.progress_notifies, k.list_watches);
	printf("\n");
	if (cfg.wl == WL_K8S)
		for (unsigned i = 0; i < OPC_N; i++)
			if (h[i].n)
				printf("RESULT-CLASS server=%s workload=k8s class=%s ops=%" PRIu64
				       " ops_per_s=%.1f p50_us=%.1f p99_us=%.1f max_us=%.1f\n",
				       cfg.label, opc_names[i], h[i].n, (double)h[i].n / dur,
				       hist_quantile_us(&h[i], 0.5), hist_quantile_us(&h[i], 0.99),
				       (double)h[i].max_ns / 1000.0);
	if (cfg.hist_out) {
		int rc = hist_write(primary, cfg.hist_out);
		if (rc)
			fprintf(stderr, "loadgen: %s: %s\n", cfg.hist_out, strerror(-rc));
	}
	if (first_err[0])
		fprintf(stderr, "loadgen: %s %s: first error: %s\n", cfg.label, wl_names[cfg.wl], first_err);
	if (!cfg.quiet) {
		fprintf(stderr,
			"%s %s: %u conns x %u streams, %s, %.1f s\n"
			"  %.0f ops/s (%" PRIu64 " ops, %" PRIu64 " errors)\n"
			"  latency us: p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n"
			"  server CPU %.2f us/op, peak RSS %ld KiB; loadgen CPU %.2f us/op (%.0f%% of a core)\n",
			cfg.label, wl_names[cfg.wl], cfg.conns, cfg.streams,
			cfg.rate > 0 ? "open loop" : "closed loop", dur, (double)ops / dur, ops, k.errors,
			hist_quantile_us(primary, 0.5), hist_quantile_us(primary, 0.9),
			hist_quantile_us(primary, 0.99), hist_quantile_us(primary, 0.999),
			(double)primary->max_ns / 1000.0, have_cpu && ops ? srv_cpu_s * 1e6 / (double)ops : -1,
			rss_kb, ops ? lg_cpu_s * 1e6 / (double)ops : -1, lg_cpu_s * 100.0 / dur);
		if (other_cpu_pct > 20)
			fprintf(stderr, "  WARNING: other processes used %.0f%% of a core during the run: noisy\n",
				other_cpu_pct);
		if (lg_cpu_s > 0.9 * dur * cfg.threads)
			fprintf(stderr, "  WARNING: the load generator used ~all of its CPU: client-bound run\n");
		if (k.dropped)
			fprintf(stderr, "  note: the server fell > 1 s behind the offered rate; %" PRIu64
				" scheduled requests were dropped\n", k.dropped);
		if (k.del_miss)
			fprintf(stderr, "  WARNING: %" PRIu64 " deletes found no key\n", k.del_miss);
		if (atomic_load(&keys_exhausted))
			fprintf(stderr, "  note: the keyspace ran out after %.2f s of the window\n", dur);
	}
	return ops ? 0 : 1;
}
