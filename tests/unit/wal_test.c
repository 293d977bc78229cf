/* Log tests: round trips across segments, torn tails, damage to old records, the repair
 * flag, every fault of the injecting file layer (short write, EIO on write and on
 * fdatasync, ENOSPC at rollover), io_uring's own failure and short-write paths, revision
 * order, space reclamation, the batch codec, and a crash-consistency property test that
 * cuts the written byte stream at random points (prefix tears and random lost pages).
 * The test includes wal.c (h2o's habit) to reach the commit bookkeeping it checks. */
#include "storage/wal.c"

#pragma GCC diagnostic ignored "-Wformat-truncation" /* test paths are short */

#include <criterion/criterion.h>
#include <signal.h>
#include <sys/resource.h>

/* ---- helpers ---- */

static char dir[256];

static void mk_dir(void)
{
	snprintf(dir, sizeof dir, "/tmp/wal_test.XXXXXX");
	cr_assert(mkdtemp(dir));
}

static void rm_dir(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

struct rec {
	uint8_t type;
	int64_t rev;
	size_t len;
	uint8_t *p;
};

struct recs {
	struct rec *v;
	size_t n, cap;
};

static void recs_add(struct recs *r, uint8_t type, int64_t rev, const uint8_t *p, size_t len)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 64;
		r->v = realloc(r->v, r->cap * sizeof *r->v);
	}
	struct rec *x = &r->v[r->n++];
	x->type = type;
	x->rev = rev;
	x->len = len;
	x->p = malloc(len ? len : 1);
	if (len)
		memcpy(x->p, p, len);
}

static void recs_free(struct recs *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i].p);
	free(r->v);
	memset(r, 0, sizeof *r);
}

static int collect(void *arg, uint8_t type, int64_t rev, const uint8_t *payload, size_t len)
{
	recs_add(arg, type, rev, payload, len);
	return 0;
}

/* the first n of `want` and `got` are equal, and got has exactly n */
static void recs_expect(const struct recs *got, const struct recs *want, size_t n)
{
	cr_assert_eq(got->n, n, "replayed %zu records, expected %zu", got->n, n);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(got->v[i].type, want->v[i].type, "record %zu type", i);
		cr_assert_eq(got->v[i].rev, want->v[i].rev, "record %zu rev", i);
		cr_assert_eq(got->v[i].len, want->v[i].len, "record %zu len", i);
		cr_assert(!memcmp(got->v[i].p, want->v[i].p, want->v[i].len), "record %zu payload", i);
	}
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint8_t scratch[1 << 20];

/* appends one record of `len` pseudo-random bytes at `rev`, mirrored into `want` */
static int add(struct wal *w, struct recs *want, int64_t rev, size_t len)
{
	for (size_t i = 0; i < len; i++)
		scratch[i] = (uint8_t)rnd();
	struct iovec iov[2] = {{scratch, len / 2}, {scratch + len / 2, len - len / 2}};
	int rc = wal_append(w, WAL_REC_BATCH, rev, iov, 2);
	if (!rc && want)
		recs_add(want, WAL_REC_BATCH, rev, scratch, len);
	return rc;
}

static struct wal *open_ok(const struct wal_options *o, struct recs *got)
{
	struct wal *w;
	char err[512];
	int rc = wal_open(dir, o, got ? collect : NULL, got, &w, err, sizeof err);
	cr_assert_eq(rc, 0, "wal_open: %d %s", rc, err);
	return w;
}

