/*
 * One thread's share of the connections: an edge-triggered epoll loop that
 * connects, fills each connection's output buffer with as many requests as
 * its window allows, writes it in one call, and verifies every ack.
 *
 * With --tls a connection goes through a non-blocking TLS handshake first
 * and then reads and writes through its SSL; the plaintext path stays a
 * direct read() and send() (one test of c->ssl per call).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "buf.h"
#include "engine.h"
#include "proto.h"
#include "report.h"

#define MAX_CONNECTING	128	   /* connects in flight: stay under the server's backlog */
#define FILL_BYTES	32768	   /* bytes of requests queued per connection per write */
#define ROUNDS_PER_WAKE 4	   /* fill+write rounds for one connection before the next */
#define RING_MAX	(1u << 20) /* in-flight cap with an unbounded window */
#define RING_START	1024
#define MAX_EVENTS	512
#define TICK_NS		10000000ull /* longest sleep: how fast the loop sees the clock */
#define ACK_LOG_BUF	65536	    /* --ack-log bytes buffered per thread before a write */
#define ACK_LOG_LINE	48	    /* longest line: "%d %16x %u\n" */

enum bconn_state {
	BC_NEW,	       /* not connected yet */
	BC_CONNECTING, /* non-blocking connect in progress */
	BC_HANDSHAKE,  /* --tls: connected, TLS handshake in progress */
	BC_READY,      /* connected, nothing sent yet (a Conn goes first if asked) */
	BC_CONNACK,    /* Conn sent; no Submit before its ConnAck */
	BC_RUN,	       /* streaming Submits */
	BC_DEAD,       /* closed after an error, never reopened */
};

struct bconn {
	int fd;
	int idx; /* global slot number: picks the source address and the random sizes */
	int num; /* connection number in messages and the ack log; new on reconnect */
	uint8_t state;
	uint8_t writable;	  /* last write did not hit EAGAIN */
	uint8_t queued;		  /* on the work list */
	uint8_t conn_inflight;	  /* the oldest unacked request is the Conn */
	uint8_t hs_sent;	  /* --handshakes: this connection's Submit is queued */
	uint8_t hs_reserved;	  /* --handshakes -n: holds one of the budget, not queued yet */
	uint8_t tls_rd_wants_out; /* SSL_read wants the socket writable first */
	uint8_t tls_wr_wants_in;  /* SSL_write wants the socket readable first */
	SSL *ssl;	   /* --tls: this connection's; NULL until connected, and plaintext */
	SSL_SESSION *sess; /* --tls-resume: the slot's latest session, kept across connections */
	uint64_t t_start;  /* when this connection's connect began (--handshakes' latency) */
	struct buf in;
	struct buf out;
	uint8_t next_id[PROTO_ID_LEN]; /* 8 ASCII digits, the id of the next request */
	uint8_t ack_id[PROTO_ID_LEN];  /* the id the next ack must carry */
	/* Send (or, open loop, scheduled) time of each unacked request, oldest at head. */
	uint64_t *ring;
	uint32_t ring_cap; /* power of two */
	uint32_t ring_head;
	uint32_t inflight;
	uint32_t rng;
	uint64_t due;	   /* open loop: scheduled, not sent yet */
	uint64_t due_g;	   /* sequence number of the oldest of them */
	uint64_t retry_at; /* --retry: when to connect again (state BC_NEW) */
};

struct engine {
	struct bench_thread *t;
	const struct bench_opts *o;
	const struct bench_times *tm;
	int ep;
	struct bconn *c;
	int nconns;
	int next_connect;
	int connecting;
	int alive;
	struct bconn **work, **next_work;
	int nwork, nnext;
	uint64_t now;
	uint64_t end;	   /* times->end, or earlier after SIGINT */
	int started;	   /* past the start barrier */
	int sending;	   /* new requests may be generated */
	int nmode;	   /* -n: stop after a count */
	uint64_t budget;   /* -n: requests left to generate (closed loop) or schedule (open) */
	uint64_t inflight; /* over all connections */
	uint64_t due;	   /* open loop: scheduled, not sent, over all connections */
	uint64_t deadline;
	int open_loop;
	double period; /* open loop: ns between two requests of this thread */
	uint64_t g_next;
	uint64_t round_max_lat;
	uint64_t last_ack;
	struct hist *ival; /* --csv: this second's latencies */
	uint64_t ival_tick;
	char *ack_log; /* --ack-log: lines not written yet */
	size_t ack_log_len;
	uint64_t ack_log_errors; /* only the first is reported */
	int retrying;		 /* --retry: connections waiting in BC_NEW for their retry_at */
	uint64_t hs_reserved;	 /* --handshakes -n: budget taken by connections not sending yet */
};

static void id_inc(uint8_t id[PROTO_ID_LEN])
{
	for (int i = PROTO_ID_LEN - 1; i >= 0; i--) {
		if (id[i] != '9') {
			id[i]++;
			return;
		}
		id[i] = '0';
	}
}

/* An id for a message: printable bytes as they are, others as \xNN. */
static const char *id_str(const uint8_t *id, char out[40])
{
	char *p = out;

	*p++ = '"';
	for (int i = 0; i < PROTO_ID_LEN; i++) {
		if (id[i] >= 0x20 && id[i] < 0x7f && id[i] != '"' && id[i] != '\\')
			*p++ = (char)id[i];
		else
			p += sprintf(p, "\\x%02x", id[i]);
	}
	*p++ = '"';
	*p = '\0';
	return out;
}

