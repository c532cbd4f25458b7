#include "worker.h"

#include <errno.h>
#include <linux/sockios.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ackq.h"
#include "clock.h"
#include "conn.h"
#include "auth.h"
#include "iplimit.h"
#include "log.h"
#include "mem.h"
#include "proc.h"
#include "spoolw.h"
#include "tls.h"

#define MAX_EVENTS 256
/* Connections taken per wake-up before the worker lets the others have a turn. */
#define ACCEPT_BATCH	  8
#define ACCEPT_PAUSE_MS	  100 /* after EMFILE and the like */
#define HEARTBEAT_MS	  500
#define ACCEPT_RECHECK_MS 20   /* deferring: look again at least this often */
#define PEER_STALE_MS	  3000 /* a worker silent this long is not waited for */
#define LINGER_MS	  2000
#define LINGER_MAX_BYTES  (256 * 1024)
#define EXIT_GRACE_MS	  1000
/*
 * Handshake steps per round, after the established connections' I/O: a
 * full handshake costs the CPU of thousands of acks, so a flood of them
 * waits for its turn instead of the clients already served.
 */
#define HANDSHAKES_PER_ROUND 4
/* Connection table slots past max_connections: the worker's own descriptors. */
#define CONNS_MARGIN (CONF_MAX_LISTEN + 16)

static const struct conf *cf;
static struct conn_ctx ctx;
static struct stats_slot *slot;
static struct ctl_slot *ctl; /* this worker's control slot (ctl.h) */
static const struct stats_shm *shm;
static int ep = -1, sfd = -1;
static int listen_fds[CONF_MAX_LISTEN];
static uint8_t listen_tls[CONF_MAX_LISTEN];
static int nlisten;
static struct tls_ctx *tls;	/* the generation's context (the master loaded it) */
static struct iplimit *iplimit; /* connections per address, all workers' */
static struct conn *again;	/* to read again at the start of the next round */
static uint64_t round_no;	/* loop rounds, for reading a connection once a round */
static struct conn **conns;	/* indexed by fd */
static size_t conns_cap;
static long nconns;
static struct conn *pending;   /* to flush at the end of this round */
static struct conn *dead;      /* to free at the end of this round */
static uint64_t now;	       /* ms, CLOCK_MONOTONIC, once per round */
static int draining, stopping; /* SIGTERM, SIGINT */
static uint64_t drain_deadline, hard_deadline;
static int accept_paused;
static uint64_t accept_resume_ms, last_limit_log, last_accept_log, last_proxy_log;
static uint64_t last_auth_log[CONN_AUTH_TIMEOUT + 1]; /* per enum conn_auth_fail */
static int label;
static unsigned generation;
static uint64_t conn_seq; /* connections accepted by this process, for the spool's records */

/* epoll data for non-connection descriptors: addresses inside tags[] */
static char tags[CONF_MAX_LISTEN + 1];
#define TAG_SIGNAL (&tags[CONF_MAX_LISTEN])

static void mark_pending(struct conn *c)
{
	if (!c->pending) {
		c->pending = 1;
		c->next_pending = pending;
		pending = c;
	}
}

static const enum stats_counter close_counter[] = {
    [CONN_R_CLIENT] = STATS_closed_client,
    [CONN_R_IDLE] = STATS_closed_idle,
    [CONN_R_PROTOCOL] = STATS_closed_protocol,
    [CONN_R_LIMIT] = STATS_closed_limit,
    [CONN_R_SHUTDOWN] = STATS_closed_shutdown,
    [CONN_R_ERROR] = STATS_closed_error,
    [CONN_R_SEND_TIMEOUT] = STATS_closed_send_timeout,
    [CONN_R_HANDSHAKE] = STATS_closed_handshake,
    [CONN_R_PROXY] = STATS_closed_proxy,
    [CONN_R_AUTH] = STATS_closed_auth,
    [CONN_R_LIMIT_IP] = STATS_closed_limit_ip,
};

static const enum stats_counter handshake_counter[] = {
    [TLS_F_TIMEOUT] = STATS_tls_hs_timeout,
    [TLS_F_NOT_TLS] = STATS_tls_hs_not_tls,
    [TLS_F_NO_CERTIFICATE] = STATS_tls_hs_no_certificate,
    [TLS_F_BAD_CERTIFICATE] = STATS_tls_hs_bad_certificate,
    [TLS_F_PROTOCOL] = STATS_tls_hs_protocol,
    [TLS_F_CLOSED] = STATS_tls_hs_closed,
};

static void log_auth(struct conn *c, int why);
static void addr_str(const struct conn *c, char *s, size_t n);
static uint64_t last_ip_log;
static uint64_t last_rate_log;

/* A Submit of c's was over rate_limit: say who, at most once a second. */
static void log_rate(struct conn *c)
{
	char a[INET6_ADDRSTRLEN + 16];

	c->rl_over = 0;
	if (!rate_ok(&last_rate_log, now, 1000))
		return;
	addr_str(c, a, sizeof(a));
	log_warnx("%s%s%s: over rate_limit (%ld a second, rate_burst %ld): refusing Submits "
		  "(result 1)",
		  c->identity_len ? c->identity : "", c->identity_len ? " at " : "", a,
		  cf->rate_limit, cf->rate_burst > 0 ? cf->rate_burst : cf->rate_limit);
}

/*
 * max_connections_per_ip: counts c against its address (across all
 * workers); 1 if the address has its limit already, logged at most once a
 * second. A connection the table has no room for is let in, counted.
 */
