/* proxy.c against HAProxy's PROXY protocol spec: tables of headers, every prefix, the networks. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proxy.h"
#include "tap.h"

static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A v2 header: signature, ver_cmd, fam, then body (len bytes). Returns its length. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t len)
{
	memcpy(out, sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(len >> 8);
	out[15] = (uint8_t)len;
	if (len)
		memcpy(out + 16, body, len);
	return 16 + len;
}

static void addr_str(const uint8_t a[16], char *s, size_t n)
{
	static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (memcmp(a, pre, 12) == 0)
		inet_ntop(AF_INET, a + 12, s, (socklen_t)n);
	else
		inet_ntop(AF_INET6, a, s, (socklen_t)n);
}

/*
 * Every proper prefix of the header is "need more", the whole of it
 * parses to its length, and bytes after it are not the header's.
 */
static void good(const uint8_t *p, size_t n, int kind, const char *addr, int port, const char *what)
{
	struct proxy_hdr h;
	const char *why = NULL;
	uint8_t buf[PROXY_MAX + 64];
	char got[INET6_ADDRSTRLEN] = "";
	size_t bad_prefix = 0;

	for (size_t k = 0; k < n; k++)
		if (proxy_parse(p, k, &h, &why) != 0 && bad_prefix == 0)
			bad_prefix = k + 1;
	ok(bad_prefix == 0, "%s: every prefix needs more", what);
	if (bad_prefix)
		diag("prefix of %zu bytes: %s", bad_prefix - 1, why ? why : "(parsed)");
	memcpy(buf, p, n);
	memcpy(buf + n, "\x16\x03\x01PROXY ", 9);
	memset(&h, 0, sizeof(h));
	int r = proxy_parse(buf, n + 9, &h, &why);
	if (!is_int(r, (long long)n, "%s: parses to its length", what))
		diag("why: %s", r == -1 ? why : "-");
	is_int(h.kind, kind, "%s: kind", what);
	if (kind == PROXY_ADDR) {
		addr_str(h.addr, got, sizeof(got));
		ok(strcmp(got, addr) == 0, "%s: source address %s (got %s)", what, addr, got);
		is_int(h.port, port, "%s: source port", what);
	}
	ok(proxy_looks_like(p, n < 5 ? n : 5), "%s: looks like a header", what);
}

static void bad(const uint8_t *p, size_t n, const char *want, const char *what)
{
	struct proxy_hdr h;
	const char *why = "";
	int r = proxy_parse(p, n, &h, &why);

	if (!ok(r == -1 && strcmp(why, want) == 0, "%s: refused: %s", what, want))
		diag("got %d, \"%s\"", r, why);
}

static void bad_str(const char *s, const char *want, const char *what)
{
	bad((const uint8_t *)s, strlen(s), want, what);
}

static void good_str(const char *s, int kind, const char *addr, int port, const char *what)
{
	good((const uint8_t *)s, strlen(s), kind, addr, port, what);
}

static void test_v1(void)
{
	char longest[160];

	good_str("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n", PROXY_ADDR, "192.0.2.1", 56324,
		 "v1 TCP4");
	good_str("PROXY TCP6 2001:db8::1 2001:db8::2 65535 8888\r\n", PROXY_ADDR, "2001:db8::1",
		 65535, "v1 TCP6");
	good_str("PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n", PROXY_ADDR, "0.0.0.0", 0, "v1 port 0");
	good_str("PROXY UNKNOWN\r\n", PROXY_LOCAL, NULL, 0, "v1 UNKNOWN");
	good_str("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", PROXY_LOCAL, NULL,
		 0, "v1 UNKNOWN with the rest ignored");
	/* The longest TCP6 header is 104 bytes; 107 with UNKNOWN is the bound. */
	snprintf(longest, sizeof(longest), "PROXY UNKNOWN %.*s\r\n", 107 - 16,
		 "0123456789012345678901234567890123456789012345678901234567890123456789"
		 "0123456789012345678901234567890123456789");
	is_int((long long)strlen(longest), 107, "the longest v1 header is 107 bytes");
	good_str(longest, PROXY_LOCAL, NULL, 0, "v1 of 107 bytes");
	snprintf(longest, sizeof(longest), "PROXY UNKNOWN %.*s\r\n", 107 - 15,
		 "0123456789012345678901234567890123456789012345678901234567890123456789"
		 "0123456789012345678901234567890123456789");
	bad_str(longest, "v1: no CRLF within 107 bytes", "v1 of 108 bytes");
	bad_str("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\n",
		"v1: a byte that is not printable ASCII", "v1 LF without CR");
	bad_str("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\rX", "v1: CR without LF",
		"v1 CR then not LF");
	bad_str("PROXY TCP5 192.0.2.1 198.51.100.7 56324 443\r\n",
		"v1: the protocol is not TCP4, TCP6 or UNKNOWN", "v1 TCP5");
	bad_str("PROXY TCP4 192.0.2.1 198.51.100.7 56324\r\n", "v1: a missing field",
		"v1 without the destination port");
	bad_str("PROXY TCP4 192.0.2.1  198.51.100.7 56324 443\r\n", "v1: a missing field",
		"v1 with two spaces");
	bad_str("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443 x\r\n",
		"v1: fields after the destination port", "v1 with a field too many");
	bad_str("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443 \r\n",
		"v1: fields after the destination port", "v1 with a trailing space");
	bad_str("PROXY TCP4 2001:db8::1 198.51.100.7 56324 443\r\n",
		"v1: an address that is not IPv4", "v1 TCP4 with an IPv6 address");
	bad_str("PROXY TCP6 192.0.2.1 2001:db8::2 56324 443\r\n", "v1: an address that is not IPv6",
		"v1 TCP6 with an IPv4 address");
	bad_str("PROXY TCP4 192.0.2.256 198.51.100.7 56324 443\r\n",
		"v1: an address that is not IPv4", "v1 with 256 in an address");
	bad_str("PROXY TCP4 192.0.2.1 198.51.100.7 65536 443\r\n",
		"v1: a port that is not 0 to 65535", "v1 port 65536");
	bad_str("PROXY TCP4 192.0.2.1 198.51.100.7 056324 443\r\n",
		"v1: a port that is not 0 to 65535", "v1 port with a leading zero");
	bad_str("PROXY TCP4 192.0.2.1 198.51.100.7 -1 443\r\n", "v1: a port that is not 0 to 65535",
		"v1 negative port");
	bad_str("PROXY TCP4 192.0.2.1 198.51.100.7 5\x01 443\r\n",
		"v1: a byte that is not printable ASCII", "v1 with a control byte");
	bad_str("PROXX TCP4", "not a PROXY header", "PROXX");
	bad_str("proxy TCP4", "not a PROXY header", "lower case");
}

