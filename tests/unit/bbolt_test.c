/* bbolt reader tests: a snapshot saved by etcd 3.5.16 (tests/fixtures, see its README) reads
 * back as etcd wrote it (buckets, meta, leases, roles, users, every key record in revision
 * order, the tombstone); hand-made files reach each structural check (cycles, depth, element
 * offsets, key order, page ids, meta checksums and the newer meta winning, inline buckets);
 * every cut and every single-byte change of the fixture is refused cleanly or read, never
 * read out of bounds (ASan in `make asan`).
 *
 * A snapshot database (core/snapstream.c) of a store holds every version of the store's
 * view, its compaction, leases and auth, in revision order.
 *
 * Hand-made files use 4096-byte pages and compute the meta checksum (FNV-1a 64) here. */
#include "storage/bbolt.h"
#include "core/auth.h"
#include "core/qsbr.h"
#include "core/snapstream.h"
#include "storage/ckpt.h"
#include "storage/mvcc.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIXTURE "tests/fixtures/etcd-3.5.16-snapshot.db"
#define PS 4096u

static uint8_t *fixture(size_t *len)
{
	FILE *f = fopen(FIXTURE, "rb");
	cr_assert(f, "cannot open %s (run from the repository root)", FIXTURE);
	uint8_t *p = malloc(1 << 20);
	*len = fread(p, 1, 1 << 20, f);
	fclose(f);
	cr_assert(*len > 32 && *len % 512 == 32);
	*len -= 32; /* the SHA-256 trailer: uetcd-restore checks it */
	return p;
}

/* ---- what the sink saw ---- */

struct seen {
	char log[8192];
	size_t n;
	int kvs, leases, users, roles;
	int64_t last_rev, last_sub;
	bool order_ok;
	struct bbolt_etcd_meta meta;
};

static void add(struct seen *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct seen *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(s->log + s->n, sizeof s->log - s->n, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof s->log - s->n)
		s->n += (size_t)n;
}

static int s_meta(void *a, const struct bbolt_etcd_meta *m)
{
	((struct seen *)a)->meta = *m;
	return 0;
}
static int s_lease(void *a, int64_t id, int64_t ttl)
{
	struct seen *s = a;
	s->leases++;
	add(s, "lease ttl=%lld;", (long long)ttl);
	return 0;
}
static int s_role(void *a, const uint8_t *n, size_t l)
{
	struct seen *s = a;
	s->roles++;
	add(s, "role %.*s;", (int)l, (const char *)n);
	return 0;
}
static int s_perm(void *a, const uint8_t *r, size_t rl, int type, const uint8_t *k, size_t kl, const uint8_t *e,
		  size_t el)
{
	add(a, "perm %.*s %d %.*s %.*s;", (int)rl, (const char *)r, type, (int)kl, (const char *)k, (int)el,
	    (const char *)e);
	return 0;
}
static int s_user(void *a, const uint8_t *n, size_t l, const uint8_t *h, size_t hl, bool nopw)
{
	struct seen *s = a;
	s->users++;
	add(s, "user %.*s %s%s;", (int)l, (const char *)n, hl > 4 && !memcmp(h, "$2a$", 4) ? "bcrypt" : "?",
	    nopw ? " nopw" : "");
	return 0;
}
static int s_user_role(void *a, const uint8_t *u, size_t ul, const uint8_t *r, size_t rl)
{
	add(a, "grant %.*s %.*s;", (int)ul, (const char *)u, (int)rl, (const char *)r);
	return 0;
}
static int s_kv(void *a, const struct bbolt_etcd_kv *kv)
{
	struct seen *s = a;
	if (kv->mod_revision < s->last_rev || (kv->mod_revision == s->last_rev && kv->sub <= s->last_sub))
		s->order_ok = false;
	s->last_rev = kv->mod_revision;
	s->last_sub = kv->sub;
	s->kvs++;
	if (kv->tomb)
		add(s, "%lld %.*s tomb;", (long long)kv->mod_revision, (int)kv->key_len, (const char *)kv->key);
	else
		add(s, "%lld %.*s=%.*s c%lld v%lld%s;", (long long)kv->mod_revision, (int)kv->key_len,
		    (const char *)kv->key, (int)kv->value_len, (const char *)kv->value, (long long)kv->create_revision,
		    (long long)kv->version, kv->lease ? " L" : "");
	return 0;
}

