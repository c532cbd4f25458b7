/*
 * What the two NATS tools share (test/nats/nats-verify.c, bench/nats-ref.c):
 * the -s URL and -S STREAM options and the connection to JetStream. Errors
 * go to stderr, prefixed with the tool's name; the tool picks its exit code.
 */
#ifndef SUBMITD_NATSTOOL_H
#define SUBMITD_NATSTOOL_H

#include <nats/nats.h>

struct natstool {
	const char *prog;   /* for messages */
	const char *url;    /* -s, or the tool's default */
	const char *stream; /* -S, or the tool's default (NULL: none) */
	natsConnection *nc;
	jsCtx *js;
};

/* Take getopt's opt and arg if they are -s or -S: 1, or 0 for any other option. */
int natstool_opt(struct natstool *t, int opt, const char *arg);
/* Connect to t->url and open a JetStream context with jo (NULL: the defaults). 0 or -1. */
int natstool_connect(struct natstool *t, jsOptions *jo);
void natstool_close(struct natstool *t);

#endif
