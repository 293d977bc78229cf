#include "core/autocompact.h"

#include <stdlib.h>

#define HOUR_MS (3600 * 1000LL)
#define REVISION_CHECK_MS (5 * 60 * 1000LL)

struct sample {
	uint64_t t_ms;
	int64_t rev;
};

struct autocompact {
	bool periodic;
	int64_t retention;
	uint64_t period_ms, step_ms; /* compact every period; sample the revision every step */
	uint64_t next_sample, next_compact;
	int64_t last; /* last revision handed out, never twice */
	size_t cap, head, n;
	struct sample ring[];
};

struct autocompact *autocompact_new(bool periodic, int64_t retention, uint64_t now_ms)
{
	uint64_t period, step;
	size_t cap = 1;

	if (retention <= 0)
		return NULL;
	if (periodic) {
		/* as etcd: history of `retention`, compacted every retention (at most every hour),
		 * the revision sampled ten times a period so the cut lands near retention ago */
		period = (uint64_t)retention < HOUR_MS ? (uint64_t)retention : HOUR_MS;
		step = period / 10 ? period / 10 : 1;
		cap = (size_t)((uint64_t)retention / step) + 2;
	} else {
		period = step = REVISION_CHECK_MS;
	}
	struct autocompact *a = calloc(1, sizeof *a + cap * sizeof a->ring[0]);
	if (!a)
		return NULL;
	a->periodic = periodic;
	a->retention = retention;
	a->period_ms = period;
	a->step_ms = step;
	a->next_sample = now_ms;
	a->next_compact = now_ms + period;
	a->cap = cap;
	return a;
}

void autocompact_free(struct autocompact *a) { free(a); }

/* The newest sample at least `retention` old: what was current that long ago. */
static int64_t autocompact_rev_retention_ago(const struct autocompact *a, uint64_t now_ms)
{
	int64_t best = 0;

	for (size_t i = 0; i < a->n; i++) {
		const struct sample *s = &a->ring[(a->head + a->cap - a->n + i) % a->cap];
		if (s->t_ms + (uint64_t)a->retention <= now_ms)
			best = s->rev;
	}
	return best;
}

int64_t autocompact_tick(struct autocompact *a, uint64_t now_ms, int64_t rev, int64_t compact_rev)
{
	int64_t target = 0;

	if (a->periodic && now_ms >= a->next_sample) {
		a->ring[a->head] = (struct sample){now_ms, rev};
		a->head = (a->head + 1) % a->cap;
		if (a->n < a->cap)
			a->n++;
		a->next_sample = now_ms + a->step_ms;
	}
	if (now_ms < a->next_compact)
		return 0;
	a->next_compact = now_ms + a->period_ms;
	target = a->periodic ? autocompact_rev_retention_ago(a, now_ms) : rev - a->retention;
	if (target <= 0 || target <= compact_rev || target == a->last || target > rev)
		return 0;
	a->last = target;
	return target;
}

int64_t autocompact_wait_ms(const struct autocompact *a, uint64_t now_ms)
{
	uint64_t next = a->periodic && a->next_sample < a->next_compact ? a->next_sample : a->next_compact;

	return next > now_ms ? (int64_t)(next - now_ms) : 0;
}
