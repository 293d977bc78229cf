/* bbolt reader and etcd's layout in it (see bbolt.h). Formats (facts from bbolt's and etcd's
 * sources; all integers of bbolt's own structures are little-endian, as written on amd64):
 *
 * Page N is at offset N * page_size and spans (overflow + 1) pages. Header, 16 bytes:
 *   0  8  id (u64: N)     8  2  flags: 0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist
 *   10 2  count (elements)     12 4  overflow (extra pages)
 * Meta (pages 0 and 1, at offset 16 of the page; the valid one with the larger txid wins):
 *   0 4 magic 0xED0CDAED  4 4 version 2  8 4 page_size  12 4 flags
 *   16 16 root bucket {root pgid u64, sequence u64}  32 8 freelist pgid  40 8 pgid (pages
 *   in use: every page id is below it)  48 8 txid  56 8 checksum: FNV-1a 64 of bytes 0..55
 * Branch element (16 bytes, from offset 16, `count` of them):
 *   0 4 pos  4 4 ksize  8 8 child pgid; the key is at (element address + pos)
 * Leaf element (16 bytes): 0 4 flags (0x01: the value is a bucket)  4 4 pos  8 4 ksize
 *   12 4 vsize; key at (element address + pos), value right after the key
 * Bucket value: {root pgid u64, sequence u64}; root 0 means an inline bucket: a page
 *   (header + leaf elements) follows in the value itself.
 *
 * etcd's buckets (values are protobuf; integers in keys and meta values big-endian):
 *   key        17 bytes: main rev u64 BE, '_', sub rev u64 BE; an 18th byte 't' marks a
 *              tombstone. Value mvccpb.KeyValue: 1 key, 2 create_revision, 3 mod_revision,
 *              4 version, 5 value, 6 lease (a tombstone's holds only the key)
 *   meta       finishedCompactRev, scheduledCompactRev: a revision key (main BE first);
 *              consistent_index, term: u64 BE
 *   lease      id u64 BE -> leasepb.Lease: 1 ID, 2 TTL, 3 RemainingTTL
 *   auth       authEnabled: one byte 1/0; authRevision: u64 BE
 *   authUsers  name -> authpb.User: 1 name, 2 password (bcrypt hash), 3 roles (repeated),
 *              4 options {1 no_password}
 *   authRoles  name -> authpb.Role: 1 name, 2 keyPermission (repeated Permission:
 *              1 permType (READ 0, WRITE 1, READWRITE 2), 2 key, 3 range_end)
 * Buckets `members`, `cluster`, `alarm` are not read: an import makes a new cluster. */
#include "storage/bbolt.h"
#include "storage/le.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BB_MAGIC 0xED0CDAEDu
#define BB_VERSION 2u
#define BB_PAGE_HDR 16u
#define BB_ELEM 16u
#define BB_META 64u
#define BB_BUCKET_HDR 16u
#define BB_FLAG_BRANCH 0x01u
#define BB_FLAG_LEAF 0x02u
#define BB_FLAG_META 0x04u
#define BB_LEAF_BUCKET 0x01u
#define BB_PAGE_MIN 512u   /* bbolt uses the OS page size; anything else is refused */
#define BB_PAGE_MAX 65536u
/* Tree depth bound: every level but the leaves holds >= 2 children (bbolt's minimum), so
 * 64 levels would need 2^63 pages; deeper is a forged file. */
#define BB_DEPTH_MAX 64

struct bbolt_db {
	const uint8_t *p;
	size_t len;
	uint32_t page_size;
	uint64_t root, npages, txid;
	uint8_t *seen; /* one bit per page, reset per walk: no page is entered twice */
};

static int bb_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

static uint16_t le_get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint64_t be_get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint64_t bb_fnv64a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

bool bbolt_is_db(const uint8_t *p, size_t len)
{
	return len >= BB_PAGE_HDR + BB_META && (le_get16(p + 8) & BB_FLAG_META) && le_get32(p + 16) == BB_MAGIC;
}

/* The meta at page offset `off`, if valid: NULL or why not. */
static const char *bb_meta_check(const uint8_t *p, size_t len, size_t off)
{
	if (off > len || len - off < BB_PAGE_HDR + BB_META)
		return "the file ends inside the meta page";
	const uint8_t *m = p + off + BB_PAGE_HDR;
	if (!(le_get16(p + off + 8) & BB_FLAG_META))
		return "the page is not a meta page";
	if (le_get32(m) != BB_MAGIC)
		return "bad magic";
	if (le_get32(m + 4) != BB_VERSION)
		return "unknown version";
	if (le_get64(m + 56) != bb_fnv64a(m, 56))
		return "checksum mismatch";
	uint32_t ps = le_get32(m + 8);
	if (ps < BB_PAGE_MIN || ps > BB_PAGE_MAX || (ps & (ps - 1)))
		return "page size out of range";
	return NULL;
}

