/* See seq.h. The queue is a Treiber stack: producers push a whole chain with one CAS, the
 * sequencer takes everything with one exchange and reverses it into arrival order. The
 * sequencer sleeps on an eventfd only after announcing it (`sleeping`) and re-checking the
 * queue, so a producer wakes it with one write(2) at most per sleep. */
#include "core/seq.h"

#include <errno.h>
#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/auth.h"
#include "core/auth_rpc.h"
#include "core/authsvc.h"
#include "core/autocompact.h"
#include "core/ckpt_worker.h"
#include "core/election.h"
#include "core/lease.h"
#include "core/lease_svc.h"
#include "core/log.h"
#include "core/maint.h"
#include "core/metrics.h"
#include "core/svc.h"
#include "rpc.pb-c.h"
#include "core/watch.h"
#include "storage/mvcc.h"
#include "storage/wal.h"

struct seq {
	_Alignas(64) _Atomic(struct seq_req *) head;
	_Alignas(64) _Atomic int sleeping;
	_Atomic bool stop;
	int efd;
	pthread_t thread;
	bool started;
	struct mvcc_store *store;
	struct kv_header_ids ids;
	int reactors;
	struct seq_deliver deliver;
	struct watch_builder *events;
	struct kv_sink watch_sink; /* the builder's */
	struct kv_sink sink;       /* ours: log record, then watchers */
	bool watching;
	struct wal *wal;
	struct wal_batch_enc enc;
	struct lease_table *leases;
	struct election *election;
	struct metrics_hist fsync_us, commit_us;
	_Atomic unsigned *alarms;
	unsigned alarms_logged; /* the alarm set the log last recorded */
	/* a full disk (seq_log_space): the log could not preallocate its next segment, so
	 * NOSPACE is raised (by us: disk_alarm) until it can; never logged, since it describes
	 * this moment's disk and is raised again at start if the disk is still full */
	bool disk_full, disk_alarm;
	uint64_t disk_retry_ms;
	uint64_t quota, quota_unchecked; /* below quota_unchecked no write can reach the quota */
	struct autocompact *autocompact;
	struct arena *arena; /* for work of our own: lease expiry */
	struct seq_req **out_first, **out_last; /* per reactor, one batch */
	/* checkpoints (owner: this thread, except ckpt_bytes, read by any) */
	struct ckpt_worker *ckpt;
	uint64_t ckpt_min_log_bytes, ckpt_every_revs;
	uint64_t log_bytes_since; /* log written since the last checkpoint's roll */
	bool compacted_since;     /* a compaction since then: the store may be much smaller than its log */
	int64_t ckpt_rev;         /* revision of the last checkpoint (or start) */
	struct seq_req *defrag_waiting, *snap_waiting; /* chains by ->next, arrival order reversed */
	_Atomic uint64_t ckpt_bytes;
	struct authsvc *auth;
	bool auth_changed; /* this batch changed auth: publish it with the batch */
	_Atomic uint64_t batches;
	_Atomic uint64_t applied;
};

#define SEQ_ENC_INITIAL (64 * 1024)
/* A batch stops taking requests once its log record passes this; the rest wait, in order,
 * for the next batch. One request's changes must fit WAL_PENDING_BYTES_MAX (1 GiB). */
#define SEQ_BATCH_BYTES (64u << 20)
#define SEQ_ENC_KEEP (16 * 1024 * 1024) /* a larger encode buffer is released after its batch */
/* A full disk: how often the log tries again to preallocate its next segment (a fallocate
 * that fails at once, so the cost is a syscall a second, not a spin). */
#define SEQ_DISK_RETRY_MS 1000
#define SEQ_NOSPACE (1u << 1) /* etcd's AlarmType NOSPACE */

/* Grows the record buffer so that a change of `bytes` key+value always fits. */
static void seq_enc_reserve(struct seq *s, size_t bytes)
{
	size_t need = s->enc.len + bytes + WAL_BATCH_CHANGE_OVERHEAD, cap = s->enc.cap;

	if (need <= cap)
		return;
	while (cap < need)
		cap *= 2;
	s->enc.buf = realloc(s->enc.buf, cap);
	if (!s->enc.buf)
		log_fatal("seq: out of memory for a log record of %zu bytes", cap);
	s->enc.cap = cap;
}

static void seq_sink_put(void *arg, const struct mvcc_kv *kv, const struct mvcc_kv *prev)
{
	struct seq *s = arg;

	if (prev && prev->lease && prev->lease != kv->lease)
		lease_detach(s->leases, prev->lease, kv->key, kv->key_len);
	if (kv->lease)
		lease_attach(s->leases, kv->lease, kv->key, kv->key_len);
	seq_enc_reserve(s, kv->key_len + kv->value_len);
	wal_batch_put(&s->enc, kv->mod_revision, kv->key, kv->key_len, kv->value, kv->value_len, kv->lease);
	if (s->watching)
		s->watch_sink.put(s->watch_sink.arg, kv, prev);
}

