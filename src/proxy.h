/*
 * The PROXY protocol header, versions 1 and 2 (HAProxy's "The PROXY
 * protocol", 2020-03-05), and the source networks it is trusted from: pure
 * functions over byte buffers, no I/O, no allocation. The worker reads a
 * header from a trusted peer (docs/OPERATIONS.md, "Behind a load balancer").
 */
#ifndef SUBMITD_PROXY_H
#define SUBMITD_PROXY_H

#include <stddef.h>
#include <stdint.h>

#define PROXY_V1_MAX   107 /* "PROXY TCP6 <39> <39> <5> <5>\r\n", the spec's bound */
#define PROXY_V2_HDR   16  /* signature, version and command, family, length */
#define PROXY_V2_ADDRS 1024
#define PROXY_MAX      (PROXY_V2_HDR + PROXY_V2_ADDRS) /* the longest header accepted */

enum proxy_kind {
	PROXY_ADDR,  /* v1 TCP4/TCP6, v2 PROXY over TCP: the source address is the client's */
	PROXY_LOCAL, /* v1 UNKNOWN, v2 LOCAL or a family other than TCP: keep the peer's */
};

struct proxy_hdr {
	uint8_t version;  /* 1 or 2 */
	uint8_t kind;	  /* enum proxy_kind */
	uint16_t port;	  /* the source port (PROXY_ADDR) */
	uint8_t addr[16]; /* the source address, IPv6 or IPv4-mapped (PROXY_ADDR) */
};

/*
 * Parses the header at the start of p[0..n), into *h (zeroed first).
 * Returns its length (> 0), 0 if all of p is a valid beginning of a header
 * and more is needed, or -1 if it is not a header: *why says what is wrong.
 * A length returned is at most PROXY_MAX; what follows it is the client's.
 */
int proxy_parse(const uint8_t *p, size_t n, struct proxy_hdr *h, const char **why);

/* p[0..n) begins like a PROXY header (v1 "PROXY " or v2's signature), n >= 1. */
int proxy_looks_like(const uint8_t *p, size_t n);

/* A source network: addresses in IPv6 form (IPv4-mapped for IPv4). */
struct proxy_net {
	uint8_t addr[16];
	uint8_t bits; /* the prefix length over the 128 bits */
};

/*
 * Parses "10.0.0.0/8", "2001:db8::/32" or a single address (all its bits).
 * Returns 0, or -1 with *why. Bits set past the prefix are refused, as a
 * likely typo ("10.1.0.0/8").
 */
int proxy_net_parse(const char *s, struct proxy_net *net, const char **why);

/* addr (IPv6 or IPv4-mapped) is in one of the n networks. */
int proxy_net_match(const struct proxy_net *nets, int n, const uint8_t addr[16]);

#endif
