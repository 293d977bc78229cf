/* etcd's HTTP/1.1 endpoints, on every client listener and on --listen-metrics-urls:
 *   GET /health[?exclude=NOSPACE&serializable=true]  {"health":"true","reason":""} or 503
 *   /livez, /readyz[/<check>][?verbose][&exclude=<check>]  "ok\n", or 503 with [-] lines
 *   /version  {"etcdserver":"3.6.0","etcdcluster":"3.6.0"}
 *   /metrics  Prometheus text, etcd's metric names for what dashboards and alerts read
 * The checks are what a single node can fail: an active alarm (NOSPACE, CORRUPT). */
#include "core/http.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/maint.h"
#include "core/metrics.h"
#include "core/reactor.h"
#include "core/seq.h"
#include "core/svc.h"
#include "core/server.h"
#include "net/http1.h"
#include "storage/mvcc.h"
#include "storage/wal.h"

#define ALARM_NOSPACE (1u << 1)
#define ALARM_CORRUPT (1u << 2)

static bool http_is(const struct http1_request *r, const char *path)
{
	return strlen(path) == r->path_len && memcmp(r->path, path, r->path_len) == 0;
}

static bool http_query_has(const struct http1_request *r, const char *key, const char *value)
{
	const char *q = r->query, *name, *val;
	size_t qlen = r->query_len, nlen, vlen;

	while (q && http1_query_next(&q, &qlen, &name, &nlen, &val, &vlen))
		if (nlen == strlen(key) && memcmp(name, key, nlen) == 0 &&
		    (!value || (vlen == strlen(value) && memcmp(val, value, vlen) == 0)))
			return true;
	return false;
}

static void http_health(struct server *srv, struct http1_conn *h, const struct http1_request *r)
{
	unsigned alarms = atomic_load(&srv->alarms);
	const char *reason = NULL;

	if ((alarms & ALARM_NOSPACE) && !http_query_has(r, "exclude", "NOSPACE"))
		reason = "ALARM NOSPACE";
	else if ((alarms & ALARM_CORRUPT) && !http_query_has(r, "exclude", "CORRUPT"))
		reason = "ALARM CORRUPT";
	if (!reason) {
		static const char ok[] = "{\"health\":\"true\",\"reason\":\"\"}";
		http1_respond(h, 200, "text/plain; charset=utf-8", ok, sizeof ok - 1);
		return;
	}
	char body[128];
	int n = snprintf(body, sizeof body, "{\"health\":\"false\",\"reason\":\"%s\"}", reason);
	http1_respond(h, 503, "text/plain; charset=utf-8", body, (size_t)n);
}

struct http_check {
	const char *name;
	unsigned fails_on; /* alarms that fail it */
};

static const struct http_check livez_checks[] = {{"serializable_read", 0}};
static const struct http_check readyz_checks[] = {
	{"data_corruption", ALARM_CORRUPT},
	{"serializable_read", 0},
	{"linearizable_read", 0},
};

/* /livez and /readyz in the Kubernetes healthz style etcd 3.6 serves. */
static void http_probe(struct server *srv, struct http1_conn *h, const struct http1_request *r, const char *kind,
		       const struct http_check *checks, size_t n)
{
	unsigned alarms = atomic_load(&srv->alarms);
	size_t base = strlen(kind); /* the "/" after "/readyz" */
	char body[1024];
	size_t len = 0;
	bool failed = false, verbose = http_query_has(r, "verbose", NULL);

	if (r->path_len > base && r->path[base] == '/') { /* /readyz/<check> */
		for (size_t i = 0; i < n; i++)
			if (r->path_len - base - 1 == strlen(checks[i].name) &&
			    memcmp(r->path + base + 1, checks[i].name, r->path_len - base - 1) == 0) {
				if (alarms & checks[i].fails_on) {
					len = (size_t)snprintf(body, sizeof body, "[-]%s failed: alarm activated\n", checks[i].name);
					http1_respond(h, 503, "text/plain; charset=utf-8", body, len);
				} else {
					http1_respond(h, 200, "text/plain; charset=utf-8", "ok\n", 3);
				}
				return;
			}
		http1_respond(h, 404, "text/plain; charset=utf-8", "404 page not found\n", 19);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (http_query_has(r, "exclude", checks[i].name)) {
			if (verbose)
				len += (size_t)snprintf(body + len, sizeof body - len, "[+]%s excluded: ok\n", checks[i].name);
			continue;
		}
		bool bad = alarms & checks[i].fails_on;
		failed |= bad;
		if (verbose || bad)
			len += (size_t)snprintf(body + len, sizeof body - len, bad ? "[-]%s failed: alarm activated\n" : "[+]%s ok\n",
						checks[i].name);
	}
	if (!failed && !verbose) {
		http1_respond(h, 200, "text/plain; charset=utf-8", "ok\n", 3);
		return;
	}
	len += (size_t)snprintf(body + len, sizeof body - len, "%s check %s\n", kind + 1, failed ? "failed" : "passed");
	http1_respond(h, failed ? 503 : 200, "text/plain; charset=utf-8", body, len);
}