static int ip_over(struct conn *c)
{
	char a[INET6_ADDRSTRLEN + 16];
	int r;

	if (cf->max_connections_per_ip == 0)
		return 0;
	r = iplimit_acquire(iplimit, c->addr, (unsigned)cf->max_connections_per_ip);
	if (r >= 0) {
		c->ip_slot = r + 1;
		return 0;
	}
	if (r == IPLIMIT_UNTRACKED) {
		stats_add(slot, STATS_ip_untracked, 1);
		return 0;
	}
	if (now - last_ip_log >= 1000) {
		last_ip_log = now;
		addr_str(c, a, sizeof(a));
		log_warnx("%s: max_connections_per_ip (%ld) reached, refusing its connections", a,
			  cf->max_connections_per_ip);
	}
	return 1;
}

/* Off the list of connections to read again (it is short: TLS ones that filled their buffer). */
static void unlist_again(struct conn *c)
{
	struct conn **p = &again;

	while (*p != NULL && *p != c)
		p = &(*p)->next_again;
	if (*p == c)
		*p = c->next_again;
	c->again = 0;
}

/* The PROXY header's bytes go once it is read, or the connection closes. */
static void proxy_done(struct conn *c)
{
	mem_free(c->proxy, sizeof(*c->proxy));
	c->proxy = NULL;
	c->hs &= (uint8_t)~CONN_HS_PROXY;
}

/* Close now; the memory goes after the round, as events may still name it. */
static void finish(struct conn *c, enum conn_reason why)
{
	if (c->state == CONN_CLOSED)
		return;
	conn_set_state(c, CONN_CLOSED, why);
	spoolw_forget(c); /* its records reach the spool before its buffers go */
	ackq_forget(c);
	if (c->again)
		unlist_again(c);
	if (c->tr.flags & TRANSPORT_OPEN) {
		int v = (c->tr.flags & TRANSPORT_TLS13) != 0;
		STATS_STORE(slot->tls_open[v], STATS_LOAD(slot->tls_open[v]) - 1);
	}
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	transport_close(&c->tr);
	close(c->fd);
	conns[c->fd] = NULL;
	buf_free(&c->in);
	buf_free(&c->out);
	proxy_done(c);
	if (c->ip_slot > 0)
		iplimit_release(iplimit, c->ip_slot - 1);
	if (c->identity_buf != NULL)
		mem_free(c->identity_buf, AUTH_IDENTITY_MAX + 1);
	stats_add(slot, close_counter[c->reason], 1);
	nconns--;
	STATS_STORE(slot->connected, nconns);
	c->next_dead = dead;
	dead = c;
}

/* Watch c for want (EPOLLIN, EPOLLOUT); closes it if epoll fails. */
static void watch(struct conn *c, uint32_t want)
{
	struct epoll_event ev;

	if (want == c->events)
		return;
	ev.events = want;
	ev.data.ptr = c;
	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) == -1) {
		log_warn("%s: epoll_ctl fd %d", __func__, c->fd);
		finish(c, CONN_R_ERROR);
		return;
	}
	c->events = want;
}

static void update_events(struct conn *c)
{
	uint32_t want = 0;

	if (conn_wants_read(c, &ctx))
		want |= EPOLLIN;
	/* Held acks (spool) wait for their records, not for the socket: no EPOLLOUT for them. */
	if (conn_writable(c) > 0)
		want |= EPOLLOUT;
	watch(c, want);
}

/* Send FIN after the last ack, then wait for the peer's: closing with unread input would reset. */
static void linger(struct conn *c, enum conn_reason why)
{
	conn_set_state(c, CONN_LINGERING, why);
	/* After the client's half-close TLS still ends its output whole: close_notify, then FIN. */
	if (c->eof && c->tr.tls != NULL)
		transport_shutdown(&c->tr);
	if (c->eof || stopping || transport_shutdown(&c->tr) == -1) {
		finish(c, c->reason);
		return;
	}
	buf_free(&c->in);
	c->deadline_ms = now + LINGER_MS;
}

static void on_readable(struct conn *c)
{
	enum conn_read_result r;

	/*
	 * Once a round: with the spool, the round's records point into the
	 * input buffer, which a second read could move.
	 */
	if (c->read_round == round_no)
		return;
	c->read_round = round_no;
	r = conn_read(c, &ctx);

	if (c->state == CONN_LINGERING) {
		if (r == CONN_READ_EOF || r == CONN_READ_ERROR || c->lingered > LINGER_MAX_BYTES)
			finish(c, c->reason);
		return;
	}
	switch (r) {
	case CONN_READ_OK: {
		int n = conn_process(c, &ctx);
		if (c->auth_fail)
			log_auth(c, c->auth_fail);
		if (c->rl_over)
			log_rate(c);
		if (n > 0)
			c->last_frame_ms = now;
		else if (n == -1) {
			log_warnx("fd %d: out of memory for acks, closing", c->fd);
			finish(c, CONN_R_ERROR);
		}
		break;
	}
	case CONN_READ_EOF:
		/* Half-close: the acks for everything complete still go out. */
		c->eof = 1;
		conn_set_state(c, CONN_FLUSHING, CONN_R_CLIENT);
		break;
	case CONN_READ_AGAIN:
		break;
	case CONN_READ_NOMEM:
		log_warnx("fd %d: out of memory for input, closing", c->fd);
		finish(c, CONN_R_ERROR);
		break;
	case CONN_READ_ERROR:
		finish(c, errno == ECONNRESET ? CONN_R_CLIENT : CONN_R_ERROR);
		break;
	}
}