/* Connected and not closed: counted in pub.open, may send. */
static int bconn_is_open(const struct bconn *c)
{
	return c->state >= BC_READY && c->state <= BC_RUN;
}

static void work_add(struct engine *e, struct bconn *c)
{
	if (c->queued)
		return;
	c->queued = 1;
	e->work[e->nwork++] = c;
}

static void bconn_close(struct engine *e, struct bconn *c)
{
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
		c->tls_rd_wants_out = c->tls_wr_wants_in = 0;
		/* a failed call's errors would confuse the thread's next SSL_get_error */
		ERR_clear_error();
	}
	if (c->hs_reserved) {
		c->hs_reserved = 0;
		e->hs_reserved--;
	}
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
	if (c->state == BC_CONNECTING || c->state == BC_HANDSHAKE)
		e->connecting--;
	else if (bconn_is_open(c))
		__atomic_store_n(&e->t->pub.open, e->t->pub.open - 1, __ATOMIC_RELAXED);
	e->inflight -= c->inflight;
	c->inflight = 0;
	c->ring_head = 0;
	c->conn_inflight = 0;
	buf_free(&c->in);
	buf_free(&c->out);
}

static void bconn_kill(struct engine *e, struct bconn *c)
{
	bconn_close(e, c);
	e->due -= c->due;
	c->due = 0;
	c->state = BC_DEAD;
	e->alive--;
}

static void bconn_fail(struct engine *e, struct bconn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An error that ends the connection: count it, say which, close. */
static void bconn_fail(struct engine *e, struct bconn *c, const char *fmt, ...)
{
	char msg[256], id[40];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->inflight > 0)
		report_error("connection %d: %s (%u requests unacked, next id %s)", c->num, msg,
			     c->inflight, id_str(c->ack_id, id));
	else
		report_error("connection %d: %s", c->num, msg);
	e->t->res.errors++;
	bconn_kill(e, c);
}

/*
 * --retry: a reconnection that failed to connect (the server is restarting)
 * is tried again after a while instead of ending the connection.
 */
static int retry_later(struct engine *e, struct bconn *c)
{
	if (!e->o->reconnect || e->o->retry_ns == 0 || !e->started || !e->sending)
		return 0;
	bconn_close(e, c);
	c->state = BC_NEW;
	c->retry_at = e->now + e->o->retry_ns;
	e->retrying++;
	e->t->res.connect_retries++;
	return 1;
}

static void bconn_start(struct engine *e, struct bconn *c)
{
	const struct bench_opts *o = e->o;
	const struct net_addr *src = o->nsrc > 0 ? &o->src[c->idx % o->nsrc] : NULL;
	struct epoll_event ev;
	char err[192];
	int fd;

	fd = net_connect(&o->dst, src, err, sizeof(err));
	if (fd == -1) {
		if (retry_later(e, c))
			return;
		e->t->res.connect_errors++;
		bconn_fail(e, c, "%s", err);
		return;
	}
	c->fd = fd;
	c->state = BC_CONNECTING;
	c->t_start = e->now;
	e->connecting++;
	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	ev.data.ptr = c;
	if (epoll_ctl(e->ep, EPOLL_CTL_ADD, fd, &ev) == -1)
		bconn_fail(e, c, "epoll_ctl: %s", strerror(errno));
}

/* Connected, and past the TLS handshake if any: it may send. */
static void bconn_ready(struct engine *e, struct bconn *c)
{
	e->connecting--;
	c->state = BC_READY;
	c->writable = 1;
	__atomic_store_n(&e->t->pub.open, e->t->pub.open + 1, __ATOMIC_RELAXED);
	work_add(e, c);
}

/* Count a TLS handshake, or a --handshakes connect without TLS. */
static void handshake_done(struct engine *e, struct bconn *c)
{
	struct bench_result *res = &e->t->res;

	res->handshakes++;
	if (e->now >= e->tm->warm_end && e->now <= e->end)
		res->handshakes_window++;
	if (c->ssl != NULL) {
		if (SSL_session_reused(c->ssl))
			res->resumed++;
		res->tls_version = SSL_get_version(c->ssl);
		res->tls_cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(c->ssl));
	}
}

/* What the last TLS call of this connection failed on, for an error line; clears the queue. */
static const char *tls_reason(struct engine *e, struct bconn *c, int err, char *out, size_t n)
{
	unsigned long code = ERR_peek_last_error();
	long v = e->o->tls_verify && c->ssl != NULL ? SSL_get_verify_result(c->ssl) : X509_V_OK;
	const char *r;

	if (v != X509_V_OK) {
		snprintf(out, n, "certificate verify failed: %s", X509_verify_cert_error_string(v));
	} else if (code != 0) {
		if ((r = ERR_reason_error_string(code)) != NULL)
			snprintf(out, n, "%s", r);
		else
			ERR_error_string_n(code, out, n);
	} else if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && errno == 0)) {
		snprintf(out, n, "closed by the server");
	} else if (err == SSL_ERROR_SYSCALL) {
		snprintf(out, n, "%s", strerror(errno));
	} else {
		snprintf(out, n, "SSL error %d", err);
	}
	ERR_clear_error();
	return out;
}

