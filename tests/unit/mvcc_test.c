/* MVCC tests: etcd's revision semantics case by case, a randomized differential check
 * against a model that keeps every (key, rev, value, tombstone) record, and one writer
 * publishing batches while reader threads check invariants on the published snapshots. */
#include "storage/mvcc.h"
#include "core/qsbr.h"
#include "storage/btree.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S(x) (const uint8_t *)(x), strlen(x)
#define NUL (const uint8_t *)"", 1 /* etcd's "\0" end: the string literal's own terminator */

static struct qsbr *q;
static struct mvcc_store *s;

static void setup(void)
{
	q = qsbr_new(4);
	s = mvcc_store_new(q);
}

static void teardown(void)
{
	mvcc_store_free(s);
	qsbr_free(q);
}

static int64_t put1(const char *k, const char *v)
{
	mvcc_txn_begin(s);
	mvcc_put(s, S(k), S(v), 0, NULL);
	return mvcc_txn_end(s);
}

static int64_t del1(const char *k)
{
	mvcc_txn_begin(s);
	mvcc_delete_range(s, S(k), NULL, 0, NULL, NULL);
	return mvcc_txn_end(s);
}

static int get_at(const char *k, int64_t rev, struct mvcc_kv *kv)
{
	struct mvcc_view v;
	mvcc_view_working(s, &v);
	return mvcc_get(&v, S(k), rev, kv);
}

static bool kv_is(const struct mvcc_kv *kv, const char *value, int64_t create, int64_t mod, int64_t version)
{
	return kv->value_len == strlen(value) && memcmp(kv->value, value, kv->value_len) == 0 &&
	       kv->create_revision == create && kv->mod_revision == mod && kv->version == version;
}

struct collect {
	char out[1024];
	int n;
};

static int collect_fn(void *arg, const struct mvcc_kv *kv)
{
	struct collect *c = arg;
	size_t len = strlen(c->out);
	snprintf(c->out + len, sizeof c->out - len, "%s%.*s", c->n++ ? "," : "", (int)kv->key_len, (const char *)kv->key);
	return 0;
}

static const char *range_str(const uint8_t *k, size_t kl, const uint8_t *e, size_t el, int64_t rev, bool desc, int *rc)
{
	static struct collect c;
	struct mvcc_view v;

	memset(&c, 0, sizeof c);
	mvcc_view_working(s, &v);
	*rc = mvcc_range(&v, k, kl, e, el, rev, desc, collect_fn, &c);
	return c.out;
}

TestSuite(mvcc, .init = setup, .fini = teardown);

Test(mvcc, revisions_start_at_one)
{
	struct mvcc_view v;
	struct mvcc_kv kv;

	cr_assert_eq(mvcc_rev(s), 1);
	cr_assert_eq(mvcc_compact_rev(s), -1, "etcd's compacted revision starts at -1");
	mvcc_view_published(s, &v);
	cr_assert_eq(v.rev, 1);
	cr_assert_eq(v.compact_rev, -1);
	cr_assert_eq(mvcc_get(&v, S("a"), 0, &kv), 0);
	cr_assert_eq(mvcc_get(&v, S("a"), 2, &kv), -MVCC_EFUTURE);
	cr_assert_eq(put1("a", "1"), 2);
	cr_assert_eq(mvcc_keys_live(s), 1);
	cr_assert_eq(mvcc_versions_total(s), 1);
}

Test(mvcc, put_get_delete_recreate)
{
	struct mvcc_kv kv, prev;

	cr_assert_eq(put1("foo", "a"), 2);
	cr_assert_eq(get_at("foo", 0, &kv), 1);
	cr_assert(kv_is(&kv, "a", 2, 2, 1));
	cr_assert_eq(kv.lease, 0);

	mvcc_txn_begin(s);
	cr_assert_eq(mvcc_put(s, S("foo"), S("b"), 7, &prev), 1);
	cr_assert(kv_is(&prev, "a", 2, 2, 1));
	cr_assert_eq(mvcc_txn_end(s), 3);
	cr_assert_eq(get_at("foo", 0, &kv), 1);
	cr_assert(kv_is(&kv, "b", 2, 3, 2));
	cr_assert_eq(kv.lease, 7);

	cr_assert_eq(del1("foo"), 4);
	cr_assert_eq(get_at("foo", 0, &kv), 0);
	cr_assert_eq(get_at("foo", 3, &kv), 1);
	cr_assert(kv_is(&kv, "b", 2, 3, 2));
	cr_assert_eq(mvcc_keys_live(s), 0);

	mvcc_txn_begin(s);
	cr_assert_eq(mvcc_put(s, S("foo"), S("c"), 0, &prev), 0);
	cr_assert_eq(mvcc_txn_end(s), 5);
	cr_assert_eq(get_at("foo", 0, &kv), 1);
	cr_assert(kv_is(&kv, "c", 5, 5, 1));
	cr_assert_eq(get_at("foo", 4, &kv), 0);
	cr_assert_eq(get_at("foo", 2, &kv), 1);
	cr_assert(kv_is(&kv, "a", 2, 2, 1));
	cr_assert_eq(get_at("foo", 1, &kv), 0);
	cr_assert_eq(get_at("foo", 6, &kv), -MVCC_EFUTURE);
	cr_assert_eq(get_at("foo", -1, &kv), 1); /* rev <= 0: the view's */
	cr_assert_eq(mvcc_keys_live(s), 1);
	cr_assert_eq(mvcc_versions_total(s), 4);
	/* empty value and the implicit single-operation transaction */
	mvcc_put(s, S("e"), (const uint8_t *)"", 0, 0, NULL);
	cr_assert_eq(mvcc_rev(s), 6);
	cr_assert_eq(get_at("e", 0, &kv), 1);
	cr_assert(kv_is(&kv, "", 6, 6, 1));
}

