/* See qsbr.h. Each reader slot sits on its own cache line; the writer keeps retired
 * objects in a ring-like vector in epoch order, so freeing stops at the first object that
 * is still too young. */
#include "core/qsbr.h"
#include "core/log.h"

#include <stdatomic.h>
#include <stdlib.h>

#define QSBR_OFFLINE UINT64_MAX

struct qsbr_slot {
	_Alignas(64) _Atomic uint64_t epoch;
};

struct qsbr_item {
	void *p;
	void (*free_fn)(void *);
	uint64_t epoch;
};

struct qsbr {
	_Alignas(64) _Atomic uint64_t epoch;
	_Atomic int nreaders;
	int readers_max;
	struct qsbr_slot *slots;
	struct qsbr_item *items;
	size_t head, count, cap; /* circular buffer */
};

struct qsbr *qsbr_new(int readers_max)
{
	struct qsbr *q = aligned_alloc(64, (sizeof *q + 63) & ~(size_t)63);

	if (!q)
		log_fatal("qsbr: out of memory");
	atomic_init(&q->epoch, 1);
	atomic_init(&q->nreaders, 0);
	q->readers_max = readers_max;
	q->slots = aligned_alloc(64, sizeof *q->slots * (size_t)(readers_max ? readers_max : 1));
	if (!q->slots)
		log_fatal("qsbr: out of memory");
	for (int i = 0; i < readers_max; i++)
		atomic_init(&q->slots[i].epoch, QSBR_OFFLINE);
	q->items = NULL;
	q->head = q->count = q->cap = 0;
	return q;
}

static void qsbr_free_upto(struct qsbr *q, uint64_t below)
{
	while (q->count) {
		struct qsbr_item *it = &q->items[q->head];
		if (it->epoch >= below)
			break;
		it->free_fn(it->p);
		q->head = (q->head + 1) % q->cap;
		q->count--;
	}
}

void qsbr_free(struct qsbr *q)
{
	if (!q)
		return;
	qsbr_free_upto(q, UINT64_MAX);
	free(q->items);
	free(q->slots);
	free(q);
}

int qsbr_reader_register(struct qsbr *q)
{
	int slot = atomic_fetch_add(&q->nreaders, 1);

	if (slot >= q->readers_max)
		log_fatal("qsbr: more than %d readers", q->readers_max);
	atomic_store(&q->slots[slot].epoch, atomic_load(&q->epoch));
	return slot;
}

void qsbr_quiescent(struct qsbr *q, int slot)
{
	atomic_store(&q->slots[slot].epoch, atomic_load(&q->epoch));
}

void qsbr_offline(struct qsbr *q, int slot) { atomic_store(&q->slots[slot].epoch, QSBR_OFFLINE); }

void qsbr_online(struct qsbr *q, int slot) { qsbr_quiescent(q, slot); }

void qsbr_retire(struct qsbr *q, void *p, void (*free_fn)(void *))
{
	if (q->count == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 1024;
		struct qsbr_item *n = malloc(ncap * sizeof *n);
		if (!n)
			log_fatal("qsbr: out of memory");
		for (size_t i = 0; i < q->count; i++)
			n[i] = q->items[(q->head + i) % q->cap];
		free(q->items);
		q->items = n;
		q->head = 0;
		q->cap = ncap;
	}
	q->items[(q->head + q->count) % q->cap] =
		(struct qsbr_item){.p = p, .free_fn = free_fn, .epoch = atomic_load_explicit(&q->epoch, memory_order_relaxed)};
	q->count++;
}

void qsbr_advance(struct qsbr *q)
{
	uint64_t min = atomic_fetch_add(&q->epoch, 1) + 1;
	int n = atomic_load(&q->nreaders);

	for (int i = 0; i < n && i < q->readers_max; i++) {
		uint64_t e = atomic_load(&q->slots[i].epoch);
		if (e < min)
			min = e;
	}
	qsbr_free_upto(q, min);
}

uint64_t qsbr_pending(const struct qsbr *q) { return q->count; }
