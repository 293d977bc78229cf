/* A reader of bbolt database files, and of etcd's layout inside one (what `etcdctl snapshot
 * save` writes from etcd 3.4/3.5), for importing etcd's data into uetcd (tools/uetcd-restore).
 *
 * The file is held in memory by the caller and only read. Every page id, element offset and
 * length is checked against the file before use; trees are walked iteratively with a bound on
 * depth and each page visited at most once per walk, so a hostile file cannot loop, recurse
 * without end or read out of bounds. Every refusal is -EBADMSG with what is wrong in err.
 * The formats are the tables at the top of bbolt.c. */
#ifndef UETCD_STORAGE_BBOLT_H
#define UETCD_STORAGE_BBOLT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bbolt_db;

/* Whether p starts like a bbolt file (meta page 0's magic): a cheap test to pick a reader. */
bool bbolt_is_db(const uint8_t *p, size_t len);

/* Checks the meta pages and picks the newest valid one. 0 and *out (bbolt_close it), or
 * -EBADMSG with the reason in err, or -ENOMEM. p must outlive *out. */
int bbolt_open(const uint8_t *p, size_t len, struct bbolt_db **out, char *err, size_t errlen);
void bbolt_close(struct bbolt_db *db);
uint64_t bbolt_txid(const struct bbolt_db *db);

/* One entry: `bucket` says the value is a nested bucket's header (not followed). */
typedef int (*bbolt_kv_fn)(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
			   bool bucket);

/* Visits every entry of the top-level bucket `name` (NULL: the root bucket itself) in key
 * order. 0; -ENOENT when there is no such bucket; -EBADMSG (err says why; entries already
 * visited must then be discarded); or fn's non-zero result. */
int bbolt_walk(struct bbolt_db *db, const char *name, bbolt_kv_fn fn, void *arg, char *err, size_t errlen);

/* ---- etcd's buckets ---- */

/* bucket `meta` and `auth`; absent values are 0 / false. */
struct bbolt_etcd_meta {
	int64_t finished_compact_rev, scheduled_compact_rev;
	uint64_t consistent_index, term;
	bool auth_enabled;
	uint64_t auth_revision;
};

/* One record of bucket `key`: a version, or a tombstone (only key, mod_revision, sub). */
struct bbolt_etcd_kv {
	const uint8_t *key, *value;
	size_t key_len, value_len;
	int64_t mod_revision, sub, create_revision, version, lease;
	bool tomb;
};

/* Called in this order: meta once; each lease; each role, then its permissions; each user,
 * then its roles; then each key record in revision order. Any member may be NULL; non-zero
 * stops the read and is returned. Pointers point into the file. */
struct bbolt_etcd_sink {
	int (*meta)(void *arg, const struct bbolt_etcd_meta *m);
	int (*lease)(void *arg, int64_t id, int64_t ttl);
	int (*role)(void *arg, const uint8_t *name, size_t len);
	int (*role_perm)(void *arg, const uint8_t *role, size_t rlen, int type, const uint8_t *key, size_t klen,
			 const uint8_t *end, size_t elen);
	int (*user)(void *arg, const uint8_t *name, size_t len, const uint8_t *hash, size_t hash_len,
		    bool no_password);
	int (*user_role)(void *arg, const uint8_t *user, size_t ulen, const uint8_t *role, size_t rlen);
	int (*kv)(void *arg, const struct bbolt_etcd_kv *kv);
	void *arg;
};

/* Reads an etcd backend database (no SHA-256 trailer: the caller checks and strips it).
 * Buckets `key` and `meta` must exist; `lease`, `auth`, `authUsers`, `authRoles` may not.
 * 0, -EBADMSG with the reason, -ENOMEM, or the sink's result. */
int bbolt_etcd_read(const uint8_t *p, size_t len, const struct bbolt_etcd_sink *sink, char *err, size_t errlen);

/* ---- writing ---- */

struct bbolt_writer;

/* A database built in memory: top-level buckets of key/value pairs (no nested buckets),
 * written as bbolt does (page size BBOLT_PAGE_SIZE, two meta pages, an empty freelist,
 * leaves packed in key order, branch levels above them, an empty bucket inline). NULL when
 * out of memory. */
#define BBOLT_PAGE_SIZE 4096u
struct bbolt_writer *bbolt_writer_new(void);
void bbolt_writer_free(struct bbolt_writer *w);
/* Starts bucket `name` (at most BBOLT_NAME_MAX bytes); later puts go into it. Buckets may
 * come in any order but each name once. 0, -EINVAL, -ENOMEM. */
#define BBOLT_NAME_MAX 64
int bbolt_writer_bucket(struct bbolt_writer *w, const char *name);
/* Adds key = val to the current bucket; keys must come strictly ascending (-EINVAL
 * otherwise, or with no bucket started). The bytes are copied. 0, -EINVAL, -ENOMEM. */
int bbolt_writer_put(struct bbolt_writer *w, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen);
/* Lays out the pages; *out (malloc'd, the caller frees) and *len get the file. 0 or -ENOMEM.
 * The writer can be freed afterwards only. */
int bbolt_writer_finish(struct bbolt_writer *w, uint64_t txid, uint8_t **out, size_t *len);

#endif
