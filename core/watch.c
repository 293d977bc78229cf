/* See watch.h. etcd's rules, as clients can tell them apart:
 * - create: an empty key means "\0"; range_end "\0" means every key >= key; a non-empty
 *   range_end <= key is "mvcc: watcher range is empty"; watch_id 0 asks for the next free
 *   id (counting from 0); a taken id is "mvcc: duplicate watch ID provided on the
 *   WatchStream". Failures still answer created=true, canceled=true, watch_id -1.
 *   start_revision 0 means "from the next revision".
 * - events: one response per revision per watcher, header.revision = that revision; a
 *   delete event's kv carries only key and mod_revision; prev_kv is the key's version
 *   before the change. A catch-up from history sends what it found in responses of whole
 *   revisions (bounded: WATCH_CATCHUP_*) whose header names the revision it read at.
 * - progress: RequestProgress is answered (watch_id -1) once every watcher on the stream is
 *   synced, and not at all on a stream without watchers; progress_notify watchers get a
 *   notice per interval in which they received no event.
 * - compaction: a watcher whose next revision was compacted away gets a response with
 *   compact_revision set and canceled=true, and is removed.
 *
 * Ownership: a hub, its streams and watchers belong to one reactor thread. A batch is
 * immutable once built; its reference count is the only shared state. The hand-off from
 * history to live events (exactly once, in order, from the start revision) is written down
 * at watch_hub_deliver, its sequencer side at watch_builder_finish.
 */
#include "core/auth_rpc.h"
#include "core/authsvc.h"
#include "core/watch.h"

#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/arena.h"
#include "core/config.h"
#include "core/kv.h"
#include "core/log.h"
#include "core/server.h"
#include "election.pb-c.h"
#include "kv.pb-c.h"
#include "net/grpc.h"
#include "net/http1.h"
#include "core/pbjson.h"
#include "rpc.pb-c.h"
#include "storage/mvcc.h"

/* A stream whose flow-control queue passes HIGH stops being fed live events; it is caught
 * up from history once the queue is below LOW again. */
#define WATCH_QUEUE_HIGH (4u * 1024 * 1024)
#define WATCH_QUEUE_LOW (512u * 1024)
/* Watchers one Watch call may hold. etcd has no limit of its own here (only gRPC's streams
 * per connection); this is far above what a client uses (kube-apiserver without its watch
 * cache puts every watch of a connection on one stream). Reaching it, a create is refused
 * as etcd refuses one: created and canceled with a reason; the stream's other watchers go
 * on. Enforced in watch_create and watch_observe. */
#define WATCH_STREAM_WATCHERS_MAX 65536
#define WATCH_STREAM_FULL "uetcd: too many watchers on this watch stream (the limit is 65536); open another Watch call"
/* A catch-up from history goes out in responses of whole revisions (a revision's events
 * are never split, as etcd keeps them together unless the watcher asked for fragments): at
 * most WATCH_CATCHUP_REVS_MAX distinct revisions (etcd's watchBatchMaxRevs) and, once the
 * events taken reach WATCH_CATCHUP_BYTES_MAX, no further revision. So a response is at most
 * about 1 MiB plus one revision, whatever the lag (enforced in watch_collect_fn). */
#define WATCH_CATCHUP_REVS_MAX 1000
#define WATCH_CATCHUP_BYTES_MAX (1u << 20)
/* One history walk covers a window of revisions: WATCH_CATCHUP_REVS_MAX, doubled after a
 * walk that found nothing for the watcher (so a sparse watcher far behind is not walked a
 * thousand revisions at a time), up to this; back to the minimum after one that found
 * something. It bounds the walk's temporary array to the changes of that many revisions. */
#define WATCH_CATCHUP_WINDOW_MAX (64 * 1024)
/* Walks that leave history still to read, per stream and catch-up pass (a create, a batch
 * with a gap, a tick): the rest of a long catch-up waits for the next pass, so other streams
 * are not held up. A watcher that a walk brings up to date costs none. */
#define WATCH_CATCHUP_WALKS_MAX 64

static _Atomic long watch_total;

bool watch_any(void) { return atomic_load(&watch_total) > 0; }

/* ---------- batches ---------- */

struct watch_batch {
	_Atomic int refs;
	int nlinks;
	int64_t first_rev, last_rev; /* the revisions the batch committed, events or not */
	bool history;                /* not captured: watchers read these revisions from the store */
	size_t n;
	struct mvcc_event *ev;
	uint8_t *bytes;
	struct watch_batch *next[]; /* per reactor, while queued */
};

struct watch_builder {
	struct mvcc_event *ev;
	size_t n, cap;
	uint8_t *bytes;
	size_t used, bcap;
	int64_t first_rev; /* the batch's first revision (watch_builder_begin) */
	bool capturing;
};

struct watch_builder *watch_builder_new(void)
{
	struct watch_builder *b = calloc(1, sizeof *b);

	if (!b)
		log_fatal("watch: out of memory");
	return b;
}

void watch_builder_free(struct watch_builder *b)
{
	if (!b)
		return;
	free(b->ev);
	free(b->bytes);
	free(b);
}

/* Appends bytes; returns their offset (pointers are fixed up when the batch is built). */
static uintptr_t wb_bytes(struct watch_builder *b, const uint8_t *p, size_t len)
{
	uintptr_t off = b->used;

	if (b->used + len > b->bcap) {
		size_t cap = b->bcap ? b->bcap : 4096;
		while (cap < b->used + len)
			cap *= 2;
		b->bytes = realloc(b->bytes, cap);
		if (!b->bytes)
			log_fatal("watch: out of memory");
		b->bcap = cap;
	}
	if (len)
		memcpy(b->bytes + b->used, p, len);
	b->used += len;
	return off;
}

static void wb_kv(struct watch_builder *b, struct mvcc_kv *dst, const struct mvcc_kv *src)
{
	*dst = *src;
	dst->key = (const uint8_t *)wb_bytes(b, src->key, src->key_len);
	dst->value = (const uint8_t *)wb_bytes(b, src->value, src->value_len);
}

