/* Sockets: address parsing, listening, connecting. Returns errors, never logs. */
#ifndef SUBMITD_NET_H
#define SUBMITD_NET_H

#include <stddef.h>
#include <sys/socket.h>

#define NET_ADDRSTRLEN 64

struct net_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/*
 * Parse "host:port", "[v6]:port" or "*:port" (numeric hosts and
 * "localhost"). 0, or -1 with a message in err.
 */
int net_parse_addr(const char *s, struct net_addr *a, char *err, size_t errlen);
/* "127.0.0.1:8888", "[::1]:8888" */
void net_addr_str(const struct net_addr *a, char *out, size_t outlen);
int net_addr_port(const struct net_addr *a);

/* A non-blocking, close-on-exec listening socket (IPv6 sockets are v6-only). */
int net_listen(const struct net_addr *a, int backlog, char *err, size_t errlen);
/* The address a socket is bound to (the real port after binding port 0). */
int net_sockname(int fd, struct net_addr *a);

/*
 * Start a non-blocking connect, from src if it is not NULL. Returns the fd
 * (connection in progress or done), or -1 with err filled.
 */
int net_connect(const struct net_addr *dst, const struct net_addr *src, char *err, size_t errlen);
int net_set_nodelay(int fd);

#endif
