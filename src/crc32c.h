/*
 * CRC-32C (Castagnoli, reflected 0x82F63B78, init and final XOR
 * 0xFFFFFFFF), the spool's checksum (docs/SPOOL.md). Uses the SSE4.2
 * instruction where the CPU has it, decided once at load time. A leaf: no
 * allocation, no I/O.
 */
#ifndef SUBMITD_CRC32C_H
#define SUBMITD_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * Start with crc = 0; chaining crc32c(crc32c(0, a), b) equals the CRC of a
 * followed by b.
 */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);
/* The portable table path, always; for tests that compare both paths. */
uint32_t crc32c_sw(uint32_t crc, const void *p, size_t n);
/* 1 if crc32c uses the CPU instruction. */
int crc32c_hw(void);
/*
 * The CRCs (from 0) of three buffers at once, into out: with the CPU
 * instruction about the cost of one, as the three run interleaved.
 */
void crc32c_3(const void *const p[3], const size_t n[3], uint32_t out[3]);

#endif
