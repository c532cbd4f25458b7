#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int net_parse_addr(const char *s, struct net_addr *a, char *err, size_t errlen)
{
	char host[NET_ADDRSTRLEN];
	const char *port, *h;
	size_t hlen;
	char *end;
	long p;

	memset(a, 0, sizeof(*a));
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':') {
			snprintf(err, errlen, "\"%s\": expected [ipv6]:port", s);
			return -1;
		}
		h = s + 1;
		hlen = (size_t)(close - h);
		port = close + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (colon == NULL) {
			snprintf(err, errlen, "\"%s\": expected host:port", s);
			return -1;
		}
		if (memchr(s, ':', (size_t)(colon - s)) != NULL) {
			snprintf(err, errlen, "\"%s\": an IPv6 address needs brackets: [addr]:port",
				 s);
			return -1;
		}
		h = s;
		hlen = (size_t)(colon - s);
		port = colon + 1;
	}
	if (hlen >= sizeof(host)) {
		snprintf(err, errlen, "\"%s\": host too long", s);
		return -1;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	errno = 0;
	p = strtol(port, &end, 10);
	if (port[0] < '0' || port[0] > '9' || *end != '\0' || errno != 0 || p < 0 || p > 65535) {
		snprintf(err, errlen, "\"%s\": bad port \"%s\"", s, port);
		return -1;
	}
	if (strcmp(host, "*") == 0 || strcmp(host, "") == 0)
		snprintf(host, sizeof(host), "0.0.0.0");
	else if (strcmp(host, "localhost") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");

	struct sockaddr_in *in4 = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)p);
		a->len = sizeof(*in4);
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)p);
		a->len = sizeof(*in6);
	} else {
		snprintf(err, errlen, "\"%s\": \"%s\" is not a numeric IPv4 or IPv6 address", s,
			 host);
		return -1;
	}
	return 0;
}

void net_addr_str(const struct net_addr *a, char *out, size_t outlen)
{
	char host[INET6_ADDRSTRLEN];

	if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out, outlen, "[%s]:%d", host, ntohs(in6->sin6_port));
	} else if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)&a->ss;
		inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
		snprintf(out, outlen, "%s:%d", host, ntohs(in4->sin_port));
	} else {
		snprintf(out, outlen, "?");
	}
}

int net_addr_port(const struct net_addr *a)
{
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

int net_listen(const struct net_addr *a, int backlog, char *err, size_t errlen)
{
	char name[NET_ADDRSTRLEN];
	int fd, on = 1;

	net_addr_str(a, name, sizeof(name));
	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "socket %s: %s", name, strerror(errno));
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1 ||
	    (a->ss.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) == -1)) {
		snprintf(err, errlen, "setsockopt %s: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1) {
		snprintf(err, errlen, "bind %s: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	if (listen(fd, backlog) == -1) {
		snprintf(err, errlen, "listen %s: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int net_sockname(int fd, struct net_addr *a)
{
	memset(a, 0, sizeof(*a));
	a->len = sizeof(a->ss);
	return getsockname(fd, (struct sockaddr *)&a->ss, &a->len);
}

int net_connect(const struct net_addr *dst, const struct net_addr *src, char *err, size_t errlen)
{
	char name[NET_ADDRSTRLEN];
	int fd, on = 1;

	net_addr_str(dst, name, sizeof(name));
	fd = socket(dst->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (src != NULL) {
		/* Let the kernel pick the port at connect time: many more 4-tuples. */
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof(on));
		if (bind(fd, (const struct sockaddr *)&src->ss, src->len) == -1) {
			char s[NET_ADDRSTRLEN];
			net_addr_str(src, s, sizeof(s));
			snprintf(err, errlen, "bind %s: %s", s, strerror(errno));
			close(fd);
			return -1;
		}
	}
	if (connect(fd, (const struct sockaddr *)&dst->ss, dst->len) == -1 &&
	    errno != EINPROGRESS) {
		snprintf(err, errlen, "connect %s: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int net_set_nodelay(int fd)
{
	int on = 1;
	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}