/* End of round for one connection: write, advance the state, re-arm epoll. */
static void settle(struct conn *c)
{
	size_t owed = buf_len(&c->out);

	if (c->hs) {
		/* Nothing is owed before the handshake: a drain just closes it. */
		if (draining)
			finish(c, CONN_R_SHUTDOWN);
		return;
	}
	if (owed > 0) {
		if (conn_write(c, &ctx) == -1) {
			finish(c, errno == EPIPE || errno == ECONNRESET ? CONN_R_CLIENT
									: CONN_R_ERROR);
			return;
		}
		/*
		 * send_timeout runs from the last write that made progress; acks
		 * that find the socket full start it. EPOLLOUT is armed exactly
		 * while acks waited at the end of the previous round.
		 */
		if (buf_len(&c->out) < owed || !(c->events & EPOLLOUT))
			c->send_ms = now;
	}
	if (c->state == CONN_FLUSHING && buf_len(&c->out) == 0) {
		linger(c, c->reason);
		if (c->state == CONN_CLOSED)
			return;
	}
	if (draining && c->state == CONN_ACTIVE && conn_is_idle(c)) {
		linger(c, CONN_R_SHUTDOWN);
		if (c->state == CONN_CLOSED)
			return;
	}
	buf_release(&c->in);
	buf_release(&c->out);
	update_events(c);
	/* Input TLS decrypted but conn_read had no room for: epoll will not say it is there. */
	if (c->tr.tls != NULL && c->state != CONN_CLOSED && !c->again && conn_wants_read(c, &ctx) &&
	    transport_pending(&c->tr)) {
		c->again = 1;
		c->next_again = again;
		again = c;
	}
}

static void flush_pending(void)
{
	while (pending != NULL) {
		struct conn *c = pending;
		pending = c->next_pending;
		c->pending = 0;
		if (c->state != CONN_CLOSED)
			settle(c);
	}
	while (dead != NULL) {
		struct conn *c = dead;
		dead = c->next_dead;
		mem_free(c, sizeof(*c));
	}
}

/*
 * How this worker watches the listening sockets. LISTEN_LT: level-triggered,
 * it takes connections. LISTEN_ET: it defers to a less loaded worker and is
 * woken only by new arrivals (and every loop round, at least each
 * ACCEPT_RECHECK_MS) to look again. LISTEN_OFF: paused (EMFILE) or draining,
 * and never deferred to.
 */
enum { LISTEN_OFF, LISTEN_LT, LISTEN_ET };
static int listen_mode = LISTEN_OFF;

static void listen_set(int mode)
{
	struct epoll_event ev;

	if (mode == listen_mode)
		return;
	for (int i = 0; i < nlisten; i++) {
		if (listen_fds[i] == -1)
			continue;
		if (mode == LISTEN_OFF) {
			epoll_ctl(ep, EPOLL_CTL_DEL, listen_fds[i], NULL);
			continue;
		}
		ev.events = mode == LISTEN_ET ? EPOLLIN | EPOLLET : EPOLLIN;
		ev.data.ptr = &tags[i];
		if (epoll_ctl(ep, listen_mode == LISTEN_OFF ? EPOLL_CTL_ADD : EPOLL_CTL_MOD,
			      listen_fds[i], &ev) == -1)
			fatal("epoll_ctl listen fd %d", listen_fds[i]);
	}
	listen_mode = mode;
	STATS_STORE(ctl->accepting, mode != LISTEN_OFF);
}

/*
 * Balance: take a connection only if no other live worker that watches the
 * listeners holds clearly fewer. The least loaded one never defers; if it
 * was deferring before, it finds out at the next arrival or loop round, so
 * a pending connection waits at most ACCEPT_RECHECK_MS.
 */
static int fair_to_accept(void)
{
	int64_t min = INT64_MAX;
	uint32_t n = STATS_LOAD(shm->ctl.nactive);

	if (n > STATS_MAX_SLOTS)
		n = STATS_MAX_SLOTS;
	for (uint32_t i = 0; i < n; i++) {
		uint16_t k = STATS_LOAD(shm->ctl.active[i]) % STATS_MAX_SLOTS;
		const struct stats_slot *s = &shm->slot[k];
		const struct ctl_slot *cs = &shm->ctl.slot[k];
		/* A paused or draining peer takes nothing: leaving it a connection would stall. */
		if (cs == ctl || !STATS_LOAD(cs->accepting) ||
		    STATS_LOAD(cs->state) != CTL_SLOT_RUNNING ||
		    now > STATS_LOAD(cs->heartbeat_ms) + PEER_STALE_MS)
			continue;
		int64_t c = STATS_LOAD(s->connected);
		if (c < min)
			min = c;
	}
	return min == INT64_MAX || nconns <= min + 1 + min / 16;
}

/* Stop watching the listeners for a while (EMFILE and the like). */
static void pause_accept(uint64_t ms)
{
	listen_set(LISTEN_OFF);
	accept_paused = 1;
	accept_resume_ms = now + ms;
}

/* The peer's address as IPv6 (IPv4 mapped), as the spool's records carry it. */
static void peer_addr(struct conn *c, const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		c->addr[10] = c->addr[11] = 0xff;
		memcpy(c->addr + 12, &in->sin_addr, 4);
		c->port = ntohs(in->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		memcpy(c->addr, &in6->sin6_addr, 16);
		c->port = ntohs(in6->sin6_port);
	}
}

