#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int log_fd = STDERR_FILENO;
static int log_lvl = LOG_INFO;
static char log_path[4096];
static char log_tag[32];
static char last_error[1024];
/* stderr is a journald stream: lines carry "<N>" and no timestamp of ours. */
static int log_journal;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
/* syslog(3) priorities of the levels: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static const int level_prio[] = {3, 4, 6, 7};

/*
 * systemd puts "dev:ino" of the stream it connects to the journal in
 * JOURNAL_STREAM (systemd.exec(5)). Compare it with fd 2 itself: a shell
 * started from a unit inherits the variable while its stderr may go
 * elsewhere, where a "<3>" would be noise.
 */
static int stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char *end;

	if (e == NULL || *e < '0' || *e > '9')
		return 0;
	errno = 0;
	dev = strtoull(e, &end, 10);
	if (errno != 0 || *end != ':' || end[1] < '0' || end[1] > '9')
		return 0;
	ino = strtoull(end + 1, &end, 10);
	if (errno != 0 || *end != '\0' || fstat(STDERR_FILENO, &st) == -1)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static int open_log(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int log_init(const char *path, int level)
{
	log_lvl = level;
	if (path == NULL || path[0] == '\0') {
		if (log_fd != STDERR_FILENO)
			close(log_fd);
		log_fd = STDERR_FILENO;
		log_path[0] = '\0';
		log_journal = stderr_is_journal();
		return 0;
	}
	int fd = open_log(path);
	if (fd == -1)
		return -1;
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	log_journal = 0;
	snprintf(log_path, sizeof(log_path), "%s", path);
	return 0;
}

int log_reopen(void)
{
	if (log_path[0] == '\0')
		return 0;
	int fd = open_log(log_path);
	if (fd == -1)
		return -1;
	/* dup2 keeps the descriptor number, so forked workers need not be told. */
	dup2(fd, log_fd);
	close(fd);
	return 0;
}

int log_fileno(void)
{
	return log_fd;
}

const char *log_last_error(void)
{
	return last_error;
}

void log_set_level(int level)
{
	log_lvl = level;
}

void log_set_tag(const char *tag)
{
	snprintf(log_tag, sizeof(log_tag), "%s", tag ? tag : "");
}

int log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *log_level_name(int level)
{
	return level >= 0 && level <= LOG_DEBUG ? level_names[level] : "?";
}

static void vlog(int level, int err, const char *fmt, va_list ap)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n = 0;
	int r;

	if (level > log_lvl)
		return;
	if (log_journal) {
		/* sd-daemon(3) prefix; the journal stamps each line itself. */
		r = snprintf(line, sizeof(line), "<%d>", level_prio[level]);
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		r = snprintf(line + n, sizeof(line) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
	}
	if (r > 0)
		n += (size_t)r;
	r = snprintf(line + n, sizeof(line) - n, "%s[%d]%s%s: ", level_names[level], (int)getpid(),
		     log_tag[0] ? " " : "", log_tag);
	if (r > 0)
		n += (size_t)r;
	size_t msg = n;
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (r > 0)
		n += (size_t)r;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	if (err) {
		r = snprintf(line + n, sizeof(line) - n, ": %s", strerror(err));
		if (r > 0)
			n += (size_t)r;
		if (n > sizeof(line) - 2)
			n = sizeof(line) - 2;
	}
	if (level == LOG_ERROR)
		snprintf(last_error, sizeof(last_error), "%.*s", (int)(n - msg), line + msg);
	line[n++] = '\n';
	/* One write per line: lines of several processes never interleave. */
	while (write(log_fd, line, n) == -1 && errno == EINTR)
		;
}

#define LOG_FN(name, level, with_errno)                                                            \
	void name(const char *fmt, ...)                                                            \
	{                                                                                          \
		int saved = errno;                                                                 \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		vlog(level, with_errno ? saved : 0, fmt, ap);                                      \
		va_end(ap);                                                                        \
		errno = saved;                                                                     \
	}

LOG_FN(log_error, LOG_ERROR, 1)
LOG_FN(log_errorx, LOG_ERROR, 0)
LOG_FN(log_warn, LOG_WARN, 1)
LOG_FN(log_warnx, LOG_WARN, 0)
LOG_FN(log_info, LOG_INFO, 0)
LOG_FN(log_debug, LOG_DEBUG, 0)

void fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_ERROR, saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