static struct mvcc_event *wb_event(struct watch_builder *b)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 64;
		b->ev = realloc(b->ev, b->cap * sizeof *b->ev);
		if (!b->ev)
			log_fatal("watch: out of memory");
	}
	struct mvcc_event *e = &b->ev[b->n++];
	memset(e, 0, sizeof *e);
	return e;
}

static void wb_put(void *arg, const struct mvcc_kv *kv, const struct mvcc_kv *prev)
{
	struct watch_builder *b = arg;
	struct mvcc_event *e = wb_event(b);

	e->type = MVCCPB__EVENT__EVENT_TYPE__PUT;
	wb_kv(b, &e->kv, kv);
	if (prev) {
		e->has_prev = true;
		wb_kv(b, &e->prev, prev);
	}
}

static void wb_del(void *arg, const uint8_t *key, size_t key_len, int64_t rev, const struct mvcc_kv *prev)
{
	struct watch_builder *b = arg;
	struct mvcc_event *e = wb_event(b);
	struct mvcc_kv kv = {.key = key, .key_len = key_len, .mod_revision = rev};

	e->type = MVCCPB__EVENT__EVENT_TYPE__DELETE;
	wb_kv(b, &e->kv, &kv);
	if (prev) {
		e->has_prev = true;
		wb_kv(b, &e->prev, prev);
	}
}

void watch_builder_sink(struct watch_builder *b, struct kv_sink *out)
{
	out->put = wb_put;
	out->del = wb_del;
	out->compact = NULL;
	out->arg = b;
}

void watch_builder_reset(struct watch_builder *b)
{
	b->n = 0;
	b->used = 0;
}

static void wb_fix(struct mvcc_kv *kv, uint8_t *base)
{
	kv->key = base + (uintptr_t)kv->key;
	kv->value = base + (uintptr_t)kv->value;
}

static struct watch_batch *watch_batch_alloc(int refs)
{
	struct watch_batch *wb = calloc(1, sizeof *wb + (size_t)refs * sizeof wb->next[0]);

	if (!wb)
		log_fatal("watch: out of memory");
	atomic_init(&wb->refs, refs);
	wb->nlinks = refs;
	return wb;
}

bool watch_builder_begin(struct watch_builder *b, int64_t rev)
{
	watch_builder_reset(b);
	b->first_rev = rev + 1;
	b->capturing = watch_any();
	return b->capturing;
}

struct watch_batch *watch_builder_finish(struct watch_builder *b, int refs, int64_t rev)
{
	struct watch_batch *wb;

	if (rev < b->first_rev) {
		watch_builder_reset(b);
		return NULL; /* no revision committed */
	}
	if (!b->capturing) {
		/* The capture hand-off (see watch_hub_deliver): a watcher counts itself in
		 * watch_total, then reads the published view; we published, then read the count.
		 * With a full fence on both sides one of us sees the other: either the watcher's
		 * view has these revisions, or it is told here to read them from history. */
		atomic_thread_fence(memory_order_seq_cst);
		if (!watch_any())
			return NULL;
		wb = watch_batch_alloc(refs);
		wb->history = true;
		wb->first_rev = b->first_rev;
		wb->last_rev = rev;
		return wb;
	}
	wb = watch_batch_alloc(refs);
	wb->first_rev = b->first_rev;
	wb->last_rev = rev;
	if (b->n == 0) {
		watch_builder_reset(b);
		return wb; /* revisions without events still move the hubs on */
	}
	wb->n = b->n;
	wb->ev = b->ev;
	wb->bytes = b->bytes;
	for (size_t i = 0; i < wb->n; i++) {
		wb_fix(&wb->ev[i].kv, wb->bytes);
		if (wb->ev[i].has_prev)
			wb_fix(&wb->ev[i].prev, wb->bytes);
	}
	/* the builder starts over with fresh buffers: the batch owns these */
	b->ev = NULL;
	b->bytes = NULL;
	b->n = b->cap = b->used = b->bcap = 0;
	return wb;
}

struct watch_batch *watch_batch_next(struct watch_batch *b, int reactor) { return b->next[reactor]; }

void watch_batch_set_next(struct watch_batch *b, int reactor, struct watch_batch *next) { b->next[reactor] = next; }

void watch_batch_release(struct watch_batch *b)
{
	if (atomic_fetch_sub(&b->refs, 1) != 1)
		return;
	free(b->ev);
	free(b->bytes);
	free(b);
}

/* ---------- hub ---------- */

struct watch_stream;

struct watcher {
	struct watch_stream *st;
	int64_t id;
	uint8_t *key, *end;
	size_t klen, elen;
	bool noput, nodelete, prev_kv, progress_notify, fragment;
	bool observe;              /* Election.Observe: answers are LeaderResponses */
	uint8_t *leader_key;       /* the leader last sent (observe) */
	size_t leader_klen;
	int64_t leader_mod;
	bool synced, sent_since_progress;
	int64_t next_rev;
	struct watcher *inext, **iprev; /* in an exact-key bucket or the range list */
	int pend_head, pend_tail;       /* this revision's events, chained in hub->pend */
	bool touched;
	int64_t window; /* revisions the next history walk covers (0: the minimum) */
};

struct watch_stream {
	struct watch_stream *hnext;
	const void *owner;       /* the gRPC or HTTP connection: with sid, the lookup key */
	struct grpc_conn *c;     /* a gRPC call's connection, or NULL */
	struct http1_conn *http; /* the gateway's chunked response, or NULL */
	void *conn_user;
	uint32_t sid;
	struct authsvc_ident *ident; /* the gateway stream's caller (a gRPC call keeps its own) */
	struct watcher **w; /* sorted by id */
	size_t n, cap;
	int64_t next_id;
	size_t unsynced;
	bool progress_pending;
};

struct watch_pend {
	const struct mvcc_event *ev;
	int next;
};

