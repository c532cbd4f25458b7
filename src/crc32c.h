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
 * The CRCs (from 0) of count buffers (p[i], n[i] bytes), each stored at
 * out[i] as 4 bytes little-endian (where a format keeps it, say in front of
 * the bytes it covers): with the CPU instruction three at a time,
 * interleaved, at about the cost of one.
 */
void crc32c_many(const void *const p[], const uint32_t n[], void *const out[], size_t count);

#endif
