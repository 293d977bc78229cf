/* uetcd-restore: builds a new data directory from a snapshot or as of a past revision.
 *
 *   uetcd-restore SNAPSHOT_FILE --data-dir NEW_DIR
 *       SNAPSHOT_FILE is what `etcdctl snapshot save` wrote from uetcd (etcd's layout, below;
 *       before that, a checkpoint in etcd's envelope: zero padding and a SHA-256, both
 *       checked) or a checkpoint file.
 *       Or etcd's own snapshot (etcd 3.4/3.5's `etcdctl snapshot save`: a bbolt database
 *       followed by a SHA-256, checked): every key with its retained history, the compacted
 *       revision, the leases, users, roles and whether auth is enabled are imported (see
 *       storage/bbolt.h); members, alarms and etcd's auth revision are not.
 *   uetcd-restore --from-data-dir DIR --revision R --data-dir NEW_DIR
 *       point-in-time: NEW_DIR holds DIR's keys and history as of revision R, for any R
 *       from DIR's compacted revision to its last durable one. DIR is only read (the server
 *       may be running on it).
 *
 * NEW_DIR must not exist (as etcdutl's restore). It gets a new cluster and member id and
 * one checkpoint; start uetcd with --data-dir NEW_DIR. Leases come back with their granted
 * TTL, counted from the restart (as etcd's restore). Point-in-time: a lease revoked after R
 * whose keys R still holds is not in DIR any more; it is granted again with the minimum TTL
 * (its keys then expire soon after start, as they were deleted after R) and reported.
 *
 * Exit status: 0 restored; 1 the input is damaged or R is out of range; 2 usage; 3 I/O. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "core/auth.h"
#include "core/lease.h"
#include "core/qsbr.h"
#include "storage/bbolt.h"
#include "storage/ckpt.h"
#include "storage/meta.h"
#include "storage/mvcc.h"
#include "storage/recover.h"

static int usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s SNAPSHOT_FILE --data-dir NEW_DIR\n"
		"       %s --from-data-dir DIR --revision R --data-dir NEW_DIR\n",
		argv0, argv0);
	return 2;
}

static uint8_t *read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *p = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0 || !(p = malloc((size_t)st.st_size + 1))) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, p + got, (size_t)st.st_size - got);
		if (n <= 0) {
			free(p);
			close(fd);
			return NULL;
		}
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return p;
}

/* The checkpoint inside etcd's snapshot envelope; its length, or 0 with err set. */
static size_t unwrap(const uint8_t *p, size_t len, char *err, size_t errlen)
{
	uint8_t hash[WC_SHA256_DIGEST_SIZE];
	uint64_t total = ckpt_length(p, len, err, errlen);
	wc_Sha256 sha;

	if (!total)
		return 0;
	if (total > len) {
		snprintf(err, errlen, "cut short: the header promises %" PRIu64 " bytes", total);
		return 0;
	}
	size_t ck = (size_t)total;
	if (ck == len)
		return ck; /* a bare checkpoint */
	if (len % 512 != WC_SHA256_DIGEST_SIZE || len - WC_SHA256_DIGEST_SIZE < ck) {
		snprintf(err, errlen, "%zu bytes after the checkpoint are not etcd's snapshot envelope", len - ck);
		return 0;
	}
	for (size_t i = ck; i < len - WC_SHA256_DIGEST_SIZE; i++)
		if (p[i]) {
			snprintf(err, errlen, "offset %zu: padding is not zero", i);
			return 0;
		}
	wc_InitSha256(&sha);
	wc_Sha256Update(&sha, p, (word32)(len - WC_SHA256_DIGEST_SIZE));
	wc_Sha256Final(&sha, hash);
	wc_Sha256Free(&sha);
	if (memcmp(hash, p + len - WC_SHA256_DIGEST_SIZE, sizeof hash)) {
		snprintf(err, errlen, "SHA-256 mismatch: the snapshot is damaged");
		return 0;
	}
	return ck;
}

/* ---- etcd's snapshot (a bbolt database) ---- */

struct imp {
	struct bbolt_etcd_kv *kv; /* every record of bucket `key`, pointing into the file */
	size_t nkv, cap;
	struct ckpt_lease *leases;
	size_t nleases, lcap;
	struct auth *auth;
	struct bbolt_etcd_meta meta;
	char *err;
	size_t errlen;
};