Test(mvcc, txn_shares_one_revision_and_sees_itself)
{
	struct mvcc_view v;
	struct mvcc_kv kv;
	int rc;

	put1("c", "0");
	mvcc_txn_begin(s);
	mvcc_view_working(s, &v);
	cr_assert_eq(v.rev, 2); /* nothing changed yet */
	mvcc_put(s, S("a"), S("1"), 0, NULL);
	mvcc_view_working(s, &v);
	cr_assert_eq(v.rev, 3);
	cr_assert_eq(mvcc_get(&v, S("a"), 0, &kv), 1);
	cr_assert(kv_is(&kv, "1", 3, 3, 1));
	mvcc_put(s, S("a"), S("2"), 0, NULL); /* same key twice: the later wins */
	mvcc_put(s, S("b"), S("1"), 0, NULL);
	cr_assert_eq(mvcc_delete_range(s, S("c"), NULL, 0, NULL, NULL), 1);
	cr_assert_eq(mvcc_delete_range(s, S("zz"), NULL, 0, NULL, NULL), 0);
	cr_assert_str_eq(range_str(NUL, NUL, 0, false, &rc), "a,b");
	cr_assert_eq(mvcc_txn_end(s), 3);
	cr_assert_eq(get_at("a", 0, &kv), 1);
	cr_assert(kv_is(&kv, "2", 3, 3, 2));
	cr_assert_eq(get_at("b", 3, &kv), 1);
	cr_assert(kv_is(&kv, "1", 3, 3, 1));
	cr_assert_eq(get_at("c", 3, &kv), 0);
	cr_assert_eq(get_at("c", 2, &kv), 1);
	/* the published view did not move */
	mvcc_view_published(s, &v);
	cr_assert_eq(v.rev, 1);
	cr_assert_eq(mvcc_get(&v, S("a"), 0, &kv), 0);
	mvcc_publish(s);
	mvcc_view_published(s, &v);
	cr_assert_eq(v.rev, 3);
	cr_assert_eq(mvcc_get(&v, S("a"), 0, &kv), 1);
}

Test(mvcc, deleting_nothing_changes_nothing)
{
	put1("a", "1");
	cr_assert_eq(del1("b"), 2);
	cr_assert_eq(del1("a"), 3);
	cr_assert_eq(del1("a"), 3);
	mvcc_txn_begin(s);
	cr_assert_eq(mvcc_delete_range(s, S("a"), NUL, NULL, NULL), 0);
	cr_assert_eq(mvcc_txn_end(s), 3);
	mvcc_txn_begin(s);
	cr_assert_eq(mvcc_txn_end(s), 3);
	cr_assert_eq(mvcc_versions_total(s), 2);
}

static int stop_after_two(void *arg, const struct mvcc_kv *kv)
{
	int *n = arg;
	return ++*n == 2 ? 42 : 0;
}

