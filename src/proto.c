#include "proto.h"

#include <string.h>

int proto_decode(const uint8_t *p, size_t n, uint32_t max_frame, struct proto_frame *f)
{
	uint32_t len;

	if (n < PROTO_HDR_LEN)
		return PROTO_NEED_MORE;
	len = proto_get_u32(p);
	if (len < PROTO_MIN_FRAME)
		return PROTO_E_FRAME_TOO_SHORT;
	if (len > max_frame)
		return PROTO_E_FRAME_TOO_LARGE;
	if (n < PROTO_MIN_FRAME)
		return PROTO_NEED_MORE;
	if (p[4] != PROTO_CONN && p[4] != PROTO_SUBMIT)
		return PROTO_E_UNKNOWN_COMMAND;
	if (len < PROTO_MIN_REQUEST)
		return PROTO_E_BODY_TOO_SHORT;
	if (n < len)
		return PROTO_NEED_MORE;
	f->len = len;
	f->cmd = p[4];
	f->result = 0;
	f->id = p + PROTO_MIN_FRAME;
	f->payload = p + PROTO_MIN_REQUEST;
	f->payload_len = len - PROTO_MIN_REQUEST;
	return PROTO_OK;
}

int proto_decode_ack(const uint8_t *p, size_t n, struct proto_frame *f)
{
	if (n < PROTO_HDR_LEN)
		return PROTO_NEED_MORE;
	if (proto_get_u32(p) != PROTO_ACK_LEN)
		return PROTO_E_BAD_ACK;
	if (n < PROTO_MIN_FRAME)
		return PROTO_NEED_MORE;
	if (p[4] != PROTO_CONNACK && p[4] != PROTO_SUBMITACK)
		return PROTO_E_BAD_ACK;
	if (n < PROTO_ACK_LEN)
		return PROTO_NEED_MORE;
	f->len = PROTO_ACK_LEN;
	f->cmd = p[4];
	f->id = p + PROTO_MIN_FRAME;
	f->result = p[PROTO_MIN_REQUEST];
	f->payload = NULL;
	f->payload_len = 0;
	return PROTO_OK;
}

void proto_encode_ack(uint8_t *out, uint8_t ack_cmd, const uint8_t *id, uint8_t result)
{
	proto_put_u32(out, PROTO_ACK_LEN);
	out[4] = ack_cmd;
	memcpy(out + PROTO_MIN_FRAME, id, PROTO_ID_LEN);
	out[PROTO_MIN_REQUEST] = result;
}

size_t proto_encode_request(uint8_t *out, size_t cap, uint8_t cmd, const uint8_t *id,
			    const uint8_t *payload, size_t payload_len)
{
	size_t len = PROTO_MIN_REQUEST + payload_len;

	if (len > cap || len > UINT32_MAX)
		return 0;
	proto_put_u32(out, (uint32_t)len);
	out[4] = cmd;
	memcpy(out + PROTO_MIN_FRAME, id, PROTO_ID_LEN);
	if (payload_len)
		memcpy(out + PROTO_MIN_REQUEST, payload, payload_len);
	return len;
}

const char *proto_strerror(int err)
{
	switch (err) {
	case PROTO_E_FRAME_TOO_SHORT:
		return "frame_too_short";
	case PROTO_E_FRAME_TOO_LARGE:
		return "frame_too_large";
	case PROTO_E_UNKNOWN_COMMAND:
		return "unknown_command";
	case PROTO_E_BODY_TOO_SHORT:
		return "body_too_short";
	case PROTO_E_BAD_ACK:
		return "bad_ack";
	default:
		return "unknown";
	}
}
