/*
 * nats-ref: the reference for the forwarder's rate, as submit-ref is for the
 * TCP side. A minimal libnats JetStream asynchronous publisher: N messages
 * of SIZE bytes with the forwarder's headers (Nats-Msg-Id, Submit-Id, ...:
 * the same messages), at most INFLIGHT unacknowledged, into STREAM (created
 * if missing), then waits for every PubAck.
 *
 *   nats-ref -s nats://127.0.0.1:4222 -S STREAM -j SUBJECT -n N -z SIZE [-w INFLIGHT]
 *
 * Prints "sent N acked N seconds S rate R" (messages per second).
 */
#include <inttypes.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "natstool.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The stream on subject, created unless it exists. 0, or -1. */
static int make_stream(jsCtx *js, const char *name, const char *subject)
{
	jsStreamConfig sc;
	jsErrCode jerr = 0;
	natsStatus s;

	jsStreamConfig_Init(&sc);
	sc.Name = name;
	sc.Subjects = &subject;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	s = js_AddStream(NULL, js, &sc, NULL, &jerr);
	if (s != NATS_OK && jerr != JSStreamNameExistErr) {
		fprintf(stderr, "nats-ref: stream %s: %s (%d)\n", name, natsStatus_GetText(s),
			(int)jerr);
		return -1;
	}
	return 0;
}

/*
 * Publish message i asynchronously: the same message as the forwarder's,
 * its headers with values of the same lengths (docs/NATS.md). 0, or -1.
 */
static int publish(jsCtx *js, const char *subject, const char *data, long size, long i,
		   const char *host)
{
	natsMsg *m = NULL;
	char id[128], v[64];
	natsStatus s;

	natsMsg_Create(&m, subject, NULL, data, (int)size);
	snprintf(id, sizeof(id), "01796145027077218907-w000-p%07d:%ld:%s", (int)getpid(), i, host);
	natsMsgHeader_Set(m, "Nats-Msg-Id", id);
	snprintf(v, sizeof(v), "%016lx", (unsigned long)i);
	natsMsgHeader_Set(m, "Submit-Id", v);
	natsMsgHeader_Set(m, "Submit-Conn-Id", v);
	natsMsgHeader_Set(m, "Submit-Client", "127.0.0.1:54321");
	natsMsgHeader_Set(m, "Submit-Worker", "0");
	snprintf(v, sizeof(v), "%.0f", now_s() * 1e9);
	natsMsgHeader_Set(m, "Submit-Time", v);
	natsMsgHeader_Set(m, "Submit-Host", host);
	s = js_PublishMsgAsync(js, &m, NULL);
	natsMsg_Destroy(m);
	if (s != NATS_OK) {
		fprintf(stderr, "nats-ref: publish: %s\n", natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct natstool nt = {"nats-ref", "nats://127.0.0.1:4222", "REF", NULL, NULL};
	const char *subject = "ref.0";
	long n = 100000, size = 1024, inflight = 4096;
	jsOptions jo;
	natsStatus s;
	int opt;

	while ((opt = getopt(argc, argv, "s:S:j:n:z:w:")) != -1) {
		if (natstool_opt(&nt, opt, optarg))
			continue;
		switch (opt) {
		case 'j':
			subject = optarg;
			break;
		case 'n':
			n = atol(optarg);
			break;
		case 'z':
			size = atol(optarg);
			break;
		case 'w':
			inflight = atol(optarg);
			break;
		default:
			fprintf(stderr, "usage: nats-ref -s URL -S STREAM -j SUBJECT -n N -z SIZE "
					"[-w INFLIGHT]\n");
			return 2;
		}
	}
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = inflight;
	/* Wait for room in the window as the forwarder does; the default 200 ms fails on a loaded
	 * machine. */
	jo.PublishAsync.StallWait = 60000;
	if (natstool_connect(&nt, &jo) < 0 || make_stream(nt.js, nt.stream, subject) < 0)
		return 1;
	char *data = malloc((size_t)size + 1);
	if (data == NULL)
		return 1;
	for (long i = 0; i < size; i++)
		data[i] = (char)('a' + i % 26);
	char host[64] = "localhost";
	gethostname(host, sizeof(host) - 1);
	double t0 = now_s();
	for (long i = 0; i < n; i++)
		if (publish(nt.js, subject, data, size, i, host) < 0)
			return 1;
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = 60000;
	s = js_PublishAsyncComplete(nt.js, &po);
	double t = now_s() - t0;
	if (s != NATS_OK) {
		fprintf(stderr, "nats-ref: waiting for PubAcks: %s\n", natsStatus_GetText(s));
		return 1;
	}
	printf("sent %ld acked %ld seconds %.3f rate %.0f\n", n, n, t, (double)n / t);
	free(data);
	natstool_close(&nt);
	return 0;
}
