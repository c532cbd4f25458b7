#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "version.h"

#define CONTENT_TYPE	    "text/plain; version=0.0.4; charset=utf-8"
#define STATUS_CONTENT_TYPE "text/plain; charset=utf-8"
#define STATUS_MAX_BYTES    (1024 * 1024)

struct metrics {
	struct MHD_Daemon *d;
	const struct metrics_src *src;
	struct net_addr addr;
};

/* A growing output buffer; on allocation failure it stops growing and is marked bad. */
struct out {
	char *p;
	size_t len, cap;
	int bad;
};

static void outf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		if (o->bad)
			return;
		va_start(ap, fmt);
		n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->bad = 1;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		size_t cap = o->cap * 2 + (size_t)n;
		char *q = realloc(o->p, cap);
		if (q == NULL) {
			o->bad = 1;
			return;
		}
		o->p = q;
		o->cap = cap;
	}
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
	outf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family of one sample without labels. */
static void one_sample(struct out *o, const char *name, const char *type, const char *help,
		       uint64_t v)
{
	family(o, name, type, help);
	outf(o, "%s %llu\n", name, (unsigned long long)v);
}

/* A gauge of the seconds since a CLOCK_REALTIME ns timestamp; 0 for none (0) or one ahead. */
static void age_gauge(struct out *o, const char *name, const char *help, uint64_t since_ns)
{
	uint64_t now = real_ns();

	family(o, name, "gauge", help);
	outf(o, "%s %.3f\n", name,
	     since_ns && now > since_ns ? (double)(now - since_ns) / 1e9 : 0.0);
}

/*
 * A histogram family from its n per-bucket counts (not cumulative) and the
 * upper bounds of the first n - 1 (the last bucket is +Inf). us: bounds and
 * sum are microseconds, shown in seconds; else plain integers.
 */
static void histogram(struct out *o, const char *name, const char *help, const uint64_t *bounds,
		      const uint64_t *counts, int n, uint64_t sum, int us)
{
	uint64_t cum = 0;

	family(o, name, "histogram", help);
	for (int b = 0; b < n; b++) {
		cum += counts[b];
		if (b == n - 1)
			outf(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
		else if (us)
			outf(o, "%s_bucket{le=\"%g\"} %llu\n", name, (double)bounds[b] / 1e6,
			     (unsigned long long)cum);
		else
			outf(o, "%s_bucket{le=\"%llu\"} %llu\n", name,
			     (unsigned long long)bounds[b], (unsigned long long)cum);
	}
	if (us)
		outf(o, "%s_sum %.6f\n", name, (double)sum / 1e6);
	else
		outf(o, "%s_sum %llu\n", name, (unsigned long long)sum);
	outf(o, "%s_count %llu\n", name, (unsigned long long)cum);
}

/* Per label: what retired workers left plus every live slot with that label, in one pass. */
static void label_sums(const struct metrics_src *s, int nl, struct stats_slot *per,
		       int64_t *connected, uint64_t *allocated)
{
	for (int l = 0; l < nl; l++)
		per[l] = s->retired[l];
	for (int i = 0; i < STATS_MAX_SLOTS; i++) {
		int l = s->slot_label[i];
		if (l < 0 || l >= nl)
			continue;
		stats_fold(&per[l], &s->shm->slot[i]);
		connected[l] += STATS_LOAD(s->shm->slot[i].connected);
		allocated[l] += STATS_LOAD(s->shm->slot[i].allocated);
	}
}

struct proc_totals {
	double cpu_seconds;
	double rss_bytes;
	double open_fds;
};

/* with_children: add the CPU time of reaped children, so the total survives workers that exit. */
static void proc_read(pid_t pid, int with_children, struct proc_totals *t)
{
	char path[64], buf[1024];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) != NULL) {
		if (fgets(buf, sizeof(buf), f) != NULL) {
			/* Fields after the command name, which may hold spaces and ')'. */
			char *p = strrchr(buf, ')');
			unsigned long utime = 0, stime = 0;
			long cutime = 0, cstime = 0, rss = 0;
			if (p != NULL &&
			    sscanf(
				p + 2,
				"%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %ld %ld %*d "
				"%*d %*d %*d %*u %*u %ld",
				&utime, &stime, &cutime, &cstime, &rss) == 5) {
				double ticks = (double)(utime + stime);
				if (with_children)
					ticks += (double)(cutime + cstime);
				t->cpu_seconds += ticks / (double)sysconf(_SC_CLK_TCK);
				t->rss_bytes += (double)rss * (double)sysconf(_SC_PAGESIZE);
			}
		}
		fclose(f);
	}
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (d != NULL) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL)
			if (e->d_name[0] != '.')
				t->open_fds++;
		closedir(d);
	}
}

