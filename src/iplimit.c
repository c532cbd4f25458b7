/* Connections per client address in shared memory: see iplimit.h. */
#include "iplimit.h"

#include <stdatomic.h>
#include <string.h>

#include "shmtab.h"

#define COUNT_MASK 0xffffu

struct iplimit {
	uint64_t seed[2];
	_Atomic uint64_t slot[IPLIMIT_SLOTS];
};

struct iplimit *iplimit_map(char *err, size_t errlen)
{
	return shmtab_map(sizeof(struct iplimit), err, errlen);
}

static uint64_t hash(const struct iplimit *t, const uint8_t addr[16])
{
	uint64_t a, b;

	memcpy(&a, addr, 8);
	memcpy(&b, addr + 8, 8);
	return shmtab_mix(shmtab_mix(a ^ t->seed[0]) ^ b ^ t->seed[1]);
}

/* The tag in the word's high 48 bits; never 0, which marks an empty slot. */
static uint64_t tag_of(uint64_t h)
{
	uint64_t tag = h >> 16;
	return (tag ? tag : 1) << 16;
}

int iplimit_acquire(struct iplimit *t, const uint8_t addr[16], unsigned limit)
{
	uint64_t h = hash(t, addr), tag = tag_of(h);

	for (int attempt = 0; attempt < 8; attempt++) {
		int cand = -1;
		for (unsigned i = 0; i < IPLIMIT_PROBES; i++) {
			unsigned k = (unsigned)(h + i) & (IPLIMIT_SLOTS - 1);
			uint64_t w = atomic_load_explicit(&t->slot[k], memory_order_relaxed);
			if ((w & ~(uint64_t)COUNT_MASK) == tag) {
				/* Its entry: one more, unless at the limit. */
				while ((w & ~(uint64_t)COUNT_MASK) == tag) {
					if ((w & COUNT_MASK) >= limit)
						return IPLIMIT_OVER;
					if (atomic_compare_exchange_weak(&t->slot[k], &w, w + 1))
						return (int)k;
				}
				cand = -2; /* it changed hands meanwhile: look again */
				break;
			}
			if (cand == -1 && (w & COUNT_MASK) == 0)
				cand =
				    (int)k; /* the first free one: every inserter picks the same */
		}
		if (cand == -2)
			continue;
		if (cand == -1)
			return IPLIMIT_UNTRACKED;
		uint64_t w = atomic_load_explicit(&t->slot[cand], memory_order_relaxed);
		if ((w & COUNT_MASK) == 0 &&
		    atomic_compare_exchange_strong(&t->slot[cand], &w, tag | 1))
			return cand;
	}
	/* Contended past reason: let it in rather than refuse it for others' churn. */
	return IPLIMIT_UNTRACKED;
}

void iplimit_release(struct iplimit *t, int slot)
{
	if (slot >= 0 && slot < (int)IPLIMIT_SLOTS)
		atomic_fetch_sub(&t->slot[slot], 1);
}

unsigned iplimit_count(const struct iplimit *t, const uint8_t addr[16])
{
	uint64_t h = hash(t, addr), tag = tag_of(h);

	for (unsigned i = 0; i < IPLIMIT_PROBES; i++) {
		uint64_t w = atomic_load(&t->slot[(h + i) & (IPLIMIT_SLOTS - 1)]);
		if ((w & ~(uint64_t)COUNT_MASK) == tag)
			return (unsigned)(w & COUNT_MASK);
	}
	return 0;
}
