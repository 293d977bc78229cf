/* Unit tests for core/arena and core/qsbr: allocation alignment and reuse across resets,
 * oversized allocations, and reclamation that waits for every online reader. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "core/arena.h"
#include "core/qsbr.h"

Test(arena, aligned_and_distinct)
{
	struct arena *a = arena_new(256);
	uint8_t *prev = NULL;

	for (int i = 1; i < 200; i++) {
		uint8_t *p = arena_alloc(a, (size_t)i);
		cr_assert_eq((uintptr_t)p % 16, 0);
		memset(p, 0xab, (size_t)i);
		cr_assert_neq(p, prev);
		prev = p;
	}
	cr_assert_geq(arena_used(a), 199 * 200 / 2);
	arena_reset(a);
	cr_assert_eq(arena_used(a), 0);
	arena_free(a);
}

Test(arena, oversized_and_memdup)
{
	struct arena *a = arena_new(256);
	char big[10000];

	memset(big, 'x', sizeof big);
	char *p = arena_memdup(a, big, sizeof big);
	cr_assert_eq(memcmp(p, big, sizeof big), 0);
	char *q = arena_alloc(a, 16);
	memset(q, 'y', 16);
	cr_assert_eq(memcmp(p, big, sizeof big), 0, "a later small allocation must not overlap");
	for (int round = 0; round < 3; round++) {
		arena_reset(a);
		for (int i = 0; i < 100; i++)
			memset(arena_alloc(a, 1000), i, 1000);
	}
	arena_free(a);
}

static int freed;
static void count_free(void *p)
{
	freed++;
	free(p);
}

Test(qsbr, waits_for_online_readers)
{
	struct qsbr *q = qsbr_new(2);
	int r0 = qsbr_reader_register(q), r1 = qsbr_reader_register(q);

	freed = 0;
	qsbr_retire(q, malloc(8), count_free);
	qsbr_advance(q);
	cr_assert_eq(freed, 0, "readers registered before the retire may still hold it");
	qsbr_quiescent(q, r0);
	qsbr_advance(q);
	cr_assert_eq(freed, 0, "reader 1 has not passed a quiescent point");
	qsbr_offline(q, r1);
	qsbr_advance(q);
	cr_assert_eq(freed, 1);
	qsbr_online(q, r1);
	qsbr_retire(q, malloc(8), count_free);
	qsbr_advance(q);
	cr_assert_eq(freed, 1);
	qsbr_quiescent(q, r0);
	qsbr_quiescent(q, r1);
	qsbr_advance(q);
	cr_assert_eq(freed, 2);
	cr_assert_eq(qsbr_pending(q), 0);
	qsbr_retire(q, malloc(8), count_free);
	qsbr_free(q);
	cr_assert_eq(freed, 3, "free releases what is still retired");
}
