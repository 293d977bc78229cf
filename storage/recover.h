/* Start-up: opens the log and replays every batch record into an empty store, so that the
 * store holds exactly what was acknowledged: the same keys, values, leases, revisions (dense,
 * never reused) and compacted revision. */
#ifndef UETCD_STORAGE_RECOVER_H
#define UETCD_STORAGE_RECOVER_H

#include <stddef.h>
#include <stdint.h>

struct mvcc_store;
struct wal;
struct wal_options;

/* Records that are not key changes go to their owners (leases live in core/). */
struct recover_hooks {
	void (*lease_grant)(void *arg, int64_t id, int64_t ttl);
	void (*lease_revoke)(void *arg, int64_t id);
	/* an auth operation from the log, and the auth state from a checkpoint (bytes as
	 * core/auth.h encodes them); non-zero: the bytes are damaged */
	int (*auth_op)(void *arg, const uint8_t *op, size_t len);
	int (*auth_state)(void *arg, const uint8_t *state, size_t len);
	/* the member's active alarms, from the log or a checkpoint (1 << AlarmType) */
	void (*alarms)(void *arg, uint32_t alarms);
	void *arg;
};

/* Loads data_dir's newest checkpoint (if any) into the fresh store s (and its leases into
 * hooks, may be NULL), opens the log into *out and replays what follows the checkpoint,
 * then publishes. *ckpt_bytes (may be NULL) gets the checkpoint's size. Returns 0, or a
 * negative errno with a message in err (a damaged checkpoint or log names the file and
 * offset; a record that does not fit the store's history is -EBADMSG). */
int recover_open(const char *data_dir, const struct wal_options *o, struct mvcc_store *s,
		 const struct recover_hooks *hooks, struct wal **out, uint64_t *ckpt_bytes, char *err, size_t errlen);

/* Point-in-time: builds in the fresh store s the state as of revision `rev` from data_dir's
 * checkpoint and log, reading only (the server may be running). Leases granted and not
 * revoked by then, as far as the checkpoint and the log still tell, go to hooks. rev 0:
 * the last durable revision (a full check of what start-up would load). -ERANGE (err says
 * why) if rev is compacted away or beyond the last durable revision. */
int recover_at(const char *data_dir, int64_t rev, struct mvcc_store *s, const struct recover_hooks *hooks, char *err,
	       size_t errlen);

#endif
