/*
 * submit-bench: the load generator. The types the three parts share and
 * the clock. Levels, lowest first; a file uses only those below it:
 *
 *   hist.c    latency histograms (leaf)
 *   report.c  error lines and the printed results (report.h)
 *   engine.c  one thread's epoll loop over its share of the connections (engine.h)
 *   main.c    options, the threads, the progress loop, collection
 */
#ifndef SUBMIT_BENCH_H
#define SUBMIT_BENCH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "hist.h"
#include "net.h"

#define BENCH_MAX_SOURCES 64

struct ssl_ctx_st; /* OpenSSL's SSL_CTX: only engine.c and main.c include OpenSSL */

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
	int send_conn;	      /* Conn first, ConnAck required */
	const uint8_t *token; /* --token: the Conn's client data */
	uint32_t token_len;
	double rate; /* msgs/s, 0: closed loop */
	int reconnect;
	uint64_t total;		/* -n; 0: run for the duration */
	int idle;		/* connect and hold, send nothing */
	const uint8_t *payload; /* size_max bytes, shared read-only */
	int allow_refused;	/* result 2 (not stored) is not an error */
	int ack_log_fd;		/* --ack-log, opened O_APPEND; -1: none */
	int interval_hist;	/* --csv: per-second histograms */
	int tag_payload;	/* --tag-payload: "conn:id:size:" then the pattern */
	uint64_t retry_ns;	/* --retry: reopen after resets and refused reconnects; 0: off */
	int handshakes;		/* --handshakes: one Submit per connection, then a new one */
	/* --tls: the client context (main's, shared by the threads); NULL: plaintext */
	struct ssl_ctx_st *tls;
	int tls_verify; /* --tls-ca given: a handshake checks the server's certificate */
	int tls_resume; /* --tls-resume */
	const char *tls_servername; /* --tls-servername: SNI and the name checked; NULL: none */
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

/* What the main thread and the engine threads share for one run. */
struct bench_run {
	struct bench_times times;
	pthread_barrier_t barrier; /* connected; then: the times are set */
	uint64_t stop_ns;	   /* when SIGINT stopped the sending, 0 before; atomic */
	uint64_t csv_tick;	   /* --csv: the current second, advanced by the main thread */
	int next_conn; /* connection numbers for reconnections, unique over all threads */
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

/*
 * The counters of a result, listed once: the struct has one field for each
 * and report_add() sums each. acked_window: acks inside [warm_end, end];
 * lost: unacked when the server closed cleanly (--reconnect); refused:
 * result 1 in --reconnect mode; unacked: still unacked at the deadline.
 */
#define BENCH_RESULT_COUNTERS(X)                                                                   \
	X(sent)                                                                                    \
	X(sent_bytes)                                                                              \
	X(acked)                                                                                   \
	X(acked_window)                                                                            \
	X(conn_acked)                                                                              \
	X(errors)                                                                                  \
	X(connect_errors)                                                                          \
	X(reconnects)                                                                              \
	X(lost)                                                                                    \
	X(refused)                                                                                 \
	X(unacked)                                                                                 \
	X(open_at_end)                                                                             \
	X(resets)	     /* --retry: resets, reconnected */                                    \
	X(connect_retries)   /* --retry: failed reconnects, tried again */                         \
	X(cut_acks)	     /* --retry: partial acks dropped at a close or reset */               \
	X(handshakes)	     /* TLS handshakes done (without --tls: --handshakes' connects) */     \
	X(handshakes_window) /* of them, done inside [warm_end, end] */                            \
	X(resumed)	     /* TLS handshakes that resumed a session */

/* What one thread counted; the main thread adds them up after the join (report_add). */
struct bench_result {
	struct hist hist;
#define X(name) uint64_t name;
	BENCH_RESULT_COUNTERS(X)
#undef X
	uint64_t last_ack; /* time of the last Submit ack; in a sum, the latest */
	uint64_t results[BENCH_RES_N];
	/* The last TLS handshake's protocol and cipher (OpenSSL's static strings); NULL: none. */
	const char *tls_version;
	const char *tls_cipher;
};

struct bench_thread {
	pthread_t tid;
	int index;
	int first_conn; /* global index of this thread's first connection */
	int nconns;
	uint64_t total; /* -n share */
	double rate;	/* open-loop share, msgs/s */
	const struct bench_opts *o;
	struct bench_run *run;

	struct bench_pub pub;

	struct bench_result res; /* read by the main thread after join */
	/*
	 * --csv: the latencies of the last second, handed over when the main
	 * thread advances run->csv_tick; ival_done (release) says which.
	 */
	struct hist *ival_out;
	uint64_t ival_done;
	struct hist *ival_last; /* what came after the last hand-over, valid once finished */
	int ival_last_taken;	/* by the main thread */
	int finished;		/* set last, with release order */
};

static inline uint64_t bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
