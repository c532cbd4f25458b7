/*
 * What submit-bench prints. Error lines are bounded so that a run with a
 * million failing requests stays readable; everything else is written once
 * a second (progress, --csv) or once at the end (the summary).
 */
#include <stdarg.h>
#include <stdio.h>

#include "report.h"
#include "version.h"

#define MAX_ERROR_LINES 20

static unsigned error_lines;

void report_error(const char *fmt, ...)
{
	unsigned n = __atomic_fetch_add(&error_lines, 1, __ATOMIC_RELAXED);
	char line[512];
	va_list ap;

	if (n > MAX_ERROR_LINES)
		return;
	if (n == MAX_ERROR_LINES) {
		fprintf(stderr, "submit-bench: more errors, not shown\n");
		return;
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "submit-bench: error: %s\n", line);
}

void report_add(struct bench_result *sum, const struct bench_result *r)
{
	hist_merge(&sum->hist, &r->hist);
#define X(name) sum->name += r->name;
	BENCH_RESULT_COUNTERS(X)
#undef X
	if (r->last_ack > sum->last_ack)
		sum->last_ack = r->last_ack;
	if (r->tls_version != NULL) {
		sum->tls_version = r->tls_version;
		sum->tls_cipher = r->tls_cipher;
	}
	for (int i = 0; i < BENCH_RES_N; i++)
		sum->results[i] += r->results[i];
}

void report_pct_key(double p, char *out, size_t n)
{
	char num[32], *d = num;

	snprintf(num, sizeof(num), "%.10g", p);
	snprintf(out, n, "p");
	for (char *q = out + 1; *d != '\0' && q < out + n - 1; d++)
		if (*d != '.')
			*q++ = *d, *q = '\0';
}

