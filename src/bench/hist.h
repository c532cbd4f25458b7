/*
 * Latency histogram, log-bucketed: exact below 256, then 128 buckets per
 * power of two, so a reported value is within 0.4% of the true one (the
 * bucket's midpoint; a bucket spans at most 1/128 of its lower bound).
 * This is HdrHistogram's layout for 2 significant digits and a lowest
 * value of 1 (57 buckets of 256 sub-buckets), which is why hist_write_hgrm
 * can write its percentile distribution exactly as HdrHistogram would.
 */
#ifndef SUBMIT_BENCH_HIST_H
#define SUBMIT_BENCH_HIST_H

#include <stdint.h>
#include <stdio.h>

#define HIST_SUB_BITS 7
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  ((64 - HIST_SUB_BITS) * HIST_SUB + HIST_SUB)
/* Reporting ticks per half distance to 100%, HdrHistogram's default. */
#define HIST_HGRM_TICKS 5

struct hist {
	uint64_t count;
	uint64_t min;
	uint64_t max;
	uint64_t b[HIST_BUCKETS];
};

static inline unsigned hist_index(uint64_t v)
{
	unsigned shift;

	if (v < 2 * HIST_SUB)
		return (unsigned)v;
	shift = (unsigned)(63 - __builtin_clzll(v)) - HIST_SUB_BITS;
	return (shift + 1) * HIST_SUB + (unsigned)((v >> shift) & (HIST_SUB - 1));
}

static inline void hist_record(struct hist *h, uint64_t v)
{
	h->b[hist_index(v)]++;
	if (h->count++ == 0 || v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void hist_init(struct hist *h);
void hist_merge(struct hist *dst, const struct hist *src);
/* The value at quantile q (0..1), 0 for an empty histogram. */
uint64_t hist_quantile(const struct hist *h, double q);
/* Mean and standard deviation from the bucket midpoints, as HdrHistogram computes them. */
double hist_mean(const struct hist *h);
double hist_stddev(const struct hist *h);
/*
 * HdrHistogram's percentile distribution text (outputPercentileDistribution,
 * the .hgrm format), values divided by unit. -1 if writing failed.
 */
int hist_write_hgrm(FILE *f, const struct hist *h, double unit);

#endif
