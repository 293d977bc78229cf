/* The write-ahead log: preallocated, append-only segment files of checksummed records, and
 * the codec of the one record type the sequencer writes (a batch of revisions).
 *
 * The on-disk format is the table at the top of storage/wal.c. In short: data-dir/log/
 * holds NNNNNNNNNNNNNNNN.seg files named by their sequence number (16 hex digits, 1, 2, …;
 * consecutive, the oldest may be > 1 after wal_remove_segments_before()). Each segment has a
 * 64-byte header, then 8-byte-aligned records: a 32-byte header (XXH3-64 checksum, magic,
 * length, revision, type, offset within its commit) and the payload. The preallocated rest
 * of a segment is zeros, and an all-zero record header marks the end of written data. A
 * segment keeps its preallocated size (in its header) for life and ends, once the log has
 * moved on, with a link record naming the next: the chain is durable, so a segment cut
 * short or deleted is found, never taken for a crash's torn tail.
 *
 * Threading: one owner (the sequencer) calls everything except wal_size_bytes() and
 * wal_used_bytes(), which any thread may call. Errors are 0 or -errno; corruption found at
 * open is -EBADMSG with a message naming the segment file and byte offset in `err`.
 *
 * Durability contract: a record is durable once the wal_commit() (or wal_commit_wait())
 * that wrote it returned 0. A failed write or fdatasync is returned and the wal then refuses
 * every later append and commit with the same error: the caller must log it and exit
 * (log_fatal). A failed fsync is never retried — after it the page cache may say "clean"
 * for data that never reached the disk (the 2018 PostgreSQL "fsyncgate"), so the only safe
 * recovery is a restart that replays what the disk really holds. */
#ifndef UETCD_STORAGE_WAL_H
#define UETCD_STORAGE_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct wal;

/* Record types (the header's type byte). 0 never appears in a valid record. */
enum {
	WAL_REC_BATCH = 1, /* payload: a batch, see wal_batch_* below */
	WAL_REC_LINK = 2,  /* payload: u64 le, the next segment's sequence number; the last
	                    * record of a segment, written by the log itself at a roll */
	/* 3..15 reserved for storage records (checkpoint markers, lease state, auth state) */
};

/* Every file operation of the log except directory listing and mkdir goes through this
 * table, so tests can inject faults. Each returns >= 0 or -errno (never -1 with errno).
 * When wal_options.ops is NULL the log uses the real syscalls AND commits through its own
 * io_uring ring; when ops is set, commits use ops->pwrite + ops->fdatasync synchronously
 * (the same error handling, including short writes), so faults reach every path. */
struct wal_file_ops {
	void *ctx;
	int (*open)(void *ctx, const char *path, int flags, mode_t mode); /* returns the fd */
	int (*close)(void *ctx, int fd);
	ssize_t (*pread)(void *ctx, int fd, void *buf, size_t len, uint64_t off);
	ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t len, uint64_t off);
	int (*fdatasync)(void *ctx, int fd);
	int (*fsync)(void *ctx, int fd); /* files and directories */
	int (*fallocate)(void *ctx, int fd, uint64_t off, uint64_t len);
	int (*ftruncate)(void *ctx, int fd, uint64_t len);
	int (*fsize)(void *ctx, int fd, uint64_t *size);
	int (*rename)(void *ctx, const char *from, const char *to);
	int (*unlink)(void *ctx, const char *path);
};

/* The plain syscalls (what ops == NULL uses, minus io_uring); tests wrap them. */
const struct wal_file_ops *wal_file_ops_posix(void);

#define WAL_SEGMENT_BYTES_DEFAULT (64ull << 20)
#define WAL_SEGMENT_BYTES_MIN 4096ull
#define WAL_PENDING_BYTES_DEFAULT (64ull << 20)
#define WAL_PENDING_BYTES_MIN 4096ull
#define WAL_PENDING_BYTES_MAX (1ull << 30)

struct wal_options {
	uint64_t segment_bytes;  /* 0: 64 MiB; preallocated with fallocate. A commit bigger than
	                          * a fresh segment gets a segment of its own, sized to fit. */
	uint64_t pending_bytes;  /* 0: 64 MiB; the most one commit may carry (per buffer; there
	                          * are two, so batch k+1 fills while k is written) */
	bool no_fsync;           /* --unsafe-no-fsync: write, never sync (files or directory) */
	bool truncate_corrupt;   /* repair: truncate at the first bad record instead of refusing
	                          * (later segments are renamed to *.seg.discarded) */
	const struct wal_file_ops *ops; /* NULL: real syscalls + io_uring */
	/* After a checkpoint (storage/ckpt.h): the log continues at segment first_seq and the
	 * checkpoint holds revision base_rev. Older segments are covered, so wal_open deletes
	 * them unread; a missing segment first_seq is damage (the checkpoint's roll made it
	 * before the checkpoint existed). With no log directory at all (a data directory
	 * uetcd-restore made), the log starts at first_seq. 0 and 0: no checkpoint. */
	uint64_t first_seq;
	int64_t base_rev;
};

