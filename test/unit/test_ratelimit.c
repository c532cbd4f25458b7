/* ratelimit.c: GCRA's burst and rate, keys, the slot cache, a full table, two processes at once. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ratelimit.h"
#include "tap.h"

#define SEC 1000000000ull

static void v4(uint8_t a[16], unsigned last)
{
	memset(a, 0, 16);
	a[10] = a[11] = 0xff;
	a[12] = 192, a[14] = (uint8_t)(last >> 8), a[15] = (uint8_t)last;
}

/* Takes of one Submit at now until one is refused: how many went. */
static unsigned takes(struct ratelimit *t, uint64_t key, int32_t *slot, uint64_t now,
		      uint64_t interval, uint64_t burst)
{
	unsigned n = 0;

	while (n < 1000000 && ratelimit_take(t, key, slot, now, interval, burst, 1) == RATELIMIT_OK)
		n++;
	return n;
}

int main(void)
{
	char err[256];
	struct ratelimit *t = ratelimit_map(err, sizeof(err));
	uint8_t a[16], b[16];
	int32_t sa = -1, sb = -1, s2 = -1;
	uint64_t now = 100 * SEC, iv = SEC / 10; /* 10 a second */

	if (!ok(t != NULL, "ratelimit_map"))
		return done_testing();
	v4(a, 1);
	v4(b, 2);
	uint64_t ka = ratelimit_key(t, NULL, 0, a), kb = ratelimit_key(t, NULL, 0, b);
	uint64_t ki = ratelimit_key(t, "device-1", 8, a), kj = ratelimit_key(t, "device-1", 8, b);
	ok(ka != kb && ka != ki, "addresses and identities have their own keys");
	ok(ki == kj, "an identity's key is the same from any address");
	ok(ratelimit_key(t, "device-1x", 9, a) != ki && ratelimit_key(t, "device-", 7, a) != ki,
	   "a longer or shorter identity is another key");

	is_int(takes(t, ka, &sa, now, iv, 5), 5, "a full burst of 5 at once");
	ok(sa >= 0, "the slot is cached");
	is_int(takes(t, ka, &sa, now + iv / 2, iv, 5), 0, "none more within an interval");
	is_int(takes(t, ka, &sa, now + iv, iv, 5), 1, "one more after an interval");
	is_int(takes(t, ka, &sa, now + 3 * iv, iv, 5), 2, "two after two more");
	is_int(takes(t, ka, &sa, now + 100 * SEC, iv, 5), 5,
	       "after long, a full burst again, no more");
	is_int(takes(t, kb, &sb, now, iv, 5), 5, "another address has its own burst");
	ok(sb != sa, "and its own slot");
	is_int(ratelimit_take(t, ki, &s2, now, iv, 16, 16), RATELIMIT_OK,
	       "16 at once within a burst of 16");
	is_int(ratelimit_take(t, ki, &s2, now, iv, 16, 1), RATELIMIT_OVER, "then none");
	is_int(ratelimit_take(t, ki, &s2, now + 20 * iv, iv, 16, 17), RATELIMIT_OVER,
	       "more than the burst at once: never");

	/* A cached slot that went to another key is looked up again. */
	int32_t stale = sb;
	is_int(ratelimit_take(t, ka, &stale, now + 200 * SEC, iv, 5, 1), RATELIMIT_OK,
	       "a take with another key's slot cached");
	is_int(stale, sa, "finds its own slot");

	/* Full: 32 busy keys at one hash neighbourhood cannot be made here (keyed hash), so fill
	 * all. */
	uint64_t t0 = 1000 * SEC;
	unsigned tracked = 0, untracked = 0;
	for (unsigned i = 0; i < RATELIMIT_SLOTS + 5000; i++) {
		uint8_t c[16];
		int32_t s = -1;
		v4(c, i);
		c[13] = (uint8_t)(i >> 16);
		c[12] = (uint8_t)(10 + (i >> 24));
		int r = ratelimit_take(t, ratelimit_key(t, NULL, 0, c), &s, t0, SEC, 1, 1);
		tracked += r == RATELIMIT_OK;
		untracked += r == RATELIMIT_UNTRACKED;
	}
	ok(untracked > 0 && tracked + untracked == RATELIMIT_SLOTS + 5000,
	   "a full table lets clients in untracked, never refused (%u tracked, %u untracked)",
	   tracked, untracked);
	int32_t s = -1;
	uint8_t c[16];
	v4(c, 4242);
	c[12] = 250;
	is_int(ratelimit_take(t, ratelimit_key(t, NULL, 0, c), &s, t0 + 3 * SEC, SEC, 1, 1),
	       RATELIMIT_OK, "an entry idle a second past its burst is reused");

	/*
	 * Two processes on one key, on one clock they both advance (5 ns an
	 * attempt, at 1 Submit a 10 ns: twice the demand): no take lost or
	 * doubled by the races of their compare-and-swaps.
	 */
	uint64_t k2 = ratelimit_key(t, "shared", 6, a), base = 5000 * SEC;
	_Atomic uint64_t *clk =
	    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int32_t sk = -1;
	int fds[2];
	unsigned mine = 0, theirs = 0;
	ok(clk != MAP_FAILED && pipe(fds) == 0, "a shared clock and a pipe");
	pid_t pid = fork();
	for (int i = 0; i < 200000; i++) {
		uint64_t at = base + 5 * atomic_fetch_add(clk, 1);
		mine += ratelimit_take(t, k2, &sk, at, 10, 1000, 1) == RATELIMIT_OK;
	}
	if (pid == 0) {
		ssize_t w = write(fds[1], &mine, sizeof(mine));
		_exit(w == (ssize_t)sizeof(mine) ? 0 : 1);
	}
	int st = 0;
	ok(read(fds[0], &theirs, sizeof(theirs)) == (ssize_t)sizeof(theirs) &&
	       waitpid(pid, &st, 0) == pid && st == 0,
	   "the other process's count");
	/* 400,000 attempts over 2 ms: 200,000 of the rate and 1,000 of the burst at most. */
	uint64_t end = base + 5 * atomic_load(clk);
	ok(mine + theirs <= (end - base) / 10 + 1000 + 1 && mine + theirs >= 198000,
	   "two processes took %u + %u = %u of 201,000: within the burst and the rate", mine,
	   theirs, mine + theirs);
	return done_testing();
}