static void seq_sink_del(void *arg, const uint8_t *key, size_t key_len, int64_t rev, const struct mvcc_kv *prev)
{
	struct seq *s = arg;

	if (prev && prev->lease)
		lease_detach(s->leases, prev->lease, key, key_len);
	seq_enc_reserve(s, key_len);
	wal_batch_delete(&s->enc, rev, key, key_len);
	if (s->watching)
		s->watch_sink.del(s->watch_sink.arg, key, key_len, rev, prev);
}

static void seq_sink_compact(void *arg, int64_t rev, int64_t compact_rev)
{
	struct seq *s = arg;

	s->compacted_since = true;
	seq_enc_reserve(s, 0);
	wal_batch_compact(&s->enc, rev, compact_rev);
}

static void seq_sink_auth(void *arg, int64_t rev, const uint8_t *op, size_t len)
{
	struct seq *s = arg;

	seq_enc_reserve(s, len);
	wal_batch_auth(&s->enc, rev, op, len);
}

static bool seq_sink_lease_exists(void *arg, int64_t id)
{
	struct seq *s = arg;

	return lease_exists(s->leases, id);
}

static void seq_sink_lease_grant(void *arg, int64_t rev, int64_t id, int64_t ttl)
{
	struct seq *s = arg;

	seq_enc_reserve(s, 8);
	wal_batch_lease_grant(&s->enc, rev, id, ttl);
}

static void seq_sink_lease_revoke(void *arg, int64_t rev, int64_t id)
{
	struct seq *s = arg;

	seq_enc_reserve(s, 0);
	wal_batch_lease_revoke(&s->enc, rev, id);
}

static uint64_t seq_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t seq_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct seq *seq_new(struct mvcc_store *store, struct wal *wal, struct lease_table *leases,
		    const struct kv_header_ids *ids, int reactors, const struct seq_deliver *deliver)
{
	struct seq *s = aligned_alloc(64, (sizeof *s + 63) & ~(size_t)63);

	if (!s)
		log_fatal("seq: out of memory");
	memset(s, 0, sizeof *s);
	atomic_init(&s->head, NULL);
	atomic_init(&s->sleeping, 0);
	atomic_init(&s->stop, false);
	atomic_init(&s->batches, 0);
	atomic_init(&s->applied, 0);
	s->efd = eventfd(0, EFD_CLOEXEC);
	if (s->efd < 0)
		log_fatal("seq: eventfd: %s", strerror(errno));
	s->started = false;
	s->store = store;
	s->ids = *ids;
	s->reactors = reactors;
	s->deliver = *deliver;
	s->events = watch_builder_new();
	watch_builder_sink(s->events, &s->watch_sink);
	s->sink = (struct kv_sink){
		.put = seq_sink_put,
		.del = seq_sink_del,
		.compact = seq_sink_compact,
		.lease_exists = seq_sink_lease_exists,
		.lease_grant = seq_sink_lease_grant,
		.lease_revoke = seq_sink_lease_revoke,
		.auth = seq_sink_auth,
		.arg = s,
	};
	s->leases = leases;
	s->election = election_new();
	s->arena = arena_new(64 * 1024);
	s->wal = wal;
	s->enc.cap = SEQ_ENC_INITIAL;
	s->enc.buf = malloc(s->enc.cap);
	if (!s->enc.buf)
		log_fatal("seq: out of memory");
	s->out_first = calloc((size_t)reactors, sizeof *s->out_first);
	s->out_last = calloc((size_t)reactors, sizeof *s->out_last);
	if (!s->out_first || !s->out_last)
		log_fatal("seq: out of memory");
	return s;
}

static void seq_wake(struct seq *s)
{
	uint64_t one = 1;

	if (write(s->efd, &one, sizeof one) < 0 && errno != EAGAIN)
		log_fatal("seq: eventfd write: %s", strerror(errno));
}

void seq_submit(struct seq *s, struct seq_req *first, struct seq_req *last)
{
	/* The stack holds newest first: link our chain reversed in front of the old head. */
	struct seq_req *rev = NULL, *n;

	for (struct seq_req *r = first; r; r = n) {
		n = r->next;
		r->next = rev;
		rev = r;
		if (r == last)
			break;
	}
	/* rev is now `last`, and `first` ends the reversed chain */
	struct seq_req *old = atomic_load_explicit(&s->head, memory_order_relaxed);
	do {
		first->next = old;
	} while (!atomic_compare_exchange_weak(&s->head, &old, rev)); /* seq_cst: pairs with `sleeping` */
	if (atomic_load(&s->sleeping) && atomic_exchange(&s->sleeping, 0))
		seq_wake(s);
}

static struct seq_req *seq_take(struct seq *s)
{
	struct seq_req *list = atomic_exchange(&s->head, NULL), *fifo = NULL, *n;

	for (; list; list = n) {
		n = list->next;
		list->next = fifo;
		fifo = list;
	}
	return fifo;
}

void seq_set_alarms(struct seq *s, _Atomic unsigned *alarms)
{
	s->alarms = alarms;
	s->alarms_logged = atomic_load(alarms);
}

