/* A worker process: the epoll loop over its connections, accept, timeouts, drain. */
#ifndef SUBMITD_WORKER_H
#define SUBMITD_WORKER_H

#include <sys/types.h>

#include "conf.h"
#include "stats.h"
#include "tls.h"

struct iplimit;
struct ratelimit;

struct worker_args {
	const struct conf *conf;
	int index;		     /* the worker label, 0..workers-1 */
	unsigned generation;	     /* for log lines */
	struct stats_slot *slot;     /* this worker's, in shared memory */
	const struct stats_shm *shm; /* for the other workers' load */
	const int *listen_fds;	     /* shared with the master and the other workers */
	const uint8_t *listen_tls;   /* per listener: 1 for tls:// */
	int nlisten;
	struct tls_ctx *tls;	 /* the generation's TLS context (the master's), NULL without TLS */
	struct iplimit *iplimit; /* connections per address, shared by all workers */
	struct ratelimit *ratelimit; /* Submits per second per client, shared by all workers */
	const int *close_fds;	     /* the master's descriptors, closed at start */
	int nclose;
	pid_t master; /* getppid() while the master lives (1 when it is a container's init) */
};

/* Runs in the forked child; never returns. Exit status 0 after a clean stop. */
void worker_main(const struct worker_args *a) __attribute__((noreturn));

#endif
