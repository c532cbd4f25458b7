/*
 * The spool leaf: CRC-32C vectors, header round trips, the writer, and
 * recovery of torn and corrupted segments (every truncation offset in the
 * last records, a bit flip at every byte of the middle ones).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "rand.h"
#include "spool.h"
#include "spool_recover.h"
#include "tap.h"

static char root[PATH_MAX];

/* snprintf for paths: the test's paths are short, truncation is not a case here. */
static void pathf(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pathf(char *out, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out, len, fmt, ap);
	va_end(ap);
}

/* ---- helpers ---- */

static void rm_rf(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	char p[PATH_MAX];

	if (d == NULL) {
		unlink(path);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		pathf(p, sizeof(p), "%s/%s", path, de->d_name);
		rm_rf(p);
	}
	closedir(d);
	rmdir(path);
}

/* A fresh spool directory under root. */
static void fresh(char *dir, size_t len, const char *name)
{
	char err[256];

	pathf(dir, len, "%s/%s", root, name);
	rm_rf(dir);
	if (spool_dirs(dir, err, sizeof(err)) < 0) {
		printf("Bail out! spool_dirs: %s\n", err);
		exit(1);
	}
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	*len = 0;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	b = malloc((size_t)st.st_size + 1);
	if (b != NULL && read(fd, b, (size_t)st.st_size) != st.st_size) {
		free(b);
		b = NULL;
	}
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static int spit(const char *path, const uint8_t *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	int ok = fd >= 0 && write(fd, b, len) == (ssize_t)len;

	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

static int exists(const char *dir, const char *sub, const char *name)
{
	char p[PATH_MAX];

	pathf(p, sizeof(p), "%s/%s/%s", dir, sub, name);
	return access(p, F_OK) == 0;
}

static int count_files(const char *dir, const char *sub)
{
	char p[PATH_MAX];
	struct dirent *de;
	int n = 0;
	DIR *d;

	pathf(p, sizeof(p), "%s/%s", dir, sub);
	if ((d = opendir(p)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Record i of the test segments: payload length and contents follow from i. */
static size_t pay_len(int i)
{
	static const size_t lens[] = {0, 1, 13, 100, 7, 64, 200, 31, 5, 90};
	return lens[i % 10];
}

static void pay_fill(uint8_t *p, int i)
{
	for (size_t k = 0; k < pay_len(i); k++)
		p[k] = (uint8_t)(i * 31 + k * 7 + 1);
}

static void rec_of(struct spool_rec *r, int i)
{
	memset(r, 0, sizeof(*r));
	r->ts_ns = 1700000000000000000ull + (uint64_t)i;
	r->conn_seq = (uint64_t)(i / 3 + 1);
	for (int k = 0; k < 8; k++) {
		r->submit_id[k] = (uint8_t)(i + k);
		r->conn_id[k] = (uint8_t)(0xA0 + k);
	}
	r->addr[10] = 0xff;
	r->addr[11] = 0xff;
	r->addr[12] = 127;
	r->addr[15] = (uint8_t)(i + 1);
	r->port = (uint16_t)(40000 + i);
	r->worker = 3;
	r->type = SPOOL_TYPE_SUBMIT;
	r->flags = (i % 2) ? SPOOL_FLAG_CONN_ID : 0;
	r->len = (uint32_t)pay_len(i);
}

static int rec_eq(const struct spool_rec *a, const struct spool_rec *b)
{
	return a->ts_ns == b->ts_ns && a->conn_seq == b->conn_seq &&
	       memcmp(a->submit_id, b->submit_id, 8) == 0 &&
	       memcmp(a->conn_id, b->conn_id, 8) == 0 && memcmp(a->addr, b->addr, 16) == 0 &&
	       a->port == b->port && a->worker == b->worker && a->type == b->type &&
	       a->flags == b->flags && a->len == b->len;
}

/* Append records [from, to) to s in one writev. */
static ssize_t write_recs(struct spool_seg *s, int from, int to)
{
	uint8_t hdr[16][SPOOL_REC_HDR], pay[16][256];
	struct iovec iov[32];
	int n = 0;

	for (int i = from; i < to && i - from < 16; i++) {
		struct spool_rec r;
		rec_of(&r, i);
		pay_fill(pay[i - from], i);
		spool_rec_header(hdr[i - from], &r, pay[i - from]);
		iov[n++] = (struct iovec){hdr[i - from], SPOOL_REC_HDR};
		iov[n++] = (struct iovec){pay[i - from], pay_len(i)};
	}
	return spool_seg_writev(s, iov, n);
}

/*
 * Read a segment file: the number of records if every one is whole, equal
 * to record i of the test pattern in order, and the file ends there; -1 if not.
 */
static int check_file(const char *path, int want_torn_ok)
{
	struct spool_reader rd;
	struct spool_rec rec, want;
	const uint8_t *p;
	uint8_t pay[256];
	uint64_t off;
	int fd = open(path, O_RDONLY), rc, n = 0;

	if (fd < 0)
		return -1;
	if (spool_reader_open(&rd, fd) != 0) {
		close(fd);
		return -1;
	}
	while ((rc = spool_read_next(&rd, &rec, &p, &off)) == 1) {
		rec_of(&want, n);
		pay_fill(pay, n);
		if (!rec_eq(&rec, &want) || memcmp(p, pay, rec.len) != 0) {
			rc = -9;
			break;
		}
		n++;
	}
	spool_reader_close(&rd);
	close(fd);
	if (rc == 0 || (want_torn_ok && rc == SPOOL_TORN))
		return n;
	return -1;
}

/* ---- CRC ---- */

static void test_crc(void)
{
	static const struct {
		const char *name;
		size_t len;
		int fill; /* -1 ascending, -2 descending, -3 "123456789", else the byte */
		uint32_t want;
	} vec[] = {
	    {"empty", 0, 0, 0x00000000},
	    {"\"123456789\"", 9, -3, 0xE3069283},
	    {"32 zeros (RFC 3720 B.4)", 32, 0x00, 0x8A9136AA},
	    {"32 x 0xff (RFC 3720 B.4)", 32, 0xff, 0x62A8AB43},
	    {"0..31 (RFC 3720 B.4)", 32, -1, 0x46DD794E},
	    {"31..0 (RFC 3720 B.4)", 32, -2, 0x113FDB5C},
	};
	uint8_t b[64];

	diag("CRC-32C hardware path: %s", crc32c_hw() ? "yes" : "no");
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		for (size_t k = 0; k < vec[i].len; k++)
			b[k] = vec[i].fill == -1   ? (uint8_t)k
			       : vec[i].fill == -2 ? (uint8_t)(31 - k)
			       : vec[i].fill == -3 ? (uint8_t)('1' + k)
						   : (uint8_t)vec[i].fill;
		ok(crc32c(0, b, vec[i].len) == vec[i].want, "crc32c %s = %08x", vec[i].name,
		   vec[i].want);
		ok(crc32c_sw(0, b, vec[i].len) == vec[i].want, "table crc32c %s = %08x",
		   vec[i].name, vec[i].want);
	}

	/* Random lengths and alignments: both paths agree, and chaining equals one call. */
	static uint8_t buf[70000];
	int agree = 1, chain = 1;
	for (size_t k = 0; k < sizeof(buf); k++)
		buf[k] = (uint8_t)test_rand();
	for (int t = 0; t < 2000; t++) {
		size_t off = test_rand() % 64, len = test_rand() % (t < 1000 ? 100 : 65000);
		size_t cut = len ? test_rand() % len : 0;
		uint32_t hw = crc32c(0, buf + off, len);
		if (hw != crc32c_sw(0, buf + off, len))
			agree = 0;
		if (crc32c(crc32c(0, buf + off, cut), buf + off + cut, len - cut) != hw ||
		    crc32c_sw(crc32c_sw(0, buf + off, cut), buf + off + cut, len - cut) != hw)
			chain = 0;
	}
	ok(agree, "hardware and table CRC agree on 2000 random buffers");
	ok(chain, "chained CRC equals the CRC of the whole");
}

/*
 * spool_rec_encode (the worker's staging path: header and payload in one
 * buffer, one CRC pass) gives the
 * same bytes as spool_rec_header followed by the payload, at every length
 * up to past the staging threshold and at every alignment of both sides.
 */
static void test_encode(void)
{
	static uint8_t src[1100], out[1200], want[1200];
	struct spool_rec r;
	int same = 1, crc_ok = 1;

	memset(&r, 0, sizeof(r));
	r.ts_ns = 1796400000200000000ull;
	r.conn_seq = 7;
	r.type = SPOOL_TYPE_SUBMIT;
	r.worker = 3;
	for (size_t k = 0; k < sizeof(src); k++)
		src[k] = (uint8_t)test_rand();
	for (uint32_t len = 0; len <= 1024 && same; len++) {
		size_t so = len % 8, oo = (len / 8) % 8;
		r.len = len;
		memset(out, 0xa5, sizeof(out));
		spool_rec_header(want, &r, src + so);
		memcpy(want + SPOOL_REC_HDR, src + so, len);
		size_t n = spool_rec_encode(out + oo, &r, src + so);
		uint8_t *one[1] = {out + oo};
		spool_rec_crc_fill(one, 1);
		same = n == SPOOL_REC_HDR + len && memcmp(out + oo, want, n) == 0 &&
		       out[oo + n] == 0xa5;
		uint32_t c = (uint32_t)want[0] | (uint32_t)want[1] << 8 | (uint32_t)want[2] << 16 |
			     (uint32_t)want[3] << 24;
		crc_ok = crc_ok && crc32c_sw(0, want + 4, SPOOL_REC_HDR - 4 + len) == c;
	}
	ok(same, "spool_rec_encode = header + payload at lengths 0..1024, any alignment");
	ok(crc_ok, "its CRC equals the table CRC over bytes 4..rec_len-1");

	/* The next record from the previous header: only rec_len, submit_id and crc differ. */
	static uint8_t prev[SPOOL_REC_HDR];
	int like = 1;
	memcpy(r.conn_id, "\xa0\xa1\xa2\xa3\xa4\xa5\xa6\xa7", 8);
	r.flags = SPOOL_FLAG_CONN_ID;
	r.port = 50000;
	r.addr[15] = 1;
	r.len = 3;
	spool_rec_header(prev, &r, src);
	for (uint32_t len = 0; len <= 1024 && like; len += 7) {
		for (int copy = 0; copy <= 1; copy++) {
			memcpy(r.submit_id, src + len % 100, 8);
			r.len = len;
			spool_rec_header(want, &r, src + 9);
			memcpy(want + SPOOL_REC_HDR, src + 9, len);
			memset(out, 0xa5, sizeof(out));
			size_t n = spool_rec_encode_like(out + 1, prev, src + len % 100, src + 9,
							 len, copy);
			uint8_t *one[1] = {out + 1};
			if (copy)
				spool_rec_crc_fill(one, 1);
			size_t want_n = copy ? SPOOL_REC_HDR + len : SPOOL_REC_HDR;
			like = like && n == want_n && memcmp(out + 1, want, n) == 0 &&
			       out[1 + n] == 0xa5;
		}
	}
	ok(like, "spool_rec_encode_like = spool_rec_header of the same fields, with and without "
		 "the payload copy");

	/*
	 * A batch as the worker stages it: records of mixed lengths back to back
	 * from an odd offset, 0 to 12 of them (three at a time, then the rest).
	 */
	static uint8_t stage[12 * (SPOOL_REC_HDR + 600) + 8], wants[12][SPOOL_REC_HDR];
	int batch_ok = 1;
	for (int t = 0; t < 300 && batch_ok; t++) {
		size_t n = (size_t)t % 13;
		uint8_t *rec[12], *sp = stage + 1 + t % 7;
		for (size_t i = 0; i < n; i++) {
			r.len = (uint32_t)(test_rand() % (t < 150 ? 40 : 600));
			memcpy(r.submit_id, src + i, 8);
			spool_rec_header(wants[i], &r, src + i);
			rec[i] = sp;
			sp += spool_rec_encode(sp, &r, src + i);
		}
		spool_rec_crc_fill(rec, n);
		for (size_t i = 0; i < n; i++)
			batch_ok = batch_ok && memcmp(rec[i], wants[i], SPOOL_REC_HDR) == 0;
	}
	ok(batch_ok, "spool_rec_crc_fill over batches of 0..12 staged records of mixed lengths "
		     "gives each the CRC of spool_rec_header");
}

/* The worked example of docs/SPOOL.md (version 1), byte for byte. */
static const uint8_t golden_v1[133] = {
    0x53, 0x55, 0x42, 0x53, 0x50, 0x4f, 0x4f, 0x4c, 0x01, 0x00, 0x40, 0x00, 0x02, 0x00, 0x00,
    0x00, 0x12, 0xa1, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x15, 0xcd, 0xde, 0x49, 0x48, 0x18,
    0xee, 0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x08, 0x7a, 0xf6, 0x6b, 0x89, 0x66, 0x0d, 0xe5, 0x45, 0x00, 0x00, 0x00, 0x00, 0xc2, 0x6e,
    0x4e, 0x48, 0x18, 0xee, 0x18, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02,
    0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x7f, 0x00, 0x00, 0x01,
    0x50, 0xc3, 0x02, 0x00, 0x01, 0x01, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
};

/*
 * The worked examples' file header (of version) into out, and their
 * record's fields but the identity: docs/SPOOL.md, "Worked examples".
 */
static void example(uint8_t out[SPOOL_FILE_HDR], uint16_t version, struct spool_rec *r)
{
	struct spool_file_hdr fh = {0};

	fh.version = version;
	fh.worker = 2;
	fh.pid = 41234;
	fh.gen = 1;
	fh.created_ns = 1796400000123456789ull;
	spool_file_header(out, &fh);
	memset(r, 0, sizeof(*r));
	r->ts_ns = 1796400000200000000ull;
	r->conn_seq = 1;
	for (int i = 0; i < 8; i++) {
		r->submit_id[i] = (uint8_t)(i + 1);
		r->conn_id[i] = (uint8_t)(0xa0 + i);
	}
	r->addr[10] = r->addr[11] = 0xff;
	r->addr[12] = 127;
	r->addr[15] = 1;
	r->port = 50000;
	r->worker = 2;
	r->type = SPOOL_TYPE_SUBMIT;
	r->flags = SPOOL_FLAG_CONN_ID;
	r->len = 5;
}

static void test_golden(void)
{
	struct spool_rec r;
	uint8_t got[133];

	example(got, 1, &r);
	spool_rec_header(got + 64, &r, "hello");
	memcpy(got + 128, "hello", 5);
	ok(memcmp(got, golden_v1, sizeof(golden_v1)) == 0,
	   "the worked example of docs/SPOOL.md, byte for byte");
}

/* The worked example of version 2 in docs/SPOOL.md: the same record with identity "device-7". */
static const uint8_t golden_v2[141] = {
    0x53, 0x55, 0x42, 0x53, 0x50, 0x4f, 0x4f, 0x4c, 0x02, 0x00, 0x40, 0x00, 0x02, 0x00, 0x00, 0x00,
    0x12, 0xa1, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x15, 0xcd, 0xde, 0x49, 0x48, 0x18, 0xee, 0x18,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x11, 0xa9, 0x82,
    0x77, 0xbc, 0x65, 0x6e, 0x4d, 0x00, 0x00, 0x00, 0x00, 0xc2, 0x6e, 0x4e, 0x48, 0x18, 0xee, 0x18,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xff, 0xff, 0x7f, 0x00, 0x00, 0x01, 0x50, 0xc3, 0x02, 0x00, 0x01, 0x01, 0x08, 0x00,
    0x64, 0x65, 0x76, 0x69, 0x63, 0x65, 0x2d, 0x37, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
};

static void rec_ident(struct spool_rec *r, const char *ident)
{
	rec_of(r, 1);
	r->identity = (const uint8_t *)ident;
	r->identity_len = (uint8_t)strlen(ident);
}

/* The first record of the segment at path, with its identity and payload: the reader's return. */
static int read_first(const char *path, struct spool_rec *rec, uint8_t *ident, uint8_t *pay,
		      const char **why)
{
	struct spool_reader rd;
	const uint8_t *p;
	uint64_t off;
	int fd = open(path, O_RDONLY), rc;

	if (fd < 0)
		return -1;
	rc = spool_reader_open(&rd, fd);
	if (rc == 0)
		rc = spool_read_next(&rd, rec, &p, &off);
	if (rc == 1) {
		if (rec->identity_len > 0)
			memcpy(ident, rec->identity, rec->identity_len);
		memcpy(pay, p, rec->len);
	}
	*why = rd.why != NULL ? rd.why : "";
	spool_reader_close(&rd);
	close(fd);
	return rc;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/*
 * Format version 2: the identity after the header, its length in byte 62.
 * The reader and recovery read versions 1 and 2 alike; an identity only in 2.
 */
static void test_versions(void)
{
	static uint8_t got[141], buf[64 + 128 + 700], want[64 + 128 + 700], ident[128], pay[700];
	struct spool_file_hdr h3;
	struct spool_rec r, d;
	struct spool_recovery rv;
	const char *why;
	char dir[PATH_MAX], path[PATH_MAX], err[256], name[SPOOL_NAME_MAX];
	uint8_t *one[1] = {buf};
	uint32_t crc;
	size_t n;
	int like = 1;

	example(got, 2, &r);
	r.identity = (const uint8_t *)"device-7";
	r.identity_len = 8;
	r.len = 5;
	is_int((int)spool_rec_header(got + 64, &r, "hello"), 72,
	       "spool_rec_header returns 64 + the identity's length");
	memcpy(got + 136, "hello", 5);
	ok(memcmp(got, golden_v2, sizeof(golden_v2)) == 0,
	   "the version 2 worked example of docs/SPOOL.md, byte for byte");
	is_int((int)spool_rec_size(&r), 77, "spool_rec_size: header, identity and payload");
	memset(buf, 0xa5, sizeof(buf));
	n = spool_rec_encode(buf, &r, "hello");
	spool_rec_crc_fill(one, 1);
	ok(n == 77 && memcmp(buf, golden_v2 + 64, 77) == 0 && buf[77] == 0xa5,
	   "spool_rec_encode with an identity: the same bytes");

	/* encode_like after a record with an identity, at payload lengths 0..600. */
	uint8_t prev[64 + 128];
	rec_ident(&r, "spiffe://fleet/device-7");
	r.len = 3;
	spool_rec_header(prev, &r, "abc");
	for (uint32_t len = 0; len <= 600 && like; len += 13) {
		for (int copy = 0; copy <= 1; copy++) {
			for (uint32_t k = 0; k < len; k++)
				pay[k] = (uint8_t)(k * 13 + len);
			memcpy(r.submit_id, pay + 1, 8);
			r.len = len;
			size_t hn = spool_rec_header(want, &r, pay);
			memcpy(want + hn, pay, len);
			memset(buf, 0xa5, sizeof(buf));
			n = spool_rec_encode_like(buf, prev, r.submit_id, pay, len, copy);
			if (copy)
				spool_rec_crc_fill(one, 1);
			like = like && n == (copy ? hn + len : hn) && memcmp(buf, want, n) == 0 &&
			       buf[n] == 0xa5;
		}
	}
	ok(like, "spool_rec_encode_like keeps the previous record's identity, with and without "
		 "the copy");

	/* Decoding: the bounds of the identity's length. */
	rec_ident(&r, "device-7");
	r.len = 10;
	memset(pay, 'x', 10);
	spool_rec_header(buf, &r, pay);
	is_int((int)spool_rec_decode(buf, &d, &crc), 64 + 8 + 10,
	       "decode: rec_len with the identity");
	ok(d.identity_len == 8 && d.len == 10 && d.identity == NULL,
	   "decode: identity 8 bytes, payload 10, the identity's place left to the reader");
	buf[62] = 129;
	is_int((int)spool_rec_decode(buf, &d, &crc), 0,
	       "decode: an identity over 128 bytes is bad");
	buf[62] = 19;
	is_int((int)spool_rec_decode(buf, &d, &crc), 0, "decode: an identity past rec_len is bad");
	buf[62] = 18;
	is_int((int)spool_rec_decode(buf, &d, &crc), 82, "decode: an identity up to rec_len fits");
	buf[62] = 8;
	buf[63] = 1;
	is_int((int)spool_rec_decode(buf, &d, &crc), 0, "decode: byte 63 not zero is bad");

	/* The reader, on files of both versions. */
	fresh(dir, sizeof(dir), "versions");
	pathf(path, sizeof(path), "%s/v2.seg", dir);
	spit(path, golden_v2, sizeof(golden_v2));
	memset(&d, 0, sizeof(d));
	is_int(read_first(path, &d, ident, pay, &why), 1, "reader: the version 2 example");
	ok(d.identity_len == 8 && memcmp(ident, "device-7", 8) == 0 && d.len == 5 &&
	       memcmp(pay, "hello", 5) == 0 && d.port == 50000,
	   "reader: identity device-7, payload hello");
	pathf(path, sizeof(path), "%s/v1.seg", dir);
	spit(path, golden_v1, sizeof(golden_v1));
	d.identity = (const uint8_t *)"stale";
	is_int(read_first(path, &d, ident, pay, &why), 1, "reader: the version 1 example");
	ok(d.identity_len == 0 && d.identity == NULL && d.len == 5 && memcmp(pay, "hello", 5) == 0,
	   "reader: a version 1 record has no identity; payload hello");
	/* A version 1 record that claims an identity, its CRC right: bad. */
	memcpy(buf, golden_v1, sizeof(golden_v1));
	buf[64 + 62] = 2;
	put_le32(buf + 64, crc32c(0, buf + 64 + 4, sizeof(golden_v1) - 64 - 4));
	spit(path, buf, sizeof(golden_v1));
	is_int(read_first(path, &d, ident, pay, &why), SPOOL_BAD,
	       "reader: an identity in a version 1 segment is bad (%s)", why);
	memcpy(buf, golden_v2, 64);
	buf[8] = 3;
	put_le32(buf + 60, crc32c(0, buf, 60));
	is_int(spool_file_header_check(buf, &h3), -1, "file header: version 3 is refused");
	is_int(spool_file_header_check(golden_v1, &h3), 0, "file header: version 1 is read");
	is_int(h3.version, 1, "file header: version 1 as such");

	/* Recovery of a version 1 segment a writer left with a torn tail. */
	spool_seg_name(name, 1796400000123456789ull, 2, 41234);
	pathf(path, sizeof(path), "%s/active/%s", dir, name);
	memcpy(buf, golden_v1, sizeof(golden_v1));
	memcpy(buf + sizeof(golden_v1), golden_v1 + 64, 30); /* half a second record */
	spit(path, buf, sizeof(golden_v1) + 30);
	is_int(spool_recover(dir, name, &rv, err, sizeof(err)), 0, "recover a version 1 segment");
	ok(rv.action == SPOOL_ACT_TRUNCATED && rv.records == 1 && rv.truncated_bytes == 30,
	   "its torn tail is cut, its record kept (%s)", spool_recover_action_str(rv.action));
	pathf(path, sizeof(path), "%s/ready/%s", dir, name);
	is_int(read_first(path, &d, ident, pay, &why), 1, "the sealed version 1 segment reads");
	ok(d.identity_len == 0 && memcmp(pay, "hello", 5) == 0, "its record as written");
	/* And a version 2 segment with an identity, torn the same way. */
	spool_seg_name(name, 1796400000123456790ull, 2, 41234);
	pathf(path, sizeof(path), "%s/active/%s", dir, name);
	memcpy(buf, golden_v2, sizeof(golden_v2));
	memcpy(buf + sizeof(golden_v2), golden_v2 + 64, 70);
	spit(path, buf, sizeof(golden_v2) + 70);
	is_int(spool_recover(dir, name, &rv, err, sizeof(err)), 0, "recover a version 2 segment");
	ok(rv.action == SPOOL_ACT_TRUNCATED && rv.records == 1 && rv.truncated_bytes == 70,
	   "its torn tail is cut, its record kept");
	pathf(path, sizeof(path), "%s/ready/%s", dir, name);
	is_int(read_first(path, &d, ident, pay, &why), 1, "the sealed version 2 segment reads");
	ok(d.identity_len == 8 && memcmp(ident, "device-7", 8) == 0, "its identity kept");
}

/* ---- headers and names ---- */

static void test_headers(void)
{
	struct spool_file_hdr fh = {0}, got;
	uint8_t b[SPOOL_FILE_HDR], payload[100];
	struct spool_rec r, d;
	uint32_t crc;
	int all_bad = 1;

	fh.version = SPOOL_VERSION;
	fh.worker = 7;
	fh.pid = 123456;
	fh.gen = 9;
	fh.created_ns = 1796400000123456789ull;
	spool_file_header(b, &fh);
	ok(memcmp(b, "SUBSPOOL", 8) == 0 && b[8] == 2 && b[9] == 0 && b[10] == 64 && b[11] == 0,
	   "file header: magic, version 2, length 64 (little-endian)");
	is_int(spool_file_header_check(b, &got), 0, "file header checks");
	ok(got.worker == 7 && got.pid == 123456 && got.gen == 9 &&
	       got.created_ns == 1796400000123456789ull && got.version == 2 && got.hdr_len == 64,
	   "file header round trip");
	for (int i = 0; i < SPOOL_FILE_HDR; i++) {
		b[i] ^= 0x10;
		if (spool_file_header_check(b, &got) == 0)
			all_bad = 0;
		b[i] ^= 0x10;
	}
	ok(all_bad, "a flipped bit anywhere in the file header is rejected");

	rec_of(&r, 3);
	pay_fill(payload, 3);
	uint8_t h[SPOOL_REC_HDR];
	spool_rec_header(h, &r, payload);
	is_int(spool_rec_decode(h, &d, &crc), 64 + 100, "record: rec_len = 64 + payload");
	ok(rec_eq(&r, &d), "record header round trip");
	ok(crc == crc32c(crc32c(0, h + 4, 60), payload, 100),
	   "record crc covers bytes 4..63 and the payload");
	ok(h[56] == (uint8_t)(40003 & 0xff) && h[57] == (uint8_t)(40003 >> 8) && h[58] == 3 &&
	       h[60] == 1 && h[62] == 0 && h[63] == 0,
	   "record: port and worker little-endian, type 1, reserved zero");

	static const struct {
		uint32_t rec_len;
		uint32_t want;
	} lens[] = {{0, 0},
		    {63, 0},
		    {64, 64},
		    {SPOOL_REC_MAX, SPOOL_REC_MAX},
		    {SPOOL_REC_MAX + 1, 0},
		    {0xffffffffu, 0}};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		h[4] = (uint8_t)lens[i].rec_len;
		h[5] = (uint8_t)(lens[i].rec_len >> 8);
		h[6] = (uint8_t)(lens[i].rec_len >> 16);
		h[7] = (uint8_t)(lens[i].rec_len >> 24);
		is_int(spool_rec_decode(h, &d, &crc), lens[i].want, "rec_len %u decodes as %u",
		       lens[i].rec_len, lens[i].want);
	}
}

static void test_names(void)
{
	char name[SPOOL_NAME_MAX];
	uint64_t ns;
	unsigned w;
	long pid;

	spool_seg_name(name, 1796400000123456789ull, 2, 41234);
	ok(strcmp(name, "01796400000123456789-w002-p41234.seg") == 0, "segment name: %s", name);
	ok(spool_seg_name_parse(name, &ns, &w, &pid) == 0 && ns == 1796400000123456789ull &&
	       w == 2 && pid == 41234,
	   "segment name parses back");
	static const char *const bad[] = {
	    "0179640000012345678-w002-p41234.seg",	 "01796400000123456789-w02-p41234.seg",
	    "01796400000123456789-w002-p.seg",		 "01796400000123456789-w002-p41234.sex",
	    ".01796400000123456789-w002-p1.seg.salvage", "01796400000123456789-x002-p41234.seg",
	    "0179640000012345678a-w002-p41234.seg",	 ""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ok(spool_seg_name_parse(bad[i], NULL, NULL, NULL) < 0, "not a segment name: \"%s\"",
		   bad[i]);
}

/* ---- writer ---- */

static void test_writer(void)
{
	char dir[PATH_MAX], path[PATH_MAX], err[256];
	struct spool_seg s, s2;
	uint64_t last = 0;

	fresh(dir, sizeof(dir), "writer");
	is_int(spool_seg_open(&s, dir, 3, 1, &last, err, sizeof(err)), 0, "open a segment");
	ok(last == s.created_ns && s.size == SPOOL_FILE_HDR && s.fd >= 0, "size 64, last_ns set");
	ok(exists(dir, SPOOL_ACTIVE, s.name), "it is in active/");

	/* The writer's lock is what recovery tests. */
	pathf(path, sizeof(path), "%s/active/%s", dir, s.name);
	int fd = open(path, O_RDONLY);
	ok(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK,
	   "an open segment is locked");
	if (fd >= 0)
		close(fd);
	struct spool_recovery rv;
	ok(spool_recover(dir, s.name, &rv, err, sizeof(err)) == 0 &&
	       rv.action == SPOOL_ACT_LOCKED && exists(dir, SPOOL_ACTIVE, s.name),
	   "recovery leaves a live writer's segment alone");

	uint64_t want = SPOOL_FILE_HDR;
	for (int i = 0; i < 30; i += 5) {
		ssize_t n = write_recs(&s, i, i + 5);
		for (int k = i; k < i + 5; k++)
			want += SPOOL_REC_HDR + pay_len(k);
		if (n < 0)
			break;
	}
	is_int((long long)s.size, (long long)want, "size counts every record written");
	is_int(spool_seg_sync(&s), 0, "fdatasync");
	is_int(check_file(path, 0), 30, "reader gets the 30 records back, in order, whole");

	/* More iovecs than IOV_MAX in one call. */
	{
		static uint8_t one = 'x';
		int cnt = IOV_MAX * 2 + 3;
		struct iovec *iov = calloc((size_t)cnt, sizeof(*iov));
		for (int i = 0; i < cnt; i++)
			iov[i] = (struct iovec){&one, 1};
		uint64_t before = s.size;
		ok(spool_seg_writev(&s, iov, cnt) == cnt && s.size == before + (uint64_t)cnt,
		   "writev of %d iovecs writes them all", cnt);
		free(iov);
		if (ftruncate(s.fd, (off_t)before) == 0)
			s.size = before;
	}

	/* A batch that fails halfway (file size limit) leaves nothing behind. */
	{
		struct rlimit old, lim;
		struct stat st;
		void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
		uint64_t before = s.size;

		getrlimit(RLIMIT_FSIZE, &old);
		lim = old;
		lim.rlim_cur = before + 100;
		setrlimit(RLIMIT_FSIZE, &lim);
		ssize_t n = write_recs(&s, 30, 36);
		int e = errno;
		setrlimit(RLIMIT_FSIZE, &old);
		signal(SIGXFSZ, prev);
		ok(n == -1 && e == EFBIG, "a batch past the file size limit fails (%s)",
		   strerror(e));
		ok(fstat(s.fd, &st) == 0 && (uint64_t)st.st_size == before && s.size == before &&
		       !s.trunc_failed,
		   "the failed batch is truncated away");
		ok(write_recs(&s, 30, 33) > 0, "the next batch is written");
		is_int(check_file(path, 0), 33, "33 whole records, nothing of the failed batch");
	}

	/* Sealing: ready/, the lock is gone, active/ is empty. */
	char name[SPOOL_NAME_MAX];
	pathf(name, sizeof(name), "%s", s.name);
	is_int(spool_seg_seal(&s, dir), 0, "seal");
	ok(s.fd == -1 && exists(dir, SPOOL_READY, name) && !exists(dir, SPOOL_ACTIVE, name),
	   "a sealed segment is in ready/, not in active/");

	/* Names: newer than last_ns even if the clock says otherwise. */
	uint64_t future = last + 1000000000000ull;
	last = future;
	is_int(spool_seg_open(&s2, dir, 3, 1, &last, err, sizeof(err)), 0, "open another");
	ok(s2.created_ns == future + 1 && last == future + 1, "created_ns = last_ns + 1 when the "
							      "clock is behind");
	ok(strcmp(s2.name, name) > 0, "the newer segment's name sorts after the older");
	is_int(spool_seg_seal(&s2, dir), 0, "seal an empty segment");
	ok(!exists(dir, SPOOL_ACTIVE, s2.name) && !exists(dir, SPOOL_READY, s2.name),
	   "an empty segment is deleted, not handed over");

	is_int(spool_seg_open(&s2, dir, 3, 1, &last, err, sizeof(err)), 0, "open a third");
	pathf(name, sizeof(name), "%s", s2.name);
	ok(write_recs(&s2, 0, 2) > 0, "write to it");
	is_int(spool_seg_suspect(&s2, dir), 0, "set it aside as suspect");
	ok(s2.fd == -1 && exists(dir, SPOOL_SUSPECT, name) && !exists(dir, SPOOL_ACTIVE, name),
	   "a suspect segment is in suspect/");

	ok(spool_seg_open(&s2, "/nonexistent/spool", 0, 0, NULL, err, sizeof(err)) == -1 &&
	       strstr(err, "/nonexistent/spool") != NULL,
	   "open in a missing directory fails with a message: %s", err);
}

/* The reader on a file that grows under it, as cat --follow reads one. */
static void test_reader_growing(void)
{
	char dir[PATH_MAX], path[PATH_MAX], err[256];
	struct spool_reader rd;
	struct spool_rec rec;
	const uint8_t *p;
	struct spool_seg s;
	uint64_t off;
	int fd;

	fresh(dir, sizeof(dir), "grow");
	if (spool_seg_open(&s, dir, 3, 1, NULL, err, sizeof(err)) < 0) {
		ok(0, "open: %s", err);
		return;
	}
	pathf(path, sizeof(path), "%s/active/%s", dir, s.name);
	fd = open(path, O_RDONLY);
	is_int(spool_reader_open(&rd, fd), 0, "reader opens a new segment");
	is_int(spool_read_next(&rd, &rec, &p, &off), 0, "nothing in it yet: end");
	ok(write_recs(&s, 0, 2) > 0, "append two records");
	ok(spool_read_next(&rd, &rec, &p, &off) == 1 && off == 64 && rec.len == pay_len(0),
	   "the first appears");
	ok(spool_read_next(&rd, &rec, &p, &off) == 1 && rec.len == pay_len(1), "the second");
	is_int(spool_read_next(&rd, &rec, &p, &off), 0, "end again");

	/* Half a record: torn, and the reader stays where it is. */
	uint8_t hdr[SPOOL_REC_HDR], pay[256];
	struct spool_rec r;
	rec_of(&r, 2);
	pay_fill(pay, 2);
	spool_rec_header(hdr, &r, pay);
	uint64_t at = s.size;
	ok(pwrite(s.fd, hdr, 40, (off_t)at) == 40, "write 40 bytes of a record header");
	ok(spool_read_next(&rd, &rec, &p, &off) == SPOOL_TORN && off == at, "torn at %llu",
	   (unsigned long long)at);
	ok(pwrite(s.fd, hdr + 40, 24, (off_t)(at + 40)) == 24 &&
	       pwrite(s.fd, pay, 5, (off_t)(at + 64)) == 5,
	   "the rest of the header and 5 payload bytes");
	ok(spool_read_next(&rd, &rec, &p, &off) == SPOOL_TORN && off == at, "still torn");
	ok(pwrite(s.fd, pay + 5, pay_len(2) - 5, (off_t)(at + 69)) == (ssize_t)(pay_len(2) - 5),
	   "the rest of the payload");
	ok(spool_read_next(&rd, &rec, &p, &off) == 1 && off == at && rec_eq(&rec, &r) &&
	       memcmp(p, pay, pay_len(2)) == 0,
	   "now whole, read from where it stopped");
	spool_reader_close(&rd);
	close(fd);
	spool_seg_close(&s);
}

/* ---- recovery ---- */

#define NREC 10

/* Build a sealed test segment of NREC records; its bytes and record offsets. */
static uint8_t *build_segment(const char *dir, char *name, uint64_t *offs, size_t *len)
{
	char err[256], path[PATH_MAX];
	struct spool_seg s;

	if (spool_seg_open(&s, dir, 3, 1, NULL, err, sizeof(err)) < 0)
		return NULL;
	for (int i = 0; i < NREC; i++) {
		offs[i] = s.size;
		if (write_recs(&s, i, i + 1) < 0)
			return NULL;
	}
	offs[NREC] = s.size;
	pathf(name, SPOOL_NAME_MAX, "%s", s.name);
	if (spool_seg_seal(&s, dir) < 0)
		return NULL;
	pathf(path, sizeof(path), "%s/ready/%s", dir, name);
	uint8_t *b = slurp(path, len);
	unlink(path);
	return b;
}

/* How many whole records end at or before byte t. */
static int whole_before(const uint64_t *offs, uint64_t t)
{
	int n = 0;

	while (n < NREC && offs[n + 1] <= t)
		n++;
	return n;
}

static void test_torn(void)
{
	char dir[PATH_MAX], name[SPOOL_NAME_MAX], path[PATH_MAX], err[256];
	uint64_t offs[NREC + 1];
	size_t len;
	uint8_t *seg;
	int cases = 0, good = 0, zcases = 0, zgood = 0;

	fresh(dir, sizeof(dir), "torn");
	seg = build_segment(dir, name, offs, &len);
	if (!ok(seg != NULL && len == offs[NREC], "build a segment of %d records", NREC))
		return;
	pathf(path, sizeof(path), "%s/active/%s", dir, name);

	/* Cut at every byte inside the last three records (and the empty tail). */
	for (uint64_t t = offs[NREC - 3]; t < len; t++) {
		struct spool_recovery rv;
		char ready[PATH_MAX];
		int n = whole_before(offs, t), r, pass;

		spit(path, seg, (size_t)t);
		r = spool_recover(dir, name, &rv, err, sizeof(err));
		pathf(ready, sizeof(ready), "%s/ready/%s", dir, name);
		pass = r == 0 && rv.records == (uint64_t)n && !exists(dir, SPOOL_ACTIVE, name) &&
		       count_files(dir, SPOOL_QUARANTINE) == 0 && check_file(ready, 0) == n;
		if (t == offs[n])
			pass = pass && rv.action == SPOOL_ACT_SEALED && rv.truncated_bytes == 0;
		else
			pass = pass && rv.action == SPOOL_ACT_TRUNCATED &&
			       rv.truncated_bytes == t - offs[n] && rv.bad_offset == offs[n];
		if (!pass)
			diag("cut at %llu: rc %d action %s records %llu truncated %llu (%s)",
			     (unsigned long long)t, r, spool_recover_action_str(rv.action),
			     (unsigned long long)rv.records, (unsigned long long)rv.truncated_bytes,
			     r < 0 ? err : "");
		cases++;
		good += pass;
		unlink(ready);
	}
	ok(cases > 0 && good == cases,
	   "cut at each of %d offsets: a valid prefix, torn bytes counted (%d good)", cases, good);

	/* Pages never written: zeros from every offset of the last three records on. */
	for (uint64_t t = offs[NREC - 3]; t < len; t++) {
		struct spool_recovery rv;
		char ready[PATH_MAX];
		int n = whole_before(offs, t), pass;
		uint8_t *z = malloc(len);

		memcpy(z, seg, len);
		memset(z + t, 0, len - t);
		spit(path, z, len);
		free(z);
		pass = spool_recover(dir, name, &rv, err, sizeof(err)) == 0 &&
		       rv.action == SPOOL_ACT_TRUNCATED && rv.records == (uint64_t)n &&
		       rv.truncated_bytes == len - offs[n] &&
		       count_files(dir, SPOOL_QUARANTINE) == 0;
		pathf(ready, sizeof(ready), "%s/ready/%s", dir, name);
		pass = pass && check_file(ready, 0) == n;
		zcases++;
		zgood += pass;
		unlink(ready);
	}
	ok(zcases > 0 && zgood == zcases,
	   "zeros from each of %d offsets to the end: truncated (%d)", zcases, zgood);

	/* Shorter than a file header: died while creating it. */
	struct spool_recovery rv;
	spit(path, seg, 10);
	ok(spool_recover(dir, name, &rv, err, sizeof(err)) == 0 && rv.action == SPOOL_ACT_REMOVED &&
	       rv.truncated_bytes == 10 && !exists(dir, SPOOL_ACTIVE, name),
	   "a segment shorter than its header is removed");
	spit(path, seg, SPOOL_FILE_HDR + 30);
	ok(spool_recover(dir, name, &rv, err, sizeof(err)) == 0 && rv.action == SPOOL_ACT_REMOVED &&
	       rv.truncated_bytes == 30 && !exists(dir, SPOOL_READY, name),
	   "a segment with no whole record is removed, torn bytes counted");
	free(seg);
}

/*
 * spool_sync = always: zeros written ahead. Sealing cuts them; recovery of
 * a dead writer cuts them without counting them as torn, but still counts
 * torn bytes after them; without the header flag zeros stay a torn tail.
 */
#define BAIL_OUT(...)                                                                              \
	do {                                                                                       \
		printf("Bail out! ");                                                              \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
		exit(1);                                                                           \
	} while (0)

static void test_zero_ahead(void)
{
	char dir[PATH_MAX], path[PATH_MAX], err[256];
	struct spool_seg s;
	struct spool_recovery rv;
	struct stat st;
	uint64_t end;

	fresh(dir, sizeof(dir), "zero");
	if (spool_seg_open(&s, dir, 1, 1, NULL, err, sizeof(err)) < 0)
		BAIL_OUT("open: %s", err);
	ok(spool_seg_zero_ahead(&s, 1 << 20) == -1 && errno == EINVAL,
	   "no zeros ahead in a segment opened without the flag");
	spool_seg_close(&s);

	/* Sealed: the zeros are cut, the file ends after its last record. */
	if (spool_seg_open_flags(&s, dir, 1, 1, SPOOL_FILE_ZERO_AHEAD, NULL, err, sizeof(err)) < 0)
		BAIL_OUT("open: %s", err);
	write_recs(&s, 0, 5);
	end = s.size;
	pathf(path, sizeof(path), "%s/active/%s", dir, s.name);
	ok(spool_seg_zero_ahead(&s, 1 << 20) == 0 && stat(path, &st) == 0 &&
	       st.st_size == 1 << 20 && s.alloc == 1 << 20 && s.size == end,
	   "zeros ahead up to 1 MiB, the records' end unchanged");
	ok(write_recs(&s, 5, 10) > 0 && stat(path, &st) == 0 && st.st_size == 1 << 20,
	   "appends go into the zeros");
	ok(check_file(path, 0) == -1, "in active/ the zeros are not records (reader stops)");
	int fd = open(path, O_RDONLY);
	struct spool_scan sc;
	ok(fd >= 0 && spool_scan(fd, &sc) == 0 && sc.status == SPOOL_TORN && sc.records == 10 &&
	       sc.zeros == (1u << 20) - s.size && sc.end == s.size,
	   "scan: 10 records, then only zeros (written ahead)");
	if (fd >= 0)
		close(fd);
	char name[SPOOL_NAME_MAX];
	pathf(name, sizeof(name), "%s", s.name);
	end = s.size;
	ok(spool_seg_seal(&s, dir) == 0, "seal");
	pathf(path, sizeof(path), "%s/ready/%s", dir, name);
	ok(stat(path, &st) == 0 && (uint64_t)st.st_size == end && check_file(path, 0) == 10,
	   "the sealed segment ends after its last record, 10 records");

	/* A dead writer's segment: records, zeros ahead; then torn bytes after the zeros. */
	for (int garbage = 0; garbage <= 1; garbage++) {
		if (spool_seg_open_flags(&s, dir, 1, 1, SPOOL_FILE_ZERO_AHEAD, NULL, err,
					 sizeof(err)) < 0)
			BAIL_OUT("open: %s", err);
		write_recs(&s, 0, 7);
		spool_seg_zero_ahead(&s, 65536);
		end = s.size;
		pathf(name, sizeof(name), "%s", s.name);
		pathf(path, sizeof(path), "%s/active/%s", dir, name);
		if (garbage) {
			static const uint8_t junk[40] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
			if (pwrite(s.fd, junk, sizeof(junk), 65536) != (ssize_t)sizeof(junk))
				BAIL_OUT("pwrite");
		}
		spool_seg_close(&s);
		ok(spool_recover(dir, name, &rv, err, sizeof(err)) == 0 &&
		       rv.action == (garbage ? SPOOL_ACT_TRUNCATED : SPOOL_ACT_SEALED) &&
		       rv.records == 7 && rv.truncated_bytes == (garbage ? 40u : 0u) &&
		       rv.zero_bytes == 65536 - end,
		   garbage ? "recovery: zeros ahead then 40 torn bytes: truncated, 40 counted"
			   : "recovery: zeros ahead only: sealed, nothing counted as torn");
		pathf(path, sizeof(path), "%s/ready/%s", dir, name);
		ok(stat(path, &st) == 0 && (uint64_t)st.st_size == end && check_file(path, 0) == 7,
		   "  the ready segment ends after its 7 records");
	}

	/* A torn record right at the end of the data, zeros after it: all of it is torn. */
	if (spool_seg_open_flags(&s, dir, 1, 1, SPOOL_FILE_ZERO_AHEAD, NULL, err, sizeof(err)) < 0)
		BAIL_OUT("open: %s", err);
	write_recs(&s, 0, 3);
	spool_seg_zero_ahead(&s, 8192);
	end = s.size;
	write_recs(&s, 3, 4);
	pathf(name, sizeof(name), "%s", s.name);
	if (ftruncate(s.fd, (off_t)(end + 30)) < 0 || ftruncate(s.fd, 8192) < 0)
		BAIL_OUT("ftruncate");
	spool_seg_close(&s);
	ok(spool_recover(dir, name, &rv, err, sizeof(err)) == 0 &&
	       rv.action == SPOOL_ACT_TRUNCATED && rv.records == 3 &&
	       rv.truncated_bytes == 8192 - end && rv.bad_offset == end,
	   "recovery: a torn record then zeros: truncated at it, all counted");
}

static void test_flips(void)
{
	char dir[PATH_MAX], name[SPOOL_NAME_MAX], path[PATH_MAX], err[256];
	uint64_t offs[NREC + 1];
	size_t len;
	uint8_t *seg;
	int cases = 0, good = 0;

	fresh(dir, sizeof(dir), "flips");
	seg = build_segment(dir, name, offs, &len);
	if (!ok(seg != NULL, "build a segment of %d records", NREC))
		return;
	pathf(path, sizeof(path), "%s/active/%s", dir, name);

	/* Every byte of records 2 .. NREC-3, each with one bit flipped (the bit varies). */
	for (uint64_t p = offs[2]; p < offs[NREC - 2]; p++) {
		struct spool_recovery rv;
		char q[PATH_MAX], ready[PATH_MAX];
		int n = whole_before(offs, p), pass;
		uint8_t *c;
		size_t qlen;

		seg[p] ^= (uint8_t)(1u << (p % 8));
		spit(path, seg, len);
		pass = spool_recover(dir, name, &rv, err, sizeof(err)) == 0 &&
		       rv.action == SPOOL_ACT_QUARANTINED && rv.records == (uint64_t)n &&
		       rv.bad_offset == offs[n] && !exists(dir, SPOOL_ACTIVE, name);
		pathf(q, sizeof(q), "%s/quarantine/%s", dir, name);
		pathf(ready, sizeof(ready), "%s/ready/%s", dir, name);
		c = slurp(q, &qlen);
		/* The original is kept byte for byte; the prefix is handed over, nothing after it.
		 */
		pass = pass && c != NULL && qlen == len && memcmp(c, seg, len) == 0 &&
		       check_file(ready, 0) == n;
		free(c);
		c = slurp(ready, &qlen);
		pass = pass && c != NULL && qlen == offs[n] && memcmp(c, seg, qlen) == 0;
		free(c);
		if (!pass)
			diag("flip at %llu: action %s records %llu bad_offset %llu",
			     (unsigned long long)p, spool_recover_action_str(rv.action),
			     (unsigned long long)rv.records, (unsigned long long)rv.bad_offset);
		seg[p] ^= (uint8_t)(1u << (p % 8));
		unlink(q);
		unlink(ready);
		cases++;
		good += pass;
	}
	ok(cases > 0 && good == cases,
	   "a bit flip at each of %d bytes in the middle: quarantined, prefix salvaged (%d good)",
	   cases, good);
	is_int(count_files(dir, SPOOL_ACTIVE), 0, "no salvage file left in active/");

	/* Bad file header: quarantined, nothing salvaged. */
	struct spool_recovery rv;
	seg[3] ^= 1;
	spit(path, seg, len);
	ok(spool_recover(dir, name, &rv, err, sizeof(err)) == 0 &&
	       rv.action == SPOOL_ACT_BAD_HEADER && exists(dir, SPOOL_QUARANTINE, name) &&
	       !exists(dir, SPOOL_READY, name),
	   "a bad file header: quarantined, nothing in ready/");
	seg[3] ^= 1;
	free(seg);
}

struct seen {
	int n, failed;
	struct spool_recover_totals t;
};

static void on_recover(void *arg, const char *name, int rc, const struct spool_recovery *r,
		       const char *err)
{
	struct seen *s = arg;

	(void)name;
	(void)r;
	(void)err;
	s->n++;
	s->failed += rc < 0;
}

static void test_recover_all(void)
{
	char dir[PATH_MAX], err[256], path[PATH_MAX];
	struct spool_seg live, a, b;
	struct spool_recover_totals t;
	struct seen seen = {0};
	uint64_t last = 0;

	fresh(dir, sizeof(dir), "all");
	/* Two dead writers' segments (closed without sealing) and a live one. */
	if (spool_seg_open(&a, dir, 1, 1, &last, err, sizeof(err)) < 0 ||
	    spool_seg_open(&b, dir, 2, 1, &last, err, sizeof(err)) < 0 ||
	    spool_seg_open(&live, dir, 3, 1, &last, err, sizeof(err)) < 0) {
		ok(0, "open segments: %s", err);
		return;
	}
	(void)write_recs(&a, 0, 4);
	(void)write_recs(&b, 0, 2);
	(void)write_recs(&live, 0, 1);
	pathf(path, sizeof(path), "%s/active/%s", dir, b.name);
	if (truncate(path, (off_t)(b.size - 3)) < 0)
		diag("truncate: %s", strerror(errno));
	spool_seg_close(&a);
	spool_seg_close(&b);
	/* A salvage file of a recovery that crashed. */
	pathf(path, sizeof(path), "%s/active/.%s.salvage", dir, a.name);
	spit(path, (const uint8_t *)"x", 1);

	is_int(spool_recover_all(dir, 0, on_recover, &seen, &t, err, sizeof(err)), 0,
	       "recover_all");
	ok(t.segments == 3 && t.locked == 1 && t.sealed == 1 && t.truncated == 1 &&
	       t.truncated_bytes == SPOOL_REC_HDR + pay_len(1) - 3 && t.records == 5 &&
	       t.failed == 0,
	   "two recovered (one sealed, one truncated), the live one left alone");
	ok(seen.n == 3 && seen.failed == 0, "the callback saw each segment");
	ok(exists(dir, SPOOL_ACTIVE, live.name) && count_files(dir, SPOOL_READY) == 2,
	   "ready/ has the two, active/ the live one");
	ok(access(path, F_OK) < 0, "the stale salvage file is gone");

	/* By pid: only that writer's segments. */
	is_int(spool_recover_all(dir, (long)getpid() + 1, NULL, NULL, &t, err, sizeof(err)), 0,
	       "recover_all of another pid");
	is_int(t.segments, 0, "finds none of ours");
	spool_seg_close(&live);
	is_int(spool_recover_all(dir, (long)getpid(), NULL, NULL, &t, err, sizeof(err)), 0,
	       "recover_all of our pid after the writer closed");
	ok(t.segments == 1 && t.sealed == 1 && count_files(dir, SPOOL_ACTIVE) == 0,
	   "the closed segment is sealed");
	ok(spool_recover_all("/nonexistent/spool", 0, NULL, NULL, &t, err, sizeof(err)) == -1,
	   "recover_all of a missing spool fails: %s", err);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	pathf(root, sizeof(root), "%s/test_spool.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(root) == NULL) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	test_crc();
	test_headers();
	test_encode();
	test_golden();
	test_versions();
	test_names();
	test_writer();
	test_reader_growing();
	test_torn();
	test_zero_ahead();
	test_flips();
	test_recover_all();
	rm_rf(root);
	return done_testing();
}
