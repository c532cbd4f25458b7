/* Leveled logging to stderr or a file. */
#ifndef SUBMITD_LOG_H
#define SUBMITD_LOG_H

#include <stdarg.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

#define LOG_PRINTF(f, a) __attribute__((format(printf, f, a)))

/*
 * path NULL or "" logs to stderr; when JOURNAL_STREAM names stderr, lines
 * start with a syslog priority "<N>" instead of a timestamp. Returns -1
 * (errno set) if the file cannot be opened.
 */
int log_init(const char *path, int level);
int log_reopen(void);
/* The descriptor lines go to (stderr without a file), to keep across fork or fchown. */
int log_fileno(void);
/* The message of the last error line, "" if none: for a report outside the log. */
const char *log_last_error(void);
void log_set_level(int level);
/* Tag added to every line of this process, e.g. "worker 3"; NULL for none. */
void log_set_tag(const char *tag);
int log_level_parse(const char *name);
const char *log_level_name(int level);

/* _warn and _error append strerror(errno); the x variants do not. */
void log_error(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_errorx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
void fatal(const char *fmt, ...) LOG_PRINTF(1, 2) __attribute__((noreturn));
void fatalx(const char *fmt, ...) LOG_PRINTF(1, 2) __attribute__((noreturn));

#endif
