/* Checkpoint files (see ckpt.h).
 *
 * Header (64 bytes, little-endian):
 *   offset  size  field
 *   0       8     magic "uetcdckp"
 *   8       4     format version = 1
 *   12      4     header size = 64
 *   16      8     revision (i64 >= 1)
 *   24      8     compacted revision (i64 >= -1, <= revision)
 *   32      8     log segment replay starts at (u64)
 *   40      8     body length in bytes
 *   48      8     XXH3-64 of the body
 *   56      8     XXH3-64 of bytes 0..55
 *
 * Body: entries, each a tag byte and its fields; leases first, then keys in strictly
 * ascending order, then exactly one end entry, which is the last thing in the body.
 *   0x01 lease   id i64, ttl i64                                              (16 bytes)
 *   0x03 auth    length u64 (> 0), then the auth state (core/auth.h's bytes); at most
 *                one, after the leases and before the keys
 *   0x04 alarms  u32: the active alarms (1 << AlarmType), not 0; at most one, after the
 *                leases and the auth entry, before the keys
 *   0x02 key     key length u32, version count u32 (>= 1), the key, then per version,
 *                newest first: mod_revision i64, create_revision i64, version i64,
 *                lease i64, sub u32, flags u8 (bit 0: tombstone; others 0), value
 *                length u32, the value                                (41 bytes + value)
 *   0x7f end     keys u64, versions u64, leases u64: the counts of the entries above
 *
 * Only the end entry tells a complete file from a cut one whose checksums happen to hold;
 * the counts catch a writer that lost entries. */
#include "storage/ckpt.h"
#include "storage/le.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/log.h"
#include "storage/mvcc.h"

#define CKPT_VERSION 1u
#define TAG_LEASE 0x01
#define TAG_KEY 0x02
#define TAG_AUTH 0x03
#define TAG_ALARMS 0x04
#define TAG_END 0x7f
#define VER_BYTES 41u
#define CKPT_PATH_MAX (PATH_MAX + 48)
static const char ckpt_magic[8] = {'u', 'e', 't', 'c', 'd', 'c', 'k', 'p'};

/* ---- parsing ---- */

static void hdr_encode(uint8_t *p, const struct ckpt_header *h, uint64_t body_len, uint64_t body_sum)
{
	memcpy(p, ckpt_magic, 8);
	le_put32(p + 8, CKPT_VERSION);
	le_put32(p + 12, CKPT_HDR);
	le_put64(p + 16, (uint64_t)h->rev);
	le_put64(p + 24, (uint64_t)h->compact_rev);
	le_put64(p + 32, h->log_seq);
	le_put64(p + 40, body_len);
	le_put64(p + 48, body_sum);
	le_put64(p + 56, XXH3_64bits(p, 56));
}

/* Checks the header alone; fills h and the body's length and checksum. NULL or why not. */
static const char *hdr_decode(const uint8_t *p, size_t len, struct ckpt_header *h, uint64_t *body_len,
			      uint64_t *body_sum)
{
	if (len < CKPT_HDR)
		return "shorter than a checkpoint header";
	if (memcmp(p, ckpt_magic, 8))
		return "not a uetcd checkpoint (bad magic)";
	if (le_get64(p + 56) != XXH3_64bits(p, 56))
		return "header checksum mismatch";
	if (le_get32(p + 8) != CKPT_VERSION || le_get32(p + 12) != CKPT_HDR)
		return "unknown checkpoint format version";
	h->rev = (int64_t)le_get64(p + 16);
	h->compact_rev = (int64_t)le_get64(p + 24);
	h->log_seq = le_get64(p + 32);
	*body_len = le_get64(p + 40);
	*body_sum = le_get64(p + 48);
	if (h->rev < 1 || h->rev == INT64_MAX || h->compact_rev < -1 || h->compact_rev > h->rev)
		return "revisions out of range"; /* INT64_MAX: no next revision to write */
	return NULL;
}

struct ckpt_parser {
	const uint8_t *p;
	size_t len, off;
	struct mvcc_stored *vers;
	size_t cap;
};

static bool need(const struct ckpt_parser *c, uint64_t n) { return n <= c->len - c->off; }

