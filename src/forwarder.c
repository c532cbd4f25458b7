#include "forwarder.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "clock.h"
#include "fwdchain.h"
#include "fwdnats.h"
#include "log.h"
#include "proc.h"

#define STOP_WAIT_MS 5000

static const struct conf *cf;
static struct stats_shm *shm;
static int ep = -1, sfd = -1, efd = -1;
static int stopping;

/* This machine's name, "localhost" when it has none. */
static void host_name(char *out, size_t n)
{
	if (gethostname(out, n - 1) == -1 || out[0] == '\0')
		snprintf(out, n, "localhost");
	out[n - 1] = '\0';
}

static void on_signal(void)
{
	struct signalfd_siginfo si;

	while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
		case SIGQUIT:
			if (!stopping)
				log_info("stopping");
			stopping = 1;
			break;
		case SIGUSR1:
			if (log_reopen() == -1)
				log_warn("reopen %s", cf->log_file);
			break;
		default:
			break;
		}
	}
}

static void watch(int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1)
		fatal("epoll_ctl");
}

static void setup(const struct forwarder_args *a)
{
	char err[256], host[128];

	cf = a->conf;
	shm = a->shm;
	log_set_tag("forwarder");
	for (int i = 0; i < a->nclose; i++)
		if (a->close_fds[i] >= 0)
			close(a->close_fds[i]);
	/* No client sockets, nothing of the master's: stdio and the log only. */
	int keep[4] = {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, log_fileno()};
	if (proc_close_fds(keep, 4) == -1)
		fatal("closing inherited descriptors");
	proc_title_set("forwarder");
	prctl(PR_SET_NAME, "submitd-fwd");

	/* Blocked before libnats starts its threads, so they inherit the mask. */
	static const int sigs[] = {SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2,
				   SIGURG,  SIGHUP, SIGTTIN, SIGTTOU, SIGCHLD};
	if ((sfd = proc_signalfd(sigs, (int)(sizeof(sigs) / sizeof(sigs[0])))) == -1)
		fatal("signalfd");
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1");
	watch(sfd);

	if (proc_drop_privileges(cf->user, err, sizeof(err)) == -1)
		fatalx("%s", err);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != a->master)
		exit(0);
	/* Where the workers send their wake-up (fwdchain_wait_ms). */
	STATS_STORE(shm->ctl.fwd_pid, (int32_t)getpid());

	host_name(host, sizeof(host));
	fwdchain_init(cf, shm);
	efd = fwdnats_init(cf, &shm->fwd, host);
	watch(efd);
	log_info("spool %s to stream %s at %s%s (ack_after = %s)", cf->spool_dir, cf->nats_stream,
		 cf->nats_servers[0], cf->nnats > 1 ? ", ..." : "",
		 conf_ack_after_name(cf->ack_after));
}

/*
 * Once stopping: the acknowledgements still owed get until the deadline
 * (set at the first call). Returns 1 when the loop should end.
 */
static int stop_due(uint64_t now, uint64_t *deadline)
{
	if (*deadline == 0)
		*deadline = now + STOP_WAIT_MS;
	return STATS_LOAD(shm->fwd.inflight) == 0 || !fwdnats_connected() || now >= *deadline;
}

/* One loop round after the wait: signals, acknowledgements, publishing. 1 when it ends. */
static int round_of(const struct epoll_event *evs, int n, uint64_t now, uint64_t *stop_deadline)
{
	const struct fwd_ack *acks;
	size_t nacks;
	int stream_back;

	for (int i = 0; i < n; i++)
		if (evs[i].data.fd == sfd)
			on_signal();
	nacks = fwdnats_drain(&acks, now);
	for (size_t i = 0; i < nacks; i++)
		fwdchain_on_ack(&acks[i], now);

	if (stopping) {
		if (stop_due(now, stop_deadline))
			return 1;
	} else if (fwdnats_ready(now, &stream_back)) {
		if (stream_back)
			fwdchain_retry_now(now);
		fwdchain_forward(now);
	}
	fwdchain_round(now);
	return 0;
}

void forwarder_main(const struct forwarder_args *a)
{
	struct epoll_event evs[4];
	uint64_t stop_deadline = 0, next_second = 0, now;

	setup(a);
	fwdchain_start(mono_ms());
	for (;;) {
		int n = epoll_wait(ep, evs, 4, fwdchain_wait_ms());
		if (n == -1 && errno != EINTR)
			fatal("epoll_wait");
		now = mono_ms();
		STATS_STORE(shm->ctl.fwd_heartbeat_ms, now);
		if (round_of(evs, n, now, &stop_deadline))
			break;
		if (now >= next_second) {
			next_second = now + 1000;
			fwdchain_every_second(now);
			fwdnats_every_second(now);
		}
	}
	/*
	 * Leaves: checkpoints every chain where its acknowledgements reached, so
	 * that what is still unacknowledged goes again from there.
	 */
	fwdchain_leave();
	fwdnats_leave(mono_ms());
	log_info("exiting");
	/* libnats' threads may still run callbacks: leave without tearing them down. */
	_exit(0);
}

int forwarder_check(const struct conf *c, int timeout_ms, int *reachable, char *err, size_t errlen)
{
	char host[128];

	host_name(host, sizeof(host));
	return fwdnats_check(c, host, timeout_ms, reachable, err, errlen);
}
