/*
 * tls.c with certificates made here at run time (OpenSSL's API, into a
 * mkdtemp directory): what tls_ctx_load refuses and how it says so, the
 * expiry and tls_check's warning, handshakes over a socketpair against a
 * client SSL (each failure as the counters classify it), and the transport
 * operations of an established session, resumption included.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "conf.h"
#include "tap.h"
#include "tls.h"

#define DAY 86400L

static char dir[] = "/tmp/test_tls.XXXXXX";
static time_t now;

/* The files the tests use, under dir. */
static char ca_pem[128], server_pem[128], server_key[128], other_key[128], junk_pem[128],
    expired_pem[128], future_pem[128], soon_pem[128], month_pem[128], client_pem[128],
    client_key[128], stranger_pem[128], client_expired_pem[128], missing[128];
static time_t server_not_after, expired_not_after, future_not_before, soon_not_after;

static void die(const char *what)
{
	printf("not ok - %s\n", what);
	ERR_print_errors_fp(stdout);
	exit(1);
}

static EVP_PKEY *new_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	if (k == NULL)
		die("EVP_EC_gen");
	return k;
}

/*
 * A certificate for key, valid [nb, na] (Unix seconds), signed by ikey
 * with issuer's name (NULL: self-signed). ca: a CA certificate.
 */
static X509 *new_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *ikey, time_t nb,
		      time_t na, int ca)
{
	static long serial;
	X509 *c = X509_new();
	X509V3_CTX v3;

	if (c == NULL || X509_set_version(c, 2) != 1 ||
	    ASN1_INTEGER_set(X509_get_serialNumber(c), ++serial) != 1 ||
	    X509_NAME_add_entry_by_txt(X509_get_subject_name(c), "CN", MBSTRING_ASC,
				       (const unsigned char *)cn, -1, -1, 0) != 1 ||
	    X509_set_issuer_name(c, X509_get_subject_name(issuer != NULL ? issuer : c)) != 1 ||
	    ASN1_TIME_set(X509_getm_notBefore(c), nb) == NULL ||
	    ASN1_TIME_set(X509_getm_notAfter(c), na) == NULL || X509_set_pubkey(c, key) != 1)
		die("new_cert");
	X509V3_set_ctx(&v3, issuer != NULL ? issuer : c, c, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
						ca ? "critical,CA:TRUE" : "CA:FALSE");
	if (e == NULL || X509_add_ext(c, e, -1) != 1)
		die("basicConstraints");
	X509_EXTENSION_free(e);
	if (X509_sign(c, ikey != NULL ? ikey : key, EVP_sha256()) <= 0)
		die("X509_sign");
	return c;
}

static void path(char *out, const char *name)
{
	snprintf(out, 128, "%s/%s", dir, name);
}

/* Writes crt (if any) then key (if any) as PEM to dir/name; the path in out. */
static void save(char *out, const char *name, X509 *crt, EVP_PKEY *key)
{
	FILE *f;

	path(out, name);
	if ((f = fopen(out, "w")) == NULL)
		die(out);
	if (crt != NULL && PEM_write_X509(f, crt) != 1)
		die("PEM_write_X509");
	if (key != NULL && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1)
		die("PEM_write_PrivateKey");
	fclose(f);
}

