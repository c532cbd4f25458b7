/* iplimit.c: the per-address count, its limit, release, and two processes at once. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "iplimit.h"
#include "tap.h"

static void v4(uint8_t a[16], unsigned last)
{
	memset(a, 0, 16);
	a[10] = a[11] = 0xff;
	a[12] = 192, a[13] = 0, a[14] = (uint8_t)(last >> 8), a[15] = (uint8_t)last;
}

int main(void)
{
	char err[256];
	struct iplimit *t = iplimit_map(err, sizeof(err));
	uint8_t a[16], b[16];
	int s[4], ok_all = 1;

	if (!ok(t != NULL, "iplimit_map"))
		return done_testing();
	v4(a, 1);
	v4(b, 2);
	for (int i = 0; i < 3; i++)
		s[i] = iplimit_acquire(t, a, 3);
	ok(s[0] >= 0 && s[1] == s[0] && s[2] == s[0], "one slot per address (%d %d %d)", s[0], s[1],
	   s[2]);
	is_int(iplimit_count(t, a), 3, "3 counted");
	is_int(iplimit_acquire(t, a, 3), IPLIMIT_OVER, "the 4th is over the limit of 3");
	s[3] = iplimit_acquire(t, b, 3);
	ok(s[3] >= 0 && s[3] != s[0], "another address has its own slot");
	is_int(iplimit_count(t, b), 1, "and its own count");
	iplimit_release(t, s[0]);
	is_int(iplimit_count(t, a), 2, "released: 2");
	ok(iplimit_acquire(t, a, 3) == s[0], "then one more fits again");
	for (int i = 0; i < 3; i++)
		iplimit_release(t, s[0]);
	iplimit_release(t, s[3]);
	is_int(iplimit_count(t, a) + iplimit_count(t, b), 0, "all released");

	/* 5,000 addresses: each tracked once, the table's slots reused as counts reach 0. */
	for (unsigned i = 0; i < 5000; i++) {
		uint8_t c[16];
		v4(c, 1000 + i);
		int k = iplimit_acquire(t, c, 1);
		if (k < 0 || iplimit_acquire(t, c, 1) != IPLIMIT_OVER)
			ok_all = 0;
		iplimit_release(t, k);
	}
	ok(ok_all, "5,000 addresses, one connection each, limit 1: each tracked, the 2nd over");

	/* Two processes at once on one address: no count lost or doubled. */
	pid_t pid = fork();
	if (pid == 0) {
		for (int i = 0; i < 200000; i++) {
			int k = iplimit_acquire(t, a, 65535);
			if (k >= 0)
				iplimit_release(t, k);
		}
		_exit(0);
	}
	int held = 0, slots[100];
	for (int i = 0; i < 200000; i++) {
		int k = iplimit_acquire(t, a, 65535);
		if (k >= 0 && held < 100 && i % 1000 == 0)
			slots[held++] = k; /* kept */
		else if (k >= 0)
			iplimit_release(t, k);
	}
	waitpid(pid, NULL, 0);
	is_int(iplimit_count(t, a), held,
	       "two processes, 400,000 acquire/release: the %d kept remain", held);
	for (int i = 0; i < held; i++)
		iplimit_release(t, slots[i]);
	is_int(iplimit_count(t, a), 0, "and 0 once released");
	return done_testing();
}
