/* submitd: command line, then master_run(). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "conf.h"
#include "forwarder.h"
#include "log.h"
#include "master.h"
#include "proc.h"
#include "metrics.h"
#include "tls.h"
#include "version.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: submitd [-tTqfvh] [-c file] [-s reload|stop|quit|status]\n"
		   "       submitd --hash-token IDENTITY < token\n"
		   "  -c, --config FILE   configuration file (default " CONF_DEFAULT_PATH ")\n"
		   "  -t, --test          check the configuration and exit\n"
		   "  -T, --dump          like -t, and print the effective configuration\n"
		   "  -q, --quiet         with -t or -T: print only errors (and -T's output)\n"
		   "  -f, --foreground    do not detach\n"
		   "  -s, --signal SIG    reload (and wait for the result), stop or quit the\n"
		   "                      running master named in pid_file; status: print\n"
		   "                      its /status page from metrics_listen\n"
		   "  -v, --version       print the version\n"
		   "  --hash-token IDENTITY\n"
		   "                      print the auth_tokens_file line for the token on\n"
		   "                      standard input (32 bytes or more; one newline at\n"
		   "                      the end is not part of it)\n"
		   "  -h, --help          this text\n");
}

/* --hash-token: "IDENTITY SHA256HEX" for the token on stdin; exit status. */
static int hash_token(const char *identity)
{
	static uint8_t tok[65536 + 2];
	size_t n = fread(tok, 1, sizeof(tok), stdin);
	char hex[2 * AUTH_HASH_LEN + 1];

	if (!auth_identity_ok(identity, strlen(identity))) {
		fprintf(stderr,
			"submitd: --hash-token \"%s\": an identity is 1 to %d of A-Z a-z 0-9 "
			". _ @ : / + = -\n",
			identity, AUTH_IDENTITY_MAX);
		return 2;
	}
	if (ferror(stdin) || n == sizeof(tok)) {
		fprintf(stderr, "submitd: --hash-token: %s\n",
			ferror(stdin) ? "cannot read the token" : "a token is at most 65536 bytes");
		return 1;
	}
	if (n > 0 && tok[n - 1] == '\n')
		n--;
	if (n < AUTH_TOKEN_MIN) {
		fprintf(stderr,
			"submitd: --hash-token: the token is %zu bytes, at least %d are needed "
			"(random ones: head -c 32 /dev/urandom | base64)\n",
			n, AUTH_TOKEN_MIN);
		return 1;
	}
	auth_hash_hex(tok, n, hex);
	printf("%s %s\n", identity, hex);
	return 0;
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
		size_t d = conf_edit_distance(arg, len, opts->name);
		if (d < bestd && d * 2 <= len)
			bestd = d, best = opts->name;
	}
	if (best != NULL)
		fprintf(stderr, "submitd: did you mean --%s?\n", best);
}

static int send_signal(const struct conf *c, const char *what)
{
	struct timespec ts = {MASTER_RELOAD_WAIT_S, 0};
	siginfo_t si, ask;
	sigset_t set;
	char err[4400];
	pid_t pid = 0;
	int sig, pidfd;

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
	/*
	 * The master is whoever holds the lock on the pid file, signalled by
	 * pidfd: neither a stale file nor a reused pid gets the signal.
	 */
	if ((pidfd = proc_pidfile_pidfd(c->pid_file, &pid, err, sizeof(err))) == -1) {
		fprintf(stderr, "submitd: %s\n", err);
		return 1;
	}
	if (sig != SIGHUP) {
		if (pidfd_send_signal(pidfd, sig, NULL, 0) == -1) {
			fprintf(stderr, "submitd: signal pid %d: %s\n", (int)pid, strerror(errno));
			return 1;
		}
		return 0;
	}
	/* Ask for an answer: the master replies with SIGUSR2 once the reload took or failed. */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	memset(&ask, 0, sizeof(ask)); /* what sigqueue() sends */
	ask.si_signo = SIGHUP;
	ask.si_code = SI_QUEUE;
	ask.si_pid = getpid();
	ask.si_uid = getuid();
	ask.si_value.sival_int = MASTER_RELOAD_ASK;
	if (pidfd_send_signal(pidfd, SIGHUP, &ask, 0) == -1) {
		fprintf(stderr, "submitd: signal pid %d: %s\n", (int)pid, strerror(errno));
		return 1;
	}
	for (;;) {
		if (sigtimedwait(&set, &si, &ts) == -1) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "submitd: no answer from pid %d to the reload\n", (int)pid);
			return 1;
		}
		if (si.si_pid != pid)
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

