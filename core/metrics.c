/* See metrics.h. */
#include "core/metrics.h"

#include <stdio.h>

const uint64_t metrics_etcd_bounds_us[] = {1000,   2000,   4000,   8000,    16000,   32000,   64000,
					   128000, 256000, 512000, 1024000, 2048000, 4096000, 8192000};
const size_t metrics_etcd_nbounds = sizeof metrics_etcd_bounds_us / sizeof metrics_etcd_bounds_us[0];
const uint64_t metrics_us_bounds[] = {10,   20,   40,    80,    160,   320,   640,    1280,
				      2560, 5120, 10240, 20480, 40960, 81920, 163840, 327680};
const size_t metrics_us_nbounds = sizeof metrics_us_bounds / sizeof metrics_us_bounds[0];

_Static_assert(sizeof metrics_us_bounds / sizeof metrics_us_bounds[0] <= METRICS_BUCKETS, "bucket count");
_Static_assert(sizeof metrics_etcd_bounds_us / sizeof metrics_etcd_bounds_us[0] <= METRICS_BUCKETS, "bucket count");

void metrics_observe(struct metrics_hist *h, const uint64_t *bounds, size_t nbounds, uint64_t us)
{
	size_t i = 0;

	while (i < nbounds && us > bounds[i])
		i++;
	atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

size_t metrics_print_hist(char *buf, size_t len, size_t cap, const char *name, const char *labels,
			  const struct metrics_hist *h, const uint64_t *bounds, size_t nbounds, int seconds)
{
	uint64_t cum = 0;
	const char *sep = labels[0] ? "," : "";

#define METRICS_PUT(...)                                                                  \
	do {                                                                                \
		if (len < cap) {                                                            \
			int n_ = snprintf(buf + len, cap - len, __VA_ARGS__);               \
			len = n_ < 0 ? len : (size_t)n_ >= cap - len ? cap : len + (size_t)n_; \
		}                                                                           \
	} while (0)
	for (size_t i = 0; i <= nbounds; i++) {
		cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
		if (i == nbounds)
			METRICS_PUT("%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
		else if (seconds)
			METRICS_PUT("%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, (double)bounds[i] / 1e6,
				    (unsigned long long)cum);
		else
			METRICS_PUT("%s_bucket{%s%sle=\"%llu\"} %llu\n", name, labels, sep, (unsigned long long)bounds[i],
				    (unsigned long long)cum);
	}
	uint64_t sum = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
	const char *lb = labels[0] ? "{" : "", *rb = labels[0] ? "}" : "";
	if (seconds)
		METRICS_PUT("%s_sum%s%s%s %g\n", name, lb, labels, rb, (double)sum / 1e6);
	else
		METRICS_PUT("%s_sum%s%s%s %llu\n", name, lb, labels, rb, (unsigned long long)sum);
	METRICS_PUT("%s_count%s%s%s %llu\n", name, lb, labels, rb,
		    (unsigned long long)atomic_load_explicit(&h->count, memory_order_relaxed));
#undef METRICS_PUT
	return len;
}
