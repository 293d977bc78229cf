/* Logging: one line per event to stderr (or stdout: --log-outputs), in the shape of etcd's JSON logger
 * ({"level":…,"ts":…,"msg":…}), so log collectors that parse etcd's output keep working.
 * Reactor threads may log only on rare paths (start-up, errors): a line is one write(2).
 * A line that a client can cause again and again goes through log_limited (below). */
#ifndef UETCD_CORE_LOG_H
#define UETCD_CORE_LOG_H

#include <stdatomic.h>
#include <stdbool.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_FATAL };

void log_set_level(enum log_level min);
/* etcd's --log-outputs: stderr (its "default"), stdout, or both. Call before other threads log. */
void log_set_outputs(bool to_stdout, bool to_stderr);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs at LOG_FATAL and exits the process with status 1: for a failed fsync and other
 * states from which continuing would risk acknowledged data. */
_Noreturn void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Rate limiting, for every line an outside event can repeat (a client's bad handshake, an
 * accept that fails for want of descriptors): each call site gets LOG_LIMIT_BURST lines per
 * LOG_LIMIT_INTERVAL_MS, and the first line after a quiet spell says how many were
 * suppressed. Lock-free (a CAS per line that passes), so any thread may use one site. */
#define LOG_LIMIT_INTERVAL_MS 1000
#define LOG_LIMIT_BURST 5
struct log_limit {
	_Atomic unsigned long long window_ms; /* start of the current window */
	_Atomic unsigned passed, suppressed;
};
/* Whether a line may go out now; *suppressed gets how many were dropped before it. */
bool log_limit_pass(struct log_limit *l, unsigned long long *suppressed);
void log_msg_limited(struct log_limit *l, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* One limiter per call site. */
#define log_limited(level, ...)                                                                                        \
	do {                                                                                                           \
		static struct log_limit log_site_limit_;                                                               \
		log_msg_limited(&log_site_limit_, level, __VA_ARGS__);                                                 \
	} while (0)
#define log_warn_limited(...) log_limited(LOG_WARN, __VA_ARGS__)
#define log_error_limited(...) log_limited(LOG_ERROR, __VA_ARGS__)
#define log_info_limited(...) log_limited(LOG_INFO, __VA_ARGS__)

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
