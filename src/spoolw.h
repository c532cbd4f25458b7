/*
 * The worker's side of the spool (docs/SPOOL.md): the round's batch of
 * records, one writev per round, the fdatasync of the sync policy, the
 * release of the round's acks (or their change to result 2), sealing,
 * failures and the size bound. Single-threaded, in the worker's loop.
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
 * buffer goes back to the pool. Its held acks are dropped with it.
 */
void spoolw_forget(struct conn *c);
/*
 * The round ends: write what is left of the batch, fdatasync per policy,
 * then release every touched connection's held acks, changed to result 2
 * if the batch was not stored. Call before any connection writes its acks.
 */
void spoolw_commit(uint64_t now_ms);
/*
 * ack_after = stream: release the acks the stream now holds, in order;
 * ready() is called for each connection that has acks to write.
 */
void spoolw_stream_release(void (*ready)(struct conn *c));
/*
 * Before the loop sleeps: -1 if no ack waits for the stream; else the
 * stream_wait flag is set for the forwarder's wake-up, and the result is 0
 * if the stream's position moved already (do not sleep), or the longest
 * sleep in ms.
 */
long spoolw_stream_wait(void);
/* Timers: the interval fdatasync and sealing by age. */
void spoolw_tick(uint64_t now_ms);
/* Milliseconds until spoolw_tick has work, or -1. */
long spoolw_timeout(uint64_t now_ms);
/* At exit: seal the open segment. */
void spoolw_close(void);

#endif
