/* B+tree tests. The tree is included with a fan-out of 4 so that a few thousand keys make
 * a deep tree and random operations split, borrow and merge constantly; everything is
 * checked against a sorted-array model, and btree_check verifies the structure (separators
 * by pointer identity, cached prefixes, fill, depth) along the way. Deleted and replaced key
 * bytes are retired through qsbr as mvcc does, so ASan catches a tree that keeps a stale
 * pointer. */
#define BTREE_FANOUT 4
#include "storage/btree.c"

#include "core/qsbr.h"

#include <criterion/criterion.h>
#include <stdio.h>

struct ent {
	uint8_t *k;
	size_t len;
	uintptr_t v;
};

struct model {
	struct ent *e;
	size_t n, cap;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

/* Keys with shared long prefixes, embedded zero bytes, 0xff, the empty key. */
static size_t gen_key(uint8_t *buf, unsigned universe)
{
	static const char *pre[] = {"", "/registry/pods/default/", "/registry/pods/kube-system/", "a", "/registry/pods/default/x"};
	const char *p = pre[rnd() % 5];
	size_t len = strlen(p);
	memcpy(buf, p, len);
	if (rnd() % 4 == 0) {
		size_t extra = rnd() % 4;
		for (size_t i = 0; i < extra; i++)
			buf[len++] = (uint8_t[]){0, 1, 0xff}[rnd() % 3];
	} else {
		len += (size_t)sprintf((char *)buf + len, "%u", (unsigned)(rnd() % universe));
	}
	return len;
}

static size_t model_pos(const struct model *m, const uint8_t *k, size_t len, bool *found)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (btree_key_cmp(m->e[mid].k, m->e[mid].len, k, len) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < m->n && btree_key_cmp(m->e[lo].k, m->e[lo].len, k, len) == 0;
	return lo;
}

static void model_insert(struct model *m, size_t pos, uint8_t *k, size_t len, uintptr_t v)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 1024;
		m->e = realloc(m->e, m->cap * sizeof *m->e);
	}
	memmove(&m->e[pos + 1], &m->e[pos], (m->n - pos) * sizeof *m->e);
	m->e[pos] = (struct ent){k, len, v};
	m->n++;
}

static void check_full(const struct btree_node *root, const struct model *m)
{
	struct btree_iter it;
	size_t i = 0;

	for (btree_iter_first(&it, root); btree_iter_valid(&it); btree_iter_next(&it), i++) {
		size_t len;
		const uint8_t *k = btree_iter_key(&it, &len);
		cr_assert(i < m->n);
		cr_assert(btree_key_cmp(k, len, m->e[i].k, m->e[i].len) == 0, "forward at %zu", i);
		cr_assert_eq((uintptr_t)btree_iter_value(&it), m->e[i].v);
	}
	cr_assert_eq(i, m->n);
	for (btree_iter_last(&it, root); btree_iter_valid(&it); btree_iter_prev(&it)) {
		size_t len;
		const uint8_t *k = btree_iter_key(&it, &len);
		cr_assert(i > 0);
		i--;
		cr_assert(btree_key_cmp(k, len, m->e[i].k, m->e[i].len) == 0, "backward at %zu", i);
	}
	cr_assert_eq(i, 0);
}

static void check_seek(const struct btree_node *root, const struct model *m, const uint8_t *k, size_t len)
{
	struct btree_iter it;
	bool found;
	size_t pos = model_pos(m, k, len, &found);

	btree_iter_seek_ge(&it, root, k, len);
	for (size_t i = pos, steps = 0; steps < 5; steps++, i++) {
		if (i >= m->n) {
			cr_assert(!btree_iter_valid(&it));
			break;
		}
		size_t l;
		const uint8_t *ik;
		cr_assert(btree_iter_valid(&it));
		ik = btree_iter_key(&it, &l);
		cr_assert(btree_key_cmp(ik, l, m->e[i].k, m->e[i].len) == 0);
		btree_iter_next(&it);
	}
	btree_iter_seek_lt(&it, root, k, len);
	for (size_t i = pos, steps = 0; steps < 5; steps++, i--) {
		if (i == 0) {
			cr_assert(!btree_iter_valid(&it));
			break;
		}
		size_t l;
		const uint8_t *ik;
		cr_assert(btree_iter_valid(&it));
		ik = btree_iter_key(&it, &l);
		cr_assert(btree_key_cmp(ik, l, m->e[i - 1].k, m->e[i - 1].len) == 0);
		btree_iter_prev(&it);
	}
	/* seek then walk the other way */
	btree_iter_seek_ge(&it, root, k, len);
	if (btree_iter_valid(&it)) {
		btree_iter_prev(&it);
		if (pos == 0) {
			cr_assert(!btree_iter_valid(&it));
		} else {
			size_t l;
			const uint8_t *ik = btree_iter_key(&it, &l);
			cr_assert(btree_key_cmp(ik, l, m->e[pos - 1].k, m->e[pos - 1].len) == 0);
		}
	}
}

