/* Unit tests for core/watch.c's hub: the hand-off between a watcher's catch-up from the
 * published store and the live batches (issue 13). A fake sequencer writes synthetic
 * batches into a real mvcc store through the real watch_builder (capture decision, publish,
 * finish), and hands them to a hub driven through its test seam (watch_hub_set_wire). Every
 * schedule of (batch begun, published, delivered), watcher creations with every start
 * revision, catch-up ticks and a stalled stream is run, and each watcher's events must be
 * exactly the writes at or after its start revision that it covers: in order, each once.
 * With the real order (publish before delivery), no stall and no tick, they must all have
 * arrived by the time the last batch is delivered (nothing waits for another write).
 * A second suite hands batches over before they are published (with a watcher present, so
 * events are recorded), which the hub must survive too. Then the per-stream watcher limit
 * and the bounded catch-up responses. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/qsbr.h"
#include "core/server.h"
#include "core/watch.h"
#include "rpc.pb-c.h"
#include "storage/mvcc.h"

#define MAXW 4
#define MAXEV 256

struct rec {
	int type;
	int64_t rev;
	char key[8];
};

/* one watcher's view of the wire */
struct seen {
	bool created, canceled;
	int64_t created_rev;
	struct rec ev[MAXEV];
	int n;
	int responses;
	size_t max_response;
};

static struct qsbr *q;
static struct mvcc_store *store;
static struct config cfg;
static struct server srv;
static struct watch_hub *hub;
static struct watch_builder *wb;
static struct kv_sink sink;
static bool capturing;
static struct seen seen[MAXW];
static size_t wire_queued;
static int conn_a, conn_b; /* the streams' owners: any unique pointers */
static uint64_t now_ms;

/* every change so far, in order: the truth watchers are checked against */
static struct rec truth[MAXEV];
static int ntruth;

static void wire_send(void *arg, const void *owner, uint32_t sid, const uint8_t *msg, size_t len)
{
	Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(NULL, len, msg);

	cr_assert_not_null(r);
	if (r->watch_id >= 0 && r->watch_id < MAXW) {
		struct seen *s = &seen[r->watch_id];
		if (r->created) {
			cr_assert(!s->created, "watcher %lld created twice", (long long)r->watch_id);
			s->created = true;
			s->canceled = r->canceled;
			s->created_rev = r->header->revision;
		}
		if (r->canceled && !r->created)
			s->canceled = true;
		if (r->n_events) {
			s->responses++;
			if (len > s->max_response)
				s->max_response = len;
		}
		for (size_t i = 0; i < r->n_events; i++) {
			cr_assert_lt(s->n, MAXEV);
			Mvccpb__KeyValue *kv = r->events[i]->kv;
			cr_assert_leq(kv->mod_revision, r->header->revision, "an event after its response's revision");
			struct rec *e = &s->ev[s->n++];
			e->type = r->events[i]->type;
			e->rev = kv->mod_revision;
			snprintf(e->key, sizeof e->key, "%.*s", (int)kv->key.len, (const char *)kv->key.data);
		}
	}
	etcdserverpb__watch_response__free_unpacked(r, NULL);
}

static size_t wire_queued_bytes(void *arg, const void *owner, uint32_t sid) { return wire_queued; }

static void no_dirty(void *conn_user) {}

static void setup(void)
{
	q = qsbr_new(1);
	store = mvcc_store_new(q);
	memset(&cfg, 0, sizeof cfg);
	memset(&srv, 0, sizeof srv);
	srv.cfg = &cfg;
	srv.store = store;
	srv.limits.max_request_bytes = 1572864;
	hub = watch_hub_new(&srv, 0, no_dirty);
	watch_hub_set_wire(hub, &(struct watch_wire){.send = wire_send, .queued = wire_queued_bytes});
	wb = watch_builder_new();
	watch_builder_sink(wb, &sink);
	memset(seen, 0, sizeof seen);
	wire_queued = 0;
	ntruth = 0;
	now_ms = 1000;
	watch_stream_open(hub, (struct grpc_conn *)&conn_a, NULL, 1);
	watch_stream_open(hub, (struct grpc_conn *)&conn_b, NULL, 3);
}