static void tls_read(struct engine *e, struct bconn *c);

/* Go on with the handshake; once it is done the connection may send. */
static void tls_handshake(struct engine *e, struct bconn *c)
{
	char why[256];
	int r, err;

	if ((r = SSL_do_handshake(c->ssl)) == 1) {
		handshake_done(e, c);
		bconn_ready(e, c);
		/* read_ahead may hold the server's first records, which raise no edge */
		tls_read(e, c);
		return;
	}
	err = SSL_get_error(c->ssl, r);
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
		return; /* both are watched, edge-triggered: the next edge brings us back */
	if (retry_later(e, c))
		return;
	e->t->res.connect_errors++;
	bconn_fail(e, c, "TLS handshake with %s: %s", e->o->dst_name,
		   tls_reason(e, c, err, why, sizeof(why)));
}

/* A TCP connection is up: start its TLS handshake, resuming the slot's session if asked. */
static void tls_start(struct engine *e, struct bconn *c)
{
	const struct bench_opts *o = e->o;

	c->state = BC_HANDSHAKE;
	if ((c->ssl = SSL_new(o->tls)) == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
	    (o->tls_servername != NULL &&
	     SSL_set_tlsext_host_name(c->ssl, o->tls_servername) != 1) ||
	    (c->sess != NULL && SSL_set_session(c->ssl, c->sess) != 1)) {
		char why[256];

		bconn_fail(e, c, "TLS: %s", tls_reason(e, c, SSL_ERROR_SSL, why, sizeof(why)));
		return;
	}
	SSL_set_app_data(c->ssl, c);
	SSL_set_connect_state(c->ssl);
	tls_handshake(e, c);
}

static void bconn_connected(struct engine *e, struct bconn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err == EINPROGRESS || err == EALREADY)
		return;
	if (err != 0) {
		if (retry_later(e, c))
			return;
		e->t->res.connect_errors++;
		bconn_fail(e, c, "connect %s: %s", e->o->dst_name, strerror(err));
		return;
	}
	net_set_nodelay(c->fd);
	if (e->o->tls != NULL) {
		tls_start(e, c);
		return;
	}
	if (e->o->handshakes)
		handshake_done(e, c);
	bconn_ready(e, c);
}

static int ring_grow(struct bconn *c, uint32_t want)
{
	uint32_t cap = c->ring_cap ? c->ring_cap : 1;
	uint64_t *r;

	while (cap < want)
		cap *= 2;
	if ((r = malloc(cap * sizeof(*r))) == NULL)
		return -1;
	/* Unwrap the old contents so the head is at 0. */
	for (uint32_t i = 0; i < c->inflight; i++)
		r[i] = c->ring[(c->ring_head + i) & (c->ring_cap - 1)];
	free(c->ring);
	c->ring = r;
	c->ring_cap = cap;
	c->ring_head = 0;
	return 0;
}

static uint64_t sched_time(const struct engine *e, uint64_t g)
{
	return e->tm->t0 + (uint64_t)((double)g * e->period);
}

static uint32_t pick_size(const struct bench_opts *o, struct bconn *c)
{
	if (o->size_min == o->size_max)
		return o->size_min;
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 17;
	c->rng ^= c->rng << 5;
	return o->size_min + c->rng % (o->size_max - o->size_min + 1);
}

/*
 * --tag-payload: the payload starts with "<conn>:<id>:<size>:" so that a
 * checker can tell which connection sent a stored record and predict every
 * byte of it; the rest is the usual pattern. A shorter payload holds the
 * tag's first bytes.
 */
static void tag_payload(const struct bconn *c, uint8_t *p, uint32_t size)
{
	char tag[48];
	int n;

	n = snprintf(tag, sizeof(tag), "%d:%.8s:%u:", c->num, (const char *)c->next_id, size);
	memcpy(p, tag, (size_t)n < size ? (size_t)n : size);
}

