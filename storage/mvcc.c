/* MVCC over the copy-on-write B+tree (see mvcc.h for the revision model).
 *
 * Shape: the tree maps each key to a `struct mvcc_key` (the key bytes, which the tree's
 * entries and separators point into, and the head of the key's version chain). A version
 * is immutable once linked; a put or delete links a new version in front of the chain with
 * one release store of `head`. Readers at revision R acquire-load `head` and walk to the
 * first version with mod_rev <= R, so versions newer than their snapshot (the writer's
 * unpublished work) are invisible to them and an existing key costs no tree copy per put:
 * only creating or removing a key changes the tree (copy-on-write, once per batch).
 * A published snapshot is an immutable `struct mvcc_snap` (root, rev, compact_rev) swapped
 * in with one atomic exchange; the one it replaces is retired through qsbr.
 *
 * Invariants (owner: the writer functions of this file, one thread):
 *  - a key's chain is ordered by mod_rev, newest first; every version in it has
 *    mod_rev <= the store's revision, except the open transaction's (== txn_rev);
 *  - the only writes readers can observe are the release stores of `head` (a new version,
 *    fully built) and of `next` (compaction cutting a chain); everything a reader could
 *    have reached is freed only through qsbr;
 *  - `compact_cut` is stored before any chain is cut, so a reader that found a chain cut
 *    (acquire) then sees the new compacted revision and reports -MVCC_ECOMPACTED instead of
 *    a silently shortened history;
 *  - keys_live / versions_total count the working state.
 * Compaction walks every key on the writer (O(keys + dropped versions)); splitting it into
 * slices between batches is future work. A compaction is two halves: the compacted
 * revision (what reads may ask for) moves at once; the cut of the chains may be held back
 * while a checkpoint walks a view (mvcc_compact_hold), so the walk never loses versions
 * under it and every checkpoint completes, whatever the compaction rate. History (watch catch-up) walks the same chains:
 * a version's `next` is the key's previous version, hence the event's prev_kv.
 */
#include "storage/mvcc.h"
#include "core/log.h"
#include "core/qsbr.h"
#include "storage/btree.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct mvcc_ver {
	_Atomic(struct mvcc_ver *) next; /* older version; set to NULL only by compaction */
	int64_t mod_rev, create_rev, version, lease;
	uint32_t value_len;
	uint32_t sub; /* order within its revision: history replays a txn's changes in order */
	bool tomb;
	uint8_t value[];
};

struct mvcc_key {
	_Atomic(struct mvcc_ver *) head; /* newest version, never NULL once linked in the tree */
	uint32_t len;
	uint8_t bytes[];
};

struct mvcc_snap {
	const struct btree_node *root;
	int64_t rev, compact_rev;
};

struct mvcc_store {
	_Alignas(64) _Atomic(struct mvcc_snap *) pub; /* read by every reader */
	_Atomic int64_t compact_cut;                  /* highest revision chains were cut at */
	_Alignas(64) struct btree tree;               /* writer only from here on */
	struct qsbr *q;
	int64_t rev, compact_rev;
	int64_t txn_rev;
	uint32_t txn_sub;
	bool in_txn, txn_changed;
	uint64_t keys_live, versions_total;
	_Atomic uint64_t bytes_in_use; /* every version and key the store holds (quota, Status) */
	bool cut_held;                 /* mvcc_compact_hold: compactions cut no chain until released */
	const struct mvcc_key *load_last; /* mvcc_load_key: the key before, for the order check */
};

typedef int (*mvcc_visit_fn)(void *arg, struct mvcc_key *k, const struct mvcc_ver *v);

/* ---- memory ---- */

static void mvcc_chain_free(void *p)
{
	struct mvcc_ver *v = p;

	while (v) {
		struct mvcc_ver *next = atomic_load_explicit(&v->next, memory_order_relaxed);
		free(v);
		v = next;
	}
}

static void mvcc_key_free(void *p)
{
	struct mvcc_key *k = p;

	mvcc_chain_free(atomic_load_explicit(&k->head, memory_order_relaxed));
	free(k);
}

static uint64_t mvcc_chain_len(const struct mvcc_ver *v)
{
	uint64_t n = 0;

	for (; v; v = atomic_load_explicit(&v->next, memory_order_relaxed))
		n++;
	return n;
}