int bbolt_open(const uint8_t *p, size_t len, struct bbolt_db **out, char *err, size_t errlen)
{
	const char *why0 = bb_meta_check(p, len, 0), *why1;
	uint32_t ps0 = why0 ? 4096 : le_get32(p + BB_PAGE_HDR + 8); /* bbolt's fallback, too */
	const uint8_t *m;

	why1 = bb_meta_check(p, len, ps0);
	if (why0 && why1)
		return bb_fail(err, errlen, "not a bbolt database: meta page 0: %s; meta page 1: %s", why0, why1);
	if (!why0 && !why1 && le_get32(p + ps0 + BB_PAGE_HDR + 8) != ps0)
		why1 = "page size differs from meta page 0's";
	if (why0)
		m = p + ps0 + BB_PAGE_HDR;
	else if (why1)
		m = p + BB_PAGE_HDR;
	else
		m = le_get64(p + ps0 + BB_PAGE_HDR + 48) > le_get64(p + BB_PAGE_HDR + 48) ? p + ps0 + BB_PAGE_HDR
											 : p + BB_PAGE_HDR;
	struct bbolt_db db = {.p = p,
			      .len = len,
			      .page_size = le_get32(m + 8),
			      .root = le_get64(m + 16),
			      .npages = le_get64(m + 40),
			      .txid = le_get64(m + 48)};
	if (db.npages < 2 || db.npages > len / db.page_size)
		return bb_fail(err, errlen, "meta: %" PRIu64 " pages in use but the file holds %zu", db.npages,
			       len / db.page_size);
	if (db.root < 2 || db.root >= db.npages)
		return bb_fail(err, errlen, "meta: root page %" PRIu64 " out of range", db.root);
	*out = malloc(sizeof db);
	if (!*out || !(db.seen = malloc((size_t)(db.npages + 7) / 8))) {
		free(*out);
		return -ENOMEM;
	}
	**out = db;
	return 0;
}

void bbolt_close(struct bbolt_db *db)
{
	if (db)
		free(db->seen);
	free(db);
}

uint64_t bbolt_txid(const struct bbolt_db *db) { return db->txid; }

/* One page being walked: its bytes and the next element to look at. */
struct bb_frame {
	const uint8_t *pg;
	size_t span; /* bytes the page may use */
	uint32_t next, count;
	bool leaf;
};

/* Enters page `id` (not visited before in this walk) into *f. 0 or -EBADMSG. */
static int bb_enter(struct bbolt_db *db, uint64_t id, struct bb_frame *f, char *err, size_t errlen)
{
	if (id < 2 || id >= db->npages)
		return bb_fail(err, errlen, "page id %" PRIu64 " out of range (pages in use: %" PRIu64 ")", id,
			       db->npages);
	const uint8_t *pg = db->p + id * db->page_size;
	uint64_t overflow = le_get32(pg + 12);
	if (overflow >= db->npages - id)
		return bb_fail(err, errlen, "page %" PRIu64 ": overflow %" PRIu64 " runs past the pages in use", id,
			       overflow);
	for (uint64_t i = id; i <= id + overflow; i++) {
		if (db->seen[i / 8] & (1u << (i % 8)))
			return bb_fail(err, errlen, "page %" PRIu64 " is reached twice (a cycle or shared page)", i);
		db->seen[i / 8] |= (uint8_t)(1u << (i % 8));
	}
	if (le_get64(pg) != id)
		return bb_fail(err, errlen, "page %" PRIu64 " says it is page %" PRIu64, id, le_get64(pg));
	f->pg = pg;
	f->span = (size_t)(overflow + 1) * db->page_size;
	f->next = 0;
	f->count = le_get16(pg + 10);
	uint16_t flags = le_get16(pg + 8);
	if (flags != BB_FLAG_BRANCH && flags != BB_FLAG_LEAF)
		return bb_fail(err, errlen, "page %" PRIu64 ": flags 0x%x where a tree page belongs", id, flags);
	f->leaf = flags == BB_FLAG_LEAF;
	/* an empty leaf is a bucket with nothing left in it; an empty branch is never written */
	if ((!f->leaf && !f->count) || f->count > (f->span - BB_PAGE_HDR) / BB_ELEM)
		return bb_fail(err, errlen, "page %" PRIu64 ": %u elements do not fit", id, f->count);
	return 0;
}