/* Queue as many requests as the window, the schedule and the budget allow. */
static int bconn_fill(struct engine *e, struct bconn *c)
{
	const struct bench_opts *o = e->o;
	size_t limit = FILL_BYTES, n;
	uint64_t stamp = 0; /* set on every path that queues a request */
	uint32_t size;
	uint8_t cmd;

	while (buf_len(&c->out) < limit) {
		if (c->state == BC_READY) {
			if (!o->send_conn) {
				c->state = BC_RUN;
				continue;
			}
			cmd = PROTO_CONN;
			size = 0;
			stamp = e->now;
		} else if (c->state == BC_RUN) {
			if (!e->sending || o->idle)
				break;
			if (o->window > 0 && c->inflight >= o->window)
				break;
			if (e->open_loop) {
				if (c->due == 0)
					break;
			} else if (e->nmode && e->budget == 0 && !c->hs_reserved) {
				break;
			}
			if (c->hs_sent)
				break;
			cmd = PROTO_SUBMIT;
			size = pick_size(o, c);
		} else {
			break;
		}
		if (c->inflight == c->ring_cap) {
			if (c->ring_cap >= RING_MAX ||
			    ring_grow(c, c->ring_cap ? c->ring_cap * 2 : RING_START) == -1)
				break;
		}
		if (buf_reserve(&c->out, PROTO_MIN_REQUEST + (size_t)size + o->token_len) == -1) {
			bconn_fail(e, c, "out of memory");
			return -1;
		}
		n = proto_encode_request(buf_tail(&c->out), buf_space(&c->out), cmd, c->next_id,
					 cmd == PROTO_CONN && o->token ? o->token : o->payload,
					 cmd == PROTO_CONN && o->token ? o->token_len : size);
		if (o->tag_payload && cmd == PROTO_SUBMIT)
			tag_payload(c, buf_tail(&c->out) + PROTO_MIN_REQUEST, size);
		buf_commit(&c->out, n);
		if (cmd == PROTO_CONN) {
			c->conn_inflight = 1;
			c->state = BC_CONNACK;
		} else {
			if (e->open_loop) {
				stamp = sched_time(e, c->due_g);
				c->due--;
				e->due--;
				c->due_g += (uint64_t)e->nconns;
			} else {
				/* --handshakes: the latency of the whole connect, handshake, ack */
				stamp = o->handshakes ? c->t_start : e->now;
				c->hs_sent = (uint8_t)o->handshakes;
				if (c->hs_reserved) {
					c->hs_reserved = 0;
					e->hs_reserved--;
				} else if (e->nmode) {
					e->budget--;
				}
			}
			e->t->res.sent++;
			e->t->res.sent_bytes += n;
		}
		c->ring[(c->ring_head + c->inflight) & (c->ring_cap - 1)] = stamp;
		c->inflight++;
		e->inflight++;
		id_inc(c->next_id);
		if (size > limit)
			break;
	}
	return 0;
}

static void bconn_eof(struct engine *e, struct bconn *c);

/*
 * --retry: a reset (a server process killed) is reconnected as a close is,
 * and an ack it cut short is dropped (see bconn_eof).
 */
static int bconn_reset(struct engine *e, struct bconn *c, int err)
{
	if (!e->o->reconnect || e->o->retry_ns == 0 || (err != ECONNRESET && err != EPIPE))
		return 0;
	e->t->res.resets++;
	if (buf_len(&c->in) > 0) {
		e->t->res.cut_acks++;
		buf_consume(&c->in, buf_len(&c->in));
	}
	bconn_eof(e, c);
	return 1;
}

static int tls_flush(struct engine *e, struct bconn *c)
{
	char why[256];
	size_t len;
	int n, err;

	while ((len = buf_len(&c->out)) > 0 && c->writable) {
		/*
		 * A retry after WANT_WRITE passes at least the bytes of the first
		 * try, perhaps moved by a compaction (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
		 */
		n = SSL_write(c->ssl, buf_head(&c->out), len > INT_MAX ? INT_MAX : (int)len);
		if (n > 0) {
			buf_consume(&c->out, (size_t)n);
			continue;
		}
		err = SSL_get_error(c->ssl, n);
		if (err == SSL_ERROR_WANT_WRITE) {
			c->writable = 0;
		} else if (err == SSL_ERROR_WANT_READ) {
			c->writable = 0;
			c->tls_wr_wants_in = 1;
		} else {
			if (err != SSL_ERROR_SYSCALL || !bconn_reset(e, c, errno))
				bconn_fail(e, c, "write: TLS: %s",
					   tls_reason(e, c, err, why, sizeof(why)));
			return -1;
		}
	}
	return 0;
}

static int bconn_flush(struct engine *e, struct bconn *c)
{
	ssize_t n;
	size_t len;

	if (c->ssl != NULL)
		return tls_flush(e, c);
	while ((len = buf_len(&c->out)) > 0 && c->writable) {
		n = send(c->fd, buf_head(&c->out), len, MSG_NOSIGNAL);
		if (n > 0) {
			buf_consume(&c->out, (size_t)n);
			/* A short write means the socket is full: EPOLLOUT brings us back. */
			if ((size_t)n < len)
				c->writable = 0;
		} else if (errno == EAGAIN) {
			c->writable = 0;
		} else if (errno != EINTR) {
			if (!bconn_reset(e, c, errno))
				bconn_fail(e, c, "write: %s", strerror(errno));
			return -1;
		}
	}
	return 0;
}

static void bconn_work(struct engine *e, struct bconn *c)
{
	for (int i = 0; i < ROUNDS_PER_WAKE; i++) {
		if (!bconn_is_open(c))
			return;
		if (bconn_fill(e, c) == -1)
			return;
		if (buf_len(&c->out) == 0 || !c->writable)
			return;
		if (bconn_flush(e, c) == -1 || buf_len(&c->out) > 0)
			return;
	}
	/* Maybe more to send: after the others had their turn. */
	c->queued = 1;
	e->next_work[e->nnext++] = c;
}

/* Write the buffered --ack-log lines: one write of whole lines, so threads never interleave. */
static void ack_log_flush(struct engine *e)
{
	size_t off = 0;
	ssize_t n;

	while (off < e->ack_log_len) {
		n = write(e->o->ack_log_fd, e->ack_log + off, e->ack_log_len - off);
		if (n > 0) {
			off += (size_t)n;
		} else if (n == -1 && errno != EINTR) {
			if (e->ack_log_errors++ == 0)
				report_error("--ack-log: write: %s", strerror(errno));
			e->t->res.errors++;
			break;
		}
	}
	e->ack_log_len = 0;
}