static void seg_file(char *out, size_t n, uint64_t seq)
{
	snprintf(out, n, "%s/log/%016" PRIx64 ".seg", dir, seq);
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static void flip_byte(uint64_t seq, uint64_t off)
{
	char p[512];
	seg_file(p, sizeof p, seq);
	int fd = open(p, O_RDWR);
	uint8_t b;
	cr_assert(fd >= 0);
	cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0x10;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

/* zeroes [off, end) of a segment, keeping its size */
static void cut_at(uint64_t seq, uint64_t off)
{
	char p[512];
	struct stat st;
	seg_file(p, sizeof p, seq);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(truncate(p, (off_t)off), 0);
	cr_assert_eq(truncate(p, st.st_size), 0);
}

/* ---- the fault-injecting file layer ---- */

struct faults {
	int pwrites, fdatasyncs, fsyncs, fallocates; /* calls since arming */
	int pwrite_fail_at, pwrite_err;             /* nth pwrite fails with pwrite_err */
	int pwrite_short_at;                        /* nth pwrite writes half */
	int fdatasync_fail_at, fdatasync_err;
	int fallocate_fail_at, fallocate_err;
	int fallocate_fail_from;                    /* every fallocate from the nth on fails */
};

static ssize_t f_pwrite(void *ctx, int fd, const void *buf, size_t len, uint64_t off)
{
	struct faults *f = ctx;
	int n = ++f->pwrites;
	if (n == f->pwrite_fail_at)
		return f->pwrite_err;
	if (n == f->pwrite_short_at && len > 1)
		len /= 2;
	return px_pwrite(NULL, fd, buf, len, off);
}

static int f_fdatasync(void *ctx, int fd)
{
	struct faults *f = ctx;
	if (++f->fdatasyncs == f->fdatasync_fail_at)
		return f->fdatasync_err;
	return px_fdatasync(NULL, fd);
}

static int f_fsync(void *ctx, int fd)
{
	struct faults *f = ctx;
	f->fsyncs++;
	return px_fsync(NULL, fd);
}

static int f_fallocate(void *ctx, int fd, uint64_t off, uint64_t len)
{
	struct faults *f = ctx;
	++f->fallocates;
	if (f->fallocates == f->fallocate_fail_at || (f->fallocate_fail_from && f->fallocates >= f->fallocate_fail_from))
		return f->fallocate_err;
	return px_fallocate(NULL, fd, off, len);
}

static struct faults fl;
static struct wal_file_ops fops;

static const struct wal_file_ops *fault_ops(void)
{
	fops = posix_ops;
	fops.ctx = &fl;
	fops.pwrite = f_pwrite;
	fops.fdatasync = f_fdatasync;
	fops.fsync = f_fsync;
	fops.fallocate = f_fallocate;
	return &fops;
}

static void arm(void)
{
	memset(&fl, 0, sizeof fl);
}

TestSuite(wal, .init = mk_dir, .fini = rm_dir);

/* ---- round trips ---- */

static void round_trip(const struct wal_file_ops *ops)
{
	struct wal_options o = {.segment_bytes = 8192, .ops = ops};
	struct recs want = {0}, got = {0};
	struct wal *w = open_ok(&o, NULL);
	int64_t rev = 1;

	for (int i = 0; i < 600; i++) {
		cr_assert_eq(add(w, &want, rev, rnd() % 700), 0);
		rev += (int64_t)(rnd() % 3); /* equal revisions allowed */
		if (rnd() % 4 == 0)
			cr_assert_eq(wal_commit(w), 0);
	}
	cr_assert_eq(wal_commit(w), 0);
	struct wal_segment_info si[256];
	size_t n = wal_segments(w, si, 256);
	cr_assert_gt(n, 10, "only %zu segments", n);
	uint64_t bytes = 0;
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(si[i].seq, i + 1);
		cr_assert_leq(si[i].first_rev, si[i].last_rev);
		if (i)
			cr_assert_geq(si[i].first_rev, si[i - 1].last_rev);
		bytes += si[i].bytes;
	}
	cr_assert_eq(wal_size_bytes(w), bytes);
	cr_assert_eq(wal_last_rev(w), want.v[want.n - 1].rev);
	cr_assert_eq(wal_close(w), 0);

	w = open_ok(&o, &got);
	recs_expect(&got, &want, want.n);
	cr_assert_eq(wal_size_bytes(w), bytes);
	/* and it keeps appending after a reopen */
	cr_assert_eq(add(w, &want, rev, 100), 0);
	cr_assert_eq(wal_close(w), 0);
	recs_free(&got);
	w = open_ok(&o, &got);
	recs_expect(&got, &want, want.n);
	cr_assert_eq(wal_inspect(dir, NULL, NULL, NULL, 0), 0);
	wal_close(w);
	recs_free(&got);
	recs_free(&want);
}

Test(wal, round_trip_io_uring)
{
	round_trip(NULL);
}

Test(wal, round_trip_ops)
{
	round_trip(wal_file_ops_posix());
}

Test(wal, empty_and_zero_length_records)
{
	struct recs want = {0}, got = {0};
	struct wal *w = open_ok(NULL, NULL);
	cr_assert_eq(wal_commit(w), 0); /* nothing pending: no-op */
	cr_assert_eq(wal_append(w, 7, 0, NULL, 0), 0);
	recs_add(&want, 7, 0, NULL, 0);
	cr_assert_eq(wal_close(w), 0); /* close commits what is pending */
	w = open_ok(NULL, &got);
	recs_expect(&got, &want, 1);
	cr_assert_eq(wal_size_bytes(w), WAL_SEGMENT_BYTES_DEFAULT);
	wal_close(w);
	recs_free(&got);
	recs_free(&want);
}

Test(wal, pipelined_commits)
{
	struct wal_options o = {.segment_bytes = 16384};
	struct recs want = {0}, got = {0};
	struct wal *w = open_ok(&o, NULL);
	int64_t rev = 1;

	for (int k = 0; k < 200; k++) {
		for (int i = 0; i < 3; i++)
			cr_assert_eq(add(w, &want, rev++, rnd() % 900), 0);
		/* batch k is in flight while batch k+1 is appended */
		cr_assert_eq(wal_commit_submit(w), 0);
		if (k % 2)
			cr_assert_eq(wal_commit_wait(w), 0);
	}
	cr_assert_eq(wal_commit_wait(w), 0);
	cr_assert_eq(wal_commit_wait(w), 0); /* nothing in flight */
	cr_assert_eq(wal_last_rev(w), rev - 1);
	cr_assert_eq(wal_close(w), 0);
	w = open_ok(&o, &got);
	recs_expect(&got, &want, want.n);
	wal_close(w);
	recs_free(&got);
	recs_free(&want);
}

Test(wal, limits_forced_commit_and_big_commit)
{
	struct wal_options o = {.segment_bytes = 8192, .pending_bytes = 16384};
	struct recs want = {0}, got = {0};
	struct wal *w = open_ok(&o, NULL);

	cr_assert_eq(add(w, NULL, 1, 16384), -EMSGSIZE);
	cr_assert_eq(wal_append(w, 0, 1, NULL, 0), -EINVAL);
	cr_assert_eq(wal_append(w, 1, -1, NULL, 0), -EINVAL);
	/* 16 KiB of pending records in a segment of 8 KiB: a segment sized to fit */
	for (int i = 0; i < 5; i++)
		cr_assert_eq(add(w, &want, 1 + i, 3000), 0);
	cr_assert_eq(w->durable_rev, 0);
	/* the sixth does not fit the pending buffer: the first five are committed first */
	cr_assert_eq(add(w, &want, 6, 3000), 0);
	cr_assert_eq(w->durable_rev, 5);
	cr_assert_eq(wal_commit(w), 0);
	struct wal_segment_info si[8];
	size_t n = wal_segments(w, si, 8);
	cr_assert_eq(n, 3);
	cr_assert_eq(si[1].bytes, 16384); /* 64 + 5 * 3032 rounded up to 4 KiB */
	cr_assert_eq(wal_close(w), 0);
	w = open_ok(&o, &got);
	recs_expect(&got, &want, want.n);
	wal_close(w);
	recs_free(&got);
	recs_free(&want);
}

Test(wal, revisions_non_decreasing)
{
	struct recs want = {0}, got = {0};
	struct wal *w = open_ok(NULL, NULL);
	cr_assert_eq(add(w, &want, 5, 10), 0);
	cr_assert_eq(add(w, &want, 5, 10), 0);
	cr_assert_eq(add(w, NULL, 4, 10), -EINVAL);
	cr_assert_eq(add(w, &want, 9, 10), 0);
	cr_assert_eq(wal_close(w), 0);

	/* on disk: rewrite the third record's revision to 3 with a valid checksum */
	char p[512];
	seg_file(p, sizeof p, 1);
	int fd = open(p, O_RDWR);
	uint8_t r[REC_HDR + 16];
	uint64_t off = SEG_HDR + 2 * ALIGN8(REC_HDR + 10);
	cr_assert_eq(pread(fd, r, sizeof r, (off_t)off), (ssize_t)sizeof r);
	cr_assert_eq(le_get64(r + 16), 9);
	le_put64(r + 16, 3);
	le_put64(r, XXH3_64bits(r + 8, REC_HDR - 8 + 10));
	cr_assert_eq(pwrite(fd, r, sizeof r, (off_t)off), (ssize_t)sizeof r);
	close(fd);
	char err[512];
	cr_assert_eq(wal_open(dir, NULL, collect, &got, &w, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "goes backwards"), "%s", err);
	char where[64];
	snprintf(where, sizeof where, "offset %" PRIu64, off);
	cr_assert(strstr(err, where), "%s", err);
	recs_free(&got);
	recs_free(&want);
}

static int fail(void *arg, uint8_t type, int64_t rev, const uint8_t *payload, size_t len)
{
	return -ENOMEM;
}

Test(wal, replay_callback_error_aborts_open)
{
	struct wal *w = open_ok(NULL, NULL);
	cr_assert_eq(add(w, NULL, 1, 10), 0);
	cr_assert_eq(wal_close(w), 0);
	char err[256];
	cr_assert_eq(wal_open(dir, NULL, fail, NULL, &w, err, sizeof err), -ENOMEM);
	cr_assert_null(w);
}

/* ---- torn tails and damage ---- */

Test(wal, torn_tail_truncated_then_appends_work)
{
	struct recs want = {0}, got = {0};
	struct wal *w = open_ok(NULL, NULL);
	for (int i = 1; i <= 20; i++)
		cr_assert_eq(add(w, &want, i, 100), 0);
	cr_assert_eq(wal_commit(w), 0);
	uint64_t tail = w->tail;
	cr_assert_eq(add(w, NULL, 21, 500), 0);
	cr_assert_eq(wal_commit(w), 0);
	cr_assert_eq(wal_close(w), 0);
	cut_at(1, tail + 200); /* the last commit lost its end */
	cr_assert_eq(wal_inspect(dir, NULL, NULL, NULL, 0), 1);

	w = open_ok(NULL, &got);
	recs_expect(&got, &want, 20);
	cr_assert_eq(w->tail, tail);
	cr_assert_eq(add(w, &want, 22, 300), 0);
	cr_assert_eq(wal_close(w), 0);
	cr_assert_eq(wal_inspect(dir, NULL, NULL, NULL, 0), 0);
	recs_free(&got);
	w = open_ok(NULL, &got);
	recs_expect(&got, &want, 21);
	wal_close(w);
	recs_free(&got);
	recs_free(&want);
}

Test(wal, torn_tail_with_lost_middle_page)
{
	/* one commit of several records of which the middle page never reached the disk:
	 * later records of the same commit are valid, yet it is a tear, not damage */
	struct recs want = {0}, got = {0};
	struct wal *w = open_ok(NULL, NULL);
	cr_assert_eq(add(w, &want, 1, 100), 0);
	cr_assert_eq(wal_commit(w), 0);
	uint64_t start = w->tail;
	for (int i = 2; i < 10; i++)
		cr_assert_eq(add(w, NULL, i, 3000), 0);
	cr_assert_eq(wal_commit(w), 0);
	cr_assert_eq(wal_close(w), 0);
	char p[512];
	seg_file(p, sizeof p, 1);
	int fd = open(p, O_RDWR);
	static uint8_t zero[4096];
	cr_assert_eq(pwrite(fd, zero, 4096, 8192), 4096);
	close(fd);
	w = open_ok(NULL, &got);
	/* records 2.. up to the lost page survive (they are whole), then the cut */
	cr_assert_geq(got.n, 1);
	for (size_t i = 0; i < got.n; i++)
		cr_assert_eq(got.v[i].rev, (int64_t)i + 1);
	cr_assert_leq(w->tail, 8192);
	cr_assert_geq(w->tail, start);
	wal_close(w);
	recs_free(&got);
	recs_free(&want);
}

Test(wal, bit_flip_in_old_record_refuses_then_repair)
{
	struct wal_options o = {.segment_bytes = 8192};
	struct recs want = {0}, got = {0};
	struct wal *w = open_ok(&o, NULL);
	for (int i = 1; i <= 60; i++) {
		cr_assert_eq(add(w, &want, i, 400), 0);
		cr_assert_eq(wal_commit(w), 0);
	}
	size_t nseg = w->nsegs;
	cr_assert_geq(nseg, 3);
	cr_assert_eq(wal_close(w), 0);

	uint64_t rec3 = SEG_HDR + 2 * ALIGN8(REC_HDR + 400);
	flip_byte(2, rec3 + REC_HDR + 17); /* payload of the third record of segment 2 */
	char err[512], where[600];
	cr_assert_eq(wal_open(dir, &o, collect, &got, &w, err, sizeof err), -EBADMSG);
	seg_file(where, sizeof where, 2);
	cr_assert(strstr(err, where), "%s", err);
	snprintf(where, sizeof where, "offset %" PRIu64 ": record checksum mismatch", rec3);
	cr_assert(strstr(err, where), "%s", err);
	cr_assert_eq(wal_inspect(dir, NULL, NULL, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, where), "%s", err);

	/* the repair flag truncates there and sets the later segments aside */
	size_t per_seg = got.n; /* replayed before the refusal: all of segment 1 and two more */
	recs_free(&got);
	o.truncate_corrupt = true;
	w = open_ok(&o, &got);
	cr_assert_eq(got.n, per_seg);
	recs_expect(&got, &want, got.n);
	char p[512];
	seg_file(p, sizeof p, 3);
	cr_assert(!exists(p));
	strcat(p, ".discarded");
	cr_assert(exists(p));
	int64_t rev = got.v[got.n - 1].rev + 1;
	cr_assert_eq(add(w, NULL, rev, 50), 0);
	cr_assert_eq(wal_close(w), 0);
	o.truncate_corrupt = false;
	recs_free(&got);
	w = open_ok(&o, &got);
	cr_assert_eq(got.n, per_seg + 1);
	wal_close(w);
	recs_free(&got);
	recs_free(&want);
}

Test(wal, bad_segment_header_and_missing_segment)
{
	struct wal_options o = {.segment_bytes = 4096};
	struct recs got = {0};
	struct wal *w = open_ok(&o, NULL);
	for (int i = 1; i <= 40; i++)
		{
			cr_assert_eq(add(w, NULL, i, 500), 0);
			cr_assert_eq(wal_commit(w), 0);
		}
	cr_assert_geq(w->nsegs, 4);
	cr_assert_eq(wal_close(w), 0);
	char err[512], p[512];

	flip_byte(3, 20);
	cr_assert_eq(wal_open(dir, &o, NULL, NULL, &w, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "0000000000000003.seg offset 0: segment header checksum mismatch"), "%s", err);
	flip_byte(3, 20);
	seg_file(p, sizeof p, 2);
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(wal_open(dir, &o, NULL, NULL, &w, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "segment 0000000000000002 is missing"), "%s", err);
	o.truncate_corrupt = true;
	w = open_ok(&o, &got);
	cr_assert_eq(w->nsegs, 1);
	cr_assert_eq(wal_close(w), 0);
	recs_free(&got);
}

Test(wal, leftovers_and_garbage_after_the_end)
{
	struct wal_options o = {.segment_bytes = 4096};
	struct recs want = {0}, got = {0};
	struct wal *w = open_ok(&o, NULL);
	for (int i = 1; i <= 20; i++) {
		cr_assert_eq(add(w, &want, i, 300), 0);
		cr_assert_eq(wal_commit(w), 0);
	}
	size_t nseg = w->nsegs;
	uint64_t tail = w->tail;
	cr_assert_eq(wal_close(w), 0);
	char p[512], err[512];

	/* an unfinished segment from a crash during rollover is removed */
	seg_file(p, sizeof p, nseg + 1);
	strcat(p, ".tmp");
	int fd = open(p, O_CREAT | O_WRONLY, 0600);
	close(fd);
	/* a stray byte after the last record of the last segment: the tail of a torn commit */
	flip_byte(nseg, tail + 100);
	w = open_ok(&o, &got);
	cr_assert(!exists(p));
	recs_expect(&got, &want, want.n);
	cr_assert_eq(wal_close(w), 0);
	cr_assert_eq(wal_inspect(dir, NULL, NULL, NULL, 0), 0); /* zeroed again */
	/* the same in a segment that is not the last is damage */
	struct stat st;
	seg_file(p, sizeof p, 1);
	cr_assert_eq(stat(p, &st), 0);
	flip_byte(1, (uint64_t)st.st_size - 1);
	cr_assert_eq(wal_open(dir, &o, NULL, NULL, &w, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "0000000000000001.seg offset"), "%s", err);
	cr_assert(strstr(err, "data after the link to the next segment"), "%s", err);
	recs_free(&got);
	recs_free(&want);
}

/* ---- faults ---- */

static struct wal *fault_setup(struct recs *want, struct wal_options *o)
{
	o->ops = fault_ops();
	struct wal *w = open_ok(o, NULL);
	for (int i = 1; i <= 10; i++)
		cr_assert_eq(add(w, want, i, 200), 0);
	cr_assert_eq(wal_commit(w), 0);
	arm();
	return w;
}

static void check_reopen(struct wal_options *o, const struct recs *want, size_t n_min, size_t n_max)
{
	struct recs got = {0};
	o->ops = NULL;
	struct wal *w = open_ok(o, &got);
	cr_assert(got.n >= n_min && got.n <= n_max, "replayed %zu, expected %zu..%zu", got.n, n_min, n_max);
	recs_expect(&got, want, got.n);
	wal_close(w);
	recs_free(&got);
}

Test(wal, short_write_is_continued)
{
	struct wal_options o = {0};
	struct recs want = {0};
	struct wal *w = fault_setup(&want, &o);
	fl.pwrite_short_at = 1;
	cr_assert_eq(add(w, &want, 11, 3000), 0);
	cr_assert_eq(wal_commit(w), 0);
	cr_assert_eq(fl.pwrites, 2);
	cr_assert_eq(fl.fdatasyncs, 1);
	cr_assert_eq(wal_close(w), 0);
	check_reopen(&o, &want, 11, 11);
	recs_free(&want);
}

static void sticky(struct wal *w, int err)
{
	cr_assert_eq(add(w, NULL, 100, 10), err);
	cr_assert_eq(wal_commit(w), err);
	cr_assert_eq(wal_commit_submit(w), err);
	cr_assert_eq(wal_commit_wait(w), err);
	cr_assert_eq(wal_remove_segments_below(w, 1000), err);
	cr_assert_eq(wal_roll(w), err);
	cr_assert_eq(wal_close(w), err);
}

Test(wal, short_write_then_enospc_fails)
{
	struct wal_options o = {0};
	struct recs want = {0};
	struct wal *w = fault_setup(&want, &o);
	fl.pwrite_short_at = 1;
	fl.pwrite_fail_at = 2;
	fl.pwrite_err = -ENOSPC;
	cr_assert_eq(add(w, NULL, 11, 3000), 0);
	cr_assert_eq(wal_commit(w), -ENOSPC);
	cr_assert_eq(fl.fdatasyncs, 0);
	sticky(w, -ENOSPC);
	check_reopen(&o, &want, 10, 10); /* the half record is a torn tail */
	recs_free(&want);
}

Test(wal, eio_on_write)
{
	struct wal_options o = {0};
	struct recs want = {0};
	struct wal *w = fault_setup(&want, &o);
	fl.pwrite_fail_at = 1;
	fl.pwrite_err = -EIO;
	cr_assert_eq(add(w, NULL, 11, 100), 0);
	cr_assert_eq(wal_commit(w), -EIO);
	sticky(w, -EIO);
	check_reopen(&o, &want, 10, 10);
	recs_free(&want);
}

Test(wal, eio_on_fdatasync_is_never_retried)
{
	struct wal_options o = {0};
	struct recs want = {0};
	struct wal *w = fault_setup(&want, &o);
	fl.fdatasync_fail_at = 1;
	fl.fdatasync_err = -EIO;
	cr_assert_eq(add(w, &want, 11, 100), 0);
	cr_assert_eq(wal_commit_submit(w), 0);
	cr_assert_eq(wal_commit_wait(w), -EIO);
	cr_assert_eq(wal_last_rev(w), 10); /* never declared durable */
	sticky(w, -EIO);
	cr_assert_eq(fl.fdatasyncs, 1); /* and never synced again */
	check_reopen(&o, &want, 10, 11); /* the page cache may still have written it */
	recs_free(&want);
}

/* Issue 12 item 8: no space for the next segment is not an error of the log. The spare (the
 * next segment, preallocated ahead) is missing first, while the current segment still has
 * room; a commit that needs the next segment then gets -ENOSPC with nothing written and the
 * log healthy, and succeeds once space is back. */
Test(wal, enospc_at_rollover)
{
	struct wal_options o = {.segment_bytes = 4096};
	struct recs want = {0};
	o.ops = fault_ops();
	arm();
	fl.fallocate_fail_from = 1; /* the disk is full from the start */
	fl.fallocate_err = -ENOSPC;
	char err[512];
	struct wal *w;
	cr_assert_eq(wal_open(dir, &o, NULL, NULL, &w, err, sizeof err), -ENOSPC, "the first segment needs space");
	fl.fallocate_fail_from = 0;
	w = open_ok(&o, NULL);
	cr_assert(wal_spare_ready(w));
	for (int i = 1; i <= 10; i++) /* fills segment 1 and rolls into the spare */
		cr_assert_eq(add(w, &want, i, 200), 0);
	cr_assert_eq(wal_commit(w), 0);
	arm();
	fl.fallocate_fail_from = 1;
	fl.fallocate_err = -ENOSPC;
	int i = 11;
	for (; i <= 60; i++) { /* into the spare; the next spare fails */
		cr_assert_eq(add(w, &want, i, 200), 0);
		int rc = wal_commit(w);
		if (rc) {
			cr_assert_eq(rc, -ENOSPC);
			break;
		}
	}
	cr_assert_leq(i, 60, "a commit needed the missing segment");
	cr_assert(!wal_spare_ready(w));
	cr_assert_eq(wal_error(w), 0, "the log is not failed");
	cr_assert_eq(wal_spare_prepare(w), -ENOSPC);
	cr_assert_eq(wal_commit(w), -ENOSPC, "still full");
	cr_assert_eq(wal_last_rev(w), i - 1);
	fl.fallocate_fail_from = 0; /* space is back */
	cr_assert_eq(wal_commit(w), 0, "the same pending record goes out");
	cr_assert_eq(wal_last_rev(w), i);
	cr_assert(wal_spare_ready(w));
	cr_assert_eq(add(w, &want, i + 1, 200), 0);
	cr_assert_eq(wal_commit(w), 0);
	cr_assert_eq(wal_close(w), 0);
	cr_assert_eq(wal_inspect(dir, NULL, NULL, err, sizeof err), 0, "%s", err);
	check_reopen(&o, &want, want.n, want.n);
	recs_free(&want);
}

Test(wal, no_fsync_never_syncs)
{
	struct wal_options o = {.segment_bytes = 4096, .no_fsync = true, .ops = fault_ops()};
	struct recs want = {0}, got = {0};
	arm();
	struct wal *w = open_ok(&o, NULL);
	for (int i = 1; i <= 50; i++)
		{
			cr_assert_eq(add(w, &want, i, 300), 0);
			cr_assert_eq(wal_commit(w), 0);
		}
	cr_assert_gt(w->nsegs, 3);
	cr_assert_eq(wal_close(w), 0);
	cr_assert_eq(fl.fdatasyncs + fl.fsyncs, 0);
	o.ops = NULL; /* and through io_uring: write only */
	w = open_ok(&o, &got);
	recs_expect(&got, &want, want.n);
	cr_assert_eq(add(w, &want, 51, 300), 0);
	cr_assert_eq(wal_commit(w), 0);
	wal_close(w);
	recs_free(&got);
	w = open_ok(&o, &got);
	recs_expect(&got, &want, want.n);
	wal_close(w);
	recs_free(&got);
	recs_free(&want);
}

Test(wal, io_uring_write_error)
{
	struct recs want = {0};
	struct wal *w = open_ok(NULL, NULL);
	cr_assert(w->use_uring);
	cr_assert_eq(add(w, &want, 1, 100), 0);
	cr_assert_eq(wal_commit(w), 0);
	char p[512];
	seg_file(p, sizeof p, 1);
	int ro = open(p, O_RDONLY);
	int rw = w->fd;
	w->fd = ro; /* the write fails with EBADF, the linked fsync is cancelled */
	cr_assert_eq(add(w, NULL, 2, 100), 0);
	cr_assert_eq(wal_commit(w), -EBADF);
	w->fd = rw;
	close(ro);
	sticky(w, -EBADF);
	struct wal_options o = {0};
	check_reopen(&o, &want, 1, 1);
	recs_free(&want);
}

Test(wal, io_uring_short_write_continued_then_error)
{
	/* RLIMIT_FSIZE makes a regular-file write short at the limit and the next one EFBIG */
	struct recs want = {0};
	struct wal *w = open_ok(NULL, NULL);
	cr_assert(w->use_uring);
	cr_assert_eq(add(w, &want, 1, 100), 0);
	cr_assert_eq(wal_commit(w), 0);
	signal(SIGXFSZ, SIG_IGN);
	struct rlimit rl = {.rlim_cur = w->tail + 1000, .rlim_max = RLIM_INFINITY};
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	cr_assert_eq(add(w, NULL, 2, 5000), 0);
	cr_assert_eq(wal_commit(w), -EFBIG);
	cr_assert_eq(w->io_done, 1000, "short write of %zu", w->io_done);
	rl.rlim_cur = RLIM_INFINITY;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	sticky(w, -EFBIG);
	struct wal_options o = {0};
	check_reopen(&o, &want, 1, 1);
	recs_free(&want);
}

/* ---- space reclamation ---- */

Test(wal, remove_segments_below)
{
	struct wal_options o = {.segment_bytes = 4096};
	struct recs want = {0}, got = {0};
	struct wal *w = open_ok(&o, NULL);

	for (int i = 1; i <= 100; i++)
		{
			cr_assert_eq(add(w, &want, i, 400), 0);
			cr_assert_eq(wal_commit(w), 0);
		}
	struct wal_segment_info si[64];
	size_t n = wal_segments(w, si, 64);
	cr_assert_gt(n, 5);
	uint64_t size = wal_size_bytes(w);
	cr_assert_eq(wal_remove_segments_below(w, 4), 3);
	cr_assert_eq(wal_remove_segments_below(w, 5), 1);
	cr_assert_eq(wal_remove_segments_below(w, 5), 0);
	cr_assert_eq(wal_size_bytes(w), size - 4 * 4096);
	char p[512];
	seg_file(p, sizeof p, 4);
	cr_assert(!exists(p));
	cr_assert_eq(wal_segments(w, si, 64), n - 4);
	cr_assert_eq(si[0].seq, 5);
	/* never the segment being written */
	cr_assert_eq(wal_remove_segments_below(w, UINT64_MAX), (int)(n - 5));
	cr_assert_eq(wal_segments(w, si, 64), 1);
	cr_assert_eq(add(w, &want, 101, 10), 0);
	cr_assert_eq(wal_close(w), 0);
	w = open_ok(&o, &got);
	cr_assert_gt(got.n, 0);
	cr_assert_eq(got.v[got.n - 1].rev, 101);
	cr_assert_eq(got.v[0].rev, si[0].first_rev);
	wal_close(w);
	recs_free(&got);
	recs_free(&want);
}

/* A checkpoint's cut: roll, then reopen with first_seq deletes what lies below unread */
Test(wal, roll_and_first_seq)
{
	struct wal_options o = {.segment_bytes = 1 << 20};
	struct recs want = {0}, got = {0};
	struct wal *w = open_ok(&o, NULL);
	char p[512];

	cr_assert_eq(wal_roll(w), 1); /* nothing written yet: stays */
	for (int i = 1; i <= 10; i++)
		cr_assert_eq(add(w, NULL, i, 100), 0);
	cr_assert_eq(wal_roll(w), -EBUSY); /* pending records first */
	cr_assert_eq(wal_commit(w), 0);
	cr_assert_eq(wal_roll(w), 2);
	cr_assert_eq(wal_roll(w), 2);
	for (int i = 11; i <= 20; i++)
		cr_assert_eq(add(w, &want, i, 100), 0);
	cr_assert_eq(wal_commit(w), 0);
	cr_assert_eq(wal_close(w), 0);
	/* a crash before segment 1 was removed: open deletes it and replays from 2 */
	o.first_seq = 2;
	o.base_rev = 10;
	w = open_ok(&o, &got);
	seg_file(p, sizeof p, 1);
	cr_assert(!exists(p));
	cr_assert_eq(got.n, 10);
	cr_assert_eq(got.v[0].rev, 11);
	cr_assert_eq(wal_close(w), 0);
	recs_free(&got);
	/* the segment a checkpoint continues in is gone: damage, whether or not later ones
	 * exist (issue 12 item 7: it used to start an empty log there, losing revisions 11-20) */
	char err[512];
	seg_file(p, sizeof p, 2);
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(wal_open(dir, &o, NULL, NULL, &w, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "0000000000000002.seg offset 0: missing"), "%s", err);
	o.first_seq = 3;
	o.base_rev = 20;
	cr_assert_eq(wal_open(dir, &o, NULL, NULL, &w, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "0000000000000003.seg offset 0: missing"), "%s", err);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf %s/log", dir);
	cr_assert_eq(system(cmd), 0);
	w = open_ok(&o, &got); /* no log directory at all (a restore): the log starts at 3 */
	cr_assert_eq(got.n, 0);
	cr_assert_eq(wal_last_rev(w), 20);
	cr_assert_eq(add(w, NULL, 21, 10), 0);
	cr_assert_eq(wal_commit(w), 0);
	cr_assert_eq(wal_roll(w), 4);
	cr_assert_eq(add(w, NULL, 22, 10), 0);
	cr_assert_eq(wal_commit(w), 0);
	cr_assert_eq(wal_close(w), 0);
	seg_file(p, sizeof p, 3);
	cr_assert_eq(unlink(p), 0);
	o.ops = NULL;
	cr_assert_eq(wal_open(dir, &o, NULL, NULL, &w, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "0000000000000003.seg offset 0: missing"), "%s", err);
	recs_free(&want);
}

/* ---- issue 12 item 7: damage that looks like a torn tail ---- */

/* commits records of 200 bytes until the next one needs a roll; returns the next revision */
static int64_t fill_segment(struct wal *w, struct recs *want, int64_t rev)
{
	while (w->tail + ALIGN8(REC_HDR + 200) + LINK_BYTES <= w->seg_cap) {
		cr_assert_eq(add(w, want, rev++, 200), 0);
		cr_assert_eq(wal_commit(w), 0);
	}
	return rev;
}

static void seg_truncate_file(uint64_t seq, uint64_t size)
{
	char p[512];
	seg_file(p, sizeof p, seq);
	cr_assert_eq(truncate(p, (off_t)size), 0);
}

/* A newest segment cut short (a preallocated file no crash can shorten) used to be taken for
 * a torn tail and its records dropped; cut at a record boundary it even looked clean. */
Test(wal, truncated_newest_segment_is_damage)
{
	struct wal_options o = {.segment_bytes = 16384};
	struct recs want = {0};
	struct wal *w = open_ok(&o, NULL);
	int64_t rev = fill_segment(w, &want, 1);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(add(w, &want, rev++, 200), 0);
		cr_assert_eq(wal_commit(w), 0);
	}
	cr_assert_eq(w->nsegs, 2);
	uint64_t tail = w->tail;
	cr_assert_eq(wal_close(w), 0);
	char err[512], p[512];
	seg_file(p, sizeof p, 2);
	uint64_t cuts[] = {tail - 100, tail, 8192, SEG_HDR + 1};
	for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
		seg_truncate_file(2, cuts[k]);
		cr_assert_eq(wal_open(dir, &o, NULL, NULL, &w, err, sizeof err), -EBADMSG, "cut at %" PRIu64, cuts[k]);
		cr_assert(strstr(err, p), "%s", err);
		cr_assert(strstr(err, "not the 16384 it was preallocated to"), "%s", err);
		cr_assert_eq(wal_inspect(dir, NULL, NULL, err, sizeof err), -EBADMSG);
		cr_assert(strstr(err, "cut short"), "%s", err);
	}
	/* the repair option keeps what is whole and gives the segment its size back */
	o.truncate_corrupt = true;
	struct recs got = {0};
	w = open_ok(&o, &got);
	cr_assert_eq(w->seg_cap, 16384);
	cr_assert_eq(wal_close(w), 0);
	cr_assert_eq(wal_inspect(dir, NULL, NULL, err, sizeof err), 0, "%s", err);
	recs_free(&got);
	recs_free(&want);
}

