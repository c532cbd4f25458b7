#include "ackq.h"

#include "proto.h"

/*
 * ack_after = stream: the longest sleep with acks owed. The forwarder wakes
 * the worker when the stream's position moves (SIGURG); this only bounds
 * the wait if a wake-up is lost (a forwarder restarting, a signal refused).
 */
#define STREAM_WAIT_MS 20

static struct stats_slot *slot; /* NULL: the spool is off */
static struct ctl_slot *ctl;
static int stream;
static struct conn *owing;	   /* connections with acks owed to the stream */
static uint64_t seen_ns, seen_off; /* the stream's position at the last release */
static int owing_new;		   /* marks added since the last release */

void ackq_init(struct stats_slot *s, struct ctl_slot *c, int str)
{
	slot = s;
	ctl = c;
	stream = str;
	owing = NULL;
	seen_ns = seen_off = 0;
	owing_new = 0;
}

/*
 * The SubmitAcks in len bytes of fresh acks at p (a round's, none refused
 * yet but those over their rate, result 1 and counted then) are stored
 * (failed = 0) or not: result 2 on the failed ones; the results counted.
 */
static void settle(uint8_t *p, uint32_t len, int failed)
{
	uint64_t n = 0;

	if (failed) {
		for (uint32_t off = 0; off + PROTO_ACK_LEN <= len; off += PROTO_ACK_LEN) {
			uint8_t *ack = p + off;
			/* ConnAcks are never refused; a Submit over its rate was (result 1). */
			if (proto_ack_get_cmd(ack) != PROTO_SUBMITACK ||
			    proto_ack_get_result(ack) != PROTO_RESULT_OK)
				continue;
			proto_ack_set_result(ack, PROTO_RESULT_NOT_STORED);
			n++;
		}
	} else {
		for (uint32_t off = 0; off + PROTO_ACK_LEN <= len; off += PROTO_ACK_LEN)
			n += proto_ack_get_cmd(p + off) == PROTO_SUBMITACK &&
			     proto_ack_get_result(p + off) == PROTO_RESULT_OK;
	}
	stats_add(slot, failed ? STATS_ack_result_2 : STATS_ack_result_0, n);
}

/*
 * ack_after = stream: a run of owed acks the stream now has leaves with
 * result 0, but for those a failed round refused before a merge put them
 * into this run (counted then).
 */
static void settle_owed(uint8_t *p, uint32_t len)
{
	uint64_t n = 0;

	for (uint32_t off = 0; off + PROTO_ACK_LEN <= len; off += PROTO_ACK_LEN) {
		const uint8_t *ack = p + off;
		n += proto_ack_get_cmd(ack) == PROTO_SUBMITACK &&
		     proto_ack_get_result(ack) == PROTO_RESULT_OK;
	}
	stats_add(slot, STATS_ack_result_0, n);
}

static void owing_link(struct conn *c)
{
	c->acks.owing_next = owing;
	if (owing != NULL)
		owing->acks.owing_prev = c;
	owing = c;
}

static void owing_unlink(struct conn *c)
{
	struct conn_acks *a = &c->acks;

	if (a->owing_prev != NULL)
		a->owing_prev->acks.owing_next = a->owing_next;
	else if (owing == c)
		owing = a->owing_next;
	if (a->owing_next != NULL)
		a->owing_next->acks.owing_prev = a->owing_prev;
	a->owing_next = a->owing_prev = NULL;
}

void ackq_forget(struct conn *c)
{
	if (slot == NULL)
		return;
	if (c->acks.mn > 0 || owing == c) {
		owing_unlink(c);
		c->acks.mn = 0;
		c->acks.owed = 0;
	}
}

/*
 * Full: merge the two oldest runs (the first now waits for the second's
 * position). Merging into the newest instead would let a busy pipeline
 * move its target forever.
 */