/* One line per Submit ack: connection number, the id in hex as it was sent, the result. */
static void ack_log_add(struct engine *e, const struct bconn *c, const uint8_t *id, unsigned result)
{
	static const char hex[] = "0123456789abcdef";
	char *p;

	if (e->ack_log_len + ACK_LOG_LINE > ACK_LOG_BUF)
		ack_log_flush(e);
	p = e->ack_log + e->ack_log_len;
	p += sprintf(p, "%d ", c->num);
	for (int i = 0; i < PROTO_ID_LEN; i++) {
		*p++ = hex[id[i] >> 4];
		*p++ = hex[id[i] & 15];
	}
	p += sprintf(p, " %u\n", result);
	e->ack_log_len = (size_t)(p - e->ack_log);
}

/* Check one ack against what was sent. -1 if the connection was closed. */
static int ack_check(struct engine *e, struct bconn *c, const struct proto_frame *f)
{
	struct bench_thread *t = e->t;
	uint8_t want = c->conn_inflight ? PROTO_CONNACK : PROTO_SUBMITACK;
	char got_id[40], want_id[40];
	uint64_t stamp, lat;

	if (c->inflight == 0) {
		bconn_fail(e, c, "unexpected ack id %s, nothing in flight", id_str(f->id, got_id));
		return -1;
	}
	if (f->cmd != want) {
		bconn_fail(e, c, "ack id %s: command 0x%02x, expected 0x%02x",
			   id_str(f->id, got_id), f->cmd, want);
		return -1;
	}
	if (memcmp(f->id, c->ack_id, PROTO_ID_LEN) != 0) {
		bconn_fail(e, c, "ack id %s, expected %s", id_str(f->id, got_id),
			   id_str(c->ack_id, want_id));
		return -1;
	}
	if (f->cmd == PROTO_SUBMITACK) {
		t->res.results[f->result < BENCH_RES_OTHER ? f->result : BENCH_RES_OTHER]++;
		if (e->ack_log != NULL)
			ack_log_add(e, c, f->id, f->result);
	}
	if (f->result == BENCH_RES_NOT_STORED && f->cmd == PROTO_SUBMITACK && e->o->allow_refused) {
		/* Not stored, and the client may send it again: counted, not an error. */
	} else if (f->result != PROTO_RESULT_OK) {
		if (e->o->reconnect && f->result == PROTO_RESULT_REFUSED) {
			t->res.refused++;
		} else {
			report_error("connection %d: ack id %s: result %u%s", c->num,
				     id_str(f->id, got_id), f->result,
				     f->result == BENCH_RES_NOT_STORED ? " (not stored)" : "");
			t->res.errors++;
		}
	}
	stamp = c->ring[c->ring_head];
	c->ring_head = (c->ring_head + 1) & (c->ring_cap - 1);
	c->inflight--;
	e->inflight--;
	id_inc(c->ack_id);
	if (c->conn_inflight) {
		c->conn_inflight = 0;
		c->state = BC_RUN;
		t->res.conn_acked++;
		return 0;
	}
	t->res.acked++;
	e->last_ack = e->now;
	if (e->now >= e->tm->warm_end) {
		lat = e->now > stamp ? e->now - stamp : 0;
		hist_record(&t->res.hist, lat);
		if (e->ival != NULL)
			hist_record(e->ival, lat);
		if (lat > e->round_max_lat)
			e->round_max_lat = lat;
		if (e->now <= e->end)
			t->res.acked_window++;
	}
	return 0;
}

/* A clean close of a TLS connection sends close_notify first; never blocks. */
static void tls_goodbye(struct bconn *c)
{
	if (c->ssl != NULL && SSL_is_init_finished(c->ssl))
		SSL_shutdown(c->ssl);
}

/*
 * --handshakes: open the slot's next connection while sending lasts; with
 * -n it takes its request from the budget now, so that no more connections
 * are opened than requests are left.
 */
static void hs_start(struct engine *e, struct bconn *c)
{
	if (!e->sending || (e->nmode && e->budget == 0)) {
		bconn_kill(e, c);
		return;
	}
	if (e->nmode) {
		e->budget--;
		e->hs_reserved++;
		c->hs_reserved = 1;
	}
	bconn_start(e, c);
}

/*
 * --handshakes: the connection's Submit is acked: close it and open the
 * slot's next one (a new number, the ids going on), while sending lasts.
 */
static void bconn_cycle(struct engine *e, struct bconn *c)
{
	tls_goodbye(c);
	bconn_close(e, c);
	c->hs_sent = 0;
	c->state = BC_NEW;
	c->num = __atomic_fetch_add(&e->t->run->next_conn, 1, __ATOMIC_RELAXED);
	hs_start(e, c);
}

static int bconn_parse(struct engine *e, struct bconn *c)
{
	struct proto_frame f;
	int r, got = 0;

	while ((r = proto_decode_ack(buf_head(&c->in), buf_len(&c->in), &f)) == PROTO_OK) {
		if (ack_check(e, c, &f) == -1)
			return -1;
		buf_consume(&c->in, PROTO_ACK_LEN);
		got = 1;
	}
	if (r != PROTO_NEED_MORE) {
		const uint8_t *p = buf_head(&c->in);
		bconn_fail(e, c, "bad ack frame: total_len %u, command 0x%02x", proto_get_u32(p),
			   buf_len(&c->in) > 4 ? p[4] : 0);
		return -1;
	}
	if (e->o->handshakes && c->hs_sent && c->inflight == 0) {
		bconn_cycle(e, c);
		return -1;
	}
	if (got)
		work_add(e, c);
	return 0;
}