/* An inline bucket's page: the value's bytes after the bucket header. */
static int bb_enter_inline(const uint8_t *v, size_t vlen, struct bb_frame *f, char *err, size_t errlen)
{
	if (vlen < BB_BUCKET_HDR + BB_PAGE_HDR)
		return bb_fail(err, errlen, "inline bucket of %zu bytes is too short", vlen);
	f->pg = v + BB_BUCKET_HDR;
	f->span = vlen - BB_BUCKET_HDR;
	f->next = 0;
	f->count = le_get16(f->pg + 10);
	f->leaf = true;
	if (le_get16(f->pg + 8) != BB_FLAG_LEAF)
		return bb_fail(err, errlen, "inline bucket: not a leaf page");
	if (f->count > (f->span - BB_PAGE_HDR) / BB_ELEM)
		return bb_fail(err, errlen, "inline bucket: %u elements do not fit", f->count);
	return 0;
}

static int bb_key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	return c ? c : (al > bl) - (al < bl);
}

/* Walks the tree rooted at page `root`, or the inline page in (iv, ivlen) when root is 0. */
static int bb_walk_tree(struct bbolt_db *db, uint64_t root, const uint8_t *iv, size_t ivlen, bbolt_kv_fn fn,
			void *arg, char *err, size_t errlen)
{
	struct bb_frame st[BB_DEPTH_MAX];
	const uint8_t *last = NULL;
	size_t last_len = 0;
	int depth = 1, rc;

	memset(db->seen, 0, (size_t)(db->npages + 7) / 8);
	rc = root ? bb_enter(db, root, &st[0], err, errlen) : bb_enter_inline(iv, ivlen, &st[0], err, errlen);
	if (rc)
		return rc;
	while (depth) {
		struct bb_frame *f = &st[depth - 1];
		if (f->next == f->count) {
			depth--;
			continue;
		}
		size_t eoff = BB_PAGE_HDR + (size_t)f->next++ * BB_ELEM;
		const uint8_t *e = f->pg + eoff;
		uint64_t pos = le_get32(e + (f->leaf ? 4 : 0)), ksize = le_get32(e + (f->leaf ? 8 : 4));
		uint64_t vsize = f->leaf ? le_get32(e + 12) : 0;
		if (pos > f->span - eoff || ksize + vsize > f->span - eoff - pos)
			return bb_fail(err, errlen, "page %" PRIu64 " element %u: key or value outside the page",
				       le_get64(f->pg), f->next - 1);
		if (!f->leaf) {
			if (depth == BB_DEPTH_MAX)
				return bb_fail(err, errlen, "tree deeper than %d levels", BB_DEPTH_MAX);
			if ((rc = bb_enter(db, le_get64(e + 8), &st[depth], err, errlen)))
				return rc;
			depth++;
			continue;
		}
		const uint8_t *k = e + pos;
		if (last && bb_key_cmp(last, last_len, k, ksize) >= 0)
			return bb_fail(err, errlen, "page %" PRIu64 ": keys out of order", le_get64(f->pg));
		last = k;
		last_len = ksize;
		uint32_t flags = le_get32(e);
		if (flags & ~BB_LEAF_BUCKET)
			return bb_fail(err, errlen, "page %" PRIu64 ": unknown element flags 0x%x", le_get64(f->pg),
				       flags);
		if ((flags & BB_LEAF_BUCKET) && vsize < BB_BUCKET_HDR)
			return bb_fail(err, errlen, "page %" PRIu64 ": bucket value of %" PRIu64 " bytes", le_get64(f->pg),
				       vsize);
		if ((rc = fn(arg, k, ksize, k + ksize, vsize, flags & BB_LEAF_BUCKET)))
			return rc;
	}
	return 0;
}

struct bb_find {
	const char *name;
	const uint8_t *val;
	size_t len;
	bool found, not_bucket;
};

static int bb_find_fn(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, bool bucket)
{
	struct bb_find *b = arg;

	if (kl != strlen(b->name) || memcmp(k, b->name, kl))
		return 0;
	b->found = true;
	b->not_bucket = !bucket;
	b->val = v;
	b->len = vl;
	return 1;
}

int bbolt_walk(struct bbolt_db *db, const char *name, bbolt_kv_fn fn, void *arg, char *err, size_t errlen)
{
	struct bb_find b = {.name = name};
	int rc;

	if (!name)
		return bb_walk_tree(db, db->root, NULL, 0, fn, arg, err, errlen);
	rc = bb_walk_tree(db, db->root, NULL, 0, bb_find_fn, &b, err, errlen);
	if (rc < 0)
		return rc;
	if (!b.found)
		return -ENOENT;
	if (b.not_bucket)
		return bb_fail(err, errlen, "`%s` is a key, not a bucket", name);
	uint64_t root = le_get64(b.val);
	return bb_walk_tree(db, root, b.val, b.len, fn, arg, err, errlen);
}

/* ---- protobuf, as much as etcd's records need ---- */

struct pb {
	const uint8_t *p;
	size_t len, off;
};

struct pb_field {
	uint32_t num;
	int wt;
	uint64_t v; /* varint, fixed */
	const uint8_t *b; /* length-delimited */
	size_t blen;
};