static const char *const http_codes[] = {"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
					  "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted",
					  "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented", "Internal",
					  "Unavailable", "DataLoss", "Unauthenticated"};

/* go-grpc-prometheus's grpc_type of a method. */
static const char *http_grpc_type(int m)
{
	if (m == SVC_WATCH || m == SVC_LEASE_KEEPALIVE)
		return "bidi_stream";
	return m == SVC_ELECTION_OBSERVE || m == SVC_MAINT_SNAPSHOT || m == SVC_KV_RANGE_STREAM ? "server_stream"
											      : "unary";
}

/* etcd registers the Lock and Election services after it initialises the gRPC metrics, so
 * their series appear once called; every other method's are there from the start, at 0. */
static bool http_metrics_lazy(int m) { return m >= SVC_LOCK_LOCK && m <= SVC_ELECTION_OBSERVE; }

/* the mvcc counter sets summed at a scrape: the sequencer's and one per reactor */
#define HTTP_METRICS_PARTS_MAX 1025

/* etcd_mvcc_*_total, grpc_server_started_total / handled_total (summed over reactors) and uetcd's latency
 * histograms, appended to the body. */
static size_t http_metrics_grpc(struct server *srv, char *buf, size_t len, size_t cap)
{
	struct metrics_hist read = {0}, write = {0}; /* sums over reactors */

#define HTTP_PUT(...)                                                                      \
	do {                                                                                 \
		if (len < cap) {                                                             \
			int n_ = snprintf(buf + len, cap - len, __VA_ARGS__);                \
			len = n_ < 0 ? len : (size_t)n_ >= cap - len ? cap : len + (size_t)n_; \
		}                                                                            \
	} while (0)
	struct metrics_mvcc mv = {0};
	const struct metrics_mvcc *parts[HTTP_METRICS_PARTS_MAX];
	int nparts = 0;
	parts[nparts++] = &metrics_seq_mvcc;
	for (int i = 0; i < srv->nreactors && nparts < HTTP_METRICS_PARTS_MAX; i++)
		parts[nparts++] = &svc_thread_metrics(reactor_svc(srv->reactors[i]))->mvcc;
	for (int i = 0; i < nparts; i++) {
		mv.ranges += atomic_load_explicit(&parts[i]->ranges, memory_order_relaxed);
		mv.puts += atomic_load_explicit(&parts[i]->puts, memory_order_relaxed);
		mv.deletes += atomic_load_explicit(&parts[i]->deletes, memory_order_relaxed);
		mv.txns += atomic_load_explicit(&parts[i]->txns, memory_order_relaxed);
	}
	HTTP_PUT("# HELP etcd_mvcc_delete_total Total number of deletes seen by this member.\n"
		 "# TYPE etcd_mvcc_delete_total counter\netcd_mvcc_delete_total %llu\n"
		 "# HELP etcd_mvcc_put_total Total number of puts seen by this member.\n"
		 "# TYPE etcd_mvcc_put_total counter\netcd_mvcc_put_total %llu\n"
		 "# HELP etcd_mvcc_range_total Total number of ranges seen by this member.\n"
		 "# TYPE etcd_mvcc_range_total counter\netcd_mvcc_range_total %llu\n"
		 "# HELP etcd_mvcc_txn_total Total number of txns seen by this member.\n"
		 "# TYPE etcd_mvcc_txn_total counter\netcd_mvcc_txn_total %llu\n",
		 (unsigned long long)mv.deletes, (unsigned long long)mv.puts, (unsigned long long)mv.ranges,
		 (unsigned long long)mv.txns);
	HTTP_PUT("# HELP grpc_server_started_total Total number of RPCs started on the server.\n"
		 "# TYPE grpc_server_started_total counter\n");
	for (int m = 0; m < SVC_METHODS; m++) {
		const char *path = svc_method_path(m);
		uint64_t n = 0;
		if (!path)
			continue;
		for (int i = 0; i < srv->nreactors; i++)
			n += atomic_load_explicit(&svc_thread_metrics(reactor_svc(srv->reactors[i]))->started[m],
						  memory_order_relaxed);
		if (!n && http_metrics_lazy(m))
			continue;
		const char *slash = strchr(path + 1, '/');
		HTTP_PUT("grpc_server_started_total{grpc_method=\"%s\",grpc_service=\"%.*s\",grpc_type=\"%s\"} %llu\n",
			 slash + 1, (int)(slash - path - 1), path + 1, http_grpc_type(m), (unsigned long long)n);
	}
	HTTP_PUT("# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.\n"
		 "# TYPE grpc_server_handled_total counter\n");
	for (int m = 0; m < SVC_METHODS; m++) {
		const char *path = svc_method_path(m);
		if (!path)
			continue;
		const char *slash = strchr(path + 1, '/');
		for (int code = 0; code < 17; code++) {
			uint64_t n = 0;
			for (int i = 0; i < srv->nreactors; i++)
				n += atomic_load_explicit(
					&svc_thread_metrics(reactor_svc(srv->reactors[i]))->handled[m][code],
					memory_order_relaxed);
			if (n || !http_metrics_lazy(m))
				HTTP_PUT("grpc_server_handled_total{grpc_code=\"%s\",grpc_method=\"%s\",grpc_service=\"%.*s\",grpc_type=\"%s\"} %llu\n",
					 http_codes[code], slash + 1, (int)(slash - path - 1), path + 1,
					 http_grpc_type(m), (unsigned long long)n);
		}
	}
	for (int i = 0; i < srv->nreactors; i++) {
		const struct svc_metrics *sm = svc_thread_metrics(reactor_svc(srv->reactors[i]));
		for (int b = 0; b <= METRICS_BUCKETS; b++) {
			atomic_fetch_add(&read.bucket[b], atomic_load(&sm->read_us.bucket[b]));
			atomic_fetch_add(&write.bucket[b], atomic_load(&sm->write_us.bucket[b]));
		}
		atomic_fetch_add(&read.count, atomic_load(&sm->read_us.count));
		atomic_fetch_add(&read.sum_us, atomic_load(&sm->read_us.sum_us));
		atomic_fetch_add(&write.count, atomic_load(&sm->write_us.count));
		atomic_fetch_add(&write.sum_us, atomic_load(&sm->write_us.sum_us));
	}
	HTTP_PUT("# HELP uetcd_request_duration_microseconds Request latency inside the server (reads: on the reactor; writes: queued to answered, including the log sync).\n"
		 "# TYPE uetcd_request_duration_microseconds histogram\n");
	len = metrics_print_hist(buf, len, cap, "uetcd_request_duration_microseconds", "kind=\"read\"", &read,
				 metrics_us_bounds, metrics_us_nbounds, 0);
	len = metrics_print_hist(buf, len, cap, "uetcd_request_duration_microseconds", "kind=\"write\"", &write,
				 metrics_us_bounds, metrics_us_nbounds, 0);
	HTTP_PUT("# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.\n"
		 "# TYPE etcd_disk_wal_fsync_duration_seconds histogram\n");
	len = metrics_print_hist(buf, len, cap, "etcd_disk_wal_fsync_duration_seconds", "", seq_fsync_hist(srv->seq),
				 metrics_etcd_bounds_us, metrics_etcd_nbounds, 1);
	HTTP_PUT("# HELP etcd_disk_backend_commit_duration_seconds The latency distributions of commit called by backend.\n"
		 "# TYPE etcd_disk_backend_commit_duration_seconds histogram\n");
	len = metrics_print_hist(buf, len, cap, "etcd_disk_backend_commit_duration_seconds", "",
				 seq_commit_hist(srv->seq), metrics_etcd_bounds_us, metrics_etcd_nbounds, 1);
#undef HTTP_PUT
	return len;
}