static void make_files(void)
{
	EVP_PKEY *ca_k = new_key(), *stranger_ca_k = new_key(), *srv_k = new_key(),
		 *oth_k = new_key(), *cli_k = new_key();
	X509 *ca = new_cert(ca_k, "test CA", NULL, NULL, now - DAY, now + 3650 * DAY, 1);
	X509 *stranger_ca =
	    new_cert(stranger_ca_k, "another CA", NULL, NULL, now - DAY, now + 3650 * DAY, 1);
	X509 *c;
	FILE *f;

	if (mkdtemp(dir) == NULL)
		die("mkdtemp");
	save(ca_pem, "ca.pem", ca, NULL);
	save(server_key, "server.key", NULL, srv_k);
	save(other_key, "other.key", NULL, oth_k);
	save(client_key, "client.key", NULL, cli_k);

	server_not_after = now + 365 * DAY;
	c = new_cert(srv_k, "server", ca, ca_k, now - DAY, server_not_after, 0);
	save(server_pem, "server.pem", c, NULL);
	X509_free(c);
	expired_not_after = now - DAY;
	c = new_cert(srv_k, "expired", ca, ca_k, now - 30 * DAY, expired_not_after, 0);
	save(expired_pem, "expired.pem", c, NULL);
	X509_free(c);
	future_not_before = now + DAY;
	c = new_cert(srv_k, "future", ca, ca_k, future_not_before, now + 30 * DAY, 0);
	save(future_pem, "future.pem", c, NULL);
	X509_free(c);
	soon_not_after = now + 10 * DAY - 3600; /* 9 whole days and some hours */
	c = new_cert(srv_k, "soon", ca, ca_k, now - DAY, soon_not_after, 0);
	save(soon_pem, "soon.pem", c, NULL);
	X509_free(c);
	c = new_cert(srv_k, "month", ca, ca_k, now - DAY, now + 31 * DAY, 0);
	save(month_pem, "month.pem", c, NULL);
	X509_free(c);

	c = new_cert(cli_k, "client", ca, ca_k, now - DAY, now + 365 * DAY, 0);
	save(client_pem, "client.pem", c, NULL);
	X509_free(c);
	c = new_cert(cli_k, "stranger", stranger_ca, stranger_ca_k, now - DAY, now + 365 * DAY, 0);
	save(stranger_pem, "stranger.pem", c, NULL);
	X509_free(c);
	c = new_cert(cli_k, "old client", ca, ca_k, now - 30 * DAY, now - DAY, 0);
	save(client_expired_pem, "client-expired.pem", c, NULL);
	X509_free(c);

	path(junk_pem, "junk.pem");
	if ((f = fopen(junk_pem, "w")) == NULL)
		die(junk_pem);
	fputs("this is not a certificate\n", f);
	fclose(f);
	path(missing, "missing.pem");

	X509_free(ca);
	X509_free(stranger_ca);
	EVP_PKEY_free(ca_k);
	EVP_PKEY_free(stranger_ca_k);
	EVP_PKEY_free(srv_k);
	EVP_PKEY_free(oth_k);
	EVP_PKEY_free(cli_k);
}

static void remove_files(void)
{
	const char *files[] = {ca_pem,	    server_pem,	  server_key,	     other_key, junk_pem,
			       expired_pem, future_pem,	  soon_pem,	     month_pem, client_pem,
			       client_key,  stranger_pem, client_expired_pem};

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		unlink(files[i]);
	rmdir(dir);
}

/* The tls_* options as conf.c's defaults leave them, with the test's server identity. */
static struct conf base(void)
{
	struct conf c;

	memset(&c, 0, sizeof(c));
	c.path = "/etc/submitd/test.conf";
	c.user = "";
	c.tls_certificate = server_pem;
	c.tls_key = server_key;
	c.tls_ca = "";
	c.tls_verify_client = CONF_VERIFY_NONE;
	c.tls_min_version = CONF_TLS1_2;
	c.tls_ciphers = CONF_TLS_CIPHERS;
	c.tls_ciphersuites = CONF_TLS_CIPHERSUITES;
	return c;
}