/* Called at open for each valid record, oldest first. `payload` is valid during the call
 * only. Non-zero aborts wal_open, which returns it. Records are passed as they are read,
 * before the rest of the log is checked: if wal_open then fails, the caller must discard
 * what it replayed (it is about to exit anyway). */
typedef int (*wal_replay_fn)(void *arg, uint8_t type, int64_t rev, const uint8_t *payload, size_t len);

/* Opens (creating data_dir/log/ with a first segment if there is no log directory) and
 * replays the log through fn (may be NULL). What a crash can leave is repaired and logged:
 * a torn tail of the last segment (an incomplete or bad record written by a commit that
 * never completed, inside a segment of its full preallocated size) is zeroed; an empty
 * last segment of a roll that never linked it is removed. Any other bad record, a revision
 * going backwards, a segment that is missing (a gap, a link to nothing, the checkpoint's
 * first) or not of its preallocated size is -EBADMSG with "<segment path> offset <n>:
 * <why>" in err, unless o->truncate_corrupt. o may be NULL. If the next segment cannot
 * be preallocated (a full disk) the log opens all the same: see wal_spare_ready. */
int wal_open(const char *data_dir, const struct wal_options *o, wal_replay_fn fn, void *arg, struct wal **out,
	     char *err, size_t errlen);

/* Copies one record into the pending buffer. `rev` is the highest revision the record
 * carries (a record that adds no revision, such as a compaction, repeats the previous one);
 * it must be >= every earlier record's (-EINVAL otherwise, and for type 0 or rev < 0).
 * If the pending buffer cannot take it, what is pending is committed first (a forced
 * commit, with its sync). -EMSGSIZE if the record alone exceeds pending_bytes. */
int wal_append(struct wal *w, uint8_t type, int64_t rev, const struct iovec *iov, int iovcnt);

/* Writes everything pending at the end of the current segment (rolling over to a new one
 * first if it does not fit) and makes it durable with one fdatasync, linked behind the
 * write in one io_uring submission. Short writes are continued. 0 or -errno; after an error
 * the wal is failed for good (see the durability contract above), with one exception: when
 * the roll cannot get the next segment's space (-ENOSPC, -EDQUOT: wal_error() stays 0),
 * nothing was written, what is pending stays pending and a later commit tries again. */
int wal_commit(struct wal *w);

/* The same in two halves, so the sequencer can prepare batch k+1 while batch k syncs:
 * submit starts writing what is pending (waiting first for a commit still in flight) and
 * returns; appends after it go to the other buffer; wait returns when it is durable.
 * Nothing in flight: wait returns 0 (or the wal's error). */
int wal_commit_submit(struct wal *w);
int wal_commit_wait(struct wal *w);

/* Waits for a commit in flight, commits what is pending, closes. Returns the first error. */
int wal_close(struct wal *w);

/* The log's sticky error (0: healthy). */
int wal_error(const struct wal *w);

/* The log keeps the segment after the current one preallocated (<seq>.seg.spare), so a roll
 * allocates nothing and a full disk shows a whole segment before the log needs the space.
 * ready: the spare exists. prepare: makes it if missing; 0 or -errno (-ENOSPC: the disk is
 * still full), never fails the log; logs the first failure and the recovery. The server
 * refuses writes that add data while it is missing (etcd's NOSPACE alarm). */
bool wal_spare_ready(const struct wal *w);
int wal_spare_prepare(struct wal *w);

/* Bytes of the segment files (allocated size, not the spare: what they take on disk). Any thread. */
uint64_t wal_size_bytes(const struct wal *w);
/* Bytes the segments' headers and durable records occupy (not their preallocated tails),
 * for Status.db_size. Any thread. */
uint64_t wal_used_bytes(const struct wal *w);

/* Highest revision durable in the log (0 if none). */
int64_t wal_last_rev(const struct wal *w);

struct wal_segment_info {
	uint64_t seq;
	int64_t first_rev; /* revision of its first record; base_rev if it has none */
	int64_t last_rev;  /* revision of its last durable record; base_rev if none */
	uint64_t records;
	uint64_t bytes;    /* file size */
};

/* Fills up to max entries, oldest first; returns how many segments there are. */
size_t wal_segments(const struct wal *w, struct wal_segment_info *out, size_t max);

/* Ends the current segment so that what comes next starts a new one, whose sequence
 * number it returns (the current one's if nothing was written to it yet): a checkpoint of
 * the state so far says "replay from here". Nothing may be pending or in flight (-EBUSY).
 * Returns the sequence number or -errno (and then the wal is failed, as for a commit,
 * except for no space: see wal_commit). */
int64_t wal_roll(struct wal *w);