/* The running master's /status page, from the metrics endpoint the configuration names. */
static int show_status(const struct conf *c)
{
	char err[512];

	if (c->metrics_listen[0] == '\0') {
		fprintf(stderr,
			"submitd: status: metrics_listen is \"\" in %s: the endpoint is disabled\n",
			c->path);
		return 1;
	}
	if (metrics_status_get(&c->metrics_addr, stdout, err, sizeof(err)) == -1) {
		fprintf(stderr, "submitd: status: %s (is submitd running with %s?)\n", err,
			c->path);
		return 1;
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

/*
 * A daemon works from "/": the configuration is re-read on reload and the
 * log and pid files are reopened by name, so relative names would change
 * meaning.
 */
static int detach_paths(struct conf *c)
{
	char *abs;

	if ((c->log_file[0] != '\0' && c->log_file[0] != '/') ||
	    (c->pid_file[0] != '\0' && c->pid_file[0] != '/') ||
	    (c->spool_dir[0] != '\0' && c->spool_dir[0] != '/')) {
		fprintf(stderr,
			"submitd: %s: log_file, pid_file and spool_dir must be absolute paths "
			"unless -f is given\n",
			c->path);
		return -1;
	}
	if (c->path[0] != '/') {
		if ((abs = realpath(c->path, NULL)) == NULL) {
			fprintf(stderr, "submitd: %s: %s\n", c->path, strerror(errno));
			return -1;
		}
		free(c->path);
		c->path = abs;
	}
	return 0;
}

/* What the command line asks for. */
struct opts {
	const char *path; /* the configuration file */
	const char *sig;  /* -s: reload, stop, quit or status; NULL to run */
	int test, dump, quiet, fg;
};

#define GO_ON (-1) /* parse_args: nothing to end with, go on */

/*
 * Reads the options into o. Returns GO_ON, or the exit status when the
 * command line is wrong (2, with the usage on stderr) or fully served by
 * the options (-v, -h: 0).
 */
static int parse_args(int argc, char **argv, struct opts *o)
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
	    {"hash-token", required_argument, NULL, 'H'},
	    {NULL, 0, NULL, 0},
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "c:tTqfs:vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->path = optarg;
			break;
		case 't':
			o->test = 1;
			break;
		case 'T':
			o->test = o->dump = 1;
			break;
		case 'q':
			o->quiet = 1;
			break;
		case 'f':
			o->fg = 1;
			break;
		case 's':
			o->sig = optarg;
			if (strcmp(o->sig, "reload") != 0 && strcmp(o->sig, "stop") != 0 &&
			    strcmp(o->sig, "quit") != 0 && strcmp(o->sig, "status") != 0) {
				fprintf(stderr,
					"submitd: -s %s: expected reload, stop, quit or status\n",
					o->sig);
				usage(stderr);
				return 2;
			}
			break;
		case 'v':
			printf("submitd %s (commit %s)\n", version_string, version_commit);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 'H':
			return hash_token(optarg);
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
	return GO_ON;
}

/*
 * The TLS files as start-up loads them, then as the workers' user may
 * read them, and the certificate's expiry: -1 with the error in err; a
 * warning is printed here.
 */
static int check_tls(const struct conf *c, char *err, size_t errlen)
{
	struct tls_ctx *x = tls_ctx_load(c, err, errlen);
	int r;

	if (x == NULL)
		return -1;
	r = tls_check(c, x, TLS_WARN_DAYS, err, errlen);
	tls_ctx_free(x);
	if (r == 1)
		fprintf(stderr, "submitd: warning: %s\n", err);
	return r == -1 ? -1 : 0;
}

/*
 * -t and -T, once the configuration loaded and passed its checks. The
 * stream is checked when NATS answers: a missing stream fails the test, an
 * unreachable server is only a warning (it may be down now). Returns the
 * exit status: 0 passed, 1 failed.
 */
static int test_config(const struct conf *c, const struct opts *o)
{
	char err[512];

	if (c->nlisten_tls > 0 && check_tls(c, err, sizeof(err)) == -1) {
		fprintf(stderr, "submitd: %s\n", err);
		fprintf(stderr, "submitd: configuration file %s test failed\n", o->path);
		return 1;
	}
	if (c->nnats > 0) {
		int reachable = 1;
		if (forwarder_check(c, 2000, &reachable, err, sizeof(err)) == -1) {
			fprintf(stderr, "submitd: %s%s\n", reachable ? "" : "warning: ", err);
			if (reachable) {
				fprintf(stderr, "submitd: configuration file %s test failed\n",
					o->path);
				return 1;
			}
		}
	}
	if (o->dump)
		conf_print(c, stdout);
	if (!o->quiet)
		printf("submitd: configuration file %s test is successful\n", o->path);
	return 0;
}

/*
 * Starts the daemon: detached unless fg, logging as configured, then the
 * master's loop. Returns the exit status: master_run's, or 1 when the
 * start fails before it.
 */
static int run(struct conf *c, int argc, char **argv, int fg)
{
	if (!fg && (detach_paths(c) == -1)) {
		conf_free(c);
		return 1;
	}
	if (log_init(c->log_file, c->log_level) == -1) {
		fprintf(stderr, "submitd: log_file %s: %s\n", c->log_file, strerror(errno));
		return 1;
	}
	log_info("submitd %s (commit %s) starting, configuration %s", version_string,
		 version_commit, c->path);
	proc_title_init(argc, argv); /* argv's strings are not used past here */
	int r = master_run(c, !fg);
	/*
	 * A start-up failure: the detached daemon tells the waiting parent; the
	 * process still attached says it on stderr unless the log already did.
	 */
	if (r != 0 && !fg && proc_detach_report(log_last_error()) == 0 &&
	    log_fileno() != STDERR_FILENO)
		fprintf(stderr, "submitd: %s\n", log_last_error());
	return r;
}

int main(int argc, char **argv)
{
	struct opts o = {.path = CONF_DEFAULT_PATH};
	int chk = 0, r;
	struct conf c;
	char err[512];

	if ((r = parse_args(argc, argv, &o)) != GO_ON)
		return r;
	if (conf_load(o.path, &c, err, sizeof(err)) == -1) {
		fprintf(stderr, "submitd: %s\n", err);
		if (o.test)
			fprintf(stderr, "submitd: configuration file %s test failed\n", o.path);
		return 1;
	}
	if (o.sig == NULL && (chk = conf_check_system(&c, err, sizeof(err))) != 0)
		fprintf(stderr, "submitd: %s%s\n", chk == 1 ? "warning: " : "", err);
	if (chk == -1) {
		if (o.test)
			fprintf(stderr, "submitd: configuration file %s test failed\n", o.path);
		conf_free(&c);
		return 1;
	}
	if (o.test || o.sig != NULL) {
		if (o.test)
			r = test_config(&c, &o);
		else if (strcmp(o.sig, "status") == 0)
			r = show_status(&c);
		else
			r = send_signal(&c, o.sig);
		conf_free(&c);
		return r;
	}
	return run(&c, argc, argv, o.fg);
}