static void fmt_utc(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* tls_ctx_load(c) fails, and err starts with want. */
static void refused(const struct conf *c, const char *want, const char *what)
{
	char err[1024] = "";
	struct tls_ctx *x = tls_ctx_load(c, err, sizeof(err));

	if (!ok(x == NULL && strncmp(err, want, strlen(want)) == 0, "%s", what))
		diag("got \"%s\", want \"%s...\"", err, want);
	tls_ctx_free(x);
}

static void test_load_errors(void)
{
	struct conf c;
	char want[1024], when[64];

	c = base();
	c.tls_certificate = missing;
	snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", missing);
	refused(&c, want, "a missing certificate: FILE: cannot read: reason");
	c = base();
	c.tls_key = missing;
	refused(&c, want, "a missing key: FILE: cannot read: reason");
	c = base();
	c.tls_certificate = junk_pem;
	snprintf(want, sizeof(want), "%s: no certificate found (", junk_pem);
	refused(&c, want, "a certificate that is not PEM: no certificate found");
	c = base();
	c.tls_key = junk_pem;
	snprintf(want, sizeof(want), "%s: no private key found (", junk_pem);
	refused(&c, want, "a key that is not PEM: no private key found");
	c = base();
	c.tls_key = other_key;
	snprintf(want, sizeof(want), "%s: key does not match certificate %s", other_key,
		 server_pem);
	refused(&c, want, "another key: key does not match certificate");
	c = base();
	c.tls_certificate = expired_pem;
	fmt_utc(expired_not_after, when, sizeof(when));
	snprintf(want, sizeof(want), "%s: certificate expired on %s", expired_pem, when);
	refused(&c, want, "an expired certificate: certificate expired on DATE");
	c = base();
	c.tls_certificate = future_pem;
	fmt_utc(future_not_before, when, sizeof(when));
	snprintf(want, sizeof(want), "%s: certificate not valid before %s", future_pem, when);
	refused(&c, want, "a certificate not yet valid: certificate not valid before DATE");
	c = base();
	c.tls_ciphers = "NO-SUCH-CIPHER";
	snprintf(want, sizeof(want), "%s: tls_ciphers = \"NO-SUCH-CIPHER\": ", c.path);
	refused(&c, want, "bad tls_ciphers: the file, the option and the library's reason");
	c = base();
	c.tls_ciphersuites = "TLS_NO_SUCH_SUITE";
	snprintf(want, sizeof(want), "%s: tls_ciphersuites = \"TLS_NO_SUCH_SUITE\": ", c.path);
	refused(&c, want, "bad tls_ciphersuites: the file, the option and the library's reason");
	c = base();
	c.tls_ca = junk_pem;
	snprintf(want, sizeof(want), "%s: no CA certificate found (", junk_pem);
	refused(&c, want, "a tls_ca that is not PEM: no CA certificate found");
	c = base();
	c.tls_ca = missing;
	snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", missing);
	refused(&c, want, "a missing tls_ca: cannot read");
	is_int((long long)ERR_peek_error(), 0, "no error left on the library's queue");
}

static void test_expiry(void)
{
	struct conf c = base();
	char err[1024] = "", want[256], when[64];
	struct tls_ctx *x = tls_ctx_load(&c, err, sizeof(err));

	if (!ok(x != NULL, "the server certificate and key load"))
		diag("%s", err);
	if (x == NULL)
		return;
	is_int(tls_ctx_expiry(x), server_not_after, "tls_ctx_expiry is the certificate's notAfter");
	is_int(tls_check(&c, x, TLS_WARN_DAYS, err, sizeof(err)), 0,
	       "tls_check: a year left, no warning");
	tls_ctx_free(x);

	c.tls_certificate = month_pem;
	if ((x = tls_ctx_load(&c, err, sizeof(err))) == NULL)
		die(err);
	is_int(tls_check(&c, x, TLS_WARN_DAYS, err, sizeof(err)), 0,
	       "tls_check: 31 days left, no warning");
	tls_ctx_free(x);

	c.tls_certificate = soon_pem;
	if ((x = tls_ctx_load(&c, err, sizeof(err))) == NULL)
		die(err);
	is_int(tls_ctx_expiry(x), soon_not_after, "tls_ctx_expiry of a certificate near its end");
	is_int(tls_check(&c, x, TLS_WARN_DAYS, err, sizeof(err)), 1,
	       "tls_check: 9 days left, a warning (1)");
	fmt_utc(soon_not_after, when, sizeof(when));
	snprintf(want, sizeof(want), "%s: certificate expires in 9 days (%s)", soon_pem, when);
	if (!ok(strcmp(err, want) == 0, "the warning: FILE: certificate expires in N days (DATE)"))
		diag("got \"%s\", want \"%s\"", err, want);
	is_int(tls_check(&c, x, 5, err, sizeof(err)), 0, "no warning when warn_days is 5");
	tls_ctx_free(x);
}

/* -t as root with user set: the files must be readable by that user. */
static void test_check_user(void)
{
	struct conf c = base();
	char err[1024] = "", want[512];
	struct tls_ctx *x;

	if (geteuid() != 0) {
		ok(1, "# SKIP tls_check's user checks need root");
		return;
	}
	if ((x = tls_ctx_load(&c, err, sizeof(err))) == NULL)
		die(err);
	c.user = "nobody";
	chmod(dir, 0711);
	chmod(server_key, 0600);
	snprintf(want, sizeof(want), "%s: not readable by user nobody: Permission denied",
		 server_key);
	is_int(tls_check(&c, x, TLS_WARN_DAYS, err, sizeof(err)), -1,
	       "tls_check: a key only root reads, user nobody: -1");
	if (!ok(strcmp(err, want) == 0, "FILE: not readable by user U: Permission denied"))
		diag("got \"%s\"", err);
	chmod(server_key, 0644);
	chmod(server_pem, 0644);
	chmod(dir, 0700);
	is_int(tls_check(&c, x, TLS_WARN_DAYS, err, sizeof(err)), -1,
	       "tls_check: a directory nobody cannot search: -1");
	ok(strstr(err, "not searchable") != NULL, "... and says so (%s)", err);
	chmod(dir, 0711);
	is_int(tls_check(&c, x, TLS_WARN_DAYS, err, sizeof(err)), 0,
	       "tls_check: readable by nobody: 0");
	chmod(dir, 0700);
	tls_ctx_free(x);
}

/* A client context: versions [min, max] (0: any), a client certificate if cert. */
static SSL_CTX *client_ctx(int min, int max, const char *cert, const char *key)
{
	SSL_CTX *cx = SSL_CTX_new(TLS_client_method());

	if (cx == NULL || SSL_CTX_set_min_proto_version(cx, min) != 1 ||
	    SSL_CTX_set_max_proto_version(cx, max) != 1)
		die("client SSL_CTX");
	SSL_CTX_set_verify(cx, SSL_VERIFY_NONE, NULL);
	if (cert != NULL && (SSL_CTX_use_certificate_file(cx, cert, SSL_FILETYPE_PEM) != 1 ||
			     SSL_CTX_use_PrivateKey_file(cx, key, SSL_FILETYPE_PEM) != 1))
		die("client certificate");
	return cx;
}

/* One connection: the client's SSL on sv[0], the server's transport on sv[1]. */
struct pair {
	int sv[2];
	struct transport t;
	SSL *cl;
	int client_done, client_failed;
	enum tls_failure why;
	char detail[128];
};

static void pair_open(struct pair *p, struct tls_ctx *x, SSL_CTX *cx)
{
	memset(p, 0, sizeof(*p));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->sv) == -1)
		die("socketpair");
	transport_init(&p->t, p->sv[1]);
	if (tls_accept(x, &p->t) != 0)
		die("tls_accept");
	if (cx != NULL) {
		if ((p->cl = SSL_new(cx)) == NULL || SSL_set_fd(p->cl, p->sv[0]) != 1)
			die("client SSL");
		SSL_set_connect_state(p->cl);
	}
}