static int ckpt_fail(char *err, size_t errlen, size_t off, const char *why)
{
	if (err && errlen)
		snprintf(err, errlen, "offset %zu: %s", off, why);
	return -EBADMSG;
}

/* Reads one key entry (the tag consumed) into c->vers; NULL or why not. */
static const char *parse_key(struct ckpt_parser *c, const struct ckpt_header *h, const uint8_t **key,
			     uint32_t *key_len, uint32_t *n)
{
	if (!need(c, 8))
		return "key entry cut short";
	*key_len = le_get32(c->p + c->off);
	*n = le_get32(c->p + c->off + 4);
	c->off += 8;
	/* every version takes VER_BYTES: the count cannot promise more than the body holds */
	if (!need(c, *key_len) || *n == 0 || *n > (c->len - c->off - *key_len) / VER_BYTES)
		return "key entry lengths out of range";
	*key = c->p + c->off;
	c->off += *key_len;
	if (*n > c->cap) {
		size_t cap = c->cap ? c->cap : 16;
		while (cap < *n)
			cap *= 2;
		struct mvcc_stored *v = realloc(c->vers, cap * sizeof *v);
		if (!v)
			log_fatal("ckpt: out of memory");
		c->vers = v;
		c->cap = cap;
	}
	for (uint32_t i = 0; i < *n; i++) {
		struct mvcc_stored *v = &c->vers[i];
		const uint8_t *q;
		if (!need(c, VER_BYTES))
			return "version cut short";
		q = c->p + c->off;
		v->mod_revision = (int64_t)le_get64(q);
		v->create_revision = (int64_t)le_get64(q + 8);
		v->version = (int64_t)le_get64(q + 16);
		v->lease = (int64_t)le_get64(q + 24);
		v->sub = le_get32(q + 32);
		if (q[36] & ~1u)
			return "unknown version flags";
		v->tomb = q[36] & 1;
		v->value_len = le_get32(q + 37);
		c->off += VER_BYTES;
		if (!need(c, v->value_len))
			return "value cut short";
		v->value = c->p + c->off;
		c->off += v->value_len;
		if (v->mod_revision < 1 || v->mod_revision > h->rev)
			return "version revision out of range";
	}
	return NULL;
}