static void on_accept(int li)
{
	int lfd = listen_fds[li];
	struct epoll_event ev;
	struct sockaddr_storage ss;
	socklen_t slen;
	int one = 1;

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		if (!fair_to_accept()) {
			listen_set(LISTEN_ET);
			return;
		}
		listen_set(LISTEN_LT);
		slen = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &slen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			if (errno == ECONNABORTED || errno == EPROTO || errno == EPERM)
				continue;
			if (errno == EINVAL) {
				/* The master shut the socket down: a stop began, SIGTERM follows.
				 */
				pause_accept(ACCEPT_PAUSE_MS);
				return;
			}
			stats_add(slot, STATS_accept_errors, 1);
			if (now - last_accept_log >= 1000) {
				log_warn("accept on %d (pausing accept for %d ms)", lfd,
					 ACCEPT_PAUSE_MS);
				last_accept_log = now;
			}
			/* EMFILE and friends: stop polling the listeners, or the loop spins. */
			pause_accept(ACCEPT_PAUSE_MS);
			return;
		}
		stats_add(slot, STATS_accepted, 1);
		if (nconns >= cf->max_connections || (size_t)fd >= conns_cap) {
			close(fd);
			stats_add(slot, STATS_closed_limit, 1);
			if (now - last_limit_log >= 1000) {
				log_warnx("max_connections (%ld) reached, refusing connections",
					  cf->max_connections);
				last_limit_log = now;
			}
			continue;
		}
		struct conn *c = mem_alloc(sizeof(*c));
		if (c == NULL) {
			close(fd);
			stats_add(slot, STATS_closed_error, 1);
			continue;
		}
		conn_init(c, fd, now);
		peer_addr(c, &ss);
		if (cf->nproxy_from > 0 &&
		    proxy_net_match(cf->proxy_from, cf->nproxy_from, c->addr)) {
			if ((c->proxy = mem_alloc(sizeof(*c->proxy))) == NULL) {
				close(fd);
				mem_free(c, sizeof(*c));
				stats_add(slot, STATS_closed_error, 1);
				continue;
			}
			c->proxy->have = 0;
			c->hs = CONN_HS_PROXY;
		}
		if (listen_tls[li]) {
			if (tls_accept(tls, &c->tr) == -1) {
				mem_free(c->proxy, sizeof(*c->proxy));
				close(fd);
				mem_free(c, sizeof(*c));
				stats_add(slot, STATS_closed_error, 1);
				continue;
			}
			c->hs |= CONN_HS_TLS;
			c->hs_us = mono_us();
		}
		c->seq = ++conn_seq;
		c->auth_need = cf->auth != CONF_AUTH_NONE;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
			log_warn("epoll_ctl add fd %d", fd);
			transport_close(&c->tr);
			close(fd);
			mem_free(c, sizeof(*c));
			stats_add(slot, STATS_closed_error, 1);
			continue;
		}
		c->events = EPOLLIN;
		conns[fd] = c;
		nconns++;
		STATS_STORE(slot->connected, nconns);
		log_debug("fd %d: accepted on listener %d", fd, li);
		/* Behind a balancer the client's address is known once its PROXY header is read. */
		if (!(c->hs & CONN_HS_PROXY) && ip_over(c))
			finish(c, CONN_R_LIMIT_IP);
	}
}

static void start_drain(int fast)
{
	if (!draining) {
		draining = 1;
		drain_deadline = now + (uint64_t)cf->shutdown_timeout * 1000;
		hard_deadline = drain_deadline + LINGER_MS + EXIT_GRACE_MS;
		STATS_STORE(ctl->state, CTL_SLOT_DRAINING);
		listen_set(LISTEN_OFF);
		for (int i = 0; i < nlisten; i++) {
			close(listen_fds[i]);
			listen_fds[i] = -1;
		}
		accept_paused = 0;
		proc_title_set("worker %d (generation %u, draining)", label, generation);
		if (fast) /* not bound by shutdown_timeout: nothing is waited for */
			log_info("stopping: closing %ld connections", nconns);
		else
			log_info("draining %ld connections (at most %ld s)", nconns,
				 cf->shutdown_timeout);
	}
	if (fast)
		stopping = 1;
	for (size_t fd = 0; fd < conns_cap; fd++) {
		struct conn *c = conns[fd];
		if (c == NULL)
			continue;
		if (stopping && c->state == CONN_ACTIVE)
			conn_set_state(c, CONN_FLUSHING, CONN_R_SHUTDOWN);
		mark_pending(c);
	}
}

static void on_signal(void)
{
	struct signalfd_siginfo si;

	while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGQUIT:
			start_drain(0);
			break;
		case SIGINT:
			start_drain(1);
			break;
		case SIGURG: /* the forwarder: the stream's position moved (ackq_stream_release) */
			break;
		case SIGUSR1:
			if (log_reopen() == -1)
				log_warn("reopen %s", cf->log_file);
			break;
#ifdef SUBMITD_TEST_HOOKS
		case SIGUSR2:
			/* Test builds only: a worker stuck in a loop, for the watchdog test. */
			log_warnx("test hook: hanging");
			for (;;)
				pause();
#endif
		default:
			break;
		}
	}
}

/*
 * Whether the peer read some of what the kernel holds for it since the last
 * look. Writes stall for as long as the socket's send buffer (megabytes,
 * autotuned) stays over half full, so a client that reads slowly makes no
 * write progress for a long time; the kernel's queue shrinking is progress.
 * The first look at a queue counts as progress: it has nothing to compare.
 */
static int peer_took(struct conn *c)
{
	int q = 0;
	int took;

	if (ioctl(c->fd, SIOCOUTQ, &q) == -1 || q <= 0) {
		c->outq = 0;
		return 0;
	}
	took = c->outq == 0 || (uint32_t)q < c->outq;
	c->outq = (uint32_t)q;
	return took;
}

/*
 * /status's "who is connected": the open connections with an identity,
 * counted by identity in a table of this tick's (open addressing over
 * STATS_IDENTS_COUNTED entries; past that, identities are not told apart),
 * the most connected published under the seqlock of slot->idents.
 */
