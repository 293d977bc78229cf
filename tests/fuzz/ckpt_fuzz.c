/* Fuzz target: the checkpoint parser (storage/ckpt.c) and the store rebuilt from what it
 * accepts (mvcc_load_begin / mvcc_load_key), the path every start-up and every
 * `uetcd-restore` of a snapshot from elsewhere takes.
 *
 * input[0] is a mode byte:
 *   bit 0 clear  raw: the rest is a whole checkpoint file (header and all). Mutations
 *                mostly die at the checksums; that path must refuse, never crash.
 *   bit 0 set    forged: the rest is a body, wrapped in a header with a correct length and
 *                correct XXH3-64 checksums, so mutations reach the entry parser and the
 *                store's own checks:
 *     bit 1      revisions: 16 bytes taken as rev and compact_rev (i64 LE), any value;
 *                clear: 3 bytes, rev = 1 + u16 and compact_rev = u8 - 1 (mostly valid)
 *     bit 2      an end entry with the right counts is appended (the counts come from a
 *                walk of the body that only follows lengths), so bodies that are otherwise
 *                well formed load completely.
 * Every parsed header and entry is checked against what the parser promises (ranges,
 * order) and loaded into a fresh store. When the whole checkpoint loads, the store is
 * checked (live key count against a range, history) and written back with ckpt_write_fd:
 * the body it writes must be byte for byte the body that was loaded; then it must go on
 * as a store (a compaction, a put, deleting everything, a compaction that empties it).
 * Everything is freed every run. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/log.h"
#include "core/qsbr.h"
#include "storage/ckpt.h"
#include "storage/mvcc.h"

#define CHECK(c)                                                                                                       \
	do {                                                                                                           \
		if (!(c)) {                                                                                            \
			fprintf(stderr, "ckpt_fuzz: check failed: %s (line %d)\n", #c, __LINE__);                     \
			__builtin_trap();                                                                              \
		}                                                                                                      \
	} while (0)

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

/* ---- the sink: load into a fresh store, checking the parser's promises ---- */

struct load {
	struct mvcc_store *s;
	struct ckpt_header h;
	int headers;
	uint64_t leases, keys, versions, live;
	struct ckpt_lease lease[64];
	const uint8_t *prev_key;
	size_t prev_len;
	int load_rc;
	const uint8_t *auth; /* the auth entry's bytes (opaque here), written back as they came */
	size_t auth_len;
	int auths;
	uint32_t alarms;
};

static int on_alarms(void *arg, uint32_t alarms)
{
	struct load *l = arg;

	CHECK(alarms && !l->alarms && l->keys == 0);
	l->alarms = alarms;
	return 0;
}

static int on_auth(void *arg, const uint8_t *state, size_t len)
{
	struct load *l = arg;

	CHECK(l->auths++ == 0 && l->keys == 0);
	l->auth = state;
	l->auth_len = len;
	return 0;
}

static int on_header(void *arg, const struct ckpt_header *h)
{
	struct load *l = arg;

	CHECK(l->headers++ == 0);
	CHECK(h->rev >= 1 && h->compact_rev >= -1 && h->compact_rev <= h->rev);
	l->h = *h;
	l->load_rc = mvcc_load_begin(l->s, h->rev, h->compact_rev);
	CHECK(l->load_rc == 0); /* the header's checks are the store's */
	return 0;
}

static int on_lease(void *arg, int64_t id, int64_t ttl)
{
	struct load *l = arg;

	CHECK(l->headers == 1 && l->keys == 0);
	CHECK(id != 0 && ttl >= 1);
	if (l->leases < sizeof l->lease / sizeof l->lease[0])
		l->lease[l->leases] = (struct ckpt_lease){id, ttl};
	l->leases++;
	return 0;
}

static int on_key(void *arg, const uint8_t *key, size_t key_len, const struct mvcc_stored *vers, size_t n)
{
	struct load *l = arg;
	volatile uint8_t x = 0;

	CHECK(l->headers == 1 && n >= 1);
	if (l->prev_key) { /* strictly ascending, shorter first on a common prefix */
		size_t common = key_len < l->prev_len ? key_len : l->prev_len;
		int c = memcmp(l->prev_key, key, common);
		CHECK(c < 0 || (c == 0 && l->prev_len < key_len));
	}
	l->prev_key = key;
	l->prev_len = key_len;
	for (size_t i = 0; i < key_len; i++) /* every byte handed out is inside the input */
		x ^= key[i];
	for (size_t i = 0; i < n; i++) {
		CHECK(vers[i].mod_revision >= 1 && vers[i].mod_revision <= l->h.rev);
		for (size_t j = 0; j < vers[i].value_len; j++)
			x ^= vers[i].value[j];
	}
	(void)x;
	l->keys++;
	l->versions += n;
	l->live += !vers[0].tomb;
	/* the store's rules are stricter than the file's: stop at the first key it refuses */
	return (l->load_rc = mvcc_load_key(l->s, key, key_len, vers, n)) ? 1 : 0;
}