static int read_db(const uint8_t *p, size_t len, struct seen *s, char *err, size_t errlen)
{
	struct bbolt_etcd_sink sink = {s_meta, s_lease, s_role, s_perm, s_user, s_user_role, s_kv, s};
	memset(s, 0, sizeof *s);
	s->order_ok = true;
	return bbolt_etcd_read(p, len, &sink, err, errlen);
}

Test(bbolt, reads_etcd_snapshot)
{
	size_t len;
	uint8_t *p = fixture(&len);
	struct seen s;
	char err[256] = "";

	cr_assert(bbolt_is_db(p, len));
	cr_assert_eq(read_db(p, len, &s, err, sizeof err), 0, "%s", err);
	cr_assert_eq(s.meta.finished_compact_rev, 3);
	cr_assert_eq(s.meta.scheduled_compact_rev, 3);
	cr_assert(s.meta.consistent_index > 0);
	cr_assert(!s.meta.auth_enabled);
	cr_assert(s.order_ok);
	/* compaction at 3 dropped a@2 and kept a@3 */
	cr_assert_str_eq(s.log, "lease ttl=300;"
				"role r1;perm r1 0 /foo /fop;"
				"user root bcrypt;user u1 bcrypt;grant u1 r1;"
				"3 a=2 c2 v2;4 b=x c4 v1;5 b tomb;6 c=y c6 v1;7 lk=v c7 v1 L;8 a=3 c2 v3;9 d=z c9 v1;");
	free(p);
}

static int list_fn(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, bool bucket)
{
	add(arg, "%.*s%s,", (int)kl, (const char *)k, bucket ? "" : "(key)");
	return 0;
}

Test(bbolt, walks_root_bucket_and_reports_missing_ones)
{
	size_t len;
	uint8_t *p = fixture(&len);
	struct bbolt_db *db;
	struct seen s = {0};
	char err[256] = "";

	cr_assert_eq(bbolt_open(p, len, &db, err, sizeof err), 0, "%s", err);
	cr_assert(bbolt_txid(db) > 1);
	cr_assert_eq(bbolt_walk(db, NULL, list_fn, &s, err, sizeof err), 0, "%s", err);
	cr_assert(strstr(s.log, "key,") && strstr(s.log, "meta,") && strstr(s.log, "members,") &&
		      strstr(s.log, "authUsers,"),
		  "%s", s.log);
	cr_assert_eq(bbolt_walk(db, "nosuchbucket", list_fn, &s, err, sizeof err), -ENOENT);
	bbolt_close(db);
	free(p);
}

Test(bbolt, every_cut_and_byte_change_is_refused_or_read)
{
	size_t len;
	uint8_t *p = fixture(&len);
	struct seen s;
	char err[256];
	int refused = 0;

	for (size_t cut = 0; cut < len; cut += 97) {
		uint8_t *c = malloc(cut ? cut : 1); /* a tight buffer: ASan sees any overread */
		memcpy(c, p, cut);
		int rc = read_db(c, cut, &s, err, sizeof err);
		cr_assert(rc == -EBADMSG, "cut at %zu: %d", cut, rc);
		free(c);
	}
	for (size_t i = 0; i < len; i++) {
		uint8_t old = p[i];
		p[i] ^= (uint8_t)(1u << (i % 8));
		err[0] = 0;
		int rc = read_db(p, len, &s, err, sizeof err);
		cr_assert(rc == 0 || rc == -EBADMSG, "byte %zu: %d", i, rc);
		if (rc) {
			cr_assert(err[0], "byte %zu refused without a reason", i);
			refused++;
		}
		p[i] = old;
	}
	cr_assert(refused > 100); /* the headers, the meta pages, element offsets... */
	free(p);
}

/* ---- hand-made files ---- */

static uint64_t fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static void mk_meta(uint8_t *f, uint64_t page, uint64_t root, uint64_t npages, uint64_t txid)
{
	uint8_t *pg = f + page * PS, *m = pg + 16;
	put64(pg, page);
	put16(pg + 8, 0x04);
	put32(m, 0xED0CDAED);
	put32(m + 4, 2);
	put32(m + 8, PS);
	put64(m + 16, root);
	put64(m + 32, 0);
	put64(m + 40, npages);
	put64(m + 48, txid);
	put64(m + 56, fnv(m, 56));
}