static void teardown(void)
{
	watch_stream_close(hub, (struct grpc_conn *)&conn_a, 1);
	watch_stream_close(hub, (struct grpc_conn *)&conn_b, 3);
	cr_assert(!watch_any(), "every watcher is gone with its stream");
	watch_hub_free(hub);
	watch_builder_free(wb);
	mvcc_store_free(store);
	qsbr_free(q);
}

/* ---- the fake sequencer ---- */

static int del_prev(void *arg, const struct mvcc_kv *kv)
{
	struct mvcc_kv *out = arg;

	*out = *kv;
	return 0;
}

/* One revision: puts (value "v") and deletes ("-key") of single keys, as one transaction. */
static void write_rev(const char *const *ops)
{
	int64_t rev = mvcc_rev(store) + 1;

	mvcc_txn_begin(store);
	for (; *ops; ops++) {
		const char *k = (*ops)[0] == '-' ? *ops + 1 : *ops;
		struct mvcc_kv prev;
		struct rec *t = &truth[ntruth++];
		snprintf(t->key, sizeof t->key, "%s", k);
		t->rev = rev;
		if ((*ops)[0] == '-') {
			cr_assert_eq(mvcc_delete_range(store, (const uint8_t *)k, strlen(k), NULL, 0, del_prev, &prev), 1);
			t->type = MVCCPB__EVENT__EVENT_TYPE__DELETE;
			if (capturing)
				sink.del(sink.arg, (const uint8_t *)k, strlen(k), rev, &prev);
		} else {
			int had = mvcc_put(store, (const uint8_t *)k, strlen(k), (const uint8_t *)"v", 1, 0, &prev);
			struct mvcc_kv kv = {.key = (const uint8_t *)k, .key_len = strlen(k), .value = (const uint8_t *)"v",
					     .value_len = 1, .mod_revision = rev};
			t->type = MVCCPB__EVENT__EVENT_TYPE__PUT;
			if (capturing)
				sink.put(sink.arg, &kv, had == 1 ? &prev : NULL);
		}
	}
	cr_assert_eq(mvcc_txn_end(store), rev);
}

/* The batches of a schedule: one revision, then two (the second a two-key txn), then one. */
static void apply_batch(int i)
{
	static const char *const b1[] = {"a", NULL};
	static const char *const b2a[] = {"-a", NULL}, *const b2b[] = {"a", "b", NULL};
	static const char *const b3[] = {"b", NULL};

	if (i == 0) {
		write_rev(b1);
	} else if (i == 1) {
		write_rev(b2a);
		write_rev(b2b);
	} else {
		write_rev(b3);
	}
}

/* history before any schedule: a at 2, b at 3 */
static void write_base(void)
{
	static const char *const a[] = {"a", NULL}, *const b[] = {"b", NULL};

	capturing = false;
	write_rev(a);
	write_rev(b);
	mvcc_publish(store);
}

#define BASE 3

/* ---- watchers ---- */

static void create(int id, int64_t start)
{
	Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
	uint8_t buf[128];

	/* even ids watch the key a, odd ones the range [a, c) */
	cr.key = (ProtobufCBinaryData){1, (uint8_t *)"a"};
	if (id % 2)
		cr.range_end = (ProtobufCBinaryData){1, (uint8_t *)"c"};
	cr.start_revision = start;
	cr.watch_id = id;
	req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	req.create_request = &cr;
	size_t len = etcdserverpb__watch_request__pack(&req, buf);
	if (id % 2)
		watch_stream_message(hub, (struct grpc_conn *)&conn_b, 3, buf, len);
	else
		watch_stream_message(hub, (struct grpc_conn *)&conn_a, 1, buf, len);
	cr_assert(seen[id].created && !seen[id].canceled, "watcher %d created", id);
}

/* Every change the watcher covers at or after its start, against what it received. Returns
 * false if some have not arrived (yet); anything wrong beyond that fails the test. */