static void bconn_eof(struct engine *e, struct bconn *c)
{
	char id[40];

	/*
	 * --retry: a killed server process can leave an ack cut short before
	 * the close (its last write was short); it acknowledges nothing.
	 */
	if (e->o->reconnect && e->o->retry_ns > 0 && buf_len(&c->in) > 0) {
		e->t->res.cut_acks++;
		buf_consume(&c->in, buf_len(&c->in));
	}
	if (e->o->reconnect && buf_len(&c->in) == 0) {
		/*
		 * A close between two acks: what was in flight is lost, the ids
		 * go on where they were.
		 */
		e->t->res.lost += c->inflight;
		if (!e->sending) {
			bconn_kill(e, c);
			return;
		}
		e->t->res.reconnects++;
		bconn_close(e, c);
		memcpy(c->ack_id, c->next_id, PROTO_ID_LEN);
		c->num = __atomic_fetch_add(&e->t->run->next_conn, 1, __ATOMIC_RELAXED);
		c->state = BC_NEW;
		c->queued = 0;
		bconn_start(e, c);
		return;
	}
	if (buf_len(&c->in) > 0)
		bconn_fail(e, c, "closed by the server inside an ack frame");
	else if (c->inflight > 0)
		bconn_fail(e, c, "closed by the server before ack id %s", id_str(c->ack_id, id));
	else
		bconn_fail(e, c, "closed by the server");
}

static void bconn_read(struct engine *e, struct bconn *c, uint32_t events)
{
	ssize_t n;
	size_t want;

	for (;;) {
		if (buf_reserve(&c->in, 8192) == -1) {
			bconn_fail(e, c, "out of memory");
			return;
		}
		want = buf_space(&c->in);
		n = read(c->fd, buf_tail(&c->in), want);
		if (n > 0) {
			buf_commit(&c->in, (size_t)n);
			e->now = bench_now();
			if (bconn_parse(e, c) == -1)
				return;
			/*
			 * Edge-triggered: a short read drained the socket, unless
			 * the peer's FIN is queued behind the data, which raises no
			 * new edge: then read on to the end.
			 */
			if ((size_t)n < want && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
				return;
		} else if (n == 0) {
			bconn_eof(e, c);
			return;
		} else if (errno == EAGAIN) {
			return;
		} else if (errno != EINTR) {
			if (!bconn_reset(e, c, errno))
				bconn_fail(e, c, "read: %s", strerror(errno));
			return;
		}
	}
}

/*
 * Read and decrypt until OpenSSL needs the socket again: records it read
 * ahead and has not handed out yet raise no epoll edge.
 */
static void tls_read(struct engine *e, struct bconn *c)
{
	char why[256];
	int n, err;

	for (;;) {
		if (buf_reserve(&c->in, 16384) == -1) {
			bconn_fail(e, c, "out of memory");
			return;
		}
		n = SSL_read(c->ssl, buf_tail(&c->in),
			     buf_space(&c->in) > INT_MAX ? INT_MAX : (int)buf_space(&c->in));
		if (n > 0) {
			buf_commit(&c->in, (size_t)n);
			e->now = bench_now();
			if (bconn_parse(e, c) == -1)
				return;
			continue;
		}
		err = SSL_get_error(c->ssl, n);
		if (err == SSL_ERROR_WANT_READ) {
			return;
		} else if (err == SSL_ERROR_WANT_WRITE) {
			c->tls_rd_wants_out = 1;
			return;
		} else if (err == SSL_ERROR_ZERO_RETURN) {
			/*
			 * close_notify, or a FIN (SSL_OP_IGNORE_UNEXPECTED_EOF). Our
			 * close_notify back keeps the session resumable: SSL_free
			 * without one marks it not_resumable, and --tls-resume holds it.
			 */
			tls_goodbye(c);
			bconn_eof(e, c);
			return;
		}
		if (err != SSL_ERROR_SYSCALL || !bconn_reset(e, c, errno))
			bconn_fail(e, c, "read: TLS: %s", tls_reason(e, c, err, why, sizeof(why)));
		return;
	}
}

static void tls_event(struct engine *e, struct bconn *c, uint32_t events)
{
	if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ||
	    (c->tls_rd_wants_out && (events & EPOLLOUT))) {
		c->tls_rd_wants_out = 0;
		tls_read(e, c);
	}
	if (bconn_is_open(c) &&
	    ((events & EPOLLOUT) || (c->tls_wr_wants_in && (events & EPOLLIN)))) {
		c->tls_wr_wants_in = 0;
		c->writable = 1;
		work_add(e, c);
	}
}