struct watch_hub {
	struct server *srv;
	int reactor;
	void (*dirty)(void *conn_user);
	struct watch_stream **sb; /* streams by (conn, sid) */
	size_t scap, nstreams;
	struct watcher **eb; /* exact-key watchers by key hash */
	size_t ecap, nexact;
	struct watcher *ranges;
	size_t nwatchers;
	int64_t rev; /* every batch up to here has been matched */
	struct arena *arena;
	struct watch_pend *pend;
	size_t npend, cappend;
	struct watcher **touched;
	size_t ntouched, captouched;
	uint8_t *pack;
	size_t pack_cap;
	struct pbjson_buf json; /* the gateway's watch lines */
	uint64_t progress_ms, now_ms;
	struct watch_wire wire; /* tests only: see watch_hub_set_wire */
};

struct watch_hub *watch_hub_new(struct server *srv, int reactor, void (*dirty)(void *conn_user))
{
	struct watch_hub *h = calloc(1, sizeof *h);
	struct mvcc_view v;

	if (!h)
		log_fatal("watch: out of memory");
	h->srv = srv;
	h->reactor = reactor;
	h->dirty = dirty;
	h->scap = 64;
	h->sb = calloc(h->scap, sizeof *h->sb);
	h->ecap = 64;
	h->eb = calloc(h->ecap, sizeof *h->eb);
	h->arena = arena_new(64 * 1024);
	h->json.max = 64u << 20;
	if (!h->sb || !h->eb)
		log_fatal("watch: out of memory");
	mvcc_view_published(srv->store, &v);
	h->rev = v.rev;
	return h;
}

static size_t watch_stream_hash(const void *c, uint32_t sid, size_t cap)
{
	uint64_t k = (uint64_t)(uintptr_t)c * 0x9e3779b97f4a7c15ull ^ sid;

	return (size_t)(XXH3_64bits(&k, sizeof k) & (cap - 1));
}

static struct watch_stream *watch_stream_find(struct watch_hub *h, const void *c, uint32_t sid)
{
	for (struct watch_stream *s = h->sb[watch_stream_hash(c, sid, h->scap)]; s; s = s->hnext)
		if (s->owner == c && s->sid == sid)
			return s;
	return NULL;
}

static void watch_streams_grow(struct watch_hub *h)
{
	size_t ncap = h->scap * 2;
	struct watch_stream **nb = calloc(ncap, sizeof *nb);

	if (!nb)
		log_fatal("watch: out of memory");
	for (size_t i = 0; i < h->scap; i++) {
		struct watch_stream *s = h->sb[i], *n;
		for (; s; s = n) {
			n = s->hnext;
			size_t b = watch_stream_hash(s->owner, s->sid, ncap);
			s->hnext = nb[b];
			nb[b] = s;
		}
	}
	free(h->sb);
	h->sb = nb;
	h->scap = ncap;
}

static size_t watch_key_bucket(const uint8_t *k, size_t len, size_t cap)
{
	return (size_t)(XXH3_64bits(k, len) & (cap - 1));
}

static void watch_index_link(struct watcher **head, struct watcher *w)
{
	w->inext = *head;
	if (*head)
		(*head)->iprev = &w->inext;
	*head = w;
	w->iprev = head;
}

static void watch_index_unlink(struct watcher *w)
{
	*w->iprev = w->inext;
	if (w->inext)
		w->inext->iprev = w->iprev;
}

static void watch_exact_grow(struct watch_hub *h)
{
	size_t ncap = h->ecap * 2;
	struct watcher **nb = calloc(ncap, sizeof *nb);

	if (!nb)
		log_fatal("watch: out of memory");
	for (size_t i = 0; i < h->ecap; i++) {
		struct watcher *w = h->eb[i], *n;
		for (; w; w = n) {
			n = w->inext;
			watch_index_link(&nb[watch_key_bucket(w->key, w->klen, ncap)], w);
		}
	}
	free(h->eb);
	h->eb = nb;
	h->ecap = ncap;
}

static void watch_index_add(struct watch_hub *h, struct watcher *w)
{
	if (w->elen == 0) {
		if (++h->nexact > h->ecap)
			watch_exact_grow(h);
		watch_index_link(&h->eb[watch_key_bucket(w->key, w->klen, h->ecap)], w);
	} else {
		watch_index_link(&h->ranges, w);
	}
	h->nwatchers++;
	atomic_fetch_add(&watch_total, 1);
}

static void watcher_free(struct watch_hub *h, struct watcher *w)
{
	watch_index_unlink(w);
	if (w->elen == 0)
		h->nexact--;
	h->nwatchers--;
	if (!w->synced)
		w->st->unsynced--;
	atomic_fetch_sub(&watch_total, 1);
	free(w->leader_key);
	free(w);
}

static int watch_bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	size_t n = al < bl ? al : bl;
	int c = n ? memcmp(a, b, n) : 0;

	return c ? c : (al > bl) - (al < bl);
}

static bool watcher_covers(const struct watcher *w, const uint8_t *k, size_t klen)
{
	if (w->elen == 0)
		return w->klen == klen && memcmp(w->key, k, klen) == 0;
	if (watch_bytes_cmp(k, klen, w->key, w->klen) < 0)
		return false;
	if (w->elen == 1 && w->end[0] == 0)
		return true;
	return watch_bytes_cmp(k, klen, w->end, w->elen) < 0;
}

/* ---------- responses ---------- */

static Etcdserverpb__ResponseHeader *watch_header(struct watch_hub *h, int64_t rev)
{
	return kv_header(h->arena, &h->srv->ids, rev);
}

static Etcdserverpb__WatchResponse *watch_response(struct watch_hub *h, int64_t rev, int64_t id)
{
	Etcdserverpb__WatchResponse *r = arena_alloc(h->arena, sizeof *r);

	etcdserverpb__watch_response__init(r);
	r->header = watch_header(h, rev);
	r->watch_id = id;
	return r;
}

/* The gateway's form: one {"result":...} line per chunk, as etcd's grpc-gateway streams. */
static void watch_send_json(struct watch_hub *h, struct watch_stream *st, Etcdserverpb__WatchResponse *r)
{
	h->json.len = 0;
	if (pbjson_put_raw(&h->json, "{\"result\":", 10) == 0 && pbjson_marshal(&r->base, PBJSON_STREAM, &h->json) == 0 &&
	    pbjson_put_raw(&h->json, "}\n", 2) == 0)
		http1_stream_write(st->http, h->json.p, h->json.len);
	h->dirty(st->conn_user);
}