Test(mvcc, range_forms)
{
	int rc;
	static const char *keys[] = {"a", "b", "c", "foo", "foo1", "foo2", "fop", "z", "\xff"};

	for (unsigned i = 0; i < sizeof keys / sizeof keys[0]; i++)
		put1(keys[i], "v");
	del1("b");
	cr_assert_str_eq(range_str(S("foo"), NULL, 0, 0, false, &rc), "foo");
	cr_assert_str_eq(range_str(S("fo"), NULL, 0, 0, false, &rc), "");
	cr_assert_str_eq(range_str(S("b"), NULL, 0, 0, false, &rc), "");
	cr_assert_str_eq(range_str(S("foo"), S("fop"), 0, false, &rc), "foo,foo1,foo2"); /* prefix foo */
	cr_assert_str_eq(range_str(S("foo"), S("fop"), 0, true, &rc), "foo2,foo1,foo");
	cr_assert_str_eq(range_str(S("a"), S("c"), 0, false, &rc), "a");
	cr_assert_str_eq(range_str(S("a"), S("c\x01"), 0, true, &rc), "c,a");
	cr_assert_str_eq(range_str(S("foo"), NUL, 0, false, &rc), "foo,foo1,foo2,fop,z,\xff");
	cr_assert_str_eq(range_str(S("foo1"), NUL, 0, true, &rc), "\xff,z,fop,foo2,foo1");
	cr_assert_str_eq(range_str(NUL, NUL, 0, false, &rc), "a,c,foo,foo1,foo2,fop,z,\xff");
	cr_assert_str_eq(range_str(NUL, NUL, 0, true, &rc), "\xff,z,fop,foo2,foo1,foo,c,a");
	cr_assert_str_eq(range_str(S("foo"), S("foo"), 0, false, &rc), ""); /* end <= key: empty */
	cr_assert_str_eq(range_str(S("z"), S("a"), 0, false, &rc), "");
	cr_assert_str_eq(range_str(S("z"), S("a"), 0, true, &rc), "");
	cr_assert_str_eq(range_str(S("zz"), NUL, 0, false, &rc), "\xff");
	cr_assert_str_eq(range_str(S("\xff\xff"), NUL, 0, false, &rc), "");
	cr_assert_str_eq(range_str(S("\xff\xff"), NUL, 0, true, &rc), "");
	/* at an old revision: b was live at rev 3, foo not yet */
	cr_assert_str_eq(range_str(NUL, NUL, 3, false, &rc), "a,b");
	cr_assert_eq(rc, 0);
	range_str(NUL, NUL, 99, false, &rc);
	cr_assert_eq(rc, -MVCC_EFUTURE);
	/* the callback stops the walk and its result comes back */
	struct mvcc_view v;
	int n = 0;
	mvcc_view_working(s, &v);
	cr_assert_eq(mvcc_range(&v, NUL, NUL, 0, false, stop_after_two, &n), 42);
	cr_assert_eq(n, 2);
}

Test(mvcc, compaction)
{
	struct mvcc_kv kv;
	struct mvcc_view v;
	int rc;

	put1("k", "1");  /* 2 */
	put1("k", "2");  /* 3 */
	put1("d", "x");  /* 4 */
	put1("k", "3");  /* 5 */
	del1("d");       /* 6 */
	put1("e", "x");  /* 7 */
	del1("e");       /* 8 */
	put1("k", "4");  /* 9 */
	cr_assert_eq(mvcc_versions_total(s), 8);
	cr_assert_eq(mvcc_compact(s, 10), -MVCC_EFUTURE);
	cr_assert_eq(mvcc_compact(s, 0), 0, "a first compaction at 0 succeeds, as etcd's");
	cr_assert_eq(mvcc_compact(s, 0), -MVCC_ECOMPACTED);
	cr_assert_eq(mvcc_compact(s, 7), 0);
	cr_assert_eq(mvcc_compact_rev(s), 7);
	cr_assert_eq(mvcc_compact(s, 7), -MVCC_ECOMPACTED);
	cr_assert_eq(mvcc_compact(s, 6), -MVCC_ECOMPACTED);
	/* k keeps 3@5 and 4@9; d's tombstone@6 and history go (key removed); e keeps put@7
	 * (newest <= 7) and its tombstone@8 */
	cr_assert_eq(mvcc_versions_total(s), 4);
	cr_assert_eq(mvcc_keys_live(s), 1);
	cr_assert_eq(get_at("k", 6, &kv), -MVCC_ECOMPACTED);
	cr_assert_eq(get_at("k", 7, &kv), 1);
	cr_assert(kv_is(&kv, "3", 2, 5, 3));
	cr_assert_eq(get_at("k", 9, &kv), 1);
	cr_assert(kv_is(&kv, "4", 2, 9, 4));
	cr_assert_eq(get_at("d", 7, &kv), 0);
	cr_assert_eq(get_at("e", 7, &kv), 1);
	cr_assert_eq(get_at("e", 8, &kv), 0);
	cr_assert_str_eq(range_str(NUL, NUL, 7, false, &rc), "e,k");
	cr_assert_eq(rc, 0);
	range_str(NUL, NUL, 5, false, &rc);
	cr_assert_eq(rc, -MVCC_ECOMPACTED);
	/* the published view learns the compaction at publish */
	mvcc_view_published(s, &v);
	cr_assert_eq(v.compact_rev, -1);
	mvcc_publish(s);
	mvcc_view_published(s, &v);
	cr_assert_eq(v.compact_rev, 7);
	cr_assert_eq(v.rev, 9);
	cr_assert_eq(mvcc_compact(s, 9), 0);
	cr_assert_eq(mvcc_versions_total(s), 1); /* e's tombstone@8 is the newest: key removed */
	cr_assert_eq(get_at("k", 9, &kv), 1);
	cr_assert(kv_is(&kv, "4", 2, 9, 4));
	cr_assert_str_eq(range_str(NUL, NUL, 0, false, &rc), "k");
	/* recreate a compacted-away key: a new generation */
	cr_assert_eq(put1("d", "y"), 10);
	cr_assert_eq(get_at("d", 0, &kv), 1);
	cr_assert(kv_is(&kv, "y", 10, 10, 1));
	mvcc_publish(s);
	mvcc_publish(s);
	cr_assert_eq(qsbr_pending(q), 0);
}

/* ---- randomized differential check ---- */

