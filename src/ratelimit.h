/*
 * Submits per second per client (rate_limit, rate_burst), across all
 * workers and generations: a fixed table in shared memory that the master
 * maps before the first fork, updated with atomics only. Returns results,
 * never logs.
 *
 * A client is its identity when it authenticated, else its address (after
 * PROXY protocol). Each entry is two 64-bit words: the client's key (a
 * keyed hash) and its theoretical arrival time (GCRA, the cell rate
 * algorithm of ATM and of Redis' CL.THROTTLE): a Submit at now is within
 * the rate when max(tat, now) + interval <= now + burst * interval, and
 * then moves tat there by compare-and-swap. A client's entry is the first
 * with its key within RATELIMIT_PROBES slots of its hash; a new client
 * takes the first empty slot there, or one whose client has been idle for
 * a second past a full burst (its bucket is full: nothing is lost by
 * forgetting it). When every slot there is busy the client is not tracked:
 * its Submits are let in and counted as untracked, so that a full table
 * never refuses anyone. Two keys that collide (one in 2^63) share a rate.
 */
#ifndef SUBMITD_RATELIMIT_H
#define SUBMITD_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#define RATELIMIT_SLOTS	 (1u << 16) /* 1 MiB of shared memory, touched as used */
#define RATELIMIT_PROBES 32
#define RATELIMIT_MAX	 10000000 /* the largest rate_limit: 100 ns a Submit */

struct ratelimit;

/* The table, shared with the processes forked after; NULL with err on failure. */
struct ratelimit *ratelimit_map(char *err, size_t errlen);

/* A client's key: its identity (n > 0 bytes), or its address (IPv6 or IPv4-mapped). */
uint64_t ratelimit_key(const struct ratelimit *t, const char *identity, size_t n,
		       const uint8_t addr[16]);

enum {
	RATELIMIT_OVER = 0,	 /* not within the rate: refuse */
	RATELIMIT_OK = 1,	 /* taken */
	RATELIMIT_UNTRACKED = 2, /* no slot for the client: let in, not counted */
};

/*
 * Take k Submits of key's rate at now_ns (CLOCK_MONOTONIC): interval_ns a
 * Submit, burst Submits at most at once (k <= burst). *slot caches the
 * client's entry for the next call (-1 before the first; kept while the
 * entry is still the key's). RATELIMIT_OK, _OVER or _UNTRACKED.
 */
int ratelimit_take(struct ratelimit *t, uint64_t key, int32_t *slot, uint64_t now_ns,
		   uint64_t interval_ns, uint64_t burst, unsigned k);

/* Entries in use (tests, /status): a key, with a theoretical arrival time after now_ns - 1 s. */
unsigned ratelimit_used(const struct ratelimit *t, uint64_t now_ns);

#endif