int ckpt_parse(const uint8_t *p, size_t len, const struct ckpt_sink *sink, char *err, size_t errlen)
{
	static const struct ckpt_sink none;
	struct ckpt_parser c = {.p = p};
	struct ckpt_header h;
	uint64_t body_len, body_sum, keys = 0, versions = 0, leases = 0;
	const uint8_t *prev_key = NULL;
	uint32_t prev_len = 0;
	bool seen_auth = false, seen_alarms = false;
	const char *why;
	int rc = 0;

	if (!sink)
		sink = &none;
	if ((why = hdr_decode(p, len, &h, &body_len, &body_sum)))
		return ckpt_fail(err, errlen, 0, why);
	if (body_len != len - CKPT_HDR)
		return ckpt_fail(err, errlen, len, "length differs from the header's (a cut or padded file)");
	if (XXH3_64bits(p + CKPT_HDR, body_len) != body_sum)
		return ckpt_fail(err, errlen, CKPT_HDR, "body checksum mismatch");
	c.len = len;
	c.off = CKPT_HDR;
	if (sink->header && (rc = sink->header(sink->arg, &h)))
		return rc;
	for (;;) {
		size_t at = c.off;
		uint8_t tag;
		if (!need(&c, 1)) {
			rc = ckpt_fail(err, errlen, at, "no end entry");
			break;
		}
		tag = p[c.off++];
		if (tag == TAG_END) {
			if (!need(&c, 24) || c.off + 24 != len) {
				rc = ckpt_fail(err, errlen, at, "end entry is not the last 25 bytes");
			} else if (le_get64(p + c.off) != keys || le_get64(p + c.off + 8) != versions ||
				   le_get64(p + c.off + 16) != leases) {
				rc = ckpt_fail(err, errlen, at, "entry counts differ from the end entry's");
			}
			break;
		}
		if (tag == TAG_LEASE) {
			if (keys || seen_auth || seen_alarms) {
				rc = ckpt_fail(err, errlen, at, "lease entry after a key or auth entry");
				break;
			}
			if (!need(&c, 16)) {
				rc = ckpt_fail(err, errlen, at, "lease entry cut short");
				break;
			}
			int64_t id = (int64_t)le_get64(p + c.off), ttl = (int64_t)le_get64(p + c.off + 8);
			c.off += 16;
			leases++;
			if (id == 0 || ttl < 1) {
				rc = ckpt_fail(err, errlen, at, "lease id or TTL out of range");
				break;
			}
			if (sink->lease && (rc = sink->lease(sink->arg, id, ttl)))
				break;
			continue;
		}
		if (tag == TAG_AUTH) {
			if (keys || seen_auth || seen_alarms) {
				rc = ckpt_fail(err, errlen, at, "auth entry out of place");
				break;
			}
			if (!need(&c, 8) || !need(&c, 8 + le_get64(p + c.off))) {
				rc = ckpt_fail(err, errlen, at, "auth entry cut short");
				break;
			}
			uint64_t alen = le_get64(p + c.off);
			if (!alen) { /* the writer leaves the entry out when there is no auth state */
				rc = ckpt_fail(err, errlen, at, "empty auth entry");
				break;
			}
			seen_auth = true;
			if (sink->auth && (rc = sink->auth(sink->arg, p + c.off + 8, (size_t)alen)))
				break;
			c.off += 8 + alen;
			continue;
		}
		if (tag == TAG_ALARMS) {
			if (keys || seen_alarms) {
				rc = ckpt_fail(err, errlen, at, "alarms entry out of place");
				break;
			}
			if (!need(&c, 4) || !le_get32(p + c.off)) {
				rc = ckpt_fail(err, errlen, at, "alarms entry cut short or empty");
				break;
			}
			seen_alarms = true;
			if (sink->alarms && (rc = sink->alarms(sink->arg, le_get32(p + c.off))))
				break;
			c.off += 4;
			continue;
		}
		if (tag != TAG_KEY) {
			rc = ckpt_fail(err, errlen, at, "unknown entry type");
			break;
		}
		const uint8_t *key;
		uint32_t key_len, n;
		if ((why = parse_key(&c, &h, &key, &key_len, &n))) {
			rc = ckpt_fail(err, errlen, at, why);
			break;
		}
		size_t common = key_len < prev_len ? key_len : prev_len;
		int cmp = prev_key ? memcmp(prev_key, key, common) : -1;
		if (prev_key && (cmp > 0 || (cmp == 0 && prev_len >= key_len))) {
			rc = ckpt_fail(err, errlen, at, "keys out of order");
			break;
		}
		prev_key = key;
		prev_len = key_len;
		keys++;
		versions += n;
		if (sink->key && (rc = sink->key(sink->arg, key, key_len, c.vers, n)))
			break;
	}
	free(c.vers);
	return rc;
}

uint64_t ckpt_length(const uint8_t *p, size_t len, char *err, size_t errlen)
{
	struct ckpt_header h;
	uint64_t body_len, body_sum;
	const char *why = hdr_decode(p, len, &h, &body_len, &body_sum);

	if (!why && body_len > UINT64_MAX - CKPT_HDR)
		why = "body length out of range";
	if (why) {
		ckpt_fail(err, errlen, 0, why);
		return 0;
	}
	return CKPT_HDR + body_len;
}

int ckpt_load_file(const char *path, const struct ckpt_sink *sink, char *err, size_t errlen)
{
	struct stat st;
	void *m;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		close(fd);
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	if (st.st_size < CKPT_HDR) {
		close(fd);
		snprintf(err, errlen, "%s: shorter than a checkpoint header", path);
		return -EBADMSG;
	}
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED) {
		rc = -errno;
		snprintf(err, errlen, "%s: mmap: %s", path, strerror(-rc));
		return rc;
	}
	madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
	char why[256] = "";
	rc = ckpt_parse(m, (size_t)st.st_size, sink, why, sizeof why);
	if (rc && why[0]) /* the parser's finding; a callback's failure is the callback's to tell */
		snprintf(err, errlen, "%s %s", path, why);
	munmap(m, (size_t)st.st_size);
	return rc;
}

/* ---- writing ---- */

#define WBUF_BYTES (1u << 20)

