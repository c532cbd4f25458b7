/* Buffers and their pool: contents survive every move, and memory comes back. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "mem.h"
#include "tap.h"

#define CHUNK 256

static void pattern(uint8_t *p, size_t n, size_t from)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((from + i) * 7 + 1);
}

/* The buffer holds bytes [from, from + len) of the pattern. */
static int holds(const struct buf *b, size_t from, size_t len)
{
	if (buf_len(b) != len)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (buf_head(b)[i] != (uint8_t)((from + i) * 7 + 1))
			return 0;
	return 1;
}

static void test_lazy(size_t base)
{
	struct buf b = {0};

	ok(b.data == NULL && buf_len(&b) == 0 && buf_space(&b) == 0,
	   "a zeroed buf holds no memory");
	buf_release(&b);
	buf_free(&b);
	ok(b.data == NULL, "release and free of an empty buf are no-ops");
	is_int((long long)mem_allocated(), (long long)base, "nothing allocated by an unused buf");
}

static void test_append_consume(size_t base)
{
	uint8_t src[CHUNK];
	struct buf b = {0};

	pattern(src, sizeof(src), 0);
	is_int(buf_append(&b, src, 10), 0, "append 10 bytes");
	ok(b.data != NULL && b.cap == CHUNK, "first append takes one pool chunk (cap %u)", b.cap);
	ok(holds(&b, 0, 10), "buf holds the 10 bytes");
	is_int((long long)mem_allocated(), (long long)(base + CHUNK), "one chunk allocated");

	buf_consume(&b, 4);
	ok(holds(&b, 4, 6), "consume 4: the other 6 remain at the head");
	is_int(b.rpos, 4, "consume moves rpos only");
	is_int(buf_append(&b, src + 10, 20), 0, "append 20 more");
	ok(holds(&b, 4, 26), "bytes stay in order across appends");
	buf_release(&b);
	ok(b.data != NULL && holds(&b, 4, 26), "release of a non-empty buf keeps it");
	buf_consume(&b, 26);
	ok(b.rpos == 0 && b.wpos == 0 && buf_len(&b) == 0, "consuming everything rewinds");
	ok(b.data != NULL, "consuming everything keeps the memory");

	is_int(buf_reserve(&b, 5), 0, "reserve 5");
	ok(buf_space(&b) >= 5, "reserve gives at least the space asked for");
	memcpy(buf_tail(&b), src, 5);
	buf_commit(&b, 5);
	ok(holds(&b, 0, 5), "commit after writing to the tail");
	buf_consume(&b, 5);
	buf_release(&b);
	ok(b.data == NULL && b.cap == 0, "release of an empty buf gives the memory back");
}

static void test_compact(void)
{
	uint8_t src[CHUNK];
	struct buf b = {0};
	uint8_t *before;

	pattern(src, sizeof(src), 0);
	is_int(buf_append(&b, src, CHUNK - 8), 0, "fill the chunk up to 8 bytes");
	before = b.data;
	buf_consume(&b, CHUNK - 20);
	ok(holds(&b, CHUNK - 20, 12), "12 bytes left near the end");
	/* 8 free at the tail, 100 needed: compaction makes room without growing. */
	is_int(buf_reserve(&b, 100), 0, "reserve 100 with a small tail");
	ok(b.data == before && b.cap == CHUNK, "compacted in place, no growth");
	is_int(b.rpos, 0, "compaction moved the bytes to the start");
	ok(holds(&b, CHUNK - 20, 12), "compaction keeps the contents");
	ok(buf_space(&b) >= 100, "space after compaction");
	buf_free(&b);
	ok(b.data == NULL, "buf_free drops the memory");
}

/* buf_compact on its own: the tail space in one piece, no allocation. */
static void test_compact_op(void)
{
	uint8_t src[CHUNK];
	struct buf b = {0};
	uint8_t *before;
	size_t base = mem_allocated();

	buf_compact(&b);
	ok(b.data == NULL && buf_len(&b) == 0, "compact of an unused buf is a no-op");
	is_int((long long)mem_allocated(), (long long)base, "compact allocates nothing");

	pattern(src, sizeof(src), 0);
	is_int(buf_append(&b, src, 40), 0, "append 40 bytes");
	before = b.data;
	buf_compact(&b);
	ok(b.data == before && b.rpos == 0 && holds(&b, 0, 40),
	   "compact with the bytes already at the front changes nothing");

	buf_consume(&b, 30);
	ok(buf_space(&b) == CHUNK - 40, "consume alone leaves the head space unusable");
	buf_compact(&b);
	ok(b.data == before && b.cap == CHUNK, "compact moves in place, no growth");
	ok(b.rpos == 0 && holds(&b, 30, 10), "compact moves the 10 unread bytes to the front");
	is_int((long long)buf_space(&b), CHUNK - 10, "all the rest is tail space");
	is_int(buf_append(&b, src + 40, 5), 0, "append after compact");
	ok(holds(&b, 30, 15), "appended bytes follow the moved ones");
	buf_free(&b);
}

