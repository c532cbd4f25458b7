/*
 * The forwarder's NATS session (docs/NATS.md): the libnats options, the
 * connection and its reconnects, the stream (looked up, or created with
 * nats_create_stream), the asynchronous publish of one spool record and
 * the queue of PubAcks that libnats' threads fill and the loop drains. The
 * only module that calls libnats. It knows records, not segments: which
 * record goes next, and what an acknowledgement moves, is fwdchain's.
 */
#ifndef SUBMITD_FWDNATS_H
#define SUBMITD_FWDNATS_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "spool.h"
#include "stats.h"

enum fwd_ack_status {
	FWD_ACK_ERROR = -1, /* not stored: publish it again */
	FWD_ACK_STORED,
	FWD_ACK_DUPLICATE, /* the stream had it (a resend after a restart) */
};

/* What the stream said of the record at off in worker's segment ns. */
struct fwd_ack {
	uint64_t ns, off;
	uint32_t worker;
	enum fwd_ack_status status;
};

/*
 * Once, in the forwarder process before its loop: the counters to keep (fx)
 * and this machine's name (host, in the message ids, the Submit-Host header,
 * the client name and %h of nats_subject). Returns the eventfd that
 * libnats' threads signal when they queued an acknowledgement or the
 * connection changed; fatal on failure.
 */
int fwdnats_init(const struct conf *c, struct stats_fwd *fx, const char *host);

/* nats_subject for a worker: %h the host (made a valid token), %w the worker's index. */
void fwdnats_subject(char *out, size_t n, unsigned worker);

/*
 * Once per loop round, not stopping: connects when it is due, looks the
 * stream up when due. Returns 1 when records may be published. *stream_back
 * is 1 when the stream has just been found: what failed without it may go
 * again.
 */
int fwdnats_ready(uint64_t now, int *stream_back);

/* Whether a connection is up (or reconnecting). */
int fwdnats_connected(void);

/*
 * Publishes the record r at off in segment seg (its name, ".seg" included)
 * to subject. 0 when libnats took it (its acknowledgement comes through
 * fwdnats_drain), -1 when it did not: try again later.
 */
int fwdnats_publish(const char *subject, const char *seg, uint64_t off, const struct spool_rec *r,
		    const uint8_t *payload, uint64_t now);

/*
 * Takes what libnats' threads queued since the last call: logs the
 * connection's changes and the last publish error, and returns the
 * acknowledgements (*acks valid until the next call) and their count.
 */
size_t fwdnats_drain(const struct fwd_ack **acks, uint64_t now);

/* Once a second: acknowledgements lost for want of memory, if any. */
void fwdnats_every_second(uint64_t now);

/* At exit: what is still in flight goes again from the checkpoints; state off. */
void fwdnats_leave(uint64_t now);

/*
 * For `submitd -t`: connect once (timeout_ms) and look the stream up. 0 when
 * it exists (or nats_create_stream would create it), -1 with a message;
 * *reachable is 0 when no server could be reached.
 */
int fwdnats_check(const struct conf *c, const char *host, int timeout_ms, int *reachable, char *err,
		  size_t errlen);

#endif