_Static_assert(STATS_IDENTITY_LEN == AUTH_IDENTITY_MAX + 1, "an identity fits /status");
static void publish_identities(void)
{
	static struct {
		const char *id;
		uint32_t n;
		uint8_t len;
	} tab[STATS_IDENTS_COUNTED];
	struct stats_idents *out = &slot->idents;
	uint32_t authenticated = 0, distinct = 0, top[STATS_TOP_IDENTITIES], ntop = 0;

	memset(tab, 0, sizeof(tab));
	for (size_t fd = 0; fd < conns_cap; fd++) {
		const struct conn *c = conns[fd];
		if (c == NULL || c->identity_len == 0)
			continue;
		authenticated++;
		uint32_t h = 2166136261u;
		for (uint8_t i = 0; i < c->identity_len; i++)
			h = (h ^ (uint8_t)c->identity[i]) * 16777619u;
		for (uint32_t k = 0; k < STATS_IDENTS_COUNTED; k++) {
			uint32_t j = (h + k) % STATS_IDENTS_COUNTED;
			if (tab[j].id == NULL) {
				tab[j].id = c->identity;
				tab[j].len = c->identity_len;
				tab[j].n = 1;
				distinct++;
				break;
			}
			if (tab[j].len == c->identity_len &&
			    memcmp(tab[j].id, c->identity, c->identity_len) == 0) {
				tab[j].n++;
				break;
			}
		}
	}
	/* The most connected, most first (ties: table order): an insertion into top. */
	for (uint32_t j = 0; j < STATS_IDENTS_COUNTED && distinct > 0; j++) {
		uint32_t k;
		if (tab[j].id == NULL)
			continue;
		if (ntop < STATS_TOP_IDENTITIES)
			k = ntop++;
		else if (tab[j].n > tab[top[STATS_TOP_IDENTITIES - 1]].n)
			k = STATS_TOP_IDENTITIES - 1;
		else
			continue;
		top[k] = j;
		for (; k > 0 && tab[top[k]].n > tab[top[k - 1]].n; k--) {
			uint32_t t = top[k];
			top[k] = top[k - 1];
			top[k - 1] = t;
		}
	}
	__atomic_store_n(&out->seq, out->seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	out->authenticated = authenticated;
	out->distinct = distinct;
	out->n = ntop;
	for (uint32_t k = 0; k < ntop; k++) {
		out->top[k].conns = tab[top[k]].n;
		memcpy(out->top[k].name, tab[top[k]].id, tab[top[k]].len);
		out->top[k].name[tab[top[k]].len] = '\0';
	}
	__atomic_store_n(&out->seq, out->seq + 1, __ATOMIC_RELEASE);
}

/* Once a second (and at the drain deadline): timeouts, memory figures, who is connected. */
static void tick(void)
{
	uint64_t idle_ms = (uint64_t)cf->idle_timeout * 1000;
	uint64_t send_ms = (uint64_t)cf->send_timeout * 1000;
	uint64_t hs_ms = (uint64_t)cf->tls_handshake_timeout * 1000;
	uint64_t auth_ms = (uint64_t)cf->auth_timeout * 1000;
	int past_deadline = draining && now >= drain_deadline;

	for (size_t fd = 0; fd < conns_cap; fd++) {
		struct conn *c = conns[fd];
		if (c == NULL)
			continue;
		if (c->state == CONN_LINGERING) {
			if (now >= c->deadline_ms)
				finish(c, c->reason);
			continue;
		}
		if (c->hs) {
			/*
			 * last_frame_ms is the accept's time until the handshake
			 * is done: the PROXY header and TLS share the bound.
			 */
			if (now - c->last_frame_ms >= hs_ms) {
				int proxy = c->hs & CONN_HS_PROXY;
				stats_add(slot, proxy ? STATS_proxy_timeout : STATS_tls_hs_timeout,
					  1);
				finish(c, proxy ? CONN_R_PROXY : CONN_R_HANDSHAKE);
			}
			continue;
		}
		/* Connected (and its handshake done) this long ago, without a Conn that
		 * authenticated. */
		if (c->auth_need && c->state == CONN_ACTIVE && now - c->last_frame_ms >= auth_ms) {
			stats_add(slot, STATS_authf_timeout, 1);
			log_auth(c, CONN_AUTH_TIMEOUT);
			finish(c, CONN_R_AUTH);
			continue;
		}
		if (conn_writable(c) > 0 && peer_took(c))
			c->send_ms = now;
		/* Acks held for their records are the server's wait, not the peer's. */
		if (send_ms && conn_writable(c) > 0 && now - c->send_ms >= send_ms) {
			/* The peer stopped reading: the acks it is owed can never leave. */
			c->reason = CONN_R_SEND_TIMEOUT;
			finish(c, CONN_R_SEND_TIMEOUT);
			continue;
		}
		if (c->state != CONN_ACTIVE)
			continue;
		if (past_deadline) {
			conn_set_state(c, CONN_FLUSHING, CONN_R_SHUTDOWN);
		} else if (idle_ms && now - c->last_frame_ms >= idle_ms &&
			   now - c->send_ms >= idle_ms) {
			/* A slow reader still taking its acks is not idle: look again later. */
			if (peer_took(c)) {
				c->send_ms = now;
				continue;
			}
			conn_set_state(c, CONN_FLUSHING, CONN_R_IDLE);
		} else {
			continue;
		}
		mark_pending(c);
	}
	STATS_STORE(slot->allocated, mem_allocated());
	publish_identities();
}

/*
 * Keeps only the log, stdio and the listeners: whatever else the master
 * had open at the fork (/metrics connections, a reload asker's pidfd, the
 * pid file) would stay open for this worker's life. Dies if it cannot.
 */
static void close_inherited(const struct worker_args *a)
{
	int keep[CONF_MAX_LISTEN + 4], nkeep = 0;

	for (int i = 0; i < a->nclose; i++)
		if (a->close_fds[i] >= 0)
			close(a->close_fds[i]);
	keep[nkeep++] = STDIN_FILENO;
	keep[nkeep++] = STDOUT_FILENO;
	keep[nkeep++] = STDERR_FILENO;
	keep[nkeep++] = log_fileno();
	for (int i = 0; i < a->nlisten; i++)
		keep[nkeep++] = a->listen_fds[i];
	if (proc_close_fds(keep, nkeep) == -1)
		fatal("closing inherited descriptors");
}

/* Names the process for ps and top, and opens the signalfd (dies if it cannot). */
static void name_and_signals(const struct worker_args *a)
{
	char name[16];

	proc_title_set("worker %d (generation %u)", a->index, a->generation);
	snprintf(name, sizeof(name), "submitd-w%d", a->index);
	/* What top and ps -e show: 15 bytes at most, no space (scripts split /proc/PID/stat). */
	prctl(PR_SET_NAME, name);

	static const int sigs[] = {SIGTERM, SIGINT,  SIGQUIT, SIGUSR1, SIGURG,
#ifdef SUBMITD_TEST_HOOKS
				   SIGUSR2,
#endif
				   SIGHUP,  SIGTTIN, SIGTTOU, SIGCHLD};
	if ((sfd = proc_signalfd(sigs, (int)(sizeof(sigs) / sizeof(sigs[0])))) == -1)
		fatal("signalfd");
}

/*
 * Sets up what the connections share: the memory arena, the spool's batch,
 * the buffer pool, the limits in ctx, and the table of connections by fd.
 * Dies if any of it cannot be had.
 */
static void conns_init(const struct worker_args *a)
{
	struct rlimit rl;
	char err[256];

	if (mem_init(cf->mem_decay_ms, err, sizeof(err)) == -1)
		fatalx("memory arena: %s", err);
	ctx.batch = spoolw_init(cf, a->index, a->generation, slot, shm);
	if (ctx.batch != NULL)
		ackq_init(slot, ctl, cf->ack_after == CONF_ACK_STREAM);
	/*
	 * With the spool, a connection keeps its buffers until the round's
	 * batch is written: keep enough pooled chunks for a full round.
	 */
	buf_pool_init((size_t)cf->read_buffer_size, ctx.batch ? 2 * MAX_EVENTS + 64 : 64);
	ctx.max_frame = (uint32_t)cf->max_frame_size;
	ctx.read_size = (uint32_t)cf->read_buffer_size;
	ctx.max_output = (uint32_t)cf->max_output_buffer;
	ctx.stats = slot;
	ctx.tokens = &cf->tokens;
	if (cf->rate_limit > 0) {
		ctx.rl = a->ratelimit;
		ctx.rl_interval_ns = 1000000000u / (uint64_t)cf->rate_limit;
		ctx.rl_burst = (uint64_t)(cf->rate_burst > 0 ? cf->rate_burst : cf->rate_limit);
		/* A CAS per 16 Submits where the burst allows it, one per Submit where it is small.
		 */
		ctx.rl_chunk = (uint32_t)(ctx.rl_burst / 16 < 1	   ? 1
					  : ctx.rl_burst / 16 > 16 ? 16
								   : ctx.rl_burst / 16);
		ctx.now_ns = mono_ns();
	}

	/*
	 * Indexed by fd. Only stdio, the log, the listeners, the signalfd and
	 * the epoll descriptor are open besides the clients, so fds stay below
	 * max_connections plus those; accept refuses any fd past the end.
	 * Sized by the open files limit, it was a million slots to memset and
	 * scan every second under systemd's LimitNOFILE=1048576.
	 */
	conns_cap = (size_t)cf->max_connections + CONNS_MARGIN;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < conns_cap)
		conns_cap = (size_t)rl.rlim_cur;
	if ((conns = mem_alloc(conns_cap * sizeof(*conns))) == NULL)
		fatalx("out of memory for %zu connection slots", conns_cap);
	memset(conns, 0, conns_cap * sizeof(*conns));
}

