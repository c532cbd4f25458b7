/*
 * The transport seam, as Redis's ConnectionType: how a connection's bytes
 * cross the socket. conn.c reads, writes and ends its output through these
 * operations only, so the ack gating, the spool and the backpressure rules
 * are the same code for plain TCP and for TLS (tls.c). Each operation keeps
 * the system calls' contract: read and write return what read(2) and
 * write(2) would, -1 with errno EAGAIN when the socket (or TLS) must wait.
 */
#ifndef SUBMITD_TRANSPORT_H
#define SUBMITD_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct transport;

struct transport_ops {
	ssize_t (*read)(struct transport *t, void *buf, size_t len);
	ssize_t (*write)(struct transport *t, const void *buf, size_t len);
	/* The end of the output: FIN (TLS: close_notify first). 0, or -1 with errno. */
	int (*shutdown)(struct transport *t);
	/* Input taken from the socket, not yet returned by read: epoll cannot see it. */
	int (*pending)(const struct transport *t);
	/* Frees what the transport holds; the descriptor is the caller's to close. */
	void (*close)(struct transport *t);
};

/* Flags of struct transport. */
#define TRANSPORT_DEAD	  0x01 /* TLS failed: no close_notify may follow */
#define TRANSPORT_PEEKED  0x02 /* TLS: the first byte was looked at */
#define TRANSPORT_OPEN	  0x04 /* TLS: the handshake completed */
#define TRANSPORT_TLS13	  0x08 /* TLS: the version agreed is 1.3 */
#define TRANSPORT_RESUMED 0x10 /* TLS: the session was resumed */

struct transport {
	const struct transport_ops *ops;
	void *tls; /* the TLS session (tls.c); NULL on plain TCP */
	int fd;
	uint8_t flags;
};

extern const struct transport_ops transport_plain;

static inline void transport_init(struct transport *t, int fd)
{
	t->ops = &transport_plain;
	t->tls = NULL;
	t->fd = fd;
	t->flags = 0;
}

static inline ssize_t transport_read(struct transport *t, void *buf, size_t len)
{
	return t->ops->read(t, buf, len);
}

static inline ssize_t transport_write(struct transport *t, const void *buf, size_t len)
{
	return t->ops->write(t, buf, len);
}

static inline int transport_shutdown(struct transport *t)
{
	return t->ops->shutdown(t);
}

static inline int transport_pending(const struct transport *t)
{
	return t->ops->pending(t);
}

static inline void transport_close(struct transport *t)
{
	t->ops->close(t);
}

#endif
