/* The master: binds, forks and supervises workers, reloads, serves /metrics. */
#ifndef SUBMITD_MASTER_H
#define SUBMITD_MASTER_H

#include "conf.h"

/* sigqueue() value that asks the master to answer a SIGHUP with SIGUSR2 (0 ok, 1 failed). */
#define MASTER_RELOAD_ASK 0x5244

/* Takes ownership of c. Returns the process exit status. */
int master_run(struct conf *c);

#endif
