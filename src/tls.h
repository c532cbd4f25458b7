/*
 * TLS on the tls:// listeners, with OpenSSL 3: the server context (loaded
 * by the master from the configuration, shared by a generation's workers),
 * the checks of `-t`, and a connection's handshake and transport (the
 * operations of transport.h). The only module that calls OpenSSL; it never
 * logs: errors come back as "FILE: reason" text.
 */
#ifndef SUBMITD_TLS_H
#define SUBMITD_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "transport.h"

struct tls_ctx;

/* A certificate that expires within this many days is warned about (start, reload, -t). */
#define TLS_WARN_DAYS 30

/*
 * The server context for c's tls_* options: certificate chain, key (which
 * must match), client CAs, verification, versions, ciphers, tickets (the
 * ticket keys are new with every context). NULL with "FILE: reason" in err.
 */
struct tls_ctx *tls_ctx_load(const struct conf *c, char *err, size_t errlen);
void tls_ctx_free(struct tls_ctx *x);
/* The serving certificate's notAfter, Unix seconds. */
int64_t tls_ctx_expiry(const struct tls_ctx *x);

/*
 * What `-t` adds to loading: the files readable by c's user (when the
 * master runs as root and user is set), and the certificate's expiry
 * within warn_days. 0 fine, 1 a warning in err, -1 an error in err.
 */
int tls_check(const struct conf *c, const struct tls_ctx *x, int warn_days, char *err,
	      size_t errlen);

/* A new server session on t's descriptor; t's operations become TLS's. -1 out of memory. */
int tls_accept(struct tls_ctx *x, struct transport *t);

enum tls_step {
	TLS_DONE,	/* the handshake completed */
	TLS_WANT_READ,	/* call again when the socket is readable */
	TLS_WANT_WRITE, /* call again when the socket is writable */
	TLS_FAILED,	/* the connection is lost: why says how */
};

/* How a handshake failed, for the counters (docs/METRICS.md). */
enum tls_failure {
	TLS_F_TIMEOUT, /* the worker's, never tls_handshake's */
	TLS_F_NOT_TLS,
	TLS_F_NO_CERTIFICATE,
	TLS_F_BAD_CERTIFICATE,
	TLS_F_PROTOCOL,
	TLS_F_CLOSED,
};

/*
 * One step of t's handshake. On TLS_DONE the version and resumption are in
 * t->flags; on TLS_FAILED *why says how, and detail (may be NULL) the
 * library's reason.
 */
enum tls_step tls_handshake(struct transport *t, enum tls_failure *why, char *detail, size_t len);

/*
 * The identity in the verified client certificate of t's finished
 * handshake, as which (enum conf_identity) says: the subject's CN, or the
 * first SAN of that kind. Copied into buf (NUL-terminated) if it is a valid
 * identity (auth_identity_ok); returns its length, or 0 without a verified
 * certificate or such an identity.
 */
size_t tls_peer_identity(const struct transport *t, int which, char *buf, size_t len);

#endif
