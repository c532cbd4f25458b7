/*
 * Prometheus exposition from the shared-memory statistics, and the
 * libmicrohttpd endpoint that serves it. Master only; the daemon runs
 * without a thread of its own, driven by the master's poll loop.
 */
#ifndef SUBMITD_METRICS_H
#define SUBMITD_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "net.h"
#include "stats.h"

/* What the master knows beyond shared memory; filled by the master, read on each scrape. */
struct metrics_src {
	const struct stats_shm *shm;
	const int *slot_label;		  /* STATS_MAX_SLOTS entries: label or -1 if free */
	const struct stats_slot *retired; /* per label: counters of workers gone */
	int nlabels;			  /* labels 0..nlabels-1 have existed */
	int workers_configured;
	int workers_running;
	int generations;	      /* running generation plus those draining */
	int64_t draining_connections; /* client connections still held by draining workers */
	uint64_t restarts_exit;
	uint64_t restarts_signal;
	uint64_t reloads_failed;
	int reload_ok;
	double reload_ts;
	double start_time;
	const pid_t *pids; /* master first, then the workers */
	int npids;
};

struct metrics;

/* Render the exposition text; the result is malloc'd, *len bytes. NULL if out of memory. */
char *metrics_render(const struct metrics_src *src, size_t *len);

/* Start the endpoint on a (port 0: any). src must outlive it. NULL with err on failure. */
struct metrics *metrics_start(const struct net_addr *a, const struct metrics_src *src, char *err,
			      size_t errlen);
/* The bound address, for the log line. */
void metrics_addr(const struct metrics *m, struct net_addr *a);
/* The descriptor to poll for input, and the longest wait in ms (-1: none). */
int metrics_fd(const struct metrics *m);
int metrics_timeout(const struct metrics *m);
void metrics_run(struct metrics *m);
void metrics_stop(struct metrics *m);
/*
 * The descriptors a forked worker must close (never stop: that would shut
 * the master's socket down), appended to fds while *nfds < max.
 */
void metrics_forget(struct metrics *m, int *fds, int *nfds, int max);

#endif
