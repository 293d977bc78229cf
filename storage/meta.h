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

/* The ids etcd gives a new member of a new cluster (so a script that checks cluster_id sees
 * the same value as etcd's): member id = the first 8 bytes (big-endian) of SHA-1 over the
 * member's peer URLs, sorted and joined, then the cluster token; cluster id = the same over
 * every member id of the initial cluster, sorted, as 8 big-endian bytes each.
 * initial_cluster is "name=url,name=url,..."; "" means name=each of advertise_peer_urls
 * (comma-separated), as etcd defaults it. 0, or -EINVAL when `name` is not in it or it is
 * malformed (then *out is untouched). */
int meta_derive_ids(const char *initial_cluster, const char *name, const char *advertise_peer_urls,
		    const char *token, struct meta *out);

/* meta_open for a directory that may be new: a new one gets want's cluster and member ids
 * (when both are non-zero) instead of random ones. */
int meta_open_with(const char *data_dir, const struct meta *want, struct meta *out);

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
