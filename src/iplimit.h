/*
 * Connections per client address, across all workers and generations
 * (max_connections_per_ip): a fixed table in shared memory that the master
 * maps before the first fork, updated with atomics only. Returns errors,
 * never logs.
 *
 * Each entry is one 64-bit word: a 48-bit tag (a keyed hash of the
 * address) and a 16-bit count. An address's entry is the first with its
 * tag within IPLIMIT_PROBES slots of its hash; a new address takes the
 * first free slot there (empty, or an address with no connection left),
 * by compare-and-swap. Two addresses with the same tag share a count (one
 * in 2^48). When all IPLIMIT_PROBES slots hold open connections the
 * address is not tracked: the connection is let in and counted as
 * untracked, so that a full table never refuses anyone.
 */
#ifndef SUBMITD_IPLIMIT_H
#define SUBMITD_IPLIMIT_H

#include <stddef.h>
#include <stdint.h>

#define IPLIMIT_SLOTS  (1u << 16) /* 512 KiB of shared memory, touched as used */
#define IPLIMIT_PROBES 32
#define IPLIMIT_MAX    65535 /* the largest limit: the count's 16 bits */

struct iplimit;

/* The table, shared with the processes forked after; NULL with err on failure. */
struct iplimit *iplimit_map(char *err, size_t errlen);

enum {
	IPLIMIT_OVER = -1,	/* the address has limit connections already */
	IPLIMIT_UNTRACKED = -2, /* no slot free near its hash: let in, not counted */
};

/*
 * One more connection from addr (IPv6 or IPv4-mapped) if it has fewer
 * than limit: the slot to give back with iplimit_release (>= 0), or
 * IPLIMIT_OVER, or IPLIMIT_UNTRACKED.
 */
int iplimit_acquire(struct iplimit *t, const uint8_t addr[16], unsigned limit);
void iplimit_release(struct iplimit *t, int slot);

/* The connections counted for addr now (tests, /status). */
unsigned iplimit_count(const struct iplimit *t, const uint8_t addr[16]);

#endif
