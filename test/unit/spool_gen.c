/*
 * spool-gen: write test segments with the spool writer API, for
 * test/spool-tool.bats (the tool under test only reads and takes).
 *
 *   spool-gen [-w WORKER] [-g FIRST] [-n RECORDS] [-s SEGMENTS] [-a] [-i]
 *             [-I IDENTITY | -1] DIR
 *
 * Writes SEGMENTS segments of RECORDS records each and seals them into
 * ready/; -a leaves the last one in active/, closed but not sealed (as a
 * writer that died). -i: after the first segment is open, read commands on
 * stdin: "w N" (write N records and fdatasync), "s" (seal, open the next),
 * "q" (exit without sealing); each answered with a line "ok NAME". Prints
 * every segment name it creates. Record g (from FIRST on) is fixed by g:
 * see rec_of(). -I: every record carries IDENTITY (format version 2).
 * -1: the segments are of format version 1, as a writer before identities
 * wrote them (the same records; the file header says version 1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool.h"

static char payload[128];
static const char *identity; /* -I */
static int version1;	     /* -1 */

static uint32_t rec_of(struct spool_rec *r, uint64_t g, unsigned worker)
{
	int n;

	memset(r, 0, sizeof(*r));
	r->ts_ns = 1796400000000000000ull + g * 1000;
	r->conn_seq = g / 4 + 1;
	for (int k = 0; k < 8; k++)
		r->submit_id[k] = (uint8_t)(g >> (56 - 8 * k));
	if (g % 2 == 1) {
		memcpy(r->conn_id, "c0nn", 4);
		r->conn_id[7] = (uint8_t)g;
		r->flags = SPOOL_FLAG_CONN_ID;
	}
	if (g % 3 == 2) {
		r->addr[15] = 1; /* ::1 */
	} else {
		r->addr[10] = r->addr[11] = 0xff;
		r->addr[12] = 127;
		r->addr[15] = 1;
	}
	r->port = (uint16_t)(40000 + g % 1000);
	r->worker = (uint16_t)worker;
	r->type = SPOOL_TYPE_SUBMIT;
	if (identity != NULL) {
		r->identity = (const uint8_t *)identity;
		r->identity_len = (uint8_t)strlen(identity);
	}
	if (g % 4 == 3) {
		/* Not text: base64 in the tool's output. */
		static const uint8_t bin[] = {0x00, 0x01, 0x02, 0xff, 0xfe};
		memcpy(payload, bin, sizeof(bin));
		payload[sizeof(bin)] = (char)g;
		n = (int)sizeof(bin) + 1;
	} else if (g % 4 == 2) {
		n = snprintf(payload, sizeof(payload), "say \"hi\"\n\t%llu", (unsigned long long)g);
	} else {
		n = snprintf(payload, sizeof(payload), "rec-%llu", (unsigned long long)g);
	}
	r->len = (uint32_t)n;
	return (uint32_t)n;
}

/* Open the next segment; with -1, its file header says version 1. */
static int seg_open(struct spool_seg *s, const char *dir, unsigned worker, uint64_t *last)
{
	char err[512];
	struct spool_file_hdr fh = {0};
	uint8_t b[SPOOL_FILE_HDR];

	if (spool_seg_open(s, dir, worker, 1, last, err, sizeof(err)) < 0) {
		fprintf(stderr, "spool-gen: %s\n", err);
		return -1;
	}
	if (!version1)
		return 0;
	fh.version = 1;
	fh.hdr_len = SPOOL_FILE_HDR;
	fh.worker = worker;
	fh.pid = (uint32_t)getpid();
	fh.gen = 1;
	fh.created_ns = s->created_ns;
	spool_file_header(b, &fh);
	if (pwrite(s->fd, b, sizeof(b), 0) != (ssize_t)sizeof(b) || fdatasync(s->fd) < 0) {
		perror("spool-gen: version 1 header");
		return -1;
	}
	return 0;
}

static int write_n(struct spool_seg *s, uint64_t *g, unsigned worker, int n)
{
	for (int i = 0; i < n; i++) {
		uint8_t hdr[SPOOL_REC_HDR + SPOOL_IDENTITY_MAX];
		struct spool_rec r;
		uint32_t len = rec_of(&r, (*g)++, worker);
		struct iovec iov[2] = {{hdr, 0}, {payload, len}};

		iov[0].iov_len = spool_rec_header(hdr, &r, payload);
		if (spool_seg_writev(s, iov, 2) < 0) {
			perror("spool-gen: writev");
			return -1;
		}
	}
	if (spool_seg_sync(s) < 0) {
		perror("spool-gen: fdatasync");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	unsigned worker = 1;
	uint64_t g = 0, last = 0;
	int nrec = 3, nseg = 1, leave_active = 0, interactive = 0, c;
	char err[512], line[128];
	struct spool_seg s;
	const char *dir;

	while ((c = getopt(argc, argv, "w:g:n:s:aiI:1")) != -1) {
		switch (c) {
		case 'w':
			worker = (unsigned)atoi(optarg);
			break;
		case 'g':
			g = strtoull(optarg, NULL, 10);
			break;
		case 'n':
			nrec = atoi(optarg);
			break;
		case 's':
			nseg = atoi(optarg);
			break;
		case 'a':
			leave_active = 1;
			break;
		case 'i':
			interactive = 1;
			break;
		case 'I':
			identity = optarg;
			break;
		case '1':
			version1 = 1;
			break;
		default:
			return 2;
		}
	}
	if (optind != argc - 1 || (identity != NULL && version1) ||
	    (identity != NULL &&
	     (strlen(identity) == 0 || strlen(identity) > SPOOL_IDENTITY_MAX))) {
		fprintf(stderr,
			"usage: spool-gen [-w W] [-g FIRST] [-n RECORDS] [-s SEGMENTS] [-a] "
			"[-i] [-I IDENTITY | -1] DIR\n");
		return 2;
	}
	dir = argv[optind];
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (spool_dirs(dir, err, sizeof(err)) < 0) {
		fprintf(stderr, "spool-gen: %s\n", err);
		return 1;
	}
	if (interactive) {
		if (seg_open(&s, dir, worker, &last) < 0)
			return 1;
		printf("ok %s\n", s.name);
		while (fgets(line, sizeof(line), stdin) != NULL) {
			if (line[0] == 'w') {
				if (write_n(&s, &g, worker, atoi(line + 1)) < 0)
					return 1;
			} else if (line[0] == 's') {
				if (spool_seg_seal(&s, dir) < 0 ||
				    seg_open(&s, dir, worker, &last) < 0) {
					fprintf(stderr, "spool-gen: seal or open failed\n");
					return 1;
				}
			} else if (line[0] == 'q') {
				printf("ok %s\n", s.name);
				return 0;
			}
			printf("ok %s\n", s.name);
		}
		return spool_seg_seal(&s, dir) < 0 ? 1 : 0;
	}
	for (int i = 0; i < nseg; i++) {
		if (seg_open(&s, dir, worker, &last) < 0)
			return 1;
		printf("%s\n", s.name);
		if (write_n(&s, &g, worker, nrec) < 0)
			return 1;
		if (leave_active && i == nseg - 1) {
			spool_seg_close(&s);
		} else if (spool_seg_seal(&s, dir) < 0) {
			perror("spool-gen: seal");
			return 1;
		}
	}
	return 0;
}