void seq_set_quota(struct seq *s, uint64_t bytes, uint64_t max_request_bytes)
{
	s->quota = bytes;
	s->quota_unchecked = bytes > max_request_bytes ? bytes - max_request_bytes : 0;
}

static bool seq_over_quota(const struct seq *s, const struct seq_req *r)
{
	uint64_t in_use = mvcc_bytes_in_use(s->store);

	/* etcd's cost of a write is its size: that much more the store would hold */
	return s->quota && in_use >= s->quota_unchecked &&
	       in_use + protobuf_c_message_get_packed_size(r->msg) > s->quota;
}

void seq_set_auth(struct seq *s, struct authsvc *a) { s->auth = a; }

void seq_set_autocompact(struct seq *s, bool periodic, int64_t retention)
{
	autocompact_free(s->autocompact);
	s->autocompact = autocompact_new(periodic, retention, seq_clock_ms());
}

/* --auto-compaction-*: the cut is logged with the batch like a client's Compact */
static void seq_autocompact(struct seq *s, uint64_t now_ms)
{
	int64_t target = autocompact_tick(s->autocompact, now_ms, mvcc_rev(s->store), mvcc_compact_rev(s->store));

	if (target <= 0 || mvcc_compact(s->store, target) != 0)
		return;
	seq_sink_compact(s, mvcc_rev(s->store), target);
	log_info("auto compaction: compacted at revision %lld", (long long)target);
}

static bool seq_ops_put(Etcdserverpb__RequestOp **ops, size_t n);
static void seq_answer_defrag(struct seq *s, struct seq_req *r);

static bool seq_txn_puts(const Etcdserverpb__TxnRequest *t)
{
	return seq_ops_put(t->success, t->n_success) || seq_ops_put(t->failure, t->n_failure);
}

static bool seq_ops_put(Etcdserverpb__RequestOp **ops, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT ||
		    (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN && seq_txn_puts(ops[i]->request_txn)))
			return true;
	return false;
}

/* etcd's capped applier: with NOSPACE, what adds data is refused; with CORRUPT, all. */
static bool seq_refused(struct seq *s, struct seq_req *r)
{
	unsigned alarms = s->alarms ? atomic_load(s->alarms) : 0;

	if (alarms & (1u << 2)) {
		r->code = GRPC_DATA_LOSS;
		r->message = "etcdserver: corrupt cluster";
	} else if (r->method == KV_PUT || r->method == SVC_LEASE_GRANT ||
		   (r->method == KV_TXN && seq_txn_puts((const Etcdserverpb__TxnRequest *)r->msg))) {
		if (!(alarms & (1u << 1)) && seq_over_quota(s, r)) {
			atomic_fetch_or(s->alarms, 1u << 1);
			log_warn("quota of %llu bytes reached (%llu in use): NOSPACE alarm raised, writes refused",
				 (unsigned long long)s->quota, (unsigned long long)mvcc_bytes_in_use(s->store));
			alarms |= 1u << 1;
		}
		if (!(alarms & (1u << 1)))
			return false;
		r->code = GRPC_RESOURCE_EXHAUSTED;
		r->message = "etcdserver: mvcc: database space exceeded";
	} else {
		return false;
	}
	r->resp = NULL;
	r->resp_len = 0;
	return true;
}

/* Defragment and Snapshot wait for a checkpoint job of their own (seq_ckpt_poll). */
static bool seq_park_for_checkpoint(struct seq *s, struct seq_req *r)
{
	r->resp = NULL;
	r->resp_len = 0;
	r->code = GRPC_OK;
	if (!s->ckpt) {
		if (r->method == SVC_MAINT_DEFRAGMENT)
			return seq_answer_defrag(s, r), false;
		r->code = GRPC_UNAVAILABLE;
		r->message = "uetcd: snapshot needs a data directory";
		return false;
	}
	struct seq_req **list = r->method == SVC_MAINT_DEFRAGMENT ? &s->defrag_waiting : &s->snap_waiting;
	r->next = *list;
	*list = r;
	return true;
}

/* etcd's lease checks with auth on: revoking a lease or putting a key with it needs write
 * permission on every key attached to it, asking its time-to-live with the keys needs read
 * permission on them. */
struct seq_lease_auth {
	const struct auth *a;
	const struct seq_req *r;
	unsigned want;
	int rc;
};

static void seq_lease_key_allowed(void *arg, const uint8_t *key, size_t len)
{
	struct seq_lease_auth *c = arg;

	if (!c->rc)
		c->rc = auth_check_range(c->a, c->r->user, c->r->user_len, key, len, NULL, 0, c->want);
}