/* ---- checks on a store that loaded completely ---- */

static int count_kv(void *arg, const struct mvcc_kv *kv)
{
	uint64_t *n = arg;
	(*n)++;
	return 0;
}

static int count_ev(void *arg, const struct mvcc_event *ev)
{
	uint64_t *n = arg;
	(*n)++;
	return 0;
}

/* Writes the store back and compares the body with the one that was loaded. */
static void check_rewrite(struct load *l, const uint8_t *file, size_t len)
{
	struct mvcc_view v;
	struct ckpt_header h;
	uint64_t bytes = 0;
	int fd = memfd_create("ckpt_fuzz", MFD_CLOEXEC);
	size_t nl = (size_t)l->leases;

	if (fd < 0 || nl > sizeof l->lease / sizeof l->lease[0])
		goto out;
	mvcc_view_published(l->s, &v);
	struct ckpt_extra x = {l->lease, nl, l->auth, l->auth_len, l->alarms};
	CHECK(ckpt_write_fd_x(fd, &v, l->h.log_seq, &x, &bytes, &h) == 0);
	CHECK(bytes == len);
	CHECK(h.rev == l->h.rev && h.log_seq == l->h.log_seq);
	CHECK(h.compact_rev == l->h.compact_rev);
	uint8_t *m = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED);
	CHECK(memcmp(m + CKPT_HDR, file + CKPT_HDR, len - CKPT_HDR) == 0);
	CHECK(ckpt_parse(m, bytes, NULL, NULL, 0) == 0);
	munmap(m, bytes);
out:
	if (fd >= 0)
		close(fd);
}

static void check_store(struct load *l, const uint8_t *file, size_t len)
{
	struct mvcc_view v;
	uint64_t n = 0;

	mvcc_publish(l->s);
	CHECK(mvcc_rev(l->s) == l->h.rev && mvcc_compact_rev(l->s) == l->h.compact_rev);
	CHECK(mvcc_keys_live(l->s) == l->live && mvcc_versions_total(l->s) == l->versions);
	mvcc_view_published(l->s, &v);
	CHECK(mvcc_range(&v, (const uint8_t *)"", 0, (const uint8_t *)"", 1, 0, false, count_kv, &n) == 0);
	CHECK(n == l->live);
	n = 0;
	CHECK(mvcc_range(&v, (const uint8_t *)"", 0, (const uint8_t *)"", 1, 0, true, count_kv, &n) == 0);
	CHECK(n == l->live);
	if (l->h.compact_rev >= 1) {
		n = 0;
		CHECK(mvcc_range(&v, (const uint8_t *)"", 0, (const uint8_t *)"", 1, l->h.compact_rev, false, count_kv,
				 &n) == 0);
	}
	n = 0;
	CHECK(mvcc_history(&v, (const uint8_t *)"", 0, (const uint8_t *)"", 1, l->h.compact_rev + 1, count_ev, &n) ==
	      0);
	check_rewrite(l, file, len);
	/* the store goes on from there: a compaction to its revision, then a write */
	if (l->h.rev > l->h.compact_rev)
		CHECK(mvcc_compact(l->s, l->h.rev) == 0);
	struct mvcc_kv kv;
	mvcc_view_working(l->s, &v);
	/* (a header may claim the last revision there is, a version the last version) */
	if (l->h.rev < INT64_MAX && !(mvcc_get(&v, (const uint8_t *)"k", 1, 0, &kv) == 1 && kv.version == INT64_MAX)) {
		mvcc_put(l->s, (const uint8_t *)"k", 1, (const uint8_t *)"v", 1, 0, NULL);
		CHECK(mvcc_rev(l->s) == l->h.rev + 1);
		mvcc_publish(l->s);
		/* then every key goes, and a compaction past that removes them all */
		if (mvcc_rev(l->s) < INT64_MAX) {
			mvcc_delete_range(l->s, (const uint8_t *)"", 0, (const uint8_t *)"", 1, NULL, NULL);
			CHECK(mvcc_keys_live(l->s) == 0);
			CHECK(mvcc_compact(l->s, mvcc_rev(l->s)) == 0);
			CHECK(mvcc_versions_total(l->s) == 0 && mvcc_bytes_in_use(l->s) == 0);
			mvcc_publish(l->s);
		}
	}
}