static bool check(int id, int64_t start, bool complete, const char *sched)
{
	int64_t from = start > 0 ? start : seen[id].created_rev + 1;
	struct rec want[MAXEV];
	int n = 0;

	for (int i = 0; i < ntruth; i++)
		if (truth[i].rev >= from && (id % 2 ? strcmp(truth[i].key, "c") < 0 : strcmp(truth[i].key, "a") == 0))
			want[n++] = truth[i];
	cr_assert_leq(seen[id].n, n, "watcher %d (start %lld): %d events, %d expected (a duplicate?) in %s", id,
		      (long long)start, seen[id].n, n, sched);
	for (int i = 0; i < seen[id].n; i++)
		cr_assert(seen[id].ev[i].rev == want[i].rev && seen[id].ev[i].type == want[i].type &&
				  !strcmp(seen[id].ev[i].key, want[i].key),
			  "watcher %d (start %lld): event %d is rev %lld %s, expected rev %lld %s, in %s", id,
			  (long long)start, i, (long long)seen[id].ev[i].rev, seen[id].ev[i].key, (long long)want[i].rev,
			  want[i].key, sched);
	if (complete)
		cr_assert_eq(seen[id].n, n, "watcher %d (start %lld): %d of %d events arrived in %s", id, (long long)start,
			     seen[id].n, n, sched);
	return seen[id].n == n;
}

/* ---- schedules ---- */

/* Actions: 'B'+i begin+apply batch i, 'P'+i publish (and, in the real order, finish: the
 * batch exists from then on), 'F'+i finish before the publish (early suite), 'D'+i deliver,
 * 'C'+j create watcher j, 'T' tick, 'S'/'U' stall/unstall the wire (queue above the limit). */
struct sched {
	char act[32][2];
	int n;
};

static struct watch_batch *batch[3];

/* Runs schedule s: 'C'+k creates watcher ids[k] with starts[k]. With `no_wait`, every
 * watcher must have everything once the schedule is done, before any further tick. */
static void run(const struct sched *s, const int *ids, const int64_t *starts, int nw, bool real_order, bool no_wait,
		const char *name)
{
	write_base();
	memset(batch, 0, sizeof batch);
	for (int k = 0; k < s->n; k++) {
		int i = s->act[k][1];
		switch (s->act[k][0]) {
		case 'B':
			capturing = watch_builder_begin(wb, mvcc_rev(store));
			apply_batch(i);
			break;
		case 'P':
			mvcc_publish(store);
			if (real_order)
				batch[i] = watch_builder_finish(wb, 1, mvcc_rev(store));
			break;
		case 'F':
			batch[i] = watch_builder_finish(wb, 1, mvcc_rev(store));
			cr_assert_not_null(batch[i], "a watcher is present: the batch is recorded");
			break;
		case 'D':
			if (batch[i])
				watch_hub_deliver(hub, batch[i]);
			batch[i] = NULL;
			break;
		case 'C':
			create(ids[i], starts[i]);
			break;
		case 'T':
			watch_hub_tick(hub, now_ms += 100);
			break;
		case 'S':
			wire_queued = 8u << 20;
			break;
		case 'U':
			wire_queued = 0;
			break;
		}
	}
	for (int i = 0; i < 3; i++)
		cr_assert_null(batch[i], "the schedule delivers every batch");
	wire_queued = 0;
	for (int round = 0; round < 4; round++) {
		bool all = true;
		for (int j = 0; j < nw; j++)
			all &= check(ids[j], starts[j], no_wait, name);
		if (all)
			break;
		watch_hub_tick(hub, now_ms += 100);
	}
	for (int j = 0; j < nw; j++)
		check(ids[j], starts[j], true, name);
}

static void sched_name(const struct sched *s, const int *ids, const int64_t *starts, int nw, char *out, size_t cap)
{
	size_t o = 0;

	for (int k = 0; k < s->n && o + 8 < cap; k++)
		o += (size_t)snprintf(out + o, cap - o, "%c%d ", s->act[k][0], s->act[k][1]);
	for (int j = 0; j < nw && o + 32 < cap; j++)
		o += (size_t)snprintf(out + o, cap - o, "[C%d: id %d start %lld]", j, ids[j], (long long)starts[j]);
}

static void push(struct sched *s, char a, int i)
{
	cr_assert_lt(s->n, 32);
	s->act[s->n][0] = a;
	s->act[s->n][1] = (char)i;
	s->n++;
}