/* Per worker: open connections and every counter of STATS_COUNTERS, summed by label. */
static void render_counters(struct out *o, const struct stats_slot *per, const int64_t *connected,
			    int nl)
{
	family(o, "submitd_client_connected", "gauge", "Open client connections.");
	for (int l = 0; l < nl; l++)
		outf(o, "submitd_client_connected{worker=\"%d\"} %lld\n", l,
		     (long long)connected[l]);

	const char *last = "";
#define X(f, fam, lab, help)                                                                       \
	if (strcmp(last, fam) != 0) {                                                              \
		family(o, "submitd_" fam, "counter", help);                                        \
		last = fam;                                                                        \
	}                                                                                          \
	for (int l = 0; l < nl; l++)                                                               \
		outf(o, "submitd_" fam "{worker=\"%d\"%s%s} %llu\n", l, lab[0] ? "," : "", lab,    \
		     (unsigned long long)per[l].c[STATS_##f]);
	STATS_COUNTERS(X)
#undef X
}

/* The histograms of all workers together: write batches, fdatasync latency and size. */
static void render_histograms(struct out *o, const struct stats_slot *per, int nl)
{
	static const uint64_t bounds[] = STATS_BATCH_BOUNDS;

	struct stats_slot all;
	memset(&all, 0, sizeof(all));
	for (int l = 0; l < nl; l++) {
		for (int b = 0; b < STATS_NBATCH; b++)
			all.batch[b] += per[l].batch[b];
		all.batch_sum += per[l].batch_sum;
	}
	histogram(o, "submitd_write_batch_size", "Acks written per write call.", bounds, all.batch,
		  STATS_NBATCH, all.batch_sum, 0);

	static const uint64_t fsync_bounds[] = STATS_FSYNC_BOUNDS;
	for (int l = 0; l < nl; l++) {
		for (int b = 0; b < STATS_NFSYNC; b++)
			all.fsync_us[b] += per[l].fsync_us[b];
		all.fsync_us_sum += per[l].fsync_us_sum;
		for (int b = 0; b < STATS_NBATCH; b++)
			all.fsync_recs[b] += per[l].fsync_recs[b];
		all.fsync_recs_sum += per[l].fsync_recs_sum;
	}
	histogram(o, "submitd_spool_fsync_seconds",
		  "Latency of the fdatasync calls that make spooled records durable.", fsync_bounds,
		  all.fsync_us, STATS_NFSYNC, all.fsync_us_sum, 1);
	histogram(o, "submitd_spool_records_per_fsync",
		  "Records made durable by one fdatasync (group commit).", bounds, all.fsync_recs,
		  STATS_NBATCH, all.fsync_recs_sum, 0);

	static const uint64_t hs_bounds[] = STATS_HS_BOUNDS;
	for (int l = 0; l < nl; l++) {
		for (int b = 0; b < STATS_NHS; b++)
			all.tls_hs_us[b] += per[l].tls_hs_us[b];
		all.tls_hs_us_sum += per[l].tls_hs_us_sum;
	}
	histogram(o, "submitd_tls_handshake_duration_seconds",
		  "From accept to the TLS handshake done, of the handshakes that succeeded.",
		  hs_bounds, all.tls_hs_us, STATS_NHS, all.tls_hs_us_sum, 1);
}

/* TLS connections by version (live workers), and the serving certificate's expiry. */
static void render_tls(struct out *o, const struct metrics_src *s)
{
	int64_t open[2] = {0, 0};

	for (int i = 0; i < STATS_MAX_SLOTS; i++) {
		if (s->slot_label[i] < 0)
			continue;
		open[0] += STATS_LOAD(s->shm->slot[i].tls_open[0]);
		open[1] += STATS_LOAD(s->shm->slot[i].tls_open[1]);
	}
	family(o, "submitd_tls_connections", "gauge",
	       "Established TLS client connections, by protocol version.");
	outf(o, "submitd_tls_connections{version=\"TLSv1.2\"} %lld\n", (long long)open[0]);
	outf(o, "submitd_tls_connections{version=\"TLSv1.3\"} %lld\n", (long long)open[1]);
	if (s->tls_expiry == 0)
		return;
	family(o, "submitd_tls_certificate_expiry_timestamp_seconds", "gauge",
	       "When the serving TLS certificate expires (its notAfter), Unix time.");
	outf(o, "submitd_tls_certificate_expiry_timestamp_seconds %lld\n",
	     (long long)s->tls_expiry);
}

/* The spool as the master last scanned it, and what recovery did. */
static void render_spool(struct out *o, const struct stats_shm *sh)
{
	one_sample(o, "submitd_spool_used_bytes", "gauge",
		   "Bytes in the spool's directories (last scan plus what workers wrote since).",
		   stats_spool_used(sh));
	one_sample(o, "submitd_spool_max_bytes", "gauge", "spool_max_size; 0 unbounded.",
		   STATS_LOAD(sh->ctl.spool_max));
	one_sample(o, "submitd_spool_ready_segments", "gauge",
		   "Sealed segments waiting in ready/ for a consumer.",
		   STATS_LOAD(sh->spool_ready_segments));
	age_gauge(o, "submitd_spool_oldest_ready_age_seconds",
		  "Age of the oldest segment in ready/ (from its creation); 0 if none.",
		  STATS_LOAD(sh->spool_oldest_ready_ns));
	family(o, "submitd_spool_recovered_segments_total", "counter",
	       "Segments of dead writers recovered, by outcome.");
	outf(o, "submitd_spool_recovered_segments_total{outcome=\"sealed\"} %llu\n",
	     (unsigned long long)(STATS_LOAD(sh->spool_recovered) -
				  STATS_LOAD(sh->spool_truncated)));
	outf(o, "submitd_spool_recovered_segments_total{outcome=\"truncated\"} %llu\n",
	     (unsigned long long)STATS_LOAD(sh->spool_truncated));
	outf(o, "submitd_spool_recovered_segments_total{outcome=\"removed\"} %llu\n",
	     (unsigned long long)STATS_LOAD(sh->spool_removed));
	outf(o, "submitd_spool_recovered_segments_total{outcome=\"quarantined\"} %llu\n",
	     (unsigned long long)STATS_LOAD(sh->spool_quarantined));
	one_sample(o, "submitd_spool_truncated_bytes_total", "counter",
		   "Bytes of torn tails cut off by recovery.",
		   STATS_LOAD(sh->spool_truncated_bytes));
}

static void render_nats(struct out *o, const struct stats_shm *sh)
{
	/* The NATS forwarder (docs/NATS.md): its own figures, written by it alone. */
	const struct stats_fwd *fw = &sh->fwd;
	static const char *const fwd_states[] = {"off",		 "connecting", "connected",
						 "disconnected", "no_stream",  "refused"};
	uint64_t fst = STATS_LOAD(fw->state);
#define FWD_COUNTER(name, field, help)                                                             \
	one_sample(o, "submitd_nats_" name, "counter", help, STATS_LOAD(fw->field))
	FWD_COUNTER("published_total", published,
		    "Publishes sent to the stream, retries included.");
	FWD_COUNTER("acked_total", acked, "PubAcks received, duplicates included.");
	FWD_COUNTER("duplicates_total", duplicates,
		    "PubAcks marked duplicate: resends the stream's duplicate window dropped.");
	FWD_COUNTER("failed_total", failed, "Publishes answered with an error or timed out.");
	FWD_COUNTER("retried_total", retried, "Records published again after a failure.");
	FWD_COUNTER("segments_forwarded_total", segments,
		    "Segments whose every record is in the stream, deleted from the spool.");
	FWD_COUNTER("connects_total", connects, "Connections to NATS made, reconnects included.");
	FWD_COUNTER("connect_errors_total", errors_conn, "Connection attempts that failed.");
	FWD_COUNTER("forwarder_starts_total", starts, "Forwarder processes started.");
#undef FWD_COUNTER
	one_sample(o, "submitd_nats_inflight", "gauge", "Publishes not yet acknowledged.",
		   STATS_LOAD(fw->inflight));
	one_sample(o, "submitd_nats_lag_bytes", "gauge",
		   "Bytes of spooled records not yet acknowledged by the stream.",
		   STATS_LOAD(fw->lag_bytes));
	one_sample(
	    o, "submitd_nats_lag_records", "gauge",
	    "Records not yet acknowledged by the stream (partly estimated, docs/METRICS.md).",
	    STATS_LOAD(fw->lag_records));
	one_sample(o, "submitd_nats_lag_segments", "gauge",
		   "Segments holding records not yet acknowledged by the stream.",
		   STATS_LOAD(fw->lag_segments));
	age_gauge(o, "submitd_nats_oldest_unforwarded_age_seconds",
		  "Age of the oldest record not yet in the stream; 0 if none.",
		  STATS_LOAD(fw->oldest_ns));
	family(o, "submitd_nats_state", "gauge",
	       "The forwarder's state: 1 for the current one (refused: credentials, TLS or "
	       "permissions; no_stream: the stream is missing).");
	for (uint64_t k = 0; k < sizeof(fwd_states) / sizeof(fwd_states[0]); k++)
		outf(o, "submitd_nats_state{state=\"%s\"} %d\n", fwd_states[k], fst == k);
	family(o, "submitd_nats_connected", "gauge",
	       "1 while the forwarder is connected and the stream is there.");
	outf(o, "submitd_nats_connected %d\n", fst == STATS_FWD_CONNECTED);
	static const uint64_t fwd_bounds[] = STATS_FWD_BOUNDS;
	uint64_t lat[STATS_NFWD];
	for (int b = 0; b < STATS_NFWD; b++)
		lat[b] = STATS_LOAD(fw->lat[b]);
	histogram(o, "submitd_nats_forward_latency_seconds",
		  "From the spool write (the Submit's decoding) to the stream's PubAck.",
		  fwd_bounds, lat, STATS_NFWD, STATS_LOAD(fw->lat_sum_us), 1);
}

/* What the master knows: workers, generations, restarts, reloads, the build. */
static void render_master(struct out *o, const struct metrics_src *s, const uint64_t *allocated,
			  int nl)
{
	family(o, "submitd_worker_allocated_bytes", "gauge",
	       "Bytes allocated from the workers' memory arenas.");
	for (int l = 0; l < nl; l++)
		outf(o, "submitd_worker_allocated_bytes{worker=\"%d\"} %llu\n", l,
		     (unsigned long long)allocated[l]);

	family(o, "submitd_workers", "gauge", "Worker processes, configured and running.");
	outf(o, "submitd_workers{state=\"configured\"} %d\n", s->workers_configured);
	outf(o, "submitd_workers{state=\"running\"} %d\n", s->workers_running);
	family(o, "submitd_generations", "gauge",
	       "Worker generations alive: the current one and those still draining.");
	outf(o, "submitd_generations %d\n", s->generations);
	family(o, "submitd_draining_connections", "gauge",
	       "Client connections still open in draining workers.");
	outf(o, "submitd_draining_connections %lld\n", (long long)s->draining_connections);
	family(o, "submitd_worker_restarts_total", "counter",
	       "Workers replaced after an unexpected exit, by how they ended.");
	outf(o, "submitd_worker_restarts_total{reason=\"exit\"} %llu\n",
	     (unsigned long long)s->restarts_exit);
	outf(o, "submitd_worker_restarts_total{reason=\"signal\"} %llu\n",
	     (unsigned long long)s->restarts_signal);
	family(o, "submitd_config_last_reload_successful", "gauge",
	       "Whether the last configuration reload attempt was successful.");
	outf(o, "submitd_config_last_reload_successful %d\n", s->reload_ok);
	family(o, "submitd_config_last_reload_success_timestamp_seconds", "gauge",
	       "Timestamp of the last successful configuration reload.");
	outf(o, "submitd_config_last_reload_success_timestamp_seconds %.3f\n", s->reload_ts);
	family(o, "submitd_build_info", "gauge", "Version and commit of the running build.");
	outf(o, "submitd_build_info{version=\"%s\",commit=\"%s\"} 1\n", version_string,
	     version_commit);
}

/* The process_* families, over the master and its children. */
static void render_process(struct out *o, const struct metrics_src *s)
{
	struct proc_totals pt = {0, 0, 0};
	for (int i = 0; i < s->npids; i++)
		proc_read(s->pids[i], i == 0, &pt);
	family(o, "process_start_time_seconds", "gauge",
	       "Start time of the master since the epoch in seconds.");
	outf(o, "process_start_time_seconds %.3f\n", s->start_time);
	family(o, "process_cpu_seconds_total", "counter",
	       "CPU time of the master and its workers, running and exited, in seconds.");
	outf(o, "process_cpu_seconds_total %.2f\n", pt.cpu_seconds);
	family(o, "process_resident_memory_bytes", "gauge",
	       "Resident memory of the master and the workers, in bytes.");
	outf(o, "process_resident_memory_bytes %.0f\n", pt.rss_bytes);
	family(o, "process_open_fds", "gauge",
	       "Open file descriptors of the master and the workers.");
	outf(o, "process_open_fds %.0f\n", pt.open_fds);
}

char *metrics_render(const struct metrics_src *s, size_t *len)
{
	struct out o = {NULL, 0, 0, 0};
	struct stats_slot *per;
	int64_t *connected;
	uint64_t *allocated;
	int nl = s->nlabels;

	o.cap = 16384 + (size_t)nl * 4096;
	if ((o.p = malloc(o.cap)) == NULL)
		return NULL;
	per = calloc((size_t)(nl ? nl : 1), sizeof(*per));
	connected = calloc((size_t)(nl ? nl : 1), sizeof(*connected));
	allocated = calloc((size_t)(nl ? nl : 1), sizeof(*allocated));
	if (per == NULL || connected == NULL || allocated == NULL) {
		free(per);
		free(connected);
		free(allocated);
		free(o.p);
		return NULL;
	}
	label_sums(s, nl, per, connected, allocated);

	render_counters(&o, per, connected, nl);
	render_histograms(&o, per, nl);
	render_tls(&o, s);
	render_spool(&o, s->shm);
	render_nats(&o, s->shm);
	render_master(&o, s, allocated, nl);
	render_process(&o, s);

	free(per);
	free(connected);
	free(allocated);
	if (o.bad) {
		free(o.p);
		return NULL;
	}
	*len = o.len;
	return o.p;
}

static enum MHD_Result respond(struct MHD_Connection *mc, unsigned code, const char *type,
			       char *body, size_t len, int must_free)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(
	    len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (r == NULL) {
		if (must_free)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(mc, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **state)
{
	struct metrics *m = cls;
	static char not_found[] = "not found: try /metrics or /status\n";
	static char not_allowed[] = "method not allowed\n";
	static char unavailable[] = "out of memory\n";
	size_t len;
	char *body;

	(void)version;
	(void)upload;
	(void)upload_size;
	(void)state;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return respond(mc, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", not_allowed,
			       sizeof(not_allowed) - 1, 0);
	if (strcmp(url, "/status") == 0) {
		if ((body = metrics_status_render(m->src, &len)) == NULL)
			return respond(mc, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", unavailable,
				       sizeof(unavailable) - 1, 0);
		return respond(mc, MHD_HTTP_OK, STATUS_CONTENT_TYPE, body, len, 1);
	}
	if (strcmp(url, "/metrics") != 0)
		return respond(mc, MHD_HTTP_NOT_FOUND, "text/plain", not_found,
			       sizeof(not_found) - 1, 0);
	if ((body = metrics_render(m->src, &len)) == NULL)
		return respond(mc, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", unavailable,
			       sizeof(unavailable) - 1, 0);
	return respond(mc, MHD_HTTP_OK, CONTENT_TYPE, body, len, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	(void)fmt;
	(void)ap;
	/* libmicrohttpd's own messages (a client that went away...) are not ours to log. */
}

struct metrics *metrics_start(const struct net_addr *a, const struct metrics_src *src, char *err,
			      size_t errlen)
{
	struct metrics *m = calloc(1, sizeof(*m));
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	char name[NET_ADDRSTRLEN];
	const union MHD_DaemonInfo *info;

	if (m == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->src = src;
	if (a->ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	net_addr_str(a, name, sizeof(name));
	errno = 0;
	m->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, m, MHD_OPTION_SOCK_ADDR, &a->ss,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
				MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)16,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024),
				MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)64,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
	if (m->d == NULL) {
		snprintf(err, errlen, "metrics endpoint on %s: %s", name,
			 errno ? strerror(errno) : "cannot start");
		free(m);
		return NULL;
	}
	info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_LISTEN_FD);
	if (info == NULL || net_sockname(info->listen_fd, &m->addr) == -1)
		m->addr = *a;
	return m;
}

void metrics_addr(const struct metrics *m, struct net_addr *a)
{
	*a = m->addr;
}

int metrics_fd(const struct metrics *m)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_EPOLL_FD);
	return info ? info->epoll_fd : -1;
}

int metrics_timeout(const struct metrics *m)
{
	MHD_UNSIGNED_LONG_LONG t;

	if (MHD_get_timeout(m->d, &t) != MHD_YES)
		return -1;
	return t > 60000 ? 60000 : (int)t;
}

void metrics_run(struct metrics *m)
{
	MHD_run(m->d);
}

void metrics_stop(struct metrics *m)
{
	if (m == NULL)
		return;
	MHD_stop_daemon(m->d);
	free(m);
}

void metrics_forget(struct metrics *m, int *fds, int *nfds, int max)
{
	const union MHD_DaemonInfo *info;

	if (m == NULL)
		return;
	if (*nfds < max && (info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_LISTEN_FD)) != NULL)
		fds[(*nfds)++] = info->listen_fd;
	if (*nfds < max && (info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_EPOLL_FD)) != NULL)
		fds[(*nfds)++] = info->epoll_fd;
}

