/* See recover.h. A batch record holds consecutive revisions; the changes of one revision
 * are replayed as one mvcc write transaction, which must land on exactly that revision. */
#include "storage/recover.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

#include "core/log.h"
#include "storage/mvcc.h"
#include "storage/wal.h"

struct recover_ctx {
	struct mvcc_store *s;
	const struct recover_hooks *hooks;
	bool open;
	int64_t rev;
	uint64_t records, changes;
	char *err;
	size_t errlen;
};

static int recover_close_txn(struct recover_ctx *c)
{
	if (!c->open)
		return 0;
	c->open = false;
	int64_t got = mvcc_txn_end(c->s);
	if (got != c->rev) {
		snprintf(c->err, c->errlen, "log replay: revision %" PRId64 " applied as %" PRId64, c->rev, got);
		return -EBADMSG;
	}
	return 0;
}

static int recover_change(void *arg, const struct wal_change *ch)
{
	struct recover_ctx *c = arg;
	int rc;

	c->changes++;
	if (ch->op == WAL_OP_LEASE_GRANT || ch->op == WAL_OP_LEASE_REVOKE) {
		if ((rc = recover_close_txn(c)))
			return rc;
		if (c->hooks && ch->op == WAL_OP_LEASE_GRANT && c->hooks->lease_grant)
			c->hooks->lease_grant(c->hooks->arg, ch->lease, ch->ttl);
		if (c->hooks && ch->op == WAL_OP_LEASE_REVOKE && c->hooks->lease_revoke)
			c->hooks->lease_revoke(c->hooks->arg, ch->lease);
		return 0;
	}
	if (ch->op == WAL_OP_COMPACT) {
		if ((rc = recover_close_txn(c)))
			return rc;
		rc = mvcc_compact(c->s, ch->compact_rev);
		if (rc < 0) {
			snprintf(c->err, c->errlen, "log replay: compaction to %" PRId64 " at revision %" PRId64 " failed",
				 ch->compact_rev, mvcc_rev(c->s));
			return -EBADMSG;
		}
		return 0;
	}
	if (c->open && ch->rev != c->rev && (rc = recover_close_txn(c)))
		return rc;
	if (!c->open) {
		if (ch->rev != mvcc_rev(c->s) + 1) {
			snprintf(c->err, c->errlen, "log replay: revision %" PRId64 " follows %" PRId64, ch->rev,
				 mvcc_rev(c->s));
			return -EBADMSG;
		}
		mvcc_txn_begin(c->s);
		c->open = true;
		c->rev = ch->rev;
	}
	if (ch->op == WAL_OP_PUT) {
		mvcc_put(c->s, ch->key, ch->key_len, ch->value, ch->value_len, ch->lease, NULL);
	} else if (mvcc_delete_range(c->s, ch->key, ch->key_len, NULL, 0, NULL, NULL) != 1) {
		snprintf(c->err, c->errlen, "log replay: revision %" PRId64 " deletes a key that does not exist", ch->rev);
		return -EBADMSG;
	}
	return 0;
}

static int recover_record(void *arg, uint8_t type, int64_t rev, const uint8_t *payload, size_t len)
{
	struct recover_ctx *c = arg;
	int rc;

	c->records++;
	if (type != WAL_REC_BATCH)
		return 0; /* record types of later features are skipped by older code paths */
	rc = wal_batch_decode(payload, len, recover_change, c);
	if (rc == 0)
		rc = recover_close_txn(c);
	else if (rc == -EINVAL || rc == -ENOTSUP)
		snprintf(c->err, c->errlen, "log replay: malformed batch record at revision %" PRId64, rev);
	return rc;
}

int recover_open(const char *data_dir, const struct wal_options *o, struct mvcc_store *s,
		 const struct recover_hooks *hooks, struct wal **out, char *err, size_t errlen)
{
	struct recover_ctx c = {.s = s, .hooks = hooks, .err = err, .errlen = errlen};
	int rc;

	err[0] = 0;
	rc = wal_open(data_dir, o, recover_record, &c, out, err, errlen);
	if (rc < 0)
		return rc;
	mvcc_publish(s);
	log_info("recovered %" PRIu64 " log records (%" PRIu64 " changes): revision %" PRId64 ", compacted %" PRId64,
		 c.records, c.changes, mvcc_rev(s), mvcc_compact_rev(s));
	return 0;
}
