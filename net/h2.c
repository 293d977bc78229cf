/* HTTP/2 server connection engine (RFC 9113), sans-I/O. See h2.h for the contract.
 *
 * Input: h2_frame_parse (bytes consumed / 0 for more / -error, as h2o's parsers) finds
 * frames; complete frames are handled in place from the caller's buffer; only a frame cut
 * by the end of a recv is copied into `ibuf` (9 + max_frame_size bytes, allocated the first
 * time a frame is cut). Decoded request headers go to a per-thread scratch (requests are
 * handed up synchronously, so one per thread serves every connection).
 * A header block split over CONTINUATION frames is joined in `hb_buf` (at most
 * H2_HB_FACTOR * max_header_list_size, at most H2_CONTINUATION_MAX frames); a block that
 * ends in its HEADERS frame is decoded in place.
 *
 * Output: a chain of H2_BLOCK_SIZE blocks. Invariant (owner: out_* helpers): bytes in the
 * chain never move and are never rewritten; new frames are only appended behind `len` of
 * the tail block, so iovecs handed out by h2_conn_output stay valid until consumed.
 * Freed blocks go to a per-thread pool of H2_POOL_MAX (plain malloc/free under ASan).
 *
 * Sending DATA: pushed bytes (h2_submit_data) go straight into frames when the stream's
 * queue is empty and the windows and the output watermark allow; the rest waits in the
 * stream's own block queue. A pulled source (h2_submit_source) comes after the queue and
 * is read only inside flush, one frame at a time, straight into the output, for at most
 * what both windows allow and only while the output is below H2_OUT_LOWAT: so a body of
 * any size costs the source's state plus at most a watermark of output per connection.
 * Waiting streams take turns (one frame each per round, `rr` list) as windows open and
 * output drains below H2_OUT_LOWAT. A stream is on `rr` only if it could send now but for
 * the connection window or the watermark; one blocked by its own window (or a deferred
 * source) is off the list until a WINDOW_UPDATE, SETTINGS or h2_stream_resume puts it
 * back. Trailers (an END_STREAM header block, in their own queue) wait behind the
 * stream's pushed and pulled DATA.
 *
 * Receiving: DATA is handed up at once. Its window comes back (WINDOW_UPDATEs in batches
 * of half a window) at once, or, with window_by_consume, only when the layer above
 * reports the bytes consumed (h2_conn_consume): padding and DATA that is never handed up
 * are returned at once either way. Memory is bounded by: the stream table (grown by
 * doubling to the streams really open, at most streams_max), ibuf, hb_buf, the HPACK
 * decoder (made at the first header block), the thread's header scratch
 * (max_header_list_size) and the output plus pushed bytes (max_output_bytes: a push past
 * it resets its own stream; a control frame past it ends the connection, which is then a
 * peer that does not read).
 *
 * Stream errors vs. connection errors follow RFC 9113 5.1/5.4. Closed streams are not
 * remembered (memory is bounded), except the last H2_CLOSED_RING ids: late frames on a
 * stream we reset are ignored; HEADERS on a stream closed by END_STREAM both ways is
 * STREAM_CLOSED; any other HEADERS with a used id is a decreasing id: PROTOCOL_ERROR.
 *
 * Not done: priorities (validated, ignored), server push, CONNECT, content-length checks,
 * a rate limit on peer resets (rapid reset, CVE-2023-44487: a reset stream ends at once
 * and frees its slot, so the cost is the work done before the reset).
 */
#include "net/h2.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "net/hpack.h"

#if defined(__SANITIZE_ADDRESS__)
#define H2_NO_FREELIST 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define H2_NO_FREELIST 1
#endif
#endif

enum {
	H2_FRAME_HEADER = 9,
	H2_BLOCK_SIZE = 16384 - 16,  /* data bytes per output block (block + header ~16 KiB) */
	H2_POOL_MAX = 64,            /* free blocks kept per thread (1 MiB) */
	H2_STREAMS_MIN = 4,          /* stream slots a connection starts with */
	H2_PULL_MIN = 2048,          /* a pulled frame fills the tail block if this fits */
	H2_OUT_LOWAT = 256 * 1024,   /* DATA moves into the output only below this */
	H2_CONTINUATION_MAX = 64,    /* CONTINUATION frames per header block */
	H2_HB_FACTOR = 2,            /* joined block limit: factor * max_header_list_size */
	H2_HB_MIN = 16384,
	H2_RESP_BLOCK_MAX = 16384,   /* our header blocks fit one frame at the minimum size */
	H2_CLOSED_RING = 32,         /* recently closed stream ids remembered */
	H2_DEFAULT_WINDOW = 65535,
	H2_MAX_WINDOW = 0x7fffffff,
	H2_DEFAULT_FRAME = 16384,
	H2_MAX_FRAME = 0xffffff,
};
_Static_assert(H2_BLOCK_SIZE >= 2 * H2_FRAME_HEADER + 64, "blocks must hold frame headers");

enum { /* frame types */
	F_DATA = 0x0,
	F_HEADERS = 0x1,
	F_PRIORITY = 0x2,
	F_RST_STREAM = 0x3,
	F_SETTINGS = 0x4,
	F_PUSH_PROMISE = 0x5,
	F_PING = 0x6,
	F_GOAWAY = 0x7,
	F_WINDOW_UPDATE = 0x8,
	F_CONTINUATION = 0x9,
};

enum { /* flags */
	FL_END_STREAM = 0x1,
	FL_ACK = 0x1,
	FL_END_HEADERS = 0x4,
	FL_PADDED = 0x8,
	FL_PRIORITY = 0x20,
};

enum { /* settings */
	S_HEADER_TABLE_SIZE = 1,
	S_ENABLE_PUSH = 2,
	S_MAX_CONCURRENT_STREAMS = 3,
	S_INITIAL_WINDOW_SIZE = 4,
	S_MAX_FRAME_SIZE = 5,
	S_MAX_HEADER_LIST_SIZE = 6,
};

/* A parsed frame header (RFC 9113 4.1). */
struct h2_frame {
	uint32_t len; /* payload bytes */
	uint8_t type, flags;
	uint32_t sid; /* reserved bit cleared */
};

static const uint8_t h2_preface[24] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct h2_block {
	struct h2_block *next;
	uint32_t len; /* bytes written */
	uint8_t data[H2_BLOCK_SIZE];
};

/* A FIFO of bytes in blocks; `off` is the read position in `head`. */
struct h2_queue {
	struct h2_block *head, *tail;
	uint32_t off;
	size_t bytes;
};

struct h2_stream {
	uint32_t id; /* 0: slot free */
	bool remote_closed; /* peer sent END_STREAM */
	bool local_end;     /* our END_STREAM was submitted (maybe still queued) */
	bool in_rr;
	int64_t send_window; /* may go negative after a SETTINGS decrease */
	int64_t recv_window; /* what the peer may still send */
	uint32_t recv_unacked;
	bool src_active;    /* `src` still has bytes to give (after pend) */
	bool src_deferred;  /* its read said "nothing now": off the rota until resumed */
	struct h2_queue pend; /* DATA payload bytes pushed by h2_submit_data */
	struct h2_data_source src; /* pulled after pend, as windows open */
	struct h2_queue trailers; /* an END_STREAM HEADERS frame, sent after all DATA */
	int32_t rr_prev, rr_next;
	int32_t free_next;
};

enum h2_state { ST_PREFACE, ST_FIRST_SETTINGS, ST_OPEN, ST_DEAD };

struct h2_conn {
	struct h2_config cfg;
	struct h2_callbacks cb;
	void *user;
	enum h2_state state;
	uint32_t preface_got;

	/* input */
	uint8_t *ibuf;
	uint32_t ibuf_len;

	/* header block being joined (HEADERS without END_HEADERS + CONTINUATIONs) */
	bool hb_active;
	uint8_t hb_flags; /* FL_END_STREAM of the HEADERS frame */
	bool hb_prio_self; /* PRIORITY flag named the stream itself */
	uint32_t hb_stream;
	uint32_t hb_frames;
	uint8_t *hb_buf;
	uint32_t hb_len, hb_max;

	/* decoded request headers */
	struct hpack_decoder *hpack;
	uint8_t *hdr_scratch; /* the thread's (hdr_scratch_get), valid during one decode */
	uint32_t hdr_scratch_len, hdr_scratch_max;
	struct h2_field *hdr_fields;
	uint32_t hdr_n, hdr_max;
	struct h2_field ps_method, ps_scheme, ps_path, ps_authority;
	bool hdr_malformed, hdr_overflow, hdr_regular_seen;

