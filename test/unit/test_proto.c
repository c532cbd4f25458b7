/* The codec against docs/PROTOCOL.md, as tables of bytes and expected results. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proto.h"
#include "tap.h"

#define MAX_FRAME 65536

static const uint8_t id_a[PROTO_ID_LEN] = {'0', '0', '0', '0', '0', '0', '4', '2'};
static const uint8_t id_b[PROTO_ID_LEN] = {0x00, 0xff, 0x01, 0xfe, 0x80, 0x7f, 0x00, 0x00};

static void fill_payload(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 31 + seed);
}

/* The reference client's ids: an 8-digit ASCII counter. */
static void make_id(uint8_t *id, unsigned i)
{
	for (int k = PROTO_ID_LEN - 1; k >= 0; k--, i /= 10)
		id[k] = (uint8_t)('0' + i % 10);
}

static const char *cmd_name(uint8_t cmd)
{
	return cmd == PROTO_CONN ? "conn" : "submit";
}

/*
 * Every prefix of a valid frame is "need more"; the whole frame, alone or
 * followed by more bytes, decodes to the right fields.
 */
static void test_split(void)
{
	static const uint8_t cmds[] = {PROTO_CONN, PROTO_SUBMIT};
	static const size_t sizes[] = {0, 1, 20, 1000};
	static uint8_t frame[2048], payload[1024];

	for (size_t c = 0; c < sizeof(cmds); c++) {
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			size_t plen = sizes[s], len, bad = 0, first_bad = 0;
			struct proto_frame f;
			int r;

			fill_payload(payload, plen, (unsigned)s);
			len = proto_encode_request(frame, sizeof(frame), cmds[c], id_a, payload,
						   plen);
			is_int((long long)len, (long long)(PROTO_MIN_REQUEST + plen),
			       "%s payload %zu: encoded length", cmd_name(cmds[c]), plen);
			for (size_t k = 0; k < len; k++) {
				memset(&f, 0, sizeof(f));
				if (proto_decode(frame, k, MAX_FRAME, &f) != PROTO_NEED_MORE &&
				    bad++ == 0)
					first_bad = k;
			}
			ok(bad == 0, "%s payload %zu: all %zu prefixes need more (first bad: %zu)",
			   cmd_name(cmds[c]), plen, len, first_bad);

			memset(&f, 0, sizeof(f));
			r = proto_decode(frame, len, MAX_FRAME, &f);
			is_int(r, PROTO_OK, "%s payload %zu: full frame decodes", cmd_name(cmds[c]),
			       plen);
			ok(f.len == len && f.cmd == cmds[c] && f.id == frame + 5 &&
			       memcmp(f.id, id_a, PROTO_ID_LEN) == 0 && f.payload == frame + 13 &&
			       f.payload_len == plen && memcmp(f.payload, payload, plen) == 0,
			   "%s payload %zu: len, cmd, id and payload", cmd_name(cmds[c]), plen);

			/* The start of the next frame must not change anything. */
			frame[len] = 0;
			frame[len + 1] = 0;
			memset(&f, 0, sizeof(f));
			r = proto_decode(frame, len + 2, MAX_FRAME, &f);
			ok(r == PROTO_OK && f.len == len && f.payload_len == plen,
			   "%s payload %zu: trailing bytes are left alone", cmd_name(cmds[c]),
			   plen);
		}
	}
}

/* Many frames in one buffer, as one read() may return them. */
static void test_back_to_back(void)
{
	static uint8_t stream[64 * 1024], payload[600];
	size_t n = 0, off = 0, frames = 0, bad = 0;
	const int count = 200;
	struct proto_frame f;

	fill_payload(payload, sizeof(payload), 7);
	for (int i = 0; i < count; i++) {
		uint8_t id[PROTO_ID_LEN];
		size_t len;

		make_id(id, (unsigned)i);
		len = proto_encode_request(stream + n, sizeof(stream) - n,
					   i % 3 == 0 ? PROTO_CONN : PROTO_SUBMIT, id, payload,
					   (size_t)(i * 3) % sizeof(payload));
		if (len == 0)
			break;
		n += len;
	}
	for (;;) {
		int r = proto_decode(stream + off, n - off, MAX_FRAME, &f);
		uint8_t want[PROTO_ID_LEN];
		int i = (int)frames;

		if (r != PROTO_OK)
			break;
		make_id(want, (unsigned)i);
		if (f.cmd != (i % 3 == 0 ? PROTO_CONN : PROTO_SUBMIT) ||
		    memcmp(f.id, want, PROTO_ID_LEN) != 0 ||
		    f.payload_len != (size_t)(i * 3) % sizeof(payload) ||
		    memcmp(f.payload, payload, f.payload_len) != 0)
			bad++;
		off += f.len;
		frames++;
	}
	is_int((long long)frames, count, "back to back: %d frames decoded", count);
	is_int((long long)bad, 0, "back to back: every frame has its cmd, id and payload");
	is_int((long long)off, (long long)n, "back to back: consumed exactly the buffer");
	is_int(proto_decode(stream + off, n - off, MAX_FRAME, &f), PROTO_NEED_MORE,
	       "back to back: empty rest needs more");
}