/* A packed message on a gRPC stream (or to the test's wire). */
static void watch_send_packed(struct watch_hub *h, struct watch_stream *st, const uint8_t *msg, size_t len)
{
	if (h->wire.send)
		h->wire.send(h->wire.arg, st->owner, st->sid, msg, len);
	else
		grpc_send_message(st->c, st->sid, msg, len);
	h->dirty(st->conn_user);
}

static void watch_send(struct watch_hub *h, struct watch_stream *st, Etcdserverpb__WatchResponse *r)
{
	size_t len = protobuf_c_message_get_packed_size(&r->base);

	if (len > h->pack_cap) {
		size_t cap = h->pack_cap ? h->pack_cap : 4096;
		while (cap < len)
			cap *= 2;
		free(h->pack);
		h->pack = malloc(cap);
		if (!h->pack)
			log_fatal("watch: out of memory");
		h->pack_cap = cap;
	}
	if (st->http) {
		watch_send_json(h, st, r);
		return;
	}
	protobuf_c_message_pack(&r->base, h->pack);
	watch_send_packed(h, st, h->pack, len);
}

/* Bytes sent on the stream that the peer has not taken yet. */
static size_t watch_stream_queued(const struct watch_hub *h, const struct watch_stream *st)
{
	if (st->http)
		return http1_conn_output_bytes(st->http);
	if (h->wire.queued)
		return h->wire.queued(h->wire.arg, st->owner, st->sid);
	return grpc_stream_queued_bytes(st->c, st->sid);
}

