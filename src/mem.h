/*
 * The worker's memory: its own jemalloc arena. The only module that knows
 * jemalloc. Built with -DSUBMITD_PLAIN_MALLOC (sanitizer builds) it is a
 * shim over malloc with the same accounting.
 */
#ifndef SUBMITD_MEM_H
#define SUBMITD_MEM_H

#include <stddef.h>

/*
 * Create this process's arena (call after fork) and make it the default
 * for plain malloc too. decay_ms: how long freed dirty pages stay before
 * going back to the OS. Returns -1 and fills err on failure.
 */
int mem_init(long decay_ms, char *err, size_t errlen);

/* Sized allocation from the arena; mem_free must get the same size. */
void *mem_alloc(size_t n) __attribute__((warn_unused_result, malloc));
void *mem_realloc(void *p, size_t old, size_t n) __attribute__((warn_unused_result));
void mem_free(void *p, size_t n);

/* Bytes currently allocated from this process's arena (exact, no tcache). */
size_t mem_allocated(void);
/* Return unused dirty pages to the OS now. */
void mem_purge(void);
/* "jemalloc" or "malloc". */
const char *mem_backend(void);

#endif
