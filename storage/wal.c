/* The write-ahead log (see wal.h for the API and the durability contract).
 *
 * data-dir/log/NNNNNNNNNNNNNNNN.seg — NNNN… is the segment's sequence number in 16 lowercase
 * hex digits, starting at 1, consecutive. The first segment of a new log is made inside
 * data-dir/log.new, which is then renamed data-dir/log: a log directory always has a
 * segment. Later ones come from NNNN.seg.spare, the next segment preallocated ahead of need
 * (so a full disk shows a whole segment early, and a roll allocates nothing); leftover
 * *.seg.tmp and *.seg.spare files are deleted at open.
 *
 * Segment header (64 bytes, little-endian):
 *   offset  size  field
 *   0       8     magic "uetcdlog"
 *   8       4     format version = 2 (1: written before links; still read, see below)
 *   12      4     header size = 64
 *   16      8     sequence number (= the file name)
 *   24      8     base revision: the last durable revision when the segment was created
 *   32      8     size: the file's preallocated size, which it keeps for life (version 1: zero)
 *   40      16    zero
 *   56      8     XXH3-64 of bytes 0..55
 *
 * Records follow from offset 64, each starting 8-byte aligned:
 *   0       8     XXH3-64 of bytes 8 .. 32+length (the rest of this header and the payload)
 *   8       4     magic 0x63655275 ("uRec")
 *   12      4     payload length
 *   16      8     revision: the highest revision the record carries (i64, >= 0)
 *   24      1     type (WAL_REC_*; 0 is never valid)
 *   25      3     zero
 *   28      4     commit offset: bytes from the start of the write (commit) that carried this
 *                 record to the record; lets recovery tell a torn last commit from damage
 *   32      len   payload (WAL_REC_BATCH: the table in wal_rec.c; WAL_REC_LINK: u64, the
 *                 next segment's sequence number)
 *   32+len  0..7  zero padding to a multiple of 8 (checked, not checksummed)
 *
 * The rest of a segment is zeros (never written since preallocation): an all-zero record
 * header ends the written data. Revisions never go down from record to record, across
 * segments too, and no record's revision is below its segment's base revision. Every
 * segment keeps LINK_BYTES free for its last record, the link naming the next segment,
 * written (commit of its own) when the log rolls over, before the next takes any record.
 *
 * Recovery. One commit is one pwrite of whole records at the tail plus one fdatasync, and
 * the next commit starts only after it returned, so at a crash only the last commit can be
 * partial, and it may be partial in any pattern of pages. Scanning a segment stops at the
 * first all-zero or invalid record header, at offset P. Then every later 8-aligned offset
 * is tried as a record: if the rest is all zeros, P is the clean end; if it holds garbage or
 * valid records that all belong to one commit that started at or before P (commit offset),
 * P is inside the last commit, which never completed: a torn tail, zeroed in place (the file
 * keeps its size; the warning says how many bytes of records went). Anything else — a
 * valid record of a later commit after P — is damage to data that was acknowledged, and
 * opening refuses. What this cannot tell apart: damage to the last commit itself looks like
 * a tear and is discarded (as etcd does), losing that commit.
 *
 * What no crash can produce, and so is damage (refused, file and offset named; uetcd-check
 * exits 1), since the chain of segments is recorded durably:
 *   - a version 2 segment whose size differs from its header's (cut short or extended: a
 *     preallocated file is never shortened, not even by repairing a torn tail);
 *   - a gap in the numbers; a segment ending in a link to a segment that is not there (the
 *     newest deleted); a segment (version 2 or later) not linked from its predecessor;
 *   - the segment a checkpoint says the log continues at, missing (the checkpoint's roll
 *     made it, durably, before the checkpoint was written; only a data directory with no
 *     log directory at all, as uetcd-restore leaves it, starts an empty log there);
 *   - a torn tail anywhere but in the last segment (a segment was synced before the next
 *     began), except as below.
 *
 * The crash windows of a roll (wal_rollover, steps in order), and what open makes of each:
 *   1. spare created and preallocated: only *.seg.spare exists -> deleted. No space here is
 *      the one failure that leaves the log healthy (the caller retries: a full disk).
 *   2. the spare's header rewritten (base revision), fsync: still *.seg.spare -> deleted.
 *   3. renamed NNNN.seg, directory fsync: a last segment, empty, that its predecessor does
 *      not link to -> an unfinished roll: removed (it holds nothing), the log goes on in
 *      the predecessor. (Had it records, it would be damage: records come after step 4.)
 *   4. link written, fsync: if torn, the predecessor's torn tail is the link and the empty
 *      segment follows: the tail is zeroed and the empty segment removed, as in 3. If
 *      whole, the log simply continues in the empty segment.
 *   5. records go to the new segment; a new spare is made (a failure there is no error).
 * A checkpoint names its segment only after wal_roll returned, i.e. after step 4.
 *
 * Version 1 segments (before links and sizes) are read as before: no size check, and no
 * link required after them. Rolling from one writes a link if the segment has room for it.
 *
 * Only this file writes segments; only wal_commit_submit() advances the tail, and only
 * wal_commit_wait() declares records durable. */
#include "storage/wal.h"
#include "storage/le.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <liburing.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/log.h"

#define SEG_HDR 64u
#define REC_HDR 32u
#define SEG_VERSION 2u    /* written; version 1 (no size, no links) is still read */
#define SEG_VERSION_V1 1u
#define LINK_BYTES 40u    /* a link record: header and the next sequence number */
#define REC_MAGIC 0x63655275u
#define SEG_BYTES_MAX (4ull << 30) /* a larger file is not ours */
#define SEG_NAME_LEN 20            /* 16 hex + ".seg" */
#define SEG_PATH_MAX (PATH_MAX + 32) /* dir + "/" + name + ".discarded" */
#define ZERO_CHUNK (64u << 10)       /* zeroing a torn tail goes in writes of this size */
static const char seg_magic[8] = {'u', 'e', 't', 'c', 'd', 'l', 'o', 'g'};

_Static_assert(WAL_PENDING_BYTES_MAX + SEG_HDR < SEG_BYTES_MAX, "a full commit fits a segment");
_Static_assert(WAL_PENDING_BYTES_MAX <= UINT32_MAX, "commit offsets are 32 bits");

#define ALIGN8(x) (((x) + 7) & ~(uint64_t)7)

static bool all_zero(const uint8_t *p, size_t n)
{
	/* word at a time once aligned: the zero tail of a 64 MiB segment is scanned at every open */
	while (n && ((uintptr_t)p & 7)) {
		if (*p++)
			return false;
		n--;
	}
	for (; n >= 8; p += 8, n -= 8) {
		uint64_t v;
		memcpy(&v, p, 8); /* one load; no aliasing question */
		if (v)
			return false;
	}
	while (n--)
		if (*p++)
			return false;
	return true;
}

/* ---- the plain file layer ---- */

