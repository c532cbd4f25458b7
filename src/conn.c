#include "conn.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "proto.h"
#include "ratelimit.h"

void conn_init(struct conn *c, int fd, uint64_t now_ms)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	transport_init(&c->tr, fd);
	c->state = CONN_ACTIVE;
	c->last_frame_ms = now_ms;
}

void conn_set_state(struct conn *c, enum conn_state s, enum conn_reason why)
{
	assert(s >= CONN_ACTIVE && s <= CONN_CLOSED);
	/*
	 * States only move forward. The reason to leave ACTIVE is recorded here,
	 * but it is not final: the worker's send_timeout sets c->reason itself
	 * on a connection already past ACTIVE, and the reason counted is the one
	 * c->reason holds when the worker closes it.
	 */
	assert(s >= c->state);
	if (c->state == CONN_ACTIVE && s != CONN_ACTIVE)
		c->reason = (uint8_t)why;
	c->state = (uint8_t)s;
}

static const enum stats_counter perr_counter[] = {
    [-PROTO_E_FRAME_TOO_SHORT] = STATS_perr_frame_too_short,
    [-PROTO_E_FRAME_TOO_LARGE] = STATS_perr_frame_too_large,
    [-PROTO_E_UNKNOWN_COMMAND] = STATS_perr_unknown_command,
    [-PROTO_E_BODY_TOO_SHORT] = STATS_perr_body_too_short,
};

/*
 * The frame of a connection that has not authenticated: a Conn whose
 * token is in the tokens file authenticates it (result 0); anything else
 * is refused with result 3, and the connection closes after that ack. No
 * ack is held before it (nothing was accepted yet), so it is written as
 * it is, whatever the batch holds for others.
 */
static uint8_t authenticate(struct conn *c, const struct conn_ctx *x, const struct proto_frame *f)
{
	const char *id = NULL;

	if (f->cmd == PROTO_CONN && !c->auth_no_identity)
		id = auth_token_check(x->tokens, f->payload, f->payload_len);
	if (id != NULL) {
		c->identity = id;
		c->identity_len = (uint8_t)strlen(id);
		c->auth_need = 0;
		stats_add(x->stats, STATS_auth_token, 1);
		return PROTO_RESULT_OK;
	}
	if (c->auth_no_identity) {
		c->auth_fail = CONN_AUTH_NO_IDENTITY;
		stats_add(x->stats, STATS_authf_no_identity, 1);
	} else if (f->cmd == PROTO_CONN) {
		c->auth_fail = CONN_AUTH_BAD_TOKEN;
		stats_add(x->stats, STATS_authf_bad_token, 1);
	} else {
		c->auth_fail = CONN_AUTH_NO_CONN;
		stats_add(x->stats, STATS_authf_no_conn, 1);
	}
	return PROTO_RESULT_NOT_AUTHORIZED;
}

/*
 * rate_limit: 1 when c's client is within its rate for one more Submit
 * (or not tracked: a full table refuses no one), 0 when over. Takes
 * rl_chunk Submits of the rate at a time, and one at a time where fewer
 * are left; what a connection took and did not use is lost when it
 * closes, so its client may get up to rl_chunk less.
 */
static int within_rate(struct conn *c, const struct conn_ctx *x)
{
	int32_t slot;
	int r;

	if (c->rl_credit > 0) {
		c->rl_credit--;
		return 1;
	}
	if (c->rl_key == 0)
		c->rl_key = ratelimit_key(x->rl, c->identity, c->identity_len, c->addr);
	slot = c->rl_slot - 1;
	r = ratelimit_take(x->rl, c->rl_key, &slot, x->now_ns, x->rl_interval_ns, x->rl_burst,
			   x->rl_chunk);
	if (r == RATELIMIT_OVER && x->rl_chunk > 1)
		r = ratelimit_take(x->rl, c->rl_key, &slot, x->now_ns, x->rl_interval_ns,
				   x->rl_burst, 1);
	else if (r == RATELIMIT_OK)
		c->rl_credit = x->rl_chunk - 1;
	c->rl_slot = slot + 1;
	if (r == RATELIMIT_UNTRACKED)
		stats_add(x->stats, STATS_rate_untracked, 1);
	return r != RATELIMIT_OVER;
}