	/* streams */
	struct h2_stream *streams;
	uint32_t streams_cap; /* slots allocated: doubles up to streams_max */
	uint32_t streams_hw; /* slots ever used: [0, hw) */
	uint32_t n_streams;
	int32_t free_head;
	uint32_t *hash; /* slot + 1, 0 = empty; open addressing, linear probing */
	uint32_t hash_mask, hash_shift;
	uint32_t hash_max; /* the table grows (load <= 1/2) up to 2 * streams_max slots */
	uint32_t last_peer_id;
	uint32_t closed_ring[H2_CLOSED_RING]; /* id | 0x80000000 if we reset it */
	uint32_t closed_pos;

	/* flow control */
	int64_t send_window;      /* connection, peer's */
	int64_t recv_window;      /* connection, ours */
	uint32_t recv_unacked;
	uint32_t peer_initial_window;
	uint32_t peer_max_frame;
	bool settings_acked;

	/* output */
	struct h2_queue out;
	size_t pend_total; /* sum of streams' pend bytes */
	int32_t rr_head; /* circular list of slots */
	bool flushing;

	bool goaway_sent, goaway_recv;
	uint32_t goaway_last_id;
};

/* ---- blocks and queues ---- */

/* Free blocks are kept per thread (a reactor's connections share them), not per
 * connection: an idle connection holds no output block. */
static __thread struct h2_block *h2_pool;
static __thread uint32_t h2_pool_n;
static __thread bool h2_tls_registered;

static void h2_tls_free(void *unused);
static pthread_key_t h2_tls_key;
static pthread_once_t h2_tls_once = PTHREAD_ONCE_INIT;

static void h2_tls_key_make(void)
{
	if (pthread_key_create(&h2_tls_key, h2_tls_free))
		log_fatal("h2: pthread_key_create");
}

/* The thread's pool and scratch are freed when it exits (a pthread key's destructor). */
static void h2_tls_register(void)
{
	if (h2_tls_registered)
		return;
	pthread_once(&h2_tls_once, h2_tls_key_make);
	pthread_setspecific(h2_tls_key, &h2_tls_registered);
	h2_tls_registered = true;
}

static struct h2_block *block_get(struct h2_conn *c)
{
	(void)c;
	struct h2_block *b = h2_pool;
	if (b) {
		h2_pool = b->next;
		h2_pool_n--;
	} else {
		b = malloc(sizeof(*b));
		if (!b)
			log_fatal("h2: out of memory");
	}
	b->next = NULL;
	b->len = 0;
	return b;
}

static void block_put(struct h2_conn *c, struct h2_block *b)
{
	(void)c;
#ifndef H2_NO_FREELIST
	if (h2_pool_n < H2_POOL_MAX) {
		h2_tls_register();
		b->next = h2_pool;
		h2_pool = b;
		h2_pool_n++;
		return;
	}
#endif
	free(b);
}

static void queue_clear(struct h2_conn *c, struct h2_queue *q)
{
	struct h2_block *b = q->head;
	while (b) {
		struct h2_block *n = b->next;
		block_put(c, b);
		b = n;
	}
	memset(q, 0, sizeof(*q));
}

/* Contiguous room for n bytes at the tail (n <= H2_BLOCK_SIZE); the caller writes them. */
static uint8_t *queue_reserve(struct h2_conn *c, struct h2_queue *q, size_t n)
{
	assert(n <= H2_BLOCK_SIZE);
	if (!q->tail || H2_BLOCK_SIZE - q->tail->len < n) {
		struct h2_block *b = block_get(c);
		if (q->tail)
			q->tail->next = b;
		else
			q->head = b;
		q->tail = b;
	}
	uint8_t *p = q->tail->data + q->tail->len;
	q->tail->len += (uint32_t)n;
	q->bytes += n;
	return p;
}

static void queue_append(struct h2_conn *c, struct h2_queue *q, const uint8_t *src, size_t n)
{
	while (n > 0) {
		if (!q->tail || q->tail->len == H2_BLOCK_SIZE) {
			struct h2_block *b = block_get(c);
			if (q->tail)
				q->tail->next = b;
			else
				q->head = b;
			q->tail = b;
		}
		size_t room = H2_BLOCK_SIZE - q->tail->len;
		size_t k = n < room ? n : room;
		memcpy(q->tail->data + q->tail->len, src, k);
		q->tail->len += (uint32_t)k;
		q->bytes += k;
		src += k;
		n -= k;
	}
}

/* Drops n bytes from the front, recycling emptied blocks. */
static void queue_consume(struct h2_conn *c, struct h2_queue *q, size_t n)
{
	assert(n <= q->bytes);
	q->bytes -= n;
	while (n > 0) {
		struct h2_block *b = q->head;
		size_t avail = b->len - q->off;
		if (n < avail) {
			q->off += (uint32_t)n;
			return;
		}
		n -= avail;
		q->off = 0;
		q->head = b->next;
		if (!q->head)
			q->tail = NULL;
		block_put(c, b); /* fully read, the tail included: appends start a new block */
	}
}

/* Moves n bytes from the front of `from` to the end of `to` (copying). */
static void queue_move(struct h2_conn *c, struct h2_queue *to, struct h2_queue *from, size_t n)
{
	size_t left = n;
	struct h2_block *b = from->head;
	uint32_t off = from->off;
	while (left > 0) {
		size_t avail = b->len - off;
		size_t k = left < avail ? left : avail;
		queue_append(c, to, b->data + off, k);
		left -= k;
		b = b->next;
		off = 0;
	}
	queue_consume(c, from, n);
}

/* ---- frame encoding into the output ---- */

static void put24(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 16);
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint8_t *out_frame(struct h2_conn *c, uint32_t len, uint8_t type, uint8_t flags, uint32_t sid,
			  size_t contiguous)
{
	uint8_t *p = queue_reserve(c, &c->out, H2_FRAME_HEADER + contiguous);
	put24(p, len);
	p[3] = type;
	p[4] = flags;
	put32(p + 5, sid & 0x7fffffff);
	return p + H2_FRAME_HEADER;
}

static bool out_room(const struct h2_conn *c, size_t n)
{
	return c->out.bytes + c->pend_total + n <= c->cfg.max_output_bytes;
}

static void out_rst(struct h2_conn *c, uint32_t sid, uint32_t error)
{
	put32(out_frame(c, 4, F_RST_STREAM, 0, sid, 4), error);
}

static void out_window_update(struct h2_conn *c, uint32_t sid, uint32_t inc)
{
	put32(out_frame(c, 4, F_WINDOW_UPDATE, 0, sid, 4), inc);
}

static void out_goaway(struct h2_conn *c, uint32_t error, const char *debug)
{
	size_t dlen = debug ? strlen(debug) : 0;
	if (dlen > 256)
		dlen = 256;
	uint8_t *p = out_frame(c, (uint32_t)(8 + dlen), F_GOAWAY, 0, 0, 8 + dlen);
	put32(p, c->last_peer_id);
	put32(p + 4, error);
	if (dlen)
		memcpy(p + 8, debug, dlen);
	c->goaway_sent = true;
	c->goaway_last_id = c->last_peer_id;
}

/* ---- stream table ---- */

/* Fibonacci hashing: the product's top bits (its low bits would keep the parity of the
 * always-odd client ids and leave half the table unused). */
static uint32_t hash_home(const struct h2_conn *c, uint32_t id)
{
	return (id * 2654435761u) >> c->hash_shift;
}

static struct h2_stream *stream_find(const struct h2_conn *c, uint32_t id)
{
	if (id == 0)
		return NULL;
	uint32_t i = hash_home(c, id);
	for (;;) {
		uint32_t e = c->hash[i];
		if (!e)
			return NULL;
		if (c->streams[e - 1].id == id)
			return &c->streams[e - 1];
		i = (i + 1) & c->hash_mask;
	}
}

static void hash_insert(struct h2_conn *c, uint32_t id, uint32_t slot)
{
	uint32_t i = hash_home(c, id);
	while (c->hash[i])
		i = (i + 1) & c->hash_mask;
	c->hash[i] = slot + 1;
}

