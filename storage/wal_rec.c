/* The batch payload codec (record type WAL_REC_BATCH): the changes of consecutive revisions.
 *
 *   offset  size  field
 *   0       1     version = 1
 *   1       4     change count (u32 LE)
 *   5       8     base revision (i64 LE, >= 0)
 *   13      …     changes, in order:
 *
 *   op        u8       1 put, 2 delete, 3 compact, 4 lease grant, 5 lease revoke,
 *                      16 auth, 32 alarms (6..15 more lease records, 17..31 auth:
 *                      reserved)
 *   rev_delta uvarint  revision minus the previous change's (the first: minus base)
 *   key_len   uvarint  then key_len bytes of key
 *   val_len   uvarint  then val_len bytes of value
 *   num       uvarint  put: lease id (0 none); compact: compact revision; delete: 0;
 *                      lease grant/revoke: the lease id (not 0; etcd allows negative ids,
 *                      stored as their two's complement); a grant's value is its
 *                      TTL in seconds as 8 bytes LE, a revoke has no key or value;
 *                      auth: num 0, no key, the value is one auth operation
 *                      (core/auth.c's op format, opaque here); alarms: num is the
 *                      active alarm bits after the change (< 2^32), no key or value
 *
 * Varints are LEB128 (protobuf's), at most 10 bytes, no overflow past 64 bits. A delete
 * has no value; a compaction has no key or value and compact_rev <= its revision; every
 * revision and number fits an int64. The payload must end exactly after the last change.
 * Decoding is a parser of outside bytes (a damaged disk can hand it anything that passes a
 * checksum by chance, and the fuzzer hands it everything): every length is checked against
 * what remains before use, and nothing is reported until the whole payload validated. */
#include "storage/wal.h"
#include "storage/le.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#define WAL_BATCH_VERSION 1

static size_t rec_uvarint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Returns bytes consumed, or 0 if truncated or overflowing 64 bits. */
static size_t rec_uvarint_get(const uint8_t *p, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	for (size_t i = 0; i < len && i < 10; i++) {
		uint64_t b = p[i];
		if (i == 9 && b > 1)
			return 0;
		v |= (b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*out = v;
			return i + 1;
		}
	}
	return 0;
}

void wal_batch_begin(struct wal_batch_enc *e, uint8_t *buf, size_t cap, int64_t base_rev)
{
	memset(e, 0, sizeof *e);
	e->buf = buf;
	e->cap = cap;
	e->base_rev = e->rev = base_rev;
	if (base_rev < 0)
		e->err = -EINVAL;
	else if (cap < WAL_BATCH_HDR)
		e->err = -ENOBUFS;
	else
		e->len = WAL_BATCH_HDR;
}

static int rec_add(struct wal_batch_enc *e, enum wal_op op, int64_t rev, const uint8_t *key, size_t key_len,
		   const uint8_t *val, size_t val_len, uint64_t num)
{
	if (e->err)
		return e->err;
	if (rev < e->rev || e->count == UINT32_MAX) {
		e->err = -EINVAL;
		return e->err;
	}
	if (e->cap - e->len < WAL_BATCH_CHANGE_OVERHEAD || e->cap - e->len - WAL_BATCH_CHANGE_OVERHEAD < key_len ||
	    e->cap - e->len - WAL_BATCH_CHANGE_OVERHEAD - key_len < val_len) {
		e->err = -ENOBUFS;
		return e->err;
	}
	uint8_t *p = e->buf + e->len;
	*p++ = (uint8_t)op;
	p += rec_uvarint_put(p, (uint64_t)(rev - e->rev));
	p += rec_uvarint_put(p, key_len);
	if (key_len)
		memcpy(p, key, key_len);
	p += key_len;
	p += rec_uvarint_put(p, val_len);
	if (val_len)
		memcpy(p, val, val_len);
	p += val_len;
	p += rec_uvarint_put(p, num);
	e->len = (size_t)(p - e->buf);
	e->rev = rev;
	e->count++;
	return 0;
}

int wal_batch_put(struct wal_batch_enc *e, int64_t rev, const uint8_t *key, size_t key_len, const uint8_t *value,
		  size_t value_len, int64_t lease)
{
	return rec_add(e, WAL_OP_PUT, rev, key, key_len, value, value_len, (uint64_t)lease);
}

int wal_batch_delete(struct wal_batch_enc *e, int64_t rev, const uint8_t *key, size_t key_len)
{
	return rec_add(e, WAL_OP_DELETE, rev, key, key_len, NULL, 0, 0);
}

int wal_batch_compact(struct wal_batch_enc *e, int64_t rev, int64_t compact_rev)
{
	if ((compact_rev < 0 || compact_rev > rev) && !e->err)
		e->err = -EINVAL;
	return rec_add(e, WAL_OP_COMPACT, rev, NULL, 0, NULL, 0, (uint64_t)compact_rev);
}

int wal_batch_lease_grant(struct wal_batch_enc *e, int64_t rev, int64_t id, int64_t ttl)
{
	uint8_t v[8];

	if ((!id || ttl < 0) && !e->err)
		e->err = -EINVAL;
	le_put64(v, (uint64_t)ttl);
	return rec_add(e, WAL_OP_LEASE_GRANT, rev, NULL, 0, v, sizeof v, (uint64_t)id);
}