/*
 * Drops privileges and ties this worker's life to the master's. Dies if
 * the drop fails; exits at once if the master is gone already.
 */
static void drop_and_watch(const struct worker_args *a)
{
	char err[256];

	if (proc_drop_privileges(cf->user, err, sizeof(err)) == -1)
		fatalx("%s", err);
	/*
	 * The master's death must not leave workers serving without
	 * supervision. After the privilege drop: a change of credentials
	 * clears the death signal. Then look: the master may be gone already.
	 */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != a->master)
		exit(0);
}

/*
 * Everything before the first round, in this order: the descriptors, the
 * signals, the connections' context, epoll, the privilege drop; then the
 * slot says running. Dies on any failure: the master respawns or gives up.
 */
static void setup(const struct worker_args *a)
{
	struct epoll_event ev;
	char tag[32];

	cf = a->conf;
	slot = a->slot;
	ctl = stats_ctl(a->shm, slot);
	shm = a->shm;
	label = a->index;
	generation = a->generation;
	snprintf(tag, sizeof(tag), "worker %d", a->index);
	log_set_tag(tag);
	close_inherited(a);
	name_and_signals(a);
	conns_init(a);

	if ((ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1");
	ev.events = EPOLLIN;
	ev.data.ptr = TAG_SIGNAL;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) == -1)
		fatal("epoll_ctl signalfd");
	nlisten = a->nlisten;
	memcpy(listen_fds, a->listen_fds, (size_t)nlisten * sizeof(int));
	memcpy(listen_tls, a->listen_tls, (size_t)nlisten);
	tls = a->tls;
	iplimit = a->iplimit;
	drop_and_watch(a);
	listen_set(LISTEN_LT);
	now = mono_ms();
	STATS_STORE(ctl->pid, (int32_t)getpid());
	STATS_STORE(ctl->label, (uint32_t)a->index);
	STATS_STORE(ctl->heartbeat_ms, now);
	STATS_STORE(slot->allocated, mem_allocated());
	STATS_STORE(ctl->state, CTL_SLOT_RUNNING);
}

/*
 * How long this round may wait, in ms: until the next tick, but no longer
 * than the heartbeat, the accept re-check, the end of an accept pause, the
 * drain deadline and the spool's own deadlines allow.
 */
static int poll_timeout(uint64_t next_tick)
{
	int timeout = (int)(next_tick > now ? next_tick - now : 0);

	if (again != NULL)
		return 0;

	/* Stamp the heartbeat at least twice a second, even when idle. */
	if (timeout > HEARTBEAT_MS)
		timeout = HEARTBEAT_MS;
	if (listen_mode == LISTEN_ET && timeout > ACCEPT_RECHECK_MS)
		timeout = ACCEPT_RECHECK_MS;
	if (accept_paused && accept_resume_ms - now < (uint64_t)timeout)
		timeout = (int)(accept_resume_ms > now ? accept_resume_ms - now : 0);
	if (draining && drain_deadline > now && drain_deadline - now < (uint64_t)timeout)
		timeout = (int)(drain_deadline - now);
	long st = spoolw_timeout(now);
	if (st >= 0 && st < timeout)
		timeout = (int)st;
	/* ack_after = stream: the forwarder wakes the loop (SIGURG) when the stream moves. */
	long sw = ackq_stream_wait();
	if (sw >= 0 && sw < timeout)
		timeout = (int)sw;
	return timeout;
}

