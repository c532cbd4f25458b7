/*
 * The submit protocol codec (docs/PROTOCOL.md): pure functions over byte
 * buffers, no I/O, no allocation. Shared by submitd and submit-bench.
 */
#ifndef SUBMITD_PROTO_H
#define SUBMITD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_HDR_LEN	  4
#define PROTO_ID_LEN	  8
#define PROTO_MIN_FRAME	  5				       /* header + command byte */
#define PROTO_MIN_REQUEST (PROTO_MIN_FRAME + PROTO_ID_LEN)     /* 13 */
#define PROTO_ACK_LEN	  (PROTO_MIN_FRAME + PROTO_ID_LEN + 1) /* 14 */

enum proto_cmd {
	PROTO_CONN = 0x01,
	PROTO_SUBMIT = 0x02,
	PROTO_CONNACK = 0x80,
	PROTO_SUBMITACK = 0x81,
};

enum proto_result {
	PROTO_RESULT_OK = 0,
	PROTO_RESULT_REFUSED = 1,
	PROTO_RESULT_NOT_STORED = 2,	 /* storage full or failed; the client may resend */
	PROTO_RESULT_NOT_AUTHORIZED = 3, /* not authenticated: the connection closes after it */
};

/* Return values of the decoders: a frame, "not yet", or an error. */
#define PROTO_OK	0
#define PROTO_NEED_MORE 1
enum proto_error {
	PROTO_E_FRAME_TOO_SHORT = -1,
	PROTO_E_FRAME_TOO_LARGE = -2,
	PROTO_E_UNKNOWN_COMMAND = -3,
	PROTO_E_BODY_TOO_SHORT = -4,
	PROTO_E_BAD_ACK = -5, /* only from proto_decode_ack */
};
#define PROTO_NERRORS 4 /* request errors, -1 .. -4: each counted by reason */

/*
 * A decoded frame. The pointers point into the caller's buffer and are
 * valid as long as those bytes are.
 */
struct proto_frame {
	uint32_t len; /* total_len, header included */
	uint8_t cmd;
	uint8_t result;		/* acks only */
	const uint8_t *id;	/* PROTO_ID_LEN bytes */
	const uint8_t *payload; /* bytes after the id */
	size_t payload_len;
};

/*
 * Decode one client request from the start of p[0..n). Returns PROTO_OK and
 * fills f, PROTO_NEED_MORE, or a negative proto_error. Errors are reported
 * as early as the bytes allow: a bad length from the 4-byte header alone,
 * a bad command from the fifth byte, so an oversized frame is never
 * buffered.
 */
int proto_decode(const uint8_t *p, size_t n, uint32_t max_frame, struct proto_frame *f);

/* Decode one server ack (total_len 14, ConnAck or SubmitAck). */
int proto_decode_ack(const uint8_t *p, size_t n, struct proto_frame *f);

/* The ack command for a request command (Conn -> ConnAck, Submit -> SubmitAck). */
static inline uint8_t proto_ack_cmd(uint8_t req_cmd)
{
	return req_cmd == PROTO_CONN ? PROTO_CONNACK : PROTO_SUBMITACK;
}

/* Write an ack frame: exactly PROTO_ACK_LEN bytes to out. */
void proto_encode_ack(uint8_t *out, uint8_t ack_cmd, const uint8_t *id, uint8_t result);

/*
 * An encoded ack's command and result, and a change of its result: the
 * spool sets it once the record's fate is known (ackq.c).
 */
static inline uint8_t proto_ack_get_cmd(const uint8_t *ack)
{
	return ack[PROTO_HDR_LEN];
}

static inline uint8_t proto_ack_get_result(const uint8_t *ack)
{
	return ack[PROTO_ACK_LEN - 1];
}

static inline void proto_ack_set_result(uint8_t *ack, uint8_t result)
{
	ack[PROTO_ACK_LEN - 1] = result;
}

/*
 * Write a request frame to out (cap bytes). Returns the frame length, or 0
 * if it does not fit.
 */
size_t proto_encode_request(uint8_t *out, size_t cap, uint8_t cmd, const uint8_t *id,
			    const uint8_t *payload, size_t payload_len);

/* Short names for metrics labels and logs: "frame_too_short", ... */
const char *proto_strerror(int err);

static inline uint32_t proto_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void proto_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

#endif
