#include "buf.h"

#include <string.h>

#include "mem.h"

static size_t pool_chunk = 16384;
static size_t pool_keep = 64;
static size_t pool_n;
/* Free chunks form a stack linked through their first bytes. */
static void *pool_top;

void buf_pool_init(size_t chunk, size_t keep)
{
	buf_pool_trim();
	pool_chunk = chunk < sizeof(void *) ? sizeof(void *) : chunk;
	pool_keep = keep;
}

size_t buf_pool_chunk(void)
{
	return pool_chunk;
}

void buf_pool_trim(void)
{
	while (pool_top != NULL) {
		void *next;
		memcpy(&next, pool_top, sizeof(next));
		mem_free(pool_top, pool_chunk);
		pool_top = next;
	}
	pool_n = 0;
}

static void *pool_get(void)
{
	void *p = pool_top;

	if (p == NULL)
		return mem_alloc(pool_chunk);
	memcpy(&pool_top, p, sizeof(pool_top));
	pool_n--;
	return p;
}

static void pool_put(void *p, size_t cap)
{
	if (cap != pool_chunk || pool_n >= pool_keep) {
		mem_free(p, cap);
		return;
	}
	memcpy(p, &pool_top, sizeof(pool_top));
	pool_top = p;
	pool_n++;
}

void buf_compact(struct buf *b)
{
	uint32_t len = b->wpos - b->rpos;

	if (b->rpos == 0)
		return;
	memmove(b->data, b->data + b->rpos, len);
	b->rpos = 0;
	b->wpos = len;
}

int buf_reserve(struct buf *b, size_t n)
{
	size_t len, need;
	uint8_t *p;

	if (b->cap - b->wpos >= n)
		return 0;
	len = b->wpos - b->rpos;
	if (b->data == NULL && n <= pool_chunk) {
		if ((b->data = pool_get()) == NULL)
			return -1;
		b->cap = (uint32_t)pool_chunk;
		return 0;
	}
	if (b->rpos > 0) {
		/* Usually a partial frame: a few bytes to move. */
		buf_compact(b);
		if (b->cap - b->wpos >= n)
			return 0;
	}
	need = len + n;
	if (need > UINT32_MAX)
		return -1;
	if (need < pool_chunk)
		need = pool_chunk;
	if (b->data == NULL) {
		p = mem_alloc(need);
	} else if (b->cap == pool_chunk) {
		/* Leave the pool's size class: copy rather than realloc a pooled chunk. */
		if ((p = mem_alloc(need)) != NULL) {
			memcpy(p, b->data, len);
			pool_put(b->data, b->cap);
		}
	} else {
		p = mem_realloc(b->data, b->cap, need);
	}
	if (p == NULL)
		return -1;
	b->data = p;
	b->cap = (uint32_t)need;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) == -1)
		return -1;
	memcpy(b->data + b->wpos, p, n);
	b->wpos += (uint32_t)n;
	return 0;
}

void buf_release(struct buf *b)
{
	if (b->data == NULL || b->wpos != b->rpos)
		return;
	pool_put(b->data, b->cap);
	b->data = NULL;
	b->cap = b->rpos = b->wpos = 0;
}

void buf_free(struct buf *b)
{
	b->rpos = b->wpos = 0;
	buf_release(b);
}
