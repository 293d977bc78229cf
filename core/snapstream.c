/* See snapstream.h. A handful of calls at most: a plain array. The database a snapshot
 * streams is built by snapshot_write_bbolt (at the end), on the checkpoint worker. */
#include "core/snapstream.h"

#include <errno.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/auth.h"
#include "core/config.h"
#include "core/kv.h"
#include "core/log.h"
#include "net/grpc.h"
#include "storage/bbolt.h"
#include "storage/ckpt.h"
#include "storage/mvcc.h"
#include "rpc.pb-c.h"

#define CHUNK_BYTES (64u * 1024)
#define QUEUED_MAX (256u * 1024) /* what one call may have waiting for its window */

struct snapstream {
	struct grpc_conn *c;
	void *conn_user;
	uint32_t sid;
	int fd;
	uint64_t off, bytes;
	int64_t rev;
};

struct snapstreams {
	struct kv_header_ids ids;
	void (*dirty)(void *conn_user);
	struct snapstream *v;
	size_t n, cap;
	uint8_t *chunk, *msg;
};

struct snapstreams *snapstreams_new(const struct kv_header_ids *ids, void (*dirty)(void *conn_user))
{
	struct snapstreams *s = calloc(1, sizeof *s);

	if (!s)
		log_fatal("snapshot: out of memory");
	s->ids = *ids;
	s->dirty = dirty;
	return s;
}

void snapstreams_free(struct snapstreams *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].fd >= 0)
			close(s->v[i].fd);
	free(s->v);
	free(s->chunk);
	free(s->msg);
	free(s);
}

static struct snapstream *snap_find(struct snapstreams *s, struct grpc_conn *c, uint32_t sid)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].c == c && s->v[i].sid == sid)
			return &s->v[i];
	return NULL;
}

void snapstreams_open(struct snapstreams *s, struct grpc_conn *c, void *conn_user, uint32_t sid)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 4;
		s->v = realloc(s->v, s->cap * sizeof *s->v);
		if (!s->v)
			log_fatal("snapshot: out of memory");
	}
	s->v[s->n++] = (struct snapstream){.c = c, .conn_user = conn_user, .sid = sid, .fd = -1};
}

void snapstreams_ready(struct snapstreams *s, struct grpc_conn *c, uint32_t sid, int fd, uint64_t bytes, int64_t rev)
{
	struct snapstream *st = c ? snap_find(s, c, sid) : NULL;

	if (!st || st->fd >= 0) { /* the call ended while the file was written */
		close(fd);
		return;
	}
	st->fd = fd;
	st->bytes = bytes;
	st->rev = rev;
	log_info_limited("sending database snapshot to client: %llu bytes at revision %lld", (unsigned long long)bytes,
			 (long long)rev);
}

void snapstreams_close(struct snapstreams *s, struct grpc_conn *c, uint32_t sid)
{
	struct snapstream *st = snap_find(s, c, sid);

	if (!st)
		return;
	if (st->fd >= 0)
		close(st->fd);
	*st = s->v[--s->n];
}

/* Sends chunks until the window backs up or the file is done; false when the call ended. */
static bool snap_send(struct snapstreams *s, struct snapstream *st)
{
	Etcdserverpb__SnapshotResponse resp;
	Etcdserverpb__ResponseHeader hdr;

	etcdserverpb__response_header__init(&hdr);
	hdr.cluster_id = s->ids.cluster_id;
	hdr.member_id = s->ids.member_id;
	hdr.raft_term = s->ids.raft_term;
	hdr.revision = st->rev;
	while (st->off < st->bytes && grpc_stream_queued_bytes(st->c, st->sid) < QUEUED_MAX) {
		uint64_t want = st->bytes - st->off < CHUNK_BYTES ? st->bytes - st->off : CHUNK_BYTES;
		ssize_t got = pread(st->fd, s->chunk, want, (off_t)st->off);
		if (got != (ssize_t)want) {
			log_error("snapshot: reading the snapshot file: %s", got < 0 ? strerror(errno) : "short read");
			grpc_send_status(st->c, st->sid, GRPC_INTERNAL, "uetcd: snapshot: reading the file failed");
			return false;
		}
		etcdserverpb__snapshot_response__init(&resp);
		resp.header = &hdr;
		resp.blob.data = s->chunk;
		resp.blob.len = (size_t)got;
		st->off += (uint64_t)got;
		resp.remaining_bytes = st->bytes - st->off;
		if (st->off == (uint64_t)got)
			resp.version = (char *)UETCD_ETCD_API_VERSION; /* the first message says it, as etcd 3.6 */
		size_t len = protobuf_c_message_get_packed_size(&resp.base);
		protobuf_c_message_pack(&resp.base, s->msg);
		if (grpc_send_message(st->c, st->sid, s->msg, len) < 0)
			return false; /* the connection died: the call has ended */
	}
	if (st->off == st->bytes) {
		grpc_send_status(st->c, st->sid, GRPC_OK, NULL); /* ends the call: on_call_end */
		return false;
	}
	return true;
}

