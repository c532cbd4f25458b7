#include "listen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"

struct listener {
	char *name; /* the address as configured, owned */
	struct net_addr addr;
	int fd;
};

static struct listener ls[CONF_MAX_LISTEN];
static int nls;
static struct listener retiring_ls[CONF_MAX_LISTEN]; /* closed once the new generation serves */
static int nretiring_ls;

static int find_listener(const struct listener *set, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(set[i].name, name) == 0)
			return i;
	return -1;
}

/* How many sockets of set c no longer names. */
static int leaving(const struct listener *set, int n, const struct conf *c)
{
	int nleave = 0;

	for (int i = 0; i < n; i++) {
		int keep = 1;
		for (int j = 0; j < c->nlisten; j++)
			keep &= strcmp(set[i].name, c->listen[j]) != 0;
		nleave += keep;
	}
	return nleave;
}

/* Bind c's address i into *l: 0, or -1 with the reason in err. */
static int bind_one(const struct conf *c, int i, struct listener *l, char *err, size_t errlen)
{
	char name[NET_ADDRSTRLEN];
	int fd = net_listen(&c->listen_addr[i], (int)c->backlog, err, errlen);
	char *lname = fd == -1 ? NULL : strdup(c->listen[i]);

	if (fd != -1 && lname == NULL) {
		snprintf(err, errlen, "listen: %s: out of memory", c->listen[i]);
		close(fd);
		fd = -1;
	}
	if (fd == -1)
		return -1;
	l->fd = fd;
	l->name = lname;
	net_sockname(fd, &l->addr);
	net_addr_str(&l->addr, name, sizeof(name));
	log_info("listening on %s", name);
	return 0;
}

/*
 * Keep the sockets of addresses that stay, take back those still waiting to
 * close from a previous change, bind the new ones. Changes that follow each
 * other faster than generations become ready are refused, not queued.
 */
int listen_apply(const struct conf *c, unsigned gen)
{
	struct listener next[CONF_MAX_LISTEN];
	int nnext = 0, fresh[CONF_MAX_LISTEN], nretire;
	char err[256];

	nretire = leaving(retiring_ls, nretiring_ls, c) + leaving(ls, nls, c);
	if (nretire > CONF_MAX_LISTEN) {
		log_errorx(
		    "listen: %d sockets would wait to close, at most %d: the previous listen "
		    "change is still pending (generation %u not ready); retry once it serves",
		    nretire, CONF_MAX_LISTEN, gen);
		return -1;
	}
	for (int i = 0; i < c->nlisten; i++) {
		int k = find_listener(ls, nls, c->listen[i]);
		fresh[nnext] = 0;
		if (k >= 0) {
			next[nnext++] = ls[k];
			continue;
		}
		if ((k = find_listener(retiring_ls, nretiring_ls, c->listen[i])) >= 0) {
			next[nnext++] = retiring_ls[k];
			continue;
		}
		if (bind_one(c, i, &next[nnext], err, sizeof(err)) == -1) {
			log_errorx("%s", err);
			for (int j = 0; j < nnext; j++)
				if (fresh[j]) {
					close(next[j].fd);
					free(next[j].name);
				}
			return -1;
		}
		fresh[nnext++] = 1;
	}
	/* What waits to close: the earlier leftovers and the sockets that go now. */
	int n = 0;
	for (int i = 0; i < nretiring_ls; i++)
		if (find_listener(next, nnext, retiring_ls[i].name) < 0)
			retiring_ls[n++] = retiring_ls[i];
	for (int i = 0; i < nls; i++)
		if (find_listener(next, nnext, ls[i].name) < 0)
			retiring_ls[n++] = ls[i];
	nretiring_ls = n;
	memcpy(ls, next, sizeof(next[0]) * (size_t)nnext);
	nls = nnext;
	return 0;
}

int listen_fds(int *fds, uint8_t *tls, int max)
{
	int n = 0;

	for (int i = 0; i < nls && n < max; i++) {
		tls[n] = strncmp(ls[i].name, CONF_TLS_PREFIX, strlen(CONF_TLS_PREFIX)) == 0;
		fds[n++] = ls[i].fd;
	}
	return n;
}

void listen_forget(int *fds, int *nfds, int max)
{
	for (int i = 0; i < nretiring_ls && *nfds < max; i++)
		fds[(*nfds)++] = retiring_ls[i].fd;
}

void listen_close_retiring(void)
{
	for (int i = 0; i < nretiring_ls; i++) {
		log_info("closing listener %s", retiring_ls[i].name);
		close(retiring_ls[i].fd);
		free(retiring_ls[i].name);
	}
	nretiring_ls = 0;
}

void listen_stop(void)
{
	listen_close_retiring();
	/*
	 * Closing only the master's copy is not enough: until the last worker
	 * has closed its own, the kernel completes handshakes nobody will
	 * accept (a client reconnecting after its worker's FIN lands there)
	 * and resets them when that last copy goes. shutdown() ends listening
	 * for every copy, so such a client is refused at once.
	 */
	for (int i = 0; i < nls; i++) {
		shutdown(ls[i].fd, SHUT_RD);
		close(ls[i].fd);
		free(ls[i].name);
	}
	nls = 0;
}
