/*
 * libFuzzer target for the PROXY header parser (proxy_parse) and the
 * network parser (proxy_net_parse) on arbitrary bytes. Checks what the
 * worker relies on: a header's length is within the input and PROXY_MAX,
 * a verdict never changes as more bytes arrive (the worker parses what it
 * has so far, again on every read), "need more" is only ever said of fewer
 * than PROXY_MAX bytes, and a parsed network matches its own address.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proxy.h"

/* Parse p[0..n) copied to the end of a heap block, so a read past n hits ASan's redzone. */
static int parse_exact(const uint8_t *p, size_t n, struct proxy_hdr *h)
{
	uint8_t *q = malloc(n ? n : 1);
	const char *why = NULL;
	int r;

	CHECK(q != NULL);
	memcpy(q, p, n);
	r = proxy_parse(q, n, h, &why);
	free(q);
	CHECK(r != -1 || why != NULL);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_hdr h, g;
	int r = parse_exact(data, size, &h);

	CHECK(r >= -1 && r <= (int)size && r <= PROXY_MAX);
	if (r == 0)
		CHECK(size < PROXY_MAX);
	if (r > 0) {
		CHECK(h.version == 1 || h.version == 2);
		CHECK(h.kind == PROXY_ADDR || h.kind == PROXY_LOCAL);
		CHECK(proxy_looks_like(data, size));
	}
	/* Every prefix: "need more" before the verdict, then the same verdict. */
	for (size_t k = 0; k < size; k++) {
		int s = parse_exact(data, k, &g);
		if (r > 0 && k >= (size_t)r) {
			CHECK(s == r && memcmp(&g, &h, sizeof(g)) == 0);
		} else if (r > 0) {
			CHECK(s == 0);
		} else if (r == 0) {
			CHECK(s == 0);
		} else {
			CHECK(s == 0 || s == -1);
		}
	}
	/* The input as a network: a parsed one contains its own address. */
	char s[64];
	size_t n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;
	struct proxy_net net;
	const char *why;
	memcpy(s, data, n);
	s[n] = '\0';
	if (proxy_net_parse(s, &net, &why) == 0) {
		CHECK(net.bits <= 128);
		CHECK(proxy_net_match(&net, 1, net.addr));
	}
	return 0;
}
