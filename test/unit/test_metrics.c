/*
 * metrics_render over a real shared-memory segment: the exposition format,
 * per-label sums of live and retired workers, counters that survive a
 * worker's exit, and the rendering time with 64 workers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "stats.h"
#include "tap.h"

#define NW 64

static int slot_label[STATS_MAX_SLOTS];
static struct stats_slot retired[NW];
static pid_t pids[1];

/* The value of one sample, given its full name with labels; -1 if absent. */
static double sample(const char *text, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, name, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	}
	return -1;
}

/* Every sample's family was announced by HELP and TYPE before it, once. */
static int well_formed(const char *text, int *nsamples)
{
	char fam[128] = "", line[1024];
	const char *p = text;
	int typed = 0;

	*nsamples = 0;
	while (*p) {
		const char *e = strchr(p, '\n');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len >= sizeof(line))
			return 0;
		memcpy(line, p, len);
		line[len] = '\0';
		p += len + (e != NULL);
		if (strncmp(line, "# HELP ", 7) == 0) {
			sscanf(line + 7, "%127s", fam);
			typed = 0;
		} else if (strncmp(line, "# TYPE ", 7) == 0) {
			char f[128], t[32];
			if (sscanf(line + 7, "%127s %31s", f, t) != 2 || strcmp(f, fam) != 0)
				return 0;
			typed = 1;
		} else {
			size_t fl = strlen(fam);
			if (!typed || strncmp(line, fam, fl) != 0 ||
			    (line[fl] != '{' && line[fl] != ' ' && line[fl] != '_'))
				return 0;
			if (strchr(line, ' ') == NULL)
				return 0;
			(*nsamples)++;
		}
	}
	return 1;
}

int main(void)
{
	struct metrics_src src;
	struct stats_shm *shm;
	char err[256], *text;
	size_t len;
	int ns;

	shm = stats_map(err, sizeof(err));
	ok(shm != NULL, "stats_map: %s", shm ? "mapped" : err);
	if (shm == NULL)
		return 1;
	for (int i = 0; i < STATS_MAX_SLOTS; i++)
		slot_label[i] = -1;
	for (int w = 0; w < NW; w++) {
		struct stats_slot *s = &shm->slot[w];
		slot_label[w] = w;
		stats_add(s, STATS_req_submit, 1000 + (uint64_t)w);
		stats_add(s, STATS_rsp_submit, 1000 + (uint64_t)w);
		stats_add(s, STATS_accepted, 3);
		stats_batch(s, 7);
		s->connected = 2;
		retired[w].c[STATS_req_submit] = 10;
	}
	pids[0] = getpid();
	memset(&src, 0, sizeof(src));
	src.shm = shm;
	src.slot_label = slot_label;
	src.retired = retired;
	src.nlabels = NW;
	src.workers_configured = NW;
	src.workers_running = NW;
	src.generations = 1;
	src.reload_ok = 1;
	src.pids = pids;
	src.npids = 1;

	text = metrics_render(&src, &len);
	ok(text != NULL && len == strlen(text), "render returns %zu bytes of text", len);
	if (text == NULL)
		return 1;
	ok(well_formed(text, &ns), "every sample follows HELP and TYPE of its family");
	diag("%d samples for %d workers", ns, NW);
	is_int((long long)sample(text, "submitd_req_recv_total{worker=\"5\",cmd=\"submit\"}"),
	       10 + 1005, "a label's counter is retired plus live");
	is_int((long long)sample(text, "submitd_client_connected{worker=\"63\"}"), 2,
	       "gauge of the last worker");
	is_int((long long)sample(text, "submitd_write_batch_size_count"), NW,
	       "histogram count sums the workers' write calls");
	is_int((long long)sample(text, "submitd_write_batch_size_bucket{le=\"4\"}"), 0,
	       "a batch of 7 is not under le=4");
	is_int((long long)sample(text, "submitd_write_batch_size_bucket{le=\"8\"}"), NW,
	       "a batch of 7 is under le=8");
	ok(sample(text, "process_open_fds") > 0, "process_open_fds read from /proc");
	double before = sample(text, "submitd_req_recv_total{worker=\"7\",cmd=\"submit\"}");
	free(text);

	/* Worker 7 exits: the master folds its slot, then frees it. */
	stats_fold(&retired[7], &shm->slot[7]);
	stats_slot_reset(&shm->slot[7]);
	slot_label[7] = -1;
	text = metrics_render(&src, &len);
	double after = sample(text, "submitd_req_recv_total{worker=\"7\",cmd=\"submit\"}");
	/* Both read as numbers: a series missing before and after is no "unchanged". */
	is_int((long long)before, 10 + 1007, "worker 7's counter before its exit");
	is_int((long long)after, 10 + 1007, "counter unchanged across the worker's exit");
	is_int((long long)sample(text, "submitd_client_connected{worker=\"7\"}"), 0,
	       "its gauge is 0 once it is gone");
	free(text);

	/* Rendering time with 64 workers, shared memory only (no /proc). */
	struct timespec t0, t1;
	int rounds = 2000, same = 0;
	size_t len0;
	src.npids = 0;
	text = metrics_render(&src, &len0);
	free(text);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < rounds; i++) {
		text = metrics_render(&src, &len);
		same += text != NULL && len == len0 && len > 0;
		free(text);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) /
		    rounds / 1000;
	/* The time is information only: thresholds belong in make bench. */
	diag("render, %d workers, %zu bytes: %.1f us per scrape (without /proc)", NW, len0, us);
	is_int(same, rounds, "every repeated render gives the same %zu bytes", len0);
	printf("1..%d\n", tap_n);
	return tap_failed != 0;
}