static bool seq_lease_allowed(struct seq *s, const struct seq_req *r, struct kv_result *res)
{
	struct seq_lease_auth c = {.r = r};
	int64_t id = 0;

	if (!s->auth || !r->msg || !auth_is_enabled(c.a = authsvc_writer(s->auth)))
		return true;
	if (r->method == SVC_LEASE_REVOKE) {
		id = ((const Etcdserverpb__LeaseRevokeRequest *)r->msg)->id;
		c.want = AUTH_WRITE;
	} else if (r->method == SVC_LEASE_TTL && ((const Etcdserverpb__LeaseTimeToLiveRequest *)r->msg)->keys) {
		id = ((const Etcdserverpb__LeaseTimeToLiveRequest *)r->msg)->id; /* only when it lists them */
		c.want = AUTH_READ;
	} else if (r->method == KV_PUT) {
		id = ((const Etcdserverpb__PutRequest *)r->msg)->lease;
		c.want = AUTH_WRITE;
	}
	if (!id)
		return true;
	lease_keys(s->leases, id, seq_lease_key_allowed, &c);
	if (!c.rc)
		return true;
	res->code = (enum grpc_code)auth_grpc_code(AUTH_ERR_PERMISSION_DENIED);
	res->message = auth_strerror(AUTH_ERR_PERMISSION_DENIED);
	res->resp = NULL;
	return false;
}

/* Returns true when the call was parked (a Lock or Campaign waiting for its turn). */
static bool seq_apply(struct seq *s, struct seq_req *r, const struct kv_sink *sink, uint64_t now_ms)
{
	struct kv_result res;

	if (r->cancel) { /* a Lock or Campaign call ended: if it was still waiting, it is gone */
		election_cancel(s->election, s->store, r, sink);
		r->code = GRPC_OK;
		r->resp = NULL;
		r->resp_len = 0;
		return false;
	}
	if (r->method == SVC_MAINT_DEFRAGMENT || r->method == SVC_MAINT_SNAPSHOT)
		return seq_park_for_checkpoint(s, r);
	if (r->msg && r->method != SVC_LEASE_KEEPALIVE && r->method != SVC_LEASE_TTL &&
	    r->method != SVC_LEASE_LEASES && seq_refused(s, r))
		return false;
	if (!r->msg) { /* the end of a streaming call: passes through in order */
		r->code = GRPC_OK;
		r->resp = NULL;
		r->resp_len = 0;
		return false;
	}
	if (s->auth && (!auth_rpc_still_valid(s->auth, r, &res) || !seq_lease_allowed(s, r, &res))) {
		r->code = res.code;
		r->message = res.message;
		r->resp = NULL;
		r->resp_len = 0;
		return false;
	}
	if (r->method >= SVC_LOCK_LOCK && r->method <= SVC_ELECTION_RESIGN)
		return election_apply(s->election, s->store, r, sink, &s->ids);
	if (r->method < KV_METHODS) {
		kv_write((enum kv_method)r->method, s->store, r->msg, r->arena, sink, &res);
		metrics_mvcc_count(&metrics_seq_mvcc, r->method, r->msg, res.resp);
	} else if (r->method == SVC_MAINT_ALARM) {
		static _Atomic unsigned none;
		res.resp = maint_alarm(&s->ids, mvcc_rev(s->store), s->alarms ? s->alarms : &none, r->msg, r->arena,
				       &res);
	} else if (r->method >= SVC_AUTH_ENABLE && r->method <= SVC_AUTH_ROLE_REVOKE_PERMISSION) {
		bool changed = false;
		if (s->auth)
			auth_rpc_apply(s->auth, s->store, r, sink, &s->ids, &res, &changed);
		else
			res = (struct kv_result){.code = GRPC_UNIMPLEMENTED, .message = "auth is not configured"};
		s->auth_changed |= changed;
	} else {
		lease_svc_apply(s->leases, s->store, r->method, r->msg, r->arena, sink, &s->ids, now_ms, &res);
	}
	r->code = res.code;
	r->message = res.message;
	r->resp = NULL;
	r->resp_len = 0;
	if (res.code != GRPC_OK)
		return false;
	if (r->method < KV_METHODS)
		kv_fill_header(res.resp, (enum kv_method)r->method, &s->ids);
	/* Packed now, before the publish lets anything it points at be reclaimed. */
	r->resp_len = protobuf_c_message_get_packed_size(res.resp);
	r->resp = arena_alloc(r->arena, r->resp_len ? r->resp_len : 1);
	protobuf_c_message_pack(res.resp, r->resp);
	return false;
}

static void seq_answer_defrag(struct seq *s, struct seq_req *r)
{
	Etcdserverpb__DefragmentResponse resp;

	etcdserverpb__defragment_response__init(&resp);
	resp.header = kv_header(r->arena, &s->ids, mvcc_rev(s->store));
	r->code = GRPC_OK;
	r->resp_len = protobuf_c_message_get_packed_size(&resp.base);
	r->resp = arena_alloc(r->arena, r->resp_len ? r->resp_len : 1);
	protobuf_c_message_pack(&resp.base, r->resp);
}

