/* The checkpoint worker: one thread that writes checkpoints and snapshots of published
 * views while the sequencer goes on with later batches.
 *
 * The sequencer owns the jobs: it fills one (the leases as of now, the log segment replay
 * would continue at), hands it over with ckpt_worker_submit, and takes it
 * back finished from ckpt_worker_take_done after the worker called the `done` hook (from
 * the worker thread: the hook only wakes the sequencer). One job at a time.
 *
 * The view must stay readable while the worker walks it: the worker has a qsbr reader slot
 * of its own, which ckpt_worker_submit brings online on the sequencer thread and only then
 * takes the published view (so nothing the view reaches can be freed before the worker is
 * done); the worker takes the slot offline when the job is done. */
#ifndef UETCD_CORE_CKPT_WORKER_H
#define UETCD_CORE_CKPT_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/ckpt.h"
#include "storage/mvcc.h"

struct qsbr;
struct seq_req;

enum ckpt_job_kind {
	CKPT_JOB_CHECKPOINT, /* data-dir/snap/<rev>.ckpt, then the older ones are deleted */
	CKPT_JOB_SNAPSHOT,   /* an unlinked file for Maintenance.Snapshot to stream */
};

struct ckpt_job {
	enum ckpt_job_kind kind;
	struct mvcc_view view;     /* taken by ckpt_worker_submit */
	uint64_t log_seq;
	struct ckpt_lease *leases; /* malloc'd by the sequencer, freed with the job */
	size_t nleases;
	uint8_t *auth;             /* the auth state's bytes (malloc'd, freed with the job), or NULL */
	size_t auth_len;
	uint32_t alarms;           /* the member's active alarms as of the view */
	struct seq_req *waiting;   /* requests answered when the job is done (Defragment, Snapshot) */
	/* results */
	int rc;                    /* 0, -MVCC_ECOMPACTED (try again), -errno */
	uint64_t bytes;
	struct ckpt_header hdr;
	int fd;                    /* SNAPSHOT: the file, read-only, at offset 0 */
	uint64_t took_ms;
};

struct ckpt_worker;

struct ckpt_worker *ckpt_worker_new(const char *data_dir, struct qsbr *q, bool no_fsync, void (*done)(void *arg),
				    void *arg);
/* Stops the thread after the job in progress (whose result is then dropped). */
void ckpt_worker_free(struct ckpt_worker *w);
/* Sequencer thread, between batches (the published view is the state the job describes).
 * false if a job is already in progress. */
bool ckpt_worker_submit(struct ckpt_worker *w, struct ckpt_job *j, const struct mvcc_store *store);
/* Sequencer thread: the finished job, or NULL. */
struct ckpt_job *ckpt_worker_take_done(struct ckpt_worker *w);
bool ckpt_worker_busy(const struct ckpt_worker *w);

#endif