struct err_case {
	const char *name;
	uint8_t bytes[16];
	size_t n;
	uint32_t max;
	int want;
};

static void test_errors(void)
{
	static struct err_case cases[64];
	size_t nc = 0;
	struct proto_frame f;

	/* total_len 0..4: from the header alone. */
	for (uint8_t l = 0; l <= 4; l++)
		cases[nc++] = (struct err_case){
		    "total_len < 5", {0, 0, 0, l}, 4, MAX_FRAME, PROTO_E_FRAME_TOO_SHORT};
	/* Too large: from the header alone, never waiting for the body. */
	cases[nc++] = (struct err_case){
	    "total_len max+1", {0x00, 0x01, 0x00, 0x01}, 4, MAX_FRAME, PROTO_E_FRAME_TOO_LARGE};
	cases[nc++] = (struct err_case){"total_len 0x7fffffff",
					{0x7f, 0xff, 0xff, 0xff},
					4,
					MAX_FRAME,
					PROTO_E_FRAME_TOO_LARGE};
	cases[nc++] = (struct err_case){"total_len 0xffffffff",
					{0xff, 0xff, 0xff, 0xff},
					4,
					MAX_FRAME,
					PROTO_E_FRAME_TOO_LARGE};
	cases[nc++] = (struct err_case){
	    "total_len 101, max 100", {0, 0, 0, 101}, 4, 100, PROTO_E_FRAME_TOO_LARGE};
	/* Unknown commands: from the fifth byte. */
	static const uint8_t bad_cmds[] = {0x00, 0x03, 0x80, 0x81, 0xff};
	for (size_t i = 0; i < sizeof(bad_cmds); i++)
		cases[nc++] = (struct err_case){"unknown command",
						{0, 0, 0, 13, bad_cmds[i]},
						5,
						MAX_FRAME,
						PROTO_E_UNKNOWN_COMMAND};
	/* total_len 5..12 with a valid command: no room for the id. */
	for (uint8_t l = 5; l <= 12; l++) {
		cases[nc++] = (struct err_case){"conn body < 8",
						{0, 0, 0, l, PROTO_CONN},
						5,
						MAX_FRAME,
						PROTO_E_BODY_TOO_SHORT};
		cases[nc++] = (struct err_case){"submit body < 8",
						{0, 0, 0, l, PROTO_SUBMIT},
						5,
						MAX_FRAME,
						PROTO_E_BODY_TOO_SHORT};
	}
	/* Fewer than 4 bytes is never an error, whatever they are. */
	for (size_t k = 0; k < 4; k++)
		cases[nc++] = (struct err_case){
		    "short header", {0xff, 0xff, 0xff, 0xff}, k, MAX_FRAME, PROTO_NEED_MORE};
	/* A good length waits for the command byte. */
	cases[nc++] =
	    (struct err_case){"header only", {0, 0, 0, 13}, 4, MAX_FRAME, PROTO_NEED_MORE};

	for (size_t i = 0; i < nc; i++) {
		struct err_case *c = &cases[i];
		is_int(proto_decode(c->bytes, c->n, c->max, &f), c->want,
		       "error table: %s (%02x %02x %02x %02x %02x, n=%zu, max=%u)", c->name,
		       c->bytes[0], c->bytes[1], c->bytes[2], c->bytes[3], c->bytes[4], c->n,
		       c->max);
	}

	static const struct {
		int err;
		const char *name;
	} names[] = {
	    {PROTO_E_FRAME_TOO_SHORT, "frame_too_short"},
	    {PROTO_E_FRAME_TOO_LARGE, "frame_too_large"},
	    {PROTO_E_UNKNOWN_COMMAND, "unknown_command"},
	    {PROTO_E_BODY_TOO_SHORT, "body_too_short"},
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		ok(strcmp(proto_strerror(names[i].err), names[i].name) == 0,
		   "proto_strerror(%d) is %s", names[i].err, names[i].name);
	is_int(PROTO_NERRORS, 4, "four request error reasons");
}

/* total_len == max_frame is legal, max_frame + 1 is not. */
static void test_max_frame(void)
{
	static const uint32_t maxes[] = {PROTO_MIN_REQUEST, 14, 100, 1000, MAX_FRAME};
	static uint8_t frame[MAX_FRAME + 16], payload[MAX_FRAME];
	struct proto_frame f;

	for (size_t i = 0; i < sizeof(maxes) / sizeof(maxes[0]); i++) {
		uint32_t max = maxes[i];
		size_t len = proto_encode_request(frame, sizeof(frame), PROTO_SUBMIT, id_b, payload,
						  max - PROTO_MIN_REQUEST);

		is_int((long long)len, max, "max %u: frame of total_len %u encoded", max, max);
		ok(proto_decode(frame, len, max, &f) == PROTO_OK && f.len == max,
		   "max %u: total_len == max accepted", max);
		len = proto_encode_request(frame, sizeof(frame), PROTO_SUBMIT, id_b, payload,
					   max + 1 - PROTO_MIN_REQUEST);
		is_int(proto_decode(frame, len, max, &f), PROTO_E_FRAME_TOO_LARGE,
		       "max %u: total_len max+1 rejected", max);
		is_int(proto_decode(frame, 4, max, &f), PROTO_E_FRAME_TOO_LARGE,
		       "max %u: total_len max+1 rejected from the header alone", max);
	}
}

static void test_encode_ack(void)
{
	static const struct {
		uint8_t cmd;
		const uint8_t *id;
		uint8_t result;
		uint8_t want[PROTO_ACK_LEN];
	} cases[] = {
	    {PROTO_SUBMITACK,
	     id_a,
	     0,
	     {0, 0, 0, 14, 0x81, '0', '0', '0', '0', '0', '0', '4', '2', 0}},
	    {PROTO_CONNACK,
	     id_a,
	     0,
	     {0, 0, 0, 14, 0x80, '0', '0', '0', '0', '0', '0', '4', '2', 0}},
	    {PROTO_SUBMITACK,
	     id_b,
	     1,
	     {0, 0, 0, 14, 0x81, 0x00, 0xff, 0x01, 0xfe, 0x80, 0x7f, 0x00, 0x00, 1}},
	};
	uint8_t out[PROTO_ACK_LEN + 2];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(out, 0xaa, sizeof(out));
		proto_encode_ack(out, cases[i].cmd, cases[i].id, cases[i].result);
		ok(memcmp(out, cases[i].want, PROTO_ACK_LEN) == 0,
		   "encode_ack case %zu: exact bytes", i);
		ok(out[PROTO_ACK_LEN] == 0xaa && out[PROTO_ACK_LEN + 1] == 0xaa,
		   "encode_ack case %zu: writes exactly 14 bytes", i);
	}
	is_int(proto_ack_cmd(PROTO_CONN), 0x80, "Conn is answered by 0x80");
	is_int(proto_ack_cmd(PROTO_SUBMIT), 0x81, "Submit is answered by 0x81");
}

