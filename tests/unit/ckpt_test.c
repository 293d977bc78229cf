/* Checkpoint tests: a store written with ckpt_save and loaded back into a fresh store answers
 * every read (every revision, history, counters, leases) as the original; every damaged
 * file is refused with -EBADMSG and the offset (all bit flips, all cuts, garbage, and
 * hand-made bodies with forged checksums for each structural rule); mvcc_load_key's own
 * rules; a dump racing a compaction on the writer; the data directory's files (only the
 * newest kept, leftovers cleaned, install); and start-up from a checkpoint plus the log
 * after it (recover_open) and point-in-time rebuilds (recover_at).
 *
 * Checksums of hand-made files are computed here with XXH3-64 so that the structural checks
 * behind them are reached. The log is written the way core/seq.c writes it: one batch
 * record of wal_batch_* changes per commit, mirrored change by change into a model store. */
#include "storage/ckpt.h"
#include "core/log.h"
#include "core/qsbr.h"
#include "storage/mvcc.h"
#include "storage/recover.h"
#include "storage/wal.h"

#pragma GCC diagnostic ignored "-Wformat-truncation" /* test paths are short */

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define S(x) (const uint8_t *)(x), strlen(x)
#define ALL (const uint8_t *)"", 0, (const uint8_t *)"", 1 /* from the empty key to the end */

/* ---- fixture ---- */

static char dir[256];
static struct qsbr *q;
static struct mvcc_store *s;

static void setup(void)
{
	log_set_level(LOG_WARN);
	snprintf(dir, sizeof dir, "/tmp/ckpt_test.XXXXXX");
	cr_assert(mkdtemp(dir));
	q = qsbr_new(8);
	s = mvcc_store_new(q);
}

