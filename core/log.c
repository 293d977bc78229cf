/* See log.h. The message is escaped for JSON; the line is assembled in a stack buffer and
 * written with one write(2) so that lines from different threads never interleave. A
 * rate-limited site counts what it drops and says so in its next line, so the log stays
 * small (LOG_LIMIT_BURST lines a second per site) without hiding that something repeats. */
#include "core/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_min = LOG_INFO;
static bool log_to_stdout, log_to_stderr = true; /* --log-outputs: set once at start-up */
static const char *const log_names[] = {"debug", "info", "warn", "error", "fatal"};

void log_set_level(enum log_level min) { log_min = min; }

void log_set_outputs(bool to_stdout, bool to_stderr)
{
	log_to_stdout = to_stdout;
	log_to_stderr = to_stderr;
}

static void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
	char msg[1024], line[2300];
	struct timespec ts;
	struct tm tm;
	size_t n = 0;

	vsnprintf(msg, sizeof msg, fmt, ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n += snprintf(line, sizeof line, "{\"level\":\"%s\",\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ\",\"msg\":\"",
		      log_names[level], tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		      tm.tm_sec, ts.tv_nsec / 1000);
	for (const char *p = msg; *p && n < sizeof line - 8; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"' || c == '\\') {
			line[n++] = '\\';
			line[n++] = (char)c;
		} else if (c < 0x20) {
			n += snprintf(line + n, sizeof line - n, "\\u%04x", c);
		} else {
			line[n++] = (char)c;
		}
	}
	line[n++] = '"';
	line[n++] = '}';
	line[n++] = '\n';
	if (log_to_stderr && write(2, line, n) < 0) {
		/* nowhere left to report it */
	}
	if (log_to_stdout && write(1, line, n) < 0) {
	}
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (level < log_min)
		return;
	va_start(ap, fmt);
	log_vwrite(level, fmt, ap);
	va_end(ap);
}

void log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_FATAL, fmt, ap);
	va_end(ap);
	_exit(1);
}

static unsigned long long log_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
}

bool log_limit_pass(struct log_limit *l, unsigned long long *suppressed)
{
	unsigned long long now = log_clock_ms() + LOG_LIMIT_INTERVAL_MS; /* never 0: 0 is "no window yet" */
	unsigned long long w = atomic_load_explicit(&l->window_ms, memory_order_relaxed);

	*suppressed = 0;
	if ((w == 0 || now - w >= LOG_LIMIT_INTERVAL_MS) && atomic_compare_exchange_strong(&l->window_ms, &w, now)) {
		/* a new window: this line opens it and reports what the last one dropped */
		atomic_store(&l->passed, 1);
		*suppressed = atomic_exchange(&l->suppressed, 0);
		return true;
	}
	if (atomic_fetch_add(&l->passed, 1) < LOG_LIMIT_BURST)
		return true;
	atomic_fetch_add(&l->suppressed, 1);
	return false;
}

void log_msg_limited(struct log_limit *l, enum log_level level, const char *fmt, ...)
{
	unsigned long long dropped;
	char msg[1024];
	va_list ap;

	if (level < log_min || !log_limit_pass(l, &dropped))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (dropped)
		log_msg(level, "%s (%llu similar lines suppressed)", msg, dropped);
	else
		log_msg(level, "%s", msg);
}