#define NKEYS 600 /* enough for a tree of several levels at the default fan-out */

struct rec {
	int64_t rev, create, version;
	uint64_t seq; /* global order in which changes were made */
	bool tomb;
	char value[32];
};

struct mkey {
	struct rec *r;
	size_t n, cap;
};

static char key_str[NKEYS][32];
static size_t key_len_[NKEYS];
static int key_sorted[NKEYS];
static struct mkey model[NKEYS];

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int cmp_keyidx(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return btree_key_cmp((const uint8_t *)key_str[x], key_len_[x], (const uint8_t *)key_str[y], key_len_[y]);
}

static void keys_init(void)
{
	for (int i = 0; i < NKEYS; i++) {
		switch (i % 4) {
		case 0: snprintf(key_str[i], 32, "/registry/pods/ns/p%d", i); break;
		case 1: snprintf(key_str[i], 32, "a%d", i); break;
		case 2: key_str[i][0] = (char)((i * 5 + 1) % 255 + 1); snprintf(key_str[i] + 1, 31, "%d", i); break;
		default: snprintf(key_str[i], 32, "/registry/pods/ns/p%d/x", i - 3); break;
		}
		key_len_[i] = strlen(key_str[i]);
		key_sorted[i] = i;
	}
	qsort(key_sorted, NKEYS, sizeof key_sorted[0], cmp_keyidx);
}

static const struct rec *model_at(int k, int64_t rev)
{
	const struct rec *best = NULL;
	for (size_t i = 0; i < model[k].n; i++)
		if (model[k].r[i].rev <= rev)
			best = &model[k].r[i];
	return best && !best->tomb ? best : NULL;
}

static void model_add(int k, struct rec r)
{
	struct mkey *m = &model[k];
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 16;
		m->r = realloc(m->r, m->cap * sizeof *m->r);
	}
	static uint64_t seq;
	r.seq = seq++;
	m->r[m->n++] = r;
}

static const struct rec *model_head(int k) { return model[k].n ? &model[k].r[model[k].n - 1] : NULL; }

/* Expected versions after compaction at c: per key, those newer than c plus the newest
 * <= c unless it is a tombstone. */
static uint64_t model_versions(int64_t c)
{
	uint64_t n = 0;
	for (int k = 0; k < NKEYS; k++) {
		const struct rec *best = NULL;
		for (size_t i = 0; i < model[k].n; i++) {
			if (model[k].r[i].rev > c)
				n++;
			else
				best = &model[k].r[i];
		}
		if (best && !best->tomb)
			n++;
	}
	return n;
}

static bool in_range(int k, const uint8_t *key, size_t kl, const uint8_t *end, size_t el)
{
	const uint8_t *p = (const uint8_t *)key_str[k];
	size_t l = key_len_[k];
	if (el == 0)
		return btree_key_cmp(p, l, key, kl) == 0;
	if (btree_key_cmp(p, l, key, kl) < 0)
		return false;
	if (el == 1 && end[0] == 0)
		return true;
	return btree_key_cmp(p, l, end, el) < 0;
}

struct diff_ctx {
	int expect[NKEYS];
	int n, pos;
	int64_t rev;
	bool fail;
};

static int diff_fn(void *arg, const struct mvcc_kv *kv)
{
	struct diff_ctx *c = arg;
	if (c->pos >= c->n)
		return c->fail = true, 1;
	int k = c->expect[c->pos++];
	const struct rec *r = model_at(k, c->rev);
	if (kv->key_len != key_len_[k] || memcmp(kv->key, key_str[k], kv->key_len) != 0 || !r ||
	    !kv_is(kv, r->value, r->create, r->rev, r->version))
		return c->fail = true, 1;
	return 0;
}

static void rand_bound(uint8_t *buf, size_t *len)
{
	unsigned r = (unsigned)(rnd() % 10);
	if (r < 6) {
		int k = (int)(rnd() % NKEYS);
		memcpy(buf, key_str[k], key_len_[k]);
		*len = key_len_[k];
		if (r == 5)
			buf[(*len)++] = (uint8_t)(rnd() % 3); /* just after a key */
	} else if (r < 8) {
		*len = 1 + rnd() % 3;
		for (size_t i = 0; i < *len; i++)
			buf[i] = (uint8_t)rnd();
	} else {
		memcpy(buf, "/registry/pods/ns/p", 19);
		*len = 19;
	}
}

