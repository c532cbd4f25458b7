/* submitd: command line, then master_run(). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "master.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: submitd [-tTqfvh] [-c file] [-s reload|stop|quit]\n"
		   "  -c, --config FILE   configuration file (default " CONF_DEFAULT_PATH ")\n"
		   "  -t, --test          check the configuration and exit\n"
		   "  -T, --dump          like -t, and print the effective configuration\n"
		   "  -q, --quiet         with -t or -T: print only errors (and -T's output)\n"
		   "  -f, --foreground    do not detach\n"
		   "  -s, --signal SIG    reload (and wait for the result), stop or quit the\n"
		   "                      running master named in pid_file\n"
		   "  -v, --version       print the version\n"
		   "  -h, --help          this text\n");
}

/* After getopt_long refused arg: name the long option it was probably meant to be. */
static void suggest_option(const struct option *opts, const char *arg)
{
	const char *best = NULL;
	size_t bestd = 3;

	if (arg == NULL || strncmp(arg, "--", 2) != 0)
		return;
	arg += 2;
	size_t len = strcspn(arg, "=");
	for (; opts->name != NULL; opts++) {
		size_t lb = strlen(opts->name), row[32];
		if (len >= 32 || lb >= 32)
			continue;
		/* Edit distance, one row at a time. */
		for (size_t j = 0; j <= lb; j++)
			row[j] = j;
		for (size_t i = 1; i <= len; i++) {
			size_t diag = row[0];
			row[0] = i;
			for (size_t j = 1; j <= lb; j++) {
				size_t up = row[j], d = diag + (arg[i - 1] != opts->name[j - 1]);
				if (up + 1 < d)
					d = up + 1;
				if (row[j - 1] + 1 < d)
					d = row[j - 1] + 1;
				diag = up;
				row[j] = d;
			}
		}
		if (row[lb] < bestd && row[lb] * 2 <= len)
			bestd = row[lb], best = opts->name;
	}
	if (best != NULL)
		fprintf(stderr, "submitd: did you mean --%s?\n", best);
}

static int send_signal(const struct conf *c, const char *what)
{
	struct timespec ts = {120, 0};
	union sigval v = {.sival_int = MASTER_RELOAD_ASK};
	siginfo_t si;
	sigset_t set;
	long pid = 0;
	int sig;
	FILE *f;

	if (strcmp(what, "reload") == 0)
		sig = SIGHUP;
	else if (strcmp(what, "stop") == 0)
		sig = SIGINT; /* as nginx: stop is fast, quit is graceful */
	else if (strcmp(what, "quit") == 0)
		sig = SIGTERM;
	else {
		fprintf(stderr, "submitd: -s %s: expected reload, stop or quit\n", what);
		return 2;
	}
	if (c->pid_file[0] == '\0') {
		fprintf(stderr, "submitd: %s: no pid_file configured\n", c->path);
		return 1;
	}
	if ((f = fopen(c->pid_file, "r")) == NULL || fscanf(f, "%ld", &pid) != 1 || pid <= 0) {
		fprintf(stderr, "submitd: cannot read a pid from %s: %s\n", c->pid_file,
			f ? "no pid" : strerror(errno));
		if (f)
			fclose(f);
		return 1;
	}
	fclose(f);
	if (sig != SIGHUP) {
		if (kill((pid_t)pid, sig) == -1) {
			fprintf(stderr, "submitd: kill %ld: %s\n", pid, strerror(errno));
			return 1;
		}
		return 0;
	}
	/* Ask for an answer: the master replies with SIGUSR2 once the reload took or failed. */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	if (sigqueue((pid_t)pid, SIGHUP, v) == -1) {
		fprintf(stderr, "submitd: signal %ld: %s\n", pid, strerror(errno));
		return 1;
	}
	for (;;) {
		if (sigtimedwait(&set, &si, &ts) == -1) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "submitd: no answer from pid %ld to the reload\n", pid);
			return 1;
		}
		if (si.si_pid != (pid_t)pid)
			continue;
		if (si.si_value.sival_int == 0) {
			printf("reload: new configuration serving\n");
			return 0;
		}
		fprintf(stderr,
			"reload failed, the old configuration keeps serving (see the log)\n");
		return 1;
	}
}

static void daemonize(void)
{
	pid_t pid = fork();
	int fd;

	if (pid == -1)
		fatal("fork");
	if (pid > 0)
		_exit(0);
	setsid();
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"test", no_argument, NULL, 't'},
	    {"dump", no_argument, NULL, 'T'},
	    {"foreground", no_argument, NULL, 'f'},
	    {"signal", required_argument, NULL, 's'},
	    {"version", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {"quiet", no_argument, NULL, 'q'},
	    {NULL, 0, NULL, 0},
	};
	const char *path = CONF_DEFAULT_PATH, *sig = NULL;
	int test = 0, dump = 0, quiet = 0, fg = 0, ch, chk = 0;
	struct conf c;
	char err[512];

	while ((ch = getopt_long(argc, argv, "c:tTqfs:vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'T':
			test = dump = 1;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'f':
			fg = 1;
			break;
		case 's':
			sig = optarg;
			if (strcmp(sig, "reload") != 0 && strcmp(sig, "stop") != 0 &&
			    strcmp(sig, "quit") != 0) {
				fprintf(stderr, "submitd: -s %s: expected reload, stop or quit\n",
					sig);
				usage(stderr);
				return 2;
			}
			break;
		case 'v':
			printf("submitd %s (commit %s)\n", SUBMITD_VERSION, SUBMITD_COMMIT);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			suggest_option(longopts, argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "submitd: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	if (conf_load(path, &c, err, sizeof(err)) == -1) {
		fprintf(stderr, "submitd: %s\n", err);
		if (test)
			fprintf(stderr, "submitd: configuration file %s test failed\n", path);
		return 1;
	}
	if (sig == NULL && (chk = conf_check_system(&c, err, sizeof(err))) != 0)
		fprintf(stderr, "submitd: %s%s\n", chk == 1 ? "warning: " : "", err);
	if (chk == -1) {
		if (test)
			fprintf(stderr, "submitd: configuration file %s test failed\n", path);
		conf_free(&c);
		return 1;
	}
	if (test) {
		if (dump)
			conf_print(&c, stdout);
		if (!quiet)
			printf("submitd: configuration file %s test is successful\n", path);
		conf_free(&c);
		return 0;
	}
	if (sig != NULL) {
		int r = send_signal(&c, sig);
		conf_free(&c);
		return r;
	}
	if (log_init(c.log_file, c.log_level) == -1) {
		fprintf(stderr, "submitd: log_file %s: %s\n", c.log_file, strerror(errno));
		return 1;
	}
	if (!fg)
		daemonize();
	log_info("submitd %s (commit %s) starting, configuration %s", SUBMITD_VERSION,
		 SUBMITD_COMMIT, c.path);
	return master_run(&c);
}
