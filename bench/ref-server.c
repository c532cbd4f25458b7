/*
 * submit-ref: the reference server of make bench. One thread, one epoll
 * loop, no configuration, no metrics: the floor of what the framing costs
 * on this machine. Same protocol behaviour as submitd: acks in request
 * order, and on a protocol error the acks of everything before it, then
 * close.
 *
 * usage: submit-ref [--corrupt-ack N] [--close-after N] [--not-stored N]
 *                   [--max-frame N] [host:]port
 *   --corrupt-ack N   corrupt the id of the Nth ack sent (counted over all
 *                     connections): a wrong server for submit-bench's tests
 *   --close-after N   close each connection after its Nth ack, between two
 *                     acks (exercises a client's reconnect)
 *   --not-stored N    answer every Nth Submit (counted over all connections)
 *                     with result 2, not stored, as a full spool would
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "net.h"
#include "proto.h"

#define MAX_EVENTS 256

struct ref_conn {
	int fd;
	int closing;  /* protocol error or EOF: flush the acks, then close */
	int out_wait; /* waiting for EPOLLOUT; reads stop meanwhile */
	int eof;      /* the client closed its side */
	int linger;   /* our side shut: discard input until the client closes */
	uint64_t acks;
	struct buf in;
	struct buf out;
};

static volatile sig_atomic_t stop;
static uint64_t corrupt_ack;
static uint64_t close_after;
static uint32_t max_frame = 65536;
static uint64_t not_stored;
static uint64_t acks_sent;
static uint64_t submits_seen;
static int ep;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void conn_free(struct ref_conn *c)
{
	close(c->fd);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

static int set_events(struct ref_conn *c, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};

	return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write what is queued. 0: all written, 1: socket full, -1: error. */
static int conn_flush(struct ref_conn *c)
{
	ssize_t n;

	while (buf_len(&c->out) > 0) {
		n = send(c->fd, buf_head(&c->out), buf_len(&c->out), MSG_NOSIGNAL);
		if (n > 0)
			buf_consume(&c->out, (size_t)n);
		else if (n == -1 && errno == EAGAIN)
			return 1;
		else if (n == -1 && errno != EINTR)
			return -1;
	}
	buf_release(&c->out);
	return 0;
}

/* Turn every complete request into an ack. -1 on a protocol error. */
static int conn_decode(struct ref_conn *c)
{
	struct proto_frame f;
	uint8_t result;
	int r;

	for (;;) {
		if (close_after > 0 && c->acks >= close_after)
			return -1;
		r = proto_decode(buf_head(&c->in), buf_len(&c->in), max_frame, &f);
		if (r == PROTO_NEED_MORE)
			return 0;
		if (r != PROTO_OK)
			return -1;
		if (buf_reserve(&c->out, PROTO_ACK_LEN) == -1)
			return -1;
		result = PROTO_RESULT_OK;
		if (f.cmd == PROTO_SUBMIT && not_stored > 0 && ++submits_seen % not_stored == 0)
			result = 2;
		proto_encode_ack(buf_tail(&c->out), proto_ack_cmd(f.cmd), f.id, result);
		if (++acks_sent == corrupt_ack)
			buf_tail(&c->out)[PROTO_MIN_FRAME] ^= 0xff;
		buf_commit(&c->out, PROTO_ACK_LEN);
		buf_consume(&c->in, f.len);
		c->acks++;
	}
}

/* Returns -1 when the connection is gone. */
static int conn_output(struct ref_conn *c)
{
	int r = conn_flush(c);

	if (r == -1 || (r == 0 && c->closing && c->eof)) {
		conn_free(c);
		return -1;
	}
	if (r == 0 && c->closing) {
		/*
		 * Closing with unread input would send a reset, which can
		 * overtake the acks still in flight: send FIN, then wait for
		 * the client's.
		 */
		shutdown(c->fd, SHUT_WR);
		c->linger = 1;
		c->out_wait = 0;
		set_events(c, EPOLLIN);
		return 0;
	}
	if (r == 1 && !c->out_wait) {
		c->out_wait = 1;
		set_events(c, EPOLLOUT);
	} else if (r == 0 && c->out_wait) {
		c->out_wait = 0;
		set_events(c, EPOLLIN);
	}
	return 0;
}

static void conn_readable(struct ref_conn *c)
{
	size_t want = 4096;
	uint8_t scratch[4096];
	ssize_t n;

	if (c->linger) {
		n = read(c->fd, scratch, sizeof(scratch));
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
			conn_free(c);
		return;
	}

	/* A frame bigger than the free space: make room for all of it. */
	if (buf_len(&c->in) >= PROTO_HDR_LEN) {
		uint32_t len = proto_get_u32(buf_head(&c->in));
		if (len <= max_frame && len > buf_len(&c->in))
			want = len - buf_len(&c->in);
	}
	if (buf_reserve(&c->in, want) == -1) {
		conn_free(c);
		return;
	}
	n = read(c->fd, buf_tail(&c->in), buf_space(&c->in));
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* EOF: a half-close still gets the acks for what came before. */
		c->closing = 1;
		c->eof = 1;
		if (n == -1) {
			conn_free(c);
			return;
		}
	} else {
		buf_commit(&c->in, (size_t)n);
	}
	if (conn_decode(c) == -1)
		c->closing = 1;
	buf_release(&c->in);
	conn_output(c);
}

