/* See ckpt_worker.h. A mutex and a condition variable carry one job each way; jobs are
 * seconds apart, so nothing here is on a hot path. */
#include "core/ckpt_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "core/log.h"
#include "core/qsbr.h"
#include "core/snapstream.h"

struct ckpt_worker {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	struct ckpt_job *todo, *done_job;
	bool busy, stop;
	char data_dir[PATH_MAX];
	struct qsbr *q;
	int slot;
	bool no_fsync;
	void (*done)(void *arg);
	void *arg;
};

static uint64_t worker_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* etcd's snapshot envelope: etcd clients (`etcdctl snapshot save`) accept a stream only if
 * it ends with the SHA-256 of everything before it, at 32 bytes past a multiple of 512. So
 * the checkpoint is padded with zeros to a multiple of 512 and the hash appended; the
 * restore tool checks and strips both. */
static int worker_envelope(int fd, uint64_t *bytes)
{
	uint8_t pad[512] = {0}, hash[WC_SHA256_DIGEST_SIZE], *buf = malloc(1 << 20);
	uint64_t npad = (512 - *bytes % 512) % 512;
	wc_Sha256 sha;
	int rc = 0;

	if (!buf || wc_InitSha256(&sha))
		log_fatal("ckpt: out of memory");
	if (npad && pwrite(fd, pad, npad, (off_t)*bytes) != (ssize_t)npad)
		rc = errno ? -errno : -EIO;
	for (uint64_t off = 0; !rc && off < *bytes + npad;) {
		ssize_t n = pread(fd, buf, 1 << 20, (off_t)off);
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			break;
		}
		wc_Sha256Update(&sha, buf, (word32)n);
		off += (uint64_t)n;
	}
	wc_Sha256Final(&sha, hash);
	wc_Sha256Free(&sha);
	free(buf);
	if (!rc && pwrite(fd, hash, sizeof hash, (off_t)(*bytes + npad)) != (ssize_t)sizeof hash)
		rc = errno ? -errno : -EIO;
	*bytes += npad + sizeof hash;
	return rc;
}

/* A snapshot goes to an unlinked file in the data directory: nothing to clean up after a
 * crash, and the space is given back when the stream closes it. */
static int worker_snapshot(struct ckpt_worker *w, struct ckpt_job *j)
{
	int fd = open(w->data_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600), rc;

	if (fd < 0)
		return -errno;
	/* etcd's backend database (bbolt), so etcd's tools read it; see core/snapstream.h */
	rc = snapshot_write_bbolt(fd, &j->view, j->leases, j->nleases, j->auth, j->auth_len, &j->bytes);
	if (!rc)
		rc = worker_envelope(fd, &j->bytes);
	if (rc) {
		close(fd);
		return rc;
	}
	j->fd = fd;
	return 0;
}

static void *worker_main(void *arg)
{
	struct ckpt_worker *w = arg;

	/* background work: on a busy machine the reactors and the sequencer go first (a
	 * checkpoint is not urgent; a client waiting on its answer is) */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), 10) < 0)
		log_warn("ckpt: cannot lower the checkpoint thread's priority: %s", strerror(errno));

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->todo && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->stop)
			break;
		struct ckpt_job *j = w->todo;
		w->todo = NULL;
		pthread_mutex_unlock(&w->mu);

		uint64_t t0 = worker_clock_ms();
		j->fd = -1;
		if (j->kind == CKPT_JOB_SNAPSHOT)
			j->rc = worker_snapshot(w, j);
		else
			j->rc = ckpt_save_x(w->data_dir, &j->view, j->log_seq,
					  &(struct ckpt_extra){j->leases, j->nleases, j->auth, j->auth_len, j->alarms}, w->no_fsync,
					  &j->bytes, &j->hdr);
		qsbr_offline(w->q, w->slot);
		j->took_ms = worker_clock_ms() - t0;

		pthread_mutex_lock(&w->mu);
		w->done_job = j;
		pthread_mutex_unlock(&w->mu);
		w->done(w->arg);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

struct ckpt_worker *ckpt_worker_new(const char *data_dir, struct qsbr *q, bool no_fsync, void (*done)(void *arg),
				    void *arg)
{
	struct ckpt_worker *w = calloc(1, sizeof *w);

	if (!w)
		log_fatal("ckpt: out of memory");
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	snprintf(w->data_dir, sizeof w->data_dir, "%s", data_dir);
	w->q = q;
	w->slot = qsbr_reader_register(q);
	qsbr_offline(q, w->slot);
	w->no_fsync = no_fsync;
	w->done = done;
	w->arg = arg;
	if (pthread_create(&w->thread, NULL, worker_main, w))
		log_fatal("ckpt: cannot start the checkpoint thread");
	pthread_setname_np(w->thread, "uetcd-ckpt");
	return w;
}

void ckpt_worker_free(struct ckpt_worker *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}

bool ckpt_worker_submit(struct ckpt_worker *w, struct ckpt_job *j, const struct mvcc_store *store)
{
	if (w->busy)
		return false;
	w->busy = true;
	/* online first, then the view: see the header */
	qsbr_online(w->q, w->slot);
	mvcc_view_published(store, &j->view);
	pthread_mutex_lock(&w->mu);
	w->todo = j;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return true;
}

struct ckpt_job *ckpt_worker_take_done(struct ckpt_worker *w)
{
	struct ckpt_job *j;

	if (!w->busy)
		return NULL;
	pthread_mutex_lock(&w->mu);
	j = w->done_job;
	w->done_job = NULL;
	pthread_mutex_unlock(&w->mu);
	if (j)
		w->busy = false;
	return j;
}

bool ckpt_worker_busy(const struct ckpt_worker *w) { return w->busy; }
