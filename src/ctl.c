#include "ctl.h"

#include <string.h>

void ctl_slot_reset(struct ctl_slot *s)
{
	memset(s, 0, sizeof(*s));
}
