/* See maint.h. Status reports the etcd API version we implement (kube-apiserver turns
 * features off below 3.5.13), this member as leader, and a raft index that grows with
 * every applied write, as a client watching it expects. */
#include "core/maint.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/arena.h"
#include "core/kv.h"
#include "core/svc.h"
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include "core/config.h"
#include "core/seq.h"
#include "core/server.h"
#include "rpc.pb-c.h"
#include "storage/mvcc.h"
#include "storage/wal.h"


static Etcdserverpb__ResponseHeader *maint_header(const struct server *srv, const struct mvcc_view *v,
						  struct arena *a)
{
	return kv_header(a, &srv->ids, v->rev);
}

void maint_db_sizes(const struct server *srv, uint64_t *size, uint64_t *in_use)
{
	*size = seq_db_size(srv->seq);
	*in_use = mvcc_bytes_in_use(srv->store);
}

struct ProtobufCMessage *maint_status(const struct server *srv, const struct mvcc_view *v, struct arena *a)
{
	Etcdserverpb__StatusResponse *r = arena_alloc(a, sizeof *r);
	Etcdserverpb__DowngradeInfo *d = arena_alloc(a, sizeof *d);

	etcdserverpb__status_response__init(r);
	etcdserverpb__downgrade_info__init(d);
	r->header = maint_header(srv, v, a);
	r->version = (char *)UETCD_ETCD_API_VERSION;
	r->storageversion = (char *)UETCD_ETCD_API_VERSION;
	r->leader = srv->ids.member_id;
	r->raftterm = srv->ids.raft_term;
	/* grows with every change and survives restarts (a fresh etcd reports 4 at revision 1);
	 * etcd's also grows by two at each start (the new leader's empty entry and the member's
	 * published attributes), and so does this with the term (2 at the first start) */
	uint64_t starts = srv->ids.raft_term > 2 ? srv->ids.raft_term - 2 : 0;
	r->raftindex = r->raftappliedindex = (uint64_t)v->rev + 3 + 2 * starts;
	uint64_t size, in_use;
	maint_db_sizes(srv, &size, &in_use);
	r->dbsize = (int64_t)size;
	r->dbsizeinuse = (int64_t)in_use;
	r->dbsizequota = (int64_t)config_quota_bytes(srv->cfg);
	r->downgradeinfo = d;
	r->n_errors = maint_alarm_strings(srv, a, &r->errors);
	return &r->base;
}

/* Splits a comma-separated list into arena strings. */
static char **maint_split(struct arena *a, const char *list, size_t *n)
{
	size_t count = 0, len = strlen(list);
	char *copy = arena_memdup(a, list, len + 1), **out;

	for (size_t i = 0; i <= len; i++)
		if (i == len || copy[i] == ',')
			count++;
	out = arena_alloc(a, count * sizeof *out);
	*n = 0;
	for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ","))
		if (*tok)
			out[(*n)++] = tok;
	return out;
}

struct ProtobufCMessage *cluster_member_list(const struct server *srv, const struct mvcc_view *v, struct arena *a)
{
	Etcdserverpb__MemberListResponse *r = arena_alloc(a, sizeof *r);
	Etcdserverpb__Member *m = arena_alloc(a, sizeof *m);

	etcdserverpb__member_list_response__init(r);
	etcdserverpb__member__init(m);
	r->header = maint_header(srv, v, a);
	m->id = srv->ids.member_id;
	m->name = (char *)srv->cfg->name;
	m->peerurls = maint_split(a, srv->cfg->initial_advertise_peer_urls, &m->n_peerurls);
	m->clienturls = maint_split(a, srv->cfg->advertise_client_urls, &m->n_clienturls);
	r->n_members = 1;
	r->members = arena_alloc(a, sizeof *r->members);
	r->members[0] = m;
	return &r->base;
}

static const char *const maint_alarm_names[] = {"NONE", "NOSPACE", "CORRUPT"};

size_t maint_alarm_strings(const struct server *srv, struct arena *a, char ***out)
{
	unsigned alarms = atomic_load(&((struct server *)srv)->alarms);
	size_t n = 0;

	*out = arena_alloc(a, 3 * sizeof **out);
	for (int t = 1; t <= 2; t++)
		if (alarms & (1u << t)) {
			char *s = arena_alloc(a, 64);
			snprintf(s, 64, "memberID:%llu alarm:%s ", (unsigned long long)srv->ids.member_id,
				 maint_alarm_names[t]);
			(*out)[n++] = s;
		}
	return n;
}

