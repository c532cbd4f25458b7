#include "fwdnats.h"

#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define PUB_MAX_WAIT_MS	  5000
#define CONNECT_MIN_MS	  500
#define CONNECT_MAX_MS	  5000
#define STREAM_RECHECK_MS 2000
#define LOG_EVERY_MS	  1000

/* What the connection callbacks tell the loop; the latest one wins. */
enum conn_event { CONN_NONE, CONN_DISCONNECTED, CONN_RECONNECTED, CONN_CLOSED };

/* The log lines limited to one a second, each on its own. */
enum log_kind {
	LOG_PUBLISH,
	LOG_PUBLISH_FAILED,
	LOG_STREAM,
	LOG_CONNECT,
	LOG_ACKS_LOST,
	LOG_NKINDS
};

static const struct conf *cf;
static struct stats_fwd *fx;
static char host[128], subj_host[128];
static int efd = -1;
static uint64_t now_ms;
static uint64_t last_log[LOG_NKINDS];

static natsConnection *nc;
static jsCtx *js;
static int stream_ok;
static uint64_t connect_at, connect_backoff, stream_check_at;

/* Filled by libnats' threads, drained by the loop. */
static pthread_mutex_t qmu = PTHREAD_MUTEX_INITIALIZER;
static struct fwd_ack *q, *q2;
static size_t qn, qcap, q2cap;
static char q_err[256];		   /* the last publish error's text */
static enum conn_event conn_event; /* under qmu */
static uint64_t ack_events_dropped;

static int say(enum log_kind k)
{
	return rate_ok(&last_log[k], now_ms, LOG_EVERY_MS);
}

static void set_state(int st)
{
	if (STATS_LOAD(fx->state) != (uint64_t)st) {
		STATS_STORE(fx->state, (uint64_t)st);
		STATS_STORE(fx->state_since_ms, now_ms);
	}
}

/* Refused (credentials, TLS) rather than unreachable: the configuration is wrong. */
static int refused(natsStatus s, const char *why)
{
	return s == NATS_NOT_PERMITTED || s == NATS_SSL_ERROR ||
	       (why != NULL && (strstr(why, "uthoriz") != NULL || strstr(why, "uthentic") != NULL));
}

static void wake(void)
{
	uint64_t one = 1;
	if (write(efd, &one, sizeof(one)) == -1) {
		/* EAGAIN: the counter is full, so the loop wakes anyway. */
	}
}

/* ---- libnats' threads ---- */

/* Nats-Msg-Id: "<segment without .seg>:<offset>:<host>": stable across restarts. */
static int parse_id(const char *id, struct fwd_ack *ev)
{
	unsigned w;
	long pid;

	if (sscanf(id, "%" SCNu64 "-w%u-p%ld:%" SCNu64, &ev->ns, &w, &pid, &ev->off) != 4)
		return -1;
	ev->worker = w;
	return 0;
}

static void push_event(const struct fwd_ack *ev)
{
	pthread_mutex_lock(&qmu);
	if (qn == qcap) {
		size_t cap = qcap ? qcap * 2 : 1024;
		struct fwd_ack *n = realloc(q, cap * sizeof(*q));
		if (n == NULL) {
			/* The record stays in flight: its segment is retried from the checkpoint.
			 */
			ack_events_dropped++;
			pthread_mutex_unlock(&qmu);
			return;
		}
		q = n;
		qcap = cap;
	}
	/*
	 * One wake-up per batch: the loop reads the eventfd before it swaps the
	 * queue, so an event pushed onto a non-empty queue is never missed.
	 */
	int first = qn == 0;
	q[qn++] = *ev;
	pthread_mutex_unlock(&qmu);
	if (first)
		wake();
}