static int imp_fail(struct imp *im, const char *what, const uint8_t *name, size_t len, int code)
{
	snprintf(im->err, im->errlen, "%s %.*s: %s (auth error %d)", what, (int)(len > 200 ? 200 : len),
		 (const char *)name, "refused by uetcd's auth rules", code);
	return -EBADMSG;
}

static int imp_meta(void *arg, const struct bbolt_etcd_meta *m)
{
	((struct imp *)arg)->meta = *m;
	return 0;
}

static int imp_lease(void *arg, int64_t id, int64_t ttl)
{
	struct imp *im = arg;

	if (im->nleases == im->lcap) {
		size_t cap = im->lcap ? im->lcap * 2 : 64;
		struct ckpt_lease *l = realloc(im->leases, cap * sizeof *l);
		if (!l)
			return -ENOMEM;
		im->leases = l;
		im->lcap = cap;
	}
	/* etcd restarts a lease with its granted TTL, as uetcd does for its own snapshots */
	im->leases[im->nleases++] = (struct ckpt_lease){id, ttl < LEASE_MIN_TTL ? LEASE_MIN_TTL : ttl};
	return 0;
}

static int imp_role(void *arg, const uint8_t *name, size_t len)
{
	struct imp *im = arg;
	int rc = auth_role_add(im->auth, name, len);
	return rc ? imp_fail(im, "role", name, len, rc) : 0;
}

static int imp_role_perm(void *arg, const uint8_t *role, size_t rlen, int type, const uint8_t *key, size_t klen,
			 const uint8_t *end, size_t elen)
{
	struct imp *im = arg;
	int rc = auth_role_grant_permission(im->auth, role, rlen, type, key, klen, end, elen);
	return rc ? imp_fail(im, "permission of role", role, rlen, rc) : 0;
}

static int imp_user(void *arg, const uint8_t *name, size_t len, const uint8_t *hash, size_t hash_len, bool nopw)
{
	struct imp *im = arg;
	int rc = auth_user_add(im->auth, name, len, hash, hash_len, nopw);
	return rc ? imp_fail(im, "user", name, len, rc) : 0;
}

static int imp_user_role(void *arg, const uint8_t *user, size_t ulen, const uint8_t *role, size_t rlen)
{
	struct imp *im = arg;
	int rc = auth_user_grant_role(im->auth, user, ulen, role, rlen);
	return rc ? imp_fail(im, "role grant of user", user, ulen, rc) : 0;
}

static int imp_kv(void *arg, const struct bbolt_etcd_kv *kv)
{
	struct imp *im = arg;

	if (im->nkv == im->cap) {
		size_t cap = im->cap ? im->cap * 2 : 1024;
		struct bbolt_etcd_kv *k = realloc(im->kv, cap * sizeof *k);
		if (!k)
			return -ENOMEM;
		im->kv = k;
		im->cap = cap;
	}
	im->kv[im->nkv++] = *kv;
	return 0;
}

/* Key ascending, then newest first: the order mvcc_load_key takes. */
static int imp_kv_cmp(const void *a, const void *b)
{
	const struct bbolt_etcd_kv *x = a, *y = b;
	int c = memcmp(x->key, y->key, x->key_len < y->key_len ? x->key_len : y->key_len);

	if (c || x->key_len != y->key_len)
		return c ? c : x->key_len < y->key_len ? -1 : 1;
	if (x->mod_revision != y->mod_revision)
		return x->mod_revision > y->mod_revision ? -1 : 1;
	return x->sub > y->sub ? -1 : x->sub < y->sub;
}

