/* The master: binds, forks and supervises workers, reloads, serves /metrics. */
#ifndef SUBMITD_MASTER_H
#define SUBMITD_MASTER_H

#include "conf.h"

/* sigqueue() value that asks the master to answer a SIGHUP with SIGUSR2 (0 ok, 1 failed). */
#define MASTER_RELOAD_ASK 0x5244
/* How long `submitd -s reload` waits for that answer, and the master keeps the asker. */
#ifdef SUBMITD_TEST_HOOKS
#define MASTER_RELOAD_WAIT_S 3 /* so that a test sees the master forget an asker */
#else
#define MASTER_RELOAD_WAIT_S 120
#endif

/*
 * Takes ownership of c. Returns the process exit status. With detach, the
 * caller's process exits once start-up has succeeded or failed, and a
 * daemon carries on (see proc_detach).
 */
int master_run(struct conf *c, int detach);

#endif
