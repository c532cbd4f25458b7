/*
 * The worker's side of the spool (docs/SPOOL.md): the round's batch of
 * records, one writev per round, the fdatasync of the sync policy, what
 * became of the round (for ackq), sealing, failures and the size bound. Single-threaded, in the
 * worker's loop.
 */
#ifndef SUBMITD_SPOOLW_H
#define SUBMITD_SPOOLW_H

#include <stdint.h>

#include "conf.h"
#include "conn.h"
#include "stats.h"

/* Allocate the batch (once). Returns the batch for conn_ctx, NULL if the spool is off. */
struct conn_batch *spoolw_init(const struct conf *cf, int index, unsigned gen,
			       struct stats_slot *slot, const struct stats_shm *shm);
/* A loop round begins: the records decoded from now on carry this time. */
void spoolw_round_begin(void);
/*
 * A connection is closed this round: write the batch now, before its input
 * buffer goes back to the pool.
 */
void spoolw_forget(struct conn *c);
/* What became of a round's records: stored up to (ns, off) of the spool, or not. */
struct spoolw_round {
	int failed;
	uint64_t ns, off; /* 0, 0: no segment open */
};
/*
 * The round ends: write what is left of the batch, fdatasync per policy,
 * publish the new end to consumers. The result goes to ackq_round_end()
 * before any connection writes its acks.
 */
struct spoolw_round spoolw_commit(uint64_t now_ms);
/* Timers: the interval fdatasync and sealing by age. */
void spoolw_tick(uint64_t now_ms);
/* Milliseconds until spoolw_tick has work, or -1. */
long spoolw_timeout(uint64_t now_ms);
/* At exit: seal the open segment. */
void spoolw_close(void);

#endif
