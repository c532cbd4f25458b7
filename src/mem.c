#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SUBMITD_PLAIN_MALLOC

#include <jemalloc/jemalloc.h>

static unsigned arena;
static int arena_flags = MALLOCX_TCACHE_NONE; /* before mem_init: arena 0 */
static int have_arena;

int mem_init(long decay_ms, char *err, size_t errlen)
{
	char name[64];
	ssize_t decay = decay_ms;
	size_t sz = sizeof(arena);
	int r;

	if ((r = mallctl("arenas.create", &arena, &sz, NULL, 0)) != 0) {
		snprintf(err, errlen, "arenas.create: %s", strerror(r));
		return -1;
	}
	snprintf(name, sizeof(name), "arena.%u.dirty_decay_ms", arena);
	if ((r = mallctl(name, NULL, NULL, &decay, sizeof(decay))) != 0) {
		snprintf(err, errlen, "%s: %s", name, strerror(r));
		return -1;
	}
	decay = 0; /* muzzy pages: straight back to the OS */
	snprintf(name, sizeof(name), "arena.%u.muzzy_decay_ms", arena);
	if ((r = mallctl(name, NULL, NULL, &decay, sizeof(decay))) != 0) {
		snprintf(err, errlen, "%s: %s", name, strerror(r));
		return -1;
	}
	/* thread.arena is inherited across fork: set it in every worker. */
	if ((r = mallctl("thread.arena", NULL, NULL, &arena, sizeof(arena))) != 0) {
		snprintf(err, errlen, "thread.arena: %s", strerror(r));
		return -1;
	}
	arena_flags = (int)MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE;
	have_arena = 1;
	return 0;
}

void *mem_alloc(size_t n)
{
	return mallocx(n, arena_flags);
}

void *mem_realloc(void *p, size_t old, size_t n)
{
	(void)old;
	if (p == NULL)
		return mallocx(n, arena_flags);
	return rallocx(p, n, arena_flags);
}

void mem_free(void *p, size_t n)
{
	if (p != NULL)
		sdallocx(p, n, arena_flags);
}

static size_t arena_stat(const char *what)
{
	char name[96];
	size_t v = 0, sz = sizeof(v);

	snprintf(name, sizeof(name), "stats.arenas.%u.%s", arena, what);
	if (mallctl(name, &v, &sz, NULL, 0) != 0)
		return 0;
	return v;
}

size_t mem_allocated(void)
{
	uint64_t epoch = 1;
	size_t sz = sizeof(epoch);

	if (!have_arena)
		return 0;
	mallctl("epoch", &epoch, &sz, &epoch, sz);
	return arena_stat("small.allocated") + arena_stat("large.allocated");
}

void mem_purge(void)
{
	char name[64];

	if (!have_arena)
		return;
	snprintf(name, sizeof(name), "arena.%u.purge", arena);
	mallctl(name, NULL, NULL, NULL, 0);
}

const char *mem_backend(void)
{
	return "jemalloc";
}

#else /* SUBMITD_PLAIN_MALLOC */

static size_t allocated;

int mem_init(long decay_ms, char *err, size_t errlen)
{
	(void)decay_ms;
	(void)err;
	(void)errlen;
	return 0;
}

void *mem_alloc(size_t n)
{
	void *p = malloc(n);
	if (p != NULL)
		allocated += n;
	return p;
}

void *mem_realloc(void *p, size_t old, size_t n)
{
	void *q = realloc(p, n);
	if (q != NULL)
		allocated = allocated - (p ? old : 0) + n;
	return q;
}

void mem_free(void *p, size_t n)
{
	if (p != NULL) {
		allocated -= n;
		free(p);
	}
}

size_t mem_allocated(void)
{
	return allocated;
}

void mem_purge(void)
{
}

const char *mem_backend(void)
{
	return "malloc";
}

#endif