void snapstreams_pump(struct snapstreams *s)
{
	if (!s->n)
		return;
	if (!s->chunk && (!(s->chunk = malloc(CHUNK_BYTES)) || !(s->msg = malloc(CHUNK_BYTES + 256))))
		log_fatal("snapshot: out of memory");
	for (size_t i = 0; i < s->n;) {
		struct snapstream *st = &s->v[i];
		size_t n = s->n;
		if (st->fd < 0 || grpc_stream_queued_bytes(st->c, st->sid) >= QUEUED_MAX) {
			i++;
			continue;
		}
		void *user = st->conn_user;
		snap_send(s, st);
		s->dirty(user);
		if (s->n == n) /* still there (an ended call was swapped out of slot i) */
			i++;
	}
}

/* ---- the snapshot as etcd's backend database ---- */

struct pbw {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

static void pbw_need(struct pbw *b, size_t n)
{
	if (b->oom || b->cap - b->len >= n)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < n)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void pbw_varint(struct pbw *b, uint64_t v)
{
	pbw_need(b, 10);
	if (b->oom)
		return;
	do {
		b->p[b->len++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
}

/* proto3: zero integers and empty bytes are left out, as etcd's marshalling does */
static void pbw_int(struct pbw *b, uint32_t field, uint64_t v)
{
	if (!v)
		return;
	pbw_varint(b, (uint64_t)field << 3);
	pbw_varint(b, v);
}

static void pbw_bytes(struct pbw *b, uint32_t field, const uint8_t *p, size_t n, bool always)
{
	if (!n && !always)
		return;
	pbw_varint(b, (uint64_t)field << 3 | 2);
	pbw_varint(b, n);
	pbw_need(b, n);
	if (!b->oom && n) {
		memcpy(b->p + b->len, p, n);
		b->len += n;
	}
}

static void be_put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* One stored version, pointing into the view (valid while the thread stays online). */
struct snap_rec {
	const uint8_t *key;
	size_t key_len;
	struct mvcc_stored v;
};

struct snap_dump {
	struct snap_rec *r;
	size_t n, cap;
};

static int snap_dump_fn(void *arg, const uint8_t *key, size_t key_len, const struct mvcc_stored *vers, size_t n)
{
	struct snap_dump *d = arg;

	if (d->n + n > d->cap) {
		size_t cap = d->cap ? d->cap : 1024;
		while (cap < d->n + n)
			cap *= 2;
		struct snap_rec *r = realloc(d->r, cap * sizeof *r);
		if (!r)
			return -ENOMEM;
		d->r = r;
		d->cap = cap;
	}
	for (size_t i = 0; i < n; i++)
		d->r[d->n++] = (struct snap_rec){key, key_len, vers[i]};
	return 0;
}

static int snap_rec_cmp(const void *a, const void *b)
{
	const struct mvcc_stored *x = &((const struct snap_rec *)a)->v, *y = &((const struct snap_rec *)b)->v;

	if (x->mod_revision != y->mod_revision)
		return x->mod_revision < y->mod_revision ? -1 : 1;
	return (x->sub > y->sub) - (x->sub < y->sub);
}

static int snap_lease_cmp(const void *a, const void *b)
{
	uint64_t x = (uint64_t)((const struct ckpt_lease *)a)->id, y = (uint64_t)((const struct ckpt_lease *)b)->id;
	return (x > y) - (x < y);
}

/* Reads of core/auth.h's state bytes, already validated by auth_state_decode. */
struct snap_rd {
	const uint8_t *p;
	size_t off;
};

static uint32_t rd32(struct snap_rd *r)
{
	uint32_t v = (uint32_t)r->p[r->off] | (uint32_t)r->p[r->off + 1] << 8 | (uint32_t)r->p[r->off + 2] << 16 |
		     (uint32_t)r->p[r->off + 3] << 24;
	r->off += 4;
	return v;
}

static const uint8_t *rdstr(struct snap_rd *r, size_t *len)
{
	*len = rd32(r);
	const uint8_t *s = r->p + r->off;
	r->off += *len;
	return s;
}

static int snap_auth(struct bbolt_writer *w, struct pbw *b, const uint8_t *st, size_t len)
{
	int err, rc;
	struct auth *a = auth_state_decode(st, len, &err);
	uint8_t v8[8];

	if (!a)
		return -EINVAL;
	auth_free(a);
	struct snap_rd r = {st, 4};
	uint64_t rev = rd32(&r);
	rev |= (uint64_t)rd32(&r) << 32;
	uint8_t enabled = st[r.off++];
	if ((rc = bbolt_writer_bucket(w, "auth")) ||
	    (rc = bbolt_writer_put(w, (const uint8_t *)"authEnabled", 11, &enabled, 1)))
		return rc;
	be_put64(v8, rev);
	if ((rc = bbolt_writer_put(w, (const uint8_t *)"authRevision", 12, v8, 8)) ||
	    (rc = bbolt_writer_bucket(w, "authUsers")))
		return rc;
	for (uint32_t nu = rd32(&r); nu; nu--) {
		size_t nl, hl, rl;
		const uint8_t *name = rdstr(&r, &nl);
		uint8_t flags = st[r.off++];
		const uint8_t *hash = rdstr(&r, &hl);
		b->len = 0;
		pbw_bytes(b, 1, name, nl, true);
		pbw_bytes(b, 2, hash, flags & 1 ? 0 : hl, false);
		for (uint32_t nr = rd32(&r); nr; nr--) {
			const uint8_t *role = rdstr(&r, &rl);
			pbw_bytes(b, 3, role, rl, true);
		}
		if (flags & 1) /* options {no_password: true} */
			pbw_bytes(b, 4, (const uint8_t *)"\x08\x01", 2, true);
		if (b->oom)
			return -ENOMEM;
		if ((rc = bbolt_writer_put(w, name, nl, b->p, b->len)))
			return rc;
	}
	if ((rc = bbolt_writer_bucket(w, "authRoles")))
		return rc;
	for (uint32_t nr = rd32(&r); nr; nr--) {
		size_t nl, kl, el;
		const uint8_t *name = rdstr(&r, &nl);
		b->len = 0;
		pbw_bytes(b, 1, name, nl, true);
		for (uint32_t np = rd32(&r); np; np--) {
			struct pbw pm = {0};
			uint32_t type = rd32(&r);
			const uint8_t *key = rdstr(&r, &kl), *end = rdstr(&r, &el);
			pbw_int(&pm, 1, type);
			pbw_bytes(&pm, 2, key, kl, false);
			pbw_bytes(&pm, 3, end, el, false);
			pbw_bytes(b, 2, pm.p, pm.len, true);
			bool oom = pm.oom;
			free(pm.p);
			if (oom)
				return -ENOMEM;
		}
		if (b->oom)
			return -ENOMEM;
		if ((rc = bbolt_writer_put(w, name, nl, b->p, b->len)))
			return rc;
	}
	return 0;
}

int snapshot_write_bbolt(int fd, const struct mvcc_view *v, const struct ckpt_lease *leases, size_t nleases,
			 const uint8_t *auth, size_t auth_len, uint64_t *bytes)
{
	struct bbolt_writer *w = bbolt_writer_new();
	struct snap_dump d = {0};
	struct ckpt_lease *ls = NULL;
	struct pbw b = {0};
	uint8_t rk[18], v8[8], *file = NULL;
	size_t len = 0;
	int64_t compact = 0;
	int rc = -ENOMEM;

	/* Bound: the records, the pages and the copies are each about the store's own bytes,
	 * which --quota-backend-bytes bounds; one snapshot at a time (the checkpoint worker). */
	if (!w)
		return -ENOMEM;
	if ((rc = mvcc_dump(v, snap_dump_fn, &d, &compact)))
		goto out;
	if (d.n) /* d.r is NULL for an empty store */
		qsort(d.r, d.n, sizeof *d.r, snap_rec_cmp);
	if ((rc = bbolt_writer_bucket(w, "key")))
		goto out;
	for (size_t i = 0; i < d.n; i++) {
		const struct snap_rec *r = &d.r[i];
		be_put64(rk, (uint64_t)r->v.mod_revision);
		rk[8] = '_';
		be_put64(rk + 9, r->v.sub);
		rk[17] = 't';
		b.len = 0;
		pbw_bytes(&b, 1, r->key, r->key_len, true);
		if (!r->v.tomb) {
			pbw_int(&b, 2, (uint64_t)r->v.create_revision);
			pbw_int(&b, 3, (uint64_t)r->v.mod_revision);
			pbw_int(&b, 4, (uint64_t)r->v.version);
			pbw_bytes(&b, 5, r->v.value, r->v.value_len, false);
			pbw_int(&b, 6, (uint64_t)r->v.lease);
		}
		rc = -ENOMEM;
		if (b.oom || (rc = bbolt_writer_put(w, rk, r->v.tomb ? 18 : 17, b.p, b.len)))
			goto out;
	}
	/* meta: keys in byte order */
	if ((rc = bbolt_writer_bucket(w, "meta")))
		goto out;
	be_put64(v8, (uint64_t)v->rev); /* etcdutl restore rewrites it with its own index */
	if ((rc = bbolt_writer_put(w, (const uint8_t *)"consistent_index", 16, v8, 8)))
		goto out;
	if (compact > 0) {
		be_put64(rk, (uint64_t)compact);
		rk[8] = '_';
		be_put64(rk + 9, 0);
		if ((rc = bbolt_writer_put(w, (const uint8_t *)"finishedCompactRev", 18, rk, 17)) ||
		    (rc = bbolt_writer_put(w, (const uint8_t *)"scheduledCompactRev", 19, rk, 17)))
			goto out;
	}
	be_put64(v8, 1);
	if ((rc = bbolt_writer_put(w, (const uint8_t *)"term", 4, v8, 8)))
		goto out;
	rc = -ENOMEM;
	if (!(ls = malloc((nleases + 1) * sizeof *ls)))
		goto out;
	if (nleases) {
		memcpy(ls, leases, nleases * sizeof *ls);
		qsort(ls, nleases, sizeof *ls, snap_lease_cmp);
	}
	if ((rc = bbolt_writer_bucket(w, "lease")))
		goto out;
	for (size_t i = 0; i < nleases; i++) {
		b.len = 0;
		pbw_int(&b, 1, (uint64_t)ls[i].id);
		pbw_int(&b, 2, (uint64_t)ls[i].ttl);
		be_put64(v8, (uint64_t)ls[i].id);
		rc = -ENOMEM;
		if (b.oom || (rc = bbolt_writer_put(w, v8, 8, b.p, b.len)))
			goto out;
	}
	if (auth && auth_len) {
		if ((rc = snap_auth(w, &b, auth, auth_len)))
			goto out;
	} else if ((rc = bbolt_writer_bucket(w, "auth")) || (rc = bbolt_writer_bucket(w, "authUsers")) ||
		   (rc = bbolt_writer_bucket(w, "authRoles")))
		goto out;
	if ((rc = bbolt_writer_bucket(w, "members")) || (rc = bbolt_writer_bucket(w, "members_removed")) ||
	    (rc = bbolt_writer_bucket(w, "cluster")) || (rc = bbolt_writer_bucket(w, "alarm")))
		goto out;
	if ((rc = bbolt_writer_finish(w, (uint64_t)v->rev + 1, &file, &len)))
		goto out;
	for (size_t off = 0; off < len;) {
		ssize_t n = pwrite(fd, file + off, len - off, (off_t)off);
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		off += (size_t)n;
	}
	*bytes = len;
	rc = 0;
out:
	free(file);
	free(b.p);
	free(ls);
	free(d.r);
	bbolt_writer_free(w);
	return rc;
}
