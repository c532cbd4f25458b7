/*
 * One engine thread: connects its share of the connections, waits twice on
 * run->barrier (connected; the times are set), sends and verifies until the
 * run ends, fills t->res and sets t->finished last.
 */
#ifndef SUBMIT_BENCH_ENGINE_H
#define SUBMIT_BENCH_ENGINE_H

#include "bench.h"

/*
 * The engine's settings of a TLS client context (write and read modes, the
 * session callback of --tls-resume); main sets up the rest before the threads start.
 */
void engine_tls_setup(struct ssl_ctx_st *ctx, int resume);

/* The pthread start routine; arg is the thread's struct bench_thread. */
void *engine_thread_main(void *arg);

#endif