static void test_decode_ack(void)
{
	static const struct {
		const char *name;
		uint8_t bytes[PROTO_ACK_LEN];
		size_t n;
		int want;
	} cases[] = {
	    {"submitack ok", {0, 0, 0, 14, 0x81, 1, 2, 3, 4, 5, 6, 7, 8, 0}, 14, PROTO_OK},
	    {"connack ok", {0, 0, 0, 14, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 0}, 14, PROTO_OK},
	    {"submitack refused", {0, 0, 0, 14, 0x81, 1, 2, 3, 4, 5, 6, 7, 8, 1}, 14, PROTO_OK},
	    {"total_len 13", {0, 0, 0, 13, 0x81}, 4, PROTO_E_BAD_ACK},
	    {"total_len 15", {0, 0, 0, 15, 0x81}, 4, PROTO_E_BAD_ACK},
	    {"total_len 0", {0, 0, 0, 0}, 4, PROTO_E_BAD_ACK},
	    {"total_len huge", {0x7f, 0xff, 0xff, 0xff}, 4, PROTO_E_BAD_ACK},
	    {"request cmd 0x01", {0, 0, 0, 14, 0x01}, 5, PROTO_E_BAD_ACK},
	    {"request cmd 0x02", {0, 0, 0, 14, 0x02}, 5, PROTO_E_BAD_ACK},
	    {"go comment's 0x82", {0, 0, 0, 14, 0x82}, 5, PROTO_E_BAD_ACK},
	    {"empty", {0}, 0, PROTO_NEED_MORE},
	    {"3 bytes", {0, 0, 0}, 3, PROTO_NEED_MORE},
	    {"header only", {0, 0, 0, 14}, 4, PROTO_NEED_MORE},
	    {"13 bytes", {0, 0, 0, 14, 0x81, 1, 2, 3, 4, 5, 6, 7, 8}, 13, PROTO_NEED_MORE},
	};
	struct proto_frame f;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&f, 0, sizeof(f));
		int r = proto_decode_ack(cases[i].bytes, cases[i].n, &f);
		is_int(r, cases[i].want, "decode_ack: %s", cases[i].name);
		if (cases[i].want == PROTO_OK)
			ok(f.len == 14 && f.cmd == cases[i].bytes[4] &&
			       f.id == cases[i].bytes + 5 && f.result == cases[i].bytes[13],
			   "decode_ack: %s: fields", cases[i].name);
	}

	/* What the server encodes, the client decodes. */
	uint8_t ack[PROTO_ACK_LEN];
	proto_encode_ack(ack, PROTO_CONNACK, id_b, 1);
	memset(&f, 0, sizeof(f));
	ok(proto_decode_ack(ack, sizeof(ack), &f) == PROTO_OK && f.cmd == PROTO_CONNACK &&
	       memcmp(f.id, id_b, PROTO_ID_LEN) == 0 && f.result == 1,
	   "decode_ack(encode_ack) round trip");
}