int conn_process(struct conn *c, const struct conn_ctx *x)
{
	struct proto_frame f;
	uint64_t nsubmit = 0, nconn = 0, nrefused = 0;
	int r, ret = 0;

	while (c->state == CONN_ACTIVE) {
		r = proto_decode(buf_head(&c->in), buf_len(&c->in), x->max_frame, &f);
		if (r == PROTO_NEED_MORE)
			break;
		if (r < 0) {
			/*
			 * A PROXY header where a frame belongs: from outside
			 * proxy_protocol_from (the trusted gave theirs already).
			 */
			if (proxy_looks_like(buf_head(&c->in), buf_len(&c->in)))
				stats_add(x->stats, STATS_proxy_untrusted, 1);
			else
				stats_add(x->stats, perr_counter[-r], 1);
			/* Nothing after a bad frame is trusted: drop it unread. */
			buf_consume(&c->in, buf_len(&c->in));
			conn_set_state(c, CONN_FLUSHING, CONN_R_PROTOCOL);
			break;
		}
		if (buf_space(&c->out) < PROTO_ACK_LEN &&
		    buf_reserve(&c->out, PROTO_ACK_LEN) == -1) {
			ret = -1;
			break;
		}
		if (c->auth_need) {
			uint8_t res = authenticate(c, x, &f);
			proto_encode_ack(buf_tail(&c->out), proto_ack_cmd(f.cmd), f.id, res);
			buf_commit(&c->out, PROTO_ACK_LEN);
			stats_add(x->stats,
				  f.cmd == PROTO_SUBMIT ? STATS_req_submit : STATS_req_conn, 1);
			stats_add(x->stats,
				  f.cmd == PROTO_SUBMIT ? STATS_rsp_submit : STATS_rsp_conn, 1);
			if (f.cmd == PROTO_SUBMIT)
				stats_add(x->stats, STATS_ack_result_3, 1);
			if (res != PROTO_RESULT_OK) {
				/* Nothing after it is read: the client is not who may submit. */
				buf_consume(&c->in, buf_len(&c->in));
				conn_set_state(c, CONN_FLUSHING, CONN_R_AUTH);
				ret++;
				break;
			}
			memcpy(c->conn_id, f.id, sizeof(c->conn_id));
			c->has_conn_id = 1;
			buf_consume(&c->in, f.len);
			ret++;
			continue;
		}
		/* Over its client's rate: result 1, not stored, in order with the acks before it.
		 */
		uint8_t res = PROTO_RESULT_OK;
		if (f.cmd == PROTO_SUBMIT && x->rl != NULL && !within_rate(c, x)) {
			res = PROTO_RESULT_REFUSED;
			c->rl_over = 1;
			nrefused++;
		}
		proto_encode_ack(buf_tail(&c->out), proto_ack_cmd(f.cmd), f.id, res);
		buf_commit(&c->out, PROTO_ACK_LEN);
		if (x->batch != NULL) {
			struct conn_batch *b = x->batch;
			/* Every ack after a held one waits too, ConnAcks included. */
			c->acks.held += PROTO_ACK_LEN;
			if (!c->acks.touched) {
				c->acks.touched = 1;
				c->acks.next_touched = b->touched;
				b->touched = c;
			}
			if (f.cmd == PROTO_SUBMIT && res == PROTO_RESULT_OK) {
				if (b->n == b->cap)
					b->full(b);
				struct conn_rec *rec = &b->rec[b->n++];
				rec->c = c;
				rec->id = f.id;
				rec->payload = f.payload;
				rec->len = (uint32_t)f.payload_len;
			} else if (f.cmd == PROTO_CONN) {
				memcpy(c->conn_id, f.id, sizeof(c->conn_id));
				c->has_conn_id = 1;
			}
		} else if (f.cmd == PROTO_CONN) {
			memcpy(c->conn_id, f.id, sizeof(c->conn_id));
			c->has_conn_id = 1;
		}
		buf_consume(&c->in, f.len);
		if (f.cmd == PROTO_SUBMIT)
			nsubmit++;
		else
			nconn++;
	}
	if (nsubmit) {
		stats_add(x->stats, STATS_req_submit, nsubmit);
		stats_add(x->stats, STATS_rsp_submit, nsubmit);
		/* With the spool, the result is known when the batch is stored. */
		if (x->batch == NULL)
			stats_add(x->stats, STATS_ack_result_0, nsubmit - nrefused);
	}
	if (nrefused) {
		stats_add(x->stats, STATS_ack_result_1, nrefused);
		stats_add(x->stats, STATS_rate_limited, nrefused);
	}
	if (nconn) {
		stats_add(x->stats, STATS_req_conn, nconn);
		stats_add(x->stats, STATS_rsp_conn, nconn);
	}
	return ret == -1 ? -1 : ret + (int)(nsubmit + nconn);
}

/* What a read(2) returned, named; errno stays as read left it. */
static enum conn_read_result read_result(ssize_t n)
{
	if (n > 0)
		return CONN_READ_OK;
	if (n == 0)
		return CONN_READ_EOF;
	return errno == EAGAIN || errno == EINTR ? CONN_READ_AGAIN : CONN_READ_ERROR;
}

enum conn_read_result conn_read(struct conn *c, const struct conn_ctx *x)
{
	struct buf *b = &c->in;
	size_t len = buf_len(b), need = 1;
	ssize_t n;

	if (c->state == CONN_LINGERING) {
		/*
		 * Discard: read into the stack, never into a buffer. Past the
		 * FIN nothing is decoded, TLS records neither: only the peer's
		 * FIN is waited for.
		 */
		uint8_t sink[4096];
		n = read(c->fd, sink, sizeof(sink));
		if (n > 0)
			c->lingered += (uint32_t)n;
		return read_result(n);
	}
	if (len >= PROTO_HDR_LEN) {
		uint32_t want = proto_get_u32(buf_head(b));
		if (want > len)
			need = want - len; /* <= max_frame: bigger frames were refused */
	}
	if (!buf_allocated(b) && need < x->read_size)
		need = x->read_size;
	if (len > 0 && buf_space(b) < x->read_size / 2) {
		/* A partial frame at the end: move it to the front to read more. */
		buf_compact(b);
	}
	if (buf_reserve(b, need) == -1)
		return CONN_READ_NOMEM;
	n = transport_read(&c->tr, buf_tail(b), buf_space(b));
	if (n > 0) {
		buf_commit(b, (size_t)n);
		stats_add(x->stats, STATS_bytes_recv, (uint64_t)n);
	}
	return read_result(n);
}

int conn_write(struct conn *c, const struct conn_ctx *x)
{
	ssize_t n;

	while (conn_writable(c) > 0) {
		n = transport_write(&c->tr, buf_head(&c->out), conn_writable(c));
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		buf_consume(&c->out, (size_t)n);
		stats_add(x->stats, STATS_bytes_sent, (uint64_t)n);
		stats_batch(x->stats, ((uint64_t)n + PROTO_ACK_LEN - 1) / PROTO_ACK_LEN);
	}
	return 0;
}