static uint64_t slot_requests(const struct stats_slot *s)
{
	return STATS_LOAD(s->c[STATS_req_submit]) + STATS_LOAD(s->c[STATS_req_conn]);
}

void metrics_sample(struct metrics_worker *w, const struct stats_slot *s, uint64_t now_ms)
{
	w->req[w->next] = slot_requests(s);
	w->at_ms[w->next] = now_ms;
	w->next = (w->next + 1) % METRICS_RATE_SAMPLES;
	if (w->nsamples < METRICS_RATE_SAMPLES)
		w->nsamples++;
}

/* Requests per second from the oldest sample in the ring to now. */
static double worker_rate(const struct metrics_worker *w, uint64_t req, uint64_t now)
{
	int old = w->nsamples < METRICS_RATE_SAMPLES ? 0 : w->next;

	if (w->nsamples == 0 || now <= w->at_ms[old] || req < w->req[old])
		return 0;
	return (double)(req - w->req[old]) * 1000.0 / (double)(now - w->at_ms[old]);
}

static const char *worker_state(const struct metrics_worker *w, uint32_t state)
{
	if (w->hung)
		return "unresponsive";
	if (w->draining || state == CTL_SLOT_DRAINING)
		return "draining";
	return state == CTL_SLOT_RUNNING ? "running" : "starting";
}

