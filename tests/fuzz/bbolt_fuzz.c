/* Fuzz target: the bbolt reader (storage/bbolt.c) and etcd's records in it, the path
 * `uetcd-restore etcd.db` takes with a file from outside.
 *
 * input[0] is a mode byte; the rest is the database file.
 *   bit 0 set  forged: both meta pages (at 0 and at the page size meta 0 claims, when that
 *              fits) get a correct FNV-1a checksum, so mutations reach the tree walker,
 *              the element bounds and the protobuf records instead of dying at the meta.
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
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
