/* See metrics.h. */
#include "core/metrics.h"

#include <stdio.h>

#include "core/kv.h"
#include "rpc.pb-c.h"

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

struct metrics_mvcc metrics_seq_mvcc;

/* What one mvcc transaction did: etcd's metricsTxnWrite counts these at End(). */
struct metrics_txn {
	uint64_t ranges, puts, deletes;
};

static void metrics_add(_Atomic uint64_t *c, uint64_t n)
{
	if (n) /* one writer: a plain load and store, no bus lock */
		atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static void metrics_txn_end(struct metrics_mvcc *m, const struct metrics_txn *t)
{
	metrics_add(&m->ranges, t->ranges);
	metrics_add(&m->puts, t->puts);
	metrics_add(&m->deletes, t->deletes);
	metrics_add(&m->txns, t->ranges + t->puts + t->deletes > 1);
}

/* Walks the branch a Txn took (its response names it) as etcd's apply does: `cmp` gets the
 * compares and the checks that read (puts with ignore_value/lease), `ops` the operations. */
static void metrics_txn_walk(const Etcdserverpb__TxnRequest *t, const Etcdserverpb__TxnResponse *r,
			     struct metrics_txn *cmp, struct metrics_txn *ops)
{
	Etcdserverpb__RequestOp **branch = r->succeeded ? t->success : t->failure;
	size_t n = r->succeeded ? t->n_success : t->n_failure;

	cmp->ranges += t->n_compare;
	for (size_t i = 0; i < n && i < r->n_responses; i++) {
		const Etcdserverpb__RequestOp *op = branch[i];
		switch (op->request_case) {
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
			ops->ranges++;
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT: {
			const Etcdserverpb__PutRequest *p = op->request_put;
			cmp->ranges += p->ignore_value || p->ignore_lease;
			ops->puts++;
			ops->ranges += p->prev_kv || p->ignore_value || p->ignore_lease;
			break;
		}
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
			ops->deletes++;
			ops->ranges += op->request_delete_range->prev_kv;
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
			if (r->responses[i]->response_case == ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN)
				metrics_txn_walk(op->request_txn, r->responses[i]->response_txn, cmp, ops);
			break;
		default:
			break;
		}
	}
}

void metrics_mvcc_count(struct metrics_mvcc *m, int method, const struct ProtobufCMessage *req,
			const struct ProtobufCMessage *resp)
{
	struct metrics_txn t = {0}, ops = {0};

	if (method == KV_RANGE) /* counted before mvcc answers, so a compacted or future revision too */
		t.ranges = 1;
	else if (!resp)
		return;
	switch (method) {
	case KV_RANGE:
		break;
	case KV_PUT: {
		const Etcdserverpb__PutRequest *p = (const void *)req;
		t.puts = 1;
		t.ranges = p->prev_kv || p->ignore_value || p->ignore_lease;
		break;
	}
	case KV_DELETE_RANGE:
		t.deletes = 1;
		t.ranges = ((const Etcdserverpb__DeleteRangeRequest *)req)->prev_kv;
		break;
	case KV_TXN:
		metrics_txn_walk((const void *)req, (const void *)resp, &t, &ops);
		if (kv_is_read_only(KV_TXN, req)) { /* compares and operations in one read txn */
			t.ranges += ops.ranges;
			break;
		}
		metrics_txn_end(m, &t); /* the compares' read txn, then the write txn */
		t = ops;
		break;
	default:
		return;
	}
	metrics_txn_end(m, &t);
}