static void check_read(const struct mvcc_view *v, int64_t rev)
{
	uint8_t kb[40], eb[40];
	size_t kl, el;
	struct diff_ctx c = {.rev = rev ? rev : v->rev};
	unsigned form = (unsigned)(rnd() % 4);
	bool desc = rnd() % 2;
	int rc;

	rand_bound(kb, &kl);
	rand_bound(eb, &el);
	if (form == 0)
		el = 0;
	else if (form == 1)
		eb[0] = 0, el = 1;
	else if (form == 2)
		kb[0] = 0, kl = 1, eb[0] = 0, el = 1;
	for (int i = 0; i < NKEYS; i++) {
		int k = key_sorted[desc ? NKEYS - 1 - i : i];
		if (in_range(k, kb, kl, eb, el) && model_at(k, c.rev))
			c.expect[c.n++] = k;
	}
	rc = mvcc_range(v, kb, kl, eb, el, rev, desc, diff_fn, &c);
	cr_assert_eq(rc, 0, "range rc %d", rc);
	cr_assert(!c.fail && c.pos == c.n, "range differs at rev %lld", (long long)c.rev);

	int k = (int)(rnd() % NKEYS);
	struct mvcc_kv kv;
	const struct rec *r = model_at(k, c.rev);
	rc = mvcc_get(v, (const uint8_t *)key_str[k], key_len_[k], rev, &kv);
	cr_assert_eq(rc, r ? 1 : 0);
	if (r)
		cr_assert(kv_is(&kv, r->value, r->create, r->rev, r->version));
}

/* History: every change in [from, view rev] to keys of a range, by revision then key
 * (then the order a transaction made them), with the previous live version when history
 * still has it. */
struct hexp {
	int k;
	size_t i;
};

static int hexp_cmp(const void *a, const void *b)
{
	const struct hexp *x = a, *y = b;
	int64_t rx = model[x->k].r[x->i].rev, ry = model[y->k].r[y->i].rev;
	uint64_t sx = model[x->k].r[x->i].seq, sy = model[y->k].r[y->i].seq;
	if (rx != ry)
		return rx < ry ? -1 : 1;
	return sx < sy ? -1 : sx > sy; /* within a revision: the order the txn made them */
}

struct hist_ctx {
	struct hexp *e;
	size_t n, pos;
	int64_t compact;
	bool fail;
};

/* Whether compaction at c kept record i of key k. */
static bool model_kept(int k, size_t i, int64_t c)
{
	const struct mkey *m = &model[k];
	size_t j = m->n; /* newest record <= c */
	for (size_t x = 0; x < m->n; x++)
		if (m->r[x].rev <= c)
			j = x;
	if (j == m->n || i > j)
		return true;
	return i == j && !m->r[j].tomb;
}

static int hist_fn(void *arg, const struct mvcc_event *ev)
{
	struct hist_ctx *c = arg;
	if (c->pos >= c->n)
		return c->fail = true, 1;
	const struct hexp *x = &c->e[c->pos++];
	const struct rec *r = &model[x->k].r[x->i];
	if (ev->kv.key_len != key_len_[x->k] || memcmp(ev->kv.key, key_str[x->k], ev->kv.key_len) != 0 ||
	    ev->type != (r->tomb ? 1 : 0) || ev->kv.mod_revision != r->rev ||
	    (!r->tomb && !kv_is(&ev->kv, r->value, r->create, r->rev, r->version))) {
		fprintf(stderr, "event %zu: got %.*s type %d rev %lld, want %s type %d rev %lld (%zu/%zu)\n", c->pos - 1,
			(int)ev->kv.key_len, (const char *)ev->kv.key, ev->type, (long long)ev->kv.mod_revision,
			key_str[x->k], r->tomb, (long long)r->rev, x->i, model[x->k].n);
		return c->fail = true, 1;
	}
	const struct rec *p = x->i ? &model[x->k].r[x->i - 1] : NULL;
	bool want_prev = p && !p->tomb && model_kept(x->k, x->i - 1, c->compact);
	if (ev->has_prev != want_prev || (want_prev && !kv_is(&ev->prev, p->value, p->create, p->rev, p->version))) {
		fprintf(stderr, "prev: has %d want %d (ev rev %lld, prev rev %lld tomb %d, compact %lld)\n", ev->has_prev,
			want_prev, (long long)r->rev, p ? (long long)p->rev : -1LL, p ? p->tomb : -1, (long long)c->compact);
		return c->fail = true, 1;
	}
	return 0;
}

static uint64_t hist_checks, hist_events;

static void check_history(void)
{
	struct mvcc_view v;
	uint8_t kb[40], eb[40];
	size_t kl, el;
	struct hist_ctx c = {.compact = mvcc_compact_rev(s)};
	size_t cap = 0;
	int rc;

	mvcc_view_working(s, &v);
	int64_t lo = v.compact_rev > 1 ? v.compact_rev : 1;
	int64_t from = v.rev - (int64_t)(rnd() % 60);
	if (from < lo)
		from = lo;
	rand_bound(kb, &kl);
	rand_bound(eb, &el);
	switch (rnd() % 3) {
	case 0: el = 0; break;
	case 1: eb[0] = 0, el = 1; break;
	}
	for (int k = 0; k < NKEYS; k++) {
		if (!in_range(k, kb, kl, eb, el))
			continue;
		for (size_t i = 0; i < model[k].n; i++) {
			if (model[k].r[i].rev < from || model[k].r[i].rev > v.rev || !model_kept(k, i, c.compact))
				continue; /* as etcd: a tombstone at the compacted revision is history gone */
			if (c.n == cap) {
				cap = cap ? 2 * cap : 64;
				c.e = realloc(c.e, cap * sizeof *c.e);
			}
			c.e[c.n++] = (struct hexp){k, i};
		}
	}
	if (c.n > 1)
		qsort(c.e, c.n, sizeof *c.e, hexp_cmp);
	rc = mvcc_history(&v, kb, kl, eb, el, from, hist_fn, &c);
	cr_assert_eq(rc, 0, "history rc %d", rc);
	cr_assert(!c.fail && c.pos == c.n, "history differs from %lld (%zu of %zu)", (long long)from, c.pos, c.n);
	hist_checks++;
	hist_events += c.n;
	if (v.compact_rev > 1)
		cr_assert_eq(mvcc_history(&v, kb, kl, eb, el, v.compact_rev - 1, hist_fn, &c), -MVCC_ECOMPACTED);
	free(c.e);
}