static void accept_all(int lfd)
{
	struct epoll_event ev;
	struct ref_conn *c;
	int fd;

	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				fprintf(stderr, "submit-ref: accept: %s\n", strerror(errno));
			return;
		}
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		net_set_nodelay(fd);
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
			close(fd);
			free(c);
		}
	}
}

static uint64_t parse_u64(const char *opt, const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0') {
		fprintf(stderr, "submit-ref: %s: bad number \"%s\"\n", opt, s);
		exit(2);
	}
	return v;
}

static const char usage_line[] = "usage: submit-ref [--corrupt-ack N] [--close-after N] "
				 "[--not-stored N] [--max-frame N] [host:]port\n";
#define GO_ON (-1) /* parse_args: nothing to end with, go on */

/*
 * Reads the options into the globals above and the address to listen on
 * into addr (host 127.0.0.1 unless given). Returns GO_ON, or the exit
 * status: 0 after --help, 2 for a wrong command line.
 */
static int parse_args(int argc, char **argv, char *addr, size_t addrlen)
{
	static const struct option longopts[] = {
	    {"corrupt-ack", required_argument, NULL, 'C'},
	    {"close-after", required_argument, NULL, 'A'},
	    {"max-frame", required_argument, NULL, 'M'},
	    {"not-stored", required_argument, NULL, 'N'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'C':
			corrupt_ack = parse_u64("--corrupt-ack", optarg);
			break;
		case 'A':
			close_after = parse_u64("--close-after", optarg);
			break;
		case 'M':
			max_frame = (uint32_t)parse_u64("--max-frame", optarg);
			break;
		case 'N':
			not_stored = parse_u64("--not-stored", optarg);
			break;
		case 'h':
			fputs(usage_line, stdout);
			return 0;
		default:
			return 2;
		}
	}
	if (optind != argc - 1) {
		fputs(usage_line, stderr);
		return 2;
	}
	if (strchr(argv[optind], ':') == NULL)
		snprintf(addr, addrlen, "127.0.0.1:%s", argv[optind]);
	else
		snprintf(addr, addrlen, "%s", argv[optind]);
	return GO_ON;
}

/*
 * SIGTERM and SIGINT set stop, blocked outside the wait (orig receives the
 * mask to wait with): no lost wake-up between the check and the sleep.
 */
static void block_signals(sigset_t *orig)
{
	struct sigaction sa;
	sigset_t block;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, orig);
}

int main(int argc, char **argv)
{
	struct epoll_event evs[MAX_EVENTS], ev;
	struct net_addr a;
	sigset_t orig;
	char err[192], addr[NET_ADDRSTRLEN + 16], name[NET_ADDRSTRLEN];
	int lfd, n;

	if ((n = parse_args(argc, argv, addr, sizeof(addr))) != GO_ON)
		return n;
	if (net_parse_addr(addr, &a, err, sizeof(err)) == -1 ||
	    (lfd = net_listen(&a, 4096, err, sizeof(err))) == -1) {
		fprintf(stderr, "submit-ref: %s\n", err);
		return 1;
	}
	net_sockname(lfd, &a);
	net_addr_str(&a, name, sizeof(name));
	block_signals(&orig);

	buf_pool_init(16384, 1024);
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		fprintf(stderr, "submit-ref: epoll_create1: %s\n", strerror(errno));
		return 1;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	fprintf(stderr, "submit-ref: listening on %s\n", name);

	while (!stop) {
		n = epoll_pwait(ep, evs, MAX_EVENTS, -1, &orig);
		for (int i = 0; i < n; i++) {
			struct ref_conn *c = evs[i].data.ptr;
			if (c == NULL) {
				accept_all(lfd);
			} else if (c->out_wait) {
				conn_output(c);
			} else {
				conn_readable(c);
			}
		}
	}
	return 0;
}
