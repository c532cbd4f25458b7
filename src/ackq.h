/*
 * The acks a connection owes while the spool is on (docs/SPOOL.md, sync
 * policies; docs/NATS.md, ack_after): conn_process encodes each ack with result 0 and
 * holds it; once the round's batch is written, ackq releases the held
 * acks, or sets result 2 on their SubmitAcks if the batch was not stored.
 * With ack_after = stream they stay owed, in runs (marks), until the
 * stream holds the spool up to each run's position. Single-threaded, in
 * the worker's loop.
 */
#ifndef SUBMITD_ACKQ_H
#define SUBMITD_ACKQ_H

#include <stdint.h>

#include "conn.h"
#include "ctl.h"
#include "stats.h"

/* Spool on: results are counted in slot; stream: ack_after = stream, read from ctl. */
void ackq_init(struct stats_slot *slot, struct ctl_slot *ctl, int stream);
/*
 * The round's batch was written: stored up to (ns, off) of this worker's
 * spool, or failed. Settles the acks held by every connection the batch
 * touched, and empties the touched list. Call before any connection
 * writes its acks.
 */
void ackq_round_end(struct conn_batch *b, int failed, uint64_t ns, uint64_t off);
/* A connection closes: the acks it owes go with it (its records stay stored). */
void ackq_forget(struct conn *c);
/*
 * ack_after = stream: release the acks the stream now holds, in order;
 * ready() is called for each connection that has acks to write.
 */
void ackq_stream_release(void (*ready)(struct conn *c));
/*
 * Before the loop sleeps: -1 if no ack waits for the stream; else the
 * stream_wait flag is set for the forwarder's wake-up, and the result is 0
 * if the stream's position moved already (do not sleep), or the longest
 * sleep in ms.
 */
long ackq_stream_wait(void);

#endif