/* etcd reports its cluster version as major.minor ("3.5"). */
static const char *http_cluster_version(char *out, size_t cap)
{
	const char *full = UETCD_ETCD_API_VERSION, *dot = strchr(full, '.');
	int n = dot && strchr(dot + 1, '.') ? (int)(strchr(dot + 1, '.') - full) : (int)strlen(full);

	snprintf(out, cap, "%.*s", n, full);
	return out;
}

static void http_metrics(struct server *srv, struct http1_conn *h)
{
	struct mvcc_view v;
	/* etcd's series at 0 for every method and code make ~120 KiB; a scrape is rare, so the
	 * body is allocated for it rather than held per reactor */
	enum { HTTP_METRICS_BODY_MAX = 256 << 10 };
	char *body = malloc(HTTP_METRICS_BODY_MAX), cv[16];
	uint64_t db, in_use;
	unsigned alarms = atomic_load(&srv->alarms);
	int n;

	if (!body) {
		http1_respond(h, 503, "text/plain; charset=utf-8", "out of memory\n", 14);
		return;
	}
	maint_db_sizes(srv, &db, &in_use);
	mvcc_view_published(srv->store, &v);
	n = snprintf(body, HTTP_METRICS_BODY_MAX,
		     "# HELP etcd_server_has_leader Whether or not a leader exists. 1 is existence, 0 is not.\n"
		     "# TYPE etcd_server_has_leader gauge\netcd_server_has_leader 1\n"
		     "# HELP etcd_server_is_leader Whether or not this member is a leader. 1 if is, 0 otherwise.\n"
		     "# TYPE etcd_server_is_leader gauge\netcd_server_is_leader 1\n"
		     "# HELP etcd_server_leader_changes_seen_total The number of leader changes seen.\n"
		     "# TYPE etcd_server_leader_changes_seen_total counter\netcd_server_leader_changes_seen_total 1\n"
		     "# HELP etcd_server_proposals_committed_total The total number of consensus proposals committed.\n"
		     "# TYPE etcd_server_proposals_committed_total gauge\netcd_server_proposals_committed_total %llu\n"
		     "# HELP etcd_server_proposals_applied_total The total number of consensus proposals applied.\n"
		     "# TYPE etcd_server_proposals_applied_total gauge\netcd_server_proposals_applied_total %llu\n"
		     "# HELP etcd_server_proposals_pending The current number of pending proposals to commit.\n"
		     "# TYPE etcd_server_proposals_pending gauge\netcd_server_proposals_pending 0\n"
		     "# HELP etcd_server_proposals_failed_total The total number of failed proposals seen.\n"
		     "# TYPE etcd_server_proposals_failed_total counter\netcd_server_proposals_failed_total 0\n"
		     "# HELP etcd_mvcc_db_total_size_in_bytes Total size of the underlying database physically allocated in bytes.\n"
		     "# TYPE etcd_mvcc_db_total_size_in_bytes gauge\netcd_mvcc_db_total_size_in_bytes %llu\n"
		     "# HELP etcd_mvcc_db_total_size_in_use_in_bytes Total size of the underlying database logically in use in bytes.\n"
		     "# TYPE etcd_mvcc_db_total_size_in_use_in_bytes gauge\netcd_mvcc_db_total_size_in_use_in_bytes %llu\n"
		     "# HELP etcd_debugging_mvcc_keys_total Total number of keys.\n"
		     "# TYPE etcd_debugging_mvcc_keys_total gauge\netcd_debugging_mvcc_keys_total %llu\n"
		     "# HELP etcd_debugging_mvcc_current_revision The current revision of store.\n"
		     "# TYPE etcd_debugging_mvcc_current_revision gauge\netcd_debugging_mvcc_current_revision %lld\n"
		     "# HELP etcd_debugging_mvcc_compact_revision The revision of the last compaction in store.\n"
		     "# TYPE etcd_debugging_mvcc_compact_revision gauge\netcd_debugging_mvcc_compact_revision %lld\n"
		     "# HELP etcd_server_quota_backend_bytes Current backend storage quota size in bytes.\n"
		     "# TYPE etcd_server_quota_backend_bytes gauge\netcd_server_quota_backend_bytes %lld\n"
		     "# HELP etcd_server_version Which version is running. 1 for 'server_version' label with current version.\n"
		     "# TYPE etcd_server_version gauge\netcd_server_version{server_version=\"%s\"} 1\n"
		     "# HELP etcd_cluster_version Which version is running. 1 for 'cluster_version' label with current cluster version\n"
		     "# TYPE etcd_cluster_version gauge\netcd_cluster_version{cluster_version=\"%s\"} 1\n"
		     "# HELP uetcd_alarms Active alarms as a bit mask (2: NOSPACE, 4: CORRUPT).\n"
		     "# TYPE uetcd_alarms gauge\nuetcd_alarms %u\n"
		     "# HELP uetcd_sequencer_batches_total Write batches applied, each with one log commit.\n"
		     "# TYPE uetcd_sequencer_batches_total counter\nuetcd_sequencer_batches_total %llu\n",
		     (unsigned long long)seq_applied(srv->seq), (unsigned long long)seq_applied(srv->seq),
		     (unsigned long long)db, (unsigned long long)in_use,
		     (unsigned long long)mvcc_keys_live(srv->store),
		     (long long)v.rev, (long long)v.compact_rev,
		     (long long)config_quota_bytes(srv->cfg),
		     UETCD_ETCD_API_VERSION, http_cluster_version(cv, sizeof cv), alarms, (unsigned long long)seq_batches(srv->seq));
	size_t len = http_metrics_grpc(srv, body, n < 0 ? 0 : (size_t)n, HTTP_METRICS_BODY_MAX);
	http1_respond(h, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
	free(body);
}

void http_handle(struct server *srv, struct http1_conn *h, const struct http1_request *r)
{
	bool get = (r->method_len == 3 && memcmp(r->method, "GET", 3) == 0) || r->head;

	if (http_is(r, "/health")) {
		if (!get) {
			http1_respond_ex(h, 405, "text/plain; charset=utf-8", "Allow: GET\r\n", "Method Not Allowed\n", 19);
			return;
		}
		http_health(srv, h, r);
	} else if (http_is(r, "/livez") || (r->path_len > 7 && memcmp(r->path, "/livez/", 7) == 0)) {
		http_probe(srv, h, r, "/livez", livez_checks, sizeof livez_checks / sizeof livez_checks[0]);
	} else if (http_is(r, "/readyz") || (r->path_len > 8 && memcmp(r->path, "/readyz/", 8) == 0)) {
		http_probe(srv, h, r, "/readyz", readyz_checks, sizeof readyz_checks / sizeof readyz_checks[0]);
	} else if (http_is(r, "/version")) {
		static const char ver[] = "{\"etcdserver\":\"" UETCD_ETCD_API_VERSION "\",\"etcdcluster\":\"" UETCD_ETCD_API_VERSION "\"}";
		http1_respond(h, 200, "application/json", ver, sizeof ver - 1);
	} else if (http_is(r, "/metrics")) {
		http_metrics(srv, h);
	} else {
		http1_respond(h, 404, "text/plain; charset=utf-8", "404 page not found\n", 19);
	}
}