/* Hands finished requests back to their reactors, one chain per reactor. */
static void seq_deliver_reqs(struct seq *s, struct seq_req *list)
{
	struct seq_req *next;

	for (struct seq_req *r = list; r; r = next) {
		next = r->next;
		r->next = NULL;
		if (s->out_last[r->reactor])
			s->out_last[r->reactor]->next = r;
		else
			s->out_first[r->reactor] = r;
		s->out_last[r->reactor] = r;
	}
	for (int i = 0; i < s->reactors; i++) {
		if (!s->out_first[i])
			continue;
		s->deliver.requests(s->deliver.arg, i, s->out_first[i]);
		s->out_first[i] = s->out_last[i] = NULL;
	}
}

/* ---- a full disk ---- */

static unsigned seq_alarms_durable(const struct seq *s)
{
	unsigned a = atomic_load(s->alarms);

	return s->disk_alarm ? a & ~SEQ_NOSPACE : a;
}

/* The log's "no space for the next segment": recoverable (the log is not failed). */
static bool seq_no_space(const struct seq *s, int rc)
{
	return (rc == -ENOSPC || rc == -EDQUOT) && !wal_error(s->wal);
}

static void seq_disk_alarm(struct seq *s, bool full)
{
	unsigned a = s->alarms ? atomic_load(s->alarms) : 0;

	if (s->disk_alarm && !(a & SEQ_NOSPACE))
		s->disk_alarm = false; /* disarmed by a client: raised again below while still full */
	if (full && !(a & SEQ_NOSPACE) && s->alarms) {
		atomic_fetch_or(s->alarms, SEQ_NOSPACE);
		s->disk_alarm = true;
	}
	if (!full && s->disk_alarm) {
		atomic_fetch_and(s->alarms, ~SEQ_NOSPACE);
		s->disk_alarm = false;
	}
	if (full != s->disk_full)
		log_warn(full ? "the disk is full: the log cannot preallocate its next segment; NOSPACE alarm raised, "
				"writes that add data are refused (reads, watches, deletes and compaction go on) until "
				"space is freed"
			      : "disk space is back: the log's next segment is preallocated; NOSPACE alarm cleared, "
				"writes accepted again");
	s->disk_full = full;
}

/* Before each batch: while the log's next segment is not preallocated (a full disk), the
 * NOSPACE alarm caps writes (etcd's capped applier: seq_refused), so the current segment
 * (up to 64 MiB of room) takes only what frees space. Tried again every SEQ_DISK_RETRY_MS;
 * once it succeeds the alarm clears by itself: unlike etcd's quota alarm, this one
 * describes the disk, not the data, so nobody has to disarm it. */
static void seq_log_space(struct seq *s, uint64_t now_ms)
{
	if (!s->wal || wal_error(s->wal))
		return;
	if (wal_spare_ready(s->wal)) {
		if (s->disk_full)
			seq_disk_alarm(s, false);
		return;
	}
	if (s->disk_full && now_ms < s->disk_retry_ms) {
		seq_disk_alarm(s, true); /* (a disarm meanwhile) */
		return;
	}
	s->disk_retry_ms = now_ms + SEQ_DISK_RETRY_MS;
	seq_disk_alarm(s, wal_spare_prepare(s->wal) != 0);
}

/* A batch already applied whose record needs a segment the disk has no room for: it can be
 * neither undone nor acknowledged, so the sequencer waits for space (reads and watches go
 * on; the writers of this batch wait for their answer), trying every SEQ_DISK_RETRY_MS.
 * Only a batch bigger than what the current segment has left gets here: the alarm keeps
 * data out once the spare is missing. */
static int seq_commit_when_space(struct seq *s)
{
	int rc = -ENOSPC;

	seq_disk_alarm(s, true);
	log_warn("a batch waits for disk space: its log record does not fit the current segment");
	while (seq_no_space(s, rc)) {
		for (int i = 0; i < SEQ_DISK_RETRY_MS / 50 && !atomic_load(&s->stop); i++)
			usleep(50 * 1000);
		if (atomic_load(&s->stop))
			log_fatal("stopping while a batch waits for disk space: it was not acknowledged");
		rc = wal_commit(s->wal);
	}
	if (!rc)
		seq_log_space(s, seq_clock_ms());
	return rc;
}

/* Applies a batch; returns the requests it left for the next one (record size limit). */
static struct seq_req *seq_run_batch(struct seq *s, struct seq_req *batch, uint64_t now_ms)
{
	struct seq_req *carry = NULL;
	struct seq_req *next;

	uint64_t n = 0;
	int64_t last_rev;
	ssize_t len;