static int find_link(void *arg, const struct wal_record_info *r)
{
	if (r->type == WAL_REC_LINK && r->seq == 1)
		*(uint64_t *)arg = r->offset;
	return 0;
}

/* Deleting the newest segment used to roll the log back silently to the previous one. */
Test(wal, deleted_newest_segment_is_damage)
{
	struct wal_options o = {.segment_bytes = 8192};
	struct recs want = {0};
	struct wal *w = open_ok(&o, NULL);
	int64_t rev = fill_segment(w, &want, 1);
	cr_assert_eq(add(w, &want, rev++, 200), 0);
	cr_assert_eq(wal_commit(w), 0);
	rev = fill_segment(w, &want, rev);
	cr_assert_eq(add(w, &want, rev, 200), 0);
	cr_assert_eq(wal_commit(w), 0);
	cr_assert_eq(w->nsegs, 3);
	cr_assert_eq(wal_close(w), 0);
	char err[512], p[512];
	seg_file(p, sizeof p, 3);
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(wal_open(dir, &o, NULL, NULL, &w, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "0000000000000002.seg offset"), "%s", err);
	cr_assert(strstr(err, "links to segment 0000000000000003.seg, which is missing"), "%s", err);
	cr_assert_eq(wal_inspect(dir, NULL, NULL, err, sizeof err), -EBADMSG);
	/* a segment (with records) that its predecessor does not link to is damage too */
	uint64_t link_off = 0;
	cr_assert_eq(wal_inspect(dir, find_link, &link_off, err, sizeof err), -EBADMSG);
	cr_assert_gt(link_off, 0);
	seg_file(p, sizeof p, 1);
	int fd = open(p, O_RDWR);
	static uint8_t zero[LINK_BYTES];
	cr_assert_eq(pwrite(fd, zero, LINK_BYTES, (off_t)link_off), LINK_BYTES);
	close(fd);
	cr_assert_eq(wal_open(dir, &o, NULL, NULL, &w, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "0000000000000002.seg offset 0: the previous segment does not link to this one"), "%s",
		  err);
	recs_free(&want);
}

