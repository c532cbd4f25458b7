/*
 * Latency histogram, log-bucketed: exact below 256, then 128 buckets per
 * power of two, so a reported value is within 0.4% of the true one (the
 * bucket's midpoint; a bucket spans at most 1/128 of its lower bound).
 */
#ifndef SUBMIT_BENCH_HIST_H
#define SUBMIT_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  ((64 - HIST_SUB_BITS) * HIST_SUB + HIST_SUB)

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

#endif
