/*
 * One client connection: read, decode, ack, flush, close. The byte-level
 * part (conn_process) touches no socket, so it can be driven by tests and
 * fuzzers; the worker owns the epoll registration.
 */
#ifndef SUBMITD_CONN_H
#define SUBMITD_CONN_H

#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "proxy.h"
#include "stats.h"
#include "transport.h"

enum conn_state {
	CONN_ACTIVE,	/* reading requests and writing their acks */
	CONN_FLUSHING,	/* reads no more: writes the acks it owes, then closes */
	CONN_LINGERING, /* acks written and FIN sent: discards input until the peer closes */
	CONN_CLOSED,	/* done: the worker frees it after the current loop round */
};

enum conn_reason {
	CONN_R_CLIENT,
	CONN_R_IDLE,
	CONN_R_PROTOCOL,
	CONN_R_LIMIT,
	CONN_R_SHUTDOWN,
	CONN_R_ERROR,
	CONN_R_SEND_TIMEOUT,
	CONN_R_HANDSHAKE, /* TLS: closed before its handshake completed */
	CONN_R_PROXY,	  /* closed for its PROXY header (or its absence) */
	CONN_R_AUTH,	  /* not authenticated: after a result 3, or at auth_timeout */
	CONN_R_LIMIT_IP,  /* over max_connections_per_ip */
};

/* conn.auth_fail: why a connection was refused with result 3 (for the log). */
enum conn_auth_fail {
	CONN_AUTH_OK,
	CONN_AUTH_NO_CONN,
	CONN_AUTH_BAD_TOKEN,
	CONN_AUTH_NO_IDENTITY,
	CONN_AUTH_TIMEOUT, /* the worker's: no Conn within auth_timeout */
};

/* conn.hs: what the connection does before its first frame (worker.c). */
#define CONN_HS_PROXY 1 /* waits for a PROXY header: c->proxy holds its first bytes */
#define CONN_HS_TLS   2 /* the TLS handshake is not done */

/* A PROXY header's bytes so far, while it is incomplete. */
struct conn_proxy {
	uint16_t have;
	uint8_t buf[PROXY_MAX];
};

struct conn;

/*
 * A Submit decoded this round, to be stored before its ack may leave. The
 * pointers point into the connection's input buffer: they stay valid until
 * the batch is written, because the worker neither reads into nor releases
 * an input buffer before the round's batch went out (worker.c).
 */
struct conn_rec {
	struct conn *c;
	const uint8_t *id;	/* PROTO_ID_LEN bytes */
	const uint8_t *payload; /* len bytes */
	uint32_t len;
};

/*
 * The round's Submits (spool on), filled by conn_process. The batch's
 * owner (spoolw) writes them at the end of the round, and when the batch
 * is full: then conn_process calls full(b), which must write or fail
 * every record and set b->n to 0. The one call from conn into a module
 * above it, through this interface, as PgBouncer's sbuf_init() takes its
 * protocol callback. Connections with acks held this round are on
 * touched, for ackq.
 */
struct conn_batch;
typedef void conn_batch_full_fn(struct conn_batch *b);
struct conn_batch {
	struct conn_rec *rec; /* cap entries, allocated once */
	uint32_t n, cap;
	struct conn *touched;
	conn_batch_full_fn *full;
};

static inline void conn_batch_init(struct conn_batch *b, struct conn_rec *rec, uint32_t cap,
				   conn_batch_full_fn *full)
{
	b->rec = rec;
	b->n = 0;
	b->cap = cap;
	b->touched = NULL;
	b->full = full;
}

/* Per-worker settings and state shared by its connections. */
struct conn_ctx {
	uint32_t max_frame;
	uint32_t read_size;
	uint32_t max_output;
	struct stats_slot *stats;	  /* this worker's slot */
	const struct auth_tokens *tokens; /* auth = token or certificate_or_token */
	struct conn_batch *batch;	  /* NULL: no spool, acks leave at once with result 0 */
	/*
	 * rate_limit (NULL: off): Submits per client over all workers, by
	 * identity or else by address. A connection takes rl_chunk of its
	 * client's rate at a time (one compare-and-swap in shared memory for
	 * that many Submits), one where fewer are left.
	 */
	struct ratelimit *rl;
	uint64_t rl_interval_ns, rl_burst;
	uint32_t rl_chunk;
	uint64_t now_ns; /* CLOCK_MONOTONIC at the round's start */
};

/*
 * ack_after = stream: a run of held acks that waits until the stream has
 * the spool up to (ns, off) of this worker (ns = 0: releasable at once,
 * behind the runs before it).
 */
#define CONN_MARKS 8
struct conn_mark {
	uint64_t ns, off;
	uint32_t bytes;
};

/* A connection's acks while the spool is on (ackq.h owns them). */
struct conn_acks {
	/*
	 * The last held bytes of out are acks whose records are not stored
	 * yet; only what is before them may be written.
	 */
	uint32_t held;
	uint8_t touched; /* on the batch's touched list */
	uint8_t mhead, mn;
	/*
	 * ack_after = stream: the first owed bytes of the held acks wait for
	 * the stream, in runs (marks, oldest first). A full ring merges the
	 * two oldest runs: released together, later, never early.
	 */
	uint32_t owed;
	struct conn_mark marks[CONN_MARKS];
	struct conn *owing_next, *owing_prev; /* the worker's list of connections that owe */
	struct conn *next_touched;
};

