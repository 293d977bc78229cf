/* See lease.h. Two hash tables (leases by id; attachments by lease id and key), each lease
 * on a list of its attachments, and a wheel of WHEEL_SLOTS slots of WHEEL_TICK_MS: a lease
 * is in the slot of its deadline's tick, modulo the wheel, so a tick scans only leases whose
 * deadline falls in it (or a whole number of turns later: those are skipped, cheaply). */
#include "core/lease.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <xxhash.h>

#include "storage/ckpt.h"
#include "core/log.h"

#define WHEEL_SLOTS 1024
#define WHEEL_TICK_MS 250

struct lease_key;

struct lease {
	int64_t id, ttl;
	uint64_t deadline_ms;
	struct lease *hnext;
	struct lease *wnext, **wprev; /* wheel slot; wprev NULL when not on the wheel */
	struct lease_key *keys;
	size_t nkeys;
};

struct lease_key {
	struct lease_key *hnext;
	struct lease_key *lnext, **lprev;
	int64_t id;
	size_t len;
	uint8_t key[];
};

struct lease_table {
	struct lease **lb;
	size_t lcap, n;
	struct lease_key **kb;
	size_t kcap, nk;
	struct lease *wheel[WHEEL_SLOTS];
	uint64_t tick; /* next tick to process */
	int64_t *due;  /* expired, not yet handed out */
	size_t ndue, capdue;
};

static void *lease_calloc(size_t n, size_t sz)
{
	void *p = calloc(n, sz);

	if (!p)
		log_fatal("lease: out of memory");
	return p;
}

struct lease_table *lease_table_new(uint64_t now_ms)
{
	struct lease_table *t = lease_calloc(1, sizeof *t);

	t->lcap = 64;
	t->lb = lease_calloc(t->lcap, sizeof *t->lb);
	t->kcap = 256;
	t->kb = lease_calloc(t->kcap, sizeof *t->kb);
	t->tick = now_ms / WHEEL_TICK_MS;
	return t;
}

static size_t lease_hash(int64_t id, size_t cap) { return (size_t)(XXH3_64bits(&id, sizeof id) & (cap - 1)); }

static size_t lease_key_hash(int64_t id, const uint8_t *k, size_t len, size_t cap)
{
	return (size_t)((XXH3_64bits_withSeed(k, len, (uint64_t)id)) & (cap - 1));
}

static struct lease *lease_find(const struct lease_table *t, int64_t id)
{
	for (struct lease *l = t->lb[lease_hash(id, t->lcap)]; l; l = l->hnext)
		if (l->id == id)
			return l;
	return NULL;
}

bool lease_exists(const struct lease_table *t, int64_t id) { return id != 0 && lease_find(t, id) != NULL; }

size_t lease_count(const struct lease_table *t) { return t->n; }

static void lease_wheel_remove(struct lease *l)
{
	if (!l->wprev)
		return;
	*l->wprev = l->wnext;
	if (l->wnext)
		l->wnext->wprev = l->wprev;
	l->wprev = NULL;
	l->wnext = NULL;
}

static void lease_wheel_add(struct lease_table *t, struct lease *l)
{
	uint64_t tick = l->deadline_ms / WHEEL_TICK_MS;
	struct lease **slot;

	if (tick < t->tick)
		tick = t->tick;
	slot = &t->wheel[tick % WHEEL_SLOTS];
	l->wnext = *slot;
	if (*slot)
		(*slot)->wprev = &l->wnext;
	*slot = l;
	l->wprev = slot;
}

int lease_grant(struct lease_table *t, int64_t id, int64_t ttl, uint64_t now_ms)
{
	if (lease_find(t, id))
		return -EEXIST;
	if (++t->n > t->lcap) {
		size_t ncap = t->lcap * 2;
		struct lease **nb = lease_calloc(ncap, sizeof *nb);
		for (size_t i = 0; i < t->lcap; i++)
			for (struct lease *l = t->lb[i], *n; l; l = n) {
				n = l->hnext;
				size_t b = lease_hash(l->id, ncap);
				l->hnext = nb[b];
				nb[b] = l;
			}
		free(t->lb);
		t->lb = nb;
		t->lcap = ncap;
	}
	struct lease *l = lease_calloc(1, sizeof *l);
	size_t b = lease_hash(id, t->lcap);
	l->id = id;
	l->ttl = ttl;
	l->deadline_ms = now_ms + (uint64_t)ttl * 1000;
	l->hnext = t->lb[b];
	t->lb[b] = l;
	lease_wheel_add(t, l);
	return 0;
}

