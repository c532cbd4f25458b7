#include "stats.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define STATS_MAGIC 0x7375626d69746473ULL /* "submitds" */

struct stats_shm *stats_map(char *err, size_t errlen)
{
	size_t len = sizeof(struct stats_shm) + STATS_MAX_SLOTS * sizeof(struct stats_slot);
	struct stats_shm *shm;

	shm = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED) {
		snprintf(err, errlen, "mmap %zu bytes: %s", len, strerror(errno));
		return NULL;
	}
	shm->magic = STATS_MAGIC;
	shm->nslots = STATS_MAX_SLOTS;
	return shm;
}

void stats_batch(struct stats_slot *s, uint64_t acks)
{
#ifndef SUBMITD_NO_STATS
	static const uint64_t bounds[] = STATS_BATCH_BOUNDS;
	size_t i = 0;

	while (i < sizeof(bounds) / sizeof(bounds[0]) && acks > bounds[i])
		i++;
	STATS_ADD(s->batch[i], 1);
	STATS_ADD(s->batch_sum, acks);
#else
	(void)s;
	(void)acks;
#endif
}

void stats_fsync(struct stats_slot *s, uint64_t us, uint64_t recs)
{
	static const uint64_t lat[] = STATS_FSYNC_BOUNDS;
	static const uint64_t bounds[] = STATS_BATCH_BOUNDS;
	size_t i = 0, j = 0;

	while (i < sizeof(lat) / sizeof(lat[0]) && us > lat[i])
		i++;
	while (j < sizeof(bounds) / sizeof(bounds[0]) && recs > bounds[j])
		j++;
	STATS_ADD(s->fsync_us[i], 1);
	STATS_ADD(s->fsync_us_sum, us);
	STATS_ADD(s->fsync_recs[j], 1);
	STATS_ADD(s->fsync_recs_sum, recs);
}

void stats_handshake(struct stats_slot *s, uint64_t us)
{
	static const uint64_t bounds[] = STATS_HS_BOUNDS;
	size_t i = 0;

	while (i < sizeof(bounds) / sizeof(bounds[0]) && us > bounds[i])
		i++;
	STATS_ADD(s->tls_hs_us[i], 1);
	STATS_ADD(s->tls_hs_us_sum, us);
}

uint64_t stats_spool_used(const struct stats_shm *shm)
{
	uint32_t hwm = STATS_LOAD(shm->ctl.slot_hwm);
	int64_t net = 0;

	if (hwm > STATS_MAX_SLOTS)
		hwm = STATS_MAX_SLOTS;
	for (uint32_t i = 0; i < hwm; i++) {
		const struct stats_slot *s = &shm->slot[i];
		if (STATS_LOAD(shm->ctl.slot[i].state) == CTL_SLOT_FREE)
			continue;
		net += (int64_t)(STATS_LOAD(s->c[STATS_spool_bytes]) -
				 STATS_LOAD(s->c[STATS_spool_dropped_bytes]));
	}
	int64_t used = (int64_t)STATS_LOAD(shm->ctl.spool_scan_bytes) + net -
		       (int64_t)STATS_LOAD(shm->ctl.spool_scan_net);
	return used < 0 ? 0 : (uint64_t)used;
}

void stats_slot_reset(struct stats_slot *s)
{
	memset(s, 0, sizeof(*s));
}

void stats_fold(struct stats_slot *acc, const struct stats_slot *s)
{
	for (int i = 0; i < STATS_NCOUNTERS; i++)
		acc->c[i] += STATS_LOAD(s->c[i]);
	for (int i = 0; i < STATS_NBATCH; i++)
		acc->batch[i] += STATS_LOAD(s->batch[i]);
	acc->batch_sum += STATS_LOAD(s->batch_sum);
	for (int i = 0; i < STATS_NFSYNC; i++)
		acc->fsync_us[i] += STATS_LOAD(s->fsync_us[i]);
	acc->fsync_us_sum += STATS_LOAD(s->fsync_us_sum);
	for (int i = 0; i < STATS_NBATCH; i++)
		acc->fsync_recs[i] += STATS_LOAD(s->fsync_recs[i]);
	acc->fsync_recs_sum += STATS_LOAD(s->fsync_recs_sum);
	for (int i = 0; i < STATS_NHS; i++)
		acc->tls_hs_us[i] += STATS_LOAD(s->tls_hs_us[i]);
	acc->tls_hs_us_sum += STATS_LOAD(s->tls_hs_us_sum);
}
