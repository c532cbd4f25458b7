/* Log line format: "<N>" priorities when stderr is the journal, timestamps otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "tap.h"

static char tmpl[] = "/tmp/test_log.XXXXXX";
static int out_fd;

/* stderr goes to a fresh temporary file; returns what was logged to it since. */
static const char *logged(void)
{
	static char text[8192];
	ssize_t n = pread(out_fd, text, sizeof(text) - 1, 0);

	text[n > 0 ? n : 0] = '\0';
	return text;
}

static void reset(void)
{
	/* fd 2 shares out_fd's offset: rewind it too. */
	if (ftruncate(out_fd, 0) == -1 || lseek(out_fd, 0, SEEK_SET) == -1)
		diag("reset: %s", strerror(errno));
}

static int matches(const char *text, const char *pattern)
{
	regex_t re;
	int r;

	if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB | REG_NEWLINE) != 0)
		return 0;
	r = regexec(&re, text, 0, NULL, 0) == 0;
	regfree(&re);
	return r;
}

static void test_journal(const char *stream)
{
	char want[1024];
	int pid = (int)getpid();

	setenv("JOURNAL_STREAM", stream, 1);
	ok(log_init(NULL, LOG_DEBUG) == 0, "log_init to stderr");
	log_set_tag("worker 3");
	reset();
	errno = ENOENT;
	log_error("open %s", "x");
	log_errorx("bad %d", 1);
	log_warn("w");
	log_warnx("wx");
	log_info("i");
	log_debug("d");
	snprintf(want, sizeof(want),
		 "<3>error[%d] worker 3: open x: %s\n<3>error[%d] worker 3: bad 1\n"
		 "<4>warn[%d] worker 3: w: %s\n<4>warn[%d] worker 3: wx\n"
		 "<6>info[%d] worker 3: i\n<7>debug[%d] worker 3: d\n",
		 pid, strerror(ENOENT), pid, pid, strerror(ENOENT), pid, pid, pid);
	if (!ok(strcmp(logged(), want) == 0, "JOURNAL_STREAM=%s names stderr: priorities, no time",
		stream))
		diag("got:\n%s", logged());
	ok(errno == ENOENT, "logging keeps errno");

	log_set_tag(NULL);
	log_set_level(LOG_WARN);
	reset();
	log_info("hidden");
	log_warnx("shown");
	snprintf(want, sizeof(want), "<4>warn[%d]: shown\n", pid);
	ok(strcmp(logged(), want) == 0, "the level still filters, and no tag means none");
}

static void test_not_journal(const char *stream, const char *why)
{
	if (stream)
		setenv("JOURNAL_STREAM", stream, 1);
	else
		unsetenv("JOURNAL_STREAM");
	log_init(NULL, LOG_INFO);
	reset();
	log_errorx("e");
	if (!ok(matches(logged(),
			"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
			"error\\[[0-9]+\\]: e\n$"),
		"%s: timestamped, no priority", why))
		diag("got: %s", logged());
}

int main(void)
{
	char stream[64], other[64], path[sizeof(tmpl) + 8];
	struct stat st;
	int save = dup(STDERR_FILENO);

	out_fd = mkstemp(tmpl);
	if (out_fd == -1 || save == -1 || dup2(out_fd, STDERR_FILENO) == -1 ||
	    fstat(out_fd, &st) == -1) {
		printf("Bail out! temporary file: %s\n", strerror(errno));
		return 1;
	}
	snprintf(stream, sizeof(stream), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	snprintf(other, sizeof(other), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino + 1);

	test_journal(stream);
	test_not_journal(NULL, "no JOURNAL_STREAM");
	test_not_journal(other, "JOURNAL_STREAM names another stream");
	test_not_journal("", "empty JOURNAL_STREAM");
	test_not_journal("x:1", "JOURNAL_STREAM not numbers");
	{
		char trailing[80];
		snprintf(trailing, sizeof(trailing), "%s:9", stream);
		test_not_journal(trailing, "JOURNAL_STREAM with a third field");
	}

	/* A log file is never the journal, even when stderr is. */
	setenv("JOURNAL_STREAM", stream, 1);
	snprintf(path, sizeof(path), "%s.file", tmpl);
	reset();
	ok(log_init(path, LOG_INFO) == 0, "log_init to a file");
	log_errorx("to file");
	{
		char text[256] = "";
		int fd = open(path, O_RDONLY);
		ssize_t n = fd == -1 ? -1 : read(fd, text, sizeof(text) - 1);
		text[n > 0 ? n : 0] = '\0';
		if (fd != -1)
			close(fd);
		ok(matches(text, "^[0-9]{4}-[0-9-]+T[0-9:.]+Z error\\[[0-9]+\\]: to file\n$"),
		   "a log file gets timestamps while JOURNAL_STREAM names stderr");
		ok(logged()[0] == '\0', "nothing went to stderr");
	}
	/* Back to stderr: the journal is detected again. */
	log_init(NULL, LOG_INFO);
	reset();
	log_errorx("back");
	ok(strncmp(logged(), "<3>error[", 9) == 0, "back on stderr, priorities again");

	unlink(path);
	unlink(tmpl);
	dup2(save, STDERR_FILENO);
	close(save);
	return done_testing();
}
