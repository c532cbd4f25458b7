/* The spool position a worker and the forwarder share (ctl.h): seqlock reads, order. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

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
	return done_testing();
}
