/* Logging: one line per event to stderr, in the shape of etcd's JSON logger
 * ({"level":…,"ts":…,"msg":…}), so log collectors that parse etcd's output keep working.
 * Reactor threads may log only on rare paths (start-up, errors): a line is one write(2). */
#ifndef UETCD_CORE_LOG_H
#define UETCD_CORE_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_FATAL };

void log_set_level(enum log_level min);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs at LOG_FATAL and exits the process with status 1: for a failed fsync and other
 * states from which continuing would risk acknowledged data. */
_Noreturn void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
