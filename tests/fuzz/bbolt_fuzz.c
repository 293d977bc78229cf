/* Fuzz target: the bbolt reader (storage/bbolt.c) and etcd's records in it, the path
 * `uetcd-restore etcd.db` takes with a file from outside.
 *
 * input[0] is a mode byte; the rest is the database file.
 *   bit 0 set  forged: both meta pages (at 0 and at the page size meta 0 claims, when that
 *              fits) get a correct FNV-1a checksum, so mutations reach the tree walker,
 *              the element bounds and the protobuf records instead of dying at the meta.
 *   bit 1 set  writer round trip instead: the rest is entries (u8 key length, u16 value
 *              length, the bytes; u8 0xff starts the next bucket), those in ascending key
 *              order put through bbolt_writer, and the file read back must give exactly them.
 * Every input is read as an etcd database and its root bucket walked; whatever is refused
 * must come with a reason, and a walk that succeeds must give strictly ascending keys. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/bbolt.h"

static uint64_t fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static void fix_meta(uint8_t *p, size_t len, size_t off)
{
	if (off <= len && len - off >= 16 + 64) {
		uint64_t h = fnv(p + off + 16, 56);
		memcpy(p + off + 16 + 56, &h, 8);
	}
}

struct last {
	uint8_t key[64];
	size_t len;
	int n;
};

static int walk_fn(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, bool bucket)
{
	struct last *l = arg;
	size_t m = kl < sizeof l->key ? kl : sizeof l->key;
	if (l->n++ && l->len < sizeof l->key && kl < sizeof l->key) { /* both kept whole */
		size_t c = kl < l->len ? kl : l->len;
		int cmp = memcmp(l->key, k, c);
		if (cmp > 0 || (cmp == 0 && l->len >= kl))
			abort(); /* keys must come in strictly ascending order */
	}
	memcpy(l->key, k, m);
	l->len = m;
	if (vl)
		(void)v[vl - 1]; /* the value is inside the buffer */
	return 0;
}

static int any_kv(void *arg, const struct bbolt_etcd_kv *kv)
{
	if (kv->key_len)
		(void)kv->key[kv->key_len - 1];
	if (kv->value_len)
		(void)kv->value[kv->value_len - 1];
	if (kv->mod_revision < 1 || (!kv->tomb && (kv->create_revision < 1 || kv->create_revision > kv->mod_revision)))
		abort();
	return 0;
}

struct expect {
	const uint8_t *data; /* the input: entries as given */
	size_t *offs, n, next;
};

static int expect_fn(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, bool bucket)
{
	struct expect *e = arg;
	if (bucket || e->next == e->n)
		abort();
	const uint8_t *p = e->data + e->offs[e->next++];
	size_t ekl = p[0], evl = (size_t)p[1] | (size_t)p[2] << 8;
	if (ekl != kl || evl != vl || memcmp(p + 3, k, kl) || memcmp(p + 3 + kl, v, vl))
		abort();
	return 0;
}

/* Entries of one bucket: [from, to) offsets, kept when strictly ascending. */
static void writer_round_trip(const uint8_t *d, size_t len)
{
	struct bbolt_writer *w = bbolt_writer_new();
	size_t *offs = malloc((len / 3 + 1) * sizeof *offs), nb = 0, n = 0, off = 0;
	size_t starts[9] = {0};
	uint8_t *file;
	size_t flen;
	char name[8], err[512];

	while (off < len && nb < 8) {
		if (d[off] == 0xff || !nb) { /* a new bucket */
			snprintf(name, sizeof name, "b%zu", nb);
			if (bbolt_writer_bucket(w, name))
				abort();
			starts[nb++] = n;
			if (d[off] == 0xff) {
				off++;
				continue;
			}
		}
		if (len - off < 3)
			break;
		size_t kl = d[off], vl = (size_t)d[off + 1] | (size_t)d[off + 2] << 8;
		if (len - off - 3 < kl + vl)
			break;
		int rc = bbolt_writer_put(w, d + off + 3, kl, d + off + 3 + kl, vl);
		if (rc == 0)
			offs[n++] = off;
		else if (rc != -EINVAL)
			abort();
		off += 3 + kl + vl;
	}
	starts[nb] = n;
	if (bbolt_writer_finish(w, 2, &file, &flen))
		abort();
	struct bbolt_db *db;
	if (bbolt_open(file, flen, &db, err, sizeof err))
		abort();
	for (size_t b = 0; b < nb; b++) {
		struct expect e = {d, offs + starts[b], starts[b + 1] - starts[b], 0};
		snprintf(name, sizeof name, "b%zu", b);
		if (bbolt_walk(db, name, expect_fn, &e, err, sizeof err) || e.next != e.n)
			abort();
	}
	bbolt_close(db);
	free(file);
	free(offs);
	bbolt_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 2) {
		writer_round_trip(data + 1, size - 1);
		return 0;
	}
	size_t len = size - 1;
	uint8_t *p = malloc(len ? len : 1);
	char err[512];
	struct bbolt_etcd_sink sink = {.kv = any_kv};
	struct bbolt_db *db;

	memcpy(p, data + 1, len);
	if (data[0] & 1) {
		fix_meta(p, len, 0);
		if (len >= 16 + 12) {
			uint32_t ps;
			memcpy(&ps, p + 16 + 8, 4);
			fix_meta(p, len, ps);
		}
	}
	err[0] = 0;
	int rc = bbolt_etcd_read(p, len, &sink, err, sizeof err);
	if (rc && (rc != -EBADMSG || !err[0]))
		abort();
	if (bbolt_open(p, len, &db, err, sizeof err) == 0) {
		struct last l = {.n = 0};
		err[0] = 0;
		rc = bbolt_walk(db, NULL, walk_fn, &l, err, sizeof err);
		if (rc && (rc != -EBADMSG || !err[0]))
			abort();
		bbolt_close(db);
	}
	free(p);
	return 0;
}