static void hash_remove(struct h2_conn *c, uint32_t id)
{
	uint32_t i = hash_home(c, id);
	while (c->streams[c->hash[i] - 1].id != id)
		i = (i + 1) & c->hash_mask;
	/* backward-shift deletion keeps probe chains unbroken */
	uint32_t j = i;
	c->hash[i] = 0;
	for (;;) {
		j = (j + 1) & c->hash_mask;
		if (!c->hash[j])
			return;
		uint32_t k = hash_home(c, c->streams[c->hash[j] - 1].id);
		bool move = (j > i) ? (k <= i || k > j) : (k <= i && k > j);
		if (move) {
			c->hash[i] = c->hash[j];
			c->hash[j] = 0;
			i = j;
		}
	}
}

static uint32_t slot_of(const struct h2_conn *c, const struct h2_stream *s)
{
	return (uint32_t)(s - c->streams);
}

static void rr_remove(struct h2_conn *c, struct h2_stream *s)
{
	if (!s->in_rr)
		return;
	int32_t me = (int32_t)slot_of(c, s);
	if (s->rr_next == me) {
		c->rr_head = -1;
	} else {
		c->streams[s->rr_prev].rr_next = s->rr_next;
		c->streams[s->rr_next].rr_prev = s->rr_prev;
		if (c->rr_head == me)
			c->rr_head = s->rr_next;
	}
	s->in_rr = false;
}

static void rr_push_back(struct h2_conn *c, struct h2_stream *s)
{
	if (s->in_rr)
		return;
	int32_t me = (int32_t)slot_of(c, s);
	if (c->rr_head < 0) {
		s->rr_next = s->rr_prev = me;
		c->rr_head = me;
	} else {
		struct h2_stream *h = &c->streams[c->rr_head];
		s->rr_next = c->rr_head;
		s->rr_prev = h->rr_prev;
		c->streams[h->rr_prev].rr_next = me;
		h->rr_prev = me;
	}
	s->in_rr = true;
}

/* DATA is waiting: pushed bytes, or a source that has not ended (flow control applies). */
static bool stream_has_data(const struct h2_stream *s)
{
	return s->pend.bytes > 0 || s->src_active;
}

static bool stream_has_work(const struct h2_stream *s)
{
	return stream_has_data(s) || s->trailers.bytes > 0;
}

/* Puts a stream on the send rota if it could send something now. */
static void stream_schedule(struct h2_conn *c, struct h2_stream *s)
{
	if (s->in_rr || !stream_has_work(s))
		return;
	if (stream_has_data(s) && (s->send_window <= 0 || (s->pend.bytes == 0 && s->src_deferred)))
		return;
	rr_push_back(c, s);
}

/* The stream no longer needs its source (its end, a reset, the connection going). */
static void stream_src_drop(struct h2_stream *s)
{
	if (!s->src_active && !s->src.free)
		return;
	struct h2_data_source src = s->src;
	s->src_active = s->src_deferred = false;
	memset(&s->src, 0, sizeof(s->src));
	if (src.free)
		src.free(src.arg);
}

static void ring_note(struct h2_conn *c, uint32_t id, bool we_reset)
{
	c->closed_ring[c->closed_pos++ % H2_CLOSED_RING] = id | (we_reset ? 0x80000000u : 0);
}

/* 1: closed and we reset it; 0: closed by END_STREAM both ways; -1: not remembered. */
static int ring_lookup(const struct h2_conn *c, uint32_t id)
{
	for (unsigned i = 0; i < H2_CLOSED_RING; i++)
		if ((c->closed_ring[i] & 0x7fffffff) == id && id)
			return c->closed_ring[i] >> 31;
	return -1;
}

/* A stream that is gone and whose late frames are to be ignored: we reset it, or it was
 * opened after our GOAWAY (RFC 9113 5.1 and 6.8). */
static bool stream_ignored(const struct h2_conn *c, uint32_t id)
{
	return (c->goaway_sent && id > c->goaway_last_id) || ring_lookup(c, id) == 1;
}

/* Removes a stream from the table; `rst` sends RST_STREAM(error) first. on_close last. */
static void stream_close(struct h2_conn *c, struct h2_stream *s, uint32_t error, bool rst)
{
	uint32_t id = s->id, slot = slot_of(c, s);
	if (rst && c->state != ST_DEAD)
		out_rst(c, id, error);
	rr_remove(c, s);
	c->pend_total -= s->pend.bytes + s->trailers.bytes;
	queue_clear(c, &s->pend);
	queue_clear(c, &s->trailers);
	stream_src_drop(s);
	hash_remove(c, id);
	ring_note(c, id, rst);
	s->id = 0;
	s->free_next = c->free_head;
	c->free_head = (int32_t)slot;
	c->n_streams--;
	if (c->cb.on_close)
		c->cb.on_close(c->user, id, slot, error);
}

/* Doubles the stream hash once it is half full, so a connection with few streams keeps a
 * small, cache-resident table. If memory is short the table stays: it is never full
 * (streams are capped at streams_max, the table grows to twice that). */
static void hash_grow(struct h2_conn *c)
{
	uint32_t size = c->hash_mask + 1;

	if (c->n_streams + 1 <= size / 2 || size >= c->hash_max)
		return;
	uint32_t *nh = calloc((size_t)size * 2, sizeof(*nh));
	if (!nh)
		return;
	uint32_t *old = c->hash;
	c->hash = nh;
	c->hash_mask = size * 2 - 1;
	c->hash_shift--;
	for (uint32_t i = 0; i < size; i++)
		if (old[i])
			hash_insert(c, c->streams[old[i] - 1].id, old[i] - 1);
	free(old);
}

static struct h2_stream *stream_open(struct h2_conn *c, uint32_t id, bool end_stream)
{
	uint32_t slot;

	hash_grow(c);
	if (c->free_head >= 0) {
		slot = (uint32_t)c->free_head;
		c->free_head = c->streams[slot].free_next;
	} else {
		assert(c->streams_hw < c->cfg.streams_max);
		if (c->streams_hw == c->streams_cap) {
			/* grows with the streams really open; slots are indices, so moving is safe */
			uint32_t cap = c->streams_cap ? 2 * c->streams_cap : H2_STREAMS_MIN;
			if (cap > c->cfg.streams_max)
				cap = c->cfg.streams_max;
			struct h2_stream *n = realloc(c->streams, (size_t)cap * sizeof(*n));
			if (!n)
				log_fatal("h2: out of memory");
			c->streams = n;
			c->streams_cap = cap;
		}
		slot = c->streams_hw++;
	}
	struct h2_stream *s = &c->streams[slot];
	memset(s, 0, sizeof(*s));
	s->id = id;
	s->remote_closed = end_stream;
	s->send_window = c->peer_initial_window;
	s->recv_window = c->cfg.initial_window_size;
	s->rr_prev = s->rr_next = -1;
	s->free_next = -1;
	hash_insert(c, id, slot);
	c->n_streams++;
	return s;
}

/* ---- connection errors ---- */

static void close_all_streams(struct h2_conn *c, uint32_t error)
{
	for (uint32_t i = 0; i < c->streams_hw; i++)
		if (c->streams[i].id)
			stream_close(c, &c->streams[i], error, false);
}

/* Connection error: GOAWAY (unless `silent`), then every stream ends. */
static int conn_fail(struct h2_conn *c, uint32_t error, const char *debug, bool silent)
{
	if (c->state == ST_DEAD)
		return -EPIPE;
	if (!silent)
		out_goaway(c, error, debug);
	c->state = ST_DEAD;
	close_all_streams(c, H2_CANCEL);
	return -EPIPE;
}

/* ---- sending DATA ---- */

/* Gives back the last n bytes reserved at the tail of q (nothing was handed out past
 * the tail's length before the reservation, so no iovec covers them). */
static void queue_unreserve(struct h2_queue *q, size_t n)
{
	assert(q->tail && q->tail->len >= n);
	q->tail->len -= (uint32_t)n;
	q->bytes -= n;
}

/* Pulls one frame from the stream's source straight into the output (one copy: the
 * source writes into the frame). The frame is at most what the windows allow and what
 * fits one block. Returns payload bytes sent. */