/* Builds the store from the records and writes dir's checkpoint. */
static int import_store(struct imp *im, const char *dir)
{
	struct qsbr *q = qsbr_new(1);
	struct mvcc_store *s = mvcc_store_new(q);
	struct mvcc_stored *vers = malloc((im->nkv + 1) * sizeof *vers);
	int64_t rev = 1, compact = im->meta.finished_compact_rev;
	struct mvcc_view v;
	uint8_t *ab = NULL;
	size_t alen = 0;
	uint64_t bytes;
	int rc = 1;

	/* etcd finishes a compaction it had scheduled when it starts: so does the import */
	if (im->meta.scheduled_compact_rev > compact)
		compact = im->meta.scheduled_compact_rev;
	for (size_t i = 0; i < im->nkv; i++) {
		if (im->kv[i].mod_revision > rev)
			rev = im->kv[i].mod_revision;
		if (im->kv[i].sub > UINT32_MAX) {
			snprintf(im->err, im->errlen, "revision %" PRId64 ": sub-revision %" PRId64 " out of range",
				 im->kv[i].mod_revision, im->kv[i].sub);
			goto out;
		}
	}
	if (compact > rev)
		rev = compact; /* as etcd: the revision never goes below the compacted one */
	if (im->nkv)
		qsort(im->kv, im->nkv, sizeof *im->kv, imp_kv_cmp);
	if (!vers || mvcc_load_begin(s, rev, -1)) {
		snprintf(im->err, im->errlen, vers ? "revision %" PRId64 " out of range" : "out of memory", rev);
		goto out;
	}
	for (size_t i = 0, j; i < im->nkv; i = j) {
		for (j = i; j < im->nkv && im->kv[j].key_len == im->kv[i].key_len &&
			    !memcmp(im->kv[j].key, im->kv[i].key, im->kv[i].key_len);
		     j++) {
			const struct bbolt_etcd_kv *k = &im->kv[j];
			vers[j - i] = (struct mvcc_stored){.value = k->value,
							   .value_len = k->value_len,
							   .mod_revision = k->mod_revision,
							   .create_revision = k->create_revision,
							   .version = k->version,
							   .lease = k->lease,
							   .sub = (uint32_t)k->sub,
							   .tomb = k->tomb};
		}
		if (mvcc_load_key(s, im->kv[i].key, im->kv[i].key_len, vers, j - i)) {
			snprintf(im->err, im->errlen, "key %.*s: its versions break the store's rules (revision %" PRId64 ")",
				 (int)(im->kv[i].key_len > 200 ? 200 : im->kv[i].key_len), (const char *)im->kv[i].key,
				 im->kv[i].mod_revision);
			goto out;
		}
	}
	mvcc_publish(s);
	if (compact > 0 && (rc = mvcc_compact(s, compact))) {
		snprintf(im->err, im->errlen, "compaction at %" PRId64 " failed (%d)", compact, rc);
		rc = 1;
		goto out;
	}
	mvcc_publish(s);
	if (im->meta.auth_enabled && (rc = auth_enable(im->auth))) {
		snprintf(im->err, im->errlen, "auth is enabled but cannot be here: auth error %d (no root user or role)", rc);
		rc = 1;
		goto out;
	}
	rc = 3;
	alen = auth_state_size(im->auth);
	if (!(ab = malloc(alen)) || auth_state_encode(im->auth, ab, alen) < 0) {
		snprintf(im->err, im->errlen, "out of memory");
		goto out;
	}
	mvcc_view_published(s, &v);
	rc = ckpt_save_x(dir, &v, 1, &(struct ckpt_extra){im->leases, im->nleases, ab, alen, 0}, false, &bytes, NULL);
	if (rc) {
		snprintf(im->err, im->errlen, "cannot write the checkpoint in %s: %s", dir, strerror(-rc));
		rc = 3;
		goto out;
	}
	printf("imported etcd's snapshot: revision %" PRId64 " (compacted %" PRId64 "): %" PRIu64
	       " keys, %zu versions, %zu leases, %zu users, %zu roles, auth %s\n",
	       v.rev, compact, mvcc_keys_live(s), im->nkv, im->nleases, auth_user_count(im->auth),
	       auth_role_count(im->auth), auth_is_enabled(im->auth) ? "enabled" : "disabled");
	rc = 0;
out:
	free(ab);
	free(vers);
	mvcc_store_free(s);
	qsbr_free(q);
	return rc;
}

/* etcd's snapshot: the database, then (from `etcdctl snapshot save`) its SHA-256 — checked
 * as etcdutl does: present when the size is 32 past a multiple of 512. */
