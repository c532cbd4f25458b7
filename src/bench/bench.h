/*
 * submit-bench: the load generator. main.c parses options, runs the
 * threads and reports; engine.c is one thread's epoll loop over its share
 * of the connections.
 */
#ifndef SUBMIT_BENCH_H
#define SUBMIT_BENCH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "hist.h"
#include "net.h"

#define BENCH_MAX_SOURCES 64

struct bench_opts {
	struct net_addr dst;
	char dst_name[NET_ADDRSTRLEN];
	struct net_addr src[BENCH_MAX_SOURCES];
	int nsrc;
	int conns;
	int threads;
	uint64_t duration_ns;
	uint64_t warmup_ns;
	uint64_t drain_ns; /* how long unacked requests may take after the end */
	uint32_t window;   /* 0: unbounded */
	uint32_t size_min; /* payload bytes */
	uint32_t size_max;
	int send_conn; /* Conn first, ConnAck required */
	double rate;   /* msgs/s, 0: closed loop */
	int reconnect;
	uint64_t total;		/* -n; 0: run for the duration */
	int idle;		/* connect and hold, send nothing */
	const uint8_t *payload; /* size_max bytes, shared read-only */
	int allow_refused;	/* result 2 (not stored) is not an error */
	int ack_log_fd;		/* --ack-log, opened O_APPEND; -1: none */
	int interval_hist;	/* --csv: per-second histograms */
};

/* Submit acks by result, the index into bench_thread.results. */
enum { BENCH_RES_OK, BENCH_RES_REFUSED, BENCH_RES_NOT_STORED, BENCH_RES_OTHER, BENCH_RES_N };

/* Timeline of a run, set once by the main thread before the start barrier. */
struct bench_times {
	uint64_t t0;	   /* start of sending */
	uint64_t warm_end; /* acks before this are not measured */
	uint64_t end;	   /* sending stops */
	uint64_t deadline; /* nothing is waited for after this */
};

/*
 * Counters one thread publishes for the progress line: written by the
 * thread with relaxed atomic stores, read by the main thread.
 */
struct bench_pub {
	uint64_t sent;
	uint64_t acked;
	uint64_t errors;
	uint64_t open;
	uint64_t max_lat; /* largest latency since the main thread last took it */
};

struct bench_thread {
	pthread_t tid;
	int index;
	int first_conn; /* global index of this thread's first connection */
	int nconns;
	uint64_t total; /* -n share */
	double rate;	/* open-loop share, msgs/s */
	const struct bench_opts *o;
	const struct bench_times *times;
	pthread_barrier_t *barrier;

	struct bench_pub pub;

	/* Results, read by the main thread after join. */
	struct hist hist;
	uint64_t sent;
	uint64_t sent_bytes;
	uint64_t acked;
	uint64_t acked_window; /* acks inside [warm_end, end] */
	uint64_t conn_acked;
	uint64_t errors;
	uint64_t connect_errors;
	uint64_t reconnects;
	uint64_t lost;	  /* unacked when the server closed cleanly (--reconnect) */
	uint64_t refused; /* result 1 in --reconnect mode */
	uint64_t unacked; /* still unacked at the deadline */
	uint64_t open_at_end;
	uint64_t last_ack; /* time of the last Submit ack */
	uint64_t results[BENCH_RES_N];
	uint64_t ack_log_errors;
	/*
	 * --csv: the latencies of the last second, handed over when the main
	 * thread advances bench_csv_tick; ival_done (release) says which.
	 */
	struct hist *ival_out;
	uint64_t ival_done;
	struct hist *ival_last; /* what came after the last hand-over, valid once finished */
	int ival_last_taken;	/* by the main thread */
	int finished;		/* set last, with release order */
};

/* Set by the main thread: the stop time after SIGINT, the current CSV second. */
extern uint64_t bench_stop_ns;
extern uint64_t bench_csv_tick;
/* Connection numbers for reconnections: unique over all threads. */
extern int bench_next_conn;

void *bench_thread_main(void *arg);

uint64_t bench_now(void);
/* Print one error line unless too many were printed already. */
void bench_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