struct conn {
	int fd;
	uint8_t hs;	 /* CONN_HS_*: before the first frame (worker.c) */
	uint8_t again;	 /* on the worker's list to read again: TLS holds input epoll cannot see */
	uint8_t state;	 /* enum conn_state: change it with conn_set_state() */
	uint8_t reason;	 /* enum conn_reason, once state > CONN_ACTIVE */
	uint8_t pending; /* on the worker's write list this round */
	uint8_t eof;	 /* the peer half-closed */
	uint32_t events; /* what epoll watches now */
	uint64_t last_frame_ms;
	/* Acks owed: the last write progress (or the start of the wait), for send_timeout. */
	uint64_t send_ms;
	uint32_t outq;	      /* bytes the kernel held for the peer at the last look, 0: none */
	uint64_t deadline_ms; /* lingering: when to give up on the peer's FIN */
	uint32_t lingered;    /* bytes discarded while lingering */
	uint8_t has_conn_id;
	/*
	 * auth: 1 until the connection authenticated; then its first frame
	 * is a Conn with a token, or it is refused (result 3). no_identity:
	 * its certificate had none, so it is refused whatever it sends.
	 */
	uint8_t auth_need;
	uint8_t auth_fail; /* enum conn_auth_fail, once refused */
	uint8_t auth_no_identity;
	int32_t ip_slot;      /* its entry in the per-address table + 1; 0: not counted */
	int32_t rl_slot;      /* its client's entry in the rate table + 1; 0: not looked up */
	uint32_t rl_credit;   /* Submits of its client's rate taken and not used yet */
	uint8_t rl_over;      /* a Submit was refused for the rate: the worker logs, clears */
	uint64_t rl_key;      /* its client's key there; 0: not computed yet */
	const char *identity; /* who it authenticated as: the tokens file's, or identity_buf */
	uint8_t identity_len; /* its length; 0 with no identity */
	char *identity_buf;   /* a certificate's identity, allocated (worker.c) */
	uint16_t port;	      /* the peer's, for the records */
	uint8_t addr[16];     /* the peer's, IPv6 or IPv4-mapped */
	uint8_t conn_id[8];   /* the last Conn id seen */
	uint64_t seq;	      /* the connection's number in this worker, from 1 */
	struct conn_acks acks;
	struct transport tr; /* plain TCP or TLS: every byte of the client's goes through it */
	uint64_t hs_us;	     /* TLS: when the handshake began, CLOCK_MONOTONIC us */
	uint64_t read_round; /* the worker's round of the last read */
	struct conn *next_again;
	struct conn_proxy *proxy; /* CONN_HS_PROXY: the header so far */
	struct buf in;
	struct buf out;
	/*
	 * The worker's lists: to settle this round, and to free after it. Two
	 * links, because a connection on the first can be closed before the
	 * round ends.
	 */
	struct conn *next_pending;
	struct conn *next_dead;
};

void conn_init(struct conn *c, int fd, uint64_t now_ms);
void conn_set_state(struct conn *c, enum conn_state s, enum conn_reason why);

/*
 * Decode every complete frame in c->in and append its ack to c->out. On a
 * protocol error the connection goes to CONN_FLUSHING (reason protocol)
 * and the rest of the input is dropped. Returns the number of requests
 * decoded, or -1 if the output buffer could not grow.
 */
int conn_process(struct conn *c, const struct conn_ctx *x);

enum conn_read_result {
	CONN_READ_OK,	 /* bytes arrived (in c->in, or counted in c->lingered) */
	CONN_READ_EOF,	 /* the peer half-closed */
	CONN_READ_AGAIN, /* nothing to read now (EAGAIN, EINTR) */
	CONN_READ_NOMEM, /* c->in could not grow; nothing was read */
	CONN_READ_ERROR, /* the socket failed: errno says why */
};

/* One read from the socket into c->in (while lingering, into nowhere). */
enum conn_read_result conn_read(struct conn *c, const struct conn_ctx *x);

/* Write as much of c->out as the transport takes. 0, or -1 with errno (not EAGAIN). */
int conn_write(struct conn *c, const struct conn_ctx *x);

/* Reading is allowed: active, and the peer reads its acks (backpressure). */
static inline int conn_wants_read(const struct conn *c, const struct conn_ctx *x)
{
	return (c->state == CONN_ACTIVE && !c->eof && buf_len(&c->out) < x->max_output) ||
	       c->state == CONN_LINGERING;
}

/* Acks that may be written now. */
static inline size_t conn_writable(const struct conn *c)
{
	return buf_len(&c->out) - c->acks.held;
}

/* At a frame boundary with nothing owed: it can be closed without losing an ack. */
static inline int conn_is_idle(const struct conn *c)
{
	return buf_len(&c->in) == 0 && buf_len(&c->out) == 0;
}

#endif