/* An established connection's event: read, then write now or after the round's batch. */
static void serve(struct conn *c, uint32_t e)
{
	if ((e & (EPOLLIN | EPOLLERR | EPOLLHUP)) && conn_wants_read(c, &ctx))
		on_readable(c);
	else if ((e & (EPOLLERR | EPOLLHUP)) && buf_len(&c->out) == 0)
		finish(c, CONN_R_CLIENT);
	/*
	 * Write this connection's acks now, one write for all it read this
	 * round: its buffers go straight back to the pool, so a round over
	 * many connections needs two pooled chunks, not two per connection.
	 * With the spool, the acks wait for the round's batch: the records
	 * point into the input buffers, which stay until then.
	 */
	if (c->state != CONN_CLOSED) {
		if (ctx.batch != NULL)
			mark_pending(c);
		else
			settle(c);
	}
}

/* The peer's address for a log line: "192.0.2.1:5000" or "[2001:db8::1]:5000". */
static void addr_str(const struct conn *c, char *s, size_t n)
{
	static const uint8_t v4[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	char a[INET6_ADDRSTRLEN];

	if (memcmp(c->addr, v4, sizeof(v4)) == 0) {
		inet_ntop(AF_INET, c->addr + 12, a, sizeof(a));
		snprintf(s, n, "%s:%u", a, c->port);
	} else {
		inet_ntop(AF_INET6, c->addr, a, sizeof(a));
		snprintf(s, n, "[%s]:%u", a, c->port);
	}
}

/* A PROXY header problem, logged at most once a second, with the peer's address. */
static void log_proxy(const struct conn *c, const char *why)
{
	char a[INET6_ADDRSTRLEN + 16];

	if (now - last_proxy_log < 1000)
		return;
	last_proxy_log = now;
	addr_str(c, a, sizeof(a));
	log_warnx("%s: PROXY header refused: %s", a, why);
}

/*
 * An authentication failure (enum conn_auth_fail), logged
 * at most once a second per reason, with the peer's address; never a token.
 */
static void log_auth(struct conn *c, int why)
{
	static const char *const what[] = {
	    "", "a Submit before a Conn that authenticated", "a Conn with a wrong or no token",
	    "a client certificate without the identity tls_identity names",
	    "no Conn within auth_timeout"};
	char a[INET6_ADDRSTRLEN + 16];

	c->auth_fail = 0;
	if (now - last_auth_log[why] < 1000)
		return;
	last_auth_log[why] = now;
	addr_str(c, a, sizeof(a));
	log_warnx("%s: not authorized: %s", a, what[why]);
}

/*
 * auth = certificate or certificate_or_token, after the handshake: the
 * verified certificate's identity authenticates the connection. Without
 * one, auth = certificate refuses whatever the client sends (result 3);
 * certificate_or_token still takes a token.
 */
static void cert_identity(struct conn *c)
{
	char id[AUTH_IDENTITY_MAX + 1];
	size_t n = tls_peer_identity(&c->tr, cf->tls_identity, id, sizeof(id));

	if (n > 0 && (c->identity_buf = mem_alloc(AUTH_IDENTITY_MAX + 1)) != NULL) {
		memcpy(c->identity_buf, id, n + 1);
		c->identity = c->identity_buf;
		c->identity_len = (uint8_t)n;
		c->auth_need = 0;
		stats_add(slot, STATS_auth_certificate, 1);
	} else if (cf->auth == CONF_AUTH_CERTIFICATE) {
		c->auth_no_identity = 1;
	}
}

/* The bytes a TLS port refused begin like a PROXY header. */
static int proxy_sent(const struct conn *c)
{
	uint8_t b[12];
	ssize_t n = recv(c->fd, b, sizeof(b), MSG_PEEK);

	return n > 0 && proxy_looks_like(b, (size_t)n);
}

/*
 * One step of a PROXY header from a trusted peer: what has arrived is
 * peeked at and taken only as far as it is header, so what follows (the
 * first frame, or the TLS ClientHello) stays in the socket for its reader.
 * Once the header is complete, its source address is the client's.
 */
static void on_proxy(struct conn *c)
{
	struct conn_proxy *p = c->proxy;
	struct proxy_hdr h;
	const char *why = "";
	ssize_t n, take;
	int r;

	n = recv(c->fd, p->buf + p->have, sizeof(p->buf) - p->have, MSG_PEEK);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		stats_add(slot, STATS_proxy_closed, 1);
		finish(c, n == 0 || errno == ECONNRESET ? CONN_R_PROXY : CONN_R_ERROR);
		return;
	}
	r = proxy_parse(p->buf, p->have + (size_t)n, &h, &why);
	if (r == -1) {
		stats_add(slot, STATS_proxy_malformed, 1);
		log_proxy(c, why);
		finish(c, CONN_R_PROXY);
		return;
	}
	/* All of it is header so far, or the header ends inside it. */
	take = r == 0 ? n : r - p->have;
	if (recv(c->fd, p->buf + p->have, (size_t)take, 0) != take) {
		finish(c, CONN_R_ERROR);
		return;
	}
	p->have = (uint16_t)(p->have + take);
	if (r == 0)
		return;
	stats_add(slot, h.version == 1 ? STATS_proxy_v1 : STATS_proxy_v2, 1);
	if (h.kind == PROXY_ADDR) {
		memcpy(c->addr, h.addr, sizeof(c->addr));
		c->port = h.port;
	}
	proxy_done(c);
	if (ip_over(c)) {
		finish(c, CONN_R_LIMIT_IP);
		return;
	}
	if (c->hs & CONN_HS_TLS) {
		/* The ClientHello, when it is there, is a handshake step of the next round. */
		c->hs_us = mono_us();
		return;
	}
	c->last_frame_ms = now; /* idle from here */
	serve(c, EPOLLIN);
}