static int import_etcd(const uint8_t *p, size_t len, const char *file, const char *dir)
{
	char err[1024] = "";
	struct imp im = {.auth = auth_new(), .err = err, .errlen = sizeof err};
	struct bbolt_etcd_sink sink = {imp_meta, imp_lease, imp_role, imp_role_perm, imp_user, imp_user_role, imp_kv, &im};
	int rc;

	if (len % 512 == WC_SHA256_DIGEST_SIZE) {
		uint8_t hash[WC_SHA256_DIGEST_SIZE];
		wc_Sha256 sha;
		len -= WC_SHA256_DIGEST_SIZE;
		wc_InitSha256(&sha);
		wc_Sha256Update(&sha, p, (word32)len);
		wc_Sha256Final(&sha, hash);
		wc_Sha256Free(&sha);
		if (memcmp(hash, p + len, sizeof hash)) {
			fprintf(stderr, "%s: SHA-256 mismatch: the snapshot is damaged\n", file);
			rc = 1;
			goto out;
		}
	} else if (len % 512) {
		fprintf(stderr, "%s: %zu bytes: neither a bbolt database nor one followed by a SHA-256\n", file, len);
		rc = 1;
		goto out;
	} else
		fprintf(stderr, "%s: no SHA-256 trailer (a copy of member/snap/db?): integrity not checked\n", file);
	rc = bbolt_etcd_read(p, len, &sink, err, sizeof err);
	if (rc) {
		fprintf(stderr, "%s: %s\n", file, err[0] ? err : strerror(-rc));
		rc = rc == -ENOMEM ? 3 : 1;
		goto out;
	}
	if ((rc = import_store(&im, dir)))
		fprintf(stderr, "%s: %s\n", file, err);
out:
	free(im.kv);
	free(im.leases);
	auth_free(im.auth);
	return rc;
}

static int restore_snapshot(const char *file, const char *dir)
{
	char err[1024] = "", tmp[PATH_MAX + 32];
	size_t len, ck;
	uint8_t *p = read_file(file, &len);
	int rc;

	if (!p) {
		fprintf(stderr, "cannot read %s: %s\n", file, strerror(errno));
		return 3;
	}
	if (bbolt_is_db(p, len)) {
		rc = import_etcd(p, len, file, dir);
		free(p);
		return rc;
	}
	if (len < 8 || memcmp(p, "uetcdckp", 8)) {
		fprintf(stderr, "%s: bad magic: neither a bbolt database (etcd's snapshot) nor a uetcd checkpoint\n", file);
		free(p);
		return 1;
	}
	if (!(ck = unwrap(p, len, err, sizeof err)) || (rc = ckpt_parse(p, ck, NULL, err, sizeof err))) {
		fprintf(stderr, "%s: %s\n", file, err);
		free(p);
		return 1;
	}
	snprintf(tmp, sizeof tmp, "%s/restore.tmp", dir);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, p, ck) != (ssize_t)ck || close(fd) < 0) {
		fprintf(stderr, "cannot write %s: %s\n", tmp, strerror(errno));
		free(p);
		return 3;
	}
	free(p);
	rc = ckpt_install(dir, tmp, 1, err, sizeof err);
	unlink(tmp);
	if (rc) {
		fprintf(stderr, "cannot install the checkpoint in %s: %s\n", dir, err[0] ? err : strerror(-rc));
		return rc == -EBADMSG ? 1 : 3;
	}
	return 0;
}

struct pitr {
	struct lease_table *leases;
	uint64_t regranted;
	struct auth *auth; /* as of the revision: the checkpoint's, then the log's changes */
	uint8_t *auth_bytes;
	size_t auth_len;
	uint32_t alarms;
};

static void pitr_alarms(void *arg, uint32_t alarms) { ((struct pitr *)arg)->alarms = alarms; }

static int pitr_auth_state(void *arg, const uint8_t *b, size_t len)
{
	struct pitr *p = arg;
	int err;
	struct auth *a = auth_state_decode(b, len, &err);

	if (!a)
		return -1;
	auth_free(p->auth);
	p->auth = a;
	return 0;
}

static int pitr_auth_op(void *arg, const uint8_t *b, size_t len)
{
	struct pitr *p = arg;
	struct auth_op op;

	if (auth_op_decode(b, len, &op))
		return -1;
	auth_apply(p->auth, &op);
	return 0;
}

static void pitr_grant(void *arg, int64_t id, int64_t ttl)
{
	struct pitr *p = arg;
	if (!lease_exists(p->leases, id))
		lease_grant(p->leases, id, ttl, 0);
}

static void pitr_revoke(void *arg, int64_t id)
{
	struct pitr *p = arg;
	lease_revoke(p->leases, id, NULL, NULL);
}

static int pitr_missing_lease(void *arg, const struct mvcc_kv *kv)
{
	struct pitr *p = arg;

	if (kv->lease && !lease_exists(p->leases, kv->lease)) {
		lease_grant(p->leases, kv->lease, LEASE_MIN_TTL, 0);
		p->regranted++;
	}
	return 0;
}

