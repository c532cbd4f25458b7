/*
 * The forwarder's chains (docs/NATS.md): one per worker index, forwarding
 * that worker's segments one at a time, oldest first, so that "in the
 * stream up to here" is one position per worker. It owns the pending
 * segments (a scan of active/, ready/ and taken/), the window of records in
 * flight, the checkpoints under spool_dir/forwarder, the positions told to
 * the workers (stream_acked, ack_after = stream) and the lag gauges. What
 * goes over the wire is fwdnats'.
 */
#ifndef SUBMITD_FWDCHAIN_H
#define SUBMITD_FWDCHAIN_H

#include <stdint.h>

#include "conf.h"
#include "fwdnats.h"
#include "stats.h"

/* Once, before the loop: the spool's directories and the checkpoints'; fatal on failure. */
void fwdchain_init(const struct conf *c, struct stats_shm *shm);

/* The first scan; the checkpoints of segments no longer there are deleted. */
void fwdchain_start(uint64_t now);

/*
 * How long the loop may sleep, in ms: 0 when a pass left records to read,
 * 2 while records flow, else until a worker wakes it (fwd_wait, announced
 * here) or the checkpoints are due.
 */
int fwdchain_wait_ms(void);

/*
 * Connected, the stream there: every chain without a segment starts on its
 * worker's oldest pending one, every chain publishes what its window
 * allows, failed publishes go again when their back-off is over.
 */
void fwdchain_forward(uint64_t now);

/* What the stream said of one record: the window and the checkpoint move. */
void fwdchain_on_ack(const struct fwd_ack *a, uint64_t now);

/* The stream is back: what failed goes again at the next forward. */
void fwdchain_retry_now(uint64_t now);

/*
 * Every loop round: the checkpoints that are due, the segments forwarded
 * whole deleted, the workers told how far the stream has their records.
 */
void fwdchain_round(uint64_t now);

/* Once a second: the scan that is due and the lag gauges. */
void fwdchain_every_second(uint64_t now);

/* At exit: every chain checkpointed where its acknowledgements reached. */
void fwdchain_leave(void);

#endif
