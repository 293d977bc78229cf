/* See log.h. The message is escaped for JSON; the line is assembled in a stack buffer and
 * written with one write(2) so that lines from different threads never interleave. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_min = LOG_INFO;
static const char *const log_names[] = {"debug", "info", "warn", "error", "fatal"};

void log_set_level(enum log_level min) { log_min = min; }

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
	if (write(2, line, n) < 0) {
		/* nowhere left to report it */
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