static int px_open(void *ctx, const char *path, int flags, mode_t mode)
{
	int fd;

	do
		fd = open(path, flags | O_CLOEXEC, mode);
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

static int px_close(void *ctx, int fd)
{
	return close(fd) < 0 && errno != EINTR ? -errno : 0;
}

static ssize_t px_pread(void *ctx, int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t n;

	do
		n = pread(fd, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static ssize_t px_pwrite(void *ctx, int fd, const void *buf, size_t len, uint64_t off)
{
	ssize_t n;

	do
		n = pwrite(fd, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static int px_fdatasync(void *ctx, int fd)
{
	return fdatasync(fd) < 0 ? -errno : 0;
}

static int px_fsync(void *ctx, int fd)
{
	return fsync(fd) < 0 ? -errno : 0;
}

static int px_fallocate(void *ctx, int fd, uint64_t off, uint64_t len)
{
	int rc;

	do
		rc = fallocate(fd, 0, (off_t)off, (off_t)len);
	while (rc < 0 && errno == EINTR);
	return rc < 0 ? -errno : 0;
}

static int px_ftruncate(void *ctx, int fd, uint64_t len)
{
	return ftruncate(fd, (off_t)len) < 0 ? -errno : 0;
}

static int px_fsize(void *ctx, int fd, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

static int px_rename(void *ctx, const char *from, const char *to)
{
	return rename(from, to) < 0 ? -errno : 0;
}

static int px_unlink(void *ctx, const char *path)
{
	return unlink(path) < 0 ? -errno : 0;
}

static const struct wal_file_ops posix_ops = {
	.open = px_open,
	.close = px_close,
	.pread = px_pread,
	.pwrite = px_pwrite,
	.fdatasync = px_fdatasync,
	.fsync = px_fsync,
	.fallocate = px_fallocate,
	.ftruncate = px_ftruncate,
	.fsize = px_fsize,
	.rename = px_rename,
	.unlink = px_unlink,
};

const struct wal_file_ops *wal_file_ops_posix(void)
{
	return &posix_ops;
}

/* pwrite until done; a zero-byte write is -EIO rather than a loop forever */
static int ops_write_all(const struct wal_file_ops *ops, int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = ops->pwrite(ops->ctx, fd, p, len, off);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int ops_read_all(const struct wal_file_ops *ops, int fd, uint8_t *p, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = ops->pread(ops->ctx, fd, p, len, off);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO; /* the file shrank under us */
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* Preallocates [off, off+len); a file system without fallocate gets a sparse extension. */
static int ops_prealloc(const struct wal_file_ops *ops, int fd, uint64_t off, uint64_t len)
{
	int rc = ops->fallocate(ops->ctx, fd, off, len);

	if (rc == -EOPNOTSUPP)
		rc = ops->ftruncate(ops->ctx, fd, off + len);
	return rc;
}

/* ---- segment and record headers ---- */

struct rec_hdr {
	uint64_t sum;
	uint32_t len;
	int64_t rev;
	uint8_t type;
	uint32_t commit_off;
};

struct seg_hdr {
	uint64_t seq;
	int64_t base_rev;
	uint32_t version;
	uint64_t size; /* version 2: the preallocated size; 0 for version 1 */
};

static void seg_hdr_encode(uint8_t *p, uint64_t seq, int64_t base_rev, uint64_t size)
{
	memset(p, 0, SEG_HDR);
	memcpy(p, seg_magic, 8);
	le_put32(p + 8, SEG_VERSION);
	le_put32(p + 12, SEG_HDR);
	le_put64(p + 16, seq);
	le_put64(p + 24, (uint64_t)base_rev);
	le_put64(p + 32, size);
	le_put64(p + 56, XXH3_64bits(p, 56));
}

static const char *seg_hdr_check(const uint8_t *p, uint64_t n, uint64_t seq, struct seg_hdr *h)
{
	if (n < SEG_HDR)
		return "segment shorter than its header";
	if (memcmp(p, seg_magic, 8) != 0)
		return "not a segment (bad magic)";
	if (le_get64(p + 56) != XXH3_64bits(p, 56))
		return "segment header checksum mismatch";
	h->version = le_get32(p + 8);
	if ((h->version != SEG_VERSION && h->version != SEG_VERSION_V1) || le_get32(p + 12) != SEG_HDR)
		return "unsupported segment format version";
	h->size = h->version == SEG_VERSION_V1 ? 0 : le_get64(p + 32);
	if (!all_zero(p + (h->version == SEG_VERSION_V1 ? 32 : 40), h->version == SEG_VERSION_V1 ? 24 : 16))
		return "segment header reserved bytes not zero";
	if (h->version != SEG_VERSION_V1 && (h->size < WAL_SEGMENT_BYTES_MIN || h->size > SEG_BYTES_MAX))
		return "segment header size out of range";
	h->seq = le_get64(p + 16);
	h->base_rev = (int64_t)le_get64(p + 24);
	if (h->seq != seq)
		return "segment header sequence number differs from its file name";
	if (h->base_rev < 0)
		return "negative base revision";
	return NULL;
}

/* Is there a valid record at pos? Returns NULL and fills *h if so, else why not. */
static const char *rec_check(const uint8_t *b, uint64_t n, uint64_t pos, struct rec_hdr *h)
{
	const uint8_t *p = b + pos;

	if (n - pos < REC_HDR)
		return "truncated record header";
	if (le_get32(p + 8) != REC_MAGIC)
		return "bad record magic";
	h->sum = le_get64(p);
	h->len = le_get32(p + 12);
	h->rev = (int64_t)le_get64(p + 16);
	h->type = p[24];
	h->commit_off = le_get32(p + 28);
	if (ALIGN8((uint64_t)REC_HDR + h->len) > n - pos)
		return "record length runs past the end of the segment";
	if (h->type == 0 || p[25] || p[26] || p[27])
		return "bad record type";
	if ((h->commit_off & 7) || h->commit_off > pos - SEG_HDR)
		return "bad record commit offset";
	if (h->sum != XXH3_64bits(p + 8, REC_HDR - 8 + (size_t)h->len))
		return "record checksum mismatch";
	if (!all_zero(p + REC_HDR + h->len, ALIGN8((uint64_t)REC_HDR + h->len) - REC_HDR - h->len))
		return "record padding not zero";
	if (h->rev < 0)
		return "negative revision";
	return NULL;
}

/* ---- walking the log (open and inspect) ---- */

enum { WALK_CLEAN, WALK_TORN, WALK_CORRUPT, WALK_ABORT /* a record callback returned cb_rc */ };

struct wal_seg {
	uint64_t seq;
	int64_t base_rev, first_rev, last_rev;
	uint64_t records, bytes, end; /* end: offset after the last valid record */
	uint32_t version;
	uint64_t prealloc;            /* version 2: the size its header gives (0: version 1) */
	bool linked;                  /* ends with a link record naming seq + 1 */
	uint64_t link_off;
	uint64_t torn_bytes;          /* torn: bytes from `end` to the last non-zero byte */
};

struct wal_walk {
	const struct wal_file_ops *ops;
	const char *dir;
	const uint64_t *seqs;
	size_t n;
	int (*rec)(void *arg, const struct wal_record_info *r);
	void *arg;
	struct wal_seg *segs; /* n entries, filled up to the problem */
	/* result */
	int status;
	size_t bad;           /* index of the segment with the problem */
	uint64_t bad_off;
	bool drop_last;       /* the last segment is an unfinished roll: empty, not linked yet */
	int cb_rc;
	char why[256];
};

static void seg_path(char *out, size_t outlen, const char *dir, uint64_t seq, const char *suffix)
{
	snprintf(out, outlen, "%s/%016" PRIx64 ".seg%s", dir, seq, suffix);
}

/* After a stop at pos: is the rest of the segment the torn remains of the last commit? */
static int walk_tail(const uint8_t *b, uint64_t n, uint64_t pos, bool zero_hdr, char *why, size_t whylen)
{
	bool have = false;
	uint64_t commit = 0;

	if (zero_hdr && all_zero(b + pos, n - pos))
		return WALK_CLEAN;
	for (uint64_t y = pos + 8; y + REC_HDR <= n; y += 8) {
		struct rec_hdr h;
		if (le_get32(b + y + 8) != REC_MAGIC || rec_check(b, n, y, &h))
			continue;
		uint64_t start = y - h.commit_off;
		if (start > pos || (have && start != commit)) {
			size_t l = strlen(why);
			snprintf(why + l, whylen - l, "; a valid record of a later commit follows at offset %" PRIu64, y);
			return WALK_CORRUPT;
		}
		have = true;
		commit = start;
	}
	return WALK_TORN;
}

/* Bytes from pos to the end of the last non-zero 8-byte word: what a torn commit wrote. */
static uint64_t torn_extent(const uint8_t *b, uint64_t n, uint64_t pos)
{
	uint64_t end = n;

	while (end > pos && !b[end - 1])
		end--;
	end = ALIGN8(end);
	return (end > n ? n : end) - pos;
}

/* Scans one segment image; returns WALK_* with w->bad_off/why set, or a negative error. */
static int walk_segment(struct wal_walk *wk, size_t i, const char *path, const uint8_t *b, uint64_t n,
			int64_t *prev_rev)
{
	struct wal_seg *s = &wk->segs[i];
	struct seg_hdr sh;
	const char *why = seg_hdr_check(b, n, wk->seqs[i], &sh);

	wk->bad_off = 0;
	if (why) {
		snprintf(wk->why, sizeof wk->why, "%s", why);
		return WALK_CORRUPT;
	}
	if (sh.base_rev < *prev_rev) {
		snprintf(wk->why, sizeof wk->why, "base revision %" PRId64 " below the previous segment's %" PRId64,
			 sh.base_rev, *prev_rev);
		return WALK_CORRUPT;
	}
	s->version = sh.version;
	s->prealloc = sh.size;
	s->base_rev = s->first_rev = s->last_rev = sh.base_rev;
	uint64_t pos = SEG_HDR;
	int st = WALK_CLEAN;
	for (;;) {
		struct rec_hdr h;
		if (pos == n) {
			s->end = pos;
			break;
		}
		bool zero = n - pos >= REC_HDR ? all_zero(b + pos, REC_HDR) : all_zero(b + pos, n - pos);
		why = zero ? "all-zero record header" : rec_check(b, n, pos, &h);
		if (!why && (h.rev < *prev_rev || h.rev < sh.base_rev)) {
			snprintf(wk->why, sizeof wk->why, "revision %" PRId64 " goes backwards (previous %" PRId64 ")",
				 h.rev, *prev_rev > sh.base_rev ? *prev_rev : sh.base_rev);
			wk->bad_off = s->end = pos;
			return WALK_CORRUPT;
		}
		if (!why && h.type == WAL_REC_LINK &&
		    (h.len != 8 || le_get64(b + pos + REC_HDR) != wk->seqs[i] + 1 || h.commit_off)) {
			snprintf(wk->why, sizeof wk->why, "bad link record");
			wk->bad_off = s->end = pos;
			return WALK_CORRUPT;
		}
		if (why) {
			s->end = wk->bad_off = pos;
			snprintf(wk->why, sizeof wk->why, "%s", why);
			st = walk_tail(b, n, pos, zero, wk->why, sizeof wk->why);
			if (st == WALK_TORN && zero)
				snprintf(wk->why, sizeof wk->why, "garbage after the end of the records");
			if (st == WALK_TORN)
				s->torn_bytes = torn_extent(b, n, pos);
			break;
		}
		if (!s->records)
			s->first_rev = h.rev;
		s->last_rev = *prev_rev = h.rev;
		s->records++;
		if (wk->rec) {
			struct wal_record_info r = {
				.segment = path,
				.seq = wk->seqs[i],
				.offset = pos,
				.type = h.type,
				.rev = h.rev,
				.len = h.len,
				.checksum = h.sum,
				.payload = b + pos + REC_HDR,
			};
			if ((wk->cb_rc = wk->rec(wk->arg, &r)))
				return WALK_ABORT;
		}
		if (h.type == WAL_REC_LINK) {
			/* the last record of its segment: written once, after every commit in it */
			s->linked = true;
			s->link_off = pos;
			pos += LINK_BYTES;
			s->end = pos;
			if (!all_zero(b + pos, n - pos)) {
				snprintf(wk->why, sizeof wk->why, "data after the link to the next segment");
				wk->bad_off = pos;
				return WALK_CORRUPT;
			}
			break;
		}
		pos += ALIGN8((uint64_t)REC_HDR + h.len);
	}
	if (st != WALK_CORRUPT && sh.size && n != sh.size) {
		/* a segment keeps its preallocated size for life: no crash shortens it */
		snprintf(wk->why, sizeof wk->why,
			 "the segment is %" PRIu64 " bytes, not the %" PRIu64 " it was preallocated to: cut short or "
			 "extended (no crash does that)", n, sh.size);
		wk->bad_off = s->end;
		return WALK_CORRUPT;
	}
	return st;
}

/* Walks every segment in order, stopping at the first problem (wk->status != WALK_CLEAN).
 * Returns 0 or a negative error (I/O, memory, or a record callback's).
 *
 * Between segments: a version 2 segment ends with a link naming the next, written before
 * the next takes any record; so a segment whose predecessor (version 2) has no link is
 * damage, except an empty last one, which a roll interrupted before the link was durable
 * (possibly torn in the middle of writing it); and a link to a segment that is not there
 * is damage (a deleted newest segment). */
static int walk_log(struct wal_walk *wk)
{
	char path[SEG_PATH_MAX];
	int64_t prev_rev = 0;
	bool torn_before = false; /* segment i-1 ended in a torn tail: only an unfinished roll explains it */
	uint64_t torn_off = 0;
	char torn_why[sizeof wk->why];

	wk->status = WALK_CLEAN;
	wk->drop_last = false;
	for (size_t i = 0; i < wk->n; i++) {
		struct wal_seg *s = &wk->segs[i];
		uint64_t size = 0;
		uint8_t *b = NULL;
		int fd, rc;

		memset(s, 0, sizeof *s);
		s->seq = wk->seqs[i];
		seg_path(path, sizeof path, wk->dir, s->seq, "");
		if (i > 0 && wk->seqs[i] != wk->seqs[i - 1] + 1) {
			wk->status = WALK_CORRUPT;
			wk->bad = torn_before ? i - 1 : i;
			wk->bad_off = torn_before ? torn_off : 0;
			snprintf(wk->why, sizeof wk->why, "segment %016" PRIx64 " is missing", wk->seqs[i - 1] + 1);
			return 0;
		}
		fd = wk->ops->open(wk->ops->ctx, path, O_RDONLY, 0);
		if (fd < 0)
			return fd;
		rc = wk->ops->fsize(wk->ops->ctx, fd, &size);
		if (!rc && size > SEG_BYTES_MAX)
			rc = -EFBIG;
		if (!rc && size && !(b = malloc(size)))
			rc = -ENOMEM;
		if (!rc)
			rc = ops_read_all(wk->ops, fd, b, size, 0);
		wk->ops->close(wk->ops->ctx, fd);
		s->bytes = size;
		if (!rc)
			rc = walk_segment(wk, i, path, b, size, &prev_rev);
		free(b);
		if (rc < 0)
			return rc;
		if (rc == WALK_ABORT)
			return wk->cb_rc;
		/* (a version 1 segment predates links, unless its roll is what tore it) */
		bool unlinked = i > 0 && !wk->segs[i - 1].linked &&
				(wk->segs[i - 1].version != SEG_VERSION_V1 || torn_before);
		if (rc == WALK_CLEAN && unlinked && i + 1 == wk->n && !s->records)
			wk->drop_last = true; /* an unfinished roll */
		else if (rc != WALK_CORRUPT && unlinked) {
			rc = WALK_CORRUPT;
			wk->bad_off = 0;
			snprintf(wk->why, sizeof wk->why, "the previous segment does not link to this one");
		}
		if (torn_before) {
			/* segments before the last were synced before the next began: not a tear,
			 * unless it was the link record of the roll to this empty last segment */
			wk->bad = i - 1;
			wk->bad_off = torn_off;
			memcpy(wk->why, torn_why, sizeof wk->why);
			if (!wk->drop_last) {
				size_t l = strlen(wk->why);
				snprintf(wk->why + l, sizeof wk->why - l, " in a segment that is not the last");
			}
			wk->status = wk->drop_last ? WALK_TORN : WALK_CORRUPT;
			return 0;
		}
		if (rc == WALK_TORN && i + 1 < wk->n) {
			torn_before = true;
			torn_off = wk->bad_off;
			memcpy(torn_why, wk->why, sizeof torn_why);
			continue;
		}
		if (rc != WALK_CLEAN) {
			wk->status = rc;
			wk->bad = i;
			return 0;
		}
	}
	if (wk->n && wk->segs[wk->n - 1].linked) {
		wk->status = WALK_CORRUPT;
		wk->bad = wk->n - 1;
		wk->bad_off = wk->segs[wk->n - 1].link_off;
		snprintf(wk->why, sizeof wk->why,
			 "links to segment %016" PRIx64 ".seg, which is missing (deleted? the log would lose what it held)",
			 wk->seqs[wk->n - 1] + 1);
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Sorted sequence numbers of the *.seg files; deletes leftover *.seg.tmp and *.seg.spare
 * if `clean`. */
static int list_segments(const char *dir, const struct wal_file_ops *ops, bool clean, uint64_t **out, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	uint64_t *v = NULL;
	size_t cap = 0, cnt = 0;
	int rc = 0;

	*out = NULL;
	*n = 0;
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		const char *nm = de->d_name;
		size_t len = strlen(nm);
		bool hex = len >= SEG_NAME_LEN && strspn(nm, "0123456789abcdef") == 16 && !memcmp(nm + 16, ".seg", 4);
		bool tmp = hex && len == SEG_NAME_LEN + 4 && !strcmp(nm + SEG_NAME_LEN, ".tmp");
		if (tmp || (hex && len == SEG_NAME_LEN + 6 && !strcmp(nm + SEG_NAME_LEN, ".spare"))) {
			if (clean) {
				char path[SEG_PATH_MAX];
				snprintf(path, sizeof path, "%s/%s", dir, nm);
				if (tmp)
					log_info("wal: removing unfinished segment %s", path);
				if ((rc = ops->unlink(ops->ctx, path)))
					break;
			}
			continue;
		}
		if (!hex || len != SEG_NAME_LEN)
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			uint64_t *nv = realloc(v, cap * sizeof *v);
			if (!nv) {
				rc = -ENOMEM;
				break;
			}
			v = nv;
		}
		v[cnt++] = strtoull(nm, NULL, 16);
	}
	closedir(d);
	if (rc) {
		free(v);
		return rc;
	}
	if (cnt)
		qsort(v, cnt, sizeof *v, cmp_u64);
	*out = v;
	*n = cnt;
	return 0;
}

/* ---- the open log ---- */

struct wal_buf {
	uint8_t *p;
	size_t len, cap;
	int64_t first_rev, last_rev;
	uint64_t records;
};

struct wal {
	char dir[PATH_MAX]; /* data-dir/log */
	const struct wal_file_ops *ops;
	bool use_uring, no_fsync;
	struct io_uring ring;
	uint64_t segment_bytes, pending_max;
	int dir_fd, fd;        /* the log directory, the segment being written */
	uint64_t tail;         /* end of written (or in-flight) data in the current segment */
	uint64_t seg_cap;      /* the current segment's size */
	struct wal_seg *segs;  /* oldest first; the last is the current one */
	size_t nsegs, segs_cap;
	struct wal_buf bufs[2];
	int cur;               /* bufs[cur] takes appends; bufs[cur ^ 1] is in flight */
	bool inflight;
	uint64_t io_off;       /* where the in-flight buffer goes */
	size_t io_done;        /* bytes of it written so far */
	int io_sqes, io_rc;    /* completions outstanding (io_uring); result (synchronous path) */
	int64_t last_rev;      /* highest appended */
	int64_t durable_rev;   /* highest durable */
	int err;               /* sticky: the first failed write, sync or rollover */
	int spare_fd;          /* the next segment, preallocated (wal_rollover); -1: none */
	uint64_t spare_bytes;
	bool spare_warned;     /* the last try to make the spare failed, and said so */
	_Atomic uint64_t size_bytes;
	_Atomic uint64_t used_bytes; /* sum of the segments' `end`: what the records occupy */
};

static int wal_fail(struct wal *w, int rc, const char *what)
{
	if (!w->err) {
		w->err = rc;
		log_error("wal: %s failed in segment %s/%016" PRIx64 ".seg: %s; the log accepts no more writes", what,
			  w->dir, w->nsegs ? w->segs[w->nsegs - 1].seq : 0, strerror(-rc));
	}
	return w->err;
}

static int segs_push(struct wal *w, const struct wal_seg *s)
{
	if (w->nsegs == w->segs_cap) {
		size_t cap = w->segs_cap ? w->segs_cap * 2 : 16;
		struct wal_seg *v = realloc(w->segs, cap * sizeof *v);
		if (!v)
			return -ENOMEM;
		w->segs = v;
		w->segs_cap = cap;
	}
	w->segs[w->nsegs++] = *s;
	atomic_fetch_add_explicit(&w->size_bytes, s->bytes, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->used_bytes, s->end, memory_order_relaxed);
	return 0;
}

/* Creates segment `seq` (tmp name, preallocate, header, sync, rename, sync dir); *fd stays
 * open read-write. */
static int seg_create(struct wal *w, uint64_t seq, int64_t base_rev, uint64_t size, int *out_fd)
{
	const struct wal_file_ops *ops = w->ops;
	char tmp[SEG_PATH_MAX], path[SEG_PATH_MAX];
	uint8_t hdr[SEG_HDR];
	int fd, rc;

	seg_path(tmp, sizeof tmp, w->dir, seq, ".tmp");
	seg_path(path, sizeof path, w->dir, seq, "");
	fd = ops->open(ops->ctx, tmp, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return fd;
	seg_hdr_encode(hdr, seq, base_rev, size);
	rc = ops_prealloc(ops, fd, 0, size);
	if (!rc)
		rc = ops_write_all(ops, fd, hdr, SEG_HDR, 0);
	if (!rc && !w->no_fsync)
		rc = ops->fsync(ops->ctx, fd);
	if (!rc)
		rc = ops->rename(ops->ctx, tmp, path);
	if (rc) {
		ops->close(ops->ctx, fd);
		ops->unlink(ops->ctx, tmp);
		return rc;
	}
	if (!w->no_fsync && (rc = ops->fsync(ops->ctx, w->dir_fd))) {
		/* the name may or may not survive a crash; the file is complete either way */
		ops->close(ops->ctx, fd);
		return rc;
	}
	*out_fd = fd;
	return 0;
}

static void spare_drop(struct wal *w)
{
	char path[SEG_PATH_MAX];

	if (w->spare_fd < 0)
		return;
	w->ops->close(w->ops->ctx, w->spare_fd);
	w->spare_fd = -1;
	seg_path(path, sizeof path, w->dir, w->segs[w->nsegs - 1].seq + 1, ".spare");
	w->ops->unlink(w->ops->ctx, path);
}

/* Preallocates the next segment ahead of need, as <seq+1>.seg.spare: a full disk shows
 * here, 64 MiB before the log needs the space, and the roll itself allocates nothing. Not
 * synced: the roll syncs it before it gets its name, and open deletes a leftover one.
 * Nothing changes on failure (the half-made file is removed). */
static int spare_create(struct wal *w, uint64_t size)
{
	const struct wal_file_ops *ops = w->ops;
	char path[SEG_PATH_MAX];
	int fd, rc;

	seg_path(path, sizeof path, w->dir, w->segs[w->nsegs - 1].seq + 1, ".spare");
	fd = ops->open(ops->ctx, path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return fd;
	if ((rc = ops_prealloc(ops, fd, 0, size))) {
		ops->close(ops->ctx, fd);
		ops->unlink(ops->ctx, path);
		return rc;
	}
	w->spare_fd = fd;
	w->spare_bytes = size;
	return 0;
}

/* Writes the link record naming the next segment at the tail of the current one, durably. */
static int link_write(struct wal *w)
{
	uint8_t r[LINK_BYTES] = {0};
	int rc;

	le_put32(r + 8, REC_MAGIC);
	le_put32(r + 12, 8);
	le_put64(r + 16, (uint64_t)w->durable_rev);
	r[24] = WAL_REC_LINK;
	le_put64(r + REC_HDR, w->segs[w->nsegs - 1].seq + 1);
	le_put64(r, XXH3_64bits(r + 8, REC_HDR - 8 + 8));
	_Static_assert(LINK_BYTES == REC_HDR + 8, "a link record is a header and a sequence number");
	rc = ops_write_all(w->ops, w->fd, r, LINK_BYTES, w->tail);
	if (!rc && !w->no_fsync)
		rc = w->ops->fsync(w->ops->ctx, w->fd);
	return rc;
}

/* Starts segment seq+1 able to take `need` bytes of records. Nothing is in flight.
 *
 * The steps, and what a crash after each leaves (see the recovery notes at the top):
 *   1. the spare <seq+1>.seg.spare, preallocated (made now if missing or too small)
 *        crash: a *.seg.spare, deleted at open. Failure (ENOSPC): returned, nothing changed
 *        and the log still healthy, so the caller may try again once space is back.
 *   2. its header (base revision = the last durable one), fsync
 *   3. renamed <seq+1>.seg, directory fsync
 *        crash: a last segment without records that the current one does not link to: an
 *        unfinished roll, removed at open (nothing was written to it)
 *   4. the link record at the tail of the current segment, fsync
 *        crash: torn link (removed as a torn tail, and the empty segment as above) or the
 *        link and an empty next segment, which open continues in
 *   5. records go to the new segment; a new spare is made (failure: no spare, not an
 *      error: wal_spare_ready says so, the caller retries with wal_spare_prepare)
 * A failure in steps 2-4 fails the log (the durability contract in wal.h). */
static int wal_rollover(struct wal *w, size_t need)
{
	struct wal_seg s = {.seq = w->segs[w->nsegs - 1].seq + 1, .base_rev = w->durable_rev};
	char spare[SEG_PATH_MAX], path[SEG_PATH_MAX];
	uint8_t hdr[SEG_HDR];
	uint64_t size = w->segment_bytes;
	int rc;

	if (SEG_HDR + need + LINK_BYTES > size)
		size = (SEG_HDR + need + LINK_BYTES + 4095) & ~(uint64_t)4095;
	if (w->spare_fd >= 0 && w->spare_bytes < size)
		spare_drop(w);
	if (w->spare_fd < 0 && (rc = spare_create(w, size)))
		return rc;
	size = w->spare_bytes;
	seg_path(spare, sizeof spare, w->dir, s.seq, ".spare");
	seg_path(path, sizeof path, w->dir, s.seq, "");
	seg_hdr_encode(hdr, s.seq, s.base_rev, size);
	if ((rc = ops_write_all(w->ops, w->spare_fd, hdr, SEG_HDR, 0)) ||
	    (!w->no_fsync && (rc = w->ops->fsync(w->ops->ctx, w->spare_fd))) ||
	    (rc = w->ops->rename(w->ops->ctx, spare, path)) ||
	    (!w->no_fsync && (rc = w->ops->fsync(w->ops->ctx, w->dir_fd))))
		return wal_fail(w, rc, "segment rollover (the next segment)");
	/* a version 1 segment written to its very end has no room for a link: it predates them */
	if (w->tail + LINK_BYTES <= w->seg_cap) {
		if ((rc = link_write(w)))
			return wal_fail(w, rc, "segment rollover (the link to the next segment)");
		w->segs[w->nsegs - 1].linked = true;
	}
	s.first_rev = s.last_rev = s.base_rev;
	s.bytes = size;
	s.end = SEG_HDR;
	s.version = SEG_VERSION;
	s.prealloc = size;
	if ((rc = segs_push(w, &s)))
		return wal_fail(w, rc, "segment rollover");
	w->ops->close(w->ops->ctx, w->fd);
	w->fd = w->spare_fd;
	w->spare_fd = -1;
	w->tail = SEG_HDR;
	w->seg_cap = size;
	wal_spare_prepare(w);
	return 0;
}

bool wal_spare_ready(const struct wal *w) { return w->spare_fd >= 0; }

int wal_spare_prepare(struct wal *w)
{
	int rc;

	if (w->err)
		return w->err;
	if (w->spare_fd >= 0)
		return 0;
	if ((rc = spare_create(w, w->segment_bytes))) {
		if (!w->spare_warned)
			log_warn("wal: cannot preallocate the next segment (%" PRIu64 " bytes) in %s: %s", w->segment_bytes,
				 w->dir, strerror(-rc));
		w->spare_warned = true;
		return rc;
	}
	if (w->spare_warned)
		log_info("wal: the next segment is preallocated again in %s", w->dir);
	w->spare_warned = false;
	return 0;
}

int wal_error(const struct wal *w) { return w->err; }

/* ---- commit: io_uring or synchronous ---- */

static int uring_submit(struct wal *w)
{
	const struct wal_buf *b = &w->bufs[w->cur ^ 1];
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	int n = 1, rc;

	/* the ring has 8 entries and every completion is reaped before the next submit */
	io_uring_prep_write(sqe, w->fd, b->p + w->io_done, (unsigned)(b->len - w->io_done), w->io_off + w->io_done);
	sqe->user_data = 1;
	if (!w->no_fsync) {
		/* IO_LINK: the fsync starts only after the write completed in full; a failed or
		 * short write cancels it (-ECANCELED) */
		sqe->flags |= IOSQE_IO_LINK;
		sqe = io_uring_get_sqe(&w->ring);
		io_uring_prep_fsync(sqe, w->fd, IORING_FSYNC_DATASYNC);
		sqe->user_data = 2;
		n = 2;
	}
	rc = io_uring_submit(&w->ring);
	if (rc < 0)
		return rc;
	w->io_sqes = rc;
	if (rc == n)
		return 0;
	while (w->io_sqes) { /* a partial submit: reap what went in, then fail */
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(&w->ring, &cqe) == 0)
			io_uring_cqe_seen(&w->ring, cqe);
		w->io_sqes--;
	}
	return -EIO;
}

static int uring_wait(struct wal *w)
{
	const struct wal_buf *b = &w->bufs[w->cur ^ 1];

	for (;;) {
		int wres = -ECANCELED, fres = w->no_fsync ? 0 : -ECANCELED, rc = 0;
		while (w->io_sqes) {
			struct io_uring_cqe *cqe;
			rc = io_uring_wait_cqe(&w->ring, &cqe);
			if (rc == -EINTR)
				continue;
			if (rc < 0)
				return rc; /* the ring itself is broken: fatal like a failed write */
			if (cqe->user_data == 1)
				wres = cqe->res;
			else
				fres = cqe->res;
			io_uring_cqe_seen(&w->ring, cqe);
			w->io_sqes--;
		}
		if (wres < 0)
			return wres;
		if (wres == 0)
			return -EIO;
		w->io_done += (size_t)wres;
		if (w->io_done < b->len) {
			/* short write: continue from where it stopped, with a new linked fsync */
			if ((rc = uring_submit(w)))
				return rc;
			continue;
		}
		return fres;
	}
}

static int sync_commit(struct wal *w)
{
	const struct wal_buf *b = &w->bufs[w->cur ^ 1];
	int rc = ops_write_all(w->ops, w->fd, b->p, b->len, w->io_off);

	if (!rc && !w->no_fsync)
		rc = w->ops->fdatasync(w->ops->ctx, w->fd);
	return rc;
}

int wal_commit_wait(struct wal *w)
{
	if (!w->inflight)
		return w->err;
	struct wal_buf *b = &w->bufs[w->cur ^ 1];
	int rc = w->use_uring ? uring_wait(w) : w->io_rc;

	w->inflight = false;
	if (rc)
		return wal_fail(w, rc, w->no_fsync ? "write" : "write or fdatasync");
	struct wal_seg *s = &w->segs[w->nsegs - 1];
	if (!s->records)
		s->first_rev = b->first_rev;
	s->last_rev = b->last_rev;
	s->records += b->records;
	atomic_fetch_add_explicit(&w->used_bytes, w->io_off + b->len - s->end, memory_order_relaxed);
	s->end = w->io_off + b->len;
	w->durable_rev = b->last_rev;
	b->len = 0;
	b->records = 0;
	return 0;
}

int wal_commit_submit(struct wal *w)
{
	int rc;

	if (w->err)
		return w->err;
	if (w->inflight && (rc = wal_commit_wait(w)))
		return rc;
	struct wal_buf *b = &w->bufs[w->cur];
	if (!b->len)
		return 0;
	/* every segment keeps room for the link to the next (wal_rollover) */
	if (w->tail + b->len + LINK_BYTES > w->seg_cap && (rc = wal_rollover(w, b->len)))
		return rc; /* failed the log, or no space for the next segment (not failed: retry) */
	w->cur ^= 1; /* appends go to the other buffer from now on */
	w->io_off = w->tail;
	w->io_done = 0;
	w->io_sqes = 0;
	w->inflight = true;
	w->tail += b->len;
	if (w->use_uring) {
		if ((rc = uring_submit(w))) {
			w->inflight = false;
			return wal_fail(w, rc, "io_uring submit");
		}
	} else {
		w->io_rc = sync_commit(w);
	}
	return 0;
}

int wal_commit(struct wal *w)
{
	int rc = wal_commit_submit(w);

	return rc ? rc : wal_commit_wait(w);
}

int wal_append(struct wal *w, uint8_t type, int64_t rev, const struct iovec *iov, int iovcnt)
{
	size_t len = 0;
	int rc;

	if (w->err)
		return w->err;
	if (type == 0 || rev < 0 || rev < w->last_rev || iovcnt < 0)
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > WAL_PENDING_BYTES_MAX - len)
			return -EMSGSIZE;
		len += iov[i].iov_len;
	}
	uint64_t need = ALIGN8((uint64_t)REC_HDR + len);
	if (need > w->pending_max)
		return -EMSGSIZE;
	struct wal_buf *b = &w->bufs[w->cur];
	if (b->len + need > w->pending_max) {
		if ((rc = wal_commit(w)))
			return rc;
		b = &w->bufs[w->cur];
	}
	if (b->len + need > b->cap) {
		size_t cap = b->cap ? b->cap : 256 * 1024;
		while (cap < b->len + need)
			cap *= 2;
		if (cap > w->pending_max)
			cap = w->pending_max;
		uint8_t *p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	uint8_t *r = b->p + b->len;
	le_put32(r + 8, REC_MAGIC);
	le_put32(r + 12, (uint32_t)len);
	le_put64(r + 16, (uint64_t)rev);
	r[24] = type;
	r[25] = r[26] = r[27] = 0;
	le_put32(r + 28, (uint32_t)b->len);
	size_t off = REC_HDR;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(r + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	memset(r + off, 0, need - off);
	le_put64(r, XXH3_64bits(r + 8, REC_HDR - 8 + len));
	if (!b->records)
		b->first_rev = rev;
	b->last_rev = rev;
	b->records++;
	b->len += need;
	w->last_rev = rev;
	return 0;
}

/* ---- open ---- */

static int mkdir_sync(const char *path, const char *parent, bool sync)
{
	if (mkdir(path, 0700) == 0) {
		if (sync && parent) {
			int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fd < 0)
				return -errno;
			int rc = fsync(fd) < 0 ? -errno : 0;
			close(fd);
			return rc;
		}
		return 0;
	}
	return errno == EEXIST ? 0 : -errno;
}

struct replay_ctx {
	wal_replay_fn fn;
	void *arg;
};

static int replay_rec(void *arg, const struct wal_record_info *r)
{
	struct replay_ctx *c = arg;
	if (r->type == WAL_REC_LINK) /* the log's own: not replayed */
		return 0;
	return c->fn(c->arg, r->type, r->rev, r->payload, r->len);
}

/* Cuts segment `fd` at `off` and preallocates the rest again as zeros (the repair option:
 * a crash in between leaves a short segment, which the next open refuses again). */
static int seg_truncate(struct wal *w, int fd, uint64_t off, uint64_t size)
{
	const struct wal_file_ops *ops = w->ops;
	int rc = ops->ftruncate(ops->ctx, fd, off);

	if (!rc && size > off)
		rc = ops_prealloc(ops, fd, off, size - off);
	if (!rc && !w->no_fsync)
		rc = ops->fsync(ops->ctx, fd);
	return rc;
}

/* Zeroes [off, off+len) of segment `fd` in place: the file keeps its size throughout, so a
 * crash in the middle leaves a torn tail again, never a short segment. */
static int seg_zero(struct wal *w, int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zero[ZERO_CHUNK];
	int rc = 0;

	while (!rc && len) {
		size_t k = len < sizeof zero ? (size_t)len : sizeof zero;
		rc = ops_write_all(w->ops, fd, zero, k, off);
		off += k;
		len -= k;
	}
	if (!rc && !w->no_fsync)
		rc = w->ops->fsync(w->ops->ctx, fd);
	return rc;
}

static void wal_free(struct wal *w)
{
	if (w->fd >= 0)
		w->ops->close(w->ops->ctx, w->fd);
	if (w->spare_fd >= 0)
		w->ops->close(w->ops->ctx, w->spare_fd);
	if (w->dir_fd >= 0)
		w->ops->close(w->ops->ctx, w->dir_fd);
	if (w->use_uring)
		io_uring_queue_exit(&w->ring);
	free(w->bufs[0].p);
	free(w->bufs[1].p);
	free(w->segs);
	free(w);
}

/* A new log: data-dir/log.new with its first segment, renamed data-dir/log. So a log
 * directory always holds a segment, and one with none has lost them. */
static int log_create(struct wal *w, const char *data_dir, uint64_t seq, int64_t base_rev)
{
	char tmpdir[PATH_MAX], path[PATH_MAX + 256 + 2];
	int fd = -1, rc;
	DIR *d;

	if ((size_t)snprintf(tmpdir, sizeof tmpdir, "%s/log.new", data_dir) >= sizeof tmpdir)
		return -ENAMETOOLONG;
	if ((d = opendir(tmpdir))) { /* a crash in here last time: start over */
		struct dirent *de;
		while ((de = readdir(d)))
			if (de->d_name[0] != '.') {
				snprintf(path, sizeof path, "%s/%s", tmpdir, de->d_name);
				unlink(path);
			}
		closedir(d);
		rmdir(tmpdir);
	}
	if (mkdir(tmpdir, 0700) < 0)
		return -errno;
	memcpy(w->dir, tmpdir, sizeof w->dir);
	if ((rc = w->ops->open(w->ops->ctx, tmpdir, O_RDONLY | O_DIRECTORY, 0)) < 0)
		goto done;
	w->dir_fd = rc;
	rc = seg_create(w, seq, base_rev, w->segment_bytes, &fd);
	w->ops->close(w->ops->ctx, w->dir_fd);
	w->dir_fd = -1;
	if (fd >= 0)
		w->ops->close(w->ops->ctx, fd);
	if (rc)
		goto done;
	snprintf(w->dir, sizeof w->dir, "%s/log", data_dir);
	if ((rc = w->ops->rename(w->ops->ctx, tmpdir, w->dir)))
		goto done;
	if (!w->no_fsync && (rc = w->ops->open(w->ops->ctx, data_dir, O_RDONLY | O_DIRECTORY, 0)) >= 0) {
		int dfd = rc;
		rc = w->ops->fsync(w->ops->ctx, dfd);
		w->ops->close(w->ops->ctx, dfd);
	}
	rc = rc > 0 ? 0 : rc;
done:
	snprintf(w->dir, sizeof w->dir, "%s/log", data_dir);
	return rc;
}

int wal_open(const char *data_dir, const struct wal_options *o, wal_replay_fn fn, void *arg, struct wal **out,
	     char *err, size_t errlen)
{
	static const struct wal_options defaults;
	struct wal_walk wk = {0};
	struct replay_ctx rc_ctx = {fn, arg};
	uint64_t *seqs = NULL;
	size_t nseq = 0;
	struct wal *w;
	char path[SEG_PATH_MAX];
	struct stat st;
	int rc;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!o)
		o = &defaults;
	if (!(w = calloc(1, sizeof *w)))
		return -ENOMEM;
	w->fd = w->dir_fd = w->spare_fd = -1;
	w->ops = o->ops ? o->ops : &posix_ops;
	w->no_fsync = o->no_fsync;
	w->segment_bytes = o->segment_bytes ? o->segment_bytes : WAL_SEGMENT_BYTES_DEFAULT;
	w->pending_max = o->pending_bytes ? o->pending_bytes : WAL_PENDING_BYTES_DEFAULT;
	rc = -EINVAL;
	if (w->segment_bytes < WAL_SEGMENT_BYTES_MIN || w->segment_bytes > SEG_BYTES_MAX ||
	    w->pending_max < WAL_PENDING_BYTES_MIN || w->pending_max > WAL_PENDING_BYTES_MAX) {
		snprintf(err, errlen, "wal: segment or pending size out of range");
		goto fail;
	}
	if ((size_t)snprintf(w->dir, sizeof w->dir, "%s/log", data_dir) >= sizeof w->dir) {
		rc = -ENAMETOOLONG;
		goto fail;
	}
	if ((rc = mkdir_sync(data_dir, NULL, false))) {
		snprintf(err, errlen, "wal: cannot create %s: %s", data_dir, strerror(-rc));
		goto fail;
	}
	if (stat(w->dir, &st) < 0) {
		/* a new data directory, or one a restore made (a checkpoint, no log yet) */
		if (errno != ENOENT || (rc = log_create(w, data_dir, o->first_seq ? o->first_seq : 1,
							 o->base_rev > 0 ? o->base_rev : 0))) {
			rc = errno != ENOENT ? -errno : rc;
			snprintf(err, errlen, "wal: cannot create %s: %s", w->dir, strerror(-rc));
			goto fail;
		}
		if (o->first_seq)
			log_info("wal: a new log at segment %016" PRIx64 " after the checkpoint at revision %" PRId64,
				 o->first_seq, o->base_rev);
	}
	if ((rc = w->ops->open(w->ops->ctx, w->dir, O_RDONLY | O_DIRECTORY, 0)) < 0)
		goto fail;
	w->dir_fd = rc;
	if ((rc = list_segments(w->dir, w->ops, true, &seqs, &nseq)))
		goto fail;
	if (o->first_seq) {
		/* covered by the checkpoint: a crash came between it and their removal */
		size_t gone = 0;
		while (gone < nseq && seqs[gone] < o->first_seq) {
			seg_path(path, sizeof path, w->dir, seqs[gone], "");
			if ((rc = w->ops->unlink(w->ops->ctx, path)))
				goto fail;
			gone++;
		}
		if (gone) {
			log_info("wal: removed %zu segment(s) covered by the checkpoint", gone);
			memmove(seqs, seqs + gone, (nseq - gone) * sizeof *seqs);
			nseq -= gone;
			if (!w->no_fsync && (rc = w->ops->fsync(w->ops->ctx, w->dir_fd)))
				goto fail;
		}
		if (!nseq || seqs[0] != o->first_seq) {
			/* the checkpoint's roll made that segment before the checkpoint existed */
			seg_path(path, sizeof path, w->dir, o->first_seq, "");
			snprintf(err, errlen, "%s offset 0: missing (the checkpoint at revision %" PRId64
				 " continues the log there; %s)", path, o->base_rev,
				 nseq ? "the log resumes at a later segment" : "no segment is left");
			rc = -EBADMSG;
			goto fail;
		}
	} else if (!nseq) {
		snprintf(err, errlen, "%s: no log segment, and no checkpoint (every segment was deleted?)", w->dir);
		rc = -EBADMSG;
		goto fail;
	}

	wk.ops = w->ops;
	wk.dir = w->dir;
	wk.seqs = seqs;
	wk.n = nseq;
	wk.rec = fn ? replay_rec : NULL;
	wk.arg = &rc_ctx;
	if (nseq && !(wk.segs = calloc(nseq, sizeof *wk.segs))) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = walk_log(&wk))) {
		if (!err[0]) /* the replay callback may have said why */
			snprintf(err, errlen, "wal: replay of %s stopped: %s", w->dir,
				 rc < 0 ? strerror(-rc) : "the replay callback failed");
		goto fail;
	}

	if (wk.drop_last) {
		/* a roll that never linked its new segment: nothing was written there */
		seg_path(path, sizeof path, w->dir, seqs[nseq - 1], "");
		log_warn("wal: %s was made by a segment roll that did not finish: removed (it held no records)", path);
		if ((rc = w->ops->unlink(w->ops->ctx, path)) ||
		    (!w->no_fsync && (rc = w->ops->fsync(w->ops->ctx, w->dir_fd))))
			goto fail;
		nseq--;
	}
	/* keep segments [0, keep); the last kept one is cut at `cut` if cut != 0 */
	size_t keep = nseq;
	uint64_t cut = 0, zero = 0;
	w->durable_rev = o->base_rev > 0 ? o->base_rev : 0;
	if (wk.status != WALK_CLEAN) {
		seg_path(path, sizeof path, w->dir, seqs[wk.bad], "");
		if (wk.status == WALK_CORRUPT && !o->truncate_corrupt) {
			snprintf(err, errlen, "%s offset %" PRIu64 ": %s (start with the log repair option to truncate here)",
				 path, wk.bad_off, wk.why);
			rc = -EBADMSG;
			goto fail;
		}
		if (wk.status == WALK_TORN) {
			zero = wk.segs[wk.bad].torn_bytes;
			log_warn("wal: torn tail in %s at offset %" PRIu64 " (%s): %" PRIu64
				 " bytes of an unfinished commit discarded",
				 path, wk.bad_off, wk.why, zero);
		} else {
			log_warn("wal: corruption in %s at offset %" PRIu64 " (%s): repairing as asked, the log is "
				 "truncated there and %zu later segment(s) renamed *.seg.discarded",
				 path, wk.bad_off, wk.why, nseq - wk.bad - 1);
		}
		keep = wk.bad + 1;
		cut = wk.bad_off;
		if (cut < SEG_HDR) { /* bad header or missing segment: drop the whole file */
			keep = wk.bad;
			cut = 0;
		}
		for (size_t i = keep; i < nseq; i++) {
			char to[SEG_PATH_MAX];
			seg_path(path, sizeof path, w->dir, seqs[i], "");
			seg_path(to, sizeof to, w->dir, seqs[i], ".discarded");
			if ((rc = w->ops->rename(w->ops->ctx, path, to)))
				goto fail;
		}
		if (keep < nseq && !w->no_fsync && (rc = w->ops->fsync(w->ops->ctx, w->dir_fd)))
			goto fail;
	}

	for (size_t i = 0; i < keep; i++) {
		if (i == keep - 1 && cut) {
			wk.segs[i].end = cut; /* walk already counted only records before cut */
			if (wk.segs[i].linked && wk.segs[i].link_off >= cut)
				wk.segs[i].linked = false;
		}
		if (wk.segs[i].prealloc) /* (the repair option restores a short one's size) */
			wk.segs[i].bytes = wk.segs[i].prealloc;
		if ((rc = segs_push(w, &wk.segs[i])))
			goto fail;
		if (wk.segs[i].last_rev > w->durable_rev) /* base_rev if it has no records */
			w->durable_rev = wk.segs[i].last_rev;
	}
	if (keep) {
		struct wal_seg *s = &w->segs[w->nsegs - 1];
		seg_path(path, sizeof path, w->dir, s->seq, "");
		if ((rc = w->ops->open(w->ops->ctx, path, O_RDWR, 0)) < 0)
			goto fail;
		w->fd = rc;
		rc = 0;
		if (cut && wk.status == WALK_TORN)
			rc = seg_zero(w, w->fd, cut, zero);
		else if (cut) /* the repair option: back to the segment's own size */
			rc = seg_truncate(w, w->fd, cut, s->prealloc ? s->prealloc : s->bytes);
		if (rc)
			goto fail;
		w->tail = s->end;
		w->seg_cap = s->bytes;
	} else {
		/* every segment was discarded (repair) */
		struct wal_seg s = {.seq = nseq ? seqs[nseq - 1] + 1 : o->first_seq ? o->first_seq : 1,
				    .base_rev = w->durable_rev};
		int fd;
		/* (after discarding: a new name, so the discarded files are never overwritten) */
		if ((rc = seg_create(w, s.seq, s.base_rev, w->segment_bytes, &fd)))
			goto fail;
		w->fd = fd;
		s.first_rev = s.last_rev = s.base_rev;
		s.bytes = s.prealloc = w->segment_bytes;
		s.version = SEG_VERSION;
		s.end = SEG_HDR;
		if ((rc = segs_push(w, &s)))
			goto fail;
		w->tail = SEG_HDR;
		w->seg_cap = s.bytes;
	}
	w->last_rev = w->durable_rev;
	wal_spare_prepare(w); /* no space for it: the caller sees wal_spare_ready() false */

	if (!o->ops) {
		/* a small private ring: one write and one fsync in flight at most */
		rc = io_uring_queue_init(8, &w->ring, 0);
		if (rc == 0)
			w->use_uring = true;
		else
			log_warn("wal: io_uring unavailable (%s); committing with pwrite + fdatasync", strerror(-rc));
	}
	free(seqs);
	free(wk.segs);
	*out = w;
	return 0;

fail:
	if (err && errlen && !err[0])
		snprintf(err, errlen, "wal: cannot open %s: %s", w->dir, strerror(rc < 0 ? -rc : rc));
	free(seqs);
	free(wk.segs);
	wal_free(w);
	return rc;
}

int wal_close(struct wal *w)
{
	int rc = 0;

	if (!w)
		return 0;
	if (!w->err) {
		rc = wal_commit_wait(w);
		if (!rc)
			rc = wal_commit(w);
	}
	rc = rc ? rc : w->err;
	wal_free(w);
	return rc;
}

uint64_t wal_size_bytes(const struct wal *w)
{
	return atomic_load_explicit(&w->size_bytes, memory_order_relaxed);
}

uint64_t wal_used_bytes(const struct wal *w)
{
	return atomic_load_explicit(&w->used_bytes, memory_order_relaxed);
}

int64_t wal_last_rev(const struct wal *w)
{
	return w->durable_rev;
}

size_t wal_segments(const struct wal *w, struct wal_segment_info *out, size_t max)
{
	for (size_t i = 0; i < w->nsegs && i < max; i++) {
		const struct wal_seg *s = &w->segs[i];
		out[i] = (struct wal_segment_info){
			.seq = s->seq,
			.first_rev = s->first_rev,
			.last_rev = s->last_rev,
			.records = s->records,
			.bytes = s->bytes,
		};
	}
	return w->nsegs;
}

int64_t wal_roll(struct wal *w)
{
	int rc;

	if (w->err)
		return w->err;
	if (w->inflight || w->bufs[w->cur].len)
		return -EBUSY;
	if (w->tail == SEG_HDR) /* nothing written here: it already starts fresh */
		return (int64_t)w->segs[w->nsegs - 1].seq;
	if ((rc = wal_rollover(w, 0)))
		return rc; /* failed the log, or no space for the next segment (not failed) */
	return (int64_t)w->segs[w->nsegs - 1].seq;
}

int wal_remove_segments_below(struct wal *w, uint64_t seq)
{
	char path[SEG_PATH_MAX];
	size_t n = 0;
	int rc = 0;

	if (w->err)
		return w->err;
	while (n + 1 < w->nsegs && w->segs[n].seq < seq) {
		seg_path(path, sizeof path, w->dir, w->segs[n].seq, "");
		if ((rc = w->ops->unlink(w->ops->ctx, path)))
			break;
		atomic_fetch_sub_explicit(&w->size_bytes, w->segs[n].bytes, memory_order_relaxed);
		atomic_fetch_sub_explicit(&w->used_bytes, w->segs[n].end, memory_order_relaxed);
		n++;
	}
	if (n) {
		memmove(w->segs, w->segs + n, (w->nsegs - n) * sizeof *w->segs);
		w->nsegs -= n;
		if (!rc && !w->no_fsync)
			rc = w->ops->fsync(w->ops->ctx, w->dir_fd);
	}
	return rc ? rc : (int)n;
}

int wal_inspect(const char *data_dir, wal_inspect_fn fn, void *arg, char *err, size_t errlen)
{
	return wal_inspect_at(data_dir, 0, fn, arg, err, errlen);
}

int wal_inspect_at(const char *data_dir, uint64_t first_seq, wal_inspect_fn fn, void *arg, char *err, size_t errlen)
{
	char dir[PATH_MAX], path[SEG_PATH_MAX];
	struct wal_walk wk = {.ops = &posix_ops, .dir = dir, .rec = fn, .arg = arg};
	uint64_t *seqs = NULL;
	size_t n = 0, skip = 0;
	struct stat st;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if ((size_t)snprintf(dir, sizeof dir, "%s/log", data_dir) >= sizeof dir)
		return -ENAMETOOLONG;
	if (first_seq && stat(dir, &st) < 0 && errno == ENOENT)
		return 0; /* a restored data directory never started: the log begins at first_seq */
	if ((rc = list_segments(dir, &posix_ops, false, &seqs, &n))) {
		snprintf(err, errlen, "%s: %s", dir, strerror(-rc));
		return rc;
	}
	while (first_seq && skip < n && seqs[skip] < first_seq)
		skip++; /* covered by the checkpoint, left by a crash: start-up deletes them */
	if (first_seq ? skip == n || seqs[skip] != first_seq : !n) {
		seg_path(path, sizeof path, dir, first_seq ? first_seq : 1, "");
		snprintf(err, errlen, "%s offset 0: missing (%s)", path,
			 first_seq ? "the checkpoint continues the log there" : "the log has no segment");
		free(seqs);
		return -EBADMSG;
	}
	wk.seqs = seqs + skip;
	wk.n = n - skip;
	if (!(wk.segs = calloc(wk.n, sizeof *wk.segs))) {
		free(seqs);
		return -ENOMEM;
	}
	rc = walk_log(&wk);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", dir, strerror(-rc));
	} else if (wk.status == WALK_CORRUPT) {
		seg_path(path, sizeof path, dir, wk.seqs[wk.bad], "");
		snprintf(err, errlen, "%s offset %" PRIu64 ": %s", path, wk.bad_off, wk.why);
		rc = -EBADMSG;
	} else if (wk.status == WALK_TORN) {
		seg_path(path, sizeof path, dir, wk.seqs[wk.bad], "");
		snprintf(err, errlen, "%s offset %" PRIu64 ": %s (torn tail of an unfinished commit, %" PRIu64
			 " bytes: truncated at start-up)", path, wk.bad_off, wk.why, wk.segs[wk.bad].torn_bytes);
		rc = 1;
	} else if (wk.drop_last) {
		seg_path(path, sizeof path, dir, wk.seqs[wk.n - 1], "");
		snprintf(err, errlen, "%s offset 0: made by a segment roll that did not finish (empty: removed at "
			 "start-up)", path);
		rc = 1;
	}
	free(seqs);
	free(wk.segs);
	return rc;
}