static void test_v2(void)
{
	uint8_t h[PROXY_MAX + 16], body[PROXY_V2_ADDRS + 16];
	size_t n;

	/* IPv4: src 192.0.2.1, dst 198.51.100.7, sport 56324, dport 443. */
	static const uint8_t in4[12] = {192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb};
	n = v2(h, 0x21, 0x11, in4, sizeof(in4));
	good(h, n, PROXY_ADDR, "192.0.2.1", 56324, "v2 PROXY TCP over IPv4");
	uint8_t in6[36] = {0x20, 0x01, 0x0d, 0xb8};
	in6[15] = 1;
	in6[16] = 0x20, in6[17] = 0x01, in6[18] = 0x0d, in6[19] = 0xb8, in6[31] = 2;
	in6[32] = 0x1f, in6[33] = 0x90, in6[34] = 0x22, in6[35] = 0xb8;
	n = v2(h, 0x21, 0x21, in6, sizeof(in6));
	good(h, n, PROXY_ADDR, "2001:db8::1", 8080, "v2 PROXY TCP over IPv6");
	/* TLVs after the addresses: ALPN "h2" and a NOOP of 3 bytes. */
	memcpy(body, in4, 12);
	memcpy(body + 12, "\x01\x00\x02h2\x04\x00\x03xyz", 11);
	n = v2(h, 0x21, 0x11, body, 23);
	good(h, n, PROXY_ADDR, "192.0.2.1", 56324, "v2 with TLVs");
	n = v2(h, 0x20, 0x00, NULL, 0);
	good(h, n, PROXY_LOCAL, NULL, 0, "v2 LOCAL (a health check)");
	n = v2(h, 0x20, 0x11, in4, sizeof(in4));
	good(h, n, PROXY_LOCAL, NULL, 0, "v2 LOCAL with addresses: ignored");
	n = v2(h, 0x21, 0x00, NULL, 0);
	good(h, n, PROXY_LOCAL, NULL, 0, "v2 PROXY UNSPEC");
	n = v2(h, 0x21, 0x12, in4, sizeof(in4));
	good(h, n, PROXY_LOCAL, NULL, 0, "v2 PROXY over UDP: the peer's address kept");
	memset(body, 0, 216);
	n = v2(h, 0x21, 0x31, body, 216);
	good(h, n, PROXY_LOCAL, NULL, 0, "v2 PROXY over a UNIX socket");
	memset(body, 0, sizeof(body));
	memcpy(body, in4, 12);
	body[12] = 0x04, body[13] = (PROXY_V2_ADDRS - 15) >> 8,
	body[14] = (PROXY_V2_ADDRS - 15) & 0xff;
	n = v2(h, 0x21, 0x11, body, PROXY_V2_ADDRS);
	is_int((long long)n, PROXY_MAX, "the longest v2 header is PROXY_MAX");
	good(h, n, PROXY_ADDR, "192.0.2.1", 56324, "v2 of PROXY_MAX bytes");

	n = v2(h, 0x21, 0x11, body, PROXY_V2_ADDRS + 1);
	bad(h, 16, "v2: longer than 1040 bytes", "v2 over PROXY_MAX, known from the length");
	n = v2(h, 0x11, 0x11, in4, sizeof(in4));
	bad(h, n, "v2: the version is not 2", "v2 version 1");
	n = v2(h, 0x31, 0x11, in4, sizeof(in4));
	bad(h, 16, "v2: the version is not 2", "v2 version 3");
	n = v2(h, 0x22, 0x11, in4, sizeof(in4));
	bad(h, n, "v2: the command is not LOCAL or PROXY", "v2 command 2");
	n = v2(h, 0x21, 0x41, in4, sizeof(in4));
	bad(h, n, "v2: an unknown address family or transport", "v2 family 4");
	n = v2(h, 0x21, 0x13, in4, sizeof(in4));
	bad(h, n, "v2: an unknown address family or transport", "v2 transport 3");
	n = v2(h, 0x21, 0x11, in4, 11);
	bad(h, n, "v2: the length is too short for the address family", "v2 IPv4 in 11 bytes");
	n = v2(h, 0x21, 0x21, in6, 35);
	bad(h, n, "v2: the length is too short for the address family", "v2 IPv6 in 35 bytes");
	memcpy(body, in4, 12);
	memcpy(body + 12, "\x01\x00\x05h2", 5);
	n = v2(h, 0x21, 0x11, body, 17);
	bad(h, n, "v2: a TLV that does not fit the header", "v2 with a TLV past the end");
	memcpy(body + 12, "\x01\x00", 2);
	n = v2(h, 0x21, 0x11, body, 14);
	bad(h, n, "v2: a TLV that does not fit the header", "v2 with half a TLV header");
	memcpy(h, sig, 12);
	h[6] = 0x0b;
	bad(h, 7, "not a PROXY header", "a wrong signature byte, seen as soon as it arrives");
	ok(!proxy_looks_like((const uint8_t *)"\x00\x00\x00\x0e\x02", 5),
	   "a Submit frame does not look like a header");
	ok(!proxy_looks_like((const uint8_t *)"\x16\x03\x01", 3),
	   "a TLS ClientHello does not look like a header");
	ok(proxy_looks_like(sig, 1) && proxy_looks_like((const uint8_t *)"P", 1),
	   "one byte of either signature looks like one");
}

