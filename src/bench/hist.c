#include "hist.h"

#include <math.h>
#include <string.h>

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	if (src->count == 0)
		return;
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
	if (dst->count == 0 || src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
	dst->count += src->count;
}

static uint64_t bucket_mid(unsigned i)
{
	unsigned shift;
	uint64_t low;

	if (i < 2 * HIST_SUB)
		return i;
	shift = i / HIST_SUB - 1;
	low = (uint64_t)(HIST_SUB + i % HIST_SUB) << shift;
	return low + ((1ull << shift) >> 1);
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	uint64_t rank, seen = 0, v;

	if (h->count == 0)
		return 0;
	if (q >= 1.0)
		return h->max;
	rank = (uint64_t)ceil(q * (double)h->count);
	if (rank == 0)
		rank = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			v = bucket_mid(i);
			/* The midpoint may lie outside what was actually seen. */
			if (v > h->max)
				v = h->max;
			if (v < h->min)
				v = h->min;
			return v;
		}
	}
	return h->max;
}

/* Lowest value and width of bucket i (HdrHistogram: lowest equivalent value, range size). */
static uint64_t bucket_low(unsigned i)
{
	if (i < 2 * HIST_SUB)
		return i;
	return (uint64_t)(HIST_SUB + i % HIST_SUB) << (i / HIST_SUB - 1);
}

static uint64_t bucket_width(unsigned i)
{
	return i < 2 * HIST_SUB ? 1 : 1ull << (i / HIST_SUB - 1);
}

double hist_mean(const struct hist *h)
{
	double sum = 0;

	if (h->count == 0)
		return 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		if (h->b[i] != 0)
			sum += (double)h->b[i] * (double)bucket_mid(i);
	return sum / (double)h->count;
}

double hist_stddev(const struct hist *h)
{
	double mean = hist_mean(h), sum = 0, d;

	if (h->count == 0)
		return 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		if (h->b[i] == 0)
			continue;
		d = (double)bucket_mid(i) - mean;
		sum += (double)h->b[i] * d * d;
	}
	return sqrt(sum / (double)h->count);
}

/*
 * The next reporting level of HdrHistogram's PercentileIterator: ticks of a
 * fixed size within each half of the distance left to 100%.
 */
static double next_level(double level)
{
	long long halvings = (long long)(log(100.0 / (100.0 - level)) / log(2));
	double ticks = HIST_HGRM_TICKS * pow(2, (double)(halvings + 1));

	return level + 100.0 / ticks;
}

int hist_write_hgrm(FILE *f, const struct hist *h, double unit)
{
	uint64_t cum = 0;
	double level = 0;
	unsigned i, last = 0;

	fprintf(f, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount",
		"1/(1-Percentile)");
	for (i = 0; i < HIST_BUCKETS && cum < h->count; i++) {
		double top;

		if (h->b[i] == 0)
			continue;
		cum += h->b[i];
		last = i;
		top = (double)(bucket_low(i) + bucket_width(i) - 1) / unit;
		while (100.0 * (double)cum / (double)h->count >= level) {
			fprintf(f, "%12.6f %2.12f %10llu %14.2f\n", top, level / 100.0,
				(unsigned long long)cum, 1.0 / (1.0 - level / 100.0));
			level = next_level(level);
			if (cum == h->count)
				break;
		}
	}
	if (h->count > 0)
		fprintf(f, "%12.6f %2.12f %10llu\n",
			(double)(bucket_low(last) + bucket_width(last) - 1) / unit, 1.0,
			(unsigned long long)cum);
	fprintf(f, "#[Mean    = %12.6f, StdDeviation   = %12.6f]\n", hist_mean(h) / unit,
		hist_stddev(h) / unit);
	fprintf(f, "#[Max     = %12.6f, Total count    = %12llu]\n",
		h->count ? (double)(bucket_low(hist_index(h->max)) +
				    bucket_width(hist_index(h->max)) - 1) /
			       unit
			 : 0.0,
		(unsigned long long)h->count);
	fprintf(f, "#[Buckets = %12u, SubBuckets     = %12u]\n", HIST_BUCKETS / HIST_SUB - 1,
		2 * HIST_SUB);
	return ferror(f) ? -1 : 0;
}
