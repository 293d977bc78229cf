/* The data directory's identity: format version, cluster id and member id, created once
 * and never changed, so that every response header names the same cluster across restarts.
 *
 * data-dir/meta is a small text file, written to a temporary name, fsynced and renamed
 * into place (then the directory is fsynced), so it is either absent or complete:
 *
 *   uetcd-meta 1
 *   cluster_id <16 hex digits>
 *   member_id <16 hex digits>
 */
#ifndef UETCD_STORAGE_META_H
#define UETCD_STORAGE_META_H

#include <stdint.h>

#define META_FORMAT_VERSION 1

struct meta {
	uint32_t format;
	uint64_t cluster_id;
	uint64_t member_id;
};

/* Creates the data directory (mode 0700) and its meta file if missing, else reads it.
 * Returns 0 or -errno; -EINVAL for a meta file that is not ours or of a newer format. */
int meta_open(const char *data_dir, struct meta *out);

/* Takes an exclusive lock on the data directory for the life of the process (the fd is
 * left open), so a second server on the same directory fails at once instead of writing
 * over the first one's log. Returns the fd, -EWOULDBLOCK when another process holds it,
 * or -errno. */
int meta_lock(const char *data_dir);

#endif