static void net_ok(const char *s, const char *in, const char *out)
{
	struct proxy_net n;
	const char *why = "";
	uint8_t a[16], b[16];
	struct proxy_net probe;

	if (!ok(proxy_net_parse(s, &n, &why) == 0, "%s parses", s)) {
		diag("%s", why);
		return;
	}
	proxy_net_parse(in, &probe, &why);
	memcpy(a, probe.addr, 16);
	proxy_net_parse(out, &probe, &why);
	memcpy(b, probe.addr, 16);
	ok(proxy_net_match(&n, 1, a), "%s holds %s", s, in);
	ok(!proxy_net_match(&n, 1, b), "%s does not hold %s", s, out);
}

static void net_bad(const char *s, const char *want)
{
	struct proxy_net n;
	const char *why = "";

	if (!ok(proxy_net_parse(s, &n, &why) == -1 && strcmp(why, want) == 0, "\"%s\" refused: %s",
		s, want))
		diag("got \"%s\"", why);
}

static void test_nets(void)
{
	struct proxy_net nets[2];
	const char *why;
	struct proxy_net probe;

	net_ok("10.0.0.0/8", "10.255.1.2", "11.0.0.1");
	net_ok("127.0.0.1/32", "127.0.0.1", "127.0.0.2");
	net_ok("127.0.0.1", "127.0.0.1", "127.0.0.2");
	net_ok("192.168.4.0/23", "192.168.5.255", "192.168.6.0");
	net_ok("0.0.0.0/0", "203.0.113.9", "::1");
	net_ok("2001:db8::/32", "2001:db8:ffff::1", "2001:db9::1");
	net_ok("::1", "::1", "::2");
	net_bad("10.1.0.0/8", "bits set past the prefix length");
	net_bad("10.0.0.0/33", "the prefix length is not 0 to 32");
	net_bad("::/129", "the prefix length is not 0 to 128");
	net_bad("10.0.0.0/", "the prefix length is not a number");
	net_bad("10.0.0.0/-1", "the prefix length is not a number");
	net_bad("10.0.0.0/8x", "the prefix length is not 0 to 32");
	net_bad("10.0.0", "not an IPv4 or IPv6 address");
	net_bad("example.com", "not an IPv4 or IPv6 address");
	net_bad("", "not an address or network");
	net_bad("/8", "not an address or network");
	proxy_net_parse("10.0.0.0/8", &nets[0], &why);
	proxy_net_parse("2001:db8::/32", &nets[1], &why);
	proxy_net_parse("2001:db8::7", &probe, &why);
	ok(proxy_net_match(nets, 2, probe.addr), "a list: the second network matches");
	ok(!proxy_net_match(nets, 0, probe.addr), "an empty list matches nothing");
}

int main(void)
{
	test_v1();
	test_v2();
	test_nets();
	return done_testing();
}