static size_t stream_pull_frame(struct h2_conn *c, struct h2_stream *s, size_t n)
{
	size_t room = c->out.tail ? H2_BLOCK_SIZE - c->out.tail->len : 0;
	if (room < H2_FRAME_HEADER + H2_PULL_MIN)
		room = H2_BLOCK_SIZE; /* a fresh block */
	if (n > room - H2_FRAME_HEADER)
		n = room - H2_FRAME_HEADER;
	uint8_t *p = out_frame(c, (uint32_t)n, F_DATA, 0, s->id, n);
	bool eof = false;
	ssize_t k = s->src.read(s->src.arg, p, n, &eof);
	if (k < 0 || (size_t)k > n) {
		queue_unreserve(&c->out, H2_FRAME_HEADER + n);
		stream_close(c, s, k < 0 && -k <= H2_HTTP_1_1_REQUIRED ? (uint32_t)-k : H2_INTERNAL_ERROR, true);
		return 0;
	}
	if ((size_t)k < n) {
		queue_unreserve(&c->out, n - (size_t)k);
		put24(p - H2_FRAME_HEADER, (uint32_t)k);
	}
	if (k == 0 && !eof) {
		queue_unreserve(&c->out, H2_FRAME_HEADER);
		s->src_deferred = true;
		return 0;
	}
	if (k == 0) /* an end with no bytes: no empty frame needed (trailers or nothing follow) */
		queue_unreserve(&c->out, H2_FRAME_HEADER);
	s->send_window -= k;
	c->send_window -= k;
	if (eof)
		stream_src_drop(s);
	return (size_t)k;
}

/* Sends up to one frame of a stream's pushed queue, else of its source; returns bytes of
 * payload sent. */
static size_t stream_send_frame(struct h2_conn *c, struct h2_stream *s)
{
	size_t n = s->pend.bytes ? s->pend.bytes : SIZE_MAX;
	if (n > c->peer_max_frame)
		n = c->peer_max_frame;
	if ((int64_t)n > s->send_window)
		n = (size_t)s->send_window;
	if ((int64_t)n > c->send_window)
		n = (size_t)c->send_window;
	if (n == 0)
		return 0;
	if (!s->pend.bytes)
		return stream_pull_frame(c, s, n);
	out_frame(c, (uint32_t)n, F_DATA, 0, s->id, 0);
	c->pend_total -= n;
	queue_move(c, &c->out, &s->pend, n);
	s->send_window -= (int64_t)n;
	c->send_window -= (int64_t)n;
	return n;
}

/* The stream's END_STREAM block is out: the stream is done on our side. */
static void stream_local_done(struct h2_conn *c, struct h2_stream *s)
{
	if (s->remote_closed)
		stream_close(c, s, H2_NO_ERROR, false);
	else
		stream_close(c, s, H2_NO_ERROR, true); /* RFC 9113 8.1: no need for the rest */
}

static void window_return(struct h2_conn *c, struct h2_stream *s);

static void flush(struct h2_conn *c)
{
	if (c->flushing || c->state == ST_DEAD)
		return;
	c->flushing = true;
	while (c->rr_head >= 0 && c->out.bytes < H2_OUT_LOWAT && c->state != ST_DEAD) {
		struct h2_stream *s = &c->streams[c->rr_head];
		uint32_t id = s->id;
		rr_remove(c, s);
		if (stream_has_data(s)) {
			if (s->send_window <= 0)
				continue; /* blocked on its own window: off the rota */
			if (c->send_window <= 0) {
				/* everyone waits for the connection window; keep s first */
				rr_push_back(c, s);
				c->rr_head = (int32_t)slot_of(c, s);
				break;
			}
			stream_send_frame(c, s);
			if (s->id != id)
				continue; /* its source failed: the stream was reset */
		}
		if (!stream_has_data(s) && s->trailers.bytes) {
			size_t t = s->trailers.bytes;
			c->pend_total -= t;
			queue_move(c, &c->out, &s->trailers, t);
			stream_local_done(c, s);
			continue;
		}
		stream_schedule(c, s);
	}
	c->flushing = false;
}

int h2_submit_data(struct h2_conn *c, uint32_t stream_id, const void *a, size_t alen, const void *b,
		   size_t blen)
{
	struct h2_stream *s = stream_find(c, stream_id);
	if (!s || s->local_end || c->state == ST_DEAD)
		return -ENOENT;
	if (s->src_active)
		return -EBUSY;
	size_t total = alen + blen;
	if (!out_room(c, total + H2_FRAME_HEADER * (total / H2_DEFAULT_FRAME + 1))) {
		/* this answer does not fit what the connection may hold: it alone fails */
		stream_close(c, s, H2_INTERNAL_ERROR, true);
		return -ENOBUFS;
	}
	const uint8_t *src[2] = {a, b};
	size_t len[2] = {alen, blen};
	int part = 0;
	/* fast path: nothing queued ahead of us anywhere, so frame straight into the output */
	if (s->pend.bytes == 0 && c->rr_head < 0 && !c->flushing) {
		while (total > 0 && c->out.bytes < H2_OUT_LOWAT) {
			size_t n = total;
			if (n > c->peer_max_frame)
				n = c->peer_max_frame;
			if ((int64_t)n > s->send_window)
				n = s->send_window > 0 ? (size_t)s->send_window : 0;
			if ((int64_t)n > c->send_window)
				n = c->send_window > 0 ? (size_t)c->send_window : 0;
			if (n == 0)
				break;
			out_frame(c, (uint32_t)n, F_DATA, 0, s->id, 0);
			s->send_window -= (int64_t)n;
			c->send_window -= (int64_t)n;
			total -= n;
			while (n > 0) {
				while (len[part] == 0)
					part++;
				size_t k = n < len[part] ? n : len[part];
				queue_append(c, &c->out, src[part], k);
				src[part] += k;
				len[part] -= k;
				n -= k;
			}
		}
	}
	for (; part < 2; part++) {
		if (len[part]) {
			queue_append(c, &s->pend, src[part], len[part]);
			c->pend_total += len[part];
		}
	}
	if (s->pend.bytes) {
		stream_schedule(c, s);
		flush(c);
	}
	return 0;
}

int h2_submit_headers(struct h2_conn *c, uint32_t stream_id, const struct h2_field *fields, size_t n,
		      bool end_stream)
{
	struct h2_stream *s = stream_find(c, stream_id);
	if (!s || s->local_end || c->state == ST_DEAD)
		return -ENOENT;
	if (!end_stream && stream_has_work(s))
		return -EBUSY; /* response headers go before any DATA */
	uint8_t enc[H2_RESP_BLOCK_MAX];
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		ssize_t k = hpack_encode_field(enc + len, H2_RESP_BLOCK_MAX - len,
					       (const char *)fields[i].name, fields[i].name_len,
					       (const char *)fields[i].value, fields[i].value_len, 0);
		if (k < 0)
			return -EMSGSIZE;
		len += (size_t)k;
	}
	if (!out_room(c, len + H2_FRAME_HEADER)) {
		conn_fail(c, H2_INTERNAL_ERROR, NULL, true);
		return -ENOBUFS;
	}
	uint8_t flags = FL_END_HEADERS | (end_stream ? FL_END_STREAM : 0);
	if (end_stream)
		s->local_end = true;
	if (end_stream && stream_has_work(s)) {
		/* trailers wait behind queued and pulled DATA, as a whole frame */
		uint8_t *h = queue_reserve(c, &s->trailers, H2_FRAME_HEADER);
		put24(h, (uint32_t)len);
		h[3] = F_HEADERS;
		h[4] = flags;
		put32(h + 5, stream_id);
		queue_append(c, &s->trailers, enc, len);
		c->pend_total += s->trailers.bytes;
		stream_schedule(c, s);
		flush(c);
		return 0;
	}
	out_frame(c, (uint32_t)len, F_HEADERS, flags, stream_id, 0);
	queue_append(c, &c->out, enc, len);
	if (end_stream)
		stream_local_done(c, s);
	return 0;
}

int h2_submit_rst(struct h2_conn *c, uint32_t stream_id, uint32_t error)
{
	struct h2_stream *s = stream_find(c, stream_id);
	if (!s || c->state == ST_DEAD)
		return -ENOENT;
	stream_close(c, s, error, true);
	return 0;
}

void h2_conn_goaway(struct h2_conn *c)
{
	if (c->state == ST_DEAD || c->goaway_sent)
		return;
	out_goaway(c, H2_NO_ERROR, NULL);
}

size_t h2_stream_queued_bytes(const struct h2_conn *c, uint32_t stream_id)
{
	const struct h2_stream *s = stream_find(c, stream_id);
	return s ? s->pend.bytes + s->trailers.bytes : 0;
}