	seq_log_space(s, now_ms);
	/* Watch events are captured only while someone watches; a watcher that appears during
	 * the batch reads its revisions from history (watch_builder_finish tells the hubs). */
	s->watching = watch_builder_begin(s->events, mvcc_rev(s->store));
	wal_batch_begin(&s->enc, s->enc.buf, s->enc.cap, mvcc_rev(s->store));
	struct seq_req *answered = NULL, **tail = &answered;
	for (struct seq_req *r = batch; r; r = next, n++) {
		next = r->next;
		if (s->enc.len > SEQ_BATCH_BYTES) {
			carry = r;
			break;
		}
		if (seq_apply(s, r, &s->sink, now_ms))
			continue; /* parked: answered by election_wake in a later batch */
		*tail = r;
		tail = &r->next;
	}
	*tail = NULL;
	/* leases whose TTL ran out are revoked here, each in its own revision */
	for (int64_t id; (id = lease_next_expired(s->leases, now_ms));)
		lease_svc_expire(s->leases, s->store, id, s->arena, &s->sink);
	if (s->autocompact)
		seq_autocompact(s, now_ms);
	if (s->alarms && seq_alarms_durable(s) != s->alarms_logged) {
		/* an alarm raised (quota) or changed (Alarm calls) in this batch: durable with it */
		s->alarms_logged = seq_alarms_durable(s);
		seq_enc_reserve(s, 0);
		wal_batch_alarms(&s->enc, mvcc_rev(s->store), s->alarms_logged);
	}
	arena_reset(s->arena);
	if (!batch && !s->enc.count)
		return carry;
	/* parked locks and campaigns whose turn this batch brought */
	*tail = election_wake(s->election, s->store, &s->ids);
	batch = answered;
	/* Durability point: one record and one fdatasync for the whole batch, before anyone
	 * can see it or hear back. A failure here is fatal: never acknowledged, never retried. */
	len = wal_batch_end(&s->enc, &last_rev);
	if (len < 0)
		log_fatal("seq: encoding the batch's log record: %s", strerror((int)-len));
	if (s->enc.count && s->wal) {
		struct iovec iov = {.iov_base = s->enc.buf, .iov_len = (size_t)len};
		uint64_t t0 = seq_clock_us();
		int rc = wal_append(s->wal, WAL_REC_BATCH, last_rev, &iov, 1);
		uint64_t t1 = seq_clock_us();
		if (rc == 0)
			rc = wal_commit(s->wal);
		if (rc < 0 && seq_no_space(s, rc))
			rc = seq_commit_when_space(s);
		if (rc < 0)
			log_fatal("log write failed, exiting without acknowledging the batch: %s", strerror(-rc));
		uint64_t t2 = seq_clock_us();
		metrics_observe(&s->fsync_us, metrics_etcd_bounds_us, metrics_etcd_nbounds, t2 - t1);
		metrics_observe(&s->commit_us, metrics_etcd_bounds_us, metrics_etcd_nbounds, t2 - t0);
	}
	if (s->enc.cap > SEQ_ENC_KEEP) {
		free(s->enc.buf);
		s->enc.cap = SEQ_ENC_INITIAL;
		s->enc.buf = malloc(s->enc.cap);
		if (!s->enc.buf)
			log_fatal("seq: out of memory");
	}
	if (s->auth_changed) { /* durable now: readers may see it (retired memory goes with the publish's epoch) */
		authsvc_publish(s->auth);
		s->auth_changed = false;
	}
	mvcc_publish(s->store);
	atomic_fetch_add_explicit(&s->batches, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->applied, n, memory_order_relaxed);
	s->log_bytes_since += (uint64_t)len;
	seq_deliver_reqs(s, batch);
	/* only now, after the publish: the hand-off to the watch hubs depends on it */
	struct watch_batch *wb = watch_builder_finish(s->events, s->reactors, mvcc_rev(s->store));
	if (wb)
		for (int i = 0; i < s->reactors; i++)
			s->deliver.events(s->deliver.arg, i, wb);
	return carry;
}

static void seq_ckpt_poll(struct seq *s);

static void *seq_main(void *arg)
{
	struct seq *s = arg;

	struct seq_req *carry = NULL;

	seq_log_space(s, seq_clock_ms()); /* a disk already full at start: the alarm shows at once */
	while (!atomic_load(&s->stop)) {
		struct seq_req *batch = carry ? carry : seq_take(s);
		carry = NULL;
		if (!batch) {
			atomic_store(&s->sleeping, 1);
			batch = seq_take(s);
			if (!batch) {
				/* sleep until a request, or until the next lease could expire */
				struct pollfd pfd = {.fd = s->efd, .events = POLLIN};
				uint64_t now = seq_clock_ms();
				int64_t wait_ms = lease_wait_ms(s->leases, now);
				if (s->autocompact) {
					int64_t ac = autocompact_wait_ms(s->autocompact, now);
					wait_ms = wait_ms < 0 || ac < wait_ms ? ac : wait_ms;
				}
				if (poll(&pfd, 1, (int)(wait_ms < 0 ? -1 : wait_ms)) > 0) {
					uint64_t v;
					if (read(s->efd, &v, sizeof v) < 0 && errno != EINTR)
						log_fatal("seq: eventfd read: %s", strerror(errno));
				}
				atomic_store(&s->sleeping, 0);
				batch = seq_take(s);
			}
			atomic_store(&s->sleeping, 0);
		}
		carry = seq_run_batch(s, batch, seq_clock_ms());
		if (s->ckpt)
			seq_ckpt_poll(s);
	}
	return NULL;
}

int seq_start(struct seq *s)
{
	int rc = pthread_create(&s->thread, NULL, seq_main, s);

	if (rc)
		return -rc;
	pthread_setname_np(s->thread, "uetcd-seq");
	s->started = true;
	return 0;
}

