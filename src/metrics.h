/*
 * Prometheus exposition and the /status page from the shared-memory
 * statistics, and the libmicrohttpd endpoint that serves them. Master only
 * (but for metrics_status_get); the daemon runs without a thread of its
 * own, driven by the master's poll loop.
 */
#ifndef SUBMITD_METRICS_H
#define SUBMITD_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "net.h"
#include "stats.h"

/* Request counts sampled once a second: /status rates cover the last few seconds. */
#define METRICS_RATE_SAMPLES 6

/* One worker as /status shows it: the master keeps one per statistics slot. */
struct metrics_worker {
	pid_t pid; /* 0: slot free */
	int label;
	unsigned gen;
	int draining;
	int hung; /* killed by the watchdog */
	uint64_t req[METRICS_RATE_SAMPLES];
	uint64_t at_ms[METRICS_RATE_SAMPLES]; /* CLOCK_MONOTONIC */
	int nsamples, next;
};

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
	/* For /status */
	const struct metrics_worker *workers; /* STATS_MAX_SLOTS entries */
	unsigned generation;
	const char *config_path;
	uint64_t config_hash;
	double reload_last_ts; /* the last reload, failed or not; 0: none yet */
	int64_t tls_expiry;    /* the serving certificate's notAfter, Unix s; 0: no TLS */
};

struct metrics;

/* Render the exposition text; the result is malloc'd, *len bytes. NULL if out of memory. */
char *metrics_render(const struct metrics_src *src, size_t *len);

/* Add a sample of the slot's request count to w's ring (the master, once a second). */
void metrics_sample(struct metrics_worker *w, const struct stats_slot *s, uint64_t now_ms);
/* The /status text (malloc'd, *len bytes), or NULL if out of memory. */
char *metrics_status_render(const struct metrics_src *src, size_t *len);
/*
 * For `submitd -s status`, in a process of its own: GET /status from the
 * endpoint at a (a wildcard address means this host) and copy the body to
 * out. 0, or -1 with err filled.
 */
int metrics_status_get(const struct net_addr *a, FILE *out, char *err, size_t errlen);

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