/* CRC-32C (Castagnoli), bitwise-table: the hash is ours, stable across restarts. */
static uint32_t maint_crc_table[256];

static void maint_crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0x82f63b78u ^ (c >> 1) : c >> 1;
		maint_crc_table[i] = c;
	}
}

static uint32_t maint_crc(uint32_t crc, const void *p, size_t len)
{
	const uint8_t *b = p;

	crc = ~crc;
	while (len--)
		crc = maint_crc_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

struct maint_hash {
	uint32_t crc;
	int64_t upto;
};

static int maint_hash_event(void *arg, const struct mvcc_event *e)
{
	struct maint_hash *h = arg;
	int64_t nums[5] = {e->type, e->kv.create_revision, e->kv.mod_revision, e->kv.version, e->kv.lease};

	if (e->kv.mod_revision > h->upto)
		return 1; /* history comes in revision order: nothing later counts */
	h->crc = maint_crc(h->crc, e->kv.key, e->kv.key_len);
	h->crc = maint_crc(h->crc, nums, sizeof nums);
	h->crc = maint_crc(h->crc, e->kv.value, e->kv.value_len);
	return 0;
}

/* A hash of every change kept in history up to `rev`: equal stores give equal hashes. */
static uint32_t maint_hash_upto(const struct mvcc_view *v, int64_t rev)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	static const uint8_t all = 0;
	struct maint_hash h = {.upto = rev};

	pthread_once(&once, maint_crc_init);
	mvcc_history(v, &all, 1, &all, 1, v->compact_rev > 0 ? v->compact_rev : 1, maint_hash_event, &h);
	return h.crc;
}

static void maint_error(struct kv_result *res, enum grpc_code code, const char *msg)
{
	res->code = code;
	res->message = msg;
	res->resp = NULL;
}

static const ProtobufCMessageDescriptor *maint_desc(int method)
{
	switch (method) {
	case SVC_MAINT_HASH:
		return &etcdserverpb__hash_request__descriptor;
	case SVC_MAINT_HASHKV:
		return &etcdserverpb__hash_kvrequest__descriptor;
	case SVC_MAINT_MOVE_LEADER:
		return &etcdserverpb__move_leader_request__descriptor;
	case SVC_MAINT_DOWNGRADE:
		return &etcdserverpb__downgrade_request__descriptor;
	case SVC_CLUSTER_MEMBER_ADD:
		return &etcdserverpb__member_add_request__descriptor;
	case SVC_CLUSTER_MEMBER_REMOVE:
		return &etcdserverpb__member_remove_request__descriptor;
	case SVC_CLUSTER_MEMBER_UPDATE:
		return &etcdserverpb__member_update_request__descriptor;
	case SVC_CLUSTER_MEMBER_PROMOTE:
		return &etcdserverpb__member_promote_request__descriptor;
	default:
		return NULL;
	}
}

struct ProtobufCMessage *maint_alarm(const struct kv_header_ids *ids, int64_t rev, _Atomic unsigned *alarms,
				     const struct ProtobufCMessage *msg, struct arena *a, struct kv_result *res)
{
	const Etcdserverpb__AlarmRequest *q = (const void *)msg;
	Etcdserverpb__AlarmResponse *r = arena_alloc(a, sizeof *r);
	unsigned bit = q->alarm >= 1 && q->alarm <= 2 ? 1u << q->alarm : 0, before;

	etcdserverpb__alarm_response__init(r);
	r->header = kv_header(a, ids, rev);
	r->alarms = arena_alloc(a, 3 * sizeof *r->alarms);
	res->code = GRPC_OK;
	res->message = NULL;
	switch (q->action) {
	case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET:
		before = atomic_load(alarms);
		for (int t = 1; t <= 2; t++)
			if ((before & (1u << t)) && (q->alarm == 0 || (int)q->alarm == t)) {
				Etcdserverpb__AlarmMember *m = arena_alloc(a, sizeof *m);
				etcdserverpb__alarm_member__init(m);
				m->memberid = ids->member_id;
				m->alarm = t;
				r->alarms[r->n_alarms++] = m;
			}
		break;
	case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE:
	case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE:
		if (!bit || q->memberid != ids->member_id)
			break;
		before = q->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE ? atomic_fetch_or(alarms, bit)
											 : atomic_fetch_and(alarms, ~bit);
		/* etcd answers with the alarm only when the call changed it */
		if ((q->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE) != !!(before & bit)) {
			Etcdserverpb__AlarmMember *m = arena_alloc(a, sizeof *m);
			etcdserverpb__alarm_member__init(m);
			m->memberid = ids->member_id;
			m->alarm = q->alarm;
			r->alarms[r->n_alarms++] = m;
		}
		break;
	default:
		maint_error(res, GRPC_INVALID_ARGUMENT, "etcdserver: invalid alarm action");
		return NULL;
	}
	return &r->base;
}