static void on_ack(jsCtx *j, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	const char *id = NULL;
	struct fwd_ack ev;

	(void)j;
	(void)closure;
	if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK && id != NULL &&
	    parse_id(id, &ev) == 0) {
		if (pa != NULL) {
			ev.status = pa->Duplicate ? FWD_ACK_DUPLICATE : FWD_ACK_STORED;
		} else {
			ev.status = FWD_ACK_ERROR;
			if (pae != NULL) {
				pthread_mutex_lock(&qmu);
				snprintf(q_err, sizeof(q_err), "%s (%d)",
					 pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err),
					 (int)pae->ErrCode);
				pthread_mutex_unlock(&qmu);
			}
		}
		push_event(&ev);
	}
	natsMsg_Destroy(m);
}

static void conn_cb(enum conn_event what)
{
	pthread_mutex_lock(&qmu);
	conn_event = what;
	pthread_mutex_unlock(&qmu);
	wake();
}

static void on_disconnected(natsConnection *c, void *closure)
{
	(void)c;
	(void)closure;
	conn_cb(CONN_DISCONNECTED);
}

static void on_reconnected(natsConnection *c, void *closure)
{
	(void)c;
	(void)closure;
	conn_cb(CONN_RECONNECTED);
}

static void on_closed(natsConnection *c, void *closure)
{
	(void)c;
	(void)closure;
	conn_cb(CONN_CLOSED);
}

/* ---- the loop's side ---- */

