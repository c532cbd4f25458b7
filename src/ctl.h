/*
 * The control block: what the master, the workers and the forwarder tell
 * each other through shared memory. It is not what /metrics shows (the
 * counters, stats.h); it lives in the same mapping (stats_map), one
 * cache-line-aligned slot per worker, and every field has a single writer,
 * named next to it.
 */
#ifndef SUBMITD_CTL_H
#define SUBMITD_CTL_H

#include <stdint.h>

#define CTL_MAX_SLOTS 1024

/*
 * A position in one worker's spool: the segment (its created_ns) and a byte
 * offset in it. One writer; a reader that finds seq odd or changed reads
 * again (a seqlock, bounded: see ctl_pos_load). Positions of one worker
 * only grow: segments are named in increasing created_ns.
 */
struct ctl_pos {
	uint64_t seq, ns, off;
};

static inline void ctl_pos_store(struct ctl_pos *p, uint64_t ns, uint64_t off)
{
	uint64_t s = __atomic_load_n(&p->seq, __ATOMIC_RELAXED);

	__atomic_store_n(&p->seq, s + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&p->ns, ns, __ATOMIC_RELAXED);
	__atomic_store_n(&p->off, off, __ATOMIC_RELAXED);
	__atomic_store_n(&p->seq, s + 2, __ATOMIC_RELEASE);
}

/*
 * 0 and the position, or -1 if no consistent read came in a few tries (a
 * writer killed in the middle of a store leaves seq odd for good).
 */
static inline int ctl_pos_load(const struct ctl_pos *p, uint64_t *ns, uint64_t *off)
{
	for (int i = 0; i < 64; i++) {
		uint64_t s = __atomic_load_n(&p->seq, __ATOMIC_ACQUIRE);
		if (s & 1)
			continue;
		*ns = __atomic_load_n(&p->ns, __ATOMIC_RELAXED);
		*off = __atomic_load_n(&p->off, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&p->seq, __ATOMIC_RELAXED) == s)
			return 0;
	}
	return -1;
}

/* -1, 0, 1 as (ans, aoff) is before, at or after (bns, boff). */
static inline int ctl_pos_cmp(uint64_t ans, uint64_t aoff, uint64_t bns, uint64_t boff)
{
	if (ans != bns)
		return ans < bns ? -1 : 1;
	return aoff < boff ? -1 : aoff > boff;
}

enum ctl_slot_state {
	CTL_SLOT_FREE = 0,
	CTL_SLOT_STARTING, /* forked, not yet in its loop */
	CTL_SLOT_RUNNING,  /* serving */
	CTL_SLOT_DRAINING, /* not accepting, finishing its connections */
};

/* One worker's control slot. */
struct ctl_slot {
	uint64_t heartbeat_ms; /* CLOCK_MONOTONIC ms, stamped every loop round */
	uint64_t accepting;    /* 1 while it watches the listeners (not paused or draining) */
	uint32_t state; /* enum ctl_slot_state: the master frees and starts, the worker runs and
			   drains */
	int32_t pid;	/* the worker's, written by it at start */
	uint32_t label; /* the worker's index, written by it at start */
	/* Written by the worker: its open segment and how far its records may be forwarded. */
	struct ctl_pos spool_end;
	/* Written by the forwarder: how far the stream holds this worker's records (the watermark).
	 */
	struct ctl_pos stream_acked;
	/*
	 * ack_after = stream: 1 while the worker sleeps with acks owed to the
	 * stream (set by it before it sleeps); the forwarder that moves
	 * stream_acked takes it back to 0 and wakes the worker with SIGURG.
	 */
	uint32_t stream_wait;
} __attribute__((aligned(64)));

struct ctl {
	/*
	 * Written by the master: the slots of the workers that accept now.
	 * Workers read it to balance accepts (worker.c); a stale read only
	 * skews one decision.
	 */
	uint32_t nactive;
	uint16_t active[CTL_MAX_SLOTS];
	/*
	 * The spool's bound, written by the master (docs/SPOOL.md, "The
	 * bound"): its last scan of the spool's directories, and the sum over
	 * live slots of spool_bytes - spool_dropped_bytes when it scanned, so
	 * that a worker can add what was written since.
	 */
	uint32_t slot_hwm; /* slots 0..slot_hwm-1 may be live */
	uint64_t spool_scan_bytes;
	uint64_t spool_scan_net;
	uint64_t spool_max;	   /* spool_max_size, 0 unbounded */
	uint64_t fwd_heartbeat_ms; /* the forwarder's, stamped every loop round */
	/*
	 * The forwarder's pid (stamped by it), and 1 while it sleeps waiting
	 * for records (fwd_wait, set by it before it sleeps): a worker that
	 * moves its spool_end takes it back to 0 and wakes it with SIGURG.
	 */
	int32_t fwd_pid;
	uint32_t fwd_wait;
	struct ctl_slot slot[CTL_MAX_SLOTS];
};

/* Reset a slot for a new worker (master, before fork). */
void ctl_slot_reset(struct ctl_slot *s);

/*
 * The wake-up between a worker and the forwarder, either way round: the
 * sleeper sets a flag (stream_wait, fwd_wait) with ctl_wait_announce, then
 * looks at the position it waits for, and sleeps only if it has not moved;
 * the waker stores the position, then ctl_wake takes the flag back to 0
 * and sends SIGURG to *pid if it was set. Both store, fence, then load:
 * one of the two sees the other's store, so a wake-up is never lost and
 * is sent once per sleep.
 */
static inline void ctl_wait_announce(uint32_t *flag)
{
	__atomic_store_n(flag, 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* The sleeper no longer waits (nothing to wait for): the waker need not signal. */
static inline void ctl_wait_cancel(uint32_t *flag)
{
	if (__atomic_load_n(flag, __ATOMIC_RELAXED))
		__atomic_store_n(flag, 0, __ATOMIC_RELAXED);
}

void ctl_wake(uint32_t *flag, const int32_t *pid);

#endif