/* Every state a crash can leave in the middle of a roll opens, with nothing acknowledged
 * lost: the next segment renamed but not linked (its predecessor's link never written, or
 * torn), and linked but empty. */
Test(wal, crash_windows_of_a_roll)
{
	for (int kind = 0; kind < 3; kind++) {
		struct wal_options o = {.segment_bytes = 8192, .ops = fault_ops()};
		struct recs want = {0}, got = {0};
		struct wal *w = open_ok(&o, NULL);
		int64_t rev = fill_segment(w, &want, 1);
		arm();
		/* the roll's writes: the next segment's header (1), the link (2), then the commit */
		if (kind == 0) {
			fl.pwrite_fail_at = 2;
			fl.pwrite_err = -EIO;
		} else if (kind == 1) {
			fl.pwrite_short_at = 2;
			fl.pwrite_fail_at = 3;
			fl.pwrite_err = -EIO;
		} else {
			fl.pwrite_fail_at = 3;
			fl.pwrite_err = -EIO;
		}
		cr_assert_eq(add(w, NULL, rev, 200), 0);
		cr_assert_eq(wal_commit(w), -EIO, "kind %d", kind);
		wal_close(w);
		char p[512], err[512];
		seg_file(p, sizeof p, 2);
		cr_assert(exists(p), "kind %d: the next segment has its name", kind);
		int rc = wal_inspect(dir, NULL, NULL, err, sizeof err);
		cr_assert_eq(rc, kind == 2 ? 0 : 1, "kind %d: %d %s", kind, rc, err);
		o.ops = NULL;
		w = open_ok(&o, &got);
		recs_expect(&got, &want, want.n);
		cr_assert_eq(w->nsegs, kind == 2 ? 2 : 1, "kind %d", kind);
		cr_assert_eq(add(w, &want, rev, 200), 0);
		cr_assert_eq(wal_commit(w), 0);
		rev = fill_segment(w, &want, rev + 1);
		cr_assert_eq(add(w, &want, rev, 200), 0);
		cr_assert_eq(wal_commit(w), 0);
		cr_assert_eq(wal_close(w), 0);
		cr_assert_eq(wal_inspect(dir, NULL, NULL, err, sizeof err), 0, "kind %d: %s", kind, err);
		recs_free(&got);
		w = open_ok(&o, &got);
		recs_expect(&got, &want, want.n);
		wal_close(w);
		recs_free(&got);
		recs_free(&want);
		rm_dir();
		mk_dir();
	}
}