/* All orders of B0 P0 B1 P1 B2 P2 with D0 D1 D2 merged in (each after its P, in order). */
static int real_orders(struct sched *out)
{
	int n = 0;

	/* after publish i, deliveries up to after[i] are done (non-decreasing, <= i + 1) */
	for (int d0 = 0; d0 <= 1; d0++)
		for (int d1 = d0; d1 <= 2; d1++) {
			struct sched s = {.n = 0};
			int done = 0;
			int after[3] = {d0, d1, 3};
			for (int i = 0; i < 3; i++) {
				push(&s, 'B', i);
				push(&s, 'P', i);
				for (; done < after[i]; done++)
					push(&s, 'D', done);
			}
			out[n++] = s;
		}
	return n;
}

static struct sched insert(const struct sched *s, int pos, char a, int i)
{
	struct sched o = {.n = 0};

	for (int k = 0; k <= s->n; k++) {
		if (k == pos)
			push(&o, a, i);
		if (k < s->n)
			push(&o, s->act[k][0], s->act[k][1]);
	}
	return o;
}

static struct sched with_ticks(const struct sched *s)
{
	struct sched o = {.n = 0};

	for (int k = 0; k < s->n; k++) {
		push(&o, s->act[k][0], s->act[k][1]);
		push(&o, 'T', 0);
	}
	return o;
}

TestSuite(watch, .init = setup, .fini = teardown);

static const int64_t start_revs[] = {0, 1, 2, BASE, BASE + 1, BASE + 2, BASE + 3, BASE + 4, BASE + 5};
#define NSTARTS (sizeof start_revs / sizeof start_revs[0])

/* One watcher (a key, or a range), created at every point of every real order, with every
 * start revision; without ticks (then nothing may wait), with a tick after every step, and
 * with its stream stalled from its creation until the end. */
Test(watch, one_watcher_every_order)
{
	struct sched orders[8];
	int norders = real_orders(orders), runs = 0;
	char name[512];

	cr_assert_eq(norders, 5);
	teardown();
	for (int o = 0; o < norders; o++)
		for (int pos = 0; pos <= orders[o].n; pos++)
			for (size_t si = 0; si < NSTARTS; si++)
				for (int mode = 0; mode < 3; mode++)
					for (int id = 0; id < 2; id++) {
						struct sched s = insert(&orders[o], pos, 'C', 0);
						if (mode == 1)
							s = with_ticks(&s);
						if (mode == 2)
							s = insert(&s, pos, 'S', 0);
						int ids[1] = {id};
						int64_t st[1] = {start_revs[si]};
						setup();
						sched_name(&s, ids, st, 1, name, sizeof name);
						run(&s, ids, st, 1, true, mode == 0, name);
						teardown();
						runs++;
					}
	cr_assert_eq(runs, 5 * 10 * (int)NSTARTS * 3 * 2);
	setup();
}

/* Up to four watchers on two streams, created at random points of random real orders, with
 * random ticks and stalls. */
Test(watch, many_watchers_random_orders)
{
	struct sched orders[8];
	int norders = real_orders(orders);
	char name[1024];
	unsigned seed = 12345;

	teardown();
	for (int run_i = 0; run_i < 20000; run_i++) {
		struct sched s = orders[rand_r(&seed) % norders];
		int nw = 1 + (int)(rand_r(&seed) % MAXW);
		int ids[MAXW];
		int64_t st[MAXW];
		bool ticks = false, stall = false;
		for (int j = 0; j < nw; j++) {
			ids[j] = j;
			st[j] = start_revs[rand_r(&seed) % NSTARTS];
			s = insert(&s, (int)(rand_r(&seed) % (unsigned)(s.n + 1)), 'C', j);
		}
		for (int k = rand_r(&seed) % 4; k > 0; k--) {
			ticks = true;
			s = insert(&s, (int)(rand_r(&seed) % (unsigned)(s.n + 1)), 'T', 0);
		}
		if (rand_r(&seed) % 4 == 0) {
			int a = (int)(rand_r(&seed) % (unsigned)(s.n + 1));
			s = insert(&s, a, 'S', 0);
			s = insert(&s, a + 1 + (int)(rand_r(&seed) % (unsigned)(s.n - a)), 'U', 0);
			stall = true;
		}
		setup();
		sched_name(&s, ids, st, nw, name, sizeof name);
		run(&s, ids, st, nw, true, !ticks && !stall, name);
		teardown();
	}
	setup();
}