/* One step of c's TLS handshake; once done, what the client sent with it is read. */
static void on_handshake(struct conn *c)
{
	enum tls_failure why;
	char detail[128];

	switch (tls_handshake(&c->tr, &why, detail, sizeof(detail))) {
	case TLS_WANT_READ:
		watch(c, EPOLLIN);
		return;
	case TLS_WANT_WRITE:
		watch(c, EPOLLOUT);
		return;
	case TLS_FAILED:
		if (why == TLS_F_NOT_TLS && proxy_sent(c)) {
			stats_add(slot, STATS_proxy_untrusted, 1);
			log_proxy(c, "a PROXY header from outside proxy_protocol_from");
			finish(c, CONN_R_PROXY);
			return;
		}
		stats_add(slot, handshake_counter[why], 1);
		log_debug("fd %d: TLS handshake failed: %s", c->fd, detail);
		finish(c, CONN_R_HANDSHAKE);
		return;
	case TLS_DONE:
		break;
	}
	int v = (c->tr.flags & TRANSPORT_TLS13) != 0;
	c->hs = 0;
	c->last_frame_ms = now; /* idle from here */
	stats_add(slot, STATS_tls_hs_ok, 1);
	if (c->tr.flags & TRANSPORT_RESUMED)
		stats_add(slot, STATS_tls_resumed, 1);
	stats_handshake(slot, mono_us() - c->hs_us);
	if (c->auth_need && cf->auth != CONF_AUTH_TOKEN)
		cert_identity(c);
	STATS_STORE(slot->tls_open[v], STATS_LOAD(slot->tls_open[v]) + 1);
	serve(c, EPOLLIN);
}

/* What TLS decrypted last round beyond the buffer's room: read it before new events. */
static void serve_again(void)
{
	struct conn *list = again;

	/* Taken whole: a connection still holding input goes back on for the next round. */
	again = NULL;
	while (list != NULL) {
		struct conn *c = list;
		list = c->next_again;
		c->again = 0;
		if (c->state != CONN_CLOSED)
			serve(c, EPOLLIN);
	}
}

/*
 * Handles the n events of one round: signals, accepts, each connection's
 * read, and then at most HANDSHAKES_PER_ROUND handshake steps; the
 * handshakes left wait for the next round (epoll reports them again).
 */
static void dispatch(const struct epoll_event *evs, int n)
{
	struct conn *hs[MAX_EVENTS];
	int nhs = 0;

	for (int i = 0; i < n; i++) {
		void *p = evs[i].data.ptr;
		uint32_t e = evs[i].events;
		if (p == TAG_SIGNAL) {
			on_signal();
			continue;
		}
		if ((char *)p >= tags && (char *)p < tags + CONF_MAX_LISTEN) {
			if (!draining && !accept_paused)
				on_accept((int)((char *)p - tags));
			continue;
		}
		struct conn *c = p;
		if (c->state == CONN_CLOSED)
			continue;
		if (c->hs & CONN_HS_PROXY)
			on_proxy(c); /* a peek and a read: not rationed */
		else if (c->hs)
			hs[nhs++] = c;
		else
			serve(c, e);
	}
	for (int i = 0; i < nhs && i < HANDSHAKES_PER_ROUND; i++)
		if (hs[i]->state != CONN_CLOSED)
			on_handshake(hs[i]);
}

/* Watches the listeners again once a deferral or an accept pause is over. */
static void resume_accept(void)
{
	/* Deferring: take connections again once no taker holds clearly fewer. */
	if (listen_mode == LISTEN_ET && fair_to_accept())
		listen_set(LISTEN_LT);
	if (accept_paused && now >= accept_resume_ms && !draining) {
		accept_paused = 0;
		listen_set(LISTEN_LT);
	}
}

/* The end of a drain: closes what is left, seals the spool's segment. Never returns. */
__attribute__((noreturn)) static void leave(void)
{
	if (nconns > 0)
		log_warnx("closing %ld connections at the drain deadline", nconns);
	for (size_t fd = 0; fd < conns_cap; fd++)
		if (conns[fd] != NULL)
			finish(conns[fd], CONN_R_SHUTDOWN);
	flush_pending();
	spoolw_close();
	STATS_STORE(slot->allocated, mem_allocated());
	log_info("exiting");
	exit(0);
}

void worker_main(const struct worker_args *a)
{
	struct epoll_event evs[MAX_EVENTS];
	uint64_t next_tick;

	setup(a);
	next_tick = now + 1000;
	for (;;) {
		int n = epoll_wait(ep, evs, MAX_EVENTS, poll_timeout(next_tick));
		if (n == -1 && errno != EINTR)
			fatal("epoll_wait");
		now = mono_ms();
		if (ctx.rl != NULL)
			ctx.now_ns = mono_ns();
		STATS_STORE(ctl->heartbeat_ms, now);
		round_no++;
		spoolw_round_begin();
		serve_again();
		dispatch(evs, n);
		struct spoolw_round r = spoolw_commit(now);
		ackq_round_end(ctx.batch, r.failed, r.ns, r.off);
		ackq_stream_release(mark_pending);
		flush_pending();
		spoolw_tick(now);
		resume_accept();
		if (now >= next_tick || (draining && now >= drain_deadline)) {
			tick();
			flush_pending();
			next_tick = now + 1000;
		}
		if (draining && (nconns == 0 || stopping || now >= hard_deadline))
			break;
	}
	leave();
}