static int pb_varint(struct pb *d, uint64_t *out)
{
	uint64_t v = 0;
	for (int i = 0; i < 10; i++) {
		if (d->off == d->len)
			return -1;
		uint8_t c = d->p[d->off++];
		if (i == 9 && c > 1)
			return -1;
		v |= (uint64_t)(c & 0x7f) << (7 * i);
		if (!(c & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return -1;
}

/* The next field: 1, 0 at the end, -1 malformed. */
static int pb_next(struct pb *d, struct pb_field *f)
{
	uint64_t tag;

	if (d->off == d->len)
		return 0;
	if (pb_varint(d, &tag) || tag >> 3 == 0 || tag >> 3 > UINT32_MAX)
		return -1;
	f->num = (uint32_t)(tag >> 3);
	f->wt = (int)(tag & 7);
	switch (f->wt) {
	case 0:
		return pb_varint(d, &f->v) ? -1 : 1;
	case 1:
	case 5: {
		size_t n = f->wt == 1 ? 8 : 4;
		if (d->len - d->off < n)
			return -1;
		f->v = n == 8 ? le_get64(d->p + d->off) : le_get32(d->p + d->off);
		d->off += n;
		return 1;
	}
	case 2:
		if (pb_varint(d, &f->v) || f->v > d->len - d->off)
			return -1;
		f->b = d->p + d->off;
		f->blen = (size_t)f->v;
		d->off += f->blen;
		return 1;
	default:
		return -1;
	}
}

/* ---- etcd's buckets ---- */

struct etcd_rd {
	const struct bbolt_etcd_sink *sink;
	char *err;
	size_t errlen;
	struct bbolt_etcd_meta meta;
	int64_t last_rev, last_sub; /* bucket key: (revision, sub) must strictly increase */
};

static int etcd_no_nested(struct etcd_rd *r, const char *bucket, bool nested)
{
	return nested ? bb_fail(r->err, r->errlen, "bucket %s: a nested bucket where etcd keeps records", bucket) : 0;
}

static int etcd_meta_fn(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, bool nested)
{
	struct etcd_rd *r = arg;
	int64_t *rev = NULL;
	uint64_t *u = NULL;

	if (etcd_no_nested(r, "meta", nested))
		return -EBADMSG;
	if (kl == 18 && !memcmp(k, "finishedCompactRev", 18))
		rev = &r->meta.finished_compact_rev;
	else if (kl == 19 && !memcmp(k, "scheduledCompactRev", 19))
		rev = &r->meta.scheduled_compact_rev;
	else if (kl == 16 && !memcmp(k, "consistent_index", 16))
		u = &r->meta.consistent_index;
	else if (kl == 4 && !memcmp(k, "term", 4))
		u = &r->meta.term;
	else
		return 0; /* e.g. confState, storageVersion */
	if (rev && (vl != 17 || v[8] != '_' || be_get64(v) > INT64_MAX))
		return bb_fail(r->err, r->errlen, "meta: %.*s is not a revision", (int)kl, (const char *)k);
	if (u && vl != 8)
		return bb_fail(r->err, r->errlen, "meta: %.*s is not 8 bytes", (int)kl, (const char *)k);
	if (rev)
		*rev = (int64_t)be_get64(v);
	else
		*u = be_get64(v);
	return 0;
}

static int etcd_auth_fn(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, bool nested)
{
	struct etcd_rd *r = arg;

	if (etcd_no_nested(r, "auth", nested))
		return -EBADMSG;
	if (kl == 11 && !memcmp(k, "authEnabled", 11)) {
		if (vl != 1 || v[0] > 1)
			return bb_fail(r->err, r->errlen, "auth: authEnabled is not one byte 0 or 1");
		r->meta.auth_enabled = v[0] == 1;
	} else if (kl == 12 && !memcmp(k, "authRevision", 12)) {
		if (vl != 8)
			return bb_fail(r->err, r->errlen, "auth: authRevision is not 8 bytes");
		r->meta.auth_revision = be_get64(v);
	}
	return 0;
}

static int etcd_lease_fn(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, bool nested)
{
	struct etcd_rd *r = arg;
	struct pb d = {v, vl, 0};
	struct pb_field f;
	int64_t id = 0, ttl = 0;
	int rc;

	if (etcd_no_nested(r, "lease", nested))
		return -EBADMSG;
	while ((rc = pb_next(&d, &f)) > 0) {
		if (f.num == 1 && f.wt == 0)
			id = (int64_t)f.v;
		else if (f.num == 2 && f.wt == 0)
			ttl = (int64_t)f.v;
	}
	if (rc < 0 || kl != 8 || id == 0 || (uint64_t)id != be_get64(k) || ttl < 0)
		return bb_fail(r->err, r->errlen, "lease %016" PRIx64 ": malformed record", kl == 8 ? be_get64(k) : 0);
	return r->sink->lease ? r->sink->lease(r->sink->arg, id, ttl) : 0;
}

static int etcd_role_fn(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, bool nested)
{
	struct etcd_rd *r = arg;
	struct pb d = {v, vl, 0};
	struct pb_field f;
	const uint8_t *name = NULL;
	size_t nlen = 0;
	int rc;

	if (etcd_no_nested(r, "authRoles", nested))
		return -EBADMSG;
	while ((rc = pb_next(&d, &f)) > 0)
		if (f.num == 1 && f.wt == 2) {
			name = f.b;
			nlen = f.blen;
		}
	if (rc < 0 || !name || nlen != kl || memcmp(name, k, kl))
		return bb_fail(r->err, r->errlen, "role %.*s: malformed record", (int)(kl > 256 ? 256 : kl), (const char *)k);
	if (r->sink->role && (rc = r->sink->role(r->sink->arg, k, kl)))
		return rc;
	d.off = 0;
	while (pb_next(&d, &f) > 0) {
		if (f.num != 2 || f.wt != 2)
			continue;
		struct pb pd = {f.b, f.blen, 0};
		struct pb_field g;
		int type = 0;
		const uint8_t *key = NULL, *end = NULL;
		size_t klen = 0, elen = 0;
		while ((rc = pb_next(&pd, &g)) > 0) {
			if (g.num == 1 && g.wt == 0)
				type = g.v > 2 ? -1 : (int)g.v;
			else if (g.num == 2 && g.wt == 2)
				key = g.b, klen = g.blen;
			else if (g.num == 3 && g.wt == 2)
				end = g.b, elen = g.blen;
		}
		if (rc < 0 || type < 0)
			return bb_fail(r->err, r->errlen, "role %.*s: malformed permission", (int)(kl > 256 ? 256 : kl),
				       (const char *)k);
		if (r->sink->role_perm && (rc = r->sink->role_perm(r->sink->arg, k, kl, type, key ? key : (const uint8_t *)"",
								   klen, end ? end : (const uint8_t *)"", elen)))
			return rc;
	}
	return 0;
}

static int etcd_user_fn(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, bool nested)
{
	struct etcd_rd *r = arg;
	struct pb d = {v, vl, 0};
	struct pb_field f;
	const uint8_t *name = NULL, *pw = (const uint8_t *)"";
	size_t nlen = 0, pwlen = 0;
	bool nopw = false;
	int rc;

	if (etcd_no_nested(r, "authUsers", nested))
		return -EBADMSG;
	while ((rc = pb_next(&d, &f)) > 0) {
		if (f.num == 1 && f.wt == 2)
			name = f.b, nlen = f.blen;
		else if (f.num == 2 && f.wt == 2)
			pw = f.b, pwlen = f.blen;
		else if (f.num == 4 && f.wt == 2) {
			struct pb od = {f.b, f.blen, 0};
			struct pb_field g;
			while ((rc = pb_next(&od, &g)) > 0)
				if (g.num == 1 && g.wt == 0)
					nopw = g.v != 0;
			if (rc < 0)
				break;
		}
	}
	if (rc < 0 || !name || nlen != kl || memcmp(name, k, kl))
		return bb_fail(r->err, r->errlen, "user %.*s: malformed record", (int)(kl > 256 ? 256 : kl), (const char *)k);
	if (r->sink->user && (rc = r->sink->user(r->sink->arg, k, kl, pw, pwlen, nopw)))
		return rc;
	d.off = 0;
	while (pb_next(&d, &f) > 0)
		if (f.num == 3 && f.wt == 2 && r->sink->user_role &&
		    (rc = r->sink->user_role(r->sink->arg, k, kl, f.b, f.blen)))
			return rc;
	return 0;
}

static int etcd_kv_fn(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, bool nested)
{
	struct etcd_rd *r = arg;
	struct bbolt_etcd_kv kv = {.key = NULL};
	struct pb d = {v, vl, 0};
	struct pb_field f;
	int64_t mod = 0;
	int rc;

	if (etcd_no_nested(r, "key", nested))
		return -EBADMSG;
	if ((kl != 17 && !(kl == 18 && k[17] == 't')) || k[8] != '_' || be_get64(k) > INT64_MAX ||
	    be_get64(k + 9) > INT64_MAX || be_get64(k) == 0)
		return bb_fail(r->err, r->errlen, "bucket key: %zu-byte key is not a revision", kl);
	kv.mod_revision = (int64_t)be_get64(k);
	kv.sub = (int64_t)be_get64(k + 9);
	kv.tomb = kl == 18;
	if (kv.mod_revision < r->last_rev || (kv.mod_revision == r->last_rev && kv.sub <= r->last_sub))
		return bb_fail(r->err, r->errlen, "revision %" PRId64 "_%" PRId64 " appears twice", kv.mod_revision, kv.sub);
	r->last_rev = kv.mod_revision;
	r->last_sub = kv.sub;
	while ((rc = pb_next(&d, &f)) > 0) {
		if (f.num == 1 && f.wt == 2)
			kv.key = f.b, kv.key_len = f.blen;
		else if (f.num == 5 && f.wt == 2)
			kv.value = f.b, kv.value_len = f.blen;
		else if (f.wt == 0 && f.num == 2)
			kv.create_revision = (int64_t)f.v;
		else if (f.wt == 0 && f.num == 3)
			mod = (int64_t)f.v;
		else if (f.wt == 0 && f.num == 4)
			kv.version = (int64_t)f.v;
		else if (f.wt == 0 && f.num == 6)
			kv.lease = (int64_t)f.v;
	}
	if (rc < 0 || !kv.key || !kv.key_len)
		return bb_fail(r->err, r->errlen, "revision %" PRId64 "_%" PRId64 ": malformed mvccpb.KeyValue",
			       kv.mod_revision, kv.sub);
	if (!kv.tomb && (mod != kv.mod_revision || kv.create_revision < 1 || kv.create_revision > mod ||
			 kv.version < 1))
		return bb_fail(r->err, r->errlen, "revision %" PRId64 "_%" PRId64 ": revisions in the record do not fit",
			       kv.mod_revision, kv.sub);
	if (kv.tomb) { /* etcd keeps only the key; anything else would not survive the import */
		kv.value = NULL;
		kv.value_len = 0;
		kv.create_revision = kv.version = kv.lease = 0;
	}
	if (!kv.value)
		kv.value = (const uint8_t *)"";
	return r->sink->kv ? r->sink->kv(r->sink->arg, &kv) : 0;
}

/* Walks one bucket; a missing one is fine unless `required`. */
static int etcd_bucket(struct bbolt_db *db, const char *name, bool required, bbolt_kv_fn fn, struct etcd_rd *r)
{
	int rc = bbolt_walk(db, name, fn, r, r->err, r->errlen);

	if (rc == -ENOENT)
		return required ? bb_fail(r->err, r->errlen, "no bucket `%s`: not an etcd database", name) : 0;
	return rc;
}

int bbolt_etcd_read(const uint8_t *p, size_t len, const struct bbolt_etcd_sink *sink, char *err, size_t errlen)
{
	struct etcd_rd r = {.sink = sink, .err = err, .errlen = errlen, .last_sub = -1};
	struct bbolt_db *db;
	int rc;

	if ((rc = bbolt_open(p, len, &db, err, errlen)))
		return rc;
	if ((rc = etcd_bucket(db, "meta", true, etcd_meta_fn, &r)) || (rc = etcd_bucket(db, "auth", false, etcd_auth_fn, &r)))
		goto out;
	if (r.meta.finished_compact_rev < 0 || r.meta.scheduled_compact_rev < 0) {
		rc = bb_fail(err, errlen, "meta: negative compacted revision");
		goto out;
	}
	if (sink->meta && (rc = sink->meta(sink->arg, &r.meta)))
		goto out;
	if ((rc = etcd_bucket(db, "lease", false, etcd_lease_fn, &r)) ||
	    (rc = etcd_bucket(db, "authRoles", false, etcd_role_fn, &r)) ||
	    (rc = etcd_bucket(db, "authUsers", false, etcd_user_fn, &r)) ||
	    (rc = etcd_bucket(db, "key", true, etcd_kv_fn, &r)))
		goto out;
out:
	bbolt_close(db);
	return rc;
}

/* ---- writing ---- */

struct bb_wentry {
	uint8_t *k; /* key then value, one allocation */
	size_t kl, vl;
	uint64_t pgid; /* branch levels: the child page */
	uint32_t flags;
};

struct bb_wbucket {
	char name[BBOLT_NAME_MAX + 1];
	struct bb_wentry *e;
	size_t n, cap;
};

struct bbolt_writer {
	struct bb_wbucket *b;
	size_t nb, cap;
	uint8_t *buf; /* pages laid out so far */
	uint64_t npages, cap_pages;
};

struct bbolt_writer *bbolt_writer_new(void) { return calloc(1, sizeof(struct bbolt_writer)); }

void bbolt_writer_free(struct bbolt_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->nb; i++) {
		for (size_t j = 0; j < w->b[i].n; j++)
			free(w->b[i].e[j].k);
		free(w->b[i].e);
	}
	free(w->b);
	free(w->buf);
	free(w);
}

int bbolt_writer_bucket(struct bbolt_writer *w, const char *name)
{
	size_t len = strlen(name);

	if (!len || len > BBOLT_NAME_MAX)
		return -EINVAL;
	for (size_t i = 0; i < w->nb; i++)
		if (!strcmp(w->b[i].name, name))
			return -EINVAL;
	if (w->nb == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 16;
		struct bb_wbucket *b = realloc(w->b, cap * sizeof *b);
		if (!b)
			return -ENOMEM;
		w->b = b;
		w->cap = cap;
	}
	memset(&w->b[w->nb], 0, sizeof w->b[w->nb]);
	memcpy(w->b[w->nb].name, name, len + 1);
	w->nb++;
	return 0;
}

static int bb_wadd(struct bb_wentry **e, size_t *n, size_t *cap, const uint8_t *k, size_t kl, const uint8_t *v,
		   size_t vl, uint32_t flags)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		struct bb_wentry *x = realloc(*e, c * sizeof *x);
		if (!x)
			return -ENOMEM;
		*e = x;
		*cap = c;
	}
	uint8_t *b = malloc(kl + vl + 1);
	if (!b)
		return -ENOMEM;
	memcpy(b, k, kl);
	if (vl)
		memcpy(b + kl, v, vl);
	(*e)[(*n)++] = (struct bb_wentry){.k = b, .kl = kl, .vl = vl, .flags = flags};
	return 0;
}

