/*
 * Ack gating (ackq.h): acks held until the round's records are stored,
 * released with result 0 or 2; with ack_after = stream owed in runs until
 * the stream's position passes each run, in order, with a full ring of
 * runs merged, never released early. Driven through conn_process as the
 * worker drives it.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ackq.h"
#include "buf.h"
#include "conn.h"
#include "ctl.h"
#include "mem.h"
#include "proto.h"
#include "stats.h"
#include "tap.h"

static struct conn_rec recs[4];
static struct conn_batch batch;
static struct stats_slot slot;
static struct ctl_slot ctl;
static struct conn_ctx ctx;
static int fulls;

/* The batch is full: the spool writes it (here: forgets the records). */
static void full(struct conn_batch *b)
{
	fulls++;
	b->n = 0;
}

/* The round ends as the worker ends it: the spool wrote the batch, then ackq settles. */
static void end_round(int failed, uint64_t ns, uint64_t off)
{
	batch.n = 0;
	ackq_round_end(&batch, failed, ns, off);
}

static void released(struct conn *c)
{
	(void)c;
}

static void setup(int stream)
{
	conn_batch_init(&batch, recs, 4, full);
	memset(&slot, 0, sizeof(slot));
	memset(&ctl, 0, sizeof(ctl));
	ctx.max_frame = 65536;
	ctx.read_size = 4096;
	ctx.max_output = 1 << 20;
	ctx.stats = &slot;
	ctx.batch = &batch;
	ackq_init(&slot, &ctl, stream);
}

/* Feed n requests (cmd) with ids from id on, and decode them. */
static void feed(struct conn *c, uint8_t cmd, int n, uint64_t id)
{
	uint8_t frame[64], idb[PROTO_ID_LEN];

	for (int i = 0; i < n; i++) {
		for (int k = 0; k < PROTO_ID_LEN; k++)
			idb[k] = (uint8_t)((id + (uint64_t)i) >> (8 * (7 - k)));
		size_t len =
		    proto_encode_request(frame, sizeof(frame), cmd, idb, (const uint8_t *)"x", 1);
		if (buf_append(&c->in, frame, len) == -1)
			ok(0, "buf_append");
	}
	conn_process(c, &ctx);
}

/* The writable acks of c, in order: their ids and results; then written away. */
static int take(struct conn *c, uint64_t *ids, uint8_t *res, uint8_t *cmds, int max)
{
	int n = 0;

	while (conn_writable(c) >= PROTO_ACK_LEN && n < max) {
		struct proto_frame f;
		if (proto_decode_ack(buf_head(&c->out), PROTO_ACK_LEN, &f) != PROTO_OK)
			break;
		uint64_t v = 0;
		for (int k = 0; k < PROTO_ID_LEN; k++)
			v = v << 8 | f.id[k];
		ids[n] = v;
		res[n] = f.result;
		cmds[n] = f.cmd;
		n++;
		buf_consume(&c->out, PROTO_ACK_LEN);
	}
	return n;
}

static struct conn *new_conn(void)
{
	static struct conn pool[4];
	static int used;
	struct conn *c = &pool[used++];

	conn_init(c, -1, 0);
	return c;
}

