/* Copy-on-write B+tree (see btree.h for the COW rule and key ownership).
 *
 * Node layout: one struct for leaves and internal nodes, BTREE_FANOUT keys at most (one
 * spare slot lets a node overflow by one before it splits). Keys are (pointer, length)
 * plus an 8-byte big-endian window `pfx` taken just after the node's common prefix `lcp`
 * (the longest prefix shared by all keys of the node, i.e. by its first and last key). A
 * search compares the query with that common prefix once per node (its first
 * BTREE_PRE_INLINE bytes are kept in the node, so that costs no pointer chase), then
 * binary-searches on the cached windows, touching key bytes only on ties: etcd keys share
 * long prefixes ("/registry/pods/ns/..."), which a plain 8-byte prefix cache would not
 * separate.
 *
 * Invariants (owner: the writer functions in this file; btree_check verifies them):
 *  - all leaves are at the same depth; a non-root node holds BTREE_MIN..BTREE_FANOUT keys,
 *    a root leaf 1.. (an empty tree has no root), a root internal node 1..;
 *  - internal separator i is the smallest key of child i+1's subtree, by pointer identity
 *    (so a separator never outlives the entry it names: btree_delete re-points it);
 *  - lcp/pfx match the node's keys; a node with gen == tree->gen is not reachable from any
 *    published root.
 * Readers use no atomics: they reach nodes only through a root published with release
 * semantics by the caller, and published nodes are never written.
 */
#include "storage/btree.h"
#include "core/log.h"
#include "core/qsbr.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#ifndef BTREE_FANOUT
#define BTREE_FANOUT 32
#endif
#define BTREE_MIN (BTREE_FANOUT / 2)
_Static_assert(BTREE_FANOUT >= 4 && BTREE_FANOUT % 2 == 0 && BTREE_FANOUT < 65535, "fan-out");
#define BTREE_PRE_INLINE 32

struct btree_node {
	uint64_t gen;
	uint32_t lcp; /* common prefix length of all keys in this node */
	uint16_t n;   /* keys */
	uint8_t leaf;
	uint8_t pre[BTREE_PRE_INLINE];           /* first bytes of the common prefix */
	uint64_t pfx[BTREE_FANOUT + 1];          /* 8 bytes of key i after lcp, big-endian */
	const uint8_t *kp[BTREE_FANOUT + 1];     /* key bytes (owned by the caller) */
	uint32_t klen[BTREE_FANOUT + 1];
	void *ptr[BTREE_FANOUT + 2];             /* leaf: values[n]; internal: children[n + 1] */
};

/* ---- keys ---- */

static inline uint64_t bt_window(const uint8_t *p, size_t len)
{
	uint64_t v = 0;

	if (len >= 8) {
		memcpy(&v, p, 8);
		return __builtin_bswap64(v);
	}
	for (size_t i = 0; i < len; i++)
		v |= (uint64_t)p[i] << (56 - 8 * i);
	return v;
}

int btree_key_cmp(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
	size_t m = a_len < b_len ? a_len : b_len;
	int c = m ? memcmp(a, b, m) : 0;

	if (c)
		return c;
	return a_len < b_len ? -1 : a_len > b_len;
}

static uint32_t bt_common(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
	size_t m = a_len < b_len ? a_len : b_len, i = 0;

	if (a == b)
		return (uint32_t)m;
	while (i + 8 <= m) {
		uint64_t x, y;
		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		if (x != y)
			return (uint32_t)(i + (size_t)(__builtin_ctzll(x ^ y) >> 3));
		i += 8;
	}
	while (i < m && a[i] == b[i])
		i++;
	return (uint32_t)i;
}

