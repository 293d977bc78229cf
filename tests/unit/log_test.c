/* The log's rate limiter (core/log.c): a site passes LOG_LIMIT_BURST lines per window,
 * drops the rest, and the first line of the next window reports how many it dropped. */
#include <criterion/criterion.h>

#include "core/log.h"

Test(log, burst_then_suppressed)
{
	struct log_limit l = {0};
	unsigned long long dropped;

	for (int i = 0; i < LOG_LIMIT_BURST; i++) {
		cr_assert(log_limit_pass(&l, &dropped));
		cr_assert_eq(dropped, 0);
	}
	for (int i = 0; i < 1000; i++)
		cr_assert_not(log_limit_pass(&l, &dropped));
}

Test(log, next_window_reports_dropped)
{
	struct log_limit l = {0};
	unsigned long long dropped;

	for (int i = 0; i < LOG_LIMIT_BURST + 7; i++)
		log_limit_pass(&l, &dropped);
	/* as if the window had ended */
	atomic_store(&l.window_ms, atomic_load(&l.window_ms) - LOG_LIMIT_INTERVAL_MS);
	cr_assert(log_limit_pass(&l, &dropped));
	cr_assert_eq(dropped, 7);
	cr_assert(log_limit_pass(&l, &dropped));
	cr_assert_eq(dropped, 0);
}

Test(log, limited_lines_are_few)
{
	struct log_limit l = {0};
	unsigned long long dropped;
	int passed = 0;

	for (int i = 0; i < 1000000; i++)
		passed += log_limit_pass(&l, &dropped);
	cr_assert_leq(passed, 2 * LOG_LIMIT_BURST); /* at most two windows in this loop */
}
