/*
 * nats-verify: read a whole JetStream stream and compare it with a
 * submit-bench --ack-log ("<conn> <id hex> <result>" per line).
 *
 *   nats-verify -s nats://127.0.0.1:4222 -S STREAM -a ACKLOG [-p LEN] [-d N]
 *
 * Per Submit id (submit-bench repeats ids across connections, so ids are
 * counted, not matched one to one): missing = acked with result 0 more
 * often than stored; unexpected = stored more often than acked. duplicated
 * = a Nats-Msg-Id (a spool place) stored more than once: a resend that the
 * duplicate window should have dropped. -p LEN: every payload must be
 * submit-bench's pattern ('a' + i % 26) of LEN bytes. Prints one line of
 * counts; exit 0 when all of missing, unexpected, duplicated and bad
 * payloads are 0, 1 if not, 2 on errors. -d N: first print the subject and
 * headers of the first N messages, one "subject name: value ..." line each.
 * -L: print the name of the stream's cluster leader and exit (no -a needed).
 */
#include <inttypes.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "natstool.h"

struct cnt {
	uint64_t key; /* 0: empty */
	uint32_t acked, stored;
};

static struct cnt *tab;
static size_t tcap;

static uint64_t mix(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	return k;
}

static struct cnt *slot(uint64_t key)
{
	size_t i = mix(key) & (tcap - 1);
	while (tab[i].key != 0 && tab[i].key != key)
		i = (i + 1) & (tcap - 1);
	tab[i].key = key;
	return &tab[i];
}

/* Keys are never 0: the id with a marker bit folded in. */
static uint64_t key_of(const char *hex)
{
	uint64_t v = strtoull(hex, NULL, 16);
	return mix(v ^ 0x9e3779b97f4a7c15ULL) | 1;
}

static uint64_t fnv(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
	return h | 1;
}

/* What the stream held, message by message. */
struct tally {
	uint64_t got, dup_ids, bad_payload, no_id;
};

/* The ack log's result-0 ids into the table (sized for it and total more). 0, or -1. */
static int read_acklog(const char *path, uint64_t total, uint64_t *acked0, uint64_t *other)
{
	FILE *f = fopen(path, "r");
	size_t lines = 0;
	char line[256];

	if (f == NULL) {
		perror(path);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL)
		lines++;
	for (tcap = 1024; tcap < 2 * (lines + total) + 16; tcap *= 2)
		;
	/* Ids and message ids share the table: different key spaces by construction. */
	tcap *= 2;
	if ((tab = calloc(tcap, sizeof(*tab))) == NULL) {
		fclose(f);
		return -1;
	}
	rewind(f);
	*acked0 = *other = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		char idhex[64];
		int conn;
		unsigned res;
		if (sscanf(line, "%d %63s %u", &conn, idhex, &res) != 3)
			continue;
		if (res != 0) {
			(*other)++;
			continue;
		}
		slot(key_of(idhex))->acked++;
		(*acked0)++;
	}
	fclose(f);
	return 0;
}

/* -d: the subject and headers of message m on one line. */
static void dump_msg(natsMsg *m)
{
	const char **keys = NULL;
	int nk = 0;

	printf("%s", natsMsg_GetSubject(m));
	if (natsMsgHeader_Keys(m, &keys, &nk) == NATS_OK) {
		for (int k = 0; k < nk; k++) {
			const char *v = NULL;
			natsMsgHeader_Get(m, keys[k], &v);
			printf(" %s: %s", keys[k], v ? v : "");
		}
		free((void *)keys);
	}
	printf("\n");
}

/* Count one message of the stream: its Submit id, its Nats-Msg-Id, its payload. */
static void count_msg(natsMsg *m, long plen, struct tally *t)
{
	const char *sid = NULL, *mid = NULL;

	if (natsMsgHeader_Get(m, "Submit-Id", &sid) != NATS_OK || sid == NULL) {
		t->no_id++;
		return;
	}
	slot(key_of(sid))->stored++;
	if (natsMsgHeader_Get(m, "Nats-Msg-Id", &mid) == NATS_OK && mid != NULL) {
		/* Message-id keys have bit 0 clear, id keys have it set. */
		struct cnt *c = slot((fnv(mid) & ~1ULL) | 2);
		if (c->stored++ > 0)
			t->dup_ids++;
	}
	if (plen >= 0) {
		const char *d = natsMsg_GetData(m);
		int n = natsMsg_GetDataLength(m);
		int ok = n == plen;
		for (int k = 0; ok && k < n; k++)
			ok = d[k] == (char)('a' + k % 26);
		t->bad_payload += !ok;
	}
}

