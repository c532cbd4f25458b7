#include "natstool.h"

#include <stdio.h>

int natstool_opt(struct natstool *t, int opt, const char *arg)
{
	if (opt == 's')
		t->url = arg;
	else if (opt == 'S')
		t->stream = arg;
	else
		return 0;
	return 1;
}

int natstool_connect(struct natstool *t, jsOptions *jo)
{
	natsStatus s;

	if ((s = natsConnection_ConnectTo(&t->nc, t->url)) != NATS_OK ||
	    (s = natsConnection_JetStream(&t->js, t->nc, jo)) != NATS_OK) {
		fprintf(stderr, "%s: %s: %s\n", t->prog, t->url, natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

void natstool_close(struct natstool *t)
{
	jsCtx_Destroy(t->js);
	natsConnection_Destroy(t->nc);
	t->js = NULL;
	t->nc = NULL;
}