int h2_submit_source(struct h2_conn *c, uint32_t stream_id, const struct h2_data_source *src)
{
	struct h2_stream *s = stream_find(c, stream_id);
	if (!s || s->local_end || c->state == ST_DEAD) {
		if (src->free)
			src->free(src->arg);
		return -ENOENT;
	}
	if (s->src_active)
		return -EBUSY;
	s->src = *src;
	s->src_active = true;
	s->src_deferred = false;
	stream_schedule(c, s);
	flush(c);
	return 0;
}

int h2_stream_resume(struct h2_conn *c, uint32_t stream_id)
{
	struct h2_stream *s = stream_find(c, stream_id);
	if (!s || c->state == ST_DEAD)
		return -ENOENT;
	if (s->src_deferred) {
		s->src_deferred = false;
		stream_schedule(c, s);
		flush(c);
	}
	return 0;
}

uint32_t h2_conn_slots_cap(const struct h2_conn *c)
{
	return c->streams_cap;
}

int h2_stream_slot(const struct h2_conn *c, uint32_t stream_id)
{
	const struct h2_stream *s = stream_find(c, stream_id);
	return s ? (int)slot_of(c, s) : -1;
}

/* ---- receiving: header blocks ---- */

static bool name_is_valid(const uint8_t *n, size_t len, bool pseudo)
{
	if (len == 0)
		return false;
	for (size_t i = pseudo ? 1 : 0; i < len; i++)
		if (n[i] <= 0x20 || (n[i] >= 'A' && n[i] <= 'Z') || n[i] >= 0x7f)
			return false;
	return true;
}

static bool name_eq(const uint8_t *n, size_t len, const char *lit)
{
	size_t l = strlen(lit);
	return len == l && memcmp(n, lit, l) == 0;
}

static bool value_is_valid(const uint8_t *v, size_t len)
{
	unsigned bad = 0; /* no early exit: the loop vectorizes */
	for (size_t i = 0; i < len; i++)
		bad |= (v[i] == 0) | (v[i] == '\r') | (v[i] == '\n');
	if (len && (v[0] == ' ' || v[0] == '\t' || v[len - 1] == ' ' || v[len - 1] == '\t'))
		return false;
	return !bad;
}

/* Connection-specific fields (RFC 9113 8.2.2) make a request malformed; "te" only
 * with a value other than "trailers". */
static bool field_is_forbidden(const uint8_t *n, size_t nlen, const uint8_t *v, size_t vlen)
{
	switch (nlen) {
	case 2:
		return name_eq(n, nlen, "te") && !(vlen == 8 && memcmp(v, "trailers", 8) == 0);
	case 7:
		return name_eq(n, nlen, "upgrade");
	case 10:
		return name_eq(n, nlen, "connection") || name_eq(n, nlen, "keep-alive");
	case 16:
		return name_eq(n, nlen, "proxy-connection");
	case 17:
		return name_eq(n, nlen, "transfer-encoding");
	default:
		return false;
	}
}

/* The thread's header scratch, grown to this connection's limits (it never shrinks: at
 * most max_header_list_size * (1 + 24/32) bytes per thread). */
static __thread uint8_t *h2_scratch;
static __thread struct h2_field *h2_scratch_fields;
static __thread uint32_t h2_scratch_max, h2_scratch_fields_max;

static void h2_tls_free(void *unused)
{
	while (h2_pool) {
		struct h2_block *b = h2_pool;
		h2_pool = b->next;
		free(b);
	}
	h2_pool_n = 0;
	free(h2_scratch);
	free(h2_scratch_fields);
	h2_scratch = NULL;
	h2_scratch_fields = NULL;
	h2_scratch_max = h2_scratch_fields_max = 0;
	h2_tls_registered = false;
}

static void hdr_scratch_get(struct h2_conn *c)
{
	h2_tls_register();
	if (h2_scratch_max < c->hdr_scratch_max) {
		free(h2_scratch);
		if (!(h2_scratch = malloc(c->hdr_scratch_max)))
			log_fatal("h2: out of memory");
		h2_scratch_max = c->hdr_scratch_max;
	}
	if (h2_scratch_fields_max < c->hdr_max) {
		free(h2_scratch_fields);
		if (!(h2_scratch_fields = malloc(c->hdr_max * sizeof(*h2_scratch_fields))))
			log_fatal("h2: out of memory");
		h2_scratch_fields_max = c->hdr_max;
	}
	c->hdr_scratch = h2_scratch;
	c->hdr_fields = h2_scratch_fields;
}

/* Copies a field into the scratch; false if it does not fit (the list is too large). */
static bool hdr_store(struct h2_conn *c, struct h2_field *f, const uint8_t *name, size_t name_len,
		      const uint8_t *value, size_t value_len)
{
	if (c->hdr_scratch_len + name_len + value_len > c->hdr_scratch_max) {
		c->hdr_overflow = true;
		return false;
	}
	uint8_t *p = c->hdr_scratch + c->hdr_scratch_len;
	memcpy(p, name, name_len);
	memcpy(p + name_len, value, value_len);
	c->hdr_scratch_len += (uint32_t)(name_len + value_len);
	f->name = p;
	f->name_len = (uint32_t)name_len;
	f->value = p + name_len;
	f->value_len = (uint32_t)value_len;
	return true;
}

static int hdr_on_field(void *arg, const uint8_t *name, size_t name_len, const uint8_t *value, size_t value_len)
{
	struct h2_conn *c = arg;
	if (c->hdr_overflow)
		return 0; /* keep decoding for the table's sake */
	if (name_len && name[0] == ':') {
		struct h2_field *ps = NULL;
		if (c->hdr_regular_seen || !name_is_valid(name, name_len, true))
			c->hdr_malformed = true;
		else if (name_eq(name, name_len, ":method"))
			ps = &c->ps_method;
		else if (name_eq(name, name_len, ":scheme"))
			ps = &c->ps_scheme;
		else if (name_eq(name, name_len, ":path"))
			ps = &c->ps_path;
		else if (name_eq(name, name_len, ":authority"))
			ps = &c->ps_authority;
		else
			c->hdr_malformed = true;
		if (ps) {
			if (ps->name)
				c->hdr_malformed = true; /* twice */
			else
				hdr_store(c, ps, name, name_len, value, value_len);
		}
		if (!value_is_valid(value, value_len))
			c->hdr_malformed = true;
		return 0;
	}
	c->hdr_regular_seen = true;
	if (!name_is_valid(name, name_len, false) || !value_is_valid(value, value_len))
		c->hdr_malformed = true;
	if (field_is_forbidden(name, name_len, value, value_len))
		c->hdr_malformed = true;
	if (c->hdr_n == c->hdr_max) {
		c->hdr_overflow = true;
		return 0;
	}
	if (hdr_store(c, &c->hdr_fields[c->hdr_n], name, name_len, value, value_len))
		c->hdr_n++;
	return 0;
}

static int discard_field(void *arg, const uint8_t *name, size_t name_len, const uint8_t *value, size_t value_len)
{
	return 0;
}

/* The HPACK decoder (about 10 KiB), made at the first header block. */
static struct hpack_decoder *hpack_of(struct h2_conn *c)
{
	if (!c->hpack && !(c->hpack = hpack_decoder_new(4096)))
		log_fatal("h2: out of memory");
	return c->hpack;
}

/* Decodes a block only to keep the HPACK table in step. */
static int hb_discard(struct h2_conn *c, const uint8_t *block, size_t len)
{
	int r = hpack_decode_block(hpack_of(c), block, len, c->cfg.max_header_list_size, discard_field, NULL);
	if (r == -HPACK_ECOMPRESSION || (r < 0 && r != -HPACK_ETOOLARGE))
		return conn_fail(c, H2_COMPRESSION_ERROR, "header block", false);
	return 0;
}

