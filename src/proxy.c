/*
 * The PROXY protocol header, v1 (text) and v2 (binary), and trusted
 * networks. See proxy.h.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char v1_sig[] = "PROXY ";
#define V1_SIG_LEN (sizeof(v1_sig) - 1)

static void mapped(uint8_t addr[16], const uint8_t v4[4])
{
	memset(addr, 0, 10);
	addr[10] = addr[11] = 0xff;
	memcpy(addr + 12, v4, 4);
}

/* A decimal port, 0 to 65535, no sign, no leading zero, at most 5 digits. */
static int port_parse(const char *s, size_t n, uint16_t *port)
{
	unsigned long v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* The next space-separated field of line[*at..end): its start and length. */
static int field(const char *line, size_t end, size_t *at, const char **f, size_t *len)
{
	size_t i = *at;

	while (i < end && line[i] != ' ')
		i++;
	if (i == *at)
		return -1;
	*f = line + *at;
	*len = i - *at;
	*at = i < end ? i + 1 : i; /* past one space */
	return 0;
}

/* "PROXY TCP4 SRC DST SPORT DPORT", "PROXY TCP6 ..." or "PROXY UNKNOWN...", without CRLF. */
static int v1_line(const char *line, size_t end, struct proxy_hdr *h, const char **why)
{
	const char *f[5];
	size_t len[5], at = V1_SIG_LEN;
	char a[INET6_ADDRSTRLEN];
	uint8_t bin[16];
	uint16_t dport;
	int af;

	h->version = 1;
	if (end - at >= 7 && memcmp(line + at, "UNKNOWN", 7) == 0) {
		/* The balancer does not know (or will not say): the rest is ignored. */
		h->kind = PROXY_LOCAL;
		return 0;
	}
	for (int i = 0; i < 5; i++) {
		if (field(line, end, &at, &f[i], &len[i]) == -1) {
			*why = "v1: a missing field";
			return -1;
		}
	}
	if (at != end || line[end - 1] == ' ') {
		*why = "v1: fields after the destination port";
		return -1;
	}
	if (len[0] == 4 && memcmp(f[0], "TCP4", 4) == 0) {
		af = AF_INET;
	} else if (len[0] == 4 && memcmp(f[0], "TCP6", 4) == 0) {
		af = AF_INET6;
	} else {
		*why = "v1: the protocol is not TCP4, TCP6 or UNKNOWN";
		return -1;
	}
	for (int i = 1; i <= 2; i++) {
		if (len[i] >= sizeof(a)) {
			*why = "v1: an address that is not one";
			return -1;
		}
		memcpy(a, f[i], len[i]);
		a[len[i]] = '\0';
		if (inet_pton(af, a, bin) != 1) {
			*why = af == AF_INET ? "v1: an address that is not IPv4"
					     : "v1: an address that is not IPv6";
			return -1;
		}
		if (i == 1) {
			if (af == AF_INET)
				mapped(h->addr, bin);
			else
				memcpy(h->addr, bin, 16);
		}
	}
	if (port_parse(f[3], len[3], &h->port) == -1 || port_parse(f[4], len[4], &dport) == -1) {
		*why = "v1: a port that is not 0 to 65535";
		return -1;
	}
	h->kind = PROXY_ADDR;
	return 0;
}

static int parse_v1(const uint8_t *p, size_t n, struct proxy_hdr *h, const char **why)
{
	/* The CR is at PROXY_V1_MAX - 2 at the latest. */
	size_t lim = n < PROXY_V1_MAX - 1 ? n : PROXY_V1_MAX - 1;

	for (size_t i = V1_SIG_LEN; i < lim; i++) {
		if (p[i] == '\r') {
			if (i + 1 == n)
				return 0;
			if (p[i + 1] != '\n') {
				*why = "v1: CR without LF";
				return -1;
			}
			if (v1_line((const char *)p, i, h, why) == -1)
				return -1;
			return (int)(i + 2);
		}
		if (p[i] < 0x20 || p[i] > 0x7e) {
			*why = "v1: a byte that is not printable ASCII";
			return -1;
		}
	}
	if (n >= PROXY_V1_MAX - 1) {
		*why = "v1: no CRLF within 107 bytes";
		return -1;
	}
	return 0;
}

/* The TLVs after the addresses: each type, a 2-byte length, that many bytes. */
static int v2_tlvs(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (n - i < 3)
			return -1;
		size_t len = (size_t)p[i + 1] << 8 | p[i + 2];
		if (n - i - 3 < len)
			return -1;
		i += 3 + len;
	}
	return 0;
}