static void test_round_trip(void)
{
	static uint8_t frame[4096], payload[4000];
	size_t bad = 0, total = 0;
	struct proto_frame f;

	fill_payload(payload, sizeof(payload), 3);
	for (size_t plen = 0; plen <= 3000; plen += 37) {
		for (int c = 0; c < 2; c++) {
			uint8_t cmd = c ? PROTO_SUBMIT : PROTO_CONN;
			size_t len =
			    proto_encode_request(frame, sizeof(frame), cmd, id_b, payload, plen);

			total++;
			if (len != PROTO_MIN_REQUEST + plen || proto_get_u32(frame) != len ||
			    proto_decode(frame, len, MAX_FRAME, &f) != PROTO_OK || f.cmd != cmd ||
			    memcmp(f.id, id_b, PROTO_ID_LEN) != 0 || f.payload_len != plen ||
			    memcmp(f.payload, payload, plen) != 0)
				bad++;
		}
	}
	ok(bad == 0, "encode_request/decode round trip: %zu of %zu differ", bad, total);

	is_int((long long)proto_encode_request(frame, 12, PROTO_SUBMIT, id_a, NULL, 0), 0,
	       "encode_request: no room for the id returns 0");
	is_int((long long)proto_encode_request(frame, 13, PROTO_SUBMIT, id_a, NULL, 0), 13,
	       "encode_request: exact fit");
	is_int((long long)proto_encode_request(frame, 20, PROTO_SUBMIT, id_a, payload, 8), 0,
	       "encode_request: payload one byte too long returns 0");

	uint8_t be[4];
	proto_put_u32(be, 0x01020304);
	ok(be[0] == 1 && be[1] == 2 && be[2] == 3 && be[3] == 4, "proto_put_u32 is big-endian");
	is_int(proto_get_u32((const uint8_t[]){0xff, 0, 0, 0x0e}), 0xff00000eLL,
	       "proto_get_u32 is big-endian and unsigned");
}

int main(void)
{
	test_split();
	test_back_to_back();
	test_errors();
	test_max_frame();
	test_encode_ack();
	test_decode_ack();
	test_round_trip();
	return done_testing();
}