static void test_grow(size_t base)
{
	static uint8_t src[CHUNK * 10];
	struct buf b = {0};
	size_t n = 0;

	pattern(src, sizeof(src), 0);
	/* Odd sizes so appends straddle the chunk boundary. */
	while (n < sizeof(src)) {
		size_t k = sizeof(src) - n < 77 ? sizeof(src) - n : 77;
		if (buf_append(&b, src + n, k) != 0)
			break;
		n += k;
	}
	is_int((long long)n, (long long)sizeof(src), "appended 10 chunks' worth in pieces");
	ok(b.cap >= sizeof(src), "grew beyond the pool chunk (cap %u)", b.cap);
	ok(holds(&b, 0, sizeof(src)), "growth keeps every byte in order");
	ok(mem_allocated() >= base + sizeof(src), "allocation accounts for the growth");

	/* Consume most, then grow again: compaction plus growth. */
	buf_consume(&b, sizeof(src) - 10);
	is_int(buf_reserve(&b, b.cap * 2), 0, "reserve twice the capacity");
	ok(holds(&b, sizeof(src) - 10, 10), "contents survive a second growth");

	/* One large append into an empty buf skips the pool. */
	struct buf big = {0};
	is_int(buf_append(&big, src, CHUNK * 3), 0, "a first append larger than a chunk");
	ok(big.cap >= CHUNK * 3 && holds(&big, 0, CHUNK * 3), "large first append fits and holds");

	buf_consume(&b, buf_len(&b));
	buf_release(&b);
	buf_consume(&big, buf_len(&big));
	buf_release(&big);
	ok(b.data == NULL && big.data == NULL, "grown buffers released");
	buf_pool_trim();
	is_int((long long)mem_allocated(), (long long)base,
	       "grown buffers are not pooled: allocation back to its start value");
}

static void test_release_returns(size_t base)
{
	struct buf bufs[8] = {{0}};
	uint8_t src[64];

	pattern(src, sizeof(src), 0);
	for (int i = 0; i < 8; i++)
		if (buf_append(&bufs[i], src, sizeof(src)) != 0)
			break;
	is_int((long long)mem_allocated(), (long long)(base + 8 * CHUNK), "8 buffers, 8 chunks");
	for (int i = 0; i < 8; i++) {
		buf_consume(&bufs[i], sizeof(src));
		buf_release(&bufs[i]);
	}
	is_int((long long)mem_allocated(), (long long)(base + 4 * CHUNK),
	       "after release the pool keeps 4 chunks, frees the rest");
	buf_pool_trim();
	is_int((long long)mem_allocated(), (long long)base,
	       "trim: allocation back to its start value");

	/* buf_free of a non-empty buf also returns its memory. */
	struct buf b = {0};
	if (buf_append(&b, src, sizeof(src)) == 0)
		buf_free(&b);
	buf_pool_trim();
	is_int((long long)mem_allocated(), (long long)base,
	       "buf_free of a full buf returns it all");
}

/* A busy steady state, as in a worker loop: no allocation per round. */
static void test_steady(size_t base)
{
	struct buf bufs[4] = {{0}};
	uint8_t src[100];
	size_t warm = 0, after, rounds = 0;
	int failed = 0;

	pattern(src, sizeof(src), 0);
	for (int round = 0; round < 10000; round++) {
		for (int i = 0; i < 4; i++) {
			if (buf_append(&bufs[i], src, (size_t)(round + i) % sizeof(src) + 1) != 0)
				failed = 1;
		}
		for (int i = 0; i < 4; i++) {
			buf_consume(&bufs[i], buf_len(&bufs[i]));
			buf_release(&bufs[i]);
		}
		if (round == 9)
			warm = mem_allocated();
		rounds++;
	}
	after = mem_allocated();
	ok(!failed, "steady loop: %zu rounds of append/consume/release", rounds);
	is_int((long long)after, (long long)warm, "steady loop: allocation flat after warm-up");
	is_int((long long)(warm - base), 4 * CHUNK,
	       "steady loop: the pool holds just the 4 chunks in use");

	/* Interleaved: some buffers stay busy while others cycle. */
	struct buf keep = {0};
	if (buf_append(&keep, src, 10) != 0)
		failed = 1;
	warm = mem_allocated();
	for (int round = 0; round < 1000; round++) {
		uint8_t next;

		pattern(&next, 1, 10 + (size_t)round);
		if (buf_append(&bufs[0], src, 50) != 0 || buf_append(&keep, &next, 1) != 0)
			failed = 1;
		buf_consume(&bufs[0], 50);
		buf_release(&bufs[0]);
		buf_consume(&keep, 1);
	}
	ok(!failed && holds(&keep, 1000, 10), "a buffer in use keeps its bytes while others cycle");
	is_int((long long)mem_allocated(), (long long)warm, "interleaved loop: allocation flat");
	buf_free(&keep);
	buf_pool_trim();
}

int main(void)
{
	char err[256];
	size_t base;

	if (mem_init(0, err, sizeof(err)) != 0) {
		ok(0, "mem_init: %s", err);
		return done_testing();
	}
	buf_pool_init(CHUNK, 4);
	is_int((long long)buf_pool_chunk(), CHUNK, "pool chunk size set (%s backend)",
	       mem_backend());
	base = mem_allocated();

	test_lazy(base);
	test_append_consume(base);
	test_compact();
	test_compact_op();
	test_grow(base);
	buf_pool_trim();
	is_int((long long)mem_allocated(), (long long)base,
	       "all released: back to the start value");
	test_release_returns(base);
	base = mem_allocated();
	test_steady(base);
	is_int((long long)mem_allocated(), (long long)base,
	       "end: allocation back to its start value");
	return done_testing();
}