/* memcmp for short strings, inlined: keys are mostly tens of bytes. */
static inline int bt_memcmp(const uint8_t *a, const uint8_t *b, size_t m)
{
	while (m >= 8) {
		uint64_t x, y;
		memcpy(&x, a, 8);
		memcpy(&y, b, 8);
		if (x != y)
			return __builtin_bswap64(x) < __builtin_bswap64(y) ? -1 : 1;
		a += 8;
		b += 8;
		m -= 8;
	}
	for (; m; a++, b++, m--)
		if (*a != *b)
			return *a < *b ? -1 : 1;
	return 0;
}

/* Sign of (key i of n) - q, where qw is q's window after n->lcp (q shares that prefix). */
static inline int bt_cmp_at(const struct btree_node *n, unsigned i, uint64_t qw, const uint8_t *q, size_t q_len)
{
	uint64_t kw = n->pfx[i];
	size_t ka, qa;

	if (kw != qw)
		return kw < qw ? -1 : 1;
	ka = n->klen[i] - n->lcp;
	qa = q_len - n->lcp;
	if (ka > 8 && qa > 8) {
		size_t m = (ka < qa ? ka : qa) - 8;
		int c = bt_memcmp(n->kp[i] + n->lcp + 8, q + n->lcp + 8, m);
		if (c)
			return c;
	}
	return ka < qa ? -1 : ka > qa;
}

