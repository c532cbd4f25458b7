/*
 * The master's listening sockets (docs/DESIGN.md, "Spreading connections
 * over workers"): bound once and kept for the master's life, shared by every
 * worker. A change of `listen` keeps the sockets of the addresses that stay,
 * binds the new ones, and sets the others aside until the new generation
 * serves (listen_close_retiring).
 */
#ifndef SUBMITD_LISTEN_H
#define SUBMITD_LISTEN_H

#include "conf.h"

/*
 * Make the set match c's addresses. -1 (logged, nothing changed) if a bind
 * fails, or if more sockets would wait to close than the set holds; gen
 * (the generation whose readiness closes them) is for that message.
 */
int listen_apply(const struct conf *c, unsigned gen);
/* The sockets a worker watches, at most max of them, and which are tls://: their number. */
int listen_fds(int *fds, uint8_t *tls, int max);
/* Append the sockets waiting to close, which a child must not keep, as metrics_forget does. */
void listen_forget(int *fds, int *nfds, int max);
/* The new generation serves: close the sockets set aside. */
void listen_close_retiring(void);
/* Stopping: close every socket, and end listening for the workers' copies too. */
void listen_stop(void);

#endif
