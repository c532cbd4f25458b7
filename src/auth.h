/*
 * Client tokens (auth_tokens_file): a table of SHA-256 hashes and the
 * identities they stand for, parsed from text; the check a Conn's token
 * gets. Pure functions and libcrypto's SHA-256: no I/O, never logs.
 */
#ifndef SUBMITD_AUTH_H
#define SUBMITD_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_HASH_LEN	  32  /* SHA-256 */
#define AUTH_TOKEN_MIN	  32  /* bytes: tokens are random, not passwords */
#define AUTH_IDENTITY_MAX 128 /* bytes of an identity */

struct auth_token {
	uint8_t hash[AUTH_HASH_LEN];
	char *identity;
};

struct auth_tokens {
	int n;
	struct auth_token *t;
};

/*
 * Parses text, the file at path: one "IDENTITY SHA256HEX" a line, "#"
 * comments and blank lines ignored. Returns 0 with *out filled (its own
 * copies), or -1 with "path:line: message" in err and nothing kept. An
 * identity is 1 to 128 of [A-Za-z0-9._@:/+=-]; a hash that appears twice is
 * an error (one identity may have several tokens).
 */
int auth_tokens_parse(const char *path, const char *text, struct auth_tokens *out, char *err,
		      size_t errlen);
void auth_tokens_free(struct auth_tokens *t);

/*
 * The identity whose token tok[0..n) is, or NULL: a token shorter than
 * AUTH_TOKEN_MIN never matches. Its hash is compared with every entry's, in
 * constant time: O(n) for n tokens (about 5 ns each).
 */
const char *auth_token_check(const struct auth_tokens *t, const uint8_t *tok, size_t n);

/* SHA-256 of tok[0..n) as 64 lowercase hex digits and a NUL. */
void auth_hash_hex(const uint8_t *tok, size_t n, char out[2 * AUTH_HASH_LEN + 1]);

/* s is a valid identity (see auth_tokens_parse). */
int auth_identity_ok(const char *s, size_t n);

#endif