int bbolt_writer_put(struct bbolt_writer *w, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	if (!w->nb || klen > UINT32_MAX || vlen > UINT32_MAX)
		return -EINVAL;
	struct bb_wbucket *b = &w->b[w->nb - 1];
	if (b->n && bb_key_cmp(b->e[b->n - 1].k, b->e[b->n - 1].kl, key, klen) >= 0)
		return -EINVAL;
	return bb_wadd(&b->e, &b->n, &b->cap, key, klen, val, vlen, 0);
}

/* n zeroed pages at the end of the file: the first one's id, or 0 when out of memory. */
static uint64_t bb_walloc(struct bbolt_writer *w, uint64_t n)
{
	if (w->npages + n > w->cap_pages) {
		uint64_t cap = w->cap_pages ? w->cap_pages : 16;
		while (cap < w->npages + n)
			cap *= 2;
		uint8_t *b = realloc(w->buf, (size_t)cap * BBOLT_PAGE_SIZE);
		if (!b)
			return 0;
		memset(b + w->cap_pages * BBOLT_PAGE_SIZE, 0, (size_t)(cap - w->cap_pages) * BBOLT_PAGE_SIZE);
		w->buf = b;
		w->cap_pages = cap;
	}
	uint64_t id = w->npages;
	w->npages += n;
	return id;
}

