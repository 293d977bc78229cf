/* MVCC key-value store: etcd's revision model over a copy-on-write B+tree.
 *
 * One writer (the sequencer thread) changes the store; any number of reader threads read
 * published snapshots concurrently, without locks shared with the writer. The writer works
 * on a private "working" version; mvcc_publish() makes it the snapshot readers see. Memory
 * that only older snapshots reach is retired through the qsbr domain given at creation, so a
 * reader may use any pointer it got from a view until its next quiescent point.
 *
 * Revision model (etcd's): the store starts at revision 1 with no keys. Every write
 * transaction that changes at least one key takes the next main revision; all its changes
 * share it. Per key: create_revision (revision of the put that created the current
 * generation), mod_revision, version (1 for the creating put, +1 per put, reset by a
 * delete), lease. A delete ends a generation (a tombstone at the delete's revision).
 * Compaction at revision C keeps, for each key, the newest version with mod_revision <= C
 * unless it is a tombstone, and everything newer; reads below C fail with -MVCC_ECOMPACTED.
 *
 * Ranges use etcd's conventions: end_len == 0 is the single key `key`; end == "\0"
 * (length 1) means every key >= key; key == "\0" with end == "\0" means every key.
 * Keys compare as unsigned bytes, shorter first on a common prefix.
 *
 * Errors are negative: -MVCC_ECOMPACTED, -MVCC_EFUTURE. This module does not know about
 * protobuf, the network, leases' lifetimes or durability.
 *
 * Implementation (mvcc.c, btree.h): the tree maps each key to a record holding the head of
 * an immutable newest-first version chain; a write links a new version with one release
 * store, so a put to an existing key copies no tree node, and readers skip versions newer
 * than their view. Creating or removing a key copies the tree path once per batch.
 * Compaction cuts chains in place (old snapshots then see shorter history) and retires the
 * cut versions through qsbr; a read that may have lost history to a compaction running
 * while it read reports -MVCC_ECOMPACTED (see mvcc_range).
 */
#ifndef UETCD_STORAGE_MVCC_H
#define UETCD_STORAGE_MVCC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qsbr;
struct mvcc_store;

enum { MVCC_ECOMPACTED = 1000, MVCC_EFUTURE = 1001 };

/* One version of one key as seen from a view. The pointers stay valid until the reading
 * thread's next quiescent point (readers) or the writer's next mvcc_publish (writer). */
struct mvcc_kv {
	const uint8_t *key;
	size_t key_len;
	const uint8_t *value;
	size_t value_len;
	int64_t create_revision;
	int64_t mod_revision;
	int64_t version;
	int64_t lease;
};

/* A consistent point to read from. `rev` is the newest revision the view contains;
 * `compact_rev` the store's compacted revision when the view was taken (0 if never).
 * `root` is the B+tree root; a view is a plain value, valid like an mvcc_kv. */
struct mvcc_view {
	const void *root;
	int64_t rev;
	int64_t compact_rev;
	const struct mvcc_store *store;
};

/* Return 0 to continue, anything else to stop the iteration (and have it returned). */
typedef int (*mvcc_kv_fn)(void *arg, const struct mvcc_kv *kv);

/* The store starts at revision 1, already published. Out of memory is fatal everywhere. */
struct mvcc_store *mvcc_store_new(struct qsbr *q);
/* Only when no reader can run any more. Memory already retired stays with the qsbr domain
 * (qsbr_free releases it). */
void mvcc_store_free(struct mvcc_store *s);

/* ---- readers (any thread) ---- */

/* The latest published snapshot (acquire). */
void mvcc_view_published(const struct mvcc_store *s, struct mvcc_view *out);

/* Visits every live key in the range as of revision `rev` (<= 0: the view's own revision,
 * as etcd), in ascending key order, or descending with `descending`. Checks rev against the
 * view first: rev > view->rev is -MVCC_EFUTURE, rev < view->compact_rev is
 * -MVCC_ECOMPACTED. Returns 0, such an error, or the callback's non-zero result.
 * A compaction the writer runs meanwhile to a revision above `rev` (only possible when the
 * view is older than that compaction) may have cut history the walk needed: then the
 * result is -MVCC_ECOMPACTED after the callback already saw some keys; discard them (or
 * take a fresh view and retry, for rev 0). No allocation, no lock, no atomic write. */
int mvcc_range(const struct mvcc_view *v, const uint8_t *key, size_t key_len, const uint8_t *end,
	       size_t end_len, int64_t rev, bool descending, mvcc_kv_fn fn, void *arg);

/* Looks up one key as of `rev` (<= 0: the view's). Returns 1 and fills *out if it exists,
 * 0 if not, or a negative error as mvcc_range. */
int mvcc_get(const struct mvcc_view *v, const uint8_t *key, size_t key_len, int64_t rev, struct mvcc_kv *out);

/* ---- the writer (one thread) ---- */

/* The writer's working state: everything applied so far, published or not. Ranges inside
 * a write transaction see the transaction's own earlier changes (as etcd's do): inside a
 * transaction that has changed something, the view's rev is that transaction's. */
void mvcc_view_working(const struct mvcc_store *s, struct mvcc_view *out);

/* Starts a write transaction. Its changes take revision (current + 1). Transactions do not
 * nest; mvcc_put and mvcc_delete_range called outside one run as their own transaction. */
void mvcc_txn_begin(struct mvcc_store *s);
/* Puts key = value with `lease`. If prev is not NULL it receives the previous live version
 * (return 1) or nothing (return 0). The key and value bytes are copied. */
int mvcc_put(struct mvcc_store *s, const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len,
	     int64_t lease, struct mvcc_kv *prev);