static uint8_t *mk_db(uint64_t npages)
{
	uint8_t *f = calloc(npages, PS);
	mk_meta(f, 0, 2, npages, 1);
	mk_meta(f, 1, 2, npages, 0);
	return f;
}

static void mk_page(uint8_t *pg, uint64_t id, uint16_t flags, uint16_t count)
{
	put64(pg, id);
	put16(pg + 8, flags);
	put16(pg + 10, count);
}

static void mk_branch(uint8_t *f, uint64_t id, uint64_t child)
{
	uint8_t *pg = f + id * PS;
	mk_page(pg, id, 0x01, 1);
	put32(pg + 16, 16); /* the key right after the element */
	put32(pg + 20, 1);
	put64(pg + 24, child);
	pg[32] = 'k';
}

struct el {
	const void *k;
	size_t kl;
	const void *v;
	size_t vl;
	uint32_t flags;
};

/* Leaf elements, their keys and values packed after the elements. Bytes used. */
static size_t mk_leaf(uint8_t *pg, uint64_t id, size_t n, const struct el *els)
{
	size_t data = 16 + n * 16;
	mk_page(pg, id, 0x02, (uint16_t)n);
	for (size_t i = 0; i < n; i++) {
		uint8_t *e = pg + 16 + i * 16;
		put32(e, els[i].flags);
		put32(e + 4, (uint32_t)(data - (size_t)(e - pg)));
		put32(e + 8, (uint32_t)els[i].kl);
		put32(e + 12, (uint32_t)els[i].vl);
		memcpy(pg + data, els[i].k, els[i].kl);
		memcpy(pg + data + els[i].kl, els[i].v, els[i].vl);
		data += els[i].kl + els[i].vl;
	}
	return data;
}

static int walk_root(uint8_t *f, size_t len, char *err, size_t errlen)
{
	struct bbolt_db *db;
	struct seen s = {0};
	int rc = bbolt_open(f, len, &db, err, errlen);
	if (rc)
		return rc;
	rc = bbolt_walk(db, NULL, list_fn, &s, err, errlen);
	bbolt_close(db);
	return rc;
}

Test(bbolt, refuses_cycles_depth_and_bad_offsets)
{
	char err[256];
	uint8_t *f = mk_db(80);

	mk_branch(f, 2, 2);
	cr_assert_eq(walk_root(f, 80 * PS, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "reached twice"), "%s", err);

	for (uint64_t i = 2; i < 79; i++) /* a chain of one-child branches, 77 deep */
		mk_branch(f, i, i + 1);
	cr_assert_eq(walk_root(f, 80 * PS, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "deeper than"), "%s", err);

	mk_branch(f, 2, 80);
	cr_assert_eq(walk_root(f, 80 * PS, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "out of range"), "%s", err);

	mk_branch(f, 2, 3);
	mk_branch(f, 3, 4);
	put64(f + 3 * PS, 7); /* page 3 claims another id */
	cr_assert_eq(walk_root(f, 80 * PS, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "says it is page 7"), "%s", err);

	struct el els[] = {{"b", 1, "1", 1, 0}, {"a", 1, "2", 1, 0}};
	memset(f + 2 * PS, 0, PS);
	mk_leaf(f + 2 * PS, 2, 2, els);
	cr_assert_eq(walk_root(f, 80 * PS, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "out of order"), "%s", err);

	els[1].k = "c";
	mk_leaf(f + 2 * PS, 2, 2, els);
	cr_assert_eq(walk_root(f, 80 * PS, err, sizeof err), 0, "%s", err);
	put32(f + 2 * PS + 16 + 4, PS); /* element 0's key past the page */
	cr_assert_eq(walk_root(f, 80 * PS, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "outside the page"), "%s", err);

	put16(f + 2 * PS + 10, 300); /* more elements than a page holds */
	cr_assert_eq(walk_root(f, 80 * PS, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "do not fit"), "%s", err);

	put32(f + 2 * PS + 12, 100); /* overflow past the pages in use */
	cr_assert_eq(walk_root(f, 80 * PS, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "overflow"), "%s", err);
	free(f);
}