static uint64_t mvcc_chain_bytes(const struct mvcc_ver *v)
{
	uint64_t n = 0;

	for (; v; v = atomic_load_explicit(&v->next, memory_order_relaxed))
		n += sizeof *v + v->value_len;
	return n;
}

/* One writer: a plain load and store, no locked read-modify-write on every put. */
static void mvcc_bytes_add(struct mvcc_store *s, int64_t delta)
{
	uint64_t n = atomic_load_explicit(&s->bytes_in_use, memory_order_relaxed);

	atomic_store_explicit(&s->bytes_in_use, n + (uint64_t)delta, memory_order_relaxed);
}

/* ---- reading ---- */

static inline const struct mvcc_ver *mvcc_ver_at(const struct mvcc_key *k, int64_t rev)
{
	const struct mvcc_ver *v = atomic_load_explicit(&k->head, memory_order_acquire);

	while (v && v->mod_rev > rev)
		v = atomic_load_explicit(&v->next, memory_order_acquire);
	return v;
}

static inline void mvcc_kv_fill(struct mvcc_kv *out, const struct mvcc_key *k, const struct mvcc_ver *v)
{
	out->key = k->bytes;
	out->key_len = k->len;
	out->value = v->value;
	out->value_len = v->value_len;
	out->create_revision = v->create_rev;
	out->mod_revision = v->mod_rev;
	out->version = v->version;
	out->lease = v->lease;
}

/* Resolves rev against the view (etcd: rev <= 0 means the view's own). */
static int mvcc_rev_check(const struct mvcc_view *v, int64_t *rev)
{
	if (*rev <= 0)
		*rev = v->rev;
	if (*rev > v->rev)
		return -MVCC_EFUTURE;
	if (*rev < v->compact_rev)
		return -MVCC_ECOMPACTED;
	return 0;
}

/* A compaction that ran while we read may have cut history we needed. A cut only ever
 * shortens a chain from its old end, so a walk can be wrong only where it ran off the end
 * of a chain (otherwise the version it found is still the newest <= rev). */
static int mvcc_rev_recheck(const struct mvcc_view *v, int64_t rev, bool ran_off)
{
	if (ran_off && rev < atomic_load_explicit(&v->store->compact_cut, memory_order_acquire))
		return -MVCC_ECOMPACTED;
	return 0;
}

static bool mvcc_is_nul(const uint8_t *p, size_t len) { return len == 1 && p[0] == 0; }

/* Visits every key of the range that has a live version at rev, in key order. Sets
 * *ran_off if some key in the range had no version <= rev. */
static int mvcc_walk(const struct btree_node *root, const uint8_t *key, size_t key_len, const uint8_t *end,
		     size_t end_len, int64_t rev, bool descending, mvcc_visit_fn visit, void *arg, bool *ran_off)
{
	struct btree_iter it;
	bool bounded = !mvcc_is_nul(end, end_len);
	int rc = 0;

	if (end_len == 0) {
		struct mvcc_key *k = btree_lookup(root, key, key_len);
		const struct mvcc_ver *v = k ? mvcc_ver_at(k, rev) : NULL;
		*ran_off = k && !v;
		return v && !v->tomb ? visit(arg, k, v) : 0;
	}
	if (bounded && btree_key_cmp(end, end_len, key, key_len) <= 0)
		return 0; /* empty range, as etcd */
	if (!descending) {
		for (btree_iter_seek_ge(&it, root, key, key_len); btree_iter_valid(&it); btree_iter_next(&it)) {
			struct mvcc_key *k = btree_iter_value(&it);
			const struct mvcc_ver *v;
			if (bounded && btree_key_cmp(k->bytes, k->len, end, end_len) >= 0)
				break;
			v = mvcc_ver_at(k, rev);
			*ran_off |= !v;
			if (v && !v->tomb && (rc = visit(arg, k, v)) != 0)
				break;
		}
	} else {
		if (bounded)
			btree_iter_seek_lt(&it, root, end, end_len);
		else
			btree_iter_last(&it, root);
		for (; btree_iter_valid(&it); btree_iter_prev(&it)) {
			struct mvcc_key *k = btree_iter_value(&it);
			const struct mvcc_ver *v;
			if (btree_key_cmp(k->bytes, k->len, key, key_len) < 0)
				break;
			v = mvcc_ver_at(k, rev);
			*ran_off |= !v;
			if (v && !v->tomb && (rc = visit(arg, k, v)) != 0)
				break;
		}
	}
	return rc;
}

