/*
 * submit-bench's latency histogram against what submit-bench(1) states:
 * exact below 256 ns, each percentile within 1/256 of the exact one (and no
 * closer bound holds), the minimum and maximum exact.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench/hist.h"
#include "rand.h"
#include "tap.h"

#define N 20000

/* Spread over 1 ns .. about 17 s, evenly in log scale. */
static uint64_t latency(void)
{
	double e = (double)(test_rand() % 1000000) / 1000000.0 * 34.0;
	return (uint64_t)exp2(e);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* |got - want| / want, 0 when both are 0. */
static double rel_err(uint64_t got, uint64_t want)
{
	double d = got > want ? (double)(got - want) : (double)(want - got);
	return want == 0 ? (got == 0 ? 0 : 1) : d / (double)want;
}

static void test_exact_below_256(void)
{
	struct hist h;
	int bad = 0;

	/* Alone in a histogram a value is clamped to min and max: pair it with a larger one. */
	for (uint64_t v = 0; v < 256; v++) {
		hist_init(&h);
		hist_record(&h, v);
		hist_record(&h, 1000000);
		if (hist_quantile(&h, 0.5) != v)
			bad++;
	}
	is_int(bad, 0, "values below 256 ns come back exact");
}

static void test_percentile_error(void)
{
	static const double qs[] = {0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999};
	static uint64_t v[N];
	struct hist h;
	double worst = 0;
	int bad = 0;

	for (int round = 0; round < 20; round++) {
		hist_init(&h);
		for (int i = 0; i < N; i++) {
			v[i] = latency();
			hist_record(&h, v[i]);
		}
		qsort(v, N, sizeof(v[0]), cmp_u64);
		for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
			/* The exact percentile by nearest rank, as hist_quantile ranks. */
			size_t rank = (size_t)ceil(qs[k] * N);
			uint64_t want = v[rank - 1], got = hist_quantile(&h, qs[k]);
			double e = rel_err(got, want);
			if (e > 1.0 / 256) {
				if (bad++ < 5)
					diag("q %g: got %llu, exact %llu", qs[k],
					     (unsigned long long)got, (unsigned long long)want);
			}
			if (e > worst)
				worst = e;
		}
		is_int((long long)hist_quantile(&h, 1.0), (long long)v[N - 1],
		       "round %d: the maximum is exact", round);
		is_int((long long)h.min, (long long)v[0], "round %d: the minimum is exact", round);
	}
	diag("worst relative error of a percentile: %.5f (bound 1/256 = %.5f)", worst, 1.0 / 256);
	is_int(bad, 0, "every percentile within 1/256 of the exact one");
}

/* The bound is the real error, not a loose one: a power of two is off by exactly 1/256. */
static void test_bound_is_tight(void)
{
	struct hist h;
	double worst = 0;

	for (int k = 8; k < 40; k++) {
		uint64_t x = 1ull << k;
		hist_init(&h);
		hist_record(&h, x);
		hist_record(&h, x << 4);
		double e = rel_err(hist_quantile(&h, 0.5), x);
		if (e > worst)
			worst = e;
	}
	ok(fabs(worst - 1.0 / 256) < 1e-12, "2^k (k >= 8) is reported 1/256 high: worst %.6f",
	   worst);
}

int main(void)
{
	test_exact_below_256();
	test_percentile_error();
	test_bound_is_tight();
	return done_testing();
}
