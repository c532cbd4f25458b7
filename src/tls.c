#include "tls.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "auth.h"

#define TLS_RECORD_HANDSHAKE 0x16 /* the content type every ClientHello starts with */

struct tls_ctx {
	SSL_CTX *ctx;
	int64_t not_after;
};

/* The library's last reason, or what it says when it gives none. */
static const char *lib_reason(const char *none)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r != NULL ? r : none;
}

/* A file the context reads: readable, or "FILE: cannot read: reason" in err. */
static int readable(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		return -1;
	}
	fclose(f);
	return 0;
}

static int64_t asn1_unix(const ASN1_TIME *t)
{
	struct tm tm;

	if (ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

static void fmt_time(int64_t t, char *buf, size_t len)
{
	struct tm tm;
	time_t tt = (time_t)t;

	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* The certificate chain and its key: loaded, matching, in their validity period. */
static int load_identity(struct tls_ctx *x, const struct conf *c, char *err, size_t errlen)
{
	SSL_CTX *ctx = x->ctx;
	char when[64];

	if (readable(c->tls_certificate, err, errlen) == -1 ||
	    readable(c->tls_key, err, errlen) == -1)
		return -1;
	if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_certificate) != 1) {
		snprintf(err, errlen, "%s: no certificate found (%s)", c->tls_certificate,
			 lib_reason("not PEM?"));
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, c->tls_key, SSL_FILETYPE_PEM) != 1) {
		/* The library compares the key with the certificate as it loads it. */
		if (ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
			snprintf(err, errlen, "%s: no private key found (%s)", c->tls_key,
				 lib_reason("not PEM, or encrypted?"));
			return -1;
		}
	}
	if (ERR_peek_last_error() != 0 || SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "%s: key does not match certificate %s", c->tls_key,
			 c->tls_certificate);
		return -1;
	}
	X509 *cert = SSL_CTX_get0_certificate(ctx);
	int64_t now = (int64_t)time(NULL);
	x->not_after = asn1_unix(X509_get0_notAfter(cert));
	if (x->not_after <= now) {
		fmt_time(x->not_after, when, sizeof(when));
		snprintf(err, errlen, "%s: certificate expired on %s", c->tls_certificate, when);
		return -1;
	}
	int64_t not_before = asn1_unix(X509_get0_notBefore(cert));
	if (not_before > now) {
		fmt_time(not_before, when, sizeof(when));
		snprintf(err, errlen, "%s: certificate not valid before %s", c->tls_certificate,
			 when);
		return -1;
	}
	return 0;
}

/* The CAs client certificates are verified with, and the verification asked for. */
static int load_verify(SSL_CTX *ctx, const struct conf *c, char *err, size_t errlen)
{
	int mode = SSL_VERIFY_NONE;

	if (c->tls_ca[0] != '\0') {
		if (readable(c->tls_ca, err, errlen) == -1)
			return -1;
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(c->tls_ca);
		if (names == NULL || SSL_CTX_load_verify_locations(ctx, c->tls_ca, NULL) != 1) {
			sk_X509_NAME_pop_free(names, X509_NAME_free);
			snprintf(err, errlen, "%s: no CA certificate found (%s)", c->tls_ca,
				 lib_reason("not PEM?"));
			return -1;
		}
		SSL_CTX_set_client_CA_list(ctx, names);
	}
	if (c->tls_verify_client == CONF_VERIFY_OPTIONAL)
		mode = SSL_VERIFY_PEER;
	else if (c->tls_verify_client == CONF_VERIFY_REQUIRED)
		mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	SSL_CTX_set_verify(ctx, mode, NULL);
	return 0;
}

struct tls_ctx *tls_ctx_load(const struct conf *c, char *err, size_t errlen)
{
	static const unsigned char sid_ctx[] = "submitd";
	struct tls_ctx *x = calloc(1, sizeof(*x));

