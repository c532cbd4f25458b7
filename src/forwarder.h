/*
 * The NATS forwarder (docs/NATS.md): a process forked and supervised by the
 * master like a worker. It takes the spool's segments (docs/SPOOL.md,
 * hand-over), tails the active ones up to the end each worker publishes in
 * shared memory, publishes every record to a JetStream stream and deletes a
 * segment once the stream has acknowledged all of it. The only process that
 * calls libnats and the only one with threads (libnats' own).
 */
#ifndef SUBMITD_FORWARDER_H
#define SUBMITD_FORWARDER_H

#include <sys/types.h>

#include "conf.h"
#include "stats.h"

struct forwarder_args {
	const struct conf *conf;
	struct stats_shm *shm;
	const int *close_fds; /* the master's descriptors */
	int nclose;
	pid_t master;
};

/* Runs in the forked child; never returns. Exit status 0 after a clean stop. */
void forwarder_main(const struct forwarder_args *a) __attribute__((noreturn));

/*
 * For `submitd -t`: connect once (timeout_ms) and look the stream up. 0 when
 * it exists (or nats_create_stream would create it), -1 with a message;
 * *reachable is 0 when no server could be reached.
 */
int forwarder_check(const struct conf *c, int timeout_ms, int *reachable, char *err, size_t errlen);

#endif