static void test_after_spool(void)
{
	uint64_t ids[32];
	uint8_t res[32], cmds[32];
	struct conn *c = new_conn();

	setup(0);
	feed(c, PROTO_CONN, 1, 100);
	feed(c, PROTO_SUBMIT, 3, 1);
	is_int((long long)conn_writable(c), 0, "before the round ends, every ack is held");
	is_int((long long)c->acks.held, 4 * PROTO_ACK_LEN, "held: the ConnAck and 3 SubmitAcks");
	ok(batch.touched == c && c->acks.touched, "the connection is on the touched list");
	end_round(0, 1, 4096);
	ok(batch.touched == NULL && !c->acks.touched, "the round's end empties the touched list");
	int n = take(c, ids, res, cmds, 32);
	is_int(n, 4, "stored: all 4 acks may be written");
	ok(cmds[0] == PROTO_CONNACK && ids[0] == 100 && ids[1] == 1 && ids[3] == 3,
	   "in the order of the requests");
	ok(res[0] == 0 && res[1] == 0 && res[2] == 0 && res[3] == 0, "all with result 0");
	is_int((long long)slot.c[STATS_ack_result_0], 3, "3 results 0 counted (not the ConnAck)");

	/* A failed round: result 2 on each SubmitAck, never on a ConnAck. */
	feed(c, PROTO_SUBMIT, 2, 10);
	feed(c, PROTO_CONN, 1, 101);
	feed(c, PROTO_SUBMIT, 1, 12);
	end_round(1, 0, 0);
	n = take(c, ids, res, cmds, 32);
	is_int(n, 4, "failed: the acks leave all the same");
	ok(res[0] == PROTO_RESULT_NOT_STORED && res[1] == PROTO_RESULT_NOT_STORED &&
	       res[3] == PROTO_RESULT_NOT_STORED,
	   "each SubmitAck of the failed round has result 2");
	ok(cmds[2] == PROTO_CONNACK && res[2] == 0, "the ConnAck keeps result 0");
	is_int((long long)slot.c[STATS_ack_result_2], 3, "3 results 2 counted");
	is_int((long long)slot.c[STATS_ack_result_0], 3, "results 0 unchanged");

	/* A full batch mid-round is written through the interface, acks stay held. */
	feed(c, PROTO_SUBMIT, 9, 20);
	ok(fulls == 2 && batch.n == 1, "9 Submits in a batch of 4: full() called twice");
	is_int((long long)conn_writable(c), 0, "all 9 acks still held");
	end_round(0, 1, 8192);
	is_int(take(c, ids, res, cmds, 32), 9, "then released together");

	/* A connection closed in the round: its acks go with it, no result counted. */
	struct conn *d = new_conn();
	feed(d, PROTO_SUBMIT, 2, 30);
	conn_set_state(d, CONN_CLOSED, CONN_R_CLIENT);
	ackq_forget(d);
	end_round(0, 1, 9000);
	is_int((long long)slot.c[STATS_ack_result_0], 12, "a closed connection's acks not counted");
	ok(d->acks.held == 0 && !d->acks.touched, "and it is off the touched list");
}

static void stream_at(uint64_t ns, uint64_t off)
{
	ctl_pos_store(&ctl.stream_acked, ns, off);
}

