/*
 * libFuzzer target for the codec: proto_decode and proto_decode_ack on
 * arbitrary bytes. Input: a 4-byte big-endian max_frame, then the bytes to
 * decode. Checks the properties docs/PROTOCOL.md promises rather than
 * re-deriving the decoder: a decoded frame lies inside the input and the
 * limits, a complete frame is never "need more", a verdict never changes
 * as more bytes arrive, and decode/encode round-trips.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proto.h"

/* Decode p[0..n) copied to the end of a heap block, so a read past n hits ASan's redzone. */
static int decode_exact(const uint8_t *p, size_t n, uint32_t max, struct proto_frame *f, int ack)
{
	uint8_t *q = malloc(n ? n : 1);
	int r;

	CHECK(q != NULL);
	memcpy(q, p, n);
	r = ack ? proto_decode_ack(q, n, f) : proto_decode(q, n, max, f);
	if (r == PROTO_OK) {
		/* Rebase the pointers before the copy goes. */
		f->id = p + (f->id - q);
		if (f->payload != NULL)
			f->payload = p + (f->payload - q);
	}
	free(q);
	return r;
}

static int is_request_error(int r)
{
	return r <= PROTO_E_FRAME_TOO_SHORT && r >= PROTO_E_BODY_TOO_SHORT;
}

static void check_request(const uint8_t *p, size_t n, uint32_t max)
{
	struct proto_frame f, g;
	int r = decode_exact(p, n, max, &f, 0);

	CHECK(r == PROTO_OK || r == PROTO_NEED_MORE || is_request_error(r));
	if (n >= PROTO_HDR_LEN) {
		uint32_t len = proto_get_u32(p);
		/* A complete, well-formed frame at the start is never "need more". */
		if (len >= PROTO_MIN_REQUEST && len <= max && len <= n &&
		    (p[4] == PROTO_CONN || p[4] == PROTO_SUBMIT))
			CHECK(r == PROTO_OK);
		if (len < PROTO_MIN_FRAME)
			CHECK(r == PROTO_E_FRAME_TOO_SHORT);
		else if (len > max)
			CHECK(r == PROTO_E_FRAME_TOO_LARGE);
	} else {
		CHECK(r == PROTO_NEED_MORE);
	}
	if (r == PROTO_OK) {
		CHECK(f.len >= PROTO_MIN_REQUEST && f.len <= max && f.len <= n);
		CHECK(f.len == proto_get_u32(p));
		CHECK(f.cmd == PROTO_CONN || f.cmd == PROTO_SUBMIT);
		CHECK(f.id == p + PROTO_MIN_FRAME && f.payload == p + PROTO_MIN_REQUEST);
		CHECK(f.payload_len == f.len - PROTO_MIN_REQUEST);

		uint8_t *enc = malloc(f.len);
		CHECK(enc != NULL);
		CHECK(proto_encode_request(enc, f.len, f.cmd, f.id, f.payload, f.payload_len) ==
		      f.len);
		CHECK(memcmp(enc, p, f.len) == 0);
		CHECK(proto_encode_request(enc, f.len - 1, f.cmd, f.id, f.payload, f.payload_len) ==
		      0);
		free(enc);

		/* Exactly the frame: still OK; one byte short: need more. */
		CHECK(decode_exact(p, f.len, max, &g, 0) == PROTO_OK && g.len == f.len);
		CHECK(decode_exact(p, f.len - 1, max, &g, 0) == PROTO_NEED_MORE);
	}
	/* Monotone: a shorter prefix is "need more" or the same verdict, never another one. */
	for (size_t k = 0; k < n && k <= 64; k++) {
		int rk = proto_decode(p, k, max, &g);
		if (rk == PROTO_NEED_MORE)
			continue;
		CHECK(rk == r);
	}
	if (is_request_error(r))
		CHECK(proto_strerror(r)[0] != '\0' && strcmp(proto_strerror(r), "unknown") != 0);
}

static void check_ack(const uint8_t *p, size_t n)
{
	struct proto_frame f;
	int r = decode_exact(p, n, 0, &f, 1);

	CHECK(r == PROTO_OK || r == PROTO_NEED_MORE || r == PROTO_E_BAD_ACK);
	if (n >= PROTO_ACK_LEN && proto_get_u32(p) == PROTO_ACK_LEN &&
	    (p[4] == PROTO_CONNACK || p[4] == PROTO_SUBMITACK))
		CHECK(r == PROTO_OK);
	if (n >= PROTO_ACK_LEN)
		CHECK(r != PROTO_NEED_MORE);
	if (r == PROTO_OK) {
		uint8_t enc[PROTO_ACK_LEN];
		CHECK(f.len == PROTO_ACK_LEN && n >= PROTO_ACK_LEN);
		CHECK(f.cmd == PROTO_CONNACK || f.cmd == PROTO_SUBMITACK);
		CHECK(f.id == p + PROTO_MIN_FRAME && f.result == p[PROTO_MIN_REQUEST]);
		proto_encode_ack(enc, f.cmd, f.id, f.result);
		CHECK(memcmp(enc, p, PROTO_ACK_LEN) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t max;

	if (size < 4)
		return 0;
	max = proto_get_u32(data);
	data += 4;
	size -= 4;
	check_request(data, size, max);
	/* The daemon's smallest and default limits, whatever the input says. */
	check_request(data, size, PROTO_MIN_REQUEST);
	check_request(data, size, 65536);
	check_ack(data, size);
	return 0;
}