static void client_step(struct pair *p)
{
	if (p->cl == NULL || p->client_done || p->client_failed)
		return;
	int r = SSL_do_handshake(p->cl);
	if (r == 1)
		p->client_done = 1;
	else if (SSL_get_error(p->cl, r) != SSL_ERROR_WANT_READ)
		p->client_failed = 1;
	ERR_clear_error();
}

/* The two ends in lock step until the server's handshake ends: its last step. */
static enum tls_step pair_handshake(struct pair *p)
{
	enum tls_step st = TLS_WANT_READ;

	for (int i = 0; i < 64; i++) {
		client_step(p);
		st = tls_handshake(&p->t, &p->why, p->detail, sizeof(p->detail));
		if (st == TLS_FAILED)
			return st;
		if (st == TLS_DONE) {
			/* TLS 1.2: the server's Finished comes last; the client reads it. */
			client_step(p);
			return st;
		}
	}
	return st;
}

static void pair_close(struct pair *p)
{
	transport_close(&p->t);
	SSL_free(p->cl);
	close(p->sv[0]);
	close(p->sv[1]);
}

static struct tls_ctx *server(int verify, int min_version, char *ciphersuites)
{
	struct conf c = base();
	char err[1024];
	struct tls_ctx *x;

	c.tls_verify_client = verify;
	c.tls_min_version = min_version;
	if (verify != CONF_VERIFY_NONE)
		c.tls_ca = ca_pem;
	if (ciphersuites != NULL)
		c.tls_ciphersuites = ciphersuites;
	if ((x = tls_ctx_load(&c, err, sizeof(err))) == NULL)
		die(err);
	return x;
}

