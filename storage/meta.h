/* The data directory's identity: format version, cluster id and member id, created once
 * and never changed, so that every response header names the same cluster across restarts;
 * and the raft term of the last start, which grows by one at every start as etcd's does
 * (each start of a single etcd member is a new election), so tools can see a restart.
 *
 * data-dir/meta is a small text file, written to a temporary name, fsynced and renamed
 * into place (then the directory is fsynced), so it is either absent or complete:
 *
 *   uetcd-meta 1
 *   cluster_id <16 hex digits>
 *   member_id <16 hex digits>
 *   raft_term <decimal>          (optional: files written before it existed have none,
 *                                 and served term 2; readers of format 1 ignore the line)
 */
#ifndef UETCD_STORAGE_META_H
#define UETCD_STORAGE_META_H

#include <stdint.h>

#define META_FORMAT_VERSION 1

struct meta {
	uint32_t format;
	uint64_t cluster_id;
	uint64_t member_id;
	uint64_t raft_term; /* of the last start; 1 in a directory never served from */
};

/* Creates the data directory (mode 0700) and its meta file if missing, else reads it.
 * Returns 0 or -errno; -EINVAL for a meta file that is not ours or of a newer format. */
int meta_open(const char *data_dir, struct meta *out);

/* A new start: raises m->raft_term by one and makes it durable in the meta file (a crash
 * after this returns can never serve the same term again). Call with the directory
 * locked, before serving. 0 or -errno (-EOVERFLOW at the term's limit). */
int meta_start_term(const char *data_dir, struct meta *m);

/* Takes an exclusive lock on the data directory for the life of the process (the fd is
 * left open), so a second server on the same directory fails at once instead of writing
 * over the first one's log. Returns the fd, -EWOULDBLOCK when another process holds it,
 * or -errno. */
int meta_lock(const char *data_dir);

#endif