int fwdnats_init(const struct conf *c, struct stats_fwd *f, const char *h)
{
	cf = c;
	fx = f;
	snprintf(host, sizeof(host), "%s", h);
	/* A subject token cannot hold '.', '*', '>' or spaces. */
	for (size_t i = 0; host[i] && i + 1 < sizeof(subj_host); i++) {
		char ch = host[i];
		subj_host[i] = ch == '.' || ch == '*' || ch == '>' || ch <= ' ' ? '_' : ch;
		subj_host[i + 1] = '\0';
	}
	if ((efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
		fatal("eventfd");
	now_ms = mono_ms();
	/* A killed predecessor's publishes are not in flight any more: they go again. */
	STATS_STORE(fx->inflight, 0);
	set_state(STATS_FWD_CONNECTING);
	return efd;
}

void fwdnats_subject(char *out, size_t n, unsigned worker)
{
	size_t k = 0;

	for (const char *p = cf->nats_subject; *p && k + 1 < n; p++) {
		if (p[0] == '%' && p[1] == 'h') {
			k += (size_t)snprintf(out + k, n - k, "%s", subj_host);
			p++;
		} else if (p[0] == '%' && p[1] == 'w') {
			k += (size_t)snprintf(out + k, n - k, "%u", worker);
			p++;
		} else {
			out[k++] = *p;
		}
		if (k >= n)
			k = n - 1;
	}
	out[k] = '\0';
}

static void hex(char *out, const uint8_t *p, size_t n)
{
	static const char h[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = h[p[i] >> 4];
		out[2 * i + 1] = h[p[i] & 15];
	}
	out[2 * n] = '\0';
}

int fwdnats_publish(const char *subject, const char *seg, uint64_t off, const struct spool_rec *r,
		    const uint8_t *payload, uint64_t now)
{
	natsMsg *m = NULL;
	jsPubOptions po;
	char id[256], v[160];
	natsStatus s;

	now_ms = now;
	s = natsMsg_Create(&m, subject, NULL, (const char *)payload, (int)r->len);
	if (s != NATS_OK)
		return -1;
	snprintf(id, sizeof(id), "%.*s:%" PRIu64 ":%s", (int)(strlen(seg) - 4), seg, off, host);
	natsMsgHeader_Set(m, "Nats-Msg-Id", id);
	hex(v, r->submit_id, 8);
	natsMsgHeader_Set(m, "Submit-Id", v);
	if (r->flags & SPOOL_FLAG_CONN_ID) {
		hex(v, r->conn_id, 8);
		natsMsgHeader_Set(m, "Submit-Conn-Id", v);
	}
	if (r->identity_len > 0) {
		snprintf(v, sizeof(v), "%.*s", (int)r->identity_len, (const char *)r->identity);
		natsMsgHeader_Set(m, "Submit-Identity", v);
	}
	spool_client_str(r->addr, r->port, v, sizeof(v));
	natsMsgHeader_Set(m, "Submit-Client", v);
	snprintf(v, sizeof(v), "%u", r->worker);
	natsMsgHeader_Set(m, "Submit-Worker", v);
	snprintf(v, sizeof(v), "%" PRIu64, r->ts_ns);
	natsMsgHeader_Set(m, "Submit-Time", v);
	snprintf(v, sizeof(v), "%s", host);
	natsMsgHeader_Set(m, "Submit-Host", v);
	jsPubOptions_Init(&po);
	po.MaxWait = PUB_MAX_WAIT_MS;
	s = js_PublishMsgAsync(js, &m, &po);
	natsMsg_Destroy(m); /* NULL when libnats took it */
	if (s != NATS_OK) {
		if (say(LOG_PUBLISH))
			log_warnx("publish %s: %s", id, natsStatus_GetText(s));
		return -1;
	}
	STATS_ADD(fx->published, 1);
	STATS_ADD(fx->inflight, 1);
	return 0;
}

size_t fwdnats_drain(const struct fwd_ack **acks, uint64_t now)
{
	uint64_t v;
	enum conn_event ce;

	now_ms = now;
	if (read(efd, &v, sizeof(v)) == -1 && errno != EAGAIN)
		log_warn("eventfd");
	pthread_mutex_lock(&qmu);
	struct fwd_ack *t = q;
	size_t n = qn, tc = qcap;
	q = q2;
	qcap = q2cap;
	qn = 0;
	q2 = t;
	q2cap = tc;
	ce = conn_event;
	conn_event = CONN_NONE;
	char err[sizeof(q_err)];
	memcpy(err, q_err, sizeof(err));
	q_err[0] = '\0';
	pthread_mutex_unlock(&qmu);

	if (err[0] != '\0' && say(LOG_PUBLISH_FAILED)) {
		log_warnx("publish to stream %s failed: %s", cf->nats_stream, err);
		/* No responders: nobody serves the stream's subjects (no stream). */
		if (strstr(err, "no responders") != NULL || strstr(err, "No responders") != NULL)
			stream_ok = 0, stream_check_at = now_ms;
	}
	if (ce == CONN_DISCONNECTED) {
		log_warnx("disconnected from NATS: reconnecting");
		set_state(STATS_FWD_DISCONNECTED);
	} else if (ce == CONN_RECONNECTED) {
		log_info("reconnected to NATS");
		STATS_ADD(fx->connects, 1);
		set_state(stream_ok ? STATS_FWD_CONNECTED : STATS_FWD_NO_STREAM);
		stream_check_at = now_ms;
	} else if (ce == CONN_CLOSED) {
		log_warnx("NATS connection closed");
		set_state(STATS_FWD_DISCONNECTED);
	}
	*acks = q2;
	return n;
}

static int make_stream(void)
{
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	char subj[256];
	const char *subjects[1];
	natsStatus s;

	s = js_GetStreamInfo(&si, js, cf->nats_stream, NULL, &jerr);
	if (s == NATS_OK) {
		jsStreamInfo_Destroy(si);
		return 0;
	}
	if (s != NATS_NOT_FOUND || !cf->nats_create_stream) {
		if (say(LOG_STREAM))
			log_errorx("stream %s: %s%s", cf->nats_stream,
				   s == NATS_NOT_FOUND ? "not found" : natsStatus_GetText(s),
				   s == NATS_NOT_FOUND
				       ? " (create it, or set nats_create_stream = true)"
				       : "");
		return -1;
	}
	/* Every subject this configuration can publish to: %h and %w become wildcards. */
	size_t k = 0;
	for (const char *p = cf->nats_subject; *p && k + 2 < sizeof(subj); p++) {
		if (p[0] == '%' && (p[1] == 'h' || p[1] == 'w')) {
			subj[k++] = '*';
			p++;
		} else {
			subj[k++] = *p;
		}
	}
	subj[k] = '\0';
	subjects[0] = subj;
	jsStreamConfig_Init(&sc);
	sc.Name = cf->nats_stream;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Replicas = cf->nats_stream_replicas;
	sc.Retention = cf->nats_stream_retention == CONF_RET_INTEREST	 ? js_InterestPolicy
		       : cf->nats_stream_retention == CONF_RET_WORKQUEUE ? js_WorkQueuePolicy
									 : js_LimitsPolicy;
	sc.MaxAge = (int64_t)cf->nats_stream_max_age * 1000000000;
	sc.MaxBytes = cf->nats_stream_max_bytes ? cf->nats_stream_max_bytes : -1;
	sc.Duplicates = (int64_t)cf->nats_dup_window * 1000000000;
	s = js_AddStream(&si, js, &sc, NULL, &jerr);
	if (s != NATS_OK) {
		if (say(LOG_STREAM))
			log_errorx("cannot create stream %s (subjects %s): %s (%d)",
				   cf->nats_stream, subj, natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	jsStreamInfo_Destroy(si);
	log_info("created stream %s (subjects %s, %ld replicas)", cf->nats_stream, subj,
		 cf->nats_stream_replicas);
	return 0;
}

static natsStatus make_options(const struct conf *c, const char *h, natsOptions **out,
			       int timeout_ms)
{
	natsOptions *o = NULL;
	natsStatus s = natsOptions_Create(&o);
	char name[200];

	if (s == NATS_OK)
		s = natsOptions_SetServers(o, (const char **)c->nats_servers, c->nnats);
	if (s == NATS_OK && c->nats_user[0] != '\0')
		s = natsOptions_SetUserInfo(o, c->nats_user, c->nats_password);
	if (s == NATS_OK && c->nats_creds[0] != '\0')
		s = natsOptions_SetUserCredentialsFromFiles(o, c->nats_creds, NULL);
	if (s == NATS_OK && c->nats_tls_ca[0] != '\0')
		s = natsOptions_LoadCATrustedCertificates(o, c->nats_tls_ca);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, timeout_ms);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, 250);
	snprintf(name, sizeof(name), "submitd forwarder %s", h);
	if (s == NATS_OK)
		s = natsOptions_SetName(o, name);
	if (s != NATS_OK)
		natsOptions_Destroy(o);
	else
		*out = o;
	return s;
}

static void try_connect(void)
{
	natsOptions *o = NULL;
	jsOptions jo;
	natsStatus s;

	connect_at = 0;
	s = make_options(cf, host, &o, 2000);
	if (s == NATS_OK) {
		natsOptions_SetDisconnectedCB(o, on_disconnected, NULL);
		natsOptions_SetReconnectedCB(o, on_reconnected, NULL);
		natsOptions_SetClosedCB(o, on_closed, NULL);
		s = natsConnection_Connect(&nc, o);
	}
	natsOptions_Destroy(o);
	if (s != NATS_OK) {
		const char *why = nats_GetLastError(NULL);
		if (say(LOG_CONNECT) || connect_backoff >= CONNECT_MAX_MS)
			log_errorx("cannot connect to NATS (%s%s): %s%s%s", cf->nats_servers[0],
				   cf->nnats > 1 ? ", ..." : "", natsStatus_GetText(s),
				   why ? ": " : "", why ? why : "");
		set_state(refused(s, why) ? STATS_FWD_REFUSED : STATS_FWD_CONNECTING);
		STATS_ADD(fx->errors_conn, 1);
		nc = NULL;
		connect_backoff = backoff_next(connect_backoff, CONNECT_MIN_MS, CONNECT_MAX_MS);
		connect_at = now_ms + connect_backoff;
		return;
	}
	connect_backoff = 0;
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = cf->nats_max_inflight * 2 + 64;
	jo.PublishAsync.AckHandler = on_ack;
	jo.Wait = 5000;
	if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK)
		fatalx("JetStream context: %s", natsStatus_GetText(s));
	STATS_ADD(fx->connects, 1);
	log_info("connected to NATS");
	stream_ok = 0;
	stream_check_at = now_ms;
	/* Connected, the stream not looked up yet: check_stream says which state follows. */
}

/* 1 when the stream is there. */
static int check_stream(void)
{
	stream_check_at = 0;
	if (make_stream() == 0) {
		if (!stream_ok)
			log_info("stream %s ready", cf->nats_stream);
		stream_ok = 1;
		if (STATS_LOAD(fx->state) != STATS_FWD_DISCONNECTED)
			set_state(STATS_FWD_CONNECTED);
		return 1;
	}
	stream_ok = 0;
	if (STATS_LOAD(fx->state) != STATS_FWD_DISCONNECTED)
		set_state(STATS_FWD_NO_STREAM);
	stream_check_at = now_ms + STREAM_RECHECK_MS;
	return 0;
}

int fwdnats_ready(uint64_t now, int *stream_back)
{
	now_ms = now;
	*stream_back = 0;
	if (nc == NULL) {
		if (now_ms >= connect_at)
			try_connect();
		return 0;
	}
	if (stream_check_at != 0 && now_ms >= stream_check_at)
		*stream_back = check_stream();
	return stream_ok;
}

int fwdnats_connected(void)
{
	return nc != NULL;
}

void fwdnats_every_second(uint64_t now)
{
	now_ms = now;
	if (ack_events_dropped && say(LOG_ACKS_LOST))
		log_warnx("%" PRIu64 " acknowledgements lost (out of memory)", ack_events_dropped);
}

void fwdnats_leave(uint64_t now)
{
	now_ms = now;
	if (STATS_LOAD(fx->inflight) > 0)
		log_warnx("%" PRIu64 " publishes unacknowledged at exit: they go again "
			  "from the checkpoint",
			  STATS_LOAD(fx->inflight));
	STATS_STORE(fx->inflight, 0);
	set_state(STATS_FWD_OFF);
}

int fwdnats_check(const struct conf *c, const char *h, int timeout_ms, int *reachable, char *err,
		  size_t errlen)
{
	natsOptions *o = NULL;
	natsConnection *conn = NULL;
	jsCtx *j = NULL;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	int r = -1;

	if ((s = make_options(c, h, &o, timeout_ms)) == NATS_OK) {
		natsOptions_SetMaxReconnect(o, 0);
		s = natsConnection_Connect(&conn, o);
	}
	natsOptions_Destroy(o);
	if (s != NATS_OK) {
		const char *why = nats_GetLastError(NULL);
		snprintf(err, errlen, "cannot connect to NATS (%s): %s%s%s", c->nats_servers[0],
			 natsStatus_GetText(s), why ? ": " : "", why ? why : "");
		*reachable = refused(s, why);
		return -1;
	}
	if ((s = natsConnection_JetStream(&j, conn, NULL)) == NATS_OK)
		s = js_GetStreamInfo(&si, j, c->nats_stream, NULL, &jerr);
	if (s == NATS_OK) {
		jsStreamInfo_Destroy(si);
		r = 0;
	} else if (s == NATS_NOT_FOUND && c->nats_create_stream) {
		r = 0;
	} else if (s == NATS_NOT_FOUND) {
		snprintf(err, errlen,
			 "stream %s not found (create it, or set nats_create_stream = true)",
			 c->nats_stream);
	} else {
		snprintf(err, errlen, "stream %s: %s", c->nats_stream, natsStatus_GetText(s));
	}
	jsCtx_Destroy(j);
	natsConnection_Destroy(conn);
	return r;
}