/* A copy of a worker's identities under its seqlock: 0, or -1 if it kept changing. */
static int idents_copy(const struct stats_idents *in, struct stats_idents *out)
{
	for (int tries = 0; tries < 4; tries++) {
		uint32_t seq = __atomic_load_n(&in->seq, __ATOMIC_ACQUIRE);
		if (seq & 1)
			continue;
		memcpy(out, (const void *)in, sizeof(*out));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&in->seq, __ATOMIC_RELAXED) == seq)
			return 0;
	}
	return -1;
}

/* Per worker: the connections that authenticated, their identities, the most connected. */
static void status_identities(struct out *o, const struct metrics_src *s)
{
	outf(o, "\n%-6s %-13s %-10s %s\n", "worker", "authenticated", "identities",
	     "most_connected");
	for (int i = 0; i < STATS_MAX_SLOTS; i++) {
		const struct metrics_worker *w = &s->workers[i];
		struct stats_idents id;

		if (w->pid <= 0)
			continue;
		if (idents_copy(&s->shm->slot[i].idents, &id) < 0) {
			outf(o, "%-6d %-13s %-10s %s\n", w->label, "-", "-", "-");
			continue;
		}
		outf(o, "%-6d %-13u %-10u", w->label, id.authenticated, id.distinct);
		for (uint32_t k = 0; k < id.n && k < STATS_TOP_IDENTITIES; k++) {
			id.top[k].name[STATS_IDENTITY_LEN - 1] = '\0';
			outf(o, " %s=%u", id.top[k].name, id.top[k].conns);
		}
		outf(o, "%s\n", id.n == 0 ? " -" : "");
	}
}