static void merge_oldest(struct conn_acks *a)
{
	struct conn_mark *m = &a->marks[a->mhead], *n = &a->marks[(a->mhead + 1) % CONN_MARKS];

	if (n->ns != 0 || n->off != 0) {
		m->ns = n->ns;
		m->off = n->off;
	}
	m->bytes += n->bytes;
	for (uint8_t i = 1; i + 1 < a->mn; i++)
		a->marks[(a->mhead + i) % CONN_MARKS] = a->marks[(a->mhead + i + 1) % CONN_MARKS];
	a->mn--;
}

/*
 * ack_after = stream: this round's held acks (after the owed ones) wait for
 * the stream to reach (ns, off); failed ones get result 2 now and still
 * wait behind the owed ones, as acks leave in order.
 */
static void owe(struct conn *c, int failed, uint64_t ns, uint64_t off)
{
	struct conn_acks *a = &c->acks;
	uint32_t fresh = a->held - a->owed;

	if (fresh == 0)
		return;
	if (failed) {
		settle(buf_tail(&c->out) - fresh, fresh, 1);
		ns = off = 0;
		if (a->owed == 0) {
			a->held -= fresh; /* nothing ahead of them: they leave now */
			return;
		}
	}
	if (a->mn == CONN_MARKS)
		merge_oldest(a);
	struct conn_mark *m = &a->marks[(a->mhead + a->mn) % CONN_MARKS];
	m->ns = ns;
	m->off = off;
	m->bytes = fresh;
	a->mn++;
	a->owed += fresh;
	if (a->mn == 1 && owing != c && a->owing_prev == NULL)
		owing_link(c);
	owing_new = 1;
}

void ackq_round_end(struct conn_batch *b, int failed, uint64_t ns, uint64_t off)
{
	if (slot == NULL)
		return;
	while (b->touched != NULL) {
		struct conn *c = b->touched;
		struct conn_acks *a = &c->acks;
		b->touched = a->next_touched;
		a->touched = 0;
		if (stream) {
			if (c->state != CONN_CLOSED)
				owe(c, failed, ns, off);
			continue;
		}
		if (c->state != CONN_CLOSED && a->held > 0)
			settle(buf_tail(&c->out) - a->held, a->held, failed);
		a->held = 0;
	}
}

void ackq_stream_release(void (*ready)(struct conn *c))
{
	uint64_t ns = seen_ns, off = seen_off;

	if (slot == NULL || owing == NULL)
		return;
	if (ctl_pos_load(&ctl->stream_acked, &ns, &off) == -1)
		return;
	if (!owing_new && ns == seen_ns && off == seen_off)
		return;
	seen_ns = ns;
	seen_off = off;
	owing_new = 0;
	for (struct conn *c = owing, *next; c != NULL; c = next) {
		struct conn_acks *a = &c->acks;
		uint32_t done = 0;
		next = a->owing_next;
		while (a->mn > 0) {
			struct conn_mark *m = &a->marks[a->mhead];
			int waits = m->ns != 0 || m->off != 0;
			if (waits && ctl_pos_cmp(ns, off, m->ns, m->off) < 0)
				break;
			/* The front of the held region: the oldest owed acks. */
			if (waits)
				settle_owed(buf_tail(&c->out) - a->held + done, m->bytes);
			done += m->bytes;
			a->mhead = (uint8_t)((a->mhead + 1) % CONN_MARKS);
			a->mn--;
		}
		if (done == 0)
			continue;
		a->held -= done;
		a->owed -= done;
		if (a->mn == 0)
			owing_unlink(c);
		ready(c);
	}
}

long ackq_stream_wait(void)
{
	uint64_t ns, off;

	if (slot == NULL)
		return -1;
	if (owing == NULL) {
		ctl_wait_cancel(&ctl->stream_wait);
		return -1;
	}
	/* Say so first, then look (ctl_wait_announce). */
	ctl_wait_announce(&ctl->stream_wait);
	if (ctl_pos_load(&ctl->stream_acked, &ns, &off) == 0 && (ns != seen_ns || off != seen_off))
		return 0;
	return STREAM_WAIT_MS;
}