struct mvcc_range_ctx {
	mvcc_kv_fn fn;
	void *arg;
};

static int mvcc_range_visit(void *arg, struct mvcc_key *k, const struct mvcc_ver *v)
{
	struct mvcc_range_ctx *c = arg;
	struct mvcc_kv kv;

	mvcc_kv_fill(&kv, k, v);
	return c->fn(c->arg, &kv);
}

int mvcc_range(const struct mvcc_view *v, const uint8_t *key, size_t key_len, const uint8_t *end, size_t end_len,
	       int64_t rev, bool descending, mvcc_kv_fn fn, void *arg)
{
	struct mvcc_range_ctx c = {fn, arg};
	bool ran_off = false;
	int rc = mvcc_rev_check(v, &rev);

	if (rc)
		return rc;
	rc = mvcc_walk(v->root, key, key_len, end, end_len, rev, descending, mvcc_range_visit, &c, &ran_off);
	return rc ? rc : mvcc_rev_recheck(v, rev, ran_off);
}

int mvcc_get(const struct mvcc_view *v, const uint8_t *key, size_t key_len, int64_t rev, struct mvcc_kv *out)
{
	const struct mvcc_key *k;
	const struct mvcc_ver *ver;
	int rc = mvcc_rev_check(v, &rev);

	if (rc)
		return rc;
	k = btree_lookup(v->root, key, key_len);
	ver = k ? mvcc_ver_at(k, rev) : NULL;
	rc = mvcc_rev_recheck(v, rev, k && !ver);
	if (rc)
		return rc;
	if (!ver || ver->tomb)
		return 0;
	mvcc_kv_fill(out, k, ver);
	return 1;
}

void mvcc_view_published(const struct mvcc_store *s, struct mvcc_view *out)
{
	const struct mvcc_snap *p = atomic_load_explicit(&s->pub, memory_order_acquire);

	out->root = p->root;
	out->rev = p->rev;
	out->compact_rev = p->compact_rev;
	out->store = s;
}

/* ---- the writer ---- */

void mvcc_view_working(const struct mvcc_store *s, struct mvcc_view *out)
{
	out->root = btree_root(&s->tree);
	out->rev = s->in_txn && s->txn_changed ? s->txn_rev : s->rev;
	out->compact_rev = s->compact_rev;
	out->store = s;
}

void mvcc_publish(struct mvcc_store *s)
{
	struct mvcc_snap *n = malloc(sizeof *n), *old;

	assert(!s->in_txn);
	if (!n)
		log_fatal("mvcc: out of memory");
	n->root = btree_root(&s->tree);
	n->rev = s->rev;
	n->compact_rev = s->compact_rev;
	old = atomic_exchange_explicit(&s->pub, n, memory_order_seq_cst);
	btree_seal(&s->tree); /* everything n reaches is immutable from now on */
	if (old)
		qsbr_retire(s->q, old, free);
	qsbr_advance(s->q);
}

struct mvcc_store *mvcc_store_new(struct qsbr *q)
{
	struct mvcc_store *s = aligned_alloc(64, (sizeof *s + 63) & ~(size_t)63);

	if (!s)
		log_fatal("mvcc: out of memory");
	memset(s, 0, sizeof *s);
	atomic_init(&s->pub, NULL);
	atomic_init(&s->compact_cut, 0);
	btree_init(&s->tree, q);
	s->q = q;
	s->rev = 1;
	s->compact_rev = -1; /* etcd's: so that Compact(0) succeeds once on a fresh store */
	mvcc_publish(s);
	return s;
}

void mvcc_store_free(struct mvcc_store *s)
{
	if (!s)
		return;
	btree_destroy(&s->tree, mvcc_key_free);
	free(atomic_load_explicit(&s->pub, memory_order_relaxed));
	free(s);
}

void mvcc_txn_begin(struct mvcc_store *s)
{
	assert(!s->in_txn);
	s->in_txn = true;
	s->txn_changed = false;
	s->txn_rev = s->rev + 1;
	s->txn_sub = 0;
}

int64_t mvcc_txn_end(struct mvcc_store *s)
{
	assert(s->in_txn);
	if (s->txn_changed)
		s->rev = s->txn_rev;
	s->in_txn = false;
	return s->rev;
}