/* A handshake of cx against x fails with want. */
static void fails(struct tls_ctx *x, SSL_CTX *cx, enum tls_failure want, const char *what)
{
	struct pair p;

	pair_open(&p, x, cx);
	enum tls_step st = pair_handshake(&p);
	is_int(st, TLS_FAILED, "%s: the handshake fails", what);
	if (st == TLS_FAILED) {
		if (!is_int(p.why, want, "%s: counted as %d", what, want))
			diag("detail: %s", p.detail);
		ok(p.t.flags & TRANSPORT_DEAD, "%s: the transport is dead (no close_notify)", what);
		ok(!(p.t.flags & TRANSPORT_OPEN), "%s: not open", what);
	}
	pair_close(&p);
}

/* A handshake of cx against x completes, with the transport flags want. */
static void completes(struct tls_ctx *x, SSL_CTX *cx, uint8_t want, const char *what)
{
	struct pair p;

	pair_open(&p, x, cx);
	enum tls_step st = pair_handshake(&p);
	if (!is_int(st, TLS_DONE, "%s: TLS_DONE", what) && st == TLS_FAILED)
		diag("why %d: %s", p.why, p.detail);
	ok(p.client_done, "%s: the client's handshake completes", what);
	is_int(p.t.flags & (TRANSPORT_OPEN | TRANSPORT_TLS13 | TRANSPORT_RESUMED | TRANSPORT_DEAD),
	       want, "%s: flags", what);
	pair_close(&p);
}