/* Batches handed over before they are published (never done by the sequencer, but the hub
 * must not depend on it): a watcher (id 3) is present from the start, so every batch is
 * recorded; each batch is finished, then published and delivered in either order. */
Test(watch, delivered_before_published)
{
	char name[1024];
	unsigned seed = 777;

	teardown();
	for (int run_i = 0; run_i < 20000; run_i++) {
		struct sched s = {.n = 0};
		int pending = 0; /* finished, not yet delivered: from delivered on */
		int delivered = 0;
		push(&s, 'C', 0);
		for (int i = 0; i < 3; i++) {
			push(&s, 'B', i);
			push(&s, 'F', i);
			pending = i + 1;
			if (rand_r(&seed) % 2)
				push(&s, 'P', i);
			else {
				while (delivered < pending && rand_r(&seed) % 2)
					push(&s, 'D', delivered++);
				push(&s, 'P', i);
			}
			while (delivered < pending && rand_r(&seed) % 2)
				push(&s, 'D', delivered++);
		}
		while (delivered < 3)
			push(&s, 'D', delivered++);
		int nw = 1 + (int)(rand_r(&seed) % MAXW);
		int ids[MAXW] = {3};
		int64_t st[MAXW] = {0};
		for (int j = 1; j < nw; j++) {
			ids[j] = j - 1;
			st[j] = start_revs[rand_r(&seed) % NSTARTS];
			s = insert(&s, 1 + (int)(rand_r(&seed) % (unsigned)s.n), 'C', j);
		}
		for (int k = rand_r(&seed) % 3; k > 0; k--)
			s = insert(&s, (int)(rand_r(&seed) % (unsigned)(s.n + 1)), 'T', 0);
		setup();
		sched_name(&s, ids, st, nw, name, sizeof name);
		run(&s, ids, st, nw, false, false, name);
		teardown();
	}
	setup();
}

/* ---- bounds ---- */

/* what the bounds tests see: every response with events, summarized */
static struct {
	int responses;
	int64_t events, last_rev;
	size_t max_len;
	int max_revs;
	bool split; /* a revision's events in two responses */
	bool disorder;
} sum;

static void sum_send(void *arg, const void *owner, uint32_t sid, const uint8_t *msg, size_t len)
{
	Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(NULL, len, msg);
	int revs = 0;
	int64_t prev = 0;

	cr_assert_not_null(r);
	if (r->created && !r->canceled)
		seen[r->watch_id & 3].created = true;
	if (r->created && r->canceled)
		seen[r->watch_id & 3].canceled = true;
	for (size_t i = 0; i < r->n_events; i++) {
		int64_t rev = r->events[i]->kv->mod_revision;
		if (rev != prev) {
			revs++;
			if (i == 0 && rev == sum.last_rev)
				sum.split = true;
			if (rev < sum.last_rev)
				sum.disorder = true;
			prev = rev;
		}
		sum.events++;
		sum.last_rev = rev;
	}
	if (r->n_events) {
		sum.responses++;
		if (len > sum.max_len)
			sum.max_len = len;
		if (revs > sum.max_revs)
			sum.max_revs = revs;
	}
	etcdserverpb__watch_response__free_unpacked(r, NULL);
}

static void bounds_setup(void)
{
	setup();
	watch_hub_set_wire(hub, &(struct watch_wire){.send = sum_send, .queued = wire_queued_bytes});
	memset(&sum, 0, sizeof sum);
}

/* n revisions, each `per` puts of `vlen`-byte values to keys prefix/0..per-1 */
static void write_many(const char *prefix, int n, int per, size_t vlen)
{
	static uint8_t val[256 * 1024];
	char k[32];

	memset(val, 'v', sizeof val);
	cr_assert_leq(vlen, sizeof val);
	for (int i = 0; i < n; i++) {
		mvcc_txn_begin(store);
		for (int j = 0; j < per; j++) {
			int kl = snprintf(k, sizeof k, "%s%d", prefix, j);
			mvcc_put(store, (const uint8_t *)k, (size_t)kl, val, vlen, 0, NULL);
		}
		mvcc_txn_end(store);
	}
	mvcc_publish(store);
}