static int parse_v2(const uint8_t *p, size_t n, struct proxy_hdr *h, const char **why)
{
	size_t len, need;
	uint8_t cmd, af, tr;

	if (n < PROXY_V2_HDR)
		return 0;
	if (p[12] >> 4 != 2) {
		*why = "v2: the version is not 2";
		return -1;
	}
	cmd = p[12] & 0x0f;
	af = p[13] >> 4;
	tr = p[13] & 0x0f;
	if (cmd > 1) {
		*why = "v2: the command is not LOCAL or PROXY";
		return -1;
	}
	if (af > 3 || tr > 2) {
		*why = "v2: an unknown address family or transport";
		return -1;
	}
	len = (size_t)p[14] << 8 | p[15];
	if (len > PROXY_V2_ADDRS) {
		*why = "v2: longer than 1040 bytes";
		return -1;
	}
	need = af == 1 ? 12 : af == 2 ? 36 : af == 3 ? 216 : 0;
	if (len < need) {
		*why = "v2: the length is too short for the address family";
		return -1;
	}
	if (n < PROXY_V2_HDR + len)
		return 0;
	if (v2_tlvs(p + PROXY_V2_HDR + need, len - need) == -1) {
		*why = "v2: a TLV that does not fit the header";
		return -1;
	}
	h->version = 2;
	h->kind = PROXY_LOCAL;
	if (cmd == 1 && tr == 1 && af == 1) {
		mapped(h->addr, p + 16);
		h->port = (uint16_t)(p[24] << 8 | p[25]);
		h->kind = PROXY_ADDR;
	} else if (cmd == 1 && tr == 1 && af == 2) {
		memcpy(h->addr, p + 16, 16);
		h->port = (uint16_t)(p[48] << 8 | p[49]);
		h->kind = PROXY_ADDR;
	}
	return (int)(PROXY_V2_HDR + len);
}

int proxy_parse(const uint8_t *p, size_t n, struct proxy_hdr *h, const char **why)
{
	size_t k;

	memset(h, 0, sizeof(*h));
	if (n == 0)
		return 0;
	if (p[0] == v1_sig[0]) {
		k = n < V1_SIG_LEN ? n : V1_SIG_LEN;
		if (memcmp(p, v1_sig, k) != 0)
			goto not_header;
		return n < V1_SIG_LEN ? 0 : parse_v1(p, n, h, why);
	}
	if (p[0] == v2_sig[0]) {
		k = n < sizeof(v2_sig) ? n : sizeof(v2_sig);
		if (memcmp(p, v2_sig, k) != 0)
			goto not_header;
		return parse_v2(p, n, h, why);
	}
not_header:
	*why = "not a PROXY header";
	return -1;
}

int proxy_looks_like(const uint8_t *p, size_t n)
{
	if (n >= 1 && p[0] == v1_sig[0])
		return memcmp(p, v1_sig, n < V1_SIG_LEN ? n : V1_SIG_LEN) == 0;
	if (n >= 1 && p[0] == v2_sig[0])
		return memcmp(p, v2_sig, n < sizeof(v2_sig) ? n : sizeof(v2_sig)) == 0;
	return 0;
}

int proxy_net_parse(const char *s, struct proxy_net *net, const char **why)
{
	char a[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	uint8_t bin[16];
	long bits;
	int max;

	if (alen == 0 || alen >= sizeof(a)) {
		*why = "not an address or network";
		return -1;
	}
	memcpy(a, s, alen);
	a[alen] = '\0';
	memset(net, 0, sizeof(*net));
	if (inet_pton(AF_INET, a, bin) == 1) {
		mapped(net->addr, bin);
		max = 32;
	} else if (inet_pton(AF_INET6, a, bin) == 1) {
		memcpy(net->addr, bin, 16);
		max = 128;
	} else {
		*why = "not an IPv4 or IPv6 address";
		return -1;
	}
	bits = max;
	if (slash != NULL) {
		char *end;
		if (slash[1] < '0' || slash[1] > '9') {
			*why = "the prefix length is not a number";
			return -1;
		}
		bits = strtol(slash + 1, &end, 10);
		if (*end != '\0' || bits > max) {
			*why = max == 32 ? "the prefix length is not 0 to 32"
					 : "the prefix length is not 0 to 128";
			return -1;
		}
	}
	net->bits = (uint8_t)(bits + (128 - max));
	for (int i = net->bits; i < 128; i++) {
		if (net->addr[i / 8] & (0x80 >> (i % 8))) {
			*why = "bits set past the prefix length";
			return -1;
		}
	}
	return 0;
}

static int in_net(const struct proxy_net *net, const uint8_t addr[16])
{
	int whole = net->bits / 8, rest = net->bits % 8;

	if (memcmp(net->addr, addr, (size_t)whole) != 0)
		return 0;
	if (rest == 0)
		return 1;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (addr[whole] & mask) == net->addr[whole];
}

int proxy_net_match(const struct proxy_net *nets, int n, const uint8_t addr[16])
{
	for (int i = 0; i < n; i++)
		if (in_net(&nets[i], addr))
			return 1;
	return 0;
}