static void test_handshakes(void)
{
	struct tls_ctx *x = server(CONF_VERIFY_NONE, CONF_TLS1_2, NULL);
	struct tls_ctx *x13 = server(CONF_VERIFY_NONE, CONF_TLS1_3, NULL);
	struct tls_ctx *req = server(CONF_VERIFY_REQUIRED, CONF_TLS1_2, NULL);
	struct tls_ctx *opt = server(CONF_VERIFY_OPTIONAL, CONF_TLS1_2, NULL);
	struct tls_ctx *aes256 = server(CONF_VERIFY_NONE, CONF_TLS1_2, "TLS_AES_256_GCM_SHA384");
	SSL_CTX *any = client_ctx(0, 0, NULL, NULL);
	SSL_CTX *only12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION, NULL, NULL);
	SSL_CTX *good = client_ctx(0, 0, client_pem, client_key);
	SSL_CTX *stranger = client_ctx(0, 0, stranger_pem, client_key);
	SSL_CTX *old = client_ctx(0, 0, client_expired_pem, client_key);
	SSL_CTX *aes128 = client_ctx(TLS1_3_VERSION, 0, NULL, NULL);
	struct pair p;

	if (SSL_CTX_set_ciphersuites(aes128, "TLS_AES_128_GCM_SHA256") != 1)
		die("client ciphersuites");

	completes(x, any, TRANSPORT_OPEN | TRANSPORT_TLS13, "TLS 1.3");
	completes(x, only12, TRANSPORT_OPEN, "TLS 1.2 (min TLSv1.2)");
	fails(x13, only12, TLS_F_PROTOCOL, "min TLSv1.3, a TLS 1.2-only client");
	fails(aes256, aes128, TLS_F_PROTOCOL, "no shared TLS 1.3 suite");

	/* Plaintext protocol bytes: refused on the first byte. */
	static const uint8_t submit[] = {0,   0,   0,	14,  2,	  '0', '0',
					 '0', '0', '0', '0', '0', '1', 'x'};
	pair_open(&p, x, NULL);
	if (write(p.sv[0], submit, sizeof(submit)) != (ssize_t)sizeof(submit))
		die("write");
	is_int(tls_handshake(&p.t, &p.why, NULL, 0), TLS_FAILED, "a Submit frame: TLS_FAILED");
	is_int(p.why, TLS_F_NOT_TLS, "a Submit frame: not_tls");
	ok((p.t.flags & (TRANSPORT_DEAD | TRANSPORT_PEEKED)) == (TRANSPORT_DEAD | TRANSPORT_PEEKED),
	   "a Submit frame: peeked, dead");
	char b[64];
	is_int(recv(p.sv[1], b, sizeof(b), 0), (long long)sizeof(submit),
	       "a Submit frame: looked at, not taken");
	pair_close(&p);

	pair_open(&p, x, NULL);
	is_int(tls_handshake(&p.t, &p.why, NULL, 0), TLS_WANT_READ, "nothing yet: TLS_WANT_READ");
	ok(!(p.t.flags & TRANSPORT_PEEKED), "nothing yet: nothing peeked");
	shutdown(p.sv[0], SHUT_WR);
	is_int(tls_handshake(&p.t, &p.why, NULL, 0), TLS_FAILED, "a FIN before any byte: fails");
	is_int(p.why, TLS_F_CLOSED, "a FIN before any byte: closed");
	pair_close(&p);

	/* Half a ClientHello (captured from a client over memory BIOs), then a FIN. */
	SSL *mem = SSL_new(any);
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	uint8_t hello[4096];
	if (mem == NULL || rb == NULL || wb == NULL)
		die("memory BIO client");
	SSL_set_bio(mem, rb, wb);
	SSL_set_connect_state(mem);
	SSL_do_handshake(mem);
	int nhello = BIO_read(wb, hello, sizeof(hello));
	ok(nhello > 100 && hello[0] == 0x16, "a ClientHello captured (%d bytes)", nhello);
	SSL_free(mem);
	ERR_clear_error();
	pair_open(&p, x, NULL);
	if (write(p.sv[0], hello, (size_t)nhello / 2) != nhello / 2)
		die("write");
	is_int(tls_handshake(&p.t, &p.why, NULL, 0), TLS_WANT_READ,
	       "half a ClientHello: TLS_WANT_READ");
	shutdown(p.sv[0], SHUT_WR);
	is_int(tls_handshake(&p.t, &p.why, p.detail, sizeof(p.detail)), TLS_FAILED,
	       "half a ClientHello, then a FIN: fails");
	if (!is_int(p.why, TLS_F_CLOSED, "half a ClientHello, then a FIN: closed"))
		diag("detail: %s", p.detail);
	ok(p.detail[0] != '\0', "the failure's detail is filled (%s)", p.detail);
	pair_close(&p);

	/* A whole ClientHello, then the client goes before its Finished. */
	pair_open(&p, x, NULL);
	if (write(p.sv[0], hello, (size_t)nhello) != nhello)
		die("write");
	is_int(tls_handshake(&p.t, &p.why, NULL, 0), TLS_WANT_READ,
	       "a ClientHello: the server answers, waits for the client's Finished");
	shutdown(p.sv[0], SHUT_WR);
	is_int(tls_handshake(&p.t, &p.why, p.detail, sizeof(p.detail)), TLS_FAILED,
	       "the client's FIN before its Finished: fails");
	if (!is_int(p.why, TLS_F_CLOSED, "the client's FIN before its Finished: closed"))
		diag("detail: %s", p.detail);
	pair_close(&p);

	/* A first byte of 0x16, then what is not a ClientHello. */
	static const struct {
		const char *bytes;
		size_t len;
		enum tls_failure why;
		const char *what;
	} bad_hello[] = {
	    {"\x16hello world\r\n", 14, TLS_F_NOT_TLS, "0x16, then text: not_tls (wrong version)"},
	    {"\x16\x03\x01\x00\x08garbage!", 13, TLS_F_PROTOCOL,
	     "a handshake record of garbage: protocol"},
	    {"\x16\x03\x03\x00\x04\x01\x00\x00\x00", 9, TLS_F_PROTOCOL,
	     "an empty ClientHello: protocol"},
	};
	for (size_t i = 0; i < sizeof(bad_hello) / sizeof(bad_hello[0]); i++) {
		pair_open(&p, x, NULL);
		if (write(p.sv[0], bad_hello[i].bytes, bad_hello[i].len) !=
		    (ssize_t)bad_hello[i].len)
			die("write");
		enum tls_step st = tls_handshake(&p.t, &p.why, p.detail, sizeof(p.detail));
		if (!ok(st == TLS_FAILED && p.why == bad_hello[i].why, "%s", bad_hello[i].what))
			diag("step %d, why %d: %s", st, p.why, p.detail);
		pair_close(&p);
	}

	/* Client certificates. */
	fails(req, any, TLS_F_NO_CERTIFICATE, "required, no client certificate");
	fails(req, stranger, TLS_F_BAD_CERTIFICATE, "required, a certificate of another CA");
	fails(req, old, TLS_F_BAD_CERTIFICATE, "required, an expired client certificate");
	completes(req, good, TRANSPORT_OPEN | TRANSPORT_TLS13, "required, a good certificate");
	completes(opt, any, TRANSPORT_OPEN | TRANSPORT_TLS13, "optional, no certificate");
	fails(opt, stranger, TLS_F_BAD_CERTIFICATE, "optional, a certificate of another CA");
	completes(opt, good, TRANSPORT_OPEN | TRANSPORT_TLS13, "optional, a good certificate");
	fails(req, only12, TLS_F_NO_CERTIFICATE, "required, no certificate, TLS 1.2");

	SSL_CTX_free(any);
	SSL_CTX_free(only12);
	SSL_CTX_free(good);
	SSL_CTX_free(stranger);
	SSL_CTX_free(old);
	SSL_CTX_free(aes128);
	tls_ctx_free(x);
	tls_ctx_free(x13);
	tls_ctx_free(req);
	tls_ctx_free(opt);
	tls_ctx_free(aes256);
}

