/* See recover.h. A batch record holds consecutive revisions; the changes of one revision
 * are replayed as one mvcc write transaction, which must land on exactly that revision. */
#include "storage/recover.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>
#include <stdbool.h>
#include <stdio.h>

#include "core/log.h"
#include "storage/ckpt.h"
#include "storage/mvcc.h"
#include "storage/wal.h"

struct recover_ctx {
	struct mvcc_store *s;
	const struct recover_hooks *hooks;
	bool open;
	int64_t rev;
	int64_t upto; /* point-in-time: changes past it are skipped (0: none are) */
	struct ckpt_header ckpt;
	bool have_ckpt;
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

	if (c->upto && ch->rev > c->upto)
		return 0;
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
	if (ch->op == WAL_OP_AUTH) {
		if ((rc = recover_close_txn(c)))
			return rc;
		if (c->hooks && c->hooks->auth_op && c->hooks->auth_op(c->hooks->arg, ch->value, ch->value_len)) {
			snprintf(c->err, c->errlen, "log replay: a malformed auth record at revision %" PRId64, ch->rev);
			return -EBADMSG;
		}
		return 0;
	}
	if (ch->op == WAL_OP_ALARMS) {
		if ((rc = recover_close_txn(c)))
			return rc;
		if (c->hooks && c->hooks->alarms)
			c->hooks->alarms(c->hooks->arg, ch->alarms);
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

/* ---- the checkpoint ---- */

static int recover_ckpt_header(void *arg, const struct ckpt_header *h)
{
	struct recover_ctx *c = arg;
	int64_t rev = c->upto && c->upto < h->rev ? c->upto : h->rev;

	if (c->upto && c->upto < h->compact_rev) {
		snprintf(c->err, c->errlen, "revision %" PRId64 " has been compacted (the checkpoint is compacted at %" PRId64 ")",
			 c->upto, h->compact_rev);
		return -ERANGE;
	}
	c->ckpt = *h;
	c->have_ckpt = true;
	if (mvcc_load_begin(c->s, rev, h->compact_rev)) {
		snprintf(c->err, c->errlen, "revisions out of range");
		return -EBADMSG;
	}
	return 0;
}

static int recover_ckpt_lease(void *arg, int64_t id, int64_t ttl)
{
	struct recover_ctx *c = arg;

	if (c->hooks && c->hooks->lease_grant)
		c->hooks->lease_grant(c->hooks->arg, id, ttl);
	return 0;
}

static int recover_ckpt_auth(void *arg, const uint8_t *state, size_t len)
{
	struct recover_ctx *c = arg;

	if (c->hooks && c->hooks->auth_state && c->hooks->auth_state(c->hooks->arg, state, len)) {
		snprintf(c->err, c->errlen, "the auth state does not decode");
		return -EBADMSG;
	}
	return 0;
}

static int recover_ckpt_alarms(void *arg, uint32_t alarms)
{
	struct recover_ctx *c = arg;

	if (c->hooks && c->hooks->alarms)
		c->hooks->alarms(c->hooks->arg, alarms);
	return 0;
}

static int recover_ckpt_key(void *arg, const uint8_t *key, size_t key_len, const struct mvcc_stored *vers, size_t n)
{
	struct recover_ctx *c = arg;

	while (n && vers->mod_revision > mvcc_rev(c->s)) { /* point-in-time: newer versions go */
		vers++;
		n--;
	}
	if (!n)
		return 0;
	if (mvcc_load_key(c->s, key, key_len, vers, n)) {
		snprintf(c->err, c->errlen, "a key's versions break the store's rules");
		return -EBADMSG;
	}
	return 0;
}

/* Loads the newest checkpoint, if any; *bytes gets its size. */
static int recover_ckpt(struct recover_ctx *c, const char *data_dir, bool clean, uint64_t *bytes)
{
	struct ckpt_sink sink = {.header = recover_ckpt_header,
				 .lease = recover_ckpt_lease,
				 .key = recover_ckpt_key,
				 .auth = recover_ckpt_auth,
				 .alarms = recover_ckpt_alarms,
				 .arg = c};
	char path[PATH_MAX + 64], why[512];
	int rc;

	*bytes = 0;
	if ((rc = ckpt_latest(data_dir, clean, path, sizeof path, bytes))) {
		snprintf(c->err, c->errlen, "%s/snap: %s", data_dir, strerror(-rc));
		return rc;
	}
	if (!path[0])
		return 0;
	why[0] = 0;
	rc = ckpt_load_file(path, &sink, why, sizeof why);
	if (rc && c->err[0]) { /* a callback said why */
		snprintf(why, sizeof why, "%s", c->err);
		snprintf(c->err, c->errlen, "checkpoint %s: %s", path, why);
	} else if (rc) {
		snprintf(c->err, c->errlen, "checkpoint %s", why); /* names the file already */
	}
	if (rc == 0)
		log_info("loaded checkpoint %s: revision %" PRId64 ", compacted %" PRId64 ", %" PRIu64 " keys", path,
			 c->ckpt.rev, c->ckpt.compact_rev, mvcc_keys_live(c->s));
	return rc;
}

int recover_open(const char *data_dir, const struct wal_options *o, struct mvcc_store *s,
		 const struct recover_hooks *hooks, struct wal **out, uint64_t *ckpt_bytes, char *err, size_t errlen)
{
	struct recover_ctx c = {.s = s, .hooks = hooks, .err = err, .errlen = errlen};
	struct wal_options wo = *o;
	uint64_t bytes;
	int rc;

	err[0] = 0;
	if ((rc = recover_ckpt(&c, data_dir, true, &bytes)))
		return rc;
	if (ckpt_bytes)
		*ckpt_bytes = bytes;
	if (c.have_ckpt) {
		wo.first_seq = c.ckpt.log_seq;
		wo.base_rev = c.ckpt.rev;
	}
	rc = wal_open(data_dir, &wo, recover_record, &c, out, err, errlen);
	if (rc < 0)
		return rc;
	mvcc_publish(s);
	log_info("recovered %" PRIu64 " log records (%" PRIu64 " changes): revision %" PRId64 ", compacted %" PRId64,
		 c.records, c.changes, mvcc_rev(s), mvcc_compact_rev(s));
	return 0;
}

static int recover_inspected(void *arg, const struct wal_record_info *r)
{
	struct recover_ctx *c = arg;

	if (c->have_ckpt && r->seq < c->ckpt.log_seq)
		return 0; /* covered by the checkpoint (left over from a crash) */
	/* changes past upto are skipped one by one: a record may straddle it */
	return recover_record(c, r->type, r->rev, r->payload, r->len);
}

int recover_at(const char *data_dir, int64_t rev, struct mvcc_store *s, const struct recover_hooks *hooks, char *err,
	       size_t errlen)
{
	struct recover_ctx c = {.s = s, .hooks = hooks, .err = err, .errlen = errlen, .upto = rev};
	uint64_t bytes;
	int rc;

	err[0] = 0;
	if (rev < 0) {
		snprintf(err, errlen, "revision %" PRId64 " is not a revision", rev);
		return -ERANGE;
	}
	if ((rc = recover_ckpt(&c, data_dir, false, &bytes)))
		return rc;
	if (c.have_ckpt && rev && c.ckpt.rev >= rev) {
		mvcc_publish(s);
		return 0; /* the checkpoint held all of it */
	}
	rc = wal_inspect_at(data_dir, c.have_ckpt ? c.ckpt.log_seq : 0, recover_inspected, &c, err, errlen);
	if (rc < 0)
		return rc;
	if (rc == 1)
		err[0] = 0; /* a torn tail: only an unacknowledged commit is lost */
	if (mvcc_rev(s) < rev) {
		snprintf(err, errlen, "revision %" PRId64 " is beyond the last durable revision %" PRId64, rev, mvcc_rev(s));
		return -ERANGE;
	}
	if (rev && rev < mvcc_compact_rev(s)) {
		snprintf(err, errlen, "revision %" PRId64 " has been compacted (compacted at %" PRId64 ")", rev,
			 mvcc_compact_rev(s));
		return -ERANGE;
	}
	mvcc_publish(s);
	return 0;
}