	ERR_clear_error();
	if (x == NULL || (x->ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		snprintf(err, errlen, "%s: TLS: cannot create a context (%s)", c->path,
			 lib_reason("out of memory"));
		free(x);
		return NULL;
	}
	SSL_CTX *ctx = x->ctx;
	/*
	 * No renegotiation (a client could make the server redo its most
	 * expensive work at will); a TCP FIN without close_notify reads as the
	 * end of input, as on plain TCP (half-close); buffers released while a
	 * connection is idle; writes of part of the output, from a buffer that
	 * moves between retries (the output buffer is compacted).
	 */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
				     SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
				  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_min_proto_version(ctx, c->tls_min_version);
	/* Tickets only: the ticket keys live in the context, which every worker shares. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 1);
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	if (SSL_CTX_set_cipher_list(ctx, c->tls_ciphers) != 1) {
		snprintf(err, errlen, "%s: tls_ciphers = \"%s\": %s", c->path, c->tls_ciphers,
			 lib_reason("no cipher matches"));
		goto fail;
	}
	if (SSL_CTX_set_ciphersuites(ctx, c->tls_ciphersuites) != 1) {
		snprintf(err, errlen, "%s: tls_ciphersuites = \"%s\": %s", c->path,
			 c->tls_ciphersuites, lib_reason("no suite matches"));
		goto fail;
	}
	if (load_identity(x, c, err, errlen) == -1 || load_verify(ctx, c, err, errlen) == -1)
		goto fail;
	ERR_clear_error();
	return x;
fail:
	ERR_clear_error();
	tls_ctx_free(x);
	return NULL;
}

void tls_ctx_free(struct tls_ctx *x)
{
	if (x == NULL)
		return;
	SSL_CTX_free(x->ctx);
	free(x);
}

int64_t tls_ctx_expiry(const struct tls_ctx *x)
{
	return x->not_after;
}

/* -1 with "FILE: not readable by user U" in err if pw cannot read path. */
static int user_reads(const char *path, const struct passwd *pw, char *err, size_t errlen)
{
	char dir[4096];
	struct stat st;
	const char *slash = strrchr(path, '/');

	if (stat(path, &st) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!conf_user_may(&st, pw, 4)) {
		snprintf(err, errlen, "%s: not readable by user %s: Permission denied", path,
			 pw->pw_name);
		return -1;
	}
	snprintf(dir, sizeof(dir), "%.*s",
		 slash == NULL	 ? 1
		 : slash == path ? 1
				 : (int)(slash - path),
		 slash == NULL ? "." : path);
	if (stat(dir, &st) == 0 && !conf_user_may(&st, pw, 1)) {
		snprintf(err, errlen, "%s: not readable by user %s: directory %s not searchable",
			 path, pw->pw_name, dir);
		return -1;
	}
	return 0;
}

int tls_check(const struct conf *c, const struct tls_ctx *x, int warn_days, char *err,
	      size_t errlen)
{
	const char *files[] = {c->tls_certificate, c->tls_key, c->tls_ca};
	struct passwd *pw = NULL;
	char when[64];

	if (c->user[0] != '\0' && geteuid() == 0)
		pw = getpwnam(c->user);
	for (size_t i = 0; pw != NULL && i < sizeof(files) / sizeof(files[0]); i++)
		if (files[i][0] != '\0' && user_reads(files[i], pw, err, errlen) == -1)
			return -1;
	int64_t left = x->not_after - (int64_t)time(NULL);
	if (left < (int64_t)warn_days * 86400) {
		fmt_time(x->not_after, when, sizeof(when));
		snprintf(err, errlen, "%s: certificate expires in %lld days (%s)",
			 c->tls_certificate, (long long)(left / 86400), when);
		return 1;
	}
	return 0;
}

static ssize_t tls_read(struct transport *t, void *buf, size_t len)
{
	size_t n;
	int r;

	ERR_clear_error();
	if ((r = SSL_read_ex(t->tls, buf, len, &n)) == 1)
		return (ssize_t)n;
	switch (SSL_get_error(t->tls, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE: /* a post-handshake message's answer: the next write sends it */
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN: /* close_notify, or a FIN (SSL_OP_IGNORE_UNEXPECTED_EOF) */
		return 0;
	case SSL_ERROR_SYSCALL:
		t->flags |= TRANSPORT_DEAD;
		if (errno == 0)
			errno = ECONNRESET;
		return -1;
	default: /* a bad record: the stream cannot be trusted past it */
		t->flags |= TRANSPORT_DEAD;
		ERR_clear_error();
		errno = EPROTO;
		return -1;
	}
}

static ssize_t tls_write(struct transport *t, const void *buf, size_t len)
{
	size_t n;
	int r;

	ERR_clear_error();
	if ((r = SSL_write_ex(t->tls, buf, len, &n)) == 1)
		return (ssize_t)n;
	switch (SSL_get_error(t->tls, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_SYSCALL:
		t->flags |= TRANSPORT_DEAD;
		if (errno == 0)
			errno = EPIPE;
		return -1;
	default:
		t->flags |= TRANSPORT_DEAD;
		ERR_clear_error();
		errno = EPROTO;
		return -1;
	}
}

static int tls_shutdown(struct transport *t)
{
	/* close_notify, once, as far as the socket takes it now: the FIN follows either way. */
	if (!(t->flags & TRANSPORT_DEAD)) {
		ERR_clear_error();
		SSL_shutdown(t->tls);
		ERR_clear_error();
	}
	return shutdown(t->fd, SHUT_WR);
}

static int tls_pending(const struct transport *t)
{
	return SSL_pending(t->tls) > 0;
}

static void tls_close(struct transport *t)
{
	SSL_free(t->tls);
	t->tls = NULL;
}

static const struct transport_ops tls_ops = {
    .read = tls_read,
    .write = tls_write,
    .shutdown = tls_shutdown,
    .pending = tls_pending,
    .close = tls_close,
};

int tls_accept(struct tls_ctx *x, struct transport *t)
{
	SSL *s = SSL_new(x->ctx);

	if (s == NULL || SSL_set_fd(s, t->fd) != 1) {
		SSL_free(s);
		ERR_clear_error();
		return -1;
	}
	SSL_set_accept_state(s);
	t->tls = s;
	t->ops = &tls_ops;
	return 0;
}

/* What a failed handshake step's error means, for the counters. */
static enum tls_failure classify(SSL *s, int e)
{
	if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)
		return TLS_F_CLOSED;
	if (SSL_get_verify_result(s) != X509_V_OK)
		return TLS_F_BAD_CERTIFICATE;
	switch (ERR_GET_REASON(ERR_peek_last_error())) {
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		return TLS_F_NO_CERTIFICATE;
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
		return TLS_F_BAD_CERTIFICATE;
	case SSL_R_UNEXPECTED_EOF_WHILE_READING:
		return TLS_F_CLOSED;
	case SSL_R_HTTP_REQUEST:
	case SSL_R_HTTPS_PROXY_REQUEST:
	case SSL_R_WRONG_VERSION_NUMBER:
		return TLS_F_NOT_TLS;
	default:
		return TLS_F_PROTOCOL;
	}
}

/* The first byte, looked at without taking it: a TLS client starts with a handshake record. */
static enum tls_step peek_first(struct transport *t, enum tls_failure *why)
{
	unsigned char b;
	ssize_t n = recv(t->fd, &b, 1, MSG_PEEK);

	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return TLS_WANT_READ;
	if (n <= 0) {
		*why = TLS_F_CLOSED;
		return TLS_FAILED;
	}
	t->flags |= TRANSPORT_PEEKED;
	if (b != TLS_RECORD_HANDSHAKE) {
		*why = TLS_F_NOT_TLS;
		return TLS_FAILED;
	}
	return TLS_DONE;
}

enum tls_step tls_handshake(struct transport *t, enum tls_failure *why, char *detail, size_t len)
{
	SSL *s = t->tls;
	int r, e;

	if (detail != NULL && len > 0)
		detail[0] = '\0';
	if (!(t->flags & TRANSPORT_PEEKED)) {
		enum tls_step p = peek_first(t, why);
		if (p != TLS_DONE) {
			if (p == TLS_FAILED)
				t->flags |= TRANSPORT_DEAD;
			return p;
		}
	}
	ERR_clear_error();
	if ((r = SSL_do_handshake(s)) == 1) {
		t->flags |= TRANSPORT_OPEN;
		if (SSL_version(s) == TLS1_3_VERSION)
			t->flags |= TRANSPORT_TLS13;
		if (SSL_session_reused(s))
			t->flags |= TRANSPORT_RESUMED;
		return TLS_DONE;
	}
	e = SSL_get_error(s, r);
	if (e == SSL_ERROR_WANT_READ)
		return TLS_WANT_READ;
	if (e == SSL_ERROR_WANT_WRITE)
		return TLS_WANT_WRITE;
	*why = classify(s, e);
	if (detail != NULL && len > 0)
		snprintf(detail, len, "%s",
			 e == SSL_ERROR_SYSCALL ? (errno ? strerror(errno) : "connection closed")
						: lib_reason("handshake failed"));
	t->flags |= TRANSPORT_DEAD;
	ERR_clear_error();
	return TLS_FAILED;
}

/* The first SAN of type kind (GEN_DNS, GEN_URI, GEN_EMAIL) into buf: its length, or 0. */
static size_t san(X509 *cert, int kind, char *buf, size_t len)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	size_t n = 0;

	for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names) && n == 0; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		if (g->type != kind)
			continue;
		const ASN1_IA5STRING *s = g->d.ia5; /* dNSName, URI and rfc822Name alike */
		size_t sl = (size_t)ASN1_STRING_length(s);
		if (sl < len) {
			memcpy(buf, ASN1_STRING_get0_data(s), sl);
			buf[sl] = '\0';
			n = sl;
		}
		break;
	}
	GENERAL_NAMES_free(names);
	return n;
}

size_t tls_peer_identity(const struct transport *t, int which, char *buf, size_t len)
{
	X509 *cert;
	size_t n = 0;

	if (t->tls == NULL || len == 0 || SSL_get_verify_result(t->tls) != X509_V_OK ||
	    (cert = SSL_get1_peer_certificate(t->tls)) == NULL)
		return 0;
	if (which == CONF_ID_CN) {
		int r = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf,
						  (int)len);
		n = r > 0 && (size_t)r < len ? (size_t)r : 0;
	} else {
		n = san(cert,
			which == CONF_ID_SAN_DNS   ? GEN_DNS
			: which == CONF_ID_SAN_URI ? GEN_URI
						   : GEN_EMAIL,
			buf, len);
	}
	X509_free(cert);
	/* An embedded NUL or a byte outside the identity alphabet: no identity. */
	if (n == 0 || strlen(buf) != n || !auth_identity_ok(buf, n))
		return 0;
	return n;
}