int64_t lease_new_id(struct lease_table *t)
{
	int64_t id = 0;

	while (id <= 0 || lease_find(t, id)) {
		if (getrandom(&id, sizeof id, 0) != sizeof id)
			id = 0;
		id &= INT64_MAX;
	}
	return id;
}

static struct lease_key **lease_key_slot(struct lease_table *t, int64_t id, const uint8_t *k, size_t len)
{
	struct lease_key **pp = &t->kb[lease_key_hash(id, k, len, t->kcap)];

	for (; *pp; pp = &(*pp)->hnext)
		if ((*pp)->id == id && (*pp)->len == len && memcmp((*pp)->key, k, len) == 0)
			break;
	return pp;
}

void lease_attach(struct lease_table *t, int64_t id, const uint8_t *key, size_t len)
{
	struct lease *l = lease_find(t, id);
	struct lease_key **pp;

	if (!l || *(pp = lease_key_slot(t, id, key, len)))
		return;
	if (++t->nk > t->kcap) {
		size_t ncap = t->kcap * 2;
		struct lease_key **nb = lease_calloc(ncap, sizeof *nb);
		for (size_t i = 0; i < t->kcap; i++)
			for (struct lease_key *k = t->kb[i], *n; k; k = n) {
				n = k->hnext;
				size_t b = lease_key_hash(k->id, k->key, k->len, ncap);
				k->hnext = nb[b];
				nb[b] = k;
			}
		free(t->kb);
		t->kb = nb;
		t->kcap = ncap;
		pp = lease_key_slot(t, id, key, len);
	}
	struct lease_key *k = malloc(sizeof *k + len);
	if (!k)
		log_fatal("lease: out of memory");
	k->id = id;
	k->len = len;
	memcpy(k->key, key, len);
	k->hnext = NULL;
	*pp = k;
	k->lnext = l->keys;
	if (l->keys)
		l->keys->lprev = &k->lnext;
	l->keys = k;
	k->lprev = &l->keys;
	l->nkeys++;
}

static void lease_key_free(struct lease_table *t, struct lease *l, struct lease_key **pp)
{
	struct lease_key *k = *pp;

	*pp = k->hnext;
	*k->lprev = k->lnext;
	if (k->lnext)
		k->lnext->lprev = k->lprev;
	l->nkeys--;
	t->nk--;
	free(k);
}

void lease_detach(struct lease_table *t, int64_t id, const uint8_t *key, size_t len)
{
	struct lease *l = lease_find(t, id);
	struct lease_key **pp;

	if (l && *(pp = lease_key_slot(t, id, key, len)))
		lease_key_free(t, l, pp);
}

static int lease_key_cmp(const void *a, const void *b)
{
	const struct lease_key *x = *(struct lease_key *const *)a, *y = *(struct lease_key *const *)b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = n ? memcmp(x->key, y->key, n) : 0;

	return c ? c : (x->len > y->len) - (x->len < y->len);
}

void lease_keys(const struct lease_table *t, int64_t id, void (*fn)(void *arg, const uint8_t *key, size_t len),
		void *arg)
{
	struct lease *l = lease_find(t, id);
	struct lease_key **v;
	size_t n = 0;

	if (!l || !l->nkeys)
		return;
	v = malloc(l->nkeys * sizeof *v);
	if (!v)
		log_fatal("lease: out of memory");
	for (struct lease_key *k = l->keys; k; k = k->lnext)
		v[n++] = k;
	qsort(v, n, sizeof *v, lease_key_cmp);
	for (size_t i = 0; i < n; i++)
		fn(arg, v[i]->key, v[i]->len);
	free(v);
}