static int on_header_block(struct h2_conn *c, uint32_t sid, uint8_t flags, bool prio_self, const uint8_t *block,
			   size_t len)
{
	bool end_stream = flags & FL_END_STREAM;
	struct h2_stream *s = stream_find(c, sid);
	if (s) {
		/* a second header block: trailers */
		if (hb_discard(c, block, len) < 0)
			return -EPIPE;
		if (s->remote_closed) {
			stream_close(c, s, H2_STREAM_CLOSED, true);
		} else if (!end_stream || prio_self) {
			stream_close(c, s, H2_PROTOCOL_ERROR, true);
		} else {
			s->remote_closed = true;
			uint32_t slot = slot_of(c, s);
			if (c->cb.on_data)
				c->cb.on_data(c->user, sid, slot, NULL, 0, true);
		}
		return 0;
	}
	if ((sid & 1) == 0) {
		hb_discard(c, block, len);
		return conn_fail(c, H2_PROTOCOL_ERROR, "even stream id", false);
	}
	if (sid <= c->last_peer_id) {
		if (hb_discard(c, block, len) < 0)
			return -EPIPE;
		if (stream_ignored(c, sid))
			return 0; /* we reset it: ignore (RFC 9113 5.1) */
		if (ring_lookup(c, sid) == 0)
			return conn_fail(c, H2_STREAM_CLOSED, "HEADERS on closed stream", false);
		return conn_fail(c, H2_PROTOCOL_ERROR, "stream id not increasing", false);
	}
	c->last_peer_id = sid;
	if (c->goaway_sent) {
		/* after GOAWAY, new streams are ignored; the peer retries them elsewhere */
		return hb_discard(c, block, len);
	}

	hdr_scratch_get(c);
	c->hdr_scratch_len = 0;
	c->hdr_n = 0;
	memset(&c->ps_method, 0, sizeof(c->ps_method) * 4);
	c->hdr_malformed = c->hdr_overflow = c->hdr_regular_seen = false;
	int r = hpack_decode_block(hpack_of(c), block, len, c->cfg.max_header_list_size, hdr_on_field, c);
	bool too_large = c->hdr_overflow;
	if (r == -HPACK_ETOOLARGE)
		too_large = true;
	else if (r < 0)
		return conn_fail(c, H2_COMPRESSION_ERROR, "header block", false);

	if (prio_self) {
		out_rst(c, sid, H2_PROTOCOL_ERROR);
		ring_note(c, sid, true);
		return 0;
	}
	if (c->n_streams >= c->cfg.streams_max) {
		out_rst(c, sid, H2_REFUSED_STREAM);
		ring_note(c, sid, true);
		return 0;
	}
	if (!too_large && (c->hdr_malformed || !c->ps_method.name || !c->ps_scheme.name || !c->ps_path.name ||
			   c->ps_path.value_len == 0)) {
		out_rst(c, sid, H2_PROTOCOL_ERROR);
		ring_note(c, sid, true);
		return 0;
	}
	s = stream_open(c, sid, end_stream);
	struct h2_request rq = {
		.method = c->ps_method,
		.scheme = c->ps_scheme,
		.path = c->ps_path,
		.authority = c->ps_authority,
		.fields = c->hdr_fields,
		.n_fields = c->hdr_n,
		.end_stream = end_stream,
		.too_large = too_large,
	};
	if (c->cb.on_request)
		c->cb.on_request(c->user, sid, slot_of(c, s), &rq);
	return 0;
}

/* ---- receiving: frames ---- */

static int on_data(struct h2_conn *c, uint32_t sid, uint8_t flags, const uint8_t *p, uint32_t len)
{
	if (sid == 0)
		return conn_fail(c, H2_PROTOCOL_ERROR, "DATA on stream 0", false);
	uint32_t flow_len = len;
	uint32_t pad = 0;
	if (flags & FL_PADDED) {
		if (len < 1)
			return conn_fail(c, H2_FRAME_SIZE_ERROR, "DATA padding", false);
		pad = p[0];
		p++;
		len--;
		if (pad >= flow_len)
			return conn_fail(c, H2_PROTOCOL_ERROR, "DATA padding", false);
		len -= pad;
	}
	if ((int64_t)flow_len > c->recv_window)
		return conn_fail(c, H2_FLOW_CONTROL_ERROR, "connection window exceeded", false);
	c->recv_window -= flow_len;
	/* by_consume: the payload handed up is returned when the layer above says it was
	 * consumed (h2_conn_consume); padding and what is never handed up, at once */
	bool by_consume = c->cfg.window_by_consume;
	c->recv_unacked += by_consume ? flow_len - len : flow_len;

	struct h2_stream *s = stream_find(c, sid);
	if (!s || s->remote_closed || (int64_t)flow_len > s->recv_window)
		c->recv_unacked += by_consume ? len : 0;
	if (!s) {
		if ((sid & 1) == 0 || sid > c->last_peer_id)
			return conn_fail(c, H2_PROTOCOL_ERROR, "DATA on idle stream", false);
		if (!stream_ignored(c, sid))
			out_rst(c, sid, H2_STREAM_CLOSED);
	} else if (s->remote_closed) {
		stream_close(c, s, H2_STREAM_CLOSED, true);
	} else if ((int64_t)flow_len > s->recv_window) {
		stream_close(c, s, H2_FLOW_CONTROL_ERROR, true);
	} else {
		bool end = flags & FL_END_STREAM;
		uint32_t slot = slot_of(c, s);
		s->recv_window -= flow_len;
		s->recv_unacked += by_consume ? flow_len - len : flow_len;
		if (end)
			s->remote_closed = true;
		if (c->cb.on_data && (len > 0 || end))
			c->cb.on_data(c->user, sid, slot, p, len, end);
		else if (by_consume)
			c->recv_unacked += len;
		/* the callback may have closed the stream */
		s = &c->streams[slot];
		if (s->id == sid)
			window_return(c, s);
	}
	window_return(c, NULL);
	return c->state == ST_DEAD ? -EPIPE : 0;
}

/* Sends WINDOW_UPDATEs once half a window was consumed (for the stream `s` if not NULL,
 * else for the connection). */
static void window_return(struct h2_conn *c, struct h2_stream *s)
{
	if (c->state == ST_DEAD)
		return;
	if (s && !s->remote_closed && s->recv_unacked >= c->cfg.initial_window_size / 2) {
		out_window_update(c, s->id, s->recv_unacked);
		s->recv_window += s->recv_unacked;
		s->recv_unacked = 0;
	}
	if (!s && c->recv_unacked >= c->cfg.conn_window_size / 2) {
		out_window_update(c, 0, c->recv_unacked);
		c->recv_window += c->recv_unacked;
		c->recv_unacked = 0;
	}
}

void h2_conn_consume(struct h2_conn *c, uint32_t stream_id, size_t bytes)
{
	if (c->state == ST_DEAD || bytes == 0)
		return;
	c->recv_unacked += (uint32_t)bytes;
	struct h2_stream *s = stream_find(c, stream_id);
	if (s) {
		s->recv_unacked += (uint32_t)bytes;
		window_return(c, s);
	}
	window_return(c, NULL);
}

static int on_headers(struct h2_conn *c, uint32_t sid, uint8_t flags, const uint8_t *p, uint32_t len)
{
	if (sid == 0)
		return conn_fail(c, H2_PROTOCOL_ERROR, "HEADERS on stream 0", false);
	uint32_t pad = 0, off = 0;
	bool prio_self = false;
	if (flags & FL_PADDED) {
		if (len < 1)
			return conn_fail(c, H2_FRAME_SIZE_ERROR, "HEADERS padding", false);
		pad = p[0];
		off = 1;
	}
	if (flags & FL_PRIORITY) {
		if (len < off + 5)
			return conn_fail(c, H2_FRAME_SIZE_ERROR, "HEADERS priority", false);
		prio_self = (get32(p + off) & 0x7fffffff) == sid;
		off += 5;
	}
	if (off + pad > len)
		return conn_fail(c, H2_PROTOCOL_ERROR, "HEADERS padding", false);
	const uint8_t *frag = p + off;
	uint32_t flen = len - off - pad;
	if (flags & FL_END_HEADERS)
		return on_header_block(c, sid, flags, prio_self, frag, flen);
	if (flen > c->hb_max)
		return conn_fail(c, H2_ENHANCE_YOUR_CALM, "header block too large", false);
	if (!c->hb_buf) {
		c->hb_buf = malloc(c->hb_max);
		if (!c->hb_buf)
			log_fatal("h2: out of memory");
	}
	memcpy(c->hb_buf, frag, flen);
	c->hb_len = flen;
	c->hb_active = true;
	c->hb_stream = sid;
	c->hb_flags = flags;
	c->hb_prio_self = prio_self;
	c->hb_frames = 1;
	return 0;
}

