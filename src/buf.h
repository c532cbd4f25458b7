/*
 * A connection's input or output buffer: bytes in data[rpos..wpos), space
 * in data[wpos..cap). Memory comes lazily from a per-process pool of
 * fixed-size chunks, so an idle connection holds no buffer and a busy one
 * costs no allocation per message.
 */
#ifndef SUBMITD_BUF_H
#define SUBMITD_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data; /* NULL until the first reserve; owned by the buf */
	uint32_t cap;
	uint32_t rpos;
	uint32_t wpos;
};

/*
 * chunk: the standard buffer size; keep: how many free chunks the pool
 * holds before giving memory back to the allocator.
 */
void buf_pool_init(size_t chunk, size_t keep);
size_t buf_pool_chunk(void);
/* Free every pooled chunk (after a spike, or at exit). */
void buf_pool_trim(void);

static inline size_t buf_len(const struct buf *b)
{
	return b->wpos - b->rpos;
}

static inline uint8_t *buf_head(const struct buf *b)
{
	return b->data + b->rpos;
}

static inline uint8_t *buf_tail(const struct buf *b)
{
	return b->data + b->wpos;
}

/* Whether the buffer holds memory (a first reserve takes a whole chunk). */
static inline int buf_allocated(const struct buf *b)
{
	return b->data != NULL;
}

static inline size_t buf_space(const struct buf *b)
{
	return b->cap - b->wpos;
}

/*
 * Move the unread bytes to the front of the memory, so that all the space
 * behind them is in one piece (OpenSMTPD's iobuf_normalize). Never
 * allocates; a no-op if they are already there.
 */
void buf_compact(struct buf *b);

/* Ensure buf_space() >= n, compacting or growing. 0, or -1 if out of memory. */
int buf_reserve(struct buf *b, size_t n) __attribute__((warn_unused_result));
int buf_append(struct buf *b, const void *p, size_t n) __attribute__((warn_unused_result));

static inline void buf_commit(struct buf *b, size_t n)
{
	b->wpos += (uint32_t)n;
}

static inline void buf_consume(struct buf *b, size_t n)
{
	b->rpos += (uint32_t)n;
	if (b->rpos == b->wpos)
		b->rpos = b->wpos = 0;
}

/* Give the memory back if the buffer is empty; keeps it otherwise. */
void buf_release(struct buf *b);
/* Drop the contents and the memory. */
void buf_free(struct buf *b);

#endif
