/* Copy-on-write B+tree of byte-string keys to pointers: the index under storage/mvcc.c
 * (storage-internal; nothing outside storage/ includes this).
 *
 * One writer owns a `struct btree` (the working version); readers walk any root they were
 * handed, without locks and without atomics: a published node is never written again.
 *
 * COW rule (owner: the writer, LMDB-style): every node carries the batch generation that
 * created it. The writer modifies a node in place only if node->gen == tree->gen; any other
 * node on the path is copied once per batch and the original is retired through qsbr (it
 * stays readable from older roots until every reader passed a quiescent point after the next
 * qsbr_advance). btree_seal() ends a batch: call it after the current root was published,
 * so that nothing a reader can see is ever written again. Nodes created and dropped within
 * one batch were never visible and are freed at once.
 *
 * Keys: the tree stores the caller's key pointer and length, not a copy. The key bytes must
 * stay valid and unchanged while the entry is in the tree; after btree_delete() the working
 * tree holds no reference to them, but readers of older roots may, so retire them through
 * the same qsbr domain, never free them directly. Internal separators point at live keys (each
 * separator is exactly the smallest key of the subtree to its right; btree_check verifies).
 * Order: memcmp over the common length, shorter first. Values must not be NULL.
 *
 * Limits: keys up to UINT32_MAX bytes; depth up to BTREE_DEPTH_MAX (far beyond 2^64 keys
 * at the minimum fan-out). Out of memory is fatal (log_fatal).
 */
#ifndef UETCD_STORAGE_BTREE_H
#define UETCD_STORAGE_BTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qsbr;
struct btree_node;

#define BTREE_DEPTH_MAX 40

struct btree {
	struct btree_node *root; /* working root; NULL when empty */
	uint64_t gen;            /* current batch; nodes with this gen are writable */
	uint64_t count;          /* entries in the working tree */
	uint64_t nodes;          /* nodes reachable from the working root */
	struct qsbr *q;
};

void btree_init(struct btree *t, struct qsbr *q);
/* Frees every node reachable from the working root (not those already retired), calling
 * val_free (if not NULL) on each value. Only when no reader can run any more. */
void btree_destroy(struct btree *t, void (*val_free)(void *));

static inline const struct btree_node *btree_root(const struct btree *t) { return t->root; }

/* Ends the writer's batch: every node reachable now becomes immutable. */
static inline void btree_seal(struct btree *t) { t->gen++; }

/* ---- readers (any thread, any root) ---- */

/* The value stored under key, or NULL. No allocation, no atomics. */
void *btree_lookup(const struct btree_node *root, const uint8_t *key, size_t key_len);

/* A cursor over one root: a path from the root to a leaf slot. Lives on the stack; valid
 * as long as the root is (reader: until its next quiescent point; writer: until the next
 * change to the tree). */
struct btree_iter {
	const struct btree_node *node[BTREE_DEPTH_MAX];
	uint16_t idx[BTREE_DEPTH_MAX];
	int depth; /* levels on the path; 0 when the cursor is past either end */
};

void btree_iter_first(struct btree_iter *it, const struct btree_node *root);
void btree_iter_last(struct btree_iter *it, const struct btree_node *root);
/* First entry >= key. */
void btree_iter_seek_ge(struct btree_iter *it, const struct btree_node *root, const uint8_t *key, size_t key_len);
/* Last entry < key. */
void btree_iter_seek_lt(struct btree_iter *it, const struct btree_node *root, const uint8_t *key, size_t key_len);
void btree_iter_next(struct btree_iter *it);
void btree_iter_prev(struct btree_iter *it);
static inline bool btree_iter_valid(const struct btree_iter *it) { return it->depth > 0; }
const uint8_t *btree_iter_key(const struct btree_iter *it, size_t *key_len);
void *btree_iter_value(const struct btree_iter *it);

/* Compares a with b as the tree orders keys: <0, 0, >0. */
int btree_key_cmp(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len);

/* ---- the writer ---- */

/* Inserts key -> val. If the key exists, replaces its value (the stored key pointer is kept)
 * and returns 1 with the old value in *old (if old is not NULL); else returns 0. */
int btree_insert(struct btree *t, const uint8_t *key, size_t key_len, void *val, void **old);
/* Removes key. Returns 1 with its value in *old (if not NULL), or 0 if it was absent. */
int btree_delete(struct btree *t, const uint8_t *key, size_t key_len, void **old);

/* Checks every structural invariant of the tree under root (order, fill, equal leaf depth,
 * separators, cached prefixes) and that it holds `count` entries. Returns 0 or a negative
 * number naming the first violation. For tests; O(n). */
int btree_check(const struct btree_node *root, uint64_t count);

#endif