static int on_continuation(struct h2_conn *c, uint32_t sid, uint8_t flags, const uint8_t *p, uint32_t len)
{
	if (!c->hb_active || sid != c->hb_stream)
		return conn_fail(c, H2_PROTOCOL_ERROR, "unexpected CONTINUATION", false);
	if (++c->hb_frames > H2_CONTINUATION_MAX)
		return conn_fail(c, H2_ENHANCE_YOUR_CALM, "too many CONTINUATION frames", false);
	if (len > c->hb_max - c->hb_len)
		return conn_fail(c, H2_ENHANCE_YOUR_CALM, "header block too large", false);
	memcpy(c->hb_buf + c->hb_len, p, len);
	c->hb_len += len;
	if (!(flags & FL_END_HEADERS))
		return 0;
	c->hb_active = false;
	return on_header_block(c, sid, c->hb_flags, c->hb_prio_self, c->hb_buf, c->hb_len);
}

static int on_settings(struct h2_conn *c, uint32_t sid, uint8_t flags, const uint8_t *p, uint32_t len)
{
	if (sid != 0)
		return conn_fail(c, H2_PROTOCOL_ERROR, "SETTINGS on a stream", false);
	if (flags & FL_ACK) {
		if (len != 0)
			return conn_fail(c, H2_FRAME_SIZE_ERROR, "SETTINGS ACK with payload", false);
		c->settings_acked = true;
		return 0;
	}
	if (len % 6)
		return conn_fail(c, H2_FRAME_SIZE_ERROR, "SETTINGS length", false);
	for (uint32_t i = 0; i < len; i += 6) {
		uint16_t id = (uint16_t)(p[i] << 8 | p[i + 1]);
		uint32_t v = get32(p + i + 2);
		switch (id) {
		case S_ENABLE_PUSH:
			if (v > 1)
				return conn_fail(c, H2_PROTOCOL_ERROR, "ENABLE_PUSH", false);
			break;
		case S_INITIAL_WINDOW_SIZE: {
			if (v > H2_MAX_WINDOW)
				return conn_fail(c, H2_FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE", false);
			int64_t delta = (int64_t)v - c->peer_initial_window;
			c->peer_initial_window = v;
			for (uint32_t k = 0; k < c->streams_hw; k++) {
				struct h2_stream *s = &c->streams[k];
				if (!s->id)
					continue;
				s->send_window += delta;
				if (s->send_window > H2_MAX_WINDOW)
					return conn_fail(c, H2_FLOW_CONTROL_ERROR, "window overflow", false);
			}
			break;
		}
		case S_MAX_FRAME_SIZE:
			if (v < H2_DEFAULT_FRAME || v > H2_MAX_FRAME)
				return conn_fail(c, H2_PROTOCOL_ERROR, "MAX_FRAME_SIZE", false);
			c->peer_max_frame = v;
			break;
		default: /* table size: our encoder never indexes; the rest is advisory or unknown */
			break;
		}
	}
	if (!out_room(c, H2_FRAME_HEADER))
		return conn_fail(c, H2_INTERNAL_ERROR, NULL, true);
	out_frame(c, 0, F_SETTINGS, FL_ACK, 0, 0);
	for (uint32_t k = 0; k < c->streams_hw; k++)
		if (c->streams[k].id)
			stream_schedule(c, &c->streams[k]);
	flush(c);
	return 0;
}

static int on_window_update(struct h2_conn *c, uint32_t sid, const uint8_t *p, uint32_t len)
{
	if (len != 4)
		return conn_fail(c, H2_FRAME_SIZE_ERROR, "WINDOW_UPDATE length", false);
	uint32_t inc = get32(p) & 0x7fffffff;
	if (sid == 0) {
		if (inc == 0)
			return conn_fail(c, H2_PROTOCOL_ERROR, "WINDOW_UPDATE of 0", false);
		c->send_window += inc;
		if (c->send_window > H2_MAX_WINDOW)
			return conn_fail(c, H2_FLOW_CONTROL_ERROR, "window overflow", false);
		flush(c);
		return 0;
	}
	struct h2_stream *s = stream_find(c, sid);
	if (!s) {
		if ((sid & 1) == 0 || sid > c->last_peer_id)
			return conn_fail(c, H2_PROTOCOL_ERROR, "WINDOW_UPDATE on idle stream", false);
		return 0;
	}
	if (inc == 0) {
		stream_close(c, s, H2_PROTOCOL_ERROR, true);
		return 0;
	}
	s->send_window += inc;
	if (s->send_window > H2_MAX_WINDOW) {
		stream_close(c, s, H2_FLOW_CONTROL_ERROR, true);
		return 0;
	}
	stream_schedule(c, s);
	flush(c);
	return 0;
}

static int on_frame(struct h2_conn *c, const struct h2_frame *f, const uint8_t *p)
{
	uint32_t len = f->len, sid = f->sid;
	uint8_t type = f->type, flags = f->flags;

	if (c->state == ST_FIRST_SETTINGS) {
		if (type != F_SETTINGS || (flags & FL_ACK))
			return conn_fail(c, H2_PROTOCOL_ERROR, "expected SETTINGS", false);
		c->state = ST_OPEN;
	}
	if (c->hb_active && type != F_CONTINUATION)
		return conn_fail(c, H2_PROTOCOL_ERROR, "expected CONTINUATION", false);

	switch (type) {
	case F_DATA:
		return on_data(c, sid, flags, p, len);
	case F_HEADERS:
		return on_headers(c, sid, flags, p, len);
	case F_PRIORITY: {
		if (sid == 0)
			return conn_fail(c, H2_PROTOCOL_ERROR, "PRIORITY on stream 0", false);
		struct h2_stream *s = stream_find(c, sid);
		uint32_t err = len != 5 ? H2_FRAME_SIZE_ERROR
					: (get32(p) & 0x7fffffff) == sid ? H2_PROTOCOL_ERROR : H2_NO_ERROR;
		if (err != H2_NO_ERROR) {
			if (s)
				stream_close(c, s, err, true);
			else
				out_rst(c, sid, err);
		}
		return 0;
	}
	case F_RST_STREAM: {
		if (sid == 0)
			return conn_fail(c, H2_PROTOCOL_ERROR, "RST_STREAM on stream 0", false);
		if (len != 4)
			return conn_fail(c, H2_FRAME_SIZE_ERROR, "RST_STREAM length", false);
		struct h2_stream *s = stream_find(c, sid);
		if (s)
			stream_close(c, s, get32(p), false);
		else if ((sid & 1) == 0 || sid > c->last_peer_id)
			return conn_fail(c, H2_PROTOCOL_ERROR, "RST_STREAM on idle stream", false);
		return 0;
	}
	case F_SETTINGS:
		return on_settings(c, sid, flags, p, len);
	case F_PUSH_PROMISE:
		return conn_fail(c, H2_PROTOCOL_ERROR, "PUSH_PROMISE from client", false);
	case F_PING:
		if (sid != 0)
			return conn_fail(c, H2_PROTOCOL_ERROR, "PING on a stream", false);
		if (len != 8)
			return conn_fail(c, H2_FRAME_SIZE_ERROR, "PING length", false);
		if (flags & FL_ACK)
			return 0;
		if (!out_room(c, H2_FRAME_HEADER + 8))
			return conn_fail(c, H2_INTERNAL_ERROR, NULL, true);
		memcpy(out_frame(c, 8, F_PING, FL_ACK, 0, 8), p, 8);
		return 0;
	case F_GOAWAY:
		if (sid != 0)
			return conn_fail(c, H2_PROTOCOL_ERROR, "GOAWAY on a stream", false);
		if (len < 8)
			return conn_fail(c, H2_FRAME_SIZE_ERROR, "GOAWAY length", false);
		c->goaway_recv = true;
		return 0;
	case F_WINDOW_UPDATE:
		return on_window_update(c, sid, p, len);
	case F_CONTINUATION:
		return on_continuation(c, sid, flags, p, len);
	default:
		return 0; /* unknown frame types are ignored (RFC 9113 4.1) */
	}
}

/* Parses the frame at in[0..len) (h2o's contract): returns the frame's total size
 * (9 + payload) when all of it is there, 0 when more bytes are needed, or
 * -H2_FRAME_SIZE_ERROR for a payload over max_frame (known as soon as the 9 header bytes
 * are in, so an oversized frame is never buffered). `f` is filled once the header is in. */
static ssize_t h2_frame_parse(const uint8_t *in, size_t len, uint32_t max_frame, struct h2_frame *f)
{
	if (len < H2_FRAME_HEADER)
		return 0;
	f->len = (uint32_t)in[0] << 16 | (uint32_t)in[1] << 8 | in[2];
	f->type = in[3];
	f->flags = in[4];
	f->sid = get32(in + 5) & 0x7fffffff;
	if (f->len > max_frame)
		return -H2_FRAME_SIZE_ERROR;
	if (len < H2_FRAME_HEADER + (size_t)f->len)
		return 0;
	return H2_FRAME_HEADER + (ssize_t)f->len;
}

static int recv_preface(struct h2_conn *c, const uint8_t **data, size_t *len)
{
	size_t n = sizeof(h2_preface) - c->preface_got;
	if (n > *len)
		n = *len;
	if (memcmp(*data, h2_preface + c->preface_got, n) != 0) {
		/* "looks like HTTP/2": it started as the preface does ("PRI ") */
		bool h2ish = c->preface_got >= 4 ||
			     (c->preface_got + n >= 4 && memcmp(*data, h2_preface + c->preface_got,
								4 - c->preface_got) == 0);
		return conn_fail(c, H2_PROTOCOL_ERROR, "bad connection preface", !h2ish);
	}
	c->preface_got += (uint32_t)n;
	*data += n;
	*len -= n;
	if (c->preface_got == sizeof(h2_preface))
		c->state = ST_FIRST_SETTINGS;
	return 0;
}

int h2_conn_recv(struct h2_conn *c, const uint8_t *data, size_t len)
{
	struct h2_frame f;
	ssize_t r;

	if (c->state == ST_DEAD)
		return -EPIPE;
	if (c->state == ST_PREFACE) {
		if (recv_preface(c, &data, &len) < 0)
			return -EPIPE;
		if (c->state == ST_PREFACE)
			return 0;
	}
	while (len > 0 && c->state != ST_DEAD) {
		if (c->ibuf_len > 0) {
			/* complete a frame cut by the end of an earlier read: first its header,
			 * then exactly its payload */
			size_t want = H2_FRAME_HEADER;
			if (c->ibuf_len >= H2_FRAME_HEADER)
				want += (size_t)(c->ibuf[0] << 16 | c->ibuf[1] << 8 | c->ibuf[2]);
			size_t k = want - c->ibuf_len;
			if (k > len)
				k = len;
			memcpy(c->ibuf + c->ibuf_len, data, k);
			c->ibuf_len += (uint32_t)k;
			data += k;
			len -= k;
			r = h2_frame_parse(c->ibuf, c->ibuf_len, c->cfg.max_frame_size, &f);
			if (r < 0)
				return conn_fail(c, (uint32_t)-r, "frame too large", false);
			if (r == 0)
				continue; /* header just completed: loop for the payload, or wait */
			c->ibuf_len = 0;
			if (on_frame(c, &f, c->ibuf + H2_FRAME_HEADER) < 0)
				return -EPIPE;
			continue;
		}
		r = h2_frame_parse(data, len, c->cfg.max_frame_size, &f);
		if (r < 0)
			return conn_fail(c, (uint32_t)-r, "frame too large", false);
		if (r == 0) {
			/* the tail is short of a frame; ibuf holds 9 + max_frame_size */
			if (!c->ibuf && !(c->ibuf = malloc(H2_FRAME_HEADER + c->cfg.max_frame_size)))
				log_fatal("h2: out of memory");
			memcpy(c->ibuf, data, len);
			c->ibuf_len = (uint32_t)len;
			return 0;
		}
		if (on_frame(c, &f, data + H2_FRAME_HEADER) < 0)
			return -EPIPE;
		data += r;
		len -= (size_t)r;
	}
	return c->state == ST_DEAD ? -EPIPE : 0;
}

/* ---- output ---- */

size_t h2_conn_output(struct h2_conn *c, struct iovec *iov, size_t iov_max)
{
	size_t n = 0;
	uint32_t off = c->out.off;
	for (struct h2_block *b = c->out.head; b && n < iov_max; b = b->next) {
		if (b->len > off) {
			iov[n].iov_base = b->data + off;
			iov[n].iov_len = b->len - off;
			n++;
		}
		off = 0;
	}
	return n;
}

void h2_conn_output_consumed(struct h2_conn *c, size_t bytes)
{
	if (bytes > c->out.bytes)
		bytes = c->out.bytes;
	queue_consume(c, &c->out, bytes);
	if (c->rr_head >= 0)
		flush(c);
}

bool h2_conn_has_output(const struct h2_conn *c)
{
	return c->out.bytes > 0;
}

bool h2_conn_done(const struct h2_conn *c)
{
	return c->state == ST_DEAD || ((c->goaway_sent || c->goaway_recv) && c->n_streams == 0);
}

/* ---- life cycle ---- */

struct h2_conn *h2_conn_new(const struct h2_config *cfg, const struct h2_callbacks *cb, void *user)
{
	struct h2_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->cfg = *cfg;
	struct h2_config *k = &c->cfg;
	if (k->streams_max == 0)
		k->streams_max = 1;
	if (k->initial_window_size < H2_DEFAULT_WINDOW)
		k->initial_window_size = H2_DEFAULT_WINDOW;
	if (k->initial_window_size > H2_MAX_WINDOW)
		k->initial_window_size = H2_MAX_WINDOW;
	if (k->conn_window_size < H2_DEFAULT_WINDOW)
		k->conn_window_size = H2_DEFAULT_WINDOW;
	if (k->conn_window_size > H2_MAX_WINDOW)
		k->conn_window_size = H2_MAX_WINDOW;
	if (k->max_frame_size < H2_DEFAULT_FRAME)
		k->max_frame_size = H2_DEFAULT_FRAME;
	if (k->max_frame_size > H2_MAX_FRAME)
		k->max_frame_size = H2_MAX_FRAME;
	if (k->max_header_list_size < 1024)
		k->max_header_list_size = 1024;
	if (k->max_header_list_size > (16u << 20))
		k->max_header_list_size = 16u << 20; /* keeps hb_max arithmetic in 32 bits */
	if (cb)
		c->cb = *cb;
	c->user = user;
	c->state = ST_PREFACE;
	c->free_head = -1;
	c->rr_head = -1;
	c->send_window = H2_DEFAULT_WINDOW;
	c->recv_window = k->conn_window_size;
	c->peer_initial_window = H2_DEFAULT_WINDOW;
	c->peer_max_frame = H2_DEFAULT_FRAME;

	uint32_t hsize = 16, hbits = 4;
	c->hash_max = 16;
	while (c->hash_max < 2 * (uint64_t)k->streams_max)
		c->hash_max <<= 1;
	c->hash_mask = hsize - 1; /* starts small: hash_grow doubles it as streams open */
	c->hash_shift = 32 - hbits;
	c->hb_max = H2_HB_FACTOR * k->max_header_list_size;
	if (c->hb_max < H2_HB_MIN)
		c->hb_max = H2_HB_MIN;
	c->hdr_scratch_max = k->max_header_list_size;
	c->hdr_max = k->max_header_list_size / 32 + 1;
	/* the stream table, input and header buffers are allocated as they are first needed:
	 * an idle connection costs this struct, the small hash and the HPACK decoder */
	c->streams_cap = 0;
	c->hash = calloc(hsize, sizeof(*c->hash));
	if (!c->hash) {
		h2_conn_free(c);
		return NULL;
	}

	/* our preface: SETTINGS, then the connection window raised to its configured size */
	uint8_t *p = out_frame(c, 4 * 6, F_SETTINGS, 0, 0, 4 * 6);
	const uint32_t set[4][2] = {
		{S_MAX_CONCURRENT_STREAMS, k->streams_max},
		{S_INITIAL_WINDOW_SIZE, k->initial_window_size},
		{S_MAX_FRAME_SIZE, k->max_frame_size},
		{S_MAX_HEADER_LIST_SIZE, k->max_header_list_size},
	};
	for (int i = 0; i < 4; i++) {
		p[6 * i] = (uint8_t)(set[i][0] >> 8);
		p[6 * i + 1] = (uint8_t)set[i][0];
		put32(p + 6 * i + 2, set[i][1]);
	}
	if (k->conn_window_size > H2_DEFAULT_WINDOW)
		out_window_update(c, 0, k->conn_window_size - H2_DEFAULT_WINDOW);
	return c;
}

void h2_conn_free(struct h2_conn *c)
{
	if (!c)
		return;
	if (c->streams) {
		c->state = ST_DEAD; /* no RST frames while tearing down */
		close_all_streams(c, H2_CANCEL);
	}
	queue_clear(c, &c->out);
	if (c->hpack)
		hpack_decoder_free(c->hpack);
	free(c->streams);
	free(c->hash);
	free(c->ibuf);
	free(c->hb_buf);
	free(c);
}