struct ckpt_out {
	int fd;
	uint8_t *buf;
	size_t len;
	uint64_t body;
	XXH3_state_t *sum;
	int err;
	uint64_t keys, versions;
};

static void out_flush(struct ckpt_out *o)
{
	size_t done = 0;

	XXH3_64bits_update(o->sum, o->buf, o->len);
	while (done < o->len && !o->err) {
		ssize_t n = write(o->fd, o->buf + done, o->len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			o->err = n < 0 ? -errno : -EIO;
		else
			done += (size_t)n;
	}
	o->body += o->len;
	o->len = 0;
}

static void out_bytes(struct ckpt_out *o, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n && !o->err) {
		size_t room = WBUF_BYTES - o->len, k = n < room ? n : room;
		memcpy(o->buf + o->len, b, k);
		o->len += k;
		b += k;
		n -= k;
		if (o->len == WBUF_BYTES)
			out_flush(o);
	}
}

static int out_key(void *arg, const uint8_t *key, size_t key_len, const struct mvcc_stored *vers, size_t n)
{
	struct ckpt_out *o = arg;
	uint8_t hdr[9], v[VER_BYTES];

	hdr[0] = TAG_KEY;
	le_put32(hdr + 1, (uint32_t)key_len);
	le_put32(hdr + 5, (uint32_t)n);
	out_bytes(o, hdr, sizeof hdr);
	out_bytes(o, key, key_len);
	for (size_t i = 0; i < n; i++) {
		le_put64(v, (uint64_t)vers[i].mod_revision);
		le_put64(v + 8, (uint64_t)vers[i].create_revision);
		le_put64(v + 16, (uint64_t)vers[i].version);
		le_put64(v + 24, (uint64_t)vers[i].lease);
		le_put32(v + 32, vers[i].sub);
		v[36] = vers[i].tomb ? 1 : 0;
		le_put32(v + 37, (uint32_t)vers[i].value_len);
		out_bytes(o, v, sizeof v);
		out_bytes(o, vers[i].value, vers[i].value_len);
	}
	o->keys++;
	o->versions += n;
	return o->err;
}

int ckpt_write_fd(int fd, const struct mvcc_view *v, uint64_t log_seq, const struct ckpt_lease *leases,
		  size_t nleases, uint64_t *bytes, struct ckpt_header *out)
{
	return ckpt_write_fd_x(fd, v, log_seq, &(struct ckpt_extra){.leases = leases, .nleases = nleases}, bytes, out);
}

int ckpt_write_fd_x(int fd, const struct mvcc_view *v, uint64_t log_seq, const struct ckpt_extra *x, uint64_t *bytes,
		    struct ckpt_header *out)
{
	struct ckpt_out o = {.fd = fd};
	struct ckpt_header h = {.rev = v->rev, .log_seq = log_seq};
	uint8_t hdr[CKPT_HDR] = {0}, e[25];
	off_t start = lseek(fd, 0, SEEK_CUR);
	int rc;

	if (start < 0)
		return -errno;
	o.buf = malloc(WBUF_BYTES);
	o.sum = XXH3_createState();
	if (!o.buf || !o.sum)
		log_fatal("ckpt: out of memory");
	XXH3_64bits_reset(o.sum);
	/* the header goes last, once the body's length, checksum and compaction are known */
	if (pwrite(fd, hdr, sizeof hdr, start) != (ssize_t)sizeof hdr || lseek(fd, start + CKPT_HDR, SEEK_SET) < 0) {
		rc = errno ? -errno : -EIO;
		goto done;
	}
	for (size_t i = 0; i < x->nleases; i++) {
		uint8_t l[17];
		l[0] = TAG_LEASE;
		le_put64(l + 1, (uint64_t)x->leases[i].id);
		le_put64(l + 9, (uint64_t)x->leases[i].ttl);
		out_bytes(&o, l, sizeof l);
	}
	if (x->auth_len) {
		uint8_t a[9];
		a[0] = TAG_AUTH;
		le_put64(a + 1, x->auth_len);
		out_bytes(&o, a, sizeof a);
		out_bytes(&o, x->auth, x->auth_len);
	}
	if (x->alarms) {
		uint8_t a[5];
		a[0] = TAG_ALARMS;
		le_put32(a + 1, x->alarms);
		out_bytes(&o, a, sizeof a);
	}
	rc = mvcc_dump(v, out_key, &o, &h.compact_rev);
	if (rc)
		goto done;
	e[0] = TAG_END;
	le_put64(e + 1, o.keys);
	le_put64(e + 9, o.versions);
	le_put64(e + 17, x->nleases);
	out_bytes(&o, e, sizeof e);
	out_flush(&o);
	if ((rc = o.err))
		goto done;
	hdr_encode(hdr, &h, o.body, XXH3_64bits_digest(o.sum));
	if (pwrite(fd, hdr, sizeof hdr, start) != (ssize_t)sizeof hdr) {
		rc = errno ? -errno : -EIO;
		goto done;
	}
	*bytes = CKPT_HDR + o.body;
	if (out)
		*out = h;
done:
	free(o.buf);
	XXH3_freeState(o.sum);
	return rc ? rc : o.err;
}

