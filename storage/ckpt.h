/* Checkpoints: the whole store — every key with all the versions it still holds, the
 * compacted revision, the leases — as of one revision, in one checksummed file, so that
 * start-up loads it and replays only the log written after it, and the log segments it
 * covers can be deleted.
 *
 *   data-dir/snap/NNNNNNNNNNNNNNNN.ckpt   16 hex digits: the checkpoint's revision
 *
 * The same bytes are what Maintenance.Snapshot streams (`etcdctl snapshot save`) and what
 * uetcd-restore turns back into a data directory. The format is the table at the top of
 * ckpt.c. Every reader validates the header checksum, the length and the body checksum
 * before it parses anything, and the parser checks every length and every invariant the
 * store relies on, so a damaged or hostile file is refused, never half-loaded. */
#ifndef UETCD_STORAGE_CKPT_H
#define UETCD_STORAGE_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mvcc_view;
struct mvcc_stored;

#define CKPT_HDR 64

struct ckpt_header {
	int64_t rev;         /* the store's revision */
	int64_t compact_rev; /* -1: never compacted */
	uint64_t log_seq;    /* the first log segment not covered: replay starts there */
};

struct ckpt_lease {
	int64_t id, ttl;
};

/* Parse callbacks, in file order: header, leases, keys (ascending). Non-zero stops. */
struct ckpt_sink {
	int (*header)(void *arg, const struct ckpt_header *h);
	int (*lease)(void *arg, int64_t id, int64_t ttl);
	int (*key)(void *arg, const uint8_t *key, size_t key_len, const struct mvcc_stored *vers, size_t n);
	void *arg;
	int (*auth)(void *arg, const uint8_t *state, size_t len); /* core/auth.h's state bytes */
	int (*alarms)(void *arg, uint32_t alarms);                /* when any was active */
};

/* What a checkpoint keeps besides the keys: the leases, and the auth state's bytes (NULL
 * and 0 when auth was never used). */
struct ckpt_extra {
	const struct ckpt_lease *leases;
	size_t nleases;
	const uint8_t *auth;
	size_t auth_len;
	uint32_t alarms; /* the member's active alarms (1 << AlarmType), 0: none */
};

/* Validates a whole checkpoint held in memory, then walks it through sink (any member may
 * be NULL). 0; -EBADMSG with the reason (and the byte offset) in err; or sink's result. */
int ckpt_parse(const uint8_t *p, size_t len, const struct ckpt_sink *sink, char *err, size_t errlen);

/* Checks the header alone and returns the checkpoint's whole length (header + body), or 0
 * with the reason in err. For a checkpoint inside a longer file (a snapshot's envelope). */
uint64_t ckpt_length(const uint8_t *p, size_t len, char *err, size_t errlen);

/* Maps `path` and parses it (as ckpt_parse; -errno when it cannot be read). */
int ckpt_load_file(const char *path, const struct ckpt_sink *sink, char *err, size_t errlen);

/* Writes a checkpoint of the view (and x's leases and auth state) to fd from its current offset: the
 * caller's thread must be an online qsbr reader throughout. *bytes gets the file's length,
 * *out the header written. -MVCC_ECOMPACTED (retry later) when a compaction past the view
 * ran meanwhile; -errno when writing fails. Does not sync. */
int ckpt_write_fd_x(int fd, const struct mvcc_view *v, uint64_t log_seq, const struct ckpt_extra *x, uint64_t *bytes,
		    struct ckpt_header *out);
/* The same without an auth state. */
int ckpt_write_fd(int fd, const struct mvcc_view *v, uint64_t log_seq, const struct ckpt_lease *leases,
		  size_t nleases, uint64_t *bytes, struct ckpt_header *out);

/* ---- the data directory's checkpoints ---- */

/* Writes snap/<rev>.ckpt durably (temporary name, fdatasync, rename, directory fsync;
 * no syncs with no_fsync), then deletes every other checkpoint. 0 or negative as above. */
int ckpt_save_x(const char *data_dir, const struct mvcc_view *v, uint64_t log_seq, const struct ckpt_extra *x,
		bool no_fsync, uint64_t *bytes, struct ckpt_header *out);
/* The same without an auth state. */
int ckpt_save(const char *data_dir, const struct mvcc_view *v, uint64_t log_seq, const struct ckpt_lease *leases,
	      size_t nleases, bool no_fsync, uint64_t *bytes, struct ckpt_header *out);

/* The newest checkpoint file into path (empty string: none) and its size; leftover temporary
 * files are deleted when `clean`. 0 or -errno. */
int ckpt_latest(const char *data_dir, bool clean, char *path, size_t pathlen, uint64_t *bytes);

/* The newest checkpoint's header alone (the body is not read): 1 and *h, 0 if there is no
 * checkpoint, -EBADMSG if its header does not verify, or -errno. */
int ckpt_latest_header(const char *data_dir, struct ckpt_header *h);

/* Installs an existing checkpoint file as data_dir's only one, rewritten to say that the log
 * starts at segment `log_seq` (restore: a new data directory, an empty log). Validates it
 * first. 0, -EBADMSG (err says why) or -errno. */
int ckpt_install(const char *data_dir, const char *src, uint64_t log_seq, char *err, size_t errlen);

#endif
