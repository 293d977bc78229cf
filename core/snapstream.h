/* Maintenance.Snapshot on a reactor: streams the file the checkpoint worker wrote, in
 * chunks, as the call's flow-control window allows, then ends the call. One per reactor,
 * used by its thread only. The file is already in the page cache (just written), so the
 * reads do not wait on the disk in practice. */
#ifndef UETCD_CORE_SNAPSTREAM_H
#define UETCD_CORE_SNAPSTREAM_H

#include <stddef.h>
#include <stdint.h>

struct snapstreams;
struct mvcc_view;
struct ckpt_lease;
struct grpc_conn;
struct kv_header_ids;

struct snapstreams *snapstreams_new(const struct kv_header_ids *ids, void (*dirty)(void *conn_user));
void snapstreams_free(struct snapstreams *s);
/* The call started (remembers conn_user for the dirty callback). */
void snapstreams_open(struct snapstreams *s, struct grpc_conn *c, void *conn_user, uint32_t sid);
/* The file for the call is ready: `bytes` long, ours to close. rev: the header's revision. */
void snapstreams_ready(struct snapstreams *s, struct grpc_conn *c, uint32_t sid, int fd, uint64_t bytes, int64_t rev);
/* The call ended (finished, cancelled, or its connection went away). */
void snapstreams_close(struct snapstreams *s, struct grpc_conn *c, uint32_t sid);
/* Queues more chunks on every call whose window has drained; once per loop turn. */
void snapstreams_pump(struct snapstreams *s);

/* The snapshot's bytes: an etcd 3.5 backend database (bbolt, storage/bbolt.h's writer) of
 * the view — bucket `key` with every retained version at its revision key, `meta` with the
 * compacted revision and consistent_index, `lease`, `auth`, `authUsers`, `authRoles`, and
 * empty `members`, `members_removed`, `cluster`, `alarm` — written to fd from offset 0, so
 * that etcdctl/etcdutl `snapshot status` and `etcdutl snapshot restore` take it, and
 * uetcd-restore imports it. auth: core/auth.h's state bytes (NULL: auth never used). The
 * calling thread must be an online qsbr reader throughout. Built in memory (about twice the
 * data). *bytes gets the length. 0, -MVCC_ECOMPACTED (a compaction passed the view: retry),
 * -EINVAL (auth bytes that do not decode), -ENOMEM, -errno. */
int snapshot_write_bbolt(int fd, const struct mvcc_view *v, const struct ckpt_lease *leases, size_t nleases,
			 const uint8_t *auth, size_t auth_len, uint64_t *bytes);

#endif
