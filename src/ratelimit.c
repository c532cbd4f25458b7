/* Submits per second per client in shared memory: see ratelimit.h. */
#include "ratelimit.h"

#include <stdatomic.h>
#include <string.h>

#include "shmtab.h"

/* An entry whose client was within its burst this long ago may be given to another. */
#define IDLE_NS 1000000000ull

struct entry {
	_Atomic uint64_t key; /* 0: empty */
	_Atomic uint64_t tat; /* theoretical arrival time, ns; 0: a full burst */
};

struct ratelimit {
	uint64_t seed[2];
	struct entry e[RATELIMIT_SLOTS];
};

struct ratelimit *ratelimit_map(char *err, size_t errlen)
{
	return shmtab_map(sizeof(struct ratelimit), err, errlen);
}

uint64_t ratelimit_key(const struct ratelimit *t, const char *identity, size_t n,
		       const uint8_t addr[16])
{
	uint64_t h = t->seed[0], w;

	if (n > 0) {
		/* 8 bytes at a time, the tail zero-padded; the length first, so no two collide by
		 * padding. */
		h = shmtab_mix(h ^ n);
		for (size_t i = 0; i < n; i += 8) {
			w = 0;
			memcpy(&w, identity + i, n - i < 8 ? n - i : 8);
			h = shmtab_mix(h ^ w);
		}
		h = shmtab_mix(h ^ t->seed[1]) |
		    1ull << 63; /* identities and addresses never meet */
	} else {
		memcpy(&w, addr, 8);
		h = shmtab_mix(h ^ w);
		memcpy(&w, addr + 8, 8);
		h = shmtab_mix(h ^ w ^ t->seed[1]) & ~(1ull << 63);
	}
	return h ? h : 1;
}

/* The client's entry, or a new one for it: the slot, or -1 if none is free near its hash. */
static int32_t lookup(struct ratelimit *t, uint64_t key, uint64_t now_ns)
{
	for (int attempt = 0; attempt < 4; attempt++) {
		int32_t cand = -1;
		uint64_t cand_key = 0;
		for (unsigned i = 0; i < RATELIMIT_PROBES; i++) {
			unsigned k = (unsigned)(key + i) & (RATELIMIT_SLOTS - 1);
			uint64_t w = atomic_load_explicit(&t->e[k].key, memory_order_relaxed);
			if (w == key)
				return (int32_t)k;
			if (cand >= 0)
				continue;
			if (w == 0 ||
			    atomic_load_explicit(&t->e[k].tat, memory_order_relaxed) + IDLE_NS <
				now_ns) {
				cand = (int32_t)k;
				cand_key = w;
			}
		}
		if (cand < 0)
			return -1;
		if (atomic_compare_exchange_strong(&t->e[cand].key, &cand_key, key)) {
			/* A full burst for the newcomer. */
			atomic_store_explicit(&t->e[cand].tat, 0, memory_order_relaxed);
			return cand;
		}
		/* Another worker took it meanwhile (perhaps for this key): look again. */
	}
	return -1;
}

int ratelimit_take(struct ratelimit *t, uint64_t key, int32_t *slot, uint64_t now_ns,
		   uint64_t interval_ns, uint64_t burst, unsigned k)
{
	struct entry *e;
	uint64_t tat, next;

	if (*slot < 0 || atomic_load_explicit(&t->e[*slot].key, memory_order_relaxed) != key)
		*slot = lookup(t, key, now_ns);
	if (*slot < 0)
		return RATELIMIT_UNTRACKED;
	e = &t->e[*slot];
	tat = atomic_load_explicit(&e->tat, memory_order_relaxed);
	do {
		next = (tat > now_ns ? tat : now_ns) + k * interval_ns;
		if (next - now_ns > burst * interval_ns)
			return RATELIMIT_OVER;
	} while (!atomic_compare_exchange_weak(&e->tat, &tat, next));
	return RATELIMIT_OK;
}

unsigned ratelimit_used(const struct ratelimit *t, uint64_t now_ns)
{
	unsigned n = 0;

	for (unsigned k = 0; k < RATELIMIT_SLOTS; k++)
		n += atomic_load_explicit(&t->e[k].key, memory_order_relaxed) != 0 &&
		     atomic_load_explicit(&t->e[k].tat, memory_order_relaxed) + IDLE_NS >= now_ns;
	return n;
}