/* ---- building a forged checkpoint ---- */

/* Follows the body's entries by their lengths alone and appends an end entry with their
 * counts (garbage stops the walk: the counts are then those of the entries before it). */
static size_t append_end(uint8_t *b, size_t n)
{
	uint64_t keys = 0, versions = 0, leases = 0;
	size_t off = 0;

	while (off < n) {
		if (b[off] == 0x01 && n - off >= 17) {
			leases++;
			off += 17;
		} else if (b[off] == 0x02 && n - off >= 9) {
			uint64_t kl = get32(b + off + 1), cnt = get32(b + off + 5), at = off + 9 + kl;
			if (at > n)
				break;
			for (uint64_t i = 0; i < cnt && at <= n; i++) {
				if (n - at < 41) {
					at = n + 1;
					break;
				}
				at += 41 + (uint64_t)get32(b + at + 37);
			}
			if (at > n)
				break;
			keys++;
			versions += cnt;
			off = at;
		} else {
			break;
		}
	}
	b[n] = 0x7f;
	put64(b + n + 1, keys);
	put64(b + n + 9, versions);
	put64(b + n + 17, leases);
	return n + 25;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_FATAL);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	uint8_t *file = NULL;
	size_t len;

	if (size < 1 || size > (4 << 20))
		return 0;
	uint8_t mode = data[0];
	if (!(mode & 1)) {
		len = size - 1;
		file = malloc(len ? len : 1);
		memcpy(file, data + 1, len); /* its own allocation: ASan sees reads past the end */
	} else {
		int64_t rev, compact;
		const uint8_t *body;
		size_t blen;
		if (mode & 2) {
			if (size < 17)
				return 0;
			rev = (int64_t)get64(data + 1);
			compact = (int64_t)get64(data + 9);
			body = data + 17;
			blen = size - 17;
		} else {
			if (size < 4)
				return 0;
			rev = 1 + (int64_t)(data[1] | data[2] << 8);
			compact = (int64_t)data[3] - 1;
			body = data + 4;
			blen = size - 4;
		}
		file = malloc(CKPT_HDR + blen + 25);
		memcpy(file + CKPT_HDR, body, blen);
		if (mode & 4)
			blen = append_end(file + CKPT_HDR, blen);
		len = CKPT_HDR + blen;
		memcpy(file, "uetcdckp", 8);
		put32(file + 8, 1);
		put32(file + 12, CKPT_HDR);
		put64(file + 16, (uint64_t)rev);
		put64(file + 24, (uint64_t)compact);
		put64(file + 32, 7);
		put64(file + 40, blen);
		put64(file + 48, XXH3_64bits(file + CKPT_HDR, blen));
		put64(file + 56, XXH3_64bits(file, 56));
	}

	/* the header alone, as a snapshot's envelope is read */
	uint64_t whole = ckpt_length(file, len, err, sizeof err);
	if (whole)
		CHECK(whole >= CKPT_HDR);

	struct qsbr *q = qsbr_new(1);
	struct load l = {.s = mvcc_store_new(q)};
	struct ckpt_sink sink = {.header = on_header, .lease = on_lease, .key = on_key, .arg = &l, .auth = on_auth,
				 .alarms = on_alarms};
	err[0] = 0;
	int rc = ckpt_parse(file, len, &sink, err, sizeof err);
	if (rc == 0) {
		CHECK(whole == len && l.headers == 1 && l.load_rc == 0);
		check_store(&l, file, len);
	} else if (rc == -EBADMSG) {
		CHECK(!strncmp(err, "offset ", 7)); /* every refusal names the offset */
	} else {
		CHECK(rc == 1 && l.load_rc == -EINVAL); /* the store refused a key */
	}
	/* the parser alone agrees (after a key the store refused, it may still find damage) */
	int rc2 = ckpt_parse(file, len, NULL, NULL, 0);
	CHECK(rc == -EBADMSG ? rc2 == -EBADMSG : rc == 0 ? rc2 == 0 : (rc2 == 0 || rc2 == -EBADMSG));
	mvcc_store_free(l.s);
	qsbr_free(q);
	free(file);
	return 0;
}
