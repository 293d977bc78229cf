/* Automatic compaction decisions on a fake clock: etcd's periodic mode (history of the
 * retention, cut every min(retention, 1 h) at the revision current that long ago) and its
 * revision mode (every 5 minutes, keep the last N revisions). */
#include "core/autocompact.h"

#include <criterion/criterion.h>

Test(autocompact, zero_retention_disables)
{
	cr_assert_null(autocompact_new(true, 0, 0));
	cr_assert_null(autocompact_new(false, 0, 0));
}

Test(autocompact, periodic_cuts_at_the_revision_of_retention_ago)
{
	struct autocompact *a = autocompact_new(true, 2000, 1000);
	int64_t rev = 1, cut = 0;

	cr_assert_not_null(a);
	/* one revision every 100 ms; ticks as the sequencer's wait asks */
	uint64_t now = 1000;
	int64_t cuts[8], ncuts = 0;
	uint64_t at[8];
	while (now <= 9000 && ncuts < 8) {
		int64_t t = autocompact_tick(a, now, rev, cut);
		if (t) {
			cr_assert_gt(t, cut);
			cuts[ncuts] = t;
			at[ncuts++] = now;
			cut = t;
		}
		int64_t w = autocompact_wait_ms(a, now);
		cr_assert_geq(w, 0);
		cr_assert_leq(w, 200, "samples every tenth of the period");
		now += w ? (uint64_t)w : 1;
		rev = 1 + (int64_t)(now - 1000) / 100;
	}
	cr_assert_geq(ncuts, 3);
	cr_assert_eq(at[0], 3000, "first cut one period after start");
	cr_assert_eq(cuts[0], 1, "to what was current at start");
	for (int i = 1; i < ncuts; i++) {
		cr_assert_eq(at[i] - at[i - 1], 2000, "then every period");
		/* within one sample step of the revision current 2 s before */
		int64_t then = 1 + (int64_t)(at[i] - 2000 - 1000) / 100;
		cr_assert(cuts[i] <= then && cuts[i] >= then - 2, "cut %lld, current 2s ago %lld", (long long)cuts[i],
			  (long long)then);
	}
	autocompact_free(a);
}

Test(autocompact, periodic_long_retention_cuts_hourly)
{
	const int64_t h = 3600 * 1000LL;
	struct autocompact *a = autocompact_new(true, 5 * h, 0);
	int64_t cut = 0, first = 0;
	uint64_t first_at = 0;

	for (uint64_t now = 0; now <= (uint64_t)(7 * h); now += 60 * 1000) {
		int64_t rev = 1 + (int64_t)(now / 1000); /* one revision a second */
		int64_t t = autocompact_tick(a, now, rev, cut);
		if (t && !first) {
			first = t;
			first_at = now;
		}
		if (t)
			cut = t;
		if (now < (uint64_t)(5 * h))
			cr_assert_eq(t, 0, "nothing is 5 h old before 5 h");
	}
	cr_assert_eq(first_at, 5 * h, "the first hourly check with 5 h of history");
	cr_assert_eq(first, 1);
	cr_assert_geq(cut, 1 + 2 * 3600 - 6 * 60, "at 7 h: about what was current at 2 h");
	autocompact_free(a);
}

Test(autocompact, revision_mode_keeps_the_last_n)
{
	const uint64_t five_min = 5 * 60 * 1000;
	struct autocompact *a = autocompact_new(false, 1000, 0);

	cr_assert_eq(autocompact_wait_ms(a, 0), (int64_t)five_min);
	cr_assert_eq(autocompact_tick(a, five_min - 1, 5000, 0), 0, "not before five minutes");
	cr_assert_eq(autocompact_tick(a, five_min, 5000, 0), 4000);
	cr_assert_eq(autocompact_tick(a, 2 * five_min, 5000, 4000), 0, "nothing new");
	cr_assert_eq(autocompact_tick(a, 3 * five_min, 800, 0), 0, "fewer revisions than kept");
	cr_assert_eq(autocompact_tick(a, 4 * five_min, 9000, 4000), 8000);
	autocompact_free(a);
}