Test(mvcc, bytes_in_use_grow_with_writes_and_return_to_zero)
{
	static char big[4096];
	uint64_t one, two;

	memset(big, 'v', sizeof big - 1);
	cr_assert_eq(mvcc_bytes_in_use(s), 0);
	put1("a", big);
	one = mvcc_bytes_in_use(s);
	cr_assert_gt(one, sizeof big - 1, "the value is counted");
	put1("a", big);
	two = mvcc_bytes_in_use(s);
	cr_assert_gt(two - one, sizeof big - 1, "a second version is counted");
	cr_assert_lt(two - one, one, "but not the key a second time");
	mvcc_compact(s, mvcc_rev(s));
	cr_assert_eq(mvcc_bytes_in_use(s), one, "compaction gives the old version back");
	del1("a");
	mvcc_compact(s, mvcc_rev(s));
	cr_assert_eq(mvcc_bytes_in_use(s), 0, "and the deleted key's bytes, tombstone and all");
}

Test(mvcc, randomized_vs_model)
{
	int64_t pub_rev = 1, pub_compact = -1;
	uint64_t live_max = 0;

	keys_init();
	for (int step = 0; step < 30000; step++) {
		unsigned op = (unsigned)(rnd() % 100);
		if (op < 60) { /* a transaction of 1..4 operations */
			int64_t trev = mvcc_rev(s) + 1;
			bool changed = false;
			int nops = 1 + (int)(rnd() % 4);
			mvcc_txn_begin(s);
			for (int i = 0; i < nops; i++) {
				int k = (int)(rnd() % NKEYS);
				const struct rec *h = model_head(k);
				bool live = h && !h->tomb;
				if (rnd() % 5) {
					struct rec r = {.rev = trev, .tomb = false};
					struct mvcc_kv prev;
					snprintf(r.value, sizeof r.value, "v%d.%d", step, i);
					r.create = live ? h->create : trev;
					r.version = live ? h->version + 1 : 1;
					int rc = mvcc_put(s, (const uint8_t *)key_str[k], key_len_[k], S(r.value), 0, &prev);
					cr_assert_eq(rc, live ? 1 : 0);
					if (live)
						cr_assert(kv_is(&prev, h->value, h->create, h->rev, h->version));
					model_add(k, r);
					changed = true;
				} else {
					uint8_t kb[40], eb[40];
					size_t kl, el;
					int64_t expect = 0, got;
					rand_bound(kb, &kl);
					rand_bound(eb, &el);
					if (rnd() % 8)
						memcpy(kb, key_str[k], key_len_[k]), kl = key_len_[k], el = 0;
					int hit[NKEYS], nhit = 0;
					for (int j = 0; j < NKEYS; j++) {
						const struct rec *hj = model_head(j);
						if (in_range(j, kb, kl, eb, el) && hj && !hj->tomb)
							hit[nhit++] = j;
					}
					/* a range delete goes in key order: so do its places in the revision */
					qsort(hit, (size_t)nhit, sizeof *hit, cmp_keyidx);
					for (int h = 0; h < nhit; h++) {
						model_add(hit[h], (struct rec){.rev = trev, .tomb = true});
						expect++;
					}
					got = mvcc_delete_range(s, kb, kl, eb, el, NULL, NULL);
					cr_assert_eq(got, expect);
					changed |= expect > 0;
				}
			}
			if (rnd() % 4 == 0) { /* read inside the transaction */
				struct mvcc_view v;
				mvcc_view_working(s, &v);
				cr_assert_eq(v.rev, changed ? trev : trev - 1);
				check_read(&v, 0);
			}
			cr_assert_eq(mvcc_txn_end(s), changed ? trev : trev - 1);
		} else if (op < 63) {
			int64_t c = mvcc_compact_rev(s) + 1 + (int64_t)(rnd() % (uint64_t)(mvcc_rev(s) - mvcc_compact_rev(s) + 3));
			int rc = mvcc_compact(s, c);
			cr_assert_eq(rc, c > mvcc_rev(s) ? -MVCC_EFUTURE : 0);
			if (!rc)
				cr_assert_eq(mvcc_versions_total(s), model_versions(c));
			cr_assert_eq(mvcc_compact(s, mvcc_compact_rev(s)), mvcc_compact_rev(s) ? -MVCC_ECOMPACTED : 0);
		} else if (op < 70) {
			mvcc_publish(s);
			pub_rev = mvcc_rev(s);
			pub_compact = mvcc_compact_rev(s);
		} else {
			struct mvcc_view v;
			int64_t lo = mvcc_compact_rev(s) > 1 ? mvcc_compact_rev(s) : 1;
			if (rnd() % 2) {
				mvcc_view_published(s, &v);
				cr_assert_eq(v.rev, pub_rev);
				cr_assert_eq(v.compact_rev, pub_compact);
			} else {
				mvcc_view_working(s, &v);
			}
			if (v.rev < lo)
				continue;
			int64_t rev = rnd() % 4 == 0 ? 0 : lo + (int64_t)(rnd() % (uint64_t)(v.rev - lo + 1));
			check_read(&v, rev);
			if (rnd() % 4 == 0)
				check_history();
			if (v.compact_rev > 1) {
				struct mvcc_kv kv;
				cr_assert_eq(mvcc_get(&v, S("x"), v.compact_rev - 1, &kv), -MVCC_ECOMPACTED);
			}
			struct mvcc_kv kv;
			cr_assert_eq(mvcc_get(&v, S("x"), v.rev + 1, &kv), -MVCC_EFUTURE);
		}
		uint64_t live = 0;
		for (int k = 0; k < NKEYS; k++)
			live += model_head(k) && !model_head(k)->tomb;
		cr_assert_eq(mvcc_keys_live(s), live);
		live_max = live > live_max ? live : live_max;
	}
	cr_log_info("randomized: revision %lld, up to %llu live keys, %llu histories with %llu events", (long long)mvcc_rev(s),
		    (unsigned long long)live_max, (unsigned long long)hist_checks, (unsigned long long)hist_events);
	for (int k = 0; k < NKEYS; k++)
		free(model[k].r);
}

