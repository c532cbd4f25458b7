/*
 * What submit-bench prints: error lines, the progress line, the --csv
 * rows and the summary (text or one JSON line). Knows no threads and no
 * sockets: the caller hands it the numbers.
 */
#ifndef SUBMIT_BENCH_REPORT_H
#define SUBMIT_BENCH_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "bench.h"
#include "hist.h"

/* One second of the run, for the progress line and a --csv row. */
struct report_tick {
	double elapsed_s;
	double rate; /* acks per second since the last tick */
	uint64_t sent;
	uint64_t acked;
	uint64_t errors;
	uint64_t open;
	uint64_t max_lat; /* largest latency since the last tick */
};

/* The summary: the options, the sum of every thread's result, and what follows from them. */
struct report {
	const struct bench_opts *o;
	const struct bench_result *tot;
	uint64_t measured_ns;
	double rate; /* acks counted in the measured time, per second */
	double mbps;
	double handshake_rate; /* handshakes done in the measured time, per second */
	const double *pcts;    /* --percentiles, sorted, without duplicates */
	int npcts;
	int ok; /* the exit status is 0 */
};

/* Print one error line unless too many were printed already. Thread-safe. */
void report_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Add one thread's result to a sum. */
void report_add(struct bench_result *sum, const struct bench_result *r);

/* A JSON key for a percentile: its digits, 99.9 -> "p999". */
void report_pct_key(double p, char *out, size_t n);

void report_progress(const struct report_tick *k);
void report_csv_header(FILE *csv);
/* ival: the histogram of this second's latencies. */
void report_csv_row(FILE *csv, const struct report_tick *k, const struct hist *ival);

void report_json(const struct report *r);
void report_text(const struct report *r);
/* On stderr: why the run failed when no error line said it, or how many acks -n missed. */
void report_verdict(const struct report *r);

#endif
