/* vg_uring.so — lets uetcd's reactor run under Valgrind 3.19 (LD_PRELOAD, bench gate only).
 *
 * Valgrind serialises a program's threads behind one lock and releases it only around the
 * system calls it knows may block. Valgrind 3.19 does not count io_uring_enter among them, so a
 * reactor waiting for completions in io_uring_enter holds the lock, the sequencer thread that
 * would produce the completion never runs, and the server hangs at its first write.
 *
 * This library replaces two liburing calls of the reactor:
 * - io_uring_queue_init_params() drops DEFER_TASKRUN / SINGLE_ISSUER / COOP_TASKRUN, so that
 *   completions are posted by the kernel and wake a poll() on the ring (deferred task work
 *   wakes only a waiter inside io_uring_enter). The reactor's code path is the same.
 * - io_uring_submit_and_wait(), the reactor's only blocking wait: submit without waiting and,
 *   while no completion is ready, sleep in poll() on the ring's descriptor (Valgrind releases
 *   its lock there), then reap with a non-blocking submit_and_get_events. Same contract as
 *   the original: at least wait_nr completions are ready when it returns, or an error.
 * The gate runs callgrind with --toggle-collect on this wait, so how often it loops (timing)
 * is not counted.
 *
 * Never used outside `make bench-check` / `make bench-baseline`; the server is not changed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dlsym(RTLD_NEXT) */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <liburing.h>
#include <poll.h>

/* Longest single sleep: a completion that poll() missed (a kernel that does not wake pollers
 * for deferred task work) costs at most this much wall time, never a hang. */
#define VG_URING_POLL_MS 50

int io_uring_queue_init_params(unsigned entries, struct io_uring *ring, struct io_uring_params *p)
{
	static int (*real)(unsigned, struct io_uring *, struct io_uring_params *);
	if (!real)
		real = (int (*)(unsigned, struct io_uring *, struct io_uring_params *))dlsym(
			RTLD_NEXT, "io_uring_queue_init_params");
	if (!real)
		return -ENOSYS;
	p->flags &= ~(unsigned)(IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
				IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
	return real(entries, ring, p);
}

int io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr)
{
	int submitted = io_uring_submit(ring);
	if (submitted < 0)
		return submitted;
	while (io_uring_cq_ready(ring) < wait_nr) {
		struct pollfd p = { .fd = ring->ring_fd, .events = POLLIN };
		int n = poll(&p, 1, VG_URING_POLL_MS);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n < 0)
			return -EINTR;
		int rc = io_uring_submit_and_get_events(ring);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			return rc;
	}
	return submitted;
}