static size_t watch_varint_len(size_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Sends a response with events. A watcher that asked for fragments gets one larger than
 * --max-request-bytes split as etcd splits it: a fragment is closed when adding the next
 * event would reach the limit (it always holds at least one event), fragment=true on all
 * but the last. */
static void watch_send_events(struct watch_hub *h, struct watch_stream *st, const struct watcher *w,
			      Etcdserverpb__WatchResponse *r)
{
	size_t limit = h->srv->limits.max_request_bytes;
	Mvccpb__Event **all = r->events;
	size_t n = r->n_events, start = 0;

	if (!w->fragment || protobuf_c_message_get_packed_size(&r->base) <= limit) {
		watch_send(h, st, r);
		return;
	}
	r->n_events = 0;
	size_t base = protobuf_c_message_get_packed_size(&r->base), cur = base;
	for (size_t i = 0; i < n; i++) {
		size_t es = protobuf_c_message_get_packed_size(&all[i]->base);
		size_t add = 1 + watch_varint_len(es) + es;
		if (i > start && cur + add >= limit) {
			r->events = all + start;
			r->n_events = i - start;
			r->fragment = 1;
			watch_send(h, st, r);
			start = i;
			cur = base;
		}
		cur += add;
	}
	r->events = all + start;
	r->n_events = n - start;
	r->fragment = 0;
	watch_send(h, st, r);
}

static Mvccpb__KeyValue *watch_pb_kv(struct arena *a, const struct mvcc_kv *m) { return kv_pb_kv(a, m, false); }

static Mvccpb__Event *watch_pb_event(struct arena *a, const struct mvcc_event *e, bool with_prev)
{
	Mvccpb__Event *ev = arena_alloc(a, sizeof *ev);

	mvccpb__event__init(ev);
	ev->type = e->type;
	ev->kv = watch_pb_kv(a, &e->kv);
	if (with_prev && e->has_prev)
		ev->prev_kv = watch_pb_kv(a, &e->prev);
	return ev;
}

static bool watcher_wants(const struct watcher *w, const struct mvcc_event *e)
{
	if (e->type == MVCCPB__EVENT__EVENT_TYPE__PUT)
		return !w->noput;
	return !w->nodelete;
}

/* ---------- streams ---------- */

static size_t watch_stream_index(const struct watch_stream *st, int64_t id, bool *found)
{
	size_t lo = 0, hi = st->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (st->w[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < st->n && st->w[lo]->id == id;
	return lo;
}

void watch_stream_open(struct watch_hub *h, struct grpc_conn *c, void *conn_user, uint32_t sid)
{
	struct watch_stream *st = calloc(1, sizeof *st);

	if (!st)
		log_fatal("watch: out of memory");
	st->owner = c;
	st->c = c;
	st->conn_user = conn_user;
	st->sid = sid;
	if (++h->nstreams > h->scap)
		watch_streams_grow(h);
	size_t b = watch_stream_hash(c, sid, h->scap);
	st->hnext = h->sb[b];
	h->sb[b] = st;
}

void watch_stream_close(struct watch_hub *h, struct grpc_conn *c, uint32_t sid)
{
	struct watch_stream *st = watch_stream_find(h, c, sid);

	if (!st)
		return;
	for (struct watch_stream **pp = &h->sb[watch_stream_hash(c, sid, h->scap)]; *pp; pp = &(*pp)->hnext)
		if (*pp == st) {
			*pp = st->hnext;
			break;
		}
	h->nstreams--;
	for (size_t i = 0; i < st->n; i++)
		watcher_free(h, st->w[i]);
	free(st->w);
	free(st->ident);
	free(st);
}

void watch_stream_half_close(struct watch_hub *h, struct grpc_conn *c, uint32_t sid)
{
	/* As etcd's server: the client is done sending requests, but its watchers go on until
	 * it cancels the call or goes away. */
}

static void watch_remove(struct watch_hub *h, struct watch_stream *st, size_t i)
{
	struct watcher *w = st->w[i];

	memmove(&st->w[i], &st->w[i + 1], (st->n - i - 1) * sizeof *st->w);
	st->n--;
	watcher_free(h, w);
}

/* From now on w reads history from `from` (never below what it already has). */
static void watcher_unsync(struct watcher *w, int64_t from)
{
	if (!w->synced)
		return;
	w->synced = false;
	if (from > w->next_rev)
		w->next_rev = from;
	w->st->unsynced++;
}

static void watcher_sync(struct watcher *w)
{
	if (w->synced)
		return;
	w->synced = true;
	w->st->unsynced--;
}

struct watch_collect {
	struct watch_hub *h;
	struct watcher *w;
	Mvccpb__Event **ev;
	size_t n, cap;
	int64_t last_rev; /* the revision of the last event taken */
	size_t revs, bytes;
	bool full; /* stopped before a revision: the response is full */
};

/* About what an event costs on the wire (the bound needs no exact count). */
static size_t watch_event_bytes(const struct mvcc_event *e, bool prev_kv)
{
	size_t n = 32 + e->kv.key_len + e->kv.value_len;

	if (prev_kv && e->has_prev)
		n += 32 + e->prev.key_len + e->prev.value_len;
	return n;
}

static int watch_collect_fn(void *arg, const struct mvcc_event *e)
{
	struct watch_collect *c = arg;

	if (!watcher_wants(c->w, e))
		return 0;
	if (e->kv.mod_revision != c->last_rev) {
		if (c->revs >= WATCH_CATCHUP_REVS_MAX || c->bytes >= WATCH_CATCHUP_BYTES_MAX) {
			c->full = true;
			return 1;
		}
		c->revs++;
		c->last_rev = e->kv.mod_revision;
	}
	c->bytes += watch_event_bytes(e, c->w->prev_kv);
	if (c->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 16;
		Mvccpb__Event **n = arena_alloc(c->h->arena, ncap * sizeof *n);
		if (c->n)
			memcpy(n, c->ev, c->n * sizeof *n);
		c->ev = n;
		c->cap = ncap;
	}
	c->ev[c->n++] = watch_pb_event(c->h->arena, e, c->w->prev_kv);
	return 0;
}

/* Observe: sends the leader of the watched election as of `rev` if it changed. */
static void watch_observe_send(struct watch_hub *h, struct watcher *w, int64_t rev)
{
	struct mvcc_view v;
	struct mvcc_kv owner;

	mvcc_view_published(h->srv->store, &v);
	if (rev > v.rev || rev < v.compact_rev)
		rev = v.rev;
	if (kv_range_owner(&v, w->key, w->klen, w->end, w->elen, rev, &owner) != 1 ||
	    (w->leader_key && w->leader_klen == owner.key_len && w->leader_mod == owner.mod_revision &&
	     memcmp(w->leader_key, owner.key, owner.key_len) == 0))
		return;
	free(w->leader_key);
	w->leader_key = malloc(owner.key_len ? owner.key_len : 1);
	if (!w->leader_key)
		log_fatal("watch: out of memory");
	memcpy(w->leader_key, owner.key, owner.key_len);
	w->leader_klen = owner.key_len;
	w->leader_mod = owner.mod_revision;

	V3electionpb__LeaderResponse r = V3ELECTIONPB__LEADER_RESPONSE__INIT;
	r.header = watch_header(h, rev);
	r.kv = watch_pb_kv(h->arena, &owner);
	size_t len = protobuf_c_message_get_packed_size(&r.base);
	uint8_t *buf = arena_alloc(h->arena, len ? len : 1);
	protobuf_c_message_pack(&r.base, buf);
	watch_send_packed(h, w->st, buf, len);
}

enum watch_cu { WATCH_CU_DONE, WATCH_CU_MORE, WATCH_CU_WAIT, WATCH_CU_REMOVED };

/* One step of an unsynced watcher's catch-up: sends at most one bounded response of
 * history (WATCH_CATCHUP_*) read from the published view. Returns MORE while history up to
 * the view remains, DONE once the watcher is synced, WAIT if it cannot be yet (see the
 * hand-off rule at watch_hub_deliver), REMOVED if its history was compacted (it was
 * cancelled with compact_revision, as etcd does, and removed). */
static enum watch_cu watch_catch_up(struct watch_hub *h, struct watch_stream *st, size_t idx)
{
	struct watcher *w = st->w[idx];
	struct mvcc_view v, win;
	struct watch_collect c = {.h = h, .w = w};

	mvcc_view_published(h->srv->store, &v);
	if (w->observe) {
		if (v.rev < h->rev)
			return WATCH_CU_WAIT;
		watch_observe_send(h, w, v.rev);
		w->next_rev = v.rev + 1;
		watcher_sync(w);
		return WATCH_CU_DONE;
	}
	if (w->next_rev <= v.rev) {
		int64_t window = w->window ? w->window : WATCH_CATCHUP_REVS_MAX;
		win = v; /* the same snapshot read as of an older revision: a window of history */
		if (v.rev - w->next_rev >= window)
			win.rev = w->next_rev + window - 1;
		int rc = mvcc_history(&win, w->key, w->klen, w->end, w->elen, w->next_rev, watch_collect_fn, &c);
		if (rc == -MVCC_ECOMPACTED) {
			Etcdserverpb__WatchResponse *r = watch_response(h, 0, w->id);
			r->compact_revision = v.compact_rev;
			r->canceled = 1;
			watch_send(h, st, r);
			watch_remove(h, st, idx);
			arena_reset(h->arena);
			return WATCH_CU_REMOVED;
		}
		if (c.n) {
			Etcdserverpb__WatchResponse *r = watch_response(h, v.rev, w->id);
			r->events = c.ev;
			r->n_events = c.n;
			watch_send_events(h, st, w, r);
			w->sent_since_progress = true;
		}
		arena_reset(h->arena);
		w->next_rev = c.full ? c.last_rev + 1 : win.rev + 1;
		if (c.n)
			w->window = WATCH_CATCHUP_REVS_MAX;
		else if (window < WATCH_CATCHUP_WINDOW_MAX)
			w->window = 2 * window;
		if (w->next_rev <= v.rev)
			return WATCH_CU_MORE;
	}
	if (w->next_rev <= h->rev)
		return WATCH_CU_WAIT; /* batches up to h->rev went by, and the view has not caught up with them */
	watcher_sync(w);
	return WATCH_CU_DONE;
}

/* Catches up a stream's unsynced watchers as far as its queue (WATCH_QUEUE_LOW) and the
 * pass's walks (WATCH_CATCHUP_WALKS_MAX) allow. */
static void watch_stream_catch_up(struct watch_hub *h, struct watch_stream *st)
{
	int walks = WATCH_CATCHUP_WALKS_MAX;

	for (size_t k = 0; st->unsynced && k < st->n;) {
		if (watch_stream_queued(h, st) >= WATCH_QUEUE_LOW)
			break;
		if (st->w[k]->synced) {
			k++;
			continue;
		}
		switch (watch_catch_up(h, st, k)) {
		case WATCH_CU_REMOVED: /* the same index holds the next watcher */
			break;
		case WATCH_CU_MORE: /* the same watcher again, queue and walks permitting */
			if (--walks == 0)
				return;
			break;
		default:
			k++;
		}
	}
}

static void watch_progress_if_synced(struct watch_hub *h, struct watch_stream *st)
{
	if (!st->progress_pending || st->unsynced)
		return;
	st->progress_pending = false;
	if (st->n)
		watch_send(h, st, watch_response(h, h->rev, -1));
}

/* Puts w at index pos of the stream's id-sorted watchers. */
static void watch_stream_insert(struct watch_stream *st, size_t pos, struct watcher *w)
{
	if (st->n == st->cap) {
		st->cap = st->cap ? st->cap * 2 : 8;
		st->w = realloc(st->w, st->cap * sizeof *st->w);
		if (!st->w)
			log_fatal("watch: out of memory");
	}
	memmove(&st->w[pos + 1], &st->w[pos], (st->n - pos) * sizeof *st->w);
	st->w[pos] = w;
	st->n++;
}

/* The hub's side of the capture hand-off (see watch_hub_deliver): w is counted in
 * watch_total before the published view is read, so every batch the view lacks reaches this
 * hub either with w's events or as a history batch. Returns the view; the hub's revision
 * moves up to it if w is the hub's only watcher (nothing here needed the batches before). */
static void watch_view_after_add(struct watch_hub *h, struct mvcc_view *v)
{
	atomic_thread_fence(memory_order_seq_cst); /* pairs with the one in watch_builder_finish */
	mvcc_view_published(h->srv->store, v);
	if (h->nwatchers == 1 && v->rev > h->rev)
		h->rev = v->rev;
}

static void watch_create(struct watch_hub *h, struct watch_stream *st, const Etcdserverpb__WatchCreateRequest *cr)
{
	static const uint8_t zero = 0;
	const uint8_t *key = cr->key.len ? cr->key.data : &zero;
	size_t klen = cr->key.len ? cr->key.len : 1;
	const char *err = NULL;
	struct mvcc_view v;
	int64_t id = cr->watch_id;
	size_t pos = 0;
	bool found;

	if (cr->range_end.len && !(cr->range_end.len == 1 && cr->range_end.data[0] == 0) &&
	    watch_bytes_cmp(key, klen, cr->range_end.data, cr->range_end.len) >= 0) {
		err = "mvcc: watcher range is empty";
	} else if (h->srv->auth && authsvc_enabled(h->srv->auth) &&
		   (err = auth_rpc_check_watch(authsvc_view(h->srv->auth),
					       st->c ? grpc_call_user(st->c, st->sid) : st->ident, key, klen,
					       cr->range_end.data, cr->range_end.len))) {
		/* etcd refuses at create, with the permission error as the cancel reason */
	} else if (st->n >= WATCH_STREAM_WATCHERS_MAX) {
		err = WATCH_STREAM_FULL;
	} else if (id == 0) {
		do {
			id = st->next_id++;
			pos = watch_stream_index(st, id, &found);
		} while (found);
	} else {
		pos = watch_stream_index(st, id, &found);
		if (found)
			err = "mvcc: duplicate watch ID provided on the WatchStream";
	}
	if (err) {
		mvcc_view_published(h->srv->store, &v);
		Etcdserverpb__WatchResponse *r = watch_response(h, v.rev, -1);
		r->created = 1;
		r->canceled = 1;
		r->cancel_reason = (char *)err;
		watch_send(h, st, r);
		return;
	}

	struct watcher *w = calloc(1, sizeof *w + klen + cr->range_end.len);
	if (!w)
		log_fatal("watch: out of memory");
	w->st = st;
	w->id = id;
	w->key = (uint8_t *)(w + 1);
	memcpy(w->key, key, klen);
	w->klen = klen;
	w->end = w->key + klen;
	w->elen = cr->range_end.len;
	if (w->elen)
		memcpy(w->end, cr->range_end.data, w->elen);
	for (size_t i = 0; i < cr->n_filters; i++) {
		if (cr->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT)
			w->noput = true;
		else if (cr->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE)
			w->nodelete = true;
	}
	w->prev_kv = cr->prev_kv;
	w->fragment = cr->fragment;
	w->progress_notify = cr->progress_notify;
	w->synced = true;
	watch_stream_insert(st, pos, w);
	watch_index_add(h, w); /* explicit ids leave next_id alone, as etcd */
	watch_view_after_add(h, &v);
	w->next_rev = cr->start_revision > 0 ? cr->start_revision : v.rev + 1;
	Etcdserverpb__WatchResponse *r = watch_response(h, v.rev, id);
	r->created = 1;
	watch_send(h, st, r);
	/* cr lives in the arena, which the catch-up reuses: not read past here */
	if (w->next_rev <= v.rev || w->next_rev <= h->rev) {
		/* history first: live batches up to where it ends are skipped by next_rev */
		watcher_unsync(w, w->next_rev);
		watch_stream_catch_up(h, st);
	}
}

static void watch_cancel(struct watch_hub *h, struct watch_stream *st, int64_t id)
{
	bool found;
	size_t i = watch_stream_index(st, id, &found);
	struct mvcc_view v;

	if (!found)
		return; /* etcd answers nothing for an unknown id */
	watch_remove(h, st, i);
	mvcc_view_published(h->srv->store, &v);
	Etcdserverpb__WatchResponse *r = watch_response(h, v.rev, id);
	r->canceled = 1;
	watch_send(h, st, r);
	watch_progress_if_synced(h, st);
}

void watch_stream_message(struct watch_hub *h, struct grpc_conn *c, uint32_t sid, const uint8_t *msg, size_t len)
{
	struct watch_stream *st = watch_stream_find(h, c, sid);
	ProtobufCAllocator al;
	Etcdserverpb__WatchRequest *req;

	if (!st)
		return;
	arena_reset(h->arena);
	arena_pb_allocator(h->arena, &al);
	req = etcdserverpb__watch_request__unpack(&al, len, msg);
	if (!req) {
		grpc_send_status(c, sid, GRPC_INTERNAL, "grpc: error unmarshalling request");
		return;
	}
	switch (req->request_union_case) {
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST:
		watch_create(h, st, req->create_request);
		break;
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST:
		watch_cancel(h, st, req->cancel_request->watch_id);
		break;
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST:
		st->progress_pending = true;
		watch_progress_if_synced(h, st);
		break;
	default:
		break;
	}
}

/* ---------- live delivery ---------- */

static void watch_pend_add(struct watch_hub *h, struct watcher *w, const struct mvcc_event *e)
{
	if (h->npend == h->cappend) {
		h->cappend = h->cappend ? h->cappend * 2 : 256;
		h->pend = realloc(h->pend, h->cappend * sizeof *h->pend);
		if (!h->pend)
			log_fatal("watch: out of memory");
	}
	int i = (int)h->npend++;
	h->pend[i].ev = e;
	h->pend[i].next = -1;
	if (!w->touched) {
		w->touched = true;
		w->pend_head = w->pend_tail = i;
		if (h->ntouched == h->captouched) {
			h->captouched = h->captouched ? h->captouched * 2 : 64;
			h->touched = realloc(h->touched, h->captouched * sizeof *h->touched);
			if (!h->touched)
				log_fatal("watch: out of memory");
		}
		h->touched[h->ntouched++] = w;
	} else {
		h->pend[w->pend_tail].next = i;
		w->pend_tail = i;
	}
}

static void watch_match(struct watch_hub *h, const struct mvcc_event *e)
{
	struct watcher *w;

	for (w = h->eb[watch_key_bucket(e->kv.key, e->kv.key_len, h->ecap)]; w; w = w->inext)
		if (w->synced && e->kv.mod_revision >= w->next_rev && watcher_covers(w, e->kv.key, e->kv.key_len) &&
		    watcher_wants(w, e))
			watch_pend_add(h, w, e);
	for (w = h->ranges; w; w = w->inext)
		if (w->synced && e->kv.mod_revision >= w->next_rev && watcher_covers(w, e->kv.key, e->kv.key_len) &&
		    watcher_wants(w, e))
			watch_pend_add(h, w, e);
}

/* Sends one response per touched watcher for revision `rev`. */
static void watch_flush_rev(struct watch_hub *h, int64_t rev)
{
	for (size_t t = 0; t < h->ntouched; t++) {
		struct watcher *w = h->touched[t];
		size_t n = 0;

		if (w->observe) {
			watch_observe_send(h, w, rev);
			w->touched = false;
			w->next_rev = rev + 1;
			arena_reset(h->arena);
			continue;
		}
		for (int i = w->pend_head; i >= 0; i = h->pend[i].next)
			n++;
		Etcdserverpb__WatchResponse *r = watch_response(h, rev, w->id);
		r->events = arena_alloc(h->arena, n * sizeof *r->events);
		r->n_events = 0;
		for (int i = w->pend_head; i >= 0; i = h->pend[i].next)
			r->events[r->n_events++] = watch_pb_event(h->arena, h->pend[i].ev, w->prev_kv);
		watch_send_events(h, w->st, w, r);
		w->touched = false;
		w->next_rev = rev + 1;
		w->sent_since_progress = true;
		arena_reset(h->arena);
	}
	h->ntouched = 0;
	h->npend = 0;
}

/* After a batch: streams over their queue limit stop taking live events. */
static void watch_check_backlog(struct watch_hub *h)
{
	for (size_t i = 0; i < h->scap; i++)
		for (struct watch_stream *st = h->sb[i]; st; st = st->hnext) {
			if (st->n == st->unsynced)
				continue;
			if (watch_stream_queued(h, st) <= WATCH_QUEUE_HIGH)
				continue;
			for (size_t k = 0; k < st->n; k++)
				watcher_unsync(st->w[k], h->rev + 1);
		}
}

/* Every stream's unsynced watchers, as far as each stream's queue allows. */
static void watch_hub_catch_up(struct watch_hub *h)
{
	for (size_t i = 0; i < h->scap; i++)
		for (struct watch_stream *st = h->sb[i]; st; st = st->hnext) {
			watch_stream_catch_up(h, st);
			watch_progress_if_synced(h, st);
		}
	arena_reset(h->arena);
}

/* The hand-off between history and live events. Invariant (owner: this function, with
 * watch_catch_up and watch_create; the sequencer's part is watch_builder_finish):
 *   h->rev: every batch up to h->rev has been handed to this hub, in revision order.
 *   A watcher w has been sent every event it wants below w->next_rev, each once, in order.
 *   A synced watcher also has every event it wants up to h->rev; only synced watchers
 *   take events from batches, and only those at or after next_rev; a watcher becomes
 *   synced only once next_rev > h->rev (watch_catch_up), so a batch is read from history
 *   or from the batch, never both and never neither, whether it was published before or
 *   after it reached this hub.
 *   Every revision reaches the hub in a batch: with its events if they were recorded, or
 *   as a history batch (or a gap between two batches) if not; then every watcher reads it
 *   from the store, at once, without waiting for another write.
 * A watcher's first event is at its start revision or later: next_rev starts there and
 * never goes down (watcher_unsync). */
void watch_hub_deliver(struct watch_hub *h, struct watch_batch *b)
{
	bool gap = false;

	if (b->last_rev <= h->rev) {
		/* already read from history by every watcher here */
	} else if (!h->nwatchers) {
		h->rev = b->last_rev;
	} else if (b->history || b->first_rev > h->rev + 1) {
		/* revisions whose events this hub was not given: every watcher reads them from the
		 * store (published: the batch was handed over after its publish) */
		for (size_t i = 0; i < h->scap; i++)
			for (struct watch_stream *st = h->sb[i]; st; st = st->hnext)
				for (size_t k = 0; k < st->n; k++)
					watcher_unsync(st->w[k], h->rev + 1);
		h->rev = b->last_rev;
		gap = true;
	} else {
		size_t i = 0;
		while (i < b->n && b->ev[i].kv.mod_revision <= h->rev)
			i++;
		while (i < b->n) {
			int64_t rev = b->ev[i].kv.mod_revision;
			for (; i < b->n && b->ev[i].kv.mod_revision == rev; i++)
				watch_match(h, &b->ev[i]);
			if (h->ntouched)
				watch_flush_rev(h, rev);
		}
		h->rev = b->last_rev;
		watch_check_backlog(h);
	}
	watch_batch_release(b);
	if (gap)
		watch_hub_catch_up(h);
}

void watch_hub_tick(struct watch_hub *h, uint64_t now_ms)
{
	uint64_t interval = h->srv->cfg->watch_progress_notify_interval_ms;
	bool notify = interval && now_ms - h->progress_ms >= interval;

	h->now_ms = now_ms;
	if (h->progress_ms == 0) {
		h->progress_ms = now_ms; /* the first interval starts now */
		notify = false;
	}
	if (notify)
		h->progress_ms = now_ms;
	if (!h->nwatchers)
		return;
	watch_hub_catch_up(h);
	if (!notify)
		return;
	for (size_t i = 0; i < h->scap; i++)
		for (struct watch_stream *st = h->sb[i]; st; st = st->hnext) {
			for (size_t k = 0; k < st->n; k++) {
				struct watcher *w = st->w[k];
				if (w->progress_notify && w->synced && !w->sent_since_progress)
					watch_send(h, st, watch_response(h, h->rev, w->id));
				w->sent_since_progress = false;
			}
			arena_reset(h->arena);
		}
}

void watch_hub_set_wire(struct watch_hub *h, const struct watch_wire *wire) { h->wire = *wire; }

void watch_hub_free(struct watch_hub *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->scap; i++) {
		struct watch_stream *st = h->sb[i], *n;
		for (; st; st = n) {
			n = st->hnext;
			for (size_t k = 0; k < st->n; k++) {
				atomic_fetch_sub(&watch_total, 1);
				free(st->w[k]);
			}
			free(st->w);
			free(st->ident);
			free(st);
		}
	}
	free(h->sb);
	free(h->eb);
	free(h->pend);
	free(h->touched);
	free(h->pack);
	free(h->json.p);
	arena_free(h->arena);
	free(h);
}

void watch_observe(struct watch_hub *h, struct grpc_conn *c, uint32_t sid, const uint8_t *msg, size_t len)
{
	struct watch_stream *st = watch_stream_find(h, c, sid);
	V3electionpb__LeaderRequest *req;
	ProtobufCAllocator al;
	struct mvcc_view v;
	bool found;

	if (!st || st->n >= WATCH_STREAM_WATCHERS_MAX)
		return; /* Observe takes one request per call: only a misbehaving client gets here */
	arena_reset(h->arena);
	arena_pb_allocator(h->arena, &al);
	req = v3electionpb__leader_request__unpack(&al, len, msg);
	if (!req) {
		grpc_send_status(c, sid, GRPC_INTERNAL, "grpc: error unmarshalling request");
		return;
	}
	/* the election's keys: [name "/", name "0") */
	struct watcher *w = calloc(1, sizeof *w + 2 * (req->name.len + 1));
	if (!w)
		log_fatal("watch: out of memory");
	w->st = st;
	w->observe = true;
	w->key = (uint8_t *)(w + 1);
	if (req->name.len)
		memcpy(w->key, req->name.data, req->name.len);
	w->key[req->name.len] = '/';
	w->klen = req->name.len + 1;
	w->end = w->key + w->klen;
	memcpy(w->end, w->key, w->klen);
	w->end[w->klen - 1] = '0'; /* '/' + 1 */
	w->elen = w->klen;
	w->synced = true;
	do {
		w->id = st->next_id++;
	} while ((void)watch_stream_index(st, w->id, &found), found);
	size_t pos = watch_stream_index(st, w->id, &found);
	watch_stream_insert(st, pos, w);
	watch_index_add(h, w);
	watch_view_after_add(h, &v);
	w->next_rev = v.rev + 1;
	if (w->next_rev <= h->rev)
		watcher_unsync(w, w->next_rev); /* the tick's catch-up sends the leader */
	else
		watch_observe_send(h, w, v.rev);
}

void watch_hub_stop(struct watch_hub *h)
{
	struct {
		struct grpc_conn *c;
		uint32_t sid;
	} *calls = malloc((h->nstreams ? h->nstreams : 1) * sizeof *calls);
	size_t n = 0;

	if (!calls)
		return;
	/* collect first: ending a call frees its stream (on_call_end) */
	for (size_t i = 0; i < h->scap; i++)
		for (struct watch_stream *st = h->sb[i]; st; st = st->hnext)
			if (st->http) {
				http1_stream_end(st->http); /* the gateway's stream just ends */
				h->dirty(st->conn_user);
			} else if (n < h->nstreams) {
				calls[n].c = st->c;
				calls[n].sid = st->sid;
				n++;
			}
	for (size_t i = 0; i < n; i++)
		grpc_send_status(calls[i].c, calls[i].sid, GRPC_UNAVAILABLE, "etcdserver: server stopped");
	free(calls);
}

bool watch_http_open(struct watch_hub *h, struct http1_conn *http, void *conn_user, const Etcdserverpb__WatchRequest *req,
		     struct authsvc_ident *ident)
{
	if (req->request_union_case != ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST) {
		free(ident);
		return false;
	}
	watch_stream_open(h, (struct grpc_conn *)http, conn_user, 0);
	struct watch_stream *st = watch_stream_find(h, http, 0);
	st->c = NULL;
	st->http = http;
	st->ident = ident;
	http1_stream_begin_ex(http, 200, "application/json", "Grpc-Metadata-Content-Type: application/grpc\r\n");
	watch_create(h, st, req->create_request);
	return true;
}

void watch_http_close(struct watch_hub *h, struct http1_conn *http)
{
	watch_stream_close(h, (struct grpc_conn *)http, 0);
}