Test(bbolt, meta_pages_checked_and_newer_wins)
{
	char err[256];
	uint8_t *f = mk_db(4);
	struct bbolt_db *db;

	cr_assert_eq(bbolt_open(f, 4 * PS, &db, err, sizeof err), 0, "%s", err);
	cr_assert_eq(bbolt_txid(db), 1);
	bbolt_close(db);
	mk_meta(f, 1, 3, 4, 5);
	cr_assert_eq(bbolt_open(f, 4 * PS, &db, err, sizeof err), 0, "%s", err);
	cr_assert_eq(bbolt_txid(db), 5);
	bbolt_close(db);
	f[1 * PS + 16 + 20] ^= 1; /* meta 1's root: its checksum no longer holds, meta 0 serves */
	cr_assert_eq(bbolt_open(f, 4 * PS, &db, err, sizeof err), 0, "%s", err);
	cr_assert_eq(bbolt_txid(db), 1);
	bbolt_close(db);
	f[16 + 20] ^= 1;
	cr_assert_eq(bbolt_open(f, 4 * PS, &db, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "checksum mismatch"), "%s", err);
	mk_meta(f, 0, 2, 5, 1); /* more pages in use than the file has */
	cr_assert_eq(bbolt_open(f, 4 * PS, &db, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "pages in use"), "%s", err);
	mk_meta(f, 0, 9, 4, 1);
	cr_assert_eq(bbolt_open(f, 4 * PS, &db, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "root page"), "%s", err);
	free(f);
}

/* An inline bucket: header {root 0, sequence} and a leaf page inside the value. */
static size_t mk_inline(uint8_t *out, const struct el *el)
{
	memset(out, 0, 16);
	return 16 + mk_leaf(out + 16, 0, 1, el);
}

