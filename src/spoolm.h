/*
 * The master's side of the spool (docs/SPOOL.md): create the directories,
 * recover the segments of dead workers, and scan the spool once a second
 * for the size bound and the gauges. Work on the spool's files runs as the
 * configured user (a short-lived child when the master is root), so the
 * master never needs to override file permissions.
 */
#ifndef SUBMITD_SPOOLM_H
#define SUBMITD_SPOOLM_H

#include <sys/types.h>

#include "conf.h"
#include "stats.h"

/* Before the first workers: directories, recovery of every unlocked segment, a scan. */
int spoolm_start(const struct conf *c, struct stats_shm *shm);
/* After a reload: the settings the workers read from shared memory. */
void spoolm_conf(const struct conf *c);
/* A worker was reaped: recover its segments, rescan. */
void spoolm_reaped(pid_t pid);
/* Once a second: rescan. */
void spoolm_tick(void);

#endif