/* A data directory of format version 1 (no size in the header, no links) is still read,
 * and goes on in version 2 segments. */
Test(wal, version_1_segments_still_read)
{
	struct wal_options o = {.segment_bytes = 8192};
	struct recs want = {0}, got = {0};
	struct wal *w = open_ok(&o, NULL);
	for (int i = 1; i <= 5; i++) {
		cr_assert_eq(add(w, &want, i, 100), 0);
		cr_assert_eq(wal_commit(w), 0);
	}
	cr_assert_eq(wal_close(w), 0);
	char p[512];
	seg_file(p, sizeof p, 1);
	int fd = open(p, O_RDWR);
	uint8_t h[SEG_HDR];
	cr_assert_eq(pread(fd, h, SEG_HDR, 0), SEG_HDR);
	le_put32(h + 8, 1);
	memset(h + 32, 0, 8);
	le_put64(h + 56, XXH3_64bits(h, 56));
	cr_assert_eq(pwrite(fd, h, SEG_HDR, 0), SEG_HDR);
	close(fd);
	w = open_ok(&o, &got);
	recs_expect(&got, &want, 5);
	cr_assert_eq(w->segs[0].version, 1);
	int64_t rev = fill_segment(w, &want, 6);
	cr_assert_eq(add(w, &want, rev, 200), 0);
	cr_assert_eq(wal_commit(w), 0);
	cr_assert_eq(w->nsegs, 2);
	cr_assert_eq(wal_close(w), 0);
	recs_free(&got);
	w = open_ok(&o, &got);
	recs_expect(&got, &want, want.n);
	wal_close(w);
	recs_free(&got);
	recs_free(&want);
}

