/* See snapstream.h. A handful of calls at most: a plain array. */
#include "core/snapstream.h"

#include <errno.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/kv.h"
#include "core/log.h"
#include "net/grpc.h"
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