Test(bbolt, inline_buckets_and_etcd_records)
{
	char err[256] = "";
	uint8_t *f = mk_db(3), kb[512], mb[256];
	struct seen s;
	/* mvccpb.KeyValue{key "x", create 7, mod 7, version 1, value "y"} at revision 7_0 */
	const uint8_t kv[] = {0x0a, 1, 'x', 0x10, 7, 0x18, 7, 0x20, 1, 0x2a, 1, 'y'};
	const uint8_t rev7[17] = {0, 0, 0, 0, 0, 0, 0, 7, '_'}, rev3[17] = {0, 0, 0, 0, 0, 0, 0, 3, '_'};
	size_t kbl = mk_inline(kb, &(struct el){rev7, 17, kv, sizeof kv, 0});
	size_t mbl = mk_inline(mb, &(struct el){"finishedCompactRev", 18, rev3, 17, 0});
	struct el root[] = {{"key", 3, kb, kbl, 1}, {"meta", 4, mb, mbl, 1}};

	mk_leaf(f + 2 * PS, 2, 2, root);
	cr_assert_eq(read_db(f, 3 * PS, &s, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(s.log, "7 x=y c7 v1;");
	cr_assert_eq(s.meta.finished_compact_rev, 3);

	/* the record inside the page: after the root's 2 elements and the key "key", the
	 * bucket header (16), the inline page header and element (32) and the 17-byte key */
	uint8_t *rec = f + 2 * PS + 16 + 32 + 3 + 16 + 32 + 17;
	cr_assert_eq(rec[0], 0x0a);
	rec[4] = 9; /* create_revision 9 > mod_revision 7 */
	cr_assert_eq(read_db(f, 3 * PS, &s, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "do not fit"), "%s", err);
	rec[4] = 7;
	rec[1] = 50; /* the key's length runs past the record */
	cr_assert_eq(read_db(f, 3 * PS, &s, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "malformed mvccpb.KeyValue"), "%s", err);
	rec[1] = 1;
	rec[-9] = 'x'; /* the revision key's '_' */
	cr_assert_eq(read_db(f, 3 * PS, &s, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "not a revision"), "%s", err);
	rec[-9] = '_';
	/* the same revision twice: as a version and as a tombstone */
	uint8_t rev7t[18], kb2[512];
	memcpy(rev7t, rev7, 17);
	rev7t[17] = 't';
	struct el two[] = {{rev7, 17, kv, sizeof kv, 0}, {rev7t, 18, kv, 3, 0}};
	memset(kb2, 0, 16);
	size_t kb2l = 16 + mk_leaf(kb2 + 16, 0, 2, two);
	struct el root2[] = {{"key", 3, kb2, kb2l, 1}, {"meta", 4, mb, mbl, 1}};
	memset(f + 2 * PS, 0, PS);
	mk_leaf(f + 2 * PS, 2, 2, root2);
	cr_assert_eq(read_db(f, 3 * PS, &s, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "7_0 appears twice"), "%s", err);
	memset(f + 2 * PS, 0, PS);
	root[0].flags = 0; /* `key` as a plain key, not a bucket */
	mk_leaf(f + 2 * PS, 2, 2, root);
	cr_assert_eq(read_db(f, 3 * PS, &s, err, sizeof err), -EBADMSG);
	cr_assert(strstr(err, "not a bucket"), "%s", err);
	free(f);
}

/* ---- the writer ---- */

struct collect {
	uint8_t **k, **v;
	size_t *kl, *vl, n, cap;
};

static int collect_fn(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, bool bucket)
{
	struct collect *c = arg;
	cr_assert(!bucket);
	cr_assert(c->n < c->cap);
	c->k[c->n] = malloc(kl + 1);
	memcpy(c->k[c->n], k, kl);
	c->v[c->n] = malloc(vl + 1);
	memcpy(c->v[c->n], v, vl);
	c->kl[c->n] = kl;
	c->vl[c->n++] = vl;
	return 0;
}

#define NKEYS 5000

static void key_of(int i, char *out) { sprintf(out, "key/%06d", i * 7); }

static size_t val_of(int i, uint8_t *out)
{
	size_t n = i == 1234 ? 100000 : (size_t)(i % 50); /* one value larger than a page: overflow pages */
	for (size_t j = 0; j < n; j++)
		out[j] = (uint8_t)(i + j);
	return n;
}

Test(bbolt, writer_round_trip)
{
	struct bbolt_writer *w = bbolt_writer_new();
	uint8_t *file, *val = malloc(100000);
	size_t len;
	char key[32], err[256] = "";

	cr_assert_eq(bbolt_writer_put(w, (const uint8_t *)"x", 1, NULL, 0), -EINVAL); /* no bucket yet */
	cr_assert_eq(bbolt_writer_bucket(w, "zeta"), 0);
	for (int i = 0; i < NKEYS; i++) {
		key_of(i, key);
		cr_assert_eq(bbolt_writer_put(w, (const uint8_t *)key, strlen(key), val, val_of(i, val)), 0);
	}
	cr_assert_eq(bbolt_writer_put(w, (const uint8_t *)"key/000000", 10, NULL, 0), -EINVAL); /* order */
	cr_assert_eq(bbolt_writer_bucket(w, "empty"), 0);
	cr_assert_eq(bbolt_writer_bucket(w, "alpha"), 0);
	cr_assert_eq(bbolt_writer_put(w, (const uint8_t *)"a", 1, (const uint8_t *)"1", 1), 0);
	cr_assert_eq(bbolt_writer_bucket(w, "zeta"), -EINVAL); /* each name once */
	cr_assert_eq(bbolt_writer_finish(w, 7, &file, &len), 0);
	bbolt_writer_free(w);
	cr_assert_eq(len % BBOLT_PAGE_SIZE, 0);

	struct bbolt_db *db;
	cr_assert_eq(bbolt_open(file, len, &db, err, sizeof err), 0, "%s", err);
	cr_assert_eq(bbolt_txid(db), 7);
	struct seen s = {0};
	cr_assert_eq(bbolt_walk(db, NULL, list_fn, &s, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(s.log, "alpha,empty,zeta,");
	struct collect c = {.cap = NKEYS + 1};
	c.k = calloc(c.cap, sizeof *c.k);
	c.v = calloc(c.cap, sizeof *c.v);
	c.kl = calloc(c.cap, sizeof *c.kl);
	c.vl = calloc(c.cap, sizeof *c.vl);
	cr_assert_eq(bbolt_walk(db, "zeta", collect_fn, &c, err, sizeof err), 0, "%s", err);
	cr_assert_eq(c.n, NKEYS);
	for (int i = 0; i < NKEYS; i++) {
		key_of(i, key);
		size_t vl = val_of(i, val);
		cr_assert(c.kl[i] == strlen(key) && !memcmp(c.k[i], key, c.kl[i]), "key %d", i);
		cr_assert(c.vl[i] == vl && !memcmp(c.v[i], val, vl), "value %d", i);
		free(c.k[i]);
		free(c.v[i]);
	}
	c.n = 0;
	cr_assert_eq(bbolt_walk(db, "empty", collect_fn, &c, err, sizeof err), 0, "%s", err);
	cr_assert_eq(c.n, 0);
	cr_assert_eq(bbolt_walk(db, "alpha", collect_fn, &c, err, sizeof err), 0, "%s", err);
	cr_assert(c.n == 1 && c.vl[0] == 1 && c.v[0][0] == '1');
	free(c.k[0]);
	free(c.v[0]);
	free(c.k);
	free(c.v);
	free(c.kl);
	free(c.vl);
	bbolt_close(db);
	free(file);
	free(val);
}

/* The reference bbolt (etcdutl 3.5.16's `snapshot status`) reads what the writer wrote: it
 * walks every bucket and takes the revision from the last key of bucket `key`. Skipped
 * when the reference binaries are not there (tools/fetch-etcd-ref.sh). */
Test(bbolt, writer_output_read_by_etcdutl)
{
	const char *etcdutl = "build/etcd-ref/usr/bin/etcdutl";
	struct bbolt_writer *w = bbolt_writer_new();
	uint8_t rk[17] = {0}, kv[64], *file;
	size_t len;
	char path[] = "/tmp/bbolt-test-XXXXXX", cmd[512], out[4096] = "";

	if (access(etcdutl, X_OK)) {
		cr_skip_test("no %s", etcdutl);
		return;
	}
	cr_assert_eq(bbolt_writer_bucket(w, "key"), 0);
	for (int r = 2; r <= 1500; r++) { /* several leaves and a branch page */
		rk[7] = (uint8_t)r;
		rk[6] = (uint8_t)(r >> 8);
		rk[8] = '_';
		int n = snprintf((char *)kv + 2, sizeof kv - 2, "k%d", r % 100);
		kv[0] = 0x0a;
		kv[1] = (uint8_t)n;
		cr_assert_eq(bbolt_writer_put(w, rk, 17, kv, (size_t)n + 2), 0);
	}
	cr_assert_eq(bbolt_writer_bucket(w, "meta"), 0);
	const uint8_t ci[8] = {0, 0, 0, 0, 0, 0, 0, 42};
	cr_assert_eq(bbolt_writer_put(w, (const uint8_t *)"consistent_index", 16, ci, 8), 0);
	cr_assert_eq(bbolt_writer_bucket(w, "lease"), 0);
	cr_assert_eq(bbolt_writer_finish(w, 2, &file, &len), 0);
	bbolt_writer_free(w);
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, file, len), (ssize_t)len);
	close(fd);
	free(file);
	snprintf(cmd, sizeof cmd, "%s snapshot status -w json %s 2>&1", etcdutl, path);
	FILE *p = popen(cmd, "r");
	size_t got = fread(out, 1, sizeof out - 1, p);
	out[got] = 0;
	int rc = pclose(p);
	unlink(path);
	cr_assert_eq(rc, 0, "%s", out);
	/* 1499 key records + 1 meta record */
	cr_assert(strstr(out, "\"revision\":1500") && strstr(out, "\"totalKey\":1500"), "%s", out);
}

/* ---- a snapshot (core/snapstream.c) read back: every version, leases, auth ---- */

static int count_fn(void *arg, const uint8_t *key, size_t kl, const struct mvcc_stored *v, size_t n)
{
	((struct seen *)arg)->kvs += (int)n;
	return 0;
}

/* Each record must be the view's version at its revision (a tombstone: nothing there);
 * one kept from before the compaction is what the compacted revision reads. */
static int cmp_kv(void *arg, const struct bbolt_etcd_kv *kv)
{
	struct mvcc_view *v = arg;
	struct mvcc_kv got;
	int64_t at = kv->mod_revision > v->compact_rev ? kv->mod_revision : v->compact_rev;
	int rc = mvcc_get(v, kv->key, kv->key_len, at, &got);

	if (kv->tomb)
		return rc == 0 ? 0 : 1;
	if (rc != 1 || got.mod_revision != kv->mod_revision || got.create_revision != kv->create_revision ||
	    got.version != kv->version || got.lease != kv->lease || got.value_len != kv->value_len ||
	    memcmp(got.value, kv->value, kv->value_len))
		return 2;
	return 0;
}

Test(bbolt, snapshot_database_holds_the_view)
{
	struct qsbr *q = qsbr_new(2);
	struct mvcc_store *st = mvcc_store_new(q);
	struct auth *a = auth_new();
	struct mvcc_view v;
	char path[] = "/tmp/bbolt-snap-XXXXXX", err[256] = "", key[32], val[32];
	uint64_t bytes = 0;

	for (int r = 0; r < 400; r++) {
		snprintf(key, sizeof key, "k%03d", r % 37);
		snprintf(val, sizeof val, "v%d", r);
		if (r % 11 == 5)
			mvcc_delete_range(st, (const uint8_t *)key, strlen(key), NULL, 0, NULL, NULL);
		else
			mvcc_put(st, (const uint8_t *)key, strlen(key), (const uint8_t *)val, strlen(val), r % 7 ? 0 : 77,
				 NULL);
	}
	mvcc_txn_begin(st); /* one revision, two changes: sub-revisions 0 and 1 */
	mvcc_put(st, (const uint8_t *)"t1", 2, (const uint8_t *)"a", 1, 0, NULL);
	mvcc_put(st, (const uint8_t *)"t2", 2, (const uint8_t *)"b", 1, 0, NULL);
	int64_t last = mvcc_txn_end(st);
	cr_assert_eq(mvcc_compact(st, 200), 0);
	mvcc_publish(st);
	mvcc_view_published(st, &v);
	cr_assert_eq(auth_role_add(a, (const uint8_t *)"r", 1), 0);
	cr_assert_eq(auth_role_grant_permission(a, (const uint8_t *)"r", 1, 2, (const uint8_t *)"k", 1,
						(const uint8_t *)"l", 1),
		     0);
	cr_assert_eq(auth_user_add(a, (const uint8_t *)"u", 1, (const uint8_t *)"$2a$10$x", 8, false), 0);
	cr_assert_eq(auth_user_grant_role(a, (const uint8_t *)"u", 1, (const uint8_t *)"r", 1), 0);
	cr_assert_eq(auth_user_add(a, (const uint8_t *)"n", 1, NULL, 0, true), 0);
	size_t alen = auth_state_size(a);
	uint8_t *ab = malloc(alen);
	cr_assert(auth_state_encode(a, ab, alen) > 0);
	struct ckpt_lease leases[] = {{77, 60}, {5, 10}};
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	unlink(path);
	cr_assert_eq(snapshot_write_bbolt(fd, &v, leases, 2, ab, alen, &bytes), 0);
	uint8_t *file = malloc(bytes);
	cr_assert_eq(pread(fd, file, bytes, 0), (ssize_t)bytes);
	close(fd);

	struct seen want = {0}, got;
	int64_t compact;
	char tail[64];
	cr_assert_eq(mvcc_dump(&v, count_fn, &want, &compact), 0);
	cr_assert_eq(read_db(file, bytes, &got, err, sizeof err), 0, "%s", err);
	cr_assert_eq(got.kvs, want.kvs);
	cr_assert(got.order_ok);
	cr_assert_eq(got.last_rev, last);
	cr_assert_eq(got.meta.finished_compact_rev, 200);
	cr_assert_eq(got.meta.scheduled_compact_rev, 200);
	cr_assert(strstr(got.log, "lease ttl=10;lease ttl=60;role r;perm r 2 k l;user n ? nopw;user u bcrypt;grant u r;"),
		  "%s", got.log);
	snprintf(tail, sizeof tail, "%lld t1=a c%lld v1;%lld t2=b c%lld v1;", (long long)last, (long long)last,
		 (long long)last, (long long)last);
	cr_assert(strstr(got.log, tail), "%s", got.log);
	struct bbolt_etcd_sink cmp = {.kv = cmp_kv, .arg = &v};
	cr_assert_eq(bbolt_etcd_read(file, bytes, &cmp, err, sizeof err), 0, "%s", err);
	free(file);
	free(ab);
	auth_free(a);
	mvcc_store_free(st);
	qsbr_free(q);
}