static void test_after_stream(void)
{
	uint64_t ids[64];
	uint8_t res[64], cmds[64];
	struct conn *c = new_conn();

	setup(1);
	is_int(ackq_stream_wait(), -1, "nothing owed: no wait");
	feed(c, PROTO_SUBMIT, 2, 1);
	end_round(0, 5, 1000);
	feed(c, PROTO_SUBMIT, 2, 3);
	end_round(0, 5, 2000);
	is_int((long long)c->acks.mn, 2, "two rounds: two runs");
	ok(ackq_stream_wait() > 0 && ctl.stream_wait == 1,
	   "acks owed: the loop sleeps with stream_wait set");
	ackq_stream_release(released);
	is_int((long long)conn_writable(c), 0, "the stream at 0: nothing released");
	stream_at(5, 999);
	ok(ackq_stream_wait() == 0, "the position moved: no sleep");
	ackq_stream_release(released);
	is_int((long long)conn_writable(c), 0, "one byte short of the first run: nothing");
	stream_at(5, 1000);
	ackq_stream_release(released);
	int n = take(c, ids, res, cmds, 64);
	ok(n == 2 && ids[0] == 1 && ids[1] == 2, "the stream at the first run: its 2 acks");
	is_int((long long)slot.c[STATS_ack_result_0], 2, "counted at release");
	stream_at(6, 0);
	ackq_stream_release(released);
	n = take(c, ids, res, cmds, 64);
	ok(n == 2 && ids[0] == 3, "a newer segment is past every offset of the older one");
	ok(c->acks.mn == 0 && c->acks.owed == 0 && c->acks.held == 0, "nothing owed");
	is_int(ackq_stream_wait(), -1, "no wait once all is released");
	is_int((long long)ctl.stream_wait, 0, "and stream_wait is cleared");

	/* A failed round behind owed acks: result 2 now, but it waits its turn. */
	feed(c, PROTO_SUBMIT, 1, 10);
	end_round(0, 7, 100);
	feed(c, PROTO_SUBMIT, 1, 11);
	end_round(1, 0, 0);
	is_int((long long)slot.c[STATS_ack_result_2], 1, "the failed ack counted at once");
	ackq_stream_release(released);
	is_int((long long)conn_writable(c), 0, "it does not pass the owed one");
	stream_at(7, 100);
	ackq_stream_release(released);
	n = take(c, ids, res, cmds, 64);
	ok(n == 2 && ids[0] == 10 && res[0] == 0 && ids[1] == 11 &&
	       res[1] == PROTO_RESULT_NOT_STORED,
	   "released in order: result 0, then result 2");
	is_int((long long)slot.c[STATS_ack_result_2], 1, "result 2 not counted twice");
	is_int((long long)slot.c[STATS_ack_result_0], 5, "result 0 counted once");

	/* A failed round with nothing owed ahead leaves at once. */
	feed(c, PROTO_SUBMIT, 1, 12);
	end_round(1, 0, 0);
	n = take(c, ids, res, cmds, 64);
	ok(n == 1 && res[0] == PROTO_RESULT_NOT_STORED, "failed, nothing ahead: leaves now");

	/* Ten rounds into a ring of eight: the oldest merge, never released early. */
	for (int r = 0; r < CONN_MARKS + 2; r++) {
		feed(c, PROTO_SUBMIT, 1, 100 + (uint64_t)r);
		end_round(0, 8, 100 * (uint64_t)(r + 1));
	}
	is_int((long long)c->acks.mn, CONN_MARKS, "the ring holds at most CONN_MARKS runs");
	stream_at(8, 100);
	ackq_stream_release(released);
	is_int((long long)conn_writable(c), 0,
	       "the first run, merged, waits for the third's position");
	stream_at(8, 299);
	ackq_stream_release(released);
	is_int((long long)conn_writable(c), 0, "still waits one byte short of it");
	stream_at(8, 300);
	ackq_stream_release(released);
	n = take(c, ids, res, cmds, 64);
	ok(n == 3 && ids[0] == 100 && ids[2] == 102, "then the three merged rounds leave together");
	stream_at(8, 1000);
	ackq_stream_release(released);
	n = take(c, ids, res, cmds, 64);
	ok(n == 7 && ids[0] == 103 && ids[6] == 109, "then the other seven, in order");

	/* Two connections: each released by its own runs; a closed one is forgotten. */
	struct conn *d = new_conn();
	feed(c, PROTO_SUBMIT, 1, 200);
	feed(d, PROTO_SUBMIT, 1, 300);
	end_round(0, 9, 50);
	feed(d, PROTO_SUBMIT, 1, 301);
	end_round(0, 9, 60);
	conn_set_state(c, CONN_CLOSED, CONN_R_CLIENT);
	ackq_forget(c);
	stream_at(9, 50);
	ackq_stream_release(released);
	n = take(d, ids, res, cmds, 64);
	ok(n == 1 && ids[0] == 300, "the other connection gets its first run");
	stream_at(9, 60);
	ackq_stream_release(released);
	n = take(d, ids, res, cmds, 64);
	ok(n == 1 && ids[0] == 301, "and then its second");
	is_int(ackq_stream_wait(), -1, "the closed connection owes nothing");
}

int main(void)
{
	char err[256];

	if (mem_init(0, err, sizeof(err)) != 0) {
		ok(0, "mem_init: %s", err);
		return done_testing();
	}
	buf_pool_init(4096, 4);
	test_after_spool();
	test_after_stream();
	return done_testing();
}
