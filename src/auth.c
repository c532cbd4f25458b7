/* Client tokens: see auth.h. */
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int auth_identity_ok(const char *s, size_t n)
{
	if (n == 0 || n > AUTH_IDENTITY_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || memchr("._@:/+=-", ch, 8) != NULL))
			return 0;
	}
	return 1;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static int by_hash(const void *a, const void *b)
{
	return memcmp(((const struct auth_token *)a)->hash, ((const struct auth_token *)b)->hash,
		      AUTH_HASH_LEN);
}

/* One line without its newline: 0 (a token, or nothing), or -1 with the message. */
static int parse_line(const char *p, size_t len, struct auth_token *t, int *have, const char **why)
{
	size_t i = 0, id0, idn, h0;

	*have = 0;
	while (i < len && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (i == len || p[i] == '#')
		return 0;
	id0 = i;
	while (i < len && p[i] != ' ' && p[i] != '\t')
		i++;
	idn = i - id0;
	while (i < len && (p[i] == ' ' || p[i] == '\t'))
		i++;
	h0 = i;
	while (i < len && p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
		i++;
	size_t hn = i - h0;
	while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r'))
		i++;
	if (hn == 0) {
		*why = "expected IDENTITY SHA256HEX";
		return -1;
	}
	if (i != len) {
		*why = "more than IDENTITY SHA256HEX on the line";
		return -1;
	}
	if (!auth_identity_ok(p + id0, idn)) {
		*why = "the identity is not 1 to 128 of A-Z a-z 0-9 . _ @ : / + = -";
		return -1;
	}
	if (hn != 2 * AUTH_HASH_LEN) {
		*why = "the hash is not 64 hex digits (SHA-256: submitd --hash-token)";
		return -1;
	}
	for (size_t k = 0; k < AUTH_HASH_LEN; k++) {
		int hi = hexval(p[h0 + 2 * k]), lo = hexval(p[h0 + 2 * k + 1]);
		if (hi < 0 || lo < 0) {
			*why = "the hash is not 64 hex digits (SHA-256: submitd --hash-token)";
			return -1;
		}
		t->hash[k] = (uint8_t)(hi << 4 | lo);
	}
	if ((t->identity = strndup(p + id0, idn)) == NULL) {
		*why = "out of memory";
		return -1;
	}
	*have = 1;
	return 0;
}

int auth_tokens_parse(const char *path, const char *text, struct auth_tokens *out, char *err,
		      size_t errlen)
{
	struct auth_tokens t = {0, NULL};
	const char *p = text, *why = NULL;
	int line = 0, cap = 0, have;

	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		struct auth_token tok;

		line++;
		if (parse_line(p, len, &tok, &have, &why) == -1)
			goto fail;
		if (have) {
			if (t.n == cap) {
				int nc = cap ? cap * 2 : 16;
				struct auth_token *nt = realloc(t.t, (size_t)nc * sizeof(*nt));
				if (nt == NULL) {
					free(tok.identity);
					why = "out of memory";
					goto fail;
				}
				t.t = nt;
				cap = nc;
			}
			t.t[t.n++] = tok;
		}
		p += len + (nl != NULL);
	}
	/* Sorted, so that a duplicate is a neighbour. */
	qsort(t.t, (size_t)t.n, sizeof(*t.t), by_hash);
	for (int i = 1; i < t.n; i++) {
		if (memcmp(t.t[i - 1].hash, t.t[i].hash, AUTH_HASH_LEN) == 0) {
			snprintf(err, errlen, "%s: a hash is listed twice (identities %s and %s)",
				 path, t.t[i - 1].identity, t.t[i].identity);
			auth_tokens_free(&t);
			return -1;
		}
	}
	*out = t;
	return 0;
fail:
	snprintf(err, errlen, "%s:%d: %s", path, line, why);
	auth_tokens_free(&t);
	return -1;
}

void auth_tokens_free(struct auth_tokens *t)
{
	for (int i = 0; i < t->n; i++)
		free(t->t[i].identity);
	free(t->t);
	t->t = NULL;
	t->n = 0;
}

const char *auth_token_check(const struct auth_tokens *t, const uint8_t *tok, size_t n)
{
	uint8_t h[AUTH_HASH_LEN];
	const char *found = NULL;

	if (t == NULL || n < AUTH_TOKEN_MIN)
		return NULL;
	SHA256(tok, n, h);
	/* Every entry, each in constant time: how long it takes says nothing of where it matched.
	 */
	for (int i = 0; i < t->n; i++)
		if (CRYPTO_memcmp(h, t->t[i].hash, AUTH_HASH_LEN) == 0)
			found = t->t[i].identity;
	return found;
}

void auth_hash_hex(const uint8_t *tok, size_t n, char out[2 * AUTH_HASH_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t h[AUTH_HASH_LEN];

	SHA256(tok, n, h);
	for (int i = 0; i < AUTH_HASH_LEN; i++) {
		out[2 * i] = hex[h[i] >> 4];
		out[2 * i + 1] = hex[h[i] & 15];
	}
	out[2 * AUTH_HASH_LEN] = '\0';
}