void maint_handle(struct server *srv, int method, const uint8_t *msg, size_t len, const struct mvcc_view *v,
		  struct arena *a, struct kv_result *res)
{
	const ProtobufCMessageDescriptor *d = maint_desc(method);
	ProtobufCAllocator al;
	ProtobufCMessage *req;

	res->code = GRPC_OK;
	res->message = NULL;
	arena_pb_allocator(a, &al);
	if (!d || !(req = protobuf_c_message_unpack(d, &al, len, msg))) {
		maint_error(res, GRPC_INTERNAL, "grpc: error unmarshalling request");
		return;
	}
	switch (method) {
	case SVC_MAINT_HASH: {
		Etcdserverpb__HashResponse *r = arena_alloc(a, sizeof *r);
		etcdserverpb__hash_response__init(r);
		r->header = maint_header(srv, v, a);
		r->hash = maint_hash_upto(v, v->rev);
		res->resp = &r->base;
		return;
	}
	case SVC_MAINT_HASHKV: {
		const Etcdserverpb__HashKVRequest *q = (const void *)req;
		int64_t rev = q->revision > 0 ? q->revision : v->rev;
		if (rev > v->rev) {
			maint_error(res, GRPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision");
			return;
		}
		if (rev < v->compact_rev) {
			maint_error(res, GRPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted");
			return;
		}
		Etcdserverpb__HashKVResponse *r = arena_alloc(a, sizeof *r);
		etcdserverpb__hash_kvresponse__init(r);
		r->header = maint_header(srv, v, a);
		r->hash = maint_hash_upto(v, rev);
		r->compact_revision = v->compact_rev;
		r->hash_revision = rev;
		res->resp = &r->base;
		return;
	}
	case SVC_MAINT_MOVE_LEADER: {
		const Etcdserverpb__MoveLeaderRequest *q = (const void *)req;
		if (q->targetid != srv->ids.member_id) {
			maint_error(res, GRPC_FAILED_PRECONDITION, "etcdserver: bad leader transferee");
			return;
		}
		Etcdserverpb__MoveLeaderResponse *r = arena_alloc(a, sizeof *r);
		etcdserverpb__move_leader_response__init(r);
		r->header = maint_header(srv, v, a);
		res->resp = &r->base;
		return;
	}
	case SVC_MAINT_DOWNGRADE:
		/* there is no older uetcd to go back to: no target is valid, nothing is in flight */
		if (((const Etcdserverpb__DowngradeRequest *)req)->action == ETCDSERVERPB__DOWNGRADE_REQUEST__DOWNGRADE_ACTION__CANCEL)
			maint_error(res, GRPC_FAILED_PRECONDITION, "etcdserver: no inflight downgrade job");
		else
			maint_error(res, GRPC_INVALID_ARGUMENT, "etcdserver: invalid downgrade target version");
		return;
	case SVC_CLUSTER_MEMBER_REMOVE:
		if (((const Etcdserverpb__MemberRemoveRequest *)req)->id == srv->ids.member_id)
			maint_error(res, GRPC_FAILED_PRECONDITION,
				    "etcdserver: re-configuration failed due to not enough started members");
		else
			maint_error(res, GRPC_NOT_FOUND, "etcdserver: member not found");
		return;
	case SVC_CLUSTER_MEMBER_PROMOTE:
		if (((const Etcdserverpb__MemberPromoteRequest *)req)->id == srv->ids.member_id)
			maint_error(res, GRPC_FAILED_PRECONDITION, "etcdserver: can only promote a learner member");
		else
			maint_error(res, GRPC_NOT_FOUND, "etcdserver: member not found");
		return;
	case SVC_CLUSTER_MEMBER_UPDATE:
		if (((const Etcdserverpb__MemberUpdateRequest *)req)->id != srv->ids.member_id) {
			maint_error(res, GRPC_NOT_FOUND, "etcdserver: member not found");
			return;
		}
		maint_error(res, GRPC_FAILED_PRECONDITION, "uetcd: a single member's peer URLs cannot be changed");
		return;
	case SVC_CLUSTER_MEMBER_ADD:
	default:
		maint_error(res, GRPC_FAILED_PRECONDITION, "uetcd: members cannot be added: uetcd is a single-member server");
		return;
	}
}