/* Writes e[0..n) as one page (leaf, or branch when `branch`); its id, or 0. */
static uint64_t bb_wpage(struct bbolt_writer *w, const struct bb_wentry *e, size_t n, size_t bytes, bool branch)
{
	uint64_t pages = (bytes + BBOLT_PAGE_SIZE - 1) / BBOLT_PAGE_SIZE;
	uint64_t id = bb_walloc(w, pages);

	if (!id)
		return 0;
	uint8_t *pg = w->buf + id * BBOLT_PAGE_SIZE;
	le_put64(pg, id);
	pg[8] = branch ? BB_FLAG_BRANCH : BB_FLAG_LEAF;
	pg[10] = (uint8_t)n;
	pg[11] = (uint8_t)(n >> 8);
	le_put32(pg + 12, (uint32_t)(pages - 1));
	size_t data = BB_PAGE_HDR + n * BB_ELEM;
	for (size_t i = 0; i < n; i++) {
		uint8_t *el = pg + BB_PAGE_HDR + i * BB_ELEM;
		size_t pos = data - (BB_PAGE_HDR + i * BB_ELEM);
		if (branch) {
			le_put32(el, (uint32_t)pos);
			le_put32(el + 4, (uint32_t)e[i].kl);
			le_put64(el + 8, e[i].pgid);
			memcpy(pg + data, e[i].k, e[i].kl);
			data += e[i].kl;
		} else {
			le_put32(el, e[i].flags);
			le_put32(el + 4, (uint32_t)pos);
			le_put32(el + 8, (uint32_t)e[i].kl);
			le_put32(el + 12, (uint32_t)e[i].vl);
			memcpy(pg + data, e[i].k, e[i].kl + e[i].vl);
			data += e[i].kl + e[i].vl;
		}
	}
	return id;
}