static struct mvcc_ver *mvcc_ver_new(const uint8_t *value, size_t value_len)
{
	struct mvcc_ver *v;

	assert(value_len <= UINT32_MAX);
	v = malloc(sizeof *v + value_len);
	if (!v)
		log_fatal("mvcc: out of memory");
	if (value_len)
		memcpy(v->value, value, value_len);
	v->value_len = (uint32_t)value_len;
	return v;
}

/* Links v in front of k's chain: the one store readers can observe. */
static void mvcc_link(struct mvcc_store *s, struct mvcc_key *k, struct mvcc_ver *v, struct mvcc_ver *head)
{
	atomic_store_explicit(&v->next, head, memory_order_relaxed);
	atomic_store_explicit(&k->head, v, memory_order_release);
	s->versions_total++;
	mvcc_bytes_add(s, (int64_t)(sizeof *v + v->value_len));
	s->txn_changed = true;
}

int mvcc_put(struct mvcc_store *s, const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len,
	     int64_t lease, struct mvcc_kv *prev)
{
	bool implicit = !s->in_txn;
	struct mvcc_key *k;
	struct mvcc_ver *head, *v;
	bool live;

	assert(key_len <= UINT32_MAX);
	if (implicit)
		mvcc_txn_begin(s);
	k = btree_lookup(btree_root(&s->tree), key, key_len);
	if (!k) {
		k = malloc(sizeof *k + key_len);
		if (!k)
			log_fatal("mvcc: out of memory");
		atomic_init(&k->head, NULL);
		k->len = (uint32_t)key_len;
		if (key_len)
			memcpy(k->bytes, key, key_len);
		btree_insert(&s->tree, k->bytes, key_len, k, NULL);
		mvcc_bytes_add(s, (int64_t)(sizeof *k + key_len));
	}
	head = atomic_load_explicit(&k->head, memory_order_relaxed);
	live = head && !head->tomb;
	if (prev && live)
		mvcc_kv_fill(prev, k, head);
	v = mvcc_ver_new(value, value_len);
	v->mod_rev = s->txn_rev;
	v->sub = s->txn_sub++;
	v->create_rev = live ? head->create_rev : s->txn_rev;
	v->version = live ? head->version + 1 : 1;
	v->lease = lease;
	v->tomb = false;
	mvcc_link(s, k, v, head);
	if (!live)
		s->keys_live++;
	if (implicit)
		mvcc_txn_end(s);
	return live;
}

struct mvcc_del_ctx {
	struct mvcc_store *s;
	mvcc_kv_fn fn;
	void *arg;
	int64_t deleted;
};

static int mvcc_del_visit(void *arg, struct mvcc_key *k, const struct mvcc_ver *cur)
{
	struct mvcc_del_ctx *c = arg;
	struct mvcc_ver *t;

	if (c->fn) {
		struct mvcc_kv kv;
		mvcc_kv_fill(&kv, k, cur);
		c->fn(c->arg, &kv);
	}
	t = mvcc_ver_new(NULL, 0);
	t->mod_rev = c->s->txn_rev;
	t->sub = c->s->txn_sub++;
	t->create_rev = 0;
	t->version = 0;
	t->lease = 0;
	t->tomb = true;
	mvcc_link(c->s, k, t, (struct mvcc_ver *)cur);
	c->s->keys_live--;
	c->deleted++;
	return 0;
}

int64_t mvcc_delete_range(struct mvcc_store *s, const uint8_t *key, size_t key_len, const uint8_t *end,
			  size_t end_len, mvcc_kv_fn fn, void *arg)
{
	struct mvcc_del_ctx c = {s, fn, arg, 0};
	bool implicit = !s->in_txn, ran_off = false;

	if (implicit)
		mvcc_txn_begin(s);
	/* INT64_MAX: the newest version, i.e. the working state including this transaction */
	mvcc_walk(btree_root(&s->tree), key, key_len, end, end_len, INT64_MAX, false, mvcc_del_visit, &c,
		  &ran_off);
	if (implicit)
		mvcc_txn_end(s);
	return c.deleted;
}

