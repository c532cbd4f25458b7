/*
 * The clocks, in the units the loops count in. Header only: one definition
 * for the worker, the spool writer, the forwarder, the master and the
 * metrics renderer, inlined where it is read. The names are short on
 * purpose (as the loops' `now = mono_ms()` reads): they are the only
 * unprefixed names a header exports, and say which clock and which unit.
 * With them the two helpers every loop's timers use: a backoff and a rate
 * limit for log lines.
 * Monotonic for timeouts and intervals; real time only for what is compared
 * with a timestamp stored elsewhere (a spool record's ts_ns, a scrape's age).
 */
#ifndef SUBMITD_CLOCK_H
#define SUBMITD_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static inline uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The next wait of an exponential backoff: min first (cur = 0), then doubling up to max. */
static inline uint64_t backoff_next(uint64_t cur, uint64_t min, uint64_t max)
{
	if (cur == 0)
		return min;
	return cur > max / 2 ? max : 2 * cur;
}

/*
 * A rate limit, as for a log line at most once a second: 1 (and *last
 * becomes now) when the last one went every_ms or more ago, or never.
 */
static inline int rate_ok(uint64_t *last, uint64_t now, uint64_t every_ms)
{
	if (*last != 0 && now - *last < every_ms)
		return 0;
	*last = now;
	return 1;
}

#endif
