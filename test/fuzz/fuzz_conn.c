/*
 * libFuzzer target for a whole connection without the event loop: bytes
 * go into c->in in chunks the fuzzer chooses, conn_process runs after each,
 * and the acks in c->out are checked against a model of docs/PROTOCOL.md
 * written here from the spec, independent of proto.c.
 *
 * Input layout:
 *   byte 0..1  max_frame - 13 (big-endian): 13..65548
 *   byte 2     read_size / 16 (+16): the pool chunk, so frames outgrow it
 *   byte 3     flags: bit 0 the client reads acks only when the output
 *              bound is reached (as backpressure would make it), bit 1 feed
 *              through a socketpair with conn_read/conn_write
 *   byte 4     k: the last k bytes are chunk lengths (1..256 each)
 *   then the stream, then the k chunk lengths; the stream's rest is fed
 *   in one final chunk.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "fuzz.h"
#include "proto.h"

/* What the spec says the stream holds: the valid requests before the first error. */
struct model {
	size_t nvalid;
	size_t nconn;
	int error; /* 0, or the PROTO_E_* the first bad frame gets */
	uint8_t *cmds;
	const uint8_t **ids;
};

static void model_build(struct model *m, const uint8_t *p, size_t n, uint32_t max)
{
	size_t off = 0;

	memset(m, 0, sizeof(*m));
	m->cmds = malloc(n / PROTO_MIN_REQUEST + 1);
	m->ids = malloc((n / PROTO_MIN_REQUEST + 1) * sizeof(*m->ids));
	CHECK(m->cmds != NULL && m->ids != NULL);
	for (;;) {
		size_t left = n - off;
		uint32_t len;
		if (left < 4)
			return;
		len = (uint32_t)p[off] << 24 | (uint32_t)p[off + 1] << 16 |
		      (uint32_t)p[off + 2] << 8 | p[off + 3];
		if (len < 5) {
			m->error = PROTO_E_FRAME_TOO_SHORT;
			return;
		}
		if (len > max) {
			m->error = PROTO_E_FRAME_TOO_LARGE;
			return;
		}
		if (left < 5)
			return;
		if (p[off + 4] != 0x01 && p[off + 4] != 0x02) {
			m->error = PROTO_E_UNKNOWN_COMMAND;
			return;
		}
		if (len < 13) {
			m->error = PROTO_E_BODY_TOO_SHORT;
			return;
		}
		if (left < len)
			return;
		m->cmds[m->nvalid] = p[off + 4];
		m->ids[m->nvalid] = p + off + 5;
		m->nconn += p[off + 4] == 0x01;
		m->nvalid++;
		off += len;
	}
}

static void model_free(struct model *m)
{
	free(m->cmds);
	free(m->ids);
}

/* Check and consume n bytes of acks (whole acks only) against the model. */
static void take_acks(const uint8_t *a, size_t n, const struct model *m, size_t *seen)
{
	CHECK(n % PROTO_ACK_LEN == 0);
	for (size_t i = 0; i < n; i += PROTO_ACK_LEN, (*seen)++) {
		const uint8_t *k = a + i;
		CHECK(*seen < m->nvalid);
		CHECK(k[0] == 0 && k[1] == 0 && k[2] == 0 && k[3] == PROTO_ACK_LEN);
		CHECK(k[4] == (m->cmds[*seen] == 0x01 ? 0x80 : 0x81));
		CHECK(memcmp(k + 5, m->ids[*seen], PROTO_ID_LEN) == 0);
		CHECK(k[13] == PROTO_RESULT_OK);
	}
}

static void drain_out(struct conn *c, const struct model *m, size_t *seen)
{
	size_t n = buf_len(&c->out);

	if (n == 0)
		return;
	take_acks(buf_head(&c->out), n, m, seen);
	buf_consume(&c->out, n);
}

/* The worker's end of round: give empty buffers back to the pool. */
static void settle(struct conn *c)
{
	buf_release(&c->in);
	buf_release(&c->out);
}

static void feed_direct(struct conn *c, const struct conn_ctx *x, const uint8_t *p, size_t n,
			int lazy, const struct model *m, size_t *seen)
{
	if (lazy && buf_len(&c->out) >= x->max_output)
		drain_out(c, m, seen); /* backpressure: no read until the client reads */
	if (!conn_wants_read(c, x))
		return;
	CHECK(buf_reserve(&c->in, n) == 0);
	CHECK(buf_space(&c->in) >= n);
	memcpy(buf_tail(&c->in), p, n);
	buf_commit(&c->in, n);
	CHECK(conn_process(c, x) >= 0);
	/* Only an incomplete frame may stay behind, and only while active. */
	if (c->state == CONN_ACTIVE)
		CHECK(proto_decode(buf_head(&c->in), buf_len(&c->in), x->max_frame,
				   &(struct proto_frame){0}) == PROTO_NEED_MORE);
	else
		CHECK(buf_len(&c->in) == 0);
	if (!lazy)
		drain_out(c, m, seen);
	settle(c);
}