/* ---- the data directory ---- */

static int ckpt_dir(const char *data_dir, char *out, size_t outlen, bool create)
{
	if ((size_t)snprintf(out, outlen, "%s/snap", data_dir) >= outlen)
		return -ENAMETOOLONG;
	if (create && mkdir(out, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

static bool ckpt_name(const char *nm, uint64_t *rev)
{
	size_t n = strlen(nm);

	if (n != 21 || strcmp(nm + 16, ".ckpt"))
		return false;
	for (int i = 0; i < 16; i++)
		if (!((nm[i] >= '0' && nm[i] <= '9') || (nm[i] >= 'a' && nm[i] <= 'f')))
			return false;
	*rev = strtoull(nm, NULL, 16);
	return true;
}

/* Deletes every checkpoint but `keep` (a file name; NULL: none is deleted), and temporary
 * files when `tmp`. */
static int ckpt_prune(const char *dir, const char *keep, bool tmp)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[CKPT_PATH_MAX];
	uint64_t rev;
	int removed = 0;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		bool is_tmp = n > 4 && !strcmp(de->d_name + n - 4, ".tmp");
		if ((keep && ckpt_name(de->d_name, &rev) && strcmp(de->d_name, keep)) || (tmp && is_tmp)) {
			snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
			if (unlink(path) == 0)
				removed++;
		}
	}
	closedir(d);
	return removed;
}

int ckpt_save(const char *data_dir, const struct mvcc_view *v, uint64_t log_seq, const struct ckpt_lease *leases,
	      size_t nleases, bool no_fsync, uint64_t *bytes, struct ckpt_header *out)
{
	return ckpt_save_x(data_dir, v, log_seq, &(struct ckpt_extra){.leases = leases, .nleases = nleases}, no_fsync,
			   bytes, out);
}

int ckpt_save_x(const char *data_dir, const struct mvcc_view *v, uint64_t log_seq, const struct ckpt_extra *x,
		bool no_fsync, uint64_t *bytes, struct ckpt_header *out)
{
	char dir[PATH_MAX], tmp[CKPT_PATH_MAX], path[CKPT_PATH_MAX], name[32];
	struct ckpt_header h;
	int fd, rc;

	if ((rc = ckpt_dir(data_dir, dir, sizeof dir, true)))
		return rc;
	snprintf(tmp, sizeof tmp, "%s/%016" PRIx64 ".ckpt.tmp", dir, (uint64_t)v->rev);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = ckpt_write_fd_x(fd, v, log_seq, x, bytes, &h);
	if (!rc && !no_fsync && fdatasync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc) {
		unlink(tmp);
		return rc;
	}
	snprintf(name, sizeof name, "%016" PRIx64 ".ckpt", (uint64_t)h.rev);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (rename(tmp, path) < 0) {
		rc = -errno;
		unlink(tmp);
		return rc;
	}
	if (!no_fsync && (rc = fsync_path(dir)))
		return rc;
	/* only now that the new one is durable: the old ones cover less */
	ckpt_prune(dir, name, false);
	if (out)
		*out = h;
	return 0;
}

int ckpt_latest(const char *data_dir, bool clean, char *path, size_t pathlen, uint64_t *bytes)
{
	char dir[PATH_MAX];
	DIR *d;
	struct dirent *de;
	uint64_t best = 0, rev;
	bool found = false;
	int rc;

	path[0] = 0;
	*bytes = 0;
	if ((rc = ckpt_dir(data_dir, dir, sizeof dir, false)))
		return rc;
	if (clean)
		(void)ckpt_prune(dir, NULL, true);
	if (!(d = opendir(dir)))
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)))
		if (ckpt_name(de->d_name, &rev) && (!found || rev > best)) {
			best = rev;
			found = true;
		}
	closedir(d);
	if (found) {
		struct stat st;
		if ((size_t)snprintf(path, pathlen, "%s/%016" PRIx64 ".ckpt", dir, best) >= pathlen)
			return -ENAMETOOLONG;
		if (stat(path, &st) < 0)
			return -errno;
		*bytes = (uint64_t)st.st_size;
	}
	return 0;
}