/* The torn-tail message counts the bytes of records discarded, not the zeros after them. */
Test(wal, torn_tail_counts_the_bytes_discarded)
{
	struct wal *w = open_ok(NULL, NULL);
	cr_assert_eq(add(w, NULL, 1, 100), 0);
	cr_assert_eq(wal_commit(w), 0);
	uint64_t tail = w->tail;
	cr_assert_eq(add(w, NULL, 2, 1000), 0);
	cr_assert_eq(wal_commit(w), 0);
	cr_assert_eq(wal_close(w), 0);
	flip_byte(1, tail + 40);
	char err[512], want[64];
	cr_assert_eq(wal_inspect(dir, NULL, NULL, err, sizeof err), 1);
	snprintf(want, sizeof want, "commit, %" PRIu64 " bytes", (uint64_t)ALIGN8(REC_HDR + 1000));
	cr_assert(strstr(err, want), "%s", err);
}

/* ---- inspection ---- */

static int count_rec(void *arg, const struct wal_record_info *r)
{
	if (r->type == WAL_REC_BATCH) /* not the links between segments */
		(*(int *)arg)++;
	return 0;
}

Test(wal, inspect)
{
	struct wal_options o = {.segment_bytes = 4096};
	struct wal *w = open_ok(&o, NULL);
	for (int i = 1; i <= 30; i++)
		{
			cr_assert_eq(add(w, NULL, i, 400), 0);
			cr_assert_eq(wal_commit(w), 0);
		}
	cr_assert_eq(wal_close(w), 0);
	int n = 0;
	char err[512];
	cr_assert_eq(wal_inspect(dir, count_rec, &n, err, sizeof err), 0);
	cr_assert_eq(n, 30);
	flip_byte(1, SEG_HDR + 40);
	cr_assert_eq(wal_inspect(dir, NULL, NULL, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "0000000000000001.seg offset 64: record checksum mismatch"), "%s", err);
}

/* ---- crash consistency: random batches, the write stream cut at a random point ---- */

struct commit {
	uint64_t seq, off, len;
	size_t first, n; /* records want[first .. first+n) */
	uint64_t ends[64]; /* end of each record (without padding) relative to off */
};

static void copy_file(const char *from, const char *to)
{
	char cmd[1200];
	snprintf(cmd, sizeof cmd, "cp %s %s", from, to);
	cr_assert_eq(system(cmd), 0);
}

static void crash_round(bool pages)
{
	if (getenv("WAL_SEED")) /* soak: WAL_SEED=n wal_test --filter 'wal/crash*' */
		rng = strtoull(getenv("WAL_SEED"), NULL, 0) | 1;
	struct wal_options o = {.segment_bytes = 16384};
	struct recs want = {0}, got = {0};
	struct commit *cs = calloc(400, sizeof *cs);
	size_t nc = 0;
	char src[300];
	snprintf(src, sizeof src, "%s/src", dir);
	mkdir(src, 0700);
	char saved[256];
	memcpy(saved, dir, sizeof saved);
	snprintf(dir, sizeof dir, "%s", src);

	struct wal *w = open_ok(&o, NULL);
	int64_t rev = 1;
	while (nc < 300) {
		struct commit *c = &cs[nc++];
		c->first = want.n;
		c->n = 1 + rnd() % 6;
		uint64_t at = 0;
		for (size_t i = 0; i < c->n; i++) {
			size_t len = rnd() % 5 == 0 ? rnd() % 6000 : rnd() % 300;
			cr_assert_eq(add(w, &want, rev, len), 0);
			rev += 1 + (int64_t)(rnd() % 2);
			c->ends[i] = at + REC_HDR + len;
			at += ALIGN8(REC_HDR + len);
		}
		c->len = w->bufs[w->cur].len;
		cr_assert_eq(wal_commit(w), 0);
		c->seq = w->segs[w->nsegs - 1].seq;
		c->off = w->io_off;
	}
	cr_assert_eq(wal_close(w), 0);

	for (int round = 0; round < 40; round++) {
		size_t k = rnd() % nc;
		struct commit *c = &cs[k];
		uint64_t cut = rnd() % (c->len + 1); /* bytes of commit k that reached the disk */
		char img[300], from[600], to[600];
		snprintf(img, sizeof img, "%s/img%d", saved, round);
		snprintf(to, sizeof to, "%s/log", img);
		mkdir(img, 0700);
		mkdir(to, 0700);
		for (uint64_t s = 1; s <= c->seq; s++) {
			snprintf(from, sizeof from, "%s/log/%016" PRIx64 ".seg", src, s);
			snprintf(to, sizeof to, "%s/log/%016" PRIx64 ".seg", img, s);
			copy_file(from, to);
		}
		int fd = open(to, O_RDWR);
		cr_assert(fd >= 0);
		/* later commits in the same segment never happened */
		struct stat st;
		cr_assert_eq(fstat(fd, &st), 0);
		cr_assert_eq(ftruncate(fd, (off_t)(c->off + c->len)), 0);
		cr_assert_eq(ftruncate(fd, st.st_size), 0);
		size_t expect = c->first; /* every earlier commit */
		if (!pages) {
			/* a prefix of the commit reached the disk */
			static uint8_t zero[65536];
			cr_assert_eq(pwrite(fd, zero, c->len - cut, (off_t)(c->off + cut)), (ssize_t)(c->len - cut));
			for (size_t i = 0; i < c->n && c->ends[i] <= cut; i++)
				expect++;
		} else {
			/* any set of its 512-byte sectors reached the disk */
			static uint8_t zero[512];
			for (uint64_t s = c->off & ~511ull; s < c->off + c->len; s += 512) {
				if (rnd() % 3)
					continue;
				uint64_t a = s < c->off ? c->off : s, b = s + 512 > c->off + c->len ? c->off + c->len : s + 512;
				cr_assert_eq(pwrite(fd, zero, b - a, (off_t)a), (ssize_t)(b - a));
			}
		}
		close(fd);
		snprintf(dir, sizeof dir, "%s", img);
		recs_free(&got);
		w = open_ok(&o, &got);
		if (!pages) {
			recs_expect(&got, &want, expect);
		} else {
			cr_assert(got.n >= c->first && got.n <= c->first + c->n, "commit %zu: %zu records, want %zu..%zu",
				  k, got.n, c->first, c->first + c->n);
			recs_expect(&got, &want, got.n);
		}
		/* the log continues after the cut, and stays consistent */
		int64_t r = got.n ? got.v[got.n - 1].rev : 0;
		cr_assert_eq(add(w, NULL, r + 1, 77), 0);
		cr_assert_eq(wal_close(w), 0);
		size_t before = got.n;
		recs_free(&got);
		w = open_ok(&o, &got);
		cr_assert_eq(got.n, before + 1);
		cr_assert_eq(got.v[got.n - 1].rev, r + 1);
		wal_close(w);
		cr_assert_eq(wal_inspect(dir, NULL, NULL, NULL, 0), 0);
		snprintf(dir, sizeof dir, "%s", src);
	}
	memcpy(dir, saved, sizeof saved);
	recs_free(&got);
	recs_free(&want);
	free(cs);
}

Test(wal, crash_prefix_property)
{
	rng = 12345;
	crash_round(false);
}

Test(wal, crash_lost_sectors_property)
{
	rng = 999;
	crash_round(true);
}

/* ---- the batch codec ---- */

struct seen {
	struct wal_change c[16];
	char keys[16][32], vals[16][32];
	int n;
};

static int see(void *arg, const struct wal_change *c)
{
	struct seen *s = arg;
	s->c[s->n] = *c;
	memcpy(s->keys[s->n], c->key, c->key_len);
	memcpy(s->vals[s->n], c->value, c->value_len);
	s->n++;
	return 0;
}

static size_t sample_batch(uint8_t *buf, size_t cap)
{
	struct wal_batch_enc e;
	int64_t last;
	wal_batch_begin(&e, buf, cap, 41);
	cr_assert_eq(wal_batch_put(&e, 41, (const uint8_t *)"k1", 2, (const uint8_t *)"v1", 2, 0), 0);
	cr_assert_eq(wal_batch_put(&e, 42, (const uint8_t *)"k2", 2, (const uint8_t *)"", 0, 0x7fffffffffffffffll), 0);
	cr_assert_eq(wal_batch_delete(&e, 42, (const uint8_t *)"k1", 2), 0);
	cr_assert_eq(wal_batch_compact(&e, 42, 40), 0);
	cr_assert_eq(wal_batch_put(&e, 1000000, (const uint8_t *)"k3", 2, (const uint8_t *)"value3", 6, 7), 0);
	ssize_t n = wal_batch_end(&e, &last);
	cr_assert_gt(n, 0);
	cr_assert_eq(last, 1000000);
	return (size_t)n;
}