/* First index in [0, n] whose key is >= q (upper: > q). */
static inline unsigned bt_search(const struct btree_node *n, const uint8_t *q, size_t q_len, bool upper)
{
	unsigned lo = 0, hi = n->n;
	uint32_t lcp = n->lcp;
	uint64_t qw;

	if (!hi)
		return 0;
	if (lcp) {
		size_t m = q_len < lcp ? q_len : lcp, m1 = m < BTREE_PRE_INLINE ? m : BTREE_PRE_INLINE;
		int c = bt_memcmp(q, n->pre, m1);
		if (c == 0 && m > m1)
			c = bt_memcmp(q + m1, n->kp[0] + m1, m - m1);
		if (c < 0 || (c == 0 && q_len < lcp))
			return 0; /* below every key (or a proper prefix of all of them) */
		if (c > 0)
			return hi;
	}
	qw = bt_window(q + lcp, q_len - lcp);
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		int c = bt_cmp_at(n, mid, qw, q, q_len);
		if (c < 0 || (upper && c == 0))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static inline bool bt_equal_at(const struct btree_node *n, unsigned i, const uint8_t *q, size_t q_len)
{
	return n->klen[i] == q_len && bt_memcmp(n->kp[i], q, q_len) == 0;
}

/* Recomputes lcp from the first and last key; refreshes every window if it changed, else
 * only the window of `changed` (-1: refresh all). */
static void bt_reprefix(struct btree_node *n, int changed)
{
	uint32_t lcp = 0;

	if (n->n)
		lcp = bt_common(n->kp[0], n->klen[0], n->kp[n->n - 1], n->klen[n->n - 1]);
	/* The prefix bytes can change even when its length does not (a one-key node whose key
	 * was replaced), so copy them on every call; they are the same in every key. */
	if (lcp)
		memcpy(n->pre, n->kp[0], lcp < BTREE_PRE_INLINE ? lcp : BTREE_PRE_INLINE);
	if (changed < 0 || lcp != n->lcp) {
		n->lcp = lcp;
		for (unsigned i = 0; i < n->n; i++)
			n->pfx[i] = bt_window(n->kp[i] + lcp, n->klen[i] - lcp);
	} else if ((unsigned)changed < n->n) {
		n->pfx[changed] = bt_window(n->kp[changed] + lcp, n->klen[changed] - lcp);
	}
}

/* After key i changed or was inserted: the common prefix can only change at either end. */
static void bt_refresh(struct btree_node *n, unsigned i)
{
	if (i == 0 || i + 1 >= n->n)
		bt_reprefix(n, (int)i);
	else
		n->pfx[i] = bt_window(n->kp[i] + n->lcp, n->klen[i] - n->lcp);
}

/* ---- nodes ---- */

static struct btree_node *bt_node_new(struct btree *t, bool leaf)
{
	struct btree_node *n = aligned_alloc(64, (sizeof *n + 63) & ~(size_t)63);

	if (!n)
		log_fatal("btree: out of memory");
	n->gen = t->gen;
	n->lcp = 0;
	n->n = 0;
	n->leaf = leaf;
	t->nodes++;
	return n;
}

/* A node the writer may modify: itself if created in this batch, else a copy (the original
 * is retired: it stays readable from older roots). The caller re-points the parent. */
static struct btree_node *bt_writable(struct btree *t, struct btree_node *n)
{
	struct btree_node *c;

	if (n->gen == t->gen)
		return n;
	c = aligned_alloc(64, (sizeof *c + 63) & ~(size_t)63);
	if (!c)
		log_fatal("btree: out of memory");
	memcpy(c, n, sizeof *c);
	c->gen = t->gen;
	qsbr_retire(t->q, n, free);
	return c;
}

/* A node leaves the working tree. */
static void bt_drop(struct btree *t, struct btree_node *n)
{
	t->nodes--;
	if (n->gen == t->gen)
		free(n); /* never published */
	else
		qsbr_retire(t->q, n, free);
}

static void bt_set_key(struct btree_node *n, unsigned i, const uint8_t *kp, uint32_t klen)
{
	n->kp[i] = kp;
	n->klen[i] = klen;
}

/* Moves keys [from, n) by `by` slots (positive: right) — the caller fixes n. */
static void bt_shift_keys(struct btree_node *n, unsigned from, int by)
{
	unsigned cnt = n->n - from;

	memmove(&n->pfx[from + by], &n->pfx[from], cnt * sizeof n->pfx[0]);
	memmove(&n->kp[from + by], &n->kp[from], cnt * sizeof n->kp[0]);
	memmove(&n->klen[from + by], &n->klen[from], cnt * sizeof n->klen[0]);
}

static void bt_shift_ptrs(struct btree_node *n, unsigned from, unsigned end, int by)
{
	memmove(&n->ptr[from + by], &n->ptr[from], (end - from) * sizeof n->ptr[0]);
}

/* Copies keys [from, from + cnt) of src to dst at position at (windows recomputed later). */
static void bt_copy_keys(struct btree_node *dst, unsigned at, const struct btree_node *src, unsigned from, unsigned cnt)
{
	memcpy(&dst->kp[at], &src->kp[from], cnt * sizeof dst->kp[0]);
	memcpy(&dst->klen[at], &src->klen[from], cnt * sizeof dst->klen[0]);
}

/* ---- readers ---- */

void *btree_lookup(const struct btree_node *n, const uint8_t *key, size_t key_len)
{
	unsigned i;

	if (!n)
		return NULL;
	while (!n->leaf)
		n = n->ptr[bt_search(n, key, key_len, true)];
	i = bt_search(n, key, key_len, false);
	if (i < n->n && bt_equal_at(n, i, key, key_len))
		return n->ptr[i];
	return NULL;
}

/* Descends from node[d] (already set, idx[d] chosen) along leftmost or rightmost slots. */
static void bt_iter_descend(struct btree_iter *it, int d, bool rightmost)
{
	while (!it->node[d]->leaf) {
		const struct btree_node *c = it->node[d]->ptr[it->idx[d]];
		d++;
		assert(d < BTREE_DEPTH_MAX);
		it->node[d] = c;
		it->idx[d] = rightmost ? (c->leaf ? c->n - 1 : c->n) : 0;
	}
	it->depth = d + 1;
}

void btree_iter_first(struct btree_iter *it, const struct btree_node *root)
{
	it->depth = 0;
	if (!root)
		return;
	it->node[0] = root;
	it->idx[0] = 0;
	bt_iter_descend(it, 0, false);
}

void btree_iter_last(struct btree_iter *it, const struct btree_node *root)
{
	it->depth = 0;
	if (!root)
		return;
	it->node[0] = root;
	it->idx[0] = root->leaf ? root->n - 1 : root->n;
	bt_iter_descend(it, 0, true);
}

void btree_iter_next(struct btree_iter *it)
{
	int d = it->depth - 1;

	if (d < 0)
		return;
	if (++it->idx[d] < it->node[d]->n)
		return;
	while (--d >= 0 && it->idx[d] >= it->node[d]->n)
		;
	if (d < 0) {
		it->depth = 0;
		return;
	}
	it->idx[d]++;
	bt_iter_descend(it, d, false);
}

void btree_iter_prev(struct btree_iter *it)
{
	int d = it->depth - 1;

	if (d < 0)
		return;
	if (it->idx[d] > 0) {
		it->idx[d]--;
		return;
	}
	while (--d >= 0 && it->idx[d] == 0)
		;
	if (d < 0) {
		it->depth = 0;
		return;
	}
	it->idx[d]--;
	bt_iter_descend(it, d, true);
}

void btree_iter_seek_ge(struct btree_iter *it, const struct btree_node *root, const uint8_t *key, size_t key_len)
{
	const struct btree_node *n = root;
	int d = 0;

	it->depth = 0;
	if (!n)
		return;
	while (!n->leaf) {
		unsigned i = bt_search(n, key, key_len, true);
		assert(d < BTREE_DEPTH_MAX - 1);
		it->node[d] = n;
		it->idx[d++] = (uint16_t)i;
		n = n->ptr[i];
	}
	it->node[d] = n;
	it->idx[d] = (uint16_t)bt_search(n, key, key_len, false);
	it->depth = d + 1;
	if (it->idx[d] >= n->n) { /* past this leaf: the answer is the next leaf's first key */
		it->idx[d] = n->n - 1;
		btree_iter_next(it);
	}
}

void btree_iter_seek_lt(struct btree_iter *it, const struct btree_node *root, const uint8_t *key, size_t key_len)
{
	btree_iter_seek_ge(it, root, key, key_len);
	if (btree_iter_valid(it))
		btree_iter_prev(it);
	else
		btree_iter_last(it, root);
}

const uint8_t *btree_iter_key(const struct btree_iter *it, size_t *key_len)
{
	const struct btree_node *n = it->node[it->depth - 1];
	unsigned i = it->idx[it->depth - 1];

	*key_len = n->klen[i];
	return n->kp[i];
}

void *btree_iter_value(const struct btree_iter *it)
{
	return it->node[it->depth - 1]->ptr[it->idx[it->depth - 1]];
}

/* ---- the writer ---- */

void btree_init(struct btree *t, struct qsbr *q)
{
	t->root = NULL;
	t->gen = 1;
	t->count = 0;
	t->nodes = 0;
	t->q = q;
}

static void bt_destroy_node(struct btree_node *n, void (*val_free)(void *))
{
	if (n->leaf) {
		if (val_free)
			for (unsigned i = 0; i < n->n; i++)
				val_free(n->ptr[i]);
	} else {
		for (unsigned i = 0; i <= n->n; i++)
			bt_destroy_node(n->ptr[i], val_free);
	}
	free(n);
}

void btree_destroy(struct btree *t, void (*val_free)(void *))
{
	if (t->root)
		bt_destroy_node(t->root, val_free);
	t->root = NULL;
	t->count = 0;
	t->nodes = 0;
}

/* Splits an overfull node: n keeps the lower half, the returned node the upper half;
 * *sep receives the separator to insert in the parent (index of n's key that moves up, for
 * internal nodes, is removed from n). */
static struct btree_node *bt_split(struct btree *t, struct btree_node *n, const uint8_t **sep_kp, uint32_t *sep_len)
{
	struct btree_node *r = bt_node_new(t, n->leaf);
	unsigned total = n->n, mid = total / 2;

	if (n->leaf) {
		r->n = (uint16_t)(total - mid);
		bt_copy_keys(r, 0, n, mid, r->n);
		memcpy(&r->ptr[0], &n->ptr[mid], r->n * sizeof r->ptr[0]);
		n->n = (uint16_t)mid;
		*sep_kp = r->kp[0];
		*sep_len = r->klen[0];
	} else {
		r->n = (uint16_t)(total - mid - 1);
		bt_copy_keys(r, 0, n, mid + 1, r->n);
		memcpy(&r->ptr[0], &n->ptr[mid + 1], (r->n + 1u) * sizeof r->ptr[0]);
		*sep_kp = n->kp[mid];
		*sep_len = n->klen[mid];
		n->n = (uint16_t)mid;
	}
	bt_reprefix(n, -1);
	bt_reprefix(r, -1);
	return r;
}

int btree_insert(struct btree *t, const uint8_t *key, size_t key_len, void *val, void **old)
{
	struct btree_node *path[BTREE_DEPTH_MAX], *n;
	unsigned idx[BTREE_DEPTH_MAX], pos;
	int d = 0;

	assert(val && key_len <= UINT32_MAX);
	if (!t->root) {
		n = bt_node_new(t, true);
		n->n = 1;
		bt_set_key(n, 0, key, (uint32_t)key_len);
		n->ptr[0] = val;
		bt_reprefix(n, -1);
		t->root = n;
		t->count = 1;
		return 0;
	}
	n = t->root = bt_writable(t, t->root);
	while (!n->leaf) {
		unsigned i = bt_search(n, key, key_len, true);
		struct btree_node *c = bt_writable(t, n->ptr[i]);
		n->ptr[i] = c;
		assert(d < BTREE_DEPTH_MAX - 1);
		path[d] = n;
		idx[d++] = i;
		n = c;
	}
	pos = bt_search(n, key, key_len, false);
	if (pos < n->n && bt_equal_at(n, pos, key, key_len)) {
		if (old)
			*old = n->ptr[pos];
		n->ptr[pos] = val;
		return 1;
	}
	bt_shift_keys(n, pos, 1);
	bt_shift_ptrs(n, pos, n->n, 1);
	n->n++;
	bt_set_key(n, pos, key, (uint32_t)key_len);
	n->ptr[pos] = val;
	bt_refresh(n, pos);
	t->count++;

	while (n->n > BTREE_FANOUT) {
		const uint8_t *sep;
		uint32_t sep_len;
		struct btree_node *r = bt_split(t, n, &sep, &sep_len), *p;
		unsigned i;

		if (d == 0) {
			p = bt_node_new(t, false);
			p->n = 1;
			bt_set_key(p, 0, sep, sep_len);
			p->ptr[0] = n;
			p->ptr[1] = r;
			bt_reprefix(p, -1);
			t->root = p;
			break;
		}
		p = path[--d];
		i = idx[d];
		bt_shift_keys(p, i, 1);
		bt_shift_ptrs(p, i + 1, p->n + 1u, 1);
		p->n++;
		bt_set_key(p, i, sep, sep_len);
		p->ptr[i + 1] = r;
		bt_refresh(p, i);
		n = p;
	}
	return 0;
}

/* Removes key i and the pointer at index i + ptr_off from n. */
static void bt_remove_at(struct btree_node *n, unsigned i, unsigned ptr_off)
{
	unsigned nptr = n->leaf ? n->n : n->n + 1u;

	bt_shift_ptrs(n, i + ptr_off + 1, nptr, -1);
	bt_shift_keys(n, i + 1, -1);
	n->n--;
	if (i == 0 || i >= n->n)
		bt_reprefix(n, n->n); /* an end changed: the common prefix may grow */
}

/* n (child i of p) has fewer than BTREE_MIN keys: borrow from a sibling or merge. */
static void bt_rebalance(struct btree *t, struct btree_node *p, unsigned i, struct btree_node *n)
{
	struct btree_node *l = i > 0 ? p->ptr[i - 1] : NULL, *r = i < p->n ? p->ptr[i + 1] : NULL;

	if (l && l->n > BTREE_MIN) {
		l = p->ptr[i - 1] = bt_writable(t, l);
		bt_shift_keys(n, 0, 1);
		if (n->leaf) {
			bt_shift_ptrs(n, 0, n->n, 1);
			n->n++;
			bt_set_key(n, 0, l->kp[l->n - 1], l->klen[l->n - 1]);
			n->ptr[0] = l->ptr[l->n - 1];
			bt_set_key(p, i - 1, n->kp[0], n->klen[0]);
		} else {
			bt_shift_ptrs(n, 0, n->n + 1u, 1);
			n->n++;
			bt_set_key(n, 0, p->kp[i - 1], p->klen[i - 1]);
			n->ptr[0] = l->ptr[l->n];
			bt_set_key(p, i - 1, l->kp[l->n - 1], l->klen[l->n - 1]);
		}
		l->n--;
		bt_reprefix(l, -1);
		bt_reprefix(n, -1);
		bt_refresh(p, i - 1);
	} else if (r && r->n > BTREE_MIN) {
		r = p->ptr[i + 1] = bt_writable(t, r);
		if (n->leaf) {
			bt_set_key(n, n->n, r->kp[0], r->klen[0]);
			n->ptr[n->n] = r->ptr[0];
			n->n++;
			bt_shift_ptrs(r, 1, r->n, -1);
			bt_shift_keys(r, 1, -1);
			r->n--;
			bt_set_key(p, i, r->kp[0], r->klen[0]);
		} else {
			bt_set_key(n, n->n, p->kp[i], p->klen[i]);
			n->ptr[n->n + 1] = r->ptr[0];
			n->n++;
			bt_set_key(p, i, r->kp[0], r->klen[0]);
			bt_shift_ptrs(r, 1, r->n + 1u, -1);
			bt_shift_keys(r, 1, -1);
			r->n--;
		}
		bt_reprefix(r, -1);
		bt_reprefix(n, -1);
		bt_refresh(p, i);
	} else {
		/* merge child k + 1 (b) into child k (a); separator k goes away */
		unsigned k = l ? i - 1 : i;
		struct btree_node *a, *b;

		if (l) {
			a = p->ptr[k] = bt_writable(t, l);
			b = n;
		} else {
			a = n;
			b = r;
		}
		if (a->leaf) {
			bt_copy_keys(a, a->n, b, 0, b->n);
			memcpy(&a->ptr[a->n], &b->ptr[0], b->n * sizeof a->ptr[0]);
			a->n = (uint16_t)(a->n + b->n);
		} else {
			bt_set_key(a, a->n, p->kp[k], p->klen[k]);
			bt_copy_keys(a, a->n + 1u, b, 0, b->n);
			memcpy(&a->ptr[a->n + 1], &b->ptr[0], (b->n + 1u) * sizeof a->ptr[0]);
			a->n = (uint16_t)(a->n + 1 + b->n);
		}
		assert(a->n <= BTREE_FANOUT);
		bt_reprefix(a, -1);
		bt_remove_at(p, k, 1);
		bt_drop(t, b);
	}
}

int btree_delete(struct btree *t, const uint8_t *key, size_t key_len, void **old)
{
	struct btree_node *path[BTREE_DEPTH_MAX], *n;
	unsigned idx[BTREE_DEPTH_MAX], pos;
	const uint8_t *gone;
	int d = 0;

	if (!btree_lookup(t->root, key, key_len))
		return 0; /* absent: copy nothing */
	n = t->root = bt_writable(t, t->root);
	while (!n->leaf) {
		unsigned i = bt_search(n, key, key_len, true);
		struct btree_node *c = bt_writable(t, n->ptr[i]);
		n->ptr[i] = c;
		path[d] = n;
		idx[d++] = i;
		n = c;
	}
	pos = bt_search(n, key, key_len, false);
	assert(pos < n->n && bt_equal_at(n, pos, key, key_len));
	gone = n->kp[pos];
	if (old)
		*old = n->ptr[pos];
	bt_remove_at(n, pos, 0);
	t->count--;

	if (d == 0) {
		if (n->n == 0) {
			bt_drop(t, n);
			t->root = NULL;
		}
		return 1;
	}
	/* The separator naming the removed key (the smallest of a right subtree) now names the
	 * leaf's new first key; a non-root leaf is never empty here (BTREE_MIN >= 2). */
	if (pos == 0)
		for (int l = 0; l < d; l++)
			if (idx[l] > 0 && path[l]->kp[idx[l] - 1] == gone) {
				bt_set_key(path[l], idx[l] - 1, n->kp[0], n->klen[0]);
				bt_refresh(path[l], idx[l] - 1);
			}
	while (d > 0 && n->n < BTREE_MIN) {
		d--;
		bt_rebalance(t, path[d], idx[d], n);
		n = path[d];
	}
	if (!t->root->leaf && t->root->n == 0) {
		struct btree_node *r = t->root;
		t->root = r->ptr[0];
		bt_drop(t, r);
	}
	return 1;
}

/* ---- checking (tests) ---- */

static int bt_check_node(const struct btree_node *n, int depth, int *leaf_depth, bool is_root, const uint8_t **lo,
			 uint32_t *lo_len, uint64_t *count)
{
	unsigned min = is_root ? 1 : BTREE_MIN;

	if (n->n < min || n->n > BTREE_FANOUT)
		return -1;
	if (n->lcp != bt_common(n->kp[0], n->klen[0], n->kp[n->n - 1], n->klen[n->n - 1]))
		return -2;
	for (unsigned i = 0; i < n->n; i++) {
		if (n->klen[i] < n->lcp || memcmp(n->kp[i], n->kp[0], n->lcp) != 0)
			return -3;
		if (n->pfx[i] != bt_window(n->kp[i] + n->lcp, n->klen[i] - n->lcp))
			return -4;
		if (memcmp(n->pre, n->kp[i], n->lcp < BTREE_PRE_INLINE ? n->lcp : BTREE_PRE_INLINE) != 0)
			return -13;
		if (i && btree_key_cmp(n->kp[i - 1], n->klen[i - 1], n->kp[i], n->klen[i]) >= 0)
			return -5;
	}
	if (n->leaf) {
		if (*leaf_depth < 0)
			*leaf_depth = depth;
		if (*leaf_depth != depth)
			return -6;
		for (unsigned i = 0; i < n->n; i++)
			if (!n->ptr[i])
				return -7;
		if (*lo && btree_key_cmp(*lo, *lo_len, n->kp[0], n->klen[0]) >= 0)
			return -8;
		*lo = n->kp[n->n - 1];
		*lo_len = n->klen[n->n - 1];
		*count += n->n;
		return 0;
	}
	for (unsigned i = 0; i <= n->n; i++) {
		const struct btree_node *c = n->ptr[i];
		const struct btree_node *m = c;
		int rc;

		if (depth + 1 >= BTREE_DEPTH_MAX)
			return -9;
		while (!m->leaf)
			m = m->ptr[0];
		if (i > 0 && m->kp[0] != n->kp[i - 1])
			return -10; /* separator is not exactly the subtree's smallest key */
		rc = bt_check_node(c, depth + 1, leaf_depth, false, lo, lo_len, count);
		if (rc)
			return rc;
	}
	return 0;
}

int btree_check(const struct btree_node *root, uint64_t count)
{
	int leaf_depth = -1, rc;
	const uint8_t *lo = NULL;
	uint32_t lo_len = 0;
	uint64_t seen = 0;

	if (!root)
		return count ? -11 : 0;
	rc = bt_check_node(root, 0, &leaf_depth, true, &lo, &lo_len, &seen);
	if (rc)
		return rc;
	return seen == count ? 0 : -12;
}