/* ---- one writer, two readers ---- */

#define CONC_KEYS 2000

static _Atomic bool conc_stop;
static _Atomic int64_t conc_compacted; /* stored by the writer before each compaction */

/* A reader whose view is older than a compaction that ran meanwhile may get ECOMPACTED. */
static bool stale(int64_t rev) { return rev < atomic_load(&conc_compacted); }
static _Atomic uint64_t conc_reads, conc_stale;

struct reader_arg {
	int slot;
	bool fail;
	char why[128];
};

struct conc_check {
	int64_t rev;
	int64_t last_mod;
	char last_key[64];
	size_t last_len;
	uint64_t n;
	bool bad;
};

static int conc_fn(void *arg, const struct mvcc_kv *kv)
{
	struct conc_check *c = arg;
	char buf[32];
	long long v;

	/* every value names its own mod revision; keys ascend */
	if (kv->value_len >= sizeof buf || kv->mod_revision > c->rev || kv->create_revision > kv->mod_revision)
		return c->bad = true, 1;
	memcpy(buf, kv->value, kv->value_len);
	buf[kv->value_len] = 0;
	if (sscanf(buf, "%lld", &v) != 1 || v != kv->mod_revision)
		return c->bad = true, 1;
	if (c->n && btree_key_cmp((const uint8_t *)c->last_key, c->last_len, kv->key, kv->key_len) >= 0)
		return c->bad = true, 1;
	c->last_len = kv->key_len < sizeof c->last_key ? kv->key_len : sizeof c->last_key;
	memcpy(c->last_key, kv->key, c->last_len);
	c->n++;
	return 0;
}

struct conc_hist {
	int64_t next;
	bool bad;
};

/* counter's history: one put per revision, each naming its revision, prev the one before */
static int conc_hist_fn(void *arg, const struct mvcc_event *ev)
{
	struct conc_hist *h = arg;
	char buf[32];

	if (ev->type != 0 || ev->kv.mod_revision != h->next || ev->kv.value_len >= sizeof buf)
		return h->bad = true, 1;
	memcpy(buf, ev->kv.value, ev->kv.value_len);
	buf[ev->kv.value_len] = 0;
	if (atoll(buf) != h->next || (ev->has_prev && ev->prev.mod_revision != h->next - 1))
		return h->bad = true, 1;
	h->next++;
	return 0;
}

