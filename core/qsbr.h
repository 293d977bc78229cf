/* Quiescent-state-based reclamation for the single-writer, many-reader snapshots.
 *
 * The one writer (the sequencer) retires memory that reader threads (reactors) may still be
 * looking at through an older published snapshot. A reader announces a quiescent point
 * when it holds no pointer into any snapshot (between loop turns); memory retired before an
 * epoch is freed once every online reader has announced a later epoch. A reader about to
 * block goes offline so that it never holds reclamation back.
 *
 * Invariant (owner: the writer): publish the new root first, then qsbr_advance(); memory
 * unreachable from the new root is retired before that advance. */
#ifndef UETCD_CORE_QSBR_H
#define UETCD_CORE_QSBR_H

#include <stdint.h>

struct qsbr;

struct qsbr *qsbr_new(int readers_max);
/* Frees everything still retired: only when no reader can run any more. */
void qsbr_free(struct qsbr *q);

/* Reader side: each reader thread registers once and gets its slot. */
int qsbr_reader_register(struct qsbr *q);
void qsbr_quiescent(struct qsbr *q, int slot);
void qsbr_offline(struct qsbr *q, int slot);
void qsbr_online(struct qsbr *q, int slot);

/* Writer side, one thread only. */
void qsbr_retire(struct qsbr *q, void *p, void (*free_fn)(void *));
/* Ends the current epoch (after a publish) and frees whatever no reader can still see. */
void qsbr_advance(struct qsbr *q);
/* Bytes or objects waiting, for tests and metrics. */
uint64_t qsbr_pending(const struct qsbr *q);

#endif