/*
 * The client's SSL_read (a ticket on the way is taken too): the bytes, 0
 * at close_notify, -1 otherwise; the SSL error in *err.
 */
static int client_read(SSL *cl, void *buf, size_t len, int *err)
{
	size_t n;
	int r = SSL_read_ex(cl, buf, len, &n);

	*err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(cl, r);
	ERR_clear_error();
	return r == 1 ? (int)n : *err == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

static void open_pair(struct pair *p, struct tls_ctx *x, SSL_CTX *cx)
{
	pair_open(p, x, cx);
	if (pair_handshake(p) != TLS_DONE || !p->client_done)
		die("handshake");
}

static void test_transport(void)
{
	struct tls_ctx *x = server(CONF_VERIFY_NONE, CONF_TLS1_2, NULL);
	SSL_CTX *cx = client_ctx(0, 0, NULL, NULL);
	char buf[4096], big[1000];
	struct pair p;
	size_t w;
	int e;

	open_pair(&p, x, cx);
	errno = 0;
	is_int(transport_read(&p.t, buf, sizeof(buf)), -1, "read, nothing sent: -1");
	is_int(errno, EAGAIN, "read, nothing sent: EAGAIN");
	is_int(transport_pending(&p.t), 0, "nothing pending");
	is_int(transport_write(&p.t, "ack!", 4), 4, "write 4 bytes");
	is_int(client_read(p.cl, buf, sizeof(buf), &e), 4, "the client reads them");
	ok(memcmp(buf, "ack!", 4) == 0, "the same bytes");
	ok(SSL_write_ex(p.cl, "request", 7, &w) == 1, "the client writes 7 bytes");
	is_int(transport_read(&p.t, buf, sizeof(buf)), 7, "read them");
	ok(memcmp(buf, "request", 7) == 0, "the same bytes");

	memset(big, 'b', sizeof(big));
	ok(SSL_write_ex(p.cl, big, sizeof(big), &w) == 1, "the client writes a 1000-byte record");
	is_int(transport_read(&p.t, buf, 10), 10, "a short read: 10 bytes");
	is_int(transport_pending(&p.t), 1, "pending: the rest of the record");
	errno = 0;
	is_int(transport_read(&p.t, buf, sizeof(buf)), 990, "read again: the other 990");
	is_int(transport_pending(&p.t), 0, "nothing pending after");

	ok(SSL_shutdown(p.cl) == 0, "the client sends close_notify");
	is_int(transport_read(&p.t, buf, sizeof(buf)), 0, "read after close_notify: 0");
	is_int(transport_shutdown(&p.t), 0, "shutdown: 0");
	is_int(client_read(p.cl, buf, sizeof(buf), &e), 0, "the client's SSL_read: 0");
	is_int(e, SSL_ERROR_ZERO_RETURN, "... SSL_ERROR_ZERO_RETURN: close_notify came");
	is_int(recv(p.sv[0], buf, sizeof(buf), 0), 0, "then the FIN");
	pair_close(&p);

	/* A bare FIN (SSL_OP_IGNORE_UNEXPECTED_EOF): the end of input, as on plain TCP. */
	open_pair(&p, x, cx);
	ok(SSL_write_ex(p.cl, "last", 4, &w) == 1, "the client writes 4 bytes");
	shutdown(p.sv[0], SHUT_WR);
	is_int(transport_read(&p.t, buf, sizeof(buf)), 4, "read: the 4 bytes before the FIN");
	is_int(transport_read(&p.t, buf, sizeof(buf)), 0, "read after a bare FIN: 0");
	ok(!(p.t.flags & TRANSPORT_DEAD), "a FIN is not a failure");
	is_int(transport_write(&p.t, "ack!", 4), 4, "half-closed: acks still go out");
	is_int(client_read(p.cl, buf, sizeof(buf), &e), 4, "and the client reads them");
	is_int(transport_shutdown(&p.t), 0, "shutdown: 0");
	is_int(client_read(p.cl, buf, sizeof(buf), &e), 0, "the client's SSL_read: 0");
	is_int(e, SSL_ERROR_ZERO_RETURN, "... close_notify");
	pair_close(&p);

	/* A record that does not decrypt: the stream is lost, no close_notify follows. */
	static const uint8_t bogus[] = {
	    0x17, 0x03, 0x03, 0x00, 0x20, 1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14,
	    15,	  16,	17,   18,   19,	  20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
	open_pair(&p, x, cx);
	if (write(p.sv[0], bogus, sizeof(bogus)) != (ssize_t)sizeof(bogus))
		die("write");
	errno = 0;
	is_int(transport_read(&p.t, buf, sizeof(buf)), -1, "a bad record: -1");
	is_int(errno, EPROTO, "a bad record: EPROTO");
	ok(p.t.flags & TRANSPORT_DEAD, "a bad record: the transport is dead");
	is_int(transport_shutdown(&p.t), 0, "shutdown: 0 (the FIN)");
	client_read(p.cl, buf, sizeof(buf), &e);
	ok(e != SSL_ERROR_ZERO_RETURN, "no close_notify after a bad record (client error %d)", e);
	pair_close(&p);

	/* Resumption: the second connection offers the first one's ticket. */
	SSL_SESSION *s;
	open_pair(&p, x, cx);
	ok(!(p.t.flags & TRANSPORT_RESUMED), "a first connection is not resumed");
	is_int(client_read(p.cl, buf, sizeof(buf), &e), -1, "the client takes the ticket");
	is_int(e, SSL_ERROR_WANT_READ, "... and waits for data");
	s = SSL_get1_session(p.cl);
	ok(s != NULL && SSL_SESSION_is_resumable(s), "a resumable session");
	/* A client SSL freed without close_notify marks its session not resumable. */
	SSL_shutdown(p.cl);
	pair_close(&p);
	pair_open(&p, x, cx);
	SSL_set_session(p.cl, s);
	is_int(pair_handshake(&p), TLS_DONE, "the second handshake completes");
	is_int(p.t.flags & (TRANSPORT_OPEN | TRANSPORT_TLS13 | TRANSPORT_RESUMED),
	       TRANSPORT_OPEN | TRANSPORT_TLS13 | TRANSPORT_RESUMED, "TRANSPORT_RESUMED");
	ok(SSL_session_reused(p.cl), "the client resumed too");
	pair_close(&p);
	SSL_SESSION_free(s);

	/* Another context (a reload): new ticket keys, so the old ticket is refused. */
	struct tls_ctx *x2 = server(CONF_VERIFY_NONE, CONF_TLS1_2, NULL);
	open_pair(&p, x, cx);
	client_read(p.cl, buf, sizeof(buf), &e);
	s = SSL_get1_session(p.cl);
	SSL_shutdown(p.cl);
	pair_close(&p);
	pair_open(&p, x2, cx);
	SSL_set_session(p.cl, s);
	is_int(pair_handshake(&p), TLS_DONE, "a ticket of another context: a full handshake");
	ok(!(p.t.flags & TRANSPORT_RESUMED), "... not resumed");
	pair_close(&p);
	SSL_SESSION_free(s);
	tls_ctx_free(x2);

	SSL_CTX_free(cx);
	tls_ctx_free(x);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	now = time(NULL);
	make_files();
	test_load_errors();
	test_expiry();
	test_check_user();
	test_handshakes();
	test_transport();
	remove_files();
	return done_testing();
}