static void fmt_lat(char *out, size_t n, uint64_t ns)
{
	if (ns < 1000000)
		snprintf(out, n, "%.1f us", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(out, n, "%.3f ms", (double)ns / 1e6);
	else
		snprintf(out, n, "%.3f s", (double)ns / 1e9);
}

void report_progress(const struct report_tick *k)
{
	char ml[32];

	fmt_lat(ml, sizeof(ml), k->max_lat);
	fprintf(stderr, "%6.1fs %10.0f msgs/s  acked %llu  errors %llu  open %llu  max %s\n",
		k->elapsed_s, k->rate, (unsigned long long)k->acked, (unsigned long long)k->errors,
		(unsigned long long)k->open, ml);
}

void report_csv_header(FILE *csv)
{
	fprintf(csv, "elapsed_s,sent,acked,rate,errors,open,max_latency_us,p50_latency_us,"
		     "p99_latency_us\n");
}

void report_csv_row(FILE *csv, const struct report_tick *k, const struct hist *ival)
{
	/* max from the same histogram as the percentiles: p99 <= max holds */
	fprintf(csv, "%.3f,%llu,%llu,%.0f,%llu,%llu,%.1f,%.1f,%.1f\n", k->elapsed_s,
		(unsigned long long)k->sent, (unsigned long long)k->acked, k->rate,
		(unsigned long long)k->errors, (unsigned long long)k->open, (double)ival->max / 1e3,
		(double)hist_quantile(ival, 0.5) / 1e3, (double)hist_quantile(ival, 0.99) / 1e3);
}

/* "key":"value", with null for NULL; the values are OpenSSL's names, nothing to escape. */
static void json_str(const char *key, const char *v)
{
	if (v != NULL)
		printf("\"%s\":\"%s\",", key, v);
	else
		printf("\"%s\":null,", key);
}

void report_json(const struct report *r)
{
	const struct bench_opts *o = r->o;
	const struct bench_result *tot = r->tot;
	const struct hist *h = &tot->hist;
	char key[40];

	printf("{\"version\":\"%s\",\"target\":\"%s\",\"connections\":%d,\"threads\":%d,"
	       "\"window\":%u,\"size_min\":%u,\"size_max\":%u,\"rate_target\":%.0f,"
	       "\"conn\":%s,\"idle\":%s,\"measured_s\":%.3f,\"sent\":%llu,\"acked\":%llu,"
	       "\"acked_measured\":%llu,\"conn_acked\":%llu,\"rate\":%.1f,\"mb_per_s\":%.3f,"
	       "\"errors\":%llu,\"connect_errors\":%llu,\"unacked\":%llu,"
	       "\"reconnects\":%llu,\"lost\":%llu,\"refused\":%llu,\"open_at_end\":%llu,"
	       "\"resets\":%llu,\"connect_retries\":%llu,\"cut_acks\":%llu,"
	       "\"results\":{\"0\":%llu,\"1\":%llu,\"2\":%llu,\"other\":%llu},"
	       "\"not_stored\":%llu,"
	       "\"latency_us\":{\"count\":%llu,\"min\":%.1f,\"mean\":%.1f,\"stddev\":%.1f",
	       version_string, o->dst_name, o->conns, o->threads, o->window, o->size_min,
	       o->size_max, o->rate, o->send_conn ? "true" : "false", o->idle ? "true" : "false",
	       (double)r->measured_ns / 1e9, (unsigned long long)tot->sent,
	       (unsigned long long)tot->acked, (unsigned long long)tot->acked_window,
	       (unsigned long long)tot->conn_acked, r->rate, r->mbps,
	       (unsigned long long)tot->errors, (unsigned long long)tot->connect_errors,
	       (unsigned long long)tot->unacked, (unsigned long long)tot->reconnects,
	       (unsigned long long)tot->lost, (unsigned long long)tot->refused,
	       (unsigned long long)tot->open_at_end, (unsigned long long)tot->resets,
	       (unsigned long long)tot->connect_retries, (unsigned long long)tot->cut_acks,
	       (unsigned long long)tot->results[BENCH_RES_OK],
	       (unsigned long long)tot->results[BENCH_RES_REFUSED],
	       (unsigned long long)tot->results[BENCH_RES_NOT_STORED],
	       (unsigned long long)tot->results[BENCH_RES_OTHER],
	       (unsigned long long)tot->results[BENCH_RES_NOT_STORED], (unsigned long long)h->count,
	       (double)h->min / 1e3, hist_mean(h) / 1e3, hist_stddev(h) / 1e3);
	for (int i = 0; i < r->npcts; i++) {
		report_pct_key(r->pcts[i], key, sizeof(key));
		printf(",\"%s\":%.1f", key, (double)hist_quantile(h, r->pcts[i] / 100) / 1e3);
	}
	printf(",\"max\":%.1f},", (double)h->max / 1e3);
	json_str("tls_version", tot->tls_version);
	json_str("tls_cipher", tot->tls_cipher);
	printf("\"tls\":%s,\"handshake_mode\":%s,\"handshakes\":%llu,\"resumed\":%llu,"
	       "\"handshake_rate\":%.1f,\"ok\":%s}\n",
	       o->tls != NULL ? "true" : "false", o->handshakes ? "true" : "false",
	       (unsigned long long)tot->handshakes, (unsigned long long)tot->resumed,
	       r->handshake_rate, r->ok ? "true" : "false");
}

/* The first line: what was run. */
static void print_target(const struct bench_opts *o)
{
	char win[32], sz[48], mode[48];

	if (o->window)
		snprintf(win, sizeof(win), "window %u", o->window);
	else
		snprintf(win, sizeof(win), "unbounded window");
	if (o->size_min == o->size_max)
		snprintf(sz, sizeof(sz), "payload %u B", o->size_min);
	else
		snprintf(sz, sizeof(sz), "payload %u-%u B", o->size_min, o->size_max);
	if (o->idle)
		snprintf(mode, sizeof(mode), "idle");
	else if (o->handshakes)
		snprintf(mode, sizeof(mode), "a new connection per request");
	else if (o->rate > 0)
		snprintf(mode, sizeof(mode), "open loop at %.0f msgs/s", o->rate);
	else
		snprintf(mode, sizeof(mode), "closed loop");
	printf("target      %s%s, %d connections, %d thread%s, %s, %s, %s%s\n", o->dst_name,
	       o->tls != NULL ? " (TLS)" : "", o->conns, o->threads, o->threads == 1 ? "" : "s",
	       win, sz, mode, o->send_conn ? ", Conn first" : "");
}

static void print_latency(const struct report *r)
{
	const struct hist *h = &r->tot->hist;
	char lat[32], mean[32], sd[32];

	fmt_lat(mean, sizeof(mean), (uint64_t)hist_mean(h));
	fmt_lat(sd, sizeof(sd), (uint64_t)hist_stddev(h));
	printf("latency     mean %s  stddev %s ", mean, sd);
	for (int i = 0; i < r->npcts; i++) {
		fmt_lat(lat, sizeof(lat), hist_quantile(h, r->pcts[i] / 100));
		printf(" p%.10g %s ", r->pcts[i], lat);
	}
	fmt_lat(lat, sizeof(lat), h->max);
	printf(" max %s\n", lat);
}

void report_text(const struct report *r)
{
	const struct bench_opts *o = r->o;
	const struct bench_result *tot = r->tot;

	print_target(o);
	printf("measured    %.3f s%s\n", (double)r->measured_ns / 1e9,
	       o->total > 0 ? " (first send to last ack)" : "");
	printf("requests    %llu sent, %llu acked, %llu in the measured time\n",
	       (unsigned long long)tot->sent, (unsigned long long)tot->acked,
	       (unsigned long long)(o->total > 0 ? tot->acked : tot->acked_window));
	printf("results     %llu stored (0), %llu refused (1), %llu not stored (2)%s, "
	       "%llu other\n",
	       (unsigned long long)tot->results[BENCH_RES_OK],
	       (unsigned long long)tot->results[BENCH_RES_REFUSED],
	       (unsigned long long)tot->results[BENCH_RES_NOT_STORED],
	       o->allow_refused ? " allowed" : "",
	       (unsigned long long)tot->results[BENCH_RES_OTHER]);
	printf("rate        %.0f msgs/s, %.2f MB/s\n", r->rate, r->mbps);
	if (o->send_conn)
		printf("conn acks   %llu\n", (unsigned long long)tot->conn_acked);
	printf("errors      %llu (connect %llu, unacked %llu)\n", (unsigned long long)tot->errors,
	       (unsigned long long)tot->connect_errors, (unsigned long long)tot->unacked);
	if (o->reconnect)
		printf("reconnects  %llu (lost in flight %llu, refused %llu)\n",
		       (unsigned long long)tot->reconnects, (unsigned long long)tot->lost,
		       (unsigned long long)tot->refused);
	if (o->retry_ns > 0)
		printf("retries     %llu resets reconnected, %llu connects retried, %llu acks cut "
		       "short\n",
		       (unsigned long long)tot->resets, (unsigned long long)tot->connect_retries,
		       (unsigned long long)tot->cut_acks);
	printf("connections %llu open at the end of %d\n", (unsigned long long)tot->open_at_end,
	       o->conns);
	if (o->tls != NULL)
		printf("tls         %s %s, %llu handshakes, %llu resumed\n",
		       tot->tls_version != NULL ? tot->tls_version : "-",
		       tot->tls_cipher != NULL ? tot->tls_cipher : "-",
		       (unsigned long long)tot->handshakes, (unsigned long long)tot->resumed);
	if (o->handshakes)
		printf("handshakes  %.0f/s%s, %llu done; latency: connect to ack\n",
		       r->handshake_rate, o->tls != NULL ? "" : " (TCP connects)",
		       (unsigned long long)tot->handshakes);
	if (tot->hist.count > 0)
		print_latency(r);
}

void report_verdict(const struct report *r)
{
	const struct bench_opts *o = r->o;
	const struct bench_result *tot = r->tot;

	if (!r->ok && tot->errors == 0)
		fprintf(stderr, "submit-bench: %s\n",
			o->idle ? "not every connection stayed open" : "nothing was acked");
	else if (o->total > 0 && tot->acked != o->total)
		fprintf(stderr, "submit-bench: %llu of %llu requests acked\n",
			(unsigned long long)tot->acked, (unsigned long long)o->total);
}