/* Space reclamation after a durable checkpoint that continues at segment `seq`: deletes
 * the segments numbered below it, oldest first, never the segment being written. Returns
 * how many it removed, or -errno. Crash-safe: segments go oldest first and wal_open
 * deletes any that are left below first_seq. */
int wal_remove_segments_below(struct wal *w, uint64_t seq);

/* ---- offline inspection (tools) ---- */

struct wal_record_info {
	const char *segment; /* path */
	uint64_t seq;
	uint64_t offset;
	uint8_t type;
	int64_t rev;
	uint32_t len;
	uint64_t checksum;
	const uint8_t *payload;
};
typedef int (*wal_inspect_fn)(void *arg, const struct wal_record_info *r);

/* Reads data_dir/log without changing anything; calls fn (may be NULL) for every valid
 * record. Returns 0 if the log is clean, 1 if it ends in a torn tail (that wal_open would
 * truncate; described in err), -EBADMSG with the first problem's segment and offset in err,
 * or another -errno. */
int wal_inspect(const char *data_dir, wal_inspect_fn fn, void *arg, char *err, size_t errlen);
/* The same for a log that a checkpoint says continues at segment first_seq (0: none): the
 * segments below it are skipped, and a missing first_seq is damage, as at start-up. */
int wal_inspect_at(const char *data_dir, uint64_t first_seq, wal_inspect_fn fn, void *arg, char *err,
		   size_t errlen);

/* ---- batch payload codec (record type WAL_REC_BATCH) ----
 * A batch is the changes of consecutive revisions: puts, deletes (one per key; the
 * sequencer expands a range delete) and compactions, in order. Encoding writes into a
 * caller buffer; decode validates the whole payload before the first callback, so a caller
 * never applies half of a malformed batch. Layout: table in storage/wal.c. */
enum wal_op {
	WAL_OP_PUT = 1,     /* key, value, lease */
	WAL_OP_DELETE = 2,  /* key */
	WAL_OP_COMPACT = 3, /* compact_rev (<= rev) */
	WAL_OP_LEASE_GRANT = 4,  /* lease id, ttl (seconds) */
	WAL_OP_LEASE_REVOKE = 5, /* lease id; its keys' deletions follow as deletes */
	/* 6..15 reserved for leases */
	WAL_OP_AUTH = 16,        /* value: one auth operation (core/auth.h's bytes) */
	/* 17..31 reserved for auth */
	WAL_OP_ALARMS = 32,      /* num: the member's active alarms after the change (1 << AlarmType) */
};

struct wal_change {
	enum wal_op op;
	int64_t rev;
	const uint8_t *key;
	size_t key_len;
	const uint8_t *value;
	size_t value_len;
	int64_t lease;       /* PUT: lease id, 0 for none; LEASE_*: the lease */
	int64_t ttl;         /* LEASE_GRANT */
	int64_t compact_rev; /* COMPACT */
	uint32_t alarms;     /* ALARMS */
};

struct wal_batch_enc {
	uint8_t *buf;
	size_t cap, len;
	int64_t base_rev, rev;
	uint32_t count;
	int err; /* sticky: -ENOBUFS, -EINVAL */
};

#define WAL_BATCH_HDR 13
#define WAL_BATCH_CHANGE_OVERHEAD 41 /* most bytes a change adds besides key and value */

void wal_batch_begin(struct wal_batch_enc *e, uint8_t *buf, size_t cap, int64_t base_rev);
/* rev must be >= base_rev and >= the previous change's; errors are sticky, see end */
int wal_batch_put(struct wal_batch_enc *e, int64_t rev, const uint8_t *key, size_t key_len, const uint8_t *value,
		  size_t value_len, int64_t lease);
int wal_batch_delete(struct wal_batch_enc *e, int64_t rev, const uint8_t *key, size_t key_len);
int wal_batch_compact(struct wal_batch_enc *e, int64_t rev, int64_t compact_rev);
/* rev is the store's revision when the lease was granted or revoked (a lease adds none) */
int wal_batch_lease_grant(struct wal_batch_enc *e, int64_t rev, int64_t id, int64_t ttl);
int wal_batch_lease_revoke(struct wal_batch_enc *e, int64_t rev, int64_t id);
/* rev is the store's revision when auth changed (an auth change adds none) */
int wal_batch_auth(struct wal_batch_enc *e, int64_t rev, const uint8_t *op, size_t len);
int wal_batch_alarms(struct wal_batch_enc *e, int64_t rev, uint32_t alarms);
/* Returns the payload length, or the first error (-ENOBUFS: buffer too small). *last_rev
 * (may be NULL) gets the highest revision, for wal_append. */
ssize_t wal_batch_end(struct wal_batch_enc *e, int64_t *last_rev);

typedef int (*wal_change_fn)(void *arg, const struct wal_change *c);
/* 0, -EINVAL (malformed), -ENOTSUP (unknown version or op), or fn's non-zero result. */
int wal_batch_decode(const uint8_t *p, size_t len, wal_change_fn fn, void *arg);

#endif