static void teardown(void)
{
	char cmd[300];
	mvcc_store_free(s);
	qsbr_free(q);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(ckpt, .init = setup, .fini = teardown, .timeout = 120);

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* ---- byte buffers ---- */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		cr_assert(b->p);
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_u8(struct buf *b, uint8_t v) { buf_add(b, &v, 1); }

static void buf_u32(struct buf *b, uint32_t v)
{
	uint8_t x[4];
	for (int i = 0; i < 4; i++)
		x[i] = (uint8_t)(v >> (8 * i));
	buf_add(b, x, 4);
}

static void buf_u64(struct buf *b, uint64_t v)
{
	uint8_t x[8];
	for (int i = 0; i < 8; i++)
		x[i] = (uint8_t)(v >> (8 * i));
	buf_add(b, x, 8);
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

static bool buf_eq(const struct buf *a, const struct buf *b)
{
	return a->len == b->len && (!a->len || !memcmp(a->p, b->p, a->len));
}

static void put64le(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64le(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* ---- what a store answers, as bytes to compare ---- */

static void fp_one(struct buf *b, const struct mvcc_kv *kv)
{
	buf_u64(b, kv->key_len);
	buf_u64(b, XXH3_64bits(kv->key, kv->key_len));
	buf_u64(b, kv->value_len);
	buf_u64(b, XXH3_64bits(kv->value, kv->value_len));
	buf_u64(b, (uint64_t)kv->create_revision);
	buf_u64(b, (uint64_t)kv->mod_revision);
	buf_u64(b, (uint64_t)kv->version);
	buf_u64(b, (uint64_t)kv->lease);
}

static int fp_kv(void *arg, const struct mvcc_kv *kv)
{
	fp_one(arg, kv);
	return 0;
}

static int fp_ev(void *arg, const struct mvcc_event *ev)
{
	struct buf *b = arg;
	buf_u8(b, (uint8_t)ev->type);
	fp_one(b, &ev->kv);
	buf_u8(b, ev->has_prev);
	if (ev->has_prev)
		fp_one(b, &ev->prev);
	return 0;
}

/* every live key as of rev, both directions; returns mvcc_range's result */
static int range_fp(const struct mvcc_view *v, int64_t rev, struct buf *out)
{
	int rc = mvcc_range(v, ALL, rev, false, fp_kv, out);
	buf_u8(out, 0xee);
	int rc2 = mvcc_range(v, ALL, rev, true, fp_kv, out);
	cr_assert_eq(rc, rc2);
	return rc;
}

static uint64_t range_hash(const struct mvcc_view *v, int64_t rev)
{
	struct buf b = {0};
	cr_assert_eq(range_fp(v, rev, &b), 0, "range at %" PRId64, rev);
	uint64_t h = XXH3_64bits(b.p, b.len);
	buf_free(&b);
	return h;
}

/* The two views answer every range from rev lo to hi and the history from hist_from alike. */
static void views_equal(const struct mvcc_view *a, const struct mvcc_view *b, int64_t lo, int64_t hi,
			int64_t hist_from)
{
	struct buf x = {0}, y = {0};

	for (int64_t r = lo; r <= hi; r++) {
		int rx = range_fp(a, r, &x), ry = range_fp(b, r, &y);
		cr_assert_eq(rx, 0, "range at %" PRId64 ": %d", r, rx);
		cr_assert_eq(ry, 0, "range at %" PRId64 ": %d", r, ry);
		cr_assert(buf_eq(&x, &y), "ranges differ at revision %" PRId64, r);
		x.len = y.len = 0;
	}
	cr_assert_eq(mvcc_history(a, ALL, hist_from, fp_ev, &x), 0);
	cr_assert_eq(mvcc_history(b, ALL, hist_from, fp_ev, &y), 0);
	cr_assert(buf_eq(&x, &y), "histories from %" PRId64 " differ", hist_from);
	buf_free(&x);
	buf_free(&y);
}

/* Everything a client or the server can ask of the two stores is the same. */
static void stores_equal(struct mvcc_store *a, struct mvcc_store *b, bool counters)
{
	struct mvcc_view va, vb;
	struct buf x = {0};
	int64_t c = mvcc_compact_rev(a), lo = c > 1 ? c : 1;

	cr_assert_eq(mvcc_rev(a), mvcc_rev(b));
	cr_assert_eq(mvcc_compact_rev(a), mvcc_compact_rev(b), "compact_rev %" PRId64 " vs %" PRId64,
		     mvcc_compact_rev(a), mvcc_compact_rev(b));
	if (counters) {
		cr_assert_eq(mvcc_keys_live(a), mvcc_keys_live(b));
		cr_assert_eq(mvcc_versions_total(a), mvcc_versions_total(b), "versions %" PRIu64 " vs %" PRIu64,
			     mvcc_versions_total(a), mvcc_versions_total(b));
		cr_assert_eq(mvcc_bytes_in_use(a), mvcc_bytes_in_use(b), "bytes %" PRIu64 " vs %" PRIu64,
			     mvcc_bytes_in_use(a), mvcc_bytes_in_use(b));
	}
	mvcc_view_published(a, &va);
	mvcc_view_published(b, &vb);
	cr_assert_eq(va.rev, mvcc_rev(a), "publish the store first");
	cr_assert_eq(vb.rev, mvcc_rev(b), "publish the store first");
	views_equal(&va, &vb, lo, mvcc_rev(a), c + 1 > 1 ? c + 1 : 1);
	if (c > 1) {
		cr_assert_eq(range_fp(&va, c - 1, &x), -MVCC_ECOMPACTED);
		cr_assert_eq(range_fp(&vb, c - 1, &x), -MVCC_ECOMPACTED);
	}
	cr_assert_eq(range_fp(&va, mvcc_rev(a) + 1, &x), -MVCC_EFUTURE);
	cr_assert_eq(range_fp(&vb, mvcc_rev(a) + 1, &x), -MVCC_EFUTURE);
	buf_free(&x);
}

/* ---- a sink that loads into a fresh store ---- */

struct loader {
	struct mvcc_store *s;
	struct ckpt_header h;
	int headers;
	struct ckpt_lease leases[64];
	size_t nleases;
	uint64_t keys, versions;
	int load_rc; /* mvcc_load_*'s refusal */
};

static int ld_header(void *arg, const struct ckpt_header *h)
{
	struct loader *l = arg;
	l->h = *h;
	l->headers++;
	return (l->load_rc = mvcc_load_begin(l->s, h->rev, h->compact_rev));
}

static int ld_lease(void *arg, int64_t id, int64_t ttl)
{
	struct loader *l = arg;
	cr_assert_eq(l->keys, 0, "leases come before keys");
	cr_assert_lt(l->nleases, 64);
	l->leases[l->nleases++] = (struct ckpt_lease){id, ttl};
	return 0;
}

static int ld_key(void *arg, const uint8_t *key, size_t key_len, const struct mvcc_stored *vers, size_t n)
{
	struct loader *l = arg;
	l->keys++;
	l->versions += n;
	return (l->load_rc = mvcc_load_key(l->s, key, key_len, vers, n));
}

static struct ckpt_sink loader_sink(struct loader *l, struct mvcc_store *into)
{
	memset(l, 0, sizeof *l);
	l->s = into;
	return (struct ckpt_sink){.header = ld_header, .lease = ld_lease, .key = ld_key, .arg = l};
}

/* ---- files ---- */

static uint8_t *file_read(const char *path, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(fstat(fd, &st), 0);
	uint8_t *p = malloc((size_t)st.st_size + 1);
	cr_assert_eq(pread(fd, p, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

static void file_write(const char *path, const void *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, p, len), (ssize_t)len);
	close(fd);
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static int name_cmp(const void *a, const void *b) { return strcmp(a, b); }

/* names in d, sorted, joined with ',' ("" when d is missing or empty) */
static void list_dir(const char *d, char *out, size_t outlen)
{
	char names[64][64];
	int n = 0;
	DIR *dh = opendir(d);
	struct dirent *de;

	out[0] = 0;
	if (!dh)
		return;
	while ((de = readdir(dh)))
		if (de->d_name[0] != '.' && n < 64)
			snprintf(names[n++], sizeof names[0], "%s", de->d_name);
	closedir(dh);
	qsort(names, (size_t)n, sizeof names[0], name_cmp);
	for (int i = 0; i < n; i++) {
		size_t l = strlen(out);
		snprintf(out + l, outlen - l, "%s%s", i ? "," : "", names[i]);
	}
}

/* A checkpoint of the view in memory (as ckpt_write_fd writes it). */
static uint8_t *ckpt_bytes_of(const struct mvcc_view *v, uint64_t log_seq, const struct ckpt_lease *leases,
			      size_t nleases, size_t *len, struct ckpt_header *h)
{
	int fd = memfd_create("ckpt_test", MFD_CLOEXEC);
	uint64_t bytes = 0;
	struct ckpt_header hh;

	cr_assert(fd >= 0);
	cr_assert_eq(ckpt_write_fd(fd, v, log_seq, leases, nleases, &bytes, h ? h : &hh), 0);
	uint8_t *p = malloc(bytes);
	cr_assert_eq(pread(fd, p, bytes, 0), (ssize_t)bytes);
	close(fd);
	*len = bytes;
	return p;
}

/* ---- stores to write ---- */

static void key_of(uint8_t *k, size_t n)
{
	for (size_t i = 0; i < n; i++) /* a key of length n is a prefix of the longer ones */
		k[i] = (uint8_t)(i * 131 + 7);
}

static uint8_t *value_of(size_t n, uint8_t seed)
{
	uint8_t *v = malloc(n ? n : 1);
	for (size_t i = 0; i < n; i++)
		v[i] = (uint8_t)(i * 31 + seed);
	return v;
}

static void put_len(struct mvcc_store *st, size_t klen, size_t vlen, uint8_t seed, int64_t lease)
{
	uint8_t *k = malloc(klen ? klen : 1), *v = value_of(vlen, seed);
	key_of(k, klen);
	mvcc_put(st, k, klen, v, vlen, lease, NULL);
	free(k);
	free(v);
}

static int64_t del_len(struct mvcc_store *st, size_t klen)
{
	uint8_t *k = malloc(klen ? klen : 1);
	key_of(k, klen);
	int64_t n = mvcc_delete_range(st, k, klen, NULL, 0, NULL, NULL);
	free(k);
	return n;
}

/* Puts, deletes, multi-key transactions (one putting a key twice), a range delete, keys of
 * length 0 to 100000 that are prefixes of each other, keys with 0x00 and 0xff bytes, empty
 * and 1 MiB values, leases, a compaction (which removes a deleted key entirely and cuts
 * chains), then more history on top of it. */
static void build_rich(struct mvcc_store *st)
{
	static const size_t lens[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 31, 32, 33, 64,
				      255, 256, 1000, 4096, 100000};
	const size_t nl = sizeof lens / sizeof lens[0];

	for (size_t i = 0; i < nl; i++)
		put_len(st, lens[i], lens[i] % 7, (uint8_t)i, i % 3 ? 0 : 100 + (int64_t)i);
	mvcc_put(st, S("\x00"), S("nul"), 0, NULL);
	mvcc_put(st, (const uint8_t *)"\x00\x00", 2, S(""), 0, NULL);
	mvcc_put(st, S("\xff"), S("ff"), 0, NULL);
	mvcc_put(st, S("\xff\xff\xff"), S("fff"), -9, NULL);

	mvcc_txn_begin(st); /* several keys at one revision, one of them twice */
	put_len(st, 1, 3, 50, 0);
	put_len(st, 1, 4, 51, 7);
	put_len(st, 2, 0, 52, 0);
	cr_assert_eq(del_len(st, 3), 1);
	mvcc_put(st, S("txn-a"), S("ta"), 1, NULL);
	cr_assert_eq(mvcc_txn_end(st), mvcc_rev(st));

	cr_assert_eq(del_len(st, 4), 1); /* deleted before the compaction: gone after it */
	uint8_t k5[5], k8[8];
	key_of(k5, 5);
	key_of(k8, 8);
	cr_assert_eq(mvcc_delete_range(st, k5, 5, k8, 8, NULL, NULL), 3); /* 5, 6, 7 */
	put_len(st, 100000, 1 << 20, 60, 0);
	mvcc_put(st, S("big-empty"), S(""), 0, NULL);
	for (int i = 0; i < 5; i++)
		put_len(st, 10, (size_t)i * 10, (uint8_t)(70 + i), i);
	int64_t c = mvcc_rev(st) - 3;

	put_len(st, 11, 0, 80, 0);
	cr_assert_eq(mvcc_compact(st, c), 0);

	put_len(st, 3, 9, 90, 0);        /* recreated after its delete */
	cr_assert_eq(del_len(st, 10), 1); /* a tombstone after the compaction */
	mvcc_txn_begin(st);
	mvcc_put(st, S("a"), S("1"), 0, NULL);
	mvcc_put(st, S("b"), S("2"), 5, NULL);
	cr_assert_eq(mvcc_delete_range(st, S("txn-a"), NULL, 0, NULL, NULL), 1);
	mvcc_put(st, S("a"), S("3"), 0, NULL);
	mvcc_txn_end(st);
	put_len(st, 100000, 1 << 20, 61, 0); /* two MiB values in one chain */
	put_len(st, 0, 1, 62, 0);
	mvcc_publish(st);
}

/* ==== 1. round trip ==== */

Test(ckpt, round_trip)
{
	static const struct ckpt_lease leases[] = {{1, 10}, {-5, 100}, {INT64_MAX, 1}, {INT64_MIN, INT64_MAX}};
	struct mvcc_view v;
	struct ckpt_header h, hd;
	uint64_t bytes = 0, found = 0;
	char path[512], want[512], err[512];

	build_rich(s);
	cr_assert_geq(mvcc_compact_rev(s), 1);
	mvcc_view_published(s, &v);
	cr_assert_eq(ckpt_save(dir, &v, 9, leases, 4, true, &bytes, &h), 0);
	cr_assert_eq(h.rev, mvcc_rev(s));
	cr_assert_eq(h.compact_rev, mvcc_compact_rev(s));
	cr_assert_eq(h.log_seq, 9);
	cr_assert_gt(bytes, 2u << 20);

	cr_assert_eq(ckpt_latest(dir, false, path, sizeof path, &found), 0);
	snprintf(want, sizeof want, "%s/snap/%016" PRIx64 ".ckpt", dir, (uint64_t)h.rev);
	cr_assert_str_eq(path, want);
	cr_assert_eq(found, bytes);

	struct mvcc_store *s2 = mvcc_store_new(q);
	struct loader l;
	struct ckpt_sink sink = loader_sink(&l, s2);
	cr_assert_eq(ckpt_load_file(path, &sink, err, sizeof err), 0, "%s", err);
	cr_assert_eq(l.headers, 1);
	cr_assert_eq(l.h.rev, h.rev);
	cr_assert_eq(l.h.compact_rev, h.compact_rev);
	cr_assert_eq(l.h.log_seq, 9);
	cr_assert_eq(l.keys, mvcc_keys_live(s) + 2, "the two tombstoned keys travel too");
	cr_assert_eq(l.versions, mvcc_versions_total(s));
	cr_assert_eq(l.nleases, 4);
	cr_assert(!memcmp(l.leases, leases, sizeof leases), "leases come back in order");
	mvcc_publish(s2);
	stores_equal(s, s2, true);

	/* the file is what ckpt_write_fd writes; the envelope reader finds its length */
	size_t len, flen;
	uint8_t *mem = ckpt_bytes_of(&v, 9, leases, 4, &len, &hd);
	uint8_t *file = file_read(path, &flen);
	cr_assert_eq(len, flen);
	cr_assert(!memcmp(mem, file, len));
	cr_assert_eq(ckpt_length(file, len, err, sizeof err), len);
	file = realloc(file, len + 1000);
	memset(file + len, 0xab, 1000);
	cr_assert_eq(ckpt_length(file, len + 1000, err, sizeof err), len, "a checkpoint inside a longer file");
	cr_assert_eq(ckpt_length(file, 63, err, sizeof err), 0);
	cr_assert_eq(ckpt_parse(file, len, NULL, err, sizeof err), 0);

	/* the loaded store writes the same bytes again */
	struct mvcc_view v2;
	size_t len2;
	mvcc_view_published(s2, &v2);
	uint8_t *again = ckpt_bytes_of(&v2, 9, leases, 4, &len2, NULL);
	cr_assert_eq(len2, len);
	cr_assert(!memcmp(again, mem, len));

	/* and both go on alike: a compaction and a write on top of the loaded store */
	cr_assert_eq(mvcc_compact(s, mvcc_rev(s) - 1), 0);
	cr_assert_eq(mvcc_compact(s2, mvcc_rev(s2) - 1), 0);
	put_len(s, 100000, 5, 1, 0);
	put_len(s2, 100000, 5, 1, 0);
	mvcc_publish(s);
	mvcc_publish(s2);
	stores_equal(s, s2, true);

	free(again);
	free(mem);
	free(file);
	mvcc_store_free(s2);
}

Test(ckpt, round_trip_empty_store)
{
	struct mvcc_view v;
	size_t len;
	struct ckpt_header h;

	mvcc_view_published(s, &v);
	uint8_t *p = ckpt_bytes_of(&v, 1, NULL, 0, &len, &h);
	cr_assert_eq(len, CKPT_HDR + 25, "a header and the end entry");
	cr_assert_eq(h.rev, 1);
	struct mvcc_store *s2 = mvcc_store_new(q);
	struct loader l;
	struct ckpt_sink sink = loader_sink(&l, s2);
	cr_assert_eq(ckpt_parse(p, len, &sink, NULL, 0), 0);
	mvcc_publish(s2);
	cr_assert_eq(mvcc_rev(s2), 1);
	cr_assert_eq(mvcc_keys_live(s2), 0);
	cr_assert_eq(mvcc_versions_total(s2), 0);
	free(p);
	mvcc_store_free(s2);
}

/* The auth state rides along as one opaque entry between the leases and the keys. */
struct auth_seen {
	uint8_t buf[64];
	size_t len;
	int calls;
	uint32_t alarms;
};

static int see_auth(void *arg, const uint8_t *state, size_t len)
{
	struct auth_seen *a = arg;

	cr_assert_leq(len, sizeof a->buf);
	memcpy(a->buf, state, len);
	a->len = len;
	a->calls++;
	return 0;
}

static int see_alarms(void *arg, uint32_t alarms)
{
	((struct auth_seen *)arg)->alarms = alarms;
	return 0;
}

Test(ckpt, auth_state_round_trip)
{
	static const struct ckpt_lease leases[] = {{5, 60}};
	struct mvcc_view v;
	uint64_t bytes;
	struct ckpt_header h;
	struct auth_seen seen = {0};
	int fd = memfd_create("ckpt_auth", MFD_CLOEXEC);

	mvcc_put(s, (const uint8_t *)"k", 1, (const uint8_t *)"v", 1, 5, NULL);
	mvcc_publish(s);
	mvcc_view_published(s, &v);
	struct ckpt_extra x = {leases, 1, (const uint8_t *)"AUTH-STATE-BYTES", 16, 2};
	cr_assert_eq(ckpt_write_fd_x(fd, &v, 3, &x, &bytes, &h), 0);
	uint8_t *p = malloc(bytes);
	cr_assert_eq(pread(fd, p, bytes, 0), (ssize_t)bytes);
	close(fd);
	struct ckpt_sink sink = {.auth = see_auth, .alarms = see_alarms, .arg = &seen};
	cr_assert_eq(ckpt_parse(p, bytes, &sink, NULL, 0), 0);
	cr_assert_eq(seen.alarms, 2); /* NOSPACE */
	cr_assert_eq(seen.calls, 1);
	cr_assert_eq(seen.len, 16);
	cr_assert(!memcmp(seen.buf, "AUTH-STATE-BYTES", 16));
	/* the body checksum covers the auth entry too (its placement rules: entry_rules) */
	p[CKPT_HDR + 17 + 1] ^= 0x40;
	char err[256];
	cr_assert_eq(ckpt_parse(p, bytes, &sink, err, sizeof err), -EBADMSG);
	free(p);
}

/* A store that was never compacted has compact_rev -1 (etcd's: Compact(0) succeeds once). A
 * checkpoint of it must say -1 too, or the loaded store refuses that Compact(0). */
Test(ckpt, never_compacted_round_trip_keeps_minus_one)
{
	struct mvcc_view v;
	size_t len;
	struct ckpt_header h;

	mvcc_put(s, S("a"), S("1"), 0, NULL);
	mvcc_publish(s);
	cr_assert_eq(mvcc_compact_rev(s), -1);
	mvcc_view_published(s, &v);
	uint8_t *p = ckpt_bytes_of(&v, 1, NULL, 0, &len, &h);
	struct mvcc_store *s2 = mvcc_store_new(q);
	struct loader l;
	struct ckpt_sink sink = loader_sink(&l, s2);
	cr_assert_eq(ckpt_parse(p, len, &sink, NULL, 0), 0);
	mvcc_publish(s2);
	free(p);
	cr_expect_eq(h.compact_rev, -1, "the header says %" PRId64, h.compact_rev);
	cr_expect_eq(mvcc_compact_rev(s2), mvcc_compact_rev(s));
	cr_expect_eq(mvcc_compact(s2, 0), mvcc_compact(s, 0), "Compact(0) after a restart");
	mvcc_store_free(s2);
}

/* ==== 2. damage ==== */

/* ckpt_parse refuses p with -EBADMSG and "offset <off>: ..." (off < 0: any offset, which
 * must still be within the input), containing `why` if not NULL; through a loading sink into
 * a fresh store, and with no sink at all. Works on its own copy of exactly len bytes, so
 * AddressSanitizer sees any read past the end. */
static void expect_bad(const uint8_t *p, size_t len, long off, const char *why)
{
	uint8_t *copy = malloc(len ? len : 1);
	char err[512] = "", err2[512] = "", want[64];
	struct mvcc_store *t = mvcc_store_new(q);
	struct loader l;
	struct ckpt_sink sink = loader_sink(&l, t);

	memcpy(copy, p, len);
	int rc = ckpt_parse(copy, len, &sink, err, sizeof err);
	cr_assert_eq(rc, -EBADMSG, "rc %d (%s), len %zu", rc, err, len);
	cr_assert_eq(l.load_rc, 0, "the store refused before the parser did: %s", err);
	cr_assert(!strncmp(err, "offset ", 7), "no offset in \"%s\"", err);
	unsigned long at = strtoul(err + 7, NULL, 10);
	cr_assert_leq(at, len, "offset %lu beyond the %zu bytes", at, len);
	if (off >= 0) {
		snprintf(want, sizeof want, "offset %ld: ", off);
		cr_assert(!strncmp(err, want, strlen(want)), "\"%s\", expected %s", err, want);
	}
	if (why)
		cr_assert(strstr(err, why), "\"%s\" does not say \"%s\"", err, why);
	cr_assert_eq(ckpt_parse(copy, len, NULL, err2, sizeof err2), -EBADMSG);
	cr_assert_str_eq(err, err2);
	cr_assert_eq(ckpt_parse(copy, len, NULL, NULL, 0), -EBADMSG);
	mvcc_store_free(t);
	free(copy);
}

/* a small checkpoint with every kind of entry: leases, live keys, a tombstone, a key put
 * twice in one transaction, a compaction */
static uint8_t *small_ckpt(size_t *len)
{
	static const struct ckpt_lease leases[] = {{3, 30}, {-4, 40}};
	struct mvcc_view v;

	mvcc_put(s, S("a"), S("1"), 3, NULL);
	mvcc_put(s, S("b"), S("22"), 0, NULL);
	mvcc_txn_begin(s);
	mvcc_put(s, S("c"), S(""), 0, NULL);
	mvcc_put(s, S("c"), S("c2"), -4, NULL);
	mvcc_delete_range(s, S("a"), NULL, 0, NULL, NULL);
	mvcc_txn_end(s);
	mvcc_put(s, S("b"), S("333"), 0, NULL);
	cr_assert_eq(mvcc_compact(s, 2), 0);
	mvcc_publish(s);
	mvcc_view_published(s, &v);
	return ckpt_bytes_of(&v, 5, leases, 2, len, NULL);
}

/* A checkpoint around a body, with correct checksums: the header fields can be set freely. */
struct forge {
	const char *magic;
	uint32_t version, hdr_size;
	int64_t rev, compact_rev;
	uint64_t log_seq;
	bool body_len_set, body_sum_set;
	uint64_t body_len, body_sum;
};

static uint8_t *forge(const struct forge *f, const uint8_t *body, size_t blen, size_t *len)
{
	uint8_t *p = malloc(CKPT_HDR + blen + 1);

	memcpy(p, f->magic ? f->magic : "uetcdckp", 8);
	for (int i = 0; i < 4; i++) {
		p[8 + i] = (uint8_t)((f->version ? f->version : 1) >> (8 * i));
		p[12 + i] = (uint8_t)((f->hdr_size ? f->hdr_size : CKPT_HDR) >> (8 * i));
	}
	put64le(p + 16, (uint64_t)f->rev);
	put64le(p + 24, (uint64_t)f->compact_rev);
	put64le(p + 32, f->log_seq);
	put64le(p + 40, f->body_len_set ? f->body_len : blen);
	put64le(p + 48, f->body_sum_set ? f->body_sum : XXH3_64bits(body, blen));
	put64le(p + 56, XXH3_64bits(p, 56));
	if (blen)
		memcpy(p + CKPT_HDR, body, blen);
	*len = CKPT_HDR + blen;
	return p;
}

/* the same body under a fresh header for (rev, compact_rev) */
static uint8_t *reforge(const uint8_t *file, size_t body_len, size_t *len)
{
	struct forge f = {.rev = (int64_t)get64le(file + 16), .compact_rev = (int64_t)get64le(file + 24),
			  .log_seq = get64le(file + 32)};
	return forge(&f, file + CKPT_HDR, body_len, len);
}

struct ver {
	int64_t mod, create, version, lease;
	uint32_t sub;
	uint8_t flags;
	const char *value;
};

static void bb_lease(struct buf *b, int64_t id, int64_t ttl)
{
	buf_u8(b, 0x01);
	buf_u64(b, (uint64_t)id);
	buf_u64(b, (uint64_t)ttl);
}

static void bb_key(struct buf *b, const void *key, size_t klen, const struct ver *v, size_t n)
{
	buf_u8(b, 0x02);
	buf_u32(b, (uint32_t)klen);
	buf_u32(b, (uint32_t)n);
	buf_add(b, key, klen);
	for (size_t i = 0; i < n; i++) {
		size_t vl = v[i].value ? strlen(v[i].value) : 0;
		buf_u64(b, (uint64_t)v[i].mod);
		buf_u64(b, (uint64_t)v[i].create);
		buf_u64(b, (uint64_t)v[i].version);
		buf_u64(b, (uint64_t)v[i].lease);
		buf_u32(b, v[i].sub);
		buf_u8(b, v[i].flags);
		buf_u32(b, (uint32_t)vl);
		buf_add(b, v[i].value, vl);
	}
}

static void bb_end(struct buf *b, uint64_t keys, uint64_t versions, uint64_t leases)
{
	buf_u8(b, 0x7f);
	buf_u64(b, keys);
	buf_u64(b, versions);
	buf_u64(b, leases);
}

static const struct ver live1[] = {{.mod = 5, .create = 5, .version = 1, .value = "v"}};

/* parses a hand-made body at revision 10, compacted at 2 */
static int parse_body(const struct buf *b, char *err, size_t errlen)
{
	struct forge f = {.rev = 10, .compact_rev = 2};
	size_t len;
	uint8_t *p = forge(&f, b->p, b->len, &len);
	struct mvcc_store *t = mvcc_store_new(q);
	struct loader l;
	struct ckpt_sink sink = loader_sink(&l, t);
	int rc = ckpt_parse(p, len, &sink, err, errlen);
	mvcc_store_free(t);
	free(p);
	return rc;
}

static void expect_bad_body(const struct buf *b, long body_off, const char *why)
{
	struct forge f = {.rev = 10, .compact_rev = 2};
	size_t len;
	uint8_t *p = forge(&f, b->p, b->len, &len);
	expect_bad(p, len, body_off < 0 ? -1 : CKPT_HDR + body_off, why);
	free(p);
}

Test(ckpt, every_bit_flip_is_refused)
{
	size_t len;
	uint8_t *p = small_ckpt(&len), *copy = malloc(len);
	char path[512], err[1024];

	cr_assert_lt(len, 600, "keep it small: %zu bytes", len);
	cr_assert_eq(ckpt_parse(p, len, NULL, err, sizeof err), 0, "%s", err);
	snprintf(path, sizeof path, "%s/flip.ckpt", dir);
	for (size_t bit = 0; bit < len * 8; bit++) {
		memcpy(copy, p, len);
		copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		expect_bad(copy, len, bit / 8 < CKPT_HDR ? 0 : CKPT_HDR,
			   bit / 8 < 56 ? NULL : bit / 8 < CKPT_HDR ? "header checksum mismatch" : "body checksum mismatch");
		/* the header alone: any change to it is caught by its checksum */
		uint64_t got = ckpt_length(copy, len, err, sizeof err);
		cr_assert_eq(got, bit / 8 < CKPT_HDR ? 0 : len, "bit %zu", bit);
		if (bit % 8 == bit / 8 % 8) { /* one bit per byte through the file path too */
			file_write(path, copy, len);
			err[0] = 0;
			cr_assert_eq(ckpt_load_file(path, NULL, err, sizeof err), -EBADMSG, "bit %zu", bit);
			cr_assert(strstr(err, path) && strstr(err, "offset "), "%s", err);
		}
	}
	free(copy);
	free(p);
}

Test(ckpt, every_cut_and_appended_garbage_is_refused)
{
	size_t len, flen;
	uint8_t *p = small_ckpt(&len), *big = malloc(len + 64);
	const size_t blen = len - CKPT_HDR;
	char path[512], err[512];

	/* cuts: the length no longer matches the header's (or not even a header) */
	for (size_t n = 0; n < len; n++)
		expect_bad(p, n, n < CKPT_HDR ? 0 : (long)n, n < CKPT_HDR ? "shorter than" : "length differs");
	/* appended bytes, zeros or not */
	memcpy(big, p, len);
	for (size_t k = 1; k <= 64; k++) {
		big[len + k - 1] = (uint8_t)(k & 1 ? 0 : rnd());
		expect_bad(big, len + k, (long)(len + k), "length differs");
	}
	/* the same cuts with the header rewritten to match (the checksums hold): only the
	 * structure tells, and the end entry is what makes a file complete */
	for (size_t m = 0; m < blen; m++) {
		uint8_t *f = reforge(p, m, &flen);
		expect_bad(f, flen, -1, NULL);
		free(f);
	}
	/* garbage after the end entry under a matching header */
	for (size_t k = 1; k <= 64; k++) {
		struct buf b = {0};
		buf_add(&b, p + CKPT_HDR, blen);
		for (size_t i = 0; i < k; i++)
			buf_u8(&b, (uint8_t)(i == 0 ? 0x7f : rnd()));
		struct forge fo = {.rev = (int64_t)get64le(p + 16), .compact_rev = (int64_t)get64le(p + 24)};
		uint8_t *f = forge(&fo, b.p, b.len, &flen);
		expect_bad(f, flen, (long)(len - 25), "end entry is not the last 25 bytes");
		free(f);
		buf_free(&b);
	}
	/* through the file: a cut file and an empty one */
	snprintf(path, sizeof path, "%s/cut.ckpt", dir);
	file_write(path, p, len - 1);
	cr_assert_eq(ckpt_load_file(path, NULL, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "offset "), "%s", err);
	file_write(path, p, 0);
	cr_assert_eq(ckpt_load_file(path, NULL, err, sizeof err), -EBADMSG);
	snprintf(path, sizeof path, "%s/missing.ckpt", dir);
	cr_assert_eq(ckpt_load_file(path, NULL, err, sizeof err), -ENOENT);
	free(big);
	free(p);
}

Test(ckpt, end_entry_counts)
{
	size_t len, flen;
	uint8_t *p = small_ckpt(&len);
	const size_t blen = len - CKPT_HDR, end = len - 25;
	uint64_t keys = get64le(p + end + 1), versions = get64le(p + end + 9), leases = get64le(p + end + 17);
	char err[256];

	cr_assert_eq(p[end], 0x7f);
	cr_assert_eq(keys, 3);
	cr_assert_eq(versions, 6, "two each: a put + tombstone, b two puts, c two puts in one transaction");
	cr_assert_eq(leases, 2);
	for (int field = 0; field < 3; field++)
		for (int d = -1; d <= 1; d += 2) {
			struct buf b = {0};
			buf_add(&b, p + CKPT_HDR, blen);
			uint64_t v = get64le(b.p + blen - 24 + 8 * field) + (uint64_t)(int64_t)d;
			put64le(b.p + blen - 24 + 8 * field, v);
			struct forge fo = {.rev = (int64_t)get64le(p + 16), .compact_rev = (int64_t)get64le(p + 24)};
			uint8_t *f = forge(&fo, b.p, b.len, &flen);
			expect_bad(f, flen, (long)end, "entry counts differ");
			free(f);
			buf_free(&b);
		}
	/* the unchanged body under a forged header still parses: the forging is right */
	uint8_t *f = reforge(p, blen, &flen);
	cr_assert_eq(ckpt_parse(f, flen, NULL, err, sizeof err), 0, "%s", err);
	free(f);
	free(p);
}

Test(ckpt, header_rules)
{
	struct buf b = {0};
	size_t len;
	uint8_t *p;
	char err[256];

	bb_end(&b, 0, 0, 0);
	struct forge ok = {.rev = 3, .compact_rev = -1};
	p = forge(&ok, b.p, b.len, &len);
	cr_assert_eq(ckpt_parse(p, len, NULL, err, sizeof err), 0, "%s", err);
	free(p);

	static const struct {
		struct forge f;
		const char *why;
	} bad[] = {
		{{.magic = "uetcdckq", .rev = 3}, "bad magic"},
		{{.magic = "\0\0\0\0\0\0\0\0", .rev = 3}, "bad magic"},
		{{.version = 2, .rev = 3}, "format version"},
		{{.version = 0xffffffff, .rev = 3}, "format version"},
		{{.hdr_size = 32, .rev = 3}, "format version"},
		{{.rev = 0, .compact_rev = -1}, "revisions out of range"},
		{{.rev = -1, .compact_rev = -1}, "revisions out of range"},
		{{.rev = INT64_MIN, .compact_rev = -1}, "revisions out of range"},
		{{.rev = 3, .compact_rev = -2}, "revisions out of range"},
		{{.rev = 3, .compact_rev = INT64_MIN}, "revisions out of range"},
		{{.rev = 3, .compact_rev = 4}, "revisions out of range"},
		{{.rev = 3, .body_len_set = true, .body_len = 24}, "length differs"},
		{{.rev = 3, .body_len_set = true, .body_len = 26}, "length differs"},
		{{.rev = 3, .body_len_set = true, .body_len = UINT64_MAX}, "length differs"},
		{{.rev = 3, .body_sum_set = true, .body_sum = 12345}, "body checksum mismatch"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		p = forge(&bad[i].f, b.p, b.len, &len);
		expect_bad(p, len, strstr(bad[i].why, "length") ? (long)len : strstr(bad[i].why, "body") ? 64 : 0,
			   bad[i].why);
		if (!strstr(bad[i].why, "length") && !strstr(bad[i].why, "body"))
			cr_assert_eq(ckpt_length(p, len, err, sizeof err), 0, "case %zu", i);
		free(p);
	}
	/* a damaged header checksum */
	p = forge(&ok, b.p, b.len, &len);
	p[56] ^= 1;
	expect_bad(p, len, 0, "header checksum mismatch");
	free(p);
	/* ckpt_length: what the header promises, or 0 for a length that cannot be */
	struct forge huge = {.rev = 3, .body_len_set = true, .body_len = UINT64_MAX};
	p = forge(&huge, b.p, b.len, &len);
	err[0] = 0;
	cr_assert_eq(ckpt_length(p, len, err, sizeof err), 0);
	cr_assert(strstr(err, "offset 0: "), "%s", err);
	free(p);
	struct forge big = {.rev = 3, .body_len_set = true, .body_len = 1ull << 40};
	p = forge(&big, b.p, b.len, &len);
	cr_assert_eq(ckpt_length(p, len, err, sizeof err), CKPT_HDR + (1ull << 40));
	free(p);
	buf_free(&b);
}

Test(ckpt, entry_rules)
{
	struct buf b = {0};
	char err[256];
	size_t at;

	/* the forging is right: a hand-made body that follows every rule loads */
	bb_lease(&b, 1, 1);
	bb_key(&b, "", 0, live1, 1);
	bb_key(&b, "a", 1, live1, 1);
	bb_key(&b, "ab", 2, live1, 1);
	static const struct ver two[] = {{.mod = 7, .sub = 0, .flags = 1}, {.mod = 5, .create = 4, .version = 2, .value = "x"}};
	bb_key(&b, "b", 1, two, 2);
	bb_end(&b, 4, 5, 1);
	cr_assert_eq(parse_body(&b, err, sizeof err), 0, "%s", err);
	b.len = 0;

	/* keys out of order: descending, equal, a longer key before its prefix, two empty keys */
	static const struct {
		const char *k[2];
		size_t n[2];
	} pairs[] = {
		{{"b", "a"}, {1, 1}},         {{"a", "a"}, {1, 1}},       {{"ab", "a"}, {2, 1}}, {{"", ""}, {0, 0}},
		{{"\xff", "\x00"}, {1, 1}}, {{"a\x01", "a\x00"}, {2, 2}}, {{"a\x00", "a"}, {2, 1}},
	};
	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
		b.len = 0;
		bb_key(&b, pairs[i].k[0], pairs[i].n[0], live1, 1);
		at = b.len;
		bb_key(&b, pairs[i].k[1], pairs[i].n[1], live1, 1);
		bb_end(&b, 2, 2, 0);
		expect_bad_body(&b, (long)at, "keys out of order");
	}
	/* a lease after a key */
	b.len = 0;
	bb_lease(&b, 1, 1);
	bb_key(&b, "a", 1, live1, 1);
	at = b.len;
	bb_lease(&b, 2, 1);
	bb_end(&b, 1, 1, 2);
	expect_bad_body(&b, (long)at, "lease entry after a key or auth entry");
	/* lease ids and TTLs */
	static const int64_t lease_bad[][2] = {{0, 1}, {1, 0}, {1, -1}, {5, INT64_MIN}};
	for (size_t i = 0; i < 4; i++) {
		b.len = 0;
		bb_lease(&b, 1, 1);
		at = b.len;
		bb_lease(&b, lease_bad[i][0], lease_bad[i][1]);
		bb_end(&b, 0, 0, 2);
		expect_bad_body(&b, (long)at, "lease id or TTL out of range");
	}
	/* unknown entry types */
	static const uint8_t tags[] = {0x00, 0x05, 0x7e, 0x80, 0xff};
	for (size_t i = 0; i < sizeof tags; i++) {
		b.len = 0;
		bb_key(&b, "a", 1, live1, 1);
		at = b.len;
		buf_u8(&b, tags[i]);
		bb_end(&b, 1, 1, 0);
		expect_bad_body(&b, (long)at, "unknown entry type");
	}
	/* the auth entry (0x03) only between the leases and the keys, and once */
	b.len = 0;
	bb_key(&b, "a", 1, live1, 1);
	at = b.len;
	buf_u8(&b, 0x03);
	bb_end(&b, 1, 1, 0);
	expect_bad_body(&b, (long)at, "auth entry out of place");
	/* version revisions outside [1, header revision 10] */
	static const int64_t mods[] = {11, INT64_MAX, 0, -1, INT64_MIN};
	for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) {
		struct ver v[2] = {{.mod = 9, .create = 1, .version = 3}, {.mod = mods[i], .create = 1, .version = 1}};
		for (size_t which = 0; which < 2; which++) {
			b.len = 0;
			bb_key(&b, "a", 1, live1, 1);
			at = b.len;
			bb_key(&b, "b", 1, which ? v : v + 1, which ? 2 : 1);
			bb_end(&b, 2, which ? 3 : 2, 0);
			expect_bad_body(&b, (long)at, "version revision out of range");
		}
	}
	/* flags: only bit 0 */
	static const uint8_t flags[] = {0x02, 0x03, 0x80, 0xff};
	for (size_t i = 0; i < sizeof flags; i++) {
		struct ver v = {.mod = 5, .create = 5, .version = 1, .flags = flags[i]};
		b.len = 0;
		at = b.len;
		bb_key(&b, "a", 1, &v, 1);
		bb_end(&b, 1, 1, 0);
		expect_bad_body(&b, (long)at, "unknown version flags");
	}
	/* key entry lengths: no versions, more versions or key bytes than the body holds */
	b.len = 0;
	bb_key(&b, "a", 1, live1, 0);
	bb_end(&b, 1, 0, 0);
	expect_bad_body(&b, 0, "key entry lengths out of range");
	b.len = 0;
	bb_key(&b, "a", 1, live1, 1);
	b.p[5] = 2; /* claims two versions */
	bb_end(&b, 1, 2, 0);
	expect_bad_body(&b, 0, NULL);
	b.len = 0;
	bb_key(&b, "a", 1, live1, 1);
	memset(b.p + 5, 0xff, 4); /* 2^32-1 versions */
	bb_end(&b, 1, 1, 0);
	expect_bad_body(&b, 0, "key entry lengths out of range");
	b.len = 0;
	bb_key(&b, "a", 1, live1, 1);
	memset(b.p + 1, 0xff, 4); /* a 4 GiB key */
	bb_end(&b, 1, 1, 0);
	expect_bad_body(&b, 0, "key entry lengths out of range");
	b.len = 0;
	bb_key(&b, "a", 1, live1, 1);
	memset(b.p + b.len - 5, 0xff, 4); /* a 4 GiB value */
	bb_end(&b, 1, 1, 0);
	expect_bad_body(&b, 0, "value cut short");
	b.len = 0;
	buf_u8(&b, 0x02);
	buf_u32(&b, 0);
	expect_bad_body(&b, 0, "key entry cut short");
	b.len = 0;
	bb_lease(&b, 1, 1);
	b.len -= 3;
	expect_bad_body(&b, 0, "lease entry cut short");
	/* the end entry: missing, short, not last, twice */
	b.len = 0;
	expect_bad_body(&b, 0, "no end entry");
	b.len = 0;
	bb_key(&b, "a", 1, live1, 1);
	at = b.len;
	expect_bad_body(&b, (long)at, "no end entry");
	bb_end(&b, 1, 1, 0);
	b.len--;
	expect_bad_body(&b, (long)at, "end entry is not the last 25 bytes");
	b.len = at;
	bb_end(&b, 1, 1, 0);
	bb_end(&b, 1, 1, 0);
	expect_bad_body(&b, (long)at, "end entry is not the last 25 bytes");
	buf_free(&b);
}

/* A sink's non-zero result stops the walk and is returned, not -EBADMSG. */
static int stop_at_second_key(void *arg, const uint8_t *key, size_t key_len, const struct mvcc_stored *vers, size_t n)
{
	int *count = arg;
	return ++*count == 2 ? 77 : 0;
}

static int stop_header(void *arg, const struct ckpt_header *h) { return -42; }

Test(ckpt, sink_result_stops_the_walk)
{
	size_t len;
	uint8_t *p = small_ckpt(&len);
	int count = 0;
	struct ckpt_sink k = {.key = stop_at_second_key, .arg = &count};
	struct ckpt_sink hd = {.header = stop_header};

	cr_assert_eq(ckpt_parse(p, len, &k, NULL, 0), 77);
	cr_assert_eq(count, 2);
	cr_assert_eq(ckpt_parse(p, len, &hd, NULL, 0), -42);
	free(p);
}

/* ==== 3. mvcc_load_* rules ==== */

static int load1(struct mvcc_store *t, const char *key, const struct mvcc_stored *v, size_t n)
{
	return mvcc_load_key(t, S(key), v, n);
}

Test(ckpt, load_key_rules)
{
	struct mvcc_store *t = mvcc_store_new(q);
	const struct mvcc_stored live = {.value = S("v"), .mod_revision = 5, .create_revision = 3, .version = 2};
	const struct mvcc_stored tomb = {.mod_revision = 6, .sub = 1, .tomb = true};

	cr_assert_eq(mvcc_load_begin(t, 10, 2), 0);
	cr_assert_eq(load1(t, "m", &live, 1), 0);
	uint64_t keys = mvcc_keys_live(t), vers = mvcc_versions_total(t), bytes = mvcc_bytes_in_use(t);

	/* keys not strictly ascending */
	cr_assert_eq(load1(t, "m", &live, 1), -EINVAL);
	cr_assert_eq(load1(t, "a", &live, 1), -EINVAL);
	cr_assert_eq(mvcc_load_key(t, (const uint8_t *)"", 0, &live, 1), -EINVAL);
	cr_assert_eq(load1(t, "l\xff", &live, 1), -EINVAL);
	/* no versions */
	cr_assert_eq(load1(t, "n", &live, 0), -EINVAL);

	/* versions not strictly descending by (mod_revision, sub) */
	struct mvcc_stored v2[2] = {live, live};
	v2[0].mod_revision = 4; /* older first */
	v2[0].create_revision = 3;
	cr_assert_eq(load1(t, "n", v2, 2), -EINVAL);
	v2[0] = live; /* equal */
	cr_assert_eq(load1(t, "n", v2, 2), -EINVAL);
	v2[0].sub = 1; /* same revision, sub descending: fine below; ascending is not */
	v2[1].sub = 2;
	cr_assert_eq(load1(t, "n", v2, 2), -EINVAL);

	/* a tombstone with a value, create revision, version or lease */
	struct mvcc_stored tv = tomb;
	tv.value = (const uint8_t *)"x";
	tv.value_len = 1;
	cr_assert_eq(load1(t, "n", &tv, 1), -EINVAL);
	tv = tomb;
	tv.create_revision = 6;
	cr_assert_eq(load1(t, "n", &tv, 1), -EINVAL);
	tv = tomb;
	tv.version = 1;
	cr_assert_eq(load1(t, "n", &tv, 1), -EINVAL);
	tv = tomb;
	tv.lease = 1;
	cr_assert_eq(load1(t, "n", &tv, 1), -EINVAL);

	/* live versions: create_revision in [1, mod_revision], version >= 1 */
	struct mvcc_stored lv = live;
	lv.create_revision = 6;
	cr_assert_eq(load1(t, "n", &lv, 1), -EINVAL);
	lv.create_revision = 0;
	cr_assert_eq(load1(t, "n", &lv, 1), -EINVAL);
	lv = live;
	lv.version = 0;
	cr_assert_eq(load1(t, "n", &lv, 1), -EINVAL);
	lv.version = -1;
	cr_assert_eq(load1(t, "n", &lv, 1), -EINVAL);
	/* mod_revision in [1, the store's revision 10] */
	lv = live;
	lv.mod_revision = 11;
	cr_assert_eq(load1(t, "n", &lv, 1), -EINVAL);
	lv.mod_revision = 0;
	lv.create_revision = 0;
	cr_assert_eq(load1(t, "n", &lv, 1), -EINVAL);
	/* a bad version anywhere in the chain refuses the whole key */
	struct mvcc_stored v3[3] = {tomb, live, live};
	v3[2].mod_revision = 4;
	v3[2].version = 0;
	cr_assert_eq(load1(t, "n", v3, 3), -EINVAL);

	/* nothing of the refused keys stayed */
	cr_assert_eq(mvcc_keys_live(t), keys);
	cr_assert_eq(mvcc_versions_total(t), vers);
	cr_assert_eq(mvcc_bytes_in_use(t), bytes);

	/* what does follow the rules loads: the same revision in descending sub, a tombstone on
	 * top of a live version */
	v2[0] = live;
	v2[0].sub = 2;
	v2[0].version = 3;
	v2[1] = live;
	v2[1].sub = 1;
	cr_assert_eq(load1(t, "n", v2, 2), 0);
	v3[2] = live;
	v3[2].mod_revision = 4;
	v3[2].create_revision = 4;
	v3[2].version = 1;
	v3[1].create_revision = 4;
	cr_assert_eq(load1(t, "o", v3, 3), 0);
	cr_assert_eq(mvcc_keys_live(t), keys + 1);
	cr_assert_eq(mvcc_versions_total(t), vers + 5);
	mvcc_publish(t);
	struct mvcc_view v;
	struct mvcc_kv kv;
	mvcc_view_published(t, &v);
	cr_assert_eq(mvcc_get(&v, S("o"), 0, &kv), 0);
	cr_assert_eq(mvcc_get(&v, S("o"), 5, &kv), 1);
	cr_assert_eq(kv.version, 2);
	cr_assert_eq(mvcc_get(&v, S("n"), 0, &kv), 1);
	cr_assert_eq(kv.version, 3);
	mvcc_store_free(t);
}

Test(ckpt, load_begin_rules)
{
	struct mvcc_store *t = mvcc_store_new(q);
	const struct mvcc_stored live = {.value = S("v"), .mod_revision = 2, .create_revision = 2, .version = 1};

	cr_assert_eq(mvcc_load_begin(t, 0, -1), -EINVAL);
	cr_assert_eq(mvcc_load_begin(t, -5, -1), -EINVAL);
	cr_assert_eq(mvcc_load_begin(t, 5, 6), -EINVAL);
	cr_assert_eq(mvcc_load_begin(t, 5, -2), -EINVAL);
	mvcc_txn_begin(t);
	cr_assert_eq(mvcc_load_begin(t, 5, 1), -EINVAL, "inside a transaction");
	mvcc_txn_end(t);
	cr_assert_eq(mvcc_load_begin(t, 5, 1), 0);
	cr_assert_eq(mvcc_rev(t), 5);
	cr_assert_eq(mvcc_compact_rev(t), 1);
	cr_assert_eq(mvcc_load_begin(t, 7, 1), -EINVAL, "a second begin");
	cr_assert_eq(mvcc_load_key(t, S("a"), &live, 1), 0);
	cr_assert_eq(mvcc_load_begin(t, 7, 1), -EINVAL);
	mvcc_store_free(t);

	/* a store that was written */
	mvcc_put(s, S("a"), S("1"), 0, NULL);
	cr_assert_eq(mvcc_load_begin(s, 5, 1), -EINVAL);
	t = mvcc_store_new(q);
	mvcc_put(t, S("a"), S("1"), 0, NULL);
	mvcc_delete_range(t, S("a"), NULL, 0, NULL, NULL);
	cr_assert_eq(mvcc_load_begin(t, 5, 1), -EINVAL, "written, even with no key left");
	mvcc_store_free(t);
	/* rev 1, compacted -1 and 0 and 1 */
	for (int64_t c = -1; c <= 1; c++) {
		t = mvcc_store_new(q);
		cr_assert_eq(mvcc_load_begin(t, 1, c), 0);
		cr_assert_eq(mvcc_compact_rev(t), c);
		mvcc_store_free(t);
	}
}

/* ==== 4. a dump while the writer compacts ==== */

static int count_dump(void *arg, const uint8_t *key, size_t key_len, const struct mvcc_stored *vers, size_t n)
{
	uint64_t *c = arg;
	c[0]++;
	c[1] += n;
	return 0;
}

/* revisions 2..9 on a few keys, one of them deleted early (a compaction past its delete
 * removes it from the working tree while older views still reach it) */
static void build_small_history(struct mvcc_store *t)
{
	mvcc_put(t, S("a"), S("1"), 0, NULL);                        /* 2 */
	mvcc_put(t, S("b"), S("1"), 0, NULL);                        /* 3 */
	mvcc_put(t, S("a"), S("2"), 0, NULL);                        /* 4 */
	mvcc_delete_range(t, S("b"), NULL, 0, NULL, NULL);           /* 5 */
	mvcc_put(t, S("c"), S("1"), 0, NULL);                        /* 6 */
	mvcc_txn_begin(t);                                           /* 7 */
	mvcc_put(t, S("a"), S("3"), 0, NULL);
	mvcc_put(t, S("d"), S("1"), 0, NULL);
	mvcc_put(t, S("a"), S("4"), 0, NULL);
	mvcc_txn_end(t);
	mvcc_put(t, S("c"), S("2"), 0, NULL);                        /* 8 */
	mvcc_delete_range(t, S("d"), NULL, 0, NULL, NULL);           /* 9 */
	cr_assert_eq(mvcc_rev(t), 9);
}

/* A compaction after the view was taken may have cut some chains and not others (a key it
 * removed whole stays in the view's tree): the dump refuses, whatever the cut, and the
 * checkpoint is tried again from a fresh view. A compaction before the view is in it. */
Test(ckpt, dump_while_compacting)
{
	const int64_t R = 9;

	for (int64_t c = 1; c <= R + 3; c++) {
		struct qsbr *qq = qsbr_new(2);
		struct mvcc_store *t = mvcc_store_new(qq);
		struct mvcc_view v;
		int slot = qsbr_reader_register(qq); /* this thread reads the view as a reader */

		build_small_history(t);
		mvcc_publish(t);
		qsbr_quiescent(qq, slot);
		mvcc_view_published(t, &v);
		cr_assert_eq(v.rev, R);
		/* the writer goes on past the view, then compacts (same thread) */
		mvcc_put(t, S("e"), S("1"), 0, NULL);              /* 10 */
		mvcc_delete_range(t, S("c"), NULL, 0, NULL, NULL); /* 11 */
		mvcc_put(t, S("a"), S("5"), 0, NULL);              /* 12 */
		cr_assert_eq(mvcc_compact(t, c), 0);

		uint64_t counts[2] = {0};
		int64_t cut = -7;
		struct ckpt_header h;
		int fd = memfd_create("ckpt_test", MFD_CLOEXEC);
		uint64_t bytes = 0;
		char snapdir[300], names[512];
		cr_assert_eq(mvcc_dump(&v, count_dump, counts, &cut), -MVCC_ECOMPACTED, "compacted at %" PRId64, c);
		cr_assert_eq(ckpt_write_fd(fd, &v, 1, NULL, 0, &bytes, &h), -MVCC_ECOMPACTED);
		cr_assert_eq(ckpt_save(dir, &v, 1, NULL, 0, true, &bytes, &h), -MVCC_ECOMPACTED);
		snprintf(snapdir, sizeof snapdir, "%s/snap", dir);
		list_dir(snapdir, names, sizeof names);
		cr_assert_str_eq(names, "", "a failed save leaves nothing: %s", names);

		/* the retry: a view taken after the compaction has it, and the dump is that view */
		mvcc_publish(t);
		qsbr_quiescent(qq, slot);
		mvcc_view_published(t, &v);
		cr_assert_eq(ftruncate(fd, 0), 0);
		cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
		cr_assert_eq(ckpt_write_fd(fd, &v, 1, NULL, 0, &bytes, &h), 0);
		cr_assert_eq(h.rev, 12);
		cr_assert_eq(h.compact_rev, c);
		uint8_t *p = malloc(bytes);
		cr_assert_eq(pread(fd, p, bytes, 0), (ssize_t)bytes);
		struct mvcc_store *t2 = mvcc_store_new(qq);
		struct loader l;
		struct ckpt_sink sink = loader_sink(&l, t2);
		char err[256];
		cr_assert_eq(ckpt_parse(p, bytes, &sink, err, sizeof err), 0, "%s", err);
		mvcc_publish(t2);
		struct mvcc_view v2;
		mvcc_view_published(t2, &v2);
		cr_assert_eq(v2.compact_rev, c);
		views_equal(&v, &v2, c, 12, c + 1);
		cr_assert_eq(mvcc_versions_total(t2), mvcc_versions_total(t), "no versions the compaction dropped");
		free(p);
		mvcc_store_free(t2);
		close(fd);
		qsbr_offline(qq, slot);
		mvcc_store_free(t);
		qsbr_free(qq);
	}
}

/* Issue 12 item 11 (checkpoints starved by compaction): with compactions held for the
 * job (mvcc_compact_hold, as the sequencer does), a compaction past the view no longer
 * makes the dump start over: the checkpoint is the view, the log after it replays the
 * compaction, and the result is the store. While held, every read and history answer is
 * the one a store that really cut its chains gives. */
Test(ckpt, dump_completes_when_compactions_are_held)
{
	const int64_t R = 9;

	for (int64_t c = 1; c <= R + 3; c++) {
		struct qsbr *qq = qsbr_new(2);
		struct mvcc_store *t = mvcc_store_new(qq), *ref = mvcc_store_new(qq);
		struct mvcc_view v;
		int slot = qsbr_reader_register(qq);

		build_small_history(t);
		build_small_history(ref);
		mvcc_publish(t);
		mvcc_publish(ref);
		qsbr_quiescent(qq, slot);
		mvcc_compact_hold(t);
		mvcc_view_published(t, &v);
		mvcc_put(t, S("e"), S("1"), 0, NULL);              /* 10 */
		mvcc_delete_range(t, S("c"), NULL, 0, NULL, NULL); /* 11 */
		mvcc_put(t, S("a"), S("5"), 0, NULL);              /* 12 */
		mvcc_put(ref, S("e"), S("1"), 0, NULL);
		mvcc_delete_range(ref, S("c"), NULL, 0, NULL, NULL);
		mvcc_put(ref, S("a"), S("5"), 0, NULL);
		cr_assert_eq(mvcc_compact(t, c), 0);
		cr_assert_eq(mvcc_compact(t, c), -MVCC_ECOMPACTED, "the compacted revision moved at once");
		cr_assert_eq(mvcc_compact(ref, c), 0);
		mvcc_publish(t);
		mvcc_publish(ref);
		stores_equal(t, ref, false); /* held or cut, the same answers */

		uint64_t bytes = 0;
		struct ckpt_header h;
		int fd = memfd_create("ckpt_test", MFD_CLOEXEC);
		cr_assert_eq(ckpt_write_fd(fd, &v, 1, NULL, 0, &bytes, &h), 0, "compacted at %" PRId64, c);
		cr_assert_eq(h.rev, R);
		cr_assert_eq(h.compact_rev, -1);
		mvcc_compact_release(t);
		stores_equal(t, ref, true); /* and the release cut what the compaction would have */

		/* start-up: the checkpoint, then the log after it (which holds the compaction) */
		uint8_t *p = malloc(bytes);
		cr_assert_eq(pread(fd, p, bytes, 0), (ssize_t)bytes);
		struct mvcc_store *t2 = mvcc_store_new(qq);
		struct loader l;
		struct ckpt_sink sink = loader_sink(&l, t2);
		char err[256];
		cr_assert_eq(ckpt_parse(p, bytes, &sink, err, sizeof err), 0, "%s", err);
		mvcc_put(t2, S("e"), S("1"), 0, NULL);
		mvcc_delete_range(t2, S("c"), NULL, 0, NULL, NULL);
		mvcc_put(t2, S("a"), S("5"), 0, NULL);
		cr_assert_eq(mvcc_compact(t2, c), 0);
		mvcc_publish(t2);
		stores_equal(t, t2, true);
		free(p);
		close(fd);
		mvcc_store_free(t2);
		qsbr_offline(qq, slot);
		mvcc_store_free(t);
		mvcc_store_free(ref);
		qsbr_free(qq);
	}
}

/* ==== 5. the data directory's files ==== */

static void snap_path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/snap/%s", dir, name); }

Test(ckpt, save_keeps_only_the_newest_and_latest_cleans_leftovers)
{
	struct mvcc_view v;
	struct ckpt_header h;
	uint64_t bytes, found;
	char path[512], p2[512], names[1024], snapdir[300], want[64];

	snprintf(snapdir, sizeof snapdir, "%s/snap", dir);
	cr_assert_eq(ckpt_latest(dir, true, path, sizeof path, &found), 0, "no snap directory yet");
	cr_assert_str_eq(path, "");
	cr_assert_eq(found, 0);

	mvcc_put(s, S("a"), S("1"), 0, NULL);
	mvcc_publish(s);
	mvcc_view_published(s, &v);
	cr_assert_eq(ckpt_save(dir, &v, 1, NULL, 0, false, &bytes, &h), 0); /* with the syncs */
	list_dir(snapdir, names, sizeof names);
	cr_assert_str_eq(names, "0000000000000002.ckpt");

	for (int i = 0; i < 20; i++)
		mvcc_put(s, S("b"), S("2"), 0, NULL);
	mvcc_publish(s);
	mvcc_view_published(s, &v);
	cr_assert_eq(ckpt_save(dir, &v, 2, NULL, 0, true, &bytes, &h), 0);
	list_dir(snapdir, names, sizeof names);
	cr_assert_str_eq(names, "0000000000000016.ckpt", "the older one is deleted: %s", names);

	/* leftovers: a temporary file of a save that crashed, other temporaries, an older
	 * checkpoint (a crash between the rename and the prune), and files that are not ours */
	snap_path(path, sizeof path, "0000000000000016.ckpt");
	size_t len;
	uint8_t *good = file_read(path, &len);
	static const char *extra[] = {"0000000000000017.ckpt.tmp", "x.tmp", "0000000000000003.ckpt", "notes.txt",
				      "00000000000000zz.ckpt", "00000000000000FF.ckpt", "000000000000001.ckpt"};
	for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
		snap_path(p2, sizeof p2, extra[i]);
		file_write(p2, good, len);
	}
	cr_assert_eq(ckpt_latest(dir, false, p2, sizeof p2, &found), 0);
	cr_assert_str_eq(p2, path, "the highest well-named revision wins");
	cr_assert_eq(found, len);
	list_dir(snapdir, names, sizeof names);
	cr_assert(strstr(names, "x.tmp") && strstr(names, "0000000000000017.ckpt.tmp"), "clean=false keeps them");
	cr_assert_eq(ckpt_latest(dir, true, p2, sizeof p2, &found), 0);
	cr_assert_str_eq(p2, path);
	list_dir(snapdir, names, sizeof names);
	cr_assert_str_eq(names,
			 "0000000000000003.ckpt,000000000000001.ckpt,0000000000000016.ckpt,00000000000000FF.ckpt,"
			 "00000000000000zz.ckpt,notes.txt",
			 "temporaries go, checkpoints and strangers stay: %s", names);

	/* a higher-named one is "the newest" as far as names go */
	snap_path(p2, sizeof p2, "00000000000000ff.ckpt");
	file_write(p2, good, len);
	cr_assert_eq(ckpt_latest(dir, true, path, sizeof path, &found), 0);
	cr_assert_str_eq(path, p2);
	/* the next save deletes every other checkpoint, and nothing else */
	mvcc_put(s, S("c"), S("3"), 0, NULL);
	mvcc_publish(s);
	mvcc_view_published(s, &v);
	cr_assert_eq(ckpt_save(dir, &v, 3, NULL, 0, true, &bytes, &h), 0);
	list_dir(snapdir, names, sizeof names);
	snprintf(want, sizeof want, "%016" PRIx64 ".ckpt", (uint64_t)h.rev);
	cr_assert_str_eq(names, "000000000000001.ckpt,0000000000000017.ckpt,00000000000000FF.ckpt,00000000000000zz.ckpt,"
			 "notes.txt", "%s", names);
	cr_assert(strstr(names, want), "%s", names);
	cr_assert(!strstr(names, "0000000000000016.ckpt") && !strstr(names, "0000000000000003.ckpt") &&
		  !strstr(names, "00000000000000ff.ckpt"), "%s", names);
	cr_assert(strstr(names, "notes.txt") && strstr(names, "00000000000000zz.ckpt"), "%s", names);
	free(good);
}

Test(ckpt, install)
{
	struct mvcc_view v;
	struct ckpt_header h;
	char src[300], dst[300], path[512], err[512], names[512], snapdir[400];
	uint64_t found;
	size_t len, ilen;

	build_small_history(s);
	cr_assert_eq(mvcc_compact(s, 4), 0);
	mvcc_publish(s);
	mvcc_view_published(s, &v);
	static const struct ckpt_lease leases[] = {{8, 80}};
	uint8_t *p = ckpt_bytes_of(&v, 77, leases, 1, &len, &h);
	snprintf(src, sizeof src, "%s/src.ckpt", dir);
	file_write(src, p, len);

	snprintf(dst, sizeof dst, "%s/restored", dir);
	cr_assert_eq(ckpt_install(dst, src, 42, err, sizeof err), -ENOENT, "the data directory must exist");
	cr_assert_eq(mkdir(dst, 0700), 0);
	cr_assert_eq(ckpt_install(dst, src, 42, err, sizeof err), 0, "%s", err);
	cr_assert_eq(ckpt_latest(dst, false, path, sizeof path, &found), 0);
	cr_assert_eq(found, len);
	uint8_t *inst = file_read(path, &ilen);
	cr_assert_eq(ilen, len);
	cr_assert(!memcmp(inst + CKPT_HDR, p + CKPT_HDR, len - CKPT_HDR), "the body is copied as it is");
	cr_assert_eq(get64le(inst + 32), 42);
	struct mvcc_store *t = mvcc_store_new(q);
	struct loader l;
	struct ckpt_sink sink = loader_sink(&l, t);
	cr_assert_eq(ckpt_load_file(path, &sink, err, sizeof err), 0, "%s", err);
	cr_assert_eq(l.h.log_seq, 42);
	cr_assert_eq(l.h.rev, h.rev);
	cr_assert_eq(l.h.compact_rev, 4);
	cr_assert_eq(l.nleases, 1);
	mvcc_publish(t);
	stores_equal(s, t, true);
	mvcc_store_free(t);
	free(inst);

	/* damaged sources are refused and leave nothing behind */
	char bad_dst[300];
	snprintf(bad_dst, sizeof bad_dst, "%s/bad", dir);
	cr_assert_eq(mkdir(bad_dst, 0700), 0);
	snprintf(snapdir, sizeof snapdir, "%s/snap", bad_dst);
	for (int kind = 0; kind < 5; kind++) {
		uint8_t *d = malloc(len + 8);
		size_t dlen = len;
		memcpy(d, p, len);
		if (kind == 0)
			d[CKPT_HDR + 10] ^= 0x40; /* the body */
		else if (kind == 1)
			d[20] ^= 1; /* the header */
		else if (kind == 2)
			dlen = len - 1;
		else if (kind == 3)
			memset(d + len, 0, 8), dlen = len + 8;
		else
			dlen = 10;
		file_write(src, d, dlen);
		err[0] = 0;
		cr_assert_eq(ckpt_install(bad_dst, src, 42, err, sizeof err), -EBADMSG, "kind %d", kind);
		/* (a file shorter than a header is refused by ckpt_load_file before the parser: its
		 * message names the file but no offset) */
		cr_assert(strstr(err, src) && strstr(err, kind == 4 ? "shorter than a checkpoint header" : "offset "),
			  "kind %d: %s", kind, err);
		list_dir(snapdir, names, sizeof names);
		cr_assert_str_eq(names, "", "kind %d left %s", kind, names);
		free(d);
	}
	snprintf(src, sizeof src, "%s/nothing.ckpt", dir);
	cr_assert_eq(ckpt_install(bad_dst, src, 42, err, sizeof err), -ENOENT);
	list_dir(snapdir, names, sizeof names);
	cr_assert_str_eq(names, "");
	free(p);
}

/* ckpt.h: "Installs an existing checkpoint file as data_dir's only one".
 * Disabled: fails today. ckpt_install does not delete the checkpoints already there, so a
 * newer one left in the directory is what start-up loads, not the installed one. Enable
 * once ckpt_install prunes (or the header says the directory must hold none). */
Test(ckpt, install_replaces_other_checkpoints)
{
	struct mvcc_view v;
	char src[300], path[512], err[512], names[512], snapdir[300];
	uint64_t bytes, found;
	size_t len;
	struct ckpt_header h, hs;

	mvcc_put(s, S("a"), S("1"), 0, NULL);
	mvcc_publish(s);
	mvcc_view_published(s, &v);
	uint8_t *p = ckpt_bytes_of(&v, 1, NULL, 0, &len, &hs); /* revision 2 */
	snprintf(src, sizeof src, "%s/src.ckpt", dir);
	file_write(src, p, len);
	for (int i = 0; i < 5; i++)
		mvcc_put(s, S("b"), S("2"), 0, NULL);
	mvcc_publish(s);
	mvcc_view_published(s, &v);
	cr_assert_eq(ckpt_save(dir, &v, 1, NULL, 0, true, &bytes, &h), 0); /* revision 7 */
	cr_assert_eq(ckpt_install(dir, src, 1, err, sizeof err), 0, "%s", err);
	snprintf(snapdir, sizeof snapdir, "%s/snap", dir);
	list_dir(snapdir, names, sizeof names);
	cr_expect_str_eq(names, "0000000000000002.ckpt", "after install: %s", names);
	cr_assert_eq(ckpt_latest(dir, false, path, sizeof path, &found), 0);
	cr_expect(strstr(path, "0000000000000002.ckpt"), "start-up would load %s", path);
	free(p);
}

/* ==== 6. start-up from a checkpoint and the log; point in time ==== */

struct leases {
	struct ckpt_lease v[256];
	size_t n;
};

static void leases_grant(struct leases *ls, int64_t id, int64_t ttl)
{
	for (size_t i = 0; i < ls->n; i++)
		if (ls->v[i].id == id) {
			ls->v[i].ttl = ttl;
			return;
		}
	cr_assert_lt(ls->n, 256);
	ls->v[ls->n++] = (struct ckpt_lease){id, ttl};
}

static void leases_revoke(struct leases *ls, int64_t id)
{
	for (size_t i = 0; i < ls->n; i++)
		if (ls->v[i].id == id) {
			ls->v[i] = ls->v[--ls->n];
			return;
		}
}

static int lease_cmp(const void *a, const void *b)
{
	const struct ckpt_lease *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static uint64_t leases_hash(const struct leases *ls)
{
	struct ckpt_lease v[256];
	memcpy(v, ls->v, ls->n * sizeof *v);
	qsort(v, ls->n, sizeof *v, lease_cmp);
	return XXH3_64bits(v, ls->n * sizeof *v);
}

static void hook_grant(void *arg, int64_t id, int64_t ttl) { leases_grant(arg, id, ttl); }
static void hook_revoke(void *arg, int64_t id) { leases_revoke(arg, id); }

#define REVS_MAX 4096

/* The writer: a store and the log, changed together the way core/seq.c does it; for every
 * revision it remembers what a range at it answers, the compacted revision and the leases
 * after the last change at it. */
struct model {
	struct mvcc_store *s;
	struct wal *w;
	struct wal_batch_enc e;
	uint8_t *buf;
	struct leases leases;
	int64_t next_lease;
	uint64_t range_at[REVS_MAX], leases_at[REVS_MAX];
	int64_t compact_at[REVS_MAX];
};

static struct wal_options log_opts(void)
{
	return (struct wal_options){.segment_bytes = 4096, .pending_bytes = 1 << 20, .no_fsync = true,
				    .ops = wal_file_ops_posix()};
}

static void model_note(struct model *m)
{
	struct mvcc_view v;
	int64_t r = mvcc_rev(m->s);
	cr_assert_lt(r, REVS_MAX);
	mvcc_view_working(m->s, &v);
	m->range_at[r] = range_hash(&v, r);
	m->leases_at[r] = leases_hash(&m->leases);
	m->compact_at[r] = mvcc_compact_rev(m->s);
}

static void model_batch_begin(struct model *m)
{
	wal_batch_begin(&m->e, m->buf, 1 << 20, mvcc_rev(m->s));
}

static void model_batch_end(struct model *m)
{
	int64_t last;
	ssize_t len = wal_batch_end(&m->e, &last);
	cr_assert_geq(len, 0);
	if (m->e.count) {
		struct iovec iov = {m->buf, (size_t)len};
		cr_assert_eq(wal_append(m->w, WAL_REC_BATCH, last, &iov, 1), 0);
		cr_assert_eq(wal_commit(m->w), 0);
	}
	mvcc_publish(m->s);
}

static const char *model_key(uint64_t i)
{
	static char k[16];
	snprintf(k, sizeof k, "key%02d", (int)(i % 12));
	return k;
}

/* one transaction of 1..4 puts and deletes */
static void model_txn(struct model *m, bool puts_only)
{
	static uint8_t val[3000];
	int64_t rev = mvcc_rev(m->s) + 1;
	int ops = 1 + (int)(rnd() % 4);

	mvcc_txn_begin(m->s);
	for (int i = 0; i < ops; i++) {
		const char *k = model_key(rnd());
		if (!puts_only && rnd() % 3 == 0) {
			if (mvcc_delete_range(m->s, S(k), NULL, 0, NULL, NULL) == 1)
				cr_assert_eq(wal_batch_delete(&m->e, rev, S(k)), 0);
			continue;
		}
		size_t vl = rnd() % 10 == 0 ? sizeof val : rnd() % 40;
		for (size_t j = 0; j < vl; j++)
			val[j] = (uint8_t)rnd();
		int64_t lease = m->leases.n && rnd() % 3 == 0 ? m->leases.v[rnd() % m->leases.n].id : 0;
		mvcc_put(m->s, S(k), val, vl, lease, NULL);
		cr_assert_eq(wal_batch_put(&m->e, rev, S(k), val, vl, lease), 0);
	}
	int64_t got = mvcc_txn_end(m->s);
	cr_assert(got == rev || got == rev - 1);
	model_note(m);
}

static void model_compact(struct model *m, int64_t c)
{
	cr_assert_eq(mvcc_compact(m->s, c), 0);
	cr_assert_eq(wal_batch_compact(&m->e, mvcc_rev(m->s), c), 0);
	model_note(m);
}

static void model_lease_op(struct model *m)
{
	if (m->leases.n && rnd() % 3 == 0) {
		int64_t id = m->leases.v[rnd() % m->leases.n].id;
		leases_revoke(&m->leases, id);
		cr_assert_eq(wal_batch_lease_revoke(&m->e, mvcc_rev(m->s), id), 0);
	} else {
		int64_t n = ++m->next_lease, id = n % 2 ? n : -n, ttl = 1 + (int64_t)(rnd() % 100);
		leases_grant(&m->leases, id, ttl);
		cr_assert_eq(wal_batch_lease_grant(&m->e, mvcc_rev(m->s), id, ttl), 0);
	}
	model_note(m);
}

/* n batches of 1..3 transactions and lease changes; a compaction to `compact_back`
 * revisions back in the middle batch */
static void model_run(struct model *m, int n, int64_t compact_back)
{
	for (int b = 0; b < n; b++) {
		model_batch_begin(m);
		int txns = 1 + (int)(rnd() % 3);
		for (int t = 0; t < txns; t++) {
			model_txn(m, false);
			if (rnd() % 5 == 0)
				model_lease_op(m);
		}
		if (b == n / 2 && compact_back)
			model_compact(m, mvcc_rev(m->s) - compact_back);
		model_batch_end(m);
	}
}

static void seg_names(const char *d, uint64_t *below, uint64_t *from, uint64_t seq)
{
	char logdir[300];
	DIR *dh;
	struct dirent *de;

	*below = *from = 0;
	snprintf(logdir, sizeof logdir, "%s/log", d);
	cr_assert((dh = opendir(logdir)));
	while ((de = readdir(dh))) {
		uint64_t n;
		if (strlen(de->d_name) == 20 && !strcmp(de->d_name + 16, ".seg") && sscanf(de->d_name, "%16" SCNx64, &n) == 1)
			(n < seq ? below : from)[0]++;
	}
	closedir(dh);
}

/* recover_at(rev) builds the state as of rev: every range from its compaction up to rev
 * as the original answered them then, and (from the checkpoint on) the leases */
static void check_at(struct model *m, int64_t rev, int64_t ckpt_rev, int64_t ckpt_compact)
{
	struct mvcc_store *t = mvcc_store_new(q);
	struct leases got = {0};
	struct recover_hooks hooks = {.lease_grant = hook_grant, .lease_revoke = hook_revoke, .arg = &got};
	char err[1024];
	int rc = recover_at(dir, rev, t, &hooks, err, sizeof err);

	cr_assert_eq(rc, 0, "recover_at(%" PRId64 "): %d %s", rev, rc, err);
	int64_t want = rev ? rev : mvcc_rev(m->s);
	cr_assert_eq(mvcc_rev(t), want);
	int64_t c = want <= ckpt_rev ? ckpt_compact : m->compact_at[want];
	cr_assert_eq(mvcc_compact_rev(t), c, "at %" PRId64 ": compacted %" PRId64 ", expected %" PRId64, want,
		     mvcc_compact_rev(t), c);
	struct mvcc_view v;
	mvcc_view_published(t, &v);
	cr_assert_eq(v.rev, want);
	for (int64_t r = want; r >= (c > 1 ? c : 1) && r > want - 40; r--)
		cr_assert_eq(range_hash(&v, r), m->range_at[r], "recover_at(%" PRId64 "): range at %" PRId64, want, r);
	if (want >= ckpt_rev)
		cr_assert_eq(leases_hash(&got), m->leases_at[want], "recover_at(%" PRId64 "): leases", want);
	if (!rev)
		stores_equal(m->s, t, true);
	mvcc_store_free(t);
}

static void expect_range_error(int64_t rev)
{
	struct mvcc_store *t = mvcc_store_new(q);
	char err[1024] = "";
	int rc = recover_at(dir, rev, t, NULL, err, sizeof err);
	cr_assert_eq(rc, -ERANGE, "recover_at(%" PRId64 "): %d %s", rev, rc, err);
	cr_assert(err[0], "recover_at(%" PRId64 ") says why", rev);
	mvcc_store_free(t);
}

/* The checkpoint thread writes from a view taken at the roll; a compaction the sequencer runs
 * meanwhile (to a revision the view has) is logged after the roll. The dump refuses (it may
 * hold half of that compaction), the retry succeeds, and start-up replays the log after it
 * to exactly the same store. */
Test(ckpt, compaction_during_checkpoint_replays)
{
	struct model *m = calloc(1, sizeof *m);
	struct wal_options o = log_opts();
	char err[1024];
	uint64_t bytes, ckpt_size;
	struct ckpt_header h;
	struct mvcc_view v;

	m->s = s;
	m->buf = malloc(1 << 20);
	cr_assert_eq(wal_open(dir, &o, NULL, NULL, &m->w, err, sizeof err), 0, "%s", err);
	model_note(m);
	model_run(m, 40, 0);
	int64_t seq = wal_roll(m->w);
	int slot = qsbr_reader_register(q); /* the worker's slot: online before the view is taken */
	mvcc_view_published(s, &v);         /* what the worker gets */
	model_batch_begin(m);
	model_compact(m, v.rev - 5); /* the sequencer goes on: a compaction below the view */
	model_batch_end(m);
	cr_assert_eq(ckpt_save(dir, &v, (uint64_t)seq, m->leases.v, m->leases.n, true, &bytes, &h),
		     -MVCC_ECOMPACTED, "a dump the compaction cut into is refused");
	/* the retry, as the sequencer makes it: roll again, a fresh view */
	seq = wal_roll(m->w);
	qsbr_quiescent(q, slot);
	mvcc_view_published(s, &v);
	cr_assert_eq(ckpt_save(dir, &v, (uint64_t)seq, m->leases.v, m->leases.n, true, &bytes, &h), 0);
	cr_assert_eq(h.compact_rev, mvcc_compact_rev(s));
	qsbr_offline(q, slot);
	model_run(m, 20, 0);
	cr_assert_eq(wal_close(m->w), 0);

	struct mvcc_store *t = mvcc_store_new(q);
	struct wal *w2;
	cr_assert_eq(recover_open(dir, &o, t, NULL, &w2, &ckpt_size, err, sizeof err), 0, "%s", err);
	stores_equal(s, t, true);
	cr_assert_eq(wal_close(w2), 0);
	mvcc_store_free(t);
	free(m->buf);
	free(m);
}

Test(ckpt, recover_from_checkpoint_and_log)
{
	struct model *m = calloc(1, sizeof *m);
	struct wal_options o = log_opts();
	char err[1024], tmp[512];
	uint64_t below, from, ckpt_size;

	m->s = s;
	m->buf = malloc(1 << 20);
	cr_assert_eq(wal_open(dir, &o, NULL, NULL, &m->w, err, sizeof err), 0, "%s", err);
	model_note(m);
	model_run(m, 80, 15); /* compacted to C1 in the middle */
	int64_t c1 = mvcc_compact_rev(s);
	cr_assert_gt(c1, 20);

	/* the checkpoint: everything so far is durable and published; the log rolls and the
	 * checkpoint says "replay from the new segment" */
	int64_t seq = wal_roll(m->w);
	cr_assert_gt(seq, 1);
	struct mvcc_view v;
	struct ckpt_header h;
	uint64_t bytes;
	mvcc_view_published(s, &v);
	cr_assert_eq(ckpt_save(dir, &v, (uint64_t)seq, m->leases.v, m->leases.n, true, &bytes, &h), 0);
	int64_t k = h.rev;
	cr_assert_eq(k, mvcc_rev(s));
	cr_assert_eq(h.compact_rev, c1);

	/* more after it: the first change a put, then anything, another compaction */
	model_batch_begin(m);
	model_txn(m, true);
	model_batch_end(m);
	model_run(m, 80, 12);
	int64_t c2 = mvcc_compact_rev(s), last = mvcc_rev(s);
	cr_assert_gt(c2, k);
	cr_assert_eq(wal_close(m->w), 0);
	m->w = NULL;

	/* a crash came before the covered segments were removed, and left a temporary file */
	seg_names(dir, &below, &from, (uint64_t)seq);
	cr_assert_gt(below, 0, "segments covered by the checkpoint are still there");
	cr_assert_gt(from, 0);
	snprintf(tmp, sizeof tmp, "%s/snap/%016" PRIx64 ".ckpt.tmp", dir, (uint64_t)last);
	file_write(tmp, "partial", 7);

	/* point in time, reading only */
	check_at(m, 0, k, c1);
	for (int64_t r = c1; r <= last; r++)
		check_at(m, r, k, c1);
	expect_range_error(c1 - 1);
	expect_range_error(1);
	expect_range_error(last + 1);
	expect_range_error(last + 1000);
	expect_range_error(-1);
	seg_names(dir, &below, &from, (uint64_t)seq);
	cr_assert_gt(below, 0, "recover_at changes nothing");
	cr_assert(exists(tmp));

	/* start-up */
	struct mvcc_store *t = mvcc_store_new(q);
	struct leases got = {0};
	struct recover_hooks hooks = {.lease_grant = hook_grant, .lease_revoke = hook_revoke, .arg = &got};
	struct wal *w2;
	cr_assert_eq(recover_open(dir, &o, t, &hooks, &w2, &ckpt_size, err, sizeof err), 0, "%s", err);
	cr_assert_eq(ckpt_size, bytes);
	stores_equal(s, t, true);
	cr_assert_eq(leases_hash(&got), leases_hash(&m->leases));
	cr_assert_eq(wal_last_rev(w2), last);
	seg_names(dir, &below, &from, (uint64_t)seq);
	cr_assert_eq(below, 0, "covered segments are deleted at open");
	cr_assert_gt(from, 0);
	cr_assert(!exists(tmp), "leftover temporaries are deleted at open");

	/* and it goes on: one more batch through the reopened log, then again from the top */
	m->w = w2;
	m->s = t;
	model_batch_begin(m);
	model_txn(m, true);
	model_batch_end(m);
	cr_assert_eq(wal_close(w2), 0);
	struct mvcc_store *t2 = mvcc_store_new(q);
	struct wal *w3;
	cr_assert_eq(recover_open(dir, &o, t2, NULL, &w3, NULL, err, sizeof err), 0, "%s", err);
	stores_equal(t, t2, true);
	cr_assert_eq(mvcc_rev(t2), last + 1);
	cr_assert_eq(wal_close(w3), 0);
	mvcc_store_free(t2);
	mvcc_store_free(t);

	/* point in time after the covered segments are gone: the same answers */
	m->s = s;
	for (int64_t r = k; r <= last; r += 7)
		check_at(m, r, k, c1);
	expect_range_error(c1 - 1);
	free(m->buf);
	free(m);
}

Test(ckpt, recover_refuses_a_damaged_checkpoint)
{
	struct model *m = calloc(1, sizeof *m);
	struct wal_options o = log_opts();
	char err[1024], path[512];
	uint64_t found;

	m->s = s;
	m->buf = malloc(1 << 20);
	cr_assert_eq(wal_open(dir, &o, NULL, NULL, &m->w, err, sizeof err), 0, "%s", err);
	model_run(m, 10, 0);
	int64_t seq = wal_roll(m->w);
	struct mvcc_view v;
	struct ckpt_header h;
	uint64_t bytes;
	mvcc_view_published(s, &v);
	cr_assert_eq(ckpt_save(dir, &v, (uint64_t)seq, NULL, 0, true, &bytes, &h), 0);
	cr_assert_eq(wal_remove_segments_below(m->w, (uint64_t)seq), seq - 1);
	model_run(m, 5, 0);
	cr_assert_eq(wal_close(m->w), 0);

	cr_assert_eq(ckpt_latest(dir, false, path, sizeof path, &found), 0);
	size_t len;
	uint8_t *p = file_read(path, &len);
	p[len / 2] ^= 4;
	file_write(path, p, len);
	struct mvcc_store *t = mvcc_store_new(q);
	struct wal *w2 = NULL;
	err[0] = 0;
	cr_assert_eq(recover_open(dir, &o, t, NULL, &w2, NULL, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, path) && strstr(err, "offset "), "%s", err);
	cr_assert_null(w2);
	mvcc_store_free(t);
	t = mvcc_store_new(q);
	cr_assert_eq(recover_at(dir, 0, t, NULL, err, sizeof err), -EBADMSG);
	mvcc_store_free(t);
	free(p);
	free(m->buf);
	free(m);
}