int lease_revoke(struct lease_table *t, int64_t id, void (*fn)(void *arg, const uint8_t *key, size_t len),
		 void *arg)
{
	struct lease **pp = &t->lb[lease_hash(id, t->lcap)];

	for (; *pp && (*pp)->id != id; pp = &(*pp)->hnext)
		;
	if (!*pp)
		return -ENOENT;
	struct lease *l = *pp;
	if (fn)
		lease_keys(t, id, fn, arg);
	while (l->keys)
		lease_key_free(t, l, lease_key_slot(t, id, l->keys->key, l->keys->len));
	*pp = l->hnext;
	lease_wheel_remove(l);
	t->n--;
	free(l);
	return 0;
}

int64_t lease_renew(struct lease_table *t, int64_t id, uint64_t now_ms)
{
	struct lease *l = lease_find(t, id);

	if (!l)
		return -1;
	lease_wheel_remove(l);
	l->deadline_ms = now_ms + (uint64_t)l->ttl * 1000;
	lease_wheel_add(t, l);
	return l->ttl;
}

int lease_ttl(const struct lease_table *t, int64_t id, uint64_t now_ms, int64_t *remaining, int64_t *granted)
{
	const struct lease *l = lease_find(t, id);

	if (!l)
		return -ENOENT;
	*granted = l->ttl;
	*remaining = l->deadline_ms > now_ms ? (int64_t)((l->deadline_ms - now_ms) / 1000) : 0;
	return 0;
}

void lease_each(const struct lease_table *t, void (*fn)(void *arg, int64_t id), void *arg)
{
	for (size_t i = 0; i < t->lcap; i++)
		for (struct lease *l = t->lb[i]; l; l = l->hnext)
			fn(arg, l->id);
}

size_t lease_export(const struct lease_table *t, struct ckpt_lease *out)
{
	size_t n = 0;

	for (size_t i = 0; i < t->lcap; i++)
		for (struct lease *l = t->lb[i]; l; l = l->hnext)
			out[n++] = (struct ckpt_lease){.id = l->id, .ttl = l->ttl};
	return n;
}

static void lease_due_push(struct lease_table *t, int64_t id)
{
	if (t->ndue == t->capdue) {
		t->capdue = t->capdue ? t->capdue * 2 : 16;
		t->due = realloc(t->due, t->capdue * sizeof *t->due);
		if (!t->due)
			log_fatal("lease: out of memory");
	}
	t->due[t->ndue++] = id;
}

static void lease_scan_slot(struct lease_table *t, uint64_t tick, uint64_t now_ms)
{
	struct lease *l = t->wheel[tick % WHEEL_SLOTS], *n;

	for (; l; l = n) {
		n = l->wnext;
		if (l->deadline_ms <= now_ms) {
			lease_wheel_remove(l);
			lease_due_push(t, l->id);
		}
	}
}

int64_t lease_next_expired(struct lease_table *t, uint64_t now_ms)
{
	uint64_t target = now_ms / WHEEL_TICK_MS;

	if (target > t->tick + WHEEL_SLOTS)
		t->tick = target - WHEEL_SLOTS; /* one full turn sees every slot */
	for (; t->tick < target; t->tick++)
		lease_scan_slot(t, t->tick, now_ms);
	lease_scan_slot(t, target, now_ms);
	while (t->ndue) {
		int64_t id = t->due[--t->ndue];
		if (lease_find(t, id))
			return id;
	}
	return 0;
}

int64_t lease_wait_ms(const struct lease_table *t, uint64_t now_ms)
{
	if (!t->n)
		return -1;
	return WHEEL_TICK_MS - (int64_t)(now_ms % WHEEL_TICK_MS);
}

void lease_table_free(struct lease_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->lcap; i++)
		for (struct lease *l = t->lb[i], *n; l; l = n) {
			n = l->hnext;
			for (struct lease_key *k = l->keys, *kn; k; k = kn) {
				kn = k->lnext;
				free(k);
			}
			free(l);
		}
	free(t->lb);
	free(t->kb);
	free(t->due);
	free(t);
}