/* Packs e[0..n) (n >= 1) into leaves, then branch levels until one page: the root's id, or
 * 0 when out of memory. A page takes entries while they fit; one entry larger than a page
 * gets a page of its own with overflow pages. */
static uint64_t bb_wtree(struct bbolt_writer *w, const struct bb_wentry *e, size_t n)
{
	struct bb_wentry *up = NULL, *cur = NULL;
	size_t nup = 0;
	bool branch = false;
	uint64_t root = 0;

	for (;;) {
		size_t cap = n, start = 0, bytes = BB_PAGE_HDR;
		nup = 0;
		if (!(up = malloc(cap * sizeof *up)))
			goto out;
		for (size_t i = 0; i <= n; i++) {
			size_t need = i < n ? BB_ELEM + e[i].kl + (branch ? 0 : e[i].vl) : 0;
			/* a page holds at most 0xffff elements (the count is u16); 4 KiB pages hold 255 */
			if (i == n || (i > start && bytes + need > BBOLT_PAGE_SIZE)) {
				uint64_t id = bb_wpage(w, e + start, i - start, bytes, branch);
				if (!id)
					goto out;
				up[nup++] = (struct bb_wentry){.k = e[start].k, .kl = e[start].kl, .pgid = id};
				start = i;
				bytes = BB_PAGE_HDR;
			}
			bytes += need;
		}
		if (nup == 1) {
			root = up[0].pgid;
			goto out;
		}
		free(cur);
		cur = up;
		up = NULL;
		e = cur;
		n = nup;
		branch = true;
	}
out:
	free(up);
	free(cur);
	return root;
}