/* Cuts every chain at `rev` (the physical half of a compaction). */
static void mvcc_cut(struct mvcc_store *s, int64_t rev)
{
	struct btree_iter it;
	struct mvcc_key **gone = NULL;
	size_t ngone = 0, cap = 0;

	/* before any cut: see the invariants above */
	atomic_store_explicit(&s->compact_cut, rev, memory_order_seq_cst);

	for (btree_iter_first(&it, btree_root(&s->tree)); btree_iter_valid(&it); btree_iter_next(&it)) {
		struct mvcc_key *k = btree_iter_value(&it);
		struct mvcc_ver *prev = NULL, *v = atomic_load_explicit(&k->head, memory_order_relaxed), *cut;

		while (v && v->mod_rev > rev) {
			prev = v;
			v = atomic_load_explicit(&v->next, memory_order_relaxed);
		}
		if (!v)
			continue;
		if (v->tomb && !prev) { /* deleted at or before rev, nothing newer: the key goes */
			if (ngone == cap) {
				cap = cap ? 2 * cap : 256;
				gone = realloc(gone, cap * sizeof *gone);
				if (!gone)
					log_fatal("mvcc: out of memory");
			}
			gone[ngone++] = k;
			continue;
		}
		if (v->tomb) { /* drop the tombstone and all before it */
			cut = v;
			atomic_store_explicit(&prev->next, NULL, memory_order_release);
		} else { /* keep v, drop what it replaced */
			cut = atomic_load_explicit(&v->next, memory_order_relaxed);
			if (!cut)
				continue;
			atomic_store_explicit(&v->next, NULL, memory_order_release);
		}
		s->versions_total -= mvcc_chain_len(cut);
		mvcc_bytes_add(s, -(int64_t)mvcc_chain_bytes(cut));
		qsbr_retire(s->q, cut, mvcc_chain_free);
	}
	for (size_t i = 0; i < ngone; i++) {
		struct mvcc_key *k = gone[i];
		int found = btree_delete(&s->tree, k->bytes, k->len, NULL);
		assert(found);
		(void)found;
		s->versions_total -= mvcc_chain_len(atomic_load_explicit(&k->head, memory_order_relaxed));
		mvcc_bytes_add(s, -(int64_t)(mvcc_chain_bytes(atomic_load_explicit(&k->head, memory_order_relaxed)) +
					       sizeof *k + k->len));
		qsbr_retire(s->q, k, mvcc_key_free);
	}
	free(gone);
}

int mvcc_compact(struct mvcc_store *s, int64_t rev)
{
	assert(!s->in_txn);
	if (rev <= s->compact_rev)
		return -MVCC_ECOMPACTED;
	if (rev > s->rev)
		return -MVCC_EFUTURE;
	s->compact_rev = rev; /* reads below rev fail from the next publish on, cut or not */
	if (!s->cut_held)
		mvcc_cut(s, rev);
	return 0;
}

void mvcc_compact_hold(struct mvcc_store *s) { s->cut_held = true; }

void mvcc_compact_release(struct mvcc_store *s)
{
	assert(!s->in_txn);
	s->cut_held = false;
	if (s->compact_rev > atomic_load_explicit(&s->compact_cut, memory_order_relaxed)) {
		mvcc_cut(s, s->compact_rev);
		mvcc_publish(s); /* what the cut retired is freed only after a publish */
	}
}

int64_t mvcc_rev(const struct mvcc_store *s) { return s->rev; }
int64_t mvcc_compact_rev(const struct mvcc_store *s) { return s->compact_rev; }
uint64_t mvcc_keys_live(const struct mvcc_store *s) { return s->keys_live; }
uint64_t mvcc_versions_total(const struct mvcc_store *s) { return s->versions_total; }
uint64_t mvcc_bytes_in_use(const struct mvcc_store *s)
{
	return atomic_load_explicit(&s->bytes_in_use, memory_order_relaxed);
}

/* ---- history ---- */

struct mvcc_hist_ev {
	struct mvcc_event ev;
	size_t seq; /* the version's place within its revision */
};

struct mvcc_hist {
	struct mvcc_hist_ev *ev;
	size_t n, cap;
};

