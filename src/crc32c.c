#include "crc32c.h"

#include <endian.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define CRC32C_POLY 0x82F63B78u

/* Slicing-by-8 tables, built at load time (before any thread can race on them). */
static uint32_t crc_tab[8][256];

static void put_le32(void *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

__attribute__((constructor)) static void crc_tab_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc_tab[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_tab[t][i] =
			    (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

uint32_t crc32c_sw(uint32_t crc, const void *p, size_t n)
{
	const uint8_t *b = p;

	crc = ~crc;
	while (n > 0 && ((uintptr_t)b & 7) != 0) {
		crc = crc_tab[0][(crc ^ *b++) & 0xff] ^ (crc >> 8);
		n--;
	}
	while (n >= 8) {
		uint32_t lo = crc ^ ((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
				     (uint32_t)b[3] << 24);
		crc = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^
		      crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^ crc_tab[3][b[4]] ^
		      crc_tab[2][b[5]] ^ crc_tab[1][b[6]] ^ crc_tab[0][b[7]];
		b += 8;
		n -= 8;
	}
	while (n-- > 0)
		crc = crc_tab[0][(crc ^ *b++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

#if defined(__x86_64__)
/*
 * Long buffers run as three streams over consecutive blocks of CRC_BLOCK
 * bytes (the crc32 instruction takes three cycles and can start every
 * cycle), joined by shifting: the CRC register is linear, so the register
 * after blocks A then B is shift(crc(A)) ^ crc(B) with B's started at 0,
 * where shift is the effect of CRC_BLOCK zero bytes, a table lookup per
 * byte of the register (Intel's crc_pcl, without the carry-less multiply).
 */
#define CRC_BLOCK 1024
static uint32_t crc_shift_tab[4][256];

__attribute__((target("sse4.2"))) static void crc_shift_init(void)
{
	uint32_t basis[32];

	for (int i = 0; i < 32; i++) {
		uint64_t r = 1u << i;
		for (int k = 0; k < CRC_BLOCK / 8; k++)
			r = _mm_crc32_u64(r, 0);
		basis[i] = (uint32_t)r;
	}
	for (int k = 0; k < 4; k++)
		for (int v = 0; v < 256; v++) {
			uint32_t r = 0;
			for (int j = 0; j < 8; j++)
				if (v & (1 << j))
					r ^= basis[8 * k + j];
			crc_shift_tab[k][v] = r;
		}
}

static uint64_t crc_shift(uint64_t r)
{
	return crc_shift_tab[0][r & 0xff] ^ crc_shift_tab[1][(r >> 8) & 0xff] ^
	       crc_shift_tab[2][(r >> 16) & 0xff] ^ crc_shift_tab[3][(r >> 24) & 0xff];
}

/*
 * No alignment loop: unaligned 8-byte loads cost the same on x86-64, and a
 * record's CRC starts at offset 4, where a byte loop would add 4 dependent
 * steps per record.
 */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t c = ~crc;

	while (n >= 3 * CRC_BLOCK) {
		uint64_t c1 = 0, c2 = 0;
		for (size_t i = 0; i < CRC_BLOCK; i += 8) {
			uint64_t v0, v1, v2;
			memcpy(&v0, b + i, 8);
			memcpy(&v1, b + CRC_BLOCK + i, 8);
			memcpy(&v2, b + 2 * CRC_BLOCK + i, 8);
			c = _mm_crc32_u64(c, v0);
			c1 = _mm_crc32_u64(c1, v1);
			c2 = _mm_crc32_u64(c2, v2);
		}
		c = crc_shift(crc_shift(c) ^ c1) ^ c2;
		b += 3 * CRC_BLOCK;
		n -= 3 * CRC_BLOCK;
	}

	while (n >= 8) {
		uint64_t v;
		memcpy(&v, b, 8);
		c = _mm_crc32_u64(c, v);
		b += 8;
		n -= 8;
	}
	if (n >= 4) {
		uint32_t v;
		memcpy(&v, b, 4);
		c = _mm_crc32_u32((uint32_t)c, v);
		b += 4;
		n -= 4;
	}
	while (n-- > 0)
		c = _mm_crc32_u8((uint32_t)c, *b++);
	return ~(uint32_t)c;
}

/*
 * Three CRCs side by side: the crc32 instruction takes three cycles but
 * can start every cycle, so one stream waits on itself and three
 * independent ones cost about what one does. The common length runs
 * interleaved, each tail alone.
 */
__attribute__((target("sse4.2"))) static inline void crc_hw3(const void *const p[3],
							     const uint32_t n[3], uint32_t out[3])
{
	const uint8_t *p0 = p[0], *p1 = p[1], *p2 = p[2];
	uint64_t c0 = 0xffffffffu, c1 = 0xffffffffu, c2 = 0xffffffffu;
	uint32_t m = n[0] < n[1] ? n[0] : n[1];
	size_t i;

	m = n[2] < m ? n[2] : m;
	for (i = 0; i + 8 <= m; i += 8) {
		uint64_t v0, v1, v2;
		memcpy(&v0, p0 + i, 8);
		memcpy(&v1, p1 + i, 8);
		memcpy(&v2, p2 + i, 8);
		c0 = _mm_crc32_u64(c0, v0);
		c1 = _mm_crc32_u64(c1, v1);
		c2 = _mm_crc32_u64(c2, v2);
	}
	out[0] = crc_hw(~(uint32_t)c0, p0 + i, n[0] - i);
	out[1] = crc_hw(~(uint32_t)c1, p1 + i, n[1] - i);
	out[2] = crc_hw(~(uint32_t)c2, p2 + i, n[2] - i);
}

__attribute__((target("sse4.2"))) static void crc_hw_many(const void *const p[], const uint32_t n[],
							  void *const out[], size_t count)
{
	size_t i = 0;
	uint32_t c[3];

	for (; i + 3 <= count; i += 3) {
		crc_hw3(p + i, n + i, c);
		put_le32(out[i], c[0]);
		put_le32(out[i + 1], c[1]);
		put_le32(out[i + 2], c[2]);
	}
	for (; i < count; i++)
		put_le32(out[i], crc_hw(0, p[i], n[i]));
}
#endif

/* Decided at load time, like the tables; the answer never changes. */
static int crc_use_hw;

__attribute__((constructor)) static void crc_hw_init(void)
{
#if defined(__x86_64__)
	__builtin_cpu_init();
	crc_use_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
	if (crc_use_hw)
		crc_shift_init();
#endif
}

int crc32c_hw(void)
{
	return crc_use_hw;
}

uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
#if defined(__x86_64__)
	if (crc_use_hw)
		return crc_hw(crc, p, n);
#endif
	return crc32c_sw(crc, p, n);
}

void crc32c_many(const void *const p[], const uint32_t n[], void *const out[], size_t count)
{
#if defined(__x86_64__)
	if (crc_use_hw) {
		crc_hw_many(p, n, out, count);
		return;
	}
#endif
	for (size_t i = 0; i < count; i++)
		put_le32(out[i], crc32c_sw(0, p[i], n[i]));
}