Test(wal_batch, round_trip)
{
	uint8_t buf[256];
	size_t n = sample_batch(buf, sizeof buf);
	struct seen s = {0};
	cr_assert_eq(wal_batch_decode(buf, n, see, &s), 0);
	cr_assert_eq(s.n, 5);
	cr_assert(s.c[0].op == WAL_OP_PUT && s.c[0].rev == 41 && !strcmp(s.keys[0], "k1") && !strcmp(s.vals[0], "v1"));
	cr_assert(s.c[1].op == WAL_OP_PUT && s.c[1].rev == 42 && s.c[1].value_len == 0 &&
		  s.c[1].lease == 0x7fffffffffffffffll);
	cr_assert(s.c[2].op == WAL_OP_DELETE && s.c[2].rev == 42 && !strcmp(s.keys[2], "k1"));
	cr_assert(s.c[3].op == WAL_OP_COMPACT && s.c[3].rev == 42 && s.c[3].compact_rev == 40);
	cr_assert(s.c[4].op == WAL_OP_PUT && s.c[4].rev == 1000000 && s.c[4].lease == 7 && !strcmp(s.vals[4], "value3"));
	/* leases */
	struct wal_batch_enc le;
	wal_batch_begin(&le, buf, sizeof buf, 7);
	cr_assert_eq(wal_batch_lease_grant(&le, 7, 0x1234567890ll, 30), 0);
	cr_assert_eq(wal_batch_put(&le, 8, (const uint8_t *)"lk", 2, (const uint8_t *)"lv", 2, 0x1234567890ll), 0);
	cr_assert_eq(wal_batch_lease_revoke(&le, 8, 0x1234567890ll), 0);
	cr_assert_eq(wal_batch_delete(&le, 9, (const uint8_t *)"lk", 2), 0);
	n = (size_t)wal_batch_end(&le, NULL);
	memset(&s, 0, sizeof s);
	cr_assert_eq(wal_batch_decode(buf, n, see, &s), 0);
	cr_assert_eq(s.n, 4);
	cr_assert(s.c[0].op == WAL_OP_LEASE_GRANT && s.c[0].lease == 0x1234567890ll && s.c[0].ttl == 30 && s.c[0].rev == 7);
	cr_assert(s.c[1].op == WAL_OP_PUT && s.c[1].lease == 0x1234567890ll);
	cr_assert(s.c[2].op == WAL_OP_LEASE_REVOKE && s.c[2].lease == 0x1234567890ll && s.c[2].rev == 8);
	cr_assert(s.c[3].op == WAL_OP_DELETE && s.c[3].rev == 9);
	wal_batch_begin(&le, buf, sizeof buf, 7);
	cr_assert_eq(wal_batch_lease_grant(&le, 7, 0, 30), -EINVAL);
	wal_batch_begin(&le, buf, sizeof buf, 7);
	cr_assert_eq(wal_batch_lease_revoke(&le, 7, 0), -EINVAL);
	/* etcd takes negative lease ids: they round-trip */
	wal_batch_begin(&le, buf, sizeof buf, 7);
	cr_assert_eq(wal_batch_lease_grant(&le, 7, -5, 30), 0);
	cr_assert_eq(wal_batch_put(&le, 7, (const uint8_t *)"nk", 2, NULL, 0, INT64_MIN), 0);
	cr_assert_eq(wal_batch_lease_revoke(&le, 8, -1), 0);
	n = (size_t)wal_batch_end(&le, NULL);
	memset(&s, 0, sizeof s);
	cr_assert_eq(wal_batch_decode(buf, n, see, &s), 0);
	cr_assert_eq(s.n, 3);
	cr_assert(s.c[0].lease == -5 && s.c[0].ttl == 30 && s.c[1].lease == INT64_MIN && s.c[2].lease == -1);
	/* auth records: opaque bytes at the store's revision, no key */
	wal_batch_begin(&le, buf, sizeof buf, 9);
	cr_assert_eq(wal_batch_auth(&le, 9, (const uint8_t *)"\x01\x02op", 4), 0);
	cr_assert_eq(wal_batch_put(&le, 10, (const uint8_t *)"ak", 2, NULL, 0, 0), 0);
	cr_assert_eq(wal_batch_auth(&le, 10, (const uint8_t *)"x", 1), 0);
	n = (size_t)wal_batch_end(&le, NULL);
	memset(&s, 0, sizeof s);
	cr_assert_eq(wal_batch_decode(buf, n, see, &s), 0);
	cr_assert_eq(s.n, 3);
	cr_assert(s.c[0].op == WAL_OP_AUTH && s.c[0].rev == 9 && s.c[0].value_len == 4 && !memcmp(s.vals[0], "\x01\x02op", 4));
	cr_assert(s.c[2].op == WAL_OP_AUTH && s.c[2].rev == 10 && s.c[2].value_len == 1 && s.c[2].key_len == 0);
	wal_batch_begin(&le, buf, sizeof buf, 9);
	cr_assert_eq(wal_batch_auth(&le, 9, NULL, 0), -EINVAL); /* an auth record carries an operation */
	/* the alarm set, as a number */
	wal_batch_begin(&le, buf, sizeof buf, 9);
	cr_assert_eq(wal_batch_alarms(&le, 9, 6), 0);
	cr_assert_eq(wal_batch_alarms(&le, 9, 0), 0);
	n = (size_t)wal_batch_end(&le, NULL);
	memset(&s, 0, sizeof s);
	cr_assert_eq(wal_batch_decode(buf, n, see, &s), 0);
	cr_assert(s.n == 2 && s.c[0].op == WAL_OP_ALARMS && s.c[0].alarms == 6 && s.c[1].alarms == 0);
	/* an empty batch is valid */
	struct wal_batch_enc e;
	wal_batch_begin(&e, buf, sizeof buf, 5);
	cr_assert_eq(wal_batch_end(&e, NULL), WAL_BATCH_HDR);
	cr_assert_eq(wal_batch_decode(buf, WAL_BATCH_HDR, see, &s), 0);
}

Test(wal_batch, encoder_errors)
{
	uint8_t buf[64];
	struct wal_batch_enc e;
	wal_batch_begin(&e, buf, sizeof buf, 10);
	cr_assert_eq(wal_batch_put(&e, 9, (const uint8_t *)"k", 1, NULL, 0, 0), -EINVAL); /* below base */
	cr_assert_eq(wal_batch_end(&e, NULL), -EINVAL);                                  /* sticky */
	wal_batch_begin(&e, buf, sizeof buf, 10);
	cr_assert_eq(wal_batch_put(&e, 10, (const uint8_t *)"k", 1, scratch, 20, 0), -ENOBUFS);
	wal_batch_begin(&e, buf, sizeof buf, 10);
	cr_assert_eq(wal_batch_compact(&e, 10, 11), -EINVAL);
	wal_batch_begin(&e, buf, 5, 10);
	cr_assert_eq(wal_batch_end(&e, NULL), -ENOBUFS);
}

static int count(void *arg, const struct wal_change *c)
{
	(*(int *)arg)++;
	return 0;
}

static int stop(void *arg, const struct wal_change *c)
{
	return 77;
}

