#include "ctl.h"

#include <signal.h>
#include <string.h>

void ctl_slot_reset(struct ctl_slot *s)
{
	memset(s, 0, sizeof(*s));
}

void ctl_wake(uint32_t *flag, const int32_t *pid)
{
	int32_t p;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(flag, __ATOMIC_RELAXED) &&
	    __atomic_exchange_n(flag, 0, __ATOMIC_RELAXED) &&
	    (p = __atomic_load_n(pid, __ATOMIC_RELAXED)) > 0)
		kill(p, SIGURG);
}
