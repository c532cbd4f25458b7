/* Pseudo-random numbers for tests: xorshift64, the same sequence on every run. */
#ifndef SUBMITD_TEST_RAND_H
#define SUBMITD_TEST_RAND_H

#include <stdint.h>

static inline uint64_t test_rand(void)
{
	static uint64_t s = 0x9e3779b97f4a7c15ull;

	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return s;
}

#endif
