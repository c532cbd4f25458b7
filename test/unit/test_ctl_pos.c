/* The spool position a worker and the forwarder share (ctl.h): seqlock reads, order. */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "tap.h"

static struct ctl_pos shared;
static volatile int done;

/* One writer: ns and off always move together (off = 2 * ns). */
static void *writer(void *arg)
{
	(void)arg;
	for (uint64_t i = 1; i <= 2000000; i++)
		ctl_pos_store(&shared, i, 2 * i);
	done = 1;
	return NULL;
}

/* Whether SIGURG (blocked) is pending; takes it. */
static int urg_pending(void)
{
	sigset_t set;
	struct timespec zero = {0, 0};

	sigemptyset(&set);
	sigaddset(&set, SIGURG);
	return sigtimedwait(&set, NULL, &zero) == SIGURG;
}

/* The wake-up handshake (ctl_wait_announce, ctl_wake): once per sleep, never without one. */
static void test_wake(void)
{
	uint32_t flag = 0;
	int32_t pid = (int32_t)getpid(), none = 0;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGURG);
	sigprocmask(SIG_BLOCK, &set, NULL);
	ctl_wake(&flag, &pid);
	ok(!urg_pending(), "no sleeper announced: no signal");
	ctl_wait_announce(&flag);
	is_int(flag, 1, "announce sets the flag");
	ctl_wake(&flag, &pid);
	ok(urg_pending() && flag == 0, "a sleeper announced: one SIGURG, the flag taken back");
	ctl_wake(&flag, &pid);
	ok(!urg_pending(), "a second wake for the same sleep sends nothing");
	ctl_wait_announce(&flag);
	ctl_wait_cancel(&flag);
	ctl_wake(&flag, &pid);
	ok(!urg_pending() && flag == 0, "a cancelled wait gets no signal");
	ctl_wait_announce(&flag);
	ctl_wake(&flag, &none);
	ok(!urg_pending() && flag == 0, "no pid yet: the flag is taken, nothing is sent");
}

int main(void)
{
	struct ctl_pos p = {0};
	uint64_t ns = 1, off = 1;

	ok(ctl_pos_load(&p, &ns, &off) == 0 && ns == 0 && off == 0, "a zeroed position reads 0, 0");
	ctl_pos_store(&p, 42, 4096);
	ok(ctl_pos_load(&p, &ns, &off) == 0 && ns == 42 && off == 4096, "store then load");
	is_int((long long)p.seq, 2, "one store moves seq by two");
	/* A writer killed in the middle of a store leaves seq odd: readers give up, bounded. */
	p.seq++;
	ok(ctl_pos_load(&p, &ns, &off) == -1, "an odd seq is not read as a position");

	is_int(ctl_pos_cmp(1, 100, 2, 0), -1,
	       "an older segment is before any offset of a newer one");
	is_int(ctl_pos_cmp(2, 100, 2, 64), 1, "later offset in the same segment is after");
	is_int(ctl_pos_cmp(2, 64, 2, 64), 0, "equal positions");

	/* Concurrent reads never see ns and off from different stores. */
	pthread_t t;
	long torn = 0, reads = 0, failed = 0;
	pthread_create(&t, NULL, writer, NULL);
	while (!done) {
		if (ctl_pos_load(&shared, &ns, &off) == -1) {
			failed++;
			continue;
		}
		reads++;
		if (off != 2 * ns)
			torn++;
	}
	pthread_join(t, NULL);
	is_int(torn, 0, "no torn read in %ld reads under a concurrent writer (%ld gave up)", reads,
	       failed);
	test_wake();
	return done_testing();
}
