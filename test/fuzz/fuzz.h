/* What every libFuzzer target here shares. */
#ifndef SUBMITD_FUZZ_H
#define SUBMITD_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* A broken property is a crash, so that libFuzzer keeps the input. */
#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
