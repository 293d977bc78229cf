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
	void *arg;
};

/* Opens data_dir's log into *out and replays it into s (and hooks, may be NULL), then
 * publishes. Returns 0, or a negative errno with a message in err (a corrupt log names the
 * segment and offset; a record that does not fit the store's history is -EBADMSG). */
int recover_open(const char *data_dir, const struct wal_options *o, struct mvcc_store *s,
		 const struct recover_hooks *hooks, struct wal **out, char *err, size_t errlen);

#endif
