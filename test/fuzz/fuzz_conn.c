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
 *              through a socketpair with conn_read/conn_write, bit 2 the
 *              same over TLS 1.3: each chunk is one record of the client's,
 *              the server end is the daemon's TLS transport (tls.c) driven
 *              round by round as the worker does (bit 2 wins over bit 1);
 *              bit 3 (with bit 2) the client ends with a bare FIN instead
 *              of close_notify
 *   byte 4     k: the last k bytes are chunk lengths (1..256 each)
 *   then the stream, then the k chunk lengths; the stream's rest is fed
 *   in one final chunk.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "conf.h"
#include "conn.h"
#include "fuzz.h"
#include "proto.h"
#include "proxy.h"
#include "tls.h"

/* tls_check's user test is all tls.c wants of conf.c; the target never calls it. */
int conf_user_may(const struct stat *st, const struct passwd *pw, int perm)
{
	(void)st;
	(void)pw;
	(void)perm;
	return 1;
}

/* What the spec says the stream holds: the valid requests before the first error. */
struct model {
	size_t nvalid;
	size_t nconn;
	int error;	  /* 0, or the PROTO_E_* the first bad frame gets */
	size_t error_off; /* where that frame starts */
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
			m->error_off = off;
			return;
		}
		if (len > max) {
			m->error = PROTO_E_FRAME_TOO_LARGE;
			m->error_off = off;
			return;
		}
		if (left < 5)
			return;
		if (p[off + 4] != 0x01 && p[off + 4] != 0x02) {
			m->error = PROTO_E_UNKNOWN_COMMAND;
			m->error_off = off;
			return;
		}
		if (len < 13) {
			m->error = PROTO_E_BODY_TOO_SHORT;
			m->error_off = off;
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

/*
 * The TLS mode's two contexts, made once per process: the server's by
 * tls_ctx_load from a self-signed P-256 certificate written to a temporary
 * directory (removed once loaded), the client's TLS 1.3 only, unverified.
 */
static struct tls_ctx *server_ctx;
static SSL_CTX *client_ctx;

static void write_pem(const char *path, X509 *crt, EVP_PKEY *key)
{
	FILE *f = fopen(path, "w");

	CHECK(f != NULL);
	CHECK(crt != NULL ? PEM_write_X509(f, crt) == 1
			  : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1);
	CHECK(fclose(f) == 0);
}

static void tls_setup(void)
{
	char dir[] = "/tmp/fuzz_conn.XXXXXX", crt_path[64], key_path[64], err[512];
	struct conf cf;

	if (server_ctx != NULL)
		return;
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *crt = X509_new();
	CHECK(key != NULL && crt != NULL);
	CHECK(X509_set_version(crt, 2) == 1);
	CHECK(ASN1_INTEGER_set(X509_get_serialNumber(crt), 1) == 1);
	X509_NAME *name = X509_get_subject_name(crt);
	CHECK(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz",
					 -1, -1, 0) == 1);
	CHECK(X509_set_issuer_name(crt, name) == 1);
	CHECK(X509_gmtime_adj(X509_getm_notBefore(crt), -3600) != NULL);
	CHECK(X509_gmtime_adj(X509_getm_notAfter(crt), 86400L * 365) != NULL);
	CHECK(X509_set_pubkey(crt, key) == 1);
	CHECK(X509_sign(crt, key, EVP_sha256()) > 0);
	CHECK(mkdtemp(dir) != NULL);
	snprintf(crt_path, sizeof(crt_path), "%s/cert.pem", dir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
	write_pem(crt_path, crt, NULL);
	write_pem(key_path, NULL, key);
	X509_free(crt);
	EVP_PKEY_free(key);

	memset(&cf, 0, sizeof(cf));
	cf.path = "fuzz_conn";
	cf.user = "";
	cf.tls_certificate = crt_path;
	cf.tls_key = key_path;
	cf.tls_ca = "";
	cf.tls_verify_client = CONF_VERIFY_NONE;
	cf.tls_min_version = CONF_TLS1_2;
	cf.tls_ciphers = CONF_TLS_CIPHERS;
	cf.tls_ciphersuites = CONF_TLS_CIPHERSUITES;
	server_ctx = tls_ctx_load(&cf, err, sizeof(err));
	if (server_ctx == NULL)
		fprintf(stderr, "fuzz_conn: %s\n", err);
	CHECK(server_ctx != NULL);
	unlink(crt_path);
	unlink(key_path);
	rmdir(dir);

	client_ctx = SSL_CTX_new(TLS_client_method());
	CHECK(client_ctx != NULL);
	CHECK(SSL_CTX_set_min_proto_version(client_ctx, TLS1_3_VERSION) == 1);
	SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
}

/* The client's SSL on one end of a socketpair, c's server session on the other. */
static SSL *tls_connect(struct conn *c, int peer)
{
	enum tls_failure why;
	int cdone = 0, sdone = 0;
	SSL *cl = SSL_new(client_ctx);

	CHECK(cl != NULL && SSL_set_fd(cl, peer) == 1);
	SSL_set_connect_state(cl);
	CHECK(tls_accept(server_ctx, &c->tr) == 0);
	c->hs = 1;
	/* Lock step, as the worker's on_handshake: one server step per turn. */
	for (int i = 0; i < 32 && !(cdone && sdone); i++) {
		if (!cdone) {
			int r = SSL_do_handshake(cl);
			cdone = r == 1;
			CHECK(cdone || SSL_get_error(cl, r) == SSL_ERROR_WANT_READ);
		}
		if (!sdone) {
			enum tls_step st = tls_handshake(&c->tr, &why, NULL, 0);
			CHECK(st == TLS_DONE || st == TLS_WANT_READ);
			sdone = st == TLS_DONE;
		}
	}
	CHECK(cdone && sdone);
	CHECK((c->tr.flags & (TRANSPORT_OPEN | TRANSPORT_TLS13 | TRANSPORT_DEAD)) ==
	      (TRANSPORT_OPEN | TRANSPORT_TLS13));
	c->hs = 0;
	return cl;
}

/* The acks that reached the client, through its SSL (session tickets are read on the way). */
static void tls_peer_read(SSL *cl, uint8_t *pend, size_t *npend, const struct model *m,
			  size_t *seen)
{
	for (;;) {
		size_t r;
		int ret = SSL_read_ex(cl, pend + *npend, 4096 - *npend, &r);
		if (ret != 1) {
			CHECK(SSL_get_error(cl, ret) == SSL_ERROR_WANT_READ);
			ERR_clear_error();
			return;
		}
		*npend += r;
		size_t whole = *npend - *npend % PROTO_ACK_LEN;
		take_acks(pend, whole, m, seen);
		memmove(pend, pend + whole, *npend - whole);
		*npend -= whole;
	}
}

static int readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/*
 * One chunk as one client record, then the server's rounds as the worker
 * runs them: one conn_read per round, on readiness of the socket or, with
 * nothing new on it, because the transport holds decrypted input conn_read
 * had no room for (settle lists it, serve_again reads it).
 */
static void feed_tls(struct conn *c, const struct conn_ctx *x, SSL *cl, const uint8_t *p, size_t n,
		     uint8_t *pend, size_t *npend, const struct model *m, size_t *seen)
{
	size_t w;
	int again = 0;

	CHECK(SSL_write_ex(cl, p, n, &w) == 1 && w == n);
	while (conn_wants_read(c, x) && (again || readable(c->fd))) {
		enum conn_read_result r = conn_read(c, x);
		if (r == CONN_READ_AGAIN) {
			CHECK(!transport_pending(&c->tr));
			break;
		}
		CHECK(r == CONN_READ_OK);
		CHECK(conn_process(c, x) >= 0);
		CHECK(conn_write(c, x) == 0);
		tls_peer_read(cl, pend, npend, m, seen);
		settle(c);
		again = transport_pending(&c->tr);
	}
	/* Nothing stranded where neither epoll nor pending() would see it. */
	if (conn_wants_read(c, x))
		CHECK(!SSL_has_pending(c->tr.tls) && !readable(c->fd));
}

/*
 * The end: the client half-closes (close_notify, or a bare FIN with bit 3),
 * which reads as the end of input; the server's close_notify reaches the
 * client as the end of its stream.
 */
static void tls_finish(struct conn *c, const struct conn_ctx *x, SSL *cl, int peer, int fin)
{
	uint8_t b;
	size_t r;
	int ret;

	if (c->state == CONN_ACTIVE) {
		if (fin)
			CHECK(shutdown(peer, SHUT_WR) == 0);
		else
			CHECK(SSL_shutdown(cl) == 0);
		CHECK(conn_read(c, x) == CONN_READ_EOF);
	}
	CHECK(transport_shutdown(&c->tr) == 0);
	ret = SSL_read_ex(cl, &b, 1, &r);
	CHECK(ret == 0 && SSL_get_error(cl, ret) == SSL_ERROR_ZERO_RETURN);
	ERR_clear_error();
	transport_close(&c->tr);
	SSL_free(cl);
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
	SSL *cl = NULL;

	if (size < 5)
		return 0;
	memset(&x, 0, sizeof(x)); /* no tokens, no rate limit */
	x.max_frame = 13 + ((uint32_t)data[0] << 8 | data[1]);
	x.read_size = 16 * ((uint32_t)data[2] + 1);
	x.max_output = 1024;
	x.stats = &slot;
	x.batch = NULL; /* no spool: acks leave with result 0 at once */
	flags = data[3];
	if (flags & 4)
		flags |= 2; /* the socket's feeding, over TLS */
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
	if (flags & 4) {
		tls_setup();
		cl = tls_connect(&c, sv[0]);
	}
	for (size_t i = 0; off < slen; i++) {
		size_t n = i < k ? (size_t)data[size - 1 - i] + 1 : slen - off;
		if (n > slen - off)
			n = slen - off;
		if (flags & 4) {
			/* Past a protocol error nothing is read: a real client would block. */
			if (c.state != CONN_ACTIVE)
				break;
			feed_tls(&c, &x, cl, data + off, n, pend, &npend, &m, &seen);
		} else if (flags & 2)
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
		/*
		 * A bad frame that begins as a PROXY header would is counted as
		 * one from an untrusted peer instead; conn.c sees only what was
		 * read, at least the 4 bytes of the length.
		 */
		size_t left = slen - m.error_off;
		if (slot.c[STATS_proxy_untrusted] != 0)
			CHECK(slot.c[STATS_proxy_untrusted] == 1 && perr == 0 &&
			      proxy_looks_like(data + m.error_off, left < 4 ? left : 4));
		else
			CHECK(perr == 1 && slot.c[which[-m.error]] == 1);
		CHECK(buf_len(&c.in) == 0);
	} else {
		CHECK(c.state == CONN_ACTIVE && perr == 0 && slot.c[STATS_proxy_untrusted] == 0);
	}
	if (flags & 2) {
		CHECK(slot.c[STATS_bytes_sent] == m.nvalid * PROTO_ACK_LEN);
		if (flags & 4)
			tls_finish(&c, &x, cl, sv[0], flags & 8);
		close(sv[0]);
		close(sv[1]);
	}
	buf_free(&c.in);
	buf_free(&c.out);
	buf_pool_trim();
	model_free(&m);
	return 0;
}