static void model_free(struct model *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->e[i].k);
	free(m->e);
}

Test(btree, empty)
{
	struct qsbr *q = qsbr_new(1);
	struct btree t;
	struct btree_iter it;

	btree_init(&t, q);
	cr_assert_null(btree_lookup(t.root, (const uint8_t *)"a", 1));
	btree_iter_first(&it, t.root);
	cr_assert(!btree_iter_valid(&it));
	btree_iter_seek_ge(&it, t.root, (const uint8_t *)"a", 1);
	cr_assert(!btree_iter_valid(&it));
	btree_iter_seek_lt(&it, t.root, (const uint8_t *)"a", 1);
	cr_assert(!btree_iter_valid(&it));
	cr_assert_eq(btree_delete(&t, (const uint8_t *)"a", 1, NULL), 0);
	cr_assert_eq(btree_insert(&t, (const uint8_t *)"a", 1, (void *)1, NULL), 0);
	cr_assert_eq(btree_delete(&t, (const uint8_t *)"a", 1, NULL), 1);
	cr_assert_null(t.root);
	cr_assert_eq(t.nodes, 0);
	btree_destroy(&t, NULL);
	qsbr_free(q);
}

static void run_random(unsigned universe, int ops, unsigned publish_every)
{
	struct qsbr *q = qsbr_new(1);
	struct btree t;
	struct model m = {0};
	uint8_t buf[64];

	btree_init(&t, q);
	for (int op = 0; op < ops; op++) {
		size_t len = gen_key(buf, universe);
		unsigned r = (unsigned)(rnd() % 100);
		bool found;
		size_t pos = model_pos(&m, buf, len, &found);
		uintptr_t v = (uintptr_t)op + 1;

		if (r < 50) {
			uint8_t *k = malloc(len ? len : 1);
			void *old = NULL;
			memcpy(k, buf, len);
			int rc = btree_insert(&t, k, len, (void *)v, &old);
			cr_assert_eq(rc, found ? 1 : 0);
			if (found) {
				cr_assert_eq((uintptr_t)old, m.e[pos].v);
				m.e[pos].v = v;
				free(k); /* the tree keeps the key bytes it already had */
			} else {
				model_insert(&m, pos, k, len, v);
			}
		} else if (r < 90) {
			void *old = NULL;
			int rc = btree_delete(&t, buf, len, &old);
			cr_assert_eq(rc, found ? 1 : 0);
			if (found) {
				cr_assert_eq((uintptr_t)old, m.e[pos].v);
				qsbr_retire(q, m.e[pos].k, free);
				memmove(&m.e[pos], &m.e[pos + 1], (m.n - pos - 1) * sizeof *m.e);
				m.n--;
			}
		} else if (r < 97) {
			void *got = btree_lookup(t.root, buf, len);
			cr_assert_eq((uintptr_t)got, found ? m.e[pos].v : 0);
		} else {
			check_seek(t.root, &m, buf, len);
		}
		cr_assert_eq(t.count, m.n);
		if (publish_every && op % publish_every == 0) {
			btree_seal(&t);
			qsbr_advance(q);
		}
		if (op % 2000 == 0) {
			int rc = btree_check(t.root, t.count);
			cr_assert_eq(rc, 0, "btree_check %d at op %d", rc, op);
			check_full(t.root, &m);
		}
	}
	cr_assert_eq(btree_check(t.root, t.count), 0);
	check_full(t.root, &m);
	/* drain: delete everything in random order */
	while (m.n) {
		size_t pos = rnd() % m.n;
		cr_assert_eq(btree_delete(&t, m.e[pos].k, m.e[pos].len, NULL), 1);
		qsbr_retire(q, m.e[pos].k, free);
		memmove(&m.e[pos], &m.e[pos + 1], (m.n - pos - 1) * sizeof *m.e);
		m.n--;
		if (m.n % 97 == 0) {
			cr_assert_eq(btree_check(t.root, t.count), 0);
			btree_seal(&t);
			qsbr_advance(q);
		}
	}
	cr_assert_null(t.root);
	cr_assert_eq(t.nodes, 0);
	btree_destroy(&t, NULL);
	model_free(&m);
	qsbr_free(q);
}

