/* The per-client limits' shared tables: see shmtab.h. */
#include "shmtab.h"

#include <stdio.h>
#include <sys/mman.h>
#include <sys/random.h>

void *shmtab_map(size_t size, char *err, size_t errlen)
{
	void *t = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (t == MAP_FAILED) {
		snprintf(err, errlen, "mmap of %zu bytes: %m", size);
		return NULL;
	}
	if (getrandom(t, 16, 0) != 16) {
		snprintf(err, errlen, "getrandom: %m");
		munmap(t, size);
		return NULL;
	}
	return t;
}