static void mvcc_hist_add(struct mvcc_hist *h, const struct mvcc_key *k, const struct mvcc_ver *v, int64_t compact_rev)
{
	/* A chain that a held compaction (mvcc_compact_hold) has not cut yet still holds what
	 * the cut would drop: a tombstone at the compacted revision and whatever a version at
	 * that revision replaced. Skipped here, so history is the same cut or not. */
	if (v->tomb && v->mod_rev <= compact_rev)
		return;
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 64;
		h->ev = realloc(h->ev, h->cap * sizeof *h->ev);
		if (!h->ev)
			log_fatal("mvcc: out of memory");
	}
	h->ev[h->n].seq = v->sub;
	struct mvcc_event *e = &h->ev[h->n++].ev;
	const struct mvcc_ver *older = atomic_load_explicit(&v->next, memory_order_acquire);

	memset(e, 0, sizeof *e);
	if (v->tomb) {
		e->type = 1;
		e->kv.key = k->bytes;
		e->kv.key_len = k->len;
		e->kv.mod_revision = v->mod_rev;
	} else {
		mvcc_kv_fill(&e->kv, k, v);
	}
	if (older && !older->tomb && v->mod_rev > compact_rev) {
		e->has_prev = true;
		mvcc_kv_fill(&e->prev, k, older);
	}
}

static int mvcc_hist_cmp(const void *a, const void *b)
{
	const struct mvcc_hist_ev *hx = a, *hy = b;
	const struct mvcc_event *x = &hx->ev, *y = &hy->ev;
	int c;

	if (x->kv.mod_revision != y->kv.mod_revision)
		return x->kv.mod_revision < y->kv.mod_revision ? -1 : 1;
	if (hx->seq != hy->seq)
		return hx->seq < hy->seq ? -1 : 1; /* the order the transaction made them */
	c = btree_key_cmp(x->kv.key, x->kv.key_len, y->kv.key, y->kv.key_len);
	return c;
}

/* Events of one revision come out in the order the transaction made them (each version
 * records its place, `sub`), which is etcd's sub-revision order. */
int mvcc_history(const struct mvcc_view *v, const uint8_t *key, size_t key_len, const uint8_t *end, size_t end_len,
		 int64_t from_rev, mvcc_event_fn fn, void *arg)
{
	struct mvcc_hist h = {0};
	struct btree_iter it;
	bool bounded = !mvcc_is_nul(end, end_len);
	int rc = 0;

	if (from_rev < v->compact_rev)
		return -MVCC_ECOMPACTED;
	if (from_rev < 1)
		from_rev = 1;
	if (end_len == 0) {
		const struct mvcc_key *k = btree_lookup(v->root, key, key_len);
		for (const struct mvcc_ver *ver = k ? mvcc_ver_at(k, v->rev) : NULL; ver && ver->mod_rev >= from_rev;
		     ver = atomic_load_explicit(&ver->next, memory_order_acquire))
			mvcc_hist_add(&h, k, ver, v->compact_rev);
	} else if (!bounded || btree_key_cmp(end, end_len, key, key_len) > 0) {
		for (btree_iter_seek_ge(&it, v->root, key, key_len); btree_iter_valid(&it); btree_iter_next(&it)) {
			const struct mvcc_key *k = btree_iter_value(&it);
			if (bounded && btree_key_cmp(k->bytes, k->len, end, end_len) >= 0)
				break;
			for (const struct mvcc_ver *ver = mvcc_ver_at(k, v->rev); ver && ver->mod_rev >= from_rev;
			     ver = atomic_load_explicit(&ver->next, memory_order_acquire))
				mvcc_hist_add(&h, k, ver, v->compact_rev);
		}
	}
	/* a compaction that ran meanwhile may have cut what we walked */
	if (from_rev < atomic_load_explicit(&v->store->compact_cut, memory_order_acquire)) {
		free(h.ev);
		return -MVCC_ECOMPACTED;
	}
	if (h.n > 1)
		qsort(h.ev, h.n, sizeof *h.ev, mvcc_hist_cmp);
	for (size_t i = 0; i < h.n && !rc; i++)
		rc = fn(arg, &h.ev[i].ev);
	free(h.ev);
	return rc;
}

/* ---- checkpoints ---- */

