/* See maint.h. Status reports the etcd API version we implement (kube-apiserver turns
 * features off below 3.5.13), this member as leader, and a raft index that grows with
 * every applied write, as a client watching it expects. */
#include "core/maint.h"

#include <string.h>

#include "core/arena.h"
#include "core/config.h"
#include "core/seq.h"
#include "core/server.h"
#include "rpc.pb-c.h"
#include "storage/mvcc.h"
#include "storage/wal.h"

#define QUOTA_DEFAULT_BYTES (2LL * 1024 * 1024 * 1024)

static Etcdserverpb__ResponseHeader *maint_header(const struct server *srv, const struct mvcc_view *v,
						  struct arena *a)
{
	Etcdserverpb__ResponseHeader *h = arena_alloc(a, sizeof *h);

	etcdserverpb__response_header__init(h);
	h->cluster_id = srv->ids.cluster_id;
	h->member_id = srv->ids.member_id;
	h->raft_term = srv->ids.raft_term;
	h->revision = v->rev;
	return h;
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
	/* grows with every change and survives restarts (a fresh etcd reports 4 at revision 1) */
	r->raftindex = r->raftappliedindex = (uint64_t)v->rev + 3;
	r->dbsize = srv->wal ? (int64_t)wal_size_bytes(srv->wal) : 0;
	r->dbsizeinuse = r->dbsize; /* until segments are reclaimed, every byte is in use */
	r->dbsizequota = srv->cfg->quota_backend_bytes > 0 ? srv->cfg->quota_backend_bytes : QUOTA_DEFAULT_BYTES;
	r->downgradeinfo = d;
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