void seq_stop(struct seq *s)
{
	if (!s->started)
		return;
	atomic_store(&s->stop, true);
	seq_wake(s);
	pthread_join(s->thread, NULL);
	s->started = false;
}

void seq_free(struct seq *s)
{
	if (!s)
		return;
	seq_stop(s);
	close(s->efd);
	autocompact_free(s->autocompact);
	free(s->out_first);
	free(s->out_last);
	watch_builder_free(s->events);
	election_free(s->election);
	arena_free(s->arena);
	free(s->enc.buf);
	free(s);
}

uint64_t seq_batches(const struct seq *s) { return atomic_load_explicit(&s->batches, memory_order_relaxed); }

uint64_t seq_applied(const struct seq *s) { return atomic_load_explicit(&s->applied, memory_order_relaxed); }

const struct metrics_hist *seq_fsync_hist(const struct seq *s) { return &s->fsync_us; }
const struct metrics_hist *seq_commit_hist(const struct seq *s) { return &s->commit_us; }

/* ---- checkpoints ---- */

void seq_set_checkpoints(struct seq *s, struct ckpt_worker *w, uint64_t min_log_bytes, uint64_t snapshot_count,
			 uint64_t ckpt_bytes)
{
	s->ckpt = w;
	s->ckpt_min_log_bytes = min_log_bytes;
	s->ckpt_every_revs = snapshot_count;
	s->ckpt_rev = mvcc_rev(s->store);
	atomic_store(&s->ckpt_bytes, ckpt_bytes);
}

void seq_ckpt_done(void *arg) { seq_wake(arg); }

uint64_t seq_db_size(const struct seq *s)
{
	return (s->wal ? wal_used_bytes(s->wal) : 0) + atomic_load_explicit(&s->ckpt_bytes, memory_order_relaxed);
}

static bool seq_ckpt_due(const struct seq *s)
{
	uint64_t last = atomic_load_explicit(&s->ckpt_bytes, memory_order_relaxed);
	uint64_t revs = (uint64_t)(mvcc_rev(s->store) - s->ckpt_rev);

	/* Writing a checkpoint costs about its size: waiting until the log has grown by four
	 * times that (twice, for the revision rule) keeps the extra writing to a quarter (a
	 * half) of what the log takes, whatever the store's size; the price is a longer log to
	 * replay at start-up (at most 4x the checkpoint, or min_log_bytes). The revision rule
	 * also waits for min_log_bytes: below it, replay costs less than a checkpoint. */
	if (!s->log_bytes_since)
		return false;
	if (s->ckpt_min_log_bytes && s->log_bytes_since >= (4 * last > s->ckpt_min_log_bytes ? 4 * last : s->ckpt_min_log_bytes))
		return true;
	/* After a compaction the store (what a checkpoint would write) may be far smaller than
	 * the log since the last one (what start-up would replay): once the log is the larger,
	 * a checkpoint costs less than the replay it saves. */
	uint64_t now = mvcc_bytes_in_use(s->store);
	if (s->ckpt_min_log_bytes && s->compacted_since &&
	    s->log_bytes_since >= (now > s->ckpt_min_log_bytes ? now : s->ckpt_min_log_bytes))
		return true;
	return s->ckpt_every_revs && revs >= s->ckpt_every_revs && s->log_bytes_since >= 2 * last &&
	       s->log_bytes_since >= s->ckpt_min_log_bytes;
}

/* Starts the next job if one is wanted: a snapshot someone waits for, else a checkpoint. */
static void seq_ckpt_start(struct seq *s)
{
	struct ckpt_job *j;

	if (!s->snap_waiting && !s->defrag_waiting && !seq_ckpt_due(s))
		return;
	if (!(j = calloc(1, sizeof *j)) || !(j->leases = malloc((lease_count(s->leases) + 1) * sizeof *j->leases)))
		log_fatal("seq: out of memory");
	j->nleases = lease_export(s->leases, j->leases);
	j->alarms = s->alarms_logged;
	if (s->auth) {
		const struct auth *a = authsvc_writer(s->auth);
		if (auth_is_enabled(a) || auth_user_count(a) || auth_role_count(a) || auth_revision(a) > 1) {
			j->auth_len = auth_state_size(a);
			if (!(j->auth = malloc(j->auth_len)) || auth_state_encode(a, j->auth, j->auth_len) != (ssize_t)j->auth_len)
				log_fatal("seq: encoding the auth state for a checkpoint");
		}
	}
	j->fd = -1;
	if (s->snap_waiting) {
		j->kind = CKPT_JOB_SNAPSHOT;
		j->waiting = s->snap_waiting;
		s->snap_waiting = NULL;
	} else {
		/* everything so far is durable and published: the checkpoint covers the log up to
		 * here, and replay continues with the segment the roll starts */
		int64_t seg = wal_roll(s->wal);
		if (seg < 0 && seq_no_space(s, (int)seg)) {
			/* no segment to continue in: no checkpoint until there is space */
			log_warn("checkpoint skipped: no disk space for the log's next segment");
			s->log_bytes_since = 0;
			seq_disk_alarm(s, true);
			for (struct seq_req *r = s->defrag_waiting, *next; r; r = next) {
				next = r->next;
				r->code = GRPC_RESOURCE_EXHAUSTED;
				r->message = "etcdserver: mvcc: database space exceeded";
				r->resp = NULL;
				r->resp_len = 0;
			}
			seq_deliver_reqs(s, s->defrag_waiting);
			s->defrag_waiting = NULL;
			free(j->leases);
			free(j->auth);
			free(j);
			return;
		}
		if (seg < 0)
			log_fatal("log: cannot start a segment for a checkpoint: %s", strerror((int)-seg));
		j->kind = CKPT_JOB_CHECKPOINT;
		j->log_seq = (uint64_t)seg;
		j->waiting = s->defrag_waiting;
		s->defrag_waiting = NULL;
		s->log_bytes_since = 0;
		s->compacted_since = false;
		s->ckpt_rev = mvcc_rev(s->store);
	}
	/* the view the job walks keeps every chain whole until the job is done: compactions
	 * meanwhile move the compacted revision only (see mvcc_compact_hold), so no compaction
	 * rate can make a checkpoint start over */
	mvcc_compact_hold(s->store);
	ckpt_worker_submit(s->ckpt, j, s->store);
}