/* Read the whole stream (total messages) through an ephemeral pull consumer. 0, or -1. */
static int read_stream(jsCtx *js, const char *stream, uint64_t total, long plen, int dump,
		       struct tally *t)
{
	natsSubscription *sub = NULL;
	jsErrCode jerr = 0;
	jsSubOptions so;
	char durable[64];
	int idle = 0;
	natsStatus s;

	snprintf(durable, sizeof(durable), "nats-verify-%d", (int)getpid());
	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.Config.AckPolicy = js_AckNone;
	so.Config.DeliverPolicy = js_DeliverAll;
	so.Config.MaxRequestBatch = 1000;
	if ((s = js_PullSubscribe(&sub, js, ">", durable, NULL, &so, &jerr)) != NATS_OK) {
		fprintf(stderr, "nats-verify: consumer: %s (%d)\n", natsStatus_GetText(s),
			(int)jerr);
		return -1;
	}
	while (t->got < total && idle < 5) {
		natsMsgList list = {0};
		s = natsSubscription_Fetch(&list, sub, 1000, 2000, &jerr);
		if (s == NATS_TIMEOUT || list.Count == 0) {
			idle++;
			natsMsgList_Destroy(&list);
			continue;
		}
		idle = 0;
		for (int i = 0; i < list.Count; i++) {
			t->got++;
			if (dump-- > 0)
				dump_msg(list.Msgs[i]);
			count_msg(list.Msgs[i], plen, t);
		}
		natsMsgList_Destroy(&list);
	}
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	js_DeleteConsumer(js, stream, durable, NULL, NULL);
	return 0;
}

int main(int argc, char **argv)
{
	struct natstool nt = {"nats-verify", "nats://127.0.0.1:4222", NULL, NULL, NULL};
	const char *stream, *acklog = NULL;
	long plen = -1;
	int opt, dump = 0, leader = 0;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	while ((opt = getopt(argc, argv, "s:S:a:p:d:L")) != -1) {
		if (natstool_opt(&nt, opt, optarg))
			continue;
		switch (opt) {
		case 'a':
			acklog = optarg;
			break;
		case 'p':
			plen = atol(optarg);
			break;
		case 'd':
			dump = atoi(optarg);
			break;
		case 'L':
			leader = 1;
			break;
		default:
			fprintf(stderr,
				"usage: nats-verify -s URL -S STREAM -a ACKLOG [-p LEN] [-d N]\n");
			return 2;
		}
	}
	if ((stream = nt.stream) == NULL || (acklog == NULL && !leader)) {
		fprintf(stderr, "nats-verify: -S and -a are needed\n");
		return 2;
	}
	if (natstool_connect(&nt, NULL) < 0)
		return 2;
	if ((s = js_GetStreamInfo(&si, nt.js, stream, NULL, &jerr)) != NATS_OK) {
		fprintf(stderr, "nats-verify: %s: %s\n", nt.url, natsStatus_GetText(s));
		return 2;
	}
	if (leader) {
		int ok = si->Cluster != NULL && si->Cluster->Leader != NULL;
		if (ok)
			printf("%s\n", si->Cluster->Leader);
		jsStreamInfo_Destroy(si);
		return ok ? 0 : 1;
	}
	uint64_t total = si->State.Msgs, acked0, other;
	struct tally t = {0};
	jsStreamInfo_Destroy(si);
	if (read_acklog(acklog, total, &acked0, &other) < 0 ||
	    read_stream(nt.js, stream, total, plen, dump, &t) < 0)
		return 2;

	uint64_t missing = 0, unexpected = 0;
	for (size_t i = 0; i < tcap; i++) {
		struct cnt *c = &tab[i];
		if (c->key == 0 || !(c->key & 1))
			continue;
		if (c->acked > c->stored)
			missing += c->acked - c->stored;
		else
			unexpected += c->stored - c->acked;
	}
	printf("acked0 %" PRIu64 " other %" PRIu64 " stream %" PRIu64 " read %" PRIu64
	       " missing %" PRIu64 " unexpected %" PRIu64 " duplicated %" PRIu64
	       " bad_payload %" PRIu64 " no_id %" PRIu64 "\n",
	       acked0, other, total, t.got, missing, unexpected, t.dup_ids, t.bad_payload, t.no_id);
	natstool_close(&nt);
	return missing || unexpected || t.dup_ids || t.bad_payload || t.no_id || t.got != total ? 1
												: 0;
}