static int restore_at(const char *from, int64_t rev, const char *dir)
{
	struct qsbr *q = qsbr_new(1);
	struct mvcc_store *s = mvcc_store_new(q);
	struct pitr p = {.leases = lease_table_new(0), .auth = auth_new()};
	struct recover_hooks hooks = {pitr_grant, pitr_revoke, pitr_auth_op, pitr_auth_state, pitr_alarms, &p};
	struct mvcc_view v;
	char err[1024];
	static const uint8_t all = 0;
	uint64_t bytes;
	int rc;

	if ((rc = recover_at(from, rev, s, &hooks, err, sizeof err))) {
		fprintf(stderr, "%s: %s\n", from, err[0] ? err : strerror(-rc));
		return rc == -EBADMSG || rc == -ERANGE ? 1 : 3;
	}
	mvcc_view_published(s, &v);
	mvcc_range(&v, &all, 1, &all, 1, 0, false, pitr_missing_lease, &p);
	struct ckpt_lease *lv = malloc((lease_count(p.leases) + 1) * sizeof *lv);
	if (!lv)
		return 3;
	size_t nl = lease_export(p.leases, lv);
	p.auth_len = auth_state_size(p.auth);
	if (!(p.auth_bytes = malloc(p.auth_len)) || auth_state_encode(p.auth, p.auth_bytes, p.auth_len) < 0)
		return 3;
	rc = ckpt_save_x(dir, &v, 1, &(struct ckpt_extra){lv, nl, p.auth_bytes, p.auth_len, p.alarms}, false, &bytes,
			 NULL);
	if (rc) {
		fprintf(stderr, "cannot write the checkpoint in %s: %s\n", dir, strerror(-rc));
		return 3;
	}
	printf("revision %" PRId64 " (compacted %" PRId64 "): %" PRIu64 " keys, %zu leases", v.rev, v.compact_rev,
	       mvcc_keys_live(s), nl);
	if (p.regranted)
		printf(" (%" PRIu64 " revoked after revision %" PRId64 " granted again with TTL %d s)", p.regranted,
		       v.rev, LEASE_MIN_TTL);
	printf("\n");
	free(lv);
	free(p.auth_bytes);
	auth_free(p.auth);
	lease_table_free(p.leases);
	mvcc_store_free(s);
	qsbr_free(q);
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path);
}

int main(int argc, char **argv)
{
	const char *file = NULL, *from = NULL, *dir = NULL, *revs = NULL;
	struct meta m;
	struct stat st;
	int rc;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq = strchr(a, '=');
		const char **slot = NULL;
		size_t n = eq ? (size_t)(eq - a) : strlen(a);
		if (n == 10 && !strncmp(a, "--data-dir", n))
			slot = &dir;
		else if (n == 15 && !strncmp(a, "--from-data-dir", n))
			slot = &from;
		else if (n == 10 && !strncmp(a, "--revision", n))
			slot = &revs;
		else if (a[0] != '-' && !file) {
			file = a;
			continue;
		} else
			return usage(argv[0]);
		if (eq)
			*slot = eq + 1;
		else if (i + 1 < argc)
			*slot = argv[++i];
		else
			return usage(argv[0]);
	}
	if (!dir || (!file == !from) || (!from != !revs))
		return usage(argv[0]);
	char *end;
	int64_t rev = revs ? strtoll(revs, &end, 10) : 0;
	if (revs && (*end || rev < 1)) {
		fprintf(stderr, "--revision %s: not a revision\n", revs);
		return 2;
	}
	if (stat(dir, &st) == 0) {
		fprintf(stderr, "data-dir %s exists\n", dir);
		return 1;
	}
	if ((rc = meta_open(dir, &m)) < 0) { /* creates the directory with new ids */
		fprintf(stderr, "cannot create %s: %s\n", dir, strerror(-rc));
		return 3;
	}
	rc = file ? restore_snapshot(file, dir) : restore_at(from, rev, dir);
	if (rc) {
		/* leave nothing half-made: the directory is ours, created above */
		if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
			fprintf(stderr, "could not remove %s: %s\n", dir, strerror(errno));
		return rc;
	}
	printf("restored into %s (cluster id %016" PRIx64 ", member id %016" PRIx64 ")\n", dir, m.cluster_id,
	       m.member_id);
	return 0;
}