static void handle_event(struct engine *e, struct bconn *c, uint32_t events)
{
	if (c->state == BC_DEAD || c->state == BC_NEW)
		return;
	if (c->state == BC_CONNECTING) {
		bconn_connected(e, c);
		if (c->state != BC_READY || c->ssl != NULL)
			return;
	} else if (c->state == BC_HANDSHAKE) {
		tls_handshake(e, c);
		return;
	}
	if (c->ssl != NULL) {
		tls_event(e, c, events);
		return;
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		bconn_read(e, c, events);
	if (bconn_is_open(c) && (events & EPOLLOUT)) {
		c->writable = 1;
		work_add(e, c);
	}
}

/* Open loop: hand every request whose time has come to its connection. */
static void schedule(struct engine *e)
{
	struct bconn *c;

	while (e->sending && (!e->nmode || e->budget > 0)) {
		if (sched_time(e, e->g_next) > e->now)
			break;
		c = &e->c[e->g_next % (uint64_t)e->nconns];
		if (c->state != BC_DEAD) {
			if (c->due++ == 0)
				c->due_g = e->g_next;
			e->due++;
			work_add(e, c);
		}
		e->g_next++;
		if (e->nmode)
			e->budget--;
	}
}

static void publish(struct engine *e)
{
	struct bench_thread *t = e->t;
	uint64_t cur;

	__atomic_store_n(&t->pub.sent, t->res.sent, __ATOMIC_RELAXED);
	__atomic_store_n(&t->pub.acked, t->res.acked, __ATOMIC_RELAXED);
	__atomic_store_n(&t->pub.errors, t->res.errors, __ATOMIC_RELAXED);
	cur = __atomic_load_n(&t->pub.max_lat, __ATOMIC_RELAXED);
	while (e->round_max_lat > cur &&
	       !__atomic_compare_exchange_n(&t->pub.max_lat, &cur, e->round_max_lat, 1,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	e->round_max_lat = 0;
	if (e->ival != NULL) {
		uint64_t tick = __atomic_load_n(&t->run->csv_tick, __ATOMIC_ACQUIRE);
		if (tick != e->ival_tick) {
			memcpy(t->ival_out, e->ival, sizeof(*e->ival));
			hist_init(e->ival);
			e->ival_tick = tick;
			__atomic_store_n(&t->ival_done, tick, __ATOMIC_RELEASE);
		}
	}
}

/* --retry: connect again the connections whose time has come; none once sending ended. */
static void retry_due(struct engine *e)
{
	for (int i = 0; i < e->nconns && e->retrying > 0; i++) {
		struct bconn *c = &e->c[i];
		if (c->state != BC_NEW || c->retry_at == 0)
			continue;
		if (e->sending && c->retry_at > e->now)
			continue;
		e->retrying--;
		c->retry_at = 0;
		if (e->sending)
			bconn_start(e, c);
		else
			bconn_kill(e, c);
	}
}

static int run_done(struct engine *e)
{
	if (e->alive == 0)
		return 1;
	if (!e->started)
		return e->connecting == 0 && e->next_connect == e->nconns;
	if (e->now >= e->deadline)
		return 1;
	if (e->o->idle)
		return e->now >= e->end;
	if (e->nmode && e->budget == 0 && e->due == 0 && e->inflight == 0 && e->hs_reserved == 0)
		return 1;
	return !e->sending && e->inflight == 0;
}

static void loop(struct engine *e, uint64_t connect_deadline)
{
	struct epoll_event evs[MAX_EVENTS];
	struct timespec ts;
	struct bconn **tmp;
	uint64_t wait, stop;
	int n;

	for (;;) {
		e->now = bench_now();
		if (e->started) {
			stop = __atomic_load_n(&e->t->run->stop_ns, __ATOMIC_RELAXED);
			e->end = e->tm->end;
			e->deadline = e->tm->deadline;
			if (stop != 0 && stop < e->end)
				e->end = stop;
			if (stop != 0 && stop + e->o->drain_ns < e->deadline)
				e->deadline = stop + e->o->drain_ns;
			e->sending = e->now < e->end;
			if (e->open_loop)
				schedule(e);
			if (e->retrying > 0)
				retry_due(e);
		}
		/* after e->sending is known: --handshakes opens connections only while it lasts */
		while (e->connecting < MAX_CONNECTING && e->next_connect < e->nconns) {
			if (e->o->handshakes)
				hs_start(e, &e->c[e->next_connect++]);
			else
				bconn_start(e, &e->c[e->next_connect++]);
		}
		for (int i = 0; i < e->nwork; i++) {
			struct bconn *c = e->work[i];
			c->queued = 0;
			bconn_work(e, c);
		}
		tmp = e->work;
		e->work = e->next_work;
		e->next_work = tmp;
		e->nwork = e->nnext;
		e->nnext = 0;
		publish(e);
		if (run_done(e) || (!e->started && e->now >= connect_deadline))
			break;

		wait = TICK_NS;
		if (e->nwork > 0) {
			wait = 0;
		} else if (e->started && e->sending && e->open_loop) {
			uint64_t at = sched_time(e, e->g_next);
			wait = at > e->now ? at - e->now : 0;
			if (wait > TICK_NS)
				wait = TICK_NS;
		}
		ts.tv_sec = (time_t)(wait / 1000000000ull);
		ts.tv_nsec = (long)(wait % 1000000000ull);
		n = epoll_pwait2(e->ep, evs, MAX_EVENTS, &ts, NULL);
		if (n == -1 && errno != EINTR) {
			report_error("epoll_pwait2: %s", strerror(errno));
			e->t->res.errors++;
			break;
		}
		e->now = bench_now();
		for (int i = 0; i < n; i++)
			handle_event(e, evs[i].data.ptr, evs[i].events);
	}
}

/* Set up the engine for thread t; on failure it has no connections and one error counted. */
static void engine_init(struct engine *e, struct bench_thread *t)
{
	const struct bench_opts *o = t->o;

	memset(e, 0, sizeof(*e));
	e->t = t;
	e->o = o;
	e->tm = &t->run->times;
	e->nconns = t->nconns;
	e->alive = t->nconns;
	e->nmode = o->total > 0;
	e->budget = t->total;
	e->open_loop = o->rate > 0;
	e->period = t->rate > 0 ? 1e9 / t->rate : 0;
	/* Open-loop sends are due every few microseconds: sleep that precisely. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	e->c = calloc((size_t)e->nconns, sizeof(*e->c));
	e->work = calloc((size_t)e->nconns, sizeof(*e->work));
	e->next_work = calloc((size_t)e->nconns, sizeof(*e->next_work));
	e->ep = epoll_create1(EPOLL_CLOEXEC);
	if (o->interval_hist && (e->ival = malloc(sizeof(*e->ival))) != NULL)
		hist_init(e->ival);
	if (o->ack_log_fd != -1)
		e->ack_log = malloc(ACK_LOG_BUF);
	if (e->c == NULL || e->work == NULL || e->next_work == NULL || e->ep == -1 ||
	    (o->interval_hist && e->ival == NULL) || (o->ack_log_fd != -1 && e->ack_log == NULL)) {
		report_error("thread %d: %s", t->index, strerror(errno));
		t->res.errors++;
		e->nconns = 0;
	}
	for (int i = 0; i < e->nconns; i++) {
		struct bconn *c = &e->c[i];
		c->fd = -1;
		c->idx = t->first_conn + i;
		c->num = c->idx;
		c->rng = 2463534242u + (uint32_t)c->idx * 2654435761u;
		memcpy(c->next_id, "00000001", PROTO_ID_LEN);
		memcpy(c->ack_id, c->next_id, PROTO_ID_LEN);
	}
}

/* Connect everything before the clock starts; what is not connected in time is an error. */
static void connect_all(struct engine *e)
{
	loop(e, bench_now() + 10000000000ull + (uint64_t)e->nconns * 1000000ull);
	for (int i = 0; i < e->nconns; i++) {
		struct bconn *c = &e->c[i];
		if (c->state == BC_NEW || c->state == BC_CONNECTING || c->state == BC_HANDSHAKE) {
			e->t->res.connect_errors++;
			bconn_fail(e, c, "%s %s: timed out",
				   c->state == BC_HANDSHAKE ? "TLS handshake with" : "connect",
				   e->o->dst_name);
		}
	}
}

/* Count what is still in flight or open, close everything, publish the last numbers. */
static void engine_finish(struct engine *e)
{
	struct bench_thread *t = e->t;
	char id[40];

	for (int i = 0; i < e->nconns; i++) {
		struct bconn *c = &e->c[i];
		if (c->state == BC_DEAD)
			continue;
		if (c->inflight > 0) {
			report_error("connection %d: %u requests unacked at the end, next id %s",
				     c->num, c->inflight, id_str(c->ack_id, id));
			t->res.unacked += c->inflight;
			t->res.errors += c->inflight;
		}
		if (bconn_is_open(c)) {
			t->res.open_at_end++;
			tls_goodbye(c);
		}
		bconn_close(e, c);
	}
	for (int i = 0; i < e->nconns; i++) {
		free(e->c[i].ring);
		SSL_SESSION_free(e->c[i].sess);
	}
	t->res.last_ack = e->last_ack;
	if (e->ack_log != NULL)
		ack_log_flush(e);
	publish(e);
	if (e->ep != -1)
		close(e->ep);
	free(e->c);
	/* The last, partial second: the main thread takes it once it sees finished. */
	t->ival_last = e->ival;
	free(e->ack_log);
	free(e->work);
	free(e->next_work);
}

void *engine_thread_main(void *arg)
{
	struct bench_thread *t = arg;
	struct engine e;

	engine_init(&e, t);
	/* --handshakes: every connect is measured, the first ones too */
	if (!t->o->handshakes)
		connect_all(&e);
	pthread_barrier_wait(&t->run->barrier); /* connected */
	pthread_barrier_wait(&t->run->barrier); /* the main thread has set the times */
	e.started = 1;
	for (int i = 0; i < e.nconns; i++)
		if (bconn_is_open(&e.c[i]))
			work_add(&e, &e.c[i]);
	e.end = e.tm->end;
	e.deadline = e.tm->deadline;
	if (e.nconns > 0)
		loop(&e, 0);
	engine_finish(&e);
	__atomic_store_n(&t->finished, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * --tls-resume: a session the server sent (TLS 1.3: a ticket after the
 * handshake, read by SSL_read) replaces the slot's previous one; the slot
 * keeps the reference (return 1).
 */
static int tls_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct bconn *c = SSL_get_app_data(ssl);

	if (c == NULL)
		return 0;
	SSL_SESSION_free(c->sess);
	c->sess = sess;
	return 1;
}

void engine_tls_setup(struct ssl_ctx_st *ctx, int resume)
{
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* Whole records per read() instead of a header and then a body: half the syscalls. */
	SSL_CTX_set_read_ahead(ctx, 1);
	/* A server's FIN without close_notify is an end of stream as in plaintext (bconn_eof). */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (resume) {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
							SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, tls_new_session);
	} else {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	}
}