int wal_batch_lease_revoke(struct wal_batch_enc *e, int64_t rev, int64_t id)
{
	if (!id && !e->err)
		e->err = -EINVAL;
	return rec_add(e, WAL_OP_LEASE_REVOKE, rev, NULL, 0, NULL, 0, (uint64_t)id);
}

int wal_batch_auth(struct wal_batch_enc *e, int64_t rev, const uint8_t *op, size_t len)
{
	if (!len && !e->err)
		e->err = -EINVAL;
	return rec_add(e, WAL_OP_AUTH, rev, NULL, 0, op, len, 0);
}

int wal_batch_alarms(struct wal_batch_enc *e, int64_t rev, uint32_t alarms)
{
	return rec_add(e, WAL_OP_ALARMS, rev, NULL, 0, NULL, 0, alarms);
}

ssize_t wal_batch_end(struct wal_batch_enc *e, int64_t *last_rev)
{
	if (e->err)
		return e->err;
	e->buf[0] = WAL_BATCH_VERSION;
	for (int i = 0; i < 4; i++)
		e->buf[1 + i] = (uint8_t)(e->count >> (8 * i));
	le_put64(e->buf + 5, (uint64_t)e->base_rev);
	if (last_rev)
		*last_rev = e->rev;
	return (ssize_t)e->len;
}

/* One pass over the payload; with fn == NULL it only validates. */
static int rec_walk(const uint8_t *p, size_t len, wal_change_fn fn, void *arg)
{
	if (len < WAL_BATCH_HDR)
		return -EINVAL;
	if (p[0] != WAL_BATCH_VERSION)
		return -ENOTSUP;
	uint32_t count = (uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16 | (uint32_t)p[4] << 24;
	uint64_t base = le_get64(p + 5);
	if (base > INT64_MAX)
		return -EINVAL;
	/* a change is at least 5 bytes: a count the payload cannot hold is malformed up front */
	if (count > (len - WAL_BATCH_HDR) / 5)
		return -EINVAL;

	size_t off = WAL_BATCH_HDR, n;
	int64_t rev = (int64_t)base;
	for (uint32_t i = 0; i < count; i++) {
		struct wal_change c;
		uint64_t delta, klen, vlen, num;

		if (off >= len)
			return -EINVAL;
		c.op = (enum wal_op)p[off++];
		if (c.op != WAL_OP_PUT && c.op != WAL_OP_DELETE && c.op != WAL_OP_COMPACT &&
		    c.op != WAL_OP_LEASE_GRANT && c.op != WAL_OP_LEASE_REVOKE && c.op != WAL_OP_AUTH &&
		    c.op != WAL_OP_ALARMS)
			return -ENOTSUP;
		if (!(n = rec_uvarint_get(p + off, len - off, &delta)) || delta > (uint64_t)(INT64_MAX - rev))
			return -EINVAL;
		off += n;
		rev += (int64_t)delta;
		if (!(n = rec_uvarint_get(p + off, len - off, &klen)) || klen > len - off - n)
			return -EINVAL;
		off += n;
		c.key = p + off;
		c.key_len = (size_t)klen;
		off += klen;
		if (!(n = rec_uvarint_get(p + off, len - off, &vlen)) || vlen > len - off - n)
			return -EINVAL;
		off += n;
		c.value = p + off;
		c.value_len = (size_t)vlen;
		off += vlen;
		if (!(n = rec_uvarint_get(p + off, len - off, &num)))
			return -EINVAL;
		off += n;
		c.rev = rev;
		c.lease = c.op == WAL_OP_PUT || c.op == WAL_OP_LEASE_GRANT || c.op == WAL_OP_LEASE_REVOKE ? (int64_t)num : 0;
		c.ttl = 0;
		if (c.op == WAL_OP_LEASE_GRANT) {
			if (c.value_len != 8 || c.key_len || !num || le_get64(c.value) > INT64_MAX)
				return -EINVAL;
			c.ttl = (int64_t)le_get64(c.value);
		} else if (c.op == WAL_OP_LEASE_REVOKE && (c.key_len || c.value_len || !num)) {
			return -EINVAL;
		} else if (c.op == WAL_OP_AUTH && (c.key_len || !c.value_len || num)) {
			return -EINVAL;
		} else if (c.op == WAL_OP_ALARMS && (c.key_len || c.value_len || num > UINT32_MAX)) {
			return -EINVAL;
		}
		c.alarms = c.op == WAL_OP_ALARMS ? (uint32_t)num : 0;
		c.compact_rev = c.op == WAL_OP_COMPACT ? (int64_t)num : 0;
		if (c.op == WAL_OP_DELETE && (vlen || num))
			return -EINVAL;
		if (c.op == WAL_OP_COMPACT && (klen || vlen || num > (uint64_t)rev))
			return -EINVAL;
		if (fn) {
			int rc = fn(arg, &c);
			if (rc)
				return rc;
		}
	}
	return off == len ? 0 : -EINVAL;
}

int wal_batch_decode(const uint8_t *p, size_t len, wal_change_fn fn, void *arg)
{
	int rc = rec_walk(p, len, NULL, NULL);

	if (rc || !fn)
		return rc;
	return rec_walk(p, len, fn, arg);
}