Test(wal_batch, rejects_malformed)
{
	uint8_t buf[256], bad[256];
	size_t n = sample_batch(buf, sizeof buf);
	int calls = 0;
	/* every strict prefix, and every extension, is malformed; nothing is reported for it */
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(wal_batch_decode(buf, i, count, &calls), -EINVAL, "prefix %zu", i);
	memcpy(bad, buf, n);
	bad[n] = 0;
	cr_assert_eq(wal_batch_decode(bad, n + 1, count, &calls), -EINVAL);
	cr_assert_eq(calls, 0);

	/* version, op */
	memcpy(bad, buf, n);
	bad[0] = 2;
	cr_assert_eq(wal_batch_decode(bad, n, NULL, NULL), -ENOTSUP);
	memcpy(bad, buf, n);
	bad[WAL_BATCH_HDR] = 6; /* reserved */
	cr_assert_eq(wal_batch_decode(bad, n, NULL, NULL), -ENOTSUP);
	/* a count the payload cannot hold */
	memcpy(bad, buf, n);
	le_put32(bad + 1, 0xffffffff);
	cr_assert_eq(wal_batch_decode(bad, n, NULL, NULL), -EINVAL);
	/* base revision beyond int64 */
	memcpy(bad, buf, n);
	le_put64(bad + 5, 0x8000000000000000ull);
	cr_assert_eq(wal_batch_decode(bad, n, NULL, NULL), -EINVAL);

	/* hand-made changes after a header with count 1 and base 0 */
	struct {
		const char *name;
		uint8_t b[24];
		size_t len;
		int rc;
	} cases[] = {
		{"ok put", {1, 0, 1, 'k', 1, 'v', 0}, 7, 0},
		{"varint overflow (11 bytes)", {1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0, 0, 0, 0}, 15,
		 -EINVAL},
		{"varint overflow (10th byte > 1)", {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0}, 14,
		 -EINVAL},
		{"rev delta past int64", {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0}, 14,
		 -EINVAL},
		{"key length past the end", {1, 0, 9, 'k', 0, 0}, 6, -EINVAL},
		{"huge key length", {1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0}, 14, -EINVAL},
		{"value length past the end", {1, 0, 1, 'k', 5, 'v', 0}, 7, -EINVAL},
		{"ok put with lease -1", {1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 14, 0},
		{"compact past int64", {3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 14, -EINVAL},
		{"missing lease", {1, 0, 1, 'k', 1, 'v'}, 6, -EINVAL},
		{"delete with a value", {2, 0, 1, 'k', 1, 'v', 0}, 7, -EINVAL},
		{"delete with a number", {2, 0, 1, 'k', 0, 3}, 6, -EINVAL},
		{"compact above its revision", {3, 5, 0, 0, 6}, 5, -EINVAL},
		{"compact with a key", {3, 5, 1, 'k', 0, 1}, 6, -EINVAL},
		{"ok compact", {3, 5, 0, 0, 5}, 5, 0},
		{"op 0", {0, 0, 0, 0, 0}, 5, -ENOTSUP},
		{"ok lease grant", {4, 0, 0, 8, 60, 0, 0, 0, 0, 0, 0, 0, 9}, 13, 0},
		{"lease grant without ttl", {4, 0, 0, 0, 9}, 5, -EINVAL},
		{"lease grant with ttl past int64", {4, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0x80, 9}, 13, -EINVAL},
		{"lease grant of lease 0", {4, 0, 0, 8, 60, 0, 0, 0, 0, 0, 0, 0, 0}, 13, -EINVAL},
		{"lease grant with a key", {4, 0, 1, 'k', 8, 60, 0, 0, 0, 0, 0, 0, 0, 9}, 14, -EINVAL},
		{"ok lease revoke", {5, 0, 0, 0, 9}, 5, 0},
		{"lease revoke of lease 0", {5, 0, 0, 0, 0}, 5, -EINVAL},
		{"lease revoke with a value", {5, 0, 0, 1, 'v', 9}, 6, -EINVAL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint8_t p[64] = {1, 1, 0, 0, 0};
		memset(p + 5, 0, 8);
		memcpy(p + WAL_BATCH_HDR, cases[i].b, cases[i].len);
		cr_assert_eq(wal_batch_decode(p, WAL_BATCH_HDR + cases[i].len, NULL, NULL), cases[i].rc, "%s",
			     cases[i].name);
	}
	/* the callback's error stops decoding and is returned */
	cr_assert_eq(wal_batch_decode(buf, n, stop, NULL), 77);
}

/* ---- measurements (not tests): WAL_BENCH=1 wal_test --filter 'wal_bench/(star)' ----
 * WAL_BENCH_DIR picks the file system (default /tmp). Prints to stderr. */

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void bench_dir(void)
{
	if (!getenv("WAL_BENCH"))
		cr_skip_test("set WAL_BENCH=1 to measure");
	const char *base = getenv("WAL_BENCH_DIR");
	snprintf(dir, sizeof dir, "%s/wal_bench.XXXXXX", base ? base : "/tmp");
	cr_assert(mkdtemp(dir));
}

static void commit_latency(const char *name, const struct wal_file_ops *ops)
{
	enum { N = 2000 };
	static double lat[N];
	struct wal_options o = {.ops = ops};
	struct wal *w = open_ok(&o, NULL);
	for (int i = 0; i < N; i++) {
		add(w, NULL, i + 1, 4096 - REC_HDR);
		double t = now_us();
		cr_assert_eq(wal_commit(w), 0);
		lat[i] = now_us() - t;
	}
	wal_close(w);
	qsort(lat, N, sizeof lat[0], cmp_double);
	fprintf(stderr, "wal bench: commit of one 4 KiB record + fdatasync (%s), %d commits: p50 %.0f us, p99 %.0f us, max %.0f us\n",
		name, N, lat[N / 2], lat[N * 99 / 100], lat[N - 1]);
}

Test(wal_bench, commit_latency_4k, .init = bench_dir, .fini = rm_dir, .timeout = 300)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf %s/log", dir);
	commit_latency("io_uring write+fsync linked", NULL);
	cr_assert_eq(system(cmd), 0);
	commit_latency("pwrite+fdatasync", wal_file_ops_posix());
}

Test(wal_bench, append_throughput_no_fsync, .init = bench_dir, .fini = rm_dir, .timeout = 300)
{
	const uint64_t total = 512ull << 20;
	size_t sizes[] = {300, 4096 - REC_HDR};
	for (size_t s = 0; s < 2; s++) {
		struct wal_options o = {.no_fsync = true};
		struct wal *w = open_ok(&o, NULL);
		uint64_t n = 0, bytes = 0;
		for (size_t i = 0; i < sizes[s]; i++)
			scratch[i] = (uint8_t)i;
		struct iovec iov = {scratch, sizes[s]};
		double t = now_us();
		while (bytes < total) {
			cr_assert_eq(wal_append(w, WAL_REC_BATCH, (int64_t)n, &iov, 1), 0);
			n++;
			bytes += sizes[s] + REC_HDR;
			if (n % 64 == 0)
				cr_assert_eq(wal_commit(w), 0);
		}
		cr_assert_eq(wal_commit(w), 0);
		double us = now_us() - t;
		fprintf(stderr, "wal bench: no_fsync append of %zu-byte payloads, commit every 64: %.0f records/s, %.0f MiB/s (%" PRIu64 " MiB, %zu segments)\n",
			sizes[s], (double)n / us * 1e6, (double)bytes / us * 1e6 / (1 << 20), bytes >> 20, w->nsegs);
		wal_close(w);
		char cmd[600];
		snprintf(cmd, sizeof cmd, "rm -rf %s/log", dir);
		cr_assert_eq(system(cmd), 0);
	}
}

static int bench_change(void *arg, const struct wal_change *c)
{
	(*(uint64_t *)arg)++;
	return 0;
}

static int bench_record(void *arg, uint8_t type, int64_t rev, const uint8_t *p, size_t len)
{
	return wal_batch_decode(p, len, bench_change, arg);
}

Test(wal_bench, replay_1m_puts, .init = bench_dir, .fini = rm_dir, .timeout = 600)
{
	/* 1M puts of 256-byte values under 24-byte keys, 1000 per batch record */
	struct wal_options o = {.no_fsync = true};
	struct wal *w = open_ok(&o, NULL);
	static uint8_t enc[1 << 20], val[256];
	int64_t rev = 0;
	memset(val, 'v', sizeof val);
	for (int b = 0; b < 1000; b++) {
		struct wal_batch_enc e;
		int64_t last;
		wal_batch_begin(&e, enc, sizeof enc, rev);
		for (int i = 0; i < 1000; i++) {
			char key[32];
			int kl = snprintf(key, sizeof key, "/registry/pods/%09d", b * 1000 + i);
			cr_assert_eq(wal_batch_put(&e, ++rev, (uint8_t *)key, (size_t)kl, val, sizeof val, 0), 0);
		}
		ssize_t n = wal_batch_end(&e, &last);
		struct iovec iov = {enc, (size_t)n};
		cr_assert_eq(wal_append(w, WAL_REC_BATCH, last, &iov, 1), 0);
		cr_assert_eq(wal_commit(w), 0);
	}
	uint64_t size = wal_size_bytes(w);
	cr_assert_eq(wal_close(w), 0);
	/* cold-ish: drop this log's pages from the cache first */
	char p[600];
	for (uint64_t s = 1; s * WAL_SEGMENT_BYTES_DEFAULT <= size; s++) {
		seg_file(p, sizeof p, s);
		int fd = open(p, O_RDONLY);
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	uint64_t changes = 0;
	char err[256];
	double t = now_us();
	cr_assert_eq(wal_open(dir, &o, bench_record, &changes, &w, err, sizeof err), 0);
	double us = now_us() - t;
	cr_assert_eq(changes, 1000000);
	fprintf(stderr, "wal bench: replay (read, verify, decode) of 1M puts of 256-byte values, %" PRIu64 " MiB of segments: %.0f ms\n",
		size >> 20, us / 1000);
	wal_close(w);
}