/* Read what the peer got: the acks conn_write sent, checked as they arrive. */
static void peer_read(int fd, uint8_t *pend, size_t *npend, const struct model *m, size_t *seen)
{
	for (;;) {
		ssize_t r = read(fd, pend + *npend, 4096 - *npend);
		if (r <= 0) {
			CHECK(r == -1 && errno == EAGAIN);
			return;
		}
		*npend += (size_t)r;
		size_t whole = *npend - *npend % PROTO_ACK_LEN;
		take_acks(pend, whole, m, seen);
		memmove(pend, pend + whole, *npend - whole);
		*npend -= whole;
	}
}

static void feed_socket(struct conn *c, const struct conn_ctx *x, int peer, const uint8_t *p,
			size_t n, uint8_t *pend, size_t *npend, const struct model *m, size_t *seen)
{
	CHECK(write(peer, p, n) == (ssize_t)n);
	while (conn_wants_read(c, x)) {
		enum conn_read_result r = conn_read(c, x);
		if (r == CONN_READ_AGAIN)
			break;
		CHECK(r == CONN_READ_OK);
		CHECK(conn_process(c, x) >= 0);
		CHECK(conn_write(c, x) == 0);
		peer_read(peer, pend, npend, m, seen);
		settle(c);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct stats_slot slot;
	struct conn_ctx x;
	struct conn c;
	struct model m;
	size_t k, slen, off = 0, seen = 0, npend = 0;
	uint8_t pend[4096];
	int flags, sv[2] = {-1, -1};

	if (size < 5)
		return 0;
	x.max_frame = 13 + ((uint32_t)data[0] << 8 | data[1]);
	x.read_size = 16 * ((uint32_t)data[2] + 1);
	x.max_output = 1024;
	x.stats = &slot;
	x.batch = NULL; /* no spool: acks leave with result 0 at once */
	flags = data[3];
	k = data[4];
	data += 5;
	size -= 5;
	if (k > size)
		k = size;
	slen = size - k;
	memset(&slot, 0, sizeof(slot));
	buf_pool_init(x.read_size, 4);
	model_build(&m, data, slen, x.max_frame);

	/* conn_init gives the transport its descriptor: conn_read reads through c.tr. */
	if (flags & 2)
		CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	conn_init(&c, sv[1], 0);
	for (size_t i = 0; off < slen; i++) {
		size_t n = i < k ? (size_t)data[size - 1 - i] + 1 : slen - off;
		if (n > slen - off)
			n = slen - off;
		if (flags & 2)
			feed_socket(&c, &x, sv[0], data + off, n, pend, &npend, &m, &seen);
		else
			feed_direct(&c, &x, data + off, n, flags & 1, &m, &seen);
		off += n;
	}
	if (flags & 2)
		CHECK(npend == 0);
	else
		drain_out(&c, &m, &seen);

	/* Exactly one ack per valid request before the first error, in order. */
	CHECK(seen == m.nvalid);
	CHECK(slot.c[STATS_req_submit] + slot.c[STATS_req_conn] == m.nvalid);
	CHECK(slot.c[STATS_req_conn] == m.nconn && slot.c[STATS_rsp_conn] == m.nconn);
	CHECK(slot.c[STATS_rsp_submit] == slot.c[STATS_req_submit]);
	uint64_t perr = slot.c[STATS_perr_frame_too_short] + slot.c[STATS_perr_frame_too_large] +
			slot.c[STATS_perr_unknown_command] + slot.c[STATS_perr_body_too_short];
	if (m.error) {
		static const enum stats_counter which[] = {
		    [-PROTO_E_FRAME_TOO_SHORT] = STATS_perr_frame_too_short,
		    [-PROTO_E_FRAME_TOO_LARGE] = STATS_perr_frame_too_large,
		    [-PROTO_E_UNKNOWN_COMMAND] = STATS_perr_unknown_command,
		    [-PROTO_E_BODY_TOO_SHORT] = STATS_perr_body_too_short,
		};
		CHECK(c.state == CONN_FLUSHING && c.reason == CONN_R_PROTOCOL);
		CHECK(perr == 1 && slot.c[which[-m.error]] == 1);
		CHECK(buf_len(&c.in) == 0);
	} else {
		CHECK(c.state == CONN_ACTIVE && perr == 0);
	}
	if (flags & 2) {
		CHECK(slot.c[STATS_bytes_sent] == m.nvalid * PROTO_ACK_LEN);
		close(sv[0]);
		close(sv[1]);
	}
	buf_free(&c.in);
	buf_free(&c.out);
	buf_pool_trim();
	model_free(&m);
	return 0;
}