int mvcc_dump(const struct mvcc_view *v, mvcc_dump_fn fn, void *arg, int64_t *compact_rev)
{
	struct mvcc_stored *vers = NULL;
	size_t cap = 0;
	struct btree_iter it;
	int rc = 0;

	for (btree_iter_first(&it, v->root); btree_iter_valid(&it) && !rc; btree_iter_next(&it)) {
		const struct mvcc_key *k = btree_iter_value(&it);
		size_t n = 0;
		for (const struct mvcc_ver *ver = mvcc_ver_at(k, v->rev); ver;
		     ver = atomic_load_explicit(&ver->next, memory_order_acquire)) {
			if (n == cap) {
				cap = cap ? 2 * cap : 16;
				vers = realloc(vers, cap * sizeof *vers);
				if (!vers)
					log_fatal("mvcc: out of memory");
			}
			vers[n++] = (struct mvcc_stored){
				.value = ver->value,
				.value_len = ver->value_len,
				.mod_revision = ver->mod_rev,
				.create_revision = ver->create_rev,
				.version = ver->version,
				.lease = ver->lease,
				.sub = ver->sub,
				.tomb = ver->tomb,
			};
		}
		if (n) /* none: created after the view, or cut by a compaction past it (below) */
			rc = fn(arg, k->bytes, k->len, vers, n);
	}
	free(vers);
	/* Any compaction since the view was taken may have cut some of the chains walked and
	 * not others (keys it removed whole stay in the view's tree): such a dump is neither the
	 * view nor the compacted store, and the log after the checkpoint replays that compaction
	 * again. The caller tries again later. (A cut of 0 is no cut.) */
	int64_t cut = atomic_load_explicit(&v->store->compact_cut, memory_order_acquire);
	if (cut > 0 && cut > v->compact_rev)
		return -MVCC_ECOMPACTED;
	*compact_rev = v->compact_rev;
	return rc;
}

int mvcc_load_begin(struct mvcc_store *s, int64_t rev, int64_t compact_rev)
{
	/* rev < INT64_MAX: the next write takes rev + 1 */
	if (s->rev != 1 || s->keys_live || s->versions_total || s->in_txn || rev < 1 || rev == INT64_MAX ||
	    compact_rev > rev || compact_rev < -1)
		return -EINVAL;
	s->rev = rev;
	s->compact_rev = compact_rev;
	atomic_store_explicit(&s->compact_cut, compact_rev > 0 ? compact_rev : 0, memory_order_relaxed);
	return 0;
}

static bool mvcc_stored_ok(const struct mvcc_store *s, const struct mvcc_stored *v, const struct mvcc_stored *newer)
{
	if (v->mod_revision < 1 || v->mod_revision > s->rev || v->value_len > UINT32_MAX)
		return false;
	if (newer && (v->mod_revision > newer->mod_revision ||
		      (v->mod_revision == newer->mod_revision && v->sub >= newer->sub)))
		return false;
	if (v->tomb)
		return !v->value_len && !v->create_revision && !v->version && !v->lease;
	/* version < INT64_MAX: the next put takes version + 1 */
	return v->create_revision >= 1 && v->create_revision <= v->mod_revision && v->version >= 1 &&
	       v->version < INT64_MAX;
}

int mvcc_load_key(struct mvcc_store *s, const uint8_t *key, size_t key_len, const struct mvcc_stored *vers, size_t n)
{
	struct mvcc_key *k;
	struct mvcc_ver *head = NULL;

	if (!n || key_len > UINT32_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!mvcc_stored_ok(s, &vers[i], i ? &vers[i - 1] : NULL))
			return -EINVAL;
	/* keys come in strictly ascending order (the last one is remembered: no tree walk) */
	if (s->load_last && btree_key_cmp(s->load_last->bytes, s->load_last->len, key, key_len) >= 0)
		return -EINVAL;
	for (size_t i = n; i-- > 0;) { /* oldest first, each in front of the last */
		struct mvcc_ver *v = mvcc_ver_new(vers[i].value, vers[i].value_len);
		v->mod_rev = vers[i].mod_revision;
		v->create_rev = vers[i].create_revision;
		v->version = vers[i].version;
		v->lease = vers[i].lease;
		v->sub = vers[i].sub;
		v->tomb = vers[i].tomb;
		atomic_init(&v->next, head);
		head = v;
		s->versions_total++;
		mvcc_bytes_add(s, (int64_t)(sizeof *v + v->value_len));
	}
	k = malloc(sizeof *k + key_len);
	if (!k)
		log_fatal("mvcc: out of memory");
	atomic_init(&k->head, head);
	k->len = (uint32_t)key_len;
	if (key_len)
		memcpy(k->bytes, key, key_len);
	btree_insert(&s->tree, k->bytes, key_len, k, NULL);
	mvcc_bytes_add(s, (int64_t)(sizeof *k + key_len));
	if (!head->tomb)
		s->keys_live++;
	s->load_last = k;
	return 0;
}