char *metrics_status_render(const struct metrics_src *s, size_t *len)
{
	struct out o = {NULL, 0, 4096, 0};
	uint64_t now = mono_ms();
	struct timespec ts;
	char when[32] = "never";
	int64_t conns = 0;

	if ((o.p = malloc(o.cap)) == NULL)
		return NULL;
	for (int i = 0; i < STATS_MAX_SLOTS; i++)
		if (s->workers[i].pid > 0)
			conns += STATS_LOAD(s->shm->slot[i].connected);
	clock_gettime(CLOCK_REALTIME, &ts);
	if (s->reload_last_ts > 0) {
		time_t t = (time_t)s->reload_last_ts;
		struct tm tm;
		if (gmtime_r(&t, &tm) != NULL)
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	outf(&o, "submitd %s (commit %s)\n", version_string, version_commit);
	outf(&o, "pid: %d\n", s->npids > 0 ? (int)s->pids[0] : (int)getpid());
	/* Whole seconds since start, never below 0 (start_time has a fraction, tv_sec not). */
	double up = (double)ts.tv_sec + ts.tv_nsec / 1e9 - s->start_time;
	outf(&o, "uptime_seconds: %.0f\n", up > 0 ? floor(up) : 0.0);
	outf(&o, "config: %s\n", s->config_path ? s->config_path : "");
	outf(&o, "config_fnv1a64: %016llx\n", (unsigned long long)s->config_hash);
	outf(&o, "generation: %u\n", s->generation);
	outf(&o, "last_reload: %s\n", when);
	outf(&o, "last_reload_successful: %d\n", s->reload_ok);
	outf(&o, "workers_configured: %d\n", s->workers_configured);
	outf(&o, "workers_running: %d\n", s->workers_running);
	outf(&o, "connections: %lld\n", (long long)conns);
	outf(&o, "\n%-6s %-5s %-8s %-10s %-12s %-11s %-19s %s\n", "worker", "slot", "pid",
	     "generation", "state", "connections", "requests_per_second", "heartbeat_age_ms");
	for (int i = 0; i < STATS_MAX_SLOTS; i++) {
		const struct metrics_worker *w = &s->workers[i];
		const struct stats_slot *sl = &s->shm->slot[i];
		uint32_t state = STATS_LOAD(s->shm->ctl.slot[i].state);
		uint64_t hb = STATS_LOAD(s->shm->ctl.slot[i].heartbeat_ms);
		char age[24] = "-";

		if (w->pid <= 0)
			continue;
		if (state == CTL_SLOT_RUNNING || state == CTL_SLOT_DRAINING)
			snprintf(age, sizeof(age), "%llu",
				 (unsigned long long)(now > hb ? now - hb : 0));
		outf(&o, "%-6d %-5d %-8d %-10u %-12s %-11lld %-19.1f %s\n", w->label, i,
		     (int)w->pid, w->gen, worker_state(w, state),
		     (long long)STATS_LOAD(sl->connected), worker_rate(w, slot_requests(sl), now),
		     age);
	}
	status_identities(&o, s);
	if (o.bad) {
		free(o.p);
		return NULL;
	}
	*len = o.len;
	return o.p;
}

/* A wildcard address means "this host": ask its loopback. */
static void loopback_if_any(struct net_addr *a)
{
	if (a->ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;
		if (in->sin_addr.s_addr == htonl(INADDR_ANY))
			in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else if (a->ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
		if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
			in6->sin6_addr = in6addr_loopback;
	}
}

int metrics_status_get(const struct net_addr *addr, FILE *out, char *err, size_t errlen)
{
	static const char req[] = "GET /status HTTP/1.0\r\nHost: localhost\r\n\r\n";
	struct timeval tv = {5, 0};
	struct net_addr a = *addr;
	char name[NET_ADDRSTRLEN], *buf, *body;
	size_t n = 0;
	ssize_t r;
	int fd, code = 0;

	loopback_if_any(&a);
	net_addr_str(&a, name, sizeof(name));
	if ((fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a.ss, a.len) == -1) {
		snprintf(err, errlen, "cannot connect to the metrics endpoint %s: %s", name,
			 strerror(errno));
		close(fd);
		return -1;
	}
	if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1) {
		snprintf(err, errlen, "%s: send: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	if ((buf = malloc(STATUS_MAX_BYTES + 1)) == NULL) {
		snprintf(err, errlen, "out of memory");
		close(fd);
		return -1;
	}
	/* HTTP/1.0: the server closes after the body. */
	while (n < STATUS_MAX_BYTES && (r = read(fd, buf + n, STATUS_MAX_BYTES - n)) != 0) {
		if (r == -1) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "%s: read: %s", name,
				 errno == EAGAIN ? "timed out" : strerror(errno));
			free(buf);
			close(fd);
			return -1;
		}
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	if (sscanf(buf, "HTTP/%*d.%*d %d", &code) != 1 ||
	    (body = strstr(buf, "\r\n\r\n")) == NULL) {
		snprintf(err, errlen, "%s: not an HTTP answer", name);
		free(buf);
		return -1;
	}
	if (code != 200) {
		snprintf(err, errlen, "%s: GET /status answered %d", name, code);
		free(buf);
		return -1;
	}
	body += 4;
	fwrite(body, 1, n - (size_t)(body - buf), out);
	free(buf);
	return 0;
}