/* Deletes every live key in the range (conventions above), calling fn (if not NULL) with
 * each key's last version before deleting it (fn's result is ignored: every key goes).
 * Returns the number of keys deleted; deleting nothing changes nothing. */
int64_t mvcc_delete_range(struct mvcc_store *s, const uint8_t *key, size_t key_len, const uint8_t *end,
			  size_t end_len, mvcc_kv_fn fn, void *arg);
/* Ends the transaction and returns the store's revision after it: the transaction's
 * revision if it changed anything, else the unchanged current revision. */
int64_t mvcc_txn_end(struct mvcc_store *s);

/* Compacts history up to `rev`. -MVCC_ECOMPACTED if rev <= the compacted revision,
 * -MVCC_EFUTURE if rev > the current revision. Memory is retired at once. Not inside a
 * transaction. Walks every key on the writer: O(keys + dropped versions) (about a second
 * per million keys), so callers should not compact per request. */
int mvcc_compact(struct mvcc_store *s, int64_t rev);

/* Checkpoints (writer): from mvcc_compact_hold until mvcc_compact_release, mvcc_compact
 * moves the compacted revision (reads and history below it fail, as etcd's) but cuts no
 * chain, so a view taken after the hold dumps whole (mvcc_dump never fails with
 * -MVCC_ECOMPACTED) however many compactions run meanwhile. Reads and history see the same
 * answers cut or not; memory comes back at the release, which cuts once to the latest
 * compacted revision and publishes. Between transactions only. */
void mvcc_compact_hold(struct mvcc_store *s);
void mvcc_compact_release(struct mvcc_store *s);

/* Makes the working state the published snapshot (release), then advances the qsbr epoch
 * so that memory only older snapshots could reach is freed when readers allow. Between
 * transactions only. Costs one small allocation. */
void mvcc_publish(struct mvcc_store *s);

/* Current revision and compacted revision of the working state. */
int64_t mvcc_rev(const struct mvcc_store *s);
int64_t mvcc_compact_rev(const struct mvcc_store *s);
/* Number of live keys and of stored versions (for metrics and Status). */
uint64_t mvcc_keys_live(const struct mvcc_store *s);
uint64_t mvcc_versions_total(const struct mvcc_store *s);
/* Bytes held for every version and key (what compaction gives back); any thread. */
uint64_t mvcc_bytes_in_use(const struct mvcc_store *s);

/* ---- checkpoints: the whole stored state, version by version ---- */

/* One stored version of a key, tombstones included (a tombstone has only mod_revision and
 * sub; create_revision, version and lease are 0). `sub` orders the changes of one revision. */
struct mvcc_stored {
	const uint8_t *value;
	size_t value_len;
	int64_t mod_revision, create_revision, version, lease;
	uint32_t sub;
	bool tomb;
};

/* Called once per key, in key order, with the key's versions as of the view, newest first
 * (n >= 1). Non-zero stops the dump and is returned. */
typedef int (*mvcc_dump_fn)(void *arg, const uint8_t *key, size_t key_len, const struct mvcc_stored *vers, size_t n);

/* Visits every key the view holds with all its versions up to view->rev: enough to rebuild
 * the store as of the view (mvcc_load_*). Any thread (a reader: its qsbr slot must stay
 * online throughout). If a compaction ran after the view was taken (it may have cut some
 * chains and not others), the dump is not the view and the result is -MVCC_ECOMPACTED:
 * take a fresh view and try again. *compact_rev gets the view's compacted revision.
 * Allocates a scratch array of one key's versions. */
int mvcc_dump(const struct mvcc_view *v, mvcc_dump_fn fn, void *arg, int64_t *compact_rev);

/* Rebuilds a fresh store (never written, nothing published beyond its start) from a dump:
 * begin with its revision and compacted revision, then each key in strictly ascending
 * order with its versions newest first ((mod_revision, sub) strictly descending, every
 * mod_revision in [1, rev]), then mvcc_publish. -EINVAL when the input breaks one of these
 * rules (the caller names the file). Start-up only, on the writer. */
int mvcc_load_begin(struct mvcc_store *s, int64_t rev, int64_t compact_rev);
int mvcc_load_key(struct mvcc_store *s, const uint8_t *key, size_t key_len, const struct mvcc_stored *vers, size_t n);

/* ---- history (any thread, like mvcc_range) ---- */

/* One change, as a watcher sees it: a put carries the new version, a delete carries the
 * key with mod_revision set (everything else zero). `prev` is the key's version before the
 * change, when there was a live one. */
struct mvcc_event {
	int type; /* 0 put, 1 delete (mvccpb.Event.EventType) */
	struct mvcc_kv kv;
	bool has_prev;
	struct mvcc_kv prev;
};

typedef int (*mvcc_event_fn)(void *arg, const struct mvcc_event *ev);

/* Visits every change to keys in the range (conventions above) with a revision in
 * [from_rev, view->rev], in revision order and, within a revision, in the order the
 * transaction made them (etcd's sub-revisions). -MVCC_ECOMPACTED if from_rev <
 * view->compact_rev (history is gone), or if a compaction running meanwhile passed
 * from_rev. As etcd, a compaction at C drops a delete at C, so from_rev == C does not
 * report it. Returns 0, that error, or the callback's non-zero result. Allocates a
 * temporary array of the events (catch-up path, not the per-request path). */
int mvcc_history(const struct mvcc_view *v, const uint8_t *key, size_t key_len, const uint8_t *end, size_t end_len,
		 int64_t from_rev, mvcc_event_fn fn, void *arg);

#endif
