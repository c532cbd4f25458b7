/*
 * conf_load when memory runs out: every allocation of conf.c's own fails in
 * turn, and each must give -1 with "out of memory" in err, leave the
 * caller's struct untouched and leak nothing (the sanitizer build checks
 * that), never end the process. conf.c is compiled into this file so that
 * only its own strdup and malloc calls are replaced, not libconfuse's.
 */
#include <confuse.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"

static int nalloc;  /* conf.c allocations since the count was reset */
static int fail_at; /* the one that fails (1-based), 0 none */

static int fail_now(void)
{
	return ++nalloc == fail_at;
}

static char *test_strdup(const char *s)
{
	if (fail_now()) {
		errno = ENOMEM;
		return NULL;
	}
	return strdup(s);
}

static void *test_malloc(size_t n)
{
	if (fail_now()) {
		errno = ENOMEM;
		return NULL;
	}
	return malloc(n);
}

#define strdup test_strdup
#define malloc test_malloc
#include "../../src/conf.c"
#undef strdup
#undef malloc

static const char config[] = "listen = {\"127.0.0.1:0\", \"[::1]:0\"}\n"
			     "workers = 2\n"
			     "metrics_listen = \"127.0.0.1:0\"\n"
			     "user = \"\"\n"
			     "pid_file = \"/run/submitd-test.pid\"\n"
			     "log_file = \"/var/log/submitd-test.log\"\n"
			     "spool_dir = \"/var/spool/submitd-test\"\n";

int main(void)
{
	char path[] = "/tmp/test_conf.XXXXXX", err[512];
	struct conf c, untouched;
	int fd = mkstemp(path), n, done = 0;

	if (fd == -1 || write(fd, config, sizeof(config) - 1) != (ssize_t)(sizeof(config) - 1)) {
		diag("%s: %s", path, strerror(errno));
		return 1;
	}
	close(fd);
	memset(&untouched, 0x5a, sizeof(untouched));

	for (n = 1; n <= 64 && !done; n++) {
		int r;

		memcpy(&c, &untouched, sizeof(c));
		nalloc = 0;
		fail_at = n;
		r = conf_load(path, &c, err, sizeof(err));
		if (nalloc < n) {
			/* Past the last allocation: nothing failed, the load succeeds. */
			is_int(r, 0, "conf_load with no allocation failing (%d allocations): %s",
			       nalloc, err);
			done = 1;
			break;
		}
		is_int(r, -1, "allocation %d of %d fails: conf_load returns -1", n, nalloc);
		ok(strstr(err, "out of memory") != NULL && strncmp(err, path, strlen(path)) == 0,
		   "allocation %d: \"FILE: out of memory\" in err (%s)", n, err);
		ok(memcmp(&c, &untouched, sizeof(c)) == 0, "allocation %d: the struct is untouched",
		   n);
	}
	ok(done, "conf_load succeeds once no allocation fails");
	/* path, 2 listen, metrics_listen, user, pid_file, log_file, spool_dir; the file buffer. */
	ok(n >= 10, "each of at least 9 allocations was made to fail (%d)", n - 1);
	if (done) {
		ok(c.nlisten == 2 && strcmp(c.listen[1], "[::1]:0") == 0 &&
		       strcmp(c.spool_dir, "/var/spool/submitd-test") == 0,
		   "the successful load has every value");
		conf_free(&c);
	}
	unlink(path);
	return done_testing();
}