static void create_range(int id, const char *key, const char *end, int64_t start)
{
	Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
	uint8_t buf[128];

	cr.key = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
	if (end)
		cr.range_end = (ProtobufCBinaryData){strlen(end), (uint8_t *)end};
	cr.start_revision = start;
	cr.watch_id = id;
	req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	req.create_request = &cr;
	watch_stream_message(hub, (struct grpc_conn *)&conn_a, 1, buf, etcdserverpb__watch_request__pack(&req, buf));
}

/* ticks until the catch-up is done (bounded) */
static void catch_up_all(int64_t want_events)
{
	for (int i = 0; i < 10000 && sum.events < want_events; i++)
		watch_hub_tick(hub, now_ms += 100);
	cr_assert_eq(sum.events, want_events);
	cr_assert(!sum.split && !sum.disorder);
}

TestSuite(watch_bounds, .init = bounds_setup, .fini = teardown);

/* 5000 revisions of one small event: responses of at most 1000 revisions (etcd's
 * watchBatchMaxRevs), every event once and in order. */
Test(watch_bounds, catch_up_at_most_1000_revisions_per_response)
{
	write_many("k", 5000, 1, 10);
	create_range(0, "k0", NULL, 2);
	catch_up_all(5000);
	cr_assert_eq(sum.max_revs, 1000);
	cr_assert_eq(sum.responses, 5);
}

/* 200 revisions of 64 KiB: no response takes another revision once it holds 1 MiB. */
Test(watch_bounds, catch_up_responses_bounded_in_bytes)
{
	write_many("big", 200, 1, 64 * 1024);
	create_range(0, "big0", NULL, 2);
	catch_up_all(200);
	cr_assert_leq(sum.max_len, (1u << 20) + 64 * 1024 + 1024);
	cr_assert_geq(sum.responses, 200 * 64 / 1024);
}

/* A revision larger than the bound (300 puts of 16 KiB, 4.7 MiB) stays in one response
 * (no fragment asked for), between revisions that do not. */
Test(watch_bounds, a_large_revision_stays_whole)
{
	write_many("t/", 3, 300, 16 * 1024);
	create_range(0, "t/", "t0", 2);
	catch_up_all(900);
	cr_assert_eq(sum.responses, 3);
	cr_assert_eq(sum.max_revs, 1);
}

/* A key that changed at revision 2 and 200 000 revisions later: both events, in two walks'
 * worth of windows growing past the empty revisions between. */
Test(watch_bounds, sparse_history_far_behind)
{
	write_many("z", 1, 1, 1);
	write_many("other", 200000, 1, 1);
	write_many("z", 1, 1, 1);
	create_range(0, "z0", NULL, 2);
	catch_up_all(2);
	cr_assert_eq(sum.last_rev, mvcc_rev(store));
}

/* 65536 watchers on one stream; the next create is refused (created, canceled); after a
 * cancel there is room again. */
Test(watch_bounds, watchers_per_stream)
{
	for (int i = 0; i < 65536; i++) {
		seen[0].created = seen[0].canceled = false;
		create_range(0, "w", NULL, 0); /* id 0: the next free id */
		cr_assert(seen[0].created || seen[1].created || seen[2].created || seen[3].created);
		memset(seen, 0, sizeof seen);
	}
	cr_assert(watch_any());
	create_range(0, "w", NULL, 0);
	cr_assert(seen[3].canceled, "the create past the limit is refused (watch_id -1)");
	memset(seen, 0, sizeof seen);
	Etcdserverpb__WatchCancelRequest cc = ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;
	Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
	uint8_t buf[64];
	cc.watch_id = 100;
	req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
	req.cancel_request = &cc;
	watch_stream_message(hub, (struct grpc_conn *)&conn_a, 1, buf, etcdserverpb__watch_request__pack(&req, buf));
	create_range(0, "w", NULL, 0);
	cr_assert(!seen[3].canceled && (seen[0].created || seen[1].created || seen[2].created || seen[3].created));
}