static struct seq_req *seq_ckpt_finished(struct seq *s, struct ckpt_job *j)
{
	struct seq_req *answered = NULL, *next;

	if (j->rc == 0) {
		int removed = wal_remove_segments_below(s->wal, j->log_seq);
		if (removed < 0)
			log_error("checkpoint at revision %lld: removing covered log segments: %s", (long long)j->hdr.rev,
				  strerror(-removed));
		atomic_store(&s->ckpt_bytes, j->bytes);
		log_info("checkpoint at revision %lld (compacted %lld): %llu bytes in %llu ms, %d log segment(s) "
			 "removed",
			 (long long)j->hdr.rev, (long long)j->hdr.compact_rev, (unsigned long long)j->bytes,
			 (unsigned long long)j->took_ms, removed > 0 ? removed : 0);
	} else if (j->rc == -MVCC_ECOMPACTED) {
		/* cannot happen while compactions are held (seq_ckpt_start); kept as the safe answer */
		log_info("checkpoint at revision %lld overtaken by a compaction; trying again", (long long)j->view.rev);
		s->log_bytes_since = s->ckpt_min_log_bytes ? s->ckpt_min_log_bytes : 1;
	} else {
		log_error("checkpoint at revision %lld failed: %s (the log keeps every segment)", (long long)j->view.rev,
			  strerror(-j->rc));
	}
	for (struct seq_req *r = j->waiting; r; r = next) {
		next = r->next;
		if (j->rc == -MVCC_ECOMPACTED) {
			r->next = s->defrag_waiting;
			s->defrag_waiting = r;
			continue;
		}
		if (j->rc == 0) {
			seq_answer_defrag(s, r);
		} else {
			r->code = GRPC_INTERNAL;
			r->message = "uetcd: defragment: writing the checkpoint failed (see the server log)";
		}
		r->next = answered;
		answered = r;
	}
	return answered;
}

static struct seq_req *seq_snapshot_finished(struct seq *s, struct ckpt_job *j)
{
	struct seq_req *answered = NULL, *next;

	if (j->rc && j->rc != -MVCC_ECOMPACTED)
		log_error("snapshot at revision %lld failed: %s", (long long)j->view.rev, strerror(-j->rc));
	for (struct seq_req *r = j->waiting; r; r = next) {
		next = r->next;
		if (j->rc == -MVCC_ECOMPACTED) {
			r->next = s->snap_waiting;
			s->snap_waiting = r;
			continue;
		}
		if (j->rc == 0) {
			/* each stream reads at its own offsets (pread): one open file serves all */
			r->fd = answered || next ? dup(j->fd) : j->fd;
			if (r->fd == j->fd)
				j->fd = -1;
			r->fd_bytes = j->bytes;
		}
		if (r->fd < 0) {
			r->code = GRPC_INTERNAL;
			r->message = "uetcd: snapshot: writing the file failed (see the server log)";
		} else {
			r->code = GRPC_OK;
		}
		r->next = answered;
		answered = r;
	}
	if (j->fd >= 0)
		close(j->fd);
	return answered;
}

static void seq_ckpt_poll(struct seq *s)
{
	struct ckpt_job *j = ckpt_worker_take_done(s->ckpt);

	if (j) {
		mvcc_compact_release(s->store); /* the cuts held back while the job walked its view */
		struct seq_req *answered =
			j->kind == CKPT_JOB_CHECKPOINT ? seq_ckpt_finished(s, j) : seq_snapshot_finished(s, j);
		if (answered)
			seq_deliver_reqs(s, answered);
		free(j->leases);
		free(j->auth);
		free(j);
	}
	if (!ckpt_worker_busy(s->ckpt))
		seq_ckpt_start(s);
}