static int bb_wname_cmp(const void *a, const void *b)
{
	return strcmp(((const struct bb_wbucket *)a)->name, ((const struct bb_wbucket *)b)->name);
}

static void bb_wmeta(uint8_t *pg, uint64_t id, uint64_t root, uint64_t npages, uint64_t txid)
{
	uint8_t *m = pg + BB_PAGE_HDR;

	le_put64(pg, id);
	pg[8] = BB_FLAG_META;
	le_put32(m, BB_MAGIC);
	le_put32(m + 4, BB_VERSION);
	le_put32(m + 8, BBOLT_PAGE_SIZE);
	le_put32(m + 12, 0);
	le_put64(m + 16, root);
	le_put64(m + 24, 0);
	le_put64(m + 32, 2); /* the freelist page */
	le_put64(m + 40, npages);
	le_put64(m + 48, txid);
	le_put64(m + 56, bb_fnv64a(m, 56));
}

int bbolt_writer_finish(struct bbolt_writer *w, uint64_t txid, uint8_t **out, size_t *len)
{
	struct bb_wentry *roots = NULL;
	size_t nroots = 0, rcap = 0;
	uint8_t hdr[BB_BUCKET_HDR + BB_PAGE_HDR] = {0};
	int rc = -ENOMEM;

	if (txid < 2)
		return -EINVAL;
	/* pages 0 and 1: meta; 2: the freelist, empty (every page is in use) */
	if (w->npages || bb_walloc(w, 3) != 0 || w->npages != 3) /* finished already, or no memory */
		return w->npages ? -EINVAL : -ENOMEM;
	w->buf[2 * BBOLT_PAGE_SIZE] = 2;
	w->buf[2 * BBOLT_PAGE_SIZE + 8] = 0x10;
	if (w->nb)
		qsort(w->b, w->nb, sizeof *w->b, bb_wname_cmp);
	for (size_t i = 0; i < w->nb; i++) {
		struct bb_wbucket *b = &w->b[i];
		size_t hl = BB_BUCKET_HDR;
		memset(hdr, 0, sizeof hdr);
		if (b->n) {
			uint64_t root = bb_wtree(w, b->e, b->n);
			if (!root)
				goto out;
			le_put64(hdr, root);
		} else { /* inline: an empty leaf page in the value */
			hdr[BB_BUCKET_HDR + 8] = BB_FLAG_LEAF;
			hl += BB_PAGE_HDR;
		}
		if ((rc = bb_wadd(&roots, &nroots, &rcap, (const uint8_t *)b->name, strlen(b->name), hdr, hl,
				  BB_LEAF_BUCKET)))
			goto out;
		rc = -ENOMEM;
	}
	uint64_t root;
	if (nroots)
		root = bb_wtree(w, roots, nroots);
	else if ((root = bb_walloc(w, 1))) { /* no bucket: an empty root leaf */
		le_put64(w->buf + root * BBOLT_PAGE_SIZE, root);
		w->buf[root * BBOLT_PAGE_SIZE + 8] = BB_FLAG_LEAF;
	}
	if (!root)
		goto out;
	bb_wmeta(w->buf, 0, root, w->npages, txid - 1);
	bb_wmeta(w->buf + BBOLT_PAGE_SIZE, 1, root, w->npages, txid);
	*out = w->buf;
	*len = (size_t)w->npages * BBOLT_PAGE_SIZE;
	w->buf = NULL;
	w->npages = w->cap_pages = 0;
	rc = 0;
out:
	for (size_t i = 0; i < nroots; i++)
		free(roots[i].k);
	free(roots);
	return rc;
}
