/* Counters and histograms for /metrics. Each is written by one thread (a reactor or the
 * sequencer) with relaxed atomic adds and read by whichever reactor serves a scrape, so no
 * lock and no cache line shared between writers. Bucket bounds are fixed at compile time:
 * etcd's (seconds, 1 ms doubling) for etcd's metric names, microseconds for uetcd's own. */
#ifndef UETCD_CORE_METRICS_H
#define UETCD_CORE_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_BUCKETS 16

/* Upper bounds in microseconds; the last bucket is +Inf. */
struct metrics_hist {
	_Atomic uint64_t bucket[METRICS_BUCKETS + 1];
	_Atomic uint64_t count;
	_Atomic uint64_t sum_us;
};

/* etcd's wal fsync / backend commit buckets: 1 ms .. 8.192 s, doubling (14 bounds). */
extern const uint64_t metrics_etcd_bounds_us[];
extern const size_t metrics_etcd_nbounds;
/* uetcd's request latency buckets: 10 us .. 327 ms, doubling (16 bounds). */
extern const uint64_t metrics_us_bounds[];
extern const size_t metrics_us_nbounds;

/* etcd's etcd_mvcc_{range,put,delete,txn}_total, kept per writer (each reactor's reads, the
 * sequencer's writes) and summed at scrape. The single writer adds with a relaxed load and
 * store: no locked instruction and no line shared between cores on the request path. */
struct metrics_mvcc {
	_Atomic uint64_t ranges, puts, deletes, txns;
};

struct ProtobufCMessage;
/* Counts one answered KV request (`method` a kv_method) as etcd's mvcc layer counts it: a
 * range per Range, per Txn compare and per previous value a Put or DeleteRange reads; a txn
 * for each mvcc transaction of more than one operation (a Txn that writes is two: its
 * compares, then its operations). A Range that failed (resp NULL: a compacted or future
 * revision) counts, as in etcd; other failed requests count nothing (etcd counts the read a
 * Put with ignore_value makes before it fails: not here). */
void metrics_mvcc_count(struct metrics_mvcc *m, int method, const struct ProtobufCMessage *req,
			const struct ProtobufCMessage *resp);
/* The sequencer's counts (written by its thread only). */
extern struct metrics_mvcc metrics_seq_mvcc;

void metrics_observe(struct metrics_hist *h, const uint64_t *bounds, size_t nbounds, uint64_t us);
/* Appends a Prometheus histogram (cumulative buckets, _sum, _count) to buf; `labels` is
 * "" or e.g. "method=\"Range\"". Bounds are printed in seconds when `seconds`. Returns the
 * new length (never past cap). */
size_t metrics_print_hist(char *buf, size_t len, size_t cap, const char *name, const char *labels,
			  const struct metrics_hist *h, const uint64_t *bounds, size_t nbounds, int seconds);

#endif