Test(btree, random_vs_model_small_universe) { run_random(300, 200000, 7); }
Test(btree, random_vs_model_large_universe) { run_random(20000, 200000, 101); }
Test(btree, random_vs_model_one_batch) { run_random(3000, 100000, 0); }

Test(btree, sequential_ascending_descending)
{
	struct qsbr *q = qsbr_new(1);
	struct btree t;
	static uint8_t keys[5000][16];

	btree_init(&t, q);
	for (int i = 0; i < 5000; i++) {
		snprintf((char *)keys[i], sizeof keys[i], "k%05u", (unsigned)i % 100000u);
		cr_assert_eq(btree_insert(&t, keys[i], 6, (void *)(uintptr_t)(i + 1), NULL), 0);
	}
	cr_assert_eq(btree_check(t.root, 5000), 0);
	for (int i = 4999; i >= 0; i -= 2)
		cr_assert_eq(btree_delete(&t, keys[i], 6, NULL), 1);
	cr_assert_eq(btree_check(t.root, 2500), 0);
	for (int i = 0; i < 5000; i++)
		cr_assert_eq((uintptr_t)btree_lookup(t.root, keys[i], 6), i % 2 ? 0 : (uintptr_t)(i + 1));
	btree_destroy(&t, NULL);
	qsbr_free(q);
}

/* A root taken before a batch keeps showing the old contents after the batch; its nodes
 * are freed only after the reader's quiescent point. */
Test(btree, cow_snapshot_and_reclamation)
{
	struct qsbr *q = qsbr_new(1);
	struct btree t;
	struct model m = {0}, old = {0};
	uint8_t buf[64];
	int slot;

	btree_init(&t, q);
	for (int i = 0; i < 10000; i++) {
		size_t len = gen_key(buf, 100000);
		bool found;
		size_t pos = model_pos(&m, buf, len, &found);
		if (found)
			continue;
		uint8_t *k = malloc(len ? len : 1);
		memcpy(k, buf, len);
		btree_insert(&t, k, len, (void *)(uintptr_t)(i + 1), NULL);
		model_insert(&m, pos, k, len, (uintptr_t)(i + 1));
	}
	btree_seal(&t); /* "published" */
	qsbr_advance(q);
	cr_assert_eq(qsbr_pending(q), 0);

	slot = qsbr_reader_register(q);
	const struct btree_node *r0 = btree_root(&t);
	old.e = malloc(m.n * sizeof *m.e);
	memcpy(old.e, m.e, m.n * sizeof *m.e);
	old.n = old.cap = m.n;
	/* share key bytes with the old model: copy them, since deletes retire them */
	for (size_t i = 0; i < old.n; i++) {
		old.e[i].k = malloc(old.e[i].len ? old.e[i].len : 1);
		memcpy(old.e[i].k, m.e[i].k, old.e[i].len);
	}

	/* one batch: delete half, insert new ones, replace some values */
	for (size_t i = 0; i < m.n;) {
		if (rnd() % 2) {
			cr_assert_eq(btree_delete(&t, m.e[i].k, m.e[i].len, NULL), 1);
			qsbr_retire(q, m.e[i].k, free);
			memmove(&m.e[i], &m.e[i + 1], (m.n - i - 1) * sizeof *m.e);
			m.n--;
		} else {
			btree_insert(&t, m.e[i].k, m.e[i].len, (void *)(uintptr_t)7, NULL);
			m.e[i].v = 7;
			i++;
		}
	}
	cr_assert_eq(btree_check(t.root, t.count), 0);
	check_full(t.root, &m);
	btree_seal(&t);
	qsbr_advance(q); /* the reader has not passed a quiescent point: nothing freed */
	cr_assert_gt(qsbr_pending(q), 0);
	check_full(r0, &old);
	for (size_t i = 0; i < old.n; i += 7)
		cr_assert_eq((uintptr_t)btree_lookup(r0, old.e[i].k, old.e[i].len), old.e[i].v);

	qsbr_quiescent(q, slot); /* drops r0 */
	qsbr_advance(q);
	cr_assert_eq(qsbr_pending(q), 0);
	check_full(t.root, &m);
	qsbr_offline(q, slot);

	btree_destroy(&t, NULL);
	model_free(&m);
	model_free(&old);
	qsbr_free(q);
}