static void *reader_main(void *p)
{
	struct reader_arg *a = p;
	a->slot = qsbr_reader_register(q);
	uint64_t i = 0;

	while (!atomic_load(&conc_stop)) {
		struct mvcc_view v;
		struct mvcc_kv kv;
		int rc;

		qsbr_quiescent(q, a->slot);
		mvcc_view_published(s, &v);
		/* "counter" is written by every transaction: its value is the view's revision */
		rc = mvcc_get(&v, S("counter"), 0, &kv);
		if (rc == -MVCC_ECOMPACTED && stale(v.rev)) {
			atomic_fetch_add(&conc_stale, 1);
			goto next;
		}
		if (v.rev > 1 && (rc != 1 || kv.mod_revision != v.rev)) {
			snprintf(a->why, sizeof a->why, "counter rc %d mod %lld rev %lld", rc, (long long)kv.mod_revision,
				 (long long)v.rev);
			a->fail = true;
			break;
		}
		if (rc == 1) {
			char buf[32];
			memcpy(buf, kv.value, kv.value_len);
			buf[kv.value_len] = 0;
			if (atoll(buf) != v.rev) {
				snprintf(a->why, sizeof a->why, "counter value %s rev %lld", buf, (long long)v.rev);
				a->fail = true;
				break;
			}
		}
		/* an older revision: counter's value is that revision, unless compacted meanwhile */
		if (v.rev > v.compact_rev && v.compact_rev > 0) {
			int64_t r = v.compact_rev + (int64_t)(i % (uint64_t)(v.rev - v.compact_rev + 1));
			rc = mvcc_get(&v, S("counter"), r, &kv);
			if (rc == 1 && kv.mod_revision != r) {
				snprintf(a->why, sizeof a->why, "old counter mod %lld at %lld", (long long)kv.mod_revision,
					 (long long)r);
				a->fail = true;
				break;
			}
			if (rc != 1 && !(rc == -MVCC_ECOMPACTED && stale(r))) {
				snprintf(a->why, sizeof a->why, "old counter rc %d", rc);
				a->fail = true;
				break;
			}
		}
		/* a range: every key's value names its mod revision; ascending order */
		struct conc_check c = {.rev = v.rev};
		char k0[16];
		snprintf(k0, sizeof k0, "k%04u", (unsigned)(i * 7919 % CONC_KEYS));
		rc = mvcc_range(&v, S(k0), i % 8 == 0 ? (const uint8_t *)"" : (const uint8_t *)"k9", 1 + (i % 8 != 0),
				0, false, conc_fn, &c);
		if ((rc && !(rc == -MVCC_ECOMPACTED && stale(v.rev))) || c.bad) {
			snprintf(a->why, sizeof a->why, "range rc %d bad %d", rc, c.bad);
			a->fail = true;
			break;
		}
		/* history of the counter over the last few revisions */
		if (v.rev > 10) {
			struct conc_hist h = {.next = v.rev - 5 > v.compact_rev ? v.rev - 5 : v.compact_rev};
			int64_t from = h.next;
			rc = mvcc_history(&v, S("counter"), NULL, 0, from, conc_hist_fn, &h);
			if ((rc && !(rc == -MVCC_ECOMPACTED && stale(from))) || h.bad ||
			    (!rc && h.next != v.rev + 1)) {
				snprintf(a->why, sizeof a->why, "history rc %d bad %d next %lld rev %lld", rc, h.bad,
					 (long long)h.next, (long long)v.rev);
				a->fail = true;
				break;
			}
		}
	next:
		i++;
	}
	atomic_fetch_add(&conc_reads, i);
	qsbr_offline(q, a->slot);
	return NULL;
}

Test(mvcc, one_writer_two_readers, .timeout = 120)
{
	pthread_t th[2];
	struct reader_arg ra[2] = {0};
	uint64_t txns = 0;

	atomic_store(&conc_stop, false);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, reader_main, &ra[i]), 0);
	for (int batch = 0; batch < 3000; batch++) {
		int ntx = 1 + (int)(rnd() % 8);
		for (int t = 0; t < ntx; t++, txns++) {
			int64_t rev = mvcc_rev(s) + 1;
			char val[32], key[16];
			snprintf(val, sizeof val, "%lld", (long long)rev);
			mvcc_txn_begin(s);
			mvcc_put(s, S("counter"), S(val), 0, NULL);
			for (int j = 0; j < 4; j++) {
				snprintf(key, sizeof key, "k%04u", (unsigned)(rnd() % CONC_KEYS));
				if (rnd() % 3)
					mvcc_put(s, S(key), S(val), 0, NULL);
				else if (rnd() % 4)
					mvcc_delete_range(s, S(key), NULL, 0, NULL, NULL);
				else
					mvcc_delete_range(s, S(key), S("k9"), NULL, NULL); /* a wide delete */
			}
			cr_assert_eq(mvcc_txn_end(s), rev);
		}
		if (batch % 10 == 0 && mvcc_rev(s) > 40) {
			int64_t c = mvcc_rev(s) - 30 - (int64_t)(rnd() % 10);
			atomic_store(&conc_compacted, c);
			cr_assert_eq(mvcc_compact(s, c), 0);
		}
		mvcc_publish(s);
	}
	atomic_store(&conc_stop, true);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		cr_assert(!ra[i].fail, "reader %d: %s", i, ra[i].why);
	}
	cr_log_info("%llu txns, %llu reads (%llu on views a compaction overtook)", (unsigned long long)txns,
		    (unsigned long long)atomic_load(&conc_reads), (unsigned long long)atomic_load(&conc_stale));
	cr_assert_gt(atomic_load(&conc_reads), 0);
	mvcc_publish(s);
	cr_assert_eq(qsbr_pending(q), 0); /* readers are offline: everything retired is freed */
}