int ckpt_latest_header(const char *data_dir, struct ckpt_header *h)
{
	char path[CKPT_PATH_MAX];
	uint8_t hdr[CKPT_HDR];
	uint64_t bytes, body_len, body_sum;
	int fd, rc;

	memset(h, 0, sizeof *h);
	if ((rc = ckpt_latest(data_dir, false, path, sizeof path, &bytes)) || !path[0])
		return rc;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	rc = pread(fd, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr ? 0 : -EBADMSG;
	close(fd);
	if (!rc && hdr_decode(hdr, sizeof hdr, h, &body_len, &body_sum))
		rc = -EBADMSG;
	return rc ? rc : 1;
}

int ckpt_install(const char *data_dir, const char *src, uint64_t log_seq, char *err, size_t errlen)
{
	char dir[PATH_MAX], tmp[CKPT_PATH_MAX] = "", path[CKPT_PATH_MAX];
	struct ckpt_header h;
	uint64_t body_len, body_sum;
	uint8_t hdr[CKPT_HDR], *buf = NULL;
	int in, out = -1, rc;
	const char *why;

	err[0] = 0;
	if ((rc = ckpt_load_file(src, NULL, err, errlen)))
		return rc;
	if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", src, strerror(-rc));
		return rc;
	}
	if (pread(in, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr) {
		close(in);
		snprintf(err, errlen, "%s: short read", src);
		return -EIO;
	}
	if ((why = hdr_decode(hdr, sizeof hdr, &h, &body_len, &body_sum))) { /* changed under us */
		close(in);
		snprintf(err, errlen, "%s: %s", src, why);
		return -EBADMSG;
	}
	h.log_seq = log_seq;
	hdr_encode(hdr, &h, body_len, body_sum);
	if ((rc = ckpt_dir(data_dir, dir, sizeof dir, true)))
		goto done;
	snprintf(tmp, sizeof tmp, "%s/%016" PRIx64 ".ckpt.tmp", dir, (uint64_t)h.rev);
	snprintf(path, sizeof path, "%s/%016" PRIx64 ".ckpt", dir, (uint64_t)h.rev);
	if ((out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
		rc = -errno;
		goto done;
	}
	if (pwrite(out, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr) {
		rc = -EIO;
		goto done;
	}
	if (!(buf = malloc(1 << 20)))
		log_fatal("ckpt: out of memory");
	for (uint64_t off = CKPT_HDR; off < CKPT_HDR + body_len;) {
		ssize_t n = pread(in, buf, 1 << 20, (off_t)off);
		if (n <= 0 || pwrite(out, buf, (size_t)n, (off_t)off) != n) {
			rc = n < 0 ? -errno : -EIO;
			goto done;
		}
		off += (uint64_t)n;
	}
	if (fdatasync(out) < 0 || rename(tmp, path) < 0) {
		rc = -errno;
		goto done;
	}
	if (!(rc = fsync_path(dir))) /* the only checkpoint: an older one must not win at start-up */
		ckpt_prune(dir, strrchr(path, '/') + 1, true);
done:
	if (rc && !err[0])
		snprintf(err, errlen, "%s: %s", dir, strerror(-rc));
	free(buf);
	close(in);
	if (out >= 0)
		close(out);
	if (rc && tmp[0])
		unlink(tmp);
	return rc;
}
