/*
 * The shared tables of the per-client limits (iplimit, ratelimit): an
 * anonymous shared mapping the master makes before the first fork, which
 * begins with a random hash key, and the hash mix they use with it.
 * Returns errors, never logs.
 */
#ifndef SUBMITD_SHMTAB_H
#define SUBMITD_SHMTAB_H

#include <stddef.h>
#include <stdint.h>

/*
 * size bytes of zeros (MAP_SHARED | MAP_ANONYMOUS, touched as used) whose
 * first 16 are a random key (a struct's uint64_t seed[2]): which clients
 * share a neighbourhood of the table is not for them to choose. NULL with
 * err on failure.
 */
void *shmtab_map(size_t size, char *err, size_t errlen);

/* splitmix64's finaliser: every input bit moves every output bit. */
static inline uint64_t shmtab_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

#endif
